//! Wall-clock steps under the real binary (libfaketime, see
//! `support::FakeClock`), as on a board without a real-time clock that NTP
//! sets after boot: retention keeps the files written last whatever their
//! names say, and no (time, group) is ever written twice, also across a
//! restart in the repeated period.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::history::names;
use support::{Agent, FakeClock, Reply, TestServer, group, metric, write};

const LIMIT: Duration = Duration::from_secs(20);
const DAY: Duration = Duration::from_secs(86_400);

/// A temp dir with a stepping clock, a sensor answering 20.5, and an
/// agent.yaml polling it for each of `groups` every `interval`, writing to
/// `dir/data` with `output` (YAML lines under `output:`), metrics on a port
/// the system picks. `None` when libfaketime is missing.
struct Rig {
    dir: tempfile::TempDir,
    clock: FakeClock,
    _server: TestServer,
    config: PathBuf,
}

impl Rig {
    async fn new(interval: &str, output: &str, groups: &[&str]) -> Option<Rig> {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::new(dir.path())?;
        let server = TestServer::start(&["127.0.0.1"]).await;
        server.route("/v", Reply::ok("20.5"));
        let mut text = format!(
            "interval: {interval}\ntimeout: 50ms\nmetrics: {{ listen: 127.0.0.1:0 }}\noutput:\n  dir: {}\n{output}groups:\n",
            dir.path().join("data").display()
        );
        for g in groups {
            let sensor = format!(
                "{{ id: s-{g}, url: '{}', format: text }}",
                server.url(0, "/v")
            );
            text += &group(g, "celsius", &[sensor]);
        }
        let config = write(dir.path(), "agent.yaml", &text);
        Some(Rig {
            dir,
            clock,
            _server: server,
            config,
        })
    }

