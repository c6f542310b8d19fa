//! The native evaluator against LightGBM itself: models trained on rows shaped like the
//! bid-filtering features (small integers, category indices), then scored on rows LightGBM's
//! missing-value rules care about: NaN, exact zeros, values within its zero threshold, negative
//! values and category indices far beyond any seen in training.

use lightgbm3::{Booster, Dataset};
use proptest::prelude::*;
use rtb_model::Ensemble;

const FEATURES: usize = 7;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u32) -> f64 {
        (self.next() * f64::from(n)).floor()
    }
}

/// dow, hour, advertiser, domain, region, city, device type; `nan_share` of the category
/// values become NaN (so trees learn a NaN rule), and a share are exact zeros.
fn rows(n: usize, seed: u64, nan_share: f64) -> (Vec<f64>, Vec<f32>) {
    let mut rng = Lcg(seed);
    let (mut x, mut y) = (Vec::with_capacity(n * FEATURES), Vec::with_capacity(n));
    for _ in 0..n {
        let mut row = [
            1.0 + rng.below(7),
            rng.below(24),
            rng.below(9),
            rng.below(300),
            rng.below(35),
            rng.below(370),
            rng.below(7),
        ];
        for value in &mut row[2..6] {
            let u = rng.next();
            if u < nan_share {
                *value = f64::NAN;
            } else if u < nan_share + 0.05 {
                *value = 0.0;
            }
        }
        let logit = -2.0 + 0.15 * row[1] / 4.0 - 0.3 * (row[2].is_nan() as u8 as f64)
            + if row[3] < 20.0 { 1.5 } else { -0.5 }
            + 0.2 * row[6]
            - 0.01 * row[5].min(100.0);
        let p = 1.0 / (1.0 + (-logit).exp());
        x.extend(row);
        y.push(if rng.next() < p { 1.0 } else { 0.0 });
    }
    (x, y)
}

fn train(nan_share: f64, extra: serde_json::Value) -> Booster {
    let (x, y) = rows(6000, 11, nan_share);
    let mut params = serde_json::json!({
        "objective": "binary", "num_iterations": 60, "num_threads": 1, "verbosity": -1,
        "deterministic": true, "learning_rate": 0.2, "num_leaves": 31, "min_data_in_leaf": 5
    });
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    let mut dataset = Dataset::from_slice(&x, &y, FEATURES as i32, true).expect("dataset");
    let names: Vec<String> = (0..FEATURES).map(|i| format!("f{i}")).collect();
    dataset.set_feature_names(&names).expect("names");
    Booster::train(dataset, &params).expect("trains")
}

/// Rows a scorer can meet but a training set need not hold.
fn probe_rows() -> Vec<f64> {
    let (mut x, _) = rows(3000, 99, 0.1);
    let specials = [
        f64::NAN,
        0.0,
        -0.0,
        1e-36,
        -1e-36,
        1e-30,
        -1.0,
        1e6,
        4_294_967_295.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut rng = Lcg(5);
    for _ in 0..3000 {
        let mut row: Vec<f64> = (0..FEATURES).map(|_| rng.below(400)).collect();
        for value in &mut row {
            if rng.next() < 0.4 {
                *value = specials[rng.below(specials.len() as u32) as usize];
            }
        }
        x.extend(row);
    }
    x
}

fn assert_parity(booster: &Booster, what: &str) {
    let text = booster.save_string().expect("saves");
    let ensemble = Ensemble::parse(&text).expect("parses");
    let x = probe_rows();
    let theirs = booster
        .predict(&x, FEATURES as i32, true)
        .expect("lightgbm predicts");
    let ours: Vec<f64> = x
        .chunks_exact(FEATURES)
        .map(|r| ensemble.predict(r))
        .collect();
    assert_eq!(theirs.len(), ours.len());
    for (i, (a, b)) in theirs.iter().zip(&ours).enumerate() {
        assert!(
            (a - b).abs() <= 1e-9,
            "{what}: row {i} {:?}: lightgbm {a}, native {b}",
            &x[i * FEATURES..(i + 1) * FEATURES]
        );
    }
}

#[test]
fn equals_lightgbm_without_missing_values_in_training() {
    assert_parity(&train(0.0, serde_json::json!({})), "no missing");
}

#[test]
fn equals_lightgbm_with_nan_rules() {
    assert_parity(&train(0.1, serde_json::json!({})), "nan missing");
}

#[test]
fn equals_lightgbm_with_zero_as_missing() {
    assert_parity(
        &train(0.0, serde_json::json!({ "zero_as_missing": true })),
        "zero as missing",
    );
}

#[test]
fn equals_lightgbm_with_a_sigmoid_and_bagging() {
    assert_parity(
        &train(
            0.05,
            serde_json::json!({ "sigmoid": 0.7, "bagging_fraction": 0.7, "bagging_freq": 1 }),
        ),
        "sigmoid",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any row, of any length, gives a probability and never a panic.
    #[test]
    fn any_row_gives_a_probability(row in prop::collection::vec(prop::num::f64::ANY, 0..10)) {
        static MODEL: std::sync::OnceLock<Ensemble> = std::sync::OnceLock::new();
        let ensemble = MODEL.get_or_init(|| {
            let text = train(0.1, serde_json::json!({})).save_string().expect("saves");
            Ensemble::parse(&text).expect("parses")
        });
        let p = ensemble.predict(&row);
        prop_assert!((0.0..=1.0).contains(&p), "{p}");
    }
}
