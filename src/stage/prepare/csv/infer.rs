//! A column's type as pandas' C parser infers it, decided while the rows stream past.
//!
//! pandas tries int64, then float64, then bool, then text (`dtype_cast_order`), each over the
//! whole column, and its fallbacks depend on the *first* token that fails: an int64 overflow
//! retries as uint64, whose overflow retries as Python ints; a uint64 column with a negative
//! value or an NA leaves the column as text with its NA markers kept as literal strings. [`Stats`]
//! records just enough of each scan (the first failure, the flags the uint64 scan raises, and
//! whether every value parses as a float, a bool, a Python int) to reach pandas' verdict after
//! one pass.
//!
//! Rows are keyed during that same pass by a guess made from the column's first value. The
//! guess is exact unless the column turns out to be something else; then the file is read once
//! more with the types known ([`Column::fixed`]).

use super::values::{self, Int, Uint};
use crate::config::ColumnType;
use crate::stage::prepare::RowKey;

/// What pandas reads a column as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    UInt,
    /// Integers beyond 64 bits, as Python ints (dtype `object`).
    PyLong,
    Float,
    /// An int64 column with NAs: pandas casts the parsed ints to float64.
    FloatFromInt,
    Bool,
    /// A bool column with NAs (dtype `object`).
    BoolObject,
    Str,
    /// Text that pandas read with NA detection off: its NA markers are strings, not nulls.
    StrLiteral,
}

impl Kind {
    pub fn dtype(self) -> &'static str {
        match self {
            Kind::Int => "int64",
            Kind::UInt => "uint64",
            Kind::Float | Kind::FloatFromInt => "float64",
            Kind::Bool => "bool",
            Kind::PyLong | Kind::BoolObject => "object",
            Kind::Str | Kind::StrLiteral => "str",
        }
    }
}

/// The first token an integer scan stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Overflow,
    /// Invalid characters or no digits: both move pandas on to float64.
    NotInt,
}

/// Enough of pandas' per-dtype scans to name the column's type at the end.
#[derive(Debug, Default, Clone)]
struct Stats {
    na: u64,
    int_fail: Option<Fail>,
    uint_fail: Option<Fail>,
    seen_uint: bool,
    seen_sint: bool,
    seen_null: bool,
    not_pylong: bool,
    not_float: bool,
    not_bool: bool,
}

impl Stats {
    fn na(&mut self) {
        self.na += 1;
        if self.uint_fail.is_none() {
            self.seen_null = true;
        }
    }

    /// Counts one non-null token; returns its float parse when it made one.
    fn value(&mut self, t: &[u8], int: Int) -> Option<Option<f64>> {
        if self.int_fail.is_none() {
            self.int_fail = match int {
                Int::Ok(_) => None,
                Int::Overflow => Some(Fail::Overflow),
                Int::Invalid | Int::NoDigits => Some(Fail::NotInt),
            };
        }
        if let Int::Ok(_) = int {
            // An int64 token is also a uint64 (or negative), a Python int and a float, never a bool.
            if self.uint_fail.is_none() && starts_negative(t) {
                self.seen_sint = true;
            }
            self.not_bool = true;
            return None;
        }
        if self.uint_fail.is_none() {
            match values::uint64(t) {
                Uint::Ok(v) => self.seen_uint |= v > i64::MAX as u64,
                Uint::Negative => self.seen_sint = true,
                Uint::Overflow => self.uint_fail = Some(Fail::Overflow),
                Uint::Invalid | Uint::NoDigits => self.uint_fail = Some(Fail::NotInt),
            }
        }
        if !self.not_pylong {
            self.not_pylong = values::py_int(t).is_none();
        }
        let mut float = None;
        if !self.not_float {
            let f = values::float64(t);
            self.not_float = f.is_none();
            float = Some(f);
        }
        if !self.not_bool {
            self.not_bool = values::boolean(t).is_none();
        }
        float
    }

    /// pandas' verdict (`TextReader._convert_tokens`).
    fn kind(&self) -> Kind {
        let float_path = || {
            if !self.not_float {
                Kind::Float
            } else if !self.not_bool {
                if self.na > 0 {
                    Kind::BoolObject
                } else {
                    Kind::Bool
                }
            } else {
                Kind::Str
            }
        };
        let pylong = || {
            if self.not_pylong {
                Kind::StrLiteral
            } else {
                Kind::PyLong
            }
        };
        match self.int_fail {
            None if self.na == 0 => Kind::Int,
            None => Kind::FloatFromInt,
            Some(Fail::NotInt) => float_path(),
            Some(Fail::Overflow) => match self.uint_fail {
                Some(Fail::Overflow) => pylong(),
                Some(Fail::NotInt) => float_path(),
                None if self.seen_uint && (self.seen_sint || self.seen_null) => Kind::StrLiteral,
                None if self.seen_sint => pylong(),
                None => Kind::UInt,
            },
        }
    }
}

