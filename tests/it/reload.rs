//! Reloads (SIGHUP) without side effects, with the real binary: sensors that
//! stay keep their place in the failure log, a group whose window and
//! sensors did not change keeps its open window (its rows stay complete), a
//! changed group's window is cut and the log says so, ticks lost to reloads
//! are counted, and a reload slow to read its file does not stop polling.

use crate::support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use support::{Agent, Reply, TestServer, fields, group, wait_rows, write};

const LIMIT: Duration = Duration::from_secs(20);

/// agent.yaml around `groups` (entries made by [`support::group`]), with the
/// metrics listener on a port the system picks.
fn agent_yaml(dir: &Path, interval: &str, timeout: &str, groups: &str) -> String {
    format!(
        "interval: {interval}\ntimeout: {timeout}\noutput: {{ dir: '{}', fsync: always }}\nmetrics: {{ listen: 127.0.0.1:0 }}\ngroups:\n{groups}",
        dir.join("data").display()
    )
}

/// A celsius group whose rows each span `window`.
fn windowed(name: &str, window: &str, sensors: &[String]) -> String {
    group(name, "celsius", sensors).replace(
        "    sensors:\n",
        &format!("    window: {window}\n    sensors:\n"),
    )
}

fn sensor(id: &str, url: &str) -> String {
    format!("{{ id: {id}, url: '{url}', format: text }}")
}

fn csv(dir: &Path) -> std::path::PathBuf {
    dir.join("data/readings.csv")
}

fn of(group: &str) -> impl Fn(&str) -> bool + '_ {
    move |row| row.split(',').nth(1) == Some(group)
}

/// The rows of `group`, split into fields.
fn rows_of(dir: &Path, group: &str) -> Vec<Vec<String>> {
    support::rows(&csv(dir))
        .iter()
        .filter(|r| of(group)(r))
        .map(|r| fields(r))
        .collect()
}

/// Log lines holding every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// Grid times between the first and the last row (of one group with one
/// row per tick `step` apart) that have no row. Panics on a time twice.
fn holes(rows: &[Vec<String>], step: Duration) -> u64 {
    let mut times: Vec<SystemTime> = rows
        .iter()
        .map(|f| humantime::parse_rfc3339(&f[0]).unwrap())
        .collect();
    times.sort();
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "a time twice: {rows:?}");
    times
        .windows(2)
        .map(|w| (w[1].duration_since(w[0]).unwrap().as_nanos() / step.as_nanos()) as u64 - 1)
        .sum()
}

/// Every (time, group) once.
fn assert_unique(dir: &Path) {
    let rows = support::rows(&csv(dir));
    let mut keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let f = fields(r);
            (f[1].clone(), f[0].clone())
        })
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a (time, group) twice:\n{rows:#?}");
}

/// Send SIGHUP and wait until the agent has applied `n` configurations.
async fn reload(agent: &Agent, n: usize) {
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(LIMIT, |l| {
            l.matches("new configuration applied").count() >= n
        })
        .await;
}

/// Wait for a new row of `group`, then for the first polls of the window
/// after it (`sensors` requests): a reload asked now lands inside a window,
/// with the rest of the window ahead.
async fn inside_a_window(server: &TestServer, dir: &Path, group: &str, sensors: usize) {
    let n = rows_of(dir, group).len();
    wait_rows(&csv(dir), n + 1, LIMIT, of(group)).await;
    let seen = server.counters.requests();
    support::wait_until(LIMIT, "the next window's first polls", || {
        server.counters.requests() >= seen + sensors
    })
    .await;
}

/// Stop the agent; it must exit 0. Returns its log.
fn stop(mut agent: Agent) -> String {
    agent.signal(libc::SIGTERM);
    let status = agent.wait(LIMIT);
    let log = agent.log_text();
    assert!(status.success(), "exit {status:?}\n{log}");
    log
}

