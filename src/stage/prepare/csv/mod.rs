//! CSV engine: one pass over the local file that tokenizes it as pandas' C parser does, infers
//! each column's type as `read_csv` does, drops rows with nulls and duplicates (compared on the
//! parsed values) and writes the survivors to train or test.
//!
//! Keys are built while the types are still being inferred, from a guess made on each column's
//! first value ([`infer`]). The guess is exact unless the column later turns out to hold
//! something else; then the pass runs again with the final types, so the result is always what
//! pandas would keep. The field text is written back unchanged, re-quoted as needed.
//!
//! Reference semantics: pandas reading the whole column at once (`low_memory=False`). With its
//! default `low_memory=True`, pandas infers types per chunk of rows and a column whose values
//! change type between chunks ends up mixed (it warns with `DtypeWarning`); we do not mimic that.

mod infer;
mod tokenizer;
mod values;
mod write;

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc;

use super::{ColumnInfo, EngineOutput, HashingReader, Limits, PrepareError, RowKey, Splitter};
use super::{Verdict, table_full};
use crate::config::DatasetConfig;
use crate::event::Counts;
use infer::{Column, Kind};
use tokenizer::{Record, TokenError, Tokenizer};
use write::CsvWriter;

/// Records per batch handed from the parsing thread to the keying thread.
const BATCH: usize = 4096;

/// Null-marker lookup with a cheap length filter in front.
struct Nulls {
    /// Markers bucketed by length: a field is compared only with markers of its own length.
    by_len: Vec<Vec<Vec<u8>>>,
}

impl Nulls {
    fn new(markers: Vec<String>) -> Nulls {
        let mut by_len: Vec<Vec<Vec<u8>>> = Vec::new();
        for m in markers {
            let n = m.len();
            if by_len.len() <= n {
                by_len.resize(n + 1, Vec::new());
            }
            by_len[n].push(m.into_bytes());
        }
        Nulls { by_len }
    }

    #[inline]
    fn is_null(&self, f: &[u8]) -> bool {
        self.by_len
            .get(f.len())
            .is_some_and(|ms| ms.iter().any(|m| m.as_slice() == f))
    }
}

fn token_err(path: &Path, e: TokenError) -> PrepareError {
    match e {
        TokenError::Io(source) => PrepareError::Io {
            path: path.to_owned(),
            source,
        },
        TokenError::Unterminated { line } | TokenError::TooLong { line, .. } => {
            PrepareError::reject(
                "unreadable",
                format!("unreadable CSV: {e}"),
                None,
                Some(line),
            )
        }
        TokenError::Nul { line } => PrepareError::reject(
            "unreadable",
            format!("unreadable CSV: {e}"),
            None,
            Some(line),
        ),
    }
}

pub(super) fn prepare(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
    limits: &Limits,
) -> Result<EngineOutput, PrepareError> {
    let (first, retry) = pass(cfg, input, train, test, None, limits)?;
    match retry {
        None => Ok(first),
        // A guessed column type was wrong: once more with the types now known (exact by design).
        Some(kinds) => {
            let (mut out, _) = pass(cfg, input, train, test, Some(&kinds), limits)?;
            out.content_sha256 = first.content_sha256;
            Ok(out)
        }
    }
}

/// The keying side of a pass: decides each record and counts.
struct Decider<'a> {
    input: &'a Path,
    names: &'a [String],
    cols: Vec<Column>,
    nulls: Nulls,
    key: RowKey,
    split: Splitter,
    counts: Counts,
}

