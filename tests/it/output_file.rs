//! `replay --output PATH` cannot destroy what it replays nor leave half a
//! file: a path inside the data directory (directly, through a symlink, in
//! a copy being replayed) is refused and the files stay byte for byte; an
//! existing file is refused unless `--force` or `--append` (one header);
//! SIGINT or SIGTERM mid-replay leaves the target as it was and no partial
//! file behind.

use crate::support;
use support::edge_agent;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_agent::history::HEADER;

fn row(t: &str, g: &str) -> String {
    format!("2026-11-24T10:{t}.000Z,{g},1.000,1.000,1.000,celsius,1,0\n")
}

/// A data dir as the agent leaves it: a rotated `.gz`, a rotated plain
/// file and the active file.
fn data_dir(d: &Path) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{HEADER}{}{}", row("00:00", "a"), row("00:10", "b")).as_bytes())
        .unwrap();
    std::fs::write(
        d.join("readings-20261124T100000Z.csv.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("readings-20261124T100100Z.csv"),
        format!("{HEADER}{}{}", row("01:00", "a"), row("01:10", "b")),
    )
    .unwrap();
    std::fs::write(
        d.join("readings.csv"),
        format!("{HEADER}{}{}", row("02:00", "a"), row("02:10", "b")),
    )
    .unwrap();
}

/// Every file of `dir` (recursively not needed) with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    all.sort();
    all
}

fn all_rows() -> String {
    format!(
        "{HEADER}{}{}{}{}{}{}",
        row("00:00", "a"),
        row("00:10", "b"),
        row("01:00", "a"),
        row("01:10", "b"),
        row("02:00", "a"),
        row("02:10", "b")
    )
}

/// A temp dir holding `data/` ([`data_dir`]).
fn with_data() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    data_dir(&data);
    (tmp, data)
}

/// `replay --dir DATA --output OUT EXTRA...`
fn replay_to(data: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["replay", "--dir", s(data), "--output", s(out)];
    args.extend_from_slice(extra);
    edge_agent(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_path_inside_the_data_directory_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("copy-of-data");
    std::fs::create_dir(&data).unwrap();
    data_dir(&data);
    std::os::unix::fs::symlink(&data, tmp.path().join("link")).unwrap();
    let before = snapshot(&data);
    let targets: Vec<PathBuf> = vec![
        data.join("readings.csv"),
        data.join("readings-20261124T100000Z.csv.gz"),
        data.join("new.csv"),
        tmp.path().join("link/readings.csv"),
        tmp.path().join("link/../copy-of-data/other.csv"),
    ];
    for target in &targets {
        for extra in [&[][..], &["--force"][..], &["--append"][..]] {
            let mut args = vec!["replay", "--dir", s(&data), "--output", s(target)];
            args.extend_from_slice(extra);
            let (code, out, err) = edge_agent(&args);
            assert_eq!(code, 2, "{target:?} {extra:?}: {err}");
            assert_eq!(out, "");
            assert!(
                err.contains(&format!(
                    "--output {}: inside the data directory",
                    target.display()
                )),
                "{err}"
            );
            assert_eq!(snapshot(&data), before, "{target:?} {extra:?}");
        }
    }
    // Through the symlinked data dir too.
    let (code, _, err) = edge_agent(&[
        "replay",
        "--dir",
        s(&tmp.path().join("link")),
        "--output",
        s(&data.join("readings.csv")),
        "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(snapshot(&data), before);
}

#[test]
fn an_existing_file_needs_force_or_append_with_one_header() {
    let (tmp, data) = with_data();
    let out = tmp.path().join("out.csv");
    std::fs::write(&out, "precious\n").unwrap();
    let (code, _, err) = replay_to(&data, &out, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "--output {}: the file exists; pass --force to replace it or --append",
            out.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");

    // Another header: not appended to.
    let (code, _, err) = replay_to(&data, &out, &["--append"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("its first line is `precious`"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");

    // --force replaces it, whole.
    let (code, _, err) = replay_to(&data, &out, &["--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), all_rows());

    // --append after our header adds rows, no second header.
    let (code, _, err) = replay_to(
        &data,
        &out,
        &["--append", "--since", "2026-11-24T10:02:00Z"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}{}{}", all_rows(), row("02:00", "a"), row("02:10", "b"))
    );
    // A new file with --append is simply written, header first.
    let fresh = tmp.path().join("fresh.csv");
    let (code, _, err) = replay_to(&data, &fresh, &["--append"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), all_rows());
    assert_eq!(
        support::all_names(tmp.path()),
        ["data", "fresh.csv", "out.csv"],
        "no temporary file left"
    );
}

/// A replay paced at real time (rows 10 s apart) is stopped by `signal`
/// while it writes: the target is as it was, no partial file is left.
fn interrupted(signal: libc::c_int, existing: Option<&str>) {
    let (tmp, data) = with_data();
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("r.csv");
    let mut args = vec![
        "replay",
        "--dir",
        s(&data),
        "--output",
        s(&out),
        "--speed",
        "1",
    ];
    if let Some(text) = existing {
        std::fs::write(&out, text).unwrap();
        args.push("--force");
    }
    let log = tmp.path().join("replay.log");
    let mut child = Command::new(support::binary())
        .args(&args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The first row is written (to the temporary file), the next is 10 s away.
    let partial = || {
        std::fs::read_dir(&outdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".partial"))
    };
    assert!(
        support::eventually_blocking(Duration::from_secs(10), || {
            partial().is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        }),
        "no partial file with rows: {:?}",
        support::all_names(&outdir)
    );
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let mut status = None;
    assert!(support::eventually_blocking(
        Duration::from_secs(10),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        }
    ));
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.unwrap().code(), Some(128 + signal), "{err}");
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    assert!(
        err.contains(&format!(
            "{name}: replay stopped; {} is as it was",
            out.display()
        )),
        "{err}"
    );
    match existing {
        Some(text) => {
            assert_eq!(support::all_names(&outdir), ["r.csv"]);
            assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
        }
        None => assert!(
            support::all_names(&outdir).is_empty(),
            "{:?}",
            support::all_names(&outdir)
        ),
    }
}

#[test]
fn sigint_mid_replay_leaves_no_file() {
    interrupted(libc::SIGINT, None);
}

#[test]
fn sigterm_mid_forced_replay_leaves_the_old_file() {
    interrupted(libc::SIGTERM, Some("old rows\n"));
}

#[test]
fn an_error_mid_replay_leaves_no_file() {
    let (tmp, data) = with_data();
    let out = tmp.path().join("r.csv");
    // A group no row has fails after the rows were read and written.
    let (code, _, err) = replay_to(&data, &out, &["--group", "kitchn"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(support::all_names(tmp.path()), ["data"]);
}
