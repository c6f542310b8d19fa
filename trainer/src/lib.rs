//! The bid-filtering model trainer (LightGBM). This crate starts with the native training core;
//! reading ETL splits, evaluation, plots and publishing come with the trainer issue.

use lightgbm3::{Booster, Dataset};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainerError {
    #[error("feature rows hold {values} values, not a multiple of {features} features")]
    Shape { values: usize, features: usize },
    #[error("{rows} feature rows but {labels} labels")]
    LabelCount { rows: usize, labels: usize },
    #[error("lightgbm failed: {0}")]
    LightGbm(#[from] lightgbm3::Error),
}

/// Trains binary classification on row-major features; `valid` enables early stopping.
pub fn train_binary(
    train: (&[f64], &[f32]),
    valid: Option<(&[f64], &[f32])>,
    features: usize,
    params: &Value,
) -> Result<Booster, TrainerError> {
    let dataset =
        |(x, y): (&[f64], &[f32]), reference: Option<&Dataset>| -> Result<Dataset, TrainerError> {
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
    let train_set = dataset(train, None)?;
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
