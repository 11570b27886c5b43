#!/usr/bin/env python3
"""Cold start of the packaged functions against a local Lambda Runtime API.

Serves the Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) on a
loopback port, starts a function's `bootstrap` the way Lambda does (AWS_LAMBDA_RUNTIME_API and the
AWS_LAMBDA_FUNCTION_* variables), hands it one event and measures, per run: the time from
process start to the function's response (init + first invocation) and the process's peak RSS.
The events are ones each function acknowledges without calling AWS, so the figure is the
function's own start-up, client construction and handling, not network latency; the one
exception is mlflow-webhook, which reads its secret from Secrets Manager at cold start (from a moto
server this script starts) and then answers a correctly signed delivery for a model outside the
config (202). registry-poller ticks over a config without models.

    .venv/bin/python bench/cold_start.py --lambda-dir target/lambda [--runs 5]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import socket
import tempfile
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

WEBHOOK_SECRET = b"cold-start-secret"
NO_MODELS = Path(tempfile.mkdtemp()) / "no-models.yaml"
NO_MODELS.write_text("datasets: {}\nmodels: {}\n")


def function_url_request() -> dict:
    """A Function URL invocation (payload format 2.0) carrying a signed MLflow delivery."""
    body = json.dumps({"entity": "model_version", "action": "created", "timestamp": "2026-12-03T00:00:00Z",
                       "data": {"name": "not-in-the-config", "version": "1", "source": "models:/m-1",
                                "run_id": "r", "tags": {}}})
    delivery, ts = "cold-start-1", str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET, f"{delivery}.{ts}.{body}".encode(), hashlib.sha256).digest()
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"content-type": "application/json", "x-mlflow-delivery-id": delivery,
                        "x-mlflow-timestamp": ts, "x-mlflow-signature": "v1," + base64.b64encode(mac).decode()},
            "requestContext": {"accountId": "anonymous", "apiId": "cold", "domainName": "cold.lambda-url.us-east-1.on.aws",
                               "domainPrefix": "cold", "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                                                "sourceIp": "127.0.0.1", "userAgent": "MLflow"},
                               "requestId": "req-1", "routeKey": "$default", "stage": "$default",
                               "time": "03/Dec/2026:00:00:00 +0000", "timeEpoch": int(time.time() * 1000)},
            "body": body, "isBase64Encoded": False}


def github_ping() -> dict:
    """A Function URL invocation carrying a signed GitHub `ping`."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
    sig = "sha256=" + hmac.new(WEBHOOK_SECRET, body.encode(), hashlib.sha256).hexdigest()
    req = function_url_request()
    req["headers"] = {"content-type": "application/json", "x-github-event": "ping",
                      "x-github-delivery": "cold-start-1", "x-hub-signature-256": sig}
    req["body"] = body
    return req


