//! `mlops prepare`: the data-arrival preparation on local files; prints the manifest.
//!
//! The outputs of a run appear together or not at all: train, test and the manifest are
//! written into a staging directory inside `--output`, and only a run that succeeds moves them
//! into place, manifest last (the old manifest is removed first, so no manifest ever describes
//! files it did not produce). A rejected or failed run leaves `--output` as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::PipelineConfig;
use crate::stage::prepare::{Limits, Manifest, PrepareError, output_names, prepare_file};

const MANIFEST: &str = "manifest.json";

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
    // Check the input before anything is created.
    std::fs::metadata(input).with_context(|| format!("input {}", input.display()))?;
    match std::fs::metadata(output) {
        Ok(m) if !m.is_dir() => bail!("output {} exists and is not a directory", output.display()),
        _ => {}
    }
    let (train_name, test_name) = output_names(cfg.format);
    let finals: Vec<PathBuf> = [train_name.as_str(), test_name.as_str(), MANIFEST]
        .iter()
        .map(|n| output.join(n))
        .collect();
    if let Some(clash) = finals.iter().find(|f| same_file(input, f)) {
        bail!(
            "the input {} is the output {}: choose another --output",
            input.display(),
            clash.display()
        );
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("creating output directory {}", output.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".mlops-prepare.")
        .tempdir_in(output)
        .with_context(|| format!("creating a staging directory in {}", output.display()))?;
    let prepared = match prepare_file(cfg, input, staging.path(), &Limits::default()) {
        Ok(p) => p,
        Err(PrepareError::Rejected(r)) => {
            bail!("{} rejected ({}): {}", input.display(), r.code, r.message)
        }
        Err(e) => return Err(e).context(format!("preparing {}", input.display())),
    };
    let manifest = Manifest::new(
        dataset,
        cfg,
        &prepared,
        finals[0].display().to_string(),
        finals[1].display().to_string(),
    );
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    let staged_manifest = staging.path().join(MANIFEST);
    std::fs::write(&staged_manifest, &text)
        .with_context(|| format!("writing {}", staged_manifest.display()))?;
    match std::fs::remove_file(&finals[2]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", finals[2].display())),
    }
    for (from, to) in [
        (&prepared.train, &finals[0]),
        (&prepared.test, &finals[1]),
        (&staged_manifest, &finals[2]),
    ] {
        std::fs::rename(from, to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    super::stdout(&text)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
