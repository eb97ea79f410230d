//! `edge-agent run`: the loop that ties the steps together.
//!
//! ```text
//! tick (schedule) -> poll every sensor (poll) -> rows (aggregate) -> queue -> writer (store)
//! ```
//!
//! Control events (from signals) are watched while waiting for a tick and
//! during a cycle: a shutdown cuts the running cycle short to at most
//! `timeout`, writes its rows and the windows still open, then closes the
//! store (flush + fsync). A reload is applied between cycles, and only if the
//! new file is valid and its clients and store can be set up; otherwise the
//! agent keeps running on the old config and says why.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::aggregate::Aggregator;
use crate::config::{Config, ConfigError};
use crate::health::{self, GroupCount, Health};
use crate::poll::{ClientError, Failure, Outcome, Poller};
use crate::schedule::{Clock, Ticker};
use crate::shutdown::Control;
use crate::store::disk::{Disk, RealDisk};
use crate::store::{Store, StoreError, StoreSender};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Metrics(#[source] std::io::Error),
}

/// What a run did, for the last log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub cycles: u64,
    pub skipped_ticks: u64,
    pub rows_written: u64,
    pub rows_dropped: u64,
    pub reloads: u64,
}

/// Run until a [`Control::Shutdown`] arrives (or `control` closes).
/// `path` is re-read on [`Control::Reload`].
pub async fn run(
    config: Config,
    path: PathBuf,
    control: mpsc::Receiver<Control>,
    clock: Clock,
) -> Result<Summary, RunError> {
    run_with(config, path, control, clock, Arc::new(RealDisk)).await
}

/// [`run`] with the store's active files going through `disk` (tests inject
/// disk faults this way).
#[doc(hidden)]
pub async fn run_with(
    config: Config,
    path: PathBuf,
    mut control: mpsc::Receiver<Control>,
    clock: Clock,
    disk: Arc<dyn Disk>,
) -> Result<Summary, RunError> {
    let mut config = Arc::new(config);
    let mut store = Store::open_with(&config.output, disk.clone()).await?;
    let mut poller = Poller::new(config.clone())?;
    let health = Health::new(
        store.sender().stats().clone(),
        config.interval,
        config.timeout,
    );
    if let Some(addr) = config.metrics {
        let listener = health::bind(addr).await.map_err(RunError::Metrics)?;
        // The address bound, not the one asked for: with port 0 the kernel
        // picks the port, and the log is where an operator finds it.
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!("serving http://{bound}/metrics and /healthz");
        tokio::spawn(health::serve(listener, health.clone()));
    }
    health::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        sensors = poller.len(),
        groups = config.groups.len(),
        "polling every {}, writing to {}",
        humantime::format_duration(config.interval),
        store.first_file().display()
    );
    let mut summary = Summary::default();
    loop {
        let mut engine = Engine::new(
            config.clone(),
            &poller,
            store.sender(),
            clock.clone(),
            health.clone(),
        );
        let stop = engine.cycles(&mut control, &path, &store, &disk).await;
        summary.cycles += engine.cycles;
        summary.skipped_ticks += engine.skipped;
        drop(engine);
        match stop {
            Stop::Shutdown => break,
            Stop::Reload(next) => {
                summary.reloads += 1;
                next.poller.keep_backoff_of(&poller);
                match next.store {
                    Some(new_store) => {
                        let old = std::mem::replace(&mut store, new_store);
                        add_store_stats(&mut summary, old.close().await?);
                    }
                    None => store.reconfigure(&next.config.output).await,
                }
                if next.config.metrics != config.metrics {
                    tracing::warn!("metrics.listen changes take effect at the next start");
                }
                config = next.config;
                poller = next.poller;
                health.reconfigure(
                    store.sender().stats().clone(),
                    config.interval,
                    config.timeout,
                );
                tracing::info!(
                    sensors = poller.len(),
                    groups = config.groups.len(),
                    "new configuration applied"
                );
            }
        }
    }
    add_store_stats(&mut summary, store.close().await?);
    tracing::info!(
        "stopped after {} cycle(s): {} row(s) written, {} dropped, {} tick(s) skipped",
        summary.cycles,
        summary.rows_written,
        summary.rows_dropped,
        summary.skipped_ticks
    );
    Ok(summary)
}

