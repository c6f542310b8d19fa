//! Generator and ETL against a real S3-compatible server (s3s-fs on loopback) and a real SSM
//! emulator (moto): raw logs written to S3, read back from S3 (bzip2), features written to S3,
//! locations published to SSM. Runs the real `rtb-etl` binary, so the AWS settings come from the
//! environment exactly as in production.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn binary() -> PathBuf {
    // target/<profile>/deps/it-<hash> -> target/<profile>/rtb-etl
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("rtb-etl");
    assert!(
        bin.is_file(),
        "{} not built; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

fn spawn_listening(program: &str, args: &[&str], port: u16, hint: &str) -> Server {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} ({e}); {hint}"));
    let server = Server(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{program} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn etl(endpoint: &str, args: &[&str]) -> String {
    let output = Command::new(binary())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "rtb")
        .env("AWS_SECRET_ACCESS_KEY", "rtb-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("RTB_CONFIG")
        .output()
        .expect("rtb-etl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "rtb-etl {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn logs_and_features_round_trip_through_s3() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("aik")).expect("bucket folder");
    let port = free_port();
    let _s3 = spawn_listening(
        "s3s-fs",
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "rtb",
            "--secret-key",
            "rtb-secret",
            root.path().to_str().expect("utf8"),
        ],
        port,
        "install it with `cargo install s3s-fs@0.14.1 --features binary --locked` (scripts/setup.sh does)",
    );
    let ssm_port = free_port();
    let _ssm = spawn_listening(
        "moto_server",
        &["-H", "127.0.0.1", "-p", &ssm_port.to_string()],
        ssm_port,
        "install it with `pip install 'moto[server]==5.2.1'` (scripts/setup.sh does)",
    );
    let ssm = format!("ssm://?endpoint=http://127.0.0.1:{ssm_port}");
    let endpoint = format!("http://127.0.0.1:{port}");
    let generated = etl(
        &endpoint,
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
        &endpoint,
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
        published[0].as_deref().is_some_and(
            |v| v.starts_with("s3://aik/processed/runs/") && v.ends_with("/processed/train/")
        ),
        "{published:?}"
    );
    assert_eq!(published[1].as_deref(), Some(manifest_url));
}
