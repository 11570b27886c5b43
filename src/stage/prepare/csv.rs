//! CSV engine. Two passes over the local file: the first validates the structure, infers each
//! column's type the way pandas' `read_csv` does (int64, float64, bool or object) and hashes the
//! bytes; the second drops rows with nulls and duplicates (compared on values parsed with the
//! inferred types) and writes the survivors to train or test. The raw field text is written
//! back unchanged, re-quoted as needed.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder, WriterBuilder};

use super::{ColumnInfo, EngineOutput, HashingReader, PrepareError, RowKey, Splitter, Verdict};
use crate::config::{ColumnType, DatasetConfig};
use crate::event::Counts;

const BUF: usize = 1 << 20;

/// The type a column is read as, from its non-null values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    /// No non-null value at all (pandas reads an all-NaN float column).
    Empty,
    Int,
    Float,
    Bool,
    Str,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::Empty | Dtype::Float => "float64",
            Dtype::Int => "int64",
            Dtype::Bool => "bool",
            Dtype::Str => "object",
        }
    }
}

/// First value (and its line) that rules a type out.
type Witness = Option<(u64, String)>;

#[derive(Default)]
struct ColumnScan {
    seen_value: bool,
    not_int: Witness,
    not_float: Witness,
    not_bool: Witness,
}

impl ColumnScan {
    fn observe(&mut self, text: &str, line: u64) {
        self.seen_value = true;
        if self.not_int.is_none() && parse_int(text).is_none() {
            self.not_int = Some((line, text.to_owned()));
        }
        if self.not_float.is_none() && parse_float(text).is_none() {
            self.not_float = Some((line, text.to_owned()));
        }
        if self.not_bool.is_none() && parse_bool(text).is_none() {
            self.not_bool = Some((line, text.to_owned()));
        }
    }

    fn inferred(&self) -> Dtype {
        if !self.seen_value {
            Dtype::Empty
        } else if self.not_int.is_none() {
            Dtype::Int
        } else if self.not_float.is_none() {
            Dtype::Float
        } else if self.not_bool.is_none() {
            Dtype::Bool
        } else {
            Dtype::Str
        }
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
    markers: Vec<Vec<u8>>,
    max_len: usize,
    first: [bool; 256],
    empty: bool,
}

impl Nulls {
    fn new(markers: Vec<String>) -> Nulls {
        let mut first = [false; 256];
        let mut empty = false;
        let mut max_len = 0;
        for m in &markers {
            match m.as_bytes().first() {
                Some(b) => first[*b as usize] = true,
                None => empty = true,
            }
            max_len = max_len.max(m.len());
        }
        Nulls {
            markers: markers.into_iter().map(String::into_bytes).collect(),
            max_len,
            first,
            empty,
        }
    }

    #[inline]
    fn is_null(&self, f: &[u8]) -> bool {
        match f.first() {
            None => self.empty,
            Some(b) => {
                f.len() <= self.max_len
                    && self.first[*b as usize]
                    && self.markers.iter().any(|m| m.as_slice() == f)
            }
        }
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
    let nulls = Nulls::new(cfg.null_markers.markers());

    // Pass 1: header, structure, types, content hash.
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let mut hashing = HashingReader::new(BufReader::with_capacity(BUF, file));
    let mut rdr = reader(cfg, &mut hashing);
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
    let mut scans: Vec<ColumnScan> = (0..width).map(|_| ColumnScan::default()).collect();
    let mut rec = ByteRecord::new();
    let mut rows = 0u64;
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| read_err(input, e))?
    {
        rows += 1;
        let line = line_of(&rec);
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
        for (i, f) in rec.iter().enumerate() {
            // Per field: the record's concatenated bytes can be valid UTF-8 while a field is not
            // (a character split by a delimiter).
            let Ok(t) = std::str::from_utf8(f) else {
                return Err(PrepareError::reject(
                    "unreadable",
                    format!("line {line} is not valid UTF-8 (field {})", i + 1),
                    names.get(i).map(String::as_str),
                    Some(line),
                ));
            };
            if !nulls.is_null(f) {
                scans[i].observe(t, line);
            }
        }
    }
    drop(rdr);
    let content_sha256 = {
        // Hash whatever the CSV reader left unread (nothing, normally) so the digest covers the file.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(PrepareError::io(input))?;
        hashing.hex()
    };
    if rows == 0 {
        return Err(PrepareError::reject(
            "empty_file",
            "the file has a header but no data rows".into(),
            None,
            None,
        ));
    }
    let dtypes = resolve_types(cfg, &names, &scans)?;

