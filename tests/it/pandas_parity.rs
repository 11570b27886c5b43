//! `prepare` keeps exactly the rows pandas keeps: `len(pd.read_csv(f).dropna().drop_duplicates())`
//! computed live by the pinned pandas, over real public CSVs and their variants (quoted
//! delimiters and newlines, CRLF, BOM, NA markers, duplicates; see tests/data/public/ATTRIBUTION.md).

use std::path::PathBuf;
use std::process::Command;

use mlops::config::PipelineConfig;
use mlops::stage::prepare::{Limits, PrepareError, Prepared, prepare_file};

use crate::harness::{root, venv_python};

/// (input, dropped nulls, dropped duplicates, kept) of a preparation.
pub(crate) fn counts(p: &Prepared) -> (u64, u64, u64, u64) {
    (
        p.counts.input,
        p.counts.dropped_nulls,
        p.counts.dropped_duplicates,
        p.counts.train + p.counts.test,
    )
}

/// The same four counts from the reference script's JSON (`u64::MAX` where one is missing, so
/// a malformed reference never matches).
pub(crate) fn pandas_counts(want: &serde_json::Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| want[k].as_u64().unwrap_or(u64::MAX);
    (
        n("input"),
        n("dropped_nulls"),
        n("dropped_duplicates"),
        n("kept"),
    )
}

fn parity_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["tests/data/public", "tests/data/public/extra"] {
        for e in std::fs::read_dir(root().join(dir)).expect("data dir") {
            let p = e.expect("entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".csv") && !name.contains(".invalid.") {
                files.push(p);
            }
        }
    }
    files.push(root().join("samples/data/transactions.csv"));
    files.sort();
    files
}

/// A dataset with no declared columns: every column typed by inference, as pandas does.
fn any_csv() -> mlops::config::DatasetConfig {
    let p = PipelineConfig::from_yaml(
        "datasets:\n  any:\n    prefix: x/\n    format: csv\n",
        "parity",
    );
    p.expect("config").datasets.remove("any").expect("dataset")
}

#[test]
fn kept_rows_match_pandas() {
    let files = parity_files();
    assert!(files.len() >= 15, "parity corpus: {files:?}");
    let out = Command::new(venv_python())
        .arg(root().join("tests/pandas_count.py"))
        .arg("--json")
        .args(&files)
        .output()
        .expect("pandas_count runs");
    assert!(
        out.status.success(),
        "pandas_count failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = any_csv();
    let reference: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(reference.len(), files.len());
    let mut mismatches = Vec::new();
    for (file, want) in files.iter().zip(&reference) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p =
            prepare_file(&cfg, file, dir.path(), &Limits::default()).unwrap_or_else(|e| match e {
                PrepareError::Rejected(r) => panic!("{} rejected: {}", file.display(), r.message),
                other => panic!("{}: {other}", file.display()),
            });
        let (got, exp) = (counts(&p), pandas_counts(want));
        if got != exp {
            mismatches.push(format!(
                "{}: mlops {got:?} vs pandas {exp:?} (input, nulls, duplicates, kept)",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn pandas_rejects_what_we_reject() {
    // The malformed file pandas refuses ("Expected 2 fields in line 3, saw 3") is rejected with its line.
    let file = root().join("tests/data/public/extra/too_many_fields.invalid.csv");
    let out = Command::new(venv_python())
        .arg(root().join("tests/pandas_count.py"))
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success(), "pandas accepted {}", file.display());
    let cfg = any_csv();
    let dir = tempfile::tempdir().expect("tempdir");
    match prepare_file(&cfg, &file, dir.path(), &Limits::default()) {
        Err(PrepareError::Rejected(r)) => assert_eq!(
            (r.code.as_str(), r.line),
            ("unreadable", Some(3)),
            "{}",
            r.message
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}
