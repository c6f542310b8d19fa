//! The ETL run manifest: written last by `rtb-etl run` (its presence commits the run), read by
//! the trainer to find the splits, the vocabulary and the feature contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layout::{Compression, LogKind};
use crate::reader::RejectReason;

/// What reading one input found. `lines = accepted + rejected` always holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub url: String,
    pub kind: LogKind,
    pub compression: Compression,
    /// e.g. `bid/season23`, `imp/season23+2` (two extra trailing columns dropped).
    pub layout: String,
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    /// Accepted rows from which extra trailing columns were dropped.
    pub rows_with_extra_columns_dropped: u64,
    /// Spark mode: accepted rows with fewer fields than the layout, padded with nulls.
    #[serde(default)]
    pub rows_short_padded: u64,
    /// Spark mode: price fields `Long.parseLong` refused, read as null (the row is kept).
    #[serde(default)]
    pub prices_unparsed: u64,
    /// Byte ranges the file was read in, each by one task (`--range-size`).
    #[serde(default = "one_part")]
    pub parts: u32,
    /// Process that read the file (its first part): the client when embedded, an executor on
    /// a cluster.
    pub reader_pid: u32,
}

fn one_part() -> u32 {
    1
}

impl FileReport {
    /// Adds the counts of the file's next part.
    pub fn absorb(&mut self, next: &FileReport) {
        self.lines += next.lines;
        self.accepted += next.accepted;
        self.rejected += next.rejected;
        for (reason, n) in &next.rejected_by_reason {
            *self.rejected_by_reason.entry(*reason).or_default() += n;
        }
        self.rows_with_extra_columns_dropped += next.rows_with_extra_columns_dropped;
        self.rows_short_padded += next.rows_short_padded;
        self.prices_unparsed += next.prices_unparsed;
        self.parts += next.parts;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub rows: u64,
    pub label_0: u64,
    pub label_1: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub name: String,
    pub source: String,
    pub sha256: String,
    pub params: BTreeMap<String, String>,
    pub categorical: Vec<String>,
    /// How the raw lines were read (`--compat`).
    #[serde(default)]
    pub read_as: crate::reader::Dialect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabularyInfo {
    pub version: String,
    pub sizes: BTreeMap<String, u64>,
}

/// Output names in [`EtlManifest::outputs`].
pub mod outputs {
    pub const TRANSFORMED: &str = "transformed";
    pub const VOCABULARY: &str = "vocabulary";
    pub const CONTRACT: &str = "contract";
    pub const INFERENCE_DATA: &str = "inference_data";
    pub const REJECTS: &str = "rejects";
}

/// Everything a reader of a run needs to trust it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtlManifest {
    pub run_id: String,
    pub job: JobInfo,
    pub versions: BTreeMap<String, String>,
    pub inputs: Vec<FileReport>,
    /// Rows at each stage: `bids_read` = `bids_accepted` + `bids_rejected` (likewise imps), then
    /// rows out of each GROUP BY step, the transformed rows, the requests and the feature rows.
    pub rows: BTreeMap<String, u64>,
    /// `train`, `valid`, `test`.
    pub splits: BTreeMap<String, SplitCounts>,
    pub vocabulary: VocabularyInfo,
    /// The feature contract's version (its content hash).
    pub contract_version: String,
    /// `train`, `valid`, `test` and the names in [`outputs`], to URLs.
    pub outputs: BTreeMap<String, String>,
    pub durations_ms: BTreeMap<String, u64>,
    pub memory_limit_bytes: usize,
    pub committed_at: String,
}
