//! The HTTP surface driven in-process: scoring, errors, readiness, metrics, admin reload.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use rtb_features::{FeatureVocabulary, StringIndexer};
use rtb_model::{ModelManifest, sha256_hex};
use serde_json::{Value, json};

use crate::artifacts::{ArtifactError, LoadedModel};
use crate::clock::Clock;
use crate::metrics::ErrorKind;
use crate::state::{AppState, Limits};
use crate::statsd::Statsd;

/// hour <= 11.5 -> -1; else advertiser index <= 0.5 -> 0.5; else 2.
pub(crate) const MODEL: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n\
label_index=0\nmax_feature_idx=6\nobjective=binary sigmoid:1\n\
feature_names=dow hour IndexAdvertiserID IndexDomain IndexRegionID IndexCityID device_type_id\n\
tree_sizes=140\n\nTree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=1 2\nthreshold=11.5 0.5\n\
decision_type=2 2\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=-1 0.5 2\n\
\nend of trees\n";

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

pub(crate) fn vocabulary() -> FeatureVocabulary {
    FeatureVocabulary::new(
        ["AdvertiserID", "Domain", "RegionID", "CityID"]
            .iter()
            .map(|c| {
                let labels: &[&str] = match *c {
                    "AdvertiserID" => &["1458", "1458", "3358"],
                    _ => &["1"],
                };
                (
                    (*c).to_owned(),
                    StringIndexer::fit(labels.iter().map(|l| Some(*l))),
                )
            })
            .collect(),
    )
}

pub(crate) fn manifest(
    model_id: &str,
    model: &str,
    vocabulary: &FeatureVocabulary,
) -> ModelManifest {
    let contract = rtb_features::contract::bid_filtering(&vocabulary.version);
    ModelManifest {
        model_id: model_id.to_owned(),
        format: "lightgbm-text".to_owned(),
        model: "memory://model.txt".to_owned(),
        model_sha256: sha256_hex(model.as_bytes()),
        features: contract.feature_names(),
        vocabulary_version: vocabulary.version.clone(),
        vocabulary: "memory://vocabulary.json".to_owned(),
        contract,
        best_iteration: Some(1),
        created_at: None,
        extra: Default::default(),
    }
}

fn loaded(model_id: &str) -> LoadedModel {
    let vocabulary = vocabulary();
    LoadedModel::from_parts(
        "memory://manifest.json",
        manifest(model_id, MODEL, &vocabulary),
        MODEL.as_bytes(),
        vocabulary.to_json().expect("json").as_bytes(),
        None,
    )
    .expect("consistent artifacts")
}

fn state(model: Option<LoadedModel>) -> web::Data<AppState> {
    web::Data::new(AppState::new(
        model,
        None,
        Some(Clock::parse("+08:00").expect("offset")),
        Limits {
            max_batch: 3,
            max_body_bytes: 2048,
            body_timeout: std::time::Duration::from_millis(300),
        },
        Some("s3cret".to_owned()),
        Statsd::disabled(),
    ))
}

fn request(hour: u8, advertiser: Option<&str>) -> Value {
    json!({"bidId": "b1", "dayOfWeek": 2, "hour": hour, "regionId": "1", "cityId": null,
           "domainId": "d", "advertiserId": advertiser, "userAgent": "Mozilla/5.0", "biddingPrice": 300})
}

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .app_data($state.clone())
                .configure(crate::api::configure),
        )
        .await
    };
}

