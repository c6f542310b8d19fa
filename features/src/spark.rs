//! Spark's reading of iPinYou lines, for the `--compat spark` mode: what the original kit's
//! `spark.read.csv(delimiter = TAB, header = false, schema = ...)` in PERMISSIVE mode makes of a
//! line, and the casts its SQL applies afterwards.
//!
//! Each rule here is checked against PySpark 3.5 itself (`bench/spark_semantics.py`, and the
//! `spark_semantics` test that replays its answers), not against a reading of Spark's docs:
//! - lines end at `\n`, `\r\n` or a lone `\r` (Hadoop's line reader), bytes decode as UTF-8 with
//!   U+FFFD for malformed sequences, and lines whose characters are all `<= ' '` are skipped;
//! - fields split at TAB by univocity's CSV tokenizer with Spark's settings: quote `"`, escape
//!   `\`, unescaped quotes kept up to the next delimiter; an empty field is null, the literal
//!   `null` is the string `null`;
//! - `Long.parseLong` for the `long` columns of the original's schema, `CAST(s AS INT)` and
//!   `CAST(s AS DATE)` with Spark's non-ANSI rules.

use std::borrow::Cow;

/// Splits a chunk that ended at `\n` (without it) at each lone `\r`, as Hadoop's line reader
/// does; a `\r` right before the `\n` is part of the `\r\n` terminator.
pub fn physical_lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let chunk = chunk.strip_suffix(b"\r").unwrap_or(chunk);
    chunk.split(|b| *b == b'\r')
}

/// Java 17's `new String(bytes, UTF_8)`, which Spark applies to each line. It replaces
/// malformed input with U+FFFD like Rust's lossy decoding except in two places: a 3-byte
/// encoded surrogate (`ED A0 80`) is one replacement, not three, and a sequence cut short by
/// the end of the line ends the decoding with one replacement.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    const REPLACEMENT: char = '\u{FFFD}';
    let cont = |b: u8| b & 0xC0 == 0x80;
    let (src, end) = (bytes, bytes.len());
    let mut out = String::with_capacity(end + 8);
    let mut sp = 0;
    while sp < end {
        let b1 = src[sp];
        sp += 1;
        match b1 {
            0x00..=0x7F => out.push(char::from(b1)),
            0xC2..=0xDF => {
                if sp < end {
                    if cont(src[sp]) {
                        out.push(
                            char::from_u32(u32::from(b1 & 0x1F) << 6 | u32::from(src[sp] & 0x3F))
                                .unwrap_or(REPLACEMENT),
                        );
                        sp += 1;
                    } else {
                        out.push(REPLACEMENT);
                    }
                    continue;
                }
                out.push(REPLACEMENT);
                break;
            }
            0xE0..=0xEF => {
                let bad_second = |b2: u8| (b1 == 0xE0 && b2 & 0xE0 == 0x80) || !cont(b2);
                if sp + 1 < end {
                    let (b2, b3) = (src[sp], src[sp + 1]);
                    if bad_second(b2) || !cont(b3) {
                        out.push(REPLACEMENT);
                        sp += if bad_second(b2) { 0 } else { 1 };
                    } else {
                        let c = u32::from(b1 & 0x0F) << 12
                            | u32::from(b2 & 0x3F) << 6
                            | u32::from(b3 & 0x3F);
                        // a surrogate is one replacement for all three bytes
                        out.push(char::from_u32(c).unwrap_or(REPLACEMENT));
                        sp += 2;
                    }
                    continue;
                }
                if sp < end && bad_second(src[sp]) {
                    out.push(REPLACEMENT);
                    continue;
                }
                out.push(REPLACEMENT);
                break;
            }
            0xF0..=0xF7 => {
                let bad_second = |b2: u8| {
                    b1 > 0xF4
                        || (b1 == 0xF0 && !(0x90..=0xBF).contains(&b2))
                        || (b1 == 0xF4 && b2 & 0xF0 != 0x80)
                        || !cont(b2)
                };
                if sp + 2 < end {
                    let (b2, b3, b4) = (src[sp], src[sp + 1], src[sp + 2]);
                    let c = u32::from(b1 & 0x07) << 18
                        | u32::from(b2 & 0x3F) << 12
                        | u32::from(b3 & 0x3F) << 6
                        | u32::from(b4 & 0x3F);
                    if !cont(b2) || !cont(b3) || !cont(b4) || !(0x10000..=0x10FFFF).contains(&c) {
                        out.push(REPLACEMENT);
                        sp += if bad_second(b2) {
                            0
                        } else if !cont(b3) {
                            1
                        } else {
                            2
                        };
                    } else {
                        out.push(char::from_u32(c).unwrap_or(REPLACEMENT));
                        sp += 3;
                    }
                    continue;
                }
                if b1 > 0xF4 || (sp < end && bad_second(src[sp])) {
                    out.push(REPLACEMENT);
                    continue;
                }
                sp += 1;
                if sp < end && !cont(src[sp]) {
                    out.push(REPLACEMENT);
                    continue;
                }
                out.push(REPLACEMENT);
                break;
            }
            _ => out.push(REPLACEMENT),
        }
    }
    Cow::Owned(out)
}

