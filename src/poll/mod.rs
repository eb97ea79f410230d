//! One poll of every sensor, under the total and per-host caps, sharing the
//! slots fairly between hosts and sparing sensors that keep failing.
//!
//! The caps are enforced by a single dispatcher rather than by semaphores
//! that thousands of waiting tasks queue on: the dispatcher keeps, per host,
//! a cursor into that host's sensors and starts a request whenever a slot is
//! free under both `limit` and that host's `limit_per_host`. This gives
//! three properties at once:
//! - never more than `limit` in flight, nor `limit_per_host` to one host;
//! - fair slots ([`slots`]): a freed slot goes to the host with the fewest
//!   requests in flight among those with sensors waiting, so hosts that
//!   accept connections and never answer cannot take the slots of hosts
//!   that do: each host keeps at least `min(limit_per_host, limit / hosts)`
//!   until all of its sensors are started;
//! - bounded memory: at most `limit` request tasks exist at any moment, even
//!   with 10,000 sensors, and the per-cycle bookkeeping is a few words per
//!   sensor and per host.
//!
//! Sensors that failed `backoff.after` polls in a row are skipped for a
//! growing number of cycles ([`backoff`]) and count as failed
//! ([`Failure::BackingOff`]) in the cycles they sit out. The state lives
//! here, across cycles, 4 bytes per sensor.
//!
//! The whole poll ends at the cycle's deadline: requests still running are
//! aborted and, like sensors not yet started, count as failed.

mod backoff;
mod client;
mod fetch;
mod http1;
mod slots;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use client::{
    ClientError, Clients, NoCaBundle, endpoint_client, forward_client, install_crypto_provider,
};
pub use fetch::{Failure, Outcome};

use crate::config::Config;
use crate::sync::lock;
use backoff::{Change, Schedule, Seen, Track};
use http1::Http1;
use slots::Slots;

/// Everything needed to poll a config's sensors, built once per config.
pub struct Poller {
    config: Arc<Config>,
    clients: Arc<Clients>,
    /// The client for `http://` sensors; reqwest's `clients` serve https.
    http: Arc<Http1>,
    /// Sensors as (group index, index within group), in config order.
    sensors: Vec<(u32, u32)>,
    /// Sensor numbers (indexes into `sensors`) grouped by host, hosts in
    /// order of first appearance, sensors in config order.
    by_host: Vec<u32>,
    /// Where each host's sensors start in `by_host`, and its end last.
    host_start: Vec<u32>,
    /// `None`: `backoff: off`.
    schedule: Option<Schedule>,
    /// What carries from cycle to cycle; taken at a cycle's start and end.
    state: Mutex<State>,
}

struct State {
    /// Per sensor; empty with `backoff: off`.
    tracks: Vec<Track>,
    /// Sensors in backoff now.
    backing_off: usize,
    /// Polls so far: the first host of a cycle's first round of starts.
    cycles: u64,
}

impl Poller {
    pub fn new(config: Arc<Config>) -> Result<Poller, ClientError> {
        let clients = Arc::new(Clients::build(&config)?);
        let n: usize = config.groups.iter().map(|g| g.sensors.len()).sum();
        let mut sensors = Vec::with_capacity(n);
        let mut host_index = HashMap::new();
        // Host of each sensor, then a counting sort by host.
        let mut host_of = Vec::with_capacity(n);
        let mut counts: Vec<u32> = Vec::new();
        for (g, group) in config.groups.iter().enumerate() {
            for (s, sensor) in group.sensors.iter().enumerate() {
                sensors.push((g as u32, s as u32));
                let h = *host_index.entry(sensor.host()).or_insert_with(|| {
                    counts.push(0);
                    counts.len() as u32 - 1
                });
                counts[h as usize] += 1;
                host_of.push(h);
            }
        }
        let mut host_start = Vec::with_capacity(counts.len() + 1);
        let mut at = 0u32;
        for c in &counts {
            host_start.push(at);
            at += c;
        }
        host_start.push(at);
        let mut fill: Vec<u32> = host_start[..counts.len()].to_vec();
        let mut by_host = vec![0u32; sensors.len()];
        for (n, h) in host_of.iter().enumerate() {
            by_host[fill[*h as usize] as usize] = n as u32;
            fill[*h as usize] += 1;
        }
        let schedule = config.backoff.map(|b| Schedule::new(b.after, b.max));
        let tracks = match schedule {
            Some(_) => vec![Track::default(); sensors.len()],
            None => Vec::new(),
        };
        Ok(Poller {
            clients,
            http: Arc::new(Http1::new(&config)),
            sensors,
            by_host,
            host_start,
            schedule,
            state: Mutex::new(State {
                tracks,
                backing_off: 0,
                cycles: 0,
            }),
            config: config.clone(),
        })
    }

