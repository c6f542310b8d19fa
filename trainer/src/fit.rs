//! Training with early stopping, choosing the best iteration, and scoring the test split.
//! Synchronous and CPU-bound (LightGBM uses its own threads): call it from a blocking task.

use std::time::Instant;

use lightgbm3::{Booster, ImportanceType};
use serde_json::{Map, Value};

use crate::data::Split;
use crate::metrics::{Ranking, binary_error, log_loss};
use crate::params;
use crate::{Result, TrainerError, train_binary_named};
use rtb_model::{Ensemble, truncate};

/// A trained model cut to its best iteration, with what the report and manifest need.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// LightGBM's text model, exactly the model evaluated on the test split.
    pub model_text: String,
    /// Trees LightGBM built before stopping (after `lightgbm3`'s own rollback, if any).
    pub trees_trained: usize,
    /// Trees kept: the iteration with the best validation metric.
    pub best_iteration: usize,
    pub metric: String,
    /// The validation metric after each iteration, 1-based iteration `i` at index `i - 1`.
    pub valid_metric: Vec<f64>,
    /// The same metric on (a sample of) the training split, to tell overfitting from a plateau.
    pub train_metric: Vec<f64>,
    /// Training rows `train_metric` is measured on, of `train_rows`.
    pub train_metric_rows: usize,
    pub train_rows: usize,
    pub test_scores: Vec<f64>,
    /// The model's inputs, in order.
    pub feature_names: Vec<String>,
    /// Total gain of the splits on each feature, in feature order.
    pub importance_gain: Vec<f64>,
    /// Number of splits on each feature.
    pub importance_split: Vec<f64>,
    /// Dataset construction and boosting.
    pub train_ms: u64,
    /// Scoring the validation rows per iteration and cutting the model.
    pub select_ms: u64,
    pub predict_ms: u64,
}

fn metric_value(metric: &str, probabilities: &[f64], labels: &[f32]) -> f64 {
    match metric {
        "auc" => Ranking::new(probabilities, labels).roc_auc(),
        "average_precision" => Ranking::new(probabilities, labels).average_precision(),
        "binary_error" => binary_error(probabilities, labels),
        _ => log_loss(probabilities, labels),
    }
}

