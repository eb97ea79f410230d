//! The readers (`replay`, `tail`) against what happens around the agent:
//! a clock that was a day ahead and then corrected (files named in the
//! future, a file whose rows go back in time), the writer's alternate active
//! file `PREFIX+N.csv` beside a foreign `PREFIX.csv`, and retention removing
//! files faster than `tail -f` reads them. The files are written as the
//! store leaves them (or by the store itself), then read by the real binary.

use crate::support;
use support::edge_agent;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::config::Unit;
use edge_agent::history::{HEADER, Row};
use edge_agent::store::Store;

const DAY: u64 = 86_400;

/// Seconds since the epoch, now, rounded down to ten seconds.
fn now_secs() -> u64 {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    s - s % 10
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A row line of group `a` at `secs`, as the store writes it.
fn row(secs: u64) -> String {
    let t = humantime::format_rfc3339_millis(time(secs));
    format!("{t},a,20.000,19.500,20.250,celsius,4,0\n")
}

/// `2026-12-04T13:00:00Z` as a rotated name's time.
fn compact(secs: u64) -> String {
    edge_agent::history::names::compact_time(time(secs))
}

/// Write a data file of `rows` (times in seconds), last modified one second
/// after its last row: what the clock said when it was last written.
fn data_file(dir: &Path, name: &str, rows: &[u64]) -> PathBuf {
    let path = dir.join(name);
    let text: String = rows.iter().map(|s| row(*s)).collect();
    std::fs::write(&path, format!("{HEADER}{text}")).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(time(rows.last().unwrap() + 1)).unwrap();
    path
}

/// The files of a clock episode starting at `base`: thirty rows every 10 s
/// (A), then the clock a day ahead for thirty rows (B), then corrected to
/// just after A for thirty rows (C), rotated every fifteen rows or so as a
/// size rotation would. The file active at the correction holds B's end
/// and C's start. Returns (rows of A and C, in the order replay gives them,
/// the future- or back-dated names).
fn clock_episode(dir: &Path, base: u64) -> (Vec<u64>, Vec<String>) {
    let a: Vec<u64> = (0..30).map(|i| base + i * 10).collect();
    let b: Vec<u64> = (0..30).map(|i| base + DAY + i * 10).collect();
    let c: Vec<u64> = (0..30).map(|i| base + 310 + i * 10).collect();
    let name = |first: u64| format!("readings-{}.csv", compact(first));
    data_file(dir, &name(a[0]), &a[..15]);
    data_file(dir, &name(a[15]), &a[15..]);
    data_file(dir, &name(b[0]), &b[..15]);
    let mixed: Vec<u64> = b[15..].iter().chain(&c[..10]).copied().collect();
    data_file(dir, &name(b[15]), &mixed);
    data_file(dir, &name(c[10]), &c[10..20]);
    data_file(dir, "readings.csv", &c[20..]);
    // Name order: A's two files, the file rotated after the correction
    // (named before B), B's, the mixed one, then the active file.
    let order = [&a[..], &c[10..20], &c[..10], &c[20..]].concat();
    (order, vec![name(b[0]), name(b[15])])
}

fn expected(rows: &[u64]) -> String {
    let text: String = rows.iter().map(|s| row(*s)).collect();
    format!("{HEADER}{text}")
}

#[test]
fn replay_until_after_a_clock_step_reads_the_active_and_future_dated_files_by_row_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = now_secs();
    // The episode began three hours ago: B's names are a day ahead of now.
    let (rows, future) = clock_episode(d, now - 3 * 3600);
    let until = humantime::format_rfc3339_seconds(time(now)).to_string();
    let (code, out, err) = edge_agent(&["replay", "--dir", d.to_str().unwrap(), "--until", &until]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        expected(&rows),
        "every row before --until, in file order\n{err}"
    );
    assert!(
        err.contains("replayed 60 row(s) from 6 file(s), skipped 0 line(s)"),
        "{err}"
    );
    for name in &future {
        let note = format!("{} is named after", d.join(name).display());
        assert_eq!(
            err.matches(&note).count(),
            1,
            "once per file: {note}\n{err}"
        );
    }
    assert_eq!(
        err.matches(
            "later than now (", // the reader's now follows
        )
        .count(),
        2,
        "{err}"
    );
    assert_eq!(
        err.matches(
            "the clock was probably wrong when it was written; its rows are read by their times"
        )
        .count(),
        2,
        "{err}"
    );
}

