//! `rtb-adserver-sim replay`: its flags, and the run from loading the requests to writing the
//! results.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rtb_params::{ParameterStore, names};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::error::{Result, SimError};
use crate::http::{Client, Target};
use crate::payload::{Endpoint, Payloads, UtcOffset};
use crate::report;
use crate::requests;
use crate::run::{self, LoadModel, RunSettings};
use crate::stats::{RunInfo, Summary};
use crate::statsd::Statsd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadModelName {
    /// A constant arrival rate (--rate); latency from each call's intended send time.
    Open,
    /// --connections workers, each sending its next call when the last is answered (the
    /// original's model; hides server stalls).
    Closed,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The scorer's base URL.
    #[arg(long, env = "RTB_TARGET", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Where /aik/inference_data is read when --inference-data is not given: a JSON file (path
    /// or file://), or `ssm://` (AWS SSM; `ssm://?endpoint=URL&region=R` for an emulator).
    #[arg(
        long,
        env = "RTB_PARAMETER_STORE",
        default_value = "data/parameter-store.json"
    )]
    pub parameter_store: String,
    /// The ETL's inference requests (JSON lines): a local folder or file, file:// or s3://
    /// (a prefix or one object). Overrides the parameter store.
    #[arg(long, env = "RTB_INFERENCE_DATA")]
    pub inference_data: Option<String>,
    /// How many requests to load (the first ones, in file order); calls cycle through them.
    #[arg(long, env = "RTB_LOAD_LIMIT", default_value_t = 20_000)]
    pub load_limit: usize,
    /// Which scorer endpoint to call.
    #[arg(long, env = "RTB_ENDPOINT", value_enum, default_value = "single")]
    pub endpoint: Endpoint,
    /// Requests per call on the batch endpoint.
    #[arg(long, env = "RTB_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,
    /// Load model: open (constant rate, honest tail) or closed (the original's).
    #[arg(long, env = "RTB_LOAD_MODEL", value_enum, default_value = "open")]
    pub load_model: LoadModelName,
    /// Open loop: calls per second.
    #[arg(long, env = "RTB_RATE", default_value_t = 100.0)]
    pub rate: f64,
    /// Open loop: most connections (so calls in flight) at once; a call due when all are busy
    /// waits, and the wait counts in its latency.
    #[arg(long, env = "RTB_MAX_CONNECTIONS", default_value_t = 64)]
    pub max_connections: usize,
    /// Closed loop: connections, each a worker sending one call at a time.
    #[arg(long, env = "RTB_CONNECTIONS", default_value_t = 4)]
    pub connections: usize,
    /// Seconds of warm-up before measuring (calls sent, not counted).
    #[arg(long, env = "RTB_WARMUP", default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured after the warm-up (default 30 unless --calls is given).
    #[arg(long, env = "RTB_DURATION")]
    pub duration: Option<f64>,
    /// Measured calls to make (the run stops at --duration or --calls, whichever comes first).
    #[arg(long, env = "RTB_CALLS")]
    pub calls: Option<u64>,
    /// Run until SIGTERM or ctrl-c (the ECS task), logging progress; then summarise as usual.
    #[arg(long, env = "RTB_RUN_FOREVER", conflicts_with_all = ["duration", "calls"])]
    pub run_forever: bool,
    /// Milliseconds a call may take from sending to the end of its answer.
    #[arg(long, env = "RTB_TIMEOUT_MS", default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Milliseconds to establish a connection.
    #[arg(long, env = "RTB_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub connect_timeout_ms: u64,
    /// Seconds to wait for the scorer's /readyz to answer 200 before giving up.
    #[arg(long, env = "RTB_READY_TIMEOUT", default_value_t = 10.0)]
    pub ready_timeout: f64,
    /// Seconds between progress lines in the log; 0 for none.
    #[arg(long, env = "RTB_PROGRESS_INTERVAL", default_value_t = 10.0)]
    pub progress_interval: f64,
    /// StatsD agent, host:port (the original's dashboard reads adserver_client.*).
    #[arg(long, env = "RTB_STATSD")]
    pub statsd: Option<String>,
    /// Where summary.json and report.html are written: a local folder, file:// or s3://.
    #[arg(long, env = "RTB_REPORT_DIR", default_value = "data/adserver-sim")]
    pub report_dir: String,
    /// OpenRTB: the UTC offset of the model's time zone (the zone of its feature contract,
    /// +08:00 for iPinYou logs, or the scorer's --time-zone), so the timestamps sent read back
    /// as each request's day of week and hour.
    #[arg(
        long,
        env = "RTB_TIME_ZONE_OFFSET",
        default_value = "+08:00",
        allow_hyphen_values = true
    )]
    pub time_zone_offset: String,
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        SimError::BadConfig(format!(
            "--{name} is {value}; it must be a number of seconds, 0 or more"
        ))
    })
}

