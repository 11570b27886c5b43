#!/usr/bin/env python3
"""Cold start of the packaged functions against a local Lambda Runtime API.

Serves the Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) on a
loopback port, starts a function's `bootstrap` the way Lambda does (AWS_LAMBDA_RUNTIME_API and the
AWS_LAMBDA_FUNCTION_* variables), hands it one event and measures, per run: the time from
process start to the function's response (init + first invocation) and the process's peak RSS.
The events are ones each function acknowledges without calling AWS, so the figure is the
function's own start-up, client construction and handling, not network latency.

    .venv/bin/python bench/cold_start.py --lambda-dir target/lambda [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sqs_batch(body: dict) -> dict:
    return {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": json.dumps(body), "attributes": {},
                         "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"}]}


S3_ELSEWHERE = {"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": "b"}, "object": {"key": "not-a-dataset/x.csv", "etag": "e", "size": 1}}}
NOT_OURS = {"version": "0", "id": "e", "detail-type": "Something", "source": "other.app", "detail": {}}
# A version of a model without a validation block: validate-model answers without calling MLflow.
NO_GATE = {"version": "0", "id": "e", "detail-type": "ModelVersionCreated", "source": "mlops.registry-poller",
           "detail": {"schema_version": "1", "run_id": "run-1", "model": "not-in-the-config", "version": "1",
                      "source": "models:/m-1", "delivery_id": "d"}}

FUNCTIONS = {
    "data-arrival": (sqs_batch(S3_ELSEWHERE), {"ARTIFACT_BUCKET": "a", "EVENT_BUS_NAME": "mlops",
                                               "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    "ledger": (sqs_batch(NOT_OURS), {"ARTIFACT_BUCKET": "a"}),
    "launch-training": (sqs_batch(NOT_OURS), {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                              "CLUSTER_NAME": "ml-prod", "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    "validate-model": (sqs_batch(NO_GATE), {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                            "ARTIFACT_BUCKET": "a", "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
}


class RuntimeApi(BaseHTTPRequestHandler):
    event: bytes = b"{}"
    done = threading.Event()
    response: bytes = b""
    served = False

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            if RuntimeApi.served:  # the function waits for its next event until it is stopped
                time.sleep(30)
            RuntimeApi.served = True
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(RuntimeApi.event)
        else:
            self.send_response(404)
            self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        RuntimeApi.response = self.rfile.read(length)
        RuntimeApi.failed = "/error" in self.path
        self.send_response(202)
        self.end_headers()
        RuntimeApi.done.set()


def run_once(bootstrap: Path, event: dict, env: dict) -> tuple[float, int, str]:
    RuntimeApi.event = json.dumps(event).encode()
    RuntimeApi.done = threading.Event()
    RuntimeApi.served = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    full_env = {"PATH": os.environ.get("PATH", ""), "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_port}",
                "AWS_LAMBDA_FUNCTION_NAME": bootstrap.parent.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "RUST_LOG": "warn", **env}
    start = time.perf_counter()
    proc = subprocess.Popen([str(bootstrap)], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = RuntimeApi.done.wait(30)
    elapsed = time.perf_counter() - start
    proc.terminate()
    _, _, rusage = os.wait4(proc.pid, 0)
    server.shutdown()
    if not ok:
        raise SystemExit(f"{bootstrap}: no response within 30 s; stderr: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, rusage.ru_maxrss, RuntimeApi.response.decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lambda-dir", required=True, type=Path, help="cargo lambda build's --lambda-dir (holds <fn>/bootstrap)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print("| function | bootstrap (MB) | cold start to first response, median of %d (ms) | peak RSS (MiB) | response |" % args.runs)
    print("|---|---:|---:|---:|---|")
    for name, (event, env) in FUNCTIONS.items():
        bootstrap = args.lambda_dir / name / "bootstrap"
        if not bootstrap.exists():
            print(f"| {name} | missing ({bootstrap}) | | | |")
            continue
        times, rss, resp = [], [], ""
        for _ in range(args.runs):
            t, r, resp = run_once(bootstrap, event, env)
            times.append(t * 1000)
            rss.append(r / 1024)
        print(f"| {name} | {bootstrap.stat().st_size / 1e6:.1f} | {statistics.median(times):.1f} | {max(rss):.1f} | `{resp[:60]}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
