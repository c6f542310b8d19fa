//! The real `rtb-scorer` binary: started from parameters only (SSM on moto, artifacts on
//! s3s-fs), refusing inconsistent artifacts, reloading under load without one failed request,
//! and shutting down gracefully on SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtb_model::Ensemble;
use rtb_params::names;

use crate::scorer_support::{
    Http, ModelStore, Process, call, expected_row, free_port, json, publish_files, put_params,
    request, spawn, synthetic_rows, train, vocabulary, wait_for, workspace_binary,
};

const TOKEN: &str = "test-admin-token";

fn spawn_listening(program: &str, args: &[&str], port: u16, hint: &str) -> Process {
    let log = std::env::temp_dir().join(format!("rtb-scorer-test-{program}-{port}.log"));
    let mut process = spawn(Path::new(program), args, &[], &log);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "{program} exited ({status}); {hint}\n{}",
                process.log_text()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{program} did not start listening on {port}; {hint}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

#[test]
fn scorer_starts_from_ssm_parameters_and_s3_artifacts() {
    let root = tempfile::tempdir().expect("tempdir");
    let bucket = root.path().join("aik");
    std::fs::create_dir_all(&bucket).expect("bucket folder");
    let s3_port = free_port();
    let _s3 = spawn_listening(
        "s3s-fs",
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &s3_port.to_string(),
            "--access-key",
            "rtb",
            "--secret-key",
            "rtb-secret",
            root.path().to_str().expect("utf8"),
        ],
        s3_port,
        "install it with `cargo install s3s-fs@0.14.1 --features binary --locked` (scripts/setup.sh does)",
    );
    let ssm_port = free_port();
    let _ssm = spawn_listening(
        "moto_server",
        &["-H", "127.0.0.1", "-p", &ssm_port.to_string()],
        ssm_port,
        "install it with `pip install 'moto[server]==5.2.1'` (scripts/setup.sh does)",
    );

    // artifacts in S3, written through the bucket's folder
    let vocabulary = vocabulary(8);
    std::fs::create_dir_all(bucket.join("pipeline-model")).expect("folder");
    std::fs::write(
        bucket.join("pipeline-model/vocabulary.json"),
        vocabulary.to_json().expect("json"),
    )
    .expect("vocabulary");
    let vocabulary_url = "s3://aik/pipeline-model/vocabulary.json";
    let (x, y) = synthetic_rows(4000, 8, 3);
    let booster = train(&x, &y, 30);
    let text = booster.save_string().expect("model text");
    let good = publish_files(
        &bucket,
        "s3://aik",
        "m1",
        &text,
        vocabulary_url,
        &vocabulary.version,
    );
    let stale = publish_files(
        &bucket,
        "s3://aik",
        "stale",
        &text,
        vocabulary_url,
        "sha256:0000",
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime.block_on(async {
        rtb_params::SsmStore::connect(rtb_params::SsmSettings {
            endpoint: Some(format!("http://127.0.0.1:{ssm_port}")),
            region: Some("us-east-1".into()),
            credentials: Some(rtb_params::StaticCredentials {
                access_key_id: "rtb".into(),
                secret_access_key: "rtb-secret".into(),
            }),
        })
        .await
        .expect("ssm client")
    });
    let put = |name: &str, value: &str| {
        runtime.block_on(store.put(name, value)).expect("ssm put");
    };
    let ssm = format!("ssm://?endpoint=http://127.0.0.1:{ssm_port}&region=us-east-1");
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let envs = [
        ("AWS_ACCESS_KEY_ID", "rtb"),
        ("AWS_SECRET_ACCESS_KEY", "rtb-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", s3_endpoint.as_str()),
    ];
    let scorer = workspace_binary("rtb-scorer");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--parameter-store",
        &ssm,
        "--listen",
        &listen,
        "--workers",
        "2",
        "--reload-interval",
        "1",
        "--admin-token",
        TOKEN,
    ];

    // a manifest trained on another vocabulary: no server, a clear message, a failed exit
    put(names::MODEL_MANIFEST, &stale);
    let mut refused = spawn(&scorer, &args, &envs, &root.path().join("refused.log"));
    let status = refused.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = refused.log_text();
    assert!(log.contains("trained with vocabulary sha256:0000"), "{log}");

    put(names::MODEL_MANIFEST, &good);
    put(names::XGBOOST_PATH, "s3://aik/models/m1/model.txt");
    let mut process = spawn(&scorer, &args, &envs, &root.path().join("scorer.log"));
    wait_for(&mut process, port, "/readyz", Duration::from_secs(60));

    let ensemble = Ensemble::parse(&text).expect("parses");
    for i in 0..50 {
        let request = request(i);
        let row = expected_row(i, 8);
        let expected = booster
            .predict(&row, row.len() as i32, true)
            .expect("lightgbm predicts")[0];
        let (status, body) = call(
            port,
            "POST",
            "/v1/score",
            &[],
            &serde_json::to_vec(&request).expect("json"),
        )
        .expect("scores");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let body = json(&body);
        assert_eq!(body["modelVersion"], "m1");
        let likelihood = body["likelihood"].as_f64().expect("number");
        // serde_json parses floats fast, not correctly rounded (no float_roundtrip): one ulp
        let native = ensemble.predict(&row);
        assert!(
            (likelihood - native).abs() <= 4.0 * f64::EPSILON * native.abs(),
            "{likelihood} vs {native}"
        );
        assert!(
            (likelihood - expected).abs() <= 1e-9,
            "{likelihood} vs {expected}"
        );
    }

    // a bad model through the admin api: refused, counted, the old one keeps serving
    put(names::MODEL_MANIFEST, &stale);
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = call(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .expect("reload");
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["modelVersion"], "m1");
    let (_, metrics) = call(port, "GET", "/metrics", &[], b"").expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    // the poller may have met the stale manifest first; either way it was refused and counted
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtb_scorer_model_reloads_total{outcome=\"failure\"} "))
        .and_then(|v| v.parse().ok())
        .expect("reload failures metric");
    assert!(failures >= 1, "{metrics}");

    // a good one by polling alone
    let m2 = publish_files(
        &bucket,
        "s3://aik",
        "m2",
        &text,
        vocabulary_url,
        &vocabulary.version,
    );
    put(names::MODEL_MANIFEST, &m2);
    let started = Instant::now();
    loop {
        let (_, body) = call(port, "GET", "/v1/model", &[], b"").expect("model info");
        if json(&body)["modelVersion"] == "m2" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "poll never swapped in m2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    process.terminate();
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", process.log_text());
}

