#!/usr/bin/env python3
"""Generated inputs and pandas' verdict on them, for the differential test of `mlops prepare`.

    tests/pandas_diff.py csv     --seed S --cases N --out DIR
    tests/pandas_diff.py parquet --seed S --cases N --out DIR

Writes DIR/case-NNNNN.<ext> and DIR/expected.jsonl, one JSON object per case:

    {"file": "case-00001.csv", "ok": true, "input": I, "dropped_nulls": N,
     "dropped_duplicates": D, "kept": K, "dtypes": ["int64", "str", ...]}
    {"file": "case-00002.csv", "ok": false, "error": "ParserError: ..."}

computed as the seed's preparation does: df = pd.read_csv(f) (or pd.read_parquet(f));
kept = len(df.dropna().drop_duplicates()). CSV cases mix random quoting, pandas' NA spellings
and near-misses, int/float/bool spellings with spaces and tabs, integers around the int64 and
uint64 limits, blank and whitespace-only lines, a BOM, CRLF and CR line endings, short rows,
and (rarely) malformed rows. Parquet cases cover the Arrow types pandas writes: nullable ints,
floats with NaN, bools, strings, categoricals, naive and tz-aware timestamps, dates, decimals,
durations, a null-typed column, and index metadata.
"""
from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import random
import sys
import warnings
from pathlib import Path

NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
NEAR_NA = ["nAn", "Nan", "+nan", " nan", "nan ", "NA ", " NA", "N/a", "none", "NULL ", "<na>",
           "#N/A ", "na", "-NAN", "NaN\t"]
INTS = ["0", "1", "-1", "01", "+1", " 1", "1 ", "\t1", "1\t", "2", "42", "-0", "007",
        "9007199254740993", "9007199254740992", "9223372036854775807", "-9223372036854775808"]
BIG = ["9223372036854775808", "18446744073709551615", "18446744073709551614",
       "18446744073709551616", "-9223372036854775809", "123456789012345678901", "1_0", " 18446744073709551616"]
FLOATS = ["1.0", "1.5", "1.", "0.5", ".5", "-0.0", "0.0", "1e5", "1E5", "100000", "1e400", "-1e400",
          "1e-400", "inf", "-inf", "Infinity", "+inf", "INF", " 1.5", "1.5\t", "2.50", "2.5",
          "0.1", "0.30000000000000004", "1e", " inf", "0x10", "1e 5", "1.5.5", "+.5", "-.5"]
BOOLS = ["True", "TRUE", "true", "False", "false", "FALSE", "tRuE", " True", "yes", "0", "1"]
TEXT = ["a", "b", "A", " a", "a ", "a b", "x,y", 'say "hi"', "two\nlines", "cr\rin", "é", " ",
        "\t", "  ", 'q"', '"', "a\"b"]
POOLS = {"int": INTS, "big": BIG, "float": FLOATS, "bool": BOOLS, "text": TEXT,
         "na": NA, "near": NEAR_NA}


def quote(tok: str) -> str:
    return '"' + tok.replace('"', '""') + '"'


def needs_quote(tok: str, first_in_single: bool) -> bool:
    return (any(c in tok for c in ',"\n\r') or tok.startswith('"')
            or (first_in_single and tok.strip(" \t") == ""))


def csv_case(rng: random.Random) -> bytes:
    ncols = rng.randint(1, 3)
    names = rng.sample(["x", "y", "z", "amount", "label", "a b", "", "id"], ncols)
    # A column leans to one kind of value, with strays from the others.
    lean = [rng.choice(["int", "int", "float", "float", "bool", "text", "big", "mixed"]) for _ in names]
    # A few values per column make duplicates likely.
    palette = [rng.sample(POOLS[k], min(len(POOLS[k]), rng.randint(2, 5))) if k != "mixed" else []
               for k in lean]
    nl = rng.choice(["\n", "\n", "\r\n", "\r"])
    lines = []
    header = ",".join(quote(n) if (n == "" and ncols == 1) or rng.random() < 0.2 else n for n in names)
    lines.append(header)
    for _ in range(rng.randint(0, 16)):
        r = rng.random()
        if r < 0.08:
            lines.append(rng.choice(["", " ", "\t", "  \t"]))
            continue
        fields = []
        width = ncols
        if rng.random() < 0.07:
            width = rng.randint(1, ncols)  # short row: missing trailing fields
        if rng.random() < 0.015:
            width = ncols + 1  # malformed: more fields than the header
        for c in range(width):
            kind = lean[c] if c < ncols else "int"
            p = rng.random()
            if p < 0.08:
                tok = rng.choice(POOLS[rng.choice(["na", "near"])])
            elif p < 0.13 or kind == "mixed":
                tok = rng.choice(POOLS[rng.choice(list(POOLS))])
            elif c < ncols and palette[c] and p < 0.85:
                tok = rng.choice(palette[c])
            else:
                tok = rng.choice(POOLS[kind])
            single = width == 1
            if needs_quote(tok, single):
                fields.append(quote(tok))
            elif rng.random() < 0.25:
                fields.append(quote(tok))
            else:
                fields.append(tok)
        lines.append(",".join(fields))
    body = nl.join(lines)
    if rng.random() < 0.8:
        body += nl
    if rng.random() < 0.01:
        body += '"unterminated,1' + nl + "2,3" + nl
    data = body.encode("utf-8")
    if rng.random() < 0.15:
        data = b"\xef\xbb\xbf" + data
    return data


