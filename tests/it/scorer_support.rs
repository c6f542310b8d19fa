//! What the scorer tests share: a trained model published as the trainer publishes it, the
//! real `rtb-scorer` process, and a minimal HTTP/1.1 client (keep-alive, blocking), so load
//! tests measure the server and not a client library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lightgbm3::{Booster, Dataset};
use rtb_features::{FeatureVocabulary, StringIndexer};
use rtb_params::ParameterStore;

// the process helpers every end-to-end test uses
pub use crate::support::{binary as workspace_binary, free_port};

/// A child process killed when dropped; its stderr goes to a file shown on failure.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill`, as the workspace forbids unsafe code).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "process did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Process {
    let file = std::fs::File::create(log).expect("log file");
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("RTB_CONFIG")
        .env("RTB_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in envs {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Process {
        child,
        log: log.to_owned(),
    }
}

/// Waits until `path` answers 200 on `port`, or the process exits.
pub fn wait_for(process: &mut Process, port: u16, path: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = process.child.try_wait().expect("wait") {
            panic!(
                "process exited ({status}) before {path} was ok; log:\n{}",
                process.log_text()
            );
        }
        if let Ok((200, _)) = call(port, "GET", path, &[], b"") {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{path} not ok after {timeout:?}; log:\n{}",
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One keep-alive HTTP/1.1 connection, reopened when the server answers `Connection: close`
/// (as the scorer does while draining), as a well-behaved client does.
pub struct Http {
    reader: BufReader<TcpStream>,
    port: u16,
    closed: bool,
}

impl Http {
    pub fn connect(port: u16) -> std::io::Result<Http> {
        Ok(Http {
            reader: BufReader::new(Self::open(port)?),
            port,
            closed: false,
        })
    }

    fn open(port: u16) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(stream)
    }

    /// Sends one request and reads the response: status and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if self.closed {
            self.reader = BufReader::new(Self::open(self.port)?);
            self.closed = false;
        }
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    self.closed = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// One request on a fresh connection.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    Http::connect(port)?.request(method, path, headers, body)
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(body)))
}

/// A vocabulary like the ETL's, with `labels` labels per column (`"0"`, `"1"`, ...).
pub fn vocabulary(labels: usize) -> FeatureVocabulary {
    FeatureVocabulary::new(
        ["AdvertiserID", "Domain", "RegionID", "CityID"]
            .iter()
            .map(|c| {
                let counts = (0..labels).map(|i| (i.to_string(), (labels - i) as u64));
                ((*c).to_owned(), StringIndexer::fit_from_counts(counts))
            })
            .collect(),
    )
}

/// The kit job's features, in order.
pub fn feature_names() -> Vec<String> {
    rtb_features::contract::bid_filtering("v").feature_names()
}

/// Rows in feature order whose labels depend on hour, advertiser and domain.
pub fn synthetic_rows(n: usize, labels: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let category = |u: f64| (u * (labels + 1) as f64).floor();
    for _ in 0..n {
        let row = [
            1.0 + (next() * 7.0).floor(),
            (next() * 24.0).floor(),
            category(next()),
            category(next()),
            category(next()),
            category(next()),
            (next() * 7.0).floor(),
        ];
        let logit = -1.5 + 0.08 * row[1] - 0.2 * row[2] + if row[3] < 3.0 { 1.0 } else { 0.0 };
        let p = 1.0 / (1.0 + f64::exp(-logit));
        x.extend(row);
        y.push(if next() < p { 1.0 } else { 0.0 });
    }
    (x, y)
}

/// Trains as the trainer does (its default parameters) and returns the booster.
pub fn train(x: &[f64], y: &[f32], iterations: usize) -> Booster {
    let params = serde_json::json!({
        "objective": "binary", "num_iterations": iterations, "learning_rate": 0.2,
        "max_depth": 5, "num_leaves": 32, "num_threads": 2, "verbosity": -1,
        "deterministic": true, "seed": 1
    });
    let names = feature_names();
    let mut dataset = Dataset::from_slice(x, y, names.len() as i32, true).expect("dataset");
    dataset.set_feature_names(&names).expect("feature names");
    Booster::train(dataset, &params).expect("lightgbm trains")
}

/// A model manifest as `rtb-trainer` writes it.
pub fn manifest(
    model_id: &str,
    model_url: &str,
    model_text: &str,
    vocabulary_url: &str,
    vocabulary_version: &str,
) -> serde_json::Value {
    serde_json::json!({
        "model_id": model_id,
        "format": "lightgbm-text",
        "model": model_url,
        "model_sha256": rtb_model::sha256_hex(model_text.as_bytes()),
        "objective": "binary",
        "label": "label",
        "features": feature_names(),
        "vocabulary_version": vocabulary_version,
        "vocabulary": vocabulary_url,
        "contract": rtb_features::contract::bid_filtering(vocabulary_version),
        // the trainer publishes its best iteration's trees, so the file holds that many
        "best_iteration": rtb_model::Ensemble::parse(model_text).map_or(1, |e| e.iterations()),
        "created_at": "2026-11-26T17:00:00Z",
    })
}

