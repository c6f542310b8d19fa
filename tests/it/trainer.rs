//! The trainer end to end on a generated day: the real ETL commits a run and publishes its
//! locations, the trainer finds it through the parameter store and by location, publishes a
//! model, its manifest and the pointers; a failing input publishes nothing.

use std::path::{Path, PathBuf};

use rtb_etl::generate::GenerateArgs;
use rtb_etl::run::RunArgs;
use rtb_params::{ParameterStore, names};
use rtb_trainer::previous::Previous;
use rtb_trainer::train::{TrainArgs, run as train};

fn path_of(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").expect("a local file url"))
}

fn json(url: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path_of(url)).expect("readable json file");
    serde_json::from_str(&text).expect("json")
}

fn model_folders(out: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out.join("models")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Generates one day and runs the shipped feature job on it; returns the ETL manifest.
async fn committed_run(dir: &Path, store: &str) -> rtb_etl::run::Manifest {
    let raw = dir.join("raw").to_string_lossy().into_owned();
    rtb_etl::generate::run(&GenerateArgs {
        domains: 2_000,
        ..crate::support::one_day(&raw, 40_000, 7)
    })
    .await
    .expect("generates");
    let args = RunArgs {
        parameter_store: store.to_owned(),
        ..crate::support::run_args(&raw, &dir.join("features").to_string_lossy())
    };
    rtb_etl::run::run(&args).await.expect("etl runs").manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_on_a_committed_run_and_publishes_only_on_success() {
    assert_eq!(
        rtb_etl::run::ETL_MANIFEST_PARAMETER,
        names::ETL_MANIFEST,
        "the etl and the trainer name the run manifest alike"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("parameter-store.json");
    let store_spec = store_path.to_string_lossy().into_owned();
    let etl = committed_run(dir.path(), &store_spec).await;
    let out = dir.path().join("out");
    let out_spec = out.to_string_lossy().into_owned();

    // found through the parameter store, as the original kit's training step did
    let mut args = TrainArgs::for_run("", &out_spec, &store_spec);
    args.run = None;
    args.threads = Some(2);
    let first = train(&args)
        .await
        .expect("trains through the parameter store");
    let manifest = json(&first.manifest_url);
    assert_eq!(manifest["etl_run_id"], etl.run_id.as_str());
    assert_eq!(
        manifest["vocabulary_version"],
        etl.vocabulary.version.as_str()
    );
    let contract = rtb_features::contract::bid_filtering(&etl.vocabulary.version);
    assert_eq!(
        manifest["features"],
        serde_json::json!(contract.feature_names())
    );
    assert_eq!(
        manifest["contract"],
        serde_json::to_value(&contract).expect("json"),
        "the model carries the run's feature contract"
    );
    assert_eq!(manifest["params"]["max_depth"], 5);
    let best = manifest["best_iteration"].as_u64().expect("best iteration");
    assert!(best >= 1 && best <= manifest["trees_trained"].as_u64().expect("trees"));
    let auc = manifest["metrics"]["roc_auc"].as_f64().expect("auc");
    assert!((0.6..1.0).contains(&auc), "test auc {auc}");
    for split in ["train", "valid", "test"] {
        assert_eq!(
            manifest["splits"][split]["rows"].as_u64(),
            Some(etl.splits[split].rows),
            "{split}"
        );
    }

    let model_url = manifest["model"].as_str().expect("model url");
    let model_text = std::fs::read_to_string(path_of(model_url)).expect("model file");
    assert_eq!(
        manifest["model_sha256"].as_str(),
        Some(rtb_trainer::publish::sha256_hex(model_text.as_bytes()).as_str())
    );
    let ensemble = rtb_model::Ensemble::parse(&model_text).expect("model parses");
    assert_eq!(
        ensemble.iterations() as u64,
        best,
        "the file is cut to the best iteration"
    );

    let report = std::fs::read_to_string(path_of(&first.report_url)).expect("report page");
    assert_eq!(report.matches("data:image/png;base64,").count(), 7);
    assert!(report.contains("No model was published before this one"));
    assert!(matches!(first.previous, Previous::None));
    let metrics = json(manifest["metrics_file"].as_str().expect("metrics url"));
    assert!(
        metrics["test"]["filtering"]["curve"]
            .as_array()
            .is_some_and(|c| c.len() > 10)
    );

    let store = ParameterStore::open(&store_spec).await.expect("store");
    assert_eq!(
        store
            .get(names::XGBOOST_PATH)
            .await
            .expect("get")
            .as_deref(),
        Some(model_url)
    );
    assert_eq!(
        store.get(names::MODEL_MANIFEST).await.expect("get"),
        Some(first.manifest_url.clone())
    );
    let latest = json(&format!("file://{}/models/latest.json", out.display()));
    assert_eq!(latest["manifest"], first.manifest_url.as_str());

    // the scorer starts from the pointer alone and serves this very model
    let served = rtb_scorer::artifacts::load_current(&store, None)
        .await
        .expect("the scorer loads what the trainer published");
    assert_eq!(
        served.model_id(),
        manifest["model_id"].as_str().expect("id")
    );
    let mut rows = served.rows(1);
    rtb_scorer::decode::score_request(br#"{"bidId":"b","hour":7}"#, &mut rows).expect("decodes");
    let likelihood = served.score(&rows).expect("scores").likelihoods[0];
    assert!((0.0..=1.0).contains(&likelihood), "{likelihood}");

    // by location (the ETL output folder: its latest.json names the run), with overrides
    let mut args = TrainArgs::for_run(
        &dir.path().join("features").to_string_lossy(),
        &out_spec,
        &store_spec,
    );
    args.params = vec!["num_iterations=5".into(), "early_stopping_rounds=0".into()];
    args.thresholds = vec![0.3];
    args.threads = Some(1);
    let second = train(&args).await.expect("trains by location");
    assert_eq!(second.record.trees_trained, 5);
    assert_eq!(second.manifest.best_iteration, Some(5));
    assert_eq!(second.evaluation.thresholds.len(), 1);
    assert_eq!(
        store.get(names::MODEL_MANIFEST).await.expect("get"),
        Some(second.manifest_url.clone()),
        "the pointer moves to the newest model"
    );
    let published = model_folders(&out);
    assert_eq!(published.len(), 2, "{published:?}");

    // a corrupt test split fails after training: nothing new is written, pointers stay
    let test_folder = path_of(&etl.outputs["test"]);
    std::fs::write(test_folder.join("zz-corrupt.parquet"), b"not parquet").expect("write");
    let err = train(&args).await.expect_err("corrupt split fails");
    assert!(
        matches!(
            err,
            rtb_trainer::TrainerError::Parquet { split: "test", .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("zz-corrupt.parquet"), "{err}");
    assert_eq!(model_folders(&out), published);
    assert_eq!(
        store.get(names::MODEL_MANIFEST).await.expect("get"),
        Some(second.manifest_url.clone())
    );

    // so does a bad parameter, before any data is read
    std::fs::remove_file(test_folder.join("zz-corrupt.parquet")).expect("remove");
    args.params = vec!["objective=regression".into()];
    let err = train(&args).await.expect_err("bad objective");
    assert!(err.to_string().contains("binary classifier"), "{err}");
    assert_eq!(model_folders(&out), published);

    // the second training scored the model it replaced on the same test rows: the first
    // model's own figures, recomputed
    let Previous::Compared {
        model_id,
        evaluation,
    } = &second.previous
    else {
        panic!("the first model is compared: {:?}", second.previous);
    };
    assert_eq!(model_id, &first.manifest.model_id);
    assert!(
        (evaluation.roc_auc - first.evaluation.roc_auc).abs() < 1e-9,
        "{} vs {}",
        evaluation.roc_auc,
        first.evaluation.roc_auc
    );
    assert!((evaluation.log_loss - first.evaluation.log_loss).abs() < 1e-9);
    let second_manifest = json(&second.manifest_url);
    let metrics = json(second_manifest["metrics_file"].as_str().expect("url"));
    assert_eq!(metrics["previous_model"]["status"], "compared");
    assert_eq!(
        metrics["previous_model"]["model_id"],
        first.manifest.model_id.as_str()
    );
    assert!(
        metrics["validation"]["train_by_iteration"]
            .as_array()
            .is_some_and(|c| c.len() == 5)
    );
    assert!(
        metrics["test"]["calibration"]["bins"]
            .as_array()
            .is_some_and(|b| b.len() > 5)
    );
    let report = std::fs::read_to_string(path_of(&second.report_url)).expect("report");
    assert!(report.contains("Against the published model"), "compared");
    assert!(rtb_trainer::train::render(&second).contains(&format!(
        "against the published model {model_id} on this test split"
    )));

    // a published model of other features is not scored; the figures it was published with
    // are shown instead
    let mut other = second_manifest.clone();
    other["contract"]["vocabulary_version"] = "sha256:other".into();
    let other_path = dir.path().join("other-model-manifest.json");
    std::fs::write(&other_path, other.to_string()).expect("write");
    store
        .put(
            names::MODEL_MANIFEST,
            &format!("file://{}", other_path.display()),
        )
        .await
        .expect("put");
    args.params = vec!["num_iterations=5".into(), "early_stopping_rounds=0".into()];
    let third = train(&args).await.expect("trains beside another model");
    let Previous::NotComparable {
        reason, published, ..
    } = &third.previous
    else {
        panic!("not comparable: {:?}", third.previous);
    };
    assert!(reason.contains("sha256:other"), "{reason}");
    let published = published.as_ref().expect("its published metrics");
    assert!((published.roc_auc - second.evaluation.roc_auc).abs() < 1e-12);

    // a pointer to nothing never stops a training
    store
        .put(
            names::MODEL_MANIFEST,
            "file:///nonexistent/model-manifest.json",
        )
        .await
        .expect("put");
    let fourth = train(&args).await.expect("trains");
    assert!(
        matches!(&fourth.previous, Previous::Unreadable { manifest, .. } if manifest.contains("nonexistent")),
        "{:?}",
        fourth.previous
    );
}
