//! Day of week and hour for requests that do not carry them (OpenRTB), in the time zone the
//! model was trained in: iPinYou timestamps are the exchange's local time, so a scorer in UTC
//! must still compute the hour the logs would have recorded.

use chrono::{DateTime, Datelike, FixedOffset, Offset, Timelike, Utc};
use chrono_tz::Tz;
use thiserror::Error;

#[derive(Debug, Error)]
#[error(
    "time zone {0:?} is neither an IANA name (Asia/Shanghai), UTC, nor a fixed offset (+08:00)"
)]
pub struct BadTimeZone(pub String);

/// A time zone: an IANA name (with its daylight saving rules) or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    Fixed(FixedOffset),
    Named(Tz),
}

impl Clock {
    pub fn parse(text: &str) -> Result<Clock, BadTimeZone> {
        let t = text.trim();
        let bad = || BadTimeZone(text.to_owned());
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Clock::Fixed(Utc.fix()));
        }
        if let Some(sign) = t.chars().next().filter(|c| *c == '+' || *c == '-') {
            let rest = &t[1..];
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let h: i32 = h.parse().map_err(|_| bad())?;
            let m: i32 = m.parse().map_err(|_| bad())?;
            if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
                return Err(bad());
            }
            let seconds = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
            return FixedOffset::east_opt(seconds)
                .map(Clock::Fixed)
                .ok_or_else(bad);
        }
        t.parse::<Tz>().map(Clock::Named).map_err(|_| bad())
    }

    /// `at` in this zone as the iPinYou logs write a time: `yyyyMMddHHmmssSSS`.
    pub fn log_timestamp(&self, at: DateTime<Utc>) -> String {
        const FORMAT: &str = "%Y%m%d%H%M%S%3f";
        match self {
            Clock::Fixed(offset) => at.with_timezone(offset).format(FORMAT).to_string(),
            Clock::Named(tz) => at.with_timezone(tz).format(FORMAT).to_string(),
        }
    }

    /// Spark's day of week (1 = Sunday ... 7 = Saturday) and the hour, at `at` in this zone.
    pub fn day_hour(&self, at: DateTime<Utc>) -> (u8, u8) {
        let (weekday, hour) = match self {
            Clock::Fixed(offset) => {
                let local = at.with_timezone(offset);
                (local.weekday(), local.hour())
            }
            Clock::Named(tz) => {
                let local = at.with_timezone(tz);
                (local.weekday(), local.hour())
            }
        };
        // both are small: 1..=7 and 0..=23
        (
            weekday.number_from_sunday() as u8,
            u8::try_from(hour).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn zones_and_offsets() {
        // 2013-03-11 (a Monday) 23:30 UTC is Tuesday 07:30 in Shanghai
        let at = Utc
            .with_ymd_and_hms(2013, 3, 11, 23, 30, 0)
            .single()
            .expect("time");
        assert_eq!(Clock::parse("UTC").expect("utc").day_hour(at), (2, 23));
        assert_eq!(Clock::parse("+08:00").expect("offset").day_hour(at), (3, 7));
        assert_eq!(Clock::parse("+8").expect("offset").day_hour(at), (3, 7));
        assert_eq!(
            Clock::parse("-05:00").expect("offset").day_hour(at),
            (2, 18)
        );
        assert_eq!(
            Clock::parse("Asia/Shanghai").expect("iana").day_hour(at),
            (3, 7)
        );
        assert_eq!(
            Clock::parse("Asia/Shanghai")
                .expect("iana")
                .log_timestamp(at),
            "20130312073000000"
        );
        for bad in ["Mars/Olympus", "+25:00", "+08:99", "", "+x"] {
            assert!(Clock::parse(bad).is_err(), "{bad}");
        }
    }
}
