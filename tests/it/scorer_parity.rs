//! Training/serving parity on a generated day: every inference request the ETL wrote, decoded
//! and encoded by the scorer, gives exactly the feature row the ETL wrote for training, and the
//! scorer's likelihood equals LightGBM's batch prediction for that row (the trainer's path).
//!
//! The ETL job is the built-in one with `BidID` added to its feature rows, so each encoded row
//! can be matched with its request; nothing else in the job changes.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rtb_etl::generate::{CompressionArg, GenerateArgs, ImpLayoutArg};
use rtb_etl::run::{RunArgs, run};
use rtb_features::FEATURE_NAMES;
use rtb_params::{ParameterStore, names};

use crate::scorer_support::{publish_files, train};

const FEATURES: usize = FEATURE_NAMES.len();

fn local(url: &str) -> std::path::PathBuf {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .unwrap_or_else(|| url.into())
}

/// `(BidID, label, features)` of every row of a split folder.
async fn encoded_rows(url: &str) -> Vec<(String, f32, [f64; FEATURES])> {
    let ctx = SessionContext::new();
    let df = ctx
        .read_parquet(url, ParquetReadOptions::default())
        .await
        .expect("split reads");
    let mut out = Vec::new();
    for batch in df.collect().await.expect("collects") {
        let column = |name: &str| {
            let index = batch.schema().index_of(name).expect("column");
            batch.column(index).clone()
        };
        let ids =
            datafusion::arrow::compute::cast(&column("BidID"), &DataType::Utf8).expect("cast");
        let ids = ids.as_string::<i32>();
        let labels =
            datafusion::arrow::compute::cast(&column("label"), &DataType::Float64).expect("cast");
        let labels = labels.as_primitive::<Float64Type>();
        let features: Vec<_> = FEATURE_NAMES
            .iter()
            .map(|name| {
                datafusion::arrow::compute::cast(&column(name), &DataType::Float64).expect("cast")
            })
            .collect();
        for row in 0..batch.num_rows() {
            let mut values = [0.0; FEATURES];
            for (value, array) in values.iter_mut().zip(&features) {
                let array = array.as_primitive::<Float64Type>();
                assert!(array.is_valid(row), "the etl left a null feature");
                *value = array.value(row);
            }
            out.push((ids.value(row).to_owned(), labels.value(row) as f32, values));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scorer_encodes_and_scores_every_request_as_in_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw").to_string_lossy().into_owned();
    rtb_etl::generate::run(&GenerateArgs {
        out: raw.clone(),
        start_date: "2013-03-11".parse().expect("date"),
        days: 1,
        bids_per_day: 20_000,
        seed: 11,
        imp_layout: ImpLayoutArg::Season23,
        compression: CompressionArg::None,
        malformed_fraction: 0.001,
        duplicate_bid_fraction: 0.005,
        duplicate_imp_fraction: 0.01,
        domains: 2_000,
        threads: Some(2),
    })
    .await
    .expect("generates");
    let job = rtb_etl::job::BID_FILTERING.replacen(
        "SELECT CAST(t.label AS INT) AS label,",
        "SELECT t.BidID AS \"BidID\", CAST(t.label AS INT) AS label,",
        1,
    );
    assert_ne!(
        job,
        rtb_etl::job::BID_FILTERING,
        "the features step changed its text"
    );
    let job_path = dir.path().join("bid-filtering-with-ids.sql");
    std::fs::write(&job_path, job).expect("job file");
    let out = dir.path().join("features").to_string_lossy().into_owned();
    let params = dir
        .path()
        .join("params.json")
        .to_string_lossy()
        .into_owned();
    let manifest = run(&RunArgs {
        job: Some(job_path.to_string_lossy().into_owned()),
        input: raw,
        bids: "bid.*".into(),
        imps: "imp.*".into(),
        out: out.clone(),
        params: Vec::new(),
        memory_limit: "256MiB".into(),
        spill_dir: None,
        shuffle_buffer: None,
        partitions: Some(2),
        parameter_store: params.clone(),
        cluster: None,
    })
    .await
    .expect("etl runs")
    .manifest;

    let mut rows = Vec::new();
    for split in ["train", "valid", "test"] {
        rows.extend(encoded_rows(&manifest.outputs[split]).await);
    }
    assert_eq!(rows.len() as u64, manifest.rows["features"]);
    let train_rows = encoded_rows(&manifest.outputs["train"]).await;
    let x: Vec<f64> = train_rows.iter().flat_map(|(_, _, f)| *f).collect();
    let y: Vec<f32> = train_rows.iter().map(|(_, l, _)| *l).collect();
    let booster = train(&x, &y, 50);
    let all_x: Vec<f64> = rows.iter().flat_map(|(_, _, f)| *f).collect();
    let batch = booster
        .predict(&all_x, FEATURES as i32, true)
        .expect("batch prediction");

    // publish as the trainer does and load through the scorer's own start-up path
    let model_text = booster.save_string().expect("model text");
    let models = dir.path().join("models-out");
    let base = format!("file://{}", models.display());
    let vocabulary_url = &manifest.outputs["vocabulary"];
    let manifest_url = publish_files(
        &models,
        &base,
        "parity",
        &model_text,
        vocabulary_url,
        &manifest.vocabulary.version,
    );
    let store = ParameterStore::open(&params).await.expect("store");
    store
        .put(names::MODEL_MANIFEST, &manifest_url)
        .await
        .expect("pointer");
    let model = rtb_scorer::artifacts::load_current(&store)
        .await
        .expect("scorer loads the published model");

    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (id, _, _)) in rows.iter().enumerate() {
        by_id.entry(id.as_str()).or_default().push(i);
    }
    let inference = local(&manifest.outputs["inference_data"]);
    let mut requests = 0usize;
    let mut worst = 0.0f64;
    for entry in std::fs::read_dir(&inference).expect("inference folder") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("json lines");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let request = rtb_scorer::decode::score_request(line.as_bytes())
                .unwrap_or_else(|e| panic!("scorer refuses an etl request ({e:?}): {line}"));
            let features = model.features(&request);
            let candidates = by_id
                .get_mut(request.bid_id.as_str())
                .unwrap_or_else(|| panic!("no encoded row for {}", request.bid_id));
            let position = candidates
                .iter()
                .position(|&i| rows[i].2 == features)
                .unwrap_or_else(|| {
                    panic!(
                        "skew: scorer encodes {line} as {features:?}, the etl as {:?}",
                        candidates.iter().map(|&i| rows[i].2).collect::<Vec<_>>()
                    )
                });
            let row = candidates.swap_remove(position);
            let likelihood = model.likelihood(&request);
            let difference = (likelihood - batch[row]).abs();
            worst = worst.max(difference);
            assert!(
                difference <= 1e-9,
                "{}: scorer {likelihood}, lightgbm batch {}",
                request.bid_id,
                batch[row]
            );
            requests += 1;
        }
    }
    assert_eq!(
        requests,
        rows.len(),
        "one inference request per encoded row"
    );
    assert!(by_id.values().all(Vec::is_empty));
    println!("parity on {requests} requests; largest difference {worst:e}");
}
