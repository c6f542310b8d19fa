//! Test-split metrics: ROC AUC, PR AUC (average precision), log loss, the confusion matrix and
//! its ratios at chosen thresholds, and the bid-filtering trade-off.
//!
//! Conventions: a request is *kept* (predicted to win) when its probability is `>= threshold`;
//! ties in scores count half in the AUC and move together along every curve; ratios whose
//! denominator is zero are 0, as in scikit-learn. Spend is the paying price of won impressions
//! only: a lost bid costs nothing whatever its price column says.

use serde::Serialize;

/// Probabilities are clipped like scikit-learn's log loss and LightGBM's `binary_logloss`.
const LOG_LOSS_EPSILON: f64 = 1e-15;

/// Test rows grouped by distinct score, highest score first.
#[derive(Debug, Clone)]
pub struct Ranking {
    groups: Vec<ScoreGroup>,
    positives: u64,
    negatives: u64,
    /// Total spend on won impressions, when prices are known.
    spend: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ScoreGroup {
    score: f64,
    positives: u64,
    negatives: u64,
    spend: f64,
}

impl Ranking {
    /// `labels` are 0 or 1 (anything above 0.5 counts as a win).
    pub fn new(scores: &[f64], labels: &[f32]) -> Self {
        Self::priced(scores, labels, None)
    }

    /// With the paying price of each row, so filter points also report the spend they keep.
    pub fn priced(scores: &[f64], labels: &[f32], prices: Option<&[f64]>) -> Self {
        let price = |i: usize| prices.map_or(0.0, |p| p[i]);
        let mut rows: Vec<(f64, bool, f64)> = scores
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(i, (s, l))| (*s, *l > 0.5, if *l > 0.5 { price(i) } else { 0.0 }))
            .collect();
        rows.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut groups: Vec<ScoreGroup> = Vec::new();
        for (score, win, spend) in rows {
            let same = groups.last().is_some_and(|g| g.score == score);
            if !same {
                groups.push(ScoreGroup {
                    score,
                    positives: 0,
                    negatives: 0,
                    spend: 0.0,
                });
            }
            if let Some(g) = groups.last_mut() {
                if win {
                    g.positives += 1;
                } else {
                    g.negatives += 1;
                }
                g.spend += spend;
            }
        }
        let positives = groups.iter().map(|g| g.positives).sum();
        let negatives = groups.iter().map(|g| g.negatives).sum();
        let spend = prices.map(|_| groups.iter().map(|g| g.spend).sum::<f64>());
        Ranking {
            groups,
            positives,
            negatives,
            spend,
        }
    }

    pub fn rows(&self) -> u64 {
        self.positives + self.negatives
    }

    pub fn positives(&self) -> u64 {
        self.positives
    }

    /// The probability that a random win scores above a random loss (ties count half).
    pub fn roc_auc(&self) -> f64 {
        if self.positives == 0 || self.negatives == 0 {
            return f64::NAN;
        }
        let mut wins_above = 0u64;
        let mut area = 0.0;
        for g in &self.groups {
            area += g.negatives as f64 * (wins_above as f64 + g.positives as f64 / 2.0);
            wins_above += g.positives;
        }
        area / (self.positives as f64 * self.negatives as f64)
    }

    /// Average precision: the sum over thresholds of precision times the recall gained there
    /// (scikit-learn's `average_precision_score`, the step-wise PR AUC).
    pub fn average_precision(&self) -> f64 {
        if self.positives == 0 {
            return f64::NAN;
        }
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut ap = 0.0;
        for g in &self.groups {
            tp += g.positives;
            fp += g.negatives;
            if g.positives > 0 {
                ap += (g.positives as f64 / self.positives as f64) * (tp as f64 / (tp + fp) as f64);
            }
        }
        ap
    }

    /// (false positive rate, true positive rate) at every distinct score, from (0, 0) to (1, 1).
    pub fn roc_curve(&self) -> Vec<(f64, f64)> {
        let (p, n) = (self.positives.max(1) as f64, self.negatives.max(1) as f64);
        let mut points = vec![(0.0, 0.0)];
        let (mut tp, mut fp) = (0u64, 0u64);
        for g in &self.groups {
            tp += g.positives;
            fp += g.negatives;
            points.push((fp as f64 / n, tp as f64 / p));
        }
        points
    }

