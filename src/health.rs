//! How the agent is doing, for people and for systemd.
//!
//! [`Health`] is shared state the run loop updates after every cycle and the
//! store updates on every write. Two readers use it:
//! - the optional listener (`metrics: { listen: 127.0.0.1:9464 }`), off by
//!   default and loopback-only, serving `/metrics` (Prometheus text) and
//!   `/healthz` (200 while the last cycle finished in time and the store
//!   can open, write, fsync and rotate its files; 503 with the reason
//!   otherwise);
//! - systemd's notify protocol: READY=1 once the config is loaded and the
//!   store open, STOPPING=1 on shutdown, WATCHDOG=1 from the poll loop (so a
//!   wedged scheduler gets restarted). Without `NOTIFY_SOCKET` these are no-ops.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::store::StoreStats;
use crate::store::holds::Hold;

/// What the last cycle found for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCount {
    pub group: String,
    pub ok: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
struct LastCycle {
    groups: Vec<GroupCount>,
    duration: Duration,
    /// Some sensors were still pending when the cycle's deadline came.
    cut_short: bool,
    ended: Option<Instant>,
}

/// Shared health state.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// A cycle older than this means the loop is stuck.
    stale_after: Mutex<Duration>,
    last: Mutex<LastCycle>,
    cycles: AtomicU64,
    skipped_ticks: AtomicU64,
    /// Of `skipped_ticks`, those lost while a reload was applied.
    reload_skipped_ticks: AtomicU64,
    /// Sensors polled less often because they keep failing (`backoff`).
    backing_off: AtomicU64,
    store: Mutex<Arc<StoreStats>>,
    forward: Mutex<Vec<Arc<ForwardStats>>>,
}

/// A forward metric: name, kind, help, and how it is read from a target.
type ForwardMetric<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&ForwardStats) -> f64);

/// How long `/healthz` fails after a forward target lost rows to retention.
pub const LOSS_SHOWN: Duration = Duration::from_secs(3600);

/// One forward target's figures, kept by its task (`forward`), shown in
/// `/metrics` and judged by `/healthz`.
#[derive(Debug)]
pub struct ForwardStats {
    pub name: String,
    /// `/healthz` fails while `lag_ms` is past this.
    pub max_lag: Option<Duration>,
    pub rows_forwarded: AtomicU64,
    pub batches: AtomicU64,
    /// Sends of a batch after its first (each may store nothing new).
    pub resends: AtomicU64,
    /// Rows the engine refused (4xx) and that were passed over.
    pub rows_refused: AtomicU64,
    /// Damaged lines in the files, passed over.
    pub bad_lines: AtomicU64,
    /// Failed sends and reads by kind ([`ForwardStats::KINDS`]).
    pub errors: [AtomicU64; 6],
    /// Rows in the files after the cursor.
    pub lag_rows: AtomicU64,
    /// Newest row in the files minus the last row acknowledged, in ms.
    pub lag_ms: AtomicU64,
    /// Unix ms of the last acknowledgement (0: none yet).
    pub last_ack_ms: AtomicU64,
    /// 1 while the target is paused on a refused batch (`on_refused: pause`).
    pub paused: AtomicU64,
    /// Unix ms since which the batch in hand has not been taken (0: none
    /// failing). The files' lag is worked out between batches; while one
    /// is retried it grows with the clock, as the writer goes on writing.
    pub failing_since_ms: AtomicU64,
    /// Retention's count of what this target lost.
    pub hold: Arc<Hold>,
}

impl ForwardStats {
    pub const KINDS: [&'static str; 6] = [
        "connect",
        "timeout",
        "server",
        "refused",
        "too_large",
        "read",
    ];

