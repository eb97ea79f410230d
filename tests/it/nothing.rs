//! `replay` and `tail` pointed at nothing say so and what is there, exit 1:
//! a missing directory (named), an empty one, a wrong prefix (the prefixes
//! found), a group no row has (the groups found). `tail -f` on a directory
//! the agent has not written yet waits, says so on stderr, and shows the
//! rows once they come.

use crate::support;
use support::edge_agent;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_agent::history::HEADER;

fn row(t: &str, g: &str) -> String {
    format!("2026-11-24T10:{t}.000Z,{g},1.000,1.000,1.000,celsius,1,0\n")
}

fn data(d: &Path) {
    std::fs::write(
        d.join("site-20261124T100000Z.csv"),
        format!(
            "{HEADER}{}{}",
            row("00:00", "kitchen"),
            row("00:10", "cellar")
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("site.csv"),
        format!("{HEADER}{}", row("01:00", "kitchen")),
    )
    .unwrap();
    std::fs::write(d.join("lab.csv"), HEADER).unwrap();
}

/// `replay ARGS` and `tail ARGS` both fail with exit 1 and `message`,
/// printing nothing on stdout.
fn both_fail(args: &[&str], message: &str) {
    for command in ["replay", "tail"] {
        let mut all = vec![command];
        all.extend_from_slice(args);
        let (code, out, err) = edge_agent(&all);
        assert_eq!(code, 1, "{all:?}: {err}");
        assert_eq!(out, "", "{all:?}");
        assert!(err.contains(message), "{all:?}: {err}");
    }
}

#[test]
fn a_missing_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let dir = missing.to_str().unwrap();
    both_fail(
        &["--dir", dir],
        &format!("error: {dir}: no such directory; pass --dir with the agent's `output.dir`"),
    );
}

#[test]
fn an_empty_directory_or_a_wrong_prefix_names_what_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    both_fail(
        &["--dir", dir],
        &format!("no recorded files of prefix `readings` in {dir}: it holds no history files"),
    );
    data(tmp.path());
    both_fail(
        &["--dir", dir],
        &format!(
            "no recorded files of prefix `readings` in {dir}: the prefixes found there are \
             `lab`, `site` (pass --prefix NAME)"
        ),
    );
    both_fail(
        &["--dir", dir, "--prefix", "sit"],
        "no recorded files of prefix `sit`",
    );
}

#[test]
fn an_unknown_group_names_the_groups_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    data(tmp.path());
    both_fail(
        &["--dir", dir, "--prefix", "site", "--group", "kitchn"],
        "no rows of group `kitchn` in the 3 row(s) read; the groups `cellar`, `kitchen` found",
    );
    // With a known group beside it: tail prints nothing; replay to stdout
    // has streamed the known group's rows by the time it knows (to a file,
    // it leaves none: tests/it/output_file.rs).
    for command in ["replay", "tail"] {
        let args = [
            command, "--dir", dir, "--prefix", "site", "--group", "kitchen", "--group", "attic",
        ];
        let (code, out, err) = edge_agent(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("no rows of group `attic` in the 3 row(s) read"),
            "{err}"
        );
        if command == "tail" {
            assert_eq!(out, "");
        }
    }

    // Known groups still work.
    let (code, out, err) = edge_agent(&[
        "tail", "--dir", dir, "--prefix", "site", "--group", "cellar",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{HEADER}{}", row("00:10", "cellar")));
    let (code, out, err) = edge_agent(&[
        "replay", "--dir", dir, "--prefix", "site", "--group", "cellar",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{HEADER}{}", row("00:10", "cellar")));
}

#[tokio::test]
async fn follow_waits_for_a_directory_not_written_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("tail.log");
    let mut tail = Command::new(support::binary())
        .args(["tail", "-f", "--dir", data.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (printed, reader) = support::collect_stdout(&mut tail);
    let said = format!(
        "{} is not there yet: waiting for the agent to write {}",
        data.display(),
        data.join("readings.csv").display()
    );
    support::wait_until(Duration::from_secs(10), "the waiting note", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&said)
    })
    .await;
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("readings.csv"),
        format!("{HEADER}{}", row("00:00", "a")),
    )
    .unwrap();
    let want = format!("{HEADER}{}", row("00:00", "a"));
    support::wait_until(Duration::from_secs(10), "the row", || {
        *printed.lock().unwrap() == want.as_bytes()
    })
    .await;
    assert!(
        tail.try_wait().unwrap().is_none(),
        "tail -f keeps following"
    );
    tail.kill().unwrap();
    tail.wait().unwrap();
    reader.join().unwrap();
}
