//! `mlops dev demo`: the whole local pipeline, end to end. Starts moto, provisions the stack from
//! `events/routes.json`, runs the functions in-process against their queues, uploads a sample
//! dataset and prints the run's timeline from the ledger.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;

use super::mlflow::{Mlflow, find_mlflow};
use super::moto::{Moto, find_moto};
use super::stack::{Routes, Stack, StackSpec, provision};
use super::worker::poll_once;
use crate::adapter::local_exec::LocalCluster;
use crate::adapter::mlflow::MlflowRegistry;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::cli::{ROUTES_JSON, timeline};
use crate::config::{
    LedgerSettings, PipelineConfig, PollSettings, TrainingSettings, ValidateSettings,
};
use crate::lambda::{
    data_arrival::DataArrivalFn, launch_training::LaunchTrainingFn, ledger::LedgerFn,
    registry_poller::RegistryPollerFn, training_watch::TrainingWatchFn,
    validate_model::ValidateModelFn,
};
use crate::stage::data_arrival::Settings;
use crate::stage::ledger::{Entry, Ledger};
use std::sync::Arc;

const SAMPLE_PIPELINE: &str = include_str!("../../../samples/pipeline.yaml");
const SAMPLE_DATA: &[u8] = include_bytes!("../../../samples/data/transactions.csv");

/// The functions of the dev stack, wired to one moto.
pub struct DevFunctions {
    pub data_arrival: DataArrivalFn<S3Store, EventBridgeBus>,
    pub ledger: LedgerFn<S3Store>,
}

/// The training functions of the dev stack: the local executor stands in for EKS, and a real
/// MLflow server for the tracking server and registry.
pub struct DevTraining {
    pub launch: LaunchTrainingFn<Arc<LocalCluster>, EventBridgeBus>,
    pub watch: TrainingWatchFn<Arc<LocalCluster>, MlflowRegistry, EventBridgeBus>,
}

impl DevTraining {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        moto: &str,
        mlflow: &str,
        root: &Path,
        logs: &Path,
    ) -> anyhow::Result<DevTraining> {
        let python = root.join(".venv/bin/python");
        // The trainer reads s3:// URIs from moto with boto3, which honours AWS_ENDPOINT_URL.
        let env = [
            ("AWS_ENDPOINT_URL", moto),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let cluster = Arc::new(LocalCluster::new(
            &pipeline,
            root.to_owned(),
            python,
            env,
            logs.to_owned(),
        ));
        let settings = TrainingSettings {
            pipeline_config: "samples/pipeline.yaml".into(),
            event_bus: stack.bus.clone(),
            mlflow_tracking_uri: mlflow.to_owned(),
            cluster_name: "local".into(),
            training_namespace: "training".into(),
            stall_after: Duration::from_secs(1800),
        };
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus);
        Ok(DevTraining {
            launch: LaunchTrainingFn {
                pipeline: pipeline.clone(),
                settings: settings.clone(),
                cluster: cluster.clone(),
                bus: bus.clone(),
            },
            watch: TrainingWatchFn {
                pipeline,
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                settings,
                cluster,
                bus,
            },
        })
    }

    /// One round: the launch queue, then a watch tick.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let (n, _) = poll_once(sqs, &stack.queue("launch-training")?.url, &self.launch, 0).await?;
        let report = self.watch.tick().await?;
        Ok(n + report.emitted.len())
    }
}

/// The registry stage of the dev stack: the poller (MLflow's webhooks need a public receiver;
/// the poller needs nothing) and validate-model, against the same MLflow server.
pub struct DevRegistry {
    pub poller: RegistryPollerFn<MlflowRegistry, EventBridgeBus, S3Store>,
    pub validate: ValidateModelFn<MlflowRegistry, EventBridgeBus, S3Store>,
}

