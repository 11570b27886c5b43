//! Dataset preparation, shared by the `data-arrival` function and `mlops prepare`.
//!
//! Cleans a CSV or Parquet file as the seed's pandas step does (`read_csv(...).dropna()
//! .drop_duplicates()`), splits the survivors into train and test by a hash of the row, and writes
//! both in the input's format. Files are streamed from local disk, so memory grows only with the
//! duplicate-detection set (a 16-byte hash per distinct row, in a table at most 3/4 full, within
//! [`Limits::max_table_bytes`]) and one record at a time (within [`Limits::max_record_bytes`]),
//! never with the file.

mod csv;
mod parquet;
mod rowkey;
mod sniff;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{DatasetConfig, Format};
use crate::event::{Counts, Reason, SourceObject};

pub use rowkey::{RowKey, Splitter, TableFull, Verdict};

/// Why a file cannot become a dataset (permanent), or a local I/O failure (transient).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{}", .0.message)]
    Rejected(Reason),
    #[error("local file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PrepareError {
    pub(crate) fn reject(
        code: &str,
        message: String,
        column: Option<&str>,
        line: Option<u64>,
    ) -> Self {
        PrepareError::Rejected(Reason {
            code: code.to_owned(),
            message,
            column: column.map(str::to_owned),
            line,
        })
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> PrepareError + '_ {
        move |source| PrepareError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Bounds on what one preparation may hold in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest CSV record, in bytes: an unterminated quote or a binary file stops here
    /// instead of pulling the rest of the file into memory.
    pub max_record_bytes: usize,
    /// Memory the duplicate table may take (`None`: whatever the allocator grants). The Lambda
    /// sets it from its memory size, so a file with too many distinct rows is rejected rather
    /// than killed for running out of memory.
    pub max_table_bytes: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 << 20,
            max_table_bytes: None,
        }
    }
}

pub(crate) fn table_full(e: TableFull) -> PrepareError {
    PrepareError::reject(
        "too_many_rows",
        format!("{e}; give the function more memory or split the file"),
        None,
        None,
    )
}

/// One column of the prepared data and the type it was read as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub dtype: String,
}

/// The result of preparing one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub format: Format,
    /// SHA-256 of the input bytes.
    pub content_sha256: String,
    /// The dataset version: a hash of the content and of the settings that shaped the output.
    pub version: String,
    pub schema: Vec<ColumnInfo>,
    pub counts: Counts,
    pub train: PathBuf,
    pub test: PathBuf,
}

/// What `manifest.json` records about a dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub dataset: String,
    pub version: String,
    pub format: Format,
    pub content_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceObject>,
    pub schema: Vec<ColumnInfo>,
    pub counts: Counts,
    pub test_fraction: f64,
    /// How rows were assigned, so a reader can reproduce it.
    pub split: String,
    pub train: String,
    pub test: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub created_at: String,
}

pub const SPLIT_METHOD: &str =
    "xxh3-128 of the row's parsed values; test when the upper 64 bits < test_fraction * 2^64";

