//! `mlops dev demo`: the whole local pipeline, scripted. Starts the [`LocalStack`], drops the
//! sample dataset into S3 and follows its run from data arrival through training to the
//! validation gate and the release commit; then makes that version the champion, pushes a code
//! change to the trainer's repository and follows the run it starts (build, retraining on the
//! latest ready data, the gate); then drops a second, newer file for the same dataset, whose
//! version is judged against the champion too. Prints each run's timeline from the ledger and
//! the gate's table.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;

use super::local::LocalStack;
use crate::adapter::{aws, s3::S3Store};
use crate::cli::timeline;
use crate::port::ModelRegistry;
use crate::stage::ledger::{Entry, Ledger};

pub const SAMPLE_DATA: &[u8] = include_bytes!("../../../samples/data/transactions.csv");
/// A newer drop of the same dataset (same generator, another seed and size).
const SAMPLE_DATA_2: &[u8] = include_bytes!("../../../samples/data/transactions-2.csv");

/// How long one run may take, training included.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// One line of the demo's narration on standard output.
fn say(line: String) -> anyhow::Result<()> {
    crate::cli::stdout(&(line + "\n"))
}

/// Where a run ended: its ledger and the gate's verdict (ModelValidated or ModelRejected).
pub struct Finished {
    pub run_id: String,
    pub entries: Vec<Entry>,
    pub verdict: Entry,
}

