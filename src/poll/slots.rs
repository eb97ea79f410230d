//! Which host gets the next free slot: the one with the fewest requests in
//! flight among the hosts that still have sensors waiting (fair slots).
//!
//! Round-robin starts (one request per host per turn) are fair only while
//! slots free up evenly. A host that accepts connections and never answers
//! holds its slots until the timeout, while a host that answers frees its
//! own at once; round-robin then hands each freed slot to the next host in
//! turn, the hung hosts fill up to `limit_per_host` one by one, and together
//! they end up holding all of `limit` while the answering host's sensors
//! wait. Handing a freed slot to the least-busy host instead gives a
//! guarantee that does not depend on how hosts behave:
//!
//! > from the cycle's first starts until it has started all of its sensors,
//! > every host holds at least `min(limit_per_host, limit / H)` slots, H
//! > being the number of hosts with sensors to poll in the cycle.
//!
//! Why: the first fill raises every host one request at a time, so each
//! reaches that level before any passes it. Afterwards the lowest level
//! among the hosts with sensors waiting never drops: each ended request
//! frees one slot, which goes at once to a host at the lowest level, and if
//! the host whose request ended fell below all others, that host is itself.
//! (On a tie the host that freed the slot takes it back, which keeps
//! requests to one host coming steadily.) A hung host therefore never holds
//! a slot that a host with fewer requests and sensors waiting could have had.
//!
//! The levels are intrusive doubly linked lists over per-host arrays, so
//! every operation is O(1) (the lowest level is found by a pointer that
//! only moves by one per freed slot) and the memory is a few words per host
//! for the length of one cycle.

/// No host: the end of a list.
const NONE: u32 = u32::MAX;

/// The slots of one cycle. Hosts are numbered `0..waiting.len()`.
pub(super) struct Slots {
    limit: u32,
    per_host: u32,
    total: u32,
    busy: Vec<u32>,
    /// Sensors due and not yet started, per host.
    waiting: Vec<u32>,
    /// Links of the level list each eligible host is in (`NONE` at the ends).
    prev: Vec<u32>,
    next: Vec<u32>,
    /// Whether the host is in a list (it has sensors waiting and a free
    /// per-host slot).
    listed: Vec<bool>,
    /// (first, last) host of each level 0..=per_host-1.
    levels: Vec<(u32, u32)>,
    /// No list below this level is non-empty.
    low: usize,
}

impl Slots {
    /// `waiting[h]`: the sensors of host `h` to poll this cycle. The first
    /// round of starts goes from host `first` on (rotated from cycle to
    /// cycle, so when `limit` is below the number of hosts it is not always
    /// the same hosts that wait for a slot).
    pub(super) fn new(limit: usize, per_host: usize, waiting: Vec<u32>, first: usize) -> Slots {
        let hosts = waiting.len();
        // No host can be busier than its sensors or than `limit`: the cap
        // is cut to that, so the level lists (one per level) stay as small
        // as the site, whatever huge caps the config allows.
        let most = waiting.iter().copied().max().unwrap_or(0) as usize;
        let per_host = per_host.min(limit).min(most).max(1) as u32;
        let mut slots = Slots {
            limit: limit.min(u32::MAX as usize) as u32,
            per_host,
            total: 0,
            busy: vec![0; hosts],
            waiting,
            prev: vec![NONE; hosts],
            next: vec![NONE; hosts],
            listed: vec![false; hosts],
            levels: vec![(NONE, NONE); per_host as usize],
            low: 0,
        };
        for i in 0..hosts {
            let h = (first + i) % hosts;
            if slots.waiting[h] > 0 {
                slots.push_back(h, 0);
            }
        }
        slots
    }

    /// Take a slot: the host to start a request for, or `None` when `limit`
    /// is reached or no host with sensors waiting has a free per-host slot.
    pub(super) fn take(&mut self) -> Option<usize> {
        if self.total >= self.limit {
            return None;
        }
        while self.low < self.levels.len() && self.levels[self.low].0 == NONE {
            self.low += 1;
        }
        let level = self.low;
        let h = *self.levels.get(level)?;
        let h = h.0 as usize;
        self.unlink(h, level);
        self.busy[h] += 1;
        self.waiting[h] -= 1;
        self.total += 1;
        if self.waiting[h] > 0 && self.busy[h] < self.per_host {
            // Behind the hosts already at its new level: round-robin.
            self.push_back(h, level + 1);
        }
        Some(h)
    }

    /// A request of host `h` ended: its slot is free.
    pub(super) fn done(&mut self, h: usize) {
        let was = self.busy[h] as usize;
        self.busy[h] -= 1;
        self.total -= 1;
        if self.listed[h] {
            self.unlink(h, was);
        }
        if self.waiting[h] > 0 {
            // First at its level: on a tie it takes the slot it freed.
            self.push_front(h, was - 1);
        }
    }

    /// Requests in flight, in total.
    #[cfg(test)]
    pub(super) fn total(&self) -> usize {
        self.total as usize
    }

    #[cfg(test)]
    pub(super) fn busy(&self, h: usize) -> usize {
        self.busy[h] as usize
    }

    #[cfg(test)]
    pub(super) fn waiting(&self, h: usize) -> usize {
        self.waiting[h] as usize
    }

    #[cfg(test)]
    fn waiting_total(&self) -> usize {
        self.waiting.iter().map(|w| *w as usize).sum()
    }

    fn push_back(&mut self, h: usize, level: usize) {
        self.link(h, level, false);
    }

    fn push_front(&mut self, h: usize, level: usize) {
        self.link(h, level, true);
    }

