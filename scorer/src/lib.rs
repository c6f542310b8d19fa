//! The bid-filtering service: for each bid request, the likelihood that it is worth bidding
//! on, from the model the trainer published.
//!
//! Start-up reads the model pointer from the parameter store (a JSON file, or AWS SSM), loads
//! the model manifest, the LightGBM text model and the vocabulary from disk or S3, and refuses
//! to serve unless they agree ([`artifacts`]). The manifest carries the job's feature contract:
//! requests are typed by its request schema ([`decode`]) and their features computed by its
//! SQL expressions, compiled once per model by `rtb-expr` (the same engine and functions the ETL
//! ran them with), then scored by the native tree evaluator of `rtb-model`, which every worker
//! shares without locks. New models are
//! swapped in atomically after the same checks ([`state`]). `rtb-scorer` (`main.rs`) is a
//! thin shell over [`cli::main`]; tests drive [`api::configure`] and [`artifacts`] directly.

#![recursion_limit = "256"]

pub mod api;
pub mod artifacts;
pub mod cli;
pub mod clock;
pub mod decode;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod state;
pub mod statsd;
pub mod wire;

pub use artifacts::{ArtifactError, LoadedModel};
pub use state::AppState;

#[cfg(test)]
mod api_tests;
