//! `forward:` and SIGHUP: a reload that adds a target starts it (from the
//! oldest row: nothing written before the reload is missed), one that
//! removes it stops it, and one that changes nothing in it leaves it
//! running without starting over.

use crate::support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;

/// A fake engine on loopback: every line-protocol line it is sent.
async fn engine() -> (String, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let addr = support::serve_status(move |req: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            seen.lock()
                .unwrap()
                .extend(text.lines().map(str::to_string));
            204
        }
    })
    .await;
    (format!("http://{addr}/write"), lines)
}

fn write_config(dir: &Path, site: &str, forward: &str) -> std::path::PathBuf {
    let text = format!(
        "interval: 200ms\ntimeout: 100ms\noutput:\n  dir: {}/out\ngroups:\n{}{forward}",
        dir.display(),
        support::group(
            "greenhouse",
            "celsius",
            &[format!(
                "{{ id: a, url: \"{site}/j\", format: json, value: /t }}"
            )]
        )
    );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_starts_and_stops_a_forward_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(&["127.0.0.1"]).await;
    server.route("/j", support::Reply::ok(r#"{"t": 20.5}"#));
    let site = server.url(0, "").trim_end_matches('/').to_string();
    let (url, lines) = engine().await;
    let config = write_config(dir.path(), &site, "");
    let agent = support::Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("out/readings.csv");
    let limit = Duration::from_secs(20);
    support::wait_rows(&csv, 3, limit, |_| true).await;
    assert!(lines.lock().unwrap().is_empty());

    // Added: every row so far arrives, those written before the reload too.
    let forward =
        format!("forward:\n  - name: central\n    url: {url}\n    batch: {{ max_delay: 100ms }}\n");
    write_config(dir.path(), &site, &forward);
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(limit, |l| l.contains("new configuration applied"))
        .await;
    let before = support::rows(&csv);
    let first_time = support::fields(&before[0])[0].clone();
    let want = before.len();
    assert!(
        support::eventually(limit, || lines.lock().unwrap().len() >= want).await,
        "only {} of {want} rows forwarded:\n{}",
        lines.lock().unwrap().len(),
        agent.log_text()
    );
    let first_ns = edge_agent::history::parse::time(first_time.as_bytes())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    assert!(
        lines.lock().unwrap()[0].ends_with(&first_ns),
        "the first row written is the first sent: {:?}",
        lines.lock().unwrap()[0]
    );
    // Saved once the acknowledgement is in, just after the engine had the rows.
    let cursor = dir.path().join("out/.readings.forward.central");
    assert!(support::eventually(limit, || cursor.exists()).await);

    // The same forward section, another change: the target keeps going
    // (no second "no cursor yet" / "resuming" line).
    let logged = agent.log_text();
    let resumed =
        logged.matches("resuming at byte").count() + logged.matches("no cursor yet").count();
    assert_eq!(resumed, 1, "{logged}");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval: 200ms", "interval: 250ms");
    std::fs::write(&config, text).unwrap();
    let applied = agent
        .log_text()
        .matches("new configuration applied")
        .count();
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(limit, |l| {
            l.matches("new configuration applied").count() > applied
        })
        .await;
    let logged = agent.log_text();
    assert_eq!(
        logged.matches("resuming at byte").count() + logged.matches("no cursor yet").count(),
        1,
        "an unchanged target was restarted: {logged}"
    );

    // Removed: nothing more is sent, rows go on being written.
    write_config(dir.path(), &site, "");
    let applied = agent
        .log_text()
        .matches("new configuration applied")
        .count();
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(limit, |l| {
            l.matches("new configuration applied").count() > applied
        })
        .await;
    let sent = lines.lock().unwrap().len();
    let rows = support::rows(&csv).len();
    support::wait_rows(&csv, rows + 5, limit, |_| true).await;
    assert!(
        lines.lock().unwrap().len() <= sent,
        "rows were sent after the target was removed"
    );
    // The cursor stays, so the name resumes where it was if it comes back.
    assert!(cursor.exists());
    assert!(!agent.log_text().contains("panicked"));
}

/// SIGTERM: the rows of the last cycle and of the windows still open are
/// written, then sent before the agent exits (not left to the next start),
/// even with a max_delay far longer than the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_sends_the_last_rows_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(&["127.0.0.1"]).await;
    server.route("/j", support::Reply::ok(r#"{"t": 20.5}"#));
    let site = server.url(0, "").trim_end_matches('/').to_string();
    let (url, lines) = engine().await;
    let forward =
        format!("forward:\n  - name: central\n    url: {url}\n    batch: {{ max_delay: 1h }}\n");
    let config = write_config(dir.path(), &site, &forward);
    let mut agent =
        support::Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("out/readings.csv");
    support::wait_rows(&csv, 3, Duration::from_secs(20), |_| true).await;
    assert!(
        lines.lock().unwrap().is_empty(),
        "max_delay 1h: nothing sent yet"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(20)).success());
    let written = support::rows(&csv).len();
    assert_eq!(
        lines.lock().unwrap().len(),
        written,
        "every row written was sent before the exit:\n{}",
        agent.log_text()
    );
}

/// After a power cut the active file may have lost its unsynced end under
/// the cursor and grown again with other rows: the row before the cursor's
/// offset is then not the last row sent. The target reads the file from its
/// start (what was sent is sent again, which overwrites) instead of going on
/// from a byte in the middle of rows it never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_what_the_file_kept_reads_it_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(&["127.0.0.1"]).await;
    server.route("/j", support::Reply::ok(r#"{"t": 20.5}"#));
    let site = server.url(0, "").trim_end_matches('/').to_string();
    let (url, lines) = engine().await;
    let forward =
        format!("forward:\n  - name: central\n    url: {url}\n    batch: {{ max_delay: 100ms }}\n");
    let config = write_config(dir.path(), &site, &forward);
    let args = ["run", "--config", config.to_str().unwrap()];
    let mut agent = support::Agent::start(&args, dir.path());
    let csv = dir.path().join("out/readings.csv");
    support::wait_rows(&csv, 3, Duration::from_secs(20), |_| true).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(20)).success());
    let sent = lines.lock().unwrap().len();
    assert_eq!(sent, support::rows(&csv).len());
    // The cursor's last row is not the row before its offset any more, as
    // when the file was cut back and written again past it.
    let cursor = dir.path().join("out/.readings.forward.central");
    let text = std::fs::read_to_string(&cursor).unwrap();
    let time = text
        .lines()
        .find_map(|l| l.strip_prefix("time "))
        .unwrap()
        .to_string();
    std::fs::write(&cursor, text.replace(&time, "2001-01-01T00:00:00.000Z")).unwrap();
    let first_row_line = lines.lock().unwrap()[0].clone();

    let mut agent = support::Agent::start(&args, dir.path());
    agent
        .wait_log(Duration::from_secs(20), |l| {
            l.contains("as the cursor says") && l.contains("reading it from its start")
        })
        .await;
    assert!(
        support::eventually(Duration::from_secs(20), || {
            lines.lock().unwrap()[sent..].contains(&first_row_line)
        })
        .await,
        "the file's first row was not sent again:\n{}",
        agent.log_text()
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(20)).success());
}
