//! LightGBM parameters: defaults equivalent to the original kit's SageMaker XGBoost settings,
//! and `key=value` overrides.
//!
//! | original XGBoost | LightGBM here | why |
//! |---|---|---|
//! | `objective=binary:logistic` | `objective=binary` | same loss |
//! | `max_depth=5` | `max_depth=5`, `num_leaves=32` | a full depth-5 tree has 32 leaves; LightGBM's default 31 would cap it |
//! | `eta=0.2` | `learning_rate=0.2` | |
//! | `num_round=50` | `num_iterations=50` | |
//! | early stopping 20 | `early_stopping_rounds=20` on the valid split | |
//! | `min_child_weight=6` | `min_sum_hessian_in_leaf=6` | both bound the hessian sum in a leaf |
//! | `subsample=0.8` | `bagging_fraction=0.8`, `bagging_freq=1` | LightGBM bags only when the frequency is set |
//! | `gamma=4` | `min_gain_to_split=4` | both compare the same gain (XGBoost's code drops the 1/2 of its docs' formula) |
//! | `lambda=1` (default) | `lambda_l2=1` | LightGBM's default is 0 |
//! | `tree_method=hist` | histogram bins (LightGBM's only method) | |
//!
//! XGBoost grows trees depth-wise and prunes splits below `gamma` afterwards; LightGBM grows
//! leaf-wise and refuses such splits up front. The categorical indices are fed as numbers, like
//! the original's XGBoost: `lightgbm3` builds its datasets without parameters, so LightGBM's
//! categorical handling (a dataset parameter) is not reachable through it.
//!
//! `lightgbm3` reads `num_iterations` and `early_stopping_rounds` itself, by those names only, so
//! their aliases (and those of the other defaults) are renamed before training: an alias passed
//! beside a default's canonical name would otherwise be silently ignored by LightGBM.

use serde_json::{Map, Number, Value};

use crate::{Result, TrainerError};

/// Early-stopping metrics this trainer can also compute itself, to find the best iteration.
pub const EARLY_STOPPING_METRICS: [&str; 4] =
    ["binary_logloss", "auc", "average_precision", "binary_error"];

/// Canonical names of LightGBM parameters and the aliases that mean the same.
const ALIASES: &[(&str, &[&str])] = &[
    (
        "num_iterations",
        &[
            "num_iteration",
            "n_iter",
            "num_tree",
            "num_trees",
            "num_round",
            "num_rounds",
            "nrounds",
            "num_boost_round",
            "n_estimators",
            "max_iter",
        ],
    ),
    (
        "early_stopping_rounds",
        &["early_stopping_round", "early_stopping", "n_iter_no_change"],
    ),
    ("learning_rate", &["shrinkage_rate", "eta"]),
    (
        "num_leaves",
        &["num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"],
    ),
    (
        "min_sum_hessian_in_leaf",
        &[
            "min_sum_hessian_per_leaf",
            "min_sum_hessian",
            "min_hessian",
            "min_child_weight",
        ],
    ),
    ("bagging_fraction", &["sub_row", "subsample", "bagging"]),
    ("bagging_freq", &["subsample_freq"]),
    ("min_gain_to_split", &["min_split_gain"]),
    ("lambda_l2", &["reg_lambda", "lambda"]),
    ("seed", &["random_seed", "random_state"]),
    (
        "num_threads",
        &["num_thread", "nthread", "nthreads", "n_jobs"],
    ),
    ("metric", &["metrics", "metric_types"]),
    (
        "objective",
        &["objective_type", "app", "application", "loss"],
    ),
    ("boosting", &["boosting_type", "boost"]),
    ("verbosity", &["verbose"]),
];

/// Dataset parameters: LightGBM fixes them when the dataset is built, and `lightgbm3` builds it
/// without parameters, so setting them on the booster would be ignored or refused.
const DATASET_PARAMS: &[&str] = &[
    "max_bin",
    "max_bin_by_feature",
    "min_data_in_bin",
    "bin_construct_sample_cnt",
    "data_random_seed",
    "categorical_feature",
    "cat_feature",
    "categorical_column",
    "cat_column",
    "categorical_features",
    "use_missing",
    "zero_as_missing",
    "feature_pre_filter",
    "linear_tree",
    "linear_trees",
    "forcedbins_filename",
    "enable_bundle",
    "is_enable_bundle",
    "bundle",
    "two_round",
];