    /// Number of sensors; [`Poller::poll`] returns one outcome per sensor.
    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// (group, index in group) of sensor number `n`.
    pub fn sensor_at(&self, n: usize) -> (usize, usize) {
        let (g, s) = self.sensors[n];
        (g as usize, s as usize)
    }

    /// Sensors in backoff now (`edge_agent_sensors_backing_off`).
    pub fn backing_off(&self) -> usize {
        lock(&self.state).backing_off
    }

    /// After a reload: carry the backoff state of every sensor `old` polled
    /// with the very same settings (id, URL, headers, timeout ...) into this
    /// poller, so a reload neither polls dead sensors at full rate again nor
    /// logs them going into backoff a second time. Nothing carries when
    /// `backoff.after` changed or backoff is off on either side.
    pub fn keep_backoff_of(&self, old: &Poller) {
        let (Some(schedule), Some(was)) = (self.schedule, old.schedule) else {
            return;
        };
        if schedule.after != was.after {
            return;
        }
        let before: HashMap<&str, usize> = old
            .config
            .sensors()
            .enumerate()
            .map(|(n, (_, s))| (s.id(), n))
            .collect();
        let old_state = lock(&old.state);
        let mut state = lock(&self.state);
        let mut backing_off = 0;
        for (n, (_, sensor)) in self.config.sensors().enumerate() {
            let Some(&m) = before.get(sensor.id()) else {
                continue;
            };
            let (g, s) = old.sensor_at(m);
            if old.config.groups[g].sensors[s] == *sensor {
                state.tracks[n] = old_state.tracks[m].carried(&schedule);
                backing_off += usize::from(state.tracks[n].backing_off(&schedule));
            }
        }
        state.backing_off = backing_off;
    }

    /// Poll every sensor once; sensors not done by the deadline fail. The
    /// deadline may be moved earlier while the poll runs (on shutdown).
    pub async fn poll(&self, mut deadline: watch::Receiver<Instant>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.sensors.len()];
        let (waiting, first) = self.due(&mut outcomes);
        let mut slots = Slots::new(
            self.config.limit,
            self.config.limit_per_host,
            waiting,
            first,
        );
        // Per host, the next of its sensors to look at in `by_host`.
        let mut cursor: Vec<u32> = self.host_start[..self.hosts()].to_vec();
        let mut started = vec![false; self.sensors.len()];
        let mut tasks: JoinSet<(usize, usize, Outcome)> = JoinSet::new();
        // Task id -> (sensor, host), to account for a task that panicked.
        let mut running: HashMap<tokio::task::Id, (usize, usize)> = HashMap::new();

