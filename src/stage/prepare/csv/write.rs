//! Writes kept records back as CSV that pandas reads to the same values: a field is quoted
//! when it holds the delimiter, a quote or a line break, and a record of one blank field is
//! quoted so it is not read as a blank line (which pandas would skip).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::tokenizer::Record;

pub struct CsvWriter {
    out: BufWriter<File>,
    delim: u8,
}

impl CsvWriter {
    pub fn create(path: &Path, delim: u8) -> io::Result<CsvWriter> {
        Ok(CsvWriter {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
            delim,
        })
    }

    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        let single = rec.len() == 1;
        // Most records need no quoting at all: one scan of the whole record decides that.
        let all = rec.bytes();
        if !single
            && memchr::memchr3(self.delim, b'"', b'\n', all).is_none()
            && memchr::memchr(b'\r', all).is_none()
        {
            for (i, f) in rec.iter().enumerate() {
                if i > 0 {
                    self.out.write_all(&[self.delim])?;
                }
                self.out.write_all(f)?;
            }
            return self.out.write_all(b"\n");
        }
        for (i, f) in rec.iter().enumerate() {
            if i > 0 {
                self.out.write_all(&[self.delim])?;
            }
            let blank = f.iter().all(|b| *b == b' ' || *b == b'\t');
            let special = memchr::memchr3(self.delim, b'"', b'\n', f).is_some()
                || memchr::memchr(b'\r', f).is_some();
            if special || (single && blank) {
                self.out.write_all(b"\"")?;
                for part in f.split_inclusive(|b| *b == b'"') {
                    self.out.write_all(part)?;
                    if part.last() == Some(&b'"') {
                        self.out.write_all(b"\"")?;
                    }
                }
                self.out.write_all(b"\"")?;
            } else {
                self.out.write_all(f)?;
            }
        }
        self.out.write_all(b"\n")
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}