impl Decider<'_> {
    fn decide(&mut self, rec: &Record) -> Result<Option<Verdict>, PrepareError> {
        let line = rec.line();
        let width = self.names.len();
        self.counts.input += 1;
        if rec.len() > width {
            return Err(PrepareError::reject(
                "unreadable",
                format!(
                    "line {line} has {} fields but the header has {width}{}",
                    rec.len(),
                    if self.counts.input == 1 {
                        " (pandas would silently take the extra leading fields as the index)"
                    } else {
                        ""
                    }
                ),
                None,
                Some(line),
            ));
        }
        check_utf8(rec, self.names)?;
        self.key.clear();
        let mut complete = true;
        for i in 0..width {
            // A missing trailing field reads as an empty token, as in pandas.
            let f = rec.get(i).unwrap_or_default();
            let col = &mut self.cols[i];
            if self.nulls.is_null(f) {
                col.na();
                if col.is_null(true) {
                    complete = false;
                    continue;
                }
            }
            match col.key(f, &mut self.key) {
                Ok(Ok(())) => {}
                Ok(Err(m)) => {
                    let name = &self.names[i];
                    return Err(PrepareError::reject(
                        "wrong_type",
                        format!(
                            "column {name:?} must be {}, but line {line} has {:?}",
                            m.want,
                            String::from_utf8_lossy(f)
                        ),
                        Some(name),
                        Some(line),
                    ));
                }
                Err(infer::Unstable) => {
                    return Err(PrepareError::Io {
                        path: self.input.to_owned(),
                        source: std::io::Error::other(format!(
                            "line {line} changed between the two passes over the file"
                        )),
                    });
                }
            }
        }
        if !complete {
            self.counts.dropped_nulls += 1;
            return Ok(None);
        }
        let verdict = self.split.decide(self.key.hash()).map_err(table_full)?;
        match verdict {
            Verdict::Duplicate => self.counts.dropped_duplicates += 1,
            Verdict::Train => self.counts.train += 1,
            Verdict::Test => self.counts.test += 1,
        }
        Ok(Some(verdict))
    }
}

/// Every field must be UTF-8 on its own (pandas decodes the file strictly): the record's bytes
/// can be valid while a delimiter splits a character between two fields.
fn check_utf8(rec: &Record, names: &[String]) -> Result<(), PrepareError> {
    let bad = |i: usize| {
        PrepareError::reject(
            "unreadable",
            format!("line {} is not valid UTF-8 (field {})", rec.line(), i + 1),
            names.get(i).map(String::as_str),
            Some(rec.line()),
        )
    };
    if rec.bytes().is_ascii() {
        return Ok(());
    }
    for (i, f) in rec.iter().enumerate() {
        if std::str::from_utf8(f).is_err() {
            return Err(bad(i));
        }
    }
    Ok(())
}

type Batch = (Vec<Record>, usize);