impl DevRegistry {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        mlflow: &str,
    ) -> anyhow::Result<DevRegistry> {
        let store = S3Store::new(aws::s3_client(sdk));
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus);
        Ok(DevRegistry {
            poller: RegistryPollerFn {
                pipeline: pipeline.clone(),
                settings: PollSettings {
                    pipeline_config: "samples/pipeline.yaml".into(),
                    event_bus: stack.bus.clone(),
                    mlflow_tracking_uri: mlflow.to_owned(),
                    artifact_bucket: stack.artifact_bucket.clone(),
                    state_prefix: "state/".into(),
                    lookback: Duration::from_secs(3600),
                    claim_lease: Duration::from_secs(60),
                },
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                bus: bus.clone(),
                store: store.clone(),
            },
            validate: ValidateModelFn {
                pipeline,
                settings: ValidateSettings {
                    pipeline_config: "samples/pipeline.yaml".into(),
                    event_bus: stack.bus.clone(),
                    mlflow_tracking_uri: mlflow.to_owned(),
                    artifact_bucket: stack.artifact_bucket.clone(),
                    processed_prefix: "processed/".into(),
                    state_prefix: "state/".into(),
                    claim_lease: Duration::from_secs(60),
                },
                registry: MlflowRegistry::new(mlflow, |_| None)?,
                bus,
                store,
            },
        })
    }

    /// One round: a poller tick, then the validate-model queue.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let report = self.poller.tick().await?;
        let (n, _) = poll_once(sqs, &stack.queue("validate-model")?.url, &self.validate, 0).await?;
        Ok(report.emitted.len() + n)
    }
}

impl DevFunctions {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        pipeline: PipelineConfig,
        work_dir: &Path,
    ) -> DevFunctions {
        let store = S3Store::new(aws::s3_client(sdk));
        DevFunctions {
            data_arrival: DataArrivalFn {
                pipeline,
                settings: Settings {
                    artifact_bucket: stack.artifact_bucket.clone(),
                    processed_prefix: "processed/".into(),
                    state_prefix: "state/".into(),
                    work_dir: work_dir.to_owned(),
                    claim_lease: Duration::from_secs(60),
                    limits: Default::default(),
                },
                store: store.clone(),
                bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &stack.bus),
            },
            ledger: LedgerFn {
                settings: LedgerSettings {
                    artifact_bucket: stack.artifact_bucket.clone(),
                    ledger_prefix: "ledger/".into(),
                },
                store,
            },
        }
    }

    /// One round over every function's queue; returns how many messages were handled.
    pub async fn pump(&self, sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<usize> {
        let (a, _) = poll_once(
            sqs,
            &stack.queue("data-arrival")?.url,
            &self.data_arrival,
            0,
        )
        .await?;
        let (b, _) = poll_once(sqs, &stack.queue("ledger")?.url, &self.ledger, 0).await?;
        Ok(a + b)
    }
}

/// One line of the demo's narration on standard output.
fn say(line: String) -> anyhow::Result<()> {
    crate::cli::stdout(&(line + "\n"))
}

