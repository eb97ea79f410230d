//! End-to-end benchmark of `edge-agent replay` with the real binary.
//!
//! ```text
//! cargo bench --bench replay
//! ```
//!
//! 1. Generates two recorded histories under /tmp, in the agent's exact row
//!    format (10 groups, one row per group every 5 s, 3 decimals, about 1%
//!    empty rows), rotated at 16 MiB into `readings-YYYYMMDDTHHMMSSZ.csv`
//!    plus an active `readings.csv`: 100 MiB and 1 GiB. Each in two layouts:
//!    (a) all plain; (b) the same rows with every other rotated file gzipped
//!    (`Compression::fast()`), the plain ones hard links to (a).
//! 2. Checks that replaying layout (b) of 100 MiB gives back, byte for byte,
//!    the header and every row of (a) in order.
//! 3. With the page cache warm, times `cat DIR/*.csv > /dev/null` of layout
//!    (a) and, interleaved, `replay --format csv`, `replay --format influx
//!    --since T` (T 25% into the history) and `replay` of layout (b), all
//!    `--output /dev/null`, 3 repetitions each, a cat before every replay.
//!    Ratio = median of the 9 cat times / median replay time (a throughput
//!    ratio). Every replay runs under `/usr/bin/time -f %M` for its
//!    peak RSS (or, without it, a 10 ms poll of VmHWM) and must report the
//!    expected row count and no skipped line.
//! 4. Starts VictoriaMetrics on 127.0.0.1 (a free port, temp data dir),
//!    replays 3 disjoint windows of 200,000 rows of the 100 MiB history with
//!    `--format influx --output http://127.0.0.1:PORT/write`, then counts
//!    the points back through `/api/v1/export`: every window must be there,
//!    no duplicate. Points/s = points of a window / its replay time.
//!
//! 5. Times the block encoder of line protocol alone, in this process, on
//!    one rotated file of the 1 GiB history, in the blocks of its index:
//!    ns per row, best of 15, beside a copy of the same bytes.
//!
//! With `REPLAY_BENCH_HISTORY=DIR` it only generates the 1 GiB history
//! (`DIR/1 GiB-plain`, `-mixed`, `-bare`) and keeps it, for comparing
//! binaries outside the bench.
//!
//! The process exits non-zero only when the run itself failed, not when a
//! goal is missed. Children run in their own process groups and are killed
//! on every path (also on SIGINT/SIGTERM); the temp dir is removed on drop.
//! Only loopback addresses are used. Without `--bench` (e.g. under
//! `cargo test --all-targets`) it does nothing, so test runs stay fast.

mod common;
use common::{BIN, free_port, median, mib, print_table};
use edge_agent::history::index;

use std::collections::HashSet;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const TIME_BIN: &str = "/usr/bin/time";
const VM_BIN: &str = "/usr/bin/victoria-metrics";

const MIB: u64 = 1 << 20;
const SMALL_BYTES: u64 = 100 * MIB;
const LARGE_BYTES: u64 = 1024 * MIB;
/// A rotated file is closed at the first tick boundary past this size.
const FILE_BYTES: u64 = 16 * MIB;
const GROUPS: u64 = 10;
const STEP_S: u64 = 5;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;
/// `replay`'s slack before `--since` when picking files by name (discover.rs).
const SLACK_S: u64 = 3600;
const REPS: usize = 3;
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Rows of one VictoriaMetrics window: 20,000 ticks of 10 groups.
const VM_TICKS: u64 = 20_000;
const VM_WINDOWS: u64 = 3;
const VM_FIRST_TICK: u64 = 10_000;

const GOAL_CSV_RATIO: f64 = 0.8;
const GOAL_INFLUX_RATIO: f64 = 0.3;
const GOAL_RSS_MIB: f64 = 16.0;

type Res<T> = Result<T, String>;

