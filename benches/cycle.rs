//! End-to-end benchmark of `edge-agent run` with the real binary.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench cycle
//! # two builds with one harness and one simulator:
//! EDGE_AGENT_BENCH_BIN=/tmp/before EDGE_AGENT_BENCH_SIMULATOR=/tmp/before cargo bench --bench cycle
//! # step 2 with a `forward:` target at a local VictoriaMetrics and without,
//! # alternating, 3 runs each (issue 18; see run_forward_on_off):
//! CYCLE_BENCH_FORWARD=1 cargo bench --bench cycle
//! ```
//!
//! 1. `edge-agent simulate` serves 10 loopback hosts (127.0.0.1..10, one
//!    port) with 20 ms latency per answer. 40 sequential GETs on one
//!    connection first measure the answer time one request chain gets.
//! 2. `edge-agent run` polls 10,000 sensors on them (1,000 per host, 100
//!    groups of 100) every 3 s with `limit: 200`, `limit_per_host: 25`.
//!    Its `--log-level debug` cycle lines (`ok=.. failed=.. ms=..`) give
//!    the cycle times; /proc gives CPU time and peak RSS (VmHWM).
//!    Then, the agent stopped, `wrk -t 1 -c 200` (if installed) loads the
//!    same simulator for 5 s: the time it takes for 10,000 requests is the
//!    cycle this simulator allows at this concurrency on this machine.
//! 3. The shipped demo (`agent.yaml --simulate`) runs ~12 s for its peak RSS.
//! 4. Size of the (stripped) release binary and packages in Cargo.lock.
//!
//! The median cycle time is compared with the bound
//! `max(ceil(N/limit), max_h ceil(N_h/limit_per_host)) * latency`, which is
//! what to compare across (noisy, shared) machines. The process exits
//! non-zero only when the run itself failed, not when a goal is missed.
//!
//! Only loopback addresses are used. Without `--bench` (e.g. under
//! `cargo test --all-targets`) it does nothing, so test runs stay fast.

mod common;
use common::{
    Cycle, Guard, Res, Vm, bin, clock_ticks_per_second, cpu_ticks, exit_code, free_port,
    load_average, median, mib, outside_bench, parse_cycle, print_table, simulator_bin, start_agent,
    verdict, vm_hwm_kib, wait_listening, write_checked_config,
};

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const HOSTS: usize = 10;
const SENSORS: usize = 10_000;
const GROUP_SIZE: usize = 100;
const LIMIT: usize = 200;
const LIMIT_PER_HOST: usize = 25;
const LATENCY_MS: u64 = 20;
const INTERVAL_S: u64 = 3;
const WARMUP_CYCLES: usize = 2;
const MEASURED_CYCLES: usize = 12;

const GOAL_RATIO: f64 = 1.10;
const GOAL_RSS_MIB: f64 = 11.0;
/// Agent CPU seconds per 10,000 polls, start-up included.
const GOAL_CPU_PER_10K: f64 = 0.20;
const GOAL_DEMO_RSS_MIB: f64 = 8.0;
const DEMO_SECONDS: u64 = 12;
const DEMO_PORTS: [u16; 2] = [18321, 18322];

fn main() -> ExitCode {
    if outside_bench("cycle") {
        return ExitCode::SUCCESS;
    }
    if std::env::var_os("CYCLE_BENCH_FORWARD").is_some() {
        return exit_code("cycle", run_forward_on_off());
    }
    exit_code("cycle", run_all())
}

fn host_ip(h: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + h as u8)
}

