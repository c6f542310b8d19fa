//! The open loop's plan: call `i` is due at `i / rate` seconds after the start, whatever
//! happened to earlier calls. Latency is measured from that intended time, so a server that
//! stalls is charged for every call it delayed, including the ones a closed loop would never
//! have sent (no coordinated omission).
//!
//! Which calls are warm-up and where the run ends are decided here too, from the call number
//! alone, so the plan is exact and testable without a clock.

use std::time::Duration;

use crate::error::{Result, SimError};

/// When each call is due, and which are measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    rate: f64,
    warmup: Duration,
    /// Calls are not sent at or after `warmup + duration`.
    duration: Option<Duration>,
    /// At most this many measured calls.
    calls: Option<u64>,
}

/// Why a plan has no more calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanEnd {
    Duration,
    Calls,
}

impl Schedule {
    /// `rate` calls per second; `None` limits mean no limit of that kind.
    pub fn new(
        rate: f64,
        warmup: Duration,
        duration: Option<Duration>,
        calls: Option<u64>,
    ) -> Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(SimError::BadConfig(format!(
                "--rate is {rate}; it must be a positive number of calls per second"
            )));
        }
        if rate > 1_000_000.0 {
            return Err(SimError::BadConfig(format!(
                "--rate is {rate}; at most 1000000 calls per second are planned"
            )));
        }
        Ok(Schedule {
            rate,
            warmup,
            duration,
            calls,
        })
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When call `i` is due, from the start. Computed from `i`, not by adding intervals, so it
    /// does not drift.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many calls are due before `at` (the first call that is not: the index returned).
    pub fn due_before(&self, at: Duration) -> u64 {
        let estimate = (at.as_secs_f64() * self.rate).ceil() as u64;
        // correct the floating-point estimate by the exact test used for each call
        let mut i = estimate.saturating_sub(2);
        while self.due(i) < at {
            i += 1;
        }
        i
    }

    /// Call number of the first measured call.
    pub fn first_measured(&self) -> u64 {
        self.due_before(self.warmup)
    }

    pub fn measured(&self, i: u64) -> bool {
        i >= self.first_measured()
    }

    /// The end of the plan: the number of calls in it and why it ends, or `None` for a plan
    /// without limits (the run-forever mode; a signal ends it).
    pub fn end(&self) -> Option<(u64, PlanEnd)> {
        let first = self.first_measured();
        let by_duration = self
            .duration
            .map(|d| (self.due_before(self.warmup + d), PlanEnd::Duration));
        let by_calls = self
            .calls
            .map(|n| (first.saturating_add(n), PlanEnd::Calls));
        match (by_duration, by_calls) {
            (Some(d), Some(c)) => Some(if c.0 <= d.0 { c } else { d }),
            (d, c) => d.or(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn calls_are_evenly_spaced_without_drift() {
        let plan = Schedule::new(3.0, S(0), None, None).expect("plan");
        assert_eq!(plan.due(0), Duration::ZERO);
        assert_eq!(plan.due(3), S(1));
        // a million intervals later the due time is still exact to the microsecond
        let far = plan.due(3_000_000).as_micros();
        assert_eq!(far, 1_000_000 * 1_000_000);
        let plan = Schedule::new(7.0, S(0), None, None).expect("plan");
        for i in 0..10_000 {
            let gap = plan.due(i + 1) - plan.due(i);
            let error = gap.as_secs_f64() - 1.0 / 7.0;
            assert!(error.abs() < 1e-6, "call {i}: gap {gap:?}");
        }
    }

    #[test]
    fn warmup_and_limits_split_the_calls() {
        // 100/s: a second of warm-up is calls 0..100, two measured seconds are 100..300
        let plan = Schedule::new(100.0, S(1), Some(S(2)), None).expect("plan");
        assert_eq!(plan.first_measured(), 100);
        assert!(!plan.measured(99) && plan.measured(100));
        assert_eq!(plan.end(), Some((300, PlanEnd::Duration)));
        // the call limit wins when it comes first, and counts measured calls only
        let plan = Schedule::new(100.0, S(1), Some(S(2)), Some(50)).expect("plan");
        assert_eq!(plan.end(), Some((150, PlanEnd::Calls)));
        let plan = Schedule::new(100.0, S(1), Some(S(2)), Some(500)).expect("plan");
        assert_eq!(plan.end(), Some((300, PlanEnd::Duration)));
        let plan = Schedule::new(100.0, S(0), None, Some(10)).expect("plan");
        assert_eq!(
            (plan.first_measured(), plan.end()),
            (0, Some((10, PlanEnd::Calls)))
        );
        assert_eq!(
            Schedule::new(1.0, S(0), None, None).expect("plan").end(),
            None
        );
    }

    #[test]
    fn due_before_is_exact_at_odd_rates() {
        for rate in [0.5, 3.0, 7.0, 333.3, 10_000.0] {
            let plan = Schedule::new(rate, S(0), None, None).expect("plan");
            for ms in [0u64, 1, 999, 1000, 1001, 12_345] {
                let at = Duration::from_millis(ms);
                let n = plan.due_before(at);
                assert!(n == 0 || plan.due(n - 1) < at, "rate {rate} at {ms} ms");
                assert!(plan.due(n) >= at, "rate {rate} at {ms} ms");
            }
        }
    }

    #[test]
    fn rates_must_be_positive() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(Schedule::new(bad, S(0), None, None).is_err(), "{bad}");
        }
    }
}
