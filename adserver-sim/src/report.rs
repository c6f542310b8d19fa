//! The summary as text (printed at the end), as JSON (`summary.json`) and as one self-contained
//! HTML page (`report.html`: the numbers, latency over time, throughput over time, latency by
//! percentile and the likelihood distribution, drawn as inline SVG; no scripts, no network).

use std::fmt::Write as _;

use bytes::Bytes;
use rtb_storage::Location;
use tracing::info;

use crate::error::{Result, SimError};
use crate::stats::Summary;

/// A latency in ms with three significant digits at least down to microseconds.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn headline(s: &Summary) -> String {
    let run = &s.run;
    let model = match run.intended_rate {
        Some(rate) => format!(
            "open loop at {rate} calls/s (at most {} connections)",
            run.connections
        ),
        None => format!("closed loop over {} connections", run.connections),
    };
    format!(
        "{model}, endpoint {} ({} request{} per call), target {}",
        run.endpoint,
        run.rows_per_call,
        if run.rows_per_call == 1 { "" } else { "s" },
        run.target
    )
}

/// The model served and when, in one line.
fn model_line(s: &Summary) -> String {
    let model = match (&s.model, &s.model_unknown) {
        (Some(m), _) => {
            let mut line = m.model_id.clone();
            if let Some(trees) = m.trees {
                line.push_str(&format!(" ({trees} trees"));
                if let Some(at) = &m.created_at {
                    // to the second, as the replay's own times
                    let at = chrono::DateTime::parse_from_rfc3339(at).map_or_else(
                        |_| at.clone(),
                        |t| t.to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    );
                    line.push_str(&format!(", published {at}"));
                }
                line.push(')');
            }
            if let Some(end) = &s.model_at_end {
                line.push_str(&format!(", reloaded to {} during the run", end.model_id));
            }
            line
        }
        (None, Some(why)) => format!("unknown ({why})"),
        (None, None) => "unknown".to_owned(),
    };
    format!("{model}; replayed {} to {}", s.started_at, s.finished_at)
}

/// The readable summary.
pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    let r = &s.requests;
    let _ = writeln!(out, "rtb-adserver-sim: {}", headline(s));
    let _ = writeln!(out, "model       {}", model_line(s));
    let _ = writeln!(
        out,
        "requests    {} loaded from {} ({} files read, {} unreadable, {} skipped; {} lines, {} malformed, {} blank)",
        r.loaded,
        r.location,
        r.files_read,
        r.files_unreadable,
        r.files_skipped,
        r.lines,
        r.malformed,
        r.blank
    );
    let _ = writeln!(
        out,
        "measured    {:.2} s after {} s warm-up ({} warm-up calls); stopped by {}",
        s.measured_seconds, s.run.warmup_s, s.calls.warmup, s.stopped_by
    );
    let intended = s
        .run
        .intended_rate
        .map(|r| format!(" of {r:.1} intended"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "calls       {} completed: {} ok, {} failed; {:.1} calls/s achieved{intended}; {} likelihoods{}",
        s.calls.sent,
        s.calls.ok,
        s.calls.failed,
        s.achieved_rate,
        s.calls.rows_scored,
        if s.calls.resent > 0 {
            format!(
                "; {} re-sent on a new connection (keep-alive closed by the server)",
                s.calls.resent
            )
        } else {
            String::new()
        }
    );
    match &s.latency_ms {
        Some(l) => {
            let _ = writeln!(
                out,
                "latency ms  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} calls{})",
                ms(l.p50),
                ms(l.p90),
                ms(l.p95),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max),
                ms(l.mean),
                l.count,
                if s.run.intended_rate.is_some() {
                    ", from each call's intended send time"
                } else {
                    ", from each call's send"
                }
            );
        }
        None => {
            let _ = writeln!(out, "latency ms  no successful calls");
        }
    }
    if let Some(lag) = s.max_send_lag_ms {
        let _ = writeln!(
            out,
            "send lag    p50 {} ms, p99 {} ms, at most {} ms after a call was due (included in the latency)",
            ms(s.send_lag_p50_ms.unwrap_or_default()),
            ms(s.send_lag_p99_ms.unwrap_or_default()),
            ms(lag)
        );
    }
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors      none");
    } else {
        let kinds: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "errors      {}", kinds.join(", "));
    }
    if s.openrtb_time_mismatches > 0 {
        let _ = writeln!(
            out,
            "openrtb     {} answers read another day or hour: set --time-zone-offset to the scorer's --time-zone",
            s.openrtb_time_mismatches
        );
    }
    match &s.likelihood {
        Some(l) => {
            let _ = writeln!(
                out,
                "likelihood  mean {:.4}  min {:.4}  max {:.4}  over {}",
                l.mean, l.min, l.max, l.count
            );
            let top = l.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
            for b in l.buckets.iter().filter(|b| b.count > 0) {
                let width = (b.count as f64 / top as f64 * 40.0).ceil() as usize;
                let _ = writeln!(
                    out,
                    "            {:.2}-{:.2} {:<40} {}",
                    b.from,
                    b.to,
                    "#".repeat(width),
                    b.count
                );
            }
        }
        None => {
            let _ = writeln!(out, "likelihood  none received");
        }
    }
    out
}

