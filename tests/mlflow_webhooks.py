"""Captures real MLflow webhook deliveries.

Starts an MLflow server (sqlite backend, the webhook settings of CONTRACTS §11) and a loopback
receiver, registers a webhook with a known secret for the four model-registry events the
pipeline handles, then drives the registry over REST: a run tagged `mlops.run_id`, a model
version from it, a tag, an alias set and deleted. Every delivery MLflow sends is written to
OUT as `<n>.json` = {"headers": {...}, "body": "<raw body as text>"}, in arrival order.

    python tests/mlflow_webhooks.py --out DIR [--secret S]

The integration test runs it and verifies each delivery with the Rust code; the fixtures in
events/samples/inbound/mlflow-*.json were captured with it (secret "fixture-secret").
"""

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, query=None):
    url = f"{base}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--secret", default="fixture-secret")
    ap.add_argument("--expect", type=int, default=4, help="deliveries to wait for")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    received = []
    lock = threading.Lock()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            with lock:
                received.append({"headers": dict(self.headers.items()), "body": body.decode()})
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    rport = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", rport), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    work = Path(tempfile.mkdtemp(prefix="mlflow-webhooks-"))
    port = free_port()
    env = dict(
        os.environ,
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY="bWxvcHMtbG9jYWwtZGV2LXN0YWNrLWtleS0zMmJ5dGU=",
        MLFLOW_WEBHOOK_CACHE_TTL="0",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(work / "mlflow.log", "wb")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
         "--serve-artifacts", "--artifacts-destination", str(work / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"mlflow server did not start; see {work}/mlflow.log")
                time.sleep(0.25)
        call(base, "POST", "webhooks", {
            "name": "mlops-capture",
            "url": f"http://127.0.0.1:{rport}/webhook",
            "events": [
                {"entity": "MODEL_VERSION", "action": "CREATED"},
                {"entity": "MODEL_VERSION_TAG", "action": "SET"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "DELETED"},
            ],
            "secret": args.secret,
        })
        exp = call(base, "POST", "experiments/create", {"name": "fraud-detector"})["experiment_id"]
        run = call(base, "POST", "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
        call(base, "POST", "runs/set-tag", {"run_id": run, "key": "mlops.run_id",
                                           "value": "run-20261203-fixture"})
        call(base, "POST", "registered-models/create", {"name": "fraud-detector"})
        mv = call(base, "POST", "model-versions/create", {
            "name": "fraud-detector", "source": f"runs:/{run}/model", "run_id": run,
            "tags": [{"key": "mlops.run_id", "value": "run-20261203-fixture"}],
        })["model_version"]
        version = mv["version"]
        # Each step waits for its delivery, so the files come in a known order.
        steps = [
            lambda: None,
            lambda: call(base, "POST", "model-versions/set-tag", {
                "name": "fraud-detector", "version": version, "key": "owner", "value": "ml-platform"}),
            lambda: call(base, "POST", "registered-models/alias", {
                "name": "fraud-detector", "alias": "champion", "version": version}),
            lambda: call(base, "DELETE", "registered-models/alias", {
                "name": "fraud-detector", "alias": "champion"}),
        ]
        for i, step in enumerate(steps[: args.expect]):
            step()
            deadline = time.time() + 30
            while True:
                with lock:
                    if len(received) > i:
                        break
                if time.time() > deadline:
                    sys.exit(f"delivery {i + 1} did not arrive; see {work}/mlflow.log")
                time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()
    for i, d in enumerate(received):
        (out / f"{i + 1}.json").write_text(json.dumps(d, indent=2) + "\n")
    print(json.dumps({"deliveries": len(received), "secret": args.secret}))


if __name__ == "__main__":
    main()
