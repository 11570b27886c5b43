#!/usr/bin/env python3
"""The baseline for the mlflow-webhook benchmark: the same receiver as a team would write it as a
Python Lambda (boto3, the standard library's hmac), behind a minimal HTTP server on loopback.

It does what `src/stage/registry/receive.rs` does for a `model_version.created` delivery, with
the same calls to the same emulators: verify the MLflow signature (constant-time), refuse stale
timestamps, parse, skip models not in the config, claim the delivery id with a conditional S3
write (GET, then PUT If-None-Match), PutEvents, and mark the delivery done (PUT If-Match).
`examples/webhook_bench.rs` starts it and times it with the same client, in the same run.

    python bench/webhook_baseline.py --endpoint URL --bucket B --bus BUS --secret S --models fraud

Prints `listening on PORT` once ready.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MAX_BODY = 256 * 1024
MAX_SKEW = 300


class Receiver:
    def __init__(self, endpoint: str, bucket: str, bus: str, secret: bytes, models: set[str]):
        cfg = Config(region_name="us-east-1", retries={"max_attempts": 3, "mode": "standard"})
        kw = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", config=cfg)
        self.s3 = boto3.client("s3", **kw)
        self.events = boto3.client("events", **kw)
        self.bucket, self.bus, self.secret, self.models = bucket, bus, secret, models

    def verify(self, headers, body: bytes) -> str | None:
        delivery, ts, sig = (headers.get(h) for h in ("X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature"))
        if not (delivery and ts and sig):
            return None
        try:
            if abs(time.time() - int(ts)) > MAX_SKEW:
                return None
        except ValueError:
            return None
        mac = hmac.new(self.secret, f"{delivery}.{ts}.".encode() + body, hashlib.sha256).digest()
        expected = base64.b64encode(mac).decode()
        for entry in sig.split():
            version, _, value = entry.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return delivery
        return None

    def receive(self, headers, body: bytes) -> tuple[int, str]:
        delivery = self.verify(headers, body)
        if delivery is None:
            return 401, "signature refused"
        try:
            payload = json.loads(body)
            data = payload["data"]
            entity, action = payload["entity"], payload["action"]
        except (ValueError, KeyError, TypeError):
            return 400, "malformed body"
        if (entity, action) != ("model_version", "created"):
            return 202, "event type not handled"
        model = data.get("name")
        if model not in self.models:
            return 202, "model not in the pipeline config"
        run_id = (data.get("tags") or {}).get("mlops.run_id") or f"run-{uuid.uuid4().hex[:8]}"
        key = f"state/mlflow-webhook/deliveries/{hashlib.sha256(delivery.encode()).hexdigest()}.json"
        try:
            marker = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            if marker.get("state") == "done":
                return 200, "delivery already processed"
            return 503, "the same delivery is in flight"
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                return 503, str(e)
        now = datetime.now(timezone.utc).isoformat()
        try:
            put = self.s3.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*",
                                     Body=json.dumps({"state": "claimed", "run_id": run_id, "claimed_at": now}))
        except ClientError:
            return 503, "the same delivery is in flight"
        detail = {"schema_version": "1", "run_id": run_id, "model": model, "version": data.get("version"),
                  "source": data.get("source"), "delivery_id": delivery}
        out = self.events.put_events(Entries=[{"Source": "mlops.mlflow-webhook", "DetailType": "ModelVersionCreated",
                                               "Detail": json.dumps(detail), "EventBusName": self.bus}])
        if out.get("FailedEntryCount"):
            return 503, "putting the event failed"
        self.s3.put_object(Bucket=self.bucket, Key=key, IfMatch=put["ETag"],
                           Body=json.dumps({"state": "done", "run_id": run_id, "outcome": "ModelVersionCreated",
                                            "done_at": now}))
        return 202, "ModelVersionCreated emitted"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--models", default="fraud", help="comma-separated models of the pipeline config")
    args = ap.parse_args()
    receiver = Receiver(args.endpoint, args.bucket, args.bus, args.secret.encode(), set(args.models.split(",")))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Rust server

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status, message = 413, "body over the limit"
                self.rfile.read(length)
            else:
                status, message = receiver.receive(self.headers, self.rfile.read(length))
            out = json.dumps({"message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
