#!/usr/bin/env python3
"""Reference row counts from pandas, for the `mlops prepare` parity test.

    tests/pandas_count.py FILE [FILE...]
    tests/pandas_count.py --json FILE [FILE...]

For each FILE prints one tab-separated line:

    <path>\t<kept>\t<input>\t<dropped_nulls>\t<dropped_duplicates>

    input              = len(pd.read_csv(path))
    kept               = len(pd.read_csv(path).dropna().drop_duplicates())
    dropped_nulls      = input - len(df.dropna())
    dropped_duplicates = len(df.dropna()) - kept

so kept == input - dropped_nulls - dropped_duplicates, matching the manifest's
`counts` (kept == train + test). With --json each line is instead a JSON object with
keys path, kept, input, dropped_nulls, dropped_duplicates.

Exit status: 0 when every file was read; 1 when any file could not be read/parsed
(its error goes to stderr as `pandas_count: <path>: <error>` and the other files are
still reported); 2 on usage errors or when pandas is not importable.
"""
from __future__ import annotations

import json
import sys


def count(path: str) -> dict:
    import pandas as pd

    df = pd.read_csv(path)
    no_na = df.dropna()
    kept = no_na.drop_duplicates()
    return {
        "path": path,
        "kept": len(kept),
        "input": len(df),
        "dropped_nulls": len(df) - len(no_na),
        "dropped_duplicates": len(no_na) - len(kept),
    }


def main(argv: list[str]) -> int:
    as_json = False
    paths = []
    for a in argv:
        if a == "--json":
            as_json = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a.startswith("--"):
            print(f"pandas_count: unknown option {a}", file=sys.stderr)
            return 2
        else:
            paths.append(a)
    if not paths:
        print("usage: pandas_count.py [--json] FILE [FILE...]", file=sys.stderr)
        return 2
    try:
        import pandas  # noqa: F401
    except ImportError as e:
        print(f"pandas_count: cannot import pandas ({e}); run scripts/venv.sh and use .venv/bin/python", file=sys.stderr)
        return 2
    failed = 0
    for p in paths:
        try:
            c = count(p)
        except Exception as e:  # noqa: BLE001 - report any read/parse failure per file
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(f"pandas_count: {p}: {type(e).__name__}: {first}", file=sys.stderr)
            failed += 1
            continue
        if as_json:
            print(json.dumps(c), flush=True)
        else:
            print(f"{c['path']}\t{c['kept']}\t{c['input']}\t{c['dropped_nulls']}\t{c['dropped_duplicates']}", flush=True)
    if failed:
        print(f"pandas_count: {failed} of {len(paths)} file(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
