//! Wall-clock times for humans and machines: RFC 3339 in UTC, without a date crate.

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01 (the inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds:
/// `2026-11-28T07:50:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// A point in time given on the command line, as ms since the epoch: RFC 3339 in UTC
/// (`2026-11-28T07:50:00Z`, fractions allowed), a date (`2026-11-28`), or a duration
/// meaning that long ago (`10m`, `2h`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = crate::units::parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    let bad = || {
        format!(
            "{s:?}: expected a time like 2026-11-28T07:50:00Z, a date, or a duration such as 10m"
        )
    };
    let num = |t: &str| t.parse::<u32>().map_err(|_| bad());
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts[..] else {
        return Err(bad());
    };
    let (y, mo, d) = (y.parse::<i64>().map_err(|_| bad())?, num(mo)?, num(d)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if let Some(t) = time {
        let t = t
            .strip_suffix('Z')
            .or_else(|| t.strip_suffix("+00:00"))
            .ok_or_else(|| format!("{s:?}: give the time in UTC, ending in Z"))?;
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        let [h, mi, sec] = parts[..] else {
            return Err(bad());
        };
        let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        ms += (i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec)) * 1000;
        if let Some(f) = frac {
            let digits: String = f.chars().chain("000".chars()).take(3).collect();
            ms += i64::from(num(&digits)?);
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let ms = 1_795_939_800_123; // 2026-11-29T...
        let text = rfc3339_ms(ms);
        assert_eq!(parse_time(&text, 0).unwrap(), ms);
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(
            parse_time("2000-03-01T00:00:00Z", 0).unwrap(),
            951_868_800_000
        );
        assert_eq!(parse_time("10m", 1_000_000).unwrap(), 400_000);
        assert!(parse_time("2026-11-28T07:50:00+02:00", 0).is_err());
        assert!(parse_time("yesterday", 0).is_err());
    }
}
