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

/// The set of row hashes seen so far: open addressing with linear probing over one flat array.
/// The keys are already uniform hashes, so their low bits are the slot. On large files this set
/// is the pass's bottleneck (a random access per row into hundreds of MiB), so one probe should
/// cost one cache miss (a SwissTable costs two: control bytes and slot), and the array asks for
/// transparent huge pages, which take the TLB misses out of those random accesses.
struct Seen {
    /// 0 marks an empty slot; the hash 0 itself is tracked by `has_zero`.
    slots: Slots,
    len: usize,
    has_zero: bool,
}

/// Zeroed slot memory: an anonymous mapping advised for huge pages, or a plain vector if the
/// mapping cannot be made.
enum Slots {
    Map(memmap2::MmapMut),
    Vec(Vec<u128>),
}

impl Slots {
    fn zeroed(n: usize) -> Slots {
        match memmap2::MmapMut::map_anon(n * std::mem::size_of::<u128>()) {
            Ok(map) => {
                // Advisory: without THP the mapping still works, with 4 KiB pages.
                let _ = map.advise(memmap2::Advice::HugePage);
                Slots::Map(map)
            }
            Err(_) => Slots::Vec(vec![0; n]),
        }
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
    fn with_capacity(rows: usize) -> Seen {
        Seen {
            slots: Slots::zeroed(Self::slots_for(rows)),
            len: 0,
            has_zero: false,
        }
    }

    /// Load factor at most 3/4.
    fn slots_for(rows: usize) -> usize {
        (rows.max(1024) * 4 / 3).next_power_of_two()
    }

    fn capacity(&mut self) -> usize {
        self.slots.get().len()
    }

    /// True when the hash was not in the set.
    #[inline]
    fn insert(&mut self, h: u128) -> bool {
        if h == 0 {
            return !std::mem::replace(&mut self.has_zero, true);
        }
        let cap = self.capacity();
        if (self.len + 1) * 4 > cap * 3 {
            self.grow(cap * 2);
        }
        let slots = self.slots.get();
        let mask = slots.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match slots[i] {
                0 => {
                    slots[i] = h;
                    self.len += 1;
                    return true;
                }
                s if s == h => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self, n: usize) {
        let mut old = std::mem::replace(&mut self.slots, Slots::zeroed(n));
        let slots = self.slots.get();
        let mask = slots.len() - 1;
        for &h in old.get().iter().filter(|h| **h != 0) {
            let mut i = (h as usize) & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = h;
        }
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
    pub fn new(test_fraction: f64) -> Splitter {
        Splitter {
            seen: Seen::with_capacity(0),
            // Saturating float→int cast: fractions are validated to lie in (0, 1).
            test_below: (test_fraction * 18_446_744_073_709_551_616.0) as u64,
        }
    }

    /// Makes room for about `rows` distinct rows at once: growing the table step by step rehashes
    /// every key again at each doubling, and holds the old and new tables at the same time.
    pub fn reserve(&mut self, rows: usize) {
        let want = Seen::slots_for(rows);
        if want > self.seen.capacity() {
            self.seen.grow(want);
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
