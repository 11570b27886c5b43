//! The release file: the one file of the manifests repo the pipeline owns per model
//! (`<manifests_path>/release.yaml`), a kustomize strategic-merge patch of the serving
//! Deployment that sets `MODEL_URI` and annotates the Deployment and its pods with the model,
//! version and run. Everything else in the repo is people's to edit.

use crate::config::ServingConfig;

pub use crate::port::{MODEL_ANNOTATION, RUN_ANNOTATION, VERSION_ANNOTATION};

/// What a release pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub model: String,
    pub version: String,
    pub run_id: String,
    pub model_uri: String,
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

pub fn render(serving: &ServingConfig, r: &Release) -> String {
    let annotations = |indent: &str| {
        format!(
            "{indent}{MODEL_ANNOTATION}: {}\n{indent}{VERSION_ANNOTATION}: {}\n{indent}{RUN_ANNOTATION}: {}\n",
            quoted(&r.model),
            quoted(&r.version),
            quoted(&r.run_id)
        )
    };
    format!(
        "# Written by the mlops pipeline (promote-model); do not edit by hand: edits are \
         overwritten on the next promotion.\n\
         apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: {}\n  annotations:\n{}\
         spec:\n  template:\n    metadata:\n      annotations:\n{}\
         \x20   spec:\n      containers:\n        - name: {}\n          env:\n\
         \x20           - name: MODEL_URI\n              value: {}\n",
        quoted(&serving.deployment(&r.model)),
        annotations("    "),
        annotations("        "),
        quoted(serving.container()),
        quoted(&r.model_uri),
    )
}

/// The version a release file pins, if it is readable.
pub fn pinned_version(text: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_saphyr::from_str(std::str::from_utf8(text).ok()?).ok()?;
    doc["metadata"]["annotations"][VERSION_ANNOTATION]
        .as_str()
        .map(str::to_owned)
}

/// Whether `new` is older than `pinned` (MLflow versions are increasing integers).
pub fn is_older(new: &str, pinned: &str) -> bool {
    match (new.parse::<u64>(), pinned.parse::<u64>()) {
        (Ok(n), Ok(p)) => n < p,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/manifests-repo/");

    fn serving(engine: &str, path: &str, app: &str) -> ServingConfig {
        let yaml = format!(
            "datasets: {{}}\ngit: {{manifests_repo: https://example.com/m.git}}\nmodels:\n  m:\n    serving: {{engine: {engine}, manifests_path: {path}, argocd_app: {app}}}\n"
        );
        PipelineConfig::from_yaml(&yaml, "test")
            .expect("config")
            .models["m"]
            .serving
            .clone()
            .expect("serving")
    }

    #[test]
    fn the_renderer_reproduces_the_committed_sample_releases() {
        let cases = [
            (
                "mlflow",
                "fraud-detection",
                "deployments/mlflow/fraud-detection",
                "models:/fraud-detection/1",
            ),
            (
                "vllm",
                "mistral-7b-support",
                "deployments/vllm/mistral-7b-support",
                "s3://example-models/mistral-7b-support/v1/",
            ),
            (
                "vllm",
                "llama-3-70b-instruct",
                "deployments/vllm/llama-3-70b-instruct",
                "s3://example-models/llama-3-70b-instruct/v1/",
            ),
        ];
        for (engine, model, path, uri) in cases {
            let s = serving(engine, path, "app");
            let r = Release {
                model: model.into(),
                version: "1".into(),
                run_id: "run-initial".into(),
                model_uri: uri.into(),
            };
            let committed = std::fs::read_to_string(format!("{SAMPLES}{path}/release.yaml"))
                .expect("sample release");
            assert_eq!(render(&s, &r), committed, "{path}");
            assert_eq!(pinned_version(committed.as_bytes()).as_deref(), Some("1"));
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let s = serving("vllm", "deployments/vllm/x", "vllm-x");
        let r = Release {
            model: "x".into(),
            version: "7".into(),
            run_id: "run-1\"\n  evil: true".into(),
            model_uri: "s3://b/k: v\n- x".into(),
        };
        let text = render(&s, &r);
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(
            doc["metadata"]["annotations"][RUN_ANNOTATION],
            "run-1\"\n  evil: true"
        );
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "s3://b/k: v\n- x"
        );
        assert_eq!(pinned_version(text.as_bytes()).as_deref(), Some("7"));
        assert_eq!(pinned_version(b"not: [yaml"), None);
        assert!(is_older("9", "10"));
        assert!(!is_older("10", "9"));
        assert!(!is_older("x", "9"));
    }
}
