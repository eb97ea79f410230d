//! `forward:`: the recorded rows sent on to the fleet's time-series
//! engines as they are written, each row stored once, across outages,
//! restarts and power cuts.
//!
//! Why from the files: the CSV files are already a crash-safe, append-only
//! record, so they are the buffer. Each target is a task of its own that
//! reads them (active, rotated, compressed) forward from a durable cursor
//! ([`cursor`]), never from the writer's memory: polling and writing never
//! wait on the network, an outage of days is caught up from disk at a
//! bounded rate, and a restart resumes where the engine last acknowledged.
//!
//! ```text
//! files (in the order written) -> files::Reader (whole rows, checked)
//!   -> line protocol (replay's encoder) -> send (retry, full jitter, 413 halves)
//!   -> acknowledged -> cursor saved (write, fsync, rename, fsync dir)
//!   -> store::holds (what retention must not remove uncounted) + ForwardStats (/metrics)
//! ```
//!
//! Delivery: a batch is sent, and the cursor moves past it only once the
//! engine acknowledged it. A crash between the two sends the batch again;
//! line protocol makes that harmless (InfluxDB, and VictoriaMetrics with
//! `-dedup.minScrapeInterval`, keep one point per series and time), so
//! each row is stored once.

pub mod cursor;
pub mod files;
mod send;
pub mod status;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Forward, Output};
use crate::health::ForwardStats;
use crate::replay::engine::{self, Engine};
use crate::store::holds::{Hold, Holds};

/// The running targets of one config.
pub struct Forwarder {
    stop: watch::Sender<bool>,
    /// Set at shutdown: send what is written now without waiting for
    /// `max_delay`, then end.
    draining: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

/// A target that cannot start.
#[derive(Debug, thiserror::Error)]
#[error("forward `{name}`: {why}")]
pub struct ForwardError {
    pub name: String,
    pub why: String,
}

/// The holds and figures for `targets`, made before the store opens so
/// its retention knows from the first moment what the targets need.
pub fn prepare(targets: &[Forward], holds: &Holds) -> Vec<Arc<ForwardStats>> {
    let mut made = Vec::new();
    let stats = targets
        .iter()
        .map(|t| {
            let hold = Hold::new(&t.name, t.keep_unforwarded);
            made.push(hold.clone());
            ForwardStats::new(&t.name, t.max_lag, hold)
        })
        .collect();
    holds.replace(made);
    stats
}

impl Forwarder {
    /// Start one task per target (`stats` from [`prepare`], in order).
    pub fn start(
        targets: &[Forward],
        output: &Output,
        stats: &[Arc<ForwardStats>],
    ) -> Result<Forwarder, ForwardError> {
        let (stop, stopped) = watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for (config, stats) in targets.iter().zip(stats) {
            let (client, url) = client(config)?;
            let sender = send::Sender::new(client.clone(), url.clone(), config, stats.clone());
            let target = target::Target {
                config: config.clone(),
                dir: output.dir.clone(),
                prefix: output.prefix.clone(),
                stats: stats.clone(),
                draining: draining.clone(),
            };
            let stop = stopped.clone();
            let (name, shown, timeout) = (
                config.name.clone(),
                config.shown_url.clone(),
                config.timeout,
            );
            tasks.spawn(async move {
                warn_if_resends_double(&client, &url, &name, &shown, timeout).await;
                target.run(sender, stop).await;
            });
        }
        Ok(Forwarder {
            stop,
            draining,
            tasks,
        })
    }

    /// Stop every target: a batch in flight is dropped unacknowledged (the
    /// next start sends it again).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// At shutdown, once the store has written its last rows: each target
    /// sends what is in the files now (not waiting for `max_delay`) and
    /// ends, for at most `grace`; then [`Forwarder::stop`]. What is left is
    /// sent at the next start.
    pub async fn drain(mut self, grace: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::info!(
                "forwarding stops with rows unsent after {}: they are sent at the next start",
                humantime::format_duration(grace)
            );
        }
        self.stop().await;
    }
}

/// The HTTP client for `target` and its URL (what `check` sets up too: a
/// CA bundle missing for an https target is said before `run`).
pub fn client(target: &Forward) -> Result<(reqwest::Client, reqwest::Url), ForwardError> {
    let fail = |why: String| ForwardError {
        name: target.name.clone(),
        why,
    };
    let url = reqwest::Url::parse(target.url.expose()).map_err(|e| fail(e.to_string()))?;
    let builder = reqwest::Client::builder()
        .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .connect_timeout(target.timeout.min(Duration::from_secs(10)));
    let client = crate::poll::forward_client(builder, &url, &target.tls)
        .map_err(|e| fail(e.to_string()))?
        .build()
        .map_err(|e| fail(crate::replay::http::innermost(&e.without_url())))?;
    Ok((client, url))
}

/// Say so once when the engine would store a resent batch twice.
async fn warn_if_resends_double(
    client: &reqwest::Client,
    url: &reqwest::Url,
    name: &str,
    shown: &str,
    timeout: std::time::Duration,
) {
    let found = engine::probe(client, url, timeout.min(std::time::Duration::from_secs(5))).await;
    match found {
        Engine::VictoriaMetrics { dedup: false, .. } => tracing::warn!(
            "forward `{name}`: {shown} is VictoriaMetrics without -dedup.minScrapeInterval: a batch \
             sent again after a crash or a lost answer is stored twice there; start it with \
             -dedup.minScrapeInterval=1ms"
        ),
        Engine::Other => tracing::info!(
            "forward `{name}`: {shown} answers as neither InfluxDB nor VictoriaMetrics (or not yet); \
             a batch sent again after a crash must overwrite there for each row to be stored once"
        ),
        _ => tracing::debug!("forward `{name}`: {shown} is {}", found.name()),
    }
}