    /// (recall, precision) at every distinct score, highest threshold first.
    pub fn pr_curve(&self) -> Vec<(f64, f64)> {
        let p = self.positives.max(1) as f64;
        let (mut tp, mut fp) = (0u64, 0u64);
        self.groups
            .iter()
            .map(|g| {
                tp += g.positives;
                fp += g.negatives;
                (tp as f64 / p, tp as f64 / (tp + fp) as f64)
            })
            .collect()
    }

    /// What a filter that keeps requests scoring `>= threshold` keeps and drops.
    pub fn filter_at(&self, threshold: f64) -> FilterPoint {
        let mut kept = Kept::default();
        for g in self.groups.iter().take_while(|g| g.score >= threshold) {
            kept.add(g);
        }
        self.point(threshold, kept)
    }

    /// Mean predicted probability against the observed win rate, in `bins` bins of about equal
    /// row count from the lowest score up (a reliability diagram). Rows with the same score stay
    /// in one bin, so a bin can hold more than its share.
    pub fn calibration(&self, bins: usize) -> Calibration {
        let rows = self.rows();
        let per_bin = rows.div_ceil(bins.max(1) as u64).max(1);
        let mut out: Vec<CalibrationBin> = Vec::new();
        let mut open: Option<(CalibrationBin, f64)> = None;
        let mut predicted_total = 0.0;
        for g in self.groups.iter().rev() {
            let n = g.positives + g.negatives;
            let (bin, sum) = open.get_or_insert((
                CalibrationBin {
                    rows: 0,
                    wins: 0,
                    min_predicted: g.score,
                    max_predicted: g.score,
                    mean_predicted: 0.0,
                    observed: 0.0,
                },
                0.0,
            ));
            bin.rows += n;
            bin.wins += g.positives;
            bin.max_predicted = g.score;
            *sum += g.score * n as f64;
            predicted_total += g.score * n as f64;
            if bin.rows >= per_bin
                && let Some((bin, sum)) = open.take()
            {
                out.push(bin.closed(sum));
            }
        }
        if let Some((bin, sum)) = open.take() {
            out.push(bin.closed(sum));
        }
        let error = out
            .iter()
            .map(|b| b.rows as f64 * (b.observed - b.mean_predicted).abs())
            .sum::<f64>()
            / rows.max(1) as f64;
        Calibration {
            bins: out,
            expected_calibration_error: error,
            mean_predicted: predicted_total / rows.max(1) as f64,
            observed_rate: self.positives as f64 / rows.max(1) as f64,
        }
    }

    /// The highest threshold that still keeps `wins_share` of the wins: the most traffic a
    /// filter can drop under that constraint.
    pub fn filter_keeping(&self, wins_share: f64) -> FilterPoint {
        let needed = wins_share * self.positives as f64 - 1e-9;
        let mut kept = Kept::default();
        for g in &self.groups {
            kept.add(g);
            if kept.wins as f64 >= needed {
                return self.point(g.score, kept);
            }
        }
        let lowest = self.groups.last().map_or(0.0, |g| g.score);
        self.point(lowest, kept)
    }

    /// The filtering trade-off at every distinct score, thinned so consecutive points differ by
    /// at least `step` in either share (the first and last points are always kept).
    pub fn filtering_curve(&self, step: f64) -> Vec<FilterPoint> {
        let mut kept = Kept::default();
        let mut points: Vec<FilterPoint> = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            kept.add(g);
            let point = self.point(g.score, kept);
            let last = i + 1 == self.groups.len();
            let far = points.last().is_none_or(|p| {
                (p.filtered_share - point.filtered_share).abs() >= step
                    || (p.wins_kept_share - point.wins_kept_share).abs() >= step
            });
            if far || last {
                points.push(point);
            }
        }
        points
    }

    fn point(&self, threshold: f64, kept: Kept) -> FilterPoint {
        let rows = self.rows().max(1) as f64;
        let share = |part: f64, whole: f64| if whole == 0.0 { 0.0 } else { part / whole };
        FilterPoint {
            threshold,
            requests_kept: kept.requests,
            wins_kept: kept.wins,
            filtered_share: 1.0 - kept.requests as f64 / rows,
            wins_kept_share: share(kept.wins as f64, self.positives as f64),
            spend_kept_share: self.spend.map(|total| share(kept.spend, total)),
        }
    }
}