fn add_store_stats(summary: &mut Summary, stats: Arc<crate::store::StoreStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    summary.rows_written += stats.rows_written.load(Relaxed);
    summary.rows_dropped += stats.rows_dropped.load(Relaxed);
}

/// A validated replacement config, ready to run.
struct Next {
    config: Arc<Config>,
    poller: Poller,
    /// A new store when the output goes to other files.
    store: Option<Store>,
}

enum Stop {
    Shutdown,
    Reload(Box<Next>),
}

/// The cycle loop for one config.
struct Engine<'a> {
    config: Arc<Config>,
    poller: &'a Poller,
    store: StoreSender,
    clock: Clock,
    failures: FailureLog,
    /// Shared with the metrics listener and systemd's watchdog.
    health: Arc<Health>,
    cycles: u64,
    skipped: u64,
}

impl<'a> Engine<'a> {
    fn new(
        config: Arc<Config>,
        poller: &'a Poller,
        store: StoreSender,
        clock: Clock,
        health: Arc<Health>,
    ) -> Engine<'a> {
        Engine {
            failures: FailureLog::new(poller.len()),
            health,
            config,
            poller,
            store,
            clock,
            cycles: 0,
            skipped: 0,
        }
    }

    async fn cycles(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        path: &std::path::Path,
        store: &Store,
        disk: &Arc<dyn Disk>,
    ) -> Stop {
        let mut ticker = Ticker::new(
            self.clock.clone(),
            self.config.interval,
            self.config.timeout,
        );
        let mut aggregator = Aggregator::new(&self.config, ticker.upcoming());
        let mut reload_asked = false;
        let watchdog = health::watchdog_period();
        loop {
            if reload_asked {
                reload_asked = false;
                if let Some(next) = prepare_reload(path, store, disk).await {
                    self.store.send(aggregator.flush());
                    return Stop::Reload(Box::new(next));
                }
            }
            let tick = tokio::select! {
                tick = ticker.tick() => tick,
                // Between cycles the loop is alive too: keep systemd's watchdog fed.
                _ = sleep_opt(watchdog) => {
                    health::notify(&[sd_notify::NotifyState::Watchdog]);
                    continue;
                }
                c = control.recv() => match c {
                    Some(Control::Reload) => { reload_asked = true; continue; }
                    Some(Control::Shutdown) | None => {
                        health::notify(&[sd_notify::NotifyState::Stopping]);
                        self.store.send(aggregator.flush());
                        return Stop::Shutdown;
                    }
                },
            };
            self.skipped += tick.skipped;
            let started = Instant::now();
            let (deadline_tx, deadline_rx) = watch::channel(tick.deadline);
            let poll = self.poller.poll(deadline_rx);
            tokio::pin!(poll);
            let mut shutdown = false;
            let outcomes = loop {
                tokio::select! {
                    outcomes = &mut poll => break outcomes,
                    // A cycle may run for up to `interval`: the dispatcher is
                    // alive while this loop turns, so feed the watchdog here too.
                    _ = sleep_opt(watchdog) => {
                        health::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    c = control.recv(), if !shutdown => match c {
                        Some(Control::Reload) => reload_asked = true,
                        Some(Control::Shutdown) | None => {
                            health::notify(&[sd_notify::NotifyState::Stopping]);
                            shutdown = true;
                            let cut = Instant::now() + self.config.timeout;
                            deadline_tx.send_modify(|d| *d = (*d).min(cut));
                        }
                    },
                }
            };
            self.cycles += 1;
            let (ok, failed) = self.failures.observe(self.poller, &self.config, &outcomes);
            self.report(&outcomes, started.elapsed(), tick.skipped);
            tracing::debug!(
                ok,
                failed,
                ms = started.elapsed().as_millis() as u64,
                "cycle at {} done",
                humantime::format_rfc3339_millis(tick.time)
            );
            let poller = self.poller;
            let rows = aggregator.add_cycle(
                tick.time,
                outcomes
                    .iter()
                    .enumerate()
                    .map(|(n, o)| (poller.sensor_at(n).0, o)),
            );
            self.store.send(rows);
            if shutdown {
                self.store.send(aggregator.flush());
                return Stop::Shutdown;
            }
        }
    }
}

