//! Soak: `edge-agent run` (release) for 10,000 short cycles against
//! misbehaving sensors, with rotation and gzip busy, watching memory and
//! file descriptors.
//!
//! ```text
//! cargo bench --bench soak                   # 10,000 cycles, ~3.5 min
//! SOAK_CYCLES=500 cargo bench --bench soak   # a quick smoke run
//! ```
//!
//! `edge-agent simulate` serves the sensors on 127.0.0.1; the agent polls
//! every 20 ms (timeout 10 ms) three groups:
//! - `good`: json, prometheus and text sensors that always answer;
//! - `mixed`: good sensors beside one answering HTTP 500 30% of the time
//!   and one answering an HTML page 50% of the time;
//! - `bad`: a sensor that answers after 1 s (always timed out, its
//!   connection dropped every cycle), one on a port nobody listens on
//!   (refused), one that always sends HTML, one 404.
//!
//! Output rotates at 16 KiB with gzip and keeps 5 files, so rotation,
//! compression and retention run every few seconds.
//!
//! The agent's `--log-level debug` cycle lines count the cycles. After
//! warm-up (cycle 100) and at the end the bench reads VmRSS from
//! `/proc/PID/status` and counts `/proc/PID/fd`; in between it samples
//! every 1,000 cycles. Then SIGTERM; the agent must exit 0, and its
//! summary line gives cycles and skipped ticks. Goals: RSS flat within
//! 1 MiB; the same descriptors at the end as after warm-up except sockets,
//! which come and go with requests and must stay within `limit`.
//!
//! Only loopback addresses are used. Without `--bench` it does nothing.

mod common;
use common::{
    BIN, Guard, Res, exit_code, free_port, mib, outside_bench, parse_cycle, print_table,
    proc_status_kib, start_agent, wait_listening, write_checked_config,
};

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 20;
const TIMEOUT_MS: u64 = 10;
const WARMUP: usize = 100;
const SAMPLE_EVERY: usize = 1000;
const GOAL_RSS_GROWTH_MIB: f64 = 1.0;
/// `limit` of the config: requests in flight, so sockets open at once.
const LIMIT: usize = 16;

fn main() -> ExitCode {
    if outside_bench("soak") {
        return ExitCode::SUCCESS;
    }
    let cycles = match std::env::var("SOAK_CYCLES") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n > WARMUP => n,
            _ => {
                eprintln!("SOAK_CYCLES must be a number above {WARMUP}, got {v:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => 10_000,
    };
    exit_code("soak", soak(cycles))
}

/// Open descriptors of `pid`, and what they are (`socket`, `anon_inode`, a
/// path), for the report if the count grows.
fn fds(pid: u32) -> Res<Vec<String>> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let e = e.map_err(|e| format!("{dir}: {e}"))?;
        let target =
            fs::read_link(e.path()).map_or_else(|_| "?".into(), |t| t.display().to_string());
        out.push(target.split(':').next().unwrap_or_default().to_string());
    }
    out.sort();
    Ok(out)
}

/// Start `edge-agent simulate` on 127.0.0.1.
fn start_simulator(dir: &Path) -> Res<(Guard, u16)> {
    let log = dir.join("simulate.log");
    let port = free_port()?;
    let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut sim = Guard::spawn(
        "simulator",
        Command::new(BIN)
            .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, &mut sim, &log, Duration::from_secs(10))?;
    Ok((sim, port))
}

/// A sensor: URL, format, value selector (empty for text).
type SensorSpec<'a> = (String, &'a str, &'a str);

