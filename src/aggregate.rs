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
//!
//! A reload ([`Aggregator::reconfigure`]) keeps the open window of every
//! group whose rows mean the same under the new config: same name, unit and
//! window, same interval, and sensors that read the same things (id, URL,
//! format, value, unit; headers, credentials, TLS and timeouts may change).
//! Such a window's row comes at its end, complete, as without a reload.
//! Any other group's open window is cut: the polls it holds are written at
//! once as its row (under the window's time, one warning naming the group,
//! the time, why, and how many of the window's polls the row holds), and the
//! rest of that window under the new config is not reported, like a window
//! in progress at start-up. So a cut window has one row, a short one the log
//! points to, and rows stay unique per group and time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Group, Selector};
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
            .map(|g| GroupState::new(g, first_tick))
            .collect();
        Aggregator {
            interval: config.interval,
            groups,
        }
    }

    /// Go on under `new` after a reload from `old` (the config this
    /// aggregator was built or last reconfigured for); `first_tick` is the
    /// first tick that will run under `new`. Keeps the open windows of groups
    /// whose rows mean the same, cuts the others' (and those of groups that
    /// are gone), logging each cut. Returns the rows of the cut windows.
    pub fn reconfigure(&mut self, old: &Config, new: &Config, first_tick: SystemTime) -> Vec<Row> {
        let mut before: Vec<Option<GroupState>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(Some)
            .collect();
        let by_name: HashMap<&str, usize> = old
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.as_str(), i))
            .collect();
        let mut rows = Vec::new();
        for g in &new.groups {
            let mut state = None;
            let earlier = by_name.get(g.name.as_str()).copied();
            if let Some((i, was)) = earlier.and_then(|i| Some((i, before[i].take()?))) {
                match change(old, &old.groups[i], new, g) {
                    None => state = Some(was),
                    Some(why) => rows.extend(was.cut(why, polls(old, &old.groups[i]), first_tick)),
                }
            }
            self.groups
                .push(state.unwrap_or_else(|| GroupState::new(g, first_tick)));
        }
        for (i, gone) in before.into_iter().enumerate() {
            if let Some(was) = gone {
                rows.extend(was.cut("group removed", polls(old, &old.groups[i]), first_tick));
            }
        }
        self.interval = new.interval;
        rows
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

/// Why `a`'s open window (under `old`) cannot go on as `b`'s (under
/// `new`), if it cannot: its row would mix polls of two meanings or hold
/// neither config's number of polls.
fn change(old: &Config, a: &Group, new: &Config, b: &Group) -> Option<&'static str> {
    if a.window != b.window {
        Some("window changed")
    } else if old.interval != new.interval {
        Some("interval changed")
    } else if a.unit != b.unit {
        Some("unit changed")
    } else if readings(a) != readings(b) {
        Some("sensors changed")
    } else {
        None
    }
}

/// What a group's sensors read, by id: what a reading of each means.
fn readings(g: &Group) -> Vec<(&str, &str, &'static str, &Selector, Unit)> {
    let mut r: Vec<_> = g
        .sensors
        .iter()
        .map(|s| {
            (
                s.id(),
                s.url.as_str(),
                s.format.as_str(),
                &s.selector,
                s.unit,
            )
        })
        .collect();
    r.sort_by(|x, y| x.0.cmp(y.0));
    r
}

/// Polls in a whole window of `g` under `config`.
fn polls(config: &Config, g: &Group) -> u64 {
    let ticks = g.window.as_nanos() / config.interval.as_nanos().max(1);
    g.sensors.len() as u64 * ticks as u64
}

impl GroupState {
    fn new(g: &Group, first_tick: SystemTime) -> GroupState {
        let start = align_down(first_tick, g.window);
        GroupState {
            name: g.name.clone(),
            unit: g.unit,
            window: g.window,
            current: None,
            partial: (start != first_tick).then_some(start),
        }
    }

