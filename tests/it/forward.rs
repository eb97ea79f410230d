//! `forward:` end to end: the real binary polls scripted sensors and
//! forwards its rows, read from its own CSV files, to real engines
//! (VictoriaMetrics, InfluxDB 1.x) and to loopback fakes that refuse,
//! stall, reset, answer 503, 413 or 400 on cue. What the engines hold is
//! compared with the CSV row by row; the cursor, `/metrics`, `/healthz`,
//! `forward --status` and the log are checked against it.
//!
//! Every run that must leave nothing unsent ends with [`drain`]: the agent
//! started again on the same files with an interval of a day (ticks at
//! midnight UTC: it writes no row meanwhile) until each target's cursor is at the end of
//! the files.

use crate::engines::{self, Points};
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{Agent, Reply, TestServer, client, metrics_text};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long the agent, a row or a condition may take.
const LIMIT: Duration = Duration::from_secs(30);

/// A row of the files: (group, time in ms).
type Key = (String, u64);

/// Scripted sensors: group `north` reads 20.5, `south` 7.25.
async fn sensors() -> TestServer {
    let s = TestServer::start(&["127.0.0.1"]).await;
    s.route("/n", Reply::ok("20.5"));
    s.route("/s", Reply::ok("7.25"));
    s
}

/// An agent.yaml polling `sensors` every `interval`, `/metrics` on port
/// 0, with `forward` (a whole `forward:` section, or nothing).
fn config(dir: &Path, interval: &str, sensors: &TestServer, forward: &str) -> String {
    let mut s = format!(
        "interval: {interval}\ntimeout: 150ms\noutput: {{ dir: {} }}\nmetrics: {{ listen: 127.0.0.1:0 }}\n{forward}groups:\n",
        dir.join("data").display()
    );
    for (group, path) in [("north", "/n"), ("south", "/s")] {
        s += &support::group(
            group,
            "celsius",
            &[format!(
                "{{ id: {group}-1, url: '{}', format: text }}",
                sensors.url(0, path)
            )],
        );
    }
    s
}

/// One `forward:` target; `extra` holds further keys, each line indented
/// by four spaces.
fn target(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    url: '{url}'\n    measurement: temperature\n{extra}")
}

/// A running agent and its `/metrics` base URL.
struct Running {
    agent: Agent,
    base: String,
}

async fn start(dir: &Path, text: &str, env: &[(&str, &str)]) -> Running {
    let path = support::write(dir, "agent.yaml", text);
    let mut agent = Agent::start_with(&["run", "--config", path.to_str().unwrap()], dir, env);
    let addr = support::listening_addr(&mut agent.child, LIMIT).await;
    Running {
        agent,
        base: format!("http://{addr}"),
    }
}

/// SIGTERM, a clean exit; the log.
fn stop(mut r: Running) -> String {
    r.agent.signal(libc::SIGTERM);
    let status = r.agent.wait(LIMIT);
    let log = r.agent.log_text();
    assert!(status.success(), "exit {status}:\n{log}");
    log
}

/// A labelled series of a `/metrics` text, if there.
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("edge_agent_{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

/// A forward series of target `t` in a `/metrics` text.
fn of(text: &str, name: &str, t: &str) -> f64 {
    series(text, &format!("forward_{name}"), &format!("target=\"{t}\""))
        .unwrap_or_else(|| panic!("no forward_{name} of {t} in:\n{text}"))
}

/// `forward_errors_total` of target `t` and `kind`.
fn errors(text: &str, t: &str, kind: &str) -> f64 {
    series(
        text,
        "forward_errors_total",
        &format!("target=\"{t}\",kind=\"{kind}\""),
    )
    .unwrap_or_else(|| panic!("no errors of kind {kind} for {t} in:\n{text}"))
}

/// Poll `/metrics` at `base` until `cond` holds of its text; panics
/// naming `what` (with the last text and the log) after [`LIMIT`].
async fn wait_metrics(r: &Running, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = metrics_text(&r.base).await;
        if cond(&text) {
            return text;
        }
        assert!(
            start.elapsed() < LIMIT,
            "waited {LIMIT:?} for {what}, in vain; metrics:\n{text}\nlog:\n{}",
            r.agent.log_text()
        );
        // The interval between checks (each an HTTP request) of a wait
        // bounded by LIMIT.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `edge-agent ARGS` with `env`: (exit code, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(support::binary());
    c.args(args);
    support::finish(c.envs(env.iter().copied()))
}

/// `edge-agent forward --config agent.yaml --status` in `dir`.
fn status(dir: &Path, env: &[(&str, &str)]) -> String {
    let config = dir.join("agent.yaml");
    let (code, out, err) = cli(
        &["forward", "--config", config.to_str().unwrap(), "--status"],
        env,
    );
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// The status block of target `name`.
fn block<'a>(status: &'a str, name: &str) -> &'a str {
    let at = status
        .find(&format!("{name} -> "))
        .unwrap_or_else(|| panic!("no target {name} in:\n{status}"));
    let rest = &status[at..];
    // Its line and the indented lines after it.
    let end = rest
        .match_indices('\n')
        .find(|(i, _)| !rest[i + 1..].starts_with(' '))
        .map_or(rest.len(), |(i, _)| i + 1);
    &rest[..end]
}

