//! Loading a published model: the parameter store names the model manifest, the manifest names
//! the model file and the vocabulary, and all three must agree before anything is served.

use std::fmt;

use bytes::Bytes;
use rtb_features::{BidRequest, FEATURE_NAMES, FeatureVocabulary};
use rtb_model::manifest::LIGHTGBM_TEXT;
use rtb_model::{Ensemble, ModelManifest, sha256_hex};
use rtb_params::{ParameterStore, names};
use thiserror::Error;
use tracing::warn;

/// Why a model cannot be served; each message says what to fix.
#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error(
        "parameter {name} is not set in {store}; publish a model with `rtb-trainer` first (it sets \
         {name} to the model manifest url)"
    )]
    NoManifestPointer { name: &'static str, store: String },
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
        "{what} lists features {found:?} but this scorer encodes {expected:?}; the model was \
         trained for another feature order"
    )]
    FeatureOrder {
        what: &'static str,
        found: Vec<String>,
        expected: Vec<&'static str>,
    },
    #[error("smoke prediction on an all-unknown request gave {value}, not a probability")]
    SmokePrediction { value: f64 },
}

pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// A model with everything needed to score a request, checked for consistency.
pub struct LoadedModel {
    pub manifest: ModelManifest,
    pub manifest_url: String,
    pub ensemble: Ensemble,
    pub vocabulary: FeatureVocabulary,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model_id", &self.manifest.model_id)
            .field("manifest_url", &self.manifest_url)
            .field("trees", &self.ensemble.iterations())
            .field("vocabulary", &self.vocabulary.version)
            .finish()
    }
}

impl LoadedModel {
    /// The version a response reports: the manifest's model id.
    pub fn model_id(&self) -> &str {
        &self.manifest.model_id
    }

    /// The model's input row for `request`, encoded by the shared `rtb-features` code.
    pub fn features(&self, request: &BidRequest) -> [f64; FEATURE_NAMES.len()] {
        request.features(&self.vocabulary)
    }

    /// The likelihood to bid for `request`.
    pub fn likelihood(&self, request: &BidRequest) -> f64 {
        self.ensemble.predict(&self.features(request))
    }

    /// Checks and assembles a model from the three artifacts' bytes.
    pub fn from_parts(
        manifest_url: &str,
        manifest: ModelManifest,
        model: &[u8],
        vocabulary: &[u8],
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
        check_feature_order("the model manifest", manifest.features.as_slice())?;
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
        check_feature_order("the model file", ensemble.feature_names())?;
        let bad_vocabulary = |reason: String| ArtifactError::BadVocabulary {
            url: manifest.vocabulary.clone(),
            reason,
        };
        let vocabulary_text = std::str::from_utf8(vocabulary)
            .map_err(|e| bad_vocabulary(format!("it is not utf-8 text ({e})")))?;
        let vocabulary = FeatureVocabulary::from_json(vocabulary_text)
            .map_err(|e| bad_vocabulary(e.to_string()))?;
        vocabulary
            .require_bid_filtering()
            .map_err(|e| bad_vocabulary(e.to_string()))?;
        if vocabulary.version != manifest.vocabulary_version {
            return Err(ArtifactError::VocabularyMismatch {
                url: manifest.vocabulary.clone(),
                expected: manifest.vocabulary_version.clone(),
                found: vocabulary.version.clone(),
            });
        }
        let model = LoadedModel {
            manifest,
            manifest_url: manifest_url.to_owned(),
            ensemble,
            vocabulary,
            loaded_at: chrono::Utc::now(),
        };
        let value = model.likelihood(&smoke_request());
        if !(0.0..=1.0).contains(&value) {
            return Err(ArtifactError::SmokePrediction { value });
        }
        Ok(model)
    }
}

fn check_feature_order<S: AsRef<str>>(what: &'static str, found: &[S]) -> Result<()> {
    if found.len() != FEATURE_NAMES.len()
        || found
            .iter()
            .zip(FEATURE_NAMES)
            .any(|(f, e)| f.as_ref() != e)
    {
        return Err(ArtifactError::FeatureOrder {
            what,
            found: found.iter().map(|f| f.as_ref().to_owned()).collect(),
            expected: FEATURE_NAMES.to_vec(),
        });
    }
    Ok(())
}

/// A request with nothing known: every categorical takes the unknown index.
pub fn smoke_request() -> BidRequest {
    BidRequest {
        bid_id: "smoke".into(),
        day_of_week: 1,
        hour: 0,
        region_id: None,
        city_id: None,
        domain_id: None,
        advertiser_id: None,
        user_agent: None,
        bidding_price: None,
        paying_price: None,
    }
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
        .ok_or_else(|| ArtifactError::NoManifestPointer {
            name: names::MODEL_MANIFEST,
            store: store.to_string(),
        })
}

/// Loads and checks the model a manifest describes.
pub async fn load(manifest_url: &str) -> Result<LoadedModel> {
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
    LoadedModel::from_parts(manifest_url, manifest, &model, &vocabulary)
}

/// Loads the model the parameter store points at. `/aik/xgboost/path` (the original's name for
/// the model file) should name the same file as the manifest; the manifest wins, since it is
/// written last, and a difference is only logged (a publish may be half way through).
pub async fn load_current(store: &ParameterStore) -> Result<LoadedModel> {
    let url = manifest_url(store).await?;
    let model = load(&url).await?;
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
