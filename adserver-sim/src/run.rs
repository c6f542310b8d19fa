//! The two load models.
//!
//! - **Open loop** (`--load-model open`): calls are due at a constant rate ([`Schedule`]) and
//!   sent when due, over a pool of at most `--max-connections` keep-alive connections, whatever
//!   the scorer is doing. Latency runs from the time a call was *due*: when the scorer stalls,
//!   every call that should have gone out meanwhile is charged the wait, and the stall shows in
//!   the tail as users would see it. When all connections are busy a call waits for one, and
//!   that wait counts too.
//! - **Closed loop** (`--load-model closed`): the original's model. `--connections` workers,
//!   each with one connection, send a call, wait for its answer, send the next. Latency runs from
//!   the send. A stalled scorer also stalls the senders, so the calls it delayed are never sent
//!   and never measured: the tail looks better than it was (coordinated omission). Kept for
//!   comparison with the original's numbers and for "as fast as it goes" throughput.
//!
//! Both exclude the warm-up (calls due, or sent, before `--warmup` has passed) from the
//! results, stop at `--duration` or after `--calls` measured calls (whichever comes first), or
//! run until SIGTERM / ctrl-c with `--run-forever`; a signal also ends a limited run early. Calls
//! in flight at the end finish (each is bounded by `--timeout-ms`) and are counted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::http::{CallError, CallErrorKind, Client, Pool};
use crate::payload::{CallBody, Payloads, read_answer};
use crate::schedule::{PlanEnd, Schedule};
use crate::stats::{Recorder, RunEnd};
use crate::statsd::Statsd;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    Open { rate: f64, max_connections: usize },
    Closed { connections: usize },
}

/// Everything a run needs besides the requests.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub client: Client,
    pub model: LoadModel,
    pub warmup: Duration,
    /// Measured time; `None` with `calls` set, or with `run_forever`.
    pub duration: Option<Duration>,
    /// Measured calls.
    pub calls: Option<u64>,
    pub run_forever: bool,
    /// Progress lines in the log; `None` for none.
    pub progress_interval: Option<Duration>,
    /// Resolution of the timeline.
    pub timeline_step: Duration,
}

/// What a run measured and how it ended.
pub struct Measured {
    pub recorder: Recorder,
    pub end: RunEnd,
}

/// What every call shares.
struct Shared {
    client: Client,
    payloads: Arc<Payloads>,
    statsd: Statsd,
    recorder: Mutex<Recorder>,
    measure_start: Instant,
    logged: Mutex<BTreeSet<CallErrorKind>>,
}

impl Shared {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one finished call whose latency runs from `from`.
    fn finish(
        &self,
        call: &CallBody,
        result: Result<(u16, Bytes), CallError>,
        from: Instant,
        measured: bool,
    ) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(from);
        let outcome = result
            .and_then(|(status, body)| read_answer(self.payloads.endpoint(), call, status, &body));
        match &outcome {
            Ok(scored) => self.statsd.scored(latency, &scored.likelihoods),
            Err(err) => {
                self.statsd.failed();
                let first = self
                    .logged
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(err.kind);
                if first {
                    warn!(kind = %err.kind, detail = %err.detail, "call failed (first of its kind; the rest are counted)");
                } else {
                    debug!(kind = %err.kind, detail = %err.detail, "call failed");
                }
            }
        }
        let mut recorder = self.recorder();
        if measured {
            recorder.record(
                now.saturating_duration_since(self.measure_start),
                latency,
                outcome.as_ref().map_err(|e| e.kind),
            );
        } else {
            recorder.warmup();
        }
    }
}

fn plan_end_label(end: PlanEnd) -> &'static str {
    match end {
        PlanEnd::Duration => "duration",
        PlanEnd::Calls => "calls",
    }
}