/// The number before `suffix` in `text` (after the last space before it).
fn number_before(text: &str, suffix: &str) -> u64 {
    let at = text
        .find(suffix)
        .unwrap_or_else(|| panic!("no `{suffix}` in:\n{text}"));
    let digits = text[..at].rsplit(' ').next().unwrap();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number before `{suffix}` in:\n{text}"))
}

/// Rows after target `name`'s cursor, as `forward --status` says.
fn lag_in(status: &str, name: &str) -> u64 {
    let b = block(status, name);
    let lag = b.split_once("  lag: ").map(|(_, l)| l).unwrap_or("");
    number_before(lag, " row(s)")
}

/// Rows sent through target `name`'s cursor, as `forward --status` says
/// (0 without a cursor).
fn through_cursor(status: &str, name: &str) -> u64 {
    let b = block(status, name);
    if b.contains("  cursor: none") {
        return 0;
    }
    number_before(b, " row(s) through this cursor")
}

/// Every row of the files of `dir/data` (via `replay`), in time order.
fn csv_keys(dir: &Path) -> Vec<Key> {
    let data = dir.join("data");
    let (code, out, err) = support::edge_agent(&["replay", "--dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), ms(f[0]))
        })
        .collect()
}

fn ms(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The row a line of line protocol holds: its `group` tag and its time
/// (nanoseconds) in ms.
fn line_key(line: &str) -> Key {
    let head = line.split(' ').next().unwrap();
    let group = head
        .split(',')
        .find_map(|t| t.strip_prefix("group="))
        .unwrap_or_else(|| panic!("no group tag in {line}"));
    let ns: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    (group.to_string(), ns / 1_000_000)
}

/// Start the agent again on `dir`'s files with nothing new to write (an
/// interval of a day) until every target of `forward` has sent the rows
/// after its cursor (`forward --status` before and after, and each
/// target's rows_total and lag_rows in `/metrics`); returns the log.
async fn drain(dir: &Path, sensors: &TestServer, forward: &str, names: &[&str]) -> String {
    let text = config(dir, "24h", sensors, forward);
    support::write(dir, "agent.yaml", &text);
    let before = status(dir, &[]);
    let rows = csv_keys(dir).len() as u64;
    let r = start(dir, &text, &[]).await;
    for name in names {
        let left = lag_in(&before, name);
        assert_eq!(
            through_cursor(&before, name) + left,
            rows,
            "status:\n{before}"
        );
        wait_metrics(&r, &format!("{name} to send the {left} row(s) left"), |m| {
            of(m, "rows_total", name) as u64 == left && of(m, "lag_rows", name) == 0.0
        })
        .await;
    }
    let log = stop(r);
    let after = status(dir, &[]);
    assert_eq!(
        csv_keys(dir).len() as u64,
        rows,
        "the drain wrote rows:\n{log}"
    );
    for name in names {
        assert_eq!(
            lag_in(&after, name),
            0,
            "{after}\nbefore:\n{before}\nlog:\n{log}"
        );
        assert_eq!(through_cursor(&after, name), rows, "{after}");
    }
    log
}

/// A request a fake engine got, and its answer.
#[derive(Clone, Debug)]
struct Seen {
    post: bool,
    uri: String,
    authorization: Option<String>,
    lines: Vec<String>,
    status: u16,
}

/// What a fake engine answers to a POST of lines (the number of the
/// POST, from 1): status and text.
type Answer = Arc<dyn Fn(&[String], usize) -> (u16, String) + Send + Sync>;

/// A line-protocol engine on 127.0.0.1 that answers as told and keeps
/// every request.
struct FakeEngine {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEngine {
    async fn start(answer: Answer) -> FakeEngine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let kept = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, answer) = (kept.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let (seen, answer) = (seen.clone(), answer.clone());
                        async move {
                            let post = req.method() == hyper::Method::POST;
                            let uri = req.uri().to_string();
                            let authorization = req
                                .headers()
                                .get("authorization")
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                            let body: hyper::body::Incoming = req.into_body();
                            let body = body.collect().await.unwrap().to_bytes();
                            let lines: Vec<String> = String::from_utf8_lossy(&body)
                                .lines()
                                .filter(|l| !l.is_empty())
                                .map(str::to_string)
                                .collect();
                            // Writes are POSTs; anything else is the
                            // agent asking which engine this is.
                            let n = seen.lock().unwrap().iter().filter(|s| s.post).count() + 1;
                            let (status, text) = if post {
                                answer(&lines, n)
                            } else {
                                (404, "not found\n".into())
                            };
                            seen.lock().unwrap().push(Seen {
                                post,
                                uri,
                                authorization,
                                lines,
                                status,
                            });
                            let mut r = Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeEngine { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The POSTs (writes) it got.
    fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.post).cloned().collect()
    }

    /// The rows of the requests answered 2xx.
    fn accepted(&self) -> Vec<Key> {
        let seen = self.seen();
        let ok = seen.iter().filter(|s| (200..300).contains(&s.status));
        ok.flat_map(|s| s.lines.iter().map(|l| line_key(l)))
            .collect()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// VictoriaMetrics' points once it shows `n` of them (or [`LIMIT`] has
/// passed): a write it acknowledged can take a moment to be searchable,
/// even after the force_flush [`engines::victoria_export`] does.
async fn victoria_points(url: &str, n: usize) -> Points {
    let start = Instant::now();
    loop {
        let got = engines::victoria_points(url).await;
        if got.len() >= n || start.elapsed() > LIMIT {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`engines::assert_same_points`], naming the engine and the points
/// missing or not in the files.
fn same(engine: &str, got: &Points, want: &Points) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{engine}: {} point(s) missing: {missing:?}; {} not in the files: {extra:?}",
        missing.len(),
        extra.len()
    );
    engines::assert_same_points(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_every_row_reaches_victoriametrics_and_influxdb() {
    let Some(vm_bin) = engines::require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let Some(influx_bin) = engines::require("influxd", "influxdb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let vm = engines::victoria_with(
        dir,
        &vm_bin,
        &["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"],
    )
    .await;
    let influx = engines::influx(dir, &influx_bin).await;
    let sensors = sensors().await;
    let batch = "    batch: { rows: 20, max_delay: 200ms }\n";
    let forward = format!(
        "forward:\n{}{}",
        target("vm", &format!("{}/write", vm.url), batch),
        target("influx", &format!("{}/write?db=edge", influx.url), batch)
    );
    let r = start(dir, &config(dir, "200ms", &sensors, &forward), &[]).await;
    // While rows come in at 10 a second, both targets keep up: lag under
    // two batches whenever looked at, and rows arrive.
    let mut lags = Vec::new();
    let text = wait_metrics(&r, "60 rows forwarded to each engine", |m| {
        lags.push((of(m, "lag_rows", "vm"), of(m, "lag_rows", "influx")));
        of(m, "rows_total", "vm") >= 60.0 && of(m, "rows_total", "influx") >= 60.0
    })
    .await;
    let (vm_lag, influx_lag) = lags
        .iter()
        .fold((0f64, 0f64), |(a, b), (x, y)| (a.max(*x), b.max(*y)));
    assert!(vm_lag < 40.0 && influx_lag < 40.0, "lags seen: {lags:?}");
    assert!(of(&text, "batches_total", "vm") >= 3.0, "{text}");
    assert_eq!(of(&text, "resends_total", "vm"), 0.0, "{text}");
    let log = stop(r);
    assert!(!log.contains("did not take"), "{log}");
    assert!(
        log.contains("forward `vm`: no cursor yet; starting at byte"),
        "{log}"
    );
    let log = drain(dir, &sensors, &forward, &["vm", "influx"]).await;
    assert!(log.contains("forward `vm`: resuming at byte"), "{log}");

    let want = engines::expected(&dir.join("data"));
    assert!(want.len() >= 60 * 5, "{} points", want.len());
    same(
        "VictoriaMetrics",
        &victoria_points(&vm.url, want.len()).await,
        &want,
    );
    same(
        "InfluxDB",
        &engines::influx_points(&influx.url, "edge", "temperature").await,
        &want,
    );
}

/// What the loopback hop in front of VictoriaMetrics does, in the order
/// an outage goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Phase {
    /// Read the request, never answer (past the target's timeout).
    Stall = 0,
    /// Read the headers and some of the body, then reset the connection.
    Reset = 1,
    /// Answer 503.
    Unavailable = 2,
    /// Pass requests on to the engine.
    Pass = 3,
}

/// A hop on 127.0.0.1 that refuses connections until [`Hop::open`], then
/// behaves as its [`Phase`] says; each row it passed on is kept.
struct Hop {
    addr: std::net::SocketAddr,
    closed: Option<TcpSocket>,
    phase: Arc<AtomicUsize>,
    /// Connections (stall, reset) or requests (503, passed) per phase.
    counts: Arc<[AtomicUsize; 4]>,
    passed: Arc<Mutex<Vec<Key>>>,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Hop {
    fn new(upstream: &str) -> Hop {
        // Bound and not listening: every connection is refused.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        Hop {
            addr: socket.local_addr().unwrap(),
            closed: Some(socket),
            phase: Arc::new(AtomicUsize::new(Phase::Stall as usize)),
            counts: Arc::default(),
            passed: Arc::default(),
            upstream: upstream.to_string(),
            task: None,
        }
    }

    fn count(&self, phase: Phase) -> usize {
        self.counts[phase as usize].load(Ordering::SeqCst)
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as usize, Ordering::SeqCst);
    }

    /// Listen, in phase [`Phase::Stall`].
    fn open(&mut self) {
        let listener = self.closed.take().unwrap().listen(64).unwrap();
        let (phase, counts, passed) =
            (self.phase.clone(), self.counts.clone(), self.passed.clone());
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let now = phase.load(Ordering::SeqCst);
                let (phase, counts, passed) = (phase.clone(), counts.clone(), passed.clone());
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if now == Phase::Stall as usize {
                        counts[now].fetch_add(1, Ordering::SeqCst);
                        hold(stream).await;
                    } else if now == Phase::Reset as usize {
                        counts[now].fetch_add(1, Ordering::SeqCst);
                        reset_mid_body(stream).await;
                    } else {
                        serve_or_pass(stream, phase, counts, passed, upstream).await;
                    }
                });
            }
        }));
    }

    fn url(&self) -> String {
        format!("http://{}/write", self.addr)
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Read until the client gives up; answer nothing.
async fn hold(mut stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

/// Read the request's headers and at least a byte of its body, then
/// close with an RST (linger 0), no answer.
async fn reset_mid_body(mut stream: TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let Ok(n @ 1..) = stream.read(&mut buf).await else {
            return;
        };
        got.extend_from_slice(&buf[..n]);
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|e| got.len() > e + 4) {
            break;
        }
    }
    // Linger 0 makes the close an RST; deprecated because a nonzero linger
    // blocks the thread on drop, which zero does not.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// HTTP on `stream`: 503 while the phase is [`Phase::Unavailable`], else
/// each request passed on to `upstream` and its rows kept.
async fn serve_or_pass(
    stream: TcpStream,
    phase: Arc<AtomicUsize>,
    counts: Arc<[AtomicUsize; 4]>,
    passed: Arc<Mutex<Vec<Key>>>,
    upstream: String,
) {
    let client = client();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (phase, counts, passed) = (phase.clone(), counts.clone(), passed.clone());
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let target = format!("{upstream}{}", req.uri());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let now = phase.load(Ordering::SeqCst);
            counts[now].fetch_add(1, Ordering::SeqCst);
            let (status, text) = if now == Phase::Unavailable as usize {
                (503, Bytes::from_static(b"service unavailable\n"))
            } else {
                let r = client.post(target).body(body.clone()).send().await.unwrap();
                let status = r.status().as_u16();
                if (200..300).contains(&status) {
                    let text = String::from_utf8_lossy(&body);
                    passed
                        .lock()
                        .unwrap()
                        .extend(text.lines().filter(|l| !l.is_empty()).map(line_key));
                }
                (status, r.bytes().await.unwrap())
            };
            let mut r = Response::new(Full::new(text));
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(r)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Each group's rows of `keys` follow each other at exactly `step` ms.
fn assert_no_gap(keys: &[Key], step: u64) {
    let mut by_group: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (g, t) in keys {
        by_group.entry(g).or_default().push(*t);
    }
    assert_eq!(by_group.len(), 2, "{by_group:?}");
    for (g, mut times) in by_group {
        times.sort_unstable();
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], step, "{g}: rows at {} and {}", w[0], w[1]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_caught_up_with_each_row_once() {
    let Some(vm_bin) = engines::require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let vm = engines::victoria_with(
        dir,
        &vm_bin,
        &["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"],
    )
    .await;
    let sensors = sensors().await;
    let mut hop = Hop::new(&vm.url);
    let forward = format!(
        "forward:\n{}",
        target(
            "vm",
            &hop.url(),
            "    batch: { rows: 20, max_delay: 200ms }\n    timeout: 1s\n    retry: { first: 50ms, max: 500ms }\n"
        )
    );
    let csv = dir.join("data/readings.csv");
    let r = start(dir, &config(dir, "500ms", &sensors, &forward), &[]).await;

    // Refused: nothing listens.
    wait_metrics(&r, "2 refused connections", |m| {
        errors(m, "vm", "connect") >= 2.0
    })
    .await;
    // Stalled past the timeout (1s), then reset mid-body, then 503.
    hop.open();
    let (hop_ref, r_ref) = (&hop, &r);
    let wait_phase = |phase: Phase, what: &'static str| async move {
        let start = Instant::now();
        while hop_ref.count(phase) < 2 {
            assert!(
                start.elapsed() < LIMIT,
                "no 2 {what} in {LIMIT:?}; log:\n{}",
                r_ref.agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_phase(Phase::Stall, "stalled connections").await;
    hop.set(Phase::Reset);
    wait_phase(Phase::Reset, "reset connections").await;
    hop.set(Phase::Unavailable);
    wait_phase(Phase::Unavailable, "503 answers").await;
    let outage_rows = support::rows(&csv).len();
    hop.set(Phase::Pass);
    r.agent
        .wait_log(LIMIT, |l| l.contains("acknowledged again after"))
        .await;
    let text = wait_metrics(&r, "rows forwarded after the outage", |m| {
        of(m, "rows_total", "vm") as usize >= outage_rows
    })
    .await;
    assert!(errors(&text, "vm", "connect") >= 2.0, "{text}");
    assert!(errors(&text, "vm", "timeout") >= 1.0, "{text}");
    assert!(errors(&text, "vm", "server") >= 2.0, "{text}");
    assert_eq!(errors(&text, "vm", "refused"), 0.0, "{text}");
    assert!(of(&text, "resends_total", "vm") >= 6.0, "{text}");
    let log = stop(r);
    // The backoff is logged at the first failure and while its bound
    // doubles (50ms, 100ms, 200ms, 400ms), then no more at the cap (so
    // which failures are logged depends on how many refusals came first;
    // the kinds are in errors_total).
    let retry: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("forward `vm`: {} did not take ", hop.url()))
                && l.contains("; retry ")
                && l.contains(" (backoff with full jitter up to ")
        })
        .collect();
    assert!(retry.len() >= 4, "{log}");
    assert!(retry[0].contains("Connection refused"), "{log}");
    assert!(
        retry[3].ends_with("(backoff with full jitter up to 400ms)"),
        "{log}"
    );
    // One batch waited through the whole outage: every failed send is
    // counted by kind.
    let again = log
        .lines()
        .find(|l| l.contains("acknowledged again after"))
        .unwrap();
    let failed: f64 = ["connect", "timeout", "server"]
        .iter()
        .map(|k| errors(&text, "vm", k))
        .sum();
    assert!(
        again.contains(&format!(
            "forward `vm`: {} acknowledged again after {failed} failed send(s) over ",
            hop.url()
        )),
        "{again}\n{text}"
    );

    drain(dir, &sensors, &forward, &["vm"]).await;

    let keys = csv_keys(dir);
    assert!(keys.len() > outage_rows, "rows went on after the outage");
    // Rows on disk never paused while the engine was away.
    assert_no_gap(&keys, 500);
    // Each row reached the engine, once: the export has one point per series
    // and time (victoria_points refuses duplicates) and the same points as
    // the CSV; through the hop, a row passed twice only when the agent
    // stopped with its batch unacknowledged (at most one batch).
    let want = engines::expected(&dir.join("data"));
    same(
        "VictoriaMetrics",
        &victoria_points(&vm.url, want.len()).await,
        &want,
    );
    let passed = hop.passed.lock().unwrap().clone();
    let unique: BTreeSet<&Key> = passed.iter().collect();
    let csv: BTreeSet<&Key> = keys.iter().collect();
    assert_eq!(unique, csv);
    assert!(
        passed.len() - unique.len() <= 20,
        "{} resent",
        passed.len() - unique.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_forward_never_reach_logs_or_check() {
    const TOKEN: &str = "tok-5ecr3t-Qx7";
    const PW: &str = "pw-5ecr3t-Zk9";
    let env = [("FWD_TOKEN", TOKEN), ("FWD_PW", PW)];
    // One batch refused (logged with the engine's answer), busy twice
    // (logged with the URL), then accepted.
    let engine = FakeEngine::start(Arc::new(|_, n| match n {
        1 => (400, "{\"error\":\"bad line\"}".into()),
        2 | 3 => (503, "busy\n".into()),
        _ => (204, String::new()),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sensors = sensors().await;
    let forward = format!(
        "forward:\n{}",
        target(
            "sec",
            &engine.url("/write?db=x&p=${FWD_PW}"),
            "    headers: { Authorization: \"Token ${FWD_TOKEN}\" }\n    batch: { rows: 5, max_delay: 200ms }\n    retry: { first: 50ms, max: 200ms }\n"
        )
    );
    let text = config(dir, "200ms", &sensors, &forward);
    let mut env_debug = env.to_vec();
    env_debug.push(("RUST_LOG", "debug"));
    let r = start(dir, &text, &env_debug).await;
    support::wait_until(LIMIT, "2 batches accepted", || {
        engine.seen().iter().filter(|s| s.status == 204).count() >= 2
    })
    .await;
    let log = stop(r);
    assert!(
        log.contains("acknowledged again after") && log.contains("refused"),
        "{log}"
    );
    assert!(log.contains(" DEBUG "), "RUST_LOG=debug: {log}");

    let (code, check_out, check_err) = cli(
        &[
            "check",
            "--config",
            dir.join("agent.yaml").to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{check_out}{check_err}");
    let status = status(dir, &env);
    assert!(status.contains("sec -> "), "{status}");
    let (_, bad_out, bad_err) = cli(
        &[
            "check",
            "--config",
            dir.join("agent.yaml").to_str().unwrap(),
        ],
        &[("FWD_TOKEN", TOKEN)],
    );
    assert!(
        bad_err.contains("FWD_PW"),
        "a missing variable is named: {bad_out}{bad_err}"
    );
    for (what, text) in [
        ("the log", log.as_str()),
        ("check", &format!("{check_out}{check_err}")),
        ("forward --status", status.as_str()),
        ("check without FWD_PW", &format!("{bad_out}{bad_err}")),
    ] {
        for secret in [TOKEN, PW] {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
    // Sent, though: each request carried both.
    let seen = engine.seen();
    assert!(seen.len() >= 5);
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(&*format!("Token {TOKEN}")));
        assert!(s.uri.ends_with(&format!("/write?db=x&p={PW}")), "{}", s.uri);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_skipped_and_413_halves_the_batch() {
    const MOST: usize = 4;
    const REASON: &str = "partial write: unable to parse 'bad line': invalid field format";
    // Over MOST lines: 413. The last line of the first body it takes is a
    // "bad line": any body holding it is refused (400 with a reason), as an
    // engine refuses a batch for one row it cannot take.
    let bad: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let marked = bad.clone();
    let engine = FakeEngine::start(Arc::new(move |lines, _| {
        let mut bad = marked.lock().unwrap();
        if lines.len() > MOST {
            (413, "request entity too large\n".into())
        } else if bad.get_or_insert_with(|| lines[lines.len() - 1].clone()) == lines.last().unwrap()
            || lines.iter().any(|l| Some(l) == bad.as_ref())
        {
            (400, format!("{{\"error\":\"{REASON}\"}}"))
        } else {
            (204, String::new())
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sensors = sensors().await;
    // A backlog first (no forward: yet), so the first batch is large.
    let r = start(dir, &config(dir, "200ms", &sensors, ""), &[]).await;
    let csv = dir.join("data/readings.csv");
    support::wait_rows(&csv, 16, LIMIT, |_| true).await;
    stop(r);
    let backlog = csv_keys(dir);
    let forward = format!(
        "forward:\n{}",
        target(
            "fake",
            &engine.url("/write"),
            "    batch: { rows: 20, max_delay: 200ms }\n    retry: { first: 50ms, max: 200ms }\n"
        )
    );
    let r = start(dir, &config(dir, "200ms", &sensors, &forward), &[]).await;
    // Forwarding goes on past the refused batch: rows written after the
    // backlog arrive.
    let last_backlog = backlog.iter().map(|k| k.1).max().unwrap();
    support::wait_until(LIMIT, "rows newer than the backlog accepted", || {
        engine.accepted().iter().any(|k| k.1 > last_backlog + 1000)
    })
    .await;
    // rows_total counts what the engine acknowledged, not what it refused:
    // between two batches, it is the rows of the requests answered 2xx.
    let text = wait_metrics(&r, "rows_total = the rows the engine took", |m| {
        of(m, "rows_total", "fake") as usize == engine.accepted().len()
    })
    .await;
    let log = stop(r);
    drain(dir, &sensors, &forward, &["fake"]).await;

    let seen = engine.seen();
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.status == 400).collect();
    // The refused batch was halved until the bad row stood alone: it is
    // the only row passed over; the good rows around it were taken.
    let bad_line = bad.lock().unwrap().clone().unwrap();
    assert!(refused.iter().all(|s| s.lines.contains(&bad_line)));
    assert!(
        refused.iter().any(|s| s.lines.len() == 1),
        "the bad row was sent alone at last: {refused:?}"
    );
    let refused_keys: BTreeSet<Key> = [line_key(&bad_line)].into_iter().collect();
    assert!(
        seen.iter()
            .any(|s| s.status == 413 && s.lines.len() >= 2 * MOST),
        "the backlog's first batch was too large"
    );
    for s in seen.iter().filter(|s| s.status == 204) {
        assert!(
            s.lines.len() <= MOST,
            "an accepted batch of {}",
            s.lines.len()
        );
    }
    assert!(log.contains("takes no batch of"), "{log}");
    let skipped = log
        .lines()
        .find(|l| l.contains("with HTTP 400"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(skipped.contains(REASON), "the engine's reason: {skipped}");
    assert!(skipped.contains("(on_refused: skip)"), "{skipped}");
    assert_eq!(
        of(&text, "rows_refused_total", "fake"),
        refused_keys.len() as f64,
        "{text}"
    );
    assert_eq!(
        errors(&text, "fake", "refused"),
        refused.len() as f64,
        "{text}"
    );
    assert!(errors(&text, "fake", "too_large") >= 1.0, "{text}");
    // Every row of the files was taken once, or refused once: none lost,
    // none twice.
    let accepted = engine.accepted();
    let taken: BTreeSet<Key> = accepted.iter().cloned().collect();
    assert_eq!(taken.len(), accepted.len(), "a row accepted twice");
    assert!(taken.is_disjoint(&refused_keys));
    let all: BTreeSet<Key> = csv_keys(dir).into_iter().collect();
    let sent: BTreeSet<Key> = taken.union(&refused_keys).cloned().collect();
    assert_eq!(sent, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_refused_pause_fails_healthz_until_the_engine_takes_the_batch() {
    paused_until_taken(400, "    on_refused: pause\n", "(on_refused: pause)").await;
}

/// 401 (a token revoked), 404, 411...: not the rows but the engine or a
/// setting; skipping would throw every row away until it is fixed, so the
/// target waits even with the default on_refused: skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_every_request_pauses_even_under_skip() {
    paused_until_taken(
        401,
        "",
        "(the engine or a setting refuses it, not the rows)",
    )
    .await;
}

async fn paused_until_taken(status: u16, setting: &str, marker: &str) {
    let refusing = Arc::new(AtomicBool::new(true));
    let flag = refusing.clone();
    let engine = FakeEngine::start(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            (status, "{\"error\":\"field type conflict\"}".into())
        } else {
            (204, String::new())
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sensors = sensors().await;
    let forward = format!(
        "forward:\n{}",
        target(
            "p",
            &engine.url("/write"),
            &format!(
                "{setting}    batch: {{ rows: 20, max_delay: 200ms }}\n    retry: {{ first: 50ms, max: 200ms }}\n"
            )
        )
    );
    let r = start(dir, &config(dir, "200ms", &sensors, &forward), &[]).await;
    let healthz = format!("{}/healthz", r.base);
    let get = || async {
        let resp = client().get(&healthz).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let start = Instant::now();
    let body = loop {
        let (code, body) = get().await;
        // (503 also before the first cycle finished: not what is waited on.)
        if code == 503 && body.contains("paused") {
            break body;
        }
        assert!(
            start.elapsed() < LIMIT,
            "healthz never said paused: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("forward target `p` is paused"), "{body}");
    let text = wait_metrics(&r, "refused sends", |m| errors(m, "p", "refused") >= 2.0).await;
    assert_eq!(of(&text, "paused", "p"), 1.0, "{text}");
    assert_eq!(of(&text, "rows_total", "p"), 0.0, "{text}");
    let first_refused = engine.seen()[0].lines.clone();
    refusing.store(false, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let (code, body) = get().await;
        if code == 200 {
            break;
        }
        assert!(start.elapsed() < LIMIT, "healthz stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = wait_metrics(&r, "rows after the pause", |m| {
        of(m, "rows_total", "p") > 0.0
    })
    .await;
    assert_eq!(of(&text, "paused", "p"), 0.0, "{text}");
    assert_eq!(of(&text, "rows_refused_total", "p"), 0.0, "{text}");
    let log = stop(r);
    assert_eq!(
        log.matches(marker).count(),
        1,
        "logged once while paused: {log}"
    );
    // The batch waited on is the one sent once the engine took it, and no
    // row before the last one taken was passed over.
    let seen = engine.seen();
    let taken = seen.iter().find(|s| s.status == 204).unwrap();
    assert_eq!(taken.lines[..first_refused.len()], first_refused[..]);
    let accepted: BTreeSet<Key> = engine.accepted().into_iter().collect();
    let newest = accepted.iter().map(|k| k.1).max().unwrap();
    let before: BTreeSet<Key> = csv_keys(dir)
        .into_iter()
        .filter(|k| k.1 <= newest)
        .collect();
    assert_eq!(accepted, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_status_prints_cursor_and_lag() {
    let engine = FakeEngine::start(Arc::new(|_, _| (204, String::new()))).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sensors = sensors().await;
    let url = engine.url("/write");
    let forward = format!(
        "forward:\n{}",
        target("st", &url, "    batch: { rows: 4, max_delay: 200ms }\n")
    );
    let text = config(dir, "200ms", &sensors, &forward);
    support::write(dir, "agent.yaml", &text);
    let before = status(dir, &[]);
    assert!(before.contains(&format!("st -> {url}")), "{before}");
    assert!(before.contains("no cursor yet"), "{before}");

    let r = start(dir, &text, &[]).await;
    wait_metrics(&r, "8 rows forwarded", |m| of(m, "rows_total", "st") >= 8.0).await;
    stop(r);
    let out = status(dir, &[]);
    let csv: PathBuf = dir.join("data/readings.csv");
    let cursor_line = out
        .lines()
        .find(|l| l.starts_with("  cursor: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        cursor_line.starts_with(&format!("  cursor: {} byte ", csv.display())),
        "{out}"
    );
    let byte = number_before(cursor_line, " (last row sent");
    let bytes = std::fs::read(&csv).unwrap();
    // The cursor is at a row's end; the rows before it are those sent, the
    // rows after it the lag.
    assert!(
        byte as usize <= bytes.len() && bytes[byte as usize - 1] == b'\n',
        "{out}"
    );
    let rows_before = bytes[..byte as usize]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        - 1;
    let rows_after = bytes[byte as usize..]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(through_cursor(&out, "st"), rows_before as u64, "{out}");
    assert_eq!(lag_in(&out, "st"), rows_after as u64, "{out}");
    assert_eq!(engine.accepted().len(), rows_before, "{out}");
    let last = support::rows(&csv)[rows_before - 1].clone();
    assert!(
        cursor_line.contains(&format!("last row sent {}", &last[..24])),
        "{cursor_line} / {last}"
    );

    let plain = config(dir, "200ms", &sensors, "");
    support::write(dir, "agent.yaml", &plain);
    let out = status(dir, &[]);
    assert!(out.contains("no forward targets"), "{out}");
}
