//! The one reader of raw log lines: the ETL ingest, the generator's tests and the real sample
//! lines all go through it, so "what is a valid row" has a single answer.

use serde::{Deserialize, Serialize};

use crate::layout::{BID_COLUMNS, FileLayout, IMP_COLUMNS, LogKind};
use crate::timestamp::BidTimestamp;

/// Why a line was rejected. Every rejected line is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    EmptyLine,
    InvalidUtf8,
    TooFewFields,
    TooManyFields,
    BadTimestamp,
    NonNumericPrice,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::EmptyLine,
        RejectReason::InvalidUtf8,
        RejectReason::TooFewFields,
        RejectReason::TooManyFields,
        RejectReason::BadTimestamp,
        RejectReason::NonNumericPrice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyLine => "empty_line",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::TooFewFields => "too_few_fields",
            RejectReason::TooManyFields => "too_many_fields",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::NonNumericPrice => "non_numeric_price",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How raw lines are read: strictly (the default: a line that is not exactly a log row is
/// rejected and counted), or as the original kit's Spark job read them (`spark`: short rows
/// padded with nulls, long rows cut, quotes interpreted, `null` a string, prices parsed by
/// `Long.parseLong`; see `docs/spark-compat.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    #[default]
    Strict,
    Spark,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Strict => "strict",
            Dialect::Spark => "spark",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Dialect::Strict),
            "spark" => Ok(Dialect::Spark),
            other => Err(format!(
                "unknown reading mode {other:?}: use strict (the default) or spark"
            )),
        }
    }
}

/// A valid bid line, columns in [`BID_COLUMNS`] order; `None` where the file's layout lacks the
/// column (season 1 has no AdvertiserID and no UserProfileIDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidRow<'a> {
    pub fields: [Option<&'a str>; BID_COLUMNS.len()],
    pub timestamp: BidTimestamp,
}

/// A valid impression line, columns in [`IMP_COLUMNS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpRow<'a> {
    pub fields: [Option<&'a str>; IMP_COLUMNS.len()],
    pub timestamp: BidTimestamp,
}

impl<'a> BidRow<'a> {
    pub fn get(&self, column: &str) -> Option<&'a str> {
        BID_COLUMNS
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.fields[i])
    }
}

impl<'a> ImpRow<'a> {
    pub fn get(&self, column: &str) -> Option<&'a str> {
        IMP_COLUMNS
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.fields[i])
    }
}

/// A parsed line: the row, and how many extra trailing columns were dropped from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<R> {
    pub row: R,
    pub dropped_columns: usize,
}

/// Reads lines of one file, whose layout was decided beforehand (see [`LogKind::sniff`]).
#[derive(Debug, Clone, Copy)]
pub struct LineReader {
    layout: FileLayout,
}

const BID_PRICE_COLUMNS: [usize; 2] = [16, 18];
const IMP_PRICE_COLUMNS: [usize; 3] = [17, 19, 20];

fn is_price(field: &str) -> bool {
    !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit())
}

impl LineReader {
    pub fn new(layout: FileLayout) -> Self {
        LineReader { layout }
    }

    pub fn layout(&self) -> FileLayout {
        self.layout
    }

    /// Splits and validates a line (without its newline; a trailing `\r` is tolerated).
    fn split<'a, const N: usize>(
        &self,
        line: &'a [u8],
        price_columns: &[usize],
    ) -> Result<([Option<&'a str>; N], BidTimestamp, usize), RejectReason> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(RejectReason::EmptyLine);
        }
        let text = std::str::from_utf8(line).map_err(|_| RejectReason::InvalidUtf8)?;
        let expected = self.layout.total_fields();
        // season 1 lacks only the last two columns of each log, so known columns are a prefix
        let known = self.layout.known_fields().min(N);
        let mut fields: [Option<&'a str>; N] = [None; N];
        let mut count = 0;
        let mut start = 0;
        // one pass over the line: the fields are found and counted together
        for end in memchr::memchr_iter(b'\t', line).chain(std::iter::once(line.len())) {
            if count == expected {
                return Err(RejectReason::TooManyFields);
            }
            if count < known {
                // a tab is ASCII, so both ends are character boundaries
                fields[count] = Some(&text[start..end]);
            }
            count += 1;
            start = end + 1;
        }
        if count < expected {
            return Err(RejectReason::TooFewFields);
        }
        let timestamp = BidTimestamp::parse(fields[1].unwrap_or_default().as_bytes())
            .map_err(|_| RejectReason::BadTimestamp)?;
        if price_columns
            .iter()
            .any(|&i| i < known && !fields[i].is_some_and(is_price))
        {
            return Err(RejectReason::NonNumericPrice);
        }
        Ok((fields, timestamp, self.layout.extra_columns))
    }

    pub fn parse_bid<'a>(&self, line: &'a [u8]) -> Result<Parsed<BidRow<'a>>, RejectReason> {
        debug_assert_eq!(self.layout.kind, LogKind::Bid);
        let (fields, timestamp, dropped_columns) = self.split(line, &BID_PRICE_COLUMNS)?;
        Ok(Parsed {
            row: BidRow { fields, timestamp },
            dropped_columns,
        })
    }

    pub fn parse_imp<'a>(&self, line: &'a [u8]) -> Result<Parsed<ImpRow<'a>>, RejectReason> {
        debug_assert_eq!(self.layout.kind, LogKind::Imp);
        let (fields, timestamp, dropped_columns) = self.split(line, &IMP_PRICE_COLUMNS)?;
        Ok(Parsed {
            row: ImpRow { fields, timestamp },
            dropped_columns,
        })
    }
}

