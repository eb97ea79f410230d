//! Backoff for dead sensors: after `after` failed polls in a row a sensor
//! is polled less often, exponentially with jitter, at most `max` cycles
//! apart, until it answers.
//!
//! A sensor that does not answer costs a slot for its whole timeout at
//! every cycle, for nothing; telegraf polls such a sensor at full rate
//! forever, collectd doubles a failing read's interval. Here the `k`-th
//! wait in backoff is drawn from `(w/2, w]` cycles, `w = min(2^k, max)`:
//! never less than one skipped cycle, never more than `max`, and spread so
//! that the sensors of a host that went down together do not all come back
//! for a try in the same cycle.
//!
//! Only failures of the sensor to answer count (no connection, no answer or
//! body in time, TLS, an HTTP error status, a body too large): a sensor
//! that answers with a body that holds no usable number is alive and costs
//! little. Sensors the cycle never reached or cut short count neither way:
//! that is the cycle's doing, not theirs. The state is 4 bytes per sensor.

use std::hash::{BuildHasher, RandomState};

use super::fetch::{Failure, Outcome};

/// The backoff settings in cycles, and the seed of the jitter.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// Failed polls in a row before a sensor backs off (at least 1).
    pub(super) after: u16,
    /// Most cycles between two polls of a sensor in backoff (at least 2).
    pub(super) max: u16,
    seed: u64,
}

/// What a poll showed about a sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// An HTTP answer with a body, usable or not.
    Answered,
    /// No answer, or a refusal (see the module docs).
    Failed,
    /// Not the sensor's doing: the cycle never started it or cut it short.
    Neither,
}

impl Seen {
    pub(super) fn of(outcome: &Outcome) -> Seen {
        match outcome {
            Ok(_) | Err(Failure::Extract(_) | Failure::Unit(_)) => Seen::Answered,
            Err(Failure::NotStarted | Failure::CycleEnd | Failure::BackingOff) => Seen::Neither,
            Err(_) => Seen::Failed,
        }
    }
}

/// A change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// The sensor went into backoff; it is polled again in `wait` cycles.
    Entered { wait: u16 },
    /// The sensor answered after `fails` failed polls: polled every cycle again.
    Left { fails: u16 },
}

/// One sensor's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Track {
    /// Failed polls in a row.
    fails: u16,
    /// Cycles still to skip before the next poll.
    skip: u16,
}

impl Schedule {
    pub(super) fn new(after: u16, max: u16) -> Schedule {
        Schedule {
            after: after.max(1),
            max: max.max(2),
            // Per process, so gateways that lost the same kind of sensor at
            // the same time do not retry in step.
            seed: RandomState::new().hash_one(0x6564_6765_u64),
        }
    }

    #[cfg(test)]
    fn with_seed(after: u16, max: u16, seed: u64) -> Schedule {
        Schedule {
            seed,
            ..Schedule::new(after, max)
        }
    }

    /// Cycles from a failed poll to the next poll of sensor `n`, at its
    /// `step`-th failure in backoff (1 for the failure that starts it).
    pub(super) fn wait(&self, n: usize, step: u16) -> u16 {
        let max = u32::from(self.max);
        let w = 1u32.checked_shl(u32::from(step)).unwrap_or(max).min(max);
        let low = w / 2 + 1;
        let draw = splitmix(self.seed ^ ((n as u64) << 16) ^ u64::from(step));
        (low + (draw % u64::from(w - low + 1)) as u32) as u16
    }
}

impl Track {
    /// At the start of a cycle: whether the sensor is polled in it.
    pub(super) fn due(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// In backoff: `after` or more failed polls in a row.
    pub(super) fn backing_off(&self, schedule: &Schedule) -> bool {
        self.fails >= schedule.after
    }

    /// Polled at the next cycle, whatever its wait (its host is back).
    pub(super) fn try_next_cycle(&mut self) {
        self.skip = 0;
    }

    /// After a poll of sensor `n` that showed `seen`.
    pub(super) fn record(&mut self, seen: Seen, schedule: &Schedule, n: usize) -> Option<Change> {
        match seen {
            Seen::Neither => None,
            Seen::Answered => {
                let was = std::mem::take(self);
                was.backing_off(schedule)
                    .then_some(Change::Left { fails: was.fails })
            }
            Seen::Failed => {
                self.fails = self.fails.saturating_add(1);
                if !self.backing_off(schedule) {
                    return None;
                }
                let wait = schedule.wait(n, self.fails - schedule.after + 1);
                self.skip = wait - 1;
                (self.fails == schedule.after).then_some(Change::Entered { wait })
            }
        }
    }

    /// The state carried into a new schedule (a reload): the count stays,
    /// a wait longer than the new `max` is cut to it.
    pub(super) fn carried(self, schedule: &Schedule) -> Track {
        Track {
            fails: self.fails,
            skip: self.skip.min(schedule.max - 1),
        }
    }
}

/// A well-mixed 64-bit value from `x` (SplitMix64's finaliser).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cycles (0-based) in which a sensor that always fails is polled.
    fn polled(schedule: &Schedule, n: usize, cycles: usize) -> Vec<usize> {
        let mut t = Track::default();
        let mut at = Vec::new();
        for c in 0..cycles {
            if t.due() {
                at.push(c);
                t.record(Seen::Failed, schedule, n);
            }
        }
        at
    }

