//! The training report: PNG charts drawn with plotters (bitmap backend, font embedded, so no
//! system font library is needed), the metrics as JSON, and one self-contained HTML page with
//! the charts inlined.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;

use crate::fit::Fitted;
use crate::metrics::{Calibration, Evaluation, FilterPoint, Ranking};
use crate::previous::{Previous, change};
use crate::{Result, TrainerError};

/// DejaVu Sans cut to Latin-1 and a few symbols (see `assets/README.md`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

const MODEL_BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(120, 120, 120);
const MARK_RED: RGBColor = RGBColor(214, 39, 40);
const KEPT_GREEN: RGBColor = RGBColor(44, 160, 44);
const SPEND_PURPLE: RGBColor = RGBColor(148, 103, 189);

type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(TrainerError::Chart {
            chart: "any",
            reason: "the embedded font cannot be read".into(),
        })
    }
}

/// Draws on a white RGB canvas of `size` and returns it as PNG bytes.
fn render(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<Vec<u8>> {
    register_font()?;
    let failed = |reason: String| TrainerError::Chart { chart, reason };
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        draw(&root).map_err(|e| failed(e.to_string()))?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| failed(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| failed(e.to_string()))?;
    writer.finish().map_err(|e| failed(e.to_string()))?;
    Ok(png)
}

/// A legend entry drawn as a short line in the series' style.
fn line_key(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style)
}

/// The legend box every chart uses, at `position`.
fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn percent(v: &f64) -> String {
    format!("{:.0}%", v)
}

/// Keeps at most about `n` points of a curve (always the first and last).
fn thin<T: Copy>(points: &[T], n: usize) -> Vec<T> {
    if points.len() <= n || n < 2 {
        return points.to_vec();
    }
    let step = points.len().div_ceil(n);
    let mut kept: Vec<T> = points.iter().step_by(step).copied().collect();
    if let Some(last) = points.last()
        && !(points.len() - 1).is_multiple_of(step)
    {
        kept.push(*last);
    }
    kept
}

/// The headline: share of bid requests filtered out against share of wins (and spend) kept.
pub fn filtering_chart(evaluation: &Evaluation, previous: &Previous) -> Result<Vec<u8>> {
    let f = &evaluation.filtering;
    render("bid-filtering trade-off", (1000, 640), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Bid filtering: traffic filtered out vs. won impressions kept (test split)",
                (FAMILY, 22),
            )
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..100f64, 0f64..100.5f64)?;
        chart
            .configure_mesh()
            .x_desc("bid requests filtered out (not sent to bidding)")
            .y_desc(if f.spend_note.is_none() {
                "won impressions / spend kept"
            } else {
                "won impressions kept"
            })
            .x_label_formatter(&percent)
            .y_label_formatter(&percent)
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        let mut curve: Vec<(f64, f64)> = vec![(100.0, 0.0)];
        curve.extend(
            f.curve
                .iter()
                .map(|p| (100.0 * p.filtered_share, 100.0 * p.wins_kept_share)),
        );
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 100.0), (100.0, 0.0)],
                6,
                6,
                GREY.stroke_width(1),
            ))?
            .label("random filter")
            .legend(line_key(GREY.into()));
        if let Previous::Compared {
            model_id,
            evaluation: p,
        } = previous
        {
            let old: Vec<(f64, f64)> = std::iter::once((100.0, 0.0))
                .chain(
                    p.filtering
                        .curve
                        .iter()
                        .map(|p| (100.0 * p.filtered_share, 100.0 * p.wins_kept_share)),
                )
                .collect();
            chart
                .draw_series(DashedLineSeries::new(old, 8, 4, GREY.stroke_width(2)))?
                .label(format!(
                    "published model {model_id} (ROC AUC {:.3})",
                    p.roc_auc
                ))
                .legend(line_key(GREY.stroke_width(2)));
        }
        chart
            .draw_series(LineSeries::new(curve, MODEL_BLUE.stroke_width(3)))?
            .label(format!(
                "wins kept by the model (ROC AUC {:.3})",
                evaluation.roc_auc
            ))
            .legend(line_key(MODEL_BLUE.stroke_width(3)));
        let spend: Vec<(f64, f64)> = std::iter::once((100.0, 0.0))
            .chain(f.curve.iter().filter_map(|p| {
                p.spend_kept_share
                    .map(|s| (100.0 * p.filtered_share, 100.0 * s))
            }))
            .collect();
        if spend.len() > 1 {
            chart
                .draw_series(LineSeries::new(spend, SPEND_PURPLE.stroke_width(2)))?
                .label("spend kept (paying price of kept wins)")
                .legend(line_key(SPEND_PURPLE.stroke_width(2)));
        }
        let r = f.recommended;
        let (rx, ry) = (100.0 * r.filtered_share, 100.0 * r.wins_kept_share);
        chart.draw_series(DashedLineSeries::new(
            vec![(rx, 0.0), (rx, ry), (0.0, ry)],
            4,
            4,
            MARK_RED.stroke_width(1),
        ))?;
        chart
            .draw_series(std::iter::once(Circle::new((rx, ry), 6, MARK_RED.filled())))?
            .label(format!(
                "p >= {:.4}: keeps {:.1}% of wins{}, filters {:.1}% of requests",
                r.threshold,
                100.0 * r.wins_kept_share,
                r.spend_kept_share
                    .map(|s| format!(" ({:.1}% of spend)", 100.0 * s))
                    .unwrap_or_default(),
                100.0 * r.filtered_share
            ))
            .legend(|(x, y)| Circle::new((x + 12, y), 5, MARK_RED.filled()));
        for p in &f.at_thresholds {
            let (x, y) = (100.0 * p.filtered_share, 100.0 * p.wins_kept_share);
            chart.draw_series(std::iter::once(Circle::new((x, y), 4, ORANGE.filled())))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("p >= {}", p.threshold),
                // text hangs right and down from its anchor: keep it inside the plot at the edges
                (
                    if x > 85.0 { x - 8.5 } else { x + 1.0 },
                    if y < 5.0 { y + 4.5 } else { y - 1.5 },
                ),
                (FAMILY, 14).into_font().color(&ORANGE),
            )))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
        Ok(())
    })
}

