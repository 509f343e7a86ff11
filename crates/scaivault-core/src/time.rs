//! Timestamps: microseconds since the Unix epoch, shown as RFC 3339 in UTC with `Z`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, ErrorCode};

/// A point in time with microsecond precision (the audit log's resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as i64)
    }

    pub fn from_unix_seconds(s: i64) -> Timestamp {
        Timestamp(s.saturating_mul(1_000_000))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn plus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    pub fn minus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    /// RFC 3339 with microseconds, e.g. `2026-11-28T18:00:00.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            dt.month() as u8,
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        )
    }

    pub fn parse_rfc3339(raw: &str) -> Result<Timestamp, Error> {
        let dt = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
            Error::new(
                ErrorCode::InvalidRequest,
                format!("invalid timestamp {raw:?}: expected RFC 3339"),
            )
        })?;
        Ok(Timestamp((dt.unix_timestamp_nanos() / 1000) as i64))
    }

    /// Seconds since midnight UTC, for time-window conditions.
    pub fn seconds_of_day(self) -> u32 {
        self.unix_seconds().rem_euclid(86_400) as u32
    }
}

/// RFC 3339 in human-readable formats (the API's JSON); microseconds as an integer in binary
/// ones (the vault file's records), where parsing text would cost more than the read itself.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_microseconds() {
        let t = Timestamp(1_764_352_800_123_456);
        let s = t.to_rfc3339();
        assert_eq!(s, "2025-11-28T18:00:00.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