/// Writes `summary.json` and `report.html` under `dir` (a local folder, `file://` or `s3://`);
/// returns their URLs.
pub async fn write(dir: &str, summary: &Summary) -> Result<(String, String)> {
    let location = Location::parse(dir)?;
    let json = serde_json::to_vec_pretty(summary).map_err(|e| SimError::Report {
        what: "summary json",
        reason: e.to_string(),
    })?;
    location.put("summary.json", Bytes::from(json)).await?;
    location
        .put("report.html", Bytes::from(html(summary)))
        .await?;
    let urls = (
        location.child_url("summary.json"),
        location.child_url("report.html"),
    );
    info!(summary = %urls.0, report = %urls.1, "results written");
    Ok(urls)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML report.
pub fn html(s: &Summary) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("model".into(), model_line(s)),
        ("load".into(), headline(s)),
        (
            "requests".into(),
            format!(
                "{} loaded from {} ({} files, {} unreadable; {} lines, {} malformed)",
                s.requests.loaded,
                s.requests.location,
                s.requests.files_read,
                s.requests.files_unreadable,
                s.requests.lines,
                s.requests.malformed
            ),
        ),
        (
            "measured".into(),
            format!(
                "{:.2} s after {} s warm-up; stopped by {}",
                s.measured_seconds, s.run.warmup_s, s.stopped_by
            ),
        ),
        (
            "calls".into(),
            format!(
                "{} completed: {} ok, {} failed; {:.1} calls/s achieved{}",
                s.calls.sent,
                s.calls.ok,
                s.calls.failed,
                s.achieved_rate,
                s.run
                    .intended_rate
                    .map(|r| format!(" of {r:.1} intended"))
                    .unwrap_or_default()
            ),
        ),
    ];
    if let Some(l) = &s.latency_ms {
        rows.push((
            "latency (ms)".into(),
            format!(
                "p50 {} · p90 {} · p95 {} · p99 {} · p99.9 {} · max {} · mean {}",
                ms(l.p50),
                ms(l.p90),
                ms(l.p95),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max),
                ms(l.mean)
            ),
        ));
    }
    rows.push((
        "errors".into(),
        if s.errors.is_empty() {
            "none".into()
        } else {
            s.errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    if let Some(l) = &s.likelihood {
        rows.push((
            "likelihood".into(),
            format!(
                "mean {:.4} · min {:.4} · max {:.4} over {}",
                l.mean, l.min, l.max, l.count
            ),
        ));
    }
    let table: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(k), escape(v)))
        .collect();
    let note = if s.run.intended_rate.is_some() {
        "Open loop: calls were due at a constant rate and latency runs from each call's intended \
         send time, so a stalled scorer is charged for every call it delayed."
    } else {
        "Closed loop: each connection sends its next call when the last is answered and latency \
         runs from the send, so calls a stalled scorer delayed were never sent: the tail is \
         under-reported (coordinated omission). Use the open loop to measure latency."
    };
    let mut charts = String::new();
    charts.push_str(&timeline_chart(s));
    charts.push_str(&throughput_chart(s));
    charts.push_str(&percentile_chart(s));
    charts.push_str(&likelihood_chart(s));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rtb-adserver-sim report {date}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 4px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ white-space: nowrap; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: 600; margin-bottom: .3em; }}
