//! What stops a run before or after it measured anything. Failed calls during a run are not
//! errors of the run: they are counted by kind in the results ([`crate::http::CallErrorKind`]).

use std::time::Duration;

use thiserror::Error;

use crate::requests::LoadReport;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("{0}")]
    BadConfig(String),
    #[error("target {target:?} is not usable: {reason}; write it as http://host:port")]
    BadTarget { target: String, reason: String },
    #[error("cannot open the parameter store: {0}")]
    Params(#[from] rtb_params::ParamsError),
    #[error(
        "the parameter store ({store}) has no {name}; run the etl first, or pass --inference-data"
    )]
    NoInferenceData { store: String, name: &'static str },
    #[error("inference data {location} does not exist; check --inference-data or {name}")]
    MissingInferenceData {
        location: String,
        name: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] rtb_storage::StorageError),
    #[error(
        "no bid request could be loaded from {location}: {files} files ({unreadable} unreadable), \
         {lines} lines ({malformed} malformed)"
    )]
    NoRequests {
        location: String,
        files: u64,
        unreadable: u64,
        lines: u64,
        malformed: u64,
    },
    #[error(
        "the scorer at {target} is not ready after {waited:?} (last answer: {last}); start it, \
         check --target, or raise --ready-timeout"
    )]
    NotReady {
        target: String,
        waited: Duration,
        last: String,
    },
    #[error(
        "cannot set up statsd to {address}: {reason}; write it as host:port (e.g. 127.0.0.1:8125)"
    )]
    Statsd { address: String, reason: String },
    #[error("cannot watch for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error("cannot write the {what}: {reason}")]
    Report { what: &'static str, reason: String },
    #[error(
        "every one of the {calls} measured calls failed ({errors}); the summary names the kinds"
    )]
    AllFailed { calls: u64, errors: String },
}

impl SimError {
    pub(crate) fn no_requests(location: &str, report: &LoadReport) -> Self {
        SimError::NoRequests {
            location: location.to_owned(),
            files: report.files_read + report.files_unreadable,
            unreadable: report.files_unreadable,
            lines: report.lines,
            malformed: report.malformed,
        }
    }
}

pub type Result<T, E = SimError> = std::result::Result<T, E>;
