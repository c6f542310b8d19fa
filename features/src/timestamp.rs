//! iPinYou timestamps: 17 digits, `yyyyMMddHHmmssSSS`, local time of the exchange.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BidTimestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("timestamp must have 17 digits (yyyyMMddHHmmssSSS), found {0} characters")]
    Length(usize),
    #[error("timestamp must be all digits (yyyyMMddHHmmssSSS)")]
    NotDigits,
    #[error("timestamp has an impossible date or time")]
    OutOfRange,
}

fn digits(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl BidTimestamp {
    pub fn parse(raw: &[u8]) -> Result<Self, TimestampError> {
        if raw.len() != 17 {
            return Err(TimestampError::Length(raw.len()));
        }
        if !raw.iter().all(u8::is_ascii_digit) {
            return Err(TimestampError::NotDigits);
        }
        let (year, month, day) = (digits(&raw[0..4]), digits(&raw[4..6]), digits(&raw[6..8]));
        let (hour, minute, second) = (
            digits(&raw[8..10]),
            digits(&raw[10..12]),
            digits(&raw[12..14]),
        );
        let millisecond = digits(&raw[14..17]);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TimestampError::OutOfRange);
        }
        // every value was range checked above, so the narrowing casts cannot truncate
        Ok(BidTimestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            millisecond: millisecond as u16,
        })
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(&self) -> i64 {
        let (mut y, m, d) = (
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        if m <= 2 {
            y -= 1;
        }
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Day of week with Spark's `dayofweek` convention: 1 = Sunday ... 7 = Saturday.
    pub fn spark_day_of_week(&self) -> u8 {
        // 1970-01-01 was a Thursday (Spark 5)
        ((self.days_since_epoch() + 4).rem_euclid(7) + 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_knows_the_weekday() {
        let ts = BidTimestamp::parse(b"20130311000708852").expect("valid");
        assert_eq!((ts.year, ts.month, ts.day, ts.hour), (2013, 3, 11, 0));
        assert_eq!(ts.millisecond, 852);
        // 2013-03-11 was a Monday: Spark says 2
        assert_eq!(ts.spark_day_of_week(), 2);
        assert_eq!(
            BidTimestamp::parse(b"20130317235959999")
                .expect("valid")
                .spark_day_of_week(),
            1
        );
        assert_eq!(
            BidTimestamp::parse(b"20131019025500549")
                .expect("valid")
                .spark_day_of_week(),
            7
        );
        assert_eq!(
            BidTimestamp::parse(b"19700101000000000")
                .expect("valid")
                .spark_day_of_week(),
            5
        );
    }

    #[test]
    fn rejects_impossible_values() {
        assert_eq!(
            BidTimestamp::parse(b"2013031100070885"),
            Err(TimestampError::Length(16))
        );
        assert_eq!(
            BidTimestamp::parse(b"2013031100070885x"),
            Err(TimestampError::NotDigits)
        );
        assert_eq!(
            BidTimestamp::parse(b"20130229000000000"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            BidTimestamp::parse(b"20130311250000000"),
            Err(TimestampError::OutOfRange)
        );
        assert!(BidTimestamp::parse(b"20120229000000000").is_ok());
    }
}
