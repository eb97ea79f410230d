//! Running things and timing them: a child in its own process group,
//! timed from spawn to exit and killed on timeout or SIGINT/SIGTERM, with
//! its peak RSS; the `cat` baseline; one `edge-agent replay` run checked
//! against the rows it must give; and the interleaved cat/replay rounds
//! of one history size, which fill the series the report reads.

use crate::common::{BIN, Res, io_err, mib, vm_hwm_kib};
use crate::generate::{GROUPS, History, rfc3339, tick_secs};
use crate::report::{Series, SizeResult};
use crate::stopped;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const TIME_BIN: &str = "/usr/bin/time";
pub const REPS: usize = 3;
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// How a child ended.
struct Ended {
    secs: f64,
    status: ExitStatus,
    /// Peak RSS in KiB, when measured.
    rss_kib: Option<u64>,
}

pub fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals the child's own process
    // group (process_group(0) at spawn); no memory is involved.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// Run `cmd` in its own process group, timed from spawn to exit (a waiter
/// thread reaps it). Killed with its group on timeout or SIGINT/SIGTERM.
/// `poll_rss`: sample the child's VmHWM every 10 ms and keep the max.
fn run_timed(name: &str, cmd: &mut Command, timeout: Duration, poll_rss: bool) -> Res<Ended> {
    cmd.process_group(0).stdin(Stdio::null());
    let start = Instant::now();
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, Instant::now()));
    });
    let tick = Duration::from_millis(if poll_rss { 10 } else { 50 });
    let mut rss: Option<u64> = None;
    loop {
        if poll_rss {
            if let Ok(k) = vm_hwm_kib(pid) {
                rss = Some(rss.map_or(k, |r| r.max(k)));
            }
        }
        match rx.recv_timeout(tick) {
            Ok((status, at)) => {
                let _ = waiter.join();
                let status = status.map_err(|e| format!("cannot wait for {name}: {e}"))?;
                return Ok(Ended {
                    secs: (at - start).as_secs_f64(),
                    status,
                    rss_kib: rss,
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let why = if stopped() {
                    Some("interrupted".to_string())
                } else if start.elapsed() > timeout {
                    Some(format!("{name} did not finish within {timeout:?}"))
                } else {
                    None
                };
                if let Some(why) = why {
                    kill_group(pid);
                    let _ = rx.recv_timeout(Duration::from_secs(10));
                    let _ = waiter.join();
                    return Err(why);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = waiter.join();
                return Err(format!("lost the waiter of {name}"));
            }
        }
    }
}

/// `cat DIR/*.csv > /dev/null`, timed.
fn time_cat(dir: &Path) -> Res<f64> {
    let ended = run_timed(
        "cat",
        Command::new("sh")
            .args(["-c", "cat \"$1\"/*.csv > /dev/null", "sh"])
            .arg(dir),
        RUN_TIMEOUT,
        false,
    )?;
    if !ended.status.success() {
        return Err(format!("cat of {} failed: {}", dir.display(), ended.status));
    }
    Ok(ended.secs)
}

/// Free bytes of the file system holding `dir`, as `df` says.
pub fn free_bytes(dir: &Path) -> Res<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run df: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|k| k * 1024)
        .ok_or_else(|| format!("cannot read df's output: {text}"))
}

/// One replay run: what it said and what it cost.
pub struct Replayed {
    pub secs: f64,
    pub rss_kib: u64,
    pub rows: u64,
    pub files: u64,
    pub stderr: String,
}