def start_moto() -> tuple[subprocess.Popen, str, str]:
    """moto from .venv on a free loopback port, with the webhook's secret in Secrets Manager."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    import boto3  # moto's dependency, in .venv
    sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    for _ in range(100):
        try:
            arn = sm.create_secret(Name="mlflow-webhook", SecretString=WEBHOOK_SECRET.decode())["ARN"]
            sm.create_secret(Name="git-token", SecretString="cold-start-token")
            return proc, endpoint, arn
        except Exception:  # not up yet
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto did not start")


FUNCTIONS = {
    "data-arrival": (sqs_batch(S3_ELSEWHERE), {"ARTIFACT_BUCKET": "a", "EVENT_BUS_NAME": "mlops",
                                               "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    "ledger": (sqs_batch(NOT_OURS), {"ARTIFACT_BUCKET": "a"}),
    "launch-training": (sqs_batch(NOT_OURS), {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                              "CLUSTER_NAME": "ml-prod", "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    "validate-model": (sqs_batch(NO_GATE), {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                            "ARTIFACT_BUCKET": "a", "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    "registry-poller": ({"version": "0", "id": "e", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {}},
                        {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "ARTIFACT_BUCKET": "a",
                         "PIPELINE_CONFIG": str(NO_MODELS)}),
    # A ModelValidated of a model without a serving block: acknowledged without Git or MLflow.
    "promote-model": (sqs_batch({"version": "0", "id": "e", "detail-type": "ModelValidated",
                                 "source": "mlops.validate-model",
                                 "detail": {"schema_version": "1", "run_id": "run-1", "model": "not-served",
                                            "version": "1", "checks": []}}),
                      {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "ARTIFACT_BUCKET": "a",
                       "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    # A push that concerns no application: acknowledged without Argo CD, Git or S3 (the Git token
    # is read from moto at init, as in Lambda).
    "deploy-sync": (sqs_batch({"version": "0", "id": "e", "detail-type": "GitPushed", "source": "mlops.git-webhook",
                               "detail": {"schema_version": "1", "run_id": "run-1", "repo": "r", "ref": "refs/heads/main",
                                          "revision": "0" * 39 + "1", "applications": [], "delivery_id": "d"}}),
                    {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "ARTIFACT_BUCKET": "a",
                     "CHECK_QUEUE_URL": "http://127.0.0.1:9/q", "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    # A DeploymentHealthy of a model the scaler does not serve: acknowledged without the cluster.
    "vllm-scaler": (sqs_batch({"version": "0", "id": "e", "detail-type": "DeploymentHealthy",
                               "source": "mlops.deploy-sync",
                               "detail": {"schema_version": "1", "run_id": "run-1", "application": "a",
                                          "revision": "0" * 39 + "1", "model": "not-served", "message": "ok"}}),
                    {"EVENT_BUS_NAME": "mlops", "ARTIFACT_BUCKET": "a", "CLUSTER_NAME": "ml-prod",
                     "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    # A ModelCodePushed of a model without a source block: acknowledged without the cluster or
    # ECR (the Git token is read from moto at init, as in Lambda).
    "build-image": (sqs_batch({"version": "0", "id": "e", "detail-type": "ModelCodePushed",
                               "source": "mlops.git-webhook",
                               "detail": {"schema_version": "1", "run_id": "run-1", "model": "not-built",
                                          "repo": "r", "ref": "refs/heads/main", "commit": "0" * 39 + "1",
                                          "changed": [], "delivery_id": "d"}}),
                    {"EVENT_BUS_NAME": "mlops", "CLUSTER_NAME": "ml-prod",
                     "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    # A signed GitHub ping through a Function URL (secret from moto, filled in by main()).
    "git-webhook": (None, {"EVENT_BUS_NAME": "mlops", "ARTIFACT_BUCKET": "a",
                           "PIPELINE_CONFIG": str(ROOT / "samples/pipeline.yaml")}),
    # The event and the secret's ARN are filled in by main() (the timestamp must be fresh).
    "mlflow-webhook": (None, {"EVENT_BUS_NAME": "mlops", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
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
    # Peak RSS of the function's own image: VmHWM belongs to the memory map exec created (the
    # child's rusage would also count the pages it shared with this Python process before exec).
    peak_kib = 0
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    except OSError:
        pass
    proc.terminate()
    proc.wait()
    server.shutdown()
    if not ok:
        raise SystemExit(f"{bootstrap}: no response within 30 s; stderr: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, peak_kib, RuntimeApi.response.decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lambda-dir", required=True, type=Path, help="cargo lambda build's --lambda-dir (holds <fn>/bootstrap)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print("| function | bootstrap (MB) | cold start to first response, median of %d (ms) | peak RSS (MiB) | response |" % args.runs)
    print("|---|---:|---:|---:|---|")
    moto, endpoint, secret_arn = start_moto()
    FUNCTIONS["mlflow-webhook"][1].update({"AWS_ENDPOINT_URL": endpoint, "MLFLOW_WEBHOOK_SECRET_ARN": secret_arn})
    # The same signing secret serves the GitHub ping; promote-model reads its Git token.
    FUNCTIONS["git-webhook"][1].update({"AWS_ENDPOINT_URL": endpoint, "GIT_WEBHOOK_SECRET_ARN": secret_arn})
    FUNCTIONS["promote-model"][1].update({"AWS_ENDPOINT_URL": endpoint, "GIT_TOKEN_SECRET_ARN": "git-token"})
    FUNCTIONS["deploy-sync"][1].update({"AWS_ENDPOINT_URL": endpoint, "GIT_TOKEN_SECRET_ARN": "git-token"})
    FUNCTIONS["build-image"][1].update({"AWS_ENDPOINT_URL": endpoint, "GIT_TOKEN_SECRET_ARN": "git-token"})
    events = {"mlflow-webhook": function_url_request, "git-webhook": github_ping}
    for name, (event, env) in FUNCTIONS.items():
        bootstrap = args.lambda_dir / name / "bootstrap"
        if not bootstrap.exists():
            print(f"| {name} | missing ({bootstrap}) | | | |")
            continue
        times, rss, resp = [], [], ""
        for _ in range(args.runs):
            t, r, resp = run_once(bootstrap, event or events[name](), env)
            times.append(t * 1000)
            rss.append(r / 1024)
        print(f"| {name} | {bootstrap.stat().st_size / 1e6:.1f} | {statistics.median(times):.1f} | {max(rss):.1f} | `{resp[:60]}` |")
    moto.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
