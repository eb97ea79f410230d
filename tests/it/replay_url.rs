//! `replay --output URL` as an operator meets it: the format an endpoint
//! takes, the unit as a tag, timeouts and attempts, and `--verify` against
//! what the engine stored. Real VictoriaMetrics and InfluxDB where an engine
//! is involved (started by [`crate::engines`]' helpers on 127.0.0.1); a
//! loopback server where the point is how replay treats any endpoint.

use crate::engines::{
    Engine, assert_same_points, expected, get_json, history, history_in_units, influx, require,
    victoria, victoria_export, victoria_points, victoria_with,
};
use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// `edge-agent replay --dir DIR ARGS...` to its end: (code, stdout, stderr).
async fn replay(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<String> = vec!["replay".into(), "--dir".into(), dir.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        support::edge_agent(&args)
    })
    .await
    .unwrap()
}

/// A temp dir with [`history`] recorded in its `data`: (dir, data).
async fn recorded() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    history(&data).await;
    (dir, data)
}

/// A loopback endpoint answering `status` to everything, counting
/// requests: its `/write` URL and the count.
async fn counting_endpoint(status: u16) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = support::serve_status(move |_req: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            status
        }
    })
    .await;
    (format!("http://{addr}/write"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_gets_line_protocol_unless_told_otherwise() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (dir, data) = recorded().await;
    let want = expected(&data);
    let vm = victoria(dir.path(), &binary).await;
    // No --format: line protocol, not the csv that VictoriaMetrics would
    // acknowledge and drop.
    let url = format!("{}/write", vm.url);
    let (code, _, err) = replay(&data, &["--output", &url, "--verify"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("720 row(s) acknowledged"), "{err}");
    let points = want.len();
    assert!(
        err.contains(&format!(
            "verified: VictoriaMetrics holds all {points} point(s) of the 720 row(s) sent"
        )),
        "{err}"
    );
    assert_same_points(&victoria_points(&vm.url).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_or_jsonl_to_a_url_is_refused_before_anything_is_sent() {
    let (_dir, data) = recorded().await;
    let (url, requests) = counting_endpoint(204).await;
    for format in ["csv", "jsonl"] {
        let (code, out, err) = replay(&data, &["--format", format, "--output", &url]).await;
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains(&format!("--output {url} with --format {format}: an HTTP endpoint takes InfluxDB line protocol")),
            "{err}"
        );
        assert!(
            err.contains("VictoriaMetrics acknowledges other text while storing none of it"),
            "{err}"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing sent");
}

/// Greenhouse in celsius, cold-store in fahrenheit, outdoor in kelvin for
/// its first hour and in celsius after (its sensors were changed).
fn mixed_units(group: usize, i: u32) -> edge_agent::config::Unit {
    use edge_agent::config::Unit;
    match (group, i) {
        (0, _) => Unit::Celsius,
        (1, _) => Unit::Fahrenheit,
        (_, i) if i < 120 => Unit::Kelvin,
        _ => Unit::Celsius,
    }
}

/// (group, unit) -> points of `ok`, as the history of [`mixed_units`] has them.
fn series_by_unit() -> BTreeMap<(String, String), u64> {
    [
        ("greenhouse", "celsius", 240),
        ("cold-store", "fahrenheit", 240),
        ("outdoor", "kelvin", 120),
        ("outdoor", "celsius", 120),
    ]
    .into_iter()
    .map(|(g, u, n)| ((g.to_string(), u.to_string()), n))
    .collect()
}

/// The history of [`mixed_units`] replayed as line protocol into `engine`
/// (started in the temp dir it is given) at `path` of its URL; the engine,
/// then its dir (so that the engine stops before the dir is removed).
async fn replayed_in_units<F>(
    start: impl FnOnce(std::path::PathBuf) -> F,
    path: &str,
) -> (Engine, tempfile::TempDir)
where
    F: std::future::Future<Output = Engine>,
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    history_in_units(&data, mixed_units).await;
    let engine = start(dir.path().to_path_buf()).await;
    let url = format!("{}{path}", engine.url);
    let (code, _, err) = replay(&data, &["--format", "influx", "--output", &url]).await;
    assert_eq!(code, 0, "{err}");
    (engine, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_tells_series_apart_in_victoriametrics() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (vm, _dir) =
        replayed_in_units(|d| async move { victoria(&d, &binary).await }, "/write").await;
    let body = victoria_export(&vm.url, "temperature_ok").await;
    let mut got = BTreeMap::new();
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let label = |k: &str| v["metric"][k].as_str().unwrap_or("(none)").to_string();
        let n = v["timestamps"].as_array().unwrap().len() as u64;
        *got.entry((label("group"), label("unit"))).or_default() += n;
    }
    assert_eq!(got, series_by_unit(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_tells_series_apart_in_influxdb() {
    let Some(binary) = require("influxd", "influxdb") else {
        return;
    };
    let (db, _dir) = replayed_in_units(
        |d| async move { influx(&d, &binary).await },
        "/write?db=edge",
    )
    .await;
    let query = url::Url::parse_with_params(
        &format!("{}/query", db.url),
        [
            ("db", "edge"),
            (
                "q",
                "SELECT count(ok) FROM temperature GROUP BY \"group\", \"unit\"",
            ),
        ],
    )
    .unwrap();
    let body = get_json(query).await;
    let mut got = BTreeMap::new();
    for series in body["results"][0]["series"]
        .as_array()
        .unwrap_or(&Vec::new())
    {
        let tag = |k: &str| series["tags"][k].as_str().unwrap_or("(none)").to_string();
        let n = series["values"][0][1].as_u64().unwrap();
        got.insert((tag("group"), tag("unit")), n);
    }
    assert_eq!(got, series_by_unit(), "{body}");
}

/// A hop in front of `upstream` (an engine, or nothing): GETs pass through
/// (the engine is asked what it is), POSTs are counted and their lines
/// kept, each forwarded to `upstream` when there is one; the `slow`-th
/// POST is answered `delay` late (after it was forwarded: stored, but
/// acknowledged after the replay stopped waiting).
struct Hop {
    url: String,
    posts: Arc<AtomicUsize>,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

/// An answer of the hop: status, headers, body.
type Answer = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// `r` (an engine's answer) as the hop gives it back: status, the
/// engine's own headers (`X-Influxdb-Build`) and body.
async fn relay(r: reqwest::Response) -> Answer {
    let mut answer = hyper::Response::builder().status(r.status().as_u16());
    for (name, value) in r.headers() {
        if name.as_str().starts_with("x-") || name == "content-type" {
            answer = answer.header(name.as_str(), value.as_bytes());
        }
    }
    answer
        .body(http_body_util::Full::new(r.bytes().await.unwrap()))
        .unwrap()
}

fn empty(status: u16) -> Answer {
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

async fn hop(upstream: Option<String>, slow: usize, delay: Duration) -> Hop {
    hop_dropping(upstream, slow, delay, 0).await
}

/// [`hop`] that answers its `drop`-th POST 204 without forwarding it: an
/// acknowledgement with nothing stored.
async fn hop_dropping(upstream: Option<String>, slow: usize, delay: Duration, drop: usize) -> Hop {
    use http_body_util::BodyExt;
    let posts = Arc::new(AtomicUsize::new(0));
    let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, kept, client) = (posts.clone(), lines.clone(), support::client());
    let handle = move |req: hyper::Request<hyper::body::Incoming>| {
        let (seen, kept, client, upstream) =
            (seen.clone(), kept.clone(), client.clone(), upstream.clone());
        async move {
            let target = upstream.map(|u| format!("{u}{}", req.uri()));
            if req.method() == hyper::Method::GET {
                return Ok::<_, std::convert::Infallible>(match target {
                    Some(t) => relay(client.get(t).send().await.unwrap()).await,
                    None => empty(404),
                });
            }
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            kept.lock()
                .unwrap()
                .extend(text.lines().map(str::to_string));
            let answer = match target {
                Some(t) if n != drop => {
                    relay(client.post(t).body(body).send().await.unwrap()).await
                }
                _ => empty(204),
            };
            if n == slow {
                tokio::time::sleep(delay).await;
            }
            Ok(answer)
        }
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(handle.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    Hop {
        url: format!("http://{addr}"),
        posts,
        lines,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_batch_is_not_sent_twice_to_an_endpoint_that_may_append() {
    let (_dir, data) = recorded().await;
    // The 2nd batch is taken (its lines kept) and answered after 5 s; the
    // replay waits 1 s.
    let h = hop(None, 2, Duration::from_secs(5)).await;
    let url = format!("{}/write", h.url);
    let args = ["--batch-rows", "100", "--timeout", "1s", "--output", &url];
    let (code, _, err) = replay(&data, &args).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{url}: rows 101..=200 were sent but not acknowledged (no answer within 1s); \
             they may or may not be stored. Not sent again: {url} answers as an endpoint that is \
             neither InfluxDB nor VictoriaMetrics"
        )),
        "{err}"
    );
    assert_eq!(
        h.posts.load(Ordering::SeqCst),
        2,
        "the batch was not sent again"
    );
    let lines = h.lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 200, "each row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_batch_is_resent_to_victoriametrics_that_deduplicates() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (dir, data) = recorded().await;
    let want = expected(&data);
    let flags = ["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"];
    let vm = victoria_with(dir.path(), &binary, &flags).await;
    // The 3rd POST is stored at once and acknowledged 5 s late.
    let h = hop(Some(vm.url.clone()), 3, Duration::from_secs(5)).await;
    let url = format!("{}/write", h.url);
    let args = ["--batch-rows", "50", "--timeout", "1s", "--output", &url];
    let (code, _, err) = replay(&data, &args).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rows 101..=150 not acknowledged (no answer within 1s; VictoriaMetrics overwrites the same points, so it is sent again)"),
        "{err}"
    );
    assert!(
        err.contains(
            "720 row(s) acknowledged in 15 batch(es), 1 retried (1 resent after no answer)"
        ),
        "{err}"
    );
    assert_eq!(h.posts.load(Ordering::SeqCst), 16);
    assert_same_points(&victoria_points(&vm.url).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_give_up_after_cap_a_dead_endpoint() {
    let (_dir, data) = recorded().await;
    let (url, posts) = counting_endpoint(503).await;
    // --attempts: exactly that many sends.
    let (code, _, err) = replay(&data, &["--attempts", "3", "--output", &url]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{url}: rows 1..=720 not acknowledged after 3 attempt(s) in "
        )),
        "{err}"
    );
    assert!(
        err.contains("(--attempts 3 reached); last error: HTTP 503"),
        "{err}"
    );
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    // --give-up-after: pauses of 0.2, 0.4, 0.8 s ... stop before 1 s has
    // passed, long before 100 attempts.
    let started = Instant::now();
    let args = [
        "--attempts",
        "100",
        "--give-up-after",
        "1s",
        "--output",
        &url,
    ];
    let (code, _, err) = replay(&data, &args).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(--give-up-after 1s reached)"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let sent = posts.load(Ordering::SeqCst) - 3;
    assert!((1..=4).contains(&sent), "{sent} sends in 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_batch_is_not_resent_to_victoriametrics_that_keeps_duplicates() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (dir, data) = recorded().await;
    // Without -dedup.minScrapeInterval VictoriaMetrics keeps both copies
    // of a point sent twice.
    let vm = victoria(dir.path(), &binary).await;
    let h = hop(Some(vm.url.clone()), 1, Duration::from_secs(5)).await;
    let url = format!("{}/write", h.url);
    let args = ["--batch-rows", "50", "--timeout", "1s", "--output", &url];
    let (code, _, err) = replay(&data, &args).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "answers as VictoriaMetrics without -dedup.minScrapeInterval (which keeps both copies)"
        ),
        "{err}"
    );
    assert_eq!(h.posts.load(Ordering::SeqCst), 1, "not sent again");
}

/// `readings.csv` in `dir`: group `g` (celsius), 10 rows 30 s apart 40
/// days ago and 10 rows 30 s apart from two hours ago; every row has all
/// five fields (50 points of each ten).
fn old_and_new(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let now = SystemTime::now();
    let mut text = String::from("time,group,mean,min,max,unit,ok,failed\n");
    for start in [
        now - Duration::from_secs(40 * 86_400),
        now - Duration::from_secs(7200),
    ] {
        let start = edge_agent::schedule::align_down(start, Duration::from_secs(30));
        for i in 0..10u64 {
            let t = humantime::format_rfc3339_millis(start + Duration::from_secs(30 * i));
            text.push_str(&format!("{t},g,{i}.500,{i}.000,{i}.900,celsius,3,0\n"));
        }
    }
    std::fs::write(dir.join("readings.csv"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_victoriametrics_dropped_rows_older_than_its_retention() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    old_and_new(&data);
    // VictoriaMetrics' default retention: one month.
    let vm = victoria_with(dir.path(), &binary, &[]).await;
    let url = format!("{}/write", vm.url);
    let (code, _, err) = replay(&data, &["--output", &url, "--verify"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("20 row(s) acknowledged"), "{err}");
    assert!(
        err.contains("error: verify: VictoriaMetrics holds 50 of the 100 point(s) sent (50 missing): group g (celsius) mean: 10 of 20;"),
        "{err}"
    );
    assert!(
        err.contains("; 10 row(s) sent (up to ") && err.contains("are older than the retention of VictoriaMetrics (31d), which drops such rows; start VictoriaMetrics with a longer -retentionPeriod"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_asks_influxdb_and_its_retention_policy() {
    let Some(binary) = require("influxd", "influxdb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    old_and_new(&data);
    let db = influx(dir.path(), &binary).await;
    // The default policy keeps everything: all is there.
    let url = format!("{}/write?db=edge", db.url);
    let (code, _, err) = replay(&data, &["--output", &url, "--verify"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("verified: InfluxDB holds all 100 point(s) of the 20 row(s) sent"),
        "{err}"
    );
    // A policy of a week: the rows of 40 days ago are dropped (InfluxDB
    // says so in a 400 for the batch, having stored the rest).
    let create = url::Url::parse_with_params(
        &format!("{}/query", db.url),
        [(
            "q",
            "CREATE RETENTION POLICY week ON edge DURATION 7d REPLICATION 1",
        )],
    )
    .unwrap();
    assert!(
        support::client()
            .post(create)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let url = format!("{}/write?db=edge&rp=week", db.url);
    let (code, _, err) = replay(&data, &["--output", &url, "--verify"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("20 row(s) acknowledged in 1 batch(es), 0 retried (0 resent after no answer); the engine dropped 10 row(s) as older than its retention policy"),
        "{err}"
    );
    assert!(
        err.contains("error: verify: InfluxDB holds 50 of the 100 point(s) sent (50 missing)"),
        "{err}"
    );
    assert!(
        err.contains("are older than the retention of InfluxDB (7d), which drops such rows"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_batch_acknowledged_but_not_stored() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (dir, data) = recorded().await;
    let vm = victoria(dir.path(), &binary).await;
    // The 2nd batch (rows 51..=100, all of one hour of three groups) is
    // answered 204 and never reaches VictoriaMetrics.
    let h = hop_dropping(Some(vm.url.clone()), 0, Duration::ZERO, 2).await;
    let url = format!("{}/write", h.url);
    let (code, _, err) = replay(&data, &["--batch-rows", "50", "--output", &url, "--verify"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("720 row(s) acknowledged in 15 batch(es)"),
        "{err}"
    );
    // The points of rows 51..=100, as the csv replay has them.
    let (_, csv, _) = replay(&data, &[]).await;
    let points = |row: &str| {
        2 + row
            .split(',')
            .skip(2)
            .take(3)
            .filter(|v| !v.is_empty())
            .count()
    };
    let lost: usize = csv.lines().skip(1).skip(50).take(50).map(points).sum();
    let sent: usize = csv.lines().skip(1).map(points).sum();
    assert!(
        err.contains(&format!(
            "error: verify: VictoriaMetrics holds {} of the {sent} point(s) sent ({lost} missing): group ",
            sent - lost
        )),
        "{err}"
    );
    assert!(!err.contains("retention"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_needs_an_engine_to_ask() {
    let (dir, data) = recorded().await;
    let (url, requests) = counting_endpoint(204).await;
    let (code, _, err) = replay(&data, &["--output", &url, "--verify"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("error: --verify: {url} answers as an endpoint that is neither InfluxDB nor VictoriaMetrics; replay can only ask InfluxDB and VictoriaMetrics what they stored")),
        "{err}"
    );
    // Asked what it is (/ping, /metrics), sent no rows.
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    let out = dir.path().join("out.csv");
    let (code, _, err) = replay(&data, &["--output", out.to_str().unwrap(), "--verify"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--verify asks the engine what it stored: it needs --output URL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_show_the_url_without_its_password() {
    let (_dir, data) = recorded().await;
    let (url, _) = counting_endpoint(404).await;
    let with_secret = format!("{url}?db=edge&u=me&p=s3cret");
    let (code, _, err) = replay(&data, &["--output", &with_secret]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{url}?db=edge&u=me&p=%3Credacted%3E refused rows 1..=720 with HTTP 404"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_influxdb_database_is_named_with_how_to_create_it() {
    let Some(binary) = require("influxd", "influxdb") else {
        return;
    };
    let (dir, data) = recorded().await;
    let db = influx(dir.path(), &binary).await;
    let url = format!("{}/write?db=site", db.url);
    let (code, _, err) = replay(&data, &["--output", &url]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "refused rows 1..=720 with HTTP 404: {{\"error\":\"database not found: \\\"site\\\"\"}}; \
             create it first: curl -XPOST {}/query --data-urlencode 'q=CREATE DATABASE \"site\"'",
            db.url
        )),
        "{err}"
    );
}
