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
        // Every API response carries several timestamps: format by hand (Howard Hinnant's
        // civil-from-days) rather than through a general formatter.
        let micros = self.0.rem_euclid(1_000_000);
        let secs = self.0.div_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut b = [0u8; 27];
        let mut put = |at: usize, width: usize, mut v: i64| {
            for k in (0..width).rev() {
                b[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y.clamp(0, 9999));
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, sod / 3600);
        put(14, 2, sod / 60 % 60);
        put(17, 2, sod % 60);
        put(20, 6, micros);
        b[4] = b'-';
        b[7] = b'-';
        b[10] = b'T';
        b[13] = b':';
        b[16] = b':';
        b[19] = b'.';
        b[26] = b'Z';
        String::from_utf8(b.to_vec()).expect("ASCII")
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
/// On the wire a timestamp is an RFC 3339 string (`2026-12-02T16:12:07.123456Z`).
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

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

impl Timestamp {
    /// A time as people type it on a command line: RFC 3339, `now`, `today`, `yesterday`, or
    /// `N <unit>[s] ago` with seconds, minutes, hours, days or weeks.
    pub fn parse_human(raw: &str, now: Timestamp) -> Result<Timestamp, Error> {
        let s = raw.trim().to_ascii_lowercase();
        let bad = || {
            Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "cannot read the time {raw:?}: use RFC 3339, a date (2026-12-02), 'now', 'today', 'yesterday' or 'N hours ago'"
                ),
            )
        };
        let midnight = Timestamp::from_unix_seconds(
            now.unix_seconds() - now.unix_seconds().rem_euclid(86_400),
        );
        match s.as_str() {
            "now" => return Ok(now),
            "today" => return Ok(midnight),
            "yesterday" => return Ok(midnight.minus(std::time::Duration::from_secs(86_400))),
            _ => {}
        }
        if let Some(rest) = s.strip_suffix(" ago") {
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
            let unit = parts.next().ok_or_else(bad)?;
            if parts.next().is_some() {
                return Err(bad());
            }
            let scale = match unit.trim_end_matches('s') {
                "second" | "sec" => 1,
                "minute" | "min" => 60,
                "hour" => 3600,
                "day" => 86_400,
                "week" => 7 * 86_400,
                _ => return Err(bad()),
            };
            let secs = n
                .checked_mul(scale)
                .filter(|s| *s < 100 * 365 * 86_400)
                .ok_or_else(bad)?;
            return Ok(now.minus(std::time::Duration::from_secs(secs)));
        }
        // A bare date is its midnight, UTC.
        let t = raw.trim();
        if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
            return Timestamp::parse_rfc3339(&format!("{t}T00:00:00Z")).map_err(|_| bad());
        }
        Timestamp::parse_rfc3339(t).map_err(|_| bad())
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_date_is_its_midnight_utc() {
        let now = Timestamp::parse_rfc3339("2026-12-02T16:00:00Z").unwrap();
        assert_eq!(
            Timestamp::parse_human("2026-12-01", now).unwrap(),
            Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap()
        );
        assert!(Timestamp::parse_human("2026-13-01", now).is_err());
        assert!(Timestamp::parse_human("2026/12/01", now).is_err());
    }

    #[test]
    fn round_trips_with_microseconds() {
        let t = Timestamp(1_764_352_800_123_456);
        let s = t.to_rfc3339();
        assert_eq!(s, "2025-11-28T18:00:00.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn human_times() {
        let now = Timestamp::parse_rfc3339("2026-11-28T18:30:00Z").unwrap();
        let p = |s: &str| Timestamp::parse_human(s, now).map(|t| t.to_rfc3339());
        assert_eq!(p("1 hour ago").unwrap(), "2026-11-28T17:30:00.000000Z");
        assert_eq!(p("2 days ago").unwrap(), "2026-11-26T18:30:00.000000Z");
        assert_eq!(p("30 minutes ago").unwrap(), "2026-11-28T18:00:00.000000Z");
        assert_eq!(p("yesterday").unwrap(), "2026-11-27T00:00:00.000000Z");
        assert_eq!(p("today").unwrap(), "2026-11-28T00:00:00.000000Z");
        assert_eq!(
            p("2026-01-02T03:04:05Z").unwrap(),
            "2026-01-02T03:04:05.000000Z"
        );
        for bad in [
            "",
            "soon",
            "1 fortnight ago",
            "x hours ago",
            "1 hour ago please",
            "-1 hours ago",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The hand-written formatter agrees with the `time` crate on every instant.
        #[test]
        fn formatting_matches_the_time_crate(micros in 0i64..253_402_300_799_999_999) {
            let t = Timestamp(micros);
            let dt = OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(), dt.month() as u8, dt.day(), dt.hour(), dt.minute(), dt.second(), dt.microsecond()
            );
            proptest::prop_assert_eq!(t.to_rfc3339(), expected);
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        }
    }
}
