//! The ETL runner: feature jobs over iPinYou logs, and the log generator that feeds them.

mod bzblocks;
mod bzdecode;
pub mod cli;
pub mod cluster;
pub mod gc;
pub mod generate;
mod gzmembers;
pub mod ingest;
pub mod job;
mod partlines;
pub mod partwrite;
pub mod run;
pub mod stores;

/// The feature functions jobs call, shared with the scorer.
pub use rtb_expr::udf;