    #[test]
    fn waits_grow_exponentially_with_jitter_up_to_max() {
        for seed in 0..50 {
            let s = Schedule::with_seed(3, 10, seed);
            for n in 0..20 {
                for step in 1..40 {
                    let w = s.wait(n, step);
                    let full = 1u16.checked_shl(step.into()).unwrap_or(10).min(10);
                    assert!(
                        w > full / 2 && w <= full,
                        "step {step}: {w} not in ({}, {full}]",
                        full / 2
                    );
                }
            }
        }
        // The jitter spreads sensors: at the cap, several waits occur.
        let s = Schedule::with_seed(3, 10, 7);
        let waits: std::collections::BTreeSet<u16> = (0..200).map(|n| s.wait(n, 9)).collect();
        assert!(waits.len() >= 4, "{waits:?}");
    }

    #[test]
    fn a_failing_sensor_is_polled_less_often_never_more_than_max_apart() {
        let s = Schedule::with_seed(3, 10, 1);
        for n in 0..100 {
            let at = polled(&s, n, 200);
            // The first `after` polls come every cycle.
            assert_eq!(at[..3], [0, 1, 2], "{at:?}");
            let gaps: Vec<usize> = at.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps[2..].iter().all(|g| (2..=10).contains(g)), "{gaps:?}");
            // Exponential at first: the second wait at least 3 (of 4).
            assert!(gaps[3] >= 3, "{gaps:?}");
            // About one poll every 5.5 to 10 cycles once at the cap.
            assert!((20..=40).contains(&at.len()), "{} polls: {at:?}", at.len());
        }
    }

    #[test]
    fn logged_once_in_and_once_out_and_an_answer_resets() {
        let s = Schedule::with_seed(2, 4, 3);
        let mut t = Track::default();
        let mut changes = Vec::new();
        for _ in 0..30 {
            if t.due() {
                changes.extend(t.record(Seen::Failed, &s, 0));
            }
        }
        assert_eq!(changes, [Change::Entered { wait: 2 }]);
        assert!(t.backing_off(&s));
        while !t.due() {}
        let left = t.record(Seen::Answered, &s, 0);
        assert!(
            matches!(left, Some(Change::Left { fails }) if fails > 2),
            "{left:?}"
        );
        assert_eq!(t, Track::default());
        // Polled every cycle again; one failure does not start a backoff.
        assert!(t.due() && t.record(Seen::Failed, &s, 0).is_none() && t.due());
    }

    #[test]
    fn cycles_cut_short_count_neither_way() {
        let s = Schedule::with_seed(2, 4, 3);
        let mut t = Track::default();
        t.record(Seen::Failed, &s, 0);
        t.record(Seen::Neither, &s, 0);
        assert!(!t.backing_off(&s));
        assert_eq!(
            t.record(Seen::Failed, &s, 0),
            Some(Change::Entered { wait: 2 })
        );
        assert_eq!(t.record(Seen::Neither, &s, 0), None);
        assert!(t.backing_off(&s));
    }

    #[test]
    fn outcomes_are_classified() {
        use crate::extract::ExtractError;
        let answered: [Outcome; 2] = [Ok(1.0), Err(ExtractError::NotUtf8.into())];
        for o in &answered {
            assert_eq!(Seen::of(o), Seen::Answered, "{o:?}");
        }
        for f in [Failure::NotStarted, Failure::CycleEnd, Failure::BackingOff] {
            assert_eq!(Seen::of(&Err(f.clone())), Seen::Neither, "{f:?}");
        }
        let failed = [
            Failure::Timeout(std::time::Duration::from_secs(1)),
            Failure::Connect("refused".into()),
            Failure::Status(503),
            Failure::TooLarge(10),
        ];
        for f in failed {
            assert_eq!(Seen::of(&Err(f.clone())), Seen::Failed, "{f:?}");
        }
    }
}
