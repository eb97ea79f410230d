//! When cycles run: ticks aligned to wall-clock multiples of the interval.
//!
//! With `interval: 5s` cycles start at :00, :05, :10 ... of every minute, so
//! rows of several gateways line up and a restart does not shift the grid.
//! A tick that comes too late to finish before the next one is skipped and
//! logged, never queued behind: the agent stays on the grid.
//!
//! Time comes from a [`Clock`]: the system clock in production, or a virtual
//! clock driven by tokio's (pausable) clock in tests, so timing logic is
//! tested without sleeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The source of wall-clock time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `SystemTime::now()`; follows NTP steps (a Raspberry Pi without RTC
    /// boots in the past and jumps when it syncs).
    System,
    /// `start` plus the time elapsed on tokio's clock since `anchor`.
    Virtual { start: SystemTime, anchor: Instant },
}

impl Clock {
    /// A clock reading `start` now and advancing with tokio's clock.
    pub fn starting_at(start: SystemTime) -> Clock {
        Clock::Virtual {
            start,
            anchor: Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Virtual { start, anchor } => *start + anchor.elapsed(),
        }
    }
}

/// The smallest multiple of `step` (since the Unix epoch) at or after `t`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use edge_agent::schedule::align_up;
///
/// let t = UNIX_EPOCH + Duration::from_millis(12_300);
/// assert_eq!(align_up(t, Duration::from_secs(5)), UNIX_EPOCH + Duration::from_secs(15));
/// ```
pub fn align_up(t: SystemTime, step: Duration) -> SystemTime {
    let down = align_down(t, step);
    if down == t { t } else { down + step }
}

/// The largest multiple of `step` (since the Unix epoch) at or before `t`.
pub fn align_down(t: SystemTime, step: Duration) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let step_ns = step.as_nanos().max(1);
    let down = since - since % step_ns;
    UNIX_EPOCH + Duration::new((down / 1_000_000_000) as u64, (down % 1_000_000_000) as u32)
}

/// One scheduled cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The scheduled (aligned) wall-clock time of this cycle.
    pub time: SystemTime,
    /// When the cycle must be over: the next tick.
    pub deadline: Instant,
    /// Ticks skipped just before this one because they came too late.
    pub skipped: u64,
}

/// Produces aligned ticks.
pub struct Ticker {
    clock: Clock,
    interval: Duration,
    /// How late a tick may start and still finish before the next one.
    slack: Duration,
    next: SystemTime,
    /// Ticks skipped since the last tick returned (kept here, not in the
    /// future, so a cancelled wait does not lose the count).
    skipped: u64,
}