    // Pass 2: clean, dedupe, split, write.
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let mut rdr = reader(cfg, BufReader::with_capacity(BUF, file));
    let mut train_w = writer(cfg, train)?;
    let mut test_w = writer(cfg, test)?;
    let mut first = true;
    let mut key = RowKey::default();
    let mut split = Splitter::new(cfg.test_fraction);
    let mut counts = Counts::default();
    let write_err = |p: &Path| {
        let p = p.to_owned();
        move |e: csv::Error| PrepareError::Io {
            path: p,
            source: std::io::Error::other(e),
        }
    };
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| read_err(input, e))?
    {
        if first {
            first = false;
            let mut h = header.clone();
            strip_bom(&mut h);
            train_w.write_byte_record(&h).map_err(write_err(train))?;
            test_w.write_byte_record(&h).map_err(write_err(test))?;
            continue;
        }
        if is_blank(&rec) {
            continue;
        }
        counts.input += 1;
        if rec.len() < width || !row_key(&rec, &dtypes, &nulls, &mut key) {
            counts.dropped_nulls += 1;
            continue;
        }
        match split.decide(key.hash()) {
            Verdict::Duplicate => counts.dropped_duplicates += 1,
            Verdict::Train => {
                counts.train += 1;
                train_w.write_byte_record(&rec).map_err(write_err(train))?;
            }
            Verdict::Test => {
                counts.test += 1;
                test_w.write_byte_record(&rec).map_err(write_err(test))?;
            }
        }
    }
    train_w.flush().map_err(PrepareError::io(train))?;
    test_w.flush().map_err(PrepareError::io(test))?;
    let schema = names
        .iter()
        .zip(&dtypes)
        .map(|(n, d)| ColumnInfo {
            name: n.clone(),
            dtype: d.name().to_owned(),
        })
        .collect();
    Ok(EngineOutput {
        content_sha256,
        schema,
        counts,
    })
}

/// Builds the row's key from parsed values; false when the row has a null.
#[inline]
fn row_key(rec: &ByteRecord, dtypes: &[Dtype], nulls: &Nulls, key: &mut RowKey) -> bool {
    key.clear();
    for (f, d) in rec.iter().zip(dtypes) {
        if nulls.is_null(f) {
            return false;
        }
        // Pass 1 proved every non-null value parses as its column's type and is UTF-8.
        let t = std::str::from_utf8(f).unwrap_or_default();
        match d {
            Dtype::Int => match parse_int(t) {
                Some(v) => key.int(v),
                None => return false,
            },
            Dtype::Float | Dtype::Empty => match parse_float(t) {
                // A NaN in a float column is a null to pandas whatever the markers are.
                Some(v) if v.is_nan() => return false,
                Some(v) => key.num(v),
                None => return false,
            },
            Dtype::Bool => key.boolean(parse_bool(t).unwrap_or(false)),
            Dtype::Str => key.bytes(f),
        }
    }
    true
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

/// The inferred types, checked against (and overridden by) the declared ones.
fn resolve_types(
    cfg: &DatasetConfig,
    names: &[String],
    scans: &[ColumnScan],
) -> Result<Vec<Dtype>, PrepareError> {
    names
        .iter()
        .zip(scans)
        .map(|(name, scan)| {
            let Some(declared) = cfg.columns.get(name) else {
                return Ok(scan.inferred());
            };
            let (witness, dtype, word) = match declared {
                ColumnType::Int => (&scan.not_int, Dtype::Int, "an int"),
                ColumnType::Float => (&scan.not_float, Dtype::Float, "a float"),
                ColumnType::Bool => (&scan.not_bool, Dtype::Bool, "a bool"),
                ColumnType::String => return Ok(Dtype::Str),
            };
            match witness {
                Some((line, value)) if scan.seen_value => Err(PrepareError::reject(
                    "wrong_type",
                    format!("column {name:?} must be {word}, but line {line} has {value:?}"),
                    Some(name),
                    Some(*line),
                )),
                _ => Ok(dtype),
            }
        })
        .collect()
}