/// Set by SIGINT/SIGTERM: every wait loop then kills its child and fails.
static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("replay: run with `cargo bench --bench replay`; nothing to do in test mode");
        return ExitCode::SUCCESS;
    }
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, &STOP) {
            eprintln!("replay bench FAILED: cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run_all() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- history

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `2026-01-01T00:00:05Z` (`--since`/`--until`).
fn rfc3339(secs: u64) -> String {
    let (y, mo, d) = civil(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `20260101T000005Z` (rotated file names).
fn compact(secs: u64) -> String {
    rfc3339(secs).replace(['-', ':'], "")
}

fn tick_secs(tick: u64) -> u64 {
    T0 + tick * STEP_S
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A row without values: no sensor of the group answered.
fn is_gap(tick: u64, group: u64) -> bool {
    (tick + group) % 97 == 0
}

/// Points a row gives in line protocol: mean, min, max, ok, failed.
fn points_of(tick: u64, group: u64) -> u64 {
    if is_gap(tick, group) { 2 } else { 5 }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Thousandths as `21.346`.
fn push_milli(out: &mut Vec<u8>, v: u64) {
    push_u64(out, v / 1000);
    let f = v % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (f / 100) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ]);
}

/// The 10 rows of one tick, as the agent writes them.
fn push_tick(out: &mut Vec<u8>, tick: u64) {
    let mut time = rfc3339(tick_secs(tick)).into_bytes();
    time.pop(); // `Z`
    time.extend_from_slice(b".000Z,");
    for g in 0..GROUPS {
        out.extend_from_slice(&time);
        out.extend_from_slice(b"group-");
        push_u64(out, g);
        out.push(b',');
        let x = mix(tick * 16 + g);
        if is_gap(tick, g) {
            out.extend_from_slice(b",,,celsius,0,25\n");
            continue;
        }
        let mean = 15_000 + g * 1000 + x % 8000;
        push_milli(out, mean);
        out.push(b',');
        push_milli(out, mean - (x >> 16) % 2000);
        out.push(b',');
        push_milli(out, mean + (x >> 32) % 2000);
        out.extend_from_slice(b",celsius,");
        let failed = (x >> 48) % 3;
        push_u64(out, 25 - failed);
        out.push(b',');
        push_u64(out, failed);
        out.push(b'\n');
    }
}

const HEADER: &[u8] = b"time,group,mean,min,max,unit,ok,failed\n";

/// One recorded file.
#[derive(Debug, Clone)]
struct FileInfo {
    /// Name in layout (a).
    name: String,
    first_tick: u64,
    bytes: u64,
    /// False for the active `readings.csv`.
    rotated: bool,
}

/// A generated history in its two layouts.
struct History {
    label: &'static str,
    plain: PathBuf,
    mixed: PathBuf,
    /// Layout (c): the files of (a) without their indexes, as an older
    /// version of the agent left them.
    bare: PathBuf,
    files: Vec<FileInfo>,
    ticks: u64,
    bytes: u64,
    /// Bytes on disk of layout (b).
    mixed_bytes: u64,
    gzipped: usize,
}

impl History {
    fn rows(&self) -> u64 {
        self.ticks * GROUPS
    }

    /// Bytes of the files `replay --since` opens (same rule as discover.rs).
    fn bytes_from(&self, since_tick: u64) -> u64 {
        let rotated: Vec<&FileInfo> = self.files.iter().filter(|f| f.rotated).collect();
        let mut bytes = 0;
        for (i, f) in rotated.iter().enumerate() {
            let keep = rotated
                .get(i + 1)
                .is_none_or(|next| tick_secs(next.first_tick) + SLACK_S > tick_secs(since_tick));
            if keep {
                bytes += f.bytes;
            }
        }
        bytes
            + self
                .files
                .iter()
                .filter(|f| !f.rotated)
                .map(|f| f.bytes)
                .sum::<u64>()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Write `target` bytes (or a little more: whole ticks) of history into
/// `root/LABEL-plain`, then build `root/LABEL-mixed`.
fn generate(root: &Path, label: &'static str, target: u64) -> Res<History> {
    let started = Instant::now();
    let plain = root.join(format!("{label}-plain"));
    let mixed = root.join(format!("{label}-mixed"));
    let bare = root.join(format!("{label}-bare"));
    for d in [&plain, &mixed, &bare] {
        fs::create_dir(d).map_err(io_err(d))?;
    }
    let current = plain.join("current.tmp");
    let mut files: Vec<FileInfo> = Vec::new();
    let mut total = 0u64;
    let mut tick = 0u64;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let first_tick = tick;
        let file = fs::File::create(&current).map_err(io_err(&current))?;
        let mut w = BufWriter::with_capacity(MIB as usize, file);
        w.write_all(HEADER).map_err(io_err(&current))?;
        let mut bytes = HEADER.len() as u64;
        let mut last = false;
        while bytes < FILE_BYTES {
            buf.clear();
            push_tick(&mut buf, tick);
            w.write_all(&buf).map_err(io_err(&current))?;
            bytes += buf.len() as u64;
            tick += 1;
            if total + bytes >= target {
                last = true;
                break;
            }
        }
        w.flush().map_err(io_err(&current))?;
        drop(w);
        total += bytes;
        let name = if last {
            "readings.csv".to_string()
        } else {
            format!("readings-{}.csv", compact(tick_secs(first_tick)))
        };
        let path = plain.join(&name);
        fs::rename(&current, &path).map_err(io_err(&path))?;
        files.push(FileInfo {
            name,
            first_tick,
            bytes,
            rotated: !last,
        });
        if last {
            break;
        }
        if stopped() {
            return Err("interrupted".into());
        }
    }
    // Layout (c): the data files alone.
    for f in &files {
        link(&plain.join(&f.name), &bare.join(&f.name))?;
    }
    // Indexes, as the store leaves them: complete for rotated files, whole
    // blocks for the active one; made by the store's own code.
    let indexing = Instant::now();
    let all: Vec<&FileInfo> = files.iter().collect();
    on_two_threads("index", &all, |f| {
        let p = plain.join(&f.name);
        index::update(&p, f.rotated).map(|_| ()).map_err(io_err(&p))
    })?;
    let indexing = indexing.elapsed().as_secs_f64();
    // Layout (b): every other rotated file gzipped, the rest hard links;
    // the indexes of all.
    for f in &files {
        let from = index::path_for(&plain.join(&f.name));
        let to = index::path_for(&mixed.join(&f.name));
        if from.exists() {
            link(&from, &to)?;
        }
    }
    let mut to_gzip: Vec<&FileInfo> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.rotated && i % 2 == 1 {
            to_gzip.push(f);
        } else {
            link(&plain.join(&f.name), &mixed.join(&f.name))?;
        }
    }
    on_two_threads("gzip", &to_gzip, |f| {
        gzip_file(&plain.join(&f.name), &mixed.join(format!("{}.gz", f.name)))
    })?;
    let mut mixed_bytes = 0;
    for e in fs::read_dir(&mixed).map_err(io_err(&mixed))? {
        let e = e.map_err(io_err(&mixed))?;
        mixed_bytes += e.metadata().map_err(io_err(&e.path()))?.len();
    }
    let h = History {
        label,
        plain,
        mixed,
        bare,
        ticks: tick,
        bytes: total,
        mixed_bytes,
        gzipped: to_gzip.len(),
        files,
    };
    println!(
        "{label}: {} rows, {} files ({} rotated + active), {:.1} MiB plain; layout (b): {} gzipped, \
         {:.1} MiB on disk; {} .. {}; generated in {:.1} s, of which indexing {indexing:.1} s (2 threads)",
        h.rows(),
        h.files.len(),
        h.files.len() - 1,
        h.bytes as f64 / MIB as f64,
        h.gzipped,
        h.mixed_bytes as f64 / MIB as f64,
        rfc3339(tick_secs(0)),
        rfc3339(tick_secs(h.ticks - 1)),
        started.elapsed().as_secs_f64()
    );
    Ok(h)
}

/// `work` for each of `items`, on two threads (every other item each);
/// the first error, or "interrupted" after SIGINT/SIGTERM.
fn on_two_threads<T: Sync>(
    what: &str,
    items: &[T],
    work: impl Fn(&T) -> Res<()> + Sync,
) -> Res<()> {
    let results: Vec<Res<()>> = thread::scope(|s| {
        let handles: Vec<_> = [0, 1]
            .map(|half| {
                let work = &work;
                s.spawn(move || -> Res<()> {
                    for item in items.iter().skip(half).step_by(2) {
                        work(item)?;
                        if stopped() {
                            return Err("interrupted".into());
                        }
                    }
                    Ok(())
                })
            })
            .into_iter()
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("{what} thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// A hard link (a copy where links do not work).
fn link(from: &Path, to: &Path) -> Res<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(io_err(to))?;
    }
    Ok(())
}

fn gzip_file(from: &Path, to: &Path) -> Res<()> {
    let src = fs::File::open(from).map_err(io_err(from))?;
    let dst = fs::File::create(to).map_err(io_err(to))?;
    let mut enc = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(MIB as usize, dst),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut BufReader::with_capacity(MIB as usize, src), &mut enc)
        .map_err(io_err(to))?;
    let mut w = enc.finish().map_err(io_err(to))?;
    w.flush().map_err(io_err(to))
}

fn free_bytes(dir: &Path) -> Res<u64> {
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

// ------------------------------------------------------------- processes

/// How a child ended.
struct Ended {
    secs: f64,
    status: ExitStatus,
    /// Peak RSS in KiB, when measured.
    rss_kib: Option<u64>,
}

/// Peak resident set size (VmHWM) of `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn kill_group(pid: u32) {
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
            if let Some(k) = vm_hwm_kib(pid) {
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

/// One replay run: what it said and what it cost.
struct Replayed {
    secs: f64,
    rss_kib: u64,
    rows: u64,
    files: u64,
    stderr: String,
}

/// `replay --dir DIR ARGS`, timed, its peak RSS measured; fails unless it
/// exits 0 having replayed `want_rows` rows and skipped nothing.
fn replay(work: &Path, dir: &Path, args: &[&str], want_rows: u64) -> Res<Replayed> {
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

// ------------------------------------------------------------ statistics

fn spread(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Timings of one kind of replay.
#[derive(Default)]
struct Series {
    secs: Vec<f64>,
    rss_kib: Vec<u64>,
    files: u64,
}

impl Series {
    fn secs(&self) -> f64 {
        median(&self.secs)
    }
    /// Throughput ratio to `cat` of the whole history: cat time / replay time.
    fn ratio(&self, cat_secs: f64) -> f64 {
        cat_secs / self.secs()
    }
    fn rss_mib(&self) -> f64 {
        mib(self.rss_kib.iter().copied().max().unwrap_or(0))
    }
}

/// Results for one history size.
struct SizeResult {
    label: &'static str,
    bytes: u64,
    since_bytes: u64,
    since_rows: u64,
    since: String,
    csv: Series,
    influx: Series,
    mixed: Series,
    /// The same replays of layout (c): row by row, no index.
    bare_csv: Series,
    bare_influx: Series,
    /// Every cat run of this size (one before each replay run).
    cat_all: Vec<f64>,
}

impl SizeResult {
    fn cat_secs(&self) -> f64 {
        median(&self.cat_all)
    }
}

fn bench_size(work: &Path, h: &History) -> Res<SizeResult> {
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
        label: h.label,
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

/// Replay `dir` with `args` into a file; its bytes.
fn replay_to_file(work: &Path, dir: &Path, args: &[&str], rows: u64) -> Res<Vec<u8>> {
    let out = work.join("check.out");
    let out_s = out.to_str().ok_or("temp path is not UTF-8")?;
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", out_s]);
    replay(work, dir, &all, rows)?;
    let got = fs::read(&out).map_err(io_err(&out))?;
    let _ = fs::remove_file(&out);
    Ok(got)
}

fn first_difference(what: &str, got: &[u8], want: &[u8]) -> Res<()> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{what} differ at byte {at} (got {} bytes, want {})",
        got.len(),
        want.len()
    ))
}

/// Replay layout (b) (plain and gzip files mixed, indexed) and layout (c)
/// (no index, row by row) to files and compare them with the header and
/// the rows of layout (a), in order; then the same for influx `--since`
/// and jsonl: indexed and row-by-row replays must give the same bytes.
fn check_identical(work: &Path, h: &History) -> Res<()> {
    let mut want = Vec::with_capacity(h.bytes as usize);
    want.extend_from_slice(HEADER);
    for f in &h.files {
        let p = h.plain.join(&f.name);
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        want.extend_from_slice(&bytes[HEADER.len()..]);
    }
    for dir in [&h.mixed, &h.bare] {
        let got = replay_to_file(work, dir, &["--format", "csv"], h.rows())?;
        first_difference(
            &format!("replay of {} and the recorded rows", dir.display()),
            &got,
            &want,
        )?;
    }
    let since_tick = h.ticks / 4 + 7;
    let since = rfc3339(tick_secs(since_tick));
    let rows = (h.ticks - since_tick) * GROUPS;
    for args in [
        &["--format", "influx", "--since", &since][..],
        &[
            "--format", "jsonl", "--group", "group-3", "--group", "group-7",
        ][..],
    ] {
        let rows = if args[1] == "jsonl" {
            h.rows() / 5
        } else {
            rows
        };
        let indexed = replay_to_file(work, &h.mixed, args, rows)?;
        let bare = replay_to_file(work, &h.bare, args, rows)?;
        first_difference(
            &format!("replay {} of layouts (b) and (c)", args.join(" ")),
            &indexed,
            &bare,
        )?;
    }
    println!(
        "{}: replays of layout (b) (indexed, gzip) and (c) (no index) are byte-identical to header + \
         rows of layout (a) ({} bytes); influx --since and jsonl --group: indexed = row by row",
        h.label,
        want.len()
    );
    Ok(())
}

// ------------------------------------------------------- VictoriaMetrics

/// VictoriaMetrics, killed (with its process group) when dropped.
struct Vm {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                kill_group(c.id());
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.0 GET (the server closes after the body: no chunking).
fn http_get(addr: SocketAddr, path: &str) -> Res<(u16, Vec<u8>)> {
    let err = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(err)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(err)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(err)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP head"))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line {head:?}"))?;
    Ok((status, buf[end + 4..].to_vec()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn start_vm(work: &Path) -> Res<Vm> {
    let log = work.join("victoria-metrics.log");
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = fs::File::create(&log).map_err(io_err(&log))?;
        let err = out.try_clone().map_err(io_err(&log))?;
        let child = Command::new(VM_BIN)
            .arg(format!("-storageDataPath={}", work.join("vm").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-retentionPeriod=100y")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {VM_BIN}: {e}"))?;
        let mut vm = Vm {
            child: Some(child),
            addr,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if stopped() {
                return Err("interrupted".into());
            }
            if let Ok((200, _)) = http_get(addr, "/health") {
                return Ok(vm);
            }
            let exited = vm.child.as_mut().and_then(|c| c.try_wait().ok()).flatten();
            if let Some(st) = exited {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                last = format!(
                    "victoria-metrics exited ({st}) on {addr}: {}",
                    tail.join(" | ")
                );
                break;
            }
            if Instant::now() >= until {
                return Err(format!(
                    "victoria-metrics not healthy on {addr} within 60 s"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Err(last)
}

struct VmResult {
    /// Points per second of each window.
    pps: Vec<f64>,
    points_per_window: u64,
    rows_per_window: u64,
    batches: u64,
    retries: u64,
    counted: u64,
    expected: u64,
}

fn bench_vm(work: &Path, h: &History) -> Res<VmResult> {
    if h.ticks < VM_FIRST_TICK + VM_WINDOWS * VM_TICKS {
        return Err(format!(
            "{} is too short for the VictoriaMetrics windows",
            h.label
        ));
    }
    let vm = start_vm(work)?;
    println!(
        "victoria-metrics: pid {} on {}",
        vm.child.as_ref().map_or(0, Child::id),
        vm.addr
    );
    let url = format!("http://{}/write", vm.addr);
    let mut windows = Vec::new();
    let mut pps = Vec::new();
    let (mut batches, mut retries) = (0, 0);
    let mut points_per_window = 0;
    for w in 0..VM_WINDOWS {
        let (a, b) = (
            VM_FIRST_TICK + w * VM_TICKS,
            VM_FIRST_TICK + (w + 1) * VM_TICKS,
        );
        let points: u64 = (a..b)
            .map(|t| (0..GROUPS).map(|g| points_of(t, g)).sum::<u64>())
            .sum();
        let (since, until) = (rfc3339(tick_secs(a)), rfc3339(tick_secs(b)));
        let args = [
            "--format", "influx", "--since", &since, "--until", &until, "--output", &url,
        ];
        let r = replay(work, &h.plain, &args, (b - a) * GROUPS)?;
        // `; N row(s) acknowledged in B batch(es), R retried`
        let words: Vec<&str> = r.stderr.split_whitespace().collect();
        let before = |key: &str| {
            words.iter().position(|w| w.starts_with(key)).and_then(|i| {
                words
                    .get(i.checked_sub(1)?)?
                    .trim_start_matches(';')
                    .parse::<u64>()
                    .ok()
            })
        };
        let acked = words
            .iter()
            .position(|w| *w == "acknowledged")
            .and_then(|i| words.get(i.checked_sub(2)?)?.parse::<u64>().ok());
        if acked != Some(r.rows) {
            return Err(format!(
                "window {w}: not every row acknowledged:\n{}",
                r.stderr
            ));
        }
        batches += before("batch(es)").unwrap_or(0);
        retries += before("retried").unwrap_or(0);
        let p = points as f64 / r.secs;
        println!(
            "  window {}: {since} .. {until}: {} rows, {points} points in {:.2} s = {:.0} points/s, \
             peak RSS {:.1} MiB",
            w + 1,
            r.rows,
            r.secs,
            p,
            mib(r.rss_kib)
        );
        pps.push(p);
        points_per_window = points;
        windows.push((tick_secs(a) * 1000, tick_secs(b) * 1000, points));
    }
    let expected: u64 = windows.iter().map(|w| w.2).sum();
    // Count what arrived; retry briefly in case the flush is not visible yet.
    let query = format!(
        "/api/v1/export?match[]={}",
        percent_encode("{__name__=~\"temperature_.*\"}")
    );
    let mut counted = 0;
    for attempt in 0..20 {
        let (code, _) = http_get(vm.addr, "/internal/force_flush")?;
        if code != 200 {
            return Err(format!("force_flush: HTTP {code}"));
        }
        let (code, body) = http_get(vm.addr, &query)?;
        if code != 200 {
            return Err(format!(
                "export: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let mut per_window = vec![0u64; windows.len()];
        let mut seen: HashSet<(String, String, u64)> = HashSet::new();
        let (mut outside, mut dups) = (0u64, 0u64);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| format!("export: bad JSON line: {e}"))?;
            let name = v["metric"]["__name__"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let group = v["metric"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ts = v["timestamps"].as_array().ok_or("export: no timestamps")?;
            let values = v["values"].as_array().ok_or("export: no values")?;
            if ts.len() != values.len() {
                return Err("export: timestamps and values differ in length".into());
            }
            for t in ts {
                let t = t.as_u64().ok_or("export: bad timestamp")?;
                match windows.iter().position(|(a, b, _)| (*a..*b).contains(&t)) {
                    Some(i) => per_window[i] += 1,
                    None => outside += 1,
                }
                if !seen.insert((name.clone(), group.clone(), t)) {
                    dups += 1;
                }
            }
        }
        counted = per_window.iter().sum::<u64>() + outside;
        let complete = per_window.iter().zip(&windows).all(|(n, w)| *n == w.2);
        if complete && outside == 0 && dups == 0 {
            println!(
                "  export: {counted} points, {} per window as sent, no duplicate",
                points_per_window
            );
            break;
        }
        if counted > expected || outside > 0 || dups > 0 {
            return Err(format!(
                "export: {counted} points ({per_window:?} per window, {outside} outside, {dups} duplicate); \
                 sent {expected}"
            ));
        }
        if attempt == 19 {
            return Err(format!(
                "export: only {counted} of {expected} points arrived ({per_window:?} per window)"
            ));
        }
        thread::sleep(Duration::from_millis(500));
    }
    drop(vm);
    Ok(VmResult {
        pps,
        points_per_window,
        rows_per_window: VM_TICKS * GROUPS,
        batches,
        retries,
        counted,
        expected,
    })
}

// ---------------------------------------------------------- encoder alone

/// The block encoder of line protocol on its own, in this process: what
/// an influx replay costs per row once the bytes are in memory, with
/// nothing of reading, checking or writing around it.
struct EncoderResult {
    rows: u64,
    bytes: u64,
    /// Best of ENCODE_REPS: one pass of the encoder over the blocks.
    encode_secs: f64,
    /// Best of ENCODE_REPS: one copy of the same blocks (the baseline).
    copy_secs: f64,
}

impl EncoderResult {
    fn ns_per_row(&self) -> f64 {
        self.encode_secs * 1e9 / self.rows as f64
    }
}

const ENCODE_REPS: usize = 15;

/// Encode the rows of one rotated file of `h`, block by block as its
/// index (made by the store) cuts it.
fn bench_encoder(h: &History) -> Res<EncoderResult> {
    use edge_agent::replay::format::{Encoder, Format};
    let f = h
        .files
        .iter()
        .find(|f| f.rotated)
        .ok_or("the history has no rotated file")?;
    let path = h.plain.join(&f.name);
    let data = fs::read(&path).map_err(io_err(&path))?;
    let entries = index::Index::load(&path)
        .ok_or_else(|| format!("{} has no index", path.display()))?
        .entries;
    // (first line number, block); the header is line 1.
    let (mut blocks, mut line) = (Vec::new(), 2);
    for e in &entries {
        let b = data
            .get(e.offset as usize..e.end() as usize)
            .ok_or_else(|| format!("{}: an index entry past the end", path.display()))?;
        blocks.push((line, b));
        line += e.rows;
    }
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let mut copy = vec![0u8; blocks.iter().map(|(_, b)| b.len()).max().unwrap_or(0)];
    let (mut encode_secs, mut copy_secs, mut encoded) = (f64::MAX, f64::MAX, 0);
    for _ in 0..ENCODE_REPS {
        let mut encoder = Encoder::new(Format::Influx, "temperature");
        let started = Instant::now();
        encoded = 0;
        bad.clear();
        for &(first_line, b) in &blocks {
            let (n, len) = encoder.influx_block(b, first_line, None, &mut out, 0, &mut bad);
            encoded += n;
            std::hint::black_box(&out[..len]);
        }
        encode_secs = encode_secs.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for &(_, b) in &blocks {
            copy[..b.len()].copy_from_slice(b);
            std::hint::black_box(&copy);
        }
        copy_secs = copy_secs.min(started.elapsed().as_secs_f64());
    }
    if !bad.is_empty() {
        return Err(format!(
            "the encoder found {} bad lines in {}",
            bad.len(),
            path.display()
        ));
    }
    Ok(EncoderResult {
        rows: encoded,
        bytes: blocks.iter().map(|(_, b)| b.len() as u64).sum(),
        encode_secs,
        copy_secs,
    })
}

// --------------------------------------------------------------- report

fn verdict(pass: bool) -> String {
    if pass { "pass" } else { "FAIL" }.to_string()
}

fn row(figure: String, value: String, goal: &str, result: String) -> [String; 4] {
    [figure, value, goal.to_string(), result]
}

fn size_rows(s: &SizeResult, table: &mut Vec<[String; 4]>) {
    let l = s.label;
    let cat = s.cat_secs();
    let (clo, chi) = spread(&s.cat_all);
    table.push(row(
        format!("{l}: cat of layout (a), {} runs", s.cat_all.len()),
        format!(
            "{:.0} MB/s ({cat:.3} s) [{clo:.3} – {chi:.3} s]",
            mbps(s.bytes, cat)
        ),
        "-",
        "-".into(),
    ));
    let csv = s.csv.ratio(cat);
    table.push(row(
        format!("{l}: replay --format csv / cat"),
        format!(
            "{csv:.3} ({:.0} MB/s, {:.2} s)",
            mbps(s.bytes, s.csv.secs()),
            s.csv.secs()
        ),
        ">= 0.8",
        verdict(csv >= GOAL_CSV_RATIO),
    ));
    let inf = s.influx.ratio(cat);
    table.push(row(
        format!("{l}: replay --format influx --since (25%) / cat"),
        format!("{inf:.3} ({:.2} s, {} rows)", s.influx.secs(), s.since_rows),
        ">= 0.3",
        verdict(inf >= GOAL_INFLUX_RATIO),
    ));
    let per_byte = mbps(s.since_bytes, s.influx.secs()) / mbps(s.bytes, cat);
    table.push(row(
        format!("{l}: same, per byte of the files it opens"),
        format!(
            "{per_byte:.3} ({:.0} MB/s of {:.0} MiB)",
            mbps(s.since_bytes, s.influx.secs()),
            s.since_bytes as f64 / MIB as f64
        ),
        "-",
        "-".into(),
    ));
    table.push(row(
        format!("{l}: replay --format csv, layout (b) with gzip"),
        format!(
            "{:.0} MB/s of rows ({:.2} s), ratio {:.3}",
            mbps(s.bytes, s.mixed.secs()),
            s.mixed.secs(),
            s.mixed.ratio(cat)
        ),
        "-",
        "-".into(),
    ));
    for (what, series) in [("csv", &s.bare_csv), ("influx --since", &s.bare_influx)] {
        table.push(row(
            format!("{l}: replay --format {what}, layout (c) without indexes / cat"),
            format!(
                "{:.3} ({:.0} MB/s, {:.2} s)",
                series.ratio(cat),
                mbps(s.bytes, series.secs()),
                series.secs()
            ),
            "-",
            "-".into(),
        ));
    }
    for (what, series) in [
        ("csv", &s.csv),
        ("influx --since", &s.influx),
        ("csv, gzip layout", &s.mixed),
        ("csv, no index", &s.bare_csv),
        ("influx --since, no index", &s.bare_influx),
    ] {
        let r = series.rss_mib();
        table.push(row(
            format!(
                "{l}: peak RSS, replay {what} (max of {})",
                series.rss_kib.len()
            ),
            format!("{r:.1} MiB"),
            "<= 16 MiB",
            verdict(r <= GOAL_RSS_MIB),
        ));
    }
}

fn run_all() -> Res<()> {
    let started = Instant::now();
    // For comparisons outside the bench (see BENCHMARKS.md): the 1 GiB
    // history alone, generated into a directory that is kept.
    if let Some(keep) = std::env::var_os("REPLAY_BENCH_HISTORY") {
        let keep = PathBuf::from(keep);
        fs::create_dir_all(&keep).map_err(io_err(&keep))?;
        generate(&keep, "1 GiB", LARGE_BYTES)?;
        println!("kept in {}", keep.display());
        return Ok(());
    }
    let tmp = Path::new("/tmp");
    let need = (SMALL_BYTES + LARGE_BYTES) * 2 + 512 * MIB;
    let free = free_bytes(tmp)?;
    if free < need {
        return Err(format!(
            "/tmp has {:.1} GiB free; the histories need about {:.1} GiB",
            free as f64 / (1u64 << 30) as f64,
            need as f64 / (1u64 << 30) as f64
        ));
    }
    // Removed when dropped, on every return path.
    let dir = tempfile::Builder::new()
        .prefix("edge-agent-replay-bench-")
        .tempdir_in(tmp)
        .map_err(|e| format!("cannot create a temp dir in /tmp: {e}"))?;
    let work = dir.path();
    println!("edge-agent replay bench, binary {BIN}");
    println!(
        "temp dir {} ({:.1} GiB free); peak RSS via {}",
        work.display(),
        free as f64 / (1u64 << 30) as f64,
        if Path::new(TIME_BIN).exists() {
            "/usr/bin/time -f %M"
        } else {
            "a 10 ms poll of /proc/PID/status VmHWM"
        }
    );

    let small = generate(work, "100 MiB", SMALL_BYTES)?;
    let large = generate(work, "1 GiB", LARGE_BYTES)?;
    check_identical(work, &small)?;

    let enc = bench_encoder(&large)?;
    println!(
        "encoder alone: {} rows ({:.1} MiB) in {:.1} ms, a copy of them {:.2} ms (best of {ENCODE_REPS} each)",
        enc.rows,
        enc.bytes as f64 / MIB as f64,
        enc.encode_secs * 1e3,
        enc.copy_secs * 1e3
    );
    println!("timing (page cache warm; cat and replay interleaved, {REPS} repetitions)");
    let s = bench_size(work, &small)?;
    let l = bench_size(work, &large)?;

    let vm = if Path::new(VM_BIN).exists() {
        println!(
            "VictoriaMetrics: {VM_WINDOWS} windows of {} rows of the 100 MiB history",
            VM_TICKS * GROUPS
        );
        Some(bench_vm(work, &small)?)
    } else {
        println!(
            "VictoriaMetrics: skipped, {VM_BIN} is missing (apt-get install victoria-metrics)"
        );
        None
    };

    println!();
    println!(
        "history: {} groups, a row per group every {STEP_S} s, files rotated at {} MiB; influx --since is \
         {} (100 MiB) / {} (1 GiB)",
        GROUPS,
        FILE_BYTES / MIB,
        s.since,
        l.since
    );
    println!(
        "files replayed: 1 GiB csv {} files, influx --since {} files, gzip layout {} files",
        l.csv.files, l.influx.files, l.mixed.files
    );
    let mut table = Vec::new();
    size_rows(&l, &mut table);
    size_rows(&s, &mut table);
    table.push(row(
        format!(
            "influx block encoder alone: ns per row (one file, {} rows, best of {ENCODE_REPS})",
            enc.rows
        ),
        format!(
            "{:.1} ns ({:.0} MB/s of rows; a copy of the same bytes {:.0}x faster)",
            enc.ns_per_row(),
            mbps(enc.bytes, enc.encode_secs),
            enc.encode_secs / enc.copy_secs
        ),
        "-",
        "-".into(),
    ));
    if let Some(v) = &vm {
        let (lo, hi) = spread(&v.pps);
        table.push(row(
            format!(
                "points/s into VictoriaMetrics ({} rows = {} points per run, {} runs)",
                v.rows_per_window,
                v.points_per_window,
                v.pps.len()
            ),
            format!("{:.0} [{lo:.0} – {hi:.0}]", median(&v.pps)),
            "-",
            "-".into(),
        ));
        table.push(row(
            "points counted back via /api/v1/export".into(),
            format!(
                "{} of {} ({} batches, {} retried)",
                v.counted, v.expected, v.batches, v.retries
            ),
            "all, no duplicate",
            verdict(v.counted == v.expected),
        ));
    }
    print_table(&["figure", "value", "goal", "result"], &table);
    println!();
    let pps = vm.as_ref().map_or(f64::NAN, |v| median(&v.pps));
    println!(
        "RESULT cat_mbps_1g={:.0} csv_ratio_1g={:.4} influx_ratio_1g={:.4} influx_ratio_per_byte_1g={:.4} \
         csv_mbps_1g={:.1} influx_s_1g={:.2} gz_mbps_1g={:.1} rss_csv_1g={:.2} rss_influx_1g={:.2} \
         rss_gz_1g={:.2} cat_mbps_100m={:.0} csv_ratio_100m={:.4} influx_ratio_100m={:.4} csv_mbps_100m={:.1} \
         gz_mbps_100m={:.1} rss_csv_100m={:.2} rss_influx_100m={:.2} rss_gz_100m={:.2} vm_pps={pps:.0} \
         bare_csv_ratio_1g={:.4} bare_influx_ratio_1g={:.4} rss_bare_1g={:.2} encode_ns_per_row={:.2} elapsed_s={:.0}",
        mbps(l.bytes, l.cat_secs()),
        l.csv.ratio(l.cat_secs()),
        l.influx.ratio(l.cat_secs()),
        mbps(l.since_bytes, l.influx.secs()) / mbps(l.bytes, l.cat_secs()),
        mbps(l.bytes, l.csv.secs()),
        l.influx.secs(),
        mbps(l.bytes, l.mixed.secs()),
        l.csv.rss_mib(),
        l.influx.rss_mib(),
        l.mixed.rss_mib(),
        mbps(s.bytes, s.cat_secs()),
        s.csv.ratio(s.cat_secs()),
        s.influx.ratio(s.cat_secs()),
        mbps(s.bytes, s.csv.secs()),
        mbps(s.bytes, s.mixed.secs()),
        s.csv.rss_mib(),
        s.influx.rss_mib(),
        s.mixed.rss_mib(),
        l.bare_csv.ratio(l.cat_secs()),
        l.bare_influx.ratio(l.cat_secs()),
        l.bare_csv.rss_mib().max(l.bare_influx.rss_mib()),
        enc.ns_per_row(),
        started.elapsed().as_secs_f64()
    );
    drop(dir);
    Ok(())
}