#[test]
fn reload_under_load_fails_no_request_and_sigterm_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(dir.path());
    let (root, base, vocabulary_url) = (&store.root, &store.base, &store.vocabulary_url);
    let vocabulary_version = &store.vocabulary_version;
    let (x, y) = synthetic_rows(4000, 8, 5);
    let first = train(&x, &y, 20).save_string().expect("text");
    let second = train(&x, &y, 40).save_string().expect("text");
    let m1 = publish_files(root, base, "m1", &first, vocabulary_url, vocabulary_version);
    let params = dir.path().join("params.json");
    put_params(&params, &[(names::MODEL_MANIFEST, &m1)]);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut process = spawn(
        &workspace_binary("rtb-scorer"),
        &[
            "serve",
            "--parameter-store",
            params.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--workers",
            "2",
            "--reload-interval",
            "1",
            "--admin-token",
            TOKEN,
            "--drain-seconds",
            "3",
        ],
        &[],
        &dir.path().join("scorer.log"),
    );
    wait_for(&mut process, port, "/readyz", Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = Arc::clone(&stop);
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut http = Http::connect(port).expect("connects");
                let mut versions = std::collections::BTreeSet::new();
                let mut failures = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::to_vec(&request(i)).expect("json");
                    match http.request("POST", "/v1/score", &[], &body) {
                        Ok((200, body)) => {
                            let body = json(&body);
                            versions
                                .insert(body["modelVersion"].as_str().unwrap_or("?").to_owned());
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => {
                            failures.push(format!("{status}: {}", String::from_utf8_lossy(&body)))
                        }
                        Err(err) => {
                            failures.push(err.to_string());
                            http = match Http::connect(port) {
                                Ok(h) => h,
                                Err(_) => break,
                            };
                        }
                    }
                    i += 4;
                }
                (versions, failures)
            })
        })
        .collect();
    let wait_answers = |n: u64| {
        let target = answered.load(Ordering::Relaxed) + n;
        let started = Instant::now();
        while answered.load(Ordering::Relaxed) < target {
            assert!(started.elapsed() < Duration::from_secs(30), "load stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_answers(500);

    // m2 through the admin api, a broken m3 refused, m4 through polling
    let auth = format!("Bearer {TOKEN}");
    let m2 = publish_files(
        root,
        base,
        "m2",
        &second,
        vocabulary_url,
        vocabulary_version,
    );
    put_params(&params, &[(names::MODEL_MANIFEST, &m2)]);
    let (status, body) = call(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .expect("reload");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["modelVersion"], "m2");
    wait_answers(500);

    let m3 = publish_files(
        root,
        base,
        "m3",
        &second,
        vocabulary_url,
        vocabulary_version,
    );
    // replaced after publishing: the manifest's sha256 no longer matches
    std::fs::write(root.join("models/m3/model.txt"), &first).expect("overwrite");
    put_params(&params, &[(names::MODEL_MANIFEST, &m3)]);
    let (status, _) = call(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .expect("reload");
    assert_eq!(status, 422);
    wait_answers(500);

    // a model whose feature contract does not compile (sealed, so its hash is valid) and one
    // whose contract encodes a column its vocabulary lacks: refused, the old model serves
    for (id, edit, says) in [
        (
            "m3-contract",
            (|c: &mut rtb_features::FeatureContract| c.features[1].expr = "hour + nope".into())
                as fn(&mut rtb_features::FeatureContract),
            "does not compile",
        ),
        (
            "m3-vocabulary",
            |c: &mut rtb_features::FeatureContract| c.vocabulary_columns.push("AdExchange".into()),
            "AdExchange",
        ),
    ] {
        let url = publish_files(root, base, id, &second, vocabulary_url, vocabulary_version);
        let path = root.join(format!("models/{id}/model-manifest.json"));
        let mut manifest =
            rtb_model::ModelManifest::from_json(&std::fs::read(&path).expect("manifest"))
                .expect("manifest json");
        edit(&mut manifest.contract);
        manifest.contract = manifest.contract.clone().sealed().expect("seals");
        std::fs::write(&path, serde_json::to_vec(&manifest).expect("json")).expect("write");
        put_params(&params, &[(names::MODEL_MANIFEST, &url)]);
        let (status, body) = call(
            port,
            "POST",
            "/admin/reload",
            &[("Authorization", auth.as_str())],
            b"",
        )
        .expect("reload");
        assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
        let body = json(&body);
        assert_eq!(body["modelVersion"], "m2", "the old model keeps serving");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(says), "{id}: {message}");
        wait_answers(200);
    }

    let m4 = publish_files(root, base, "m4", &first, vocabulary_url, vocabulary_version);
    put_params(&params, &[(names::MODEL_MANIFEST, &m4)]);
    let started = Instant::now();
    loop {
        let (_, body) = call(port, "GET", "/v1/model", &[], b"").expect("model info");
        if json(&body)["modelVersion"] == "m4" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "poll never swapped in m4"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_answers(500);

    // SIGTERM: readiness goes false at once, requests are still answered while draining
    process.terminate();
    let started = Instant::now();
    loop {
        let (status, body) = call(port, "GET", "/readyz", &[], b"").expect("readyz while draining");
        if status == 503 {
            assert_eq!(json(&body)["reason"], "shutting down");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "readiness stayed true"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_answers(200);
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for client in clients {
        let (versions, failures) = client.join().expect("client thread");
        assert!(
            failures.is_empty(),
            "failed requests during reloads: {failures:?}"
        );
        seen.extend(versions);
    }
    let expected: std::collections::BTreeSet<String> =
        ["m1", "m2", "m4"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen, expected, "m3 must never serve");
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", process.log_text());
    let log = process.log_text();
    assert!(log.contains("refused a new model"), "{log}");
    println!(
        "answered {} requests across 3 reloads, none failed",
        answered.load(Ordering::Relaxed)
    );
}
