//! The time range of a replay, as people write it: `--since` and `--until`
//! take a point in time ([`parse_when`], the one rule for a point in time on
//! the command line), and a range must hold a moment
//! ([`Options::check_range`]).
//!
//! A point in time is one of:
//! - an RFC 3339 time with its offset: `2026-11-24T10:00:00Z` or
//!   `2026-11-24T10:00:00+01:00` (a space for the `T`, and fractions of a
//!   second, are fine);
//! - a date alone, `2026-11-24`: midnight UTC of that day;
//! - an age, `2h` or `7days` (humantime): that long before now.
//!
//! A time of day without an offset is refused rather than guessed: the
//! files are in UTC and a gateway's local time zone is often not the
//! operator's, so `10:00` could mean two different hours and the replay
//! would quietly miss rows.

use std::time::{Duration, SystemTime};

use super::options::Options;

/// Why a text is not a point in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("`{0}` reaches before 1970")]
    BeforeEpoch(String),
    #[error(
        "`{0}` has no UTC offset, so it could be any time zone's: write it in UTC with `Z` \
         (2026-11-24T10:00:00Z) or with its offset (2026-11-24T10:00:00+01:00)"
    )]
    NoOffset(String),
    #[error(
        "`{0}` is neither an RFC 3339 time (2026-11-24T10:00:00Z, 2026-11-24T10:00:00+01:00), \
         a date (2026-11-24, midnight UTC) nor an age (2h, 7days)"
    )]
    Unknown(String),
}

/// A range that holds no moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("--since must be before --until")]
pub struct EmptyRange;

/// An RFC 3339 time with its offset, a date (midnight UTC) or a humantime
/// age meaning that long ago (see the module's documentation).
pub fn parse_when(s: &str) -> Result<SystemTime, WhenError> {
    when_at(s, SystemTime::now())
}

/// [`parse_when`], an age counting back from `now`.
fn when_at(s: &str, now: SystemTime) -> Result<SystemTime, WhenError> {
    let b = s.as_bytes();
    let date = |b: &[u8]| {
        b.len() >= 10
            && b[..10].iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    if b.len() == 10 && date(b) {
        return humantime::parse_rfc3339(&format!("{s}T00:00:00Z"))
            .map_err(|_| WhenError::Unknown(s.to_string()));
    }
    if b.len() > 10 && date(b) && matches!(b[10], b'T' | b't' | b' ') {
        return date_time(s);
    }
    match humantime::parse_duration(s) {
        Ok(age) => now
            .checked_sub(age)
            .ok_or_else(|| WhenError::BeforeEpoch(s.to_string())),
        Err(_) => Err(WhenError::Unknown(s.to_string())),
    }
}

/// `DATE[T ]TIME` followed by `Z` or `+HH:MM` / `-HH:MM`.
fn date_time(s: &str) -> Result<SystemTime, WhenError> {
    let unknown = || WhenError::Unknown(s.to_string());
    // (the local time, seconds east of UTC)
    let (local, east) = if let Some(local) = s.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        let b = s.as_bytes();
        let n = b.len();
        let offset = n >= 16 + 6
            && matches!(b[n - 6], b'+' | b'-')
            && b[n - 5].is_ascii_digit()
            && b[n - 4].is_ascii_digit()
            && b[n - 3] == b':'
            && b[n - 2].is_ascii_digit()
            && b[n - 1].is_ascii_digit();
        if !offset {
            // `+0100`, `+01` or nothing at all: no offset RFC 3339 allows.
            let tail = &s[10..];
            return Err(if tail.contains(['+', '-']) {
                unknown()
            } else {
                WhenError::NoOffset(s.to_string())
            });
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap_or(99);
        let (hours, minutes) = (num(n - 5..n - 3), num(n - 2..n));
        if hours > 23 || minutes > 59 {
            return Err(unknown());
        }
        let sign = if b[n - 6] == b'-' { -1 } else { 1 };
        (&s[..n - 6], sign * (hours * 3600 + minutes * 60))
    };
    // Read as UTC, then moved by the offset: 10:00+01:00 is 09:00Z.
    // RFC 3339 allows a lower-case `t`; humantime does not.
    let local = match local
        .strip_prefix(&s[..10])
        .and_then(|r| r.strip_prefix('t'))
    {
        Some(rest) => format!("{}T{rest}", &s[..10]),
        None => local.to_string(),
    };
    let utc = humantime::parse_rfc3339_weak(&local).map_err(|_| unknown())?;
    let shift = Duration::from_secs(east.unsigned_abs());
    let t = if east >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    };
    t.ok_or_else(|| WhenError::BeforeEpoch(s.to_string()))
}

