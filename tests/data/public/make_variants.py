#!/usr/bin/env python3
"""Regenerate the derived CSV fixtures in tests/data/public/ from upstream/.

    python tests/data/public/make_variants.py           # (re)write the fixtures
    python tests/data/public/make_variants.py --check   # exit 1 if any committed fixture differs

Standard library only; the output is byte-for-byte deterministic (no RNG: cells are
picked with SHA-256 of a fixed salt, so it does not depend on the Python version).

upstream/ holds verbatim copies of the public files (see ATTRIBUTION.md). Everything
at the top level of tests/data/public/ is written by this script and is meant to be
fed to both `mlops prepare` and pandas (tests/pandas_count.py) for a parity check.
extra/ holds harder pandas corner cases (bool spellings, whitespace around numbers,
signed zero, a malformed file); see ATTRIBUTION.md.
"""
from __future__ import annotations

import csv
import hashlib
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
UP = HERE / "upstream"
BOM = "\ufeff"

WINE_HEADER = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280/od315_of_diluted_wines", "proline", "target",
]
BREAST_CANCER_HEADER = [
    "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
    "mean compactness", "mean concavity", "mean concave points", "mean symmetry",
    "mean fractal dimension", "radius error", "texture error", "perimeter error", "area error",
    "smoothness error", "compactness error", "concavity error", "concave points error",
    "symmetry error", "fractal dimension error", "worst radius", "worst texture",
    "worst perimeter", "worst area", "worst smoothness", "worst compactness",
    "worst concavity", "worst concave points", "worst symmetry", "worst fractal dimension",
    "target",
]

# pandas' default NA markers (pandas._libs.parsers.STR_NA_VALUES, pandas 3.1), '' included.
PANDAS_NA = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
# Strings that look like NA markers but are NOT in pandas' default list: must stay values.
NOT_NA = ["na", "Na", "NAN", "Nan", "none", "NONE", "Null", "nil", "n.a.", "-", "?", " NA", "NA ", "N/A/"]


