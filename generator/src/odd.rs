//! Odd lines: what real logs written by other tools carry, and what Spark reads without
//! complaint while our strict reader rejects or reads differently (docs/spark-compat.md says
//! which does what). Planted at `--odd-fraction`, separately from the malformed lines.

use serde::Serialize;

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OddKind {
    /// The line stops after a few fields.
    ShortRow,
    /// Extra fields after the last column.
    LongRow,
    /// A field in double quotes, sometimes with a TAB inside.
    QuotedField,
    /// A field opening a quote it never closes.
    UnbalancedQuote,
    /// A categorical field holding the literal `null`.
    NullLiteral,
    /// An empty BidID, Domain, RegionID or AdvertiserID.
    EmptyField,
    /// A blank or whitespace-only line before the line.
    BlankLine,
    /// A timestamp Spark's date and int casts read leniently or as null.
    OddTimestamp,
    /// An impression price in a shape `Long.parseLong` accepts or refuses.
    OddPrice,
    /// Latin-1 bytes in the user agent or the domain.
    InvalidUtf8,
    /// A carriage return inside the user agent (Hadoop ends a line there).
    LoneCr,
    /// A domain outside ASCII, some outside the Basic Multilingual Plane.
    WideDomain,
    /// A region or city with surrounding spaces.
    PaddedValue,
}

impl OddKind {
    pub const ALL: [OddKind; 13] = [
        OddKind::ShortRow,
        OddKind::LongRow,
        OddKind::QuotedField,
        OddKind::UnbalancedQuote,
        OddKind::NullLiteral,
        OddKind::EmptyField,
        OddKind::BlankLine,
        OddKind::OddTimestamp,
        OddKind::OddPrice,
        OddKind::InvalidUtf8,
        OddKind::LoneCr,
        OddKind::WideDomain,
        OddKind::PaddedValue,
    ];
}

/// Where the fields an odd kind touches sit in one log's layout.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    pub timestamp: usize,
    pub user_agent: usize,
    pub region: usize,
    pub city: usize,
    pub domain: usize,
    pub advertiser: Option<usize>,
    /// The prices: floor and bidding price in bids (text to Spark), bidding and paying price
    /// in impressions (`long` to Spark).
    pub prices: &'static [usize],
}

const TIMESTAMPS: [&str; 12] = [
    "2013031",
    "20130311 7",
    "20130311+7000000",
    "2013031107.9",
    "20131311000000000",
    "20130230120000000",
    " 20130311000000000",
    "null",
    "2013-03-11 12:00:00",
    "2013031a12",
    "20130311-1",
    "201303111",
];

const PRICES: [&str; 12] = [
    "+5",
    "-3",
    "0077",
    "\u{FF17}\u{FF17}",
    " 77",
    "12.5",
    "99999999999999999999",
    "",
    "null",
    "\u{FF11}\u{FF12}\u{FF13}",
    "300 ",
    "9223372036854775807",
];

const WIDE_DOMAINS: [&str; 8] = [
    "例子.测试",
    "\u{1F600}.example",
    "\u{FF5E}.example",
    "\u{FF5E}",
    "\u{1F600}",
    "日本.jp",
    "é.fr",
    "\u{10400}.example",
];

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// Rewrites a valid line (without its newline) into an odd one of `kind`.
pub fn plant(line: &mut Vec<u8>, kind: OddKind, rng: &mut Rng, c: &Columns) {
    let mut fields: Vec<Vec<u8>> = line.split(|b| *b == b'\t').map(<[u8]>::to_vec).collect();
    let categorical = |rng: &mut Rng| -> usize {
        let mut choices = vec![c.domain, c.region, c.city];
        choices.extend(c.advertiser);
        choices[rng.below(choices.len() as u64) as usize]
    };
    match kind {
        OddKind::ShortRow => {
            let keep = 2 + rng.below(fields.len() as u64 - 3) as usize;
            fields.truncate(keep);
        }
        OddKind::LongRow => {
            for _ in 0..1 + rng.below(3) {
                fields.push(pick(rng, &["extra", "", "null", "7"]).as_bytes().to_vec());
            }
        }
        OddKind::QuotedField => {
            let at = if rng.chance(0.5) {
                c.domain
            } else {
                c.user_agent
            };
            let mut quoted = vec![b'"'];
            let value = &fields[at];
            if rng.chance(0.5) && value.len() > 2 {
                let mid = value.len() / 2;
                quoted.extend_from_slice(&value[..mid]);
                quoted.push(b'\t');
                quoted.extend_from_slice(&value[mid..]);
            } else {
                quoted.extend_from_slice(value);
            }
            quoted.push(b'"');
            fields[at] = quoted;
        }
        OddKind::UnbalancedQuote => {
            let at = categorical(rng);
            fields[at].insert(0, b'"');
        }
        OddKind::NullLiteral => {
            let at = categorical(rng);
            fields[at] = b"null".to_vec();
        }
        OddKind::EmptyField => {
            let at = if rng.chance(0.4) { 0 } else { categorical(rng) };
            fields[at].clear();
        }
        OddKind::BlankLine => {
            let blank = pick(rng, &["", " ", "\t", " \t ", "\u{1}"]);
            let mut out = blank.as_bytes().to_vec();
            out.push(b'\n');
            out.extend_from_slice(line);
            *line = out;
            return;
        }
        OddKind::OddTimestamp => {
            fields[c.timestamp] = pick(rng, &TIMESTAMPS).as_bytes().to_vec();
        }
        OddKind::OddPrice => {
            let at = c.prices[rng.below(c.prices.len() as u64) as usize];
            fields[at] = pick(rng, &PRICES).as_bytes().to_vec();
        }
        OddKind::InvalidUtf8 => {
            let at = if rng.chance(0.5) {
                c.domain
            } else {
                c.user_agent
            };
            let pos = fields[at].len() / 2;
            fields[at].splice(pos..pos, [0xE9, 0xFF]);
        }
        OddKind::LoneCr => {
            let pos = fields[c.user_agent].len() / 2;
            fields[c.user_agent].insert(pos, b'\r');
        }
        OddKind::WideDomain => {
            fields[c.domain] = pick(rng, &WIDE_DOMAINS).as_bytes().to_vec();
        }
        OddKind::PaddedValue => {
            let at = if rng.chance(0.5) { c.region } else { c.city };
            let value = std::mem::take(&mut fields[at]);
            fields[at] = [b" ".as_slice(), &value, b" "].concat();
        }
    }
    *line = fields.join(&b'\t');
}
