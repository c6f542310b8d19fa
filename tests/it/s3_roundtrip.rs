//! Generator and ETL against a real S3-compatible server (s3s-fs on loopback) and a real SSM
//! emulator (moto): raw logs written to S3, read back from S3 (bzip2), features written to S3,
//! locations published to SSM. Runs the real `rtb-etl` binary, so the AWS settings come from the
//! environment exactly as in production.

use crate::support::{free_port, run_ok, s3_env, s3s_fs, spawn_listening};

fn etl(port: u16, args: &[&str]) -> String {
    run_ok("rtb-etl", &s3_env(port), args)
}

#[test]
fn logs_and_features_round_trip_through_s3() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("aik")).expect("bucket folder");
    let (_s3, port) = s3s_fs(root.path());
    let ssm_port = free_port();
    let _ssm = spawn_listening(
        "moto_server",
        &["-H", "127.0.0.1", "-p", &ssm_port.to_string()],
        ssm_port,
        "install it with `pip install 'moto[server]==5.2.1'` (scripts/setup.sh does)",
    );
    let ssm = format!("ssm://?endpoint=http://127.0.0.1:{ssm_port}");
    let generated = etl(
        port,
        &[
            "generate",
            "--out",
            "s3://aik/raw/ipinyou-data",
            "--bids-per-day",
            "20000",
            "--compression",
            "bzip2",
            "--malformed-fraction",
            "0.01",
        ],
    );
    assert!(
        root.path()
            .join("aik/raw/ipinyou-data/bid.20130311.txt.bz2")
            .is_file(),
        "{generated}"
    );
    let ran = etl(
        port,
        &[
            "run",
            "--input",
            "s3://aik/raw/ipinyou-data",
            "--out",
            "s3://aik/processed",
            "--memory-limit",
            "256MiB",
            "--parameter-store",
            &ssm,
        ],
    );
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root.path()
                .join("aik/raw/ipinyou-data/generator-summary.json"),
        )
        .expect("summary in s3"),
    )
    .expect("json");
    let latest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("aik/processed/latest.json")).expect("latest in s3"),
    )
    .expect("json");
    let manifest_url = latest["manifest"].as_str().expect("manifest url");
    assert!(
        manifest_url.starts_with("s3://aik/processed/runs/"),
        "{manifest_url}"
    );
    let manifest_path = root.path().join(manifest_url.trim_start_matches("s3://"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path).expect("manifest in s3"))
            .expect("json");
    assert_eq!(
        manifest["rows"]["transformed"], summary["valid_bids"],
        "{ran}"
    );
    assert_eq!(manifest["rows"]["bids_read"], summary["bid_lines"]);
    let positives: u64 = ["train", "valid", "test"]
        .iter()
        .map(|s| manifest["splits"][s]["label_1"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(Some(positives), summary["labelled_wins"].as_u64());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let published = runtime.block_on(async {
        let store = rtb_params::SsmStore::connect(rtb_params::SsmSettings {
            endpoint: Some(format!("http://127.0.0.1:{ssm_port}")),
            region: Some("us-east-1".into()),
            credentials: Some(rtb_params::StaticCredentials {
                access_key_id: "rtb".into(),
                secret_access_key: "rtb-secret".into(),
            }),
        })
        .await
        .expect("ssm client");
        store
            .get_many(&["/aik/output_train", "/aik/etl/manifest"])
            .await
            .expect("ssm get")
    });
    assert!(
        published[0]
            .as_deref()
            .is_some_and(|v| v.starts_with("s3://aik/processed/runs/")
                && v.ends_with("/processed/features/split=train/")),
        "{published:?}"
    );
    assert_eq!(published[1].as_deref(), Some(manifest_url));
}

/// S3 credentials come through the same AWS chain as SSM's: keys in the shared credentials file
/// (what `aws configure` writes) work, and none at all is said in one line.
#[test]
fn s3_credentials_come_from_the_aws_chain_and_their_absence_is_one_line() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("aik")).expect("bucket folder");
    let (_s3, port) = s3s_fs(root.path());
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join(".aws")).expect(".aws");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = rtb\naws_secret_access_key = rtb-secret\n",
    )
    .expect("credentials");
    let generate = |home: &std::path::Path, out: &str| {
        std::process::Command::new(crate::support::binary("rtb-etl"))
            .args(["generate", "--out", out, "--bids-per-day", "500"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .output()
            .expect("rtb-etl runs")
    };
    let with_file = generate(home.path(), "s3://aik/from-profile");
    assert!(
        with_file.status.success(),
        "{}",
        String::from_utf8_lossy(&with_file.stderr)
    );
    assert!(
        root.path()
            .join("aik/from-profile/generator-summary.json")
            .is_file()
    );

    let empty = tempfile::tempdir().expect("empty home");
    let without = generate(empty.path(), "s3://aik/none");
    assert!(!without.status.success());
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
}