svg text {{ font-size: 11px; fill: #333; }}
.note {{ color: #555; font-size: 90%; }}
</style></head><body>
<h1>rtb-adserver-sim: {model}</h1>
<table>
{table}</table>
<p class="note">{note}</p>
{charts}</body></html>
"#,
        note = escape(note),
        date = escape(&s.started_at),
        model = escape(
            s.model
                .as_ref()
                .map_or("model unknown", |m| m.model_id.as_str())
        )
    )
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A linear or log10 axis over `[min, max]`; [`Axis::new`] widens the range to the ticks around
/// the data, so every chart ends on a labelled tick instead of at its largest value.
#[derive(Debug, Clone, Copy)]
struct Axis {
    min: f64,
    max: f64,
    log: bool,
    /// Linear axes: the distance between ticks.
    step: f64,
}

/// The 1-2-5 steps of a log axis.
const LOG_STEPS: [f64; 3] = [1.0, 2.0, 5.0];

impl Axis {
    /// The range widened to ticks: the linear step nearest a sixth of the span, or the 1-2-5
    /// values below and above the data.
    fn new(min: f64, max: f64, log: bool) -> Self {
        if log {
            let min = min.max(1e-3);
            let max = max.max(min);
            let decade = |v: f64| 10f64.powf(v.log10().floor());
            let below = LOG_STEPS
                .iter()
                .rev()
                .map(|m| m * decade(min))
                .find(|v| *v <= min * (1.0 + 1e-9))
                .unwrap_or(decade(min));
            let above = LOG_STEPS
                .iter()
                .chain(&[10.0])
                .map(|m| m * decade(max))
                .find(|v| *v >= max * (1.0 - 1e-9))
                .unwrap_or(decade(max) * 10.0);
            // at least one decade, so a flat series still has ticks to read
            return Axis {
                min: below,
                max: above.max(below * 10.0),
                log,
                step: 0.0,
            };
        }
        let max = if max <= min { min + 1.0 } else { max };
        let step = linear_step(max - min);
        Axis {
            min: (min / step + 1e-9).floor() * step,
            max: (max / step - 1e-9).ceil() * step,
            log,
            step,
        }
    }

    /// Exactly `[min, max]`, for axes whose ticks the chart places itself.
    fn exact(min: f64, max: f64) -> Self {
        let max = if max <= min { min + 1.0 } else { max };
        Axis {
            min,
            max,
            log: false,
            step: linear_step(max - min),
        }
    }

    /// Position in [0, 1].
    fn at(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let mut ticks = Vec::new();
            let mut p = 10f64.powf(self.min.log10().floor());
            while p <= self.max * 1.0001 {
                for m in LOG_STEPS {
                    let v = p * m;
                    if v >= self.min * 0.9999 && v <= self.max * 1.0001 {
                        ticks.push((v, tick_label(v)));
                    }
                }
                p *= 10.0;
            }
            return ticks;
        }
        let step = self.step;
        let first = (self.min / step - 1e-9).ceil() as i64;
        let last = (self.max / step + 1e-9).floor() as i64;
        // multiples of the step, not sums of it, so 0.1 + 0.2 never labels 0.30000000000000004
        (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                (v, tick_label(v))
            })
            .collect()
    }
}

/// The 1-2-5 step nearest a sixth of `span`, at least that.
fn linear_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(magnitude * 10.0)
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let text = format!("{v:.1}");
        text.trim_end_matches(".0").to_owned()
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

struct Chart<'a> {
    caption: &'a str,
    x: Axis,
    y: Axis,
    x_ticks: Vec<(f64, String)>,
    x_label: &'a str,
    y_label: &'a str,
}

