//! `mlops validate`: the validation gate against any MLflow server, printed as a table.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::adapter::memory::MemoryStore;
use crate::adapter::{aws, memory::MemoryBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{PipelineConfig, ValidateSettings};
use crate::event::{ModelVersionCreated, SCHEMA_VERSION, new_run_id};
use crate::port::ObjectStore;
use crate::stage::registry::validate::{ValidateModel, Validated};

pub async fn run(
    config: &Path,
    model: &str,
    version: &str,
    tracking_uri: &str,
    bucket: Option<&str>,
    record: bool,
) -> anyhow::Result<()> {
    let pipeline = PipelineConfig::load(config)?;
    if pipeline
        .models
        .get(model)
        .and_then(|m| m.validation.as_ref())
        .is_none()
    {
        let known: Vec<&str> = pipeline
            .models
            .iter()
            .filter(|(_, m)| m.validation.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        bail!(
            "model {model:?} has no validation block in {} (models with one: {})",
            config.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    }
    let registry = MlflowRegistry::new(tracking_uri, |k| std::env::var(k).ok())?;
    match bucket {
        Some(b) => {
            let store = S3Store::new(aws::s3_client(&aws::load().await));
            judge(&pipeline, &registry, &store, b, model, version, record).await
        }
        None => {
            judge(
                &pipeline,
                &registry,
                &MemoryStore::default(),
                "",
                model,
                version,
                record,
            )
            .await
        }
    }
}

async fn judge<S: ObjectStore>(
    pipeline: &PipelineConfig,
    registry: &MlflowRegistry,
    store: &S,
    bucket: &str,
    model: &str,
    version: &str,
    record: bool,
) -> anyhow::Result<()> {
    let settings = ValidateSettings {
        pipeline_config: "".into(),
        event_bus: "".into(),
        mlflow_tracking_uri: "".into(),
        artifact_bucket: bucket.to_owned(),
        processed_prefix: "processed/".into(),
        state_prefix: "state/".into(),
        claim_lease: Duration::from_secs(300),
    };
    let bus = MemoryBus::default();
    let stage = ValidateModel {
        pipeline,
        settings: &settings,
        registry,
        bus: &bus,
        store,
    };
    let e = ModelVersionCreated {
        schema_version: SCHEMA_VERSION.into(),
        run_id: new_run_id(),
        model: model.into(),
        version: version.into(),
        source: String::new(),
        mlflow_run_id: None,
        delivery_id: "mlops validate".into(),
    };
    let out = stage
        .evaluate(&e)
        .await
        .with_context(|| format!("validating {model} version {version}"))?;
    let (passed, checks, champion, reason) = match &out {
        Validated::Passed(p) => (true, &p.checks, &p.champion_version, None),
        Validated::Rejected(r) => (false, &r.checks, &r.champion_version, Some(&r.reason)),
        other => bail!("unexpected outcome {other:?}"),
    };
    let mut text = format!(
        "{model} v{version} against {}:\n",
        champion
            .as_ref()
            .map(|c| format!("champion v{c}"))
            .unwrap_or_else(|| "thresholds only (no champion)".into())
    );
    text.push_str(&super::timeline::gate_table(checks));
    text.push_str(&match reason {
        None => "verdict: passed\n".to_owned(),
        Some(r) => format!("verdict: failed: {r}\n"),
    });
    if record {
        stage.record_only(&e, &out).await?;
        text.push_str("recorded on the version (tags mlops.validation.*");
        text.push_str(if passed {
            ", alias challenger)\n"
        } else {
            ")\n"
        });
    }
    super::stdout(&text)?;
    if passed {
        Ok(())
    } else {
        bail!("{model} v{version} did not pass its gate")
    }
}
