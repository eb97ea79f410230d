//! A real full file system: the real binary writes into a 256 KiB tmpfs, a
//! filler file takes the rest of it, the agent keeps polling and holds its
//! rows, the filler goes, and the held rows arrive whole and once.
//!
//! Mounting needs root (CAP_SYS_ADMIN); where that is not allowed the test
//! says why and passes without checking anything.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use edge_agent::history::HEADER;
use support::{Agent, Reply, TestServer, fields, wait_rows};

const LIMIT: Duration = Duration::from_secs(30);

/// A mounted tmpfs, unmounted on drop whatever happens in the test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open: detach it now, freed when closed.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fill the file system at `path` until it refuses more; true if it did.
fn fill(path: &Path) -> bool {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![b'x'; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            return e.raw_os_error() == Some(libc::ENOSPC);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_system_holds_rows_until_there_is_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _mount = match Tmpfs::mount(&data, "256k") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED: cannot mount a small tmpfs here ({why})");
            return;
        }
    };
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/a", Reply::ok("20"));
    server.route("/b", Reply::ok("30"));
    let mut text = format!(
        "interval: 100ms\ntimeout: 80ms\noutput:\n  dir: {}\n  fsync: always\n  \
         rotate:\n    max_size: 2KiB\ngroups:\n",
        data.display()
    );
    for g in ["a", "b"] {
        text += &format!(
            "  - name: {g}\n    unit: celsius\n    sensors:\n      \
             - {{ id: {g}, url: '{}', format: text }}\n",
            server.url(0, &format!("/{g}"))
        );
    }
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, text).unwrap();
    let mut agent = Agent::start(&["run", "--config", config.to_str().unwrap()], dir.path());
    let csv = data.join("readings.csv");
    wait_rows(&csv, 4, LIMIT, |_| true).await;

    let filler = data.join("filler");
    assert!(fill(&filler), "the tmpfs never filled up");
    agent
        .wait_log(LIMIT, |l| l.contains("cannot write to"))
        .await;
    let full_from = SystemTime::now();
    // Cycles go on while nothing can be written: 15 of them (two sensors,
    // so two requests a cycle) polled while the disk is full.
    let polled = server.counters.requests();
    support::wait_until(LIMIT, "15 cycles polled while the disk is full", || {
        server.counters.requests() >= polled + 2 * 15
    })
    .await;
    let full_until = SystemTime::now();
    std::fs::remove_file(&filler).unwrap();
    agent.wait_log(LIMIT, |l| l.contains("works again")).await;
    // A few more cycles (the active file may rotate, so no row count here).
    let polled = server.counters.requests();
    support::wait_until(LIMIT, "5 more cycles", || {
        server.counters.requests() >= polled + 2 * 5
    })
    .await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());

    // Every file: header, whole rows; per group strictly increasing times.
    let mut rows = Vec::new();
    let mut names: Vec<String> = support::file_names(&data);
    names.retain(|n| n != "readings.csv");
    names.push("readings.csv".into());
    for name in &names {
        let text = support::read_text(&data.join(name));
        assert!(text.starts_with(HEADER), "{name}: {text:?}");
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        rows.extend(text.lines().skip(1).map(str::to_string));
    }
    let mut last: std::collections::HashMap<String, SystemTime> = Default::default();
    let mut held = 0;
    for row in &rows {
        let f = fields(row);
        assert_eq!(f.len(), 8, "torn row: {row}");
        let t = humantime::parse_rfc3339(&f[0]).unwrap_or_else(|_| panic!("{row}"));
        let want = if f[1] == "a" { "20.000" } else { "30.000" };
        assert_eq!(&f[2..], [want, want, want, "celsius", "1", "0"], "{row}");
        if let Some(prev) = last.insert(f[1].clone(), t) {
            assert!(t > prev, "duplicate or out of order: {row}");
        }
        held += usize::from((full_from..full_until).contains(&t));
    }
    assert!(
        held >= 10,
        "rows polled while the disk was full arrive afterwards: {held} of them\n{}",
        agent.log_text()
    );
    let log = agent.log_text();
    assert_eq!(log.matches("cannot write to").count(), 1, "{log}");
    let recovered = log
        .lines()
        .filter(|l| l.contains("writing to") && l.contains("works again"))
        .count();
    assert_eq!(recovered, 1, "{log}");
    assert!(log.matches("rotation failed").count() <= 1, "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    println!(
        "tmpfs 256k: {} rows in {} file(s), {held} polled while full",
        rows.len(),
        names.len()
    );
}
