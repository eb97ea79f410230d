//! `replay --output URL` as an operator meets it: the format an endpoint
//! takes, the unit as a tag, timeouts and attempts, and `--verify` against
//! what the engine stored. Real VictoriaMetrics and InfluxDB where an engine
//! is involved (started by [`crate::engines`]' helpers on 127.0.0.1); a
//! loopback server where the point is how replay treats any endpoint.

use crate::engines::{assert_same_points, expected, history, require, victoria, victoria_points};
use crate::support;

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