#[actix_web::test]
async fn scores_one_a_batch_and_openrtb() {
    let state = state(Some(loaded("m1")));
    let app = app!(state);
    let req = test::TestRequest::post()
        .uri("/v1/score")
        .set_json(request(13, Some("1458")))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(body["bidId"], "b1");
    assert_eq!(body["modelVersion"], "m1");
    assert_eq!(body["likelihood"].as_f64(), Some(sigmoid(0.5)));

    let batch = json!({"requests": [request(13, Some("1458")), request(13, Some("never seen")), request(3, None)]});
    let req = test::TestRequest::post()
        .uri("/v1/score/batch")
        .set_json(batch)
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    let likelihoods: Vec<f64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["likelihood"].as_f64().expect("number"))
        .collect();
    // an unseen advertiser takes the unknown index (2), as in training: not an error
    assert_eq!(likelihoods, vec![sigmoid(0.5), sigmoid(2.0), sigmoid(-1.0)]);

    // 2013-03-11T05:30Z is 13:30 on Monday (dow 2) at +08:00
    let openrtb = json!({
        "id": "r1", "at": 1, "imp": [{"id": "1", "ext": {"advertiserId": 1458}}, {"id": "2"}],
        "site": {"domain": "d"}, "device": {"ua": "Mozilla/5.0", "geo": {"region": 1, "city": "1"}},
        "ext": {"timestamp": "2013-03-11T05:30:00Z"}, "unknownField": {"nested": [1]}
    });
    let req = test::TestRequest::post()
        .uri("/v1/openrtb?advertiserId=3358")
        .set_json(openrtb)
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(
        (body["dayOfWeek"].as_u64(), body["hour"].as_u64()),
        (Some(2), Some(13))
    );
    assert_eq!(body["imp"][0]["impId"], "1");
    assert_eq!(body["imp"][0]["likelihood"].as_f64(), Some(sigmoid(0.5)));
    // imp 2 takes the query's advertiser, index 1
    assert_eq!(body["imp"][1]["likelihood"].as_f64(), Some(sigmoid(2.0)));

    let metrics =
        test::call_and_read_body(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("rtb_scorer_rows_scored_total{endpoint=\"batch\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rtb_scorer_model_info{model_id=\"m1\""),
        "{metrics}"
    );
}