fn largest_difference(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// At most this many training rows are scored per iteration for the training curve: a curve, not
/// a metric to select on, so a sample is enough and keeps a long training split cheap.
const TRAIN_CURVE_ROWS: usize = 100_000;

/// Every k-th row of `split` (row-major, `width` columns), k chosen to keep at most `limit`.
fn every_kth_row(split: &Split, width: usize, limit: usize) -> (Vec<f64>, Vec<f32>) {
    let rows = split.y.len();
    let k = rows.div_ceil(limit.max(1)).max(1);
    let mut x = Vec::with_capacity(rows / k * width + width);
    let mut y = Vec::with_capacity(rows / k + 1);
    for row in (0..rows).step_by(k) {
        x.extend_from_slice(&split.x[row * width..(row + 1) * width]);
        y.push(split.y[row]);
    }
    (x, y)
}

/// The 1-based iteration with the best value; the earliest one on ties, as LightGBM's early
/// stopping only moves on a strict improvement.
pub fn best_iteration(curve: &[f64], higher_is_better: bool) -> usize {
    let mut best = 0;
    for (i, v) in curve.iter().enumerate() {
        let better = if higher_is_better {
            *v > curve[best]
        } else {
            *v < curve[best]
        };
        if better {
            best = i;
        }
    }
    best + 1
}

/// Trains on `train` with early stopping on `valid`, keeps the best iteration, scores `test`;
/// `names` are the splits' feature columns, in order.
pub fn fit(
    train: &Split,
    valid: &Split,
    test: &Split,
    names: &[String],
    params: &Map<String, Value>,
) -> Result<Fitted> {
    let started = Instant::now();
    let width = names.len() as i32;
    let booster = train_binary_named(
        (&train.x, &train.y),
        Some((&valid.x, &valid.y)),
        names,
        &Value::Object(params.clone()),
    )?;
    let train_ms = started.elapsed().as_millis() as u64;

    let started = Instant::now();
    let trees_trained = usize::try_from(booster.num_iterations()).unwrap_or(0);
    let text = booster.save_string()?;
    let ensemble = Ensemble::parse(&text)?;
    if ensemble.feature_names() != names || ensemble.iterations() != trees_trained {
        return Err(TrainerError::ModelText {
            reason: format!(
                "expected {trees_trained} trees over {names:?}, read {} over {:?}",
                ensemble.iterations(),
                ensemble.feature_names()
            ),
        });
    }
    let metric = params::metric(params).to_owned();
    let mut valid_metric = Vec::with_capacity(trees_trained);
    let mut last = Vec::new();
    ensemble.staged_probabilities(&valid.x, |iteration, p| {
        valid_metric.push(metric_value(&metric, p, &valid.y));
        if iteration == trees_trained {
            last = p.to_vec();
        }
    });
    let (sample_x, sample_y) = every_kth_row(train, names.len(), TRAIN_CURVE_ROWS);
    let mut train_metric = Vec::with_capacity(trees_trained);
    ensemble.staged_probabilities(&sample_x, |_, p| {
        train_metric.push(metric_value(&metric, p, &sample_y));
    });
    let lightgbm = booster.predict(&valid.x, width, true)?;
    let difference = largest_difference(&lightgbm, &last);
    if difference > 1e-9 {
        return Err(TrainerError::ModelMismatch { difference });
    }
    let best = if params.contains_key("early_stopping_rounds") && !valid_metric.is_empty() {
        best_iteration(&valid_metric, params::higher_is_better(&metric))
    } else {
        trees_trained
    };
    let (booster, model_text) = if best < trees_trained {
        let cut = Booster::from_string(&truncate(&text, best)?)?;
        let probabilities = cut.predict(&valid.x, width, true)?;
        let measured = metric_value(&metric, &probabilities, &valid.y);
        let expected = valid_metric[best - 1];
        if (measured - expected).abs() > 1e-9 {
            return Err(TrainerError::ModelMismatch {
                difference: (measured - expected).abs(),
            });
        }
        let text = cut.save_string()?;
        (cut, text)
    } else {
        (booster, text)
    };
    let select_ms = started.elapsed().as_millis() as u64;

    let started = Instant::now();
    let test_scores = booster.predict(&test.x, width, true)?;
    let predict_ms = started.elapsed().as_millis() as u64;
    Ok(Fitted {
        model_text,
        trees_trained,
        best_iteration: best,
        metric,
        valid_metric,
        train_metric,
        train_metric_rows: sample_y.len(),
        train_rows: train.y.len(),
        test_scores,
        feature_names: names.to_vec(),
        importance_gain: booster.feature_importance(ImportanceType::Gain)?,
        importance_split: booster.feature_importance(ImportanceType::Split)?,
        train_ms,
        select_ms,
        predict_ms,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::tests::{FEATURES, names};

    /// Splits with a known signal: the win probability is a logistic function of three
    /// features (hour-like, advertiser-like, device-like); the rest are noise.
    pub(crate) fn signal_split(name: &'static str, rows: usize, seed: u64) -> (Split, Vec<f64>) {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rows {
            let dow = 1.0 + (next() * 7.0).floor();
            let hour = (next() * 24.0).floor();
            let advertiser = (next() * 9.0).floor();
            let domain = (next() * 500.0).floor();
            let region = (next() * 35.0).floor();
            let city = (next() * 300.0).floor();
            let device = (next() * 7.0).floor();
            let logit = -3.0
                + 0.9 * (2.0 * std::f64::consts::PI * (hour - 21.0) / 24.0).cos()
                + 0.35 * advertiser
                - 0.5 * (device - 3.0).abs();
            let p = 1.0 / (1.0 + (-logit).exp());
            x.extend([dow, hour, advertiser, domain, region, city, device]);
            y.push(if next() < p { 1.0 } else { 0.0 });
            truth.push(p);
        }
        let split = Split {
            name,
            url: format!("memory://{name}"),
            files: 1,
            features: FEATURES,
            x,
            y,
            price: None,
        };
        (split, truth)
    }

    #[test]
    fn best_iteration_takes_the_earliest_best() {
        assert_eq!(best_iteration(&[0.5, 0.4, 0.4, 0.45], false), 2);
        assert_eq!(best_iteration(&[0.6, 0.7, 0.7, 0.65], true), 2);
        assert_eq!(best_iteration(&[0.3], false), 1);
    }

    #[test]
    fn a_known_signal_reaches_a_known_auc_band_reproducibly() {
        let (train, _) = signal_split("train", 40_000, 11);
        let (valid, _) = signal_split("valid", 5_000, 12);
        let (test, truth) = signal_split("test", 20_000, 13);
        let params = params::resolve(&[], 2).expect("defaults");
        let fitted = fit(&train, &valid, &test, &names(), &params).expect("fits");
        let oracle = Ranking::new(&truth, &test.y).roc_auc();
        let auc = Ranking::new(&fitted.test_scores, &test.y).roc_auc();
        // the oracle (true probabilities) bounds any model; the signal is strong enough that
        // the defaults come close to it
        assert!((0.70..0.85).contains(&oracle), "oracle {oracle}");
        assert!(
            auc <= oracle + 0.01 && auc > oracle - 0.02,
            "auc {auc}, oracle {oracle}"
        );
        assert!(fitted.best_iteration >= 1 && fitted.best_iteration <= fitted.trees_trained);
        assert_eq!(fitted.valid_metric.len(), fitted.trees_trained);
        assert_eq!(fitted.importance_gain.len(), FEATURES);
        // noise features (dow, domain, region, city) gain less than hour, advertiser, device
        let gain = &fitted.importance_gain;
        let weakest_signal = gain[1].min(gain[2]).min(gain[6]);
        assert!(
            gain[0] < weakest_signal && gain[3] < weakest_signal,
            "{gain:?}"
        );

        let again = fit(&train, &valid, &test, &names(), &params).expect("fits again");
        assert_eq!(again.model_text, fitted.model_text, "same seed, same model");
        assert_eq!(again.test_scores, fitted.test_scores);
    }

    #[test]
    fn without_early_stopping_every_tree_is_kept_and_a_cut_is_exact() {
        let (train, _) = signal_split("train", 4_000, 21);
        let (valid, _) = signal_split("valid", 2_000, 22);
        let (test, _) = signal_split("test", 1_000, 23);
        // unregularised trees at a high learning rate: LightGBM always finds a split, so the
        // run is not cut short for lack of gain
        let overrides = vec![
            "early_stopping_rounds=0".to_owned(),
            "num_iterations=30".to_owned(),
            "learning_rate=1.0".to_owned(),
            "min_gain_to_split=0".to_owned(),
            "min_sum_hessian_in_leaf=0.001".to_owned(),
            "lambda_l2=0".to_owned(),
        ];
        let params = params::resolve(&overrides, 1).expect("resolves");
        let fitted = fit(&train, &valid, &test, &names(), &params).expect("fits");
        assert_eq!((fitted.trees_trained, fitted.best_iteration), (30, 30));

        // such trees overfit a small train split, so the best iteration is early; patience as
        // long as the run never stops it, so the model is cut
        let overrides = vec![
            "early_stopping_rounds=30".to_owned(),
            "num_iterations=30".to_owned(),
            "learning_rate=1.0".to_owned(),
            "min_gain_to_split=0".to_owned(),
            "min_sum_hessian_in_leaf=0.001".to_owned(),
            "lambda_l2=0".to_owned(),
        ];
        let params = params::resolve(&overrides, 1).expect("resolves");
        let fitted = fit(&train, &valid, &test, &names(), &params).expect("fits");
        assert!(
            fitted.best_iteration < fitted.trees_trained,
            "{:?}",
            fitted.valid_metric
        );
        let model = Booster::from_string(&fitted.model_text).expect("loads");
        assert_eq!(model.num_iterations() as usize, fitted.best_iteration);
        let best = fitted.valid_metric[fitted.best_iteration - 1];
        assert!(fitted.valid_metric.iter().all(|v| *v >= best));
        // overfitting shows as the training curve improving on past the kept iteration
        assert_eq!(fitted.train_metric.len(), fitted.trees_trained);
        assert_eq!(fitted.train_metric_rows, 4_000);
        let train_at_best = fitted.train_metric[fitted.best_iteration - 1];
        assert!(
            fitted
                .train_metric
                .last()
                .is_some_and(|v| *v < train_at_best),
            "{:?}",
            fitted.train_metric
        );
    }

    #[test]
    fn the_training_curve_sample_is_every_kth_row() {
        let (split, _) = signal_split("train", 25, 5);
        let width = FEATURES;
        let (x, y) = every_kth_row(&split, width, 10);
        // k = ceil(25 / 10) = 3: rows 0, 3, ..., 24
        assert_eq!(y.len(), 9);
        assert_eq!(x.len(), 9 * width);
        assert_eq!(&x[width..2 * width], &split.x[3 * width..4 * width]);
        assert_eq!(y[8], split.y[24]);
        assert_eq!(every_kth_row(&split, width, 100).1, split.y);
    }
}
