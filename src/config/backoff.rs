//! Rules for `backoff`: `off`, or `{ after: N, max: Nx }` where `max` may
//! also be a duration (whole intervals, rounded down).
//!
//! The bounds keep a backing-off sensor in sight: a sensor is tried at
//! least every 1000 intervals, and `max` below two intervals would never
//! skip a poll (`off` says that plainly).

use std::time::Duration;

use super::checker::Checker;
use super::model::Backoff;
use super::raw::{RawBackoff, RawBackoffMap};
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
fn intervals(
    c: &mut Checker,
    value: &serde_yaml_ng::Value,
    interval: Option<Duration>,
) -> Option<u64> {
    use serde_yaml_ng::Value;
    let text = match value {
        Value::String(t) => t.trim(),
        Value::Number(n) => {
            c.fail(
                "backoff.max",
                format!("write `{n}x` for {n} intervals, or a duration such as 5m"),
            );
            return None;
        }
        _ => {
            c.fail(
                "backoff.max",
                "must be a number of intervals such as 10x, or a duration such as 5m",
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