/// Running totals of what a filter keeps, walking down the ranking.
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    requests: u64,
    wins: u64,
    spend: f64,
}

impl Kept {
    fn add(&mut self, g: &ScoreGroup) {
        self.requests += g.positives + g.negatives;
        self.wins += g.positives;
        self.spend += g.spend;
    }
}

/// A bid filter at one threshold: requests scoring below it are not sent to bidding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FilterPoint {
    pub threshold: f64,
    /// Share of bid requests the filter drops (the traffic and compute it saves).
    pub filtered_share: f64,
    /// Share of won impressions among the requests it keeps.
    pub wins_kept_share: f64,
    /// Share of the spend on won impressions it keeps (`None` when prices are unknown).
    pub spend_kept_share: Option<f64>,
    pub requests_kept: u64,
    pub wins_kept: u64,
}

/// Mean negative log-likelihood of the labels under the predicted probabilities.
pub fn log_loss(scores: &[f64], labels: &[f32]) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    let total: f64 = scores
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
            if *y > 0.5 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / scores.len() as f64
}

/// Share of rows misclassified when a win is predicted for probabilities above 0.5
/// (LightGBM's `binary_error`).
pub fn binary_error(scores: &[f64], labels: &[f32]) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    let wrong = scores
        .iter()
        .zip(labels)
        .filter(|(p, y)| (**p > 0.5) != (**y > 0.5))
        .count();
    wrong as f64 / scores.len() as f64
}

/// Confusion matrix at one threshold, with the ratios derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdMetrics {
    pub threshold: f64,
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub matthews_correlation: f64,
}

impl ThresholdMetrics {
    /// Precision, recall, F1 and Matthews correlation as a person reads them: `n/a` where the
    /// ratio has nothing to count (no predicted or no actual positive), not a misleading 0.
    pub fn shown_ratios(&self) -> [String; 4] {
        let (tp, fp, tn, fn_) = (
            self.true_positives,
            self.false_positives,
            self.true_negatives,
            self.false_negatives,
        );
        let predicted = tp + fp > 0;
        let actual = tp + fn_ > 0;
        let shown = |v: f64, defined: bool| {
            if defined {
                format!("{v:.4}")
            } else {
                "n/a".to_owned()
            }
        };
        [
            shown(self.precision, predicted),
            shown(self.recall, actual),
            shown(self.f1, predicted && actual),
            shown(
                self.matthews_correlation,
                predicted && actual && tn + fn_ > 0 && tn + fp > 0,
            ),
        ]
    }

    pub fn new(scores: &[f64], labels: &[f32], threshold: f64) -> Self {
        let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
        for (p, y) in scores.iter().zip(labels) {
            match (*p >= threshold, *y > 0.5) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, false) => tn += 1,
                (false, true) => fn_ += 1,
            }
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        let (tpf, fpf, tnf, fnf) = (tp as f64, fp as f64, tn as f64, fn_ as f64);
        let denominator = ((tpf + fpf) * (tpf + fnf) * (tnf + fpf) * (tnf + fnf)).sqrt();
        let matthews_correlation = if denominator == 0.0 {
            0.0
        } else {
            (tpf * tnf - fpf * fnf) / denominator
        };
        ThresholdMetrics {
            threshold,
            true_positives: tp,
            false_positives: fp,
            true_negatives: tn,
            false_negatives: fn_,
            accuracy: ratio(tp + tn, tp + fp + tn + fn_),
            precision,
            recall,
            f1,
            matthews_correlation,
        }
    }
}

/// Shares of wins a filter may be asked to keep; the report tabulates each.
pub const WINS_KEPT_TARGETS: [f64; 7] = [0.999, 0.99, 0.98, 0.95, 0.9, 0.8, 0.5];

/// Everything measured on the test split.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub rows: u64,
    pub wins: u64,
    pub win_rate: f64,
    pub roc_auc: f64,
    /// Average precision (step-wise area under the precision-recall curve).
    pub pr_auc: f64,
    pub log_loss: f64,
    /// Sum of the paying price (CPM) of the test split's won impressions, when known.
    pub spend: Option<f64>,
    pub thresholds: Vec<ThresholdMetrics>,
    pub filtering: Filtering,
    pub calibration: Calibration,
    /// The sorted test scores everything above came from, kept for the ROC and PR charts.
    #[serde(skip)]
    pub ranking: Ranking,
}