impl Chart<'_> {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.at(x) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - self.y.at(y) * (HEIGHT - TOP - BOTTOM)
    }

    fn frame(&self, body: &str, legend: &[&str]) -> String {
        let mut svg = format!(
            r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">"#,
            escape(self.caption)
        );
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (HEIGHT - BOTTOM, TOP);
        for (v, label) in self.y.ticks() {
            let y = self.py(v);
            let _ = write!(
                svg,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                y + 4.0,
                escape(&label)
            );
        }
        for (v, label) in &self.x_ticks {
            let x = self.px(*v);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y0 + 4.0,
                y0 + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#999"/>"##,
            x1 - x0,
            y0 - y1
        );
        svg.push_str(body);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 6.0,
            escape(self.x_label),
            (y0 + y1) / 2.0,
            escape(self.y_label)
        );
        for (i, name) in legend.iter().enumerate() {
            let x = x0 + 10.0 + 110.0 * i as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                y1 + 10.0,
                COLORS[i % COLORS.len()],
                x + 16.0,
                y1 + 14.0,
                escape(name)
            );
        }
        svg.push_str("</svg></figure>\n");
        svg
    }

    fn lines(&self, series: &[Series<'_>]) -> String {
        let mut body = String::new();
        for (i, s) in series.iter().enumerate() {
            if s.points.is_empty() {
                continue;
            }
            let points: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
                .collect();
            let _ = write!(
                body,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                COLORS[i % COLORS.len()],
                points.join(" ")
            );
            if s.points.len() == 1 {
                let _ = write!(
                    body,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    self.px(s.points[0].0),
                    self.py(s.points[0].1),
                    COLORS[i % COLORS.len()]
                );
            }
        }
        let names: Vec<&str> = series.iter().map(|s| s.name).collect();
        self.frame(&body, &names)
    }
}

fn empty(caption: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption><p class=\"note\">no data</p></figure>\n",
        escape(caption)
    )
}

fn timeline_chart(s: &Summary) -> String {
    let caption = "Latency over time (per second of completion, log scale)";
    let t = &s.timeline;
    let pick = |f: fn(&crate::stats::TimelinePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter()
            .filter_map(|p| f(p).map(|v| (p.start_s, v)))
            .collect()
    };
    let series = [
        Series {
            name: "p50",
            points: pick(|p| p.p50_ms),
        },
        Series {
            name: "p99",
            points: pick(|p| p.p99_ms),
        },
        Series {
            name: "max",
            points: pick(|p| p.max_ms),
        },
    ];
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    if ys.is_empty() {
        return empty(caption);
    }
    let x_max = t.last().map_or(1.0, |p| p.start_s).max(1.0);
    let x = Axis::new(0.0, x_max, false);
    let chart = Chart {
        caption,
        x,
        y: Axis::new(
            ys.iter().copied().fold(f64::INFINITY, f64::min),
            ys.iter().copied().fold(0.0, f64::max),
            true,
        ),
        x_ticks: x.ticks(),
        x_label: "seconds after warm-up",
        y_label: "latency (ms)",
    };
    chart.lines(&series)
}

fn throughput_chart(s: &Summary) -> String {
    let caption = "Calls completed per second";
    let t = &s.timeline;
    if t.is_empty() {
        return empty(caption);
    }
    let step = if t.len() > 1 {
        (t[1].start_s - t[0].start_s).max(1e-3)
    } else {
        1.0
    };
    let series = [
        Series {
            name: "calls/s",
            points: t
                .iter()
                .map(|p| (p.start_s, p.calls as f64 / step))
                .collect(),
        },
        Series {
            name: "errors/s",
            points: t
                .iter()
                .map(|p| (p.start_s, p.errors as f64 / step))
                .collect(),
        },
    ];
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(s.run.intended_rate.unwrap_or(0.0));
    let x = Axis::new(0.0, t.last().map_or(1.0, |p| p.start_s).max(1.0), false);
    let chart = Chart {
        caption,
        x,
        y: Axis::new(0.0, y_max * 1.05, false),
        x_ticks: x.ticks(),
        x_label: "seconds after warm-up",
        y_label: "per second",
    };
    chart.lines(&series)
}