/// The `N tick(s) skipped` of the agent's last line.
fn summary_skipped(log: &str) -> u64 {
    let line = lines_with(log, &["stopped after"]);
    let line = line.last().unwrap_or_else(|| panic!("no summary:\n{log}"));
    let before = line.split(" tick(s) skipped").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_that_stay_keep_their_place_in_the_failure_log() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/ok", Reply::ok("20"));
    let dead = support::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let sensors = [
        sensor("live", &server.url(0, "/ok")),
        sensor("dead", &format!("http://{}/t", dead.addr)),
    ];
    let text = agent_yaml(
        dir.path(),
        "200ms",
        "100ms",
        &group("g", "celsius", &sensors),
    );
    let config = write(dir.path(), "agent.yaml", &text);
    let agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    wait_rows(&csv(dir.path()), 2, LIMIT, |_| true).await;
    for i in 1..=5 {
        if i == 5 {
            // A new sensor that fails is still logged (once).
            let more = [
                sensors[0].clone(),
                sensors[1].clone(),
                sensor("dead2", &format!("http://{}/u", dead.addr)),
            ];
            let text = agent_yaml(dir.path(), "200ms", "100ms", &group("g", "celsius", &more));
            write(dir.path(), "agent.yaml", &text);
        }
        reload(&agent, i).await;
        // Cycles on the new configuration.
        let n = support::rows(&csv(dir.path())).len();
        wait_rows(&csv(dir.path()), n + 2, LIMIT, |_| true).await;
    }
    let log = stop(agent);
    let failing = |id: &str| lines_with(&log, &["sensor failing", &format!("sensor={id} ")]).len();
    assert_eq!(failing("dead"), 1, "{log}");
    assert_eq!(failing("dead2"), 1, "{log}");
    assert!(lines_with(&log, &["sensor recovered"]).is_empty(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_did_not_change_keeps_its_open_window() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    server.route("/b", Reply::ok("22"));
    let dir = tempfile::tempdir().unwrap();
    let w = windowed(
        "w",
        "1200ms",
        &[
            sensor("a", &server.url(0, "/a")),
            sensor("b", &server.url(0, "/b")),
        ],
    );
    let other = group("other", "celsius", &[sensor("c", &server.url(0, "/a"))]);
    let config = write(
        dir.path(),
        "agent.yaml",
        &agent_yaml(dir.path(), "300ms", "100ms", &w),
    );
    let agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    // The same file, then one where another group appears: neither touches w.
    for (i, groups) in [w.clone(), format!("{w}{other}")].iter().enumerate() {
        inside_a_window(&server, dir.path(), "w", 2).await;
        write(
            dir.path(),
            "agent.yaml",
            &agent_yaml(dir.path(), "300ms", "100ms", groups),
        );
        reload(&agent, i + 1).await;
    }
    let n = rows_of(dir.path(), "w").len();
    wait_rows(&csv(dir.path()), n + 2, LIMIT, of("w")).await;
    // Rows before the stop (which writes the window it cuts short).
    let rows = rows_of(dir.path(), "w");
    let log = stop(agent);
    for f in &rows {
        assert_eq!(
            (&f[2][..], &f[6][..], &f[7][..]),
            ("21.000", "8", "0"),
            "every row of w holds its 4 ticks of 2 polls: {rows:#?}\n{log}"
        );
    }
    assert_eq!(
        holes(&rows, Duration::from_millis(1200)),
        0,
        "{rows:#?}\n{log}"
    );
    // Each row under its window's start: a multiple of the window.
    for f in &rows {
        let time = humantime::parse_rfc3339(&f[0]).unwrap();
        let ms = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(ms % 1200, 0, "{rows:#?}\n{log}");
    }
    assert!(lines_with(&log, &["cut by a reload"]).is_empty(), "{log}");
    assert_unique(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_group_has_its_window_cut_and_the_log_says_so() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let ab = [
        sensor("a", &server.url(0, "/a")),
        sensor("b", &server.url(0, "/a")),
    ];
    let w = windowed("w", "1200ms", &ab);
    let config = write(
        dir.path(),
        "agent.yaml",
        &agent_yaml(dir.path(), "300ms", "100ms", &w),
    );
    let agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    inside_a_window(&server, dir.path(), "w", 2).await;
    let abc = [
        ab[0].clone(),
        ab[1].clone(),
        sensor("c", &server.url(0, "/a")),
    ];
    let w3 = windowed("w", "1200ms", &abc);
    write(
        dir.path(),
        "agent.yaml",
        &agent_yaml(dir.path(), "300ms", "100ms", &w3),
    );
    reload(&agent, 1).await;
    // A whole window on the new sensors: 4 ticks of 3 polls.
    wait_rows(&csv(dir.path()), 1, LIMIT, |r| {
        of("w")(r) && r.ends_with(",12,0")
    })
    .await;
    let log = stop(agent);
    let cut = lines_with(
        &log,
        &["group w: window ", "cut by a reload (sensors changed)"],
    );
    assert_eq!(cut.len(), 1, "{log}");
    // "group w: window TIME cut by a reload (sensors changed); its row holds N of 8 polls"
    let time = cut[0]
        .split("group w: window ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let held: u64 = cut[0]
        .split("its row holds ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" of 8 polls"))
        .unwrap_or_else(|| panic!("{}", cut[0]))
        .parse()
        .unwrap();
    let rows = rows_of(dir.path(), "w");
    let row = rows
        .iter()
        .find(|f| f[0] == time)
        .unwrap_or_else(|| panic!("no row at {time}: {rows:#?}\n{log}"));
    let polls: u64 = row[6].parse::<u64>().unwrap() + row[7].parse::<u64>().unwrap();
    assert_eq!(polls, held, "{row:?}\n{log}");
    assert!((2..8).contains(&held), "{row:?}\n{log}");
    assert_unique(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_lost_to_a_burst_of_reloads_are_counted() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let g = group("g", "celsius", &[sensor("a", &server.url(0, "/a"))]);
    let config = write(
        dir.path(),
        "agent.yaml",
        &agent_yaml(dir.path(), "100ms", "50ms", &g),
    );
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    wait_rows(&csv(dir.path()), 3, LIMIT, |_| true).await;
    let bound = support::listening_addr(&mut agent.child, LIMIT).await;
    for _ in 0..60 {
        agent.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;
    let n = rows_of(dir.path(), "g").len();
    wait_rows(&csv(dir.path()), n + 3, LIMIT, of("g")).await;
    // Rows first: the counter only grows, and counts a lost tick before
    // the row after it is written.
    let rows = rows_of(dir.path(), "g");
    let metrics = support::metrics_text(&format!("http://{bound}")).await;
    let log = stop(agent);
    let step = Duration::from_millis(100);
    let missing = holes(&rows, step);
    let skipped = support::metric_in(&metrics, "edge_agent_skipped_ticks_total");
    assert!(
        missing as f64 <= skipped,
        "{missing} tick(s) without a row, {skipped} counted:\n{metrics}\n{log}"
    );
    let by_reload = support::metric_in(&metrics, "edge_agent_reload_skipped_ticks_total");
    assert!(by_reload <= skipped, "{metrics}");
    let missing = holes(&rows_of(dir.path(), "g"), step);
    assert!(
        missing <= summary_skipped(&log),
        "{missing} tick(s) without a row:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_slow_to_read_its_file_does_not_stop_polling() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let g = group("g", "celsius", &[sensor("a", &server.url(0, "/a"))]);
    let text = agent_yaml(dir.path(), "200ms", "100ms", &g);
    // agent.yaml is a link: to a file, then to a FIFO that holds the
    // reload's read until the test writes into it (a slow disk, say).
    let file = write(dir.path(), "file.yaml", &text);
    let fifo = dir.path().join("slow.yaml");
    let config = dir.path().join("agent.yaml");
    let relink = |to: &Path| {
        let tmp = dir.path().join("link.tmp");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    relink(&file);
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    wait_rows(&csv(dir.path()), 2, LIMIT, |_| true).await;
    relink(&fifo);
    agent.signal(libc::SIGHUP);
    // Rows go on while the reload waits for its file.
    let n = support::rows(&csv(dir.path())).len();
    wait_rows(&csv(dir.path()), n + 5, LIMIT, |_| true).await;
    relink(&file);
    let writer = std::thread::spawn(move || std::fs::write(&fifo, text));
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;
    writer.join().unwrap().unwrap();
    let n = support::rows(&csv(dir.path())).len();
    wait_rows(&csv(dir.path()), n + 2, LIMIT, |_| true).await;
    let log = stop(agent);
    let missing = holes(&rows_of(dir.path(), "g"), Duration::from_millis(200));
    assert!(
        missing <= summary_skipped(&log),
        "{missing} tick(s) without a row:\n{log}"
    );
}
