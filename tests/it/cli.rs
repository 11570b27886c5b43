//! The `mlops` binary as a user runs it: exit status, what reaches stdout and stderr, and what
//! is left on disk (issue 7: defects 7, 9, 12 and 13 at the command line).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::root;

fn mlops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlops"))
}

fn prepare(input: &Path, output: &Path) -> Output {
    mlops()
        .arg("prepare")
        .arg("--config")
        .arg(root().join("samples/pipeline.yaml"))
        .args(["--dataset", "transactions", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .output()
        .expect("mlops runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample() -> std::path::PathBuf {
    root().join("samples/data/transactions.csv")
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec![
            "render".to_owned(),
            "training".into(),
            "--config".into(),
            root().join("samples/pipeline.yaml").display().to_string(),
            "--event".into(),
            root()
                .join("events/samples/mlops/DatasetReady.json")
                .display()
                .to_string(),
        ],
        vec![
            "prepare".to_owned(),
            "--config".into(),
            root().join("samples/pipeline.yaml").display().to_string(),
            "--dataset".into(),
            "transactions".into(),
            "--input".into(),
            sample().display().to_string(),
            "--output".into(),
            dir.path().join("o").display().to_string(),
        ],
    ] {
        // `… | true`: the reader is gone before anything is written.
        let mut child = mlops()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
        if Path::new("/dev/full").exists() {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full");
            let out = mlops().args(&args).stdout(full).output().expect("runs");
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(
                stderr(&out).contains("writing to standard output")
                    && stderr(&out).contains("No space left"),
                "{}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn outputs_appear_together_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let ok = prepare(&sample(), &out);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let read = |n: &str| std::fs::read(out.join(n)).expect("output");
    let before = (read("train.csv"), read("test.csv"), read("manifest.json"));
    let manifest: serde_json::Value = serde_json::from_slice(&before.2).expect("manifest is JSON");
    assert_eq!(
        manifest["train"].as_str(),
        Some(out.join("train.csv").display().to_string().as_str()),
        "the manifest names the final paths"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "amount,merchant_category,is_fraud\n1.0,a,0\n2.0,b\n3,c,1,9\n",
    )
    .expect("write");
    let rejected = prepare(&bad, &out);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(
        stderr(&rejected).contains("rejected"),
        "{}",
        stderr(&rejected)
    );
    let after = (read("train.csv"), read("test.csv"), read("manifest.json"));
    assert!(before == after, "a rejected run changed the outputs");
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no staging left behind: {names:?}");
}

#[test]
fn an_input_inside_the_output_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("d");
    std::fs::create_dir(&d).expect("dir");
    let input = d.join("train.csv");
    std::fs::copy(sample(), &input).expect("copy");
    let body = std::fs::read(&input).expect("read");
    let out = prepare(&input, &d);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is the output"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&input).expect("read"), body);
}

#[test]
fn messages_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An output path that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let out = prepare(&sample(), &file);
    assert!(
        stderr(&out).contains("exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    // A missing input: reported, and the output directory is not created.
    let missing_out = dir.path().join("never");
    let out = prepare(&dir.path().join("missing.csv"), &missing_out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
    assert!(!missing_out.exists());
    // --help describes every option.
    let help = mlops().args(["prepare", "--help"]).output().expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    for (opt, words) in [
        ("--config", "pipeline configuration"),
        ("--dataset", "settings apply"),
        ("--input", "CSV or Parquet file"),
        ("--output", "Directory for the outputs"),
    ] {
        assert!(
            text.contains(opt) && text.contains(words),
            "{opt} is not described:\n{text}"
        );
    }
}

#[test]
fn scale_sim_prints_the_table_and_draws_the_plot() {
    let dir = tempfile::tempdir().expect("tmp");
    // The committed trace's first 1,500 requests (about five minutes).
    let full =
        std::fs::read_to_string(root().join("samples/traces/azure_conv_2023.csv")).expect("trace");
    let head: Vec<&str> = full.lines().take(1501).collect();
    let trace = dir.path().join("head.csv");
    std::fs::write(&trace, head.join("\n")).expect("write");
    let plot = dir.path().join("sim.svg");
    let out = mlops()
        .args(["scale-sim", "--trace"])
        .arg(&trace)
        .args([
            "--profile",
            "mistral-7b-a10g",
            "--start-delay",
            "180",
            "--plot",
        ])
        .arg(&plot)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1500 requests"), "{stdout}");
    for row in [
        "mlops ",
        "hpa-seed ",
        "oracle ",
        "mlops vs hpa-seed:",
        "mlops vs oracle:",
    ] {
        assert!(stdout.contains(row), "{row}: {stdout}");
    }
    let svg = std::fs::read_to_string(&plot).expect("svg");
    assert!(svg.contains("hpa-seed") && svg.contains("oracle"));
    // Deterministic: the same inputs print the same table.
    let again = mlops()
        .args(["scale-sim", "--trace"])
        .arg(&trace)
        .args(["--profile", "mistral-7b-a10g", "--start-delay", "180"])
        .output()
        .expect("run");
    let table = |s: &str| {
        s.lines()
            .take_while(|l| !l.starts_with("plot:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        table(&stdout),
        table(&String::from_utf8_lossy(&again.stdout))
    );
    // Bad input names what was wrong.
    let bad = mlops()
        .args(["scale-sim", "--trace"])
        .arg(&trace)
        .args(["--profile", "no-such-gpu"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no profile \"no-such-gpu\""));
}
