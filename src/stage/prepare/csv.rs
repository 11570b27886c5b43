//! CSV engine: one pass over the local file that validates the structure, infers each column's
//! type the way pandas' `read_csv` does (int64, float64, bool or object), drops rows with nulls and
//! duplicates (compared on the parsed values) and writes the survivors to train or test.
//!
//! Keys are built while the types are still being inferred: an undeclared column is keyed as a
//! number, a bool or text from its first value on. That guess is exact unless the column later
//! turns out to hold something else (a number column with a word in it is text to pandas, where
//! `1` and `1.0` differ); then the pass is run again with the final types, so the result is always
//! what pandas would keep. Int→float widening needs no second pass: integers are keyed as their
//! float value. The raw field text is written back unchanged, re-quoted as needed.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder, WriterBuilder};

use super::{ColumnInfo, EngineOutput, HashingReader, PrepareError, RowKey, Splitter, Verdict};
use crate::config::{ColumnType, DatasetConfig};
use crate::event::Counts;

const BUF: usize = 1 << 20;
/// Records per batch handed from the parsing thread to the keying thread.
const BATCH: usize = 4096;
// Integers beyond 2^53 key differently as int64 and as float64.
const EXACT_F64_INT: i64 = 1 << 53;

/// How a column's values are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Undeclared and no value seen yet.
    Pending,
    /// Undeclared, keyed as numbers so far (int64 or float64 in the end).
    Numeric,
    Int,
    Float,
    Bool,
    Str,
}

/// One column's state during a pass.
struct Column {
    kind: Kind,
    /// Declared in the config: values of another type reject the file.
    declared: bool,
    /// Undeclared and speculated: a value contradicted the guess.
    broken: bool,
    seen: bool,
    non_int: bool,
    big_int: bool,
}

impl Column {
    fn new(declared: Option<ColumnType>, fixed: Option<Kind>) -> Column {
        let kind = match (declared, fixed) {
            (Some(ColumnType::Int), _) => Kind::Int,
            (Some(ColumnType::Float), _) => Kind::Float,
            (Some(ColumnType::Bool), _) => Kind::Bool,
            (Some(ColumnType::String), _) => Kind::Str,
            (None, Some(k)) => k,
            (None, None) => Kind::Pending,
        };
        Column {
            kind,
            declared: declared.is_some(),
            broken: false,
            seen: false,
            non_int: false,
            big_int: false,
        }
    }

    /// Keys one non-null value; `Ok(false)` when the value is a null after all (a float NaN).
    #[inline]
    fn key(
        &mut self,
        name: &str,
        t: &str,
        raw: &[u8],
        line: u64,
        key: &mut RowKey,
    ) -> Result<bool, PrepareError> {
        self.seen = true;
        if self.kind == Kind::Pending {
            self.kind = if parse_float(t).is_some() {
                Kind::Numeric
            } else if parse_bool(t).is_some() {
                Kind::Bool
            } else {
                Kind::Str
            };
        }
        match self.kind {
            Kind::Numeric | Kind::Int | Kind::Float => {
                if self.kind != Kind::Float
                    && let Some(v) = parse_int(t)
                {
                    self.big_int |= !(-EXACT_F64_INT..=EXACT_F64_INT).contains(&v);
                    key.int(v);
                    return Ok(true);
                }
                match parse_float(t) {
                    Some(v) if self.kind != Kind::Int => {
                        self.non_int = true;
                        if v.is_nan() {
                            // pandas reads NaN in a float column as a null, whatever the markers.
                            return Ok(false);
                        }
                        key.num(v);
                        Ok(true)
                    }
                    _ => self.contradicted(
                        name,
                        t,
                        raw,
                        line,
                        key,
                        if self.kind == Kind::Int {
                            "an int"
                        } else {
                            "a float"
                        },
                    ),
                }
            }
            Kind::Bool => match parse_bool(t) {
                Some(b) => {
                    key.boolean(b);
                    Ok(true)
                }
                None => self.contradicted(name, t, raw, line, key, "a bool"),
            },
            Kind::Str | Kind::Pending => {
                key.bytes(raw);
                Ok(true)
            }
        }
    }

