//! Other programs and operators around the real binary: `logrotate`'s
//! `copytruncate` and `mv`, the output directory removed (and blocked from
//! being made again), a directory or a foreign file at the active file's
//! name, a file of rows left without its header, and a second agent on the
//! same directory. Every row the agent says it wrote is found exactly once
//! (by `edge-agent replay`, which is how the rows are read later), or the
//! test names exactly which rows the outside program lost.
//!
//! Where the test acts on the files while the agent could be writing, it
//! stops the agent (SIGSTOP) for the moment of the act, as the kernel may
//! pause it at any moment anyway: what the test then sees is not a race.

use crate::support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edge_agent::history::{HEADER, names};
use support::{Agent, Reply, TestServer, client, wait_rows};

const LIMIT: Duration = Duration::from_secs(20);

/// A test's sensors and files: two groups (two rows a cycle) polled every
/// 100 ms into `DIR/data`.
struct Site {
    _server: TestServer,
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    /// `data/readings.csv`
    active: PathBuf,
}

/// A [`Site`] with `output` lines added to the output section.
async fn setup(output: &str, metrics: bool) -> Site {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    server.route("/b", Reply::ok("30"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut text = format!(
        "interval: 100ms\ntimeout: 80ms\noutput:\n  dir: {}\n  keep: 1000\n{output}",
        data.display()
    );
    if metrics {
        text += "metrics: { listen: 127.0.0.1:0 }\n";
    }
    text += "groups:\n";
    for g in ["a", "b"] {
        text += &support::group(
            g,
            "celsius",
            &[format!(
                "{{ id: {g}, url: '{}', format: text }}",
                server.url(0, &format!("/{g}"))
            )],
        );
    }
    let config = support::write(dir.path(), "agent.yaml", &text);
    Site {
        _server: server,
        active: data.join("readings.csv"),
        data,
        dir,
        config,
    }
}

impl Site {
    /// The agent started (its log in `in_dir`).
    fn start_in(&self, in_dir: &Path) -> Agent {
        Agent::start(&["run", "--config", self.config.to_str().unwrap()], in_dir)
    }

    /// The agent started, once `rows` rows are in the active file.
    async fn running(&self, rows: usize) -> Agent {
        let agent = self.start_in(self.dir.path());
        wait_rows(&self.active, rows, LIMIT, |_| true).await;
        agent
    }
}

/// What `copytruncate` does after its copy: cut the file to 0 bytes.
fn cut(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// SIGSTOP now, SIGCONT when dropped (a failing test kills the agent
/// anyway, stopped or not).
struct Stopped<'a>(&'a Agent);

/// Returns once every thread of the agent is stopped: `kill` returns
/// before the signal has taken effect.
fn stop(agent: &Agent) -> Stopped<'_> {
    agent.signal(libc::SIGSTOP);
    let tasks = format!("/proc/{}/task", agent.child.id());
    let stopped = || {
        std::fs::read_dir(&tasks).unwrap().all(|task| {
            let stat =
                std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
            // `TID (COMM) STATE ...`; COMM may hold spaces and parentheses.
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            matches!(state, Some('T' | 't'))
        })
    };
    assert!(
        support::eventually_blocking(LIMIT, stopped),
        "the agent did not stop"
    );
    Stopped(agent)
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// SIGTERM, a clean exit, and the rows the agent's last line says it wrote.
fn finish(agent: &mut Agent) -> u64 {
    agent.signal(libc::SIGTERM);
    let status = agent.wait(LIMIT);
    let log = agent.log_text();
    assert!(status.success(), "exit {status:?}\n{log}");
    let last = log
        .lines()
        .find(|l| l.contains("stopped after"))
        .unwrap_or_else(|| panic!("no summary line:\n{log}"));
    let written = last
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {last}"));
    assert!(last.contains(", 0 dropped"), "{last}");
    written
}

/// (time, group) of a CSV row.
fn key(row: &str) -> (String, String) {
    let f = support::fields(row);
    (f[0].clone(), f[1].clone())
}

/// The (time, group) of every row `edge-agent replay --dir DIR` prints.
fn replayed(dir: &Path) -> Vec<(String, String)> {
    let (code, out, err) = support::edge_agent(&["replay", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "replay of {}: {err}", dir.display());
    assert!(
        err.contains("skipped 0 line(s)"),
        "replay skipped lines: {err}"
    );
    out.lines()
        .filter(|l| *l != HEADER.trim_end())
        .map(key)
        .collect()
}

/// A file outside the data directory replayed as the active file of a
/// directory of its own: what a reader gets from it.
fn replayed_file(file: &Path, scratch: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(scratch).unwrap();
    std::fs::copy(file, scratch.join("readings.csv")).unwrap();
    replayed(scratch)
}

/// Panics on a (time, group) found twice; returns the set.
fn once(all: &[(String, String)]) -> HashSet<(String, String)> {
    let mut seen = HashSet::new();
    let twice: Vec<_> = all.iter().filter(|k| !seen.insert((*k).clone())).collect();
    assert!(twice.is_empty(), "rows found twice: {twice:?}");
    seen
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// How often `what` occurs in the agent's log.
fn count(agent: &Agent, what: &str) -> usize {
    agent.log_text().matches(what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_loses_only_the_rows_between_its_copy_and_its_cut() {
    let site = setup("", false).await;
    let (data, active) = (&site.data, &site.active);
    let mut agent = site.running(4).await;

    // A copytruncate while the agent is between two writes: every row is
    // either in the copy or (with the header first) in the file.
    let first = data.join("readings.csv.1");
    {
        let _stopped = stop(&agent);
        std::fs::copy(active, &first).unwrap();
        cut(active);
    }
    agent.wait_log(LIMIT, |l| l.contains("was cut from")).await;
    wait_rows(active, 4, LIMIT, |_| true).await;

    // A copytruncate with a write between its copy and its cut: the rows of
    // that write are in neither file; all others are in one.
    let second = data.join("readings.csv.2");
    let copied = {
        let _stopped = stop(&agent);
        std::fs::copy(active, &second).unwrap()
    };
    support::wait_until(LIMIT, "a write after the copy", || size(active) > copied).await;
    let lost: Vec<(String, String)> = {
        let _stopped = stop(&agent);
        let text = std::fs::read_to_string(active).unwrap();
        let lost = text[copied as usize..].lines().map(key).collect();
        cut(active);
        lost
    };
    support::wait_until(LIMIT, "the second cut noticed", || {
        count(&agent, "was cut from") == 2
    })
    .await;
    wait_rows(active, 4, LIMIT, |_| true).await;
    let written = finish(&mut agent);

    assert!(
        std::fs::read_to_string(active).unwrap().starts_with(HEADER),
        "the file goes on with the header first"
    );
    let mut all = replayed(data);
    all.extend(replayed_file(&first, &site.dir.path().join("copy1")));
    all.extend(replayed_file(&second, &site.dir.path().join("copy2")));
    let found = once(&all);
    assert!(!lost.is_empty());
    for k in &lost {
        assert!(!found.contains(k), "{k:?} was lost by the cut, yet found");
    }
    assert_eq!(
        found.len() + lost.len(),
        written as usize,
        "every row written is in one file, but for those written between copy and cut"
    );
    let log = agent.log_text();
    assert!(!log.contains("not an edge-agent file"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_away_is_left_as_it_is_and_size_rotation_goes_on() {
    let site = setup("  rotate:\n    max_size: 1KiB\n", false).await;
    let (data, active) = (&site.data, &site.active);
    let mut agent = site.running(4).await;

    let moved = data.join("readings.csv.1");
    std::fs::rename(active, &moved).unwrap();
    let at_move = std::fs::read_to_string(&moved).unwrap().len();
    agent
        .wait_log(LIMIT, |l| l.contains("was moved away"))
        .await;
    let rotated_text = format!("rotated {} to", active.display());
    let before = count(&agent, &rotated_text);
    support::wait_until(LIMIT, "two rotations of the new file", || {
        count(&agent, &rotated_text) >= before + 2
    })
    .await;
    let written = finish(&mut agent);

    let log = agent.log_text();
    assert!(!log.contains("cannot rename"), "{log}");
    assert!(!log.contains("rotation failed"), "{log}");
    assert_eq!(log.matches("was moved away").count(), 1, "{log}");
    // The moved file got no more than the one batch (two rows) whose write
    // could have been under way at the moment of the move.
    let text = std::fs::read_to_string(&moved).unwrap();
    let after = text[at_move..].lines().count();
    assert!(after <= 2, "{after} row(s) went into the moved file");
    for name in support::file_names(data) {
        if names::parse_rotated("readings", &name).is_some() {
            assert!(size(&data.join(&name)) <= 1024, "{name} is over max_size");
        }
    }
    let mut all = replayed(data);
    all.extend(replayed_file(&moved, &site.dir.path().join("moved")));
    assert_eq!(once(&all).len(), written as usize);
}

/// GET `path` of the agent's metrics listener: (status, body).
async fn get(base: &str, path: &str) -> (u16, String) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Rows in every data file of `dir` (the header of each not counted).
fn rows_on_disk(dir: &Path) -> usize {
    support::file_names(dir)
        .iter()
        .map(|n| support::rows(&dir.join(n)).len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_directory_is_made_again_and_healthz_says_while_it_cannot_be() {
    let site = setup("", true).await;
    let (data, active) = (&site.data, &site.active);
    let mut agent = site.running(4).await;
    let base = format!(
        "http://{}",
        support::listening_addr(&mut agent.child, LIMIT).await
    );
    assert_eq!(get(&base, "/healthz").await.0, 200);

    // The directory goes, and a file at its name keeps it from coming back.
    let before = {
        let _stopped = stop(&agent);
        let before = rows_on_disk(data);
        std::fs::remove_dir_all(data).unwrap();
        std::fs::write(data, "in the way\n").unwrap();
        before
    };
    let body = healthz_turns(&base, 503).await;
    assert!(
        body.contains("no active file") && body.contains(&*data.to_string_lossy()),
        "{body}"
    );
    let (_, metrics) = get(&base, "/metrics").await;
    let opens = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_agent_store_errors_total{op=\"open\"} "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(opens.parse::<f64>().unwrap() >= 1.0, "{metrics}");
    assert!(metrics.contains("edge_agent_healthy 0"), "{metrics}");

    // Out of the way: the directory is made again and the held rows come.
    std::fs::remove_file(data).unwrap();
    wait_rows(active, 4, LIMIT, |_| true).await;
    healthz_turns(&base, 200).await;
    let written = finish(&mut agent);

    let log = agent.log_text();
    assert_eq!(log.matches("was removed").count(), 1, "{log}");
    assert_eq!(log.matches("again (mode 0750)").count(), 1, "{log}");
    assert_eq!(
        log.matches("cannot open a new active file").count(),
        1,
        "{log}"
    );
    assert!(data.join(edge_agent::store::LOCK_FILE).exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o750);
    // No row is counted as written that is nowhere: those in the files at
    // the removal went with the directory, and so did the one batch (two
    // rows) whose write may have been under way at that very moment (the
    // look comes before each write, not during it); all others are on disk.
    let on_disk = rows_on_disk(data);
    let gone = (written as usize)
        .checked_sub(on_disk)
        .unwrap_or_else(|| panic!("{on_disk} rows on disk, {written} written"));
    assert!(
        (before..=before + 2).contains(&gone),
        "{before} rows went with the directory, yet {gone} written rows are not on disk\n{log}"
    );
}

/// Wait until `/healthz` answers `status`; its body.
async fn healthz_turns(base: &str, status: u16) -> String {
    let start = std::time::Instant::now();
    loop {
        let (now, body) = get(base, "/healthz").await;
        if now == status {
            return body;
        }
        assert!(
            start.elapsed() < LIMIT,
            "/healthz never turned {status}: {body}"
        );
        // The pause between checks (each an HTTP request) of a wait bounded
        // by LIMIT.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_at_the_active_name_is_never_renamed() {
    let site = setup("  rotate:\n    max_size: 1KiB\n", false).await;
    let (data, active) = (&site.data, &site.active);
    let mut agent = site.running(2).await;

    std::fs::rename(active, data.join("readings.csv.old")).unwrap();
    std::fs::create_dir(active).unwrap();
    std::fs::write(active.join("keep.txt"), "mine\n").unwrap();
    let alternate = data.join("readings+1.csv");
    wait_rows(&alternate, 2, LIMIT, |_| true).await;
    let rotated_text = format!("rotated {} to", alternate.display());
    support::wait_until(LIMIT, "two rotations of the alternate file", || {
        count(&agent, &rotated_text) >= 2
    })
    .await;
    let written = finish(&mut agent);

    assert!(active.is_dir());
    assert_eq!(
        std::fs::read_to_string(active.join("keep.txt")).unwrap(),
        "mine\n"
    );
    for name in support::file_names(data) {
        if names::parse_rotated("readings", &name).is_some() {
            let path = data.join(&name);
            assert!(path.is_file(), "{name} is not a file");
            assert!(read_head(&path).starts_with(HEADER), "{name}");
        }
    }
    // Every row once: in the moved file, the rotated ones, the alternate.
    let all: Vec<_> = support::file_names(data)
        .iter()
        .flat_map(|n| support::rows(&data.join(n)))
        .map(|r| key(&r))
        .collect();
    assert_eq!(once(&all).len(), written as usize);
    let log = agent.log_text();
    let said = format!(
        "{} is a directory, not a regular file: left as it is; writing to {}",
        active.display(),
        alternate.display()
    );
    assert_eq!(log.matches(&said).count(), 1, "{log}");
}

fn read_head(path: &Path) -> String {
    support::read_text(path)
        .chars()
        .take(HEADER.len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_file_at_start_is_left_alone_and_rows_go_beside_it() {
    let site = setup("", false).await;
    let data = &site.data;
    std::fs::create_dir(data).unwrap();
    let foreign = "date;temperature\n2026-01-01;20\n";
    std::fs::write(data.join("readings.csv"), foreign).unwrap();
    let mut agent = site.start_in(site.dir.path());
    let alternate = data.join("readings+1.csv");
    wait_rows(&alternate, 4, LIMIT, |_| true).await;
    let written = finish(&mut agent);

    assert_eq!(
        std::fs::read_to_string(data.join("readings.csv")).unwrap(),
        foreign
    );
    assert!(written >= 4);
    assert_eq!(support::rows(&alternate).len(), written as usize);
    let log = agent.log_text();
    assert_eq!(log.matches("not an edge-agent file").count(), 1, "{log}");
    assert!(
        log.contains(&format!("writing to {} instead", alternate.display())),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_rows_without_its_header_is_adopted_at_start() {
    let site = setup("", false).await;
    let data = &site.data;
    std::fs::create_dir(data).unwrap();
    let old = [
        "2026-01-01T00:00:00.000Z,a,20.000,20.000,20.000,celsius,1,0",
        "2026-01-01T00:00:00.000Z,b,30.000,30.000,30.000,celsius,1,0",
        "2026-01-01T00:00:01.000Z,a,20.000,20.000,20.000,celsius,1,0",
    ];
    // What copytruncate leaves when a write comes after the cut, behind the
    // zeros a writer without O_APPEND would leave.
    let mut bytes = vec![0u8; 5000];
    bytes.extend(old.iter().flat_map(|r| format!("{r}\n").into_bytes()));
    let active = data.join("readings.csv");
    std::fs::write(&active, &bytes).unwrap();
    let mut agent = site.start_in(site.dir.path());
    wait_rows(&active, old.len() + 2, LIMIT, |_| true).await;
    let written = finish(&mut agent);

    let rows = support::rows(&active);
    assert_eq!(rows[..old.len()], old);
    assert!(
        std::fs::read_to_string(&active)
            .unwrap()
            .starts_with(HEADER)
    );
    let all = replayed(data);
    assert_eq!(once(&all).len(), old.len() + written as usize);
    assert!(agent.log_text().contains("had no header"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_directory_is_refused() {
    let site = setup("", false).await;
    let (data, active) = (&site.data, &site.active);
    let mut first = site.running(2).await;

    let elsewhere = site.dir.path().join("second");
    std::fs::create_dir(&elsewhere).unwrap();
    let mut second = site.start_in(&elsewhere);
    let status = second.wait(LIMIT);
    let err = second.log_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.child.id()))
            && err.contains(&*data.to_string_lossy())
            && err.contains("systemctl stop edge-agent"),
        "{err}"
    );
    // The first one goes on, alone.
    let had = support::rows(active).len();
    wait_rows(active, had + 4, LIMIT, |_| true).await;
    let written = finish(&mut first);
    let rows: Vec<_> = support::rows(active).iter().map(|r| key(r)).collect();
    assert_eq!(once(&rows).len(), written as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_directory_locks_it_before_letting_go_of_the_old() {
    let one = setup("", false).await;
    let two = setup("", false).await;
    let mut first = one.running(2).await;
    let mut other = two.running(2).await;
    let original = std::fs::read_to_string(&one.config).unwrap();
    let to = |data: &Path| {
        let text = original.replace(&*one.data.to_string_lossy(), &data.to_string_lossy());
        std::fs::write(&one.config, text).unwrap();
    };

    // Into a directory another agent writes to: refused, nothing changes.
    to(&two.data);
    first.signal(libc::SIGHUP);
    first
        .wait_log(LIMIT, |l| l.contains("reload refused"))
        .await;
    let refused = first.log_text();
    assert!(
        refused.contains(&format!("pid {}", other.child.id())),
        "{refused}"
    );
    let had = support::rows(&one.active).len();
    wait_rows(&one.active, had + 2, LIMIT, |_| true).await;

    // Into a free one: taken, and the old one is free for another agent.
    let three = one.dir.path().join("three");
    to(&three);
    first.signal(libc::SIGHUP);
    wait_rows(&three.join("readings.csv"), 2, LIMIT, |_| true).await;
    let again = one.dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    std::fs::write(&one.config, &original).unwrap();
    let mut next = one.start_in(&again);
    let had = support::rows(&one.active).len();
    wait_rows(&one.active, had + 2, LIMIT, |_| true).await;
    for agent in [&mut first, &mut other, &mut next] {
        finish(agent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_agent_may_not_write_is_passed_over() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // As logrotate's `create` leaves it when told another owner: a file of
    // root's at the active name of an agent that runs as `nobody`.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: needs root to run the agent as another user");
        return;
    }
    let site = setup("", false).await;
    let (dir, data) = (site.dir.path(), &site.data);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(data).unwrap();
    std::os::unix::fs::chown(data, Some(65534), Some(65534)).unwrap();
    let active = data.join("readings.csv");
    std::fs::write(&active, HEADER).unwrap();
    std::fs::set_permissions(&active, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.join("agent-nobody.log");
    // A copy `nobody` may run: the build's own binary may sit under a
    // directory only root can enter (a clone in `mktemp -d`, mode 0700).
    let binary = dir.join("edge-agent");
    std::fs::copy(support::binary(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = Command::new(&binary)
        .args(["run", "--config", site.config.to_str().unwrap()])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Agent { child, log };
    let alternate = data.join("readings+1.csv");
    wait_rows(&alternate, 2, LIMIT, |_| true).await;
    finish(&mut agent);
    assert_eq!(std::fs::read_to_string(&active).unwrap(), HEADER);
    let log = agent.log_text();
    assert!(
        log.contains("cannot be opened for writing by the agent"),
        "{log}"
    );
}

/// The store itself, for the cases whose timing the binary leaves to
/// chance: rows sent one batch at a time, each waited for on disk.
mod store {
    use super::*;
    use edge_agent::config::Unit;
    use edge_agent::history::Row;
    use edge_agent::store::{Store, StoreSender};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// 2026-11-24T10:00:00Z plus `secs`, as the store writes it.
    fn row(secs: u64) -> Row {
        Row {
            time: UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs),
            group: "g".into(),
            mean: Some(1.0),
            min: Some(1.0),
            max: Some(1.0),
            unit: Unit::Celsius,
            ok: 1,
            failed: 0,
        }
    }

    fn line(secs: u64) -> String {
        let t: SystemTime = row(secs).time;
        format!(
            "{},g,1.000,1.000,1.000,celsius,1,0",
            humantime::format_rfc3339_millis(t)
        )
    }

    /// Send one row and wait until `path` holds `n` rows of the store's.
    async fn send(tx: &StoreSender, secs: u64, path: &Path, n: usize) {
        tx.send(vec![row(secs)]);
        wait_rows(path, n, LIMIT, |r| r.ends_with(",celsius,1,0")).await;
    }

    #[tokio::test]
    async fn a_batch_that_came_after_the_cut_gets_the_header_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&support::output(dir.path())).await.unwrap();
        let tx = store.sender();
        let active = dir.path().join("readings.csv");
        send(&tx, 0, &active, 1).await;
        // copytruncate's cut, then a write of the agent's that was under
        // way (O_APPEND: at the start of the emptied file).
        std::fs::File::options()
            .write(true)
            .open(&active)
            .unwrap()
            .set_len(0)
            .unwrap();
        std::fs::write(&active, format!("{}\n", line(5))).unwrap();
        send(&tx, 10, &active, 2).await;
        drop(tx);
        store.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&active).unwrap(),
            format!("{HEADER}{}\n{}\n", line(5), line(10))
        );
    }

    #[tokio::test]
    async fn logrotate_create_leaves_an_empty_file_that_becomes_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&support::output(dir.path())).await.unwrap();
        let tx = store.sender();
        let active = dir.path().join("readings.csv");
        send(&tx, 0, &active, 1).await;
        let moved = dir.path().join("readings.csv.1");
        std::fs::rename(&active, &moved).unwrap();
        std::fs::write(&active, "").unwrap();
        send(&tx, 10, &active, 1).await;
        drop(tx);
        store.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&moved).unwrap(),
            format!("{HEADER}{}\n", line(0))
        );
        assert_eq!(
            std::fs::read_to_string(&active).unwrap(),
            format!("{HEADER}{}\n", line(10))
        );
    }

    #[tokio::test]
    async fn lines_another_program_appended_are_checked_as_at_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&support::output(dir.path())).await.unwrap();
        let tx = store.sender();
        let active = dir.path().join("readings.csv");
        send(&tx, 0, &active, 1).await;
        let mut f = std::fs::File::options().append(true).open(&active).unwrap();
        std::io::Write::write_all(&mut f, b"an operator's note\n").unwrap();
        send(&tx, 10, &active, 2).await;
        drop(tx);
        store.close().await.unwrap();
        // The stray line is cut (it is no row); both rows are there once.
        assert_eq!(
            std::fs::read_to_string(&active).unwrap(),
            format!("{HEADER}{}\n{}\n", line(0), line(10))
        );
    }
}