pub async fn run(data: Option<&Path>) -> anyhow::Result<()> {
    let moto_bin = find_moto(None);
    let root = moto_bin
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    say(format!(
        "starting moto and MLflow ({})",
        moto_bin.parent().unwrap_or(&moto_bin).display()
    ))?;
    let moto = Moto::start(&moto_bin)?;
    let work = tempfile::tempdir()?;
    let mlflow = Mlflow::start(&find_mlflow(&moto_bin), &work.path().join("mlflow")).await?;
    let sdk = aws::local(&moto.endpoint).await;
    let routes = Routes::parse(ROUTES_JSON)?;
    let spec = StackSpec {
        prefix: "demo-".into(),
        max_receive_count: 3,
        visibility_timeout_secs: 2,
    };
    let stack = provision(&sdk, &spec, &routes).await?;
    say(format!(
        "provisioned on {}: buckets {} and {}, bus {}, rules {}, queues+DLQs for {}; MLflow at {}",
        moto.endpoint,
        stack.data_bucket,
        stack.artifact_bucket,
        stack.bus,
        routes
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        stack.queues.keys().cloned().collect::<Vec<_>>().join(", "),
        mlflow.endpoint,
    ))?;
    let pipeline = PipelineConfig::from_yaml(SAMPLE_PIPELINE, "samples/pipeline.yaml")?;
    let functions = DevFunctions::new(&sdk, &stack, pipeline.clone(), work.path());
    let logs = work.path().join("training-logs");
    let registry = DevRegistry::new(&sdk, &stack, pipeline.clone(), &mlflow.endpoint)?;
    let training = DevTraining::new(
        &sdk,
        &stack,
        pipeline,
        &moto.endpoint,
        &mlflow.endpoint,
        &root,
        &logs,
    )?;

    let body = match data {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => SAMPLE_DATA.to_vec(),
    };
    let key = format!(
        "incoming/transactions/{}/transactions.csv",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    aws::s3_client(&sdk)
        .put_object()
        .bucket(&stack.data_bucket)
        .key(&key)
        .body(ByteStream::from(body))
        .send()
        .await
        .context("uploading the sample dataset")?;
    say(format!(
        "uploaded s3://{}/{key}; training locally (the local executor stands in for EKS)",
        stack.data_bucket
    ))?;

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = S3Store::new(aws::s3_client(&sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &stack.artifact_bucket,
        prefix: "ledger/",
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let handled = functions.pump(&sqs, &stack).await?
            + training.pump(&sqs, &stack).await?
            + registry.pump(&sqs, &stack).await?;
        // Drain the ledger once more so the last event is on the timeline.
        functions.pump(&sqs, &stack).await?;
        if let Some((run_id, entries)) = find_run(&ledger, &key).await? {
            // The trainer registers the version itself, so the registry stage may judge it
            // before training-watch reports the workload: wait for both.
            let has = |t: &str| entries.iter().any(|e| e.detail_type == t);
            let verdict = entries
                .iter()
                .rev()
                .find(|e| matches!(e.detail_type.as_str(), "ModelValidated" | "ModelRejected"));
            let last = match verdict {
                Some(v) if has("TrainingJobSucceeded") => v.detail_type.clone(),
                Some(_) => String::new(),
                None => entries
                    .last()
                    .map(|e| e.detail_type.clone())
                    .unwrap_or_default(),
            };
            if matches!(
                last.as_str(),
                "DatasetRejected"
                    | "ModelValidated"
                    | "ModelRejected"
                    | "TrainingJobFailed"
                    | "TrainingJobStalled"
            ) {
                crate::cli::stdout(&format!("\n{}", timeline::render(&run_id, &entries)))?;
                return match last.as_str() {
                    "ModelValidated" | "ModelRejected" => {
                        let verdict = verdict.map(|e| e.detail.clone()).unwrap_or_default();
                        let checks: Vec<crate::event::Check> =
                            serde_json::from_value(verdict["checks"].clone()).unwrap_or_default();
                        say(format!(
                            "\nvalidation gate of {} v{} (samples/pipeline.yaml, models.{}.validation):\n{}",
                            verdict["model"].as_str().unwrap_or("-"),
                            verdict["version"].as_str().unwrap_or("-"),
                            verdict["model"].as_str().unwrap_or("-"),
                            timeline::gate_table(&checks)
                        ))?;
                        say(format!(
                            "{} in MLflow at {} (the server stops with the demo); deployment \
                             (Argo CD) is skipped: no deployment stage exists yet",
                            if last == "ModelValidated" {
                                "passed: alias `challenger` set"
                            } else {
                                "rejected: tags mlops.validation.status=failed and the report are"
                            },
                            mlflow.endpoint
                        ))
                    }
                    other => bail!(
                        "the run ended in {other}; trainer logs in {}",
                        logs.display()
                    ),
                };
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the run for s3://{}/{key} did not finish within 300 s; trainer logs in {}",
                stack.data_bucket,
                logs.display()
            );
        }
        if handled == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The run whose data-arrival outcome concerns `key`, once the ledger has it.
async fn find_run(
    ledger: &Ledger<'_, S3Store>,
    key: &str,
) -> anyhow::Result<Option<(String, Vec<Entry>)>> {
    for run in ledger.recent(20).await? {
        let entries = ledger.timeline(&run.run_id).await?;
        let ours = entries.iter().any(|e| {
            matches!(e.detail_type.as_str(), "DatasetReady" | "DatasetRejected")
                && e.detail["source"]["key"].as_str() == Some(key)
        });
        if ours {
            return Ok(Some((run.run_id, entries)));
        }
    }
    Ok(None)
}
