//! `edge-agent run`: the loop that ties the steps together.
//!
//! ```text
//! tick (schedule) -> poll every sensor (poll) -> rows (aggregate) -> queue -> writer (store)
//! ```
//!
//! Control events (from signals) are watched while waiting for a tick and
//! during a cycle: a shutdown cuts the running cycle short to at most
//! `timeout`, writes its rows and the windows still open, then closes the
//! store (flush + fsync).
//!
//! A reload leaves alone what it does not change. The new file is read,
//! checked and its clients and store set up off the loop ([`Reloads`]) while
//! cycles go on, so a slow read or a burst of SIGHUPs costs no tick; SIGHUPs
//! that come while one is being prepared make one more reload after it (the
//! file may have changed after it was read). A valid config is then applied
//! between cycles: the tick grid stays (unless `interval` changed), groups
//! that did not change keep their open windows ([`Aggregator::reconfigure`]),
//! sensors with the same id and URL keep their place in the failure log.
//! Ticks that still pass while a reload is applied are counted, logged, and
//! in `/metrics`. An invalid file, or clients or a store that cannot be set
//! up, leave the agent running on the old config, saying why.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::aggregate::Aggregator;
use crate::config::{Config, ConfigError};
use crate::forward::{ForwardError, Forwarder};
use crate::health::{self, GroupCount, Health};
use crate::poll::{ClientError, Failure, Outcome, Poller};
use crate::reload::{Next, Reloads};
use crate::schedule::{Clock, Tick, Ticker};
use crate::shutdown::Control;
use crate::store::disk::{Disk, RealDisk};
use crate::store::holds::Holds;
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
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// How long forward targets may go on sending after the store closed at
/// shutdown (systemd waits 90 s by default before it kills).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a run did, for the last log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub cycles: u64,
    /// Ticks with no cycle (and so no row): too late, or lost to reloads.
    pub skipped_ticks: u64,
    /// Of `skipped_ticks`, those lost while a reload was applied.
    pub reload_skipped_ticks: u64,
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
    let config = Arc::new(config);
    // The targets' holds exist before the store opens: its first retention
    // already waits for them.
    let holds = Holds::new();
    let forward_stats = crate::forward::prepare(&config.forward, &holds);
    let store = Store::open_held(&config.output, disk.clone(), holds.clone()).await?;
    let poller = Poller::new(config.clone())?;
    let health = Health::new(
        store.sender().stats().clone(),
        config.interval,
        config.timeout,
    );
    health.set_forward(forward_stats.clone());
    let forwarder = if config.forward.is_empty() {
        None
    } else {
        Some(Forwarder::start(
            &config.forward,
            &config.output,
            &forward_stats,
        )?)
    };
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
    let reloads = Reloads::new(path, disk);
    let mut engine = Engine::new(config, poller, store, clock, health, reloads);
    engine.forwarder = forwarder;
    engine.holds = holds;
    // What the config's reading freed stays resident otherwise.
    crate::memory::release_free_memory();
    engine.cycles(&mut control).await?;
    let Engine {
        store,
        sender,
        mut summary,
        forwarder,
        ..
    } = engine;
    // The writer ends once every sender is gone.
    drop(sender);
    let closed = store.close().await;
    // Then the targets send what the last rows added, for a few seconds at
    // most; what is left goes at the next start.
    if let Some(f) = forwarder {
        f.drain(SHUTDOWN_GRACE).await;
    }
    add_store_stats(&mut summary, closed?);
    tracing::info!(
        "stopped after {} cycle(s): {} row(s) written, {} dropped, {} tick(s) skipped, \
         {} of them lost to {} reload(s)",
        summary.cycles,
        summary.rows_written,
        summary.rows_dropped,
        summary.skipped_ticks,
        summary.reload_skipped_ticks,
        summary.reloads
    );
    Ok(summary)
}

fn add_store_stats(summary: &mut Summary, stats: Arc<crate::store::StoreStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    summary.rows_written += stats.rows_written.load(Relaxed);
    summary.rows_dropped += stats.rows_dropped.load(Relaxed);
}

/// The agent's state while it runs; a reload replaces what it changes.
struct Engine {
    config: Arc<Config>,
    poller: Poller,
    store: Store,
    sender: StoreSender,
    ticker: Ticker,
    aggregator: Aggregator,
    failures: FailureLog,
    /// Shared with the metrics listener and systemd's watchdog.
    health: Arc<Health>,
    reloads: Reloads,
    summary: Summary,
    /// The forward targets running, if any.
    forwarder: Option<Forwarder>,
    /// What the targets need of the files, asked by the store's retention.
    holds: Arc<Holds>,
}