/// Writes a model and its manifest under `root/models/<model_id>/` (local folder that `base`
/// names, e.g. `file:///...` or `s3://bucket`), the manifest last; returns the manifest URL.
pub fn publish_files(
    root: &Path,
    base: &str,
    model_id: &str,
    model_text: &str,
    vocabulary_url: &str,
    vocabulary_version: &str,
) -> String {
    let dir = root.join("models").join(model_id);
    std::fs::create_dir_all(&dir).expect("model folder");
    std::fs::write(dir.join("model.txt"), model_text).expect("model file");
    let model_url = format!("{base}/models/{model_id}/model.txt");
    let manifest = manifest(
        model_id,
        &model_url,
        model_text,
        vocabulary_url,
        vocabulary_version,
    );
    std::fs::write(
        dir.join("model-manifest.json"),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("manifest file");
    format!("{base}/models/{model_id}/model-manifest.json")
}

/// Request `i` of a varied, deterministic stream: unseen and missing domains, desktop and
/// phone user agents, a paying price on every tenth.
pub fn request(i: usize) -> serde_json::Value {
    let domain = if i % 6 == 5 {
        None
    } else if i.is_multiple_of(4) {
        Some("never-seen".to_owned())
    } else {
        Some((i % 9).to_string())
    };
    let agent = if i.is_multiple_of(2) {
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/28.0.1500.95 Safari/537.36"
    } else {
        "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B143 Safari/8536.25"
    };
    serde_json::json!({
        "bidId": format!("bid-{i}"),
        "dayOfWeek": 1 + i % 7,
        "hour": i % 24,
        "regionId": (i % 5).to_string(),
        "cityId": (i % 11).to_string(),
        "domainId": domain,
        "advertiserId": (i % 3).to_string(),
        "userAgent": agent,
        "biddingPrice": 300,
    })
}

/// The kit model's input row for [`request`] `i` over [`vocabulary`] `labels`, worked out
/// here by hand (the vocabulary maps label `"k"` to index `k`; unseen and null to `labels`).
pub fn expected_row(i: usize, labels: usize) -> Vec<f64> {
    let index = |v: Option<String>| {
        v.and_then(|v| v.parse::<usize>().ok())
            .filter(|k| *k < labels)
            .unwrap_or(labels) as f64
    };
    let r = request(i);
    let text = |name: &str| r[name].as_str().map(str::to_owned);
    let device = rtb_features::device_type(text("userAgent").as_deref()).id();
    vec![
        r["dayOfWeek"].as_f64().unwrap_or(f64::NAN),
        r["hour"].as_f64().unwrap_or(f64::NAN),
        index(text("advertiserId")),
        index(text("domainId")),
        index(text("regionId")),
        index(text("cityId")),
        f64::from(device),
    ]
}

/// Writes parameters to a file-backed parameter store.
pub fn put_params(path: &Path, pairs: &[(&str, &str)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = ParameterStore::open(path.to_str().expect("utf8"))
            .await
            .expect("store");
        store.put_many(pairs).await.expect("put");
    });
}

/// A file model store under `dir/store` holding the 8-column vocabulary, and the parameter file
/// `dir/params.json` scorers are pointed at.
pub struct ModelStore {
    pub root: PathBuf,
    pub base: String,
    pub vocabulary_url: String,
    pub vocabulary_version: String,
    pub params: PathBuf,
}

impl ModelStore {
    pub fn new(dir: &Path) -> ModelStore {
        let root = dir.join("store");
        let base = format!("file://{}", root.display());
        let vocabulary = vocabulary(8);
        std::fs::create_dir_all(&root).expect("root");
        std::fs::write(
            root.join("vocabulary.json"),
            vocabulary.to_json().expect("json"),
        )
        .expect("vocabulary");
        ModelStore {
            vocabulary_url: format!("{base}/vocabulary.json"),
            vocabulary_version: vocabulary.version.clone(),
            params: dir.join("params.json"),
            root,
            base,
        }
    }

    /// Writes `model` (a LightGBM text) as `id`; returns its manifest URL.
    pub fn files(&self, id: &str, model: &str) -> String {
        publish_files(
            &self.root,
            &self.base,
            id,
            model,
            &self.vocabulary_url,
            &self.vocabulary_version,
        )
    }

    /// Writes `model` as `id` and points the parameter file at it.
    pub fn publish(&self, id: &str, model: &str) {
        let url = self.files(id, model);
        put_params(&self.params, &[(rtb_params::names::MODEL_MANIFEST, &url)]);
    }
}