    /// The end of this group under its old config (see
    /// [`Aggregator::reconfigure`]): the row of its open window, which a
    /// reload cuts short unless the window is already over; `polls` are a
    /// whole window's.
    fn cut(mut self, why: &str, polls: u64, first_tick: SystemTime) -> Option<Row> {
        let w = self.current.take()?;
        if w.start + self.window <= first_tick {
            // Over, its last ticks skipped: the row it would have had anyway.
            return self.report(w);
        }
        let time = humantime::format_rfc3339_millis(w.start);
        let name = &self.name;
        if self.partial == Some(w.start) {
            tracing::warn!(
                "group {name}: window {time} cut by a reload ({why}); no row: \
                 the window began before the agent started"
            );
            return None;
        }
        let held = w.ok + w.failed;
        tracing::warn!(
            "group {name}: window {time} cut by a reload ({why}); its row holds {held} of {polls} polls"
        );
        Some(w.into_row(&self))
    }

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
        with_sensors(
            window,
            "      - { id: a, url: 'http://127.0.0.1:1/a', format: text }\n",
        )
    }

    /// Group `g` of `sensors` (YAML list items), every 5 s.
    fn with_sensors(window: &str, sensors: &str) -> Config {
        named("g", window, sensors)
    }

    fn named(group: &str, window: &str, sensors: &str) -> Config {
        let text = format!(
            "interval: 5s\ntimeout: 1s\noutput: {{ dir: '{}' }}\ngroups:\n  - name: {group}\n    unit: celsius\n    window: {window}\n    sensors:\n{sensors}",
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

    #[test]
    fn a_reload_keeps_the_window_of_a_group_whose_readings_mean_the_same() {
        let cfg = config("15s");
        // A header is no change to what the readings mean.
        let same = with_sensors(
            "15s",
            "      - { id: a, url: 'http://127.0.0.1:1/a', format: text, headers: { X-Key: k } }\n",
        );
        let mut agg = Aggregator::new(&cfg, t(120));
        let (a, b, c) = ([Ok(10.0)], [Ok(20.0)], [Ok(30.0)]);
        assert!(agg.add_cycle(t(120), a.iter().map(|o| (0, o))).is_empty());
        assert!(agg.add_cycle(t(125), b.iter().map(|o| (0, o))).is_empty());
        assert!(agg.reconfigure(&cfg, &same, t(130)).is_empty());
        // The window's last tick closes it: its three polls, one row.
        let rows = agg.add_cycle(t(130), c.iter().map(|o| (0, o)));
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].time, rows[0].ok), (t(120), 3));
        assert_eq!(rows[0].mean, Some(20.0));
    }

    #[test]
    fn a_reload_cuts_the_window_of_a_changed_group_and_skips_the_rest_of_it() {
        let cfg = config("15s");
        let two = with_sensors(
            "15s",
            "      - { id: a, url: 'http://127.0.0.1:1/a', format: text }\n      - { id: b, url: 'http://127.0.0.1:1/b', format: text }\n",
        );
        let mut agg = Aggregator::new(&cfg, t(120));
        let (a, b) = ([Ok(10.0)], [Ok(20.0)]);
        assert!(agg.add_cycle(t(120), a.iter().map(|o| (0, o))).is_empty());
        assert!(agg.add_cycle(t(125), b.iter().map(|o| (0, o))).is_empty());
        // The two polls so far, at once, under the window's time.
        let cut = agg.reconfigure(&cfg, &two, t(130));
        assert_eq!(cut.len(), 1);
        assert_eq!(
            (cut[0].time, cut[0].ok, cut[0].mean),
            (t(120), 2, Some(15.0))
        );
        // The rest of [120, 135) is not written again; 135's window is whole.
        let both = [Ok(1.0), Ok(3.0)];
        for at in [130, 135, 140] {
            assert!(agg.add_cycle(t(at), both.iter().map(|o| (0, o))).is_empty());
        }
        let rows = agg.add_cycle(t(145), both.iter().map(|o| (0, o)));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].time, rows[0].ok, rows[0].mean),
            (t(135), 6, Some(2.0))
        );
        assert!(
            agg.add_cycle(t(150), both.iter().map(|o| (0, o)))
                .is_empty()
        );
        // A group that is gone has its window cut too.
        let renamed = named(
            "h",
            "15s",
            "      - { id: z, url: 'http://127.0.0.1:1/z', format: text }\n",
        );
        let cut = agg.reconfigure(&two, &renamed, t(155));
        assert_eq!(cut.len(), 1);
        assert_eq!(
            (cut[0].group.as_str(), cut[0].time, cut[0].ok),
            ("g", t(150), 2)
        );
    }
}
