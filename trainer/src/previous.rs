//! The model a training is about to replace: the one the parameter store points scorers at
//! (`/aik/model/manifest`). Whoever publishes a model wants it beside the one serving now, on
//! the same test rows where the two read the same features. Nothing here stops a training: a
//! previous model that cannot be read is reported as such.

use rtb_features::FeatureContract;
use rtb_model::{Ensemble, ModelManifest, sha256_hex};
use rtb_params::{ParameterStore, names};
use serde::Serialize;

use crate::metrics::{Evaluation, evaluate};

/// The published model, as far as it could be read.
pub enum Loaded {
    /// It reads exactly this run's features: score it on this test split.
    Comparable {
        model_id: String,
        ensemble: Ensemble,
    },
    /// Nothing to score: nothing published, other features, or unreadable.
    Settled(Previous),
}

/// The test metrics a model was published with (its manifest's `metrics`), on its own test split.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PublishedMetrics {
    pub rows: u64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
}

/// What the report and the summary say about the previous model.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Previous {
    None,
    /// Scored on this training's test split.
    Compared {
        model_id: String,
        evaluation: Box<Evaluation>,
    },
    NotComparable {
        model_id: String,
        reason: String,
        published: Option<PublishedMetrics>,
    },
    Unreadable {
        manifest: String,
        reason: String,
    },
}

/// Reads the model `store` points at and decides whether it can be scored on rows encoded by
/// `contract`.
pub async fn load(store: &ParameterStore, contract: &FeatureContract) -> Loaded {
    let manifest_url = match store.get(names::MODEL_MANIFEST).await {
        Ok(Some(url)) => url,
        Ok(None) => return Loaded::Settled(Previous::None),
        Err(e) => {
            return Loaded::Settled(Previous::Unreadable {
                manifest: names::MODEL_MANIFEST.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let unreadable = |reason: String| {
        Loaded::Settled(Previous::Unreadable {
            manifest: manifest_url.clone(),
            reason,
        })
    };
    let manifest = match rtb_storage::get_url(&manifest_url).await {
        Ok(bytes) => match ModelManifest::from_json(&bytes) {
            Ok(m) => m,
            Err(e) => return unreadable(format!("the manifest is not valid ({e})")),
        },
        Err(e) => return unreadable(e.to_string()),
    };
    if &manifest.contract != contract {
        let reason = if manifest.contract.vocabulary_version != contract.vocabulary_version {
            format!(
                "it encodes with vocabulary {}, this run with {}",
                manifest.contract.vocabulary_version, contract.vocabulary_version
            )
        } else {
            format!(
                "its feature contract is {}, this run's is {}",
                manifest.contract.version, contract.version
            )
        };
        let published = manifest
            .extra
            .get("metrics")
            .and_then(|m| serde_json::from_value(m.clone()).ok());
        return Loaded::Settled(Previous::NotComparable {
            model_id: manifest.model_id,
            reason,
            published,
        });
    }
    let text = match rtb_storage::get_url(&manifest.model).await {
        Ok(bytes) => bytes,
        Err(e) => return unreadable(e.to_string()),
    };
    if sha256_hex(&text) != manifest.model_sha256.to_ascii_lowercase() {
        return unreadable(format!(
            "{} does not match the manifest's sha256",
            manifest.model
        ));
    }
    let ensemble = match std::str::from_utf8(&text)
        .map_err(|e| e.to_string())
        .and_then(|t| Ensemble::parse(t).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(reason) => return unreadable(format!("{}: {reason}", manifest.model)),
    };
    if ensemble.feature_names() != manifest.features.as_slice()
        || manifest
            .best_iteration
            .is_some_and(|t| t != ensemble.iterations())
    {
        return unreadable(format!(
            "{} does not hold the trees and features its manifest names",
            manifest.model
        ));
    }
    Loaded::Comparable {
        model_id: manifest.model_id,
        ensemble,
    }
}

impl Loaded {
    /// Scores a comparable model on the test rows (`x` row-major) and evaluates it like the new
    /// one. CPU-bound: call it from a blocking task.
    pub fn evaluate(
        self,
        x: &[f64],
        labels: &[f32],
        prices: Option<&[f64]>,
        thresholds: &[f64],
        wins_kept: f64,
    ) -> Previous {
        match self {
            Loaded::Comparable { model_id, ensemble } => {
                let width = ensemble.features().max(1);
                let scores: Vec<f64> = x.chunks_exact(width).map(|r| ensemble.predict(r)).collect();
                Previous::Compared {
                    model_id,
                    evaluation: Box::new(evaluate(&scores, labels, prices, thresholds, wins_kept)),
                }
            }
            Loaded::Settled(previous) => previous,
        }
    }
}

/// `new - old` with a sign, to 4 places.
pub fn change(old: f64, new: f64) -> String {
    format!("{:+.4}", new - old)
}

impl Previous {
    /// One or two lines for the training summary.
    pub fn summary(&self, current: &Evaluation) -> Option<String> {
        match self {
            Previous::None => None,
            Previous::Compared {
                model_id,
                evaluation: p,
            } => {
                let (old, new) = (p.filtering.recommended, current.filtering.recommended);
                Some(format!(
                    "against the published model {model_id} on this test split: ROC AUC {:.4} -> {:.4} ({}), log loss {:.4} -> {:.4} ({}), requests filtered at {:.0}% of wins kept {:.2}% -> {:.2}%",
                    p.roc_auc,
                    current.roc_auc,
                    change(p.roc_auc, current.roc_auc),
                    p.log_loss,
                    current.log_loss,
                    change(p.log_loss, current.log_loss),
                    100.0 * current.filtering.wins_kept_target,
                    100.0 * old.filtered_share,
                    100.0 * new.filtered_share,
                ))
            }
            Previous::NotComparable {
                model_id,
                reason,
                published,
            } => Some(format!(
                "the published model {model_id} was not scored on this test split: {reason}{}",
                published
                    .as_ref()
                    .map(|m| format!(
                        "; on its own test split it had ROC AUC {:.4}, log loss {:.4}",
                        m.roc_auc, m.log_loss
                    ))
                    .unwrap_or_default()
            )),
            Previous::Unreadable { manifest, reason } => Some(format!(
                "the published model ({manifest}) could not be read to compare with: {reason}"
            )),
        }
    }
}
