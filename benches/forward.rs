//! Catch-up of a recorded backlog by `forward` (issue 18), with the real
//! release binary and a real VictoriaMetrics, on loopback only.
//!
//! ```text
//! cargo bench --bench forward
//! FORWARD_BENCH_MINUTES=5,20 cargo bench --bench forward   # backlog sizes (default 5,20,60)
//! FORWARD_BENCH_KEEP=1 cargo bench --bench forward          # keep backlogs and logs
//! ```
//!
//! 1. Backlogs: 1,000 groups, one row each per second, for 5, 20 and 60
//!    minutes (300,000, 1,200,000 and 3,600,000 rows), written by the
//!    library's own store (`edge_agent::store::Store`: rotated at 10 MiB,
//!    the README's size, gzipped, with the rotation journal and the
//!    checksum indexes the store keeps), 1% of rows empty (no sensor
//!    answered), ending hours before now.
//! 2. For each run: a fresh VictoriaMetrics (`-dedup.minScrapeInterval=1ms`,
//!    port 0, its own data dir), then `edge-agent run --simulate` on the
//!    backlog's directory: one group of one simulated sensor every 5 s (so
//!    polling is negligible) and a `forward:` target at VictoriaMetrics
//!    with `batch.rows: 5000`, `max_rate: 10000000` (does not bind) and
//!    `batch.max_delay: 100ms` (the active file's last, partial batch would
//!    otherwise wait the default 5 s for more rows: a constant, not a
//!    rate), a new target name each run (no cursor: `start: oldest`). The
//!    bench polls `/metrics` every 20 ms until
//!    `edge_agent_forward_rows_total` reaches the backlog's rows, then reads
//!    the agent's CPU time (utime + stime) and peak RSS (VmHWM) from /proc,
//!    stops it (SIGTERM, exit 0 required) and counts the backlog's points in
//!    VictoriaMetrics (`/api/v1/export` of `edge_agent_ok` of the backlog's
//!    groups): exactly one per row, or the run fails. Sizes alternate, 3
//!    runs each. Beside each: VictoriaMetrics' CPU time over the same span,
//!    since it shares the 2 cores.
//! 3. One run on the smallest backlog with the default `max_rate` (20,000
//!    rows/s): the bound must hold.
//!
//! Rows/s is backlog rows / wall time from the agent's start to the poll
//! that saw the last row acknowledged (start-up included); "steady" is from
//! the first acknowledgement on. The 1-day scale of the issue (1,000 groups
//! at 1 s: 86.4 M rows) is extrapolated from these figures, not measured.
//!
//! Only loopback addresses are used. Without `--bench` (e.g. under
//! `cargo test --all-targets`) it does nothing.

mod common;
use common::{
    Guard, Res, Vm, bin, clock_ticks_per_second, cpu_ticks, exit_code, free_port, http_get,
    load_average, median, mib, outside_bench, print_table, vm_hwm_kib, write_checked_config,
};

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use edge_agent::config::{Compress, Fsync, Output, Unit};
use edge_agent::history::Row;
use edge_agent::store::Store;

const GROUPS: usize = 1_000;
const PREFIX: &str = "readings";
/// The README's rotation size.
const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
const BATCH_ROWS: u64 = 5_000;
/// The active file's last, partial batch waits this long for more rows
/// (default 5 s: a constant added to any catch-up, not a rate).
const MAX_DELAY_MS: u64 = 100;
const FAST_RATE: u64 = 10_000_000;
const DEFAULT_RATE: u64 = 20_000;
const RUNS: usize = 3;
const GOAL_RSS_MIB: f64 = 16.0;
/// The issue's scale: 1 day of 1,000 groups at 1 s.
const DAY_ROWS: f64 = 86_400_000.0;
/// What a catch-up fails with when something else on this shared machine
/// stopped the agent (it is then run once more).
const EXTERNAL_TERM: &str = "the agent got a SIGTERM the bench did not send";

fn main() -> ExitCode {
    if outside_bench("forward") {
        return ExitCode::SUCCESS;
    }
    exit_code("forward", run_all())
}

fn minutes() -> Res<Vec<u64>> {
    let text = std::env::var("FORWARD_BENCH_MINUTES").unwrap_or_else(|_| "5,20,60".into());
    text.split(',')
        .map(|m| {
            m.trim()
                .parse::<u64>()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| format!("FORWARD_BENCH_MINUTES: `{m}` is not a number of minutes"))
        })
        .collect()
}

