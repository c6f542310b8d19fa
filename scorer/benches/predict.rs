//! Prediction cost per row, without HTTP: the native evaluator alone, then a decoded request
//! through the compiled feature contract (DataFusion expressions: vocabulary lookups, woothee)
//! and the evaluator, then JSON decoding too, one request per call and in batches of 100.
//! Run with `cargo bench -p rtb-scorer --bench predict` (release profile).
//!
//! `RTB_BENCH_PARAMETER_STORE=<store>` measures a published model instead (any job: its
//! contract, vocabulary and trees, as the scorer loads them), on the first 20,000 requests of
//! its run's inference data (`/aik/inference_data`).
//!
//! The model is synthetic but shaped like the trainer's: full depth-5 trees (32 leaves) over
//! the 7 features, 50 trees (the trainer's `num_round`) and 500 (headroom).

use std::hint::black_box;
use std::time::Instant;

use rtb_features::{FeatureVocabulary, StringIndexer};
use rtb_model::{Ensemble, ModelManifest, sha256_hex};
use rtb_scorer::LoadedModel;
use rtb_scorer::decode::RequestRows;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// LightGBM text of `trees` full binary trees of depth 5.
fn synthetic_model(trees: usize) -> String {
    let mut rng = Lcg(42);
    let ranges = [7.0, 24.0, 10.0, 20_000.0, 36.0, 370.0, 7.0];
    let mut text = format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
         max_feature_idx=6\nobjective=binary sigmoid:1\nfeature_names={}\n",
        rtb_features::contract::bid_filtering("v")
            .feature_names()
            .join(" ")
    );
    let inner = 31;
    let mut blocks = Vec::with_capacity(trees);
    for t in 0..trees {
        let (mut features, mut thresholds, mut decisions, mut lefts, mut rights) =
            (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..inner {
            let f = (rng.next() * 7.0) as usize % 7;
            features.push(f.to_string());
            thresholds.push(format!("{:.1}", (rng.next() * ranges[f]).floor() + 0.5));
            // default left, missing type NaN on a third of the nodes
            decisions.push(if i % 3 == 0 { "10" } else { "2" }.to_owned());
            let child = |c: usize| -> i64 {
                if c < inner {
                    c as i64
                } else {
                    -((c - inner) as i64) - 1
                }
            };
            lefts.push(child(2 * i + 1).to_string());
            rights.push(child(2 * i + 2).to_string());
        }
        let leaves: Vec<String> = (0..32)
            .map(|_| format!("{:.6}", rng.next() * 0.2 - 0.1))
            .collect();
        blocks.push(format!(
            "Tree={t}\nnum_leaves=32\nnum_cat=0\nsplit_feature={}\nthreshold={}\n\
             decision_type={}\nleft_child={}\nright_child={}\nleaf_value={}\nshrinkage=0.2\n\n",
            features.join(" "),
            thresholds.join(" "),
            decisions.join(" "),
            lefts.join(" "),
            rights.join(" "),
            leaves.join(" ")
        ));
    }
    let sizes: Vec<String> = blocks.iter().map(|b| b.len().to_string()).collect();
    text.push_str(&format!("tree_sizes={}\n\n", sizes.join(" ")));
    text.push_str(&blocks.concat());
    text.push_str("end of trees\n");
    text
}

fn vocabulary() -> FeatureVocabulary {
    let labels = |n: usize, prefix: &str| -> Vec<(String, u64)> {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), (n - i) as u64))
            .collect()
    };
    let sizes = [
        ("AdvertiserID", 9),
        ("Domain", 20_000),
        ("RegionID", 35),
        ("CityID", 370),
    ];
    FeatureVocabulary::new(
        sizes
            .iter()
            .map(|(c, n)| {
                (
                    (*c).to_owned(),
                    StringIndexer::fit_from_counts(labels(*n, "v")),
                )
            })
            .collect(),
    )
}

fn requests(n: usize) -> Vec<serde_json::Value> {
    let agents = [
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/28.0.1500.95 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B143 Safari/8536.25",
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)",
    ];
    let mut rng = Lcg(7);
    (0..n)
        .map(|i| {
            serde_json::json!({
                "bidId": format!("bid{i}"),
                "dayOfWeek": 1 + (rng.next() * 7.0) as u8 % 7,
                "hour": (rng.next() * 24.0) as u8 % 24,
                "regionId": format!("v{}", (rng.next() * 40.0) as u32),
                "cityId": format!("v{}", (rng.next() * 400.0) as u32),
                "domainId": format!("v{}", (rng.next() * 25_000.0) as u32),
                "advertiserId": format!("v{}", (rng.next() * 10.0) as u32),
                "userAgent": agents[i % agents.len()],
                "biddingPrice": 300,
            })
        })
        .collect()
}

