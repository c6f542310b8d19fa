//! The documented win model: what makes a generated bid win an impression.
//!
//! ```text
//! logit P(win) = BASE
//!              + device(d)                      smartphone +0.6, mobilephone -0.5, appliance -0.4,
//!                                               pc 0, crawler -2.5, misc -0.7, unknown -1.0
//!              + 0.45 * cos(2π (hour - 21) / 24)  evening peak, early-morning trough
//!              + 0.8  * z(domain)                 z ~ N(0,1), fixed per domain and seed
//!              + 0.35 * z(region)                 fixed per region and seed
//!              + advertiser(a)                    see ADVERTISER_EFFECT
//!              + exchange(e)                      +0.25, 0, -0.35, +0.1 for exchanges 1..4
//!              - 0.012 * floor_price
//! P(win) = 0 when floor_price >= bidding_price (the bid cannot clear the floor)
//! ```
//! Floor price and exchange are not model features, so a model trained on the kit's features
//! stays below the oracle, whose AUC the generator reports for every run.

use rtb_features::DeviceType;

use crate::rng::{mix, normal_from_hash};

pub const BASE: f64 = -3.55;

pub fn device_effect(device: DeviceType) -> f64 {
    match device {
        DeviceType::Smartphone => 0.6,
        DeviceType::Mobilephone => -0.5,
        DeviceType::Appliance => -0.4,
        DeviceType::Pc => 0.0,
        DeviceType::Crawler => -2.5,
        DeviceType::Misc => -0.7,
        DeviceType::Unknown => -1.0,
    }
}

pub fn hour_effect(hour: u32) -> f64 {
    0.45 * (std::f64::consts::TAU * (f64::from(hour) - 21.0) / 24.0).cos()
}

pub const EXCHANGE_EFFECT: [f64; 4] = [0.25, 0.0, -0.35, 0.1];

/// Per advertiser, in `catalog::ADVERTISERS` order.
pub const ADVERTISER_EFFECT: [f64; 9] = [0.2, -0.1, 0.3, 0.0, -0.3, 0.15, -0.2, 0.1, -0.05];

pub fn domain_effect(seed: u64, domain_index: usize) -> f64 {
    0.8 * normal_from_hash(mix(&[seed, 0xD0E, domain_index as u64]))
}

pub fn region_effect(seed: u64, region_id: u32) -> f64 {
    0.35 * normal_from_hash(mix(&[seed, 0x4E6, u64::from(region_id)]))
}

pub fn floor_effect(floor_price: u32) -> f64 {
    -0.012 * f64::from(floor_price)
}

pub fn probability(logit: f64) -> f64 {
    1.0 / (1.0 + (-logit).exp())
}

/// Exact ROC AUC of the true win probabilities against the realised outcomes. Nearly every bid
/// has its own probability, so outcomes are appended (8 bytes each: probability bits shifted
/// left, outcome in the low bit; lossless because p >= 0 leaves the sign bit clear) and sorted
/// once when the AUC is asked for. A hash map keyed by probability cost more per row.
#[derive(Debug, Clone, Default)]
pub struct OracleAuc {
    outcomes: Vec<u64>,
}

impl OracleAuc {
    #[inline]
    pub fn record(&mut self, p: f64, won: bool) {
        self.outcomes.push((p.to_bits() << 1) | u64::from(won));
    }

    pub fn merge(&mut self, other: &OracleAuc) {
        self.outcomes.extend_from_slice(&other.outcomes);
    }

    /// Mann-Whitney U with ties counted half; `None` without both outcomes.
    pub fn auc(&self) -> Option<f64> {
        let mut sorted = self.outcomes.clone();
        sorted.sort_unstable();
        let (mut negatives_below, mut u, mut neg_total, mut pos_total) = (0u64, 0.0, 0u64, 0u64);
        for group in sorted.chunk_by(|a, b| a >> 1 == b >> 1) {
            // within a probability, negatives sort first
            let p = group.iter().filter(|o| *o & 1 == 1).count() as u64;
            let n = group.len() as u64 - p;
            u += p as f64 * (negatives_below as f64 + n as f64 / 2.0);
            negatives_below += n;
            neg_total += n;
            pos_total += p;
        }
        if neg_total == 0 || pos_total == 0 {
            return None;
        }
        Some(u / (neg_total as f64 * pos_total as f64))
    }

    /// The bid filter the true probability allows: for each share of labelled wins to keep,
    /// the lowest probability that keeps it and the share of bids below it (filtered out), as
    /// a model's report states its own filter. `None` without wins.
    pub fn filtering(&self, wins_kept: &[f64]) -> Option<Vec<OracleFilter>> {
        let mut sorted = self.outcomes.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let total = sorted.len() as f64;
        let wins = sorted.iter().filter(|o| *o & 1 == 1).count() as f64;
        if wins == 0.0 {
            return None;
        }
        let mut points = Vec::with_capacity(wins_kept.len());
        let (mut kept_wins, mut kept_bids) = (0.0, 0.0);
        let mut targets = wins_kept.iter().copied().peekable();
        // a filter keeps every bid at or above its threshold: whole groups of one probability
        for group in sorted.chunk_by(|a, b| a >> 1 == b >> 1) {
            kept_wins += group.iter().filter(|o| *o & 1 == 1).count() as f64;
            kept_bids += group.len() as f64;
            while let Some(target) = targets.next_if(|t| kept_wins / wins >= *t) {
                points.push(OracleFilter {
                    wins_kept_target: target,
                    threshold: f64::from_bits(group[0] >> 1),
                    wins_kept: kept_wins / wins,
                    traffic_filtered: 1.0 - kept_bids / total,
                });
            }
        }
        Some(points)
    }
}

/// One point of the oracle's trade-off.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OracleFilter {
    pub wins_kept_target: f64,
    /// Bids with a true probability at or above this are kept.
    pub threshold: f64,
    pub wins_kept: f64,
    pub traffic_filtered: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        let mut auc = OracleAuc::default();
        // scores 0.1 (neg), 0.4 (pos), 0.4 (neg), 0.8 (pos): pairs (pos, neg): (0.4,0.1)=1,
        // (0.4,0.4)=0.5, (0.8,0.1)=1, (0.8,0.4)=1 -> 3.5 / 4
        auc.record(0.1, false);
        auc.record(0.4, true);
        auc.record(0.4, false);
        auc.record(0.8, true);
        assert_eq!(auc.auc(), Some(0.875));
        assert_eq!(OracleAuc::default().auc(), None);
        // keeping half the wins keeps the 0.8 bid alone: 3 of 4 bids filtered; keeping all
        // of them keeps everything from 0.4 up: the 0.1 bid is filtered
        let points = auc.filtering(&[0.5, 1.0]).expect("wins");
        assert_eq!(
            (points[0].threshold, points[0].traffic_filtered),
            (0.8, 0.75)
        );
        assert_eq!(
            (
                points[1].threshold,
                points[1].wins_kept,
                points[1].traffic_filtered
            ),
            (0.4, 1.0, 0.25)
        );
    }

    #[test]
    fn effects_have_the_documented_shape() {
        assert!(hour_effect(21) > hour_effect(9));
        assert!((hour_effect(21) - 0.45).abs() < 1e-12);
        assert!(device_effect(DeviceType::Smartphone) > device_effect(DeviceType::Crawler));
        assert_eq!(domain_effect(7, 3), domain_effect(7, 3));
    }
}
