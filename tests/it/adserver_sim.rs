//! The real `rtb-adserver-sim` binary: replaying inference data at the real scorer (all three
//! endpoints, likelihoods checked against the model), an open loop that reports a server stall
//! in its p99 where the closed loop hides it, StatsD packets as the dashboard reads them, a
//! scorer that is down, and the run-forever mode stopped by SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtb_model::Ensemble;
use rtb_params::names;

use crate::scorer_support::{
    ModelStore, Process, expected_row, free_port, put_params, request, spawn, synthetic_rows,
    train, wait_for, workspace_binary,
};

/// `n` requests as the ETL writes them, in two part files, with one malformed and one blank
/// line in the first; returns the folder.
fn write_inference_data(root: &Path, n: usize) -> (PathBuf, Vec<serde_json::Value>) {
    let dir = root.join("inference-data");
    std::fs::create_dir_all(&dir).expect("folder");
    let requests: Vec<serde_json::Value> = (0..n).map(request).collect();
    let line = |r: &serde_json::Value| serde_json::to_string(r).expect("json");
    let half = n / 2;
    let mut first: String = requests[..half].iter().map(|r| line(r) + "\n").collect();
    first.push_str("{\"bidId\": \"cut short\n\n");
    let second: String = requests[half..].iter().map(|r| line(r) + "\n").collect();
    std::fs::write(dir.join("part-0.json"), first).expect("part 0");
    std::fs::write(dir.join("part-1.json"), second).expect("part 1");
    std::fs::write(dir.join("_SUCCESS"), "").expect("marker");
    (dir, requests)
}

/// Runs the simulator to its end; its output and the summary it wrote.
fn replay(args: &[&str], report: &Path) -> (Output, Option<serde_json::Value>) {
    let output = Command::new(workspace_binary("rtb-adserver-sim"))
        .arg("replay")
        .args(args)
        .args(["--report-dir", report.to_str().expect("utf8")])
        .env_remove("RTB_CONFIG")
        .env("RTB_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("rtb-adserver-sim runs");
    let summary = std::fs::read(report.join("summary.json"))
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).expect("summary.json is json"));
    (output, summary)
}

