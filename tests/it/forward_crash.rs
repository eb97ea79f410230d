//! `forward` under crashes, rotation and retention, with the real binary
//! and a real VictoriaMetrics (started with `-dedup.minScrapeInterval=1ms`,
//! so that a batch sent twice is stored once, as the delivery model says).
//!
//! - SIGKILL at random moments while a backlog of recorded files (gzipped,
//!   rotated and active) is forwarded through a proxy that counts what it
//!   passes on: every row arrives, none is stored twice, at most one batch
//!   per kill is sent again, and the cursor is never torn.
//! - The writer rotating (1 KiB files) and gzipping while rows are
//!   forwarded: every row of every file arrives once.
//! - Retention overtaking a cursor held back by an engine that is down:
//!   the rows removed are counted (log, `/metrics`, `/healthz`); with
//!   `keep_unforwarded` nothing the target needs is removed and everything
//!   arrives once the engine is back.
//!
//! The seed of the kill moments is printed; `FORWARD_CRASH_SEED=N` replays
//! a run and `FORWARD_CRASH_KILLS=N` changes the number of kills (100).

use crate::crash::Rng;
use crate::engines::{self, Points};
use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use edge_agent::forward::cursor::{self, Cursor};
use support::{Agent, Reply, TestServer, client};

/// How long the agent may take to start, catch up or stop.
const LIMIT: Duration = Duration::from_secs(60);
/// Rows per batch: small, so that a backlog is many batches.
const BATCH: usize = 50;

fn cursor_path(data: &Path) -> PathBuf {
    cursor::path(data, "readings", "vm")
}

/// Whether the cursor stands at the end of the active file: everything
/// written has been acknowledged.
fn at_active_end(data: &Path) -> bool {
    let Ok(Some(c)) = Cursor::load(&cursor_path(data)) else {
        return false;
    };
    c.file == "readings.csv"
        && std::fs::metadata(data.join("readings.csv")).is_ok_and(|m| m.len() == c.offset)
}

/// VictoriaMetrics keeping one point per series and time; `None` (after
/// saying why) where it is not installed.
async fn victoria(dir: &Path) -> Option<engines::Engine> {
    let binary = engines::require("victoria-metrics", "victoria-metrics")?;
    Some(
        engines::victoria_with(
            dir,
            &binary,
            &["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"],
        )
        .await,
    )
}

/// What the counting proxy passed on.
#[derive(Default)]
struct Passed {
    /// Requests whose body arrived whole.
    requests: AtomicUsize,
    /// Line-protocol lines forwarded and acknowledged, by series and time
    /// (the line without its fields): how many times each.
    lines: Mutex<HashMap<String, u32>>,
}

impl Passed {
    fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }
    /// Rows sent (and stored) more than once: the resends.
    fn repeated(&self) -> u64 {
        let lines = self.lines.lock().unwrap();
        lines.values().map(|n| u64::from(n - 1)).sum()
    }
}

/// A proxy on 127.0.0.1 in front of `upstream`: counts the writes and
/// remembers each line it passed on. While `up` is false it answers 503
/// (an engine that is down) and passes nothing on.
async fn proxy(upstream: String, up: Arc<AtomicBool>) -> (String, Arc<Passed>) {
    use http_body_util::BodyExt;
    let passed = Arc::new(Passed::default());
    let (seen, client) = (passed.clone(), client());
    let addr = support::serve_status(move |req: hyper::Request<hyper::body::Incoming>| {
        let (client, upstream, seen, up) =
            (client.clone(), upstream.clone(), seen.clone(), up.clone());
        async move {
            // The agent's probe of which engine this is (GET /ping,
            // /metrics) is not passed on: it is told neither.
            if req.method() != hyper::Method::POST {
                return 404;
            }
            let target = format!("{upstream}{}", req.uri());
            // A body cut short: the agent was killed while sending it.
            let Ok(body) = req.into_body().collect().await else {
                return 400;
            };
            let body = body.to_bytes();
            seen.requests.fetch_add(1, SeqCst);
            if !up.load(SeqCst) {
                return 503;
            }
            // On a task of its own: when the agent is killed while it waits
            // for the answer, hyper drops this future, but the batch still
            // reaches the engine, as it would over a real network.
            tokio::spawn(async move {
                let status = client
                    .post(target)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                if (200..300).contains(&status) {
                    let text = String::from_utf8_lossy(&body);
                    let mut lines = seen.lines.lock().unwrap();
                    for line in text.lines().filter(|l| !l.is_empty()) {
                        let f: Vec<&str> = line.split(' ').collect();
                        assert_eq!(f.len(), 3, "{line}");
                        *lines.entry(format!("{} {}", f[0], f[2])).or_default() += 1;
                    }
                }
                status
            })
            .await
            .unwrap()
        }
    })
    .await;
    (format!("http://{addr}"), passed)
}