def parquet_case(rng: random.Random, path: Path) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = rng.randint(0, 15)
    cols = {}
    kinds = rng.sample(["int", "nint", "float", "bool", "str", "pstr", "cat", "ts", "tstz", "date",
                        "dec", "uint", "f32", "td", "null", "catint"], rng.randint(1, 3))
    pick = lambda pool: [rng.choice(pool) for _ in range(n)]
    for k in kinds:
        if k == "int":
            cols[k] = pd.Series(pick([0, 1, 2, -5, 2**53, 2**53 + 1]), dtype="int64")
        elif k == "nint":
            cols[k] = pd.Series(pick([0, 1, 2, None]), dtype="Int64")
        elif k == "float":
            cols[k] = pd.Series(pick([0.0, -0.0, 1.5, 2.0, float("nan"), float("inf")]), dtype="float64")
        elif k == "bool":
            cols[k] = pd.Series(pick([True, False]), dtype="bool")
        elif k == "str":
            cols[k] = pd.Series(pick(["a", "b", None, "", "é"]), dtype="object")
        elif k == "pstr":
            cols[k] = pd.Series(pick(["a", "b", None]), dtype="str")
        elif k == "cat":
            cols[k] = pd.Categorical(pick(["lo", "hi", None]))
        elif k == "catint":
            cols[k] = pd.Categorical(pick([1, 2, None]))
        elif k == "ts":
            cols[k] = pd.to_datetime(pd.Series(pick(["2024-01-01", "2024-01-02", None])))
        elif k == "tstz":
            tz = rng.choice(["UTC", "Etc/UTC", "America/New_York", "+02:00"])
            cols[k] = pd.to_datetime(pd.Series(pick(["2024-01-01T00:00:00Z", "2024-03-10T07:30:00Z", None])), utc=True).dt.tz_convert(tz)
        elif k == "date":
            cols[k] = pd.Series(pick([dt.date(2024, 1, 1), dt.date(2024, 1, 2), None]), dtype="object")
        elif k == "dec":
            cols[k] = pd.Series(pick([decimal.Decimal("1.10"), decimal.Decimal("2.25"), None]), dtype="object")
        elif k == "uint":
            cols[k] = pd.Series(pick([0, 1, 2**63, 2**64 - 1]), dtype="uint64")
        elif k == "f32":
            cols[k] = pd.Series(pick([0.5, 1.25, float("nan")]), dtype="float32")
        elif k == "td":
            cols[k] = pd.to_timedelta(pd.Series(pick(["1s", "2s", None])))
        elif k == "null":
            cols[k] = None
    index = None
    r = rng.random()
    if r < 0.25:
        index = pd.Index(pick([10, 11, 12]), name=None)
    elif r < 0.4:
        index = pd.Index(pick(["p", "q"]), name="key")
    frame = {k: v for k, v in cols.items() if v is not None}
    df = pd.DataFrame(frame, index=index) if frame else pd.DataFrame(index=index if index is not None else range(n))
    table = pa.Table.from_pandas(df, preserve_index=rng.choice([None, True, False]) if index is not None else rng.choice([None, False]))
    if "null" in kinds:
        if table.num_columns == 0:
            table = pa.table({"null": pa.nulls(n)})
        else:
            table = table.append_column("null", pa.nulls(table.num_rows))
    if rng.random() < 0.2 and table.num_columns:
        # Dictionary-encode a string column the way pyarrow does on request.
        for i, f in enumerate(table.schema):
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                table = table.set_column(i, f.name, table.column(i).dictionary_encode())
                break
    pq.write_table(table, path)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("format", choices=["csv", "parquet"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import pandas as pd

    warnings.simplefilter("ignore")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    with open(out / "expected.jsonl", "w") as exp:
        for i in range(a.cases):
            name = f"case-{i:05d}.{a.format}"
            path = out / name
            if a.format == "csv":
                path.write_bytes(csv_case(rng))
            else:
                parquet_case(rng, path)
            try:
                df = pd.read_csv(path) if a.format == "csv" else pd.read_parquet(path)
                no_na = df.dropna()
                kept = no_na.drop_duplicates()
                rec = {"file": name, "ok": True, "input": len(df),
                       "dropped_nulls": len(df) - len(no_na),
                       "dropped_duplicates": len(no_na) - len(kept), "kept": len(kept),
                       "dtypes": [str(t) for t in df.dtypes]}
            except Exception as e:  # noqa: BLE001 - every failure is a verdict to compare
                first = (str(e).strip().splitlines() or [""])[0]
                rec = {"file": name, "ok": False, "error": f"{type(e).__name__}: {first}"}
            exp.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