    pub fn new(name: &str, max_lag: Option<Duration>, hold: Arc<Hold>) -> Arc<ForwardStats> {
        Arc::new(ForwardStats {
            name: name.to_string(),
            max_lag,
            rows_forwarded: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            rows_refused: AtomicU64::new(0),
            bad_lines: AtomicU64::new(0),
            errors: Default::default(),
            lag_rows: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            last_ack_ms: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            failing_since_ms: AtomicU64::new(0),
            hold,
        })
    }

    pub fn error(&self, kind: &str) {
        if let Some(i) = Self::KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// A batch has failed since now (the first failure of it counts).
    pub fn failing(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let _ = self
            .failing_since_ms
            .compare_exchange(0, now, Relaxed, Relaxed);
    }

    /// How far behind the files the target is: the lag worked out from
    /// them at the last batch, plus how long the batch in hand has failed.
    pub fn lag(&self) -> Duration {
        let mut lag = Duration::from_millis(self.lag_ms.load(Relaxed));
        let since = self.failing_since_ms.load(Relaxed);
        if since > 0 {
            let since = std::time::UNIX_EPOCH + Duration::from_millis(since);
            lag += since.elapsed().unwrap_or_default();
        }
        lag
    }

    /// Why this target makes `/healthz` fail, if it does.
    pub fn problem(&self) -> Option<String> {
        let lag = self.lag();
        if let Some(max) = self.max_lag.filter(|max| lag > *max) {
            return Some(format!(
                "forward target `{}` is {} behind the files (max_lag {})",
                self.name,
                humantime::format_duration(Duration::from_secs(lag.as_secs())),
                humantime::format_duration(max)
            ));
        }
        if self.paused.load(Relaxed) == 1 {
            return Some(format!(
                "forward target `{}` is paused: the engine refuses a batch (see the log)",
                self.name
            ));
        }
        let recent = self
            .hold
            .last_loss()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < LOSS_SHOWN);
        if recent {
            return Some(format!(
                "forward target `{}` lost {} row(s) to retention before sending them (see the log)",
                self.name,
                self.hold.lost_rows.load(Relaxed)
            ));
        }
        None
    }
}

impl Health {
    pub fn new(store: Arc<StoreStats>, interval: Duration, timeout: Duration) -> Arc<Health> {
        Arc::new(Health {
            started: Instant::now(),
            stale_after: Mutex::new(interval * 2 + timeout),
            last: Mutex::new(LastCycle::default()),
            cycles: AtomicU64::new(0),
            skipped_ticks: AtomicU64::new(0),
            reload_skipped_ticks: AtomicU64::new(0),
            backing_off: AtomicU64::new(0),
            store: Mutex::new(store),
            forward: Mutex::new(Vec::new()),
        })
    }

    /// After a reload: the new store's counters and the new timing.
    pub fn reconfigure(&self, store: Arc<StoreStats>, interval: Duration, timeout: Duration) {
        *self.store.lock().unwrap_or_else(|e| e.into_inner()) = store;
        *self.stale_after.lock().unwrap_or_else(|e| e.into_inner()) = interval * 2 + timeout;
    }

