//! `replay --output URL` into the real engines a fleet feeds: VictoriaMetrics
//! and InfluxDB 1.x from Debian's packages, started here on 127.0.0.1 in temp
//! dirs. The points are queried back and compared with the CSV, including
//! through a proxy that fails a batch before the engine recovers it.
//!
//! `.ci/run` installs both packages. Where a binary is missing (a developer
//! machine without them) the test says so and passes, except under CI
//! (`CI` set), where a missing engine is a failure.

use crate::support;

use support::client;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A server process, killed when dropped.
pub(crate) struct Engine {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(binary: &str) -> Option<String> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = format!("{dir}/{binary}");
        if Path::new(&p).exists() {
            return Some(p);
        }
    }
    None
}

/// The binary, or `None` (after saying why) when the test cannot run here.
pub(crate) fn require(binary: &str, package: &str) -> Option<String> {
    let found = find(binary);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{binary} is missing; .ci/run installs the Debian package {package}"
        );
        eprintln!(
            "SKIPPED: {binary} not installed (apt-get install {package}); .ci/run installs it"
        );
    }
    found
}

/// How long an engine may take to start.
const START: Duration = Duration::from_secs(60);

async fn wait_ready(url: &str, child: &mut Child) {
    let client = client();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{url}: server exited with {status}");
        }
        assert!(start.elapsed() < START, "{url} not ready in {START:?}");
        // The interval between checks (each an HTTP request) of a wait
        // bounded by START.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn victoria(dir: &Path, binary: &str) -> Engine {
    victoria_with(dir, binary, &["-retentionPeriod=100y"]).await
}

/// VictoriaMetrics started with `flags` (besides where and on which port).
pub(crate) async fn victoria_with(dir: &Path, binary: &str, flags: &[&str]) -> Engine {
    // Port 0: VictoriaMetrics logs the address as given (`:0`), so the port
    // it got is read from its socket.
    let mut child = Command::new(binary)
        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg("-httpListenAddr=127.0.0.1:0")
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!(
        "http://{}",
        support::listening_addr(&mut child, START).await
    );
    wait_ready(&format!("{url}/health"), &mut child).await;
    Engine { child, url }
}

/// The address in influxd's `msg="Listening on HTTP" ... addr=HOST:PORT`
/// log line, once it is there.
fn influx_http_addr(log: &str) -> Option<&str> {
    let line = log
        .lines()
        .find(|l| l.contains("msg=\"Listening on HTTP\""))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
}

pub(crate) async fn influx(dir: &Path, binary: &str) -> Engine {
    // Both listeners on port 0: influxd logs the HTTP address it got.
    let d = dir.join("influx");
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:0\"\n\
         [meta]\n  dir = \"{d}/meta\"\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:0\"\n  log-enabled = false\n\
         [monitor]\n  store-enabled = false\n",
        d = d.display()
    );
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("influxdb.conf"), config).unwrap();
    let log = d.join("influxd.log");
    let mut child = Command::new(binary)
        .arg("-config")
        .arg(d.join("influxdb.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    support::wait_until(START, "influxd's HTTP address in its log", || {
        influx_http_addr(&text()).is_some() || child.try_wait().unwrap().is_some()
    })
    .await;
    let text = text();
    let addr = influx_http_addr(&text)
        .unwrap_or_else(|| panic!("influxd exited before it listened:\n{text}"));
    let url = format!("http://{addr}");
    wait_ready(&format!("{url}/ping"), &mut child).await;
    let r = client()
        .post(
            url::Url::parse_with_params(&format!("{url}/query"), [("q", "CREATE DATABASE edge")])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    Engine { child, url }
}

/// (group, field, time in ms) -> value, from a CSV replay of the same history.
pub(crate) type Points = BTreeMap<(String, String, u64), f64>;