#[actix_web::test]
async fn bad_input_is_a_json_4xx_naming_the_problem() {
    let state = state(Some(loaded("m1")));
    let app = app!(state);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
        ("/v1/score", b"{\"bidId\":".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", "EOF"),
        ("/v1/score", br#"{"dayOfWeek":2}"#.to_vec(), StatusCode::BAD_REQUEST, "missing_field", "bidId"),
        ("/v1/score", br#"{"bidId":"b","hour":"1"}"#.to_vec(), StatusCode::BAD_REQUEST, "wrong_type", "hour is \"1\""),
        ("/v1/score", br#"{"bidId":"b","hour":7.5}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_value", "whole number"),
        ("/v1/score", vec![b' '; 4096], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "at most 2048"),
        ("/v1/score/batch", serde_json::to_vec(&json!({"requests": [request(1, None), request(1, None), request(1, None), request(1, None)]})).expect("json"), StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", "at most 3"),
        ("/v1/openrtb", br#"{"id":"r","imp":[{"id":"1"}],"ext":{"timestamp":"yesterday"}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_value", "RFC 3339"),
        ("/v1/openrtb", br#"{"id":"r","imp":[{"id":"1"}],"device":{"ua":{}}}"#.to_vec(), StatusCode::BAD_REQUEST, "wrong_type", "imp[0] field userAgent"),
    ];
    for (uri, body, status, kind, text) in cases {
        let req = test::TestRequest::post()
            .uri(uri)
            .set_payload(body)
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status(), status, "{uri} {kind}");
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["error"], kind, "{body}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(text), "{kind}: {message}");
    }
    assert_eq!(state.metrics.errors(ErrorKind::MalformedJson), 1);
    assert_eq!(state.metrics.errors(ErrorKind::BatchTooLarge), 1);
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn readiness_follows_the_model_and_shutdown() {
    let state = state(None);
    let app = app!(state);
    let get = |uri: &'static str| test::TestRequest::get().uri(uri).to_request();
    assert_eq!(
        test::call_service(&app, get("/healthz")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        test::call_service(&app, get("/readyz")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let req = test::TestRequest::post()
        .uri("/v1/score")
        .set_json(request(1, None))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        test::call_service(&app, get("/v1/model")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    state.swap(loaded("m2"));
    assert_eq!(
        test::call_service(&app, get("/readyz")).await.status(),
        StatusCode::OK
    );
    let info: Value = test::call_and_read_body_json(&app, get("/v1/model")).await;
    assert_eq!(info["modelVersion"], "m2");
    // no storage location is shown to callers
    assert!(info.get("manifestUrl").is_none(), "{info}");
    assert!(!info.to_string().contains("memory://"), "{info}");
    assert_eq!(
        info["features"],
        json!(rtb_features::contract::bid_filtering("v").feature_names())
    );
    let doc: Value = test::call_and_read_body_json(&app, get("/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/openrtb"]["post"].is_object());
    // the request schema is the loaded model's contract
    let schema = &doc["components"]["schemas"]["BidRequest"];
    assert_eq!(schema["required"], json!(["bidId"]));
    assert_eq!(schema["properties"]["hour"]["type"], "integer");
    assert_eq!(
        schema["properties"]["userAgent"]["description"],
        "from OpenRTB: device.ua"
    );

    state.begin_shutdown();
    assert_eq!(
        test::call_service(&app, get("/readyz")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // in-flight and late requests are still answered while the server drains
    let req = test::TestRequest::post()
        .uri("/v1/score")
        .set_json(request(1, None))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn admin_reload_needs_the_token() {
    let state = state(Some(loaded("m1")));
    let app = app!(state);
    let reload = |token: Option<&str>| {
        let mut req = test::TestRequest::post().uri("/admin/reload");
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        req.to_request()
    };
    assert_eq!(
        test::call_service(&app, reload(None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        test::call_service(&app, reload(Some("guess")))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // no parameter store in this state: nothing to reload, still authorised
    let body: Value = test::call_and_read_body_json(&app, reload(Some("s3cret"))).await;
    assert_eq!(body["outcome"], "unchanged");
    assert_eq!(body["modelVersion"], "m1");
    // guessing is limited: after 10 failures in a minute even the right token waits
    for _ in 0..8 {
        test::call_service(&app, reload(Some("guess"))).await;
    }
    let locked = test::call_service(&app, reload(Some("s3cret"))).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = test::read_body_json(locked).await;
    assert_eq!(body["error"], "too_many_attempts");
}

// `test` here is actix-web's module, so its attribute macro: the test is async
#[actix_web::test]
async fn inconsistent_artifacts_are_refused() {
    let vocabulary = vocabulary();
    let json = vocabulary.to_json().expect("json");
    let good = manifest("m", MODEL, &vocabulary);
    let try_load = |manifest: ModelManifest, model: &str, vocabulary: &str| {
        LoadedModel::from_parts(
            "memory://manifest.json",
            manifest,
            model.as_bytes(),
            vocabulary.as_bytes(),
            None,
        )
    };
    assert!(try_load(good.clone(), MODEL, &json).is_ok());

    let other = FeatureVocabulary::new(vec![]);
    let mut stale = good.clone();
    stale.vocabulary_version = other.version.clone();
    stale.contract.vocabulary_version = other.version.clone();
    stale.contract = stale.contract.clone().sealed().expect("seals");
    assert!(matches!(
        try_load(stale, MODEL, &json),
        Err(ArtifactError::VocabularyMismatch { .. })
    ));

    let mut reordered = good.clone();
    reordered.features.swap(0, 1);
    assert!(matches!(
        try_load(reordered, MODEL, &json),
        Err(ArtifactError::FeatureOrder { .. })
    ));

    let renamed = MODEL.replace("feature_names=dow hour", "feature_names=hour dow");
    let mut renamed_manifest = good.clone();
    renamed_manifest.model_sha256 = sha256_hex(renamed.as_bytes());
    assert!(matches!(
        try_load(renamed_manifest, &renamed, &json),
        Err(ArtifactError::FeatureOrder { .. })
    ));

    assert!(matches!(
        try_load(good.clone(), &MODEL.replace("-1 0.5 2", "-1 0.5 3"), &json),
        Err(ArtifactError::ModelHash { .. })
    ));
    // a model file cut short, or holding other than the manifest's trees, never serves, even
    // with a manifest hash that matches it
    let cut = &MODEL[..MODEL.len() - "\nend of trees\n".len() - 8];
    let mut recut = good.clone();
    recut.model_sha256 = sha256_hex(cut.as_bytes());
    assert!(matches!(
        try_load(recut, cut, &json),
        Err(ArtifactError::BadModel { .. })
    ));
    let mut more_trees = good.clone();
    more_trees.best_iteration = Some(2);
    match try_load(more_trees, MODEL, &json) {
        Err(ArtifactError::BadModel { reason, .. }) => {
            assert!(
                reason.contains("holds 1 trees, the manifest says 2"),
                "{reason}"
            )
        }
        other => panic!("a tree count unlike the manifest's is refused: {other:?}"),
    }
    let tampered = json.replacen("1458", "9999", 1);
    assert!(matches!(
        try_load(good.clone(), MODEL, &tampered),
        Err(ArtifactError::BadVocabulary { .. })
    ));
    let mut other_format = good.clone();
    other_format.format = "xgboost".into();
    assert!(matches!(
        try_load(other_format, MODEL, &json),
        Err(ArtifactError::BadManifest { .. })
    ));

    // a contract that does not compile, or edited after sealing, never serves
    let reseal = |edit: &dyn Fn(&mut rtb_features::FeatureContract)| {
        let mut m = good.clone();
        edit(&mut m.contract);
        m.contract = m.contract.clone().sealed().expect("seals");
        m
    };
    let err = try_load(
        reseal(&|c| c.features[1].expr = "hour + nope".into()),
        MODEL,
        &json,
    )
    .expect_err("does not compile");
    assert!(matches!(err, ArtifactError::ContractCompile(_)), "{err}");
    assert!(err.to_string().contains("feature hour"), "{err}");
    let err = try_load(
        reseal(&|c| c.vocabulary_columns.push("Exchange".into())),
        MODEL,
        &json,
    )
    .expect_err("vocabulary lacks a column");
    assert!(err.to_string().contains("Exchange"), "{err}");
    let mut edited = good.clone();
    edited.contract.features[1].expr = "hour + 1".into();
    assert!(matches!(
        try_load(edited, MODEL, &json),
        Err(ArtifactError::BadContract(_))
    ));
}

#[actix_web::test]
async fn explain_returns_the_feature_vector() {
    let state = state(Some(loaded("m1")));
    let app = app!(state);
    let req = test::TestRequest::post()
        .uri("/v1/score?explain=true")
        .set_json(request(13, Some("3358")))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(
        body["features"],
        json!({"dow": 2.0, "hour": 13.0, "IndexAdvertiserID": 1.0, "IndexDomain": 1.0,
               "IndexRegionID": 0.0, "IndexCityID": 1.0, "device_type_id": 6.0})
    );
    let req = test::TestRequest::post()
        .uri("/v1/score")
        .set_json(request(13, Some("3358")))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert!(body.get("features").is_none());
}

#[tokio::test]
async fn artifacts_load_from_a_parameter_file_and_local_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vocabulary = vocabulary();
    let model_path = dir.path().join("models/m1/model.txt");
    let vocabulary_path = dir.path().join("vocabulary.json");
    let manifest_path = dir.path().join("models/m1/model-manifest.json");
    std::fs::create_dir_all(dir.path().join("models/m1")).expect("mkdir");
    std::fs::write(&model_path, MODEL).expect("model");
    std::fs::write(&vocabulary_path, vocabulary.to_json().expect("json")).expect("vocabulary");
    let mut m = manifest("m1", MODEL, &vocabulary);
    m.model = format!("file://{}", model_path.display());
    m.vocabulary = vocabulary_path.display().to_string();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).expect("json")).expect("manifest");
    let store =
        rtb_params::ParameterStore::open(dir.path().join("params.json").to_str().expect("utf8"))
            .await
            .expect("store");
    let err = crate::artifacts::load_current(&store, None)
        .await
        .expect_err("no store file yet");
    assert!(err.to_string().contains("does not exist"), "{err}");
    store
        .put(rtb_params::names::OUTPUT_TRAIN, "s3://b/train")
        .await
        .expect("put");
    let err = crate::artifacts::load_current(&store, None)
        .await
        .expect_err("no pointer yet");
    assert!(err.to_string().contains("/aik/model/manifest"), "{err}");
    store
        .put(
            rtb_params::names::MODEL_MANIFEST,
            &format!("file://{}", manifest_path.display()),
        )
        .await
        .expect("put");
    let model = crate::artifacts::load_current(&store, None)
        .await
        .expect("loads");
    assert_eq!(model.model_id(), "m1");
    std::fs::remove_file(&vocabulary_path).expect("rm");
    let err = crate::artifacts::load_current(&store, None)
        .await
        .expect_err("vocabulary gone");
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[tokio::test]
async fn a_model_not_yet_readable_is_retried_and_a_bad_one_is_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vocabulary = vocabulary();
    let model_path = dir.path().join("models/m2/model.txt");
    let manifest_path = dir.path().join("models/m2/model-manifest.json");
    let vocabulary_path = dir.path().join("vocabulary.json");
    std::fs::create_dir_all(dir.path().join("models/m2")).expect("mkdir");
    std::fs::write(&vocabulary_path, vocabulary.to_json().expect("json")).expect("vocabulary");
    let mut m = manifest("m2", MODEL, &vocabulary);
    m.model = format!("file://{}", model_path.display());
    m.vocabulary = vocabulary_path.display().to_string();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).expect("json")).expect("manifest");
    let store =
        rtb_params::ParameterStore::open(dir.path().join("params.json").to_str().expect("utf8"))
            .await
            .expect("store");
    store
        .put(
            rtb_params::names::MODEL_MANIFEST,
            &format!("file://{}", manifest_path.display()),
        )
        .await
        .expect("put");
    let state = AppState::new(
        Some(loaded("m1")),
        Some(store),
        None,
        Limits {
            max_batch: 3,
            max_body_bytes: 2048,
            body_timeout: std::time::Duration::from_millis(300),
        },
        None,
        Statsd::disabled(),
    );
    // the model file is not visible yet: a read failure, counted as such, not remembered
    let outcome = state.reload(false).await;
    assert!(
        matches!(&outcome, crate::state::ReloadOutcome::Rejected(e) if e.is_transient()),
        "{outcome:?}"
    );
    assert_eq!(state.metrics.reloads_unreadable(), 1);
    assert_eq!(state.metrics.reloads(), (0, 0));
    // it appears: the next poll takes it, without being asked
    std::fs::write(&model_path, MODEL).expect("model");
    assert!(matches!(
        state.reload(false).await,
        crate::state::ReloadOutcome::Swapped { .. }
    ));
    assert_eq!(state.model().expect("model").model_id(), "m2");

    // content that cannot serve is refused once and remembered: polls do not retry it
    let cut = &MODEL[..MODEL.len() - 20];
    let bad_path = dir.path().join("models/m3/model.txt");
    std::fs::create_dir_all(dir.path().join("models/m3")).expect("mkdir");
    std::fs::write(&bad_path, cut).expect("model");
    let mut bad = m.clone();
    bad.model_id = "m3".into();
    bad.model = format!("file://{}", bad_path.display());
    bad.model_sha256 = sha256_hex(cut.as_bytes());
    let bad_manifest = dir.path().join("models/m3/model-manifest.json");
    std::fs::write(&bad_manifest, serde_json::to_vec(&bad).expect("json")).expect("manifest");
    let store =
        rtb_params::ParameterStore::open(dir.path().join("params.json").to_str().expect("utf8"))
            .await
            .expect("store");
    store
        .put(
            rtb_params::names::MODEL_MANIFEST,
            &format!("file://{}", bad_manifest.display()),
        )
        .await
        .expect("put");
    assert!(matches!(
        state.reload(false).await,
        crate::state::ReloadOutcome::Rejected(ArtifactError::BadModel { .. })
    ));
    assert!(matches!(
        state.reload(false).await,
        crate::state::ReloadOutcome::Unchanged { .. }
    ));
    assert_eq!(state.metrics.reloads(), (1, 1));
    assert_eq!(state.model().expect("model").model_id(), "m2");
}