pub fn roc_chart(ranking: &Ranking, auc: f64) -> Result<Vec<u8>> {
    let points = thin(&ranking.roc_curve(), 2000);
    render("roc", (700, 620), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("ROC curve (test split)", (FAMILY, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                6,
                6,
                GREY.stroke_width(1),
            ))?
            .label("chance (AUC 0.5)")
            .legend(line_key(GREY.into()));
        chart
            .draw_series(LineSeries::new(points, MODEL_BLUE.stroke_width(3)))?
            .label(format!("model (AUC {auc:.4})"))
            .legend(line_key(MODEL_BLUE.stroke_width(3)));
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

pub fn pr_chart(ranking: &Ranking, average_precision: f64, win_rate: f64) -> Result<Vec<u8>> {
    let points = thin(&ranking.pr_curve(), 2000);
    render("precision-recall", (700, 620), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Precision-recall curve (test split)", (FAMILY, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("recall (share of wins predicted)")
            .y_desc("precision")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, win_rate), (1.0, win_rate)],
                6,
                6,
                GREY.stroke_width(1),
            ))?
            .label(format!("win rate {:.2}%", 100.0 * win_rate))
            .legend(line_key(GREY.into()));
        chart
            .draw_series(LineSeries::new(points, MODEL_BLUE.stroke_width(3)))?
            .label(format!("model (average precision {average_precision:.4})"))
            .legend(line_key(MODEL_BLUE.stroke_width(3)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Share of each label's rows per probability bin; the range ends where 99.9% of rows are.
pub fn histogram_chart(scores: &[f64], labels: &[f32]) -> Result<Vec<u8>> {
    const BINS: usize = 50;
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let high = sorted
        .get(((sorted.len() as f64) * 0.999) as usize)
        .or(sorted.last())
        .copied()
        .unwrap_or(1.0);
    let upper = ((high * 20.0).ceil() / 20.0).clamp(0.05, 1.0);
    let width = upper / BINS as f64;
    let mut counts = [[0u64; BINS]; 2];
    let mut totals = [0u64; 2];
    for (s, y) in scores.iter().zip(labels) {
        let class = usize::from(*y > 0.5);
        let bin = ((s / width) as usize).min(BINS - 1);
        counts[class][bin] += 1;
        totals[class] += 1;
    }
    let shares: Vec<Vec<f64>> = (0..2)
        .map(|c| {
            counts[c]
                .iter()
                .map(|n| 100.0 * *n as f64 / totals[c].max(1) as f64)
                .collect()
        })
        .collect();
    let top = shares
        .iter()
        .flatten()
        .fold(0.0f64, |a, b| a.max(*b))
        .max(1.0)
        * 1.08;
    render("probability histogram", (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Predicted probability by label (test split, share of each label)",
                (FAMILY, 22),
            )
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..upper, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc(if upper < 1.0 {
                format!(
                    "predicted probability of a win (up to {upper:.2}, where 99.9% of rows are; the last bin holds the rest)"
                )
            } else {
                "predicted probability of a win".to_owned()
            })
            .y_desc("share of the label's rows")
            .y_label_formatter(&percent)
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        for (class, color, name) in [
            (0usize, MODEL_BLUE, "no win (label 0)"),
            (1, ORANGE, "win (label 1)"),
        ] {
            let bars = shares[class].iter().enumerate().map(move |(b, share)| {
                let x0 = b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, *share)], color.mix(0.5).filled())
            });
            chart
                .draw_series(bars)?
                .label(format!("{name}: {} rows", totals[class]))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], color.mix(0.5).filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Gain share per feature, largest first.
pub fn importance_chart(names: &[String], gain: &[f64], splits: &[f64]) -> Result<Vec<u8>> {
    let total: f64 = gain.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut rows: Vec<(String, f64, f64)> = names
        .iter()
        .zip(gain.iter().zip(splits))
        .map(|(name, (g, s))| (name.clone(), 100.0 * g / total, *s))
        .collect();
    // largest at the top: the y axis counts upwards
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let n = rows.len() as i32;
    let top = rows.iter().map(|r| r.1).fold(0.0f64, f64::max).max(1.0) * 1.2;
    render("feature importance", (900, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Feature importance (share of total split gain)",
                (FAMILY, 22),
            )
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(160)
            // integer ranges are inclusive in plotters: 0..n - 1 holds exactly n segments
            .build_cartesian_2d(0f64..top, (0..n - 1).into_segmented())?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => rows
                .get(*i as usize)
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&label)
            .x_label_formatter(&percent)
            .x_desc("share of the model's total gain")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let i = i as i32;
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (r.1, SegmentValue::Exact(i + 1)),
                ],
                MODEL_BLUE.filled(),
            );
            bar.set_margin(6, 6, 0, 0);
            bar
        }))?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:.1}% ({} splits)", r.1, r.2),
                (r.1 + top * 0.01, SegmentValue::CenterOf(i as i32)),
                (FAMILY, 14).into_font(),
            )
        }))?;
        Ok(())
    })
}