fn starts_negative(t: &[u8]) -> bool {
    t.iter().find(|b| !values::is_c_space(**b)) == Some(&b'-')
}

/// How the first pass keys a column before its type is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guess {
    /// Only NAs so far.
    Pending,
    /// Numbers: ints within 2^53 as their float value (so an int column that turns float keeps
    /// its keys), wider ints exactly.
    Num,
    Bool,
    Str,
}

/// A declared column's value is not of its declared type.
#[derive(Debug)]
pub struct Mismatch {
    pub want: &'static str,
}

/// A value that changed meaning between the two passes (the file changed under us).
#[derive(Debug)]
pub struct Unstable;

/// One column's state during a pass.
pub struct Column {
    declared: Option<ColumnType>,
    fixed: Option<Kind>,
    guess: Guess,
    /// A key of this pass may differ from the final type's.
    inexact: bool,
    /// An int beyond 2^53 was keyed as an int: not the key of its float value.
    wide: bool,
    stats: Stats,
}

// Integers up to 2^53 are exact in f64.
const EXACT_F64_INT: i64 = 1 << 53;

impl Column {
    /// A column of the first pass, typed by inference.
    pub fn inferred(declared: Option<ColumnType>) -> Column {
        Column {
            declared,
            fixed: None,
            guess: Guess::Pending,
            inexact: false,
            wide: false,
            stats: Stats::default(),
        }
    }

    /// A column of the second pass, whose type the first pass found.
    pub fn fixed(declared: Option<ColumnType>, kind: Kind) -> Column {
        Column {
            fixed: Some(kind),
            ..Column::inferred(declared)
        }
    }

    /// Whether `t` counts as a null here, given the dataset's NA markers.
    #[inline]
    pub fn is_null(&self, is_marker: bool) -> bool {
        is_marker && self.fixed != Some(Kind::StrLiteral)
    }

    /// Checks and keys one value that is not null.
    #[inline]
    pub fn key(&mut self, t: &[u8], key: &mut RowKey) -> Result<Result<(), Mismatch>, Unstable> {
        if let Some(d) = self.declared
            && let Err(m) = check_declared(d, t)
        {
            return Ok(Err(m));
        }
        match self.fixed {
            Some(kind) => key_fixed(kind, t, key).map(Ok),
            None => {
                self.key_guessed(t, key);
                Ok(Ok(()))
            }
        }
    }

    /// Records an NA marker of the first pass.
    #[inline]
    pub fn na(&mut self) {
        if self.fixed.is_none() {
            self.stats.na();
        }
    }

    fn key_guessed(&mut self, t: &[u8], key: &mut RowKey) {
        let int = values::int64(t);
        let parsed = self.stats.value(t, int);
        let float = || parsed.unwrap_or_else(|| values::float64(t));
        if self.guess == Guess::Pending {
            self.guess = if matches!(int, Int::Ok(_) | Int::Overflow) || float().is_some() {
                Guess::Num
            } else if values::boolean(t).is_some() {
                Guess::Bool
            } else {
                Guess::Str
            };
        }
        match self.guess {
            Guess::Num => match int {
                Int::Ok(v) if (-EXACT_F64_INT..=EXACT_F64_INT).contains(&v) => key.num(v as f64),
                Int::Ok(v) => {
                    self.wide = true;
                    key.int(v);
                }
                Int::Overflow => match values::uint64(t) {
                    Uint::Ok(v) => {
                        self.wide = true;
                        key.uint(v);
                    }
                    _ => self.guess_failed(t, key),
                },
                Int::Invalid | Int::NoDigits => match float() {
                    Some(f) => key.num(f),
                    None => self.guess_failed(t, key),
                },
            },
            Guess::Bool => match values::boolean(t) {
                Some(b) => key.boolean(b),
                None => self.guess_failed(t, key),
            },
            Guess::Str | Guess::Pending => key.bytes(t),
        }
    }

    fn guess_failed(&mut self, t: &[u8], key: &mut RowKey) {
        self.inexact = true;
        key.bytes(t);
    }