impl Engine<'_> {
    /// Per-group counts and timing of a finished cycle, for metrics.
    fn report(&self, outcomes: &[Outcome], took: std::time::Duration, skipped: u64) {
        let mut groups: Vec<GroupCount> = self
            .config
            .groups
            .iter()
            .map(|g| GroupCount {
                group: g.name.clone(),
                ..GroupCount::default()
            })
            .collect();
        let mut cut_short = false;
        for (n, o) in outcomes.iter().enumerate() {
            let g = &mut groups[self.poller.sensor_at(n).0];
            match o {
                Ok(_) => g.ok += 1,
                Err(f) => {
                    g.failed += 1;
                    cut_short |= matches!(f, Failure::NotStarted | Failure::CycleEnd);
                }
            }
        }
        self.health.set_backing_off(self.poller.backing_off());
        self.health.cycle_done(groups, took, cut_short, skipped);
    }
}

async fn sleep_opt(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Load and set up the config at `path`; `None` (after logging why) when
/// anything about it fails, so the caller keeps the running config.
async fn prepare_reload(
    path: &std::path::Path,
    store: &Store,
    disk: &Arc<dyn Disk>,
) -> Option<Next> {
    let config = match Config::load_to_run(path) {
        Ok(c) => {
            c.log_warnings();
            Arc::new(c)
        }
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration:\n{e}");
            return None;
        }
    };
    let poller = match Poller::new(config.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return None;
        }
    };
    let new_store = if !store.same_files(&config.output) {
        match Store::open_with(&config.output, disk.clone()).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e}");
                return None;
            }
        }
    } else {
        None
    };
    Some(Next {
        config,
        poller,
        store: new_store,
    })
}

/// Which sensors are failing, so each change is logged once: when a sensor
/// starts failing (with the reason) and when it recovers, never every cycle.
struct FailureLog {
    failing: Vec<Option<u64>>,
    /// Sensors not polled at all last cycle (the cycle ran out of time).
    starved: usize,
}

impl FailureLog {
    fn new(n: usize) -> FailureLog {
        FailureLog {
            failing: vec![None; n],
            starved: 0,
        }
    }

    /// Log changes; returns (ok, failed) for the cycle.
    fn observe(
        &mut self,
        poller: &Poller,
        config: &Config,
        outcomes: &[Outcome],
    ) -> (usize, usize) {
        let mut ok = 0;
        let mut starved = 0;
        for (n, outcome) in outcomes.iter().enumerate() {
            let (g, s) = poller.sensor_at(n);
            let group = &config.groups[g];
            let sensor = &group.sensors[s];
            match outcome {
                Ok(_) => {
                    ok += 1;
                    if let Some(count) = self.failing[n].take() {
                        tracing::info!(sensor = %sensor.id, group = %group.name, "sensor recovered after {count} failed poll(s)");
                    }
                }
                // Reported once per cycle below, not once per sensor.
                Err(Failure::NotStarted) => starved += 1,
                // Not a poll: the poller logs going into backoff and out.
                Err(Failure::BackingOff) => {}
                Err(reason) => match &mut self.failing[n] {
                    Some(count) => *count += 1,
                    None => {
                        self.failing[n] = Some(1);
                        tracing::warn!(sensor = %sensor.id, group = %group.name, url = %sensor.shown_url, "sensor failing: {reason}");
                    }
                },
            }
        }
        if starved > 0 && self.starved == 0 {
            tracing::warn!(
                "{starved} sensor(s) could not be polled before the cycle ended; \
                 raise limit/limit_per_host or the interval"
            );
        } else if starved == 0 && self.starved > 0 {
            tracing::info!("every sensor is polled within the cycle again");
        }
        self.starved = starved;
        (ok, outcomes.len() - ok)
    }
}