    fn contradicted(
        &mut self,
        name: &str,
        t: &str,
        raw: &[u8],
        line: u64,
        key: &mut RowKey,
        word: &str,
    ) -> Result<bool, PrepareError> {
        if self.declared {
            return Err(PrepareError::reject(
                "wrong_type",
                format!("column {name:?} must be {word}, but line {line} has {t:?}"),
                Some(name),
                Some(line),
            ));
        }
        // The column is text to pandas; this pass's keys for it are void, the next pass redoes them.
        self.broken = true;
        key.bytes(raw);
        Ok(true)
    }

    /// The type pandas reads the column as, and whether this pass's keys were exact.
    fn outcome(&self) -> (Kind, bool) {
        match self.kind {
            Kind::Pending => (Kind::Float, true),
            _ if self.broken => (Kind::Str, false),
            Kind::Numeric if self.non_int => (Kind::Float, !self.big_int),
            Kind::Numeric => (Kind::Int, true),
            k => (k, true),
        }
    }
}

fn dtype_name(k: Kind) -> &'static str {
    match k {
        Kind::Int => "int64",
        Kind::Bool => "bool",
        Kind::Str => "object",
        _ => "float64",
    }
}

// pandas' C parser skips surrounding spaces when it converts numbers.
fn parse_int(t: &str) -> Option<i64> {
    t.trim_matches(' ').parse().ok()
}
fn parse_float(t: &str) -> Option<f64> {
    t.trim_matches(' ').parse().ok()
}
fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

/// Null-marker lookup with a cheap length and first-byte filter in front.
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

fn reader<R: std::io::Read>(cfg: &DatasetConfig, r: R) -> csv::Reader<R> {
    ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(cfg.delimiter as u8)
        .buffer_capacity(BUF)
        .from_reader(r)
}

/// pandas (`skip_blank_lines`) skips lines holding only whitespace; the CSV reader already skips
/// empty ones.
fn is_blank(rec: &ByteRecord) -> bool {
    rec.len() == 1 && rec.as_slice().iter().all(|b| *b == b' ' || *b == b'\t')
}

fn line_of(rec: &ByteRecord) -> u64 {
    rec.position().map(|p| p.line()).unwrap_or(0)
}

fn read_err(path: &Path, e: csv::Error) -> PrepareError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => PrepareError::Io {
            path: path.to_owned(),
            source,
        },
        other => PrepareError::reject(
            "unreadable",
            format!(
                "unreadable CSV{}: {other:?}",
                line.map(|l| format!(" at line {l}")).unwrap_or_default()
            ),
            None,
            line,
        ),
    }
}

pub(super) fn prepare(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
) -> Result<EngineOutput, PrepareError> {
    let (first, retry) = pass(cfg, input, train, test, None)?;
    match retry {
        None => Ok(first),
        // A guessed column type was wrong: once more with the types now known (exact by design).
        Some(kinds) => {
            let (mut out, _) = pass(cfg, input, train, test, Some(&kinds))?;
            out.content_sha256 = first.content_sha256;
            Ok(out)
        }
    }
}