impl Ticker {
    /// Ticks every `interval`; a tick is skipped when it would start more
    /// than `interval - timeout` late (its requests could not finish in time).
    pub fn new(clock: Clock, interval: Duration, timeout: Duration) -> Ticker {
        let next = align_up(clock.now(), interval);
        Ticker {
            clock,
            interval,
            slack: interval.saturating_sub(timeout),
            next,
            skipped: 0,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The time of the tick [`Ticker::tick`] will return next, unless skipped.
    pub fn upcoming(&self) -> SystemTime {
        self.next
    }

    /// Wait for the next tick. Cancel-safe: the run loop drops this future
    /// to answer signals and feed the watchdog, and calls it again.
    pub async fn tick(&mut self) -> Tick {
        loop {
            let now = self.clock.now();
            if now + self.interval < self.next {
                // The clock stepped back: re-align instead of waiting long.
                tracing::warn!(
                    "system clock stepped back by {}; re-aligning ticks",
                    humantime::format_duration(round_ms(
                        self.next.duration_since(now).unwrap_or_default()
                    ))
                );
                self.next = align_up(now, self.interval);
                continue;
            }
            let due = self.next;
            if let Some((n, late)) = self.too_late(now) {
                self.skipped += n;
                tracing::warn!(
                    "skipped {n} tick(s): woke {} late for the tick at {}",
                    humantime::format_duration(round_ms(late)),
                    humantime::format_rfc3339_millis(due)
                );
                continue;
            }
            match now.duration_since(self.next) {
                Ok(late) => {
                    let time = self.next;
                    self.next += self.interval;
                    let deadline = Instant::now() + self.interval.saturating_sub(late);
                    return Tick {
                        time,
                        deadline,
                        skipped: std::mem::take(&mut self.skipped),
                    };
                }
                Err(early) => {
                    // Sleep in steps of at most one interval so a clock step
                    // is noticed within one interval.
                    tokio::time::sleep(early.duration().min(self.interval)).await;
                }
            }
        }
    }
}

impl Ticker {
    /// Skip the ticks that can no longer start in time, as [`Ticker::tick`]
    /// would, and return how many, without logging them or adding them to
    /// the next tick's count: for a caller that knows why they were missed
    /// (a reload that took long) and says so itself.
    pub fn overdue(&mut self) -> u64 {
        let now = self.clock.now();
        self.too_late(now).map_or(0, |(n, _)| n)
    }

    /// New timing (after a reload). The same interval keeps the grid and the
    /// tick to come; another interval starts a grid of its own from now, and
    /// the old grid's ticks already due but not run are returned as lost.
    pub fn reconfigure(&mut self, interval: Duration, timeout: Duration) -> u64 {
        self.slack = interval.saturating_sub(timeout);
        if interval == self.interval {
            return 0;
        }
        let now = self.clock.now();
        let lost = match now.duration_since(self.next) {
            Ok(after) => (after.as_nanos() / self.interval.as_nanos()) as u64 + 1,
            Err(_) => 0,
        };
        self.interval = interval;
        self.next = align_up(now, interval);
        lost
    }

    /// When the tick to come is more than the slack late at `now`: skip to
    /// the first tick that can still run; (ticks skipped, how late).
    fn too_late(&mut self, now: SystemTime) -> Option<(u64, Duration)> {
        let late = now
            .duration_since(self.next)
            .ok()
            .filter(|l| *l > self.slack)?;
        let resume = align_up(now, self.interval);
        let n = (resume
            .duration_since(self.next)
            .unwrap_or_default()
            .as_nanos()
            / self.interval.as_nanos()) as u64;
        self.next = if resume == self.next {
            resume + self.interval
        } else {
            resume
        };
        Some((n.max(1), late))
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn alignment() {
        let five = Duration::from_secs(5);
        assert_eq!(align_up(at(100, 1), five), at(105, 0));
        assert_eq!(align_up(at(100, 0), five), at(100, 0));
        assert_eq!(align_down(at(104, 999), five), at(100, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_are_aligned_and_deadlines_end_at_next_tick() {
        let clock = Clock::starting_at(at(1_000, 300));
        let mut t = Ticker::new(
            clock.clone(),
            Duration::from_secs(5),
            Duration::from_secs(2),
        );
        let first = t.tick().await;
        assert_eq!(first.time, at(1_000, 0) + Duration::from_secs(5));
        assert_eq!(clock.now(), first.time);
        assert_eq!(first.deadline, Instant::now() + Duration::from_secs(5));
        let second = t.tick().await;
        assert_eq!(second.time, at(1_010, 0));
        assert_eq!(second.skipped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn late_ticks_are_skipped_not_queued() {
        let clock = Clock::starting_at(at(2_000, 0));
        let mut t = Ticker::new(
            clock.clone(),
            Duration::from_secs(5),
            Duration::from_secs(2),
        );
        assert_eq!(t.tick().await.time, at(2_000, 0));
        // Something held the loop for 12.5 s: ticks at 2005 and 2010 are gone.
        tokio::time::advance(Duration::from_millis(12_500)).await;
        let next = t.tick().await;
        assert_eq!(next.time, at(2_015, 0));
        assert_eq!(next.skipped, 2);
        assert_eq!(clock.now(), at(2_015, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn slightly_late_tick_still_runs_with_shorter_deadline() {
        let clock = Clock::starting_at(at(3_000, 0));
        let mut t = Ticker::new(clock, Duration::from_secs(5), Duration::from_secs(2));
        t.tick().await;
        tokio::time::advance(Duration::from_millis(6_000)).await;
        let next = t.tick().await;
        assert_eq!(next.time, at(3_005, 0));
        assert_eq!(next.skipped, 0);
        assert_eq!(next.deadline, Instant::now() + Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_keeps_the_tick_and_the_skip_count() {
        let clock = Clock::starting_at(at(4_000, 0));
        let mut t = Ticker::new(clock, Duration::from_secs(5), Duration::from_secs(2));
        t.tick().await;
        tokio::time::advance(Duration::from_millis(12_500)).await;
        // Cancelled after skipping 4005 and 4010, while waiting for 4015.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), t.tick())
                .await
                .is_err()
        );
        let next = t.tick().await;
        assert_eq!(next.time, at(4_015, 0));
        assert_eq!(next.skipped, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_a_reload_held_up_are_counted_once_and_not_logged_as_late() {
        let clock = Clock::starting_at(at(5_000, 0));
        let mut t = Ticker::new(clock, Duration::from_secs(5), Duration::from_secs(2));
        t.tick().await;
        // A reload held the loop 9 s: 5005 (4 s late, slack 3 s) cannot run.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(t.overdue(), 1);
        assert_eq!(t.upcoming(), at(5_010, 0));
        let next = t.tick().await;
        assert_eq!((next.time, next.skipped), (at(5_010, 0), 0));
        // Nothing overdue: nothing counted, the tick to come stays.
        assert_eq!(t.overdue(), 0);
        assert_eq!(t.upcoming(), at(5_015, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_grid_unless_the_interval_changes() {
        let clock = Clock::starting_at(at(6_000, 0));
        let mut t = Ticker::new(clock, Duration::from_secs(5), Duration::from_secs(2));
        t.tick().await;
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            t.reconfigure(Duration::from_secs(5), Duration::from_secs(1)),
            0
        );
        assert_eq!(t.upcoming(), at(6_005, 0));
        // 6005 is due (1 s ago) when the interval changes: it is lost, and
        // the new grid starts at the next multiple of 2 s.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            t.reconfigure(Duration::from_secs(2), Duration::from_secs(1)),
            1
        );
        assert_eq!(t.upcoming(), at(6_006, 0));
        let next = t.tick().await;
        assert_eq!((next.time, next.skipped), (at(6_006, 0), 0));
        assert_eq!(t.tick().await.time, at(6_008, 0));
    }
}