/// The validation and training metric per iteration, the kept iteration marked.
pub fn learning_chart(fitted: &Fitted) -> Result<Vec<u8>> {
    let (lo, hi) = fitted
        .valid_metric
        .iter()
        .chain(&fitted.train_metric)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let pad = ((hi - lo) * 0.1).max(1e-6);
    let (lo, hi) = if lo.is_finite() {
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    // iterations are whole numbers: an integer axis never labels "2.5 trees"
    let last = i32::try_from(fitted.valid_metric.len().max(1)).unwrap_or(i32::MAX);
    let series = |curve: &[f64]| -> Vec<(i32, f64)> {
        curve
            .iter()
            .enumerate()
            .map(|(i, v)| (i32::try_from(i + 1).unwrap_or(i32::MAX), *v))
            .collect()
    };
    render("learning curve", (900, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("{} by iteration", fitted.metric), (FAMILY, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0..last + 1, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("boosting iteration (trees)")
            .y_desc(fitted.metric.clone())
            .x_labels(usize::try_from(last.min(10) + 1).unwrap_or(10))
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                series(&fitted.valid_metric),
                MODEL_BLUE.stroke_width(2),
            ))?
            .label("validation split")
            .legend(line_key(MODEL_BLUE.stroke_width(2)));
        if !fitted.train_metric.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    series(&fitted.train_metric),
                    ORANGE.stroke_width(2),
                ))?
                .label(format!(
                    "training split ({} rows{})",
                    fitted.train_metric_rows,
                    if fitted.train_metric_rows < fitted.train_rows {
                        ", a sample"
                    } else {
                        ""
                    }
                ))
                .legend(line_key(ORANGE.stroke_width(2)));
        }
        let best = i32::try_from(fitted.best_iteration).unwrap_or(i32::MAX);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(best, lo), (best, hi)],
                5,
                5,
                KEPT_GREEN.stroke_width(2),
            ))?
            .label(format!(
                "kept: {} of {} trees{}",
                fitted.best_iteration,
                fitted.trees_trained,
                if fitted.best_iteration == fitted.trees_trained {
                    " (the last: more rounds may help)"
                } else {
                    ""
                }
            ))
            .legend(line_key(KEPT_GREEN.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Mean predicted probability against the observed win rate per bin of equal row count.
pub fn calibration_chart(calibration: &Calibration) -> Result<Vec<u8>> {
    let top = calibration
        .bins
        .iter()
        .map(|b| b.mean_predicted.max(b.observed))
        .fold(0.0f64, f64::max);
    // the bins sit where the rows are (a few percent for a win rate): zoom there, to a round top
    let top = ((top * 1.1 * 20.0).ceil() / 20.0).clamp(0.05, 1.0);
    let points: Vec<(f64, f64)> = calibration
        .bins
        .iter()
        .map(|b| (b.mean_predicted, b.observed))
        .collect();
    render("calibration", (700, 620), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Calibration (test split)", (FAMILY, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..top, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "mean predicted probability ({} bins of equal row count)",
                calibration.bins.len()
            ))
            .y_desc("observed win rate")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                6,
                6,
                GREY.stroke_width(1),
            ))?
            .label("perfectly calibrated")
            .legend(line_key(GREY.into()));
        chart
            .draw_series(LineSeries::new(points.clone(), MODEL_BLUE.stroke_width(2)))?
            .label(format!(
                "model (expected calibration error {:.4})",
                calibration.expected_calibration_error
            ))
            .legend(line_key(MODEL_BLUE.stroke_width(2)));
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new(*p, 4, MODEL_BLUE.filled())),
        )?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// A feature's importance, as the metrics file lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureImportance {
    pub feature: String,
    pub gain: f64,
    pub gain_share: f64,
    pub splits: u64,
}