impl ReplayArgs {
    /// The run's settings, every value checked.
    pub fn settings(&self) -> Result<RunSettings> {
        let target = Target::parse(&self.target)?;
        let positive = |name: &str, value: usize| {
            if value == 0 {
                Err(SimError::BadConfig(format!("--{name} must be at least 1")))
            } else {
                Ok(value)
            }
        };
        positive("load-limit", self.load_limit)?;
        positive("batch-size", self.batch_size)?;
        let model = match self.load_model {
            LoadModelName::Open => {
                // checked here so a bad rate fails before anything is loaded
                crate::schedule::Schedule::new(self.rate, Duration::ZERO, None, None)?;
                LoadModel::Open {
                    rate: self.rate,
                    max_connections: positive("max-connections", self.max_connections)?,
                }
            }
            LoadModelName::Closed => LoadModel::Closed {
                connections: positive("connections", self.connections)?,
            },
        };
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(SimError::BadConfig(
                "--timeout-ms and --connect-timeout-ms must be at least 1".into(),
            ));
        }
        let duration = match (self.duration, self.calls) {
            (Some(d), _) => Some(seconds("duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(30)),
        };
        if self.calls == Some(0) {
            return Err(SimError::BadConfig("--calls must be at least 1".into()));
        }
        let progress = seconds("progress-interval", self.progress_interval)?;
        Ok(RunSettings {
            client: Client {
                target,
                timeout: Duration::from_millis(self.timeout_ms),
                connect_timeout: Duration::from_millis(self.connect_timeout_ms),
                resent: Arc::default(),
            },
            model,
            warmup: seconds("warmup", self.warmup)?,
            duration,
            calls: self.calls,
            run_forever: self.run_forever,
            progress_interval: (!progress.is_zero()).then_some(progress),
            timeline_step: Duration::from_secs(1),
        })
    }

    fn run_info(&self, settings: &RunSettings, rows_per_call: usize) -> RunInfo {
        let (load_model, intended_rate, connections) = match settings.model {
            LoadModel::Open {
                rate,
                max_connections,
            } => ("open", Some(rate), max_connections),
            LoadModel::Closed { connections } => ("closed", None, connections),
        };
        RunInfo {
            target: settings.client.target.url.clone(),
            endpoint: self.endpoint.name().to_owned(),
            load_model: load_model.to_owned(),
            intended_rate,
            connections,
            rows_per_call,
            warmup_s: settings.warmup.as_secs_f64(),
            duration_s: settings.duration.map(|d| d.as_secs_f64()),
            calls_limit: settings.calls,
            run_forever: settings.run_forever,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// Where the requests are: the flag, else `/aik/inference_data` in the parameter store.
async fn inference_data(args: &ReplayArgs) -> Result<String> {
    if let Some(location) = &args.inference_data {
        return Ok(location.clone());
    }
    let store = ParameterStore::open(&args.parameter_store).await?;
    store
        .get(names::INFERENCE_DATA)
        .await?
        .ok_or_else(|| SimError::NoInferenceData {
            store: store.to_string(),
            name: names::INFERENCE_DATA,
        })
}

/// Cancels `stop` on SIGTERM or ctrl-c.
fn stop_on_signal(stop: CancellationToken) -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(SimError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = stop.cancelled() => return,
        }
        info!("stopping: calls in flight finish, then the summary is written");
        stop.cancel();
    });
    Ok(())
}

/// The whole replay: load, check the scorer is ready, run, summarise. The summary is printed
/// and written even when every call failed (then the error says so).
pub async fn replay(args: &ReplayArgs) -> Result<Summary> {
    let settings = args.settings()?;
    UtcOffset::parse(&args.time_zone_offset)?;
    let statsd = match &args.statsd {
        Some(address) => Statsd::udp(address)?,
        None => Statsd::disabled(),
    };
    let location = inference_data(args).await?;
    let loaded = requests::load(&location, args.load_limit).await?;
    let payloads = Arc::new(Payloads::new(
        args.endpoint,
        args.batch_size,
        &loaded.requests,
        UtcOffset::parse(&args.time_zone_offset)?,
    )?);
    settings
        .client
        .wait_ready(seconds("ready-timeout", args.ready_timeout)?)
        .await?;
    let stop = CancellationToken::new();
    stop_on_signal(stop.clone())?;
    let started_at = chrono::Utc::now();
    let served = settings.client.served_model().await;
    let info = args.run_info(&settings, payloads.rows_per_call());
    info!(
        target = %info.target,
        endpoint = %info.endpoint,
        load_model = %info.load_model,
        rate = info.intended_rate,
        connections = info.connections,
        warmup_s = info.warmup_s,
        duration_s = info.duration_s,
        calls = info.calls_limit,
        run_forever = info.run_forever,
        "replaying"
    );
    let measured = run::run(&settings, payloads, statsd, stop.clone()).await;
    stop.cancel();
    let mut summary = measured.recorder.summary(info, loaded.report, measured.end);
    summary.calls.resent = settings.client.resent.load(Ordering::Relaxed);
    summary.started_at = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    summary.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match served {
        Ok(model) => {
            summary.model_at_end = settings
                .client
                .served_model()
                .await
                .ok()
                .filter(|end| end.model_id != model.model_id);
            summary.model = Some(model);
        }
        Err(reason) => summary.model_unknown = Some(reason),
    }
    println!("{}", report::text(&summary));
    report::write(&args.report_dir, &summary).await?;
    if summary.calls.sent > 0 && summary.calls.ok == 0 {
        let errors: Vec<String> = summary
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        return Err(SimError::AllFailed {
            calls: summary.calls.sent,
            errors: errors.join(", "),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn parse(flags: &[&str]) -> Result<RunSettings> {
        let mut all = vec!["test"];
        all.extend_from_slice(flags);
        Test::try_parse_from(all)
            .map_err(|e| SimError::BadConfig(e.to_string()))?
            .args
            .settings()
    }

    #[test]
    fn settings_are_checked() {
        let s = parse(&[]).expect("defaults");
        assert_eq!(
            s.model,
            LoadModel::Open {
                rate: 100.0,
                max_connections: 64
            }
        );
        assert_eq!(s.duration, Some(Duration::from_secs(30)), "stops by itself");
        let s = parse(&["--calls", "500000", "--load-model", "closed"]).expect("calls");
        assert_eq!((s.duration, s.calls), (None, Some(500_000)));
        assert_eq!(s.model, LoadModel::Closed { connections: 4 });
        for bad in [
            &["--rate", "0"][..],
            &["--batch-size", "0"],
            &["--warmup", "-1"],
            &["--calls", "0"],
            &["--target", "localhost:8080"],
            &["--load-model", "closed", "--connections", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            Test::try_parse_from(["test", "--run-forever", "--duration", "5"]).is_err(),
            "forever has no limit"
        );
        let forever = parse(&["--run-forever", "--progress-interval", "0"]).expect("forever");
        assert!(forever.run_forever && forever.progress_interval.is_none());
        let args = Test::try_parse_from(["test", "--time-zone-offset", "-05:00"]).expect("offset");
        assert_eq!(args.args.time_zone_offset, "-05:00");
    }
}