/// The defaults, in LightGBM's names; `threads` defaults to the machine's cores.
pub fn defaults(threads: usize) -> Map<String, Value> {
    let value = serde_json::json!({
        "objective": "binary",
        "boosting": "gbdt",
        "metric": "binary_logloss",
        "num_iterations": 50,
        "early_stopping_rounds": 20,
        "learning_rate": 0.2,
        "max_depth": 5,
        "num_leaves": 32,
        "min_sum_hessian_in_leaf": 6.0,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "min_gain_to_split": 4.0,
        "lambda_l2": 1.0,
        "seed": 42,
        "deterministic": true,
        // with few features and many rows row-wise histograms are the faster layout; forcing
        // one layout also keeps results identical from run to run (LightGBM's advice for
        // deterministic=true)
        "force_row_wise": true,
        "num_threads": threads,
        "verbosity": -1,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn canonical(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(_, aliases)| aliases.contains(&key))
        .map_or(key, |(name, _)| name)
}

/// Parses one `key=value` override: integers and floats become numbers, `true`/`false`
/// booleans, anything else a string.
pub fn parse_override(text: &str) -> Result<(String, Value)> {
    let bad = |reason: &str| TrainerError::BadParam {
        param: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| bad("write it as key=value, e.g. --param learning_rate=0.1"))?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(
            "the name must be a lightgbm parameter name in lowercase, e.g. max_depth",
        ));
    }
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(bad(
            "the value must be non-empty and hold no spaces (lightgbm splits its parameters on spaces)",
        ));
    }
    let parsed = if let Ok(i) = value.parse::<i64>() {
        Value::Number(Number::from(i))
    } else if let Ok(f) = value.parse::<f64>() {
        Value::Number(Number::from_f64(f).ok_or_else(|| bad("the value must be finite"))?)
    } else if value == "true" || value == "false" {
        Value::Bool(value == "true")
    } else {
        Value::String(value.to_owned())
    };
    Ok((key.to_owned(), parsed))
}

/// `--param` values as clap hands them: a comma-separated environment variable or config list
/// is split on commas, so a piece without `=` continues the previous value
/// (`metric=auc,binary_logloss`).
pub fn join_split_overrides(pieces: &[String]) -> Vec<String> {
    let mut joined: Vec<String> = Vec::new();
    for piece in pieces {
        match joined.last_mut() {
            Some(last) if !piece.contains('=') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => joined.push(piece.clone()),
        }
    }
    joined
}

/// The known parameter name nearest `key` (at most 3 edits away), for a typo's message.
fn closest(key: &str) -> Option<&'static str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = (above + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != *cb));
                diagonal = above;
            }
        }
        row[b.len()]
    };
    crate::lightgbm_names::NAMES
        .iter()
        .map(|n| (distance(key, n), *n))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

/// The parameters a training uses: the defaults with `overrides` applied, checked.
pub fn resolve(overrides: &[String], threads: usize) -> Result<Map<String, Value>> {
    let mut params = defaults(threads);
    for text in join_split_overrides(overrides) {
        let (key, value) = parse_override(&text)?;
        if !crate::lightgbm_names::NAMES.contains(&key.as_str()) {
            let hint = closest(&key)
                .map(|n| format!("did you mean {n}? "))
                .unwrap_or_default();
            return Err(TrainerError::BadParam {
                param: text,
                reason: format!(
                    "{key} is not a lightgbm parameter; {hint}see https://lightgbm.readthedocs.io/en/latest/Parameters.html"
                ),
            });
        }
        let key = canonical(&key).to_owned();
        if DATASET_PARAMS.contains(&key.as_str()) {
            return Err(TrainerError::BadParam {
                param: text,
                reason: format!(
                    "{key} is a lightgbm dataset parameter, which lightgbm3 cannot pass; the \
                     trainer uses lightgbm's defaults for it"
                ),
            });
        }
        params.insert(key, value);
    }
    check(&mut params)?;
    Ok(params)
}

