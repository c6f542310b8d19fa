//! Loading a published model: the parameter store names the model manifest, the manifest names
//! the model file and the vocabulary, and all three must agree before anything is served.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use rtb_expr::CompiledFeatures;
use rtb_features::FeatureVocabulary;
use rtb_features::openrtb::Source;
use rtb_model::manifest::LIGHTGBM_TEXT;
use rtb_model::{Ensemble, ModelManifest, sha256_hex};
use rtb_params::{ParameterStore, names};
use thiserror::Error;
use tracing::warn;

use crate::clock::Clock;
use crate::decode::{DecodeError, RequestLayout, RequestRows};

/// Why a model cannot be served; each message says what to fix.
#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error(
        "parameter {name} is not set in {store}; publish a model with `rtb-trainer` first (it sets \
         {name} to the model manifest url)"
    )]
    NoManifestPointer { name: &'static str, store: String },
    #[error(
        "the parameter store file {path} does not exist; check --parameter-store (the trainer \
         creates it when it publishes a model)"
    )]
    NoStoreFile { path: String },
    #[error("cannot read the parameter store: {0}")]
    Params(#[from] rtb_params::ParamsError),
    #[error("cannot read {what} at {url}: {source}")]
    Read {
        what: &'static str,
        url: String,
        source: Box<rtb_storage::StorageError>,
    },
    #[error("model manifest {url} cannot be used: {reason}")]
    BadManifest { url: String, reason: String },
    #[error(
        "model file {url} has sha256 {actual} but its manifest says {expected}; the file was \
         replaced or truncated after publishing, publish the model again"
    )]
    ModelHash {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("model file {url} cannot be used: {reason}")]
    BadModel { url: String, reason: String },
    #[error("vocabulary {url} cannot be used: {reason}")]
    BadVocabulary { url: String, reason: String },
    #[error(
        "the model was trained with vocabulary {expected} but {url} is version {found}; serving \
         it would encode requests differently from training, so publish a model trained on \
         this vocabulary or point the manifest at the right one"
    )]
    VocabularyMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error(
        "{what} lists features {found:?} but the model's feature contract computes {expected:?}; \
         the model and its contract come from different trainings, publish the model again"
    )]
    FeatureOrder {
        what: &'static str,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("the model's feature contract cannot be used: {0}")]
    BadContract(String),
    #[error(
        "the model's feature contract does not compile, so no request can be scored as in \
         training: {0}"
    )]
    ContractCompile(#[from] rtb_expr::ExprError),
    #[error("smoke prediction on a request with every field null gave {value}, not a probability")]
    SmokePrediction { value: f64 },
}

impl ArtifactError {
    /// A failure to read (the store or an object unreachable, not yet visible, timing out)
    /// rather than content that cannot serve: worth retrying, never worth remembering.
    pub fn is_transient(&self) -> bool {
        matches!(self, ArtifactError::Read { .. } | ArtifactError::Params(_))
    }
}

pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// A model with everything needed to score a request, checked for consistency.
pub struct LoadedModel {
    pub manifest: ModelManifest,
    pub manifest_url: String,
    pub ensemble: Ensemble,
    pub vocabulary: Arc<FeatureVocabulary>,
    /// The contract's features, compiled once for this model.
    pub features: CompiledFeatures,
    /// How request bodies map to the request batch, built once for this model.
    pub layout: RequestLayout,
    /// Where an OpenRTB request carries each request field, by field position.
    pub openrtb: Vec<Option<Source>>,
    /// The zone the model's day of week and hour are in: the contract's, unless the scorer
    /// was started with another.
    pub clock: Clock,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model_id", &self.manifest.model_id)
            .field("manifest_url", &self.manifest_url)
            .field("trees", &self.ensemble.iterations())
            .field("vocabulary", &self.vocabulary.version)
            .field("contract", &self.manifest.contract.version)
            .finish()
    }
}

/// Scores of a batch of request rows, and the feature rows they came from.
pub struct Scored {
    pub width: usize,
    pub features: Vec<f64>,
    pub likelihoods: Vec<f64>,
}

impl Scored {
    /// The feature vector of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.features[i * self.width..(i + 1) * self.width]
    }
}

impl LoadedModel {
    /// The version a response reports: the manifest's model id.
    pub fn model_id(&self) -> &str {
        &self.manifest.model_id
    }

