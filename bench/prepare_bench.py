#!/usr/bin/env python3
"""Benchmark `mlops prepare` against the pandas baseline and a plain `cp`.

    .venv/bin/python bench/prepare_bench.py --mlops target/release/mlops [--size-mb 1024] [--repeat 1]

Generates (or reuses, cached under bench/out/) a synthetic transactions CSV with
samples/generate_transactions.py, then times, on that same file and disk, each as its
own child process:

  mlops   `mlops prepare --config samples/pipeline.yaml --dataset transactions
           --input CSV --output bench/out/mlops`
  pandas  bench/pandas_prepare.py (read_csv, dropna, drop_duplicates,
           train_test_split(test_size=0.2, random_state=42), to_csv x2)
  cp      `cp CSV bench/out/cp/` -- the I/O ceiling

For each: wall time, throughput (input bytes / wall), peak RSS (ru_maxrss from
os.wait4 of the child, KiB on Linux) and user/sys CPU. Then the ratio mlops/pandas
against the target (>= 5x pandas throughput at <= 1/4 of its peak memory), and a check
that mlops' kept rows (train + test from its manifest) equal pandas' kept rows.

Prints a markdown table and writes bench/out/results.json. Exit status: 0 when every
run succeeded and the kept-row counts agree; 1 when a run failed or the counts differ
(the target itself is reported, not enforced); 2 on usage errors (e.g. --mlops missing).

Only the standard library is needed here; the generator needs numpy and the pandas
baseline pandas + scikit-learn, run with --python (default: this interpreter).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "samples" / "generate_transactions.py"
PANDAS_PREPARE = ROOT / "bench" / "pandas_prepare.py"
TARGET_SPEEDUP = 5.0
TARGET_MEM_FRACTION = 0.25
MB = 1_000_000  # throughput unit (decimal megabytes)
MiB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def die(msg: str, code: int = 2):
    print(f"prepare_bench: error: {msg}", file=sys.stderr)
    sys.exit(code)


# --------------------------------------------------------------------------- input

def ensure_input(a) -> tuple[Path, dict]:
    """Generate or reuse the cached CSV; the sidecar .json records how it was made."""
    name = f"transactions-{a.size_mb:g}mb-seed{a.seed}-n{a.null_rate:g}-d{a.dup_rate:g}.csv"
    csv = a.out_dir / name
    meta_path = csv.with_suffix(".json")
    want = {
        "size_mb": a.size_mb, "seed": a.seed, "null_rate": a.null_rate, "dup_rate": a.dup_rate,
        "generator_sha256": hashlib.sha256(GENERATOR.read_bytes()).hexdigest(),
    }
    if csv.exists() and meta_path.exists() and not a.regenerate:
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("params") == want and meta.get("bytes") == csv.stat().st_size:
            log(f"reusing {csv.relative_to(ROOT) if csv.is_relative_to(ROOT) else csv} ({csv.stat().st_size / MiB:,.0f} MiB)")
            return csv, meta
        log(f"cached {csv.name} is stale; regenerating")
    cmd = [a.python, str(GENERATOR), "--size-mb", f"{a.size_mb:g}", "--seed", str(a.seed),
           "--null-rate", str(a.null_rate), "--dup-rate", str(a.dup_rate), "--out", str(csv)]
    log("generating: " + " ".join(cmd))
    t0 = time.monotonic()
    r = subprocess.run(cmd)
    if r.returncode != 0:
        die(f"generator failed (exit {r.returncode})", 1)
    gen_s = time.monotonic() - t0
    with open(csv, "rb") as f:
        rows = sum(buf.count(b"\n") for buf in iter(lambda: f.read(MiB), b"")) - 1
    meta = {"params": want, "bytes": csv.stat().st_size, "rows": rows, "generate_s": round(gen_s, 2)}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    log(f"generated {rows:,} rows, {meta['bytes'] / MiB:,.0f} MiB in {gen_s:.1f}s")
    return csv, meta


# --------------------------------------------------------------------------- runs

def run_child(cmd: list[str], stdout_path: Path, stderr_path: Path) -> dict:
    """Run cmd as a child; wall time and rusage from os.wait4.

    Linux keeps the RSS high-water mark across execve, and the child starts as a
    (v)fork of this process, so ru_maxrss is max(this process' peak RSS, the child's own
    peak). Our peak is recorded as rss_floor_mib: a child reading at or below it really
    used that much or less (cp does), anything above it is exact."""
    floor_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL)
        except OSError as e:
            return {"rc": None, "error": f"cannot start {cmd[0]}: {e}"}
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    return {
        "rc": p.returncode,
        "wall_s": wall,
        "peak_rss_mib": ru.ru_maxrss / 1024.0,  # KiB on Linux
        "rss_floor_mib": floor_kib / 1024.0,
        "peak_rss_at_floor": ru.ru_maxrss <= floor_kib,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
    }


def tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def parse_counts(stdout_path: Path, manifest_path: Path | None) -> dict | None:
    """counts from the last JSON object on stdout (or manifest.json as a fallback)."""
    texts = []
    try:
        texts.append(stdout_path.read_text(errors="replace"))
    except OSError:
        pass
    if manifest_path is not None and manifest_path.exists():
        texts.append(manifest_path.read_text(errors="replace"))
    for text in texts:
        candidates = [text.strip()] + [ln.strip() for ln in reversed(text.splitlines()) if ln.strip().startswith("{")]
        for c in candidates:
            try:
                obj = json.loads(c)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("counts"), dict):
                return obj["counts"]
    return None


def kept(counts: dict | None) -> int | None:
    if not counts:
        return None
    try:
        return int(counts["train"]) + int(counts["test"])
    except (KeyError, TypeError, ValueError):
        return None


def drop_caches_writeback() -> None:
    """Flush dirty pages of the previous run so they are not written during the next."""
    try:
        os.sync()
    except AttributeError:
        subprocess.run(["sync"])


def warm_read(path: Path) -> float:
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while f.read(MiB):
            pass
    return time.monotonic() - t0


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark mlops prepare vs pandas vs cp.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--mlops", help="path to the mlops binary (e.g. target/release/mlops)")
    ap.add_argument("--size-mb", type=float, default=1024, help="input CSV size in MiB")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the median is reported")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--skip-mlops", action="store_true", help="benchmark only pandas and cp")
    ap.add_argument("--skip-cp", action="store_true")
    ap.add_argument("--config", default=str(ROOT / "samples" / "pipeline.yaml"))
    ap.add_argument("--dataset", default="transactions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-rate", type=float, default=0.01)
    ap.add_argument("--dup-rate", type=float, default=0.01)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the generator and pandas baseline")
    ap.add_argument("--regenerate", action="store_true", help="ignore a cached input CSV")
    ap.add_argument("--keep-outputs", action="store_true", help="keep train/test/copies after each run")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed read that puts the input in the page cache")
    a = ap.parse_args(argv)

    if a.repeat < 1:
        die("--repeat must be >= 1")
    if a.size_mb <= 0:
        die("--size-mb must be > 0")
    a.out_dir = a.out_dir.resolve()

    # Check everything that can fail cheaply before generating a gigabyte.
    mlops = None
    if not a.skip_mlops:
        if not a.mlops:
            die("--mlops BIN is required (path to the built binary, e.g. target/release/mlops); "
                "or pass --skip-mlops to time only pandas and cp")
        found = shutil.which(a.mlops) if os.sep not in a.mlops else (a.mlops if Path(a.mlops).exists() else None)
        if not found:
            die(f"mlops binary not found: {a.mlops!r} (build it with `cargo build --release` "
                "and pass --mlops target/release/mlops, or use --skip-mlops)")
        if not os.access(found, os.X_OK) or Path(found).is_dir():
            die(f"mlops binary is not an executable file: {found}")
        mlops = str(Path(found).resolve())
        if not Path(a.config).is_file():
            die(f"config not found: {a.config}")
    if not a.skip_pandas:
        r = subprocess.run([a.python, "-c", "import pandas, sklearn"], capture_output=True, text=True)
        if r.returncode != 0:
            die(f"{a.python} cannot import pandas/scikit-learn (run scripts/venv.sh, use .venv/bin/python "
                f"or --python): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    if a.skip_mlops and a.skip_pandas and a.skip_cp:
        die("nothing to run")

    a.out_dir.mkdir(parents=True, exist_ok=True)
    csv, meta = ensure_input(a)
    size = csv.stat().st_size

    tools = []
    if not a.skip_cp:
        cp_dir = a.out_dir / "cp"
        tools.append(("cp", lambda: ["cp", str(csv), str(cp_dir / "input.csv")], cp_dir))
    if mlops:
        ml_dir = a.out_dir / "mlops"
        tools.append(("mlops", lambda: [mlops, "prepare", "--config", a.config, "--dataset", a.dataset,
                                        "--input", str(csv), "--output", str(ml_dir)], ml_dir))
    if not a.skip_pandas:
        pd_dir = a.out_dir / "pandas"
        tools.append(("pandas", lambda: [a.python, str(PANDAS_PREPARE), "--input", str(csv), "--output", str(pd_dir)], pd_dir))

    if not a.no_warmup:
        log(f"warm-up read of the input: {warm_read(csv):.1f}s")

    runs: dict[str, list[dict]] = {name: [] for name, _, _ in tools}
    counts: dict[str, dict | None] = {}
    failed = False
    for i in range(a.repeat):
        for name, mk, d in tools:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            drop_caches_writeback()
            so, se = a.out_dir / f"{name}.stdout", a.out_dir / f"{name}.stderr"
            cmd = mk()
            log(f"[{i + 1}/{a.repeat}] {name}: {' '.join(cmd)}")
            r = run_child(cmd, so, se)
            if r.get("rc") != 0:
                failed = True
                log(f"  FAILED ({r.get('error') or 'exit ' + str(r['rc'])}); stderr tail:\n{tail(se)}")
            else:
                log(f"  {r['wall_s']:.2f}s, peak RSS {r['peak_rss_mib']:,.0f} MiB")
                if name in ("mlops", "pandas"):
                    c = parse_counts(so, d / "manifest.json" if name == "mlops" else None)
                    if c is None:
                        log(f"  WARNING: no counts found in {name}'s stdout" + (" or manifest.json" if name == "mlops" else ""))
                    counts[name] = c
                    r["counts"] = c
                    if name == "pandas":
                        try:
                            r["phases_s"] = json.loads(so.read_text().strip().splitlines()[-1]).get("phases_s")
                        except (ValueError, IndexError):
                            pass
            runs[name].append(r)
            if not a.keep_outputs:
                shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ summary
    summary = {}
    for name, rs in runs.items():
        ok = [r for r in rs if r.get("rc") == 0]
        if not ok:
            summary[name] = None
            continue
        wall = statistics.median(r["wall_s"] for r in ok)
        summary[name] = {
            "runs_ok": len(ok),
            "wall_s": round(wall, 3),
            "throughput_mb_s": round(size / MB / wall, 1),
            "peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in ok), 1),
            "peak_rss_at_floor": all(r["peak_rss_at_floor"] for r in ok),
            "user_s": round(statistics.median(r["user_s"] for r in ok), 2),
            "sys_s": round(statistics.median(r["sys_s"] for r in ok), 2),
        }

    ratio = None
    if summary.get("mlops") and summary.get("pandas"):
        m, p = summary["mlops"], summary["pandas"]
        speedup = p["wall_s"] / m["wall_s"]
        mem = m["peak_rss_mib"] / p["peak_rss_mib"]
        ratio = {
            "throughput_x": round(speedup, 2),
            "memory_fraction": round(mem, 3),
            "target_throughput_x": TARGET_SPEEDUP,
            "target_memory_fraction": TARGET_MEM_FRACTION,
            "throughput_target_met": speedup >= TARGET_SPEEDUP,
            "memory_target_met": mem <= TARGET_MEM_FRACTION,
        }
    rows_check = None
    if "mlops" in counts or "pandas" in counts:
        km, kp = kept(counts.get("mlops")), kept(counts.get("pandas"))
        rows_check = {"mlops_kept": km, "pandas_kept": kp,
                      "match": (km == kp) if (km is not None and kp is not None) else None,
                      "mlops_counts": counts.get("mlops"), "pandas_counts": counts.get("pandas")}
        if rows_check["match"] is False:
            failed = True

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    results = {
        "input": {"path": str(csv), "bytes": size, "mib": round(size / MiB, 1), "rows": meta.get("rows"),
                  "generator": meta.get("params"), "generate_s": meta.get("generate_s")},
        "repeat": a.repeat,
        "summary": summary,
        "ratio_mlops_vs_pandas": ratio,
        "rows_check": rows_check,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": load, "platform": platform.platform(),
                    "python": platform.python_version()},
        "commands": {name: mk() for name, mk, _ in tools},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (a.out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    # ------------------------------------------------------------------ table
    nrows = f"{meta['rows']:,}" if meta.get("rows") is not None else "?"
    loadtxt = f", load avg {load[0]:.2f}" if load else ""
    print(f"\nInput: {csv.name}, {size / MiB:,.0f} MiB ({size:,} bytes), {nrows} rows; "
          f"median of {a.repeat} run(s); {os.cpu_count()} CPUs{loadtxt}\n")
    print("| run | wall (s) | throughput (MB/s) | peak RSS (MiB) | user+sys CPU (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _ in tools:
        s = summary.get(name)
        if s is None:
            print(f"| {name} | FAILED | | | |")
        else:
            rss = ("<= " if s["peak_rss_at_floor"] else "") + f"{s['peak_rss_mib']:,.0f}"
            print(f"| {name} | {s['wall_s']:.2f} | {s['throughput_mb_s']:,.1f} | {rss} | {s['user_s'] + s['sys_s']:.1f} |")
    if any(s and s["peak_rss_at_floor"] for s in summary.values()):
        print("\n(<= : the child's peak RSS did not exceed this script's own, which Linux reports as its floor)")
    if ratio:
        print(f"\nmlops vs pandas: throughput {ratio['throughput_x']:.2f}x (target >= {TARGET_SPEEDUP:g}x: "
              f"{'met' if ratio['throughput_target_met'] else 'NOT met'}), peak memory "
              f"{ratio['memory_fraction']:.3f} of pandas (target <= {TARGET_MEM_FRACTION:g}: "
              f"{'met' if ratio['memory_target_met'] else 'NOT met'})")
    if rows_check:
        parts = [f"{n} {rows_check[n + '_kept']:,}" for n in ("mlops", "pandas") if rows_check[n + "_kept"] is not None]
        print("kept rows (train+test): " + ", ".join(parts)
              + {True: " -- match", False: " -- MISMATCH", None: ""}[rows_check["match"]])
        if rows_check["match"] is False:
            print(f"  mlops counts:  {rows_check['mlops_counts']}\n  pandas counts: {rows_check['pandas_counts']}")
    print(f"\nwrote {a.out_dir / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
