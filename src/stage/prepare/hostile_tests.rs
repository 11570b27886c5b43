//! Regression tests for the defects found by trying `prepare` as a hostile user would (issue 7).
//! The expected counts and dtypes are what the pinned pandas (3.1.1) gives for the same bytes:
//! `len(df)`, the rows `dropna()` and `drop_duplicates()` remove, and `df.dtypes`.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Int64Array, NullArray, RecordBatch, StringArray,
    TimestampNanosecondArray, types::Int32Type,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::tests::{cfg, parquet_bytes, rejected, run};
use super::*;
use crate::config::ColumnType;

fn csv() -> DatasetConfig {
    cfg(Format::Csv, &[])
}

fn counts(body: &[u8]) -> (u64, u64, u64, u64, Vec<String>) {
    let p = run(&csv(), body).0.expect("prepared");
    (
        p.counts.input,
        p.counts.dropped_nulls,
        p.counts.dropped_duplicates,
        p.counts.train + p.counts.test,
        p.schema.into_iter().map(|c| c.dtype).collect(),
    )
}

#[test]
fn defect_1_blank_lines_cannot_inflate_the_duplicate_table() {
    // 4096 short rows then 30 MB of blank lines: the table used to be sized from the first
    // rows' length against the file size (millions of slots). It now grows with the distinct
    // rows only, so a 1 MiB budget is plenty.
    let mut body = b"a\n".to_vec();
    for i in 0..4096 {
        body.extend_from_slice(format!("{i}\n").as_bytes());
    }
    body.resize(body.len() + 30_000_000, b'\n');
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("d1.csv");
    std::fs::write(&input, &body).expect("write");
    let limits = Limits {
        max_table_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let p = prepare_file(&csv(), &input, &dir.path().join("out"), &limits).expect("prepared");
    assert_eq!(p.counts.input, 4096);
}

#[test]
fn defect_1_too_many_distinct_rows_is_a_rejection_not_an_abort() {
    let mut body = b"a\n".to_vec();
    for i in 0..10_000 {
        body.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("many.csv");
    std::fs::write(&input, &body).expect("write");
    let limits = Limits {
        max_table_bytes: Some(64 << 10),
        ..Limits::default()
    };
    let r = rejected(prepare_file(
        &csv(),
        &input,
        &dir.path().join("out"),
        &limits,
    ));
    assert_eq!(r.code, "too_many_rows");
    assert!(r.message.contains("budget"), "{}", r.message);
}

#[test]
fn defect_1_a_sparse_file_is_refused_at_its_first_nul() {
    // The same rows in a 20 GiB sparse file aborted the process allocating 128 GiB.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("sparse.csv");
    let mut body = b"a\n".to_vec();
    for i in 0..4096 {
        body.extend_from_slice(format!("{i}\n").as_bytes());
    }
    std::fs::write(&input, &body).expect("write");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .expect("open");
    f.set_len(20 << 30).expect("sparse");
    let r = rejected(prepare_file(
        &csv(),
        &input,
        &dir.path().join("out"),
        &Limits::default(),
    ));
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(4098)));
    assert!(r.message.contains("NUL"), "{}", r.message);
}

#[test]
fn defect_2_an_unterminated_quote_is_rejected_at_its_line() {
    let r = rejected(run(&csv(), b"a,b\n1,\"abc\n4,5\n6,7\n").0);
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(2)));
    assert!(r.message.contains("never closed"), "{}", r.message);
}

#[test]
fn defect_1_and_2_a_long_open_quote_stops_at_the_record_limit() {
    let mut body = b"a\n\"".to_vec();
    body.resize(3 << 20, b'x');
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("q.csv");
    std::fs::write(&input, &body).expect("write");
    let limits = Limits {
        max_record_bytes: 1 << 20,
        ..Limits::default()
    };
    let r = rejected(prepare_file(
        &csv(),
        &input,
        &dir.path().join("out"),
        &limits,
    ));
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(2)));
    assert!(r.message.contains("still open"), "{}", r.message);
}

fn ts_batch(tz: &str) -> RecordBatch {
    let t: ArrayRef = Arc::new(
        TimestampNanosecondArray::from(vec![
            Some(1_704_067_200_000_000_000),
            Some(1_704_067_200_000_000_000),
            None,
            Some(1_704_153_600_000_000_000),
        ])
        .with_timezone(tz),
    );
    RecordBatch::try_from_iter([("t", t)]).expect("batch")
}

