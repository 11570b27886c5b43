//! `mlops prepare`: the data-arrival preparation on local files; prints the manifest.

use std::path::Path;

use anyhow::Context;

use crate::config::PipelineConfig;
use crate::stage::prepare::{Manifest, PrepareError, prepare_file};

pub fn run(config: &Path, dataset: &str, input: &Path, output: &Path) -> anyhow::Result<()> {
    let pipeline = PipelineConfig::load(config)?;
    let cfg = pipeline.datasets.get(dataset).with_context(|| {
        let known: Vec<&str> = pipeline.datasets.keys().map(String::as_str).collect();
        format!(
            "dataset {dataset:?} is not in {} (it has: {})",
            config.display(),
            known.join(", ")
        )
    })?;
    let prepared = match prepare_file(cfg, input, output) {
        Ok(p) => p,
        Err(PrepareError::Rejected(r)) => {
            anyhow::bail!("{} rejected ({}): {}", input.display(), r.code, r.message)
        }
        Err(e) => return Err(e).context(format!("preparing {}", input.display())),
    };
    let manifest = Manifest::new(
        dataset,
        cfg,
        &prepared,
        prepared.train.display().to_string(),
        prepared.test.display().to_string(),
    );
    let text = serde_json::to_string_pretty(&manifest)?;
    let path = output.join("manifest.json");
    std::fs::write(&path, format!("{text}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{text}");
    Ok(())
}
