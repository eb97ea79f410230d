//! Rules for `backoff`: `off`, or `{ after: N, max: Nx }` where `max` may
//! also be a duration (whole intervals, rounded down).
//!
//! The bounds keep a backing-off sensor in sight: a sensor is tried at
//! least every 1000 intervals, and `max` below two intervals would never
//! skip a poll (`off` says that plainly).

use std::time::Duration;

use super::checker::Checker;
use super::model::Backoff;
use super::raw::{MaxText, RawBackoff, RawBackoffMap};
use super::values::show_duration;

/// The largest `after` and `max`.
const MOST: u64 = 1000;

/// Resolve `backoff`; `interval` is `None` when it did not parse (already
/// reported), which skips turning a duration `max` into intervals.
pub(super) fn resolve(
    c: &mut Checker,
    raw: RawBackoff,
    interval: Option<Duration>,
) -> Option<Backoff> {
    match raw {
        RawBackoff::Default | RawBackoff::Flag(true) => Some(Backoff::DEFAULT),
        RawBackoff::Flag(false) => None,
        RawBackoff::Text(t) if t.trim() == "off" => None,
        RawBackoff::Text(t) => {
            c.fail(
                "backoff",
                format!("`{t}` is not `off` or a map such as {{ after: 3, max: 10x }}"),
            );
            None
        }
        RawBackoff::Map(m) => map(c, m, interval),
    }
}

fn map(c: &mut Checker, m: RawBackoffMap, interval: Option<Duration>) -> Option<Backoff> {
    let after = m.after.unwrap_or(Backoff::DEFAULT.after.into());
    if !(1..=MOST).contains(&after) {
        c.fail(
            "backoff.after",
            format!("must be from 1 to {MOST} (failed polls in a row), got {after}"),
        );
    }
    let max = match &m.max {
        None => Some(u64::from(Backoff::DEFAULT.max)),
        Some(value) => intervals(c, value, interval),
    };
    if let Some(max) = max.filter(|m| !(2..=MOST).contains(m)) {
        let problem = match interval {
            Some(i) if max < 2 => format!(
                "{max} interval(s) would never skip a poll: give at least 2x ({}), or write `backoff: off`",
                show_duration(i * 2)
            ),
            _ => format!(
                "{max} intervals is more than {MOST}: a sensor in backoff must still be tried now and then"
            ),
        };
        c.fail("backoff.max", problem);
    }
    Some(Backoff {
        after: after.clamp(1, MOST) as u16,
        max: max.unwrap_or(2).clamp(2, MOST) as u16,
    })
}

/// `max` in intervals: `10x`, or a duration divided by the interval.
fn intervals(c: &mut Checker, value: &MaxText, interval: Option<Duration>) -> Option<u64> {
    let text = match value {
        MaxText::Text(t) => t.trim(),
        MaxText::Number(n) => {
            c.fail(
                "backoff.max",
                format!("write `{n}x` for {n} intervals, or a duration such as 5m"),
            );
            return None;
        }
    };
    if let Some(n) = text.strip_suffix('x') {
        return match n.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                c.fail(
                    "backoff.max",
                    format!("`{text}` is not a number of intervals such as 10x"),
                );
                None
            }
        };
    }
    match humantime::parse_duration(text) {
        Ok(d) => {
            interval.map(|i| u64::try_from(d.as_nanos() / i.as_nanos().max(1)).unwrap_or(u64::MAX))
        }
        Err(_) => {
            c.fail(
                "backoff.max",
                format!(
                    "`{text}` is not a number of intervals such as 10x, nor a duration such as 5m"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `backoff: TEXT` resolved with an interval of 5s: the settings, or
    /// the problems' messages.
    fn backoff(text: &str) -> Result<Option<Backoff>, Vec<String>> {
        let raw: RawBackoff = match text {
            "" => RawBackoff::Default,
            _ => {
                crate::config::raw::read(&format!("backoff: {text}\n"))
                    .config
                    .backoff
            }
        };
        let mut c = Checker {
            problems: Vec::new(),
            env: &|_| None,
            literal_secrets: Vec::new(),
            warnings: Vec::new(),
            base: std::path::PathBuf::from("/"),
        };
        let b = resolve(&mut c, raw, Some(Duration::from_secs(5)));
        if c.problems.is_empty() {
            Ok(b)
        } else {
            Err(c.problems.into_iter().map(|p| p.message).collect())
        }
    }

    #[test]
    fn on_by_default_and_off_when_said() {
        assert_eq!(backoff(""), Ok(Some(Backoff::DEFAULT)));
        assert_eq!(backoff("{}"), Ok(Some(Backoff::DEFAULT)));
        assert_eq!(backoff("off"), Ok(None));
        assert_eq!(backoff("false"), Ok(None));
    }

    #[test]
    fn max_in_intervals_or_as_a_duration_rounded_down() {
        let b = |after, max| Ok(Some(Backoff { after, max }));
        assert_eq!(backoff("{ after: 5, max: 20x }"), b(5, 20));
        assert_eq!(backoff("{ max: 1m }"), b(3, 12));
        assert_eq!(backoff("{ max: 59s }"), b(3, 11));
        assert_eq!(backoff("{ after: 1, max: 10s }"), b(1, 2));
    }

    #[test]
    fn out_of_range_is_refused_with_the_way_out() {
        let err = backoff("{ max: 9s }").unwrap_err();
        assert!(
            err[0].contains("would never skip a poll") && err[0].contains("backoff: off"),
            "{err:?}"
        );
        let err = backoff("{ after: 1001, max: 1001x }").unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
    }
}
