//! Training/serving parity for every shipped job and a job written only here: on a generated
//! day with malformed lines, the real ETL runs the job, the real trainer trains and publishes
//! its model, and the scorer (started from the parameter store alone) computes, for every
//! inference request the ETL wrote, exactly the feature row the ETL wrote for training under
//! that request's key, and a likelihood equal to LightGBM's batch prediction for that row.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use lightgbm3::Booster;
use rtb_etl::generate::GenerateArgs;
use rtb_etl::run::{RunArgs, run};
use rtb_params::ParameterStore;
use rtb_trainer::train::{TrainArgs, run as train};

use crate::support::{one_day, repo_root};

/// A job the tests did not ship and no other test reads: derived numbers, a `CASE`, string
/// functions, a boolean, a float request field, a request field that is not a feature, and
/// its own key name.
const TEST_JOB: &str = r#"-- job: parity-only
-- categorical: Domain, AdSlotFormat
-- key: id
-- label: won
-- step: bids_grouped
SELECT BidID, "Timestamp", Domain, UserAgent, AdSlotWidth, AdSlotHeight, AdSlotFormat,
       AdSlotFloorPrice, BiddingPrice
FROM bids
GROUP BY BidID, "Timestamp", Domain, UserAgent, AdSlotWidth, AdSlotHeight, AdSlotFormat,
         AdSlotFloorPrice, BiddingPrice;
-- step: imps_grouped
SELECT DISTINCT BidID FROM imps;
-- step: transformed
SELECT b.BidID, b."Timestamp", b.Domain, b.UserAgent, b.AdSlotFormat,
       TRY_CAST(b.AdSlotWidth AS INT) AS w, TRY_CAST(b.AdSlotHeight AS INT) AS h,
       TRY_CAST(b.AdSlotFloorPrice AS DOUBLE) / 100.0 AS floor_yuan,
       TRY_CAST(b.BiddingPrice AS BIGINT) AS bid,
       CASE WHEN i.BidID IS NULL THEN 0 ELSE 1 END AS won
FROM bids_grouped b LEFT JOIN imps_grouped i ON b.BidID = i.BidID;
-- step: inference_requests
SELECT BidID AS id, "Timestamp" AS ts, Domain AS site, UserAgent AS ua, AdSlotFormat AS fmt,
       w, h, floor_yuan, bid, won
FROM transformed;
-- step: features
SELECT CAST(substr(ts, 9, 2) AS INT) AS hour,
       w * h AS area,
       CASE WHEN w >= 728 THEN 2 WHEN w >= 300 THEN 1 ELSE 0 END AS width_class,
       floor_yuan * 2.5 AS floor_scaled,
       COALESCE(floor_yuan, -1.0) AS floor_or_minus_one,
       floor_yuan > 0.5 AS pricey,
       length(ua) AS ua_length,
       encode('Domain', site) AS site_index,
       encode('AdSlotFormat', fmt) AS format_index,
       device_type(ua) AS device
FROM inference_requests;
"#;

fn local(url: &str) -> std::path::PathBuf {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .unwrap_or_else(|| url.into())
}