/// Spark skips a line whose `String.trim()` is empty: every character at most U+0020.
pub fn is_blank(line: &str) -> bool {
    line.chars().all(|c| c <= ' ')
}

// univocity works on Java `char`s, UTF-16 units: a character outside the Basic Multilingual
// Plane is two of them, and which of the two is the last one read decides some outcomes.
const DELIMITER: u16 = b'\t' as u16;
const QUOTE: u16 = b'"' as u16;
/// Spark's `escape` option; univocity then uses it to escape itself too.
const ESCAPE: u16 = b'\\' as u16;
/// The record separator univocity watches for; a line handed over never contains it.
const NEWLINE: u16 = b'\n' as u16;
/// univocity's default comment character: comment processing is off, but its EOF handling
/// still compares with it.
const COMMENT: u16 = b'#' as u16;
const NONE: u16 = 0;
const SPACE: u16 = b' ' as u16;

/// The line ended: univocity's `EOFException`, which ends every record of a single line.
struct Eof;

/// univocity 2.9's `CsvParser.parseLine` as Spark configures it, followed step by step (the
/// state it keeps, `ch`, `prev` and `unescaped`, decides how odd quoting reads), so that a line
/// tokenizes exactly as the original's reader tokenized it.
struct Tokenizer {
    chars: Vec<u16>,
    pos: usize,
    ch: u16,
    prev: u16,
    unescaped: bool,
    appender: Vec<u16>,
    tokens: Vec<Vec<u16>>,
}

impl Tokenizer {
    fn next(&mut self) -> Result<u16, Eof> {
        let c = *self.chars.get(self.pos).ok_or(Eof)?;
        self.pos += 1;
        Ok(c)
    }

    fn value_parsed(&mut self) {
        self.tokens.push(std::mem::take(&mut self.appender));
    }

    fn empty_parsed(&mut self) {
        self.tokens.push(Vec::new());
    }

    /// Appends up to a stop character. When the line ends first, `ch` keeps the value it had
    /// on entry: univocity's appender loops on a local copy and the parser's field is assigned
    /// only on return, which an `EOFException` skips.
    fn append_until(&mut self, stops: &[u16]) -> Result<(), Eof> {
        let mut ch = self.ch;
        while !stops.contains(&ch) {
            self.appender.push(ch);
            ch = self.next()?;
        }
        self.ch = ch;
        Ok(())
    }

    fn record(&mut self) -> Result<(), Eof> {
        self.ch = self.next()?;
        while self.ch != NEWLINE {
            if self.ch == DELIMITER {
                self.empty_parsed();
            } else {
                self.unescaped = false;
                self.prev = NONE;
                if self.ch == QUOTE {
                    self.quoted_value()?;
                } else {
                    self.append_until(&[DELIMITER, NEWLINE])?;
                }
                self.value_parsed();
            }
            if self.ch != NEWLINE {
                self.ch = self.next()?;
                if self.ch == NEWLINE {
                    self.empty_parsed();
                }
            }
        }
        Ok(())
    }