fn replay_ok(args: &[&str], report: &Path) -> serde_json::Value {
    let (output, summary) = replay(args, report);
    assert!(
        output.status.success(),
        "rtb-adserver-sim {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    summary.expect("summary.json written")
}

fn f64_at(v: &serde_json::Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

fn u64_at(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

#[test]
fn replays_the_etl_requests_at_the_real_scorer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(dir.path());
    let (x, y) = synthetic_rows(4000, 8, 11);
    let text = train(&x, &y, 20).save_string().expect("text");
    let manifest = store.files("m1", &text);
    let (data, requests) = write_inference_data(dir.path(), 40);
    let data_url = format!("file://{}/", data.display());
    let params = dir.path().join("params.json");
    put_params(
        &params,
        &[
            (names::MODEL_MANIFEST, manifest.as_str()),
            (names::INFERENCE_DATA, data_url.as_str()),
        ],
    );

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut scorer = spawn(
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
            "0",
        ],
        &[],
        &dir.path().join("scorer.log"),
    );
    wait_for(&mut scorer, port, "/readyz", Duration::from_secs(60));

    // what the model says for each loaded request: every request is replayed twice below, so
    // the mean, min and max of the answers are known exactly
    let ensemble = Ensemble::parse(&text).expect("model parses");
    assert_eq!(requests.len(), 40);
    let expected: Vec<f64> = (0..requests.len())
        .map(|i| ensemble.predict(&expected_row(i, 8)))
        .collect();
    let mean = expected.iter().sum::<f64>() / expected.len() as f64;
    let min = expected.iter().copied().fold(f64::INFINITY, f64::min);
    let max = expected.iter().copied().fold(0.0, f64::max);
    let target = format!("http://127.0.0.1:{port}");
    let params = params.to_str().expect("utf8");
    let check = |summary: &serde_json::Value, calls: u64, endpoint: &str| {
        assert_eq!(summary["run"]["endpoint"], endpoint);
        assert_eq!(u64_at(summary, "/calls/sent"), calls, "{summary:#}");
        assert_eq!(u64_at(summary, "/calls/ok"), calls, "{summary:#}");
        assert_eq!(u64_at(summary, "/calls/failed"), 0);
        assert_eq!(summary["errors"], serde_json::json!({}));
        // the report says which model answered, and when
        assert_eq!(summary["model"]["model_id"], "m1", "{summary:#}");
        assert_eq!(u64_at(summary, "/model/trees"), 20);
        assert!(summary["model_at_end"].is_null());
        assert!(
            summary["started_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 20)
        );
        assert!(summary["finished_at"].as_str() >= summary["started_at"].as_str());
        assert_eq!(u64_at(summary, "/likelihood/count"), 80, "{endpoint}");
        assert_eq!(u64_at(summary, "/calls/rows_scored"), 80);
        let got_mean = f64_at(summary, "/likelihood/mean");
        assert!(
            (got_mean - mean).abs() < 1e-12,
            "{endpoint}: {got_mean} vs {mean}"
        );
        // json on the way (scorer to simulator, summary to test) may move a float by an ulp
        let close = |got: f64, want: f64| (got - want).abs() <= 1e-12;
        let got = f64_at(summary, "/likelihood/min");
        assert!(close(got, min), "{endpoint}: min {got} vs {min}");
        let got = f64_at(summary, "/likelihood/max");
        assert!(close(got, max), "{endpoint}: max {got} vs {max}");
        let buckets = summary["likelihood"]["buckets"]
            .as_array()
            .expect("buckets");
        let total: u64 = buckets.iter().filter_map(|b| b["count"].as_u64()).sum();
        assert_eq!(total, 80, "the distribution holds every answer");
        assert_eq!(u64_at(summary, "/latency_ms/count"), calls);
        let p50 = f64_at(summary, "/latency_ms/p50");
        let p99 = f64_at(summary, "/latency_ms/p99");
        let top = f64_at(summary, "/latency_ms/max");
        assert!(0.0 < p50 && p50 <= p99 && p99 <= top, "{summary:#}");
        assert_eq!(u64_at(summary, "/openrtb_time_mismatches"), 0);
    };

    // single requests, closed loop, the location from the parameter store
    let out = dir.path().join("single");
    let summary = replay_ok(
        &[
            "--target",
            &target,
            "--parameter-store",
            params,
            "--endpoint",
            "single",
            "--load-model",
            "closed",
            "--connections",
            "2",
            "--calls",
            "80",
            "--warmup",
            "0",
        ],
        &out,
    );
    check(&summary, 80, "single");
    assert_eq!(summary["stopped_by"], "calls");
    let loaded = &summary["requests"];
    assert_eq!(u64_at(loaded, "/loaded"), 40);
    assert_eq!(u64_at(loaded, "/malformed"), 1);
    assert_eq!(u64_at(loaded, "/blank"), 1);
    assert_eq!(u64_at(loaded, "/lines"), 42);
    assert_eq!(
        (
            u64_at(loaded, "/files_listed"),
            u64_at(loaded, "/files_read"),
            u64_at(loaded, "/files_skipped")
        ),
        (3, 2, 1)
    );
    assert!(
        loaded["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("part-0.json:21")),
        "{loaded:#}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert_eq!(html.matches("<svg").count(), 4, "four charts");

    // batches of 8, open loop, the location from the flag
    let summary = replay_ok(
        &[
            "--target",
            &target,
            "--inference-data",
            data.to_str().expect("utf8"),
            "--endpoint",
            "batch",
            "--batch-size",
            "8",
            "--load-model",
            "open",
            "--rate",
            "200",
            "--calls",
            "10",
            "--warmup",
            "0.1",
        ],
        &dir.path().join("batch"),
    );
    check(&summary, 10, "batch");
    assert!(u64_at(&summary, "/calls/warmup") >= 1, "{summary:#}");
    assert_eq!(f64_at(&summary, "/run/intended_rate"), 200.0);

    // OpenRTB bid requests built from the same records read back the same likelihoods
    let summary = replay_ok(
        &[
            "--target",
            &target,
            "--inference-data",
            &data_url,
            "--endpoint",
            "openrtb",
            "--load-model",
            "open",
            "--rate",
            "400",
            "--calls",
            "80",
            "--warmup",
            "0",
        ],
        &dir.path().join("openrtb"),
    );
    check(&summary, 80, "openrtb");

    // the load limit cycles a few requests over more calls
    let summary = replay_ok(
        &[
            "--target",
            &target,
            "--inference-data",
            &data_url,
            "--load-limit",
            "3",
            "--load-model",
            "closed",
            "--connections",
            "1",
            "--calls",
            "9",
            "--warmup",
            "0",
        ],
        &dir.path().join("limit"),
    );
    assert_eq!(u64_at(&summary, "/requests/loaded"), 3);
    assert_eq!(u64_at(&summary, "/requests/files_not_needed"), 1);
    let first3 = &expected[..3];
    let mean3 = first3.iter().sum::<f64>() / 3.0;
    assert!((f64_at(&summary, "/likelihood/mean") - mean3).abs() < 1e-12);

    scorer.terminate();
    let status = scorer.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", scorer.log_text());
}

/// A scoring server for tests: answers at once, except that once, at its `stall_at`-th scoring
/// request, it freezes for `stall` (every request it is handling then waits too), and it
/// answers 503 to every `fail_every`-th.
struct TestServer {
    port: u16,
    scored: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Default)]
struct Behaviour {
    stall_at: Option<u64>,
    stall: Duration,
    fail_every: Option<u64>,
}

impl TestServer {
    fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scored = Arc::new(AtomicU64::new(0));
        let frozen_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let counter = scored.clone();
        // threads end with the test binary; each connection is served on its own thread
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                let frozen_until = frozen_until.clone();
                std::thread::spawn(move || serve(stream, behaviour, &counter, &frozen_until));
            }
        });
        TestServer { port, scored }
    }

    fn target(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(
    stream: TcpStream,
    behaviour: Behaviour,
    counter: &AtomicU64,
    frozen_until: &Mutex<Option<Instant>>,
) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = if path == "/readyz" {
            ("200 OK", r#"{"ready":true}"#.to_owned())
        } else {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let until = {
                let mut frozen = frozen_until.lock().expect("lock");
                if behaviour.stall_at == Some(n) {
                    *frozen = Some(Instant::now() + behaviour.stall);
                }
                *frozen
            };
            if let Some(until) = until {
                let now = Instant::now();
                if now < until {
                    std::thread::sleep(until - now);
                }
            }
            if behaviour.fail_every.is_some_and(|k| n.is_multiple_of(k)) {
                (
                    "503 Service Unavailable",
                    r#"{"error":"not_ready"}"#.to_owned(),
                )
            } else {
                (
                    "200 OK",
                    r#"{"bidId":"b","likelihood":0.25,"modelVersion":"test"}"#.to_owned(),
                )
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn the_open_loop_reports_a_stall_that_the_closed_loop_hides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = write_inference_data(dir.path(), 10);
    let data = data.to_str().expect("utf8");
    let stall = Duration::from_secs(1);

    // 200 calls/s for 2 s; the server freezes for 1 s at the 50th call, so the ~200 calls due
    // during the freeze wait up to a second each, from when they were due. Two connections at
    // most: the calls that wait for a free connection are charged for that wait too (measured
    // from their send instead, this run's p99 would be a few milliseconds)
    let server = TestServer::start(Behaviour {
        stall_at: Some(50),
        stall,
        fail_every: None,
    });
    let open = replay_ok(
        &[
            "--target",
            &server.target(),
            "--inference-data",
            data,
            "--load-model",
            "open",
            "--rate",
            "200",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--max-connections",
            "2",
            "--timeout-ms",
            "5000",
        ],
        &dir.path().join("open"),
    );
    assert_eq!(
        u64_at(&open, "/calls/sent"),
        400,
        "every planned call is sent"
    );
    assert_eq!(u64_at(&open, "/calls/ok"), 400, "{open:#}");
    assert!(server.scored.load(Ordering::SeqCst) >= 400);

    // the same freeze under the closed loop with one connection: one slow call out of 400
    let server = TestServer::start(Behaviour {
        stall_at: Some(50),
        stall,
        fail_every: None,
    });
    let closed = replay_ok(
        &[
            "--target",
            &server.target(),
            "--inference-data",
            data,
            "--load-model",
            "closed",
            "--connections",
            "1",
            "--calls",
            "400",
            "--warmup",
            "0",
            "--timeout-ms",
            "5000",
        ],
        &dir.path().join("closed"),
    );
    assert_eq!(u64_at(&closed, "/calls/ok"), 400, "{closed:#}");

    let open_p99 = f64_at(&open, "/latency_ms/p99");
    let closed_p99 = f64_at(&closed, "/latency_ms/p99");
    let closed_max = f64_at(&closed, "/latency_ms/max");
    let stall_ms = stall.as_secs_f64() * 1000.0;
    println!(
        "stall {stall_ms} ms: open p99 {open_p99} ms, closed p99 {closed_p99} ms (max {closed_max} ms)"
    );
    // both runs met the stall ...
    assert!(closed_max >= stall_ms * 0.9, "closed max {closed_max}");
    assert!(f64_at(&open, "/latency_ms/max") >= stall_ms * 0.9);
    // ... the open loop charges it to every call it delayed, the closed loop to one
    assert!(
        open_p99 >= stall_ms * 0.5,
        "open p99 {open_p99} ms hides the stall"
    );
    assert!(closed_p99 < stall_ms * 0.25, "closed p99 {closed_p99} ms");
    assert!(open_p99 > 2.0 * closed_p99);
    // the open loop's p90 still shows it: about half the calls were due during the freeze
    assert!(
        f64_at(&open, "/latency_ms/p90") >= stall_ms * 0.2,
        "{open:#}"
    );
}

#[test]
fn statsd_gets_the_dashboard_names_and_errors_are_counted_by_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = write_inference_data(dir.path(), 10);
    let agent = UdpSocket::bind("127.0.0.1:0").expect("agent");
    agent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let statsd = agent.local_addr().expect("addr").to_string();
    let server = TestServer::start(Behaviour {
        fail_every: Some(5),
        ..Behaviour::default()
    });
    let summary = replay_ok(
        &[
            "--target",
            &server.target(),
            "--inference-data",
            data.to_str().expect("utf8"),
            "--load-model",
            "closed",
            "--connections",
            "1",
            "--calls",
            "20",
            "--warmup",
            "0",
            "--statsd",
            &statsd,
        ],
        &dir.path().join("out"),
    );
    assert_eq!(u64_at(&summary, "/calls/ok"), 16);
    assert_eq!(u64_at(&summary, "/calls/failed"), 4);
    assert_eq!(u64_at(&summary, "/errors/http_503"), 4, "{summary:#}");
    assert_eq!(f64_at(&summary, "/likelihood/mean"), 0.25);

    // the simulator has exited: everything it sent is in the socket's buffer
    let mut metrics = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Ok(n) = agent.recv(&mut buf) {
        metrics.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned),
        );
    }
    let count = |prefix: &str, suffix: &str| {
        metrics
            .iter()
            .filter(|m| m.starts_with(prefix) && m.ends_with(suffix))
            .count()
    };
    assert_eq!(
        count("adserver_client.adserver_latency_ms:", "|ms"),
        16,
        "{metrics:?}"
    );
    assert!(
        metrics
            .iter()
            .any(|m| m.starts_with("adserver_client.adserver_latency_ms:") && m.contains('.')),
        "latencies in fractional milliseconds: {metrics:?}"
    );
    assert_eq!(count("adserver_client.likelihood_to_bid:0.25", "|g"), 16);
    assert_eq!(count("adserver_client.adserver_errors:1", "|c"), 4);
}

