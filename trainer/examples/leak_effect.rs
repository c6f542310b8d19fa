//! Measures the original kit's target leak: trains the same LightGBM model on the features of
//! two ETL runs over the same logs (the fixed job and `bid-filtering-leaky.sql`) and prints the
//! test AUC of each. Usage: `leak_effect <fixed run folder> <leaky run folder>`.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// The kit job's features (both jobs compute the same ones).
fn feature_names() -> Vec<String> {
    rtb_features::contract::bid_filtering("").feature_names()
}

async fn load(ctx: &SessionContext, dir: &str) -> (Vec<f64>, Vec<f32>) {
    let df = ctx
        .read_parquet(dir, ParquetReadOptions::default())
        .await
        .expect("split folder");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for batch in df.collect().await.expect("reads") {
        let label = cast(
            batch.column_by_name("label").expect("label"),
            &DataType::Float64,
        )
        .expect("cast");
        let columns: Vec<_> = feature_names()
            .iter()
            .map(|n| {
                cast(
                    batch.column_by_name(n).expect("feature column"),
                    &DataType::Float64,
                )
                .expect("cast")
            })
            .collect();
        for row in 0..batch.num_rows() {
            y.push(label.as_primitive::<Float64Type>().value(row) as f32);
            for c in &columns {
                x.push(c.as_primitive::<Float64Type>().value(row));
            }
        }
    }
    (x, y)
}

/// ROC AUC by the rank-sum formula, ties counted half.
fn auc(scores: &[f64], labels: &[f32]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(s, l)| (*s, *l > 0.5))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let mid_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mid_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[tokio::main]
async fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        dirs.len() == 2,
        "usage: leak_effect <fixed run folder> <leaky run folder>"
    );
    // the original's XGBoost settings, in LightGBM's words
    let params = serde_json::json!({
        "objective": "binary", "num_iterations": 50, "learning_rate": 0.2, "max_depth": 5,
        "num_leaves": 31, "min_sum_hessian_in_leaf": 6.0, "bagging_fraction": 0.8, "bagging_freq": 1,
        "min_gain_to_split": 4.0, "seed": 42, "deterministic": true, "verbosity": -1
    });
    let ctx = SessionContext::new();
    for (name, dir) in ["fixed", "leaky"].iter().zip(&dirs) {
        let (train_x, train_y) =
            load(&ctx, &format!("{dir}/processed/features/split=train/")).await;
        let (test_x, test_y) = load(&ctx, &format!("{dir}/processed/features/split=test/")).await;
        let booster =
            rtb_trainer::train_binary((&train_x, &train_y), None, feature_names().len(), &params)
                .expect("trains");
        let scores = booster
            .predict(&test_x, feature_names().len() as i32, true)
            .expect("predicts");
        println!(
            "{name:<6} train rows {:>9}, test rows {:>8}, test AUC {:.4}",
            train_y.len(),
            test_y.len(),
            auc(&scores, &test_y)
        );
    }
}
