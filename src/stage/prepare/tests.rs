//! Engine tests on small files written for each case.

use std::path::Path;
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};

use super::*;
use crate::config::{ColumnType, NullMarkers, PipelineConfig};

pub(super) fn cfg(format: Format, columns: &[(&str, ColumnType)]) -> DatasetConfig {
    let mut c = PipelineConfig::from_yaml(
        &format!(
            "datasets:\n  d:\n    prefix: in/\n    format: {}\n",
            format.extension()
        ),
        "test",
    )
    .expect("config")
    .datasets
    .remove("d")
    .expect("dataset");
    c.columns = columns.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    c
}

pub(super) fn run(
    c: &DatasetConfig,
    body: &[u8],
) -> (Result<Prepared, PrepareError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::write(&input, body).expect("write");
    let out = prepare_file(c, &input, &dir.path().join("out"), &Limits::default());
    (out, dir)
}

pub(super) fn rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = ::csv::Reader::from_path(path).expect("open");
    r.records()
        .map(|x| x.expect("record").iter().map(str::to_owned).collect())
        .collect()
}

pub(super) fn rejected(res: Result<Prepared, PrepareError>) -> Reason {
    match res {
        Err(PrepareError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn cleans_like_pandas() {
    // Quoted delimiter, quote and newline; CRLF; a BOM; NA markers; numeric duplicates in
    // another text form; a negative zero.
    let body = "\u{feff}id,amount,note\r\n\
        1,2.50,\"a, b\"\r\n\
        2,3,\"say \"\"hi\"\"\"\r\n\
        3,4,\"two\nlines\"\r\n\
        1,2.5,\"a, b\"\r\n\
        01,2.500,\"a, b\"\r\n\
        4,NA,x\r\n\
        5,,x\r\n\
        6,-0.0,z\r\n\
        6,0,z\r\n\
        7,1,N/A\r\n";
    let c = cfg(Format::Csv, &[]);
    let (res, _dir) = run(&c, body.as_bytes());
    let p = res.expect("prepared");
    assert_eq!(
        p.counts,
        Counts {
            input: 10,
            dropped_nulls: 3,
            dropped_duplicates: 3,
            train: p.counts.train,
            test: p.counts.test
        }
    );
    assert_eq!(p.counts.train + p.counts.test, 4);
    let mut all = rows(&p.train);
    all.extend(rows(&p.test));
    all.sort();
    let want: Vec<Vec<String>> = [
        ["1", "2.50", "a, b"],
        ["2", "3", "say \"hi\""],
        ["3", "4", "two\nlines"],
        ["6", "-0.0", "z"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(all, want, "first occurrences kept, raw text unchanged");
    let header = std::fs::read_to_string(&p.train).expect("read");
    assert!(
        header.starts_with("id,amount,note\n"),
        "BOM stripped from the header: {header:?}"
    );
    assert_eq!(
        p.schema
            .iter()
            .map(|c| c.dtype.as_str())
            .collect::<Vec<_>>(),
        ["int64", "float64", "str"]
    );
}

#[test]
fn mixed_column_compares_text() {
    // A column with a non-numeric value is object dtype in pandas: "1" and "1.0" differ there.
    let body = "k,v\n1,a\n1.0,a\nx,a\n";
    let (res, _d) = run(&cfg(Format::Csv, &[]), body.as_bytes());
    let p = res.expect("prepared");
    assert_eq!(p.counts.dropped_duplicates, 0);
    assert_eq!(p.counts.train + p.counts.test, 3);
}

#[test]
fn explicit_null_markers_replace_pandas_defaults() {
    let mut c = cfg(Format::Csv, &[]);
    c.null_markers = NullMarkers::List(vec!["?".into()]);
    let (res, _d) = run(&c, b"a,b\nNA,1\n?,2\n,3\n");
    let p = res.expect("prepared");
    // "NA" is a value now; "?" is null; an empty field is a value too.
    assert_eq!(p.counts.dropped_nulls, 1);
    assert_eq!(p.counts.train + p.counts.test, 2);
}

#[test]
fn split_is_stable_when_rows_are_appended() {
    let c = cfg(Format::Csv, &[]);
    let mut body = String::from("id,x,label\n");
    for i in 0..4000 {
        body.push_str(&format!("{i},{}.5,{}\n", i * 7 % 113, i % 2));
    }
    let (first, _d1) = run(&c, body.as_bytes());
    let first = first.expect("v1");
    for i in 4000..6000 {
        body.push_str(&format!("{i},{}.5,{}\n", i * 7 % 113, i % 2));
    }
    let (second, _d2) = run(&c, body.as_bytes());
    let second = second.expect("v2");
    assert_ne!(first.version, second.version, "new content, new version");
    let side = |p: &Prepared| {
        let mut m = std::collections::HashMap::new();
        for r in rows(&p.train) {
            m.insert(r[0].clone(), "train");
        }
        for r in rows(&p.test) {
            m.insert(r[0].clone(), "test");
        }
        m
    };
    let (a, b) = (side(&first), side(&second));
    assert_eq!(a.len(), 4000);
    for (id, s) in &a {
        assert_eq!(b.get(id), Some(s), "row {id} changed sides");
    }
    let test_share = second.counts.test as f64 / 6000.0;
    assert!(
        (0.17..0.23).contains(&test_share),
        "test share {test_share}"
    );
}

#[test]
fn same_content_same_version_and_output() {
    let c = cfg(Format::Csv, &[]);
    let body = b"a,b\n1,2\n3,4\n5,6\n";
    let (p1, _d1) = run(&c, body);
    let (p2, _d2) = run(&c, body);
    let (p1, p2) = (p1.expect("p1"), p2.expect("p2"));
    assert_eq!(p1.version, p2.version);
    assert_eq!(std::fs::read(&p1.train).ok(), std::fs::read(&p2.train).ok());
    let mut c2 = c.clone();
    c2.test_fraction = 0.5;
    let (p3, _d3) = run(&c2, body);
    assert_ne!(
        p3.expect("p3").version,
        p1.version,
        "settings are part of the version"
    );
}

#[test]
fn rejects_a_missing_required_column() {
    let c = cfg(Format::Csv, &[("amount", ColumnType::Float)]);
    let r = rejected(run(&c, b"id,value\n1,2\n").0);
    assert_eq!(
        (r.code.as_str(), r.column.as_deref()),
        ("missing_column", Some("amount"))
    );
    assert!(
        r.message.contains("amount") && r.message.contains("id, value"),
        "{}",
        r.message
    );
}

#[test]
fn rejects_a_wrong_type_naming_column_and_line() {
    let c = cfg(
        Format::Csv,
        &[("amount", ColumnType::Float), ("n", ColumnType::Int)],
    );
    let r = rejected(run(&c, b"amount,n\n1.5,1\n2,2\n\"x\ny\",3\nabc,4\n").0);
    assert_eq!(r.code, "wrong_type");
    assert_eq!(r.column.as_deref(), Some("amount"));
    assert_eq!(
        r.line,
        Some(4),
        "the record starts on line 4: {}",
        r.message
    );
    let r = rejected(run(&c, b"amount,n\n1.5,1\n2,2.5\n").0);
    assert_eq!((r.column.as_deref(), r.line), (Some("n"), Some(3)));
    // Nulls are not type errors: the row is dropped instead.
    let (ok, _d) = run(&c, b"amount,n\n1.5,NA\n2,2\n");
    assert_eq!(ok.expect("prepared").counts.dropped_nulls, 1);
}

#[test]
fn rejects_empty_files() {
    let c = cfg(Format::Csv, &[]);
    assert_eq!(rejected(run(&c, b"").0).code, "empty_file");
    assert_eq!(rejected(run(&c, b"a,b\n").0).code, "empty_file");
    assert_eq!(rejected(run(&c, b"a,b\nNA,1\n").0).code, "no_rows_left");
}

#[test]
fn rejects_unreadable_csv() {
    let c = cfg(Format::Csv, &[]);
    let r = rejected(run(&c, b"a,b\n1,2\n3,4,5\n").0);
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(3)));
    let r = rejected(run(&c, b"a,b\n1,2\n\xff\xfe,4\n").0);
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(3)));
    assert!(r.message.contains("UTF-8"));
    let r = rejected(run(&c, b"a,a\n1,2\n").0);
    assert_eq!(r.code, "duplicate_column");
}

pub(super) fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
    buf
}