impl Manifest {
    pub fn new(
        dataset: &str,
        cfg: &DatasetConfig,
        p: &Prepared,
        train: String,
        test: String,
    ) -> Manifest {
        Manifest {
            dataset: dataset.to_owned(),
            version: p.version.clone(),
            format: p.format,
            content_sha256: p.content_sha256.clone(),
            source: None,
            schema: p.schema.clone(),
            counts: p.counts,
            test_fraction: cfg.test_fraction,
            split: SPLIT_METHOD.to_owned(),
            train,
            test,
            run_id: None,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// Output file names inside a version's directory or prefix.
pub fn output_names(format: Format) -> (String, String) {
    let ext = format.extension();
    (format!("train.{ext}"), format!("test.{ext}"))
}

/// Prepares `input` into `out_dir/train.<ext>` and `out_dir/test.<ext>`. The outputs are written
/// under temporary names and renamed into place only when the whole file was prepared, so a
/// rejected or failed file leaves `out_dir` as it was; an input that is one of the outputs is
/// refused.
pub fn prepare_file(
    cfg: &DatasetConfig,
    input: &Path,
    out_dir: &Path,
    limits: &Limits,
) -> Result<Prepared, PrepareError> {
    let meta = std::fs::metadata(input).map_err(PrepareError::io(input))?;
    if !meta.is_file() {
        return Err(PrepareError::reject(
            "not_a_file",
            format!(
                "{} is {}, not a regular file; preparation reads the file twice, so it needs one",
                input.display(),
                sniff::file_kind(&meta)
            ),
            None,
            None,
        ));
    }
    if meta.len() == 0 {
        return Err(PrepareError::reject(
            "empty_file",
            "the file is empty".into(),
            None,
            None,
        ));
    }
    sniff::check_format(cfg.format, input)?;
    std::fs::create_dir_all(out_dir).map_err(PrepareError::io(out_dir))?;
    let (train_name, test_name) = output_names(cfg.format);
    let train = out_dir.join(train_name);
    let test = out_dir.join(test_name);
    for out in [&train, &test] {
        if sniff::same_file(input, out) {
            return Err(PrepareError::reject(
                "input_is_output",
                format!(
                    "the input {} is also an output of this preparation",
                    input.display()
                ),
                None,
                None,
            ));
        }
    }
    let temp = |name: &str| {
        tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(out_dir)
            .map_err(PrepareError::io(out_dir))
    };
    let (train_tmp, test_tmp) = (temp("train")?, temp("test")?);
    let out = match cfg.format {
        Format::Csv => csv::prepare(cfg, input, train_tmp.path(), test_tmp.path(), limits)?,
        Format::Parquet => parquet::prepare(cfg, input, train_tmp.path(), test_tmp.path(), limits)?,
    };
    if out.counts.train + out.counts.test == 0 {
        return Err(PrepareError::reject(
            "no_rows_left",
            format!(
                "no rows left after cleaning: {} read, {} with nulls, {} duplicates",
                out.counts.input, out.counts.dropped_nulls, out.counts.dropped_duplicates
            ),
            None,
            None,
        ));
    }
    for (tmp, path) in [(train_tmp, &train), (test_tmp, &test)] {
        tmp.persist(path).map_err(|e| PrepareError::Io {
            path: path.clone(),
            source: e.error,
        })?;
    }
    let version = dataset_version(cfg, &out.content_sha256);
    Ok(Prepared {
        format: cfg.format,
        content_sha256: out.content_sha256,
        version,
        schema: out.schema,
        counts: out.counts,
        train,
        test,
    })
}

/// What a format engine returns.
pub(crate) struct EngineOutput {
    pub content_sha256: String,
    pub schema: Vec<ColumnInfo>,
    pub counts: Counts,
}

/// The version depends on the bytes and on every setting that changes the output, so the same
/// object prepared under other settings is a different version.
fn dataset_version(cfg: &DatasetConfig, content_sha256: &str) -> String {
    let settings = serde_json::json!({
        "format": cfg.format,
        "columns": cfg.columns,
        "label": cfg.label,
        "test_fraction": cfg.test_fraction,
        "null_markers": cfg.null_markers,
        "delimiter": cfg.delimiter.to_string(),
        "split": SPLIT_METHOD,
    });
    let mut h = Sha256::new();
    h.update(content_sha256.as_bytes());
    h.update(settings.to_string().as_bytes());
    hex::encode(h.finalize())[..16].to_owned()
}

/// Reads through to the inner reader while hashing every byte.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
    pub fn hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of a whole file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<String, PrepareError> {
    let f = std::fs::File::open(path).map_err(PrepareError::io(path))?;
    let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 20, f));
    io::copy(&mut r, &mut io::sink()).map_err(PrepareError::io(path))?;
    Ok(r.hex())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
