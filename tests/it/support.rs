//! Helpers shared by the end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An embedded run of the default job over `input` into `out`: bids `bid.*`, impressions
/// `imp.*`, 256 MiB, 2 partitions, the parameter store in `out`. Tests change what they test.
pub fn run_args(input: &str, out: &str) -> rtb_etl::run::RunArgs {
    rtb_etl::run::RunArgs {
        job: None,
        input: input.into(),
        bids: "bid.*".into(),
        imps: "imp.*".into(),
        out: out.into(),
        params: Vec::new(),
        read_as: rtb_features::Dialect::Strict,
        range_size: None,
        memory_limit: "256MiB".into(),
        spill_dir: None,
        shuffle_buffer: None,
        partitions: Some(2),
        cluster: None,
        stall_timeout_seconds: 600,
        parameter_store: format!("{out}/params.json"),
    }
}

/// One generated day of `bids_per_day` bids into `out`: season 2/3 layouts, plain text, the
/// generator's usual duplicates, no malformed or odd lines, 1,000 domains, 2 threads. Tests
/// change what they test.
pub fn one_day(out: &str, bids_per_day: u64, seed: u64) -> rtb_etl::generate::GenerateArgs {
    rtb_etl::generate::GenerateArgs {
        out: out.into(),
        start_date: "2013-03-11".parse().expect("date"),
        days: 1,
        bids_per_day,
        seed,
        imp_layout: rtb_etl::generate::ImpLayoutArg::Season23,
        compression: rtb_etl::generate::CompressionArg::None,
        malformed_fraction: 0.0,
        odd_fraction: 0.0,
        duplicate_bid_fraction: 0.005,
        duplicate_imp_fraction: 0.01,
        domains: 1_000,
        threads: Some(2),
    }
}

/// The shared reference data beside the repository (`RTB_SHARED_DATA` to point elsewhere).
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("RTB_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    assert!(
        dir.is_dir(),
        "reference data not found at {}; set RTB_SHARED_DATA to the shared/data folder",
        dir.display()
    );
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `actual` with the golden file, or rewrites it when `RTB_BLESS=1` (then review the
/// diff before committing: a golden file is a claim about correct output).
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/golden").join(name);
    if std::env::var_os("RTB_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}; run with RTB_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "output differs from {} ({} vs {} lines); first differences:\n{}\nrun with RTB_BLESS=1 to accept, then review the diff",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// A process started by a test, killed when the test ends however it ends.
pub struct Server(pub Child);

impl Server {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A workspace binary next to the test executable (`scripts/test.sh` builds them first).
pub fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/it-<hash> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not built; run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(what: &str, port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn spawn_listening(program: &str, args: &[&str], port: u16, hint: &str) -> Server {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} ({e}); {hint}"));
    let server = Server(child);
    wait_listening(program, port);
    server
}

/// The status code of `GET path` on a loopback port, `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

/// S3 credentials and endpoint for an s3s-fs server on `port`, as the AWS SDKs read them.
pub fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "rtb".into()),
        ("AWS_SECRET_ACCESS_KEY", "rtb-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
    ]
}

/// Starts s3s-fs on a free port serving `root` (each folder in it is a bucket).
pub fn s3s_fs(root: &Path) -> (Server, u16) {
    let port = free_port();
    let server = spawn_listening(
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
            root.to_str().expect("utf8"),
        ],
        port,
        "install it with `cargo install s3s-fs@0.14.1 --features binary --locked` (scripts/setup.sh does)",
    );
    (server, port)
}

/// Runs a workspace binary to completion with `env`; panics with its output on failure.
pub fn run_ok(name: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let output = Command::new(binary(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RTB_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every row of a Parquet folder as text, sorted: engines may order and type rows differently.
pub fn sorted_rows(folder: &Path) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let batches = ctx
            .read_parquet(
                folder.to_str().expect("utf8"),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .expect("parquet folder")
            .collect()
            .await
            .expect("reads");
        let mut rows = Vec::new();
        for batch in batches {
            let options =
                datafusion::arrow::util::display::FormatOptions::default().with_null("NULL");
            let columns: Vec<datafusion::arrow::util::display::ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| {
                    datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                        .expect("formatter")
                })
                .collect();
            for i in 0..batch.num_rows() {
                let fields: Vec<String> = columns.iter().map(|c| c.value(i).to_string()).collect();
                rows.push(fields.join("|"));
            }
        }
        rows.sort();
        rows
    })
}

/// A JSON file, parsed; panics naming the file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A manifest's input reports without the `fields` that differ between runs by design.
pub fn reports_without(manifest: &serde_json::Value, fields: &[&str]) -> Vec<serde_json::Value> {
    manifest["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|report| {
            let mut report = report.clone();
            if let Some(object) = report.as_object_mut() {
                for field in fields {
                    object.remove(*field);
                }
            }
            report
        })
        .collect()
}

/// The bid and impression files in `raw` as gzip members of 300 lines each, back to back, as
/// rotated logs concatenated with `cat` are.
pub fn gzip_members(raw: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("gz folder");
    for entry in std::fs::read_dir(raw).expect("raw folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("bid.") || name.starts_with("imp.")) {
            continue;
        }
        let text = std::fs::read(entry.path()).expect("read");
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        let mut file = Vec::new();
        for chunk in lines.chunks(300) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&chunk.concat()).expect("compress");
            file.extend(e.finish().expect("finish"));
        }
        std::fs::write(into.join(format!("{name}.gz")), file).expect("write");
    }
}