struct Backlog {
    dir: PathBuf,
    minutes: u64,
    rows: u64,
    /// Rotated (gzipped) files, and bytes on disk of all data files.
    rotated: usize,
    disk_bytes: u64,
    uncompressed_bytes: u64,
    made_s: f64,
}

/// `minutes` of 1,000 groups at 1 s into `dir`, written by the store,
/// ending at `end`.
fn make_backlog(dir: &Path, minutes: u64, end: SystemTime) -> Res<Backlog> {
    let started = Instant::now();
    let ticks = minutes * 60;
    let t0 = end - Duration::from_secs(ticks);
    let out = Output {
        dir: dir.to_path_buf(),
        prefix: PREFIX.into(),
        max_size: Some(ROTATE_BYTES),
        every: None,
        keep: 10_000,
        compress: Compress::Gzip,
        fsync: Fsync::Rotate,
        decimals: 3,
        queue: 4096,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (written, dropped, bytes) = rt.block_on(async {
        let store = Store::open(&out)
            .await
            .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
        let tx = store.sender();
        let stats = tx.stats().clone();
        let mut sent = 0u64;
        for tick in 0..ticks {
            let rows: Vec<Row> = (0..GROUPS)
                .map(|g| {
                    let empty = (tick as usize + g) % 100 == 0;
                    let v = 15.0 + ((tick as usize * 7 + g * 13) % 1000) as f64 / 100.0;
                    Row {
                        time: t0 + Duration::from_secs(tick),
                        group: format!("g-{g:03}"),
                        mean: (!empty).then_some(v),
                        min: (!empty).then_some(v - 0.5),
                        max: (!empty).then_some(v + 0.75),
                        unit: Unit::Celsius,
                        ok: if empty { 0 } else { 3 },
                        failed: if empty { 3 } else { 0 },
                    }
                })
                .collect();
            sent += rows.len() as u64;
            tx.send(rows);
            // The queue never waits: keep it well short of full.
            while sent
                - stats.rows_written.load(Relaxed)
                - stats.rows_dropped.load(Relaxed)
                - stats.rows_repeated.load(Relaxed)
                > 200_000
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(tx);
        let stats = store
            .close()
            .await
            .map_err(|e| format!("closing the store: {e}"))?;
        Ok::<_, String>((
            stats.rows_written.load(Relaxed),
            stats.rows_dropped.load(Relaxed) + stats.rows_repeated.load(Relaxed),
            stats.bytes_written.load(Relaxed),
        ))
    })?;
    let rows = ticks * GROUPS as u64;
    if written != rows || dropped != 0 {
        return Err(format!(
            "the store wrote {written} of {rows} rows ({dropped} dropped or repeated)"
        ));
    }
    let (mut rotated, mut disk_bytes) = (0, 0);
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && (name.ends_with(".csv") || name.ends_with(".csv.gz")) {
            disk_bytes += e.metadata().map_err(|e| format!("{name}: {e}"))?.len();
            rotated += usize::from(name.ends_with(".gz"));
        }
    }
    Ok(Backlog {
        dir: dir.to_path_buf(),
        minutes,
        rows,
        rotated,
        disk_bytes,
        uncompressed_bytes: bytes,
        made_s: started.elapsed().as_secs_f64(),
    })
}

struct Catchup {
    rows: u64,
    wall_s: f64,
    /// From the first acknowledgement seen to the last.
    steady_s: f64,
    steady_rows: u64,
    cpu_s: f64,
    /// VictoriaMetrics' CPU time over the same span (same 2 cores).
    vm_cpu_s: f64,
    hwm_kib: u64,
    batches: u64,
    resends: u64,
    stored: u64,
    series: u64,
    load: String,
}

impl Catchup {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.wall_s
    }
    fn steady_rate(&self) -> f64 {
        self.steady_rows as f64 / self.steady_s
    }
    fn cpu_per_m(&self) -> f64 {
        self.cpu_s / self.rows as f64 * 1e6
    }
}