#[test]
fn replay_until_long_after_a_clock_step_reads_the_file_written_before_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = now_secs();
    // The episode is three days old: every name is in the past now, but
    // the mixed file was last written before the time it is named after.
    let base = now - 3 * DAY;
    let (rows, dated) = clock_episode(d, base);
    let until = humantime::format_rfc3339_seconds(time(base + 7200)).to_string();
    let (code, out, err) = edge_agent(&["replay", "--dir", d.to_str().unwrap(), "--until", &until]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, expected(&rows), "{err}");
    // B's first file is skipped by its name, rightly (a day later than
    // --until, and written then); the mixed one is read.
    assert!(
        err.contains("replayed 60 row(s) from 5 file(s), skipped 0 line(s)"),
        "{err}"
    );
    let note = format!(
        "{} is named after {} but was last written at {}, before that: the clock went back \
         while it was written; its rows are read by their times",
        d.join(&dated[1]).display(),
        humantime::format_rfc3339_seconds(time(base + DAY + 150)),
        humantime::format_rfc3339_seconds(time(base + 310 + 90 + 1)),
    );
    assert_eq!(err.matches(&note).count(), 1, "{note}\n{err}");
}

#[test]
fn tail_n_names_each_future_dated_file_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = now_secs();
    let (_, future) = clock_episode(d, now - 3 * 3600);
    let (code, out, err) = edge_agent(&["tail", "--dir", d.to_str().unwrap(), "-n", "100"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1 + 90, "{out}");
    for name in &future {
        let note = format!("{} is named after", d.join(name).display());
        assert_eq!(err.matches(&note).count(), 1, "{note}\n{err}");
    }
    assert_eq!(
        err.matches(
            "later than now (", // the reader's now follows
        )
        .count(),
        2,
        "{err}"
    );
    assert!(
        err.contains("tail shows its rows in name order, after every file named before it"),
        "{err}"
    );
    // The last rows come from the newest files only: no note.
    let (_, _, err) = edge_agent(&["tail", "--dir", d.to_str().unwrap(), "-n", "5"]);
    assert!(!err.contains("named after"), "{err}");
}