    /// The type pandas reads the column as, and whether this pass's nulls and keys were exact
    /// for it (always so for a second pass).
    pub fn outcome(&self) -> (Kind, bool) {
        if let Some(k) = self.fixed {
            return (k, true);
        }
        let kind = self.stats.kind();
        let exact = !self.inexact
            && match (self.guess, kind) {
                (Guess::Pending, _) => true,
                (Guess::Str, Kind::StrLiteral) => self.stats.na == 0,
                (Guess::Num, Kind::Int | Kind::UInt) => true,
                (Guess::Num, Kind::Float | Kind::FloatFromInt) => !self.wide,
                (Guess::Bool, Kind::Bool | Kind::BoolObject) => true,
                (Guess::Str, Kind::Str) => true,
                _ => false,
            };
        (kind, exact)
    }
}

fn check_declared(d: ColumnType, t: &[u8]) -> Result<(), Mismatch> {
    let (ok, want) = match d {
        ColumnType::Int => (
            matches!(values::int64(t), Int::Ok(_) | Int::Overflow),
            "an int",
        ),
        ColumnType::Float => (values::float64(t).is_some(), "a float"),
        ColumnType::Bool => (values::boolean(t).is_some(), "a bool"),
        ColumnType::String => (true, "a string"),
    };
    if ok { Ok(()) } else { Err(Mismatch { want }) }
}

fn key_fixed(kind: Kind, t: &[u8], key: &mut RowKey) -> Result<(), Unstable> {
    match kind {
        Kind::Int => match values::int64(t) {
            Int::Ok(v) => key.int(v),
            _ => return Err(Unstable),
        },
        Kind::UInt => match values::uint64(t) {
            Uint::Ok(v) => key.uint(v),
            _ => return Err(Unstable),
        },
        Kind::PyLong => {
            let b = values::py_int(t).ok_or(Unstable)?;
            match b.small() {
                Some(values::Small::I(v)) => key.int(v),
                Some(values::Small::U(v)) => key.uint(v),
                None => key.big(b.negative, &b.digits),
            }
        }
        Kind::Float => key.num(values::float64(t).ok_or(Unstable)?),
        Kind::FloatFromInt => match values::int64(t) {
            Int::Ok(v) => key.num(v as f64),
            _ => return Err(Unstable),
        },
        Kind::Bool | Kind::BoolObject => key.boolean(values::boolean(t).ok_or(Unstable)?),
        Kind::Str | Kind::StrLiteral => key.bytes(t),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind pandas 3.1 reports for a column of tokens (`None` = an NA marker), as measured
    /// with the pinned pandas (`read_csv(...).dtypes`).
    fn kind(tokens: &[Option<&str>]) -> Kind {
        let mut c = Column::inferred(None);
        let mut key = RowKey::default();
        for t in tokens {
            match t {
                None => c.na(),
                Some(t) => {
                    let _ = c.key(t.as_bytes(), &mut key);
                }
            }
        }
        c.outcome().0
    }

    #[test]
    fn pandas_dtypes() {
        let big = Some("18446744073709551616");
        let u = Some("9223372036854775808");
        for (tokens, want) in [
            (vec![Some("1"), Some("2")], Kind::Int),
            (vec![Some("1"), None], Kind::FloatFromInt),
            (vec![None, None], Kind::FloatFromInt),
            (vec![Some("1"), Some("1.5")], Kind::Float),
            (vec![Some("1"), Some("nAn")], Kind::Str),
            (vec![Some("tRuE"), Some("false")], Kind::Bool),
            (vec![Some("True"), None], Kind::BoolObject),
            (vec![Some("True"), Some("1")], Kind::Str),
            (vec![u, Some("1")], Kind::UInt),
            (vec![u, None], Kind::StrLiteral),
            (vec![Some("-1"), u], Kind::StrLiteral),
            (vec![big, Some("1")], Kind::PyLong),
            (vec![big, None], Kind::PyLong),
            (vec![big, Some("1.5")], Kind::StrLiteral),
            (vec![Some("1.5"), big], Kind::Float),
            (vec![big, Some("1_0")], Kind::PyLong),
            (vec![Some("1_0"), big], Kind::Str),
            (vec![Some("-9223372036854775809"), Some("1")], Kind::PyLong),
            (vec![Some("18446744073709551615"), Some("1.5")], Kind::Float),
            (vec![Some("-abc"), Some("-9223372036854775809")], Kind::Str),
        ] {
            assert_eq!(kind(&tokens), want, "{tokens:?}");
        }
    }
}