/// `replay --dir DIR ARGS`, timed, its peak RSS measured; fails unless it
/// exits 0 having replayed `want_rows` rows and skipped nothing.
pub fn replay(work: &Path, dir: &Path, args: &[&str], want_rows: u64) -> Res<Replayed> {
    let err_path = work.join("replay.stderr");
    let rss_path = work.join("replay.rss");
    let _ = fs::remove_file(&rss_path);
    let stderr = fs::File::create(&err_path).map_err(io_err(&err_path))?;
    let use_time = Path::new(TIME_BIN).exists();
    let mut cmd = if use_time {
        let mut c = Command::new(TIME_BIN);
        c.args(["-f", "%M", "-o"]).arg(&rss_path).arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("replay")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr);
    let what = format!("replay --dir {} {}", dir.display(), args.join(" "));
    let ended = run_timed(&what, &mut cmd, RUN_TIMEOUT, !use_time)?;
    let text = fs::read_to_string(&err_path).unwrap_or_default();
    if !ended.status.success() {
        return Err(format!("{what}: exit {}:\n{text}", ended.status));
    }
    let rss_kib = if use_time {
        let t = fs::read_to_string(&rss_path).map_err(io_err(&rss_path))?;
        t.lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .next_back()
            .ok_or_else(|| format!("no %M in {}: {t:?}", rss_path.display()))?
    } else {
        ended.rss_kib.ok_or("no VmHWM sample of the replay")?
    };
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains("replayed "))
        .ok_or_else(|| format!("{what}: no summary line:\n{text}"))?;
    let num_before = |key: &str| -> Option<u64> {
        let words: Vec<&str> = summary.split_whitespace().collect();
        let i = words.iter().position(|w| w.starts_with(key))?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    let (rows, files, skipped) = match (
        num_before("row(s)"),
        num_before("file(s)"),
        num_before("line(s)"),
    ) {
        (Some(r), Some(f), Some(s)) => (r, f, s),
        _ => return Err(format!("{what}: cannot read the summary `{summary}`")),
    };
    if rows != want_rows || skipped != 0 {
        return Err(format!(
            "{what}: replayed {rows} row(s), skipped {skipped}; expected {want_rows} and 0:\n{text}"
        ));
    }
    Ok(Replayed {
        secs: ended.secs,
        rss_kib,
        rows,
        files,
        stderr: text,
    })
}

/// The timed rounds of one history: with the page cache warm, REPS times
/// each kind of replay, a cat of layout (a) before every one.
pub fn bench_size(work: &Path, h: &History) -> Res<SizeResult> {
    let since_tick = h.ticks / 4;
    let since = rfc3339(tick_secs(since_tick));
    let since_rows = (h.ticks - since_tick) * GROUPS;
    // Warm the page cache: layout (a), and (b)'s gzip files.
    time_cat(&h.plain)?;
    let warm = run_timed(
        "cat (warm-up)",
        Command::new("sh")
            .args(["-c", "cat \"$1\"/*.gz > /dev/null", "sh"])
            .arg(&h.mixed),
        RUN_TIMEOUT,
        false,
    )?;
    if !warm.status.success() {
        return Err(format!("cat of {}/*.gz failed", h.mixed.display()));
    }
    let (mut csv, mut influx, mut mixed) =
        (Series::default(), Series::default(), Series::default());
    let (mut bare_csv, mut bare_influx) = (Series::default(), Series::default());
    let mut cat_all = Vec::new();
    let csv_args = ["--format", "csv", "--output", "/dev/null"];
    let influx_args = [
        "--format",
        "influx",
        "--since",
        &since,
        "--output",
        "/dev/null",
    ];
    for rep in 0..REPS {
        for (series, dir, args, rows) in [
            (&mut csv, &h.plain, &csv_args[..], h.rows()),
            (&mut influx, &h.plain, &influx_args[..], since_rows),
            (&mut mixed, &h.mixed, &csv_args[..], h.rows()),
            (&mut bare_csv, &h.bare, &csv_args[..], h.rows()),
            (&mut bare_influx, &h.bare, &influx_args[..], since_rows),
        ] {
            let cat = time_cat(&h.plain)?;
            let r = replay(work, dir, args, rows)?;
            println!(
                "  {} rep {}: cat {:.3} s | replay {} {}: {:.2} s, {} rows from {} files, peak RSS {:.1} MiB",
                h.label,
                rep + 1,
                cat,
                if *dir == h.mixed {
                    "(b)"
                } else if *dir == h.bare {
                    "(c)"
                } else {
                    "(a)"
                },
                args[..args.len() - 2].join(" "),
                r.secs,
                r.rows,
                r.files,
                mib(r.rss_kib)
            );
            cat_all.push(cat);
            series.secs.push(r.secs);
            series.rss_kib.push(r.rss_kib);
            series.files = r.files;
        }
    }
    Ok(SizeResult {
        label: h.label.clone(),
        bytes: h.bytes,
        since_bytes: h.bytes_from(since_tick),
        since_rows,
        since,
        csv,
        influx,
        mixed,
        bare_csv,
        bare_influx,
        cat_all,
    })
}
