//! Renders a run's ledger entries as a timeline for people.

use std::fmt::Write;

use crate::stage::ledger::Entry;

pub fn render(run_id: &str, entries: &[Entry]) -> String {
    let mut out = format!("run {run_id}\n");
    for e in entries {
        let _ = writeln!(
            out,
            "  {}  {:<22} {:<26} {}",
            e.time,
            e.source,
            e.detail_type,
            summary(&e.detail_type, &e.detail)
        );
    }
    out
}

/// One event as it happens, with its run (what `mlops dev up` prints).
pub fn event_line(
    time: &str,
    run_id: &str,
    source: &str,
    detail_type: &str,
    detail: &serde_json::Value,
) -> String {
    format!(
        "{time}  {run_id}  {source:<22} {detail_type:<26} {}",
        summary(detail_type, detail)
    )
}

/// The fields worth a glance for each detail-type.
fn summary(detail_type: &str, d: &serde_json::Value) -> String {
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
    match detail_type {
        "DatasetReady" => {
            let c = &d["counts"];
            format!(
                "dataset={} version={} rows: input={} dropped_nulls={} dropped_duplicates={} train={} test={}",
                s("dataset"),
                s("version"),
                c["input"],
                c["dropped_nulls"],
                c["dropped_duplicates"],
                c["train"],
                c["test"]
            )
        }
        "DatasetRejected" => {
            let reasons: Vec<String> = d["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["message"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "dataset={} key={} reason: {}",
                s("dataset"),
                d["source"]["key"].as_str().unwrap_or("-"),
                reasons.join("; ")
            )
        }
        "TrainingJobSubmitted" => {
            let mut line = format!(
                "model={} {} {}/{} on {} dataset_version={}",
                s("model"),
                d["workload"]["kind"].as_str().unwrap_or("-"),
                d["workload"]["namespace"].as_str().unwrap_or("-"),
                d["workload"]["name"].as_str().unwrap_or("-"),
                d["workload"]["cluster"].as_str().unwrap_or("-"),
                s("dataset_version")
            );
            if let Some(i) = d["image"].as_str() {
                line.push_str(&format!(" image={i}"));
            }
            line
        }
        "ModelCodePushed" => format!(
            "model={} {} commit={} changed={}",
            s("model"),
            s("ref"),
            s("commit"),
            d["changed"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        "ImageBuildSubmitted" => format!(
            "model={} image={} build={}/{}",
            s("model"),
            s("image"),
            d["workload"]["namespace"].as_str().unwrap_or("-"),
            d["workload"]["name"].as_str().unwrap_or("-")
        ),
        "ImageBuilt" => format!(
            "model={} image={} digest={}{}",
            s("model"),
            s("image"),
            s("digest"),
            if d.get("workload").is_none() {
                " (already in the registry)"
            } else {
                ""
            }
        ),
        "ImageBuildFailed" => format!(
            "model={} image={} reason={}: {}",
            s("model"),
            s("image"),
            d["condition"]["reason"].as_str().unwrap_or("-"),
            d["condition"]["message"].as_str().unwrap_or("-")
        ),
        "TrainingJobSucceeded" => format!(
            "model={} version={} mlflow_run={} condition={} duration={}s",
            s("model"),
            s("model_version"),
            s("mlflow_run_id"),
            d["condition"]["type"].as_str().unwrap_or("-"),
            d["duration_seconds"]
        ),
        "ModelVersionCreated" => format!(
            "model={} version={} source={}",
            s("model"),
            s("version"),
            s("source")
        ),
        "ModelValidated" | "ModelRejected" => {
            let checks = d["checks"].as_array().map(Vec::len).unwrap_or(0);
            let champion = d["champion_version"]
                .as_str()
                .map(|c| format!("v{c}"))
                .unwrap_or_else(|| "none".into());
            let mut line = format!(
                "model={} version={} champion={champion} checks={checks}",
                s("model"),
                s("version")
            );
            if let Some(r) = d["reason"].as_str() {
                line.push_str(&format!(" reason: {r}"));
            }
            line
        }
        "GitPushed" => format!(
            "{} {} applications={}{}",
            s("ref"),
            s("revision"),
            d["applications"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            d["rollback_of"]
                .as_str()
                .map(|c| format!(" rollback_of={c}"))
                .unwrap_or_default()
        ),
        "DeploymentHealthy" | "DeploymentRolledBack" | "DeploymentFailed" | "DeploymentSkipped" => {
            let mut line = format!(
                "application={} revision={} model={} version={}",
                s("application"),
                s("revision"),
                s("model"),
                s("version")
            );
            if let Some(r) = d["revert_revision"].as_str() {
                line.push_str(&format!(" revert={r}"));
            }
            if let Some(r) = d["reason"].as_str().or(d["message"].as_str()) {
                line.push_str(&format!(": {r}"));
            }
            line
        }
        "ModelPromoted" => format!(
            "model={} version={} commit={} {}",
            s("model"),
            s("version"),
            s("commit"),
            s("path")
        ),
        "ModelVersionTagSet" => {
            let value = s("value");
            let short: String = value.chars().take(48).collect();
            let more = if short.len() < value.len() { "…" } else { "" };
            format!(
                "model={} version={} {}={short}{more}",
                s("model"),
                s("version"),
                s("key")
            )
        }
        "ModelVersionAliasChanged" => format!(
            "model={} alias={} version={}",
            s("model"),
            s("alias"),
            d.get("version")
                .and_then(|v| v.as_str())
                .unwrap_or("(deleted)")
        ),
        "TrainingJobFailed" | "TrainingJobStalled" => format!(
            "model={} workload={} reason={}: {}",
            s("model"),
            d["workload"]["name"].as_str().unwrap_or("-"),
            d["condition"]["reason"].as_str().unwrap_or("-"),
            d["condition"]["message"].as_str().unwrap_or("-")
        ),
        _ => {
            let mut parts = Vec::new();
            if let Some(o) = d.as_object() {
                for (k, v) in o {
                    if k == "schema_version" || k == "run_id" {
                        continue;
                    }
                    if let Some(t) = v.as_str() {
                        parts.push(format!("{k}={t}"));
                    } else if v.is_number() {
                        parts.push(format!("{k}={v}"));
                    }
                }
            }
            parts.join(" ")
        }
    }
}

/// The gate's checks as a table: check, value, bound, verdict.
pub fn gate_table(checks: &[crate::event::Check]) -> String {
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.value.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                c.bound.clone(),
                c.verdict.clone(),
            ]
        })
        .collect();
    let head = ["check", "value", "bound", "verdict"].map(str::to_owned);
    let mut width = [0usize; 4];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:>w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        );
    }
    out
}