/// The soak config: three groups of four sensors.
fn write_config(dir: &Path, port: u16, refused: u16) -> Res<std::path::PathBuf> {
    let sim = format!("http://127.0.0.1:{port}");
    let groups: [(&str, Vec<SensorSpec>); 3] = [
        (
            "good",
            vec![
                (format!("{sim}/json/g1"), "json", "/temperature_c"),
                (
                    format!("{sim}/prometheus/g2"),
                    "prometheus",
                    "sim_temperature_celsius{sensor=\"g2\"}",
                ),
                (format!("{sim}/text/g3"), "text", ""),
                (format!("{sim}/text/g4"), "text", ""),
            ],
        ),
        (
            "mixed",
            vec![
                (format!("{sim}/json/m1"), "json", "/temperature_c"),
                (format!("{sim}/text/m2"), "text", ""),
                (format!("{sim}/text/m3?fail=0.3"), "text", ""),
                (
                    format!("{sim}/json/m4?garbage=0.5"),
                    "json",
                    "/temperature_c",
                ),
            ],
        ),
        (
            "bad",
            vec![
                (format!("{sim}/text/b1?latency=1s"), "text", ""),
                (format!("http://127.0.0.1:{refused}/text/b2"), "text", ""),
                (format!("{sim}/json/b3?garbage=1"), "json", "/temperature_c"),
                (format!("{sim}/nothing/b4"), "text", ""),
            ],
        ),
    ];
    let out = dir.join("out");
    let mut y = format!(
        "interval: {INTERVAL_MS}ms\ntimeout: {TIMEOUT_MS}ms\nlimit: {LIMIT}\nlimit_per_host: 12\n\
         output:\n  dir: {}\n  prefix: soak\n  rotate:\n    max_size: 16KiB\n  compress: gzip\n  keep: 5\n\
         groups:\n",
        out.display()
    );
    for (name, sensors) in &groups {
        y.push_str(&format!(
            "  - name: {name}\n    unit: celsius\n    sensors:\n"
        ));
        for (i, (url, format, value)) in sensors.iter().enumerate() {
            y.push_str(&format!(
                "      - {{ id: {name}-{i}, url: \"{url}\", format: {format}"
            ));
            if !value.is_empty() {
                y.push_str(&format!(", value: '{value}'"));
            }
            y.push_str(" }\n");
        }
    }
    let path = dir.join("soak.yaml");
    write_checked_config(&path, &y)?;
    Ok(path)
}

/// One reading of the agent's process.
struct Sample {
    cycle: usize,
    rss_kib: u64,
    fds: Vec<String>,
}

fn sample(pid: u32, cycle: usize) -> Res<Sample> {
    Ok(Sample {
        cycle,
        rss_kib: proc_status_kib(pid, "VmRSS")?,
        fds: fds(pid)?,
    })
}

/// `what` counted in `fds`, e.g. `socket`.
fn count(fds: &[String], what: &str) -> usize {
    fds.iter().filter(|f| f.as_str() == what).count()
}