/// Runs the load model in `settings` until its limit or `stop`.
pub async fn run(
    settings: &RunSettings,
    payloads: Arc<Payloads>,
    statsd: Statsd,
    stop: CancellationToken,
) -> Measured {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client: settings.client.clone(),
        payloads,
        statsd: statsd.clone(),
        recorder: Mutex::new(Recorder::new(settings.timeline_step)),
        measure_start: start + settings.warmup,
        logged: Mutex::new(BTreeSet::new()),
    });
    let done = CancellationToken::new();
    let ticker = tokio::spawn(tick(
        shared.clone(),
        settings.progress_interval,
        done.clone(),
    ));
    let (stopped_by, measured, open_loop) = match settings.model {
        LoadModel::Open {
            rate,
            max_connections,
        } => {
            let (stopped_by, planned) =
                open_loop(&shared, settings, rate, max_connections, start, &stop).await;
            (stopped_by, planned, true)
        }
        LoadModel::Closed { connections } => {
            let stopped_by = closed_loop(&shared, settings, connections, &stop).await;
            (stopped_by, Duration::ZERO, false)
        }
    };
    done.cancel();
    let _ = ticker.await;
    statsd.finish().await;
    let recorder = match Arc::try_unwrap(shared) {
        Ok(shared) => shared
            .recorder
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        // a finished call task may not have dropped its handle yet: its counts are in
        Err(shared) => std::mem::replace(
            &mut *shared.recorder(),
            Recorder::new(settings.timeline_step),
        ),
    };
    let measured = measured.max(recorder.last_completion());
    Measured {
        recorder,
        end: RunEnd {
            stopped_by,
            measured,
            open_loop,
        },
    }
}

/// Sends call `i` when it is due; returns why it stopped and the measured span it planned.
async fn open_loop(
    shared: &Arc<Shared>,
    settings: &RunSettings,
    rate: f64,
    max_connections: usize,
    start: Instant,
    stop: &CancellationToken,
) -> (&'static str, Duration) {
    let (duration, calls) = if settings.run_forever {
        (None, None)
    } else {
        (settings.duration, settings.calls)
    };
    let schedule = match Schedule::new(rate, settings.warmup, duration, calls) {
        Ok(schedule) => schedule,
        Err(err) => {
            // the command line checked the rate already
            warn!(error = %err, "no calls planned");
            return ("duration", Duration::ZERO);
        }
    };
    let first_measured = schedule.first_measured();
    let max_connections = max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max_connections));
    // tokio's timer wheel ticks every millisecond, so a call due mid-tick would leave up to 1 ms
    // late, and its latency counts from when it was due: the tool would add its own millisecond
    // to every call. A dedicated thread sleeps on the OS's high-resolution timer instead and
    // hands each call to the runtime when it is due.
    let pacer = Pacer {
        shared: shared.clone(),
        schedule: schedule.clone(),
        start,
        permits: permits.clone(),
        stop: stop.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let (stopped_by, i) = match tokio::task::spawn_blocking(move || pacer.run()).await {
        Ok(paced) => paced,
        Err(err) => {
            warn!(error = %err, "the pacing thread failed");
            ("signal", 0)
        }
    };
    // every call in flight holds a permit until it is counted
    let _all = permits.acquire_many(max_connections as u32).await;
    let planned = if i > first_measured {
        schedule.due(i) - schedule.due(first_measured)
    } else {
        Duration::ZERO
    };
    (stopped_by, planned)
}

/// The open loop's sender, on its own thread.
struct Pacer {
    shared: Arc<Shared>,
    schedule: Schedule,
    start: Instant,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
    runtime: tokio::runtime::Handle,
}

impl Pacer {
    /// Longest sleep between looks at `stop`, so a signal ends even a slow schedule promptly.
    const STOP_CHECK: Duration = Duration::from_millis(20);