    /// Put `h` into the list of `level`, first or last.
    fn link(&mut self, h: usize, level: usize, first: bool) {
        let (head, tail) = self.levels[level];
        let hu = h as u32;
        self.prev[h] = NONE;
        self.next[h] = NONE;
        if head == NONE {
            self.levels[level] = (hu, hu);
        } else if first {
            self.next[h] = head;
            self.prev[head as usize] = hu;
            self.levels[level].0 = hu;
        } else {
            self.prev[h] = tail;
            self.next[tail as usize] = hu;
            self.levels[level].1 = hu;
        }
        self.listed[h] = true;
        self.low = self.low.min(level);
    }

    fn unlink(&mut self, h: usize, level: usize) {
        let (p, n) = (self.prev[h], self.next[h]);
        if p == NONE {
            self.levels[level].0 = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.levels[level].1 = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[h] = NONE;
        self.next[h] = NONE;
        self.listed[h] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start everything the slots allow.
    fn fill(s: &mut Slots) -> Vec<usize> {
        std::iter::from_fn(|| s.take()).collect()
    }

    #[test]
    fn the_first_fill_is_round_robin_from_the_first_host() {
        let mut s = Slots::new(7, 5, vec![10, 10, 10], 1);
        assert_eq!(fill(&mut s), [1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(s.total(), 7);
        assert_eq!(s.take(), None);
    }

    #[test]
    fn caps_hold_and_hosts_without_sensors_get_nothing() {
        let mut s = Slots::new(100, 2, vec![3, 0, 1], 0);
        assert_eq!(fill(&mut s), [0, 2, 0]);
        assert_eq!((s.busy(0), s.busy(1), s.busy(2)), (2, 0, 1));
        s.done(2);
        // Host 2 has nothing left; host 0 is at its per-host cap.
        assert_eq!(s.take(), None);
        s.done(0);
        assert_eq!(s.take(), Some(0));
        assert_eq!(s.waiting(0), 0);
        assert_eq!(s.take(), None);
    }

    #[test]
    fn huge_caps_cost_no_more_than_the_site() {
        let mut s = Slots::new(usize::MAX, usize::MAX, vec![3, 2], 0);
        assert_eq!(fill(&mut s), [0, 1, 0, 1, 0]);
        assert!(s.levels.len() <= 3);
        s.done(1);
        assert_eq!(s.take(), None);
    }

    /// The case: hung hosts never free a slot, the live host frees
    /// each at once. Round-robin gave the hung hosts every freed slot; here
    /// the live host keeps its share until all of its sensors are started.
    #[test]
    fn a_host_that_answers_keeps_its_share_beside_hosts_that_hang() {
        let hosts = 21;
        let live = 20;
        let mut waiting = vec![10; hosts];
        waiting[live] = 100;
        let mut s = Slots::new(100, 5, waiting, 0);
        let mut live_busy: Vec<usize> = fill(&mut s).into_iter().filter(|h| *h == live).collect();
        let share = 100 / hosts;
        assert!(live_busy.len() >= share, "{live_busy:?}");
        let mut started = live_busy.len();
        // The live host's requests end one by one; nothing else ends.
        while live_busy.pop().is_some() {
            s.done(live);
            for h in fill(&mut s) {
                if h == live {
                    live_busy.push(h);
                    started += 1;
                }
            }
            if s.waiting(live) > 0 {
                assert!(s.busy(live) >= share, "live host fell to {}", s.busy(live));
            }
        }
        assert_eq!(started, 100, "every live sensor was started");
        assert_eq!(s.total(), 100);
    }

    /// Work-conserving at the shape of `benches/cycle.rs` (10 hosts of
    /// 1,000 sensors, limit 200, 25 per host) with every answer taking one
    /// time unit: every round starts `limit` requests, so the cycle takes
    /// the cap bound, 50 rounds, as round-robin starts did.
    #[test]
    fn the_benchmark_site_runs_at_the_cap_bound() {
        let mut s = Slots::new(200, 25, vec![1000; 10], 0);
        let mut round = fill(&mut s);
        let mut rounds = 0;
        while !round.is_empty() {
            rounds += 1;
            assert!(
                round.len() == 200 || s.waiting_total() == 0,
                "round {rounds}: {}",
                round.len()
            );
            for h in round {
                s.done(h);
            }
            round = fill(&mut s);
        }
        assert_eq!(rounds, 50);
    }

    /// The guarantee in the module docs, for random completions: while a
    /// host has sensors waiting it holds at least min(per_host, limit / H).
    #[test]
    fn no_waiting_host_falls_below_its_share() {
        use proptest::prelude::*;
        let cases = (
            1usize..40,
            1usize..12,
            prop::collection::vec(0u32..30, 1..25),
            prop::collection::vec(any::<u16>(), 0..400),
            any::<usize>(),
        );
        proptest!(|((limit, per_host, waiting, ends, first) in cases)| {
            let hosts_due = waiting.iter().filter(|w| **w > 0).count().max(1);
            let share = per_host.min(limit / hosts_due);
            let first = first % waiting.len();
            let mut s = Slots::new(limit, per_host, waiting.clone(), first);
            let mut running: Vec<usize> = fill(&mut s);
            let check = |s: &Slots| {
                prop_assert!(s.total() <= limit);
                for h in 0..waiting.len() {
                    prop_assert!(s.busy(h) <= per_host);
                    if s.waiting(h) > 0 {
                        prop_assert!(s.busy(h) >= share, "host {h}: {} < {share}", s.busy(h));
                    }
                }
                Ok(())
            };
            check(&s)?;
            for e in ends {
                if running.is_empty() {
                    break;
                }
                let h = running.swap_remove(e as usize % running.len());
                s.done(h);
                running.extend(fill(&mut s));
                check(&s)?;
            }
        });
    }
}
