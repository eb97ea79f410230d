//! The time range of a replay, as people write it: `--since` and `--until`
//! take an RFC 3339 time or an age ([`parse_when`], the one rule for a
//! point in time on the command line), and a range must hold a moment
//! ([`Options::check_range`]).

use std::time::SystemTime;

use super::options::Options;

/// Why a text is not a point in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("`{0}` reaches before 1970")]
    BeforeEpoch(String),
    #[error("`{0}` is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor an age (2h, 7days)")]
    Unknown(String),
}

/// A range that holds no moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("--since must be before --until")]
pub struct EmptyRange;

/// RFC 3339, or a humantime age meaning that long ago.
pub fn parse_when(s: &str) -> Result<SystemTime, WhenError> {
    when_at(s, SystemTime::now())
}

/// [`parse_when`], an age counting back from `now`.
fn when_at(s: &str, now: SystemTime) -> Result<SystemTime, WhenError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(age) => now
            .checked_sub(age)
            .ok_or_else(|| WhenError::BeforeEpoch(s.to_string())),
        Err(_) => Err(WhenError::Unknown(s.to_string())),
    }
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
    fn a_time_is_rfc3339_or_an_age() {
        let now = at(1_800_000_000);
        assert_eq!(when_at("2026-11-24T10:00:00Z", now), Ok(at(1_795_514_400)));
        assert_eq!(
            when_at("2026-11-24T10:00:00.5Z", now),
            Ok(at(1_795_514_400) + Duration::from_millis(500))
        );
        assert_eq!(when_at("2h", now), Ok(at(1_800_000_000 - 7_200)));
        assert_eq!(when_at("7days", now), Ok(at(1_800_000_000 - 604_800)));
        assert_eq!(when_at("0s", now), Ok(now));
    }

    #[test]
    fn other_text_says_what_a_time_looks_like() {
        let now = at(1_800_000_000);
        assert_eq!(
            when_at("soon", now).unwrap_err().to_string(),
            "`soon` is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor an age (2h, 7days)"
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
