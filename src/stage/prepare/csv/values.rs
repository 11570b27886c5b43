//! How pandas' C parser reads one CSV token as a number or a bool (pandas 3.1, `read_csv` with
//! default options). Each function follows the parser routine named in its comment; the
//! differential test against the pinned pandas (`tests/it/pandas_diff.rs`) keeps them honest.

/// C's `isspace` in the "C" locale, which pandas' `isspace_ascii` mirrors.
#[inline]
pub fn is_c_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

/// CPython's `Py_ISSPACE` over bytes: C's spaces plus the separators 0x1C–0x1F.
#[inline]
fn is_py_space(b: u8) -> bool {
    is_c_space(b) || (0x1C..=0x1F).contains(&b)
}

fn trim_by(t: &[u8], space: fn(u8) -> bool) -> &[u8] {
    let start = t.iter().position(|b| !space(*b)).unwrap_or(t.len());
    let end = t.iter().rposition(|b| !space(*b)).map_or(start, |e| e + 1);
    &t[start..end]
}

/// The outcome of pandas' `str_to_int64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int {
    Ok(i64),
    /// Integer syntax out of int64's range (pandas' `ERROR_OVERFLOW`).
    Overflow,
    /// Digits followed by something else (`ERROR_INVALID_CHARS`).
    Invalid,
    /// No digit where the number should start (`ERROR_NO_DIGITS`).
    NoDigits,
}

/// Splits `[space] [sign] digits rest`; `None` when no digit follows the sign.
fn split_digits(t: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let start = t.iter().position(|b| !is_c_space(*b)).unwrap_or(t.len());
    let t = &t[start..];
    let (neg, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = t.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| (neg, &t[..n], &t[n..]))
}

/// Accumulates decimal digits; `None` past `limit`.
fn accumulate(digits: &[u8], limit: u128) -> Option<u128> {
    let mut v: u128 = 0;
    for d in digits {
        v = v * 10 + u128::from(d - b'0');
        if v > limit {
            return None;
        }
    }
    Some(v)
}

/// pandas' `str_to_int64`: leading and trailing C spaces, a sign, decimal digits. On overflow
/// the C `strtoll` stops after the digits, so text after them makes it "invalid", not "overflow".
pub fn int64(t: &[u8]) -> Int {
    let Some((neg, digits, rest)) = split_digits(t) else {
        return Int::NoDigits;
    };
    let limit = if neg {
        u128::from(i64::MIN.unsigned_abs())
    } else {
        i64::MAX as u128
    };
    match accumulate(digits, limit) {
        None if rest.is_empty() => Int::Overflow,
        None => Int::Invalid,
        Some(_) if !rest.iter().all(|b| is_c_space(*b)) => Int::Invalid,
        Some(v) => {
            let v = v as i128;
            Int::Ok((if neg { -v } else { v }) as i64)
        }
    }
}

/// The outcome of pandas' `str_to_uint64` and the state it leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uint {
    Ok(u64),
    /// Starts with `-`: pandas only notes "a signed value was seen" and reads no further.
    Negative,
    Overflow,
    Invalid,
    NoDigits,
}

pub fn uint64(t: &[u8]) -> Uint {
    let start = t.iter().position(|b| !is_c_space(*b)).unwrap_or(t.len());
    if t.get(start) == Some(&b'-') {
        return Uint::Negative;
    }
    let Some((_, digits, rest)) = split_digits(t) else {
        return Uint::NoDigits;
    };
    match accumulate(digits, u128::from(u64::MAX)) {
        None if rest.is_empty() => Uint::Overflow,
        None => Uint::Invalid,
        Some(_) if !rest.iter().all(|b| is_c_space(*b)) => Uint::Invalid,
        Some(v) => Uint::Ok(v as u64),
    }
}