pub fn feature_importance(fitted: &Fitted) -> Vec<FeatureImportance> {
    let total: f64 = fitted
        .importance_gain
        .iter()
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    fitted
        .feature_names
        .iter()
        .zip(fitted.importance_gain.iter().zip(&fitted.importance_split))
        .map(|(feature, (gain, splits))| FeatureImportance {
            feature: feature.clone(),
            gain: *gain,
            gain_share: gain / total,
            splits: *splits as u64,
        })
        .collect()
}

/// A chart file and its title.
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub png: Vec<u8>,
}

/// All the charts, the headline first.
pub fn charts(
    fitted: &Fitted,
    evaluation: &Evaluation,
    previous: &Previous,
    test_labels: &[f32],
) -> Result<Vec<Chart>> {
    let ranking = &evaluation.ranking;
    Ok(vec![
        Chart {
            file: "bid-filtering.png",
            title: "Bid filtering trade-off",
            png: filtering_chart(evaluation, previous)?,
        },
        Chart {
            file: "roc.png",
            title: "ROC curve",
            png: roc_chart(ranking, evaluation.roc_auc)?,
        },
        Chart {
            file: "precision-recall.png",
            title: "Precision-recall curve",
            png: pr_chart(ranking, evaluation.pr_auc, evaluation.win_rate)?,
        },
        Chart {
            file: "probability-histogram.png",
            title: "Predicted probability by label",
            png: histogram_chart(&fitted.test_scores, test_labels)?,
        },
        Chart {
            file: "feature-importance.png",
            title: "Feature importance",
            png: importance_chart(
                &fitted.feature_names,
                &fitted.importance_gain,
                &fitted.importance_split,
            )?,
        },
        Chart {
            file: "calibration.png",
            title: "Calibration",
            png: calibration_chart(&evaluation.calibration)?,
        },
        Chart {
            file: "learning-curve.png",
            title: "Training and validation metric by iteration",
            png: learning_chart(fitted)?,
        },
    ])
}