/// What `wrk` (a load generator in C) gets from the simulator with `LIMIT`
/// connections on one thread for `seconds`: requests per second, and the
/// mean answer time (ms). `None` when wrk is not installed (`apt-get
/// install wrk`). The time wrk needs for `SENSORS` requests is the cycle
/// this simulator allows at this concurrency on this machine: a baseline
/// measured in the same run, where the nominal bound assumes answers in
/// exactly `LATENCY_MS`.
fn wrk_baseline(addr: SocketAddr, seconds: u64) -> Res<Option<(f64, f64)>> {
    let out = match Command::new("wrk")
        .args([
            "-t",
            "1",
            "-c",
            &LIMIT.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .arg(format!("http://{addr}/text/wrk"))
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => return Err(format!("wrk exited with {}", out.status)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot run wrk: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
            .ok_or_else(|| format!("no `{label}` in wrk's output:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:")?
        .parse()
        .map_err(|e| format!("wrk's Requests/sec: {e}"))?;
    let latency = field("Latency")?;
    let latency_ms = match latency.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().ok(),
        None => latency
            .strip_suffix("us")
            .and_then(|us| us.parse::<f64>().ok())
            .map(|us| us / 1000.0),
    }
    .ok_or_else(|| format!("wrk's latency `{latency}`"))?;
    Ok(Some((rps, latency_ms)))
}

/// Time `n` sequential GETs on one keep-alive connection to the simulator:
/// the answer time a single request chain gets (the nominal latency plus the
/// simulator's timer granularity and the HTTP round trip), in ms, sorted.
fn probe_answer_ms(addr: SocketAddr, n: usize) -> Res<Vec<f64>> {
    let err = |e: std::io::Error| format!("probe of {addr}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
    s.set_nodelay(true).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(err)?;
    let mut times = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(1024);
    // One extra request first, not timed.
    for i in 0..=n {
        let t = Instant::now();
        let req = format!("GET /text/probe-{i} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(err)?;
        buf.clear();
        let mut chunk = [0u8; 1024];
        let mut want: Option<usize> = None;
        while want.is_none_or(|w| buf.len() < w) {
            let k = s.read(&mut chunk).map_err(err)?;
            if k == 0 {
                return Err(format!("probe of {addr}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..k]);
            if want.is_none() {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    if !head.starts_with("http/1.1 200") {
                        return Err(format!("probe of {addr}: unexpected answer {head:?}"));
                    }
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .ok_or_else(|| format!("probe of {addr}: no content-length"))?;
                    want = Some(end + 4 + len);
                }
            }
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Start `edge-agent simulate` on the 10 hosts, on a free port.
fn start_simulator(dir: &Path) -> Res<(Guard, u16)> {
    let log = dir.join("simulate.log");
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let mut cmd = Command::new(simulator_bin());
        cmd.arg("simulate");
        for h in 0..HOSTS {
            cmd.arg("--listen").arg(format!("{}:{port}", host_ip(h)));
        }
        let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.args(["--latency", &format!("{LATENCY_MS}ms")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut sim = Guard::spawn("simulator", &mut cmd)?;
        let mut up = Ok(());
        for h in 0..HOSTS {
            let addr = SocketAddr::V4(SocketAddrV4::new(host_ip(h), port));
            up = wait_listening(addr, &mut sim, &log, Duration::from_secs(10));
            if up.is_err() {
                break;
            }
        }
        match up {
            Ok(()) => return Ok((sim, port)),
            Err(e) => last = e, // port taken on another address: try another
        }
    }
    Err(format!("cannot start the simulator: {last}"))
}

/// A `forward:` target (defaults but for the measurement) for the config.
struct Forwarding {
    url: String,
    measurement: String,
}

/// The 10,000-sensor config: sensor i on host i % 10, group i / 100; with
/// `forward`, its rows are also forwarded there.
fn write_config(dir: &Path, port: u16, forward: Option<&Forwarding>) -> Res<PathBuf> {
    let out = dir.join("out");
    let mut y = String::with_capacity(SENSORS * 100);
    y.push_str(&format!(
        "interval: {INTERVAL_S}s\ntimeout: 2s\nlimit: {LIMIT}\nlimit_per_host: {LIMIT_PER_HOST}\n\
         output:\n  dir: {}\n  prefix: bench\ngroups:\n",
        out.display()
    ));
    for g in 0..SENSORS / GROUP_SIZE {
        y.push_str(&format!(
            "  - name: g-{g}\n    unit: celsius\n    sensors:\n"
        ));
        for i in g * GROUP_SIZE..(g + 1) * GROUP_SIZE {
            let ip = host_ip(i % HOSTS);
            y.push_str(&format!(
                "      - {{ id: s-{i}, url: \"http://{ip}:{port}/text/s-{i}\", format: text }}\n"
            ));
        }
    }
    if let Some(f) = forward {
        y.push_str(&format!(
            "forward:\n  - name: vm\n    url: {}\n    measurement: {}\n",
            f.url, f.measurement
        ));
    }
    let path = dir.join("bench.yaml");
    write_checked_config(&path, &y)?;
    Ok(path)
}

/// Data rows (lines after the header) of a CSV file.
fn csv_rows(path: &Path) -> Res<usize> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().count().saturating_sub(1))
}

struct Measured {
    bound_ms: f64,
    rounds: usize,
    /// Sequential answer times of the simulator before the run, sorted (ms).
    probe_ms: Vec<f64>,
    /// wrk after the run at `LIMIT` connections: requests/s, mean answer (ms).
    wrk: Option<(f64, f64)>,
    warmup: Vec<Cycle>,
    cycles: Vec<Cycle>,
    cpu_total_s: f64,
    polls_total: u64,
    cpu_steady_s: f64,
    polls_steady: u64,
    hwm_kib: u64,
    sim_cpu_s: f64,
    rows: usize,
    notable: Vec<String>,
    tick_source: &'static str,
}

impl Measured {
    fn median_ms(&self) -> f64 {
        median(&self.cycles.iter().map(|c| c.ms as f64).collect::<Vec<_>>())
    }
    fn ratio(&self) -> f64 {
        self.median_ms() / self.bound_ms
    }
    /// The median cycle against the bound with the measured answer time
    /// instead of the nominal latency.
    fn ratio_measured(&self) -> f64 {
        self.median_ms() / (self.rounds as f64 * median(&self.probe_ms))
    }
    /// The median cycle against the time wrk takes for as many requests at
    /// the same concurrency.
    fn ratio_wrk(&self) -> Option<f64> {
        self.wrk
            .map(|(rps, _)| self.median_ms() / (SENSORS as f64 / rps * 1000.0))
    }
    fn cpu_per_10k(&self) -> f64 {
        self.cpu_total_s / self.polls_total as f64 * 10_000.0
    }
    fn cpu_per_10k_steady(&self) -> f64 {
        self.cpu_steady_s / self.polls_steady as f64 * 10_000.0
    }
}

/// `max(ceil(N/limit), max_h ceil(N_h/limit_per_host))`: the bound is this
/// many latencies.
fn rounds() -> usize {
    let per_host = SENSORS.div_ceil(HOSTS); // sensor i is on host i % HOSTS
    SENSORS
        .div_ceil(LIMIT)
        .max(per_host.div_ceil(LIMIT_PER_HOST))
}

fn bench_10k(dir: &Path, forward: Option<&Forwarding>) -> Res<Measured> {
    let (ticks_per_s, tick_source) = clock_ticks_per_second();
    let (mut sim, port) = start_simulator(dir)?;
    println!(
        "simulator: pid {} on 127.0.0.1-10:{port}, latency {LATENCY_MS} ms",
        sim.pid()
    );
    let probe_ms = probe_answer_ms(SocketAddr::V4(SocketAddrV4::new(host_ip(0), port)), 40)?;
    let config = write_config(dir, port, forward)?;
    println!(
        "config: {} ({SENSORS} sensors, {HOSTS} hosts, limit {LIMIT}, limit_per_host {LIMIT_PER_HOST})",
        config.display()
    );

    let (mut agent, rx, reader) = start_agent(&config)?;
    let pid = agent.pid();

    let wanted = WARMUP_CYCLES + MEASURED_CYCLES;
    let timeout = Duration::from_secs(INTERVAL_S * (wanted as u64 + 2) + 20);
    let until = Instant::now() + timeout;
    let mut all: Vec<Cycle> = Vec::new();
    let mut notable: Vec<String> = Vec::new();
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut cpu_at_warm = 0u64;
    while all.len() < wanted {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "only {} of {wanted} cycles within {timeout:?}; last log lines:\n{}",
                all.len(),
                Vec::from(recent).join("\n")
            ));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                if let Some(c) = parse_cycle(&line) {
                    all.push(c);
                    println!(
                        "  cycle {:>2}{}: ok={} failed={} ms={}",
                        all.len(),
                        if all.len() <= WARMUP_CYCLES {
                            " (warm-up)"
                        } else {
                            ""
                        },
                        c.ok,
                        c.failed,
                        c.ms
                    );
                    if all.len() == WARMUP_CYCLES {
                        cpu_at_warm = cpu_ticks(pid)?;
                    }
                } else if (line.contains(" WARN ") || line.contains(" ERROR "))
                    && notable.len() < 20
                {
                    notable.push(line.clone());
                }
                recent.push_back(line);
                if recent.len() > 20 {
                    recent.pop_front();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = agent.exited()?;
                return Err(format!(
                    "agent stopped logging (exit status {st:?}) after {} cycle(s); last lines:\n{}",
                    all.len(),
                    Vec::from(recent).join("\n")
                ));
            }
        }
    }
    // Read /proc before SIGTERM.
    let cpu_end = cpu_ticks(pid)?;
    let hwm_kib = vm_hwm_kib(pid)?;
    let sim_cpu = cpu_ticks(sim.pid())?;

    let status = agent.terminate(Duration::from_secs(15))?;
    // The pipe is closed now; keep what was still buffered.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        if (line.contains(" WARN ") || line.contains(" ERROR ")) && notable.len() < 20 {
            notable.push(line.clone());
        }
        recent.push_back(line);
        if recent.len() > 20 {
            recent.pop_front();
        }
    }
    let _ = reader.join();
    if !status.success() {
        return Err(format!(
            "agent exited with {status} after SIGTERM; last lines:\n{}",
            Vec::from(recent).join("\n")
        ));
    }
    // The agent is gone: the same simulator under the same concurrency from
    // wrk, on one host (the simulator serves all hosts from one runtime).
    let wrk = wrk_baseline(SocketAddr::V4(SocketAddrV4::new(host_ip(0), port)), 5)?;
    let sim_status = sim.terminate(Duration::from_secs(10))?;
    if !sim_status.success() {
        return Err(format!("simulator exited with {sim_status} after SIGTERM"));
    }
    let rows = csv_rows(&dir.join("out").join("bench.csv"))?;
    if rows == 0 {
        return Err("the agent wrote no rows".into());
    }

    let polls = |cs: &[Cycle]| cs.iter().map(|c| c.ok + c.failed).sum::<u64>();
    let (warmup, cycles) = all.split_at(WARMUP_CYCLES);
    Ok(Measured {
        bound_ms: (rounds() as u64 * LATENCY_MS) as f64,
        rounds: rounds(),
        probe_ms,
        wrk,
        warmup: warmup.to_vec(),
        cycles: cycles.to_vec(),
        cpu_total_s: cpu_end as f64 / ticks_per_s,
        polls_total: polls(&all),
        cpu_steady_s: cpu_end.saturating_sub(cpu_at_warm) as f64 / ticks_per_s,
        polls_steady: polls(cycles),
        hwm_kib,
        sim_cpu_s: sim_cpu as f64 / ticks_per_s,
        rows,
        notable,
        tick_source,
    })
}

enum Demo {
    Measured { hwm_kib: u64, rows: usize },
    Skipped(String),
}

/// The shipped demo: `agent.yaml --simulate`, output moved into `dir`.
fn bench_demo(dir: &Path) -> Res<Demo> {
    for port in DEMO_PORTS {
        if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Ok(Demo::Skipped(format!("127.0.0.1:{port} is busy ({e})")));
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.yaml");
    let text = fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = dir.join("demo-data");
    let mut replaced = 0;
    let copy: String = text
        .lines()
        .map(|l| {
            if l.starts_with("  dir:") {
                replaced += 1;
                format!("  dir: {}", out.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    if replaced != 1 {
        return Err(format!(
            "agent.yaml: expected one `  dir:` line under output, found {replaced}"
        ));
    }
    let config = dir.join("agent.yaml");
    fs::write(&config, copy).map_err(|e| format!("{}: {e}", config.display()))?;
    let log = dir.join("demo.log");
    let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut agent = Guard::spawn(
        "demo agent",
        Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--simulate")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    )?;
    let until = Instant::now() + Duration::from_secs(DEMO_SECONDS);
    while Instant::now() < until {
        if let Some(st) = agent.exited()? {
            let text = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("demo agent exited early ({st}):\n{text}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    let hwm_kib = vm_hwm_kib(agent.pid())?;
    let status = agent.terminate(Duration::from_secs(10))?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "demo agent exited with {status} after SIGTERM:\n{text}"
        ));
    }
    let rows = csv_rows(&out.join("readings.csv"))?;
    if rows == 0 {
        let text = fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "the demo wrote no rows in {DEMO_SECONDS} s:\n{text}"
        ));
    }
    Ok(Demo::Measured { hwm_kib, rows })
}

fn lock_packages() -> Res<usize> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().filter(|l| l.trim() == "[[package]]").count())
}

fn run_all() -> Res<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("edge-agent-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    println!(
        "edge-agent cycle bench, binary {}, simulator {}",
        bin(),
        simulator_bin()
    );

    let m = bench_10k(dir.path(), None)?;
    println!("demo: agent.yaml --simulate for {DEMO_SECONDS} s");
    let demo = bench_demo(dir.path())?;
    let size = fs::metadata(bin())
        .map_err(|e| format!("{}: {e}", bin()))?
        .len();
    let packages = lock_packages()?;

    let ms: Vec<u64> = m.cycles.iter().map(|c| c.ms).collect();
    let failed: u64 = m.cycles.iter().map(|c| c.failed).sum();
    let warm_failed: u64 = m.warmup.iter().map(|c| c.failed).sum();
    println!();
    println!(
        "cycles measured: {} (after {} warm-up), ms: {ms:?}",
        m.cycles.len(),
        m.warmup.len()
    );
    println!(
        "cycle ms: median {:.1}, min {}, max {}; bound {:.0} ms",
        m.median_ms(),
        ms.iter().min().copied().unwrap_or(0),
        ms.iter().max().copied().unwrap_or(0),
        m.bound_ms
    );
    println!(
        "failed polls: {failed} in measured cycles, {warm_failed} in warm-up; rows written: {}",
        m.rows
    );
    println!(
        "agent CPU: {:.2} s for {} polls incl. start-up; steady state {:.2} s for {} polls (ticks: {})",
        m.cpu_total_s, m.polls_total, m.cpu_steady_s, m.polls_steady, m.tick_source
    );
    println!("simulator CPU (same machine): {:.2} s", m.sim_cpu_s);
    println!(
        "simulator answer time, {} sequential GETs on one connection before the run: \
         median {:.2} ms, min {:.2}, max {:.2} (nominal {LATENCY_MS} ms)",
        m.probe_ms.len(),
        median(&m.probe_ms),
        m.probe_ms.first().copied().unwrap_or(f64::NAN),
        m.probe_ms.last().copied().unwrap_or(f64::NAN)
    );
    if !m.notable.is_empty() {
        println!("agent warnings/errors ({} shown):", m.notable.len());
        for l in &m.notable {
            println!("  {l}");
        }
    }

    println!();
    let ratio = m.ratio();
    let rss = mib(m.hwm_kib);
    let none = String::from("-");
    let mut table: Vec<[String; 4]> = vec![
        [
            "median cycle / bound (10k sensors)".into(),
            format!("{ratio:.3}"),
            format!("<= {GOAL_RATIO:.2}"),
            verdict(ratio <= GOAL_RATIO).into(),
        ],
        [
            "median cycle time (bound 1000 ms)".into(),
            format!("{:.0} ms", m.median_ms()),
            format!("<= {:.0} ms", m.bound_ms * GOAL_RATIO),
            verdict(ratio <= GOAL_RATIO).into(),
        ],
        [
            "median cycle / (rounds x measured answer)".into(),
            format!("{:.3}", m.ratio_measured()),
            none.clone(),
            none.clone(),
        ],
        [
            format!("median cycle / wrk's time for {SENSORS} requests at {LIMIT} connections"),
            m.ratio_wrk().map_or("no wrk".into(), |r| format!("{r:.3}")),
            none.clone(),
            none.clone(),
        ],
        [
            format!("simulator answer time under wrk, {LIMIT} connections (mean)"),
            m.wrk
                .map_or("no wrk".into(), |(_, ms)| format!("{ms:.2} ms")),
            format!("{LATENCY_MS} ms nominal"),
            none.clone(),
        ],
        [
            "simulator answer time (one chain, median)".into(),
            format!("{:.2} ms", median(&m.probe_ms)),
            format!("{LATENCY_MS} ms nominal"),
            none.clone(),
        ],
        [
            "failed polls (measured cycles)".into(),
            failed.to_string(),
            "0".into(),
            verdict(failed == 0).into(),
        ],
        [
            "CPU s per 10,000 polls (incl. start-up)".into(),
            format!("{:.3}", m.cpu_per_10k()),
            format!("<= {GOAL_CPU_PER_10K:.2}"),
            verdict(m.cpu_per_10k() <= GOAL_CPU_PER_10K).into(),
        ],
        [
            "CPU s per 10,000 polls (steady state)".into(),
            format!("{:.3}", m.cpu_per_10k_steady()),
            none.clone(),
            none.clone(),
        ],
        [
            "peak RSS (VmHWM), 10k sensors".into(),
            format!("{rss:.1} MiB"),
            format!("<= {GOAL_RSS_MIB:.0} MiB"),
            verdict(rss <= GOAL_RSS_MIB).into(),
        ],
    ];
    let demo_line = match &demo {
        Demo::Measured { hwm_kib, rows } => {
            let r = mib(*hwm_kib);
            table.push([
                "peak RSS (VmHWM), shipped demo".into(),
                format!("{r:.1} MiB"),
                format!("<= {GOAL_DEMO_RSS_MIB:.0} MiB"),
                verdict(r <= GOAL_DEMO_RSS_MIB).into(),
            ]);
            format!("demo_rss_mib={r:.2} demo_rows={rows}")
        }
        Demo::Skipped(why) => {
            table.push([
                "peak RSS (VmHWM), shipped demo".into(),
                "skipped".into(),
                format!("<= {GOAL_DEMO_RSS_MIB:.0} MiB"),
                none.clone(),
            ]);
            println!("shipped demo skipped: {why}");
            "demo_rss_mib=skipped".to_string()
        }
    };
    table.push([
        "binary under test (as `cargo bench` builds it, dev-dep features too)".into(),
        format!("{:.2} MiB", size as f64 / 1024.0 / 1024.0),
        none.clone(),
        none.clone(),
    ]);
    table.push([
        "Cargo.lock packages (incl. edge-agent and dev-deps)".into(),
        packages.to_string(),
        none.clone(),
        none,
    ]);
    print_table(&["figure", "value", "goal", "result"], &table);
    println!();
    println!(
        "RESULT ratio={ratio:.4} ratio_measured={:.4} ratio_wrk={} probe_ms={:.2} median_ms={:.1} failed={failed} \
         cpu_per_10k={:.4} cpu_per_10k_steady={:.4} rss_mib={rss:.2} {demo_line} \
         binary_bytes={size} lock_packages={packages} elapsed_s={:.0}",
        m.ratio_measured(),
        m.ratio_wrk().map_or("none".into(), |r| format!("{r:.4}")),
        median(&m.probe_ms),
        m.median_ms(),
        m.cpu_per_10k(),
        m.cpu_per_10k_steady(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `CYCLE_BENCH_FORWARD=1`: the 10,000-sensor run with a `forward:` target
/// at a local VictoriaMetrics and without, alternating (off, on, on, off,
/// off, on: each side as often first), 3 runs each; medians, spreads and
/// the on/off ratios. The demo, binary size and lock count are left out.
fn run_forward_on_off() -> Res<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("edge-agent-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    println!(
        "edge-agent cycle bench, forwarding off vs on, binary {}, simulator {}",
        bin(),
        simulator_bin()
    );
    let vm = Vm::start(dir.path())?;
    println!("victoria-metrics: pid {} on {}", vm.guard.pid(), vm.addr);
    let order = [false, true, true, false, false, true];
    let mut runs: Vec<(bool, Measured, String)> = Vec::new();
    for (k, &on) in order.iter().enumerate() {
        let sub = dir.path().join(format!("run-{k}"));
        fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        let load = load_average();
        let forward = on.then(|| Forwarding {
            url: vm.write_url(),
            measurement: format!("cycle_run{k}"),
        });
        println!(
            "run {} of {}: forwarding {}; load {load}",
            k + 1,
            order.len(),
            if on { "on" } else { "off" }
        );
        let m = bench_10k(&sub, forward.as_ref())?;
        let stored = match &forward {
            Some(f) => {
                let (points, _) = vm.count(&format!("{{__name__=\"{}_ok\"}}", f.measurement))?;
                format!("; VictoriaMetrics holds {points} of the {} rows", m.rows)
            }
            None => String::new(),
        };
        println!(
            "  => cycle/bound {:.3}, cycle/wrk {}, CPU {:.3} s per 10k polls ({:.3} steady), \
             peak RSS {:.1} MiB, failed {}{stored}",
            m.ratio(),
            m.ratio_wrk().map_or("no wrk".into(), |r| format!("{r:.3}")),
            m.cpu_per_10k(),
            m.cpu_per_10k_steady(),
            mib(m.hwm_kib),
            m.cycles.iter().map(|c| c.failed).sum::<u64>()
        );
        runs.push((on, m, load));
    }
    drop(vm);

    let side = |on: bool, f: &dyn Fn(&Measured) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.0 == on).map(|r| f(&r.1)).collect()
    };
    let spread = |v: &[f64], d: usize| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.d$} [{lo:.d$} – {hi:.d$}]", median(v))
    };
    // (name, value of one run, decimals)
    type Figure<'a> = (&'a str, &'a dyn Fn(&Measured) -> f64, usize);
    let figures: [Figure; 7] = [
        ("median cycle / bound", &|m| m.ratio(), 3),
        (
            "median cycle / wrk's time for the same requests",
            &|m| m.ratio_wrk().unwrap_or(f64::NAN),
            3,
        ),
        (
            "median cycle / (rounds x measured answer)",
            &|m| m.ratio_measured(),
            3,
        ),
        (
            "CPU s per 10,000 polls (incl. start-up)",
            &|m| m.cpu_per_10k(),
            3,
        ),
        (
            "CPU s per 10,000 polls (steady state)",
            &|m| m.cpu_per_10k_steady(),
            3,
        ),
        ("peak RSS (VmHWM) MiB", &|m| mib(m.hwm_kib), 1),
        (
            "failed polls (measured cycles)",
            &|m| m.cycles.iter().map(|c| c.failed).sum::<u64>() as f64,
            0,
        ),
    ];
    println!();
    let mut table = Vec::new();
    let mut result = Vec::new();
    for (i, (name, f, d)) in figures.iter().enumerate() {
        let (off, on) = (side(false, *f), side(true, *f));
        let ratio = median(&on) / median(&off);
        table.push([
            name.to_string(),
            spread(&off, *d),
            spread(&on, *d),
            if ratio.is_finite() {
                format!("{ratio:.3}")
            } else {
                "-".into()
            },
        ]);
        result.push(format!(
            "f{i}_off={:.4} f{i}_on={:.4}",
            median(&off),
            median(&on)
        ));
    }
    let loads = |on: bool| {
        runs.iter()
            .filter(|r| r.0 == on)
            .map(|r| r.2.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    table.push([
        "load (1/5/15 min) at each run's start".into(),
        loads(false),
        loads(true),
        "-".into(),
    ]);
    print_table(
        &[
            "figure",
            "forward off: median [min – max]",
            "forward on",
            "on / off",
        ],
        &table,
    );
    println!();
    println!(
        "RESULT {} elapsed_s={:.0}",
        result.join(" "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
