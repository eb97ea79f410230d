//! Dead sensors and hosts, with the real binary: hosts that accept a
//! connection and never answer cannot starve the sensors of a host that
//! answers (fair slots), and a sensor that keeps failing is polled less
//! often until it answers again (backoff), logged once each way and counted
//! in `/metrics`, while its rows keep counting it as failed.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::{Agent, Reply, Silent, TestServer, fields, group, metric, wait_rows, write};

const LIMIT: Duration = Duration::from_secs(20);

/// The head of an agent.yaml: short cycles, a metrics listener on port 0
/// (the system picks), and `backoff` as given (`None`: not in the file).
fn head(dir: &Path, backoff: Option<&str>) -> String {
    let backoff = backoff.map_or(String::new(), |b| format!("backoff: {b}\n"));
    format!(
        "interval: 200ms\ntimeout: 150ms\nlimit: 20\nlimit_per_host: 10\n{backoff}\
         metrics: {{ listen: 127.0.0.1:0 }}\noutput: {{ dir: {} }}\ngroups:\n",
        dir.join("data").display()
    )
}

/// Requests the server saw for `path`.
fn requests(server: &TestServer, path: &str) -> usize {
    let seen = server.counters.seen.lock().unwrap();
    seen.iter().filter(|(uri, _)| uri == path).count()
}

/// A text sensor `id` at `url`, as a YAML flow map.
fn sensor(id: &str, url: &str) -> String {
    format!("{{ id: {id}, url: '{url}', format: text }}")
}

/// The agent's `/metrics` base URL, once it listens.
async fn metrics_base(agent: &mut Agent) -> String {
    format!(
        "http://{}",
        support::listening_addr(&mut agent.child, LIMIT).await
    )
}