/// A backlog as the store writes it: `steps` rows of each of 3 groups,
/// one a second, hours ago, in 64 KiB files: the first half rotated and
/// gzipped, the second half rotated plain, the last rows in the active
/// file. Returns the rows written.
async fn backlog(data: &Path, steps: u32) -> usize {
    use edge_agent::config::{Compress, Fsync, Output, Unit};
    let t0 = SystemTime::now() - Duration::from_secs(6 * 3600);
    let t0 = edge_agent::schedule::align_down(t0, Duration::from_secs(1));
    let half = steps / 2;
    for (range, compress) in [(0..half, Compress::Gzip), (half..steps, Compress::None)] {
        let out = Output {
            dir: data.to_path_buf(),
            prefix: "readings".into(),
            max_size: Some(64 * 1024),
            every: None,
            keep: 100_000,
            compress,
            fsync: Fsync::Rotate,
            decimals: 3,
            queue: 4096,
        };
        let store = edge_agent::store::Store::open(&out).await.unwrap();
        let tx = store.sender();
        let steps: Vec<u32> = range.collect();
        for chunk in steps.chunks(100) {
            let mut rows = Vec::new();
            for &i in chunk {
                for g in 0..3u32 {
                    let v = f64::from(10 * g) + f64::from(i % 97) * 0.125;
                    let gap = (i + g) % 29 == 0;
                    rows.push(edge_agent::history::Row {
                        time: t0 + Duration::from_secs(u64::from(i)),
                        group: format!("g{g}"),
                        mean: (!gap).then_some(v),
                        min: (!gap).then_some(v - 1.0),
                        max: (!gap).then_some(v + 1.5),
                        unit: Unit::Celsius,
                        ok: if gap { 0 } else { 3 },
                        failed: if gap { 3 } else { 0 },
                    });
                }
            }
            tx.send(rows);
        }
        drop(tx);
        store.close().await.unwrap();
    }
    let names = support::file_names(data);
    assert!(names.iter().any(|n| n.ends_with(".csv.gz")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(".csv") && n != "readings.csv"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "readings.csv"), "{names:?}");
    rows_on_disk(data)
}

/// Rows of every data file in `data`.
fn rows_on_disk(data: &Path) -> usize {
    names(data)
        .iter()
        .filter(|n| n.starts_with("readings") && (n.ends_with(".csv") || n.ends_with(".csv.gz")))
        .map(|n| support::read_text(&data.join(n)).lines().skip(1).count())
        .sum()
}

/// An agent.yaml: `groups` groups polled every `interval` at `sensor`
/// (a URL), `output` settings as YAML lines, one target `vm` at `url`.
fn config(data: &Path, interval: &str, sensor: &str, output: &str, forward: &str) -> String {
    let mut s = format!(
        "interval: {interval}\ntimeout: 40ms\nmetrics: {{ listen: 127.0.0.1:0 }}\n\
         output:\n  dir: {}\n{output}groups:\n",
        data.display()
    );
    for g in 0..3 {
        s += &format!(
            "  - name: live{g}\n    unit: celsius\n    sensors:\n      \
             - {{ id: s{g}, url: '{sensor}', format: text }}\n"
        );
    }
    s += &format!(
        "forward:\n  - name: vm\n    batch: {{ rows: {BATCH}, max_delay: 100ms }}\n    \
         max_rate: 1000000\n    measurement: temperature\n    retry: {{ first: 20ms, max: 200ms }}\n{forward}"
    );
    s
}

/// Start the agent and let it forward until the cursor is at the end of
/// the active file, then stop it (SIGTERM); returns its log.
async fn run_to_the_end(args: &[&str], dir: &Path, data: &Path) -> String {
    let mut agent = Agent::start(args, dir);
    // Started (SIGTERM is handled once it polls) and the target located.
    agent
        .wait_log(LIMIT, |l| {
            l.contains("polling every")
                && (l.contains("forward `vm`: resuming at")
                    || l.contains("forward `vm`: no cursor"))
        })
        .await;
    let caught_up = support::eventually(LIMIT, || at_active_end(data)).await;
    assert!(
        caught_up,
        "not caught up in {LIMIT:?}:\n{}",
        agent.log_text()
    );
    agent.signal(libc::SIGTERM);
    let status = agent.wait(LIMIT);
    assert!(status.success(), "{}", agent.log_text());
    assert!(
        at_active_end(data),
        "a row was written after the catch-up:\n{}",
        agent.log_text()
    );
    agent.log_text()
}

