#!/usr/bin/env python3
"""The pandas baseline for `mlops prepare`: the seed project's data_preparation step.

    python bench/pandas_prepare.py --input FILE --output DIR

    df = pd.read_csv(FILE)
    df = df.dropna()
    df = df.drop_duplicates()
    train, test = train_test_split(df, test_size=0.2, random_state=42)
    train.to_csv(DIR/train.csv, index=False); test.to_csv(DIR/test.csv, index=False)

Prints one JSON object to stdout: {"counts": {input, dropped_nulls, dropped_duplicates,
train, test}, "phases_s": {...}, "versions": {...}}; the same shape of `counts` as the
mlops manifest, so bench/prepare_bench.py can compare kept rows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="pandas baseline for mlops prepare")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True, help="output directory (created)")
    ap.add_argument("--test-size", type=float, default=0.2)
    ap.add_argument("--random-state", type=int, default=42)
    a = ap.parse_args(argv)

    t = time.monotonic()
    import pandas as pd
    import sklearn
    from sklearn.model_selection import train_test_split

    phases = {"import": time.monotonic() - t}

    def phase(name, t0):
        phases[name] = round(time.monotonic() - t0, 3)
        return time.monotonic()

    t0 = time.monotonic()
    df = pd.read_csv(a.input)
    n_input = len(df)
    t0 = phase("read_csv", t0)
    df = df.dropna()
    n_no_na = len(df)
    t0 = phase("dropna", t0)
    df = df.drop_duplicates()
    n_kept = len(df)
    t0 = phase("drop_duplicates", t0)
    train, test = train_test_split(df, test_size=a.test_size, random_state=a.random_state)
    del df
    t0 = phase("train_test_split", t0)
    os.makedirs(a.output, exist_ok=True)
    train.to_csv(os.path.join(a.output, "train.csv"), index=False)
    t0 = phase("to_csv_train", t0)
    test.to_csv(os.path.join(a.output, "test.csv"), index=False)
    phase("to_csv_test", t0)
    phases["import"] = round(phases["import"], 3)

    out = {
        "counts": {
            "input": n_input,
            "dropped_nulls": n_input - n_no_na,
            "dropped_duplicates": n_no_na - n_kept,
            "train": len(train),
            "test": len(test),
        },
        "phases_s": phases,
        "versions": {"python": sys.version.split()[0], "pandas": pd.__version__, "scikit-learn": sklearn.__version__},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
