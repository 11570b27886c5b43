//! `mlops render training` / `mlops render build`: the manifest launch-training or build-image
//! would apply, as YAML, for review.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{PipelineConfig, TrainingSettings};
use crate::event::DatasetReady;
use crate::stage::training::launch::{PlanError, plan};

pub fn training(
    config: &Path,
    event: &Path,
    cluster: String,
    namespace: String,
    mlflow_uri: String,
) -> anyhow::Result<String> {
    let pipeline = PipelineConfig::load(config)?;
    let text =
        std::fs::read_to_string(event).with_context(|| format!("reading {}", event.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let detail = if value.get("detail-type").is_some() {
        if value["detail-type"] != "DatasetReady" {
            bail!(
                "{} is a {} event, not DatasetReady",
                event.display(),
                value["detail-type"]
            );
        }
        value["detail"].clone()
    } else {
        value
    };
    let ready: DatasetReady = serde_json::from_value(detail)
        .with_context(|| format!("{} is not a DatasetReady detail", event.display()))?;
    let settings = TrainingSettings {
        pipeline_config: config.to_owned(),
        event_bus: String::new(),
        mlflow_tracking_uri: mlflow_uri,
        cluster_name: cluster,
        training_namespace: namespace,
        stall_after: Duration::from_secs(1800),
        build_namespace: "builds".into(),
        artifact_bucket: None,
        state_prefix: "state/".into(),
    };
    match plan(&pipeline, &settings, &ready, None) {
        Ok((_, _, w)) => Ok(serde_saphyr::to_string(&w.object)?),
        Err(PlanError::NoModel(why)) => bail!("nothing to train: {why}"),
        Err(PlanError::UnknownModel { model, .. }) => bail!(
            "model {model} has no training config in {}",
            config.display()
        ),
        Err(PlanError::Invalid { error, .. }) => bail!("{error}"),
    }
}

/// The BuildKit Job build-image would apply for a push of `commit` to `model`'s source repo.
pub fn build(
    config: &Path,
    model: &str,
    commit: &str,
    run_id: &str,
    cluster: String,
    namespace: String,
) -> anyhow::Result<String> {
    let pipeline = PipelineConfig::load(config)?;
    let src = pipeline
        .models
        .get(model)
        .and_then(|m| m.source.as_ref())
        .with_context(|| format!("model {model} has no source block in {}", config.display()))?;
    let (cluster, namespace) = crate::stage::build::placement(
        src,
        &crate::stage::build::BuildSettings {
            cluster_name: cluster,
            build_namespace: namespace,
        },
    );
    let w = crate::stage::build::job::render(
        src,
        &crate::stage::build::job::BuildTarget {
            model,
            run_id,
            commit,
            cluster,
            namespace,
        },
    )
    .map_err(|e| anyhow::anyhow!("model {model}: {e}"))?;
    Ok(serde_saphyr::to_string(&w.object)?)
}