/// Nanoseconds per call of `f` over `rows`, best of five rounds (the least disturbed by the
/// other processes on a shared machine).
fn time_per_row<T>(rows: &[T], mut f: impl FnMut(&T) -> f64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut sum = 0.0;
        for row in rows {
            sum += f(row);
        }
        black_box(sum);
        best = best.min(started.elapsed().as_nanos() as f64 / rows.len() as f64);
    }
    best
}

/// The published model a parameter store names, and its run's first requests.
fn published(store: &str) -> (LoadedModel, Vec<Vec<u8>>) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let store = rtb_params::ParameterStore::open(store)
            .await
            .unwrap_or_else(|e| panic!("parameter store: {e}"));
        let model = rtb_scorer::artifacts::load_current(&store, None)
            .await
            .unwrap_or_else(|e| panic!("model: {e}"));
        let data = store
            .get(rtb_params::names::INFERENCE_DATA)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the store names no inference data"));
        let folder = url::Url::parse(&data)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| data.clone().into());
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut bodies = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            bodies.extend(text.lines().map(|l| l.as_bytes().to_vec()));
            if bodies.len() >= 20_000 {
                break;
            }
        }
        bodies.truncate(20_000);
        (model, bodies)
    })
}

/// Decoding, feature computation and prediction of `model` over `bodies`, one call at a time
/// and in batches of 100.
fn measure(label: &str, model: &LoadedModel, bodies: &[Vec<u8>]) {
    fn decode<'m, 'b>(model: &'m LoadedModel, body: &'b [u8]) -> Option<RequestRows<'m, 'b>> {
        let mut rows = model.rows(1);
        rtb_scorer::decode::score_request(body, &mut rows).ok()?;
        Some(rows)
    }
    let decoded: Vec<_> = bodies.iter().filter_map(|b| decode(model, b)).collect();
    let width = model.features.len();
    let features: Vec<f64> = decoded
        .iter()
        .flat_map(|r| model.features(r).unwrap_or_default())
        .collect();
    let rows: Vec<&[f64]> = features.chunks(width).collect();
    let predict = time_per_row(&rows, |row| model.ensemble.predict(row));
    let encode_predict = time_per_row(&decoded, |r| {
        model.score(r).map_or(0.0, |s| s.likelihoods[0])
    });
    let decode_encode_predict = time_per_row(bodies, |b| {
        decode(model, b)
            .and_then(|rows| model.score(&rows).ok())
            .map_or(0.0, |s| s.likelihoods[0])
    });
    let batch_bodies: Vec<Vec<u8>> = bodies
        .chunks(100)
        .map(|chunk| {
            let mut body = b"{\"requests\":[".to_vec();
            for (i, b) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b);
            }
            body.extend_from_slice(b"]}");
            body
        })
        .collect();
    let batch = time_per_row(&batch_bodies, |b| {
        let mut rows = model.rows(100);
        rtb_scorer::decode::batch_request(b, 100, &mut rows)
            .ok()
            .and_then(|()| model.score(&rows).ok())
            .map_or(0.0, |s| s.likelihoods.iter().sum())
    }) / 100.0;
    println!(
        "{label}: {} features, {} trees, {} requests  predict: {predict:.0} ns/row  encode+predict: {encode_predict:.0} ns/row  decode+encode+predict: {decode_encode_predict:.0} ns/row  batch of 100: {batch:.0} ns/row",
        width,
        model.ensemble.iterations(),
        bodies.len(),
    );
}

fn main() {
    if let Ok(store) = std::env::var("RTB_BENCH_PARAMETER_STORE") {
        let (model, bodies) = published(&store);
        measure(
            &format!("job {}", model.manifest.contract.job),
            &model,
            &bodies,
        );
        return;
    }
    let vocabulary = vocabulary();
    let requests = requests(20_000);
    let bodies: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap_or_default())
        .collect();
    println!("rows: {} (best of 5 rounds)", requests.len());
    for trees in [50, 500] {
        let text = synthetic_model(trees);
        if let Err(err) = Ensemble::parse(&text) {
            eprintln!("synthetic model does not parse: {err}");
            std::process::exit(1);
        }
        let contract = rtb_features::contract::bid_filtering(&vocabulary.version);
        let manifest = ModelManifest {
            model_id: format!("bench-{trees}"),
            format: "lightgbm-text".into(),
            model: "memory://model.txt".into(),
            model_sha256: sha256_hex(text.as_bytes()),
            features: contract.feature_names(),
            vocabulary_version: vocabulary.version.clone(),
            vocabulary: "memory://vocabulary.json".into(),
            contract,
            best_iteration: None,
            created_at: None,
            extra: Default::default(),
        };
        let vocabulary_json = vocabulary.to_json().unwrap_or_default();
        let model = match LoadedModel::from_parts(
            "memory://manifest.json",
            manifest,
            text.as_bytes(),
            vocabulary_json.as_bytes(),
            None,
        ) {
            Ok(m) => m,
            Err(err) => {
                eprintln!("synthetic model refused: {err}");
                std::process::exit(1);
            }
        };
        measure(&format!("synthetic trees={trees}"), &model, &bodies);
    }
}
