//! `mlops dev demo`: the whole local pipeline, end to end. Starts moto, provisions the stack from
//! `events/routes.json`, runs the functions in-process against their queues, uploads a sample
//! dataset and prints the run's timeline from the ledger.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;

use super::moto::{Moto, find_moto};
use super::stack::{Routes, Stack, StackSpec, provision};
use super::worker::poll_once;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::cli::{ROUTES_JSON, timeline};
use crate::config::{LedgerSettings, PipelineConfig};
use crate::lambda::{data_arrival::DataArrivalFn, ledger::LedgerFn};
use crate::stage::data_arrival::Settings;
use crate::stage::ledger::{Entry, Ledger};

const SAMPLE_PIPELINE: &str = include_str!("../../../samples/pipeline.yaml");
const SAMPLE_DATA: &[u8] = include_bytes!("../../../samples/data/transactions.csv");

/// The functions of the dev stack, wired to one moto.
pub struct DevFunctions {
    pub data_arrival: DataArrivalFn<S3Store, EventBridgeBus>,
    pub ledger: LedgerFn<S3Store>,
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

pub async fn run(data: Option<&Path>) -> anyhow::Result<()> {
    let moto_bin = find_moto(None);
    println!("starting moto ({})", moto_bin.display());
    let moto = Moto::start(&moto_bin)?;
    let sdk = aws::local(&moto.endpoint).await;
    let routes = Routes::parse(ROUTES_JSON)?;
    let spec = StackSpec {
        prefix: "demo-".into(),
        max_receive_count: 3,
        visibility_timeout_secs: 2,
    };
    let stack = provision(&sdk, &spec, &routes).await?;
    println!(
        "provisioned on {}: buckets {} and {}, bus {}, rules {}, queues+DLQs for {}",
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
        stack.queues.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let pipeline = PipelineConfig::from_yaml(SAMPLE_PIPELINE, "samples/pipeline.yaml")?;
    let work = tempfile::tempdir()?;
    let functions = DevFunctions::new(&sdk, &stack, pipeline, work.path());

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
    println!("uploaded s3://{}/{key}", stack.data_bucket);

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = S3Store::new(aws::s3_client(&sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &stack.artifact_bucket,
        prefix: "ledger/",
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let handled = functions.pump(&sqs, &stack).await?;
        if let Some((run_id, entries)) = find_run(&ledger, &key).await? {
            println!();
            print!("{}", timeline::render(&run_id, &entries));
            return match entries.last().map(|e| e.detail_type.as_str()) {
                Some("DatasetReady") => Ok(()),
                other => bail!("the run ended in {}", other.unwrap_or("nothing")),
            };
        }
        if Instant::now() > deadline {
            bail!(
                "no DatasetReady or DatasetRejected for s3://{}/{key} within 90 s",
                stack.data_bucket
            );
        }
        if handled == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
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