    /// Sends call after call when due; returns why it stopped and how many it sent.
    fn run(self) -> (&'static str, u64) {
        let end = self.schedule.end();
        let first_measured = self.schedule.first_measured();
        let path = self.shared.payloads.endpoint().path();
        let pool = Arc::new(Pool::default());
        let mut i: u64 = 0;
        loop {
            if let Some((last, why)) = end
                && i >= last
            {
                return (plan_end_label(why), i);
            }
            let due = self.start + self.schedule.due(i);
            loop {
                if self.stop.is_cancelled() {
                    return ("signal", i);
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Self::STOP_CHECK));
            }
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                // every connection is busy: wait for one (the wait counts, from `due`)
                Err(_) => {
                    let waited = self.runtime.block_on(async {
                        tokio::select! {
                            biased;
                            _ = self.stop.cancelled() => None,
                            permit = self.permits.clone().acquire_owned() => permit.ok(),
                        }
                    });
                    match waited {
                        Some(permit) => permit,
                        None => return ("signal", i),
                    }
                }
            };
            let measured = i >= first_measured;
            if measured {
                self.shared
                    .recorder()
                    .send_lag(Instant::now().saturating_duration_since(due));
            }
            let shared = self.shared.clone();
            let pool = pool.clone();
            self.runtime.spawn(async move {
                let call = shared.payloads.call(i);
                let mut connection = pool.take();
                let result = shared
                    .client
                    .call(&mut connection, path, call.body.clone())
                    .await;
                if let Some(connection) = connection {
                    pool.give_back(connection);
                }
                shared.finish(&call, result, due, measured);
                drop(permit);
            });
            i += 1;
        }
    }
}

/// `connections` workers, each sending its next call when the last one is answered.
async fn closed_loop(
    shared: &Arc<Shared>,
    settings: &RunSettings,
    connections: usize,
    stop: &CancellationToken,
) -> &'static str {
    let measure_end = if settings.run_forever {
        None
    } else {
        settings.duration.map(|d| shared.measure_start + d)
    };
    let calls = if settings.run_forever {
        None
    } else {
        settings.calls
    };
    let claimed = Arc::new(AtomicU64::new(0));
    let sequence = Arc::new(AtomicU64::new(0));
    let path = shared.payloads.endpoint().path();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let shared = shared.clone();
        let claimed = claimed.clone();
        let sequence = sequence.clone();
        let stop = stop.clone();
        workers.spawn(async move {
            let mut connection = None;
            loop {
                if stop.is_cancelled() {
                    return "signal";
                }
                let now = Instant::now();
                if measure_end.is_some_and(|end| now >= end) {
                    return "duration";
                }
                let measured = now >= shared.measure_start;
                if measured
                    && let Some(n) = calls
                    && claimed.fetch_add(1, Ordering::Relaxed) >= n
                {
                    return "calls";
                }
                let call = shared
                    .payloads
                    .call(sequence.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let result = shared
                    .client
                    .call(&mut connection, path, call.body.clone())
                    .await;
                shared.finish(&call, result, sent, measured);
            }
        });
    }
    let mut stopped_by = "duration";
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(reason) => stopped_by = reason,
            Err(err) => warn!(error = %err, "a worker failed"),
        }
    }
    stopped_by
}

/// Flushes StatsD every second and logs progress every `progress` until `done`.
async fn tick(shared: Arc<Shared>, progress: Option<Duration>, done: CancellationToken) {
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = progress.unwrap_or(Duration::from_secs(3600 * 24 * 365));
    let mut report = tokio::time::interval_at(Instant::now() + period, period);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_calls = 0u64;
    // the rate is over measured time: the first interval starts when the warm-up ends
    let mut last_at = shared.measure_start;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = flush.tick() => shared.statsd.flush(),
            _ = report.tick(), if progress.is_some() => {
                let recorder = shared.recorder();
                let calls = recorder.ok() + recorder.failed();
                let now = Instant::now();
                let span = now.saturating_duration_since(last_at).as_secs_f64();
                let rate = if span > 0.0 { (calls - last_calls) as f64 / span } else { 0.0 };
                let latency = recorder.latency_summary();
                info!(
                    calls,
                    ok = recorder.ok(),
                    failed = recorder.failed(),
                    rate = (rate * 10.0).round() / 10.0,
                    p50_ms = latency.as_ref().map(|l| l.p50),
                    p99_ms = latency.as_ref().map(|l| l.p99),
                    max_ms = latency.as_ref().map(|l| l.max),
                    "progress"
                );
                last_calls = calls;
                last_at = now.max(shared.measure_start);
            }
        }
    }
}
