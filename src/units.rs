//! Human-friendly sizes ("8MiB", "1.5G", "4096") and durations ("2s", "500ms", "1h"),
//! for the command line and the config file, and wall-clock times: RFC 3339 in UTC for
//! people and JSON, times given on the command line (dates, "10m" ago).

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// Parses a byte size. Binary (KiB, MiB, GiB, TiB) and decimal (K/KB, M/MB, ...) units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 4096, 8MiB, 1.5G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("invalid size {s:?}: out of range"));
    }
    Ok(v.round() as u64)
}

/// Parses a duration: a number followed by ms, s, m, h or d (no unit = seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
    };
    if !secs.is_finite() || !(0.0..=1e12).contains(&secs) {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// "1.5 GiB" style.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serde helpers so config files can say `chunk_size = "8MiB"` or `chunk_size = 8388608`.
pub mod serde_size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => super::parse_size(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Serde helpers so config files can say `dead_after = "30s"`.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Duration::from_secs(n)),
            Raw::S(s) => super::parse_duration(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds:
/// `2026-11-28T07:50:00.123Z` (JSON output, events, the status page).
pub fn rfc3339_ms(ms: i64) -> String {
    format_utc(
        ms,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"),
    )
}

/// Milliseconds since the epoch as UTC to the second, for tables: `2026-11-28 07:50:00Z`.
pub fn format_time(ms: i64) -> String {
    format_utc(
        ms,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"),
    )
}

/// `ms` in `format`; a time no calendar date can hold (beyond the year 9999) is shown as
/// its number of milliseconds rather than as a made-up date.
fn format_utc(ms: i64, format: &[BorrowedFormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A point in time given on the command line, as ms since the epoch: RFC 3339 in UTC
/// (`2026-11-28T07:50:00Z`, fractions allowed), a date (`2026-11-28`), or a duration
/// meaning that long ago (`10m`, `2h`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    let ms = |t: OffsetDateTime| t.unix_timestamp_nanos().div_euclid(1_000_000) as i64;
    let not_utc = || format!("{s:?}: give the time in UTC, ending in Z");
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return if t.offset() == UtcOffset::UTC {
            Ok(ms(t))
        } else {
            Err(not_utc())
        };
    }
    let date = format_description!("[year]-[month padding:none]-[day padding:none]");
    if let Ok(d) = Date::parse(s, date) {
        return Ok(ms(d.midnight().assume_utc()));
    }
    // A time of day without a zone: say what is missing rather than that it is malformed.
    if OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).is_ok() {
        return Err(not_utc());
    }
    Err(format!(
        "{s:?}: expected a time like 2026-11-28T07:50:00Z, a date, or a duration such as 10m"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("64 KiB").unwrap(), 65536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(12), "12 B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn times_format_as_before_and_parse_round_trip() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_939_800_123), "2026-11-29T08:10:00.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MAX), i64::MAX.to_string());

        let ms = 1_795_939_800_123;
        assert_eq!(parse_time(&rfc3339_ms(ms), 0).unwrap(), ms);
        assert_eq!(parse_time("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-1-2", 0).unwrap(), 86_400_000);
        assert_eq!(
            parse_time("2000-03-01T00:00:00Z", 0).unwrap(),
            951_868_800_000
        );
        assert_eq!(
            parse_time("2000-03-01 00:00:00.5+00:00", 0).unwrap(),
            951_868_800_500
        );
        assert_eq!(parse_time("10m", 1_000_000).unwrap(), 400_000);
    }

    #[test]
    fn a_bad_time_is_refused_in_one_line_that_says_why() {
        let utc = "give the time in UTC, ending in Z";
        let bad = "expected a time like 2026-11-28T07:50:00Z, a date, or a duration such as 10m";
        for (input, why) in [
            ("2026-11-28T07:50:00+02:00", utc),
            ("2026-11-28T07:50:00", utc),
            ("yesterday", bad),
            ("2026-13-01", bad),
            ("2026-11-28T25:00:00Z", bad),
        ] {
            let e = parse_time(input, 0).unwrap_err();
            assert_eq!(e, format!("{input:?}: {why}"));
        }
    }
}
