//! Readings -> one row per group per window.
//!
//! A window is `group.window` long and aligned to wall-clock multiples of its
//! length, like ticks. Each cycle adds its readings to the window its tick
//! falls in; the row is emitted as soon as the window's last tick has been
//! added, or when a later window starts (its last tick was skipped), or on
//! shutdown ([`Aggregator::flush`]).
//!
//! The window in progress when the agent (re)starts is not reported: it
//! would hold only part of its polls, and after a quick restart the row for
//! that window may already be in the file. Rows therefore stay unique per
//! group and time.

use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::history::row::{Row, Unit};
use crate::poll::Outcome;
use crate::schedule::align_down;

#[derive(Debug)]
struct Window {
    start: SystemTime,
    /// Running mean: `sum / n` would overflow to infinity for readings
    /// near f64::MAX, which units accept as finite.
    mean: f64,
    min: f64,
    max: f64,
    ok: u64,
    failed: u64,
}

impl Window {
    fn new(start: SystemTime) -> Window {
        Window {
            start,
            mean: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ok: 0,
            failed: 0,
        }
    }

    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Ok(v) => {
                self.ok += 1;
                self.mean += (v - self.mean) / self.ok as f64;
                self.min = self.min.min(*v);
                self.max = self.max.max(*v);
            }
            Err(_) => self.failed += 1,
        }
    }

    fn into_row(self, group: &GroupState) -> Row {
        let any = self.ok > 0;
        Row {
            time: self.start,
            group: group.name.clone(),
            mean: any.then_some(self.mean),
            min: any.then_some(self.min),
            max: any.then_some(self.max),
            unit: group.unit,
            ok: self.ok,
            failed: self.failed,
        }
    }
}

#[derive(Debug)]
struct GroupState {
    name: String,
    unit: Unit,
    window: Duration,
    current: Option<Window>,
    /// Start of the window that was in progress at start-up; not reported.
    partial: Option<SystemTime>,
}

/// Per-group window state for one config.
#[derive(Debug)]
pub struct Aggregator {
    interval: Duration,
    groups: Vec<GroupState>,
}

impl Aggregator {
    /// `first_tick` is the first tick the agent will run: a window that began
    /// before it is partial and skipped.
    pub fn new(config: &Config, first_tick: SystemTime) -> Aggregator {
        let groups = config
            .groups
            .iter()
            .map(|g| {
                let start = align_down(first_tick, g.window);
                GroupState {
                    name: g.name.clone(),
                    unit: g.unit,
                    window: g.window,
                    current: None,
                    partial: (start != first_tick).then_some(start),
                }
            })
            .collect();
        Aggregator {
            interval: config.interval,
            groups,
        }
    }

    /// Add the outcomes of the cycle at `tick`; `outcomes` yields
    /// (group index, outcome). Returns the rows of windows that closed.
    pub fn add_cycle<'a>(
        &mut self,
        tick: SystemTime,
        outcomes: impl IntoIterator<Item = (usize, &'a Outcome)>,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for g in &mut self.groups {
            let start = align_down(tick, g.window);
            if g.current.as_ref().is_some_and(|w| w.start != start) {
                let w = g.current.take().expect("checked above");
                rows.extend(g.report(w));
            }
            g.current.get_or_insert_with(|| Window::new(start));
        }
        for (gi, outcome) in outcomes {
            if let Some(w) = self.groups[gi].current.as_mut() {
                w.add(outcome);
            }
        }
        for g in &mut self.groups {
            let closes = g
                .current
                .as_ref()
                .is_some_and(|w| tick + self.interval >= w.start + g.window);
            if closes {
                let w = g.current.take().expect("checked above");
                rows.extend(g.report(w));
            }
        }
        rows
    }

    /// Rows of the windows still open (on shutdown or reload), so readings
    /// already taken are written.
    pub fn flush(&mut self) -> Vec<Row> {
        let mut rows = Vec::new();
        for g in &mut self.groups {
            if let Some(w) = g.current.take() {
                rows.extend(g.report(w));
            }
        }
        rows
    }
}