fn sample_batch() -> RecordBatch {
    let amount: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(1.0),
        Some(1.0),
        None,
        Some(f64::NAN),
        Some(2.0),
        Some(-0.0),
        Some(0.0),
    ]));
    let cat: ArrayRef = Arc::new(StringArray::from(vec![
        Some("a"),
        Some("a"),
        Some("b"),
        Some("c"),
        None,
        Some("z"),
        Some("z"),
    ]));
    let label: ArrayRef = Arc::new(Int64Array::from(vec![0, 0, 1, 0, 1, 1, 1]));
    RecordBatch::try_from_iter([
        ("amount", amount),
        ("merchant_category", cat),
        ("is_fraud", label),
    ])
    .expect("batch")
}

#[test]
fn parquet_cleans_and_splits() {
    let c = cfg(
        Format::Parquet,
        &[
            ("amount", ColumnType::Float),
            ("merchant_category", ColumnType::String),
            ("is_fraud", ColumnType::Int),
        ],
    );
    let (res, _d) = run(&c, &parquet_bytes(&sample_batch()));
    let p = res.expect("prepared");
    assert_eq!(
        (
            p.counts.input,
            p.counts.dropped_nulls,
            p.counts.dropped_duplicates
        ),
        (7, 3, 2)
    );
    assert_eq!(p.counts.train + p.counts.test, 2);
    let read = |path: &Path| -> usize {
        let f = std::fs::File::open(path).expect("open");
        ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("parquet")
            .build()
            .expect("reader")
            .map(|b| b.expect("batch").num_rows())
            .sum()
    };
    assert_eq!(read(&p.train) as u64, p.counts.train);
    assert_eq!(read(&p.test) as u64, p.counts.test);
}

