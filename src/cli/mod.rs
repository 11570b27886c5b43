//! The `mlops` command: local preparation, run status from the ledger, schema generation, and
//! the local dev stack with its end-to-end demo.

pub mod dev;
pub mod prepare;
pub mod render;
pub mod scale_sim;
pub mod timeline;
pub mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::adapter::{aws, s3::S3Store};
use crate::stage::ledger::Ledger;

/// The routing table, embedded so the dev stack needs no file at run time.
pub const ROUTES_JSON: &str = include_str!("../../events/routes.json");

#[derive(Parser)]
#[command(
    name = "mlops",
    version,
    about = "Event-driven MLOps control plane for Amazon EKS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Clean, deduplicate and split a local file exactly as the data-arrival function does.
    ///
    /// Writes train.<ext>, test.<ext> and manifest.json into --output and prints the manifest.
    /// They appear together or not at all: a rejected file leaves --output as it was.
    /// Exit status 1 with the reason when the file is rejected.
    Prepare {
        /// The pipeline configuration (YAML), e.g. samples/pipeline.yaml.
        #[arg(long)]
        config: PathBuf,
        /// The dataset under `datasets:` in the config whose settings apply (format, columns,
        /// null markers, test fraction, delimiter).
        #[arg(long)]
        dataset: String,
        /// The CSV or Parquet file to prepare (a regular file: it is read twice).
        #[arg(long)]
        input: PathBuf,
        /// Directory for the outputs; created if missing. Must not hold the input as an output.
        #[arg(long)]
        output: PathBuf,
    },
    /// Print a pipeline run's timeline from the ledger.
    Status {
        run_id: String,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// List recent pipeline runs from the ledger.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Regenerate (or check) the JSON Schemas in events/schemas from the Rust event types.
    Schemas {
        #[arg(long, default_value = "events/schemas")]
        dir: PathBuf,
        /// Fail instead of writing when a committed schema differs.
        #[arg(long)]
        check: bool,
    },
    /// Run a model's validation gate against a version in any MLflow registry and print the
    /// checks as a table. Changes nothing unless --record.
    ///
    /// Exit status 0 when the gate passes, 1 when it fails (or on an error).
    Validate {
        /// The pipeline configuration (YAML) with models.<model>.validation.
        #[arg(long)]
        config: PathBuf,
        /// The registered model name.
        #[arg(long)]
        model: String,
        /// The model version to judge.
        #[arg(long)]
        version: String,
        /// MLflow tracking server (auth from MLFLOW_TRACKING_USERNAME/PASSWORD or _TOKEN).
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        tracking_uri: String,
        /// Artifact bucket holding dataset manifests, for the gate's dataset checks (standard
        /// AWS configuration); without it those checks report the manifest missing.
        #[arg(long, env = "MLOPS_ARTIFACT_BUCKET")]
        bucket: Option<String>,
        /// Write the verdict on the version (tags mlops.validation.*, alias challenger on a
        /// pass), as validate-model does, without emitting an event.
        #[arg(long)]
        record: bool,
    },
    /// Replay an LLM request trace (Azure format: TIMESTAMP,ContextTokens,GeneratedTokens)
    /// through simulated vLLM replicas under each scaling policy; print GPU-hours, dollars,
    /// TTFT percentiles, queue wait, the share over the TTFT SLO and scale events.
    ScaleSim {
        #[arg(long)]
        trace: PathBuf,
        /// Comma-separated: mlops, hpa-seed, oracle.
        #[arg(long, value_delimiter = ',', default_value = "mlops,hpa-seed,oracle")]
        policy: Vec<String>,
        /// A profile of samples/serving/profiles.yaml (or of --profiles).
        #[arg(long, default_value = "llama-3-70b-tp4-h100")]
        profile: String,
        /// Another profiles file in the same format.
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Replay faster (2 = twice the request rate).
        #[arg(long, default_value_t = 1.0)]
        rate_scale: f64,
        /// Seconds from scale-up to a ready replica (default: the profile's).
        #[arg(long)]
        start_delay: Option<f64>,
        #[arg(long, default_value_t = 1)]
        min: u32,
        #[arg(long, default_value_t = 8)]
        max: u32,
        /// Write load, replicas and TTFT over time for each policy to this SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// The mlops policy's square-root headroom β (`serving.scaling.headroom`).
        #[arg(long, default_value_t = crate::stage::serving::policy::DEFAULT_HEADROOM)]
        headroom: f64,
        /// How the gateway spreads requests: least-work (fewest prompt tokens waiting to be
        /// prefilled) or least-requests.
        #[arg(long, default_value = "least-work")]
        routing: String,
        /// Multiply the profile's step-time coefficients (a sensitivity check).
        #[arg(long, default_value_t = 1.0)]
        step_scale: f64,
    },
    /// Print what a stage would apply, for review.
    Render {
        #[command(subcommand)]
        what: RenderCommand,
    },
    /// The local dev stack (moto + in-process functions).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Start the stack, drop the sample dataset into S3 and print the run's timeline.
    Demo {
        /// A CSV to upload instead of the bundled sample.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Start the same stack and leave it running until Ctrl-C: prints the S3, MLflow and
    /// webhook endpoints, then each pipeline event as it happens.
    Up,
}

#[derive(Subcommand)]
enum RenderCommand {
    /// The training workload manifest (YAML) that launch-training would apply for a DatasetReady.
    Training {
        #[arg(long)]
        config: PathBuf,
        /// A DatasetReady event (EventBridge envelope or bare detail), e.g. events/samples/mlops/DatasetReady.json.
        #[arg(long)]
        event: PathBuf,
        /// Cluster of models whose training config names none.
        #[arg(long, env = "CLUSTER_NAME", default_value = "ml-prod")]
        cluster: String,
        /// Namespace of models whose training config names none.
        #[arg(long, env = "TRAINING_NAMESPACE", default_value = "training")]
        namespace: String,
        #[arg(
            long,
            env = "MLFLOW_TRACKING_URI",
            default_value = "http://mlflow.mlflow.svc.cluster.local:5000"
        )]
        mlflow_uri: String,
    },
    /// The BuildKit Job (YAML) that build-image would apply for a ModelCodePushed.
    Build {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        model: String,
        /// The full commit id to build.
        #[arg(long)]
        commit: String,
        #[arg(long, default_value = "run-example")]
        run_id: String,
        #[arg(long, env = "CLUSTER_NAME", default_value = "ml-prod")]
        cluster: String,
        /// Namespace of models whose source block names none.
        #[arg(long, env = "BUILD_NAMESPACE", default_value = "builds")]
        namespace: String,
    },
}