        loop {
            while let Some(h) = slots.take() {
                // A sensor of `h` not started and not backing off: the
                // slots count exactly these, so there is one.
                let end = self.host_start[h + 1] as usize;
                let mut i = cursor[h] as usize;
                while i < end && outcomes[self.by_host[i] as usize].is_some() {
                    i += 1;
                }
                let Some(&n) = self.by_host.get(i).filter(|_| i < end) else {
                    debug_assert!(false, "host {h} had no sensor waiting");
                    continue;
                };
                let n = n as usize;
                cursor[h] = i as u32 + 1;
                started[n] = true;
                let id = self.spawn(&mut tasks, n, h);
                running.insert(id, (n, h));
            }
            if tasks.is_empty() {
                break;
            }
            let until = *deadline.borrow();
            tokio::select! {
                joined = tasks.join_next_with_id() => {
                    match joined {
                        Some(Ok((id, (n, h, outcome)))) => {
                            running.remove(&id);
                            slots.done(h);
                            outcomes[n] = Some(outcome);
                        }
                        // A fetch never panics by design; should one, only its
                        // sensor fails and the cycle goes on.
                        Some(Err(e)) => {
                            tracing::error!("a poll task ended abnormally: {e}");
                            if let Some((n, h)) = running.remove(&e.id()) {
                                slots.done(h);
                                outcomes[n] = Some(Err(Failure::Request("internal error".into())));
                            }
                        }
                        None => break,
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    tasks.abort_all();
                    break;
                }
                // A moved deadline: go round and sleep until the new one.
                Ok(()) = deadline.changed() => {}
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .zip(started)
            .map(|(o, started)| {
                o.unwrap_or(Err(if started {
                    Failure::CycleEnd
                } else {
                    Failure::NotStarted
                }))
            })
            .collect();
        self.record(&outcomes);
        outcomes
    }

    fn hosts(&self) -> usize {
        self.host_start.len() - 1
    }

    /// Where host `h`'s sensors are in `by_host`.
    fn host_range(&self, h: usize) -> Range<usize> {
        self.host_start[h] as usize..self.host_start[h + 1] as usize
    }

    /// A cycle begins: sensors sitting this cycle out get their outcome
    /// now; returns the sensors to poll per host and the host to start with.
    fn due(&self, outcomes: &mut [Option<Outcome>]) -> (Vec<u32>, usize) {
        let mut state = lock(&self.state);
        let mut waiting = vec![0u32; self.hosts()];
        for (h, waiting) in waiting.iter_mut().enumerate() {
            for &n in &self.by_host[self.host_range(h)] {
                let n = n as usize;
                let due = self.schedule.is_none() || state.tracks[n].due();
                if due {
                    *waiting += 1;
                } else {
                    outcomes[n] = Some(Err(Failure::BackingOff));
                }
            }
        }
        let first = (state.cycles % self.hosts().max(1) as u64) as usize;
        state.cycles += 1;
        (waiting, first)
    }

    /// A cycle ended: each polled sensor's backoff moves on, and changes
    /// are logged. A host whose sensors were all backing off and one of
    /// which answers is back: its other sensors are tried next cycle
    /// rather than each at the end of its own wait.
    fn record(&self, outcomes: &[Outcome]) {
        let Some(schedule) = &self.schedule else {
            return;
        };
        let mut state = lock(&self.state);
        for h in 0..self.hosts() {
            let sensors = &self.by_host[self.host_range(h)];
            let host_down = sensors.len() > 1
                && sensors
                    .iter()
                    .all(|n| state.tracks[*n as usize].backing_off(schedule));
            let mut answered = false;
            for &n in sensors {
                let n = n as usize;
                let seen = Seen::of(&outcomes[n]);
                match state.tracks[n].record(seen, schedule, n) {
                    Some(Change::Entered { wait }) => {
                        state.backing_off += 1;
                        self.log_entered(n, schedule, wait);
                    }
                    // The run loop's failure log says it recovered, once.
                    Some(Change::Left { .. }) => {
                        state.backing_off -= 1;
                        answered = true;
                    }
                    None => {}
                }
            }
            if host_down && answered {
                let mut others = 0usize;
                for &n in sensors {
                    let track = &mut state.tracks[n as usize];
                    if track.backing_off(schedule) {
                        track.try_next_cycle();
                        others += 1;
                    }
                }
                if others > 0 {
                    let host = self.sensor(sensors[0] as usize).host();
                    tracing::info!(
                        "host {host} answers again: its {others} other backing-off sensor(s) \
                         are polled next cycle"
                    );
                }
            }
        }
    }

    fn log_entered(&self, n: usize, schedule: &Schedule, wait: u16) {
        let (group, sensor) = self.names(n);
        let url = self.sensor(n).shown_url();
        tracing::warn!(
            sensor = %sensor,
            group = %group,
            url = %url,
            "sensor backing off after {} failed polls in a row: next poll in {wait} \
             intervals, then less often, at most {} intervals apart, until it answers \
             (counted as failed meanwhile)",
            schedule.after,
            schedule.max
        );
    }

    fn sensor(&self, n: usize) -> &crate::config::Sensor {
        let (g, s) = self.sensor_at(n);
        &self.config.groups[g].sensors[s]
    }

    /// (group name, sensor id) of sensor `n`, for log lines.
    fn names(&self, n: usize) -> (&str, &str) {
        let (g, s) = self.sensor_at(n);
        let group = &self.config.groups[g];
        (&group.name, group.sensors[s].id())
    }

    fn spawn(
        &self,
        tasks: &mut JoinSet<(usize, usize, Outcome)>,
        n: usize,
        host: usize,
    ) -> tokio::task::Id {
        let (g, s) = self.sensor_at(n);
        let config = self.config.clone();
        let clients = self.clients.clone();
        let http = self.http.clone();
        tasks
            .spawn(async move {
                let group = &config.groups[g];
                let sensor = &group.sensors[s];
                let outcome = if sensor.url.scheme() == "http" {
                    match http.get(sensor, config.max_body).await {
                        Ok(body) => fetch::reading(&body, sensor, group.unit),
                        Err(failure) => Err(failure),
                    }
                } else {
                    let client = clients.get(sensor.tls());
                    fetch::fetch(client, sensor, group.unit, config.max_body).await
                };
                (n, host, outcome)
            })
            .id()
    }
}