    fn quoted_value(&mut self) -> Result<(), Eof> {
        if self.prev != NONE {
            // an unescaped quote: the rest up to the delimiter is the value, opening quote kept
            self.appender.insert(0, QUOTE);
            self.ch = self.next()?;
            return self.append_until(&[DELIMITER, NEWLINE]);
        }
        self.ch = self.next()?;
        loop {
            if self.prev == QUOTE && (self.ch <= SPACE || self.ch == NEWLINE) {
                break;
            }
            if self.ch != QUOTE && self.ch != ESCAPE {
                if self.prev == QUOTE {
                    self.unescaped = true;
                    self.appender.push(QUOTE);
                    self.appender.push(self.ch);
                    self.prev = self.ch;
                    return self.quoted_value();
                }
                if self.prev == ESCAPE {
                    self.appender.push(ESCAPE);
                }
                self.append_until(&[QUOTE, ESCAPE])?;
                self.prev = self.ch;
                self.ch = self.next()?;
            } else {
                self.quote_escape()?;
                self.prev = self.ch;
                self.ch = self.next()?;
                if self.unescaped && (self.ch == DELIMITER || self.ch == NEWLINE) {
                    return Ok(());
                }
            }
        }
        if self.ch != DELIMITER && self.ch != NEWLINE && self.ch <= SPACE {
            let mut whitespace = Vec::new();
            loop {
                whitespace.push(self.ch);
                self.ch = self.next()?;
                if self.ch == NEWLINE {
                    return Ok(());
                }
                if !(self.ch <= SPACE && self.ch != DELIMITER) {
                    break;
                }
            }
            if self.ch != DELIMITER {
                self.appender.push(QUOTE);
                self.appender.extend_from_slice(&whitespace);
                self.appender.push(self.ch);
                self.prev = self.ch;
                self.quoted_value()?;
            }
        }
        Ok(())
    }

    fn quote_escape(&mut self) -> Result<(), Eof> {
        if self.ch == ESCAPE && self.prev == ESCAPE {
            self.appender.push(ESCAPE);
            self.ch = NONE;
        } else if self.prev == ESCAPE {
            if self.ch == QUOTE {
                self.appender.push(QUOTE);
                self.ch = NONE;
            } else {
                self.appender.push(self.prev);
            }
        } else if self.ch == QUOTE && self.prev == QUOTE {
            self.appender.push(QUOTE);
        } else if self.prev == QUOTE {
            self.unescaped_quote_in_value()?;
        }
        Ok(())
    }

    fn unescaped_quote_in_value(&mut self) -> Result<(), Eof> {
        self.appender.push(QUOTE);
        self.prev = self.ch;
        self.value_processing_escape()
    }

    fn value_processing_escape(&mut self) -> Result<(), Eof> {
        while self.ch != DELIMITER && self.ch != NEWLINE {
            if self.ch != QUOTE && self.ch != ESCAPE {
                if self.prev == QUOTE {
                    return self.unescaped_quote_in_value();
                }
                self.appender.push(self.ch);
            } else {
                self.quote_escape()?;
            }
            self.prev = self.ch;
            self.ch = self.next()?;
        }
        Ok(())
    }

    /// univocity's `handleEOF` and `consumeValueOnEOF`: what the value in progress becomes
    /// when the line ends inside it.
    fn end_of_line(&mut self, consumed: usize) {
        let mut consume = false;
        let mut decided = false;
        if self.ch == QUOTE {
            if self.prev == QUOTE {
                consume = true;
                decided = true;
            } else if !self.unescaped {
                self.appender.push(QUOTE);
            }
        }
        if !decided {
            consume = self.prev != NONE
                && self.ch != DELIMITER
                && self.ch != NEWLINE
                && self.ch != COMMENT;
        }
        if !self.tokens.is_empty() || consume {
            if !self.appender.is_empty() || consume {
                self.value_parsed();
            } else if consumed > 0 {
                self.empty_parsed();
            }
        } else if !self.appender.is_empty() {
            self.value_parsed();
        } else if consumed > 0 {
            self.empty_parsed();
        }
    }
}

/// The fields of one line as Spark's reader splits it; `""` where Spark reads null.
pub fn tokenize(line: &str) -> Vec<Cow<'_, str>> {
    if line.is_empty() {
        return Vec::new();
    }
    if !line.contains('"') {
        // without a quote univocity reads each field verbatim up to the next TAB
        return line.split('\t').map(Cow::Borrowed).collect();
    }
    let mut t = Tokenizer {
        chars: line.encode_utf16().collect(),
        pos: 0,
        ch: NONE,
        prev: NONE,
        unescaped: false,
        appender: Vec::new(),
        tokens: Vec::new(),
    };
    if t.record().is_err() {
        let consumed = t.pos;
        t.end_of_line(consumed);
    }
    // tokens end only at ASCII characters, so no surrogate pair is ever cut
    t.tokens
        .iter()
        .map(|u| Cow::Owned(String::from_utf16_lossy(u)))
        .collect()
}