/// How far predicted probabilities are from observed win rates (see [`Ranking::calibration`]).
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub bins: Vec<CalibrationBin>,
    /// Row-weighted mean of |observed rate - mean predicted| over the bins.
    pub expected_calibration_error: f64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CalibrationBin {
    pub rows: u64,
    pub wins: u64,
    pub min_predicted: f64,
    pub max_predicted: f64,
    pub mean_predicted: f64,
    pub observed: f64,
}

impl CalibrationBin {
    fn closed(self, predicted_sum: f64) -> Self {
        let rows = self.rows.max(1) as f64;
        CalibrationBin {
            mean_predicted: predicted_sum / rows,
            observed: self.wins as f64 / rows,
            ..self
        }
    }
}

/// Bins of the calibration chart and table.
pub const CALIBRATION_BINS: usize = 20;

/// The bid-filtering trade-off: traffic dropped against wins kept.
#[derive(Debug, Clone, Serialize)]
pub struct Filtering {
    /// The share of wins the recommended threshold must keep (`--wins-kept`).
    pub wins_kept_target: f64,
    /// The highest threshold keeping at least `wins_kept_target` of the wins.
    pub recommended: FilterPoint,
    /// The same for each of [`WINS_KEPT_TARGETS`].
    pub by_wins_kept: Vec<FilterPoint>,
    /// At each evaluated probability threshold.
    pub at_thresholds: Vec<FilterPoint>,
    /// The whole curve, thinned to steps of 0.2 percentage points.
    pub curve: Vec<FilterPoint>,
    /// Why spend kept is missing, when it is.
    pub spend_note: Option<&'static str>,
}

pub const SPEND_NOTE: &str = "spend kept is not reported: the test split has no PayingPrice \
     column (the etl job must select it into the features step, as the shipped job does)";

