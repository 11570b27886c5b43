//! The CSV tokenizer of pandas' C parser (`pandas/_libs/src/parser/tokenizer.c`, with
//! `read_csv`'s defaults: `"` quotes with doubling, `\n`, `\r\n` or `\r` ends a line, blank and
//! whitespace-only lines skipped, a BOM at the start dropped), in its state-by-state behaviour,
//! including its quirks: a quote inside an unquoted field is text, text after a closing quote is
//! appended, `\r` followed by the delimiter starts the next record with an empty field.
//!
//! RFC 4180 readers (the `csv` crate) differ on exactly the inputs that decide which rows pandas
//! keeps: a quoted whitespace-only line is data to pandas, a file ending inside a quoted field
//! is an error, not a truncated record. Beyond pandas, it bounds a record's size (so an
//! unterminated quote cannot pull a whole file into memory), refuses NUL bytes (binary input)
//! and numbers every record by the physical line it starts on.

use std::io::{self, Read};

const BUF: usize = 1 << 20;
const QUOTE: u8 = b'"';

/// One record: its fields' bytes back to back, where each ends, and its first physical line.
#[derive(Debug, Default, Clone)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    line: u64,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn line(&self) -> u64 {
        self.line
    }
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..end])
    }
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
    /// Every byte of every field, as one slice.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
    #[cfg(test)]
    pub fn fields(&self) -> Vec<String> {
        self.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the quoted field opened on line {line} is never closed (the file ends inside it)")]
    Unterminated { line: u64 },
    #[error(
        "the record starting on line {line} is longer than {limit} bytes{}",
        quote_line.map(|q| format!(" (a quoted field opened on line {q} is still open: an unmatched quote?)")).unwrap_or_default()
    )]
    TooLong {
        line: u64,
        limit: usize,
        quote_line: Option<u64>,
    },
    #[error("line {line} contains a NUL byte: the file looks binary, not CSV text")]
    Nul { line: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StartRecord,
    StartField,
    InField,
    InQuotedField,
    QuoteInQuotedField,
    /// After a `\r` that ended a field: `\n` completes the line ending.
    EatCrnl,
    /// After a `\r` that ended a skipped line.
    EatCrnlNop,
    /// Only blanks so far on this line; skipped if nothing else follows.
    WhitespaceLine,
}

pub struct Tokenizer<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    eof: bool,
    at_start: bool,
    state: State,
    delim: u8,
    max_record: usize,
    /// The physical line of the next unconsumed byte (1-based).
    line: u64,
    /// A `\r` was consumed; whether it ended a line depends on the next byte.
    pending_cr: bool,
    quote_line: u64,
    /// Blanks of a line that may turn out to be blank.
    blanks: Vec<u8>,
    /// The previous record ended with `\r` + delimiter: the next starts with an empty field.
    carry: Option<u64>,
    done: bool,
}

enum Step {
    /// The record is complete.
    Emit,
    More,
}

impl<R: Read> Tokenizer<R> {
    pub fn new(src: R, delim: u8, max_record: usize) -> Self {
        Tokenizer {
            src,
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            at_start: true,
            state: State::StartRecord,
            delim,
            max_record,
            line: 1,
            pending_cr: false,
            quote_line: 0,
            blanks: Vec::new(),
            carry: None,
            done: false,
        }
    }

    /// Ends the reading and returns the source, positioned where the tokenizer stopped.
    pub fn into_inner(self) -> R {
        self.src
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.pos = 0;
        self.end = 0;
        // At the start, read at least 3 bytes (or the whole file) so a BOM is seen whole.
        let want = if self.at_start { 3 } else { 1 };
        while self.end < want {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.at_start {
            self.at_start = false;
            // pandas drops a UTF-8 BOM at the very start of the file.
            if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.pos = 3;
            }
        }
        if self.pos == self.end {
            // Nothing but the BOM so far (or the end): read on.
            return self.fill();
        }
        Ok(true)
    }