#[test]
fn defect_3_named_time_zones_are_read() {
    for tz in ["UTC", "Etc/UTC", "America/New_York", "+02:00"] {
        let p = run(&cfg(Format::Parquet, &[]), &parquet_bytes(&ts_batch(tz)))
            .0
            .unwrap_or_else(|e| panic!("{tz}: {e:?}"));
        assert_eq!(
            (
                p.counts.input,
                p.counts.dropped_nulls,
                p.counts.dropped_duplicates
            ),
            (4, 1, 1),
            "{tz}"
        );
        assert_eq!(
            p.schema[0].dtype,
            DataType::Timestamp(TimeUnit::Nanosecond, Some(tz.into())).to_string()
        );
    }
}

#[test]
fn defect_4_csv_rows_kept_as_pandas_keeps_them() {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (body, want) in [
        // Only pandas' exact NA spellings are nulls.
        (&b"x\nnAn\n1\n"[..], (2, 0, 0, 2, s(&["str"]))),
        (b"x\nNan\n1\n", (2, 0, 0, 2, s(&["str"]))),
        (b"x\n+nan\n1\n", (2, 0, 0, 2, s(&["str"]))),
        (b"x\n nan \n1\n", (2, 0, 0, 2, s(&["str"]))),
        // Tabs around numbers are stripped.
        (b"x\n42\n\t42\n", (2, 0, 1, 1, s(&["int64"]))),
        (b"x\n42\n42\t\n", (2, 0, 1, 1, s(&["int64"]))),
        // uint64, and Python ints past it.
        (
            b"x\n18446744073709551615\n18446744073709551614\n",
            (2, 0, 0, 2, s(&["uint64"])),
        ),
        (
            b"x\n18446744073709551616\n1\n01\n",
            (3, 0, 1, 2, s(&["object"])),
        ),
        // A uint64 column with an NA: pandas keeps the NA marker as text.
        (b"x\n9223372036854775808\nNA\n", (2, 0, 0, 2, s(&["str"]))),
        // A quoted blank is data; an empty quoted field is a null row.
        (b"x\n1\n\" \"\n2\n", (3, 0, 0, 3, s(&["str"]))),
        (b"x\n1\n\"\"\n2\n", (3, 1, 0, 2, s(&["float64"]))),
        // pandas' dtypes: an int column with nulls is float64, a bool column with NA object.
        (b"x\n1\nNA\n", (2, 1, 0, 1, s(&["float64"]))),
        (b"x\nTrue\nNA\n", (2, 1, 0, 1, s(&["object"]))),
        (b"x\ntRuE\nTrue\n", (2, 0, 1, 1, s(&["bool"]))),
        // Integers past 2^53 collide once the column is float64 because of a null.
        (
            b"x,y\n9007199254740993,1\n9007199254740992,1\n,2\n",
            (3, 1, 1, 1, s(&["float64", "int64"])),
        ),
    ] {
        assert_eq!(counts(body), want, "{}", String::from_utf8_lossy(body));
    }
}

fn pandas_meta(index: &str) -> std::collections::HashMap<String, String> {
    [(
        "pandas".to_owned(),
        format!(r#"{{"index_columns": ["{index}"], "columns": []}}"#),
    )]
    .into()
}

#[test]
fn defect_5_parquet_as_pandas_reads_it() {
    // A non-default index is not data: the rows are duplicates to pandas.
    let schema = Arc::new(
        Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("__index_level_0__", DataType::Int64, false),
        ])
        .with_metadata(pandas_meta("__index_level_0__")),
    );
    let b = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 2])),
            Arc::new(Int64Array::from(vec![10, 11, 12])),
        ],
    )
    .expect("batch");
    let p = run(&cfg(Format::Parquet, &[]), &parquet_bytes(&b))
        .0
        .expect("index");
    assert_eq!((p.counts.dropped_duplicates, p.schema.len()), (1, 1));

    // A null-typed column makes every row null.
    let n: ArrayRef = Arc::new(NullArray::new(2));
    let x: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let b =
        RecordBatch::try_from_iter_with_nullable([("x", x, false), ("n", n, true)]).expect("batch");
    let r = rejected(run(&cfg(Format::Parquet, &[]), &parquet_bytes(&b)).0);
    assert_eq!(r.code, "no_rows_left");
    assert!(r.message.contains("2 with nulls"), "{}", r.message);

    // Dictionary-encoded strings (a Categorical) are a string column.
    let d: DictionaryArray<Int32Type> = vec![Some("lo"), Some("hi"), Some("lo"), None]
        .into_iter()
        .collect();
    let d: ArrayRef = Arc::new(d);
    let b = RecordBatch::try_from_iter([("c", d)]).expect("batch");
    let p = run(
        &cfg(Format::Parquet, &[("c", ColumnType::String)]),
        &parquet_bytes(&b),
    )
    .0
    .expect("categorical");
    assert_eq!(
        (p.counts.dropped_nulls, p.counts.dropped_duplicates),
        (1, 1)
    );

    // Duplicate column names are refused, as in CSV.
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Utf8, true),
        Field::new("x", DataType::Utf8, true),
    ]));
    let col: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
    let b = RecordBatch::try_new(schema, vec![col.clone(), col]).expect("batch");
    let r = rejected(run(&cfg(Format::Parquet, &[]), &parquet_bytes(&b)).0);
    assert_eq!(r.code, "duplicate_column");
}

