//! `replay --output URL` as an operator meets it: the format an endpoint
//! takes, the unit as a tag, timeouts and attempts, and `--verify` against
//! what the engine stored. Real VictoriaMetrics and InfluxDB where an engine
//! is involved (started by [`crate::engines`]' helpers on 127.0.0.1); a
//! loopback server where the point is how replay treats any endpoint.

use crate::engines::{
    Engine, assert_same_points, expected, get_json, history, history_in_units, influx, require,
    victoria, victoria_export, victoria_points,
};
use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A loopback endpoint answering 204 to everything, counting requests.
async fn counting_endpoint() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = support::serve_status(move |_req: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            204
        }
    })
    .await;
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_gets_line_protocol_unless_told_otherwise() {
    let Some(binary) = require("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    history(&data).await;
    let want = expected(&data);
    let vm = victoria(dir.path(), &binary).await;
    // No --format: line protocol, not the csv that VictoriaMetrics would
    // acknowledge and drop.
    let (code, _, err) = replay(&data, &["--output", &format!("{}/write", vm.url)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("720 row(s) acknowledged"), "{err}");
    assert_same_points(&victoria_points(&vm.url).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_or_jsonl_to_a_url_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    history(&data).await;
    let (url, requests) = counting_endpoint().await;
    let url = format!("{url}/write");
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