fn check(params: &mut Map<String, Value>) -> Result<()> {
    let bad = |param: &str, reason: &str| TrainerError::BadParam {
        param: param.to_owned(),
        reason: reason.to_owned(),
    };
    match params.get("objective").and_then(Value::as_str) {
        Some("binary") => {}
        _ => {
            return Err(bad(
                "objective",
                "the bid-filtering model is a binary classifier: objective must be binary",
            ));
        }
    }
    match params.get("num_iterations").and_then(Value::as_i64) {
        Some(n) if n >= 1 => {}
        _ => {
            return Err(bad(
                "num_iterations",
                "must be a whole number of at least 1",
            ));
        }
    }
    match params.get("early_stopping_rounds") {
        None => {}
        Some(v) => match v.as_i64() {
            // lightgbm3 stops at the first round without improvement when given 0
            Some(n) if n <= 0 => {
                params.remove("early_stopping_rounds");
            }
            Some(_) => {}
            None => {
                return Err(bad(
                    "early_stopping_rounds",
                    "must be a whole number (0 turns early stopping off)",
                ));
            }
        },
    }
    let metric = params
        .get("metric")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let metric = match metric.as_str() {
        "binary" => "binary_logloss",
        other => other,
    };
    if !EARLY_STOPPING_METRICS.contains(&metric) {
        return Err(bad(
            "metric",
            &format!(
                "early stopping watches one metric, one of {}",
                EARLY_STOPPING_METRICS.join(", ")
            ),
        ));
    }
    params.insert("metric".into(), Value::String(metric.to_owned()));
    Ok(())
}

/// The early-stopping metric of resolved parameters.
pub fn metric(params: &Map<String, Value>) -> &str {
    params
        .get("metric")
        .and_then(Value::as_str)
        .unwrap_or("binary_logloss")
}

/// Whether a larger value of `metric` is better.
pub fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "auc" | "average_precision")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_match_the_original_xgboost() {
        let p = resolve(&[], 2).expect("defaults resolve");
        assert_eq!(p["max_depth"], 5);
        assert_eq!(p["learning_rate"], 0.2);
        assert_eq!(p["num_iterations"], 50);
        assert_eq!(p["early_stopping_rounds"], 20);
        assert_eq!(p["min_sum_hessian_in_leaf"], 6.0);
        assert_eq!(p["bagging_fraction"], 0.8);
        assert_eq!(p["bagging_freq"], 1);
        assert_eq!(p["min_gain_to_split"], 4.0);
        assert_eq!(p["deterministic"], true);
        assert_eq!(p["num_threads"], 2);
    }

    #[test]
    fn a_mistyped_name_is_refused_with_the_nearest() {
        let err = resolve(&strings(&["learning_rat=0.1"]), 2)
            .expect_err("typo")
            .to_string();
        assert!(
            err.contains("learning_rat is not a lightgbm parameter; did you mean learning_rate?"),
            "{err}"
        );
        assert!(resolve(&strings(&["eta=0.1", "lambda_l1=1"]), 2).is_ok());
    }

    #[test]
    fn overrides_and_aliases() {
        let p = resolve(
            &strings(&[
                "eta=0.05",
                "num_round=7",
                "early_stopping=3",
                "metric=auc",
                "deterministic=false",
                "boosting=goss",
            ]),
            1,
        )
        .expect("resolves");
        assert_eq!(p["learning_rate"], 0.05);
        assert!(!p.contains_key("eta"));
        assert_eq!(p["num_iterations"], 7);
        assert_eq!(p["early_stopping_rounds"], 3);
        assert_eq!(p["metric"], "auc");
        assert_eq!(p["deterministic"], false);
        assert_eq!(p["boosting"], "goss");
        let p = resolve(&strings(&["early_stopping_rounds=0"]), 1).expect("resolves");
        assert!(!p.contains_key("early_stopping_rounds"));
    }

    #[test]
    fn bad_overrides_are_named() {
        for (text, needle) in [
            ("max_depth", "key=value"),
            ("Max_Depth=3", "lowercase"),
            ("max_depth=", "non-empty"),
            ("objective=regression", "binary classifier"),
            ("num_iterations=0", "at least 1"),
            ("metric=ndcg", "one of binary_logloss"),
            ("max_bin=63", "dataset parameter"),
            ("categorical_feature=2", "dataset parameter"),
        ] {
            let err = resolve(&strings(&[text]), 1).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn comma_split_values_are_joined_back() {
        assert_eq!(
            join_split_overrides(&strings(&["a=1", "metric=auc", "binary_logloss", "b=2"])),
            strings(&["a=1", "metric=auc,binary_logloss", "b=2"])
        );
        let (k, v) = parse_override("boosting=dart").expect("parses");
        assert_eq!((k.as_str(), v), ("boosting", Value::String("dart".into())));
    }
}
