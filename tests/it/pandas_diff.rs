//! Differential test against the pinned pandas: generated CSV and Parquet files
//! (`tests/pandas_diff.py`, a fixed seed) run through `prepare` and through
//! `pd.read_csv`/`pd.read_parquet` + `dropna()` + `drop_duplicates()`; input, null, duplicate and
//! kept counts must match, and for CSV the dtype pandas infers for every column.
//!
//! Where pandas accepts a file that `prepare` rejects, only these documented choices pass:
//! nothing left after cleaning (pandas returns an empty frame, `prepare` says so), and a first
//! data row wider than the header (pandas silently turns the extra leading fields into the
//! index). Files pandas refuses must be rejected. `MLOPS_DIFF_CASES` and `MLOPS_DIFF_SEED` run
//! more cases locally.

use std::path::Path;
use std::process::Command;

use mlops::config::{DatasetConfig, PipelineConfig};
use mlops::stage::prepare::{Limits, PrepareError, prepare_file};

use crate::harness::{root, venv_python};
use crate::pandas_parity::{counts, pandas_counts};

fn dataset(format: &str) -> DatasetConfig {
    PipelineConfig::from_yaml(
        &format!("datasets:\n  any:\n    prefix: x/\n    format: {format}\n"),
        "diff",
    )
    .expect("config")
    .datasets
    .remove("any")
    .expect("dataset")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(format: &str, default_cases: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = env_or("MLOPS_DIFF_SEED", 20261202);
    let cases = env_or("MLOPS_DIFF_CASES", default_cases);
    let out = Command::new(venv_python())
        .arg(root().join("tests/pandas_diff.py"))
        .args([
            format,
            "--seed",
            &seed.to_string(),
            "--cases",
            &cases.to_string(),
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("pandas_diff.py runs");
    assert!(
        out.status.success(),
        "pandas_diff.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(dir.path().join("expected.jsonl")).expect("expected");
    let cfg = dataset(format);
    let mut mismatches = Vec::new();
    let mut agreed_rejections = 0;
    for line in expected.lines() {
        let want: serde_json::Value = serde_json::from_str(line).expect("json line");
        let file = dir.path().join(want["file"].as_str().unwrap_or_default());
        if let Some(m) = compare(&cfg, format, &file, &want, &mut agreed_rejections) {
            let body = std::fs::read(&file).unwrap_or_default();
            mismatches.push(format!(
                "{}: {m}\n    input: {:?}",
                file.display(),
                if format == "csv" {
                    String::from_utf8_lossy(&body).into_owned()
                } else {
                    format!("{} bytes of Parquet", body.len())
                }
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cases} {format} cases (seed {seed}) differ from pandas:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        agreed_rejections > 0 || format == "parquet",
        "the generator produced no file pandas refuses"
    );
}

/// `None` when `prepare` agrees with pandas on this file.
fn compare(
    cfg: &DatasetConfig,
    format: &str,
    file: &Path,
    want: &serde_json::Value,
    agreed_rejections: &mut u32,
) -> Option<String> {
    let out = tempfile::tempdir().expect("tempdir");
    let got = prepare_file(cfg, file, out.path(), &Limits::default());
    let pandas_ok = want["ok"].as_bool() == Some(true);
    match got {
        Err(PrepareError::Rejected(r)) if !pandas_ok => {
            *agreed_rejections += 1;
            let _ = r;
            None
        }
        Err(PrepareError::Rejected(r)) => {
            let empty = want["kept"].as_u64() == Some(0)
                && matches!(r.code.as_str(), "no_rows_left" | "empty_file");
            let implicit_index = r.code == "unreadable" && r.message.contains("as the index");
            (!(empty || implicit_index)).then(|| {
                format!(
                    "pandas read it ({want}) but prepare rejected it: {} {}",
                    r.code, r.message
                )
            })
        }
        Err(e) => Some(format!("prepare failed: {e:?}")),
        Ok(_) if !pandas_ok => Some(format!(
            "pandas refused it ({}) but prepare accepted it",
            want["error"]
        )),
        Ok(p) => {
            let (got, exp) = (counts(&p), pandas_counts(want));
            let dtypes: Vec<&str> = p.schema.iter().map(|c| c.dtype.as_str()).collect();
            let want_dtypes: Vec<&str> = want["dtypes"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if got != exp {
                Some(format!(
                    "mlops {got:?} vs pandas {exp:?} (input, nulls, duplicates, kept)"
                ))
            } else if format == "csv" && dtypes != want_dtypes {
                Some(format!(
                    "dtypes: mlops {dtypes:?} vs pandas {want_dtypes:?}"
                ))
            } else {
                None
            }
        }
    }
}

#[test]
fn generated_csv_matches_pandas() {
    run("csv", 400);
}

#[test]
fn generated_parquet_matches_pandas() {
    run("parquet", 200);
}