/// An agent with `groups` (YAML) and then a group `dead` of one sensor at
/// `/dead` of `server` (which should fail), backing off after 2 failed
/// polls, at most 4 cycles apart; returned once the sensor is in backoff,
/// with the `/metrics` base URL and the config's text.
async fn start_backing_off(
    server: &TestServer,
    dir: &Path,
    groups: &str,
) -> (Agent, String, String) {
    let text = head(dir, Some("{ after: 2, max: 4x }"))
        + groups
        + &group(
            "dead",
            "celsius",
            &[sensor("dead", &server.url(0, "/dead"))],
        );
    let config = write(dir, "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir);
    let base = metrics_base(&mut agent).await;
    wait_metric(&agent, &base, "sensors_backing_off", |v| v == 1.0).await;
    (agent, base, text)
}

/// Wait until metric `name` at `base` satisfies `cond`; its value.
async fn wait_metric(agent: &Agent, base: &str, name: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let start = std::time::Instant::now();
    loop {
        let v = metric(base, name).await;
        if cond(v) {
            return v;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{name} stayed at {v}; log:\n{}",
            agent.log_text()
        );
        // The pause between two reads of a wait bounded by LIMIT.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cycle count of an agent's last log line.
fn cycles_run(log: &str) -> usize {
    let line = log.lines().find(|l| l.contains("stopped after")).unwrap();
    let after = line.split("stopped after ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// The rows of `group` in `csv`, split into fields.
fn rows_of(csv: &Path, group: &str) -> Vec<Vec<String>> {
    support::rows(csv)
        .iter()
        .map(|r| fields(r))
        .filter(|f| f[1] == group)
        .collect()
}

/// The site: 20 hosts that accept and never answer, 10 sensors each
/// (200 requests that hang, twice `limit`), beside one host whose 100
/// sensors answer at once; `limit` 100, `limit_per_host` 25. Backoff is
/// off, so the dead sensors are polled every cycle: fair slots alone must
/// keep the live host read. Round-robin starts gave the hung hosts every
/// slot the live host freed, and most live sensors went unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_never_answer_cannot_starve_a_host_that_does() {
    let live = TestServer::start(&["127.0.0.1"]).await;
    live.route("/v", Reply::ok("20"));
    let ips: Vec<String> = (2..22).map(|i| format!("127.0.0.{i}")).collect();
    let dead = Silent::start(&ips).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "interval: 1s\ntimeout: 800ms\nlimit: 100\nlimit_per_host: 25\nbackoff: off\n\
         output: {{ dir: {} }}\ngroups:\n",
        dir.path().join("data").display()
    );
    let live_sensors: Vec<String> = (0..100)
        .map(|i| sensor(&format!("live{i}"), &live.url(0, "/v")))
        .collect();
    let dead_sensors: Vec<String> = (0..dead.addrs.len() * 10)
        .map(|i| sensor(&format!("dead{i}"), &dead.url(i / 10, &format!("/{i}"))))
        .collect();
    // The dead group first: in config order its hosts come before the live one.
    text += &group("dead", "celsius", &dead_sensors);
    text += &group("live", "celsius", &live_sensors);
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    wait_rows(&csv, 3, LIMIT, |r| r.contains(",live,")).await;
    stop(&mut agent);
    let rows = rows_of(&csv, "live");
    assert!(rows.len() >= 3, "{rows:?}");
    for f in &rows {
        assert_eq!(
            (f[6].as_str(), f[7].as_str()),
            ("100", "0"),
            "every live sensor is read every cycle: {f:?}\n{}",
            agent.log_text()
        );
    }
    for f in rows_of(&csv, "dead") {
        assert_eq!((f[6].as_str(), f[7].as_str()), ("0", "200"), "{f:?}");
    }
}

/// A sensor on a host that takes the request and never answers (it hangs
/// past the timeout) backs off after 2 failures, at most 4 cycles apart:
/// the server sees about a third as many requests as cycles, it is logged
/// once going in, counted in `/metrics`, and failed in every row, polled or
/// not. When it answers again it is logged once, and polled every cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sensor_is_polled_less_often_until_it_answers() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/ok", Reply::ok("20"));
    server.route("/dead", Reply::ok("20").after(Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    let live = group("live", "celsius", &[sensor("ok", &server.url(0, "/ok"))]);
    let (mut agent, base, _) = start_backing_off(&server, dir.path(), &live).await;
    let before = wait_metric(&agent, &base, "cycles_total", |c| c >= 24.0).await as usize;
    let dead = requests(&server, "/dead");
    let after = metric(&base, "cycles_total").await as usize + 1;
    // Cycles 0 and 1 fail, the wait is then 2 cycles, then 3 or 4: at most
    // 3 polls plus one per 3 cycles; at least one per 4.
    assert!(
        dead <= 3 + (after - 3).div_ceil(3) && dead >= before / 4,
        "{dead} polls of the failing sensor in {before}..{after} cycles"
    );
    assert!(
        requests(&server, "/ok") >= before,
        "the sensor beside it, every cycle"
    );
    assert_eq!(metric(&base, "sensors_backing_off").await, 1.0);

    server.route("/dead", Reply::ok("5"));
    let csv = dir.path().join("data/readings.csv");
    wait_rows(&csv, 1, LIMIT, |r| r.contains(",dead,5.000,")).await;
    wait_metric(&agent, &base, "sensors_backing_off", |v| v == 0.0).await;
    // Back to every cycle: three rows in a row with its reading.
    let seen = rows_of(&csv, "dead").len();
    wait_rows(&csv, seen + 3, LIMIT, |r| r.contains(",dead,")).await;
    stop(&mut agent);

    let log = agent.log_text();
    assert_eq!(
        log.matches("sensor backing off after 2 failed polls")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("sensor recovered after").count(), 1, "{log}");
    let rows = rows_of(&csv, "dead");
    let first_ok = rows.iter().position(|f| f[6] == "1").unwrap();
    for f in &rows[..first_ok] {
        assert_eq!(
            (f[6].as_str(), f[7].as_str()),
            ("0", "1"),
            "failed, polled or not: {f:?}"
        );
    }
    for f in &rows[first_ok..] {
        assert_eq!(
            (f[6].as_str(), f[7].as_str()),
            ("1", "0"),
            "polled every cycle: {f:?}"
        );
    }
    // Every row of the sensor beside it is whole.
    assert!(rows_of(&csv, "live").iter().all(|f| f[6] == "1"));
}

/// A reload keeps the backoff of sensors it does not change: the failing
/// sensor is not polled at full rate again after SIGHUP, nor logged going
/// into backoff a second time, and `/metrics` keeps counting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_backoff_of_unchanged_sensors() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/ok", Reply::ok("20"));
    server.route("/dead", Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, base, text) = start_backing_off(&server, dir.path(), "").await;
    // A new group beside it: the failing sensor itself is unchanged.
    write(
        dir.path(),
        "agent.yaml",
        &(text + &group("live", "celsius", &[sensor("ok", &server.url(0, "/ok"))])),
    );
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;
    let from = requests(&server, "/dead");
    // The new group's sensor counts the cycles of the new config.
    let ok = requests(&server, "/ok");
    support::wait_until(LIMIT, "8 cycles after the reload", || {
        requests(&server, "/ok") >= ok + 8
    })
    .await;
    let dead = requests(&server, "/dead") - from;
    let cycles = requests(&server, "/ok") - ok + 1;
    // Still at most one poll per 3 cycles (afresh: 3 polls in the first 4).
    assert!(
        dead <= cycles.div_ceil(3),
        "{dead} polls of the failing sensor in {cycles} cycles after the reload\n{}",
        agent.log_text()
    );
    assert_eq!(metric(&base, "sensors_backing_off").await, 1.0);
    stop(&mut agent);
    let log = agent.log_text();
    assert_eq!(log.matches("sensor backing off after").count(), 1, "{log}");
}

/// `backoff: off`: a failing sensor is polled at every cycle, as often as
/// the one beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_off_keeps_polling_every_cycle() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/ok", Reply::ok("20"));
    server.route("/dead", Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut text = head(dir.path(), Some("off"));
    let sensors = [
        sensor("ok", &server.url(0, "/ok")),
        sensor("dead", &server.url(0, "/dead")),
    ];
    text += &group("g", "celsius", &sensors);
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let base = metrics_base(&mut agent).await;
    wait_metric(&agent, &base, "cycles_total", |c| c >= 12.0).await;
    assert_eq!(metric(&base, "sensors_backing_off").await, 0.0);
    stop(&mut agent);
    let log = agent.log_text();
    let cycles = cycles_run(&log);
    assert_eq!(requests(&server, "/dead"), cycles, "{log}");
    assert_eq!(requests(&server, "/ok"), cycles, "{log}");
    assert!(!log.contains("backing off"), "{log}");
}

/// A host all of whose sensors back off (its web server down) comes back
/// as a whole: the first of its sensors to answer brings the others back
/// at the next cycle, not each at the end of its own wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_comes_back_brings_its_sensors_back_together() {
    let server = TestServer::start(&["127.0.0.1", "127.0.0.2"]).await;
    server.route("/v", Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut text = head(dir.path(), Some("{ after: 1, max: 10x }"));
    let sensors: Vec<String> = (0..10)
        .map(|i| {
            sensor(
                &format!("plc{i}"),
                &format!("{}?n={i}", server.url(1, "/v")),
            )
        })
        .collect();
    text += &group("plc", "celsius", &sensors);
    let config = write(dir.path(), "agent.yaml", &text);
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let base = metrics_base(&mut agent).await;
    wait_metric(&agent, &base, "sensors_backing_off", |v| v == 10.0).await;
    // Long enough for the jitter to spread their polls over several cycles
    // (the first wait is 2 cycles for all; then 3-4, 5-8, 6-10).
    wait_metric(&agent, &base, "cycles_total", |c| c >= 16.0).await;
    server.route("/v", Reply::ok("7"));
    let csv = dir.path().join("data/readings.csv");
    // The first row with an answer, then the next: all ten.
    let first = wait_rows(&csv, 1, LIMIT, |r| !r.ends_with(",0,10")).await;
    let first_time = fields(&first[0])[0].clone();
    let next = wait_rows(&csv, 2, LIMIT, |r| !r.ends_with(",0,10")).await;
    stop(&mut agent);
    let all = support::rows(&csv);
    let at = all.iter().position(|r| fields(r)[0] == first_time).unwrap();
    assert_eq!(all[at + 1], next[1], "the next cycle's row: {all:#?}");
    assert!(next[1].ends_with(",10,0"), "{all:#?}\n{}", agent.log_text());
    let log = agent.log_text();
    let host = format!("host http://{} answers again", server.addrs[1]);
    assert_eq!(log.matches(&host).count(), 1, "{log}");
    assert_eq!(log.matches("sensor recovered after").count(), 10, "{log}");
}

/// SIGTERM, and a clean exit.
fn stop(agent: &mut Agent) {
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
}
