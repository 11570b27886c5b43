//! What a file looks like before it is parsed: a Parquet file handed to a CSV dataset, a gzip
//! or an image uploaded by mistake, a FIFO instead of a file. Named up front, these get a
//! rejection a person can act on instead of a parser error about line 3.

use std::fs::Metadata;
use std::io::Read;
use std::path::Path;

use super::PrepareError;
use crate::config::Format;

/// Magic numbers of the formats most often uploaded by mistake.
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "a ZIP archive (or an Excel .xlsx workbook)"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF-", "a PDF document"),
    (b"ARROW1", "an Arrow IPC file"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Excel/Office document",
    ),
];

/// How many leading bytes are looked at.
const HEAD: usize = 8192;

fn head(path: &Path) -> Result<Vec<u8>, PrepareError> {
    let f = std::fs::File::open(path).map_err(PrepareError::io(path))?;
    let mut buf = Vec::with_capacity(HEAD);
    f.take(HEAD as u64)
        .read_to_end(&mut buf)
        .map_err(PrepareError::io(path))?;
    Ok(buf)
}

/// What the leading bytes say the file is, when it is recognisably not text.
fn binary_kind(head: &[u8], tail: &[u8]) -> Option<&'static str> {
    // Parquet starts and ends with PAR1; a CSV whose first column is named PAR1 only starts so.
    if head.starts_with(b"PAR1") && tail == b"PAR1" {
        return Some("a Parquet file");
    }
    // bzip2: "BZh", the block size digit, then the block magic (the digits of pi in BCD).
    if head.starts_with(b"BZh") && head.get(4..10) == Some(b"1AY&SY") {
        return Some("bzip2-compressed data");
    }
    MAGIC
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, what)| *what)
        .or_else(|| {
            head.contains(&0).then_some(
                "binary data (it contains NUL bytes; UTF-16 text must be converted to UTF-8)",
            )
        })
}

fn tail(path: &Path) -> Result<Vec<u8>, PrepareError> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(PrepareError::io(path))?;
    let mut buf = Vec::with_capacity(4);
    if f.seek(SeekFrom::End(-4)).is_ok() {
        f.read_to_end(&mut buf).map_err(PrepareError::io(path))?;
    }
    Ok(buf)
}

/// Rejects a file that is plainly not in the dataset's format.
pub fn check_format(format: Format, path: &Path) -> Result<(), PrepareError> {
    let head = head(path)?;
    let tail = tail(path)?;
    let wrong = |message: String| Err(PrepareError::reject("wrong_format", message, None, None));
    match format {
        Format::Csv => match binary_kind(&head, &tail) {
            Some(what) => wrong(format!(
                "the file looks like {what}, not CSV text; the dataset expects uncompressed CSV"
            )),
            None => Ok(()),
        },
        Format::Parquet if head.starts_with(b"PAR1") => Ok(()),
        Format::Parquet => {
            let what = binary_kind(&head, &tail).unwrap_or("text (CSV?)");
            wrong(format!(
                "the file is not Parquet (no PAR1 magic number); it looks like {what}"
            ))
        }
    }
}

/// A word for what a non-regular file is.
pub fn file_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Whether two paths name the same file (same device and inode), when both exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
