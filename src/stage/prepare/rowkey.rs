//! Row identity: duplicates are exact matches on *parsed* values (`1` and `1.0` in a numeric
//! column are equal), and the train/test side is a function of the same identity, so a row lands
//! on the same side in every dataset version.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_128;

/// Builds a row's canonical byte key; reused across rows to avoid allocation.
#[derive(Default)]
pub struct RowKey {
    buf: Vec<u8>,
}

// 2^53: integers below it are exactly representable as f64, so an integer column and a float
// column holding the same number produce the same key (and the row keeps its split side when a
// column's inferred type widens from int to float as data is appended).
const EXACT_F64_INT: i64 = 1 << 53;

impl RowKey {
    pub fn clear(&mut self) {
        self.buf.clear();
    }
    pub fn num(&mut self, v: f64) {
        // -0.0 == 0.0 for pandas' hash tables too.
        let v = if v == 0.0 { 0.0 } else { v };
        self.buf.push(b'n');
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    pub fn int(&mut self, v: i64) {
        if (-EXACT_F64_INT..=EXACT_F64_INT).contains(&v) {
            self.num(v as f64);
        } else {
            self.buf.push(b'i');
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    pub fn uint(&mut self, v: u64) {
        match i64::try_from(v) {
            Ok(i) => self.int(i),
            Err(_) => {
                self.buf.push(b'u');
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    pub fn boolean(&mut self, v: bool) {
        self.buf.push(b'b');
        self.buf.push(v as u8);
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.push(b's');
        self.buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(v);
    }
    pub fn hash(&self) -> u128 {
        xxh3_128(&self.buf)
    }
}

/// The keys are already uniform hashes: use their low bits as the table hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Duplicate,
    Train,
    Test,
}

/// Decides each row: a duplicate of an earlier row, or which side of the split it goes to.
pub struct Splitter {
    seen: HashSet<u128, BuildHasherDefault<Identity>>,
    test_below: u64,
}

impl Splitter {
    pub fn new(test_fraction: f64) -> Splitter {
        Splitter {
            seen: HashSet::default(),
            // Saturating float→int cast: fractions are validated to lie in (0, 1).
            test_below: (test_fraction * 18_446_744_073_709_551_616.0) as u64,
        }
    }

    pub fn decide(&mut self, row_hash: u128) -> Verdict {
        if !self.seen.insert(row_hash) {
            Verdict::Duplicate
        } else if ((row_hash >> 64) as u64) < self.test_below {
            Verdict::Test
        } else {
            Verdict::Train
        }
    }
}