fn percentile_chart(s: &Summary) -> String {
    let caption = "Latency by percentile (the distribution; log scales)";
    let p = &s.percentiles;
    if p.is_empty() {
        return empty(caption);
    }
    // x = log10(1 / (1 - q)): 0 % at 0, 90 % at 1, 99 % at 2, ...; 100 % (max) half a step on
    let mut points = Vec::new();
    let mut last_x = 0.0f64;
    for point in p {
        let q = point.percentile / 100.0;
        let x = if q < 1.0 {
            -(1.0 - q).log10()
        } else {
            last_x + 0.5
        };
        last_x = last_x.max(x);
        points.push((x, point.latency_ms));
    }
    let x = Axis::exact(0.0, last_x.max(1.0));
    let mut x_ticks: Vec<(f64, String)> = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, (*l).to_owned()))
        .filter(|(v, _)| *v <= last_x - 0.5 + 1e-9 || *v == 0.0)
        .collect();
    x_ticks.push((last_x, "max".into()));
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let chart = Chart {
        caption,
        x,
        y: Axis::new(
            ys.iter().copied().fold(f64::INFINITY, f64::min),
            ys.iter().copied().fold(0.0, f64::max),
            true,
        ),
        x_ticks,
        x_label: "percentile",
        y_label: "latency (ms)",
    };
    chart.lines(&[Series {
        name: "latency",
        points,
    }])
}