impl Engine {
    fn new(
        config: Arc<Config>,
        poller: Poller,
        store: Store,
        clock: Clock,
        health: Arc<Health>,
        reloads: Reloads,
    ) -> Engine {
        let ticker = Ticker::new(clock, config.interval, config.timeout);
        let aggregator = Aggregator::new(&config, ticker.upcoming());
        Engine {
            failures: FailureLog::new(poller.len()),
            sender: store.sender(),
            ticker,
            aggregator,
            health,
            config,
            poller,
            store,
            reloads,
            summary: Summary::default(),
            forwarder: None,
            holds: Holds::new(),
        }
    }

    /// Cycles until a shutdown; its rows and the windows still open are
    /// sent to the store.
    async fn cycles(&mut self, control: &mut mpsc::Receiver<Control>) -> Result<(), RunError> {
        let watchdog = health::watchdog_period();
        loop {
            // Signals first, then a prepared reload (applying it is quick),
            // then the tick.
            let tick = tokio::select! {
                biased;
                c = control.recv() => match c {
                    Some(Control::Reload) => {
                        self.reloads.ask(self.store.output(), &self.config.forward);
                        continue;
                    }
                    Some(Control::Shutdown) | None => {
                        health::notify(&[sd_notify::NotifyState::Stopping]);
                        self.sender.send(self.aggregator.flush());
                        return Ok(());
                    }
                },
                next = self.reloads.ready() => {
                    if let Some(next) = next {
                        self.apply(next).await?;
                    }
                    self.reloads.follow_up(self.store.output(), &self.config.forward);
                    continue;
                }
                tick = self.ticker.tick() => tick,
                // Between cycles the loop is alive too: keep systemd's watchdog fed.
                _ = sleep_opt(watchdog) => {
                    health::notify(&[sd_notify::NotifyState::Watchdog]);
                    continue;
                }
            };
            if self.cycle(tick, control, watchdog).await {
                self.sender.send(self.aggregator.flush());
                return Ok(());
            }
        }
    }

    /// One cycle: poll, log, report, rows. True when a shutdown came
    /// during it (then it was cut short to at most `timeout`).
    async fn cycle(
        &mut self,
        tick: Tick,
        control: &mut mpsc::Receiver<Control>,
        watchdog: Option<std::time::Duration>,
    ) -> bool {
        self.summary.skipped_ticks += tick.skipped;
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
                    Some(Control::Reload) => self.reloads.ask(self.store.output(), &self.config.forward),
                    Some(Control::Shutdown) | None => {
                        health::notify(&[sd_notify::NotifyState::Stopping]);
                        shutdown = true;
                        let cut = Instant::now() + self.config.timeout;
                        deadline_tx.send_modify(|d| *d = (*d).min(cut));
                    }
                },
            }
        };
        self.summary.cycles += 1;
        let (ok, failed) = self.failures.observe(&self.poller, &self.config, &outcomes);
        self.report(&outcomes, started.elapsed(), tick.skipped);
        tracing::debug!(
            ok,
            failed,
            ms = started.elapsed().as_millis() as u64,
            "cycle at {} done",
            humantime::format_rfc3339_millis(tick.time)
        );
        let poller = &self.poller;
        let rows = self.aggregator.add_cycle(
            tick.time,
            outcomes
                .iter()
                .enumerate()
                .map(|(n, o)| (poller.sensor_at(n).0, o)),
        );
        self.sender.send(rows);
        shutdown
    }

    /// Apply a prepared reload, between cycles.
    async fn apply(&mut self, next: Next) -> Result<(), RunError> {
        let started = Instant::now();
        let Next {
            config,
            poller,
            store,
            forward,
        } = next;
        // Targets that change (or whose files do) stop before the store
        // changes under them; they start again below, from their cursors.
        let forward_old = match &forward {
            Some(_) => self.forwarder.take(),
            None => None,
        };
        if let Some(f) = forward_old {
            f.stop().await;
        }
        let moved = store.is_some();
        let mut lost = self.ticker.reconfigure(config.interval, config.timeout);
        // Rows of cut windows belong to the old output.
        let cut = self
            .aggregator
            .reconfigure(&self.config, &config, self.ticker.upcoming());
        self.sender.send(cut);
        match store {
            Some(new_store) => {
                // The old writer ends once every sender is gone.
                self.sender = new_store.sender();
                let old = std::mem::replace(&mut self.store, new_store);
                add_store_stats(&mut self.summary, old.close().await?);
            }
            None => self.store.reconfigure(&config.output).await,
        }
        if let Some((holds, stats)) = forward {
            if moved {
                self.holds = holds;
            } else {
                self.holds.replace(holds.targets());
            }
            self.health.set_forward(stats.clone());
            if !config.forward.is_empty() {
                match Forwarder::start(&config.forward, &config.output, &stats) {
                    Ok(f) => self.forwarder = Some(f),
                    Err(e) => {
                        // No target runs: none may hold retention back.
                        self.holds.replace(Vec::new());
                        self.health.set_forward(Vec::new());
                        tracing::error!(
                            "{e}; forwarding is off until a reload or restart with a config that works"
                        )
                    }
                }
            }
        }
        if config.metrics != self.config.metrics {
            tracing::warn!("metrics.listen changes take effect at the next start");
        }
        self.failures = std::mem::replace(&mut self.failures, FailureLog::new(0))
            .carry((&self.poller, &self.config), (&poller, &config));
        poller.keep_backoff_of(&self.poller);
        self.config = config;
        self.poller = poller;
        crate::memory::release_free_memory();
        self.health.reconfigure(
            self.store.sender().stats().clone(),
            self.config.interval,
            self.config.timeout,
        );
        self.summary.reloads += 1;
        tracing::info!(
            sensors = self.poller.len(),
            groups = self.config.groups.len(),
            "new configuration applied"
        );
        lost += self.ticker.overdue();
        if lost > 0 {
            tracing::warn!(
                "{lost} tick(s) skipped while the new configuration was applied ({} ms)",
                started.elapsed().as_millis()
            );
            self.summary.skipped_ticks += lost;
            self.summary.reload_skipped_ticks += lost;
            self.health.reload_skipped(lost);
        }
        Ok(())
    }
}