fn soak(cycles: usize) -> Res<()> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = tmp.path();
    let (_sim, port) = start_simulator(dir)?;
    // A port that refuses: found free, then left closed.
    let refused = free_port()?;
    let config = write_config(dir, port, refused)?;
    println!(
        "soak: {cycles} cycles of {INTERVAL_MS} ms (timeout {TIMEOUT_MS} ms), simulator on 127.0.0.1:{port}, refused port {refused}"
    );

    let (mut agent, rx, reader) = start_agent(&config)?;
    let pid = agent.pid();

    let started = Instant::now();
    // Generous: every cycle on time takes cycles * interval.
    let limit = Duration::from_millis(INTERVAL_MS * cycles as u64 * 3) + Duration::from_secs(30);
    let mut done = 0usize;
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut cycle_ms = Vec::with_capacity(cycles);
    let mut samples = vec![sample(pid, 0)?];
    let mut warnings = 0usize;
    let mut errors: Vec<String> = Vec::new();
    while done < cycles {
        if started.elapsed() > limit {
            return Err(format!("only {done} of {cycles} cycles within {limit:?}"));
        }
        if let Some(st) = agent.exited()? {
            return Err(format!(
                "agent exited early ({st}) after {done} cycles; {errors:?}"
            ));
        }
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains(" WARN ") {
            warnings += 1;
        }
        if line.contains("ERROR") && errors.len() < 5 {
            errors.push(line.clone());
        }
        if let Some(c) = parse_cycle(&line) {
            done += 1;
            ok += c.ok;
            failed += c.failed;
            cycle_ms.push(c.ms as f64);
            if done == WARMUP || done % SAMPLE_EVERY == 0 || done == cycles {
                samples.push(sample(pid, done)?);
            }
        }
    }
    let elapsed = started.elapsed();
    let status = agent.terminate(Duration::from_secs(10))?;
    let rest: Vec<String> = rx.iter().collect();
    reader.join().map_err(|_| "stderr reader panicked")?;
    if !status.success() {
        return Err(format!("agent exited with {status}: {rest:?}"));
    }
    let summary = rest
        .iter()
        .find(|l| l.contains("stopped after"))
        .cloned()
        .ok_or("no `stopped after` line from the agent")?;
    let skipped: u64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" tick(s) skipped"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no skipped count in {summary:?}"))?;

    // The output: rotation and gzip ran, retention held.
    let names: Vec<String> = fs::read_dir(dir.join("out"))
        .map_err(|e| format!("out dir: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let gz = names.iter().filter(|n| n.ends_with(".csv.gz")).count();
    if gz == 0 {
        return Err(format!("no rotated .csv.gz file in {names:?}"));
    }

    let warm = samples
        .iter()
        .find(|s| s.cycle == WARMUP)
        .ok_or("no warm-up sample")?;
    let end = samples.last().ok_or("no samples")?;
    let growth_mib = mib(end.rss_kib) - mib(warm.rss_kib);
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let sensors = 12u64;
    let mut ms = cycle_ms.clone();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];

    println!();
    println!("RSS and descriptors by cycle:");
    let rows: Vec<[String; 4]> = samples
        .iter()
        .map(|s| {
            [
                s.cycle.to_string(),
                format!("{:.2}", mib(s.rss_kib)),
                s.fds.len().to_string(),
                format!(
                    "{} sockets, {} files",
                    count(&s.fds, "socket"),
                    s.fds.iter().filter(|f| f.starts_with('/')).count()
                ),
            ]
        })
        .collect();
    print_table(&["cycle", "VmRSS MiB", "fds", "of which"], &rows);
    println!();
    let verdict = |pass: bool| if pass { "met" } else { "MISSED" };
    // Sockets come and go with requests (timed-out ones are dropped, new
    // ones opened); they must stay within `limit`. Everything else (files,
    // pipes, epoll) must be exactly what it was after warm-up.
    let others = |s: &Sample| -> Vec<String> {
        s.fds
            .iter()
            .filter(|f| f.as_str() != "socket")
            .cloned()
            .collect()
    };
    let max_sockets = samples
        .iter()
        .map(|s| count(&s.fds, "socket"))
        .max()
        .unwrap_or(0);
    let fd_flat = others(end) == others(warm) && max_sockets <= LIMIT;
    let rows = vec![
        [
            "cycles completed / skipped ticks".into(),
            format!("{done} / {skipped}"),
            format!(
                "{:.1} s for {done} x {INTERVAL_MS} ms",
                elapsed.as_secs_f64()
            ),
            String::new(),
        ],
        [
            "cycle time median / p99 / max".into(),
            format!("{:.0} / {:.0} / {:.0} ms", pct(0.5), pct(0.99), pct(1.0)),
            format!(
                "{:.2} / {:.2} of the interval",
                pct(0.5) / INTERVAL_MS as f64,
                pct(0.99) / INTERVAL_MS as f64
            ),
            String::new(),
        ],
        [
            "readings ok / failed".into(),
            format!("{ok} / {failed}"),
            format!(
                "{:.2} failed per cycle of {sensors}",
                failed as f64 / done as f64
            ),
            String::new(),
        ],
        [
            format!("VmRSS cycle {WARMUP} -> {done}"),
            format!("{:.2} -> {:.2} MiB", mib(warm.rss_kib), mib(end.rss_kib)),
            format!("{growth_mib:+.2} MiB (peak sample {:.2})", mib(peak)),
            format!(
                "goal <= {GOAL_RSS_GROWTH_MIB} MiB: {}",
                verdict(growth_mib <= GOAL_RSS_GROWTH_MIB)
            ),
        ],
        [
            format!("open fds cycle {WARMUP} -> {done}"),
            format!("{} -> {}", warm.fds.len(), end.fds.len()),
            format!(
                "at start (cycle 0): {}; sockets at most {max_sockets}",
                samples[0].fds.len()
            ),
            format!(
                "goal: non-sockets unchanged, sockets <= limit ({LIMIT}): {}",
                verdict(fd_flat)
            ),
        ],
        [
            "output files at the end".into(),
            format!("{} ({gz} .csv.gz)", names.len()),
            format!("{warnings} WARN lines"),
            String::new(),
        ],
    ];
    print_table(&["", "value", "detail", "goal"], &rows);
    if !errors.is_empty() {
        println!("\nERROR lines (first {}):", errors.len());
        for e in &errors {
            println!("  {e}");
        }
    }
    if !fd_flat {
        println!(
            "\nfds after warm-up: {:?}\nfds at the end:    {:?}",
            warm.fds, end.fds
        );
    }
    Ok(())
}
