//! The ETL runner: feature jobs over iPinYou logs, and the log generator that feeds them.

pub mod cli;
pub mod generate;