    /// The model's input rows for `rows`, computed by the contract's expressions.
    pub fn features(&self, rows: &RequestRows<'_, '_>) -> Result<Vec<f64>, DecodeError> {
        self.features
            .evaluate_values(&rows.values())
            .map_err(|e| DecodeError::new(crate::metrics::ErrorKind::InvalidValue, e.to_string()))
    }

    /// The likelihood to bid for each row of `rows`.
    pub fn score(&self, rows: &RequestRows<'_, '_>) -> Result<Scored, DecodeError> {
        let features = self.features(rows)?;
        let width = self.features.len();
        let likelihoods = features
            .chunks(width.max(1))
            .take(rows.len())
            .map(|row| self.ensemble.predict(row))
            .collect();
        Ok(Scored {
            width,
            features,
            likelihoods,
        })
    }

    /// A builder for request rows of this model's contract.
    pub fn rows<'b>(&self, capacity: usize) -> RequestRows<'_, 'b> {
        RequestRows::new(&self.layout, capacity)
    }

    /// Checks and assembles a model from the three artifacts' bytes. `time_zone` replaces the
    /// contract's zone when given.
    pub fn from_parts(
        manifest_url: &str,
        manifest: ModelManifest,
        model: &[u8],
        vocabulary: &[u8],
        time_zone: Option<Clock>,
    ) -> Result<Self> {
        let bad_manifest = |reason: String| ArtifactError::BadManifest {
            url: manifest_url.to_owned(),
            reason,
        };
        if manifest.format != LIGHTGBM_TEXT {
            return Err(bad_manifest(format!(
                "format is {:?}; this scorer reads {LIGHTGBM_TEXT:?}",
                manifest.format
            )));
        }
        let contract = &manifest.contract;
        contract
            .verify()
            .map_err(|e| ArtifactError::BadContract(e.to_string()))?;
        let expected = contract.feature_names();
        check_feature_order("the model manifest", &manifest.features, &expected)?;
        if contract.vocabulary_version != manifest.vocabulary_version {
            return Err(ArtifactError::BadContract(format!(
                "it encodes with vocabulary {} but the manifest names {}",
                contract.vocabulary_version, manifest.vocabulary_version
            )));
        }
        let actual = sha256_hex(model);
        if !actual.eq_ignore_ascii_case(&manifest.model_sha256) {
            return Err(ArtifactError::ModelHash {
                url: manifest.model.clone(),
                expected: manifest.model_sha256.clone(),
                actual,
            });
        }
        let bad_model = |reason: String| ArtifactError::BadModel {
            url: manifest.model.clone(),
            reason,
        };
        let text = std::str::from_utf8(model)
            .map_err(|e| bad_model(format!("it is not utf-8 text ({e})")))?;
        let ensemble = Ensemble::parse(text).map_err(|e| bad_model(e.to_string()))?;
        check_feature_order("the model file", ensemble.feature_names(), &expected)?;
        // the trainer publishes exactly its best iteration's trees
        if let Some(trees) = manifest.best_iteration
            && ensemble.iterations() != trees
        {
            return Err(bad_model(format!(
                "it holds {} trees, the manifest says {trees}",
                ensemble.iterations()
            )));
        }
        let bad_vocabulary = |reason: String| ArtifactError::BadVocabulary {
            url: manifest.vocabulary.clone(),
            reason,
        };
        let vocabulary_text = std::str::from_utf8(vocabulary)
            .map_err(|e| bad_vocabulary(format!("it is not utf-8 text ({e})")))?;
        let vocabulary = FeatureVocabulary::from_json(vocabulary_text)
            .map_err(|e| bad_vocabulary(e.to_string()))?;
        if vocabulary.version != manifest.vocabulary_version {
            return Err(ArtifactError::VocabularyMismatch {
                url: manifest.vocabulary.clone(),
                expected: manifest.vocabulary_version.clone(),
                found: vocabulary.version.clone(),
            });
        }
        if let Some(missing) = contract
            .vocabulary_columns
            .iter()
            .find(|c| vocabulary.get(c).is_none())
        {
            return Err(bad_vocabulary(format!(
                "it has no column {missing}, which the feature contract encodes"
            )));
        }
        let vocabulary = Arc::new(vocabulary);
        let features = CompiledFeatures::compile(contract, Arc::clone(&vocabulary))?;
        let layout = RequestLayout::new(contract);
        let openrtb = contract
            .request
            .iter()
            .map(|f| {
                contract
                    .openrtb
                    .get(&f.name)
                    .map(|s| Source::parse(s))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ArtifactError::BadContract(e.to_string()))?;
        let clock = match time_zone {
            Some(clock) => clock,
            None => Clock::parse(&contract.time_zone)
                .map_err(|e| ArtifactError::BadContract(e.to_string()))?,
        };
        let model = LoadedModel {
            manifest,
            manifest_url: manifest_url.to_owned(),
            ensemble,
            vocabulary,
            features,
            layout,
            openrtb,
            clock,
            loaded_at: chrono::Utc::now(),
        };
        let value = model.smoke()?;
        if !(0.0..=1.0).contains(&value) {
            return Err(ArtifactError::SmokePrediction { value });
        }
        Ok(model)
    }

    /// The likelihood of a request with only its key: every other field null.
    fn smoke(&self) -> Result<f64> {
        let mut rows = self.rows(1);
        let key = &self.manifest.contract.key;
        let mut request = serde_json::Map::new();
        request.insert(key.clone(), serde_json::Value::from("smoke"));
        let failed = |e: DecodeError| {
            ArtifactError::BadContract(format!(
                "a request with only {key} cannot be scored: {}",
                e.message
            ))
        };
        let body = serde_json::Value::Object(request).to_string();
        rows.push_json(body.as_bytes()).map_err(failed)?;
        let scored = self.score(&rows).map_err(failed)?;
        Ok(scored.likelihoods.first().copied().unwrap_or(f64::NAN))
    }
}