    /// Record a finished cycle.
    pub fn cycle_done(
        &self,
        groups: Vec<GroupCount>,
        duration: Duration,
        cut_short: bool,
        skipped: u64,
    ) {
        self.cycles.fetch_add(1, Relaxed);
        self.skipped_ticks.fetch_add(skipped, Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = LastCycle {
            groups,
            duration,
            cut_short,
            ended: Some(Instant::now()),
        };
        notify(&[sd_notify::NotifyState::Watchdog]);
    }

    /// Ticks lost while a reload was applied: counted with the skipped
    /// ticks, and apart.
    /// The forward targets' figures (at start and after a reload).
    pub fn set_forward(&self, targets: Vec<Arc<ForwardStats>>) {
        *self.forward.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    fn forward(&self) -> Vec<Arc<ForwardStats>> {
        self.forward
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn reload_skipped(&self, ticks: u64) {
        self.skipped_ticks.fetch_add(ticks, Relaxed);
        self.reload_skipped_ticks.fetch_add(ticks, Relaxed);
    }

    /// Sensors in backoff after the last cycle.
    pub fn set_backing_off(&self, sensors: usize) {
        self.backing_off.store(sensors as u64, Relaxed);
    }

    /// `Ok` when healthy, else why not.
    pub fn check(&self) -> Result<(), String> {
        let stale_after = *self.stale_after.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let since = last.ended.unwrap_or(self.started).elapsed();
        if since > stale_after {
            return Err(format!(
                "no cycle has finished for {}",
                humantime::format_duration(Duration::from_secs(since.as_secs()))
            ));
        }
        if last.cut_short {
            return Err("the last cycle ran out of time before every sensor answered".into());
        }
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(why) = store.problem() {
            return Err(format!("the store is failing: {why}"));
        }
        if !store.writable.load(Relaxed) {
            return Err("the store cannot write (see the log)".into());
        }
        if let Some(why) = self.forward().iter().find_map(|f| f.problem()) {
            return Err(why);
        }
        Ok(())
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Before taking the locks below: check() takes them too.
        let healthy = self.check().is_ok();
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(
                out,
                "# HELP edge_agent_{name} {help}\n# TYPE edge_agent_{name} {kind}"
            );
            for (labels, v) in samples {
                let _ = writeln!(out, "edge_agent_{name}{labels} {v}");
            }
        };
        let per_group = |f: fn(&GroupCount) -> u64| -> Vec<(String, f64)> {
            last.groups
                .iter()
                .map(|g| (format!("{{group=\"{}\"}}", g.group), f(g) as f64))
                .collect()
        };
        let one = |v: f64| vec![(String::new(), v)];
        metric(
            "sensors_ok",
            "gauge",
            "Sensors that answered in the last cycle.",
            &per_group(|g| g.ok),
        );
        metric(
            "sensors_failed",
            "gauge",
            "Sensors that failed in the last cycle.",
            &per_group(|g| g.failed),
        );
        metric(
            "sensors_backing_off",
            "gauge",
            "Sensors polled less often because they failed polls in a row (counted failed meanwhile).",
            &one(self.backing_off.load(Relaxed) as f64),
        );
        metric(
            "cycle_duration_seconds",
            "gauge",
            "Duration of the last cycle.",
            &one(last.duration.as_secs_f64()),
        );
        metric(
            "cycles_total",
            "counter",
            "Cycles run.",
            &one(self.cycles.load(Relaxed) as f64),
        );
        metric(
            "skipped_ticks_total",
            "counter",
            "Ticks skipped, with no cycle and no row: too late to run, or lost while a reload was applied.",
            &one(self.skipped_ticks.load(Relaxed) as f64),
        );
        metric(
            "reload_skipped_ticks_total",
            "counter",
            "Of skipped_ticks_total, the ticks lost while a reload was applied.",
            &one(self.reload_skipped_ticks.load(Relaxed) as f64),
        );
        let counters = [
            (
                "rows_written_total",
                "Rows appended to CSV files.",
                &store.rows_written,
            ),
            (
                "bytes_written_total",
                "Bytes appended to CSV files.",
                &store.bytes_written,
            ),
            ("rotations_total", "File rotations.", &store.rotations),
            (
                "write_errors_total",
                "Failed opens, writes, fsyncs and rotations (by op: store_errors_total).",
                &store.write_errors,
            ),
            (
                "rows_dropped_total",
                "Rows dropped (queue full or disk never recovered).",
                &store.rows_dropped,
            ),
            (
                "rows_repeated_total",
                "Rows not written: their time and group are already in the files (clock set back).",
                &store.rows_repeated,
            ),
        ];
        for (name, help, value) in counters {
            metric(name, "counter", help, &one(value.load(Relaxed) as f64));
        }
        let by_op: Vec<(String, f64)> = StoreStats::OPS
            .iter()
            .zip(&store.errors)
            .map(|(op, n)| (format!("{{op=\"{op}\"}}"), n.load(Relaxed) as f64))
            .collect();
        metric(
            "store_errors_total",
            "counter",
            "Failures of the store by what failed: open (a new active file), write, fsync, rotate.",
            &by_op,
        );
        let targets = self.forward();
        let per_target = |f: &dyn Fn(&ForwardStats) -> f64| -> Vec<(String, f64)> {
            targets
                .iter()
                .map(|t| (format!("{{target=\"{}\"}}", t.name), f(t)))
                .collect()
        };
        let forward: [ForwardMetric; 11] = [
            (
                "forward_rows_total",
                "counter",
                "Rows the target's engine acknowledged.",
                &|t| t.rows_forwarded.load(Relaxed) as f64,
            ),
            (
                "forward_batches_total",
                "counter",
                "Batches the target's engine acknowledged.",
                &|t| t.batches.load(Relaxed) as f64,
            ),
            (
                "forward_resends_total",
                "counter",
                "Sends of a batch after its first.",
                &|t| t.resends.load(Relaxed) as f64,
            ),
            (
                "forward_rows_refused_total",
                "counter",
                "Rows the engine refused (4xx) and that were passed over.",
                &|t| t.rows_refused.load(Relaxed) as f64,
            ),
            (
                "forward_bad_lines_total",
                "counter",
                "Damaged lines in the files, passed over.",
                &|t| t.bad_lines.load(Relaxed) as f64,
            ),
            (
                "forward_lag_rows",
                "gauge",
                "Rows in the files after the target's cursor.",
                &|t| t.lag_rows.load(Relaxed) as f64,
            ),
            (
                "forward_lag_seconds",
                "gauge",
                "The newest row in the files minus the last row acknowledged.",
                &|t| t.lag_ms.load(Relaxed) as f64 / 1000.0,
            ),
            (
                "forward_last_ack_timestamp_seconds",
                "gauge",
                "When the engine last acknowledged a batch (0: never).",
                &|t| t.last_ack_ms.load(Relaxed) as f64 / 1000.0,
            ),
            (
                "forward_paused",
                "gauge",
                "1 while the target waits on a batch the engine refuses.",
                &|t| t.paused.load(Relaxed) as f64,
            ),
            (
                "forward_rows_lost_total",
                "counter",
                "Rows retention removed before the target sent them.",
                &|t| t.hold.lost_rows.load(Relaxed) as f64,
            ),
            (
                "forward_files_lost_total",
                "counter",
                "Files retention removed before the target was through them.",
                &|t| t.hold.lost_files.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, get) in forward {
            metric(name, kind, help, &per_target(get));
        }
        let by_kind: Vec<(String, f64)> = targets
            .iter()
            .flat_map(|t| {
                ForwardStats::KINDS.iter().zip(&t.errors).map(|(kind, n)| {
                    (
                        format!("{{target=\"{}\",kind=\"{kind}\"}}", t.name),
                        n.load(Relaxed) as f64,
                    )
                })
            })
            .collect();
        metric(
            "forward_errors_total",
            "counter",
            "Failed sends by kind (connect, timeout, server: 5xx/408/429, refused: other 4xx, too_large: 413) and failed reads of the files (read).",
            &by_kind,
        );
        metric(
            "healthy",
            "gauge",
            "1 while /healthz answers 200.",
            &one(f64::from(u8::from(healthy))),
        );
        out
    }
}

/// Tell systemd something; nothing happens outside systemd.
pub fn notify(states: &[sd_notify::NotifyState]) {
    let _ = sd_notify::notify(false, states);
}

/// Half the watchdog period systemd asked for, if it asked.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec) / 2)
    } else {
        None
    }
}

/// Serve `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, health.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Bind the listener; only loopback addresses are accepted by the config.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for metrics: {e}"),
        )
    })
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    health: Arc<Health>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", health.render()),
        "/healthz" => match health.check() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    Ok(r)
}
