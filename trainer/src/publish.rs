//! Publishing a trained model: files under `<out>/models/<model_id>/`, the model file first and
//! `model-manifest.json` last (its presence commits the model), then `models/latest.json`, then
//! the parameter store pointers. A failure while writing deletes what was written.
//!
//! ```text
//! models/<model_id>/model.txt                LightGBM text model, cut to the best iteration
//! models/<model_id>/report/report.html       self-contained report (charts inlined)
//! models/<model_id>/report/metrics.json      every test metric, the filtering curve
//! models/<model_id>/report/*.png             the charts
//! models/<model_id>/model-manifest.json      written last: the commit marker
//! models/latest.json                         the newest committed model
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use rtb_model::ModelManifest;
use rtb_params::{ParameterStore, names};
use rtb_storage::Location;
use rtb_storage::commit::{CommitError, Staging};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::info;

use crate::metrics::{FilterPoint, ThresholdMetrics};
use crate::{Result, TrainerError};

pub const MODEL_FILE: &str = "model.txt";
pub use rtb_model::manifest::{MANIFEST_FILE, MODELS_DIR};
pub const LATEST: &str = "latest.json";

/// What the trainer records about a model beside what a scorer reads: stored in the model
/// manifest (`rtb_model::ModelManifest`, the one type its writer and readers share) as its
/// `extra` fields, so a person reading `model-manifest.json` sees how the model came about.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingRecord {
    pub objective: &'static str,
    pub label: &'static str,
    pub etl_run_id: String,
    pub etl_manifest: String,
    pub splits: BTreeMap<&'static str, SplitInfo>,
    pub params: Map<String, Value>,
    pub trees_trained: usize,
    pub early_stopping_metric: String,
    pub valid_metric_at_best: f64,
    pub metrics: MetricsSummary,
    /// Building the LightGBM datasets and boosting, in milliseconds.
    pub training_time_ms: u64,
    pub durations_ms: BTreeMap<&'static str, u64>,
    pub report: String,
    pub metrics_file: String,
    pub versions: BTreeMap<&'static str, String>,
}

impl TrainingRecord {
    /// The record as the manifest's extra fields.
    pub fn to_fields(&self) -> Result<Map<String, Value>> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Ok(Map::new()),
            Err(source) => Err(TrainerError::Json {
                what: "the training record",
                source,
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitInfo {
    pub url: String,
    pub rows: usize,
    pub wins: usize,
}

/// The test metrics a manifest carries; `metrics.json` has the rest.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSummary {
    pub split: &'static str,
    pub rows: u64,
    pub wins: u64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub thresholds: Vec<ThresholdMetrics>,
    pub recommended_filter: FilterPoint,
}

pub use rtb_model::sha256_hex;

/// `<UTC time>-<first 8 hex digits of the model's sha256>`.
pub fn model_id(model_sha256: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        &model_sha256[..8.min(model_sha256.len())]
    )
}

/// Where a model's files go.
pub struct Destination {
    pub out: Location,
    pub prefix: String,
}

impl Destination {
    pub fn new(out: &str, model_id: &str) -> Result<Self> {
        Ok(Destination {
            out: Location::parse(out)?,
            prefix: format!("{MODELS_DIR}/{model_id}"),
        })
    }

    /// A folder no model uses yet, and its model id: `model_id`, or `model_id-2`, ... when the
    /// same model was published in the same second (a deterministic training twice), so a
    /// staging never writes into, or aborts, a committed model.
    pub async fn fresh(out: &str, model_id: &str) -> Result<(Self, String)> {
        for n in 1.. {
            let id = if n == 1 {
                model_id.to_owned()
            } else {
                format!("{model_id}-{n}")
            };
            let destination = Self::new(out, &id)?;
            if destination.out.list(&destination.prefix).await?.is_empty() {
                return Ok((destination, id));
            }
        }
        unreachable!("some suffix is free")
    }

    pub fn url(&self, name: &str) -> String {
        self.out.child_url(&format!("{}/{name}", self.prefix))
    }
}

/// The files of one model; `model` is written first and the manifest last.
pub struct ModelFiles {
    pub model: Bytes,
    /// Report files, relative to the model folder (`report/report.html`, ...).
    pub report: Vec<(String, Bytes)>,
}

/// Writes the model and its report, then the manifest (committing the model), then
/// `models/latest.json`, then the parameter store pointers (`/aik/xgboost/path` to the model
/// file, `/aik/model/manifest` to the manifest). Before the manifest, a failure deletes what was
/// written; after it, nothing is deleted and the error says what stands.
pub async fn publish(
    destination: &Destination,
    files: &ModelFiles,
    manifest: &ModelManifest,
    store: &ParameterStore,
) -> Result<()> {
    let staging = Staging::new(&destination.out, destination.prefix.clone());
    let mut staged = staging.put(MODEL_FILE, files.model.clone()).await;
    for (name, bytes) in &files.report {
        if staged.is_err() {
            break;
        }
        staged = staging.put(name, bytes.clone()).await;
    }
    if let Err(err) = staged {
        staging.abort(MANIFEST_FILE).await;
        return Err(err.into());
    }
    let manifest_json =
        serde_json::to_vec_pretty(manifest).map_err(|source| TrainerError::Json {
            what: "the model manifest",
            source,
        })?;
    let manifest_url = staging.url(MANIFEST_FILE);
    let latest = serde_json::json!({ "model_id": manifest.model_id, "manifest": manifest_url });
    let not_announced = |reason: String| TrainerError::NotAnnounced {
        model_id: manifest.model_id.clone(),
        manifest: manifest_url.clone(),
        reason,
    };
    match staging
        .commit(
            MANIFEST_FILE,
            manifest_json.into(),
            &format!("{MODELS_DIR}/{LATEST}"),
            format!("{latest:#}").into(),
        )
        .await
    {
        Ok(_) => info!(model_id = %manifest.model_id, "committed model"),
        Err(err @ CommitError::NotCommitted { .. }) => {
            return Err(TrainerError::Publish(err.to_string()));
        }
        Err(err @ CommitError::PointerNotMoved { .. }) => {
            return Err(not_announced(err.to_string()));
        }
    }
    store
        .put_many(&[
            (names::XGBOOST_PATH, manifest.model.as_str()),
            (names::MODEL_MANIFEST, manifest_url.as_str()),
        ])
        .await
        .map_err(|e| not_announced(format!("the parameter store {store} was not updated ({e})")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_sort_by_time() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T16:30:05Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let hash = sha256_hex(b"model");
        assert_eq!(
            model_id(&hash, at),
            format!("20261126T163005Z-{}", &hash[..8])
        );
    }
}
