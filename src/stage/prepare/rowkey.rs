//! Row identity: duplicates are exact matches on *parsed* values (`1` and `1.0` in a numeric
//! column are equal), and the train/test side is a function of the same identity, so a row lands
//! on the same side in every dataset version.

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
    /// An integer beyond the 64-bit range, as its canonical decimal digits.
    pub fn big(&mut self, negative: bool, digits: &[u8]) {
        self.buf.push(if negative { b'-' } else { b'+' });
        self.buf
            .extend_from_slice(&(digits.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(digits);
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

/// The set of row hashes seen so far: open addressing with linear probing over flat arrays.
/// The keys are already uniform hashes, so their bits are the slot. On large files this set is
/// the pass's bottleneck (a random access per row into hundreds of MiB), so one probe should
/// cost one cache miss (a SwissTable costs two: control bytes and slot), and large arrays ask
/// for transparent huge pages, which take the TLB misses out of those random accesses.
///
/// It grows by doubling with the rows actually inserted, never from an estimate: a guess from
/// the first rows can be inflated at will by the input (short rows, then gigabytes of blank
/// lines). The hashes are spread over [`SHARDS`] tables by their top bits, each doubling on its
/// own, so a doubling holds one small old table beside the new one (not the whole set twice)
/// and moves keys within a few MiB that stay in cache. Every allocation is fallible and bounded
/// by an optional budget, so a file with more distinct rows than memory allows is an error, not
/// an aborted process.
struct Seen {
    shards: Vec<Shard>,
    /// Bytes of slot memory held by all shards.
    bytes: usize,
    len: usize,
    /// 0 marks an empty slot; the hash 0 itself is tracked here.
    has_zero: bool,
    max_bytes: Option<usize>,
}

struct Shard {
    slots: Slots,
    len: usize,
}

const SLOT: usize = std::mem::size_of::<u128>();
const SHARDS: usize = 64;
const MIN_SLOTS: usize = 64;
/// Below this a shard is a plain allocation; at and above it an anonymous mapping advised for
/// huge pages (2 MiB).
const MAP_BYTES: usize = 2 << 20;

/// The duplicate table could not grow: too many distinct rows for the memory allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "more than {rows} distinct rows: the duplicate table would need {} MiB{}",
    (needed + (1 << 20) - 1) >> 20,
    limit.map(|l| format!(", over the budget of {} MiB", l >> 20)).unwrap_or_else(|| ", which could not be allocated".into())
)]
pub struct TableFull {
    pub rows: usize,
    pub needed: usize,
    pub limit: Option<usize>,
}

/// Zeroed slot memory: a plain allocation, or for large tables an anonymous mapping advised for
/// huge pages; `None` when it cannot be had.
enum Slots {
    Map(memmap2::MmapMut),
    Vec(Vec<u128>),
}

impl Slots {
    fn zeroed(n: usize) -> Option<Slots> {
        let bytes = n.checked_mul(SLOT)?;
        if bytes >= MAP_BYTES
            && let Ok(map) = memmap2::MmapMut::map_anon(bytes)
        {
            // Advisory: without THP the mapping still works, with 4 KiB pages.
            let _ = map.advise(memmap2::Advice::HugePage);
            return Some(Slots::Map(map));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0);
        Some(Slots::Vec(v))
    }
    fn get(&mut self) -> &mut [u128] {
        match self {
            // Page-aligned, so the cast cannot fail.
            Slots::Map(m) => bytemuck::try_cast_slice_mut(&mut m[..]).unwrap_or_default(),
            Slots::Vec(v) => v,
        }
    }
}

impl Seen {
    fn new(max_bytes: Option<usize>) -> Result<Seen, TableFull> {
        let bytes = SHARDS * MIN_SLOTS * SLOT;
        let full = TableFull {
            rows: 0,
            needed: bytes,
            limit: max_bytes,
        };
        if max_bytes.is_some_and(|m| m < bytes) {
            return Err(full);
        }
        let mut shards = Vec::new();
        shards.try_reserve_exact(SHARDS).map_err(|_| full)?;
        for _ in 0..SHARDS {
            shards.push(Shard {
                slots: Slots::zeroed(MIN_SLOTS).ok_or(full)?,
                len: 0,
            });
        }
        Ok(Seen {
            shards,
            bytes,
            len: 0,
            has_zero: false,
            max_bytes,
        })
    }

    /// True when the hash was not in the set.
    #[inline]
    fn insert(&mut self, h: u128) -> Result<bool, TableFull> {
        if h == 0 {
            return Ok(!std::mem::replace(&mut self.has_zero, true));
        }
        // The top bits pick the shard, the low bits the slot: independent for any shard size
        // below 2^56 slots.
        let shard = ((h as u64) >> 56) as usize % SHARDS;
        let cap = self.shards[shard].slots.get().len();
        // Load factor at most 3/4.
        if (self.shards[shard].len + 1) * 4 > cap * 3 {
            self.grow(shard, cap)?;
        }
        let s = &mut self.shards[shard];
        let slots = s.slots.get();
        let mask = slots.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match slots[i] {
                0 => {
                    slots[i] = h;
                    s.len += 1;
                    self.len += 1;
                    return Ok(true);
                }
                x if x == h => return Ok(false),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Doubles one shard; its old and new arrays are both held while the keys move.
    fn grow(&mut self, shard: usize, cap: usize) -> Result<(), TableFull> {
        let n = cap.saturating_mul(2);
        let after = self.bytes.saturating_add(cap.saturating_mul(SLOT));
        let full = TableFull {
            rows: self.len,
            needed: after,
            limit: self.max_bytes,
        };
        // The peak: every shard plus the new array, before the old one is freed.
        if self
            .max_bytes
            .is_some_and(|m| after.saturating_add(cap.saturating_mul(SLOT)) > m)
        {
            return Err(full);
        }
        let fresh = Slots::zeroed(n).ok_or(full)?;
        let s = &mut self.shards[shard];
        let mut old = std::mem::replace(&mut s.slots, fresh);
        let slots = s.slots.get();
        let mask = slots.len() - 1;
        for &h in old.get().iter().filter(|h| **h != 0) {
            let mut i = (h as usize) & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = h;
        }
        self.bytes = after;
        Ok(())
    }

    #[cfg(test)]
    fn capacity(&mut self) -> usize {
        self.shards.iter_mut().map(|s| s.slots.get().len()).sum()
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
    seen: Seen,
    test_below: u64,
}

impl Splitter {
    /// `max_table_bytes` bounds the duplicate table's memory (`None`: what the allocator gives).
    pub fn new(test_fraction: f64, max_table_bytes: Option<usize>) -> Result<Splitter, TableFull> {
        Ok(Splitter {
            seen: Seen::new(max_table_bytes)?,
            // Saturating float→int cast: fractions are validated to lie in (0, 1).
            test_below: (test_fraction * 18_446_744_073_709_551_616.0) as u64,
        })
    }

    pub fn decide(&mut self, row_hash: u128) -> Result<Verdict, TableFull> {
        Ok(if !self.seen.insert(row_hash)? {
            Verdict::Duplicate
        } else if ((row_hash >> 64) as u64) < self.test_below {
            Verdict::Test
        } else {
            Verdict::Train
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_grows_with_distinct_rows_only() {
        const BUDGET: usize = 128 << 10;
        let mut s = Splitter::new(0.2, Some(BUDGET)).expect("splitter");
        // Duplicates never grow the table.
        for _ in 0..100_000 {
            s.decide(42).expect("fits");
        }
        assert_eq!(s.seen.capacity(), SHARDS * MIN_SLOTS);
        let mut err = None;
        for h in 1..100_000u128 {
            if let Err(e) = s.decide(h.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("the budget stops the growth");
        // 128 KiB is 8192 slots, 6144 rows at a load of 3/4; shards fill unevenly and a
        // doubling needs its old and new arrays at once, so it stops somewhat earlier.
        assert!((3_000..6_144).contains(&e.rows), "{e:?}");
        assert_eq!(e.limit, Some(BUDGET));
        assert!(s.seen.capacity() * SLOT <= BUDGET);
        assert!(e.to_string().contains("budget"), "{e}");
    }

    #[test]
    fn every_key_survives_the_doublings() {
        let mut s = Splitter::new(0.2, None).expect("splitter");
        let key = |h: u128| h.wrapping_mul(0x2545_F491_4F6C_DD1D_9E37_79B9_7F4A_7C15) | 1;
        for h in 0..200_000u128 {
            assert_ne!(s.decide(key(h)).expect("fits"), Verdict::Duplicate);
        }
        for h in 0..200_000u128 {
            assert_eq!(s.decide(key(h)).expect("fits"), Verdict::Duplicate);
        }
        assert_eq!(s.seen.len, 200_000);
        // 200k rows at a load of at most 3/4 in power-of-two shards: at most 4 × 200k / 3 × 2.
        assert!(
            s.seen.capacity() <= 200_000 * 8 / 3,
            "{}",
            s.seen.capacity()
        );
    }

    #[test]
    fn zero_is_a_hash_like_any_other() {
        let mut s = Splitter::new(0.5, None).expect("splitter");
        assert_ne!(s.decide(0).expect("ok"), Verdict::Duplicate);
        assert_eq!(s.decide(0).expect("ok"), Verdict::Duplicate);
    }
}