impl GroupState {
    fn report(&mut self, w: Window) -> Option<Row> {
        if self.partial == Some(w.start) {
            tracing::debug!(group = %self.name, "window in progress at start-up is not reported");
            return None;
        }
        Some(w.into_row(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::poll::Failure;
    use std::time::UNIX_EPOCH;

    fn config(window: &str) -> Config {
        let text = format!(
            "interval: 5s\ntimeout: 1s\noutput: {{ dir: '{}' }}\ngroups:\n  - name: g\n    unit: celsius\n    window: {window}\n    sensors:\n      - {{ id: a, url: 'http://127.0.0.1:1/a', format: text }}\n",
            std::env::temp_dir().display()
        );
        Config::parse(&text, std::path::Path::new("t.yaml")).unwrap()
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn huge_readings_average_to_a_finite_mean() {
        let cfg = config("5s");
        let mut agg = Aggregator::new(&cfg, t(100));
        let outs = [Ok(f64::MAX), Ok(f64::MAX), Ok(-273.15)];
        let rows = agg.add_cycle(t(100), outs.iter().map(|o| (0, o)));
        let mean = rows[0].mean.unwrap();
        assert!(mean.is_finite() && mean > f64::MAX / 2.0, "{mean}");
    }

    #[test]
    fn averages_one_window_per_interval() {
        let cfg = config("5s");
        let mut agg = Aggregator::new(&cfg, t(100));
        let outs = [Ok(20.0), Ok(22.0), Err(Failure::Status(500)), Ok(21.0)];
        let rows = agg.add_cycle(t(100), outs.iter().map(|o| (0, o)));
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.time, t(100));
        assert_eq!(r.mean, Some(21.0));
        assert_eq!((r.min, r.max), (Some(20.0), Some(22.0)));
        assert_eq!((r.ok, r.failed), (3, 1));
    }

    #[test]
    fn all_failed_still_gives_a_row() {
        let cfg = config("5s");
        let mut agg = Aggregator::new(&cfg, t(100));
        let outs = [Err(Failure::NotStarted)];
        let rows = agg.add_cycle(t(100), outs.iter().map(|o| (0, o)));
        assert_eq!(rows[0].mean, None);
        assert_eq!((rows[0].ok, rows[0].failed), (0, 1));
    }

    #[test]
    fn long_windows_span_cycles_and_skip_partial_start() {
        let cfg = config("15s");
        // Start at 105: window [105..120) is wrongly aligned? 105 is a multiple of 15.
        let mut agg = Aggregator::new(&cfg, t(110));
        let one = [Ok(1.0)];
        // 110 and 115 belong to the partial window [105, 120): not reported.
        assert!(agg.add_cycle(t(110), one.iter().map(|o| (0, o))).is_empty());
        assert!(agg.add_cycle(t(115), one.iter().map(|o| (0, o))).is_empty());
        let a = [Ok(10.0)];
        let b = [Ok(20.0)];
        let c = [Ok(30.0)];
        assert!(agg.add_cycle(t(120), a.iter().map(|o| (0, o))).is_empty());
        assert!(agg.add_cycle(t(125), b.iter().map(|o| (0, o))).is_empty());
        let rows = agg.add_cycle(t(130), c.iter().map(|o| (0, o)));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].time, t(120));
        assert_eq!(rows[0].mean, Some(20.0));
        assert_eq!(rows[0].ok, 3);
        // A window whose last tick is skipped closes when the next one starts.
        assert!(agg.add_cycle(t(135), a.iter().map(|o| (0, o))).is_empty());
        let rows = agg.add_cycle(t(150), b.iter().map(|o| (0, o)));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].time, t(135));
        assert_eq!(rows[0].ok, 1);
        // Shutdown flushes the open window.
        let rows = agg.flush();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].time, t(150));
    }
}
