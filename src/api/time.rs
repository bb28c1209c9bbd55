//! Times from outside: RFC 3339 timestamps as the API (seconds) and CRI logs
//! (nanoseconds) write them, parsed as Go's `time.Parse(time.RFC3339, ..)`
//! takes them; and deadlines from API durations, which saturate.
//!
//! Everything here is total: a timestamp out of range is an error, a span too
//! long to add to a clock (a grace period of `i64::MAX` seconds is valid API
//! input) ends [`FAR`] from now.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Far enough to mean "never" for any deadline, near enough to add to any
/// clock reading without overflow: 100 years.
pub const FAR: Duration = Duration::from_secs(100 * 365 * 86400);

/// Seconds from an API field (grace periods, expirationSeconds) as a span;
/// negative is none.
pub fn seconds(secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// `now + d`, at most [`FAR`] ahead.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// `t + d` on the wall clock, at most [`FAR`] ahead.
pub fn wall_deadline(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d.min(FAR)).unwrap_or(t)
}

/// `2024-05-01T12:00:00Z`, the form of metav1.Time.
pub fn rfc3339(t: SystemTime) -> String {
    let (date, secs, _) = split(t);
    format!("{date}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2024-05-01T12:00:00.123456789Z`, the form of CRI log lines.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let (date, secs, nanos) = split(t);
    format!("{date}T{:02}:{:02}:{:02}.{nanos:09}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Why a text is not an RFC 3339 time; Go's words for the ranges.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeError {
    Syntax,
    /// The field that is out of range: "month", "day", "hour", ...
    OutOfRange(&'static str),
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TimeError::Syntax => write!(f, "want RFC 3339, like 2006-01-02T15:04:05Z"),
            TimeError::OutOfRange(what) => write!(f, "{what} out of range"),
        }
    }
}

/// `parse`, for times picolet wrote itself or the API server sent.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    parse(s).ok()
}

/// Parses RFC 3339 as Go's `time.RFC3339` layout does: a four-digit year
/// (0000-9999), two-digit fields, an optional fraction (digits past the
/// ninth are dropped), then `Z` or a `±hh:mm` offset. No leap seconds.
pub fn parse(s: &str) -> Result<SystemTime, TimeError> {
    use TimeError::{OutOfRange, Syntax};
    let b = s.as_bytes();
    // At most four digits per field: no overflow below.
    let num = |at: usize, len: usize| -> Result<i64, TimeError> {
        let d = b.get(at..at + len).ok_or(Syntax)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return Err(Syntax);
        }
        Ok(d.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d, h, mi, se) = (num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')].iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return Err(Syntax);
    }
    let mut rest = b.get(19..).ok_or(Syntax)?;
    let mut nanos = 0u32;
    if let [b'.', frac @ ..] = rest {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(Syntax);
        }
        for i in 0..9 {
            nanos = nanos * 10 + frac.get(i).filter(|_| i < n).map_or(0, |c| u32::from(c - b'0'));
        }
        rest = frac.get(n..).ok_or(Syntax)?;
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(b.len() - 5, 2)?, num(b.len() - 2, 2)?);
            if oh > 23 || om > 59 {
                return Err(OutOfRange("time zone offset"));
            }
            if *sign == b'-' { -(oh * 3600 + om * 60) } else { oh * 3600 + om * 60 }
        }
        _ => return Err(Syntax),
    };
    let checks = [("month", (1..=12).contains(&mo)), ("day", (1..=days_in(y, mo)).contains(&d)), ("hour", h <= 23), ("minute", mi <= 59), ("second", se <= 59)];
    if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(OutOfRange(what));
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    let t = match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH.checked_add(Duration::new(s, nanos)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())).and_then(|t| t.checked_add(Duration::from_nanos(nanos.into()))),
    };
    t.ok_or(OutOfRange("time"))
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn split(t: SystemTime) -> (String, u64, u32) {
    let sat = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (sat(d.as_secs()), d.subsec_nanos()),
        // Before 1970: whole seconds down, the fraction counted up from there.
        Err(e) => match (sat(e.duration().as_secs()), e.duration().subsec_nanos()) {
            (s, 0) => (-s, 0),
            (s, n) => (-s - 1, 1_000_000_000 - n),
        },
    };
    let (y, m, dd) = civil_from_days(secs.div_euclid(86400));
    (format!("{y:04}-{m:02}-{dd:02}"), secs.rem_euclid(86400).unsigned_abs(), nanos)
}