fn likelihood_chart(s: &Summary) -> String {
    let caption = "Likelihood to bid: distribution of the answers";
    let Some(l) = &s.likelihood else {
        return empty(caption);
    };
    let top = l.buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let x = Axis::new(0.0, 1.0, false);
    let chart = Chart {
        caption,
        x,
        y: Axis::new(0.0, top * 1.05, false),
        x_ticks: (0..=10)
            .map(|i| (i as f64 / 10.0, format!("{:.1}", i as f64 / 10.0)))
            .collect(),
        x_label: "likelihood",
        y_label: "answers",
    };
    let mut body = String::new();
    for b in &l.buckets {
        let (x0, x1) = (chart.px(b.from), chart.px(b.to));
        let (y0, y1) = (chart.py(0.0), chart.py(b.count as f64));
        let _ = write!(
            body,
            r#"<rect x="{:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{:.2}-{:.2}: {}</title></rect>"#,
            x0 + 1.0,
            (x1 - x0 - 2.0).max(1.0),
            (y0 - y1).max(0.0),
            COLORS[0],
            b.from,
            b.to,
            b.count
        );
    }
    chart.frame(&body, &[])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::CallErrorKind;
    use crate::payload::Scored;
    use crate::requests::LoadReport;
    use crate::stats::{Recorder, RunEnd, RunInfo};

    fn summary(open: bool) -> Summary {
        let mut r = Recorder::new(Duration::from_secs(1));
        for i in 0..300u64 {
            let latency = Duration::from_micros(300 + i * 7);
            let scored = Scored {
                likelihoods: vec![(i % 100) as f64 / 100.0],
                time_mismatch: false,
            };
            r.record(Duration::from_millis(i * 10), latency, Ok(&scored));
        }
        r.record(
            Duration::from_millis(2500),
            Duration::from_secs(1),
            Err(CallErrorKind::Status(503)),
        );
        let run = RunInfo {
            target: "http://127.0.0.1:8080/<x>".into(),
            endpoint: "single".into(),
            load_model: if open { "open" } else { "closed" }.into(),
            intended_rate: open.then_some(100.0),
            connections: 8,
            rows_per_call: 1,
            warmup_s: 1.0,
            duration_s: Some(3.0),
            calls_limit: None,
            run_forever: false,
            timeout_ms: 1000,
        };
        let end = RunEnd {
            stopped_by: "duration",
            measured: Duration::from_secs(3),
            open_loop: open,
        };
        let mut summary = r.summary(run, LoadReport::default(), end);
        summary.started_at = "2026-12-01T10:00:00Z".into();
        summary.finished_at = "2026-12-01T10:00:04Z".into();
        summary.model = crate::http::ServedModel::from_json(
            br#"{"modelVersion":"20261201T095500Z-ab12cd34","trees":50,"manifest":{"created_at":"2026-12-01T09:55:00.379271750+00:00"}}"#,
        );
        summary
    }

    #[test]
    fn the_text_names_every_number() {
        let text = text(&summary(true));
        for needle in [
            "open loop at 100 calls/s",
            "301 completed: 300 ok, 1 failed",
            "of 100.0 intended",
            "p99.9",
            "http_503 1",
            "from each call's intended send time",
            "likelihood  mean 0.4950",
            "model       20261201T095500Z-ab12cd34 (50 trees, published 2026-12-01T09:55:00Z); replayed 2026-12-01T10:00:00Z to 2026-12-01T10:00:04Z",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
        let closed = super::text(&summary(false));
        assert!(closed.contains("closed loop over 8"), "{closed}");
        assert!(closed.contains("from each call's send"), "{closed}");
    }

    #[test]
    fn the_html_is_self_contained_with_its_charts() {
        let html = html(&summary(false));
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 4, "four charts");
        assert!(html.contains("<polyline"), "lines drawn");
        assert!(html.contains("coordinated omission"));
        assert!(html.contains("rtb-adserver-sim: 20261201T095500Z-ab12cd34</h1>"));
        assert!(html.contains("&lt;x&gt;"), "escaped");
        assert!(!html.contains("<script") && !html.contains("src=\"http"));
        for bad in ["NaN", "\"inf", ",inf", "inf,"] {
            assert!(!html.contains(bad), "finite coordinates: {bad}");
        }
        let empty = Recorder::new(Duration::from_secs(1)).summary(
            summary(true).run,
            LoadReport::default(),
            RunEnd {
                stopped_by: "signal",
                measured: Duration::ZERO,
                open_loop: true,
            },
        );
        let html = super::html(&empty);
        assert_eq!(html.matches("no data").count(), 4);
        assert!(text(&empty).contains("no successful calls"));
    }

    #[test]
    fn axes_place_values_and_ticks() {
        let log = Axis::new(0.1, 1000.0, true);
        assert!((log.at(0.1)).abs() < 1e-12 && (log.at(1000.0) - 1.0).abs() < 1e-12);
        assert!((log.at(10.0) - 0.5).abs() < 1e-12);
        let labels: Vec<String> = log.ticks().into_iter().map(|t| t.1).collect();
        assert!(labels.contains(&"0.1".to_owned()) && labels.contains(&"1000".to_owned()));
        // the data's range widens to ticks: 7 ends on 8, 0.37 ms on 0.2 and 3.1 ms on 5
        let lin = Axis::new(0.0, 7.0, false);
        let ticks: Vec<f64> = lin.ticks().into_iter().map(|t| t.0).collect();
        assert_eq!(ticks, [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!((lin.min, lin.max), (0.0, 8.0));
        let ms = Axis::new(0.37, 3.1, true);
        assert!(
            (ms.min - 0.2).abs() < 1e-12 && (ms.max - 5.0).abs() < 1e-12,
            "{ms:?}"
        );
        let labels: Vec<String> = ms.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0.2", "0.5", "1", "2", "5"]);
        let rate = Axis::new(0.0, 1050.0, false);
        assert_eq!(
            rate.ticks().last().map(|t| t.1.clone()),
            Some("1200".to_owned())
        );
        assert_eq!(Axis::new(0.0, 1.0, false).ticks().len(), 6);
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2.0), "2");
    }
}
