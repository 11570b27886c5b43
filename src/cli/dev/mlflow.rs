//! Spawns a real MLflow tracking server (sqlite backend, artifacts served from a local folder)
//! with the settings its webhooks need (CONTRACTS §11), and waits for `/health`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::moto::spawn_guarded;

pub struct Mlflow {
    pub endpoint: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub log: PathBuf,
}

/// `mlflow` next to a `moto_server` found by [`super::moto::find_moto`] (both live in .venv/bin).
pub fn find_mlflow(moto: &Path) -> PathBuf {
    moto.parent()
        .map(|d| d.join("mlflow"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "mlflow".into())
}

impl Mlflow {
    /// Starts the server with its database and artifacts under `dir`.
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<Mlflow> {
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
            .to_string();
        let db = format!("sqlite:///{}", dir.join("mlflow.db").display());
        let artifacts = dir.join("artifacts").display().to_string();
        let log = dir.join("mlflow.log");
        let out = std::fs::File::create(&log)?;
        // A fixed key is fine for a throwaway local server; without one each worker encrypts
        // webhook secrets with its own key.
        let envs = [
            ("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https"),
            ("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true"),
            (
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
                "bWxvcHMtbG9jYWwtZGV2LXN0YWNrLWtleS0zMmJ5dGU=",
            ),
            ("MLFLOW_WEBHOOK_CACHE_TTL", "0"),
            ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
            ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ];
        let args = [
            "server",
            "--backend-store-uri",
            &db,
            "--serve-artifacts",
            "--artifacts-destination",
            &artifacts,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--workers",
            "1",
        ];
        let (child, stdin) = spawn_guarded(bin, &args, &envs, Stdio::from(out))?;
        let mut m = Mlflow {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            stdin,
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = http.get(format!("{}/health", m.endpoint)).send().await
                && r.status().is_success()
            {
                return Ok(m);
            }
            if let Ok(Some(status)) = m.child.try_wait() {
                bail!("mlflow server exited ({status}); see {}", m.log.display());
            }
            if Instant::now() > deadline {
                let _ = m.child.kill();
                bail!(
                    "mlflow server not healthy within 90 s; see {}",
                    m.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Registers a webhook on the server for the events the `mlflow-webhook` receiver handles
/// (CONTRACTS §6: `POST /api/2.0/mlflow/webhooks`), signed with `secret`.
pub async fn register_webhook(endpoint: &str, url: &str, secret: &str) -> anyhow::Result<()> {
    let events = [
        ("MODEL_VERSION", "CREATED"),
        ("MODEL_VERSION_TAG", "SET"),
        ("MODEL_VERSION_ALIAS", "CREATED"),
        ("MODEL_VERSION_ALIAS", "DELETED"),
    ]
    .map(|(entity, action)| serde_json::json!({"entity": entity, "action": action}));
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/api/2.0/mlflow/webhooks"))
        .json(&serde_json::json!({
            "name": "mlops-dev",
            "url": url,
            "events": events,
            "secret": secret,
        }))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        bail!(
            "registering the webhook on MLflow: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