    /// The line a NUL byte in the buffer is on, if the buffer holds one. One SIMD scan per
    /// buffer: a binary file is refused at its first NUL, before a record can grow from it.
    fn find_nul(&self) -> Option<u64> {
        let chunk = &self.buf[self.pos..self.end];
        let i = memchr::memchr(0, chunk)?;
        let before = &chunk[..i];
        let mut line = self.line + u64::from(self.pending_cr && before.first() != Some(&b'\n'));
        for j in memchr::memchr2_iter(b'\n', b'\r', before) {
            if before[j] == b'\n' || before.get(j + 1).is_some_and(|b| *b != b'\n') {
                line += 1;
            }
        }
        Some(line)
    }

    /// Reads the next record; `Ok(false)` at the end of the file.
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool, TokenError> {
        rec.clear();
        if self.done {
            return Ok(false);
        }
        if let Some(line) = self.carry.take() {
            rec.line = line;
            rec.ends.push(0);
            self.state = State::StartField;
        }
        loop {
            if self.pos == self.end {
                if !self.fill()? {
                    self.done = true;
                    return self.finish(rec);
                }
                if let Some(line) = self.find_nul() {
                    self.done = true;
                    return Err(TokenError::Nul { line });
                }
            }
            if let Step::Emit = self.step(rec)? {
                return Ok(true);
            }
        }
    }

    fn finish(&mut self, rec: &mut Record) -> Result<bool, TokenError> {
        match self.state {
            State::StartRecord | State::WhitespaceLine | State::EatCrnlNop => Ok(false),
            State::InQuotedField => Err(TokenError::Unterminated {
                line: self.quote_line,
            }),
            State::InField | State::StartField | State::QuoteInQuotedField => {
                rec.ends.push(rec.data.len());
                self.state = State::StartRecord;
                Ok(true)
            }
            State::EatCrnl => {
                self.state = State::StartRecord;
                Ok(true)
            }
        }
    }