impl Engine {
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

/// Which sensors are failing, so each change is logged once: when a sensor
/// starts failing (with the reason) and when it recovers, never every cycle.
struct FailureLog {
    /// Per sensor, failed polls in a row; 0: not failing. (4 bytes a
    /// sensor: 4 billion polls are 400 years at 3 s.)
    failing: Vec<u32>,
    /// Sensors not polled at all last cycle (the cycle ran out of time).
    starved: usize,
}

impl FailureLog {
    fn new(n: usize) -> FailureLog {
        FailureLog {
            failing: vec![0; n],
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
                    let count = std::mem::take(&mut self.failing[n]);
                    if count > 0 {
                        tracing::info!(sensor = %sensor.id(), group = %group.name, "sensor recovered after {count} failed poll(s)");
                    }
                }
                // Reported once per cycle below, not once per sensor.
                Err(Failure::NotStarted) => starved += 1,
                // Not a poll: the poller logs going into backoff and out.
                Err(Failure::BackingOff) => {}
                Err(reason) => {
                    let count = &mut self.failing[n];
                    *count = count.saturating_add(1);
                    if *count == 1 {
                        tracing::warn!(sensor = %sensor.id(), group = %group.name, url = %sensor.shown_url(), "sensor failing: {reason}");
                    }
                }
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

    /// The log for the sensors of `new` after a reload from `old` (each a
    /// poller and its config): a sensor with the same id and URL keeps its
    /// state, so one still failing is not logged again and one that
    /// recovers says after how many polls; other sensors start afresh.
    fn carry(self, old: (&Poller, &Config), new: (&Poller, &Config)) -> FailureLog {
        fn sensor<'a>((poller, config): (&Poller, &'a Config), n: usize) -> (&'a str, &'a str) {
            let (g, s) = poller.sensor_at(n);
            let sensor = &config.groups[g].sensors[s];
            (sensor.id(), sensor.url.as_str())
        }
        let before: std::collections::HashMap<_, u32> = self
            .failing
            .iter()
            .enumerate()
            .filter(|(_, f)| **f > 0)
            .map(|(n, f)| (sensor(old, n), *f))
            .collect();
        FailureLog {
            failing: (0..new.0.len())
                .map(|n| before.get(&sensor(new, n)).copied().unwrap_or(0))
                .collect(),
            starved: self.starved,
        }
    }
}
