//! StatsD timers in fractional milliseconds (StatsD takes decimals): the scorer answers in well
//! under a millisecond, which whole milliseconds (cadence's `Duration` timers) report as 0.

use std::time::Duration;

use cadence::ext::{MetricValue, ToTimerValue};

/// A timer value in milliseconds, to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Millis(pub f64);

impl Millis {
    pub fn of(elapsed: Duration) -> Self {
        Millis(elapsed.as_micros() as f64 / 1000.0)
    }
}

impl ToTimerValue for Millis {
    fn try_to_value(self) -> cadence::MetricResult<MetricValue> {
        Ok(MetricValue::Float(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_survive() {
        assert_eq!(Millis::of(Duration::from_nanos(51_999)).0, 0.051);
        assert_eq!(Millis::of(Duration::from_micros(2_700)).0, 2.7);
        assert_eq!(
            MetricValue::Float(Millis::of(Duration::from_micros(900)).0).to_string(),
            "0.9"
        );
    }
}