impl Options {
    /// Rows are wanted from `since` (included) to `until` (excluded), so
    /// `since` must come first when both are given.
    pub fn check_range(&self) -> Result<(), EmptyRange> {
        match (self.since, self.until) {
            (Some(s), Some(u)) if s >= u => Err(EmptyRange),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::format::Format;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn range(since: Option<u64>, until: Option<u64>) -> Result<(), EmptyRange> {
        Options {
            dir: "d".into(),
            prefix: "readings".into(),
            since: since.map(at),
            until: until.map(at),
            groups: Vec::new(),
            format: Format::Csv,
            measurement: "temperature".into(),
            speed: None,
            chunk_size: 64 * 1024,
        }
        .check_range()
    }

    #[test]
    fn since_must_come_before_until() {
        assert_eq!(range(Some(10), Some(20)), Ok(()));
        assert_eq!(range(Some(10), Some(11)), Ok(()));
        assert_eq!(range(None, None), Ok(()));
        assert_eq!(range(Some(10), None), Ok(()));
        assert_eq!(range(None, Some(0)), Ok(()));
        assert_eq!(range(Some(10), Some(10)), Err(EmptyRange));
        assert_eq!(range(Some(20), Some(10)), Err(EmptyRange));
        assert_eq!(EmptyRange.to_string(), "--since must be before --until");
    }

    #[test]
    fn a_time_is_rfc3339_with_an_offset_a_date_or_an_age() {
        let now = at(1_800_000_000);
        let ten = at(1_795_514_400);
        assert_eq!(when_at("2026-11-24T10:00:00Z", now), Ok(ten));
        assert_eq!(when_at("2026-11-24t10:00:00z", now), Ok(ten));
        assert_eq!(when_at("2026-11-24 10:00:00Z", now), Ok(ten));
        assert_eq!(
            when_at("2026-11-24T10:00:00.5Z", now),
            Ok(ten + Duration::from_millis(500))
        );
        assert_eq!(
            when_at("2026-11-24T11:00:00+01:00", now),
            Ok(ten),
            "east of UTC"
        );
        assert_eq!(when_at("2026-11-24T05:30:00-04:30", now), Ok(ten));
        assert_eq!(
            when_at("2026-11-24T11:00:00.250+01:00", now),
            Ok(ten + Duration::from_millis(250))
        );
        assert_eq!(when_at("2026-11-24T10:00:00+00:00", now), Ok(ten));
        assert_eq!(when_at("2026-11-24T10:00:00-00:00", now), Ok(ten));
        assert_eq!(when_at("2026-11-24", now), Ok(at(1_795_478_400)));
        assert_eq!(when_at("2h", now), Ok(at(1_800_000_000 - 7_200)));
        assert_eq!(when_at("7days", now), Ok(at(1_800_000_000 - 604_800)));
        assert_eq!(when_at("0s", now), Ok(now));
    }

    #[test]
    fn a_time_without_an_offset_is_refused_with_both_forms_shown() {
        let now = at(1_800_000_000);
        for s in [
            "2026-11-24T10:00:00",
            "2026-11-24 10:00",
            "2026-11-24T10:00:00.5",
        ] {
            assert_eq!(
                when_at(s, now).unwrap_err().to_string(),
                format!(
                    "`{s}` has no UTC offset, so it could be any time zone's: write it in UTC \
                     with `Z` (2026-11-24T10:00:00Z) or with its offset (2026-11-24T10:00:00+01:00)"
                )
            );
        }
    }

    #[test]
    fn other_text_says_what_a_time_looks_like() {
        let now = at(1_800_000_000);
        for s in [
            "soon",
            "2026-11-24T10:00:00+0100",
            "2026-11-24T10:00:00+01",
            "2026-11-24T10:00:00+24:00",
            "2026-13-24",
            "2026-11-24T25:00:00Z",
            "2026-11-24Tnoon+01:00",
        ] {
            assert_eq!(
                when_at(s, now).unwrap_err(),
                WhenError::Unknown(s.to_string()),
                "{s}"
            );
        }
        assert_eq!(
            when_at("soon", now).unwrap_err().to_string(),
            "`soon` is neither an RFC 3339 time (2026-11-24T10:00:00Z, 2026-11-24T10:00:00+01:00), \
             a date (2026-11-24, midnight UTC) nor an age (2h, 7days)"
        );
        // An age before 1970 is still a time on Linux; one past what a
        // time can hold is not.
        assert_eq!(
            when_at("60s", at(10)).ok(),
            UNIX_EPOCH.checked_sub(Duration::from_secs(50))
        );
        assert_eq!(
            when_at("300000000000years", now).unwrap_err().to_string(),
            "`300000000000years` reaches before 1970"
        );
    }
}
