//! Prometheus metrics, kept in atomics so recording costs a few relaxed adds on the request path
//! and nothing is locked; `/metrics` renders the text format on demand.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::artifacts::LoadedModel;

/// The scoring endpoints, as the `endpoint` label spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Score = 0,
    Batch = 1,
    OpenRtb = 2,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Score, Endpoint::Batch, Endpoint::OpenRtb];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Score => "score",
            Endpoint::Batch => "batch",
            Endpoint::OpenRtb => "openrtb",
        }
    }
}

/// What went wrong with a request, as the `kind` label and the JSON error spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    MalformedJson = 0,
    WrongType = 1,
    MissingField = 2,
    InvalidValue = 3,
    BodyTooLarge = 4,
    BatchTooLarge = 5,
    NotReady = 6,
    Unauthorized = 7,
    AdminDisabled = 8,
    NotFound = 9,
    ModelRejected = 10,
    Internal = 11,
    BodyTimeout = 12,
    TooManyAttempts = 13,
    /// Refused by the HTTP layer before any handler (see `wire`).
    MalformedHttp = 14,
    HeadTooLarge = 15,
    HeadTimeout = 16,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::MalformedJson,
        ErrorKind::WrongType,
        ErrorKind::MissingField,
        ErrorKind::InvalidValue,
        ErrorKind::BodyTooLarge,
        ErrorKind::BatchTooLarge,
        ErrorKind::NotReady,
        ErrorKind::Unauthorized,
        ErrorKind::AdminDisabled,
        ErrorKind::NotFound,
        ErrorKind::ModelRejected,
        ErrorKind::Internal,
        ErrorKind::BodyTimeout,
        ErrorKind::TooManyAttempts,
        ErrorKind::MalformedHttp,
        ErrorKind::HeadTooLarge,
        ErrorKind::HeadTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::BatchTooLarge => "batch_too_large",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::AdminDisabled => "admin_disabled",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ModelRejected => "model_rejected",
            ErrorKind::Internal => "internal",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::TooManyAttempts => "too_many_attempts",
            ErrorKind::MalformedHttp => "malformed_http",
            ErrorKind::HeadTooLarge => "header_too_large",
            ErrorKind::HeadTimeout => "request_head_timeout",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds: 10 us to 1 s.
