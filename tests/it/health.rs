//! The health listener and systemd's notify protocol, with the real binary:
//! `/metrics` counts what happened, `/healthz` turns 503 when a cycle runs
//! out of time, and READY/WATCHDOG/STOPPING reach a notify socket.

use crate::support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::{Agent, Reply, TestServer, client};

/// How long a notification or the agent may take.
const LIMIT: Duration = Duration::from_secs(20);

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Datagrams on the notify socket until `done` holds for all received so
/// far; panics naming `what` if that takes longer than [`LIMIT`].
fn notifications(
    socket: &UnixDatagram,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !done(&seen) {
        let left = LIMIT.checked_sub(start.elapsed());
        let left = left.filter(|l| !l.is_zero());
        let left = left.unwrap_or_else(|| panic!("no {what} within {LIMIT:?}: {seen:?}"));
        socket.set_read_timeout(Some(left)).unwrap();
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what} within {LIMIT:?} ({e}): {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    seen
}

/// The agent's config; its metrics listener on port 0 (the system picks).
fn config(dir: &std::path::Path, server: &TestServer, sensors: usize, limit: usize) -> String {
    let mut s = format!(
        "interval: 500ms\ntimeout: 450ms\nlimit: {limit}\nlimit_per_host: {limit}\noutput: {{ dir: {} }}\nmetrics: {{ listen: 127.0.0.1:0 }}\ngroups:\n  - name: g\n    unit: celsius\n    sensors:\n",
        dir.join("data").display()
    );
    for i in 0..sensors {
        s.push_str(&format!(
            "      - {{ id: s{i}, url: '{}', format: text }}\n",
            server.url(0, "/v")
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_and_healthz_reports_cycles_that_run_out_of_time() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, config(dir.path(), &server, 3, 1)).unwrap();
    let mut agent = Agent::start(&["run", "--config", path.to_str().unwrap()], dir.path());
    support::wait_rows(&dir.path().join("data/readings.csv"), 2, LIMIT, |_| true).await;
    // The port the system picked, read from the agent's socket; the log
    // names that port, not the configured 0.
    let bound = support::listening_addr(&mut agent.child, LIMIT).await;
    let serving = format!("serving http://{bound}/metrics and /healthz");
    assert!(agent.log_text().contains(&serving), "{}", agent.log_text());
    let base = format!("http://{bound}");
    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("edge_agent_sensors_ok{group=\"g\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_agent_sensors_failed{group=\"g\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE edge_agent_rows_written_total counter"),
        "{metrics}"
    );
    let rows = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_agent_rows_written_total "))
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(rows >= 2.0, "{metrics}");
    for name in [
        "cycles_total",
        "skipped_ticks_total",
        "bytes_written_total",
        "rotations_total",
        "write_errors_total",
        "rows_dropped_total",
        "cycle_duration_seconds",
    ] {
        assert!(
            metrics.contains(&format!("edge_agent_{name} ")),
            "{name} missing:\n{metrics}"
        );
    }

    // Sensors slow enough that one request at a time cannot finish the cycle.
    server.route("/v", Reply::ok("20").after(Duration::from_millis(200)));
    let start = std::time::Instant::now();
    loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        if status == 503 {
            assert!(body.contains("ran out of time"), "{body}");
            break;
        }
        assert!(start.elapsed() < LIMIT, "healthz never turned 503");
        // The interval between checks (each an HTTP request) of a wait
        // bounded by LIMIT.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let path = dir.path().join("agent.yaml");
    let text = config(dir.path(), &server, 1, 1).replace("metrics: ", "# metrics: ");
    std::fs::write(&path, text).unwrap();
    let log = dir.path().join("agent.log");
    let mut child = std::process::Command::new(support::binary())
        .args(["run", "--config", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let seen = notifications(&socket, "READY=1 and two WATCHDOG=1", |seen| {
        seen.iter().any(|m| m.contains("READY=1"))
            && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
    });
    assert!(seen[0].contains("READY=1"), "READY comes first: {seen:?}");
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    notifications(&socket, "STOPPING=1", |seen| {
        seen.last().is_some_and(|m| m.contains("STOPPING=1"))
    });
    assert!(
        child.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_while_a_long_cycle_runs() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("20").after(Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let path = dir.path().join("agent.yaml");
    let text = config(dir.path(), &server, 1, 1)
        .replace("metrics: ", "# metrics: ")
        .replace("interval: 500ms", "interval: 5s")
        .replace("timeout: 450ms", "timeout: 4s");
    std::fs::write(&path, text).unwrap();
    // As systemd does: WATCHDOG_PID names the service's own pid (the shell
    // execs the agent, so `$$` is the agent's pid).
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"")
        .arg(support::binary())
        .arg(&path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the sensor's (3 s) request to be in flight.
    support::wait_until(LIMIT, "the sensor's request", || {
        server.counters.requests() > 0
    })
    .await;
    // Drop what was sent before, then count pings while the request runs.
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
    notifications(&socket, "two watchdog pings during the cycle", |seen| {
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
    });
    assert_eq!(server.counters.max_total(), 1);
    assert!(
        server
            .counters
            .total
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1,
        "the pings came while the request was still in flight"
    );
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
