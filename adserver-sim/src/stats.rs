//! What a run measured: latency in an HDR histogram (microseconds, 3 significant digits, up to
//! an hour), a per-second timeline, failed calls by kind, and the likelihoods the scorer
//! answered. Times are given as offsets from the start of measurement, so the recorder needs no
//! clock and tests feed it exact values.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http::{CallErrorKind, ServedModel};
use crate::payload::Scored;
use crate::requests::LoadReport;

/// Largest latency the histograms hold exactly, in microseconds (an hour); longer ones are
/// recorded as this.
const HIGHEST_US: u64 = 3_600_000_000;
/// Timeline points kept; older ones are dropped (a day-long run keeps its last hour).
pub const TIMELINE_POINTS: usize = 3600;
/// Likelihood distribution buckets over [0, 1].
pub const LIKELIHOOD_BUCKETS: usize = 20;

fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, significant_digits)
        .expect("constant bounds and 2 or 3 significant digits are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Likelihoods seen: count, sum, extremes and a 20-bucket distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct LikelihoodStats {
    pub count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: [u64; LIKELIHOOD_BUCKETS],
}

impl Default for LikelihoodStats {
    fn default() -> Self {
        LikelihoodStats {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: [0; LIKELIHOOD_BUCKETS],
        }
    }
}

impl LikelihoodStats {
    pub fn add(&mut self, likelihood: f64) {
        self.count += 1;
        self.sum += likelihood;
        self.min = self.min.min(likelihood);
        self.max = self.max.max(likelihood);
        let bucket = (likelihood.clamp(0.0, 1.0) * LIKELIHOOD_BUCKETS as f64) as usize;
        self.buckets[bucket.min(LIKELIHOOD_BUCKETS - 1)] += 1;
    }

    pub fn summary(&self) -> Option<LikelihoodSummary> {
        (self.count > 0).then(|| LikelihoodSummary {
            count: self.count,
            mean: self.sum / self.count as f64,
            min: self.min,
            max: self.max,
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, &count)| LikelihoodBucket {
                    from: i as f64 / LIKELIHOOD_BUCKETS as f64,
                    to: (i + 1) as f64 / LIKELIHOOD_BUCKETS as f64,
                    count,
                })
                .collect(),
        })
    }
}

/// One step of the timeline: calls that completed in it, and their latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Start of the step, seconds after measurement started.
    pub start_s: f64,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

struct Window {
    index: u64,
    latency: Histogram<u64>,
    calls: u64,
    errors: u64,
}

impl Window {
    fn new(index: u64) -> Self {
        Window {
            index,
            latency: histogram(2),
            calls: 0,
            errors: 0,
        }
    }

    fn point(&self, step: Duration) -> TimelinePoint {
        let seen = !self.latency.is_empty();
        let at = |q: f64| seen.then(|| ms(self.latency.value_at_quantile(q)));
        TimelinePoint {
            start_s: step.as_secs_f64() * self.index as f64,
            calls: self.calls,
            errors: self.errors,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: seen.then(|| ms(self.latency.max())),
        }
    }
}

/// Everything measured in one run.
pub struct Recorder {
    step: Duration,
    latency: Histogram<u64>,
    window: Option<Window>,
    timeline: VecDeque<TimelinePoint>,
    ok: u64,
    errors: BTreeMap<CallErrorKind, u64>,
    warmup_calls: u64,
    likelihood: LikelihoodStats,
    time_mismatches: u64,
    last_completion: Duration,
    send_lag: Histogram<u64>,
}

impl Recorder {
    /// `step`: the timeline's resolution (a second in runs).
    pub fn new(step: Duration) -> Self {
        Recorder {
            step: step.max(Duration::from_millis(1)),
            latency: histogram(3),
            window: None,
            timeline: VecDeque::new(),
            ok: 0,
            errors: BTreeMap::new(),
            warmup_calls: 0,
            likelihood: LikelihoodStats::default(),
            time_mismatches: 0,
            last_completion: Duration::ZERO,
            send_lag: histogram(3),
        }
    }

    /// A warm-up call: counted, nothing else.
    pub fn warmup(&mut self) {
        self.warmup_calls += 1;
    }

