//! Benchmark of the mlflow-webhook handler: warm latency from request to response (verify +
//! dedupe claim + PutEvents + record) over N signed deliveries, p50/p99, against the local stack
//! (moto S3 for the delivery markers, moto EventBridge for the bus), and the same handler with
//! in-memory store and bus to separate the emulator's own time. Also the receiver's start-up
//! (building it and reading the secret). Then the baseline a team would otherwise write, a Python
//! handler doing the same calls with boto3 (`bench/webhook_baseline.py`), timed by the same client
//! against the same moto in the same run; its start-up is the interpreter's, imports and clients.
//!
//!     cargo run --release --example webhook_bench -- [N]      (default 1000; needs .venv)

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops::adapter::memory::{MemoryBus, MemoryStore};
use mlops::adapter::mlflow::MlflowRegistry;
use mlops::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use mlops::cli::dev::moto::{Moto, find_moto};
use mlops::cli::dev::webhook::{StaticSecret, serve};
use mlops::config::PipelineConfig;
use mlops::port::{EventBus, ModelRegistry, ObjectStore};
use mlops::stage::registry::receive::{ReceiverSettings, WebhookReceiver};
use mlops::stage::registry::webhook::{Limits, sign};

const SECRET: &[u8] = b"bench-secret";
const CONFIG: &str = "datasets: {}\nmodels:\n  fraud: {}\n";

fn settings(bucket: &str) -> ReceiverSettings {
    ReceiverSettings {
        artifact_bucket: bucket.into(),
        state_prefix: "state/".into(),
        limits: Limits::default(),
        secret_refresh: Duration::from_secs(60),
        claim_lease: Duration::from_secs(60),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Posts `n` signed `model_version.created` deliveries to `url` one after another; returns the
/// latency of each (request sent to response read).
async fn deliver(url: &str, n: usize) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        // The version's tags carry the run id, as our trainer's versions do: no registry call.
        let body = format!(
            r#"{{"entity":"model_version","action":"created","timestamp":"2026-12-03T00:00:00Z","data":{{"name":"fraud","version":"{i}","source":"models:/m-1","run_id":"r","tags":{{"mlops.run_id":"run-bench"}}}}}}"#
        );
        let id = format!("bench-{}", uuid::Uuid::new_v4());
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign(SECRET, &id, &ts, body.as_bytes());
        let t = Instant::now();
        let r = http
            .post(url)
            .header("X-MLflow-Delivery-Id", &id)
            .header("X-MLflow-Timestamp", &ts)
            .header("X-MLflow-Signature", sig)
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        lat.push(t.elapsed());
        assert_eq!(status, 202, "delivery {i} to {url}");
    }
    lat
}

fn report(name: &str, lat: &[Duration], startup: Duration) {
    // The first deliveries warm the connections: report the warm ones.
    let mut warm: Vec<Duration> = lat.iter().skip(lat.len() / 20).copied().collect();
    warm.sort();
    println!(
        "{name:<44} n={:<5} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms  start-up={:>7.2} ms",
        warm.len(),
        percentile(&warm, 0.50).as_secs_f64() * 1e3,
        percentile(&warm, 0.99).as_secs_f64() * 1e3,
        warm.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        startup.as_secs_f64() * 1e3,
    );
}

async fn run<R, B, S>(name: &str, receiver: WebhookReceiver<StaticSecret, R, B, S>, n: usize)
where
    R: ModelRegistry + 'static,
    B: EventBus + 'static,
    S: ObjectStore + 'static,
{
    let t = Instant::now();
    receiver.load_secret().await.expect("secret");
    let (addr, server) = serve(Arc::new(receiver)).await.expect("serve");
    let startup = t.elapsed();
    let lat = deliver(&format!("http://{addr}/webhook"), n).await;
    server.abort();
    report(name, &lat, startup);
}

/// The Python baseline (bench/webhook_baseline.py) against the same moto, same client.
async fn run_python(moto: &str, n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let python = find_moto(None)
        .parent()
        .map(|d| d.join("python"))
        .unwrap_or_else(|| "python3".into());
    let t = Instant::now();
    let mut child = tokio::process::Command::new(python)
        .args([
            "bench/webhook_baseline.py",
            "--endpoint",
            moto,
            "--bucket",
            "bench",
            "--bus",
            "bench",
            "--secret",
            std::str::from_utf8(SECRET)?,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = loop {
        let line = lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("webhook_baseline.py exited"))?;
        if let Some(p) = line.strip_prefix("listening on ") {
            break p.trim().to_owned();
        }
    };
    let startup = t.elapsed();
    let lat = deliver(&format!("http://127.0.0.1:{port}/webhook"), n).await;
    report("Python baseline (boto3), same moto", &lat, startup);
    child.kill().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let pipeline = PipelineConfig::from_yaml(CONFIG, "bench")?;
    // The registry is never called (the run id is in the delivery's tags).
    let registry = || MlflowRegistry::new("http://127.0.0.1:9", |_| None).expect("registry");

    run(
        "in-memory store and bus (handler only)",
        WebhookReceiver::new(
            pipeline.clone(),
            settings("bench"),
            StaticSecret(SECRET.to_vec()),
            registry(),
            MemoryBus::default(),
            MemoryStore::default(),
        ),
        n,
    )
    .await;

    let moto = Moto::start(&find_moto(None))?;
    let sdk = aws::local(&moto.endpoint).await;
    let s3 = aws::s3_client(&sdk);
    s3.create_bucket().bucket("bench").send().await?;
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    eb.create_event_bus().name("bench").send().await?;
    run(
        "moto S3 markers + moto EventBridge",
        WebhookReceiver::new(
            pipeline,
            settings("bench"),
            StaticSecret(SECRET.to_vec()),
            registry(),
            EventBridgeBus::new(eb, "bench"),
            S3Store::new(s3),
        ),
        n,
    )
    .await;
    run_python(&moto.endpoint, n).await?;
    Ok(())
}
