//! The real binary end to end: rows with the right averages, SIGTERM
//! finishing the cycle in flight, SIGHUP with a good and a bad config, and
//! the shipped demo config with `--simulate`.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::{Agent, Reply, TestServer, fields, group, wait_rows, write};

const LIMIT: Duration = Duration::from_secs(20);

fn head(dir: &Path, interval: &str, timeout: &str) -> String {
    format!(
        "interval: {interval}\ntimeout: {timeout}\nlimit: 10\nlimit_per_host: 5\noutput:\n  dir: {}\n  fsync: always\ngroups:\n",
        dir.join("data").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hold_the_averages_in_the_group_unit() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/c", Reply::ok("20.0"));
    server.route("/f", Reply::ok(r#"{"t": 68.0}"#));
    server.route("/k", Reply::ok("# TYPE t gauge\nt{s=\"k\"} 295.15\n"));
    server.route("/bad", Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let mut text = head(dir.path(), "500ms", "300ms");
    text += &group(
        "mixed",
        "celsius",
        &[
            format!("{{ id: c, url: '{}', format: text }}", server.url(0, "/c")),
            format!(
                "{{ id: f, url: '{}', format: json, value: /t, unit: fahrenheit }}",
                server.url(0, "/f")
            ),
            format!(
                "{{ id: k, url: '{}', format: prometheus, value: 't{{s=\"k\"}}', unit: kelvin }}",
                server.url(0, "/k")
            ),
            format!(
                "{{ id: bad, url: '{}', format: text }}",
                server.url(0, "/bad")
            ),
        ],
    );
    text += &group(
        "dead",
        "celsius",
        &[format!(
            "{{ id: dead, url: '{}', format: text }}",
            server.url(0, "/bad")
        )],
    );
    text += &group(
        "imperial",
        "fahrenheit",
        &[format!(
            "{{ id: c2, url: '{}', format: text, unit: celsius }}",
            server.url(0, "/c")
        )],
    );
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    let rows = wait_rows(&csv, 6, LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());

    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("time,group,mean,min,max,unit,ok,failed\n"));
    for row in rows {
        let f = fields(&row);
        assert_eq!(f.len(), 8, "{row}");
        assert!(
            humantime::parse_rfc3339(&f[0]).is_ok() && f[0].len() == 24,
            "{row}"
        );
        match f[1].as_str() {
            "mixed" => assert_eq!(
                &f[2..],
                ["20.667", "20.000", "22.000", "celsius", "3", "1"],
                "{row}"
            ),
            "dead" => assert_eq!(&f[2..], ["", "", "", "celsius", "0", "1"], "{row}"),
            "imperial" => assert_eq!(
                &f[2..],
                ["68.000", "68.000", "68.000", "fahrenheit", "1", "0"],
                "{row}"
            ),
            other => panic!("unexpected group {other}"),
        }
    }
    // The failing sensors are logged once each, with the reason, not every cycle.
    let log = agent.log_text();
    assert_eq!(
        log.matches("sensor failing: HTTP status 500").count(),
        2,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_cycle_in_flight_and_flushes() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/slow", Reply::ok("21.5").after(Duration::from_millis(400)));
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        head(dir.path(), "1s", "800ms").replace("  fsync: always\n", "  fsync: rotate\n");
    text += &group(
        "g",
        "celsius",
        &[format!(
            "{{ id: s, url: '{}', format: text }}",
            server.url(0, "/slow")
        )],
    );
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    wait_rows(&csv, 1, LIMIT, |_| true).await;
    // Wait for the next cycle's request to be in flight (it takes 400ms),
    // then stop.
    let seen = server.counters.requests();
    support::wait_until(LIMIT, "the next cycle's request", || {
        server.counters.requests() > seen
    })
    .await;
    let before = support::rows(&csv).len();
    agent.signal(libc::SIGTERM);
    let status = agent.wait(LIMIT);
    assert!(status.success(), "exit {status:?}\n{}", agent.log_text());
    let rows = support::rows(&csv);
    assert_eq!(
        rows.len(),
        before + 1,
        "the cycle in flight is written:\n{rows:#?}"
    );
    assert!(
        rows.last()
            .unwrap()
            .ends_with(",21.500,21.500,21.500,celsius,1,0"),
        "{rows:#?}"
    );
    assert!(std::fs::read_to_string(&csv).unwrap().ends_with('\n'));
    assert!(agent.log_text().contains("SIGTERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_keeps_running_on_a_bad_one() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("1"));
    server.route("/b", Reply::ok("2"));
    let dir = tempfile::tempdir().unwrap();
    let base = head(dir.path(), "300ms", "200ms");
    let a = group(
        "a",
        "celsius",
        &[format!(
            "{{ id: a, url: '{}', format: text }}",
            server.url(0, "/a")
        )],
    );
    let b = group(
        "b",
        "celsius",
        &[format!(
            "{{ id: b, url: '{}', format: text }}",
            server.url(0, "/b")
        )],
    );
    let config = write(dir.path(), "agent.yaml", &format!("{base}{a}"));
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    let is = |g: &'static str| move |r: &str| r.split(',').nth(1) == Some(g);
    wait_rows(&csv, 2, LIMIT, is("a")).await;

    // A valid new config: group b appears.
    write(dir.path(), "agent.yaml", &format!("{base}{a}{b}"));
    agent.signal(libc::SIGHUP);
    wait_rows(&csv, 2, LIMIT, is("b")).await;
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;

    // A broken config: refused with the reason, the running config stays.
    write(
        dir.path(),
        "agent.yaml",
        &format!("{base}{a}{b}").replace("timeout: 200ms", "timeout: 2s"),
    );
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(LIMIT, |l| l.contains("reload refused"))
        .await;
    assert!(
        agent
            .log_text()
            .contains("timeout: must be shorter than interval"),
        "{}",
        agent.log_text()
    );
    let b_rows = support::rows(&csv)
        .into_iter()
        .filter(|r| is("b")(r))
        .count();
    wait_rows(&csv, b_rows + 3, LIMIT, is("b")).await;

    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    // Rows stay unique per group and time across the reload.
    let rows = support::rows(&csv);
    let mut keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (fields(r)[1].clone(), fields(r)[0].clone()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate rows:\n{rows:#?}");
}

/// A port nothing listens on right now (a listener on port 0, dropped).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_demo_runs_with_simulated_sensors() {
    /// Starts with other ports when another process took one meanwhile.
    const TRIES: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/agent.yaml")).unwrap();
    let csv = dir.path().join("data/readings.csv");
    // Same config on free ports, so the test never collides with a running
    // demo. `--simulate` listens on the ports the sensors' URLs name, so
    // they cannot be port 0: ports free a moment ago are written in, and
    // should another process bind one before the agent does, the agent
    // exits saying so and the test starts it again on new ones.
    let mut tries = 0;
    let mut agent = loop {
        tries += 1;
        let mut text = shipped.clone();
        for port in ["18321", "18322"] {
            text = text.replace(port, &unused_port().to_string());
        }
        let config = write(dir.path(), "agent.yaml", &text);
        let mut agent = Agent::start(
            &["run", "--config", config.to_str().unwrap(), "--simulate"],
            dir.path(),
        );
        let mut exited = None;
        support::wait_until(LIMIT, "4 rows or the agent's exit", || {
            exited = agent.child.try_wait().unwrap();
            exited.is_some() || support::rows(&csv).len() >= 4
        })
        .await;
        let Some(status) = exited else {
            break agent;
        };
        let log = agent.log_text();
        assert!(
            tries < TRIES && log.contains("Address already in use"),
            "the agent exited with {status}:\n{log}"
        );
    };
    let rows = wait_rows(&csv, 4, LIMIT, |_| true).await;
    agent.signal(libc::SIGINT);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    for row in rows {
        let f = fields(&row);
        assert_eq!(f.len(), 8, "{row}");
        let mean: f64 = f[2].parse().unwrap_or_else(|_| panic!("{row}"));
        let (lo, hi) = if f[5] == "fahrenheit" {
            (50.0, 86.0)
        } else {
            (10.0, 30.0)
        };
        assert!(
            (lo..hi).contains(&mean),
            "implausible simulated value: {row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sensor_is_logged_when_it_fails_and_when_it_recovers_not_every_cycle() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/flip", Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut text = head(dir.path(), "200ms", "100ms");
    text += &group(
        "g",
        "celsius",
        &[format!(
            "{{ id: flip, url: '{}', format: text }}",
            server.url(0, "/flip")
        )],
    );
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    wait_rows(&csv, 4, LIMIT, |r| r.ends_with(",0,1")).await;
    server.route("/flip", Reply::ok("5"));
    wait_rows(&csv, 2, LIMIT, |r| r.ends_with(",1,0")).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success());
    let log = agent.log_text();
    assert_eq!(
        log.matches("sensor failing: HTTP status 503").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("sensor recovered after").count(), 1, "{log}");
    assert!(
        log.contains("sensor=flip"),
        "the log names the sensor: {log}"
    );
}
