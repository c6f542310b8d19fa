//! The feature job on a real Ballista cluster (one `rtb-scheduler`, two `rtb-executor`
//! processes) reading bzip2 logs from and writing features to a real S3-compatible server
//! (s3s-fs), against the same job embedded; and a cluster that loses an executor mid-job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Server, binary, free_port, gzip_members, http_status, read_json, repo_root, reports_without,
    run_ok, s3_env, s3s_fs, sorted_rows,
};

struct Cluster {
    scheduler_port: u16,
    executors: Vec<(Server, u16)>,
    _scheduler: Server,
    env: Vec<(&'static str, String)>,
    work: PathBuf,
}

impl Cluster {
    /// Short timeouts so a killed executor is noticed in seconds, not minutes.
    fn start(env: &[(&'static str, String)], work: &Path, executors: usize) -> Cluster {
        let scheduler_port = free_port();
        let scheduler = spawn(
            "rtb-scheduler",
            env,
            &[
                "--port",
                &scheduler_port.to_string(),
                "--min-ready-executors",
                &executors.to_string(),
                "--executor-timeout-seconds",
                "6",
                "--expire-dead-executor-interval-seconds",
                "1",
            ],
            &work.join("scheduler.log"),
        );
        // executors make one connection attempt by default when the flag is 0; ours retry, but
        // waiting keeps the test independent of that
        crate::support::wait_listening("rtb-scheduler", scheduler_port);
        let mut cluster = Cluster {
            scheduler_port,
            executors: Vec::new(),
            _scheduler: scheduler,
            env: env.to_vec(),
            work: work.to_owned(),
        };
        for _ in 0..executors {
            cluster.add_executor();
        }
        cluster.wait_ready();
        cluster
    }

    fn add_executor(&mut self) {
        let executor = self.spawn_executor(self.executors.len());
        self.executors.push(executor);
    }

    fn spawn_executor(&self, n: usize) -> (Server, u16) {
        let (port, grpc, health) = (free_port(), free_port(), free_port());
        let executor = spawn(
            "rtb-executor",
            &self.env,
            &[
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--health-port",
                &health.to_string(),
                "--scheduler-port",
                &self.scheduler_port.to_string(),
                "--scheduler-host",
                "127.0.0.1",
                "--external-host",
                "127.0.0.1",
                "--slots",
                "2",
                "--heartbeat-seconds",
                "1",
                "--memory-limit",
                "512MiB",
                "--work-dir",
                self.work
                    .join(format!("executor-{n}"))
                    .to_str()
                    .expect("utf8"),
            ],
            &self.work.join(format!("executor-{n}.log")),
        );
        (executor, health)
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            // a port picked free can be taken before the executor binds it (another test's
            // connection): such an executor exits at once, and gets fresh ports
            for n in 0..self.executors.len() {
                if let Ok(Some(status)) = self.executors[n].0.0.try_wait() {
                    eprintln!("executor {n} exited at start ({status}); starting it again");
                    self.executors[n] = self.spawn_executor(n);
                }
            }
            let scheduler = http_status(self.scheduler_port, "/readyz");
            let executors: Vec<Option<u16>> = self
                .executors
                .iter()
                .map(|(_, health)| http_status(*health, "/readyz"))
                .collect();
            if scheduler == Some(200) && executors.iter().all(|s| *s == Some(200)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "cluster not ready after 240 s: scheduler {scheduler:?}, executors {executors:?}\n{}",
                log_tails(&self.work)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler_port)
    }
}

/// The last lines of every process log in `work`, for a failure message.
fn log_tails(work: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(work).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn spawn(name: &str, env: &[(&'static str, String)], args: &[&str], log: &Path) -> Server {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(binary(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Server(child)
}

/// The committed manifest of the latest run under `s3://aik/<out>`.
fn manifest(bucket_root: &Path, out: &str) -> Value {
    let latest = read_json(&bucket_root.join(out).join("latest.json"));
    let url = latest["manifest"].as_str().expect("manifest url");
    read_json(&bucket_root.join(url.trim_start_matches("s3://aik/")))
}

fn local(bucket_root: &Path, url: &str) -> PathBuf {
    bucket_root.join(url.trim_start_matches("s3://aik/"))
}

/// Input reports without the reading process and the parts read, which differ by design.
fn reports_without_reader(manifest: &Value) -> Vec<Value> {
    reports_without(manifest, &["reader_pid", "parts"])
}

/// An s3s-fs server whose bucket `aik` is a folder of a fresh temp dir, a work folder for
/// process logs, and the AWS environment pointing at the server.
fn s3_sandbox() -> (
    tempfile::TempDir,
    Server,
    PathBuf,
    PathBuf,
    Vec<(&'static str, String)>,
) {
    let root = tempfile::tempdir().expect("tempdir");
    let bucket = root.path().join("aik");
    std::fs::create_dir_all(&bucket).expect("bucket folder");
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).expect("work folder");
    let (s3, s3_port) = s3s_fs(root.path());
    (root, s3, bucket, work, s3_env(s3_port))
}

/// A generator summary's total of `field` over its days.
fn summed(summary: &Value, field: &str) -> u64 {
    summary["days"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d[field].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn cluster_run_equals_embedded_run_from_s3_to_s3() {
    let (_root, _s3, bucket, work, env) = s3_sandbox();
    // two days: two bid and two impression files, so both executors get scan tasks
    generate_two_days(
        &env,
        "s3://aik/raw",
        "15000",
        &["--compression", "bzip2", "--malformed-fraction", "0.01"],
    );
    // the same days as plain text, which the cluster reads in byte ranges (by S3 range GETs)
    generate_two_days(
        &env,
        "s3://aik/raw-plain",
        "15000",
        &["--malformed-fraction", "0.01"],
    );
    // and as many gzip members each, written beside them as S3 objects (s3s-fs serves files)
    gzip_members(&bucket.join("raw-plain"), &bucket.join("raw-gz"));
    std::fs::copy(
        bucket.join("raw-plain/generator-summary.json"),
        bucket.join("raw-gz/generator-summary.json"),
    )
    .expect("summary");
    let cluster = Cluster::start(&env, &work, 2);
    // a job we did not ship, which keeps every bid line: were a range read by more than one
    // task (as before 09922aa), its rows would be there twice and no GROUP BY would hide it
    let job = work.join("ungrouped.sql");
    std::fs::write(&job, UNGROUPED_JOB).expect("job");
    // and one whose grouped steps add aggregates under their own names: their rows are still
    // counted, on the cluster from the scheduler, and equal embedded's
    let counted = work.join("counted.sql");
    let shipped = std::fs::read_to_string(repo_root().join("etl/jobs/bid-filtering.sql"))
        .expect("shipped job");
    std::fs::write(&counted, counted_job(&shipped)).expect("job");
    let case = |compat, raw, range, job| Case {
        compat,
        raw,
        range,
        job,
    };
    for case in [
        // read strictly (the default), then as Spark reads (the malformed lines become rows)
        case("strict", "raw", "0", None),
        case("spark", "raw", "0", None),
        // whole files embedded against ranges on the cluster: 256 KiB of plain text, and
        // 256 KiB of bzip2 (a quarter of the range size), about one 900 kB block each
        case("strict", "raw-plain", "256KiB", None),
        case("strict", "raw", "1MiB", None),
        // 256 KiB of gzip members, each range decoding the members that start in it
        case("strict", "raw-gz", "1MiB", None),
        case("strict", "raw-plain", "256KiB", Some(job.as_path())),
        case("strict", "raw-plain", "256KiB", Some(counted.as_path())),
    ] {
        cluster_equals_embedded(&env, &work, &bucket, &cluster, case);
    }
    let lines = summed(
        &read_json(&bucket.join("raw-plain/generator-summary.json")),
        "bid_lines",
    );
    let recounted = manifest(&bucket, "cluster-strict-raw-plain-256KiB-counted");
    let plain = manifest(&bucket, "cluster-strict-raw-plain-256KiB");
    for step in ["bids_grouped", "imps_grouped"] {
        assert!(
            recounted["rows"][step].is_u64(),
            "{step} counted: {recounted}"
        );
    }
    assert_eq!(
        recounted["rows"]["bids_grouped"], plain["rows"]["bids_grouped"],
        "the same bids, grouped by the same columns"
    );
    let ungrouped = manifest(&bucket, "cluster-strict-raw-plain-256KiB-ungrouped");
    let rejected = ungrouped["rows"]["bids_rejected"]
        .as_u64()
        .expect("rejected");
    assert_eq!(
        ungrouped["rows"]["transformed"].as_u64(),
        Some(lines - rejected),
        "every accepted bid line once"
    );
}

/// The shipped job with an aggregate in each grouped step (a copy count, and the impressions
/// grouped by bid alone with `max` and a distinct count, which DataFusion plans as two
/// aggregations).
fn counted_job(shipped: &str) -> String {
    let bids = "SELECT BidID, \"Timestamp\", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice\nFROM bids";
    let imps = "SELECT BidID, BiddingPrice, PayingPrice, UserAgent\nFROM imps\nGROUP BY BidID, BiddingPrice, PayingPrice, UserAgent;";
    assert!(
        shipped.contains(bids) && shipped.contains(imps),
        "the shipped job changed"
    );
    shipped
        .replace(
            bids,
            "SELECT BidID, \"Timestamp\", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice,\n       count(*) AS copies\nFROM bids",
        )
        .replace(
            imps,
            "SELECT BidID, max(PayingPrice) AS PayingPrice, count(DISTINCT UserAgent) AS agents\nFROM imps\nGROUP BY BidID;",
        )
}

/// The shipped job without its duplicate collapsing: one row per accepted bid line.
const UNGROUPED_JOB: &str = "-- job: ungrouped
-- categorical: Domain
-- key: bidId
-- label: label
-- price: PayingPrice

-- step: transformed
SELECT b.BidID, spark_int(substr(b.\"Timestamp\", 9, 2)) AS hour, b.Domain,
       TRY_CAST(i.PayingPrice AS BIGINT) AS PayingPrice,
       CASE WHEN i.PayingPrice IS NOT NULL THEN 1 ELSE 0 END AS label
FROM (SELECT BidID, PayingPrice FROM imps GROUP BY BidID, PayingPrice) i
RIGHT JOIN bids b ON i.BidID = b.BidID;

-- step: inference_requests
SELECT BidID AS \"bidId\", hour AS \"hour\", Domain AS \"domainId\", label, PayingPrice
FROM transformed;

-- step: features
SELECT \"hour\" AS hour, encode('Domain', \"domainId\") AS \"IndexDomain\"
FROM inference_requests;
";

/// One comparison: how the logs are read, which of them, the cluster's range size, the job.
#[derive(Clone, Copy)]
struct Case<'a> {
    compat: &'a str,
    raw: &'a str,
    range: &'a str,
    job: Option<&'a Path>,
}

fn cluster_equals_embedded(
    env: &[(&'static str, String)],
    work: &Path,
    bucket: &Path,
    cluster: &Cluster,
    case: Case<'_>,
) {
    let Case {
        compat,
        raw,
        range: cluster_range,
        job,
    } = case;
    let params = |name: &str| work.join(name).to_string_lossy().into_owned();
    let tag = job
        .and_then(|j| j.file_stem())
        .map(|stem| format!("-{}", stem.to_string_lossy()))
        .unwrap_or_default();
    let (embedded_out, cluster_out) = (
        format!("embedded-{compat}-{raw}-{cluster_range}{tag}"),
        format!("cluster-{compat}-{raw}-{cluster_range}{tag}"),
    );
    let job_args: Vec<String> = job
        .map(|j| vec!["--job".to_owned(), j.to_string_lossy().into_owned()])
        .unwrap_or_default();
    let job_args: Vec<&str> = job_args.iter().map(String::as_str).collect();
    let input = format!("s3://aik/{raw}");
    run_ok(
        "rtb-etl",
        env,
        &[
            "run",
            "--input",
            &input,
            "--out",
            &format!("s3://aik/{embedded_out}"),
            "--compat",
            compat,
            "--range-size",
            "0",
            "--parameter-store",
            &params(&format!("{embedded_out}-params.json")),
        ]
        .iter()
        .chain(&job_args)
        .copied()
        .collect::<Vec<_>>(),
    );
    let ran = run_ok(
        "rtb-etl",
        env,
        &[
            "run",
            "--input",
            &input,
            "--out",
            &format!("s3://aik/{cluster_out}"),
            "--compat",
            compat,
            "--range-size",
            cluster_range,
            "--cluster",
            &cluster.url(),
            // a tiny shuffle buffer makes every shuffle writer spill: outputs must not change
            "--shuffle-buffer",
            "1MiB",
            "--parameter-store",
            &params(&format!("{cluster_out}-params.json")),
        ]
        .iter()
        .chain(&job_args)
        .copied()
        .collect::<Vec<_>>(),
    );
    let embedded = manifest(bucket, &embedded_out);
    let distributed = manifest(bucket, &cluster_out);
    assert_eq!(embedded["job"]["read_as"], compat, "{compat}");
    assert_eq!(distributed["job"]["read_as"], compat, "{compat}");
    assert_eq!(embedded["rows"], distributed["rows"], "{compat}: {ran}");
    assert_eq!(embedded["splits"], distributed["splits"], "{compat}");
    assert_eq!(
        embedded["vocabulary"], distributed["vocabulary"],
        "{compat}"
    );
    assert_eq!(
        reports_without_reader(&embedded),
        reports_without_reader(&distributed),
        "{compat}"
    );
    // the .bz2 files were decompressed on the executors, not by the client
    let executor_pids: Vec<u64> = cluster
        .executors
        .iter()
        .map(|(s, _)| u64::from(s.0.id()))
        .collect();
    for report in distributed["inputs"].as_array().expect("inputs") {
        match raw {
            "raw" => assert_eq!(report["compression"], "bzip2", "{report}"),
            "raw-gz" => assert_eq!(report["compression"], "gzip", "{report}"),
            _ => {}
        }
        if cluster_range == "0" {
            assert_eq!(report["parts"], 1, "{report}");
        } else if report["kind"] == "bid" {
            // 5 MB of bids in 256 KiB ranges, or 1.4 MB of bzip2 (or 1.8 MB of gzip) in
            // 256 KiB ranges
            let least = if raw == "raw-plain" { 10 } else { 5 };
            assert!(report["parts"].as_u64() >= Some(least), "{report}");
        }
        assert!(report["accepted"].as_u64() > Some(0), "{report}");
        let pid = report["reader_pid"].as_u64().expect("pid");
        assert!(
            executor_pids.contains(&pid),
            "{report} not read by an executor {executor_pids:?}"
        );
    }
    if compat == "strict" && job.is_none() {
        let summary = read_json(&bucket.join(format!("{raw}/generator-summary.json")));
        let valid_bids = summed(&summary, "valid_bids");
        assert_eq!(
            distributed["rows"]["transformed"].as_u64(),
            Some(valid_bids)
        );
    }
    for output in ["train", "valid", "test", "transformed"] {
        let e = sorted_rows(&local(
            bucket,
            embedded["outputs"][output].as_str().expect("url"),
        ));
        let c = sorted_rows(&local(
            bucket,
            distributed["outputs"][output].as_str().expect("url"),
        ));
        assert!(!e.is_empty(), "{output} is empty");
        assert_eq!(e.len(), c.len(), "{output} row counts");
        assert!(
            e == c,
            "{output} rows differ between embedded and cluster runs"
        );
    }
    assert_eq!(
        std::fs::read(local(
            bucket,
            embedded["outputs"]["vocabulary"].as_str().expect("url")
        ))
        .expect("vocabulary"),
        std::fs::read(local(
            bucket,
            distributed["outputs"]["vocabulary"].as_str().expect("url")
        ))
        .expect("vocabulary")
    );
}

#[test]
fn executor_lost_mid_job_commits_all_or_nothing_and_a_rerun_succeeds() {
    let (_root, _s3, bucket, work, env) = s3_sandbox();
    generate_two_days(&env, "s3://aik/raw", "100000", &[]);
    let summary = read_json(&bucket.join("raw/generator-summary.json"));
    let mut cluster = Cluster::start(&env, &work, 2);
    let params = work.join("params.json").to_string_lossy().into_owned();
    let run_args = [
        "run",
        "--input",
        "s3://aik/raw",
        "--out",
        "s3://aik/out",
        "--cluster",
        &cluster.url(),
        "--parameter-store",
        &params,
        // above the scheduler's 6 s executor timeout: a job Ballista stalls after the loss
        // fails cleanly instead of hanging the test
        "--stall-timeout-seconds",
        "30",
    ];
    // kill an executor once the job has written its first object
    let client = spawn_writing(&env, &run_args, &bucket);
    cluster.executors[1].0.kill();
    let output = client.wait_with_output().expect("client ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let valid_bids = summed(&summary, "valid_bids");
    eprintln!(
        "run with an executor killed mid-job: {}",
        if output.status.success() {
            "completed"
        } else {
            "failed cleanly"
        }
    );
    // grouped rows come from the scheduler's task metrics: a task run again must replace its
    // count, never add to it
    let distinct_imps = summed(&summary, "imp_lines") - summed(&summary, "duplicate_imp_lines");
    let grouped = |m: &Value| {
        (
            m["rows"]["bids_grouped"].as_u64(),
            m["rows"]["imps_grouped"].as_u64(),
        )
    };
    if output.status.success() {
        // the scheduler re-ran the lost work elsewhere
        let m = manifest(&bucket, "out");
        assert_eq!(m["rows"]["transformed"].as_u64(), Some(valid_bids));
        assert_eq!(grouped(&m), (Some(valid_bids), Some(distinct_imps)));
    } else {
        assert_nothing_committed(&bucket, &stderr);
    }
    // a fresh executor joins; the re-run commits complete output
    cluster.add_executor();
    cluster.executors.remove(1);
    cluster.wait_ready();
    let rerun = run_ok("rtb-etl", &env, &run_args);
    let m = manifest(&bucket, "out");
    assert_eq!(
        m["rows"]["transformed"].as_u64(),
        Some(valid_bids),
        "{rerun}"
    );
    assert_eq!(grouped(&m), (Some(valid_bids), Some(distinct_imps)));
    let positives: u64 = ["train", "valid", "test"]
        .iter()
        .map(|s| m["splits"][s]["label_1"].as_u64().unwrap_or(0))
        .sum();
    let labelled = summed(&summary, "labelled_wins");
    assert_eq!(positives, labelled);
}

/// A job whose only executor freezes mid-job (stopped, not killed: no task of it finishes, and
/// none can run elsewhere) is cancelled once the stall timeout passes, and the run fails with
/// nothing committed instead of waiting forever.
#[test]
fn a_job_that_finishes_no_task_is_cancelled_and_nothing_is_committed() {
    let (_root, _s3, bucket, work, env) = s3_sandbox();
    generate_two_days(&env, "s3://aik/raw", "100000", &[]);
    let cluster = Cluster::start(&env, &work, 1);
    let params = work.join("params.json").to_string_lossy().into_owned();
    let client = spawn_writing(
        &env,
        &[
            "run",
            "--input",
            "s3://aik/raw",
            "--out",
            "s3://aik/out",
            "--cluster",
            &cluster.url(),
            "--parameter-store",
            &params,
            "--stall-timeout-seconds",
            "10",
        ],
        &bucket,
    );
    let executor = cluster.executors[0].0.0.id().to_string();
    let stopped = Command::new("kill")
        .args(["-STOP", &executor])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    let output = client.wait_with_output().expect("client ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("finished no task for 10 s and was cancelled"),
        "{stderr}"
    );
    assert_nothing_committed(&bucket, &stderr);
}

/// Generates two days of logs under `out` (`extra`: more `generate` flags).
fn generate_two_days(
    env: &[(&'static str, String)],
    out: &str,
    bids_per_day: &str,
    extra: &[&str],
) {
    let mut args = vec![
        "generate",
        "--out",
        out,
        "--days",
        "2",
        "--bids-per-day",
        bids_per_day,
    ];
    args.extend_from_slice(extra);
    run_ok("rtb-etl", env, &args);
}

/// Starts `rtb-etl` with `args` and returns once its run has written its first object.
fn spawn_writing(env: &[(&'static str, String)], args: &[&str], bucket: &Path) -> Child {
    let client = Command::new(binary("rtb-etl"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RTB_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client starts");
    let started = Instant::now();
    while !bucket.join("out/runs").is_dir() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job never started writing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    client
}

/// A failed run said so, and left no manifest and no `latest.json` under `out`.
fn assert_nothing_committed(bucket: &Path, stderr: &str) {
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert!(
        !bucket.join("out/latest.json").exists(),
        "a failed run published latest.json"
    );
    let manifests = walk(&bucket.join("out"))
        .into_iter()
        .filter(|p| p.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 0, "a failed run left a manifest");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