/// The value of `NAME{target="TARGET"}` in a /metrics text.
fn metric(text: &str, name: &str, target: &str) -> Option<f64> {
    let key = format!("{name}{{target=\"{target}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// [`catch_up`], once more if the agent was stopped from outside.
fn catch_up_retry(
    work: &Path,
    backlog: &Backlog,
    run: &str,
    max_rate: Option<u64>,
) -> Res<Catchup> {
    match catch_up(work, backlog, run, max_rate) {
        Err(e) if e.starts_with(EXTERNAL_TERM) => {
            println!("  {run}: {e}; running it again");
            catch_up(work, backlog, &format!("{run}-again"), max_rate)
        }
        other => other,
    }
}

/// One catch-up of `backlog` into a fresh VictoriaMetrics.
fn catch_up(work: &Path, backlog: &Backlog, run: &str, max_rate: Option<u64>) -> Res<Catchup> {
    let load = load_average();
    let (ticks_per_s, _) = clock_ticks_per_second();
    let vm_dir = work.join(format!("vm-{run}"));
    fs::create_dir_all(&vm_dir).map_err(|e| format!("{}: {e}", vm_dir.display()))?;
    let vm = Vm::start(&vm_dir)?;
    let metrics_port = free_port()?;
    let sensor_port = free_port()?;
    let rate = max_rate.map_or(String::new(), |r| format!("\n    max_rate: {r}"));
    let yaml = format!(
        "interval: 5s\ntimeout: 1s\n\
         output:\n  dir: {dir}\n  prefix: {PREFIX}\n  rotate: {{ max_size: 10MiB }}\n  keep: 10000\n  compress: gzip\n\
         metrics: {{ listen: 127.0.0.1:{metrics_port} }}\n\
         groups:\n  - name: live\n    unit: celsius\n    sensors:\n\
         \x20     - {{ id: live-1, url: \"http://127.0.0.1:{sensor_port}/text/live-1\", format: text }}\n\
         forward:\n  - name: {run}\n    url: {url}\n    measurement: edge_agent\n    batch: {{ rows: {BATCH_ROWS}, max_delay: {MAX_DELAY_MS}ms }}{rate}\n",
        dir = backlog.dir.display(),
        url = vm.write_url(),
    );
    let config = work.join(format!("{run}.yaml"));
    write_checked_config(&config, &yaml)?;
    let log = work.join(format!("{run}.log"));
    let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut agent = Guard::spawn(
        "agent",
        Command::new(bin())
            .args(["run", "--simulate", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    )?;
    let pid = agent.pid();
    let vm_cpu0 = cpu_ticks(vm.guard.pid())?;
    let addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let limit = Duration::from_secs(60 + backlog.rows / 5_000);
    let mut first: Option<(Instant, u64)> = None;
    let text = loop {
        if let Some(st) = agent.exited()? {
            if fs::read_to_string(&log).is_ok_and(|t| t.contains("SIGTERM")) {
                return Err(format!("{EXTERNAL_TERM} ({st}); {}", log.display()));
            }
            return Err(format!(
                "agent exited ({st}) before it caught up; {}:\n{}",
                log.display(),
                log_tail(&log)
            ));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "not caught up within {limit:?}; {}:\n{}",
                log.display(),
                log_tail(&log)
            ));
        }
        if let Ok((200, body)) = http_get(addr, "/metrics") {
            let text = String::from_utf8_lossy(&body).into_owned();
            let rows = metric(&text, "edge_agent_forward_rows_total", run).unwrap_or(0.0) as u64;
            if rows > 0 && first.is_none() {
                first = Some((Instant::now(), rows));
            }
            if rows >= backlog.rows {
                break text;
            }
        }
        thread::sleep(Duration::from_millis(20));
    };
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_ticks(pid)? as f64 / ticks_per_s;
    let hwm_kib = vm_hwm_kib(pid)?;
    let vm_cpu_s = cpu_ticks(vm.guard.pid())?.saturating_sub(vm_cpu0) as f64 / ticks_per_s;
    let status = agent.terminate(Duration::from_secs(30))?;
    if !status.success() {
        return Err(format!(
            "agent exited with {status} after SIGTERM; {}:\n{}",
            log.display(),
            log_tail(&log)
        ));
    }
    let (first_at, first_rows) = first.unwrap_or((started, 0));
    let steady_s = wall_s - first_at.duration_since(started).as_secs_f64();
    let forwarded = metric(&text, "edge_agent_forward_rows_total", run).unwrap_or(0.0) as u64;
    let batches = metric(&text, "edge_agent_forward_batches_total", run).unwrap_or(0.0) as u64;
    let resends = metric(&text, "edge_agent_forward_resends_total", run).unwrap_or(0.0) as u64;
    let (stored, series) = vm.count("{__name__=\"edge_agent_ok\",group=~\"g-.*\"}")?;
    if stored != backlog.rows || series != GROUPS as u64 {
        return Err(format!(
            "VictoriaMetrics holds {stored} point(s) of edge_agent_ok in {series} series for the \
             backlog's {} rows of {GROUPS} groups (the agent reported {forwarded} forwarded)",
            backlog.rows
        ));
    }
    drop(vm);
    fs::remove_dir_all(&vm_dir).map_err(|e| format!("{}: {e}", vm_dir.display()))?;
    Ok(Catchup {
        rows: backlog.rows,
        wall_s,
        steady_s,
        steady_rows: backlog.rows.saturating_sub(first_rows),
        cpu_s,
        vm_cpu_s,
        hwm_kib,
        batches,
        resends,
        stored,
        series,
        load,
    })
}

/// The baseline: `edge-agent replay --format influx --output URL` of the
/// same backlog into a fresh VictoriaMetrics (replay's own batches, of
/// 5,000 rows too), timed by `/usr/bin/time`: wall s, CPU s, peak RSS KiB.
struct Replayed {
    wall_s: f64,
    cpu_s: f64,
    hwm_kib: u64,
    rows: u64,
}

impl Replayed {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.wall_s
    }
    fn cpu_per_m(&self) -> f64 {
        self.cpu_s / self.rows as f64 * 1e6
    }
}

fn replay_baseline(work: &Path, backlog: &Backlog, run: &str) -> Res<Replayed> {
    let vm_dir = work.join(format!("vm-{run}"));
    fs::create_dir_all(&vm_dir).map_err(|e| format!("{}: {e}", vm_dir.display()))?;
    let vm = Vm::start(&vm_dir)?;
    let times = work.join(format!("{run}.time"));
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&times)
        .arg(bin())
        .args([
            "replay",
            "--format",
            "influx",
            "--measurement",
            "edge_agent",
            "--dir",
        ])
        .arg(&backlog.dir)
        .args(["--output", &vm.write_url()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time {} replay: {e}", bin()))?;
    if !out.status.success() {
        return Err(format!(
            "replay into VictoriaMetrics failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = fs::read_to_string(&times).map_err(|e| format!("{}: {e}", times.display()))?;
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [wall_s, user, sys, kib] = f[..] else {
        return Err(format!("/usr/bin/time wrote {text:?}"));
    };
    let (stored, series) = vm.count("{__name__=\"edge_agent_ok\",group=~\"g-.*\"}")?;
    if stored != backlog.rows || series != GROUPS as u64 {
        return Err(format!(
            "after replay VictoriaMetrics holds {stored} point(s) in {series} series for {} rows",
            backlog.rows
        ));
    }
    drop(vm);
    fs::remove_dir_all(&vm_dir).map_err(|e| format!("{}: {e}", vm_dir.display()))?;
    Ok(Replayed {
        wall_s,
        cpu_s: user + sys,
        hwm_kib: kib as u64,
        rows: backlog.rows,
    })
}

fn print_run(label: &str, c: &Catchup) {
    println!(
        "  {label}: {} rows in {:.2} s = {:.0} rows/s (steady {:.0}); CPU {:.2} s = {:.2} s per 10^6 rows; \
         VictoriaMetrics CPU {:.2} s; peak RSS {:.1} MiB; {} batches, {} resent; VM holds {} in {} series; \
         load {}",
        c.rows,
        c.wall_s,
        c.rate(),
        c.steady_rate(),
        c.cpu_s,
        c.cpu_per_m(),
        c.vm_cpu_s,
        mib(c.hwm_kib),
        c.batches,
        c.resends,
        c.stored,
        c.series,
        c.load
    );
}

/// `median [min – max]` of `values` formatted by `f`.
fn spread(values: &[f64], f: impl Fn(f64) -> String) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} [{} – {}]", f(median(values)), f(lo), f(hi))
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

enum Work {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Work {
    fn path(&self) -> &Path {
        match self {
            Work::Temp(t) => t.path(),
            Work::Kept(p) => p,
        }
    }
}

fn run_all() -> Res<()> {
    let started = Instant::now();
    let sizes = minutes()?;
    let work = tempfile::Builder::new()
        .prefix("edge-agent-forward-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    // FORWARD_BENCH_KEEP=1: keep the backlogs and logs (for profiling).
    let work = if std::env::var_os("FORWARD_BENCH_KEEP").is_some() {
        let kept = work.keep();
        println!("keeping {}", kept.display());
        Work::Kept(kept)
    } else {
        Work::Temp(work)
    };
    println!(
        "edge-agent forward bench, binary {}, load {}",
        bin(),
        load_average()
    );
    // Whole hours, 3 hours back and more: well before the live rows.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?
        .as_secs();
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(now / 3600 * 3600 - 3 * 3600);

    let mut backlogs = Vec::new();
    for &m in &sizes {
        let dir = work.path().join(format!("backlog-{m}min"));
        let b = make_backlog(&dir, m, end)?;
        println!(
            "backlog {m} min: {} rows, {} rotated gzip file(s) + active, {:.1} MB on disk \
             ({:.1} MB of rows), written by the store in {:.1} s",
            b.rows,
            b.rotated,
            b.disk_bytes as f64 / 1e6,
            b.uncompressed_bytes as f64 / 1e6,
            b.made_s
        );
        backlogs.push(b);
    }

    let mut results: Vec<Vec<Catchup>> = backlogs.iter().map(|_| Vec::new()).collect();
    let mut replays: Vec<Vec<Replayed>> = backlogs.iter().map(|_| Vec::new()).collect();
    for r in 0..RUNS {
        for ((b, out), rep) in backlogs
            .iter()
            .zip(results.iter_mut())
            .zip(replays.iter_mut())
        {
            let run = format!("r{}m{}", r + 1, b.minutes);
            let c = catch_up_retry(work.path(), b, &run, Some(FAST_RATE))?;
            print_run(&format!("run {} {} min", r + 1, b.minutes), &c);
            out.push(c);
            let p = replay_baseline(work.path(), b, &format!("replay-{run}"))?;
            println!(
                "  replay {} {} min (baseline): {:.2} s = {:.0} rows/s; CPU {:.2} s = {:.2} s per 10^6 rows; \
                 peak RSS {:.1} MiB; load {}",
                r + 1,
                b.minutes,
                p.wall_s,
                p.rate(),
                p.cpu_s,
                p.cpu_per_m(),
                mib(p.hwm_kib),
                load_average()
            );
            rep.push(p);
        }
    }
    let smallest = &backlogs[0];
    let bounded = catch_up_retry(work.path(), smallest, "default-rate", None)?;
    print_run(
        &format!("default max_rate, {} min", smallest.minutes),
        &bounded,
    );

    println!();
    let mut table: Vec<[String; 4]> = Vec::new();
    let none = || "-".to_string();
    let mut rss_all = Vec::new();
    for ((b, cs), ps) in backlogs.iter().zip(&results).zip(&replays) {
        let rates: Vec<f64> = cs.iter().map(Catchup::rate).collect();
        let steady: Vec<f64> = cs.iter().map(Catchup::steady_rate).collect();
        let cpu: Vec<f64> = cs.iter().map(Catchup::cpu_per_m).collect();
        let vm_cpu: Vec<f64> = cs
            .iter()
            .map(|c| c.vm_cpu_s / c.rows as f64 * 1e6)
            .collect();
        let rss: Vec<f64> = cs.iter().map(|c| mib(c.hwm_kib)).collect();
        let loads: Vec<&str> = cs.iter().map(|c| c.load.as_str()).collect();
        rss_all.extend(rss.iter().copied());
        let k = format!("{} rows ({} min)", b.rows, b.minutes);
        table.push([
            format!("rows/s, {k}, max_rate {FAST_RATE}"),
            spread(&rates, |v| format!("{v:.0}")),
            none(),
            none(),
        ]);
        table.push([
            format!("rows/s from the first ack, {k}"),
            spread(&steady, |v| format!("{v:.0}")),
            none(),
            none(),
        ]);
        table.push([
            format!("agent CPU s per 10^6 rows, {k}"),
            spread(&cpu, |v| format!("{v:.2}")),
            none(),
            none(),
        ]);
        table.push([
            format!("VictoriaMetrics CPU s per 10^6 rows (same cores), {k}"),
            spread(&vm_cpu, |v| format!("{v:.2}")),
            none(),
            none(),
        ]);
        let p_rate: Vec<f64> = ps.iter().map(Replayed::rate).collect();
        let p_cpu: Vec<f64> = ps.iter().map(Replayed::cpu_per_m).collect();
        let p_rss: Vec<f64> = ps.iter().map(|p| mib(p.hwm_kib)).collect();
        table.push([
            format!("baseline `replay --output URL`: rows/s, {k}"),
            spread(&p_rate, |v| format!("{v:.0}")),
            none(),
            none(),
        ]);
        table.push([
            format!("baseline replay: CPU s per 10^6 rows / peak RSS MiB, {k}"),
            format!(
                "{} / {}",
                spread(&p_cpu, |v| format!("{v:.2}")),
                spread(&p_rss, |v| format!("{v:.1}"))
            ),
            none(),
            none(),
        ]);
        table.push([
            format!("forward / replay: rows/s, CPU per row (medians), {k}"),
            format!(
                "{:.2}, {:.2}",
                median(&rates) / median(&p_rate),
                median(&cpu) / median(&p_cpu)
            ),
            none(),
            none(),
        ]);
        let hi = rss.iter().copied().fold(0.0, f64::max);
        table.push([
            format!("peak RSS MiB, {k}"),
            spread(&rss, |v| format!("{v:.1}")),
            format!("<= {GOAL_RSS_MIB:.0}"),
            common::verdict(hi <= GOAL_RSS_MIB).into(),
        ]);
        table.push([
            format!("load (1/5/15 min) at each run's start, {k}"),
            loads.join("; "),
            none(),
            none(),
        ]);
    }
    let bound_ok = bounded.rate() <= DEFAULT_RATE as f64 * 1.05;
    table.push([
        format!(
            "rows/s, {} rows, default max_rate {DEFAULT_RATE}",
            bounded.rows
        ),
        format!(
            "{:.0} (steady {:.0}); load {}",
            bounded.rate(),
            bounded.steady_rate(),
            bounded.load
        ),
        format!("<= {DEFAULT_RATE} (+5%)"),
        common::verdict(bound_ok).into(),
    ]);
    print_table(&["figure", "median [min – max]", "goal", "result"], &table);

    // Extrapolation to the issue's day, from the largest backlog.
    let (lb, lc) = backlogs
        .last()
        .zip(results.last())
        .ok_or("no backlog size")?;
    let rate = median(&lc.iter().map(Catchup::rate).collect::<Vec<_>>());
    let cpu = median(&lc.iter().map(Catchup::cpu_per_m).collect::<Vec<_>>());
    println!();
    println!(
        "1 day of 1,000 groups at 1 s = 86.4 M rows (extrapolated from {} min, not measured): \
         at {rate:.0} rows/s {}, at the default max_rate {DEFAULT_RATE} rows/s {} (at the {:.0} rows/s \
         measured with it: {}); agent CPU about {:.0} s ({:.2} s per 10^6 rows)",
        lb.minutes,
        hms(DAY_ROWS / rate),
        hms(DAY_ROWS / DEFAULT_RATE as f64),
        bounded.rate(),
        hms(DAY_ROWS / bounded.rate()),
        cpu * DAY_ROWS / 1e6,
        cpu
    );
    let rss_hi = rss_all.iter().copied().fold(0.0, f64::max);
    println!();
    println!(
        "RESULT {} default_rate_rows_s={:.0} rss_max_mib={rss_hi:.2} load_end={} elapsed_s={:.0}",
        backlogs
            .iter()
            .zip(&results)
            .map(|(b, cs)| format!(
                "rows_s_{m}min={:.0} cpu_per_m_{m}min={:.3} rss_mib_{m}min={:.2}",
                median(&cs.iter().map(Catchup::rate).collect::<Vec<_>>()),
                median(&cs.iter().map(Catchup::cpu_per_m).collect::<Vec<_>>()),
                median(&cs.iter().map(|c| mib(c.hwm_kib)).collect::<Vec<_>>()),
                m = b.minutes
            ))
            .collect::<Vec<_>>()
            .join(" "),
        bounded.rate(),
        load_average(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