#[test]
fn defect_6_huge_durations_are_a_named_error() {
    for field in ["deadline", "ttl_after_finished", "stall_after"] {
        let yaml = format!(
            "datasets: {{}}\nmodels:\n  m:\n    training:\n      image: x\n      {field}: 300000000000000d\n"
        );
        let e = crate::config::PipelineConfig::from_yaml(&yaml, "t")
            .expect_err("too large")
            .to_string();
        assert!(e.contains(field) && e.contains("too large"), "{e}");
    }
    let yaml = "datasets: {}\nmodels:\n  m:\n    training:\n      image: x\n      ttl_after_finished: 3000000000\n";
    let e = crate::config::PipelineConfig::from_yaml(yaml, "t")
        .expect_err("over int32")
        .to_string();
    assert!(e.contains("ttl_after_finished"), "{e}");
}

#[test]
fn defect_7_an_input_that_is_an_output_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("train.csv");
    let mut body = String::from("a,b\n");
    for i in 0..100_000 {
        body.push_str(&format!("{i},{}\n", i % 7));
    }
    std::fs::write(&input, &body).expect("write");
    let r = rejected(prepare_file(&csv(), &input, dir.path(), &Limits::default()));
    assert_eq!(r.code, "input_is_output");
    assert_eq!(std::fs::read_to_string(&input).expect("read"), body);
}

#[test]
fn defect_8_a_wide_header_is_read() {
    let n = 100_000;
    let header: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let row: Vec<&str> = vec!["1"; n];
    let body = format!("{}\n{}\n", header.join(","), row.join(","));
    let p = run(&csv(), body.as_bytes()).0.expect("wide");
    assert_eq!((p.schema.len(), p.counts.input), (n, 1));
}

#[test]
fn defect_9_a_rejected_file_leaves_the_outputs_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "a,b\n1,2\n3,4\n5,6\n").expect("write");
    let p = prepare_file(&csv(), &good, &out, &Limits::default()).expect("good");
    let before = (
        std::fs::read(&p.train).expect("train"),
        std::fs::read(&p.test).expect("test"),
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n3,4,5\n").expect("write");
    rejected(prepare_file(&csv(), &bad, &out, &Limits::default()));
    let after = (
        std::fs::read(&p.train).expect("train"),
        std::fs::read(&p.test).expect("test"),
    );
    assert_eq!(before, after);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn defect_10_lines_are_physical_lines() {
    let c = cfg(Format::Csv, &[("y", ColumnType::Int)]);
    let r = rejected(run(&c, b"x,y\r\nq,abc\r\n").0);
    assert_eq!((r.code.as_str(), r.line), ("wrong_type", Some(2)));
    let r = rejected(run(&c, b"x,y\n1,1\n\n\nq,abc\n").0);
    assert_eq!(r.line, Some(5));
    assert!(r.message.contains("line 5"), "{}", r.message);
}

#[test]
fn defect_13_clear_messages() {
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
    let r = rejected(run(&csv(), &gz).0);
    assert_eq!(r.code, "wrong_format");
    assert!(r.message.contains("gzip"), "{}", r.message);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    assert!(rejected(run(&csv(), png).0).message.contains("PNG"));
    let x: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let pq = parquet_bytes(&RecordBatch::try_from_iter([("x", x)]).expect("batch"));
    let r = rejected(run(&csv(), &pq).0);
    assert!(r.message.contains("Parquet"), "{}", r.message);
    let r = rejected(run(&cfg(Format::Parquet, &[]), b"a,b\n1,2\n").0);
    assert!(r.message.contains("not Parquet"), "{}", r.message);

    // A FIFO is named as one, instead of "the file is empty".
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let r = rejected(prepare_file(
            &csv(),
            &fifo,
            &dir.path().join("out"),
            &Limits::default(),
        ));
        assert_eq!(r.code, "not_a_file");
        assert!(r.message.contains("FIFO"), "{}", r.message);
        assert!(!dir.path().join("out").exists(), "nothing created");
    }

    // A quote or a line break cannot be the delimiter.
    for d in ["'\"'", "\"\\n\"", "\"\\r\""] {
        let yaml =
            format!("datasets:\n  d:\n    prefix: p/\n    format: csv\n    delimiter: {d}\n");
        let e = crate::config::PipelineConfig::from_yaml(&yaml, "t")
            .expect_err("bad delimiter")
            .to_string();
        assert!(e.contains("delimiter"), "{e}");
    }
}