    /// Marks the byte at `pos` consumed, counting physical lines.
    #[inline]
    fn consume(&mut self, c: u8) {
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        } else if c == b'\r' {
            self.pending_cr = true;
        }
    }

    #[inline]
    fn end_field(&self, rec: &mut Record) -> Result<(), TokenError> {
        rec.ends.push(rec.data.len());
        self.check_size(rec)
    }

    #[inline]
    fn check_size(&self, rec: &Record) -> Result<(), TokenError> {
        // Each field costs its bytes plus an offset: bound both, so a line of delimiters counts.
        if rec.data.len() + rec.ends.len() > self.max_record {
            return Err(TokenError::TooLong {
                line: rec.line,
                limit: self.max_record,
                quote_line: matches!(self.state, State::InQuotedField | State::QuoteInQuotedField)
                    .then_some(self.quote_line),
            });
        }
        Ok(())
    }

    /// Handles the byte at `pos` (or a run of ordinary bytes from it).
    fn step(&mut self, rec: &mut Record) -> Result<Step, TokenError> {
        let c = self.buf[self.pos];
        if self.pending_cr {
            // A `\r` not followed by `\n` is a line ending of its own.
            self.pending_cr = false;
            if c != b'\n' {
                self.line += 1;
            }
        }
        let d = self.delim;
        match self.state {
            State::StartRecord => {
                if c == b'\n' {
                    self.consume(c);
                } else if c == b'\r' {
                    self.consume(c);
                    self.state = State::EatCrnlNop;
                } else if (c == b' ' || c == b'\t') && c != d {
                    self.consume(c);
                    self.blanks.clear();
                    self.blanks.push(c);
                    rec.line = self.line;
                    self.state = State::WhitespaceLine;
                } else {
                    rec.line = self.line;
                    self.state = State::StartField;
                }
            }
            State::WhitespaceLine => {
                if c == b'\n' {
                    self.consume(c);
                    self.state = State::StartRecord;
                } else if c == b'\r' {
                    self.consume(c);
                    self.state = State::EatCrnlNop;
                } else if (c == b' ' || c == b'\t') && c != d {
                    self.consume(c);
                    self.blanks.push(c);
                    if self.blanks.len() > self.max_record {
                        // A blank run cannot make a record yet, but it must not grow unbounded.
                        self.blanks.truncate(self.max_record);
                    }
                } else {
                    // Not blank after all: the blanks are the start of the first field.
                    rec.data.extend_from_slice(&self.blanks);
                    self.check_size(rec)?;
                    self.state = State::InField;
                }
            }
            State::StartField => {
                self.consume(c);
                if c == b'\n' {
                    self.end_field(rec)?;
                    self.state = State::StartRecord;
                    return Ok(Step::Emit);
                } else if c == b'\r' {
                    self.end_field(rec)?;
                    self.state = State::EatCrnl;
                } else if c == QUOTE {
                    self.quote_line = self.line;
                    self.state = State::InQuotedField;
                } else if c == d {
                    self.end_field(rec)?;
                } else {
                    rec.data.push(c);
                    self.state = State::InField;
                }
            }
            State::InField => {
                let rest = &self.buf[self.pos..self.end];
                let n = memchr::memchr3(d, b'\n', b'\r', rest).unwrap_or(rest.len());
                if n > 0 {
                    rec.data.extend_from_slice(&rest[..n]);
                    self.pos += n;
                    self.check_size(rec)?;
                    return Ok(Step::More);
                }
                self.consume(c);
                self.end_field(rec)?;
                if c == b'\n' {
                    self.state = State::StartRecord;
                    return Ok(Step::Emit);
                } else if c == b'\r' {
                    self.state = State::EatCrnl;
                } else {
                    self.state = State::StartField;
                }
            }
            State::InQuotedField => {
                let rest = &self.buf[self.pos..self.end];
                let n = memchr::memchr(QUOTE, rest).unwrap_or(rest.len());
                if n > 0 {
                    let span = &rest[..n];
                    rec.data.extend_from_slice(span);
                    self.count_lines(n);
                    self.pos += n;
                    self.check_size(rec)?;
                    return Ok(Step::More);
                }
                self.consume(c);
                self.state = State::QuoteInQuotedField;
            }
            State::QuoteInQuotedField => {
                self.consume(c);
                if c == QUOTE {
                    rec.data.push(QUOTE);
                    self.check_size(rec)?;
                    self.state = State::InQuotedField;
                } else if c == d {
                    self.end_field(rec)?;
                    self.state = State::StartField;
                } else if c == b'\n' {
                    self.end_field(rec)?;
                    self.state = State::StartRecord;
                    return Ok(Step::Emit);
                } else if c == b'\r' {
                    self.end_field(rec)?;
                    self.state = State::EatCrnl;
                } else {
                    rec.data.push(c);
                    self.state = State::InField;
                }
            }
            State::EatCrnl => {
                self.state = State::StartRecord;
                if c == b'\n' {
                    self.consume(c);
                } else if c == d {
                    // pandas ends the line and starts the next one with an empty field.
                    self.consume(c);
                    self.carry = Some(self.line);
                }
                // Anything else starts the next record; it is read again from StartRecord.
                return Ok(Step::Emit);
            }
            State::EatCrnlNop => {
                self.state = State::StartRecord;
                // pandas swallows a `\n` (the rest of `\r\n`) and, quirkily, a delimiter.
                if c == b'\n' || c == d {
                    self.consume(c);
                }
            }
        }
        Ok(Step::More)
    }

    /// Counts the line endings inside the next `n` bytes of a quoted field.
    fn count_lines(&mut self, n: usize) {
        let span = &self.buf[self.pos..self.pos + n];
        for i in memchr::memchr2_iter(b'\n', b'\r', span) {
            if span[i] == b'\n' {
                self.line += 1;
            } else {
                match span.get(i + 1) {
                    Some(b'\n') => {}
                    Some(_) => self.line += 1,
                    None => self.pending_cr = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(input: &[u8]) -> Result<Vec<(u64, Vec<String>)>, TokenError> {
        records_with(input, 1 << 20)
    }

    fn records_with(input: &[u8], max: usize) -> Result<Vec<(u64, Vec<String>)>, TokenError> {
        let mut t = Tokenizer::new(input, b',', max);
        let mut rec = Record::default();
        let mut out = Vec::new();
        while t.read_record(&mut rec)? {
            out.push((rec.line(), rec.fields()));
        }
        Ok(out)
    }

    fn rows(input: &str) -> Vec<Vec<String>> {
        records(input.as_bytes())
            .expect("tokenizes")
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }

    fn v(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pandas_quoting_quirks() {
        assert_eq!(rows("a\"b,\"c\"d\n"), [v(&["a\"b", "cd"])]);
        assert_eq!(rows("\"a\"\"b\",\"\"\n"), [v(&["a\"b", ""])]);
        assert_eq!(rows("\"x\ny\",1\r\n"), [v(&["x\ny", "1"])]);
        assert_eq!(rows("1,\n"), [v(&["1", ""])]);
        assert_eq!(rows("1,"), [v(&["1", ""])]);
        assert_eq!(rows(",\n"), [v(&["", ""])]);
        // `\r` then the delimiter: the next record starts with an empty field.
        assert_eq!(rows("1,2\r,3\n"), [v(&["1", "2"]), v(&["", "3"])]);
        // A `\r` line ending on its own.
        assert_eq!(rows("1\r2\r"), [v(&["1"]), v(&["2"])]);
    }

    #[test]
    fn blank_lines() {
        // Whitespace-only lines are skipped; a quoted blank or an empty quoted field is data.
        assert_eq!(rows("1\n  \n\t\n\r\n2\n"), [v(&["1"]), v(&["2"])]);
        assert_eq!(rows("1\n\" \"\n\"\"\n"), [v(&["1"]), v(&[" "]), v(&[""])]);
        // Leading blanks followed by data belong to the field.
        assert_eq!(rows("  a,b\n"), [v(&["  a", "b"])]);
        assert_eq!(rows("  \"a\"\n"), [v(&["  \"a\""])]);
        assert_eq!(rows("  ,\n"), [v(&["  ", ""])]);
        assert_eq!(rows("1\n   "), [v(&["1"])]);
    }

    #[test]
    fn physical_line_numbers() {
        let lines = |s: &str| -> Vec<u64> {
            records(s.as_bytes())
                .expect("tokenizes")
                .into_iter()
                .map(|(l, _)| l)
                .collect()
        };
        assert_eq!(lines("x,y\r\nq,abc\r\n"), [1, 2]);
        assert_eq!(lines("x,y\n1,1\n\n\nq,abc\n"), [1, 2, 5]);
        assert_eq!(lines("a\r\r\rb\r"), [1, 4]);
        assert_eq!(lines("\"a\r\nb\nc\rd\",1\ne\n"), [1, 5]);
        assert_eq!(lines("  \n\t\r\nx\n"), [3]);
    }

    #[test]
    fn bom_only_at_the_start() {
        assert_eq!(rows("\u{feff}a,b\n"), [v(&["a", "b"])]);
        assert_eq!(rows("a\n\u{feff}b\n"), [v(&["a"]), v(&["\u{feff}b"])]);
    }

    #[test]
    fn unterminated_quote_names_its_line() {
        match records(b"a,b\n1,\"abc\n4,5\n6,7\n") {
            Err(TokenError::Unterminated { line }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        // A closing quote at the very end is fine.
        assert_eq!(rows("\"a\""), [v(&["a"])]);
    }

    #[test]
    fn records_are_bounded() {
        match records_with(b"a\n\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 16) {
            Err(TokenError::TooLong {
                line: 2,
                quote_line: Some(2),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match records_with(&[b','; 64], 16) {
            Err(TokenError::TooLong {
                quote_line: None, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match records(b"a\n1\x002\n") {
            Err(TokenError::Nul { line: 2 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_reads_change_nothing() {
        // A reader that returns one byte at a time exercises every state across buffer ends.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.split_first() {
                    Some((b, rest)) if !buf.is_empty() => {
                        buf[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let input = "\u{feff}a,b\r\n\"x\r\ny\",\"q\"\"\"z\r\n  \n 1,2\r,3\r\r\n";
        let whole = records(input.as_bytes()).expect("whole");
        let mut t = Tokenizer::new(Trickle(input.as_bytes()), b',', 1 << 20);
        let mut rec = Record::default();
        let mut trickled = Vec::new();
        while t.read_record(&mut rec).expect("trickle") {
            trickled.push((rec.line(), rec.fields()));
        }
        assert_eq!(whole, trickled);
    }
}
