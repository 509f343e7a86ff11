//! Durations as the API writes them: a positive integer and one unit, `30s`, `15m`, `48h`, `90d`.
//! Compound forms (`1h30m`) are rejected on purpose: one unit is what the spec shows, and a
//! second syntax would be a second way to be wrong.

use std::time::Duration;

use crate::error::{Error, ErrorCode};

/// The longest duration accepted: 100 years, so that adding it to a timestamp cannot overflow.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

pub fn parse_duration(raw: &str) -> Result<Duration, Error> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::InvalidDuration,
            format!("invalid duration {raw:?}: {why}"),
        )
        .with("value", raw.chars().take(40).collect::<String>())
    };
    let s = raw.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit (s, m, h or d)"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("missing number"));
    }
    let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad("unit must be one of s, m, h, d")),
    };
    let secs = n
        .checked_mul(scale)
        .filter(|s| *s <= MAX_SECONDS)
        .ok_or_else(|| bad("too long"))?;
    if secs == 0 {
        return Err(bad("must be greater than zero"));
    }
    Ok(Duration::from_secs(secs))
}

/// Parses a comma-separated list such as `warn_before: "7d,1d"`.
pub fn parse_duration_list(raw: &str) -> Result<Vec<Duration>, Error> {
    raw.split(',').map(parse_duration).collect()
}

/// Formats whole seconds back into the largest exact unit (`172800` → `48h`... `2d`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= scale && s.is_multiple_of(scale) {
            return format!("{}{unit}", s / scale);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("48h").unwrap().as_secs(), 172_800);
        assert_eq!(parse_duration("90d").unwrap().as_secs(), 7_776_000);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "d",
            "10",
            "10x",
            "1h30m",
            "-5m",
            "0s",
            "1.5h",
            "99999999999999999999d",
            "40000d",
        ] {
            assert_eq!(
                parse_duration(bad).unwrap_err().code,
                ErrorCode::InvalidDuration,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lists_and_formatting() {
        let l = parse_duration_list("7d,1d").unwrap();
        assert_eq!(
            l.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            vec![604_800, 86_400]
        );
        assert!(parse_duration_list("7d,,1d").is_err());
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }
}