/// `""` and the literal `null` both mean "no value" in iPinYou logs.
pub fn non_null(field: Option<&str>) -> Option<&str> {
    field.filter(|v| !v.is_empty() && *v != "null")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid_reader() -> LineReader {
        LineReader::new(LogKind::Bid.layout_for(21).expect("layout"))
    }

    const BID: &str = "65a705c8ef61b9acc04e88a4a1d56aab\t20130606000708852\tnull\tMozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)\t120.69.224.*\t374\t380\t2\ttrqRTudNQquvFs1o5SqfNX\t9345668d6f5a7e27e33482b453d3e2bc\t\t1408060206\t336\t280\t1\t0\t5\t77819d3e0b3467fe5c7b16d68ad923a1\t300\t1458\tnull";

    #[test]
    fn reads_a_bid_line() {
        let parsed = bid_reader().parse_bid(BID.as_bytes()).expect("valid");
        assert_eq!(parsed.row.get("RegionID"), Some("374"));
        assert_eq!(parsed.row.get("AdvertiserID"), Some("1458"));
        assert_eq!(non_null(parsed.row.get("iPinYouID")), None);
        assert_eq!(non_null(parsed.row.get("AnonymousURL")), None);
        assert_eq!(parsed.dropped_columns, 0);
        let crlf = format!("{BID}\r");
        assert!(bid_reader().parse_bid(crlf.as_bytes()).is_ok());
    }

    #[test]
    fn each_defect_has_its_reason() {
        let r = bid_reader();
        let cases: Vec<(Vec<u8>, RejectReason)> = vec![
            (b"".to_vec(), RejectReason::EmptyLine),
            (b"  \r".to_vec(), RejectReason::EmptyLine),
            (
                BID.replace("Windows", "Win\u{FFFD}")
                    .into_bytes()
                    .into_iter()
                    .map(|b| if b == 0xEF { 0xFF } else { b })
                    .collect(),
                RejectReason::InvalidUtf8,
            ),
            (
                BID.rsplit_once('\t')
                    .map(|(a, _)| a)
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                RejectReason::TooFewFields,
            ),
            (
                format!("{BID}\textra").into_bytes(),
                RejectReason::TooManyFields,
            ),
            (
                BID.replace("20130606000708852", "2013060600070885x")
                    .into_bytes(),
                RejectReason::BadTimestamp,
            ),
            (
                BID.replace("\t300\t", "\t3OO\t").into_bytes(),
                RejectReason::NonNumericPrice,
            ),
            (
                BID.replace("\t5\t", "\t\t").into_bytes(),
                RejectReason::NonNumericPrice,
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(
                r.parse_bid(&line).map(|_| ()),
                Err(reason),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    /// The fields as `str::split` finds them, for lines that pass the count check.
    fn split_by_str(line: &str, known: usize, expected: usize) -> Option<Vec<&str>> {
        let fields: Vec<&str> = line.split('\t').collect();
        (fields.len() == expected).then(|| fields.into_iter().take(known).collect())
    }

    proptest::proptest! {
        /// Whatever tabs a line holds, one pass finds the same fields and the same count
        /// verdict as splitting the text.
        #[test]
        fn fields_equal_splitting_the_text(
            cut in proptest::collection::vec(0usize..BID.len(), 0..4),
            extra in proptest::collection::vec("[a-z\t]{0,3}", 0..4),
        ) {
            let mut line = BID.to_owned();
            for at in cut {
                let at = at.min(line.len());
                if line.is_char_boundary(at) {
                    line.insert(at, '\t');
                }
            }
            for piece in extra {
                line.push_str(&piece);
            }
            let reader = bid_reader();
            let layout = reader.layout();
            let parsed = reader.split::<{ BID_COLUMNS.len() }>(line.as_bytes(), &[]);
            match split_by_str(&line, layout.known_fields(), layout.total_fields()) {
                Some(fields) => {
                    // a line with the right count may still fail on its timestamp
                    if let Ok((got, _, _)) = parsed {
                        let got: Vec<&str> = got.iter().map_while(|f| *f).collect();
                        proptest::prop_assert_eq!(got, fields);
                    } else {
                        proptest::prop_assert_eq!(parsed.map(|_| ()), Err(RejectReason::BadTimestamp));
                    }
                }
                None => {
                    let count = line.split('\t').count();
                    let reason = if count < layout.total_fields() {
                        RejectReason::TooFewFields
                    } else {
                        RejectReason::TooManyFields
                    };
                    proptest::prop_assert_eq!(parsed.map(|_| ()), Err(reason));
                }
            }
        }
    }
}
