//! `mlops dev up`: the demo's local stack left running for use by hand. Prints the endpoints
//! (S3 with a ready `aws s3 cp` line, the MLflow UI, the webhook URL) and then every pipeline
//! event as the ledger records it, until Ctrl-C.

use std::time::Duration;

use super::local::LocalStack;

fn say(line: String) -> anyhow::Result<()> {
    crate::cli::stdout(&(line + "\n"))
}

pub async fn run() -> anyhow::Result<()> {
    say("starting moto and MLflow from .venv".into())?;
    let mut local = LocalStack::start("dev-").await?;
    local.functions.ledger.on = true;
    let s3 = &local.moto.endpoint;
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let datasets: Vec<String> = local
        .pipeline
        .datasets
        .iter()
        .map(|(name, d)| format!("{name} (s3://{}/{})", local.stack.data_bucket, d.prefix))
        .collect();
    let models: Vec<&str> = local
        .pipeline
        .models
        .iter()
        .filter(|(_, m)| m.validation.is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    say(format!(
        "\
the local stack is up (samples/pipeline.yaml); Ctrl-C stops it and deletes its data

  S3 (moto)      {s3}   credentials testing/testing, region us-east-1
                 data bucket {data}, artifacts {artifacts} (ledger/, processed/, state/)
  datasets       {datasets}
  MLflow UI      {mlflow}   (MLFLOW_TRACKING_URI for notebooks)
  webhook        {webhook}   (registered on that MLflow, generated secret)
  manifests repo {manifests}   (git http-backend; a validated version is committed here)
  trainer repos  {trainers}   (a push that changes the trainer rebuilds and retrains)
  event bus      {bus}, queues+DLQs for {queues}

drop a file:
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \\
    aws s3 cp samples/data/transactions.csv s3://{data}/incoming/transactions/{day}/transactions.csv --endpoint-url {s3}
or push a change to a trainer repo (user x-access-token, password {token}):
  git clone http://x-access-token:{token}@{trainer_host} trainer && cd trainer && … && git push
or register a version of {models} from a notebook (MLFLOW_TRACKING_URI={mlflow}) and watch the
gate judge it. Training runs locally (the local executor stands in for EKS); trainer logs in
{logs}. Events as they happen:
",
        data = local.stack.data_bucket,
        artifacts = local.stack.artifact_bucket,
        datasets = datasets.join(", "),
        mlflow = local.mlflow.endpoint,
        webhook = local.webhook_url,
        manifests = local.manifests_repo,
        trainers = local
            .trainer_repos
            .iter()
            .map(|r| format!("{} ({})", r.url, r.model))
            .collect::<Vec<_>>()
            .join(", "),
        token = local.git_token,
        trainer_host = local
            .trainer_repos
            .first()
            .map(|r| r.url.trim_start_matches("http://").to_owned())
            .unwrap_or_default(),
        bus = local.stack.bus,
        queues = local.stack.queues.keys().cloned().collect::<Vec<_>>().join(", "),
        models = models.join(", "),
        logs = local.logs.display(),
    ))?;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            round = local.pump() => match round {
                Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(_) => {}
                // A function's failure is retried through its queue, as on AWS; keep serving.
                Err(e) => {
                    eprintln!("warning: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
    say("stopping the local stack".into())
}
