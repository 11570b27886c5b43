//! The registry stage against a real MLflow 3.17 server (CONTRACTS §6.3, §11): MLflow itself
//! signs and delivers the webhooks (tests/mlflow_webhooks.py drives the registry and records
//! what arrives); the Rust verification accepts every real delivery and refuses each tampered
//! copy.

use std::process::Command;

use mlops::stage::registry::webhook::{Headers, Limits, Payload, Refusal, parse, verify};

use crate::harness::{root, venv_python};

#[test]
fn real_mlflow_deliveries_verify_and_tampered_copies_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("s-{}", uuid::Uuid::new_v4());
    let out = Command::new(venv_python())
        .arg(root().join("tests/mlflow_webhooks.py"))
        .arg("--out")
        .arg(dir.path())
        .args(["--secret", &secret])
        .output()
        .expect("mlflow_webhooks.py runs");
    assert!(
        out.status.success(),
        "mlflow_webhooks.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kinds = Vec::new();
    for n in 1..=4 {
        let path = dir.path().join(format!("{n}.json"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("delivery")).expect("json");
        let header = |h: &str| v["headers"][h].as_str().map(str::to_owned);
        let (id, ts, sig) = (
            header("X-MLflow-Delivery-Id"),
            header("X-MLflow-Timestamp"),
            header("X-MLflow-Signature"),
        );
        let body = v["body"].as_str().expect("body").as_bytes().to_vec();
        let h = Headers {
            delivery_id: id.as_deref(),
            timestamp: ts.as_deref(),
            signature: sig.as_deref(),
        };
        let now = chrono::Utc::now().timestamp();
        let limits = Limits::default();
        assert_eq!(
            verify(&[secret.as_bytes()], &h, &body, now, &limits),
            Ok(id.as_deref().unwrap_or_default()),
            "delivery {n}"
        );
        assert_eq!(
            verify(&[b"wrong-secret"], &h, &body, now, &limits),
            Err(Refusal::BadSignature)
        );
        let mut tampered = body.clone();
        let i = tampered.len() / 2;
        tampered[i] ^= 0x20;
        assert_eq!(
            verify(&[secret.as_bytes()], &h, &tampered, now, &limits),
            Err(Refusal::BadSignature)
        );
        assert!(matches!(
            verify(&[secret.as_bytes()], &h, &body, now + 301, &limits),
            Err(Refusal::Stale { .. })
        ));
        kinds.push(match parse(&body).expect("parse") {
            Payload::VersionCreated { .. } => "created",
            Payload::TagSet { .. } => "tag",
            Payload::AliasChanged {
                version: Some(_), ..
            } => "alias set",
            Payload::AliasChanged { version: None, .. } => "alias deleted",
            Payload::Other(o) => panic!("unexpected {o}"),
        });
    }
    assert_eq!(kinds, ["created", "tag", "alias set", "alias deleted"]);
}