def h(*parts) -> int:
    """Deterministic pseudo-random integer from the parts."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.reader(f)]


def needs_quotes(v: str) -> bool:
    return any(c in v for c in ',"\r\n')


def q(v: str) -> str:
    return '"' + v.replace('"', '""') + '"'


def render(rows, *, eol="\n", bom=False, final_eol=True, quote_all=False, raw_rows=()) -> bytes:
    """Rows are lists of str (quoted when needed, or always with quote_all) or a
    `Raw(text)` line written as-is. Returns UTF-8 bytes."""
    out = io.StringIO()
    if bom:
        out.write(BOM)
    lines = []
    for r in rows:
        if isinstance(r, Raw):
            lines.append(r.text)
        else:
            lines.append(",".join(q(v) if (quote_all or needs_quotes(v)) else v for v in r))
    out.write(eol.join(lines))
    if final_eol:
        out.write(eol)
    return out.getvalue().encode("utf-8")


class Raw:
    """A line written verbatim (already quoted / deliberately odd)."""

    def __init__(self, text: str):
        self.text = text


# ---------------------------------------------------------------------------- bases

def base_iris():
    return read_rows(UP / "iris.csv")  # header "150,4,setosa,versicolor,virginica" kept verbatim


def base_wine():
    rows = read_rows(UP / "wine_data.csv")
    return [WINE_HEADER] + rows[1:]  # sklearn's first line is "n_samples,n_features,class names"


def base_breast_cancer():
    rows = read_rows(UP / "breast_cancer.csv")
    return [BREAST_CANCER_HEADER] + rows[1:]


# ---------------------------------------------------------------------------- variants

def v_duplicates(rows):
    """Exact duplicate rows: adjacent, far apart, tripled, last == first."""
    hdr, data = rows[0], rows[1:]
    out = list(data)
    inserts = []  # (position in original, source index)
    for k in range(12):
        src = h("dup-src", k) % len(data)
        pos = h("dup-pos", k) % (len(data) + 1)
        inserts.append((max(pos, src + 1), src))  # always after its source
    inserts.append((src + 1, src))  # the last one twice more -> tripled
    for pos, src in sorted(inserts, reverse=True):
        out.insert(pos, list(data[src]))
    out.append(list(data[0]))
    return [hdr] + out


def v_na_markers_numeric(rows):
    """Every pandas default NA marker (and quoted "NA" / "") in numeric cells.
    Also a row of only commas and a row with NA in every column."""
    hdr, data = rows[0], [list(r) for r in rows[1:]]
    lines = [hdr]
    markers = PANDAS_NA
    targets = {}
    for i, m in enumerate(markers):
        r = h("na-row", i) % len(data)
        while r in targets:
            r = (r + 1) % len(data)
        targets[r] = m
    # two rows with two markers each
    extra2 = [(h("na2", 0) % len(data), "NULL"), (h("na2", 1) % len(data), "nan")]
    for idx, r in enumerate(data):
        if idx in targets:
            c = h("na-col", idx) % len(r)
            r[c] = targets[idx]
        for rr, m in extra2:
            if rr == idx:
                r[(h("na2c", idx) % len(r))] = m
        lines.append(r)
    # quoted markers are NA too in pandas
    r = list(data[5])
    cells = [q("NA") if i == 2 else (q("") if i == 4 else v) for i, v in enumerate(r)]
    lines.insert(7, Raw(",".join(cells)))
    lines.append([""] * len(hdr))  # ",,,,": all empty -> a row of NaN, not a blank line
    lines.append(["NA"] * len(hdr))
    return lines


def v_na_markers_strings(rows):
    """NA markers and look-alikes that are NOT markers, in string columns (ubuntu.csv)."""
    hdr, data = rows[0], [list(r) for r in rows[1:]]
    out = [hdr]
    for i, r in enumerate(data):
        r = r + [""] * (len(hdr) - len(r)) if i % 3 == 0 else r  # pad some short rows explicitly
        out.append(r)
    # codename (col 1) and series (col 2) get markers / look-alikes on copies of real rows
    for i, m in enumerate(PANDAS_NA):
        r = list(data[h("nas", i) % len(data)])
        r[1 + (i % 2)] = m
        out.append(r)
    for i, m in enumerate(NOT_NA):
        r = list(data[h("notna", i) % len(data)])
        r[1] = m
        # fill the eol columns so the row has no genuine nulls and can survive dropna
        r = r + ["2099-01-01"] * (len(hdr) - len(r))
        r = [v if v != "" else "2099-01-01" for v in r]
        out.append(r)
    return out


def v_numeric_forms(rows):
    """Rows repeated later with numbers in another text form that parses to the same
    value (127 / 127.0 / 1.27e2, 2.80 / 2.8 / 2.800, 0.28 / .28, +1.5): pandas treats
    them as duplicates. Also near-copies that differ by one digit (not duplicates)."""
    hdr, data = rows[0], rows[1:]

    def forms(v: str, k: int) -> str:
        x = float(v)
        choice = k % 6
        if choice == 0:
            return v + "0" if "." in v else v + ".0"  # 2.80 -> 2.800, 127 -> 127.0
        if choice == 1:
            s = v.rstrip("0").rstrip(".") if "." in v else v + ".00"  # 2.80 -> 2.8, 127 -> 127.00
            return s if s not in ("", "-") else "0"
        if choice == 2:
            return repr(x) if "." in v else f"{v}e0"  # shortest repr; 127 -> 127e0
        if choice == 3:
            return v[1:] if v.startswith("0.") else "+" + v  # 0.28 -> .28, else leading '+'
        if choice == 4:
            return f"{x:.6e}".replace("e+0", "e").replace("e-0", "e-")  # 1.065000e3
        return "0" + v  # leading zero: 2.80 -> 02.80, 1065 -> 01065

    out = [hdr] + [list(r) for r in data]
    for k in range(25):
        src = h("nf-src", k) % len(data)
        r = [forms(v, k + j) if (h("nf-cell", k, j) % 3 == 0) else v for j, v in enumerate(data[src])]
        pos = src + 1 + h("nf-pos", k) % (len(data) - src)
        out.insert(1 + min(pos, len(out) - 1), r)
    for k in range(5):  # near-copies: last digit bumped -> distinct rows
        src = h("near-src", k) % len(data)
        r = list(data[src])
        j = h("near-col", k) % (len(r) - 1)
        v = r[j]
        r[j] = v[:-1] + str((int(v[-1]) + 1) % 10) if v[-1].isdigit() else v
        out.append(r)
    return out


def v_quoted(rows):
    """Quoted fields with commas, doubled quotes, embedded LF and CRLF; fully quoted
    rows; quoted header cell; a quoted copy and an unquoted copy of the same row
    (duplicates after parsing)."""
    hdr = rows[0]
    # short rows padded with a date so most rows survive dropna and the dups count
    data = [list(r) + ["2099-01-01"] * (len(hdr) - len(r)) for r in rows[1:]]
    out = [Raw(",".join(q(c) if c == "codename" else c for c in hdr))]
    for i, r in enumerate(data):
        r = list(r)
        if i % 4 == 0:
            r[1] = r[1] + ", the " + str(i) + "th"
        elif i % 4 == 1:
            r[1] = 'the "' + r[1] + '" release'
        elif i % 4 == 2:
            r[1] = r[1] + "\nsecond line, with comma"
        else:
            r[1] = r[1] + "\r\nCRLF inside quotes"
        out.append(r)
    for k in range(4):
        r = data[h("q-src", k) % len(data)]
        out.append(list(r))  # the unmodified row, unquoted ...
        out.append(Raw(",".join(q(v) for v in r)))  # ... and every field quoted: a duplicate
    r = data[0]
    out.append(Raw(",".join(q(v) if j != 1 else v for j, v in enumerate(r))))  # mixed quoting
    out.append(Raw(",".join(['"""quoted"" start"', '"ends with ""quote"""', '"a,b,c"', '""""', '"x"'] + [q("2000-01-01")] * (len(hdr) - 5))))
    return out