// Howard Hinnant's civil calendar algorithms (public domain arithmetic).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = UNIX_EPOCH + Duration::new(1_714_564_800, 123_456_789);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00Z");
        assert_eq!(rfc3339_nano(t), "2024-05-01T12:00:00.123456789Z");
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456789Z"), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    /// What Go's RFC 3339 layout takes: offsets, any fraction, years 0000-9999.
    #[test]
    fn parses_what_go_accepts() {
        let noon = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        assert_eq!(parse("2024-05-01T14:00:00+02:00"), Ok(noon));
        assert_eq!(parse("2024-05-01T11:30:00-00:30"), Ok(noon));
        assert_eq!(parse("2024-05-01T12:00:00.5Z"), Ok(noon + Duration::from_millis(500)));
        assert_eq!(parse("2024-05-01T12:00:00.1234567891234Z"), Ok(noon + Duration::from_nanos(123_456_789)));
        assert_eq!(parse("2024-02-29T00:00:00Z").map(rfc3339), Ok("2024-02-29T00:00:00Z".into()));
        assert_eq!(parse("2024-05-01T00:00:00-23:59").map(rfc3339), Ok("2024-05-01T23:59:00Z".into()));
        for t in ["0000-01-01T00:00:00.000000000Z", "1969-12-31T23:59:59.500000000Z", "9999-12-31T23:59:59.999999999Z"] {
            assert_eq!(parse(t).map(rfc3339_nano).as_deref(), Ok(t.strip_suffix(".000000000Z").map_or(t.to_string(), |s| format!("{s}.000000000Z")).as_str()), "{t}");
        }
    }

    /// Out of range is an error naming the field, never a panic or a wrapped time.
    #[test]
    fn refuses_out_of_range_and_junk() {
        use TimeError::{OutOfRange, Syntax};
        for (text, want) in [
            ("2024-13-01T00:00:00Z", OutOfRange("month")),
            ("2024-00-01T00:00:00Z", OutOfRange("month")),
            ("2023-02-29T00:00:00Z", OutOfRange("day")),
            ("2024-04-31T00:00:00Z", OutOfRange("day")),
            ("2024-01-00T00:00:00Z", OutOfRange("day")),
            ("2024-01-01T24:00:00Z", OutOfRange("hour")),
            ("2024-01-01T00:60:00Z", OutOfRange("minute")),
            ("2016-12-31T23:59:60Z", OutOfRange("second")),
            ("2024-01-01T00:00:00+99:99", OutOfRange("time zone offset")),
            ("2024-01-01T00:00:00+24:00", OutOfRange("time zone offset")),
            ("2024-01-01T00:00:00-00:60", OutOfRange("time zone offset")),
            ("10000-01-01T00:00:00Z", Syntax),
            ("99999999999-01-01T00:00:00Z", Syntax),
            ("-001-01-01T00:00:00Z", Syntax),
            ("2024-01-01T9999999999999999:00:00Z", Syntax),
            ("2024-01-01T00:00:00", Syntax),
            ("2024-01-01t00:00:00z", Syntax),
            ("2024-01-01 00:00:00Z", Syntax),
            ("2024-01-01T00:00:00.Z", Syntax),
            ("2024-01-01T00:00:00.éZ", Syntax),
            ("2024-01-01T00:00:00+0200", Syntax),
            ("2024-01-01T00:00:00+02:00Z", Syntax),
            ("2024-1-01T00:00:00Z", Syntax),
            ("20é4-01-01T00:00:00Z", Syntax),
            ("", Syntax),
            ("Z", Syntax),
        ] {
            assert_eq!(parse(text), Err(want), "{text}");
        }
        assert_eq!(TimeError::OutOfRange("month").to_string(), "month out of range");
    }

    /// API durations of any size make a deadline, at most FAR ahead.
    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert_eq!(seconds(i64::MAX), Duration::from_secs(i64::MAX as u64));
        assert_eq!(seconds(-1), Duration::ZERO);
        assert_eq!(seconds(i64::MIN), Duration::ZERO);
        assert_eq!(deadline(now, seconds(i64::MAX)), now + FAR);
        assert_eq!(deadline(now, Duration::MAX), now + FAR);
        assert_eq!(deadline(now, seconds(-30)), now);
        assert_eq!(deadline(now, seconds(30)), now + Duration::from_secs(30));
        let wall = parse("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(wall_deadline(wall, Duration::MAX), wall + FAR);
        assert_eq!(wall_deadline(UNIX_EPOCH, seconds(60)), UNIX_EPOCH + Duration::from_secs(60));
        // The clock's ends format without a panic (far outside RFC 3339's years).
        let ends = [UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64)), UNIX_EPOCH.checked_sub(Duration::from_secs(i64::MAX as u64))];
        for t in ends.into_iter().flatten() {
            assert!(rfc3339_nano(t).ends_with('Z'));
        }
    }
}