/// One pass; with `fixed` types its keys are exact, without them the second value says which
/// types a repeat pass must use when a guess was wrong.
fn pass(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
    fixed: Option<&[Kind]>,
    limits: &Limits,
) -> Result<(EngineOutput, Option<Vec<Kind>>), PrepareError> {
    let delim = cfg.delimiter as u8;
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let mut tok = Tokenizer::new(HashingReader::new(file), delim, limits.max_record_bytes);
    let mut header = Record::default();
    if !tok
        .read_record(&mut header)
        .map_err(|e| token_err(input, e))?
    {
        return Err(PrepareError::reject(
            "empty_file",
            "the file has no header line (it is empty or blank)".into(),
            None,
            None,
        ));
    }
    let names = header_names(&header)?;
    check_required(cfg, &names, header.line())?;
    let cols = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let declared = cfg.columns.get(n).copied();
            match fixed.and_then(|f| f.get(i)) {
                Some(k) => Column::fixed(declared, *k),
                None => Column::inferred(declared),
            }
        })
        .collect();
    let mut train_w = CsvWriter::create(train, delim).map_err(PrepareError::io(train))?;
    let mut test_w = CsvWriter::create(test, delim).map_err(PrepareError::io(test))?;
    train_w.write(&header).map_err(PrepareError::io(train))?;
    test_w.write(&header).map_err(PrepareError::io(test))?;
    let mut d = Decider {
        input,
        names: &names,
        cols,
        nulls: Nulls::new(cfg.null_markers.markers()),
        key: RowKey::default(),
        split: Splitter::new(cfg.test_fraction, limits.max_table_bytes).map_err(table_full)?,
        counts: Counts::default(),
    };
    // Three threads in a pipeline: one tokenizes into batches of records, one keys, dedupes and
    // splits them, one writes the kept rows; batches go back to the tokenizer for reuse.
    let hashing = std::thread::scope(|scope| -> Result<_, PrepareError> {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch, TokenError>>(4);
        let (back_tx, back_rx) = mpsc::channel::<Vec<Record>>();
        let producer = scope.spawn(move || {
            loop {
                let mut recs = back_rx.try_recv().unwrap_or_default();
                let mut n = 0;
                let mut failed = None;
                while n < BATCH {
                    if recs.len() == n {
                        recs.push(Record::default());
                    }
                    match tok.read_record(&mut recs[n]) {
                        Ok(true) => n += 1,
                        Ok(false) => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                let last = n < BATCH;
                // A closed channel means the consumer stopped (a rejection): stop reading.
                if n > 0 && tx.send(Ok((recs, n))).is_err() {
                    break;
                }
                if let Some(e) = failed {
                    let _ = tx.send(Err(e));
                    break;
                }
                if last {
                    break;
                }
            }
            tok.into_inner()
        });
        // A third thread writes the kept rows, in file order, to train and test.
        let (wtx, wrx) = mpsc::sync_channel::<(Vec<Record>, usize, Vec<Option<Verdict>>)>(4);
        let writer = scope.spawn(move || -> Result<(), PrepareError> {
            while let Ok((recs, n, sides)) = wrx.recv() {
                for (rec, side) in recs[..n].iter().zip(&sides) {
                    match side {
                        Some(Verdict::Train) => {
                            train_w.write(rec).map_err(PrepareError::io(train))?
                        }
                        Some(Verdict::Test) => test_w.write(rec).map_err(PrepareError::io(test))?,
                        _ => {}
                    }
                }
                let _ = back_tx.send(recs);
            }
            train_w.finish().map_err(PrepareError::io(train))?;
            test_w.finish().map_err(PrepareError::io(test))
        });
        let keyed = (|| -> Result<(), PrepareError> {
            while let Ok(batch) = rx.recv() {
                let (recs, n) = batch.map_err(|e| token_err(input, e))?;
                let mut sides = vec![None; n];
                for (side, rec) in sides.iter_mut().zip(&recs[..n]) {
                    *side = d.decide(rec)?;
                }
                if wtx.send((recs, n, sides)).is_err() {
                    break; // the writer stopped on an error, reported by its join below
                }
            }
            Ok(())
        })();
        drop(rx);
        drop(wtx);
        let panicked = |what: &str| PrepareError::Io {
            path: input.to_owned(),
            source: std::io::Error::other(format!("the CSV {what} thread panicked")),
        };
        let written = writer.join().map_err(|_| panicked("writer"))?;
        let hashing = producer.join().map_err(|_| panicked("reader"))?;
        keyed?;
        written?;
        Ok(hashing)
    })?;
    let mut hashing = hashing;
    // Hash whatever the tokenizer left unread (nothing, normally) so the digest covers the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(PrepareError::io(input))?;
    let content_sha256 = hashing.hex();
    if d.counts.input == 0 {
        return Err(PrepareError::reject(
            "empty_file",
            "the file has a header but no data rows".into(),
            None,
            None,
        ));
    }
    let outcomes: Vec<(Kind, bool)> = d.cols.iter().map(Column::outcome).collect();
    let retry = (fixed.is_none() && outcomes.iter().any(|(_, exact)| !exact))
        .then(|| outcomes.iter().map(|(k, _)| *k).collect());
    let schema = names
        .iter()
        .zip(&outcomes)
        .map(|(n, (k, _))| ColumnInfo {
            name: n.clone(),
            dtype: k.dtype().to_owned(),
        })
        .collect();
    Ok((
        EngineOutput {
            content_sha256,
            schema,
            counts: d.counts,
        },
        retry,
    ))
}

/// Column names as pandas gives them: an empty name is `Unnamed: <position>`.
fn header_names(header: &Record) -> Result<Vec<String>, PrepareError> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    let mut seen = HashSet::with_capacity(header.len());
    for (i, f) in header.iter().enumerate() {
        let name = std::str::from_utf8(f).map_err(|_| {
            PrepareError::reject(
                "unreadable",
                format!(
                    "header field {} (line {}) is not valid UTF-8",
                    i + 1,
                    header.line()
                ),
                None,
                Some(header.line()),
            )
        })?;
        let name = if name.is_empty() {
            format!("Unnamed: {i}")
        } else {
            name.to_owned()
        };
        if !seen.insert(name.clone()) {
            return Err(PrepareError::reject(
                "duplicate_column",
                format!("the header names column {name:?} twice"),
                Some(&name),
                Some(header.line()),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

fn check_required(cfg: &DatasetConfig, names: &[String], line: u64) -> Result<(), PrepareError> {
    let have: HashSet<&str> = names.iter().map(String::as_str).collect();
    for col in cfg.required_columns() {
        if !have.contains(col) {
            let mut shown: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
            if names.len() > 20 {
                shown.push("…");
            }
            return Err(PrepareError::reject(
                "missing_column",
                format!(
                    "required column {col:?} is missing (the header has: {})",
                    shown.join(", ")
                ),
                Some(col),
                Some(line),
            ));
        }
    }
    Ok(())
}
