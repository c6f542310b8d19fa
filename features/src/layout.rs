//! The column layouts of the real iPinYou logs.
//!
//! Season 1 (2013-03) lacks AdvertiserID and UserProfileIDs in both logs; seasons 2 and 3 have
//! them. Some published copies append columns of their own, so a file's layout is its known
//! layout plus a count of extra trailing columns, decided once per file (see [`LogKind::sniff`]).

use serde::{Deserialize, Serialize};

pub const BID_COLUMNS: [&str; 21] = [
    "BidID",
    "Timestamp",
    "iPinYouID",
    "UserAgent",
    "IP",
    "RegionID",
    "CityID",
    "AdExchange",
    "Domain",
    "URL",
    "AnonymousURL",
    "AdSlotID",
    "AdSlotWidth",
    "AdSlotHeight",
    "AdSlotVisibility",
    "AdSlotFormat",
    "AdSlotFloorPrice",
    "CreativeID",
    "BiddingPrice",
    "AdvertiserID",
    "UserProfileIDs",
];

pub const IMP_COLUMNS: [&str; 24] = [
    "BidID",
    "Timestamp",
    "LogType",
    "iPinYouID",
    "UserAgent",
    "IP",
    "RegionID",
    "CityID",
    "AdExchange",
    "Domain",
    "URL",
    "AnonymousURL",
    "AdSlotID",
    "AdSlotWidth",
    "AdSlotHeight",
    "AdSlotVisibility",
    "AdSlotFormat",
    "AdSlotFloorPrice",
    "CreativeID",
    "BiddingPrice",
    "PayingPrice",
    "LandingPageURL",
    "AdvertiserID",
    "UserProfileIDs",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BidLayout {
    /// 19 columns: no AdvertiserID, no UserProfileIDs.
    Season1,
    /// 21 columns.
    Season23,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpLayout {
    /// 22 columns: no AdvertiserID, no UserProfileIDs.
    Season1,
    /// 24 columns.
    Season23,
}

impl BidLayout {
    pub fn field_count(self) -> usize {
        match self {
            BidLayout::Season1 => 19,
            BidLayout::Season23 => 21,
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        &BID_COLUMNS[..self.field_count()]
    }
}

impl ImpLayout {
    pub fn field_count(self) -> usize {
        match self {
            ImpLayout::Season1 => 22,
            ImpLayout::Season23 => 24,
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        &IMP_COLUMNS[..self.field_count()]
    }
}

/// How a log file is compressed, named by its extension as in the real dataset (`.bz2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
        }
    }

    pub fn from_name(name: &str) -> Self {
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            Compression::Gzip
        } else if name.ends_with(".bz2") || name.ends_with(".bzip2") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// Which log a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Bid,
    Imp,
}

/// A file's layout: a known season layout plus extra trailing columns that are dropped on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileLayout {
    pub kind: LogKind,
    /// `season1` or `season23`.
    pub season: Season,
    pub extra_columns: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    Season1,
    Season23,
}

impl FileLayout {
    pub fn known_fields(&self) -> usize {
        match (self.kind, self.season) {
            (LogKind::Bid, Season::Season1) => BidLayout::Season1.field_count(),
            (LogKind::Bid, Season::Season23) => BidLayout::Season23.field_count(),
            (LogKind::Imp, Season::Season1) => ImpLayout::Season1.field_count(),
            (LogKind::Imp, Season::Season23) => ImpLayout::Season23.field_count(),
        }
    }

    pub fn total_fields(&self) -> usize {
        self.known_fields() + self.extra_columns
    }

    /// A short name for manifests, e.g. `imp/season23+2`.
    pub fn name(&self) -> String {
        let kind = match self.kind {
            LogKind::Bid => "bid",
            LogKind::Imp => "imp",
        };
        let season = match self.season {
            Season::Season1 => "season1",
            Season::Season23 => "season23",
        };
        if self.extra_columns == 0 {
            format!("{kind}/{season}")
        } else {
            format!("{kind}/{season}+{}", self.extra_columns)
        }
    }
}

impl LogKind {
    /// The layout a field count stands for, if any: an exact known layout, or the widest known
    /// layout plus extra trailing columns.
    pub fn layout_for(self, field_count: usize) -> Option<FileLayout> {
        let (s1, s23) = match self {
            LogKind::Bid => (
                BidLayout::Season1.field_count(),
                BidLayout::Season23.field_count(),
            ),
            LogKind::Imp => (
                ImpLayout::Season1.field_count(),
                ImpLayout::Season23.field_count(),
            ),
        };
        let (season, extra_columns) = if field_count == s1 {
            (Season::Season1, 0)
        } else if field_count >= s23 {
            (Season::Season23, field_count - s23)
        } else {
            return None;
        };
        Some(FileLayout {
            kind: self,
            season,
            extra_columns,
        })
    }

    /// Decides a file's layout from its first lines: the most common field count among them
    /// (ties to the smaller count), so a few malformed lines at the top cannot mislead it.
    /// Returns `None` when no line has a known layout.
    pub fn sniff<'a>(self, lines: impl IntoIterator<Item = &'a [u8]>) -> Option<FileLayout> {
        let mut counts: Vec<(usize, usize)> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let fields = line.iter().filter(|b| **b == b'\t').count() + 1;
            if self.layout_for(fields).is_none() {
                continue;
            }
            match counts.iter_mut().find(|(f, _)| *f == fields) {
                Some((_, n)) => *n += 1,
                None => counts.push((fields, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.first().and_then(|(f, _)| self.layout_for(*f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_counts_map_to_layouts() {
        assert_eq!(
            LogKind::Bid.layout_for(19).map(|l| l.name()),
            Some("bid/season1".into())
        );
        assert_eq!(
            LogKind::Bid.layout_for(21).map(|l| l.name()),
            Some("bid/season23".into())
        );
        assert_eq!(LogKind::Bid.layout_for(20), None);
        assert_eq!(
            LogKind::Imp.layout_for(22).map(|l| l.name()),
            Some("imp/season1".into())
        );
        assert_eq!(
            LogKind::Imp.layout_for(26).map(|l| l.name()),
            Some("imp/season23+2".into())
        );
        assert_eq!(LogKind::Imp.layout_for(23), None);
    }

    #[test]
    fn sniff_takes_the_majority() {
        let good = "a\t".repeat(20) + "a";
        let short = "a\tb";
        let lines = [
            good.as_bytes(),
            short.as_bytes(),
            good.as_bytes(),
            b"".as_slice(),
        ];
        let layout = LogKind::Bid.sniff(lines).expect("layout");
        assert_eq!(layout.total_fields(), 21);
    }
}
