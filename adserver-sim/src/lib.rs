//! The simulated ad server: it replays the bid requests the ETL wrote for inference at the
//! scorer, the way an ad server would call it, and measures what it sees.
//!
//! It replaces the original kit's Java load client and fixes how it measured: besides the
//! original's closed loop (T connections, each waiting for its answer before the next call),
//! it runs an open loop at a constant arrival rate whose latency runs from each call's intended
//! send time, so a stalled scorer shows in the tail instead of being hidden by the client
//! slowing down with it (coordinated omission; see [`run`]).
//!
//! [`requests`] loads the ETL's JSON lines (local or S3, counted and never fatal when bad),
//! [`payload`] turns them into bodies for the single, batch or OpenRTB endpoint, [`http`] makes
//! the calls over keep-alive HTTP/1.1 connections, [`schedule`] plans the open loop, [`stats`]
//! records latency in an HDR histogram and the likelihoods answered, [`report`] writes the
//! summary as text, JSON and an HTML page, and [`statsd`] feeds the original's dashboard.
//! `rtb-adserver-sim` (`main.rs`) is a thin shell over [`cli::main`].

pub mod cli;
pub mod error;
pub mod http;
pub mod payload;
pub mod replay;
pub mod report;
pub mod requests;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod statsd;

pub use error::SimError;
pub use stats::Summary;