pub(crate) fn expected(dir: &Path) -> Points {
    let out = Command::new(support::binary())
        .args(["replay", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut points = Points::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let ms = humantime::parse_rfc3339(f[0])
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for (i, name) in [
            (2, "mean"),
            (3, "min"),
            (4, "max"),
            (6, "ok"),
            (7, "failed"),
        ] {
            if !f[i].is_empty() {
                points.insert(
                    (f[1].to_string(), name.to_string(), ms),
                    f[i].parse().unwrap(),
                );
            }
        }
    }
    points
}

/// Replay `dir` as line protocol to `url` through the real binary.
async fn replay_to(dir: &Path, url: &str) -> String {
    let (d, url) = (dir.to_str().unwrap().to_string(), url.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(support::binary())
            .args([
                "replay",
                "--dir",
                &d,
                "--format",
                "influx",
                "--batch-rows",
                "50",
                "--output",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// A recorded history: 3 groups, 2 hours at 30 s, with gaps (empty rows).
pub(crate) async fn history(dir: &Path) {
    history_in_units(dir, |_, _| edge_agent::config::Unit::Celsius).await;
}

/// [`history`] with `unit(group, i)` the unit of group number `group`'s
/// `i`-th row (of 240).
pub(crate) async fn history_in_units(dir: &Path, unit: fn(usize, u32) -> edge_agent::config::Unit) {
    let out = edge_agent::config::Output {
        dir: dir.to_path_buf(),
        prefix: "readings".into(),
        max_size: None,
        every: Some(Duration::from_secs(1800)),
        keep: 100,
        compress: edge_agent::config::Compress::None,
        fsync: edge_agent::config::Fsync::Rotate,
        decimals: 3,
        queue: 4096,
    };
    let store = edge_agent::store::Store::open(&out).await.unwrap();
    let tx = store.sender();
    let t0 = SystemTime::now() - Duration::from_secs(3 * 3600);
    let t0 = edge_agent::schedule::align_down(t0, Duration::from_secs(30));
    for i in 0..240u32 {
        let mut rows = Vec::new();
        for (g, name) in ["greenhouse", "cold-store", "outdoor"].iter().enumerate() {
            let v = 10.0 * g as f64 + f64::from(i % 17) * 0.125;
            let gap = (i + g as u32) % 23 == 0;
            rows.push(edge_agent::history::Row {
                time: t0 + Duration::from_secs(30 * u64::from(i)),
                group: name.to_string(),
                mean: (!gap).then_some(v),
                min: (!gap).then_some(v - 1.0),
                max: (!gap).then_some(v + 1.5),
                unit: unit(g, i),
                ok: if gap { 0 } else { 3 },
                failed: if gap { 3 } else { 0 },
            });
        }
        tx.send(rows);
    }
    drop(tx);
    store.close().await.unwrap();
}

/// VictoriaMetrics' export (JSON lines) of the series `selector` matches,
/// after a flush so that every point written is seen.
pub(crate) async fn victoria_export(url: &str, selector: &str) -> String {
    let client = client();
    client
        .get(format!("{url}/internal/force_flush"))
        .send()
        .await
        .unwrap();
    client
        .get(
            url::Url::parse_with_params(&format!("{url}/api/v1/export"), [("match[]", selector)])
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Points of `temperature_*` in VictoriaMetrics, via its export API.
pub(crate) async fn victoria_points(url: &str) -> Points {
    let body = victoria_export(url, "{__name__=~\"temperature_.*\"}").await;
    let mut points = Points::new();
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["metric"]["__name__"]
            .as_str()
            .unwrap()
            .trim_start_matches("temperature_")
            .to_string();
        let group = v["metric"]["group"].as_str().unwrap().to_string();
        for (value, ts) in v["values"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["timestamps"].as_array().unwrap())
        {
            let key = (group.clone(), name.clone(), ts.as_u64().unwrap());
            assert!(
                points.insert(key, value.as_f64().unwrap()).is_none(),
                "duplicate point"
            );
        }
    }
    points
}

/// Forwards POSTs to `upstream`, failing the `fail`-th one with 503.
async fn flaky_proxy(upstream: String, fail: usize) -> (String, Arc<AtomicUsize>) {
    use http_body_util::BodyExt;
    let count = Arc::new(AtomicUsize::new(0));
    let (seen, client) = (count.clone(), client());
    let addr = support::serve_status(move |req: hyper::Request<hyper::body::Incoming>| {
        let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
        async move {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let target = format!("{upstream}{}", req.uri());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if n == fail {
                return 503;
            }
            client
                .post(target)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    })
    .await;
    (format!("http://{addr}"), count)
}

/// A GET of `url`'s JSON answer.
pub(crate) async fn get_json(url: url::Url) -> serde_json::Value {
    let text = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// InfluxDB 1.x's points of `measurement` in `db`.
pub(crate) async fn influx_points(url: &str, db: &str, measurement: &str) -> Points {
    let query = url::Url::parse_with_params(
        &format!("{url}/query"),
        [
            ("db", db),
            ("epoch", "ms"),
            ("q", &format!("SELECT * FROM \"{measurement}\"")),
        ],
    )
    .unwrap();
    let body = get_json(query).await;
    let series = &body["results"][0]["series"][0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("no series in {body}"))
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let col = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let mut got = Points::new();
    for row in series["values"].as_array().unwrap() {
        let ms = row[col("time")].as_u64().unwrap();
        let group = row[col("group")].as_str().unwrap().to_string();
        for name in ["mean", "min", "max", "ok", "failed"] {
            if let Some(v) = row[col(name)].as_f64() {
                got.insert((group.clone(), name.to_string(), ms), v);
            }
        }
    }
    got
}

/// Every recorded point came back once, with its value: no gap, no duplicate.
pub(crate) fn assert_same_points(got: &Points, want: &Points) {
    assert_eq!(got.len(), want.len(), "no gap, no duplicate");
    for (key, value) in want {
        let g = got
            .get(key)
            .unwrap_or_else(|| panic!("missing point {key:?}"));
        assert!((g - value).abs() < 1e-9, "{key:?}: {g} != {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_victoriametrics_through_a_failing_hop() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    history(&dir.path().join("data")).await;
    let want = expected(&dir.path().join("data"));
    let vm = victoria(dir.path(), &binary).await;
    // 720 rows in batches of 50: 15 batches; the 3rd POST fails once.
    let (proxy, posts) = flaky_proxy(vm.url.clone(), 3).await;
    let err = replay_to(&dir.path().join("data"), &format!("{proxy}/write")).await;
    assert!(
        err.contains("720 row(s) acknowledged in 15 batch(es), 1 retried"),
        "{err}"
    );
    assert_eq!(posts.load(Ordering::SeqCst), 16);
    let got = victoria_points(&vm.url).await;
    assert_same_points(&got, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_influxdb() {
    let Some(binary) = require("influxd", "influxdb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    history(&dir.path().join("data")).await;
    let want = expected(&dir.path().join("data"));
    let db = influx(dir.path(), &binary).await;
    let err = replay_to(
        &dir.path().join("data"),
        &format!("{}/write?db=edge", db.url),
    )
    .await;
    assert!(
        err.contains("720 row(s) acknowledged in 15 batch(es), 0 retried"),
        "{err}"
    );
    let got = influx_points(&db.url, "edge", "temperature").await;
    assert_same_points(&got, &want);
}
