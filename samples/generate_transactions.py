#!/usr/bin/env python3
"""Generate a synthetic credit-card fraud transactions CSV.

Columns, in this order:

    transaction_id,amount,merchant_category,hour,customer_age,distance_from_home,is_fraud

* transaction_id      string, ``tx-`` + 9 zero-padded digits (unique per original row)
* amount              float, 2 decimals (log-normal, median ~ 45)
* merchant_category   one of 10 strings; some contain a comma and are written quoted
* hour                int 0-23
* customer_age        int 18-90
* distance_from_home  float, 3 decimals, km (log-normal, median ~ 8)
* is_fraud            int 0/1, ~2 % positives, correlated with amount, distance,
                      night-time hours and category so a classifier can learn it

Dirty data, on purpose:

* ``--null-rate`` (default 0.01): that fraction of rows has one cell (random column)
  left empty or written as ``NA`` (both are pandas default NA markers).
* ``--dup-rate`` (default 0.01): that fraction of rows is a byte-exact copy of an
  earlier row (same transaction_id too, like a double ingestion).

Output is deterministic for a given (--rows or --size-mb, --seed, --null-rate,
--dup-rate). Generation is vectorised with numpy: each chunk of rows is laid out in
a fixed-width uint8 matrix padded with NUL bytes, and the NULs are squeezed out with
one boolean mask, so ~1 GB takes well under a minute on one core plus disk time.

Only numpy is needed.

Examples:
    python samples/generate_transactions.py --rows 3000 --seed 7 --out samples/data/transactions.csv
    python samples/generate_transactions.py --size-mb 1024 --out bench/out/transactions-1024mb.csv
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HEADER = b"transaction_id,amount,merchant_category,hour,customer_age,distance_from_home,is_fraud\n"
COLUMNS = HEADER.decode().strip().split(",")

# (category, relative frequency, fraud log-odds bump)
CATEGORIES = [
    ("food, grocery", 0.22, -0.6),
    ("gas_transport", 0.14, -0.2),
    ("shopping_net", 0.11, 0.9),
    ("shopping_pos", 0.10, 0.2),
    ("entertainment", 0.08, -0.3),
    ("health_fitness", 0.07, -0.5),
    ("travel, hotels", 0.06, 0.6),
    ("home", 0.09, -0.4),
    ("kids_pets", 0.07, -0.4),
    ("misc, online", 0.06, 1.0),
]

CHUNK_ROWS = 1 << 20  # rows generated per chunk (fixed, so output does not depend on it)
FRAUD_TARGET = 0.02

# Fixed-width layout of one row in the chunk matrix. Each numeric field is written
# right-aligned-without-leading-zeros: unused leading positions stay 0 (NUL) and are
# squeezed out later. Widths are maxima.
ID_DIGITS = 9
AMOUNT_INT_DIGITS = 6  # amounts are capped at 999999.99
DIST_INT_DIGITS = 5  # distances are capped at 99999.999


def _encode_categories() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    texts = []
    for name, _, _ in CATEGORIES:
        t = name
        if "," in t or '"' in t or "\n" in t:
            t = '"' + t.replace('"', '""') + '"'
        texts.append(t.encode())
    width = max(len(t) for t in texts)
    table = np.zeros((len(texts), width), dtype=np.uint8)
    for i, t in enumerate(texts):
        table[i, : len(t)] = np.frombuffer(t, dtype=np.uint8)
    probs = np.array([p for _, p, _ in CATEGORIES], dtype=np.float64)
    probs /= probs.sum()
    bumps = np.array([b for _, _, b in CATEGORIES], dtype=np.float64)
    return table, probs, bumps


CAT_TABLE, CAT_PROBS, CAT_BUMPS = _encode_categories()

# Field slots: (name, width). A comma follows every field except the last, then '\n'.
FIELD_WIDTHS = [
    ("transaction_id", 3 + ID_DIGITS),
    ("amount", AMOUNT_INT_DIGITS + 3),
    ("merchant_category", CAT_TABLE.shape[1]),
    ("hour", 2),
    ("customer_age", 2),
    ("distance_from_home", DIST_INT_DIGITS + 4),
    ("is_fraud", 2),  # 1 digit used; 2 slots so "NA" fits
]
FIELD_START = {}
_pos = 0
for _name, _w in FIELD_WIDTHS:
    FIELD_START[_name] = _pos
    _pos += _w + 1  # + separator (',' or '\n')
ROW_WIDTH = _pos
FIELD_WIDTH = dict(FIELD_WIDTHS)


def _write_uint(buf: np.ndarray, start: int, ndigits: int, v: np.ndarray) -> None:
    """Write non-negative ints right-aligned in buf[:, start:start+ndigits], no leading zeros."""
    v = v.astype(np.int64, copy=False)
    for k in range(ndigits):
        p = 10 ** (ndigits - 1 - k)
        d = (v // p) % 10
        col = (d + 48).astype(np.uint8)
        if k < ndigits - 1:
            col[v < p] = 0  # leading zero -> filler
        buf[:, start + k] = col


def _write_fixed_uint(buf: np.ndarray, start: int, ndigits: int, v: np.ndarray) -> None:
    """Write non-negative ints zero-padded to ndigits."""
    v = v.astype(np.int64, copy=False)
    for k in range(ndigits):
        p = 10 ** (ndigits - 1 - k)
        buf[:, start + k] = ((v // p) % 10 + 48).astype(np.uint8)


def _write_decimal(buf: np.ndarray, start: int, int_digits: int, frac_digits: int, scaled: np.ndarray) -> None:
    """scaled = value * 10**frac_digits as int; writes '<int>.<frac>' right-aligned."""
    scale = 10**frac_digits
    _write_uint(buf, start, int_digits, scaled // scale)
    buf[:, start + int_digits] = ord(".")
    _write_fixed_uint(buf, start + int_digits + 1, frac_digits, scaled % scale)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _features(rng: np.random.Generator, n: int):
    # amount: log-normal around ~45, heavy right tail
    amount_cents = np.minimum(np.round(rng.lognormal(np.log(45.0), 1.0, n) * 100), 99_999_999).astype(np.int64)
    amount_cents = np.maximum(amount_cents, 1)
    cat = rng.choice(len(CATEGORIES), size=n, p=CAT_PROBS)
    # hour: day-heavy distribution
    hour_w = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 7, 7, 7, 8, 8, 7, 6, 5, 4, 3], dtype=np.float64)
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    age = np.minimum(np.round(18 + rng.gamma(3.0, 9.0, n)), 90).astype(np.int64)
    dist_milli = np.minimum(np.round(rng.lognormal(np.log(8.0), 1.1, n) * 1000), 99_999_999).astype(np.int64)
    return amount_cents, cat, hour, age, dist_milli


def _fraud_logit(amount_cents, cat, hour, age, dist_milli) -> np.ndarray:
    la = (np.log(amount_cents / 100.0) - np.log(45.0)) / 1.0  # standardised log amount
    ld = (np.log(np.maximum(dist_milli, 1) / 1000.0) - np.log(8.0)) / 1.1
    night = ((hour <= 4) | (hour >= 23)).astype(np.float64)
    old = (age >= 70).astype(np.float64)
    return 1.4 * la + 1.0 * ld + 1.8 * night + 0.4 * old + CAT_BUMPS[cat]


def _calibrate_intercept() -> float:
    """Intercept giving ~FRAUD_TARGET positives (fixed internal seed -> deterministic)."""
    rng = np.random.default_rng(12345)
    logit = _fraud_logit(*_features(rng, 400_000))
    lo, hi = -20.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() > FRAUD_TARGET:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _chunk(rng: np.random.Generator, first_id: int, n: int, intercept: float, null_rate: float, dup_rate: float) -> np.ndarray:
    """Return an (n, ROW_WIDTH) uint8 matrix; NUL bytes are filler."""
    amount_cents, cat, hour, age, dist_milli = _features(rng, n)
    fraud = (rng.random(n) < _sigmoid(_fraud_logit(amount_cents, cat, hour, age, dist_milli) + intercept)).astype(np.int64)

    buf = np.zeros((n, ROW_WIDTH), dtype=np.uint8)
    s = FIELD_START["transaction_id"]
    buf[:, s : s + 3] = np.frombuffer(b"tx-", dtype=np.uint8)
    _write_fixed_uint(buf, s + 3, ID_DIGITS, np.arange(first_id, first_id + n, dtype=np.int64))
    _write_decimal(buf, FIELD_START["amount"], AMOUNT_INT_DIGITS, 2, amount_cents)
    s = FIELD_START["merchant_category"]
    buf[:, s : s + CAT_TABLE.shape[1]] = CAT_TABLE[cat]
    _write_uint(buf, FIELD_START["hour"], 2, hour)
    _write_uint(buf, FIELD_START["customer_age"], 2, age)
    _write_decimal(buf, FIELD_START["distance_from_home"], DIST_INT_DIGITS, 3, dist_milli)
    _write_uint(buf, FIELD_START["is_fraud"], 2, fraud)
    for name, w in FIELD_WIDTHS[:-1]:
        buf[:, FIELD_START[name] + w] = ord(",")
    buf[:, ROW_WIDTH - 1] = ord("\n")

    # Nulls: one random cell per affected row, empty or "NA".
    if null_rate > 0:
        rows = np.flatnonzero(rng.random(n) < null_rate)
        cols = rng.integers(0, len(FIELD_WIDTHS), size=rows.size)
        as_na = rng.random(rows.size) < 0.5
        for ci, (name, w) in enumerate(FIELD_WIDTHS):
            sel = cols == ci
            r = rows[sel]
            s = FIELD_START[name]
            buf[r, s : s + w] = 0
            r_na = r[as_na[sel]]
            buf[r_na, s] = ord("N")
            buf[r_na, s + 1] = ord("A")

    # Exact duplicates of an earlier original row of this chunk.
    if dup_rate > 0 and n > 1:
        dup = rng.random(n) < dup_rate
        dup[0] = False
        originals = np.flatnonzero(~dup)
        dups = np.flatnonzero(dup)
        n_before = np.searchsorted(originals, dups)  # originals with index < dup index (>= 1)
        pick = (rng.random(dups.size) * n_before).astype(np.int64)
        buf[dups] = buf[originals[pick]]
    return buf


def generate(out, rows: int | None, size_bytes: int | None, seed: int, null_rate: float, dup_rate: float, quiet: bool = False) -> tuple[int, int]:
    """Write the CSV to path `out`; returns (data rows, bytes)."""
    if (rows is None) == (size_bytes is None):
        raise ValueError("exactly one of rows / size_bytes")
    rng = np.random.default_rng(seed)
    intercept = _calibrate_intercept()
    tmp = out + ".tmp"
    written_rows = 0
    written_bytes = 0
    t0 = time.monotonic()
    with open(tmp, "wb", buffering=0) as f:
        f.write(HEADER)
        written_bytes += len(HEADER)
        while True:
            if rows is not None:
                n = min(CHUNK_ROWS, rows - written_rows)
                if n <= 0:
                    break
            else:
                if written_bytes >= size_bytes:
                    break
                n = CHUNK_ROWS
            buf = _chunk(rng, written_rows, n, intercept, null_rate, dup_rate)
            if size_bytes is not None:
                lens = np.count_nonzero(buf, axis=1)
                cum = np.cumsum(lens)
                need = size_bytes - written_bytes
                if cum[-1] > need:
                    n = int(np.searchsorted(cum, need)) + 1  # smallest n with cum >= need
                    buf = buf[:n]
            data = buf[buf != 0].tobytes()  # row-major: squeezes filler, keeps order
            f.write(data)
            written_rows += n
            written_bytes += len(data)
            if not quiet:
                el = time.monotonic() - t0
                print(f"\r{written_rows:,} rows, {written_bytes / 2**20:,.0f} MiB, {el:.1f}s", end="", file=sys.stderr)
    os.replace(tmp, out)
    if not quiet:
        print(file=sys.stderr)
    return written_rows, written_bytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--rows", type=int, help="number of data rows (excluding header)")
    g.add_argument("--size-mb", type=float, help="stop at the first row that brings the file to >= this many MiB")
    ap.add_argument("--out", required=True, help="output CSV path (written atomically via OUT.tmp)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-rate", type=float, default=0.01, help="fraction of rows with one null cell (default 0.01)")
    ap.add_argument("--dup-rate", type=float, default=0.01, help="fraction of rows that duplicate an earlier row (default 0.01)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    for name in ("null_rate", "dup_rate"):
        v = getattr(a, name)
        if not 0.0 <= v < 1.0:
            ap.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    if a.rows is not None and a.rows < 0:
        ap.error("--rows must be >= 0")
    if a.rows is not None and a.rows >= 10**ID_DIGITS:
        ap.error(f"--rows must be < {10**ID_DIGITS}")
    if a.size_mb is not None and a.size_mb <= 0:
        ap.error("--size-mb must be > 0")
    d = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(d, exist_ok=True)
    t0 = time.monotonic()
    size_bytes = None if a.size_mb is None else int(a.size_mb * 2**20)
    n, b = generate(a.out, a.rows, size_bytes, a.seed, a.null_rate, a.dup_rate, a.quiet)
    if not a.quiet:
        print(f"wrote {a.out}: {n:,} rows, {b:,} bytes in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