pub async fn run(data: Option<&Path>) -> anyhow::Result<()> {
    say("starting moto and MLflow from .venv".into())?;
    let local = LocalStack::start("demo-").await?;
    say(format!(
        "provisioned on {}: buckets {} and {}, bus {}, rules {}, queues+DLQs for {}",
        local.moto.endpoint,
        local.stack.data_bucket,
        local.stack.artifact_bucket,
        local.stack.bus,
        local
            .routes
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        local
            .stack
            .queues
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    ))?;
    say(format!(
        "MLflow at {} delivers signed webhooks to {} (mlflow-webhook, secret generated for this \
         run); registry-poller runs too: both report a new version, the gate judges it once",
        local.mlflow.endpoint, local.webhook_url
    ))?;

    let day = chrono::Utc::now().format("%Y-%m-%d");
    let first_body = match data {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => SAMPLE_DATA.to_vec(),
    };
    let first = follow(
        &local,
        &format!("incoming/transactions/{day}/transactions.csv"),
        first_body,
    )
    .await?;
    report(&local, &first)?;

    let model = first.verdict.detail["model"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let version = first.verdict.detail["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if first.verdict.detail_type == "ModelValidated" {
        local
            .registry
            .validate
            .registry
            .set_alias(&model, "champion", &version)
            .await
            .map_err(|e| anyhow::anyhow!("setting alias champion: {e}"))?;
        say(format!(
            "\nthe demo sets alias `champion` on {model} v{version} itself: deploy-sync moves it \
             only when Argo CD reports the deployment Healthy, and no Argo CD runs here"
        ))?;
    } else {
        say(format!(
            "\n{model} v{version} was rejected, so there is no champion: the next version is \
             judged on thresholds alone"
        ))?;
    }

    // The code path: a change to the trainer, retrained on the latest ready data (the first
    // drop), judged against the champion like any version.
    let code = code_run(&local).await?;
    say(format!(
        "\nthe code run's timeline, as `mlops status {}` prints it (push → build → training → version):",
        code.run_id
    ))?;
    report(&local, &code)?;

    let second = follow(
        &local,
        &format!("incoming/transactions/{day}/transactions-2.csv"),
        SAMPLE_DATA_2.to_vec(),
    )
    .await?;
    report(&local, &second)?;
    say(format!(
        "\nverdicts are recorded in MLflow at {} (tags mlops.validation.status and \
         mlops.validation.report, alias `challenger` on a pass; the server stops with the demo)\n\
         deployment skipped: deploy-sync reported DeploymentSkipped (\"no Argo CD configured\"): \
         nothing was synced and no alias moved. With an `argocd` block it syncs the pushed \
         revision, waits for Healthy and reverts the release commit otherwise (README, \
         \"Deployment stage\")",
        local.mlflow.endpoint
    ))?;
    say(format!(
        "\nserving skipped: vllm-scaler reads vLLM's metrics from the pods of an EKS cluster and \
         scales their Deployment; no cluster and no vLLM run here (the fraud model is served by \
         MLflow, which it does not scale). The policy it runs, replayed offline by \
         `mlops scale-sim` against the seed's HPA and the clairvoyant oracle:\n{}",
        crate::cli::scale_sim::demo_replay()?
    ))
}

/// Uploads `body` to the data bucket under `key` and runs the stack until the run it starts
/// has the gate's verdict and training-watch's report (the trainer registers the version
/// itself, so the gate may judge it first), then lets late webhook deliveries reach the ledger.
pub async fn follow(local: &LocalStack, key: &str, body: Vec<u8>) -> anyhow::Result<Finished> {
    aws::s3_client(&local.sdk)
        .put_object()
        .bucket(&local.stack.data_bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .with_context(|| format!("uploading {key}"))?;
    say(format!(
        "\nuploaded s3://{}/{key}; training locally (the local executor stands in for EKS)",
        local.stack.data_bucket
    ))?;
    let started_by = |e: &Entry| {
        matches!(e.detail_type.as_str(), "DatasetReady" | "DatasetRejected")
            && e.detail["source"]["key"].as_str() == Some(key)
    };
    wait_for_run(
        local,
        &started_by,
        &format!("s3://{}/{key}", local.stack.data_bucket),
    )
    .await
}

/// Runs the stack until the run whose first event `started_by` matches has the gate's verdict
/// and training-watch's report, and its release went as far as it can here.
pub async fn wait_for_run(
    local: &LocalStack,
    started_by: &(dyn Fn(&Entry) -> bool + Sync),
    what: &str,
) -> anyhow::Result<Finished> {
    let store = S3Store::new(aws::s3_client(&local.sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &local.stack.artifact_bucket,
        prefix: "ledger/",
    };
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let handled = local.pump().await?;
        if let Some((run_id, entries)) = find_run(&ledger, started_by).await? {
            let has = |t: &str| entries.iter().any(|e| e.detail_type == t);
            let verdict = entries
                .iter()
                .rev()
                .find(|e| matches!(e.detail_type.as_str(), "ModelValidated" | "ModelRejected"))
                .cloned();
            // A validated version of a served model goes on to its release commit.
            let promoted = |v: &Entry| {
                v.detail_type != "ModelValidated"
                    || local
                        .pipeline
                        .models
                        .get(v.detail["model"].as_str().unwrap_or_default())
                        .is_none_or(|m| m.serving.is_none())
                    || (has("ModelPromoted")
                        && has("GitPushed")
                        && (has("DeploymentSkipped")
                            || has("DeploymentHealthy")
                            || has("DeploymentRolledBack")
                            || has("DeploymentFailed")))
                    || has("PromotionFailed")
            };
            if let Some(verdict) = verdict
                && has("TrainingJobSucceeded")
                && promoted(&verdict)
            {
                // The verdict's tags and alias come back from MLflow as webhook deliveries.
                let settle = Instant::now() + Duration::from_secs(2);
                while Instant::now() < settle {
                    if local.pump().await? == 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                let entries = ledger.timeline(&run_id).await?;
                return Ok(Finished {
                    run_id,
                    entries,
                    verdict,
                });
            }
            let ended = entries.iter().find(|e| {
                matches!(
                    e.detail_type.as_str(),
                    "DatasetRejected"
                        | "TrainingJobFailed"
                        | "TrainingJobStalled"
                        | "ImageBuildFailed"
                )
            });
            if let Some(e) = ended {
                crate::cli::stdout(&format!("\n{}", timeline::render(&run_id, &entries)))?;
                bail!(
                    "the run ended in {}; trainer logs in {}",
                    e.detail_type,
                    local.logs.display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the run for {what} did not finish within {} s; trainer logs in {}",
                RUN_DEADLINE.as_secs(),
                local.logs.display()
            );
        }
        if handled == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A data scientist's change to the trainer (a hyperparameter), pushed to the model's source
/// repository; followed like a data run, from the push to its validated version.
pub async fn code_run(local: &LocalStack) -> anyhow::Result<Finished> {
    use crate::port::{CommitSpec, FileChange, GitAuthor, GitRemote, Pushed};
    let repo = local
        .trainer_repos
        .first()
        .context("the sample pipeline names no model source repository")?;
    let git = crate::adapter::git::Git2Remote::new(
        &repo.url,
        "x-access-token",
        Some(secrecy::SecretString::from(local.git_token.clone())),
        &local.work.path().join("git-work-trainer"),
    )?;
    let file = "train.py";
    let before = git
        .read_file(&repo.branch, file)
        .await?
        .with_context(|| format!("{} has no {file}", repo.url))?;
    let text = String::from_utf8(before.clone()).context("train.py is not UTF-8")?;
    let (old, new) = ("REGULARIZATION_C = 1.0", "REGULARIZATION_C = 0.5");
    if !text.contains(old) {
        bail!("{file} in {} has no line {old:?} to change", repo.url);
    }
    let pushed = git
        .commit(&CommitSpec {
            branch: repo.branch.clone(),
            message: "Stronger regularization: C 1.0 -> 0.5\n".into(),
            author: GitAuthor {
                name: "A data scientist".into(),
                email: "ds@localhost".into(),
            },
            changes: vec![FileChange {
                path: file.into(),
                content: Some(text.replacen(old, new, 1).into_bytes()),
                expected: Some(Some(before)),
            }],
        })
        .await?;
    let commit = match pushed {
        Pushed::Committed { commit, .. } => commit,
        other => bail!("pushing the code change: {other:?}"),
    };
    say(format!(
        "\npushed {commit} to {} ({model}'s trainer: {old} -> {new}); git-webhook gets the \
         signed push, build-image \"builds\" it (locally: a checkout of that commit, no image), \
         and launch-training retrains on the latest ready data with it",
        repo.url,
        model = repo.model
    ))?;
    let started_by = |e: &Entry| {
        e.detail_type == "ModelCodePushed" && e.detail["commit"].as_str() == Some(commit.as_str())
    };
    wait_for_run(local, &started_by, &format!("commit {commit}")).await
}

/// The run's timeline, the gate's table and the release commit, if any.
fn report(local: &LocalStack, run: &Finished) -> anyhow::Result<()> {
    crate::cli::stdout(&format!(
        "\n{}",
        timeline::render(&run.run_id, &run.entries)
    ))?;
    let d = &run.verdict.detail;
    let checks: Vec<crate::event::Check> =
        serde_json::from_value(d["checks"].clone()).unwrap_or_default();
    let model = d["model"].as_str().unwrap_or("-");
    let against = match d["champion_version"].as_str() {
        Some(c) => format!("against champion v{c}"),
        None => "no champion: thresholds alone".into(),
    };
    say(format!(
        "\nvalidation gate of {model} v{} ({against}; samples/pipeline.yaml, models.{model}.validation): {}\n{}",
        d["version"].as_str().unwrap_or("-"),
        if run.verdict.detail_type == "ModelValidated" {
            "passed, alias `challenger` set"
        } else {
            "rejected"
        },
        timeline::gate_table(&checks).trim_end()
    ))?;
    let promoted = run
        .entries
        .iter()
        .find(|e| e.detail_type == "ModelPromoted");
    if let Some(p) = promoted {
        let commit = p.detail["commit"].as_str().unwrap_or_default();
        let out = std::process::Command::new("git")
            .args([
                "show",
                "--stat",
                "--format=commit %H%nAuthor: %an <%ae>%n%n%w(0,4,4)%B",
                commit,
            ])
            .current_dir(&local.manifests_bare)
            .output()
            .context("running git show")?;
        say(format!(
            "\npromoted: release commit in the local manifests repo {} (git http-backend, token auth):\n{}",
            local.manifests_repo,
            String::from_utf8_lossy(&out.stdout).trim_end()
        ))?;
    }
    if let Some(f) = run
        .entries
        .iter()
        .find(|e| e.detail_type == "PromotionFailed")
    {
        say(format!(
            "\npromotion failed: {}",
            f.detail["reason"].as_str().unwrap_or("-")
        ))?;
    }
    Ok(())
}

/// The run one of whose events `started_by` matches, once the ledger has it.
async fn find_run(
    ledger: &Ledger<'_, S3Store>,
    started_by: &(dyn Fn(&Entry) -> bool + Sync),
) -> anyhow::Result<Option<(String, Vec<Entry>)>> {
    for run in ledger.recent(20).await? {
        let entries = ledger.timeline(&run.run_id).await?;
        let ours = entries.iter().any(started_by);
        if ours {
            return Ok(Some((run.run_id, entries)));
        }
    }
    Ok(None)
}