def v_mixed_string_col(rows):
    """iris plus a string column `note` mixing number-like text, words, unicode,
    quotes: "1" and "1.0" are different strings there, so rows differing only in that
    column are NOT duplicates; rows equal in it are."""
    hdr, data = rows[0], rows[1:]
    values = ["1", "1.0", "01", "1e0", "abc", "True", "true", "0x10", "1,000", "naïve café",
              "日本語", 'say "hi"', "-", "  padded  ", "TRUE", "3.14", "3.140", "two\nlines"]
    out = [hdr + ["note"]]
    for i, r in enumerate(data):
        out.append(list(r) + [values[h("mix", i) % len(values)]])
    for k, (a, b) in enumerate([("1", "1.0"), ("3.14", "3.140"), ("True", "true"), ("abc", "abc"), ("1e0", "1e0")]):
        r = list(data[h("mix-src", k) % len(data)])
        out.append(r + [a])
        out.append(r + [b])  # duplicate only when a == b
    return out


def v_blank_lines(rows):
    """Blank and whitespace-only lines (pandas skips both), a row of only commas (all
    NaN -> dropped as null), and no newline at the end of the file."""
    hdr, data = rows[0], rows[1:]
    out = [hdr]
    for i, r in enumerate(data):
        out.append(r)
        if i in (0, 10, 11):
            out.append(Raw(""))
        if i == 50:
            out.append(Raw("   "))
        if i == 60:
            out.append(Raw("," * (len(hdr) - 1)))
    out.append(Raw(""))
    out.append(list(data[-1]))  # duplicate of the previous last row, without final newline
    return out