    /// A measured call that completed `completed_at` after measurement started, `latency`
    /// after it was due (open loop) or sent (closed loop).
    pub fn record(
        &mut self,
        completed_at: Duration,
        latency: Duration,
        outcome: Result<&Scored, CallErrorKind>,
    ) {
        self.last_completion = self.last_completion.max(completed_at);
        let index = (completed_at.as_nanos() / self.step.as_nanos()) as u64;
        let us = micros(latency).min(HIGHEST_US);
        let window = self.window_at(index);
        window.calls += 1;
        match outcome {
            Ok(_) => window.latency.saturating_record(us),
            Err(_) => window.errors += 1,
        }
        match outcome {
            Ok(scored) => {
                self.latency.saturating_record(us);
                self.ok += 1;
                for &l in &scored.likelihoods {
                    self.likelihood.add(l);
                }
                if scored.time_mismatch {
                    self.time_mismatches += 1;
                }
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// How late the open loop sent a call after it was due (the client's own delay).
    pub fn send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(micros(lag).min(HIGHEST_US));
    }

    /// The window for step `index`, closing earlier ones (a late completion joins the open one).
    fn window_at(&mut self, index: u64) -> &mut Window {
        let current = self.window.as_ref().map(|w| w.index);
        match current {
            None => self.window = Some(Window::new(index)),
            Some(open) if index > open => {
                if let Some(closed) = self.window.take() {
                    self.push_point(closed.point(self.step));
                }
                for empty in open + 1..index {
                    self.push_point(Window::new(empty).point(self.step));
                }
                self.window = Some(Window::new(index));
            }
            Some(_) => {}
        }
        self.window.get_or_insert_with(|| Window::new(index))
    }

    fn push_point(&mut self, point: TimelinePoint) {
        if self.timeline.len() == TIMELINE_POINTS {
            self.timeline.pop_front();
        }
        self.timeline.push_back(point);
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn last_completion(&self) -> Duration {
        self.last_completion
    }

    pub fn latency_summary(&self) -> Option<LatencySummary> {
        let h = &self.latency;
        (!h.is_empty()).then(|| LatencySummary {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }

    /// Latency by percentile, from 0 to 99.999 % in steps even on a log scale of `1 / (1 - q)`
    /// (as HdrHistogram plots are drawn), as far as the call count resolves, then 100 %.
    pub fn percentile_spectrum(&self) -> Vec<PercentilePoint> {
        let h = &self.latency;
        if h.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::new();
        for tenth in 0..=50 {
            let q = 1.0 - 10f64.powf(-f64::from(tenth) / 10.0);
            if tenth > 0 && (1.0 - q) * (h.len() as f64) < 1.0 {
                break;
            }
            points.push(PercentilePoint {
                percentile: q * 100.0,
                latency_ms: ms(h.value_at_quantile(q)),
            });
        }
        points.push(PercentilePoint {
            percentile: 100.0,
            latency_ms: ms(h.max()),
        });
        points
    }

    /// The timeline with the open step included.
    pub fn timeline(&self) -> Vec<TimelinePoint> {
        let mut points: Vec<TimelinePoint> = self.timeline.iter().cloned().collect();
        if let Some(open) = &self.window {
            points.push(open.point(self.step));
        }
        if points.len() > TIMELINE_POINTS {
            points.drain(..points.len() - TIMELINE_POINTS);
        }
        points
    }

    /// Everything as the summary reports it.
    pub fn summary(&self, run: RunInfo, requests: LoadReport, end: RunEnd) -> Summary {
        let calls = self.ok + self.failed();
        let measured_seconds = end.measured.as_secs_f64();
        Summary {
            run,
            started_at: String::new(),
            finished_at: String::new(),
            model: None,
            model_at_end: None,
            model_unknown: None,
            requests,
            stopped_by: end.stopped_by.to_owned(),
            measured_seconds,
            calls: CallCounts {
                sent: calls,
                ok: self.ok,
                failed: self.failed(),
                warmup: self.warmup_calls,
                rows_scored: self.likelihood.count,
                resent: 0,
            },
            achieved_rate: if measured_seconds > 0.0 {
                calls as f64 / measured_seconds
            } else {
                0.0
            },
            max_send_lag_ms: end.open_loop.then_some(ms(self.send_lag.max())),
            send_lag_p50_ms: end
                .open_loop
                .then_some(ms(self.send_lag.value_at_quantile(0.5))),
            send_lag_p99_ms: end
                .open_loop
                .then_some(ms(self.send_lag.value_at_quantile(0.99))),
            latency_ms: self.latency_summary(),
            errors: self
                .errors
                .iter()
                .map(|(kind, n)| (kind.label(), *n))
                .collect(),
            likelihood: self.likelihood.summary(),
            openrtb_time_mismatches: self.time_mismatches,
            percentiles: self.percentile_spectrum(),
            timeline: self.timeline(),
        }
    }
}

/// How the run was set up, as the summary states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub target: String,
    pub endpoint: String,
    /// `open` or `closed`.
    pub load_model: String,
    /// Open loop: calls per second intended.
    pub intended_rate: Option<f64>,
    /// Closed loop: connections (each a worker); open loop: the most at once.
    pub connections: usize,
    pub rows_per_call: usize,
    pub warmup_s: f64,
    pub duration_s: Option<f64>,
    pub calls_limit: Option<u64>,
    pub run_forever: bool,
    pub timeout_ms: u64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    pub stopped_by: &'static str,
    /// The span the achieved rate is over.
    pub measured: Duration,
    pub open_loop: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallCounts {
    /// Measured calls that completed: `ok + failed`.
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Warm-up calls, not in any other number.
    pub warmup: u64,
    /// Likelihoods received in measured calls (`ok` times the rows per call).
    pub rows_scored: u64,
    /// Calls (warm-up included) sent a second time because the server closed their keep-alive
    /// connection before receiving them; each is still one call above.
    pub resent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LikelihoodSummary {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub buckets: Vec<LikelihoodBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LikelihoodBucket {
    pub from: f64,
    pub to: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// The results of a run, written as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub run: RunInfo,
    /// When the replay started and ended (RFC 3339, UTC).
    pub started_at: String,
    pub finished_at: String,
    /// The model the scorer served when the replay started, when it says (`GET /v1/model`).
    pub model: Option<ServedModel>,
    /// The model it served at the end, when that is another one (a reload during the run).
    pub model_at_end: Option<ServedModel>,
    /// Why the model is not known, when it is not.
    pub model_unknown: Option<String>,
    pub requests: LoadReport,
    /// `duration`, `calls` or `signal`.
    pub stopped_by: String,
    pub measured_seconds: f64,
    pub calls: CallCounts,
    /// Measured calls per second over `measured_seconds`.
    pub achieved_rate: f64,
    /// Open loop: the longest a call was sent after it was due (the simulator's own delay,
    /// included in the latency).
    pub max_send_lag_ms: Option<f64>,
    /// Open loop: the median and 99th percentile of that delay.
    pub send_lag_p50_ms: Option<f64>,
    pub send_lag_p99_ms: Option<f64>,
    /// Successful measured calls; `None` when there were none.
    pub latency_ms: Option<LatencySummary>,
    /// Failed measured calls by kind: `connect`, `timeout`, `disconnected`, `http_<status>`,
    /// `bad_response`.
    pub errors: BTreeMap<String, u64>,
    pub likelihood: Option<LikelihoodSummary>,
    /// OpenRTB answers whose day of week or hour differ from the request's (the scorer's time
    /// zone is not `--time-zone-offset`).
    pub openrtb_time_mismatches: u64,
    pub percentiles: Vec<PercentilePoint>,
    pub timeline: Vec<TimelinePoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(l: &[f64]) -> Scored {
        Scored {
            likelihoods: l.to_vec(),
            time_mismatch: false,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut r = Recorder::new(Duration::from_secs(1));
        // 1..=1000 ms, one call each
        for i in 1..=1000 {
            r.record(MS(i), MS(i), Ok(&scored(&[0.5])));
        }
        let l = r.latency_summary().expect("latency");
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.001;
        assert_eq!(l.count, 1000);
        assert!(near(l.p50, 500.0), "{l:?}");
        assert!(near(l.p90, 900.0), "{l:?}");
        assert!(near(l.p99, 990.0), "{l:?}");
        assert!(near(l.p99_9, 999.0), "{l:?}");
        assert!(near(l.max, 1000.0) && near(l.min, 1.0), "{l:?}");
        assert!(near(l.mean, 500.5), "{l:?}");
        let spectrum = r.percentile_spectrum();
        assert_eq!(spectrum.first().map(|p| p.percentile), Some(0.0));
        assert_eq!(spectrum.last().map(|p| p.percentile), Some(100.0));
        // 1000 calls resolve 99.9 % but not 99.99 %
        assert!(spectrum.iter().any(|p| (p.percentile - 99.9).abs() < 1e-9));
        assert!(
            !spectrum
                .iter()
                .any(|p| p.percentile > 99.95 && p.percentile < 100.0)
        );
        assert!(
            spectrum
                .windows(2)
                .all(|w| w[0].latency_ms <= w[1].latency_ms)
        );
    }

    #[test]
    fn one_stall_in_a_hundred_reaches_p99_only_when_recorded() {
        let mut r = Recorder::new(Duration::from_secs(1));
        for i in 0..98 {
            r.record(MS(i), MS(1), Ok(&scored(&[0.1])));
        }
        for _ in 0..2 {
            r.record(MS(200), MS(1000), Ok(&scored(&[0.1])));
        }
        let l = r.latency_summary().expect("latency");
        assert!(l.p95 < 2.0 && l.p99 >= 999.0, "{l:?}");
    }

    #[test]
    fn errors_likelihoods_and_counts_add_up() {
        let mut r = Recorder::new(Duration::from_secs(1));
        r.warmup();
        r.record(MS(10), MS(1), Ok(&scored(&[0.0, 0.5, 1.0])));
        r.record(MS(20), MS(1), Err(CallErrorKind::Timeout));
        r.record(MS(30), MS(1), Err(CallErrorKind::Status(503)));
        r.record(MS(40), MS(1), Err(CallErrorKind::Status(503)));
        let run = RunInfo {
            target: "http://x/".into(),
            endpoint: "batch".into(),
            load_model: "closed".into(),
            intended_rate: None,
            connections: 1,
            rows_per_call: 3,
            warmup_s: 0.0,
            duration_s: None,
            calls_limit: Some(4),
            run_forever: false,
            timeout_ms: 1000,
        };
        let end = RunEnd {
            stopped_by: "calls",
            measured: Duration::from_secs(2),
            open_loop: false,
        };
        let s = r.summary(run, LoadReport::default(), end);
        assert_eq!(s.calls.sent, s.calls.ok + s.calls.failed);
        assert_eq!((s.calls.ok, s.calls.failed, s.calls.warmup), (1, 3, 1));
        assert_eq!(s.calls.rows_scored, 3);
        assert_eq!(s.errors["http_503"], 2);
        assert_eq!(s.errors["timeout"], 1);
        assert_eq!(s.achieved_rate, 2.0);
        assert_eq!(s.max_send_lag_ms, None);
        let l = s.likelihood.as_ref().expect("likelihoods");
        assert_eq!((l.count, l.min, l.max), (3, 0.0, 1.0));
        assert!((l.mean - 0.5).abs() < 1e-12);
        assert_eq!(l.buckets.len(), LIKELIHOOD_BUCKETS);
        assert_eq!(l.buckets[0].count, 1);
        assert_eq!(l.buckets[10].count, 1);
        assert_eq!(l.buckets[19].count, 1, "1.0 lands in the last bucket");
        assert_eq!(l.buckets.iter().map(|b| b.count).sum::<u64>(), l.count);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["latency_ms"]["count"], 1);
    }

    #[test]
    fn the_timeline_has_a_point_per_step_including_quiet_ones() {
        let mut r = Recorder::new(Duration::from_secs(1));
        r.record(MS(100), MS(2), Ok(&scored(&[0.1])));
        r.record(MS(900), MS(4), Ok(&scored(&[0.1])));
        r.record(MS(3500), MS(8), Err(CallErrorKind::Connect));
        // a late completion of an earlier step joins the open one
        r.record(MS(3400), MS(6), Ok(&scored(&[0.1])));
        let t = r.timeline();
        assert_eq!(
            t.iter().map(|p| p.start_s).collect::<Vec<_>>(),
            [0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(t.iter().map(|p| p.calls).collect::<Vec<_>>(), [2, 0, 0, 2]);
        assert_eq!(t[3].errors, 1);
        assert_eq!(t[1].p99_ms, None);
        assert!((t[0].max_ms.expect("max") - 4.0).abs() < 0.05, "{t:?}");
        assert_eq!(r.last_completion(), MS(3500));
    }

    #[test]
    fn long_runs_keep_the_latest_timeline() {
        let mut r = Recorder::new(Duration::from_millis(1));
        for i in 0..(TIMELINE_POINTS as u64 + 10) {
            r.record(MS(i), MS(1), Ok(&scored(&[0.1])));
        }
        let t = r.timeline();
        assert_eq!(t.len(), TIMELINE_POINTS);
        assert_eq!(t.last().map(|p| p.calls), Some(1));
        assert!((t[0].start_s - 0.010).abs() < 1e-9, "{}", t[0].start_s);
    }
}