#[test]
fn parquet_rejections() {
    let c = cfg(Format::Parquet, &[("amount", ColumnType::Int)]);
    let r = rejected(run(&c, &parquet_bytes(&sample_batch())).0);
    assert_eq!(
        (r.code.as_str(), r.column.as_deref()),
        ("wrong_type", Some("amount"))
    );
    let c = cfg(Format::Parquet, &[("price", ColumnType::Float)]);
    let r = rejected(run(&c, &parquet_bytes(&sample_batch())).0);
    assert_eq!(
        (r.code.as_str(), r.column.as_deref()),
        ("missing_column", Some("price"))
    );
    let r = rejected(run(&c, b"this is not parquet at all").0);
    assert_eq!(r.code, "wrong_format");
    assert!(r.message.contains("not Parquet"), "{}", r.message);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A character split by a delimiter: the record's bytes concatenate to valid UTF-8, the fields don't.
    let r = rejected(run(&cfg(Format::Csv, &[]), b"a,b\n\xC3,\xA9\n").0);
    assert_eq!((r.code.as_str(), r.line), ("unreadable", Some(2)));
    // Random inputs built from CSV's special bytes and broken UTF-8: every one ends in a result.
    let alphabet: &[&[u8]] = &[
        b",",
        b"\"",
        b"\n",
        b"\r\n",
        b"a",
        b"1",
        b"1.0",
        b"NA",
        b"",
        b" ",
        b"\xC3",
        b"\xA9",
        b"\xEF\xBB\xBF",
        b"true",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let len = (next() % 40) as usize;
        let body: Vec<u8> = (0..len)
            .flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].to_vec())
            .collect();
        match run(&cfg(Format::Csv, &[]), &body).0 {
            Ok(p) => assert_eq!(
                p.counts.input,
                p.counts.dropped_nulls
                    + p.counts.dropped_duplicates
                    + p.counts.train
                    + p.counts.test
            ),
            Err(PrepareError::Rejected(_)) => {}
            Err(e) => panic!("{e} on {body:?}"),
        }
        let _ = run(&cfg(Format::Parquet, &[]), &body).0;
    }
}

#[test]
fn wrong_type_guesses_are_redone_exactly() {
    // Integers beyond 2^53: distinct as int64, equal once the column is float64 (as in pandas).
    let (res, _d) = run(
        &cfg(Format::Csv, &[]),
        b"a\n9007199254740993\n9007199254740992\n",
    );
    assert_eq!(res.expect("ints").counts.dropped_duplicates, 0);
    let (res, _d) = run(
        &cfg(Format::Csv, &[]),
        b"a\n9007199254740993\n9007199254740992\n1.5\n",
    );
    let p = res.expect("floats");
    assert_eq!(
        (p.counts.dropped_duplicates, p.schema[0].dtype.as_str()),
        (1, "float64")
    );
    // A bool column that turns out to be text: "True" and "true" differ again.
    let (res, _d) = run(&cfg(Format::Csv, &[]), b"a\nTrue\ntrue\nmaybe\n");
    let p = res.expect("text");
    assert_eq!(
        (p.counts.dropped_duplicates, p.schema[0].dtype.as_str()),
        (0, "str")
    );
    let (res, _d) = run(&cfg(Format::Csv, &[]), b"a\nTrue\ntrue\n");
    assert_eq!(res.expect("bools").counts.dropped_duplicates, 1);
}