fn check_feature_order<S: AsRef<str>>(
    what: &'static str,
    found: &[S],
    expected: &[String],
) -> Result<()> {
    if found.len() != expected.len() || found.iter().zip(expected).any(|(f, e)| f.as_ref() != e) {
        return Err(ArtifactError::FeatureOrder {
            what,
            found: found.iter().map(|f| f.as_ref().to_owned()).collect(),
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

/// Reads one object by URL: a local path, `file://` or `s3://` URL.
pub async fn fetch(what: &'static str, url: &str) -> Result<Bytes> {
    let read_error = |source| ArtifactError::Read {
        what,
        url: url.to_owned(),
        source: Box::new(source),
    };
    rtb_storage::get_url(url).await.map_err(read_error)
}

/// The model manifest URL the parameter store currently names.
pub async fn manifest_url(store: &ParameterStore) -> Result<String> {
    store
        .get(names::MODEL_MANIFEST)
        .await?
        .ok_or_else(|| match store {
            ParameterStore::File(file) if !file.path().exists() => ArtifactError::NoStoreFile {
                path: file.path().display().to_string(),
            },
            _ => ArtifactError::NoManifestPointer {
                name: names::MODEL_MANIFEST,
                store: store.to_string(),
            },
        })
}

/// Loads and checks the model a manifest describes; `time_zone` replaces the contract's.
pub async fn load(manifest_url: &str, time_zone: Option<Clock>) -> Result<LoadedModel> {
    let manifest_bytes = fetch("the model manifest", manifest_url).await?;
    let manifest =
        ModelManifest::from_json(&manifest_bytes).map_err(|e| ArtifactError::BadManifest {
            url: manifest_url.to_owned(),
            reason: e.to_string(),
        })?;
    let (model, vocabulary) = futures::try_join!(
        fetch("the model file", &manifest.model),
        fetch("the vocabulary", &manifest.vocabulary)
    )?;
    LoadedModel::from_parts(manifest_url, manifest, &model, &vocabulary, time_zone)
}

/// Loads the model the parameter store points at. `/aik/xgboost/path` (the original's name for
/// the model file) should name the same file as the manifest; the manifest wins, since it is
/// written last, and a difference is only logged (a publish may be half way through).
pub async fn load_current(store: &ParameterStore, time_zone: Option<Clock>) -> Result<LoadedModel> {
    let url = manifest_url(store).await?;
    let model = load(&url, time_zone).await?;
    if let Ok(Some(path)) = store.get(names::XGBOOST_PATH).await
        && path != model.manifest.model
    {
        warn!(
            parameter = names::XGBOOST_PATH,
            value = %path,
            manifest_model = %model.manifest.model,
            "model pointer differs from the manifest's model; serving the manifest's"
        );
    }
    Ok(model)
}