/// The model serving now beside this one: what publishing this one changes.
fn previous_section(s: &mut String, current: &Evaluation, previous: &Previous) {
    match previous {
        Previous::None => {
            s.push_str("<p class=\"note\">No model was published before this one.</p>\n");
        }
        Previous::Compared {
            model_id,
            evaluation: p,
        } => {
            let _ = writeln!(
                s,
                "<h2>Against the published model</h2>\n<p>The model the parameter store served \
                 before this one, <code>{}</code>, scored on the same test rows.</p>\n\
                 <table><tr><th>test metric</th><th>published model</th><th>this model</th><th>change</th></tr>",
                escape(model_id)
            );
            let (old, new) = (p.filtering.recommended, current.filtering.recommended);
            for (name, a, b) in [
                ("ROC AUC", p.roc_auc, current.roc_auc),
                ("PR AUC", p.pr_auc, current.pr_auc),
                ("log loss", p.log_loss, current.log_loss),
                (
                    "expected calibration error",
                    p.calibration.expected_calibration_error,
                    current.calibration.expected_calibration_error,
                ),
                (
                    "requests filtered at the wins-kept target",
                    old.filtered_share,
                    new.filtered_share,
                ),
            ] {
                let _ = writeln!(
                    s,
                    "<tr><td>{name}</td><td>{a:.4}</td><td>{b:.4}</td><td>{}</td></tr>",
                    change(a, b)
                );
            }
            let _ = writeln!(
                s,
                "<tr><td>threshold at the wins-kept target</td><td>{:.4}</td><td>{:.4}</td><td></td></tr></table>",
                old.threshold, new.threshold
            );
        }
        Previous::NotComparable {
            model_id,
            reason,
            published,
        } => {
            let _ = writeln!(
                s,
                "<h2>Against the published model</h2>\n<p>The published model <code>{}</code> was \
                 not scored on this test split: {}.</p>",
                escape(model_id),
                escape(reason)
            );
            if let Some(m) = published {
                let _ = writeln!(
                    s,
                    "<table><tr><th>test metric, each on its own test split</th><th>published model ({} rows)</th><th>this model ({} rows)</th></tr>\
                     <tr><td>ROC AUC</td><td>{:.4}</td><td>{:.4}</td></tr>\
                     <tr><td>PR AUC</td><td>{:.4}</td><td>{:.4}</td></tr>\
                     <tr><td>log loss</td><td>{:.4}</td><td>{:.4}</td></tr></table>",
                    m.rows,
                    current.rows,
                    m.roc_auc,
                    current.roc_auc,
                    m.pr_auc,
                    current.pr_auc,
                    m.log_loss,
                    current.log_loss
                );
            }
        }
        Previous::Unreadable { manifest, reason } => {
            let _ = writeln!(
                s,
                "<h2>Against the published model</h2>\n<p class=\"note\">The published model \
                 (<code>{}</code>) could not be read to compare with: {}.</p>",
                escape(manifest),
                escape(reason)
            );
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the HTML page shows besides the charts.
pub struct PageFacts<'a> {
    pub model_id: &'a str,
    pub etl_run_id: &'a str,
    pub etl_manifest: &'a str,
    pub vocabulary_version: &'a str,
    /// (split, rows, wins)
    pub splits: Vec<(&'static str, usize, usize)>,
    pub params: &'a serde_json::Map<String, serde_json::Value>,
    pub durations_ms: &'a std::collections::BTreeMap<&'static str, u64>,
}

fn filter_row(s: &mut String, label: &str, p: &FilterPoint) {
    let _ = writeln!(
        s,
        "<tr><td>{label}</td><td>{:.4}</td><td>{:.2}%</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        p.threshold,
        100.0 * p.filtered_share,
        100.0 * p.wins_kept_share,
        spend_share(p),
        p.requests_kept,
        p.wins_kept
    );
}

fn spend_share(p: &FilterPoint) -> String {
    p.spend_kept_share
        .map_or_else(|| "n/a".to_owned(), |s| format!("{:.2}%", 100.0 * s))
}

/// One HTML page holding everything, images inlined as base64.
pub fn html(
    facts: &PageFacts<'_>,
    fitted: &Fitted,
    evaluation: &Evaluation,
    previous: &Previous,
    charts: &[Chart],
) -> String {
    let e = evaluation;
    let f = &e.filtering;
    let r = f.recommended;
    let image = |c: &Chart| {
        format!(
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
            escape(c.title),
            base64::engine::general_purpose::STANDARD.encode(&c.png),
            escape(c.title)
        )
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>bid-filtering model {id}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         img{{max-width:100%}}figure{{margin:1em 0}}figcaption{{color:#666;font-size:0.9em}}\
         .headline{{font-size:1.15em;background:#eef5fb;border-left:4px solid #1f77b4;padding:0.6em 1em}}\
         code{{font-size:0.9em}}.note{{color:#666}}</style></head><body>\n\
         <h1>Bid-filtering model <code>{id}</code></h1>\n",
        id = escape(facts.model_id)
    );
    let _ = writeln!(
        s,
        "<p class=\"headline\">A filter that drops bid requests scoring below <b>{:.4}</b> keeps \
         <b>{:.1}%</b> of won impressions{} and saves <b>{:.1}%</b> of bid traffic (test split, \
         target {:.1}% of wins).</p>",
        r.threshold,
        100.0 * r.wins_kept_share,
        r.spend_kept_share
            .map(|s| format!(" (<b>{:.1}%</b> of spend)", 100.0 * s))
            .unwrap_or_default(),
        100.0 * r.filtered_share,
        100.0 * f.wins_kept_target
    );
    if let Some(c) = charts.first() {
        s.push_str(&image(c));
    }
    previous_section(&mut s, evaluation, previous);
    s.push_str("<h2>Filter thresholds</h2>\n<table><tr><th>target</th><th>threshold</th><th>requests filtered</th><th>wins kept</th><th>spend kept</th><th>requests kept</th><th>wins kept (rows)</th></tr>\n");
    for p in &f.by_wins_kept {
        filter_row(
            &mut s,
            &format!("keep {:.1}% of wins", 100.0 * p.wins_kept_share.min(1.0)),
            p,
        );
    }
    for p in &f.at_thresholds {
        filter_row(&mut s, &format!("p &gt;= {}", p.threshold), p);
    }
    s.push_str("</table>\n");
    if let Some(note) = f.spend_note {
        let _ = writeln!(s, "<p class=\"note\">{}.</p>", escape(note));
    }

    let _ = writeln!(
        s,
        "<h2>Test metrics</h2>\n<table><tr><th>metric</th><th>value</th></tr>\
         <tr><td>ROC AUC</td><td>{:.4}</td></tr><tr><td>PR AUC (average precision)</td><td>{:.4}</td></tr>\
         <tr><td>log loss</td><td>{:.4}</td></tr><tr><td>rows</td><td>{}</td></tr>\
         <tr><td>wins (win rate)</td><td>{} ({:.2}%)</td></tr></table>",
        e.roc_auc,
        e.pr_auc,
        e.log_loss,
        e.rows,
        e.wins,
        100.0 * e.win_rate
    );
    s.push_str("<table><tr><th>threshold</th><th>TP</th><th>FP</th><th>TN</th><th>FN</th><th>accuracy</th><th>precision</th><th>recall</th><th>F1</th><th>Matthews</th></tr>\n");
    for t in &e.thresholds {
        let [precision, recall, f1, mcc] = t.shown_ratios();
        let _ = writeln!(
            s,
            "<tr><td>p &gt;= {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{precision}</td><td>{recall}</td><td>{f1}</td><td>{mcc}</td></tr>",
            t.threshold,
            t.true_positives,
            t.false_positives,
            t.true_negatives,
            t.false_negatives,
            t.accuracy,
        );
    }
    s.push_str("</table>\n");
    let c = &e.calibration;
    let _ = writeln!(
        s,
        "<p>Calibration: the mean predicted probability is {:.4} against a win rate of {:.4}; \
         the expected calibration error over {} bins of equal row count is {:.4}.</p>",
        c.mean_predicted,
        c.observed_rate,
        c.bins.len(),
        c.expected_calibration_error
    );
    for c in charts.iter().skip(1) {
        s.push_str(&image(c));
    }

    s.push_str("<h2>Training</h2>\n<table><tr><th>item</th><th>value</th></tr>\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(&v));
    };
    row("etl run", facts.etl_run_id.to_owned());
    row("etl manifest", facts.etl_manifest.to_owned());
    row("vocabulary version", facts.vocabulary_version.to_owned());
    for (name, rows, wins) in &facts.splits {
        row(&format!("{name} rows (wins)"), format!("{rows} ({wins})"));
    }
    row(
        "trees kept / trained",
        format!("{} / {}", fitted.best_iteration, fitted.trees_trained),
    );
    row("early-stopping metric", fitted.metric.clone());
    for (k, v) in facts.durations_ms {
        row(&format!("{k} time"), format!("{:.2} s", *v as f64 / 1000.0));
    }
    s.push_str("</table>\n<h3>LightGBM parameters</h3>\n<table><tr><th>parameter</th><th>value</th></tr>\n");
    for (k, v) in facts.params {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(k),
            escape(&v.to_string())
        );
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::tests::signal_split;

    fn is_png(bytes: &[u8]) -> bool {
        bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'])
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(thin(&v, 20), v);
        let t = thin(&v, 4);
        assert_eq!((t.first(), t.last()), (Some(&0), Some(&9)));
        assert!(t.len() <= 5);
    }

    #[test]
    fn charts_and_page_render() {
        let (train, _) = signal_split("train", 6_000, 31);
        let (valid, _) = signal_split("valid", 2_000, 32);
        let (test, _) = signal_split("test", 3_000, 33);
        let params = crate::params::resolve(&[], 1).expect("defaults");
        let names = crate::data::tests::names();
        let fitted = crate::fit::fit(&train, &valid, &test, &names, &params).expect("fits");
        // wins that score higher cost more here, so the spend line runs above the wins line
        let prices: Vec<f64> = fitted
            .test_scores
            .iter()
            .map(|s| 100.0 + 400.0 * s)
            .collect();
        let evaluation = crate::metrics::evaluate(
            &fitted.test_scores,
            &test.y,
            Some(&prices),
            &[0.5, 0.1],
            0.99,
        );
        let previous = Previous::Compared {
            model_id: "older<m>".into(),
            evaluation: Box::new(crate::metrics::evaluate(
                &fitted
                    .test_scores
                    .iter()
                    .map(|s| s * 0.5)
                    .collect::<Vec<_>>(),
                &test.y,
                None,
                &[0.5],
                0.99,
            )),
        };
        let charts = charts(&fitted, &evaluation, &previous, &test.y).expect("charts");
        assert_eq!(charts.len(), 7);
        for c in &charts {
            assert!(is_png(&c.png) && c.png.len() > 5_000, "{}", c.file);
        }
        if let Some(dir) = std::env::var_os("RTB_CHART_DIR") {
            // look at the charts: RTB_CHART_DIR=/tmp/charts cargo test charts_and_page_render
            for c in &charts {
                std::fs::write(std::path::Path::new(&dir).join(c.file), &c.png).expect("write");
            }
        }
        let durations = std::collections::BTreeMap::from([("train", 1234u64)]);
        let facts = PageFacts {
            model_id: "m<1>",
            etl_run_id: "run",
            etl_manifest: "file:///m.json",
            vocabulary_version: "sha256:ab",
            splits: vec![("train", train.rows(), train.wins())],
            params: &params,
            durations_ms: &durations,
        };
        let page = html(&facts, &fitted, &evaluation, &previous, &charts);
        assert!(page.contains("Against the published model") && page.contains("older&lt;m&gt;"));
        // halving every score keeps the ranking: the same AUC, a worse log loss
        assert!(page.contains("<td>ROC AUC</td>") && page.contains("+0.0000"));
        assert_eq!(page.matches("data:image/png;base64,").count(), 7);
        assert!(page.contains("m&lt;1&gt;") && !page.contains("m<1>"));
        assert!(page.contains("keeps <b>") && page.contains("</b> of spend)"));
        assert!(!page.contains("spend kept is not reported"));
        let unpriced = crate::metrics::evaluate(&fitted.test_scores, &test.y, None, &[0.5], 0.99);
        let page = html(&facts, &fitted, &unpriced, &Previous::None, &charts);
        assert!(page.contains("No model was published before this one"));
        assert!(page.contains("spend kept is not reported") && page.contains("n/a"));
    }
}
