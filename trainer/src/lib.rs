//! The bid-filtering model trainer: reads the train / valid / test splits of a committed ETL run,
//! trains LightGBM binary classification with early stopping, evaluates it on the test split
//! (including the bid-filtering trade-off), writes a report, and publishes the model with a
//! manifest and parameter-store pointers. `rtb-trainer` (`main.rs`) is a thin shell over
//! [`cli::main`]; tests drive [`train::run`] directly.

pub mod cli;
pub mod data;
pub mod fit;
mod lightgbm_names;
pub mod metrics;
pub mod params;
pub mod previous;
pub mod publish;
pub mod report;
pub mod source;
pub mod train;

use lightgbm3::{Booster, Dataset};
use serde_json::Value;
use thiserror::Error;

/// Everything that can go wrong in the trainer, each with what the user can do about it.
#[derive(Debug, Error)]
pub enum TrainerError {
    #[error("feature rows hold {values} values, not a multiple of {features} features")]
    Shape { values: usize, features: usize },
    #[error("{rows} feature rows but {labels} labels")]
    LabelCount { rows: usize, labels: usize },
    #[error("lightgbm failed: {0}")]
    LightGbm(#[from] lightgbm3::Error),
    #[error(transparent)]
    Storage(#[from] rtb_storage::StorageError),
    #[error(transparent)]
    Params(#[from] rtb_params::ParamsError),

    #[error(
        "no committed etl run at {location}: expected a run folder holding manifest.json, a \
         manifest.json or latest.json url, or an etl output folder holding latest.json; run \
         `rtb-etl run` first or fix --run"
    )]
    RunNotFound { location: String },
    #[error("etl manifest {url} cannot be used: {reason}; re-run `rtb-etl run` to write a new one")]
    BadManifest { url: String, reason: String },
    #[error(
        "parameter {name} is not set in the parameter store {store}; run `rtb-etl run \
         --parameter-store {spec}` first, or pass --run with the etl run to train on"
    )]
    MissingParameter {
        name: &'static str,
        store: String,
        spec: String,
    },
    #[error(
        "parameter {name} is {value} but the etl manifest {manifest} lists {expected}; re-run \
         `rtb-etl run` to publish a consistent run, or pass --run"
    )]
    StoreMismatch {
        name: &'static str,
        value: String,
        manifest: String,
        expected: String,
    },
    #[error("vocabulary {url} cannot be read: {reason}; re-run `rtb-etl run` to rewrite it")]
    BadVocabulary { url: String, reason: String },
    #[error(
        "vocabulary {url} has version {found} but the etl manifest says {expected}; the run was \
         changed after it was committed, re-run `rtb-etl run`"
    )]
    VocabularyMismatch {
        url: String,
        found: String,
        expected: String,
    },

    #[error("{split} split folder {url} does not exist; check the etl run")]
    SplitNotFound { split: &'static str, url: String },
    #[error("{split} split folder {url} holds no .parquet file; check the etl run")]
    NoParquetFiles { split: &'static str, url: String },
    #[error("{split} split file {file} is not readable parquet: {reason}")]
    Parquet {
        split: &'static str,
        file: String,
        reason: String,
    },
    #[error(
        "{split} split file {file} has no column {column} (it has {found}); the trainer needs \
         label and the features the run's feature contract lists, as the etl job writes them"
    )]
    MissingColumn {
        split: &'static str,
        file: String,
        column: String,
        found: String,
    },
    #[error(
        "{split} split file {file}: column {column} is {found}; it must be an integer or float \
         column"
    )]
    WrongType {
        split: &'static str,
        file: String,
        column: String,
        found: String,
    },
    #[error("{split} split file {file}: column {column} is null in row {row}; it must be set")]
    NullValue {
        split: &'static str,
        file: String,
        column: String,
        row: usize,
    },
    #[error(
        "{split} split file {file}: column {column} holds {value} in row {row}; features must \
         be finite numbers or null (missing)"
    )]
    NotFinite {
        split: &'static str,
        file: String,
        column: String,
        row: usize,
        value: f64,
    },
    #[error(
        "{split} split file {file}: PayingPrice is {value} in row {row}; a price paid cannot be \
         negative, check the impression logs the etl read"
    )]
    NegativePrice {
        split: &'static str,
        file: String,
        row: usize,
        value: f64,
    },
    #[error(
        "{split} split file {file}: label is {value} in row {row}; labels must be 0 (no win) or \
         1 (win)"
    )]
    BadLabel {
        split: &'static str,
        file: String,
        row: usize,
        value: f64,
    },
    #[error("{split} split at {url} has no rows; re-run the etl on more data")]
    EmptySplit { split: &'static str, url: String },
    #[error(
        "{split} split at {url} holds only label {label} ({rows} rows); training and evaluation \
         need both wins and losses, so feed the etl more days or more impressions"
    )]
    SingleClass {
        split: &'static str,
        url: String,
        label: u8,
        rows: usize,
    },
    #[error(
        "{split} split at {url} has {found} rows but the etl manifest says {expected}; the run \
         was changed after it was committed, re-run `rtb-etl run`"
    )]
    RowCountMismatch {
        split: &'static str,
        url: String,
        found: usize,
        expected: u64,
    },

    #[error("training parameter {param:?}: {reason}")]
    BadParam { param: String, reason: String },
    #[error(
        "threshold {value} is not between 0 and 1; pass probabilities like --thresholds 0.5,0.1"
    )]
    BadThreshold { value: f64 },

    #[error("trained model text cannot be read back: {reason}")]
    ModelText { reason: String },
    #[error(transparent)]
    Model(#[from] rtb_model::ModelError),
    #[error(
        "the trained model's own evaluation differs from lightgbm's by {difference} on the \
         validation rows; this is a trainer bug, please report it with the model file"
    )]
    ModelMismatch { difference: f64 },
    #[error("cannot draw the {chart} chart: {reason}")]
    Chart { chart: &'static str, reason: String },
    #[error("cannot serialise {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "model {model_id} is committed at {manifest}, but {reason}; re-run the trainer, or point \
         the scorer at the manifest"
    )]
    NotAnnounced {
        model_id: String,
        manifest: String,
        reason: String,
    },
    #[error("training task failed: {0}")]
    Task(String),
    #[error("the model was not published: {0}")]
    Publish(String),
}

pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

/// Trains binary classification on row-major features; `valid` enables early stopping.
pub fn train_binary(
    train: (&[f64], &[f32]),
    valid: Option<(&[f64], &[f32])>,
    features: usize,
    params: &Value,
) -> Result<Booster> {
    let names: Vec<String> = (0..features).map(|i| format!("Column_{i}")).collect();
    train_binary_named(train, valid, &names, params)
}

/// Like [`train_binary`], with the feature names the model file records (one per column).
pub fn train_binary_named(
    train: (&[f64], &[f32]),
    valid: Option<(&[f64], &[f32])>,
    names: &[String],
    params: &Value,
) -> Result<Booster> {
    let features = names.len();
    let dataset = |(x, y): (&[f64], &[f32]), reference: Option<&Dataset>| -> Result<Dataset> {
        if features == 0 || x.len() % features != 0 {
            return Err(TrainerError::Shape {
                values: x.len(),
                features,
            });
        }
        if x.len() / features != y.len() {
            return Err(TrainerError::LabelCount {
                rows: x.len() / features,
                labels: y.len(),
            });
        }
        let n = i32::try_from(features).unwrap_or(i32::MAX);
        Ok(Dataset::from_slice_with_reference(
            x, y, n, true, reference,
        )?)
    };
    let mut train_set = dataset(train, None)?;
    train_set.set_feature_names(names)?;
    let valid_set = match valid {
        Some(v) => Some(dataset(v, Some(&train_set))?),
        None => None,
    };
    Ok(Booster::train_with_valid(train_set, valid_set, params)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_threshold_and_rejects_bad_shapes() {
        // y = 1 exactly when x0 > 0.5; x1 is noise
        let n = 2000;
        let mut x = Vec::with_capacity(n * 2);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let a = (i * 7919 % n) as f64 / n as f64;
            let b = (i * 104_729 % n) as f64 / n as f64;
            x.extend([a, b]);
            y.push(if a > 0.5 { 1.0 } else { 0.0 });
        }
        let params = serde_json::json!({
            "objective": "binary", "num_iterations": 20, "num_threads": 1,
            "verbosity": -1, "deterministic": true, "min_data_in_leaf": 5
        });
        let booster = train_binary((&x, &y), None, 2, &params).expect("trains");
        let p = booster
            .predict(&[0.9, 0.3, 0.1, 0.3], 2, true)
            .expect("predicts");
        assert!(p[0] > 0.9 && p[1] < 0.1, "{p:?}");
        assert!(matches!(
            train_binary((&x[..3], &y), None, 2, &params),
            Err(TrainerError::Shape { .. })
        ));
        assert!(matches!(
            train_binary((&x, &y[..5]), None, 2, &params),
            Err(TrainerError::LabelCount { .. })
        ));
    }
}