const BUCKETS: [f64; 14] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 250e-3,
    1.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; 3],
    rows: [AtomicU64; 3],
    latency: [Histogram; 3],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    reloads_unreadable: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// A scoring request that was answered, with the rows it scored.
    pub fn scored(&self, endpoint: Endpoint, rows: usize, elapsed: Duration) {
        let i = endpoint as usize;
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.rows[i].fetch_add(rows as u64, Ordering::Relaxed);
        self.latency[i].record(elapsed);
    }

    /// A request to a scoring endpoint that failed (it counts as a request too).
    pub fn failed(&self, endpoint: Option<Endpoint>, kind: ErrorKind, elapsed: Duration) {
        if let Some(endpoint) = endpoint {
            let i = endpoint as usize;
            self.requests[i].fetch_add(1, Ordering::Relaxed);
            self.latency[i].record(elapsed);
        }
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A reload that could not read the store or an artifact (retried, then left for the next
    /// poll): not a rejected model.
    pub fn reload_unreadable(&self) {
        self.reloads_unreadable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloads_unreadable(&self) -> u64 {
        get(&self.reloads_unreadable)
    }

    pub fn reloads(&self) -> (u64, u64) {
        (get(&self.reloads_ok), get(&self.reloads_failed))
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        get(&self.errors[kind as usize])
    }

    /// The Prometheus text exposition format.
    pub fn render(&self, model: Option<&LoadedModel>, ready: bool) -> String {
        let mut out = String::with_capacity(4096);
        // writing to a String cannot fail
        let _ = self.render_into(&mut out, model, ready);
        out
    }

    fn render_into(
        &self,
        out: &mut String,
        model: Option<&LoadedModel>,
        ready: bool,
    ) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP rtb_scorer_requests_total Scoring requests, answered or failed."
        )?;
        writeln!(out, "# TYPE rtb_scorer_requests_total counter")?;
        for e in Endpoint::ALL {
            writeln!(
                out,
                "rtb_scorer_requests_total{{endpoint=\"{}\"}} {}",
                e.label(),
                get(&self.requests[e as usize])
            )?;
        }
        writeln!(
            out,
            "# HELP rtb_scorer_rows_scored_total Bid requests (rows) given a likelihood."
        )?;
        writeln!(out, "# TYPE rtb_scorer_rows_scored_total counter")?;
        for e in Endpoint::ALL {
            writeln!(
                out,
                "rtb_scorer_rows_scored_total{{endpoint=\"{}\"}} {}",
                e.label(),
                get(&self.rows[e as usize])
            )?;
        }
        writeln!(
            out,
            "# HELP rtb_scorer_errors_total Failed requests by kind of error."
        )?;
        writeln!(out, "# TYPE rtb_scorer_errors_total counter")?;
        for k in ErrorKind::ALL {
            writeln!(
                out,
                "rtb_scorer_errors_total{{kind=\"{}\"}} {}",
                k.label(),
                get(&self.errors[k as usize])
            )?;
        }
        writeln!(
            out,
            "# HELP rtb_scorer_request_duration_seconds Time in the handler, from the first byte \
             read to the response built."
        )?;
        writeln!(out, "# TYPE rtb_scorer_request_duration_seconds histogram")?;
        for e in Endpoint::ALL {
            let h = &self.latency[e as usize];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += get(&h.buckets[i]);
                writeln!(
                    out,
                    "rtb_scorer_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{bound}\"}} {cumulative}",
                    e.label()
                )?;
            }
            cumulative += get(&h.buckets[BUCKETS.len()]);
            writeln!(
                out,
                "rtb_scorer_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {cumulative}",
                e.label()
            )?;
            writeln!(
                out,
                "rtb_scorer_request_duration_seconds_sum{{endpoint=\"{}\"}} {}",
                e.label(),
                get(&h.sum_nanos) as f64 / 1e9
            )?;
            writeln!(
                out,
                "rtb_scorer_request_duration_seconds_count{{endpoint=\"{}\"}} {}",
                e.label(),
                get(&h.count)
            )?;
        }
        writeln!(
            out,
            "# HELP rtb_scorer_model_reloads_total Model reloads by outcome: failure is a refused model (kept out, not retried), read_error a store or artifact that could not be read (retried); either way the old model keeps serving."
        )?;
        writeln!(out, "# TYPE rtb_scorer_model_reloads_total counter")?;
        writeln!(
            out,
            "rtb_scorer_model_reloads_total{{outcome=\"success\"}} {}",
            get(&self.reloads_ok)
        )?;
        writeln!(
            out,
            "rtb_scorer_model_reloads_total{{outcome=\"failure\"}} {}",
            get(&self.reloads_failed)
        )?;
        writeln!(
            out,
            "rtb_scorer_model_reloads_total{{outcome=\"read_error\"}} {}",
            get(&self.reloads_unreadable)
        )?;
        writeln!(
            out,
            "# HELP rtb_scorer_ready 1 when a model is loaded and the scorer is not shutting down."
        )?;
        writeln!(out, "# TYPE rtb_scorer_ready gauge")?;
        writeln!(out, "rtb_scorer_ready {}", u8::from(ready))?;
        writeln!(
            out,
            "# HELP rtb_scorer_model_info The model being served (value 1)."
        )?;
        writeln!(out, "# TYPE rtb_scorer_model_info gauge")?;
        if let Some(model) = model {
            writeln!(
                out,
                "rtb_scorer_model_info{{model_id=\"{}\",vocabulary_version=\"{}\",trees=\"{}\"}} 1",
                escape(model.model_id()),
                escape(&model.vocabulary.version),
                model.ensemble.iterations()
            )?;
            writeln!(
                out,
                "# HELP rtb_scorer_model_loaded_timestamp_seconds When the model being served was loaded."
            )?;
            writeln!(
                out,
                "# TYPE rtb_scorer_model_loaded_timestamp_seconds gauge"
            )?;
            writeln!(
                out,
                "rtb_scorer_model_loaded_timestamp_seconds {}",
                model.loaded_at.timestamp()
            )?;
        }
        Ok(())
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counters_render() {
        let metrics = Metrics::default();
        metrics.scored(Endpoint::Score, 1, Duration::from_micros(7));
        metrics.scored(Endpoint::Score, 1, Duration::from_micros(70));
        metrics.scored(Endpoint::Batch, 10, Duration::from_secs(3));
        metrics.failed(
            Some(Endpoint::Score),
            ErrorKind::MissingField,
            Duration::from_micros(5),
        );
        metrics.reloaded(false);
        let text = metrics.render(None, false);
        assert!(
            text.contains("rtb_scorer_requests_total{endpoint=\"score\"} 3"),
            "{text}"
        );
        assert!(text.contains("rtb_scorer_rows_scored_total{endpoint=\"batch\"} 10"));
        assert!(text.contains("rtb_scorer_errors_total{kind=\"missing_field\"} 1"));
        // 7 us and the failed 5 us fall under 10 us; 70 us does not
        assert!(
            text.contains(
                "rtb_scorer_request_duration_seconds_bucket{endpoint=\"score\",le=\"0.00001\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "rtb_scorer_request_duration_seconds_bucket{endpoint=\"batch\",le=\"+Inf\"} 1"
        ));
        assert!(
            text.contains(
                "rtb_scorer_request_duration_seconds_bucket{endpoint=\"batch\",le=\"1\"} 0"
            )
        );
        assert!(text.contains("rtb_scorer_model_reloads_total{outcome=\"failure\"} 1"));
        assert!(text.contains("rtb_scorer_ready 0"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