/// pandas' float conversion (correctly rounded in pandas 3.1, like Rust's): C spaces around
/// `[sign] (digits [. [digits]] | . digits) [e [sign] digits]`, or exactly one of `inf`, `+inf`,
/// `-inf`, `Infinity`, `+Infinity`, `-Infinity` in any case. `nan` is not a number to pandas
/// (only its NA markers are), and out-of-range values become ±inf or 0.
pub fn float64(t: &[u8]) -> Option<f64> {
    // The infinity words, exactly (no spaces around them), in any letter case.
    let unsigned = t.strip_prefix(b"-").or(t.strip_prefix(b"+")).unwrap_or(t);
    if matches!(unsigned.first(), Some(b'i' | b'I')) {
        return float_word(t);
    }
    let s = trim_by(t, is_c_space);
    let body = s.strip_prefix(b"-").or(s.strip_prefix(b"+")).unwrap_or(s);
    // Rust's parser also takes `inf`/`nan` words; pandas' takes only digits or a point here.
    if !body
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
    {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn float_word(t: &[u8]) -> Option<f64> {
    for (word, v) in [
        (&b"inf"[..], f64::INFINITY),
        (b"+inf", f64::INFINITY),
        (b"infinity", f64::INFINITY),
        (b"+infinity", f64::INFINITY),
        (b"-inf", f64::NEG_INFINITY),
        (b"-infinity", f64::NEG_INFINITY),
    ] {
        if t.eq_ignore_ascii_case(word) {
            return Some(v);
        }
    }
    None
}

/// pandas' bool tokens: `True`/`False` in any letter case, nothing around them.
pub fn boolean(t: &[u8]) -> Option<bool> {
    if t.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if t.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// CPython's limit on the digits `int()` converts from text (`sys.int_info.str_digits_check_threshold`).
const PY_INT_MAX_DIGITS: usize = 4300;

/// An integer as CPython's `PyLong_FromString(s, NULL, 10)` reads it, which pandas uses for
/// integers beyond uint64: spaces around, a sign, digits with single underscores between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigInt {
    pub negative: bool,
    /// Without leading zeros or underscores; "0" for zero.
    pub digits: Vec<u8>,
}

pub fn py_int(t: &[u8]) -> Option<BigInt> {
    let s = trim_by(t, is_py_space);
    let (negative, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if !body.first().is_some_and(u8::is_ascii_digit) || body.last() == Some(&b'_') {
        return None;
    }
    let mut digits = Vec::with_capacity(body.len());
    let mut prev_underscore = false;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                prev_underscore = false;
                if !(digits.is_empty() && b == b'0') {
                    digits.push(b);
                }
            }
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return None,
        }
    }
    if body.iter().filter(|b| b.is_ascii_digit()).count() > PY_INT_MAX_DIGITS {
        return None;
    }
    if digits.is_empty() {
        return Some(BigInt {
            negative: false,
            digits: b"0".to_vec(),
        });
    }
    Some(BigInt { negative, digits })
}

impl BigInt {
    /// The value when it fits an i64 or a u64.
    pub fn small(&self) -> Option<Small> {
        if self.digits.len() > 20 {
            return None;
        }
        let v = accumulate(&self.digits, u128::from(u64::MAX))?;
        if self.negative {
            (v <= u128::from(i64::MIN.unsigned_abs())).then(|| Small::I(-(v as i128) as i64))
        } else if v <= i64::MAX as u128 {
            Some(Small::I(v as i64))
        } else {
            Some(Small::U(v as u64))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Small {
    I(i64),
    U(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_as_pandas_reads_them() {
        assert_eq!(int64(b" 12\t"), Int::Ok(12));
        assert_eq!(int64(b"\x0b-0"), Int::Ok(0));
        assert_eq!(int64(b"+7"), Int::Ok(7));
        assert_eq!(int64(b"-9223372036854775808"), Int::Ok(i64::MIN));
        assert_eq!(int64(b"9223372036854775808"), Int::Overflow);
        assert_eq!(int64(b"99999999999999999999 "), Int::Invalid);
        assert_eq!(int64(b"1_0"), Int::Invalid);
        assert_eq!(int64(b"1.5"), Int::Invalid);
        assert_eq!(int64(b"-abc"), Int::NoDigits);
        assert_eq!(int64(b""), Int::NoDigits);
        assert_eq!(uint64(b"18446744073709551615"), Uint::Ok(u64::MAX));
        assert_eq!(uint64(b"18446744073709551616"), Uint::Overflow);
        assert_eq!(uint64(b" -anything"), Uint::Negative);
        assert_eq!(uint64(b"x"), Uint::NoDigits);
    }

    #[test]
    fn floats_as_pandas_reads_them() {
        for (t, v) in [
            (&b"1."[..], 1.0),
            (b".5", 0.5),
            (b"+.5", 0.5),
            (b"\t1.5\x0b", 1.5),
            (b"1E5", 1e5),
            (b"1e+0005", 1e5),
            (b"1e400", f64::INFINITY),
            (b"1e-400", 0.0),
            (b"INFINITY", f64::INFINITY),
            (b"-Inf", f64::NEG_INFINITY),
        ] {
            assert_eq!(float64(t), Some(v), "{}", String::from_utf8_lossy(t));
        }
        for t in [
            &b"nan"[..],
            b"NaN",
            b"+nan",
            b" inf",
            b"1e",
            b"1e 5",
            b".",
            b"-",
            b"1_0",
            b"0x10",
            b"\x1c1.5",
            b"infinit",
        ] {
            assert_eq!(float64(t), None, "{}", String::from_utf8_lossy(t));
        }
    }

    #[test]
    fn python_ints() {
        let b = py_int(b" +0_01 ").expect("int");
        assert_eq!((b.negative, b.digits.as_slice()), (false, &b"1"[..]));
        assert_eq!(b.small(), Some(Small::I(1)));
        assert_eq!(py_int(b"-0").and_then(|b| b.small()), Some(Small::I(0)));
        assert_eq!(
            py_int(b"18446744073709551615").and_then(|b| b.small()),
            Some(Small::U(u64::MAX))
        );
        assert_eq!(
            py_int(b"18446744073709551616").and_then(|b| b.small()),
            None
        );
        assert!(py_int(b"1__0").is_none());
        assert!(py_int(b"_1").is_none());
        assert!(py_int(b"1_").is_none());
        assert!(py_int(b"1.0").is_none());
        assert!(py_int(&[b'1'; 4301]).is_none());
        assert!(py_int(&[b'1'; 4300]).is_some());
    }
}