def v_kitchen_sink(rows):
    """wine + a quoted string column, NA markers, exact dups, numeric-form dups; to
    be written with BOM + CRLF."""
    hdr, data = rows[0], rows[1:]
    names = {"0": "class 0, Barolo", "1": 'class 1 "Grignolino"', "2": "class 2\nBarbera"}
    out = [hdr + ["label"]]
    body = [list(r) + [names[r[-1]]] for r in data]
    for i, r in enumerate(body):
        if h("ks-na", i) % 11 == 0:
            r[h("ks-col", i) % len(r)] = PANDAS_NA[h("ks-m", i) % len(PANDAS_NA)]
    out += body
    for k in range(10):
        src = h("ks-dup", k) % len(body)
        r = list(body[src])
        if k % 2:
            r = [(v + ".0" if v.isdigit() else v) for v in r]  # 1065 -> 1065.0, target 0 -> 0.0
        out.append(r)
    return out


# ---------------------------------------------------------------------------- extra

def extra_files():
    files = {}
    files["extra/bool_forms.csv"] = render([
        ["id", "flag"], ["1", "True"], ["1", "true"], ["1", "TRUE"], ["2", "False"], ["2", "false"],
        ["2", "FALSE"], ["3", "True"], ["3", "NA"],
    ])
    files["extra/numeric_whitespace.csv"] = render([
        ["a", "b"], ["1", "2.5"], ["1", " 2.5"], ["1", "2.5 "], ["2", "3"], [" 2", "3"],
    ])
    files["extra/signed_zero.csv"] = render([["a", "b"], ["-0.0", "1"], ["0.0", "1"], ["0", "1"], ["-0", "1"]])
    files["extra/too_many_fields.invalid.csv"] = render([["a", "b"], ["1", "2"], ["1", "2", "3"]])
    return files


# ---------------------------------------------------------------------------- main

def build() -> dict[str, bytes]:
    iris, wine, bc = base_iris(), base_wine(), base_breast_cancer()
    debian, ubuntu = read_rows(UP / "debian.csv"), read_rows(UP / "ubuntu.csv")
    files = {
        # bases (iris/debian/ubuntu are byte-identical to upstream/)
        "iris.csv": (UP / "iris.csv").read_bytes(),
        "debian.csv": (UP / "debian.csv").read_bytes(),
        "ubuntu.csv": (UP / "ubuntu.csv").read_bytes(),
        "wine.csv": render(wine),
        "breast_cancer.csv": render(bc),
        # line endings / BOM
        "iris.crlf_bom.csv": render(iris, eol="\r\n", bom=True),
        "debian.crlf.csv": render(debian, eol="\r\n"),
        "ubuntu.bom.csv": render(ubuntu, bom=True),
        "breast_cancer.crlf_bom.csv": render(bc, eol="\r\n", bom=True),
        # content
        "iris.duplicates.csv": render(v_duplicates(iris)),
        "wine.na_markers.csv": render(v_na_markers_numeric(wine)),
        "ubuntu.na_markers.csv": render(v_na_markers_strings(ubuntu)),
        "wine.numeric_forms.csv": render(v_numeric_forms(wine)),
        "ubuntu.quoted.csv": render(v_quoted(ubuntu)),
        "ubuntu.quoted.crlf_bom.csv": render(v_quoted(ubuntu), eol="\r\n", bom=True),
        "iris.mixed_string_col.csv": render(v_mixed_string_col(iris)),
        "iris.blank_lines.csv": render(v_blank_lines(iris), final_eol=False),
        "wine.kitchen_sink.crlf_bom.csv": render(v_kitchen_sink(wine), eol="\r\n", bom=True),
    }
    files.update(extra_files())
    return files


def main(argv) -> int:
    check = "--check" in argv
    files = build()
    bad = 0
    for name, data in files.items():
        p = HERE / name
        if check:
            if not p.exists() or p.read_bytes() != data:
                print(f"out of date: {p.relative_to(HERE)}", file=sys.stderr)
                bad += 1
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists() or p.read_bytes() != data:
                p.write_bytes(data)
                print(f"wrote {p.relative_to(HERE)} ({len(data)} bytes)")
    if check:
        if bad:
            print(f"{bad} fixture(s) out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"all {len(files)} fixtures up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