    /// `edge-agent run` of this config, with its log in `cwd`.
    fn agent(&self, cwd: &Path) -> Agent {
        let args = ["run", "--config", self.config.to_str().unwrap()];
        self.clock.agent(&args, cwd)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// The rotations the agent logged, in order: the rotated names.
fn rotations(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("rotated ") && l.contains(" to "))
        .filter_map(|l| l.rsplit(" to ").next())
        .filter_map(|p| Path::new(p.trim()).file_name()?.to_str().map(String::from))
        .collect()
}

/// The time a rotated name carries.
fn name_time(name: &str) -> SystemTime {
    names::parse_rotated("readings", name)
        .unwrap_or_else(|| panic!("{name} is not a rotated name"))
        .time
}

fn stem(name: &str) -> String {
    names::parse_rotated("readings", name)
        .unwrap()
        .stem("readings")
}

/// Every (time, group) of every data file in `data`, with where it is.
fn rows_by_key(data: &Path) -> HashMap<(String, String), Vec<String>> {
    let mut seen: HashMap<(String, String), Vec<String>> = HashMap::new();
    for name in support::file_names(data) {
        let text = support::read_text(&data.join(&name));
        for (n, line) in text.lines().enumerate().skip(1) {
            let f = support::fields(line);
            seen.entry((f[0].clone(), f[1].clone()))
                .or_default()
                .push(format!("{name}:{}", n + 1));
        }
    }
    seen
}

/// Panics listing the (time, group) pairs written more than once.
fn assert_each_once(data: &Path) -> usize {
    let seen = rows_by_key(data);
    let mut twice: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    twice.sort();
    assert!(
        twice.is_empty(),
        "{} (time, group) pair(s) written more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    seen.len()
}

/// Wait until the counter `name` reaches `at_least`.
async fn wait_metric(agent: &mut Agent, name: &str, at_least: f64) {
    let base = format!(
        "http://{}",
        support::listening_addr(&mut agent.child, LIMIT).await
    );
    let start = std::time::Instant::now();
    loop {
        let v = metric(&base, name).await;
        if v >= at_least {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{name} stayed at {v} (< {at_least}); log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_ahead_then_corrected_keeps_the_files_written_last() {
    // Three rows a file: a rotation every few cycles.
    let output = "  rotate: { max_size: 256 }\n  keep: 3\n  compress: gzip\n";
    let Some(rig) = Rig::new("100ms", output, &["g"]).await else {
        return;
    };
    let (clock, mut agent) = (&rig.clock, rig.agent(rig.dir.path()));
    let real = SystemTime::now();
    let ahead = |name: &String| name_time(name) > real + DAY / 2;
    let count = |pred: &dyn Fn(&String) -> bool, from: usize| {
        rotations(&agent.log_text())
            .iter()
            .skip(from)
            .filter(|n| pred(n))
            .count()
    };
    support::wait_until(LIMIT, "two rotations", || count(&|_| true, 0) >= 2).await;

    // NTP sets the clock a day ahead: files named tomorrow.
    let before = rotations(&agent.log_text()).len();
    clock.set("+1d");
    support::wait_until(LIMIT, "three rotations a day ahead", || {
        count(&ahead, before) >= 3
    })
    .await;

    // Corrected: the files written from now on carry today's names, which
    // sort before tomorrow's. They are the newest, and must survive.
    let before = rotations(&agent.log_text()).len();
    clock.set("+0");
    support::wait_until(LIMIT, "four rotations after the correction", || {
        count(&|n: &String| !ahead(n), before) >= 4
    })
    .await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());

    let log = agent.log_text();
    let rotated = rotations(&log);
    let mut last_three: Vec<String> = rotated[rotated.len() - 3..]
        .iter()
        .map(|n| stem(n))
        .collect();
    last_three.sort();
    let data = rig.data();
    let mut kept: Vec<String> = support::file_names(&data)
        .into_iter()
        .filter(|n| n != "readings.csv")
        .map(|n| stem(&n))
        .collect();
    kept.sort();
    assert_eq!(
        kept, last_three,
        "retention must keep the 3 files rotated last; rotations in order: {rotated:#?}"
    );
    assert!(
        kept.iter()
            .all(|s| name_time(&format!("{s}.csv")) < real + DAY / 2),
        "the files written after the correction are today's"
    );
    // The rows of real time after the correction were written (none
    // skipped for the day written ahead).
    assert_each_once(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_writes_no_time_and_group_twice() {
    let Some(rig) = Rig::new("100ms", "", &["a", "b"]).await else {
        return;
    };
    let (clock, mut agent) = (&rig.clock, rig.agent(rig.dir.path()));
    let csv = rig.data().join("readings.csv");
    // Three seconds of rows, then the clock goes back two.
    support::wait_rows(&csv, 60, LIMIT, |_| true).await;
    clock.set("-2");
    agent
        .wait_log(LIMIT, |l| l.contains("the clock went back by about"))
        .await;
    // Every row from before the step is written by now (the skipped one
    // came after them): the latest time written before the step.
    let before_step = support::rows(&csv)
        .iter()
        .map(|r| support::fields(r)[0].clone())
        .max()
        .unwrap();
    agent
        .wait_log(LIMIT, |l| l.contains("rows are new again from"))
        .await;
    // The rows after the repeated period are written.
    support::wait_rows(&csv, 4, LIMIT, |r| support::fields(r)[0] > before_step).await;
    wait_metric(&mut agent, "rows_repeated_total", 10.0).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());

    assert_each_once(&rig.data());
    // The step is logged with its size, once.
    let log = agent.log_text();
    let told: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the clock went back by about"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    let size = told[0]
        .split("about ")
        .nth(1)
        .and_then(|s| s.split(" (").next())
        .and_then(|s| humantime::parse_duration(s).ok())
        .unwrap_or_else(|| panic!("no step size in {}", told[0]));
    assert!(
        // About 2 s; less if ticks were skipped around the step (a loaded machine).
        size >= Duration::from_millis(1000) && size <= Duration::from_millis(2500),
        "{}",
        told[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_30s_writes_nothing_twice_across_a_restart() {
    let Some(rig) = Rig::new("200ms", "", &["a", "b"]).await else {
        return;
    };
    // What the files already hold: the last 40 seconds, written by the
    // previous run (rotated at its stop), on the agent's 200 ms grid.
    let data = rig.data();
    std::fs::create_dir(&data).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let end = now - now % 200;
    let first = UNIX_EPOCH + Duration::from_millis(end - 40_000);
    let mut text = edge_agent::history::HEADER.to_string();
    for ms in (end - 40_000..=end).step_by(200) {
        let t = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        for g in ["a", "b"] {
            text += &format!("{t},{g},19.000,19.000,19.000,celsius,1,0\n");
        }
    }
    std::fs::write(data.join(names::rotated("readings", first, 0)), &text).unwrap();

    let mut agent = rig.agent(rig.dir.path());
    let csv = data.join("readings.csv");
    support::wait_rows(&csv, 4, LIMIT, |_| true).await;
    // The clock goes back 30 s, into the times of the previous run.
    rig.clock.set("-30");
    agent
        .wait_log(LIMIT, |l| l.contains("the clock went back by about"))
        .await;
    wait_metric(&mut agent, "rows_repeated_total", 10.0).await;
    // Restart while the clock is still in the repeated period.
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let first_log = agent.log_text();
    let second = rig.dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let mut agent = rig.agent(&second);
    wait_metric(&mut agent, "rows_repeated_total", 10.0).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());

    let pairs = assert_each_once(&data);
    assert!(pairs > 2 * 201, "the agent wrote rows of its own");
    for log in [&first_log, &agent.log_text()] {
        assert!(
            log.contains("is already in the files"),
            "the skip is logged:\n{log}"
        );
    }
}

/// A row of `group` at 2026-11-24T10:00:00Z plus `secs`.
fn row(secs: u64, group: &str) -> edge_agent::history::Row {
    edge_agent::history::Row {
        time: UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs),
        group: group.into(),
        mean: Some(20.0),
        min: Some(20.0),
        max: Some(20.0),
        unit: edge_agent::config::Unit::Celsius,
        ok: 1,
        failed: 0,
    }
}

/// Hourly rotation is decided from row times: after the clock went back an
/// hour, the files rotated take names already used (their first rows share
/// a second with older files). They get `_1`, no rename replaces a file,
/// and retention keeps the files written last, not the greatest names.
#[tokio::test]
async fn time_rotation_after_a_step_back_reuses_no_name_and_keeps_the_files_written_last() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut out = support::output(d);
    out.every = Some(Duration::from_secs(3600));
    out.keep = 2;
    let store = edge_agent::store::Store::open(&out).await.unwrap();
    let tx = store.sender();
    tx.send(vec![row(0, "g")]);
    // 11:00: the 10:00 file is rotated.
    tx.send(vec![row(3600, "g")]);
    // The clock goes back an hour: g's 10:00 row is written already; h's
    // is new, and rotates the 11:00 file.
    tx.send(vec![row(0, "g"), row(0, "h")]);
    // 11:00 again: the file starting at 10:00 is rotated a second time...
    tx.send(vec![row(3600, "h")]);
    // ... and at 12:00 the one starting at 11:00.
    tx.send(vec![row(7200, "h")]);
    drop(tx);
    let stats = store.close().await.unwrap();
    assert_eq!(stats.rows_repeated.load(Relaxed), 1);
    assert_eq!(stats.rotations.load(Relaxed), 4);
    assert_eq!(
        support::file_names(d),
        [
            "readings-20261124T100000Z_1.csv",
            "readings-20261124T110000Z_1.csv",
            "readings.csv"
        ],
        "the two files written last are kept"
    );
    let rows = |name: &str| support::rows(&d.join(name));
    assert_eq!(
        rows("readings-20261124T100000Z_1.csv"),
        ["2026-11-24T10:00:00.000Z,h,20.000,20.000,20.000,celsius,1,0"]
    );
    assert_eq!(
        rows("readings-20261124T110000Z_1.csv"),
        ["2026-11-24T11:00:00.000Z,h,20.000,20.000,20.000,celsius,1,0"]
    );
    assert_eq!(
        rows("readings.csv"),
        ["2026-11-24T12:00:00.000Z,h,20.000,20.000,20.000,celsius,1,0"]
    );
}

/// An alternate active file an earlier run left (`readings+1.csv`, written
/// beside something not ours) is rotated at start as the file written last,
/// whatever its name: retention removes the older files, not it.
#[tokio::test]
async fn an_alternate_left_by_an_earlier_run_is_the_last_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let line = |secs: u64| {
        let t = humantime::format_rfc3339_millis(row(secs, "g").time);
        format!("{t},g,20.000,20.000,20.000,celsius,1,0\n")
    };
    let header = edge_agent::history::HEADER;
    // Rotated by the earlier run while its clock was two hours ahead...
    let ahead = "readings-20261124T120000Z.csv";
    std::fs::write(d.join(ahead), format!("{header}{}", line(7200))).unwrap();
    std::fs::write(d.join(".readings.rotations"), format!("{ahead}\n")).unwrap();
    // ... then, the clock corrected, it wrote beside a file not ours, since
    // removed.
    std::fs::write(d.join("readings+1.csv"), format!("{header}{}", line(0))).unwrap();
    let mut out = support::output(d);
    out.keep = 1;
    let store = edge_agent::store::Store::open(&out).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        support::file_names(d),
        ["readings-20261124T100000Z.csv", "readings.csv"],
        "the alternate's rows are kept, the older file removed"
    );
}