#[test]
fn a_down_scorer_or_missing_data_fail_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = write_inference_data(dir.path(), 4);
    let data = data.to_str().expect("utf8");
    let down = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (output, summary) = replay(
        &[
            "--target",
            &down,
            "--inference-data",
            data,
            "--ready-timeout",
            "1",
        ],
        &dir.path().join("down"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not hang"
    );
    assert!(
        stderr.contains("is not ready after") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert!(summary.is_none(), "nothing was measured");

    let params = dir.path().join("empty-params.json");
    let (output, _) = replay(
        &[
            "--target",
            &down,
            "--parameter-store",
            params.to_str().expect("utf8"),
        ],
        &dir.path().join("none"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("has no /aik/inference_data"), "{stderr}");
}

#[test]
fn run_forever_stops_on_sigterm_and_writes_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = write_inference_data(dir.path(), 4);
    let server = TestServer::start(Behaviour::default());
    let out = dir.path().join("out");
    let mut process: Process = spawn(
        &workspace_binary("rtb-adserver-sim"),
        &[
            "replay",
            "--target",
            &server.target(),
            "--inference-data",
            data.to_str().expect("utf8"),
            "--run-forever",
            "--rate",
            "100",
            "--warmup",
            "0",
            "--progress-interval",
            "0.3",
            "--report-dir",
            out.to_str().expect("utf8"),
        ],
        &[],
        &dir.path().join("sim.log"),
    );
    let started = Instant::now();
    while server.scored.load(Ordering::SeqCst) < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no load; log:\n{}",
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(400));
    process.terminate();
    let status = process.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}; log:\n{}", process.log_text());
    let log = process.log_text();
    assert!(log.contains("progress"), "periodic progress lines: {log}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["stopped_by"], "signal");
    assert_eq!(summary["run"]["run_forever"], true);
    let sent = u64_at(&summary, "/calls/sent");
    assert!(sent >= 50, "{summary:#}");
    assert_eq!(sent, u64_at(&summary, "/calls/ok"));
}