/// What [`read_record`] found beside the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordShape {
    /// Fields on the line (Spark pads or cuts them to the schema's width).
    pub fields: usize,
    /// Non-empty `long` fields that `Long.parseLong` refused, read as null.
    pub longs_refused: u64,
}

/// One line as Spark reads it into a schema of `width` columns: fields beyond it dropped, those
/// missing null, empty ones null (the literal `null` stays a string); a `long` column holds the
/// decimal text of `Long.parseLong`'s answer, or null when it refuses (PERMISSIVE nulls only
/// that field).
pub fn read_record<'a>(
    line: &'a str,
    width: usize,
    long_columns: &[usize],
    out: &mut Vec<Option<Cow<'a, str>>>,
) -> RecordShape {
    out.clear();
    let tokens = tokenize(line);
    let fields = tokens.len();
    out.extend(
        tokens
            .into_iter()
            .take(width)
            .map(|t| Some(t).filter(|t| !t.is_empty())),
    );
    out.resize(width, None);
    let mut longs_refused = 0;
    for &i in long_columns {
        if let Some(slot) = out.get_mut(i)
            && let Some(text) = slot.take()
        {
            *slot = parse_long(&text).map(|v| Cow::Owned(v.to_string()));
            longs_refused += u64::from(slot.is_none());
        }
    }
    RecordShape {
        fields,
        longs_refused,
    }
}

/// The zero of each run of ten decimal digits `Character.digit(c, 10)` knows on Java 17, in the
/// Basic Multilingual Plane: `Long.parseLong` reads UTF-16 units, so a digit outside it (a
/// surrogate pair) is not a digit there. Listed by running Java 17's `Character.digit`.
const JAVA_DIGIT_ZEROS: [u32; 37] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
];

fn java_digit(c: char) -> Option<u32> {
    let c = c as u32;
    JAVA_DIGIT_ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&c))
        .map(|zero| c - zero)
}