/// Evaluates test-split probabilities.
pub fn evaluate(
    scores: &[f64],
    labels: &[f32],
    prices: Option<&[f64]>,
    thresholds: &[f64],
    wins_kept_target: f64,
) -> Evaluation {
    let ranking = Ranking::priced(scores, labels, prices);
    Evaluation {
        rows: ranking.rows(),
        wins: ranking.positives(),
        win_rate: ranking.positives() as f64 / ranking.rows().max(1) as f64,
        roc_auc: ranking.roc_auc(),
        pr_auc: ranking.average_precision(),
        log_loss: log_loss(scores, labels),
        spend: ranking.spend,
        thresholds: thresholds
            .iter()
            .map(|t| ThresholdMetrics::new(scores, labels, *t))
            .collect(),
        filtering: Filtering {
            wins_kept_target,
            recommended: ranking.filter_keeping(wins_kept_target),
            by_wins_kept: WINS_KEPT_TARGETS
                .iter()
                .map(|s| ranking.filter_keeping(*s))
                .collect(),
            at_thresholds: thresholds.iter().map(|t| ranking.filter_at(*t)).collect(),
            curve: ranking.filtering_curve(0.002),
            spend_note: prices.is_none().then_some(SPEND_NOTE),
        },
        calibration: ranking.calibration(CALIBRATION_BINS),
        ranking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // scikit-learn's documentation example: AP 0.8333, AUC 0.75
    const SCORES: [f64; 4] = [0.1, 0.4, 0.35, 0.8];
    const LABELS: [f32; 4] = [0.0, 0.0, 1.0, 1.0];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn auc_and_average_precision_by_hand() {
        let r = Ranking::new(&SCORES, &LABELS);
        // pairs (win, loss): (0.8, 0.1) (0.8, 0.4) (0.35, 0.1) ranked right, (0.35, 0.4) wrong
        assert!(close(r.roc_auc(), 0.75), "{}", r.roc_auc());
        // thresholds 0.8: recall 1/2 at precision 1; 0.35: recall +1/2 at precision 2/3
        assert!(close(r.average_precision(), 0.5 + 0.5 * 2.0 / 3.0));
        assert_eq!(
            r.roc_curve(),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
    }

    #[test]
    fn calibration_by_hand() {
        let scores = [0.1, 0.1, 0.2, 0.4, 0.6, 0.8];
        let labels = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let c = Ranking::new(&scores, &labels).calibration(3);
        let shape: Vec<(u64, u64)> = c.bins.iter().map(|b| (b.rows, b.wins)).collect();
        assert_eq!(shape, vec![(2, 0), (2, 1), (2, 2)]);
        assert!(close(c.bins[1].mean_predicted, 0.3) && close(c.bins[1].observed, 0.5));
        assert!((c.bins[1].min_predicted, c.bins[1].max_predicted) == (0.2, 0.4));
        // |0 - 0.1|, |0.5 - 0.3|, |1 - 0.7|, each a third of the rows
        assert!(close(c.expected_calibration_error, 0.2), "{c:?}");
        assert!(close(c.mean_predicted, 2.2 / 6.0) && close(c.observed_rate, 0.5));
        // a tie never splits: four rows of one score fill a bin of two
        let tied = Ranking::new(&[0.3; 4], &[1.0, 0.0, 0.0, 0.0]).calibration(2);
        assert_eq!(tied.bins.len(), 1);
        assert_eq!(tied.bins[0].rows, 4);
    }

    #[test]
    fn calibrated_scores_have_a_small_error_and_doubled_ones_a_large_one() {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let scores: Vec<f64> = (0..50_000).map(|_| 0.02 + 0.3 * next()).collect();
        let labels: Vec<f32> = scores
            .iter()
            .map(|p| if next() < *p { 1.0 } else { 0.0 })
            .collect();
        let honest = Ranking::new(&scores, &labels).calibration(CALIBRATION_BINS);
        let doubled: Vec<f64> = scores.iter().map(|p| 2.0 * p).collect();
        let over = Ranking::new(&doubled, &labels).calibration(CALIBRATION_BINS);
        assert_eq!(honest.bins.len(), CALIBRATION_BINS);
        assert!(honest.expected_calibration_error < 0.015, "{honest:?}");
        assert!(over.expected_calibration_error > 0.15, "{over:?}");
        let rows: u64 = over.bins.iter().map(|b| b.rows).sum();
        let wins: u64 = over.bins.iter().map(|b| b.wins).sum();
        assert_eq!(rows, 50_000);
        assert_eq!(wins, labels.iter().filter(|l| **l > 0.5).count() as u64);
    }

    #[test]
    fn ties_count_half() {
        // one win and one loss share a score: a coin flip
        let r = Ranking::new(&[0.5, 0.5], &[1.0, 0.0]);
        assert!(close(r.roc_auc(), 0.5));
        // the tied group reaches recall 1 at precision 1/2
        assert!(close(r.average_precision(), 0.5));
        let r = Ranking::new(&[0.9, 0.5, 0.5, 0.1], &[1.0, 1.0, 0.0, 0.0]);
        // (0.9 > all) 2 pairs, (0.5 vs 0.5) half, (0.5 > 0.1) 1: 3.5 / 4
        assert!(close(r.roc_auc(), 0.875));
        assert!(Ranking::new(&[0.3], &[1.0]).roc_auc().is_nan());
    }

    #[test]
    fn log_loss_by_hand() {
        let expected = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
        assert!(close(log_loss(&[0.8, 0.3], &[1.0, 0.0]), expected));
        // clipped, not infinite
        assert!(log_loss(&[0.0], &[1.0]).is_finite());
        assert!(close(
            binary_error(&[0.8, 0.6, 0.5], &[1.0, 0.0, 1.0]),
            2.0 / 3.0
        ));
    }

    #[test]
    fn confusion_and_ratios_by_hand() {
        let m = ThresholdMetrics::new(&SCORES, &LABELS, 0.5);
        assert_eq!(
            (
                m.true_positives,
                m.false_positives,
                m.true_negatives,
                m.false_negatives
            ),
            (1, 0, 2, 1)
        );
        assert!(close(m.accuracy, 0.75));
        assert!(close(m.precision, 1.0));
        assert!(close(m.recall, 0.5));
        assert!(close(m.f1, 2.0 / 3.0));
        // (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3)
        assert!(close(m.matthews_correlation, 2.0 / 12f64.sqrt()));

        let m = ThresholdMetrics::new(&SCORES, &LABELS, 0.35);
        assert_eq!(
            (
                m.true_positives,
                m.false_positives,
                m.true_negatives,
                m.false_negatives
            ),
            (2, 1, 1, 0),
            "a score equal to the threshold is kept"
        );
        assert!(close(m.precision, 2.0 / 3.0));
        assert!(close(m.f1, 0.8));
        assert!(close(m.matthews_correlation, 2.0 / 12f64.sqrt()));

        // nothing predicted positive: precision, f1 and mcc are 0, not NaN
        let m = ThresholdMetrics::new(&SCORES, &LABELS, 0.9);
        assert_eq!((m.precision, m.f1, m.matthews_correlation), (0.0, 0.0, 0.0));
        assert!(close(m.accuracy, 0.5));
    }

    #[test]
    fn filtering_trade_off_by_hand() {
        // 10 requests, 4 wins; wins at 0.9, 0.7, 0.4, 0.2
        let scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
        let labels = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let r = Ranking::new(&scores, &labels);
        // keeping every win needs threshold 0.2: 9 of 10 kept, 10% filtered
        let all = r.filter_keeping(1.0);
        assert_eq!(
            (all.threshold, all.requests_kept, all.wins_kept),
            (0.2, 9, 4)
        );
        assert!(close(all.filtered_share, 0.1));
        // 75% of wins: threshold 0.4 keeps 7 requests, filters 30%
        let most = r.filter_keeping(0.75);
        assert_eq!((most.threshold, most.requests_kept), (0.4, 7));
        assert!(close(most.filtered_share, 0.3) && close(most.wins_kept_share, 0.75));
        // 99% of 4 wins still needs all 4
        assert_eq!(r.filter_keeping(0.99).threshold, 0.2);
        let at = r.filter_at(0.5);
        assert_eq!((at.requests_kept, at.wins_kept), (6, 2));
        assert!(close(at.filtered_share, 0.4));
        let curve = r.filtering_curve(0.0);
        assert_eq!(curve.len(), 10);
        assert!(close(curve[0].filtered_share, 0.9) && curve[0].wins_kept == 0);
        assert!(close(curve[9].filtered_share, 0.0) && close(curve[9].wins_kept_share, 1.0));
        assert!(r.filtering_curve(0.25).len() < 10);
    }

    #[test]
    fn spend_kept_by_hand() {
        // wins at 0.8 (paid 300) and 0.35 (paid 100); the loss at 0.4 has a price that must not
        // count: only won impressions are paid for
        let prices = [0.0, 999.0, 100.0, 300.0];
        let e = evaluate(&SCORES, &LABELS, Some(&prices), &[0.5, 0.1], 0.99);
        assert_eq!(e.spend, Some(400.0));
        assert_eq!(e.filtering.spend_note, None);
        // p >= 0.5 keeps only the 0.8 win: 300 of 400
        let at = e.filtering.at_thresholds[0];
        assert_eq!(at.spend_kept_share, Some(0.75));
        // keeping every win keeps all the spend
        assert_eq!(e.filtering.recommended.spend_kept_share, Some(1.0));
        let curve = Ranking::priced(&SCORES, &LABELS, Some(&prices)).filtering_curve(0.0);
        let spend: Vec<f64> = curve.iter().filter_map(|p| p.spend_kept_share).collect();
        assert_eq!(spend, [0.75, 0.75, 1.0, 1.0]);
    }

    #[test]
    fn evaluate_gathers_everything() {
        let e = evaluate(&SCORES, &LABELS, None, &[0.5, 0.1], 0.99);
        assert_eq!((e.rows, e.wins), (4, 2));
        assert!(close(e.roc_auc, 0.75) && close(e.win_rate, 0.5));
        assert_eq!(e.thresholds.len(), 2);
        assert_eq!(e.filtering.recommended.threshold, 0.35);
        assert_eq!(e.filtering.by_wins_kept.len(), WINS_KEPT_TARGETS.len());
        assert!(e.spend.is_none() && e.filtering.recommended.spend_kept_share.is_none());
        assert_eq!(e.filtering.spend_note, Some(SPEND_NOTE));
    }

    #[test]
    fn undefined_ratios_are_shown_as_such() {
        // no positive predicted at 0.5: precision, F1 and MCC are undefined, recall is 0
        let t = ThresholdMetrics::new(&[0.1, 0.2, 0.3], &[1.0, 0.0, 0.0], 0.5);
        assert_eq!(t.shown_ratios(), ["n/a", "0.0000", "n/a", "n/a"]);
        let t = ThresholdMetrics::new(&[0.9, 0.2, 0.7], &[1.0, 0.0, 0.0], 0.5);
        assert_eq!(t.shown_ratios()[0], "0.5000");
    }
}