/// VictoriaMetrics' points once it shows as many as `want` has (rows
/// just written become visible in its export within a second or two,
/// even after a flush), or after 15 s.
async fn points_once_in(url: &str, want: &Points) -> Points {
    let start = Instant::now();
    loop {
        let got = engines::victoria_points(url).await;
        if got.len() >= want.len() || start.elapsed() > Duration::from_secs(15) {
            return got;
        }
        // The interval between exports (each an HTTP request) of a wait
        // bounded above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Distinct (group, time) rows among `points`.
fn rows_of(points: &Points) -> BTreeSet<(String, u64)> {
    points.keys().map(|(g, _, t)| (g.clone(), *t)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_forwarding_a_backlog_stores_each_row_once() {
    let seed: u64 = std::env::var("FORWARD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let kills: usize = std::env::var("FORWARD_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    println!("forward crash seed: {seed} (FORWARD_CRASH_SEED={seed} replays it), {kills} kills");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let Some(vm) = victoria(dir.path()).await else {
        return;
    };
    let data = dir.path().join("data");
    // Enough batches that the kills (at most 3 batches apart) never run
    // out of backlog: 7000 x 3 rows, 420 batches.
    let written = backlog(&data, 7000).await;
    let (url, passed) = proxy(vm.url.clone(), Arc::new(AtomicBool::new(true))).await;
    // Sensors at a closed port: polling costs nothing, and at 1h the agent
    // hardly writes (its rows are forwarded and checked like the rest).
    let dead = support::closed_port();
    let config_path = dir.path().join("agent.yaml");
    let text = config(
        &data,
        "1h",
        &format!("http://{}/v", dead.addr),
        "  keep: 100000\n",
        &format!("    url: {url}/write\n"),
    );
    std::fs::write(&config_path, text).unwrap();
    let args = ["run", "--config", config_path.to_str().unwrap()];

    let started = Instant::now();
    let mut resumed = 0;
    for kill in 0..kills {
        let before = passed.requests();
        let mut agent = Agent::start(&args, dir.path());
        // The moment of the kill: after 0 to 3 more requests reached the
        // proxy, then 0 to 4 ms more (from start-up to mid-batch).
        let more = rng.below(4) as usize;
        let reached = support::eventually(LIMIT, || {
            passed.requests() >= before + more || at_active_end(&data)
        })
        .await;
        assert!(
            reached,
            "kill {kill}: no request in {LIMIT:?}:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(rng.below(5))).await;
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "kill {kill} (seed {seed}): the agent exited by itself with {status}:\n{}",
                agent.log_text()
            );
        }
        agent.signal(libc::SIGKILL);
        agent.child.wait().unwrap();
        let log = agent.log_text();
        assert!(
            !log.contains("panicked"),
            "kill {kill} (seed {seed}): {log}"
        );
        resumed += usize::from(log.contains("forward `vm`: resuming at byte"));
        // Never torn: the old cursor or the new one.
        if let Err(e) = Cursor::load(&cursor_path(&data)) {
            panic!("kill {kill} (seed {seed}): {e}");
        }
    }
    let killing = started.elapsed();
    assert!(
        !at_active_end(&data),
        "the backlog ran out before the last kill: make it longer"
    );
    run_to_the_end(&args, dir.path(), &data).await;

    let want = engines::expected(&data);
    let got = points_once_in(&vm.url, &want).await;
    // Each row of the CSV is there once (victoria_points fails on a
    // duplicate point), with its values; nothing else is.
    engines::assert_same_points(&got, &want);
    let rows = rows_of(&want).len();
    assert!(
        rows >= written,
        "{rows} rows in VM, {written} in the backlog"
    );
    assert_eq!(rows, rows_on_disk(&data));
    let repeated = passed.repeated();
    let distinct = passed.lines.lock().unwrap().len();
    assert_eq!(distinct, rows, "the proxy passed on each row");
    println!(
        "{kills} kills in {killing:.1?} ({resumed} resumed from a cursor); {rows} rows; \
         {} requests; {repeated} row(s) sent more than once",
        passed.requests()
    );
    assert!(
        repeated <= (kills * BATCH) as u64,
        "seed {seed}: {repeated} rows sent again: more than a batch per kill"
    );
    assert!(
        resumed > kills / 3,
        "few runs resumed from a cursor: {resumed}"
    );
}

/// The data files of `data`; none before the agent made it.
fn names(data: &Path) -> Vec<String> {
    if data.exists() {
        support::file_names(data)
    } else {
        Vec::new()
    }
}

/// Rotated files of `data` that are gzipped.
fn gzipped(data: &Path) -> usize {
    let names = names(data);
    names.iter().filter(|n| n.ends_with(".csv.gz")).count()
}

/// Rotated files of `data`, plain or gzipped (once each).
fn rotated(data: &Path) -> usize {
    let names = names(data);
    let stems: BTreeSet<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".gz").or(Some(n)))
        .filter_map(|n| n.strip_suffix(".csv"))
        .filter(|s| *s != "readings")
        .collect();
    stems.len()
}

/// Rows the cursor has been through, 0 without one.
fn acknowledged(data: &Path) -> u64 {
    Cursor::load(&cursor_path(data))
        .ok()
        .flatten()
        .map_or(0, |c| c.rows)
}

/// The value of `name{target="vm"}` in a `/metrics` text.
fn target_metric(text: &str, name: &str) -> f64 {
    support::metric_in(text, &format!("edge_agent_{name}{{target=\"vm\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_gzip_while_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let Some(vm) = victoria(dir.path()).await else {
        return;
    };
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("21.5"));
    let data = dir.path().join("data");
    let config_path = dir.path().join("agent.yaml");
    let down = support::closed_port();
    let write_config = |interval: &str, url: &str| {
        let text = config(
            &data,
            interval,
            &server.url(0, "/v"),
            "  rotate:\n    max_size: 1024\n  compress: gzip\n  keep: 100000\n",
            &format!("    url: {url}/write\n"),
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write_config("50ms", &vm.url);
    let args = ["run", "--config", config_path.to_str().unwrap()];
    let mut agent = Agent::start(&args, dir.path());
    // Forwarding while the writer rotates (about every 16 rows) and
    // gzips: until 8 files were gzipped and 200 rows acknowledged.
    let moved = support::eventually(LIMIT, || gzipped(&data) >= 8 && acknowledged(&data) >= 200);
    assert!(moved.await, "{}", agent.log_text());
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let log = agent.log_text();
    assert!(log.contains("rotated "), "{log}");
    let complaints = log
        .lines()
        .filter(|l| l.contains("forward `vm`") && (l.contains("ERROR") || l.contains("WARN")));
    assert_eq!(
        complaints.count(),
        0,
        "forwarding while rotating went wrong:\n{log}"
    );
    // Then the engine down while the writer goes on: the file the cursor
    // is in is rotated and gzipped under it.
    write_config("50ms", &format!("http://{}", down.addr));
    let mut agent = Agent::start(&args, dir.path());
    let more = gzipped(&data) + 4;
    let rotated_on = support::eventually(LIMIT, || gzipped(&data) >= more);
    assert!(rotated_on.await, "{}", agent.log_text());
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    // The engine back: a start that hardly writes finds the cursor's file
    // (by its first row) gzipped and forwards the rest.
    write_config("1h", &vm.url);
    let log = run_to_the_end(&args, dir.path(), &data).await;
    let resumed = log
        .lines()
        .find(|l| l.contains("forward `vm`: resuming at byte"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(resumed.contains(".csv.gz "), "{log}");

    let want = engines::expected(&data);
    let got = points_once_in(&vm.url, &want).await;
    engines::assert_same_points(&got, &want);
    let rows = rows_of(&want).len();
    assert_eq!(rows, rows_on_disk(&data));
    println!(
        "{rows} rows in {} rotated files ({} gzipped) forwarded once each",
        rotated(&data),
        gzipped(&data)
    );
}

/// The agent's `/metrics` and `/healthz` (status, body) at `base`.
async fn health(base: &str) -> (String, u16, String) {
    let metrics = support::metrics_text(base).await;
    let r = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    (metrics, r.status().as_u16(), r.text().await.unwrap())
}

/// Quiet the agent's writing: a reload to an interval of an hour.
async fn quiet(agent: &Agent, write_config: impl Fn(&str)) {
    write_config("1h");
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_overtaking_the_cursor_is_counted() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("21.5"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("agent.yaml");
    // The engine is down: nothing listens at the target's port.
    let down = support::closed_port();
    let write_config = |interval: &str| {
        let text = config(
            &data,
            interval,
            &server.url(0, "/v"),
            "  rotate:\n    max_size: 1024\n  keep: 2\n",
            &format!("    url: http://{}/write\n", down.addr),
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write_config("50ms");
    let args = ["run", "--config", config_path.to_str().unwrap()];
    let mut agent = Agent::start(&args, dir.path());
    let base = format!(
        "http://{}",
        support::listening_addr(&mut agent.child, LIMIT).await
    );
    agent
        .wait_log(LIMIT, |l| l.matches("retention: removed").count() >= 3)
        .await;
    quiet(&agent, write_config).await;
    // Nothing was acknowledged, so every row written and no longer on disk
    // was lost to the target, and counted. Read until the writer's last
    // rows of the old interval are in.
    let mut last = (0.0, 0.0, 0);
    let consistent = support::eventually(Duration::from_secs(10), || {
        let metrics = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(support::metrics_text(&base))
        });
        let written = support::metric_in(&metrics, "edge_agent_rows_written_total");
        let lost = target_metric(&metrics, "forward_rows_lost_total");
        last = (written, lost, rows_on_disk(&data));
        written - lost == last.2 as f64
    })
    .await;
    let (written, lost, on_disk) = last;
    assert!(
        consistent,
        "{written} rows written, {on_disk} on disk, but {lost} counted lost:\n{}",
        agent.log_text()
    );
    assert!(lost > 0.0, "{}", agent.log_text());
    assert_eq!(acknowledged(&data), 0, "the engine was down");
    let log = agent.log_text();
    let logged: f64 = log
        .lines()
        .filter(|l| l.contains("retention removed"))
        .map(|l| {
            let n = l.split(": ").last().unwrap().split(' ').next().unwrap();
            n.parse::<f64>().unwrap_or_else(|_| panic!("{l}"))
        })
        .sum();
    assert_eq!(
        logged, lost,
        "the log's counts add up to the metric:\n{log}"
    );
    assert!(log.contains("row(s) lost to that target"), "{log}");
    let (metrics, status, body) = health(&base).await;
    assert!(
        target_metric(&metrics, "forward_files_lost_total") >= 3.0,
        "{metrics}"
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("lost") && body.contains("retention"),
        "{body}"
    );
    println!("{written} rows written, {on_disk} on disk, {lost} counted lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_unforwarded_holds_the_files_until_the_engine_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(vm) = victoria(dir.path()).await else {
        return;
    };
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("21.5"));
    let data = dir.path().join("data");
    let config_path = dir.path().join("agent.yaml");
    // The engine is down (503) until `up`.
    let up = Arc::new(AtomicBool::new(false));
    let (url, _) = proxy(vm.url.clone(), up.clone()).await;
    let write_config = |interval: &str| {
        let text = config(
            &data,
            interval,
            &server.url(0, "/v"),
            "  rotate:\n    max_size: 1024\n  keep: 2\n",
            &format!("    url: {url}/write\n    keep_unforwarded: 1MiB\n"),
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write_config("50ms");
    let args = ["run", "--config", config_path.to_str().unwrap()];
    let mut agent = Agent::start(&args, dir.path());
    let base = format!(
        "http://{}",
        support::listening_addr(&mut agent.child, LIMIT).await
    );
    // Twice `keep` and more rotated files: retention keeps what the target
    // has not sent, within the budget.
    let kept = support::eventually(LIMIT, || rotated(&data) >= 6).await;
    assert!(
        kept,
        "{:?}\n{}",
        support::file_names(&data),
        agent.log_text()
    );
    quiet(&agent, write_config).await;
    let written = support::eventually(LIMIT, || {
        let metrics = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(support::metrics_text(&base))
        });
        support::metric_in(&metrics, "edge_agent_rows_written_total") == rows_on_disk(&data) as f64
    });
    assert!(
        written.await,
        "rows written are not all on disk: some were removed"
    );
    let log = agent.log_text();
    assert!(!log.contains("retention removed"), "{log}");
    assert!(log.contains("retention keeps"), "{log}");
    let (metrics, status, body) = health(&base).await;
    assert_eq!(target_metric(&metrics, "forward_rows_lost_total"), 0.0);
    assert!(!body.contains("lost"), "{status} {body}");
    let want = engines::expected(&data);

    // The engine is back: everything arrives.
    up.store(true, SeqCst);
    let caught_up = support::eventually(LIMIT, || at_active_end(&data)).await;
    assert!(caught_up, "{}", agent.log_text());
    let got = points_once_in(&vm.url, &want).await;
    engines::assert_same_points(&got, &want);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    println!(
        "{} rows in {} rotated files kept with keep: 2 until the engine was back",
        rows_of(&want).len(),
        rotated(&data)
    );
}
