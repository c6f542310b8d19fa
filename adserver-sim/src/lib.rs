//! The simulated ad server: it replays the bid requests the ETL wrote for inference at the
//! scorer, the way an ad server would call it, and measures what it sees.
//!
//! [`requests`] loads the ETL's JSON lines (local or S3, counted and never fatal when bad),
//! [`payload`] turns them into bodies for the single, batch or OpenRTB endpoint, [`http`] makes
//! the calls over keep-alive HTTP/1.1 connections, [`schedule`] plans the open loop, [`run`]
//! drives the open and closed loops, [`stats`] records latency in an HDR histogram and the
//! likelihoods answered, and [`statsd`] feeds the original's dashboard.

pub mod error;
pub mod http;
pub mod payload;
pub mod requests;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod statsd;

pub use error::SimError;
pub use stats::Summary;