/// `(key, features)` of every row of a split folder, features in `names` order.
async fn encoded_rows(url: &str, key: &str, names: &[String]) -> Vec<(String, Vec<f64>)> {
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
        let ids = datafusion::arrow::compute::cast(&column(key), &DataType::Utf8).expect("cast");
        let ids = ids.as_string::<i32>();
        let features: Vec<_> = names
            .iter()
            .map(|name| {
                datafusion::arrow::compute::cast(&column(name), &DataType::Float64).expect("cast")
            })
            .collect();
        for row in 0..batch.num_rows() {
            let values = features
                .iter()
                .map(|array| {
                    let array = array.as_primitive::<Float64Type>();
                    if array.is_valid(row) {
                        array.value(row)
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            out.push((ids.value(row).to_owned(), values));
        }
    }
    out
}

/// Equal values, NaN (a missing value) equal to NaN.
fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

async fn generate(raw: &Path) {
    rtb_etl::generate::run(&GenerateArgs {
        malformed_fraction: 0.002,
        domains: 800,
        ..one_day(&raw.to_string_lossy(), 12_000, 11)
    })
    .await
    .expect("generates");
}

/// Runs `job` through the ETL, the trainer and the scorer's loader, and checks every request.
async fn parity(dir: &Path, raw: &Path, name: &str, job: Option<String>) {
    let out = dir.join(name);
    let params = out.join("params.json").to_string_lossy().into_owned();
    let manifest = run(&RunArgs {
        job,
        parameter_store: params.clone(),
        ..crate::support::run_args(
            &raw.to_string_lossy(),
            &out.join("features").to_string_lossy(),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{name}: etl runs: {e:#}"))
    .manifest;
    assert!(
        manifest.rows["bids_rejected"] > 0,
        "{name}: the day has malformed lines"
    );

    let mut args = TrainArgs::for_run("", &out.to_string_lossy(), &params);
    args.run = None; // the run is found through the parameter store, as a user would
    args.params = vec!["num_iterations=30".into()];
    args.threads = Some(2);
    let trained = train(&args)
        .await
        .unwrap_or_else(|e| panic!("{name}: trainer trains: {e}"));
    let contract = &trained.manifest.contract;
    let names = contract.feature_names();

    let mut rows = Vec::new();
    for split in ["train", "valid", "test"] {
        rows.extend(encoded_rows(&manifest.outputs[split], &contract.key, &names).await);
    }
    assert_eq!(rows.len() as u64, manifest.rows["features"], "{name}");
    let booster =
        Booster::from_file(local(&trained.manifest.model).to_str().expect("utf8")).expect("model");
    let all_x: Vec<f64> = rows.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let batch = booster
        .predict(&all_x, names.len() as i32, true)
        .expect("batch prediction");

    let store = ParameterStore::open(&params).await.expect("store");
    let model = rtb_scorer::artifacts::load_current(&store, None)
        .await
        .unwrap_or_else(|e| panic!("{name}: scorer loads the published model: {e}"));

    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (id, _)) in rows.iter().enumerate() {
        by_id.entry(id.as_str()).or_default().push(i);
    }
    let inference = local(&manifest.outputs["inference_data"]);
    let (mut requests, mut worst) = (0usize, 0.0f64);
    for entry in std::fs::read_dir(&inference).expect("inference folder") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("json lines");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut decoded = model.rows(1);
            rtb_scorer::decode::score_request(line.as_bytes(), &mut decoded).unwrap_or_else(|e| {
                panic!("{name}: scorer refuses an etl request ({e:?}): {line}")
            });
            let key = decoded.keys()[0].clone();
            let scored = model.score(&decoded).expect("scores");
            let candidates = by_id
                .get_mut(key.as_str())
                .unwrap_or_else(|| panic!("{name}: no encoded row for {key}"));
            let position = candidates
                .iter()
                .position(|&i| same(&rows[i].1, &scored.features))
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: skew: scorer computes {line} as {:?}, the etl as {:?}",
                        scored.features,
                        candidates.iter().map(|&i| &rows[i].1).collect::<Vec<_>>()
                    )
                });
            let row = candidates.swap_remove(position);
            let difference = (scored.likelihoods[0] - batch[row]).abs();
            worst = worst.max(difference);
            assert!(
                difference <= 1e-9,
                "{name} {key}: scorer {}, lightgbm batch {}",
                scored.likelihoods[0],
                batch[row]
            );
            requests += 1;
        }
    }
    assert_eq!(
        requests,
        rows.len(),
        "{name}: one inference request per row"
    );
    assert!(by_id.values().all(Vec::is_empty));
    println!(
        "{name}: parity on {requests} requests, {} features; largest difference {worst:e}",
        names.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_is_served_as_it_was_trained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw");
    generate(&raw).await;
    let test_job = dir.path().join("parity-only.sql");
    std::fs::write(&test_job, TEST_JOB).expect("job file");
    let shipped = |path: &str| Some(repo_root().join(path).to_string_lossy().into_owned());
    for (name, job) in [
        ("kit", None),
        ("leaky", shipped("etl/jobs/bid-filtering-leaky.sql")),
        ("plus", shipped("etl/jobs/bid-filtering-plus.sql")),
        (
            "docs-example",
            shipped("etl/jobs/examples/bid-filtering-exchange.sql"),
        ),
        ("test-only", Some(test_job.to_string_lossy().into_owned())),
    ] {
        parity(dir.path(), &raw, name, job).await;
    }
}
