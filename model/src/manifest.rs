//! The model manifest as a reader sees it.
//!
//! The trainer writes `models/<model_id>/model-manifest.json` last, as the commit marker of a
//! published model. This is the part of it a scorer relies on; fields the trainer adds later
//! (metrics, durations, ...) are kept in `extra` rather than refused, so an older scorer reads a
//! newer manifest.

/// The model's commit marker inside `models/<model_id>/`.
pub const MANIFEST_FILE: &str = "model-manifest.json";
/// Where models are published under the trainer's `--out`.
pub const MODELS_DIR: &str = "models";

use rtb_features::FeatureContract;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Result;

/// The model format the scorer evaluates.
pub const LIGHTGBM_TEXT: &str = "lightgbm-text";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub model_id: String,
    /// `lightgbm-text`: LightGBM's text model format.
    pub format: String,
    /// URL of the model file.
    pub model: String,
    /// Hex sha256 of the model file's bytes.
    pub model_sha256: String,
    /// Model inputs in the order the model expects them.
    pub features: Vec<String>,
    /// The vocabulary that encoded the categorical features; a scorer must encode requests
    /// with exactly this version.
    pub vocabulary_version: String,
    /// URL of that vocabulary.
    pub vocabulary: String,
    /// How the model's inputs are computed from a request: the job's feature contract.
    pub contract: FeatureContract,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_iteration: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ModelManifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_trainer_writes_and_keeps_the_rest() {
        let json = serde_json::json!({
            "model_id": "20261126T163005Z-0123abcd",
            "format": "lightgbm-text",
            "model": "s3://b/models/20261126T163005Z-0123abcd/model.txt",
            "model_sha256": sha256_hex(b"model"),
            "objective": "binary",
            "label": "label",
            "features": ["dow", "hour"],
            "vocabulary_version": "sha256:00",
            "vocabulary": "s3://b/runs/r/pipeline-model/vocabulary.json",
            "contract": {
                "format": 1, "version": "sha256:11", "job": "j", "key": "bidId",
                "request": [{ "name": "bidId", "type": "string" }, { "name": "hour", "type": "integer" }],
                "features": [{ "name": "hour", "expr": "hour" }],
                "label": "label", "vocabulary_version": "sha256:00", "vocabulary_columns": [],
                "openrtb": { "hour": "@hour" }, "time_zone": "Asia/Shanghai",
            },
            "best_iteration": 42,
            "metrics": { "roc_auc": 0.7 },
        });
        let manifest =
            ModelManifest::from_json(&serde_json::to_vec(&json).expect("json")).expect("reads");
        assert_eq!(manifest.format, LIGHTGBM_TEXT);
        assert_eq!(manifest.best_iteration, Some(42));
        assert_eq!(manifest.extra["metrics"]["roc_auc"], 0.7);
        assert_eq!(serde_json::to_value(&manifest).expect("writes"), json);
        let missing = serde_json::json!({ "model_id": "x" });
        let err = ModelManifest::from_json(&serde_json::to_vec(&missing).expect("json"))
            .expect_err("incomplete");
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