/// `java.lang.Long.parseLong(s)`: an optional sign, then only digits (any script Java knows),
/// no whitespace, within the range of a long.
pub fn parse_long(s: &str) -> Option<i64> {
    let (negative, digits) = match s.chars().next()? {
        '-' => (true, &s[1..]),
        '+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        value = value * 10 + i128::from(java_digit(c)?);
        if value > 1 << 63 {
            return None;
        }
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// Spark's `UTF8String.isWhitespaceOrISOControl` on one byte.
fn spark_blank(b: u8) -> bool {
    b <= b' ' || b == 0x7F
}

fn trim_spark(s: &str) -> &[u8] {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !spark_blank(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !spark_blank(c))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Spark's non-ANSI `CAST(s AS INT)`: blanks and control characters trimmed, an optional sign,
/// ASCII digits, and a fraction of digits that is dropped (`7.9` is 7); null otherwise.
pub fn cast_int(s: &str) -> Option<i32> {
    let b = trim_spark(s);
    let (&first, rest) = b.split_first()?;
    let (negative, body) = match first {
        b'-' => (true, rest),
        b'+' => (false, rest),
        _ => (false, b),
    };
    if body.is_empty() {
        return None;
    }
    let (whole, fraction) = match body.iter().position(|&c| c == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &[][..]),
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &c in whole {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(c - b'0');
        if value > 1 << 31 {
            return None;
        }
    }
    i32::try_from(if negative { -value } else { value }).ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Spark's non-ANSI `CAST(s AS DATE)` as days since 1970-01-01: `yyyy`, `yyyy-[m]m`,
/// `yyyy-[m]m-[d]d`, the last followed by a space or `T` and anything; a year of 4 to 7 digits
/// with an optional sign; null for anything else or an impossible date.
pub fn cast_date(s: &str) -> Option<i32> {
    let b = trim_spark(s);
    if b.is_empty() {
        return None;
    }
    let (sign, mut j) = match b[0] {
        b'-' => (-1i64, 1),
        b'+' => (1, 1),
        _ => (1, 0),
    };
    let valid = |segment: usize, digits: u32| {
        if segment == 0 {
            (4..=7).contains(&digits)
        } else {
            (1..=2).contains(&digits)
        }
    };
    let mut segments = [1i64; 3];
    let mut i = 0;
    let (mut value, mut digits) = (0i64, 0u32);
    while j < b.len() && i < 3 && b[j] != b' ' && b[j] != b'T' {
        if i < 2 && b[j] == b'-' {
            if !valid(i, digits) {
                return None;
            }
            segments[i] = value;
            (value, digits) = (0, 0);
            i += 1;
        } else if b[j].is_ascii_digit() {
            value = value * 10 + i64::from(b[j] - b'0');
            digits += 1;
            if digits > 7 {
                return None;
            }
        } else {
            return None;
        }
        j += 1;
    }
    if !valid(i, digits) || (i < 2 && j < b.len()) {
        return None;
    }
    segments[i] = value;
    let year = sign * segments[0];
    let month = u32::try_from(segments[1])
        .ok()
        .filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(segments[2])
        .ok()
        .filter(|d| *d >= 1 && *d <= days_in_month(year, month))?;
    i32::try_from(days_from_civil(year, month, day)).ok()
}

/// Spark's `dayofweek(CAST(s AS DATE))`: 1 = Sunday ... 7 = Saturday.
pub fn day_of_week(s: &str) -> Option<i32> {
    // 1970-01-01 was a Thursday (5)
    cast_date(s).map(|days| (i64::from(days) + 4).rem_euclid(7) as i32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        tokenize(line).into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn tokenizes_as_pyspark_did() {
        // answers of PySpark 3.5.9 on these lines (bench/spark_semantics.py)
        let cases: [(&str, &[&str]); 12] = [
            ("a\tb", &["a", "b"]),
            ("\"q\tx\"\tb", &["q\tx", "b"]),
            ("\"unbalanced\tb\tc\td", &["unbalanced\tb\tc\td"]),
            ("a\"b\tc\"\t\"\"\td", &["a\"b", "c\"", "", "d"]),
            ("\"ab\"cd\te", &["\"ab\"cd", "e"]),
            ("\\\"x\tb", &["\\\"x", "b"]),
            ("\"a\\\"b\"\tb", &["a\"b", "b"]),
            (" \"a\"\tb", &[" \"a\"", "b"]),
            ("x\ty\tz\t\"", &["x", "y", "z", "\""]),
            ("\"a\"\"b\"\tb", &["\"a\"\"b\"", "b"]),
            ("a\tb\tc\t", &["a", "b", "c", ""]),
            ("\tb", &["", "b"]),
        ];
        for (line, want) in cases {
            assert_eq!(fields(line), want, "{line:?}");
        }
    }

    #[test]
    fn long_parse_is_javas() {
        assert_eq!(parse_long("+5"), Some(5));
        assert_eq!(parse_long("-3"), Some(-3));
        assert_eq!(parse_long("0077"), Some(77));
        assert_eq!(parse_long("\u{FF17}\u{FF17}"), Some(77));
        assert_eq!(parse_long("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_long("-9223372036854775808"), Some(i64::MIN));
        for bad in [
            " 77",
            "12.5",
            "9223372036854775808",
            "99999999999999999999",
            "",
            "+",
            "-",
            "\u{1D7CE}",
        ] {
            assert_eq!(parse_long(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn int_and_date_casts_are_sparks() {
        assert_eq!(cast_int(" 7"), Some(7));
        assert_eq!(cast_int("+7"), Some(7));
        assert_eq!(cast_int("7.9"), Some(7));
        assert_eq!(cast_int("-0"), Some(0));
        assert_eq!(cast_int("7x"), None);
        assert_eq!(cast_int(""), None);
        assert_eq!(day_of_week("2013-03-11"), Some(2));
        assert_eq!(day_of_week("2013-03-1"), Some(6));
        assert_eq!(cast_date("2013-02-29"), None);
        assert_eq!(cast_date("2013-13-01"), None);
        assert_eq!(cast_date("1970-01-01"), Some(0));
    }

    #[test]
    fn lines_end_where_hadoop_ends_them() {
        let split: Vec<&[u8]> = physical_lines(b"a\rb\r").collect();
        assert_eq!(split, [b"a".as_slice(), b"b"]);
        assert!(is_blank(" \u{1}\t"));
        assert!(!is_blank(" \u{A0}"));
    }
}
