//! The published bid-filtering model, readable without LightGBM.
//!
//! The trainer publishes a LightGBM text model and a manifest beside it; the scorer reads both.
//! Both sides use this crate, so the scorer evaluates the trees natively ([`Ensemble`]): a
//! `lightgbm3::Booster` is neither `Send` nor `Sync`, and its single-row path re-parses its
//! configuration on every call, while an [`Ensemble`] is plain data shared by every worker.

pub mod ensemble;
pub mod manifest;

pub use ensemble::{Ensemble, truncate};
pub use manifest::{ModelManifest, sha256_hex};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("model text cannot be used: {reason}")]
    Text { reason: String },
    #[error("model manifest is not valid json: {0}")]
    ManifestJson(#[from] serde_json::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