/// A child's stdout and stderr, collected as they come.
struct Collected {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Collected {
    fn spawn(args: &[&str]) -> Collected {
        let mut child = Command::new(support::binary())
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let err: Arc<Mutex<Vec<u8>>> = Arc::default();
        let pipe = |mut from: Box<dyn Read + Send>, to: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    to.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        };
        pipe(Box::new(child.stdout.take().unwrap()), out.clone());
        pipe(Box::new(child.stderr.take().unwrap()), err.clone());
        Collected { child, out, err }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn signal(&self, sig: libc::c_int) {
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    /// SIGINT, then wait for a clean exit.
    fn stop(&mut self) {
        self.signal(libc::SIGINT);
        let mut status = None;
        assert!(
            support::eventually_blocking(Duration::from_secs(10), || {
                status = self.child.try_wait().unwrap();
                status.is_some()
            }),
            "tail did not stop"
        );
        assert!(status.unwrap().success(), "{}", self.err());
    }

    async fn wait_out(&self, what: &str, cond: impl Fn(&str) -> bool) {
        if !support::eventually(Duration::from_secs(10), || cond(&self.out())).await {
            panic!(
                "waited for {what}; stdout:\n{}\nstderr:\n{}",
                self.out(),
                self.err()
            );
        }
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn replay_and_tail_read_the_alternate_active_file_beside_a_foreign_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = now_secs() - 3600;
    let at = |i: u64| base + i * 10;
    data_file(
        d,
        &format!("readings-{}.csv", compact(at(0))),
        &[at(0), at(1), at(2)],
    );
    // Someone else's file where the active file should be: the writer
    // leaves it alone and writes readings+1.csv.
    std::fs::write(d.join("readings.csv"), "id,name\n1,pump\n").unwrap();
    data_file(d, "readings+1.csv", &[at(3), at(4), at(5)]);
    let dir_arg = d.to_str().unwrap();

    let (code, out, err) = edge_agent(&["replay", "--dir", dir_arg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, expected(&(0..6).map(at).collect::<Vec<_>>()), "{err}");
    let (code, out, err) = edge_agent(&["tail", "--dir", dir_arg, "-n", "4"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, expected(&[at(2), at(3), at(4), at(5)]), "{err}");

    // tail -f follows the writer's file, then its next one when the
    // writer goes back to readings.csv.
    let mut tail = Collected::spawn(&["tail", "--dir", dir_arg, "-n", "1", "-f"]);
    tail.wait_out("the last row", |o| o == expected(&[at(5)]))
        .await;
    let append = |path: &Path, rows: &[u64]| {
        use std::io::Write;
        let mut f = std::fs::File::options().append(true).open(path).unwrap();
        for r in rows {
            f.write_all(row(*r).as_bytes()).unwrap();
        }
    };
    append(&d.join("readings+1.csv"), &[at(6)]);
    tail.wait_out("the row appended to readings+1.csv", |o| {
        o == expected(&[at(5), at(6)])
    })
    .await;
    // Rotation of readings+1.csv; the foreign file is gone; the next
    // active file is readings.csv again.
    std::fs::rename(
        d.join("readings+1.csv"),
        d.join(format!("readings-{}.csv", compact(at(3)))),
    )
    .unwrap();
    std::fs::remove_file(d.join("readings.csv")).unwrap();
    data_file(d, "readings.csv", &[at(7)]);
    append(&d.join("readings.csv"), &[at(8)]);
    tail.wait_out("the rows of the new readings.csv", |o| {
        o == expected(&[at(5), at(6), at(7), at(8)])
    })
    .await;
    tail.stop();
    assert!(!tail.err().contains("skipped"), "{}", tail.err());
}

/// `(after, before)` of each gap `tail -f` reported, in seconds (`None`:
/// open-ended).
fn reported_spans(err: &str) -> Vec<(Option<u64>, Option<u64>)> {
    let secs = |t: &str| {
        humantime::parse_rfc3339(t)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let word_after = |line: &str, key: &str| {
        line.split(key)
            .nth(1)
            .map(|rest| rest.split([' ', ',', ';']).next().unwrap().to_string())
    };
    err.lines()
        .filter(|l| l.contains("skipped: ") || l.contains("skipped?: "))
        .map(|l| {
            let after = word_after(l, "rows after ").map(|t| secs(&t));
            let key = if after.is_some() {
                " and before "
            } else {
                "rows before "
            };
            let before = word_after(l, key).map(|t| secs(&t));
            (after, before)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_f_reports_rows_retention_removed_before_it_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut out = support::output(&data);
    // Two rows a file, one rotated file kept.
    out.max_size = Some((HEADER.len() + 2 * row(0).len()) as u64);
    out.keep = 1;
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    let base = now_secs() - 3600;
    let at = |i: u64| base + i * 10;
    let send = |i: u64| {
        tx.send(vec![Row {
            time: time(at(i)),
            group: "a".into(),
            mean: Some(20.0),
            min: Some(19.5),
            max: Some(20.25),
            unit: Unit::Celsius,
            ok: 4,
            failed: 0,
        }])
    };
    let written = |i: u64| {
        let line = row(at(i));
        let data = data.clone();
        move || {
            support::file_names(&data)
                .iter()
                .any(|n| std::fs::read_to_string(data.join(n)).is_ok_and(|t| t.contains(&line)))
        }
    };
    for i in 0..3 {
        send(i);
    }
    support::wait_until(Duration::from_secs(10), "the first rows", written(2)).await;

    // Once tail shows the last row, it follows the file that holds it.
    let mut tail = Collected::spawn(&["tail", "--dir", data.to_str().unwrap(), "-n", "1", "-f"]);
    tail.wait_out("the last row", |o| o == expected(&[at(2)]))
        .await;
    // Followed row by row: nothing is lost, nothing reported.
    for i in 3..9 {
        send(i);
        let line = row(at(i));
        tail.wait_out("a followed row", |o| o.ends_with(&line))
            .await;
    }
    assert!(!tail.err().contains("skipped"), "{}", tail.err());
    // tail stops; ninety rotations go by, each removing the file before.
    tail.signal(libc::SIGSTOP);
    for i in 9..190 {
        send(i);
    }
    support::wait_until(Duration::from_secs(10), "the burst written", written(189)).await;
    tail.signal(libc::SIGCONT);
    for i in 190..194 {
        send(i);
        let line = row(at(i));
        tail.wait_out("a row after the burst", |o| o.ends_with(&line))
            .await;
    }
    drop(tx);
    store.close().await.unwrap();
    tail.stop();

    let (printed, err) = (tail.out(), tail.err());
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], HEADER.trim_end());
    let rows: Vec<String> = lines[1..].iter().map(|l| format!("{l}\n")).collect();
    let printed_at: Vec<u64> = rows
        .iter()
        .map(|r| (2..194).find(|i| row(at(*i)) == *r).expect("a row written"))
        .collect();
    assert!(
        printed_at.windows(2).all(|w| w[0] < w[1]),
        "in order, each once: {printed_at:?}"
    );
    let spans = reported_spans(&err);
    assert!(!spans.is_empty(), "the skip is reported:\n{err}");
    let inside = |i: u64| {
        spans
            .iter()
            .any(|(a, b)| a.is_none_or(|a| at(i) > a) && b.is_none_or(|b| at(i) < b))
    };
    let unprinted: Vec<u64> = (3..194).filter(|i| !printed_at.contains(i)).collect();
    assert!(!unprinted.is_empty(), "retention outpaced tail");
    for i in &unprinted {
        assert!(inside(*i), "row {i} neither printed nor reported:\n{err}");
    }
    // A span holds only rows tail did not print.
    for i in &printed_at {
        assert!(
            !inside(*i),
            "row {i} printed inside a reported span:\n{err}"
        );
    }
}

#[tokio::test]
async fn tail_f_reads_a_file_truncated_and_written_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = now_secs() - 3600;
    let at = |i: u64| base + i * 10;
    let active = d.join("readings.csv");
    data_file(d, "readings.csv", &(0..5).map(at).collect::<Vec<_>>());
    let mut tail = Collected::spawn(&["tail", "--dir", d.to_str().unwrap(), "-n", "1", "-f"]);
    tail.wait_out("the last row", |o| o == expected(&[at(4)]))
        .await;
    // copytruncate, and the writer starting the file again, header first,
    // while tail looks away: the file is longer than where tail was.
    tail.signal(libc::SIGSTOP);
    data_file(d, "readings.csv", &(5..12).map(at).collect::<Vec<_>>());
    tail.signal(libc::SIGCONT);
    let all: Vec<u64> = [4].into_iter().chain(5..12).map(at).collect();
    tail.wait_out("every row of the file written again", |o| {
        o == expected(&all)
    })
    .await;
    // And shorter than where tail was.
    tail.signal(libc::SIGSTOP);
    std::fs::write(&active, format!("{HEADER}{}", row(at(12)))).unwrap();
    tail.signal(libc::SIGCONT);
    let all: Vec<u64> = [4].into_iter().chain(5..13).map(at).collect();
    tail.wait_out("the row of the file written again", |o| o == expected(&all))
        .await;
    tail.stop();
    assert_eq!(
        tail.err()
            .matches("truncated and written again from its start (copytruncate?)")
            .count(),
        2,
        "{}",
        tail.err()
    );
}

#[tokio::test]
async fn tail_f_knows_the_file_it_followed_once_rotated_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = now_secs() - 3600;
    let at = |i: u64| base + i * 10;
    data_file(d, "readings.csv", &[at(0), at(1), at(2)]);
    let mut tail = Collected::spawn(&["tail", "--dir", d.to_str().unwrap(), "-n", "3", "-f"]);
    tail.wait_out("the rows", |o| o == expected(&[at(0), at(1), at(2)]))
        .await;
    // Rotated and compressed while tail looks away: its copy is a new
    // file (.csv.gz), not the one tail holds.
    tail.signal(libc::SIGSTOP);
    let rotated = d.join(format!("readings-{}.csv", compact(at(0))));
    std::fs::rename(d.join("readings.csv"), &rotated).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(&rotated).unwrap()).unwrap();
    std::fs::write(format!("{}.gz", rotated.display()), gz.finish().unwrap()).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    data_file(d, "readings.csv", &[at(3)]);
    tail.signal(libc::SIGCONT);
    tail.wait_out("the new file's row", |o| o.ends_with(&row(at(3))))
        .await;
    tail.stop();
    assert_eq!(tail.out(), expected(&(0..4).map(at).collect::<Vec<_>>()));
    assert!(!tail.err().contains("skipped"), "{}", tail.err());
}