/// One pass; with `fixed` types its keys are exact, without them the second value says which
/// types a repeat pass must use when a guess was wrong.
fn pass(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
    fixed: Option<&[Kind]>,
) -> Result<(EngineOutput, Option<Vec<Kind>>), PrepareError> {
    let nulls = Nulls::new(cfg.null_markers.markers());
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let file_len = file.metadata().map_err(PrepareError::io(input))?.len();
    let mut rdr = reader(cfg, HashingReader::new(BufReader::with_capacity(BUF, file)));
    let mut header = ByteRecord::new();
    if !rdr
        .read_byte_record(&mut header)
        .map_err(|e| read_err(input, e))?
    {
        return Err(PrepareError::reject(
            "empty_file",
            "the file is empty (no header line)".into(),
            None,
            None,
        ));
    }
    let names = header_names(&header)?;
    check_required(cfg, &names)?;
    let width = names.len();
    let mut cols: Vec<Column> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Column::new(
                cfg.columns.get(n).copied(),
                fixed.and_then(|f| f.get(i).copied()),
            )
        })
        .collect();
    strip_bom(&mut header);
    let mut train_w = writer(cfg, train)?;
    let mut test_w = writer(cfg, test)?;
    let write_err = |p: &Path| {
        let p = p.to_owned();
        move |e: csv::Error| PrepareError::Io {
            path: p,
            source: std::io::Error::other(e),
        }
    };
    train_w
        .write_byte_record(&header)
        .map_err(write_err(train))?;
    test_w.write_byte_record(&header).map_err(write_err(test))?;

    let mut key = RowKey::default();
    let mut split = Splitter::new(cfg.test_fraction);
    let mut counts = Counts::default();
    // Three threads in a pipeline: one parses CSV into batches of records, one keys, dedupes and
    // splits them, one writes the kept rows; batches go back to the parser for reuse.
    let hashing = std::thread::scope(|scope| -> Result<_, PrepareError> {
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Result<(Vec<ByteRecord>, usize), csv::Error>>(4);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<ByteRecord>>();
        let producer = scope.spawn(move || {
            loop {
                let mut recs = back_rx.try_recv().unwrap_or_default();
                let mut n = 0;
                let mut failed = None;
                while n < BATCH {
                    if recs.len() == n {
                        recs.push(ByteRecord::new());
                    }
                    match rdr.read_byte_record(&mut recs[n]) {
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
            rdr.into_inner()
        });
        // A third thread writes the kept rows, in file order, to train and test.
        let (wtx, wrx) =
            std::sync::mpsc::sync_channel::<(Vec<ByteRecord>, usize, Vec<Option<Verdict>>)>(4);
        let writer = scope.spawn(move || -> Result<(), PrepareError> {
            while let Ok((recs, n, sides)) = wrx.recv() {
                for (rec, side) in recs[..n].iter().zip(&sides) {
                    match side {
                        Some(Verdict::Train) => {
                            train_w.write_byte_record(rec).map_err(write_err(train))?
                        }
                        Some(Verdict::Test) => {
                            test_w.write_byte_record(rec).map_err(write_err(test))?
                        }
                        _ => {}
                    }
                }
                let _ = back_tx.send(recs);
            }
            train_w.flush().map_err(PrepareError::io(train))?;
            test_w.flush().map_err(PrepareError::io(test))
        });
        let mut sized = false;
        while let Ok(batch) = rx.recv() {
            let (recs, n) = batch.map_err(|e| read_err(input, e))?;
            if !sized {
                // Size the duplicate set once, from the file size and the first batch's row length.
                sized = true;
                let read = recs[..n]
                    .last()
                    .and_then(|r| r.position())
                    .map_or(0, |p| p.byte());
                if n == BATCH && read > 0 {
                    split.reserve((file_len as f64 / read as f64 * n as f64 * 1.02) as usize);
                }
            }
            let mut sides = vec![None; n];
            for (j, rec) in recs[..n].iter().enumerate() {
                if is_blank(rec) {
                    continue;
                }
                counts.input += 1;
                let line = line_of(rec);
                if rec.len() > width {
                    return Err(PrepareError::reject(
                        "unreadable",
                        format!(
                            "line {line} has {} fields but the header has {width}",
                            rec.len()
                        ),
                        None,
                        Some(line),
                    ));
                }
                // Missing trailing fields are nulls to pandas.
                let mut complete = rec.len() == width;
                key.clear();
                for (i, f) in rec.iter().enumerate() {
                    // Per field: the record's bytes can be valid UTF-8 while a field is not (a character
                    // split by a delimiter).
                    let Ok(t) = std::str::from_utf8(f) else {
                        return Err(PrepareError::reject(
                            "unreadable",
                            format!("line {line} is not valid UTF-8 (field {})", i + 1),
                            names.get(i).map(String::as_str),
                            Some(line),
                        ));
                    };
                    if nulls.is_null(f) || !cols[i].key(&names[i], t, f, line, &mut key)? {
                        complete = false;
                    }
                }
                if !complete {
                    counts.dropped_nulls += 1;
                    continue;
                }
                let verdict = split.decide(key.hash());
                match verdict {
                    Verdict::Duplicate => counts.dropped_duplicates += 1,
                    Verdict::Train => counts.train += 1,
                    Verdict::Test => counts.test += 1,
                }
                sides[j] = Some(verdict);
            }
            if wtx.send((recs, n, sides)).is_err() {
                break; // the writer stopped on an error, reported by its join below
            }
        }
        drop(rx);
        drop(wtx);
        let panicked = |what: &str| PrepareError::Io {
            path: input.to_owned(),
            source: std::io::Error::other(format!("the CSV {what} thread panicked")),
        };
        writer.join().map_err(|_| panicked("writer"))??;
        producer.join().map_err(|_| panicked("reader"))
    })?;
    let mut hashing = hashing;
    // Hash whatever the CSV reader left unread (nothing, normally) so the digest covers the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(PrepareError::io(input))?;
    let content_sha256 = hashing.hex();
    if counts.input == 0 {
        return Err(PrepareError::reject(
            "empty_file",
            "the file has a header but no data rows".into(),
            None,
            None,
        ));
    }
    let outcomes: Vec<(Kind, bool)> = cols.iter().map(Column::outcome).collect();
    let retry = (fixed.is_none() && outcomes.iter().any(|(_, exact)| !exact))
        .then(|| outcomes.iter().map(|(k, _)| *k).collect());
    let schema = names
        .iter()
        .zip(&outcomes)
        .map(|(n, (k, _))| ColumnInfo {
            name: n.clone(),
            dtype: dtype_name(*k).to_owned(),
        })
        .collect();
    Ok((
        EngineOutput {
            content_sha256,
            schema,
            counts,
        },
        retry,
    ))
}

fn writer(cfg: &DatasetConfig, path: &Path) -> Result<csv::Writer<BufWriter<File>>, PrepareError> {
    let f = File::create(path).map_err(PrepareError::io(path))?;
    Ok(WriterBuilder::new()
        .delimiter(cfg.delimiter as u8)
        .from_writer(BufWriter::with_capacity(BUF, f)))
}

fn strip_bom(h: &mut ByteRecord) {
    if let Some(first) = h.get(0)
        && let Some(rest) = first.strip_prefix(b"\xEF\xBB\xBF")
    {
        let mut fixed = ByteRecord::new();
        fixed.push_field(rest);
        for f in h.iter().skip(1) {
            fixed.push_field(f);
        }
        *h = fixed;
    }
}

fn header_names(header: &ByteRecord) -> Result<Vec<String>, PrepareError> {
    let mut h = header.clone();
    strip_bom(&mut h);
    let mut names: Vec<String> = Vec::with_capacity(h.len());
    for (i, f) in h.iter().enumerate() {
        let name = std::str::from_utf8(f)
            .map_err(|_| {
                PrepareError::reject(
                    "unreadable",
                    format!("header field {} is not valid UTF-8", i + 1),
                    None,
                    Some(1),
                )
            })?
            .to_owned();
        if names.contains(&name) {
            return Err(PrepareError::reject(
                "duplicate_column",
                format!("the header names column {name:?} twice"),
                Some(&name),
                Some(1),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

fn check_required(cfg: &DatasetConfig, names: &[String]) -> Result<(), PrepareError> {
    for col in cfg.required_columns() {
        if !names.iter().any(|n| n == col) {
            return Err(PrepareError::reject(
                "missing_column",
                format!(
                    "required column {col:?} is missing (the header has: {})",
                    names.join(", ")
                ),
                Some(col),
                Some(1),
            ));
        }
    }
    Ok(())
}