#[derive(clap::Args)]
struct LedgerArgs {
    /// The artifact/ledger bucket.
    #[arg(long, env = "MLOPS_ARTIFACT_BUCKET")]
    bucket: String,
    #[arg(long, env = "MLOPS_LEDGER_PREFIX", default_value = "ledger/")]
    prefix: String,
}

/// Writes to standard output. A reader that went away (`| head`, `| true`) ends the command
/// quietly; any other failure (a full disk) is an error that says so.
pub fn stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// Runs the CLI; the process exit code is 1 on error.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Prepare {
            config,
            dataset,
            input,
            output,
        } => prepare::run(&config, &dataset, &input, &output),
        Command::Status { run_id, ledger } => {
            let store = S3Store::new(aws::s3_client(&aws::load().await));
            let l = Ledger {
                store: &store,
                bucket: &ledger.bucket,
                prefix: &ledger.prefix,
            };
            let entries = l.timeline(&run_id).await?;
            if entries.is_empty() {
                anyhow::bail!(
                    "no events recorded for run {run_id} in s3://{}/{}",
                    ledger.bucket,
                    ledger.prefix
                );
            }
            stdout(&timeline::render(&run_id, &entries))
        }
        Command::Runs { limit, ledger } => {
            let store = S3Store::new(aws::s3_client(&aws::load().await));
            let l = Ledger {
                store: &store,
                bucket: &ledger.bucket,
                prefix: &ledger.prefix,
            };
            let text: String = l
                .recent(limit)
                .await?
                .iter()
                .map(|r| format!("{}  {}  {}\n", r.time, r.run_id, r.last_event))
                .collect();
            stdout(&text)
        }
        Command::Schemas { dir, check } => {
            let stale = crate::event::write_schemas(&dir, check)?;
            if check && !stale.is_empty() {
                anyhow::bail!("stale schemas (run `mlops schemas`): {}", stale.join(", "));
            }
            Ok(())
        }
        Command::Render {
            what:
                RenderCommand::Training {
                    config,
                    event,
                    cluster,
                    namespace,
                    mlflow_uri,
                },
        } => stdout(&render::training(
            &config, &event, cluster, namespace, mlflow_uri,
        )?),
        Command::Render {
            what:
                RenderCommand::Build {
                    config,
                    model,
                    commit,
                    run_id,
                    cluster,
                    namespace,
                },
        } => stdout(&render::build(
            &config, &model, &commit, &run_id, cluster, namespace,
        )?),
        Command::Validate {
            config,
            model,
            version,
            tracking_uri,
            bucket,
            record,
        } => {
            validate::run(
                &config,
                &model,
                &version,
                &tracking_uri,
                bucket.as_deref(),
                record,
            )
            .await
        }
        Command::ScaleSim {
            trace,
            policy,
            profile,
            profiles,
            rate_scale,
            start_delay,
            min,
            max,
            plot,
            headroom,
            routing,
            step_scale,
        } => scale_sim::run_cli(&scale_sim::Args {
            trace,
            policies: policy,
            profile,
            profiles,
            rate_scale,
            start_delay_s: start_delay,
            min_replicas: min,
            max_replicas: max,
            plot,
            headroom,
            routing,
            step_scale,
        }),
        Command::Dev {
            command: DevCommand::Demo { data },
        } => dev::demo::run(data.as_deref()).await,
        Command::Dev {
            command: DevCommand::Up,
        } => dev::up::run().await,
    }
}
