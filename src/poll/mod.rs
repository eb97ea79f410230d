//! One poll of every sensor, under the total and per-host caps.
//!
//! The caps are enforced by a single dispatcher rather than by semaphores
//! that thousands of waiting tasks queue on: the dispatcher owns one queue of
//! sensors per host and starts requests round-robin across hosts whenever
//! both the total count and that host's count are below their caps. This
//! gives three properties at once:
//! - never more than `limit` in flight, nor `limit_per_host` to one host;
//! - fairness: a slow host only holds its own slots, and every other host
//!   keeps getting its turn in the rotation;
//! - bounded memory: at most `limit` request tasks exist at any moment, even
//!   with 10,000 sensors.
//!
//! The whole poll ends at the cycle's deadline: requests still running are
//! aborted and, like sensors not yet started, count as failed.

mod client;
mod fetch;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use client::{ClientError, Clients, NoCaBundle, endpoint_client, install_crypto_provider};
pub use fetch::Failure;

use crate::config::Config;

/// The result of one sensor in one cycle, in its group's unit.
pub type Outcome = Result<f64, Failure>;

/// Everything needed to poll a config's sensors, built once per config.
pub struct Poller {
    config: Arc<Config>,
    clients: Arc<Clients>,
    /// Sensors as (group index, index within group), in config order.
    sensors: Vec<(usize, usize)>,
    /// Sensor numbers (indexes into `sensors`) per host, in config order.
    hosts: Vec<Vec<usize>>,
}

impl Poller {
    pub fn new(config: Arc<Config>) -> Result<Poller, ClientError> {
        let clients = Arc::new(Clients::build(&config)?);
        let mut sensors = Vec::new();
        let mut host_index: HashMap<&str, usize> = HashMap::new();
        let mut hosts: Vec<Vec<usize>> = Vec::new();
        for (g, group) in config.groups.iter().enumerate() {
            for (s, sensor) in group.sensors.iter().enumerate() {
                let n = sensors.len();
                sensors.push((g, s));
                let h = *host_index.entry(&sensor.host).or_insert_with(|| {
                    hosts.push(Vec::new());
                    hosts.len() - 1
                });
                hosts[h].push(n);
            }
        }
        Ok(Poller {
            clients,
            sensors,
            hosts,
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
        self.sensors[n]
    }

    /// Poll every sensor once; sensors not done by the deadline fail. The
    /// deadline may be moved earlier while the poll runs (on shutdown).
    pub async fn poll(&self, mut deadline: watch::Receiver<Instant>) -> Vec<Outcome> {
        let limit = self.config.limit;
        let per_host = self.config.limit_per_host;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.sensors.len()];
        let mut queues: Vec<VecDeque<usize>> = self
            .hosts
            .iter()
            .map(|h| h.iter().copied().collect())
            .collect();
        let mut busy = vec![0usize; queues.len()];
        let mut total = 0usize;
        let mut next_host = 0usize;
        let mut tasks: JoinSet<(usize, usize, Outcome)> = JoinSet::new();
        let mut waiting = self.sensors.len();
        let mut started_at = vec![false; self.sensors.len()];
        // Task id -> (sensor, host), to account for a task that panicked.
        let mut running: HashMap<tokio::task::Id, (usize, usize)> = HashMap::new();

        loop {
            // Start what the caps allow, one request per host per turn.
            let mut started = true;
            while started && total < limit && waiting > 0 {
                started = false;
                for step in 0..queues.len() {
                    if total >= limit {
                        break;
                    }
                    let h = (next_host + step) % queues.len();
                    if busy[h] >= per_host {
                        continue;
                    }
                    let Some(n) = queues[h].pop_front() else {
                        continue;
                    };
                    waiting -= 1;
                    started_at[n] = true;
                    busy[h] += 1;
                    total += 1;
                    started = true;
                    let id = self.spawn(&mut tasks, n, h);
                    running.insert(id, (n, h));
                    next_host = (h + 1) % queues.len();
                }
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
                            busy[h] -= 1;
                            total -= 1;
                            outcomes[n] = Some(outcome);
                        }
                        // A fetch task never panics by design; if one did, its
                        // sensor stays without outcome and is counted failed.
                        // A fetch never panics by design; should one, only its
                        // sensor fails and the cycle goes on.
                        Some(Err(e)) => {
                            tracing::error!("a poll task ended abnormally: {e}");
                            if let Some((n, h)) = running.remove(&e.id()) {
                                busy[h] -= 1;
                                total -= 1;
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
        outcomes
            .into_iter()
            .enumerate()
            .map(|(n, o)| {
                o.unwrap_or(Err(if started_at[n] {
                    Failure::CycleEnd
                } else {
                    Failure::NotStarted
                }))
            })
            .collect()
    }

    fn spawn(
        &self,
        tasks: &mut JoinSet<(usize, usize, Outcome)>,
        n: usize,
        host: usize,
    ) -> tokio::task::Id {
        let (g, s) = self.sensors[n];
        let config = self.config.clone();
        let clients = self.clients.clone();
        tasks
            .spawn(async move {
                let group = &config.groups[g];
                let sensor = &group.sensors[s];
                let client = clients.get(&sensor.tls);
                let outcome = fetch::fetch(client, sensor, group.unit, config.max_body).await;
                (n, host, outcome)
            })
            .id()
    }
}
