//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// The release binary `cargo bench` built.
pub const BIN: &str = env!("CARGO_BIN_EXE_edge-agent");

/// The binary under test: `EDGE_AGENT_BENCH_BIN` if set (to compare two
/// builds, say main's and a branch's, with one harness), else [`BIN`].
pub fn bin() -> &'static str {
    static BIN_UNDER_TEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN_UNDER_TEST
        .get_or_init(|| std::env::var("EDGE_AGENT_BENCH_BIN").unwrap_or_else(|_| BIN.to_string()))
}

/// The binary that serves the simulated sensors: `EDGE_AGENT_BENCH_SIMULATOR`
/// if set (one simulator for both sides of a comparison, since it shares the
/// cores with the agent), else [`bin`].
pub fn simulator_bin() -> &'static str {
    static SIMULATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SIMULATOR.get_or_init(|| {
        std::env::var("EDGE_AGENT_BENCH_SIMULATOR").unwrap_or_else(|_| bin().to_string())
    })
}

/// Without `--bench` (e.g. under `cargo test --all-targets`) a bench does
/// nothing, so test runs stay fast: true then, after saying so.
pub fn outside_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return false;
    }
    println!("{name}: run with `cargo bench --bench {name}`; nothing to do in test mode");
    true
}

/// A bench exits non-zero only when the run itself failed (the reason on
/// stderr), not when a goal is missed.
pub fn exit_code(name: &str, result: Res<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An I/O error as `PATH: error`.
pub fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Res<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// The result column of a figure with a goal.
pub fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}

/// A Markdown table with padded columns.
pub fn print_table(head: &[&str; 4], rows: &[[String; 4]]) {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(*head);
    println!("|{}|", width.map(|w| "-".repeat(w + 2)).join("|"));
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3]].map(String::as_str));
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, unless
/// it was already waited for.
pub struct Guard {
    name: &'static str,
    child: Option<Child>,
}

impl Guard {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Res<Guard> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Guard {
            name,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child is present until stopped")
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Res<Option<ExitStatus>> {
        let name = self.name;
        self.child()
            .try_wait()
            .map_err(|e| format!("cannot wait for {name}: {e}"))
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Res<ExitStatus> {
        let pid = self.pid().to_string();
        if self.exited()?.is_none() {
            let st = Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .map_err(|e| format!("cannot run kill: {e}"))?;
            if !st.success() {
                return Err(format!("kill -TERM {pid} ({}) failed: {st}", self.name));
            }
        }
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= until {
                return Err(format!(
                    "{} (pid {pid}) did not exit within {timeout:?} of SIGTERM",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// One `cycle at ... done ok=N failed=N ms=N` debug line.
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    pub ok: u64,
    pub failed: u64,
    pub ms: u64,
}

pub fn parse_cycle(line: &str) -> Option<Cycle> {
    if !line.contains("cycle at") || !line.contains(" done") {
        return None;
    }
    let field = |key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    Some(Cycle {
        ok: field("ok=")?,
        failed: field("failed=")?,
        ms: field("ms=")?,
    })
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Wait until `addr` accepts TCP connections, or fail when `sim` exits.
pub fn wait_listening(addr: SocketAddr, sim: &mut Guard, log: &Path, timeout: Duration) -> Res<()> {
    let until = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(st) = sim.exited()? {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "simulator exited ({st}) before {addr} was up:\n{text}"
            ));
        }
        if Instant::now() >= until {
            return Err(format!(
                "{addr} did not accept connections within {timeout:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `edge-agent run --config CONFIG --log-level debug`, with its stderr
/// lines sent to the returned channel by a reader thread (joined by the
/// caller once the agent has exited).
pub fn start_agent(config: &Path) -> Res<(Guard, mpsc::Receiver<String>, thread::JoinHandle<()>)> {
    let mut agent = Guard::spawn(
        "agent",
        Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-level", "debug"])
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let stderr = agent.child().stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((agent, rx, reader))
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Res<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}

/// Peak resident set size (VmHWM) of `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Res<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// Write `yaml` to `path` and have `edge-agent check` accept it.
pub fn write_checked_config(path: &Path, yaml: &str) -> Res<()> {
    fs::write(path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    let check = Command::new(bin())
        .args(["check", "--config"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run check: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "edge-agent check rejected {} ({}):\n{}",
            path.display(),
            check.status,
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    Ok(())
}

/// CPU time (user + system) of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').ok_or("malformed /proc stat")? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Res<u64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("malformed /proc/{pid}/stat"))
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second (for [`cpu_ticks`]) and where the figure came from.
pub fn clock_ticks_per_second() -> (f64, &'static str) {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    match out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
    {
        Some(t) if t > 0.0 => (t, "getconf CLK_TCK"),
        _ => (100.0, "assumed 100 (getconf failed)"),
    }
}

/// The machine's load averages (1, 5, 15 min) as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The TCP addresses `pid` listens on (from /proc: for a server told to
/// listen on port 0 that does not say which port it got).
pub fn listening_addrs(pid: u32) -> Vec<SocketAddr> {
    use std::collections::HashSet;
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let sockets: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| {
            let link = fs::read_link(fd.path()).ok()?;
            let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            // 0A is TCP_LISTEN.
            if *state != "0A" || !sockets.contains(*inode) {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            // The kernel's u32 printed in hex: its bytes in memory, read
            // back in this machine's order, are the address.
            let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
        })
        .collect()
}

/// A plain HTTP/1.0 GET on loopback (the server closes after the body: no
/// chunking): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Res<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
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

/// `s` percent-encoded for a query string.
pub fn percent_encode(s: &str) -> String {
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

pub const VM_BIN: &str = "/usr/bin/victoria-metrics";

/// VictoriaMetrics on 127.0.0.1, port 0, data in `dir/vm`, with
/// `-dedup.minScrapeInterval=1ms` (one point per series and timestamp, so a
/// batch sent again is stored once). Killed when dropped.
pub struct Vm {
    pub guard: Guard,
    pub addr: SocketAddr,
}

impl Vm {
    pub fn start(dir: &Path) -> Res<Vm> {
        let log = dir.join("victoria-metrics.log");
        let out = fs::File::create(&log).map_err(io_err(&log))?;
        let err = out.try_clone().map_err(io_err(&log))?;
        let mut guard = Guard::spawn(
            "victoria-metrics",
            Command::new(VM_BIN)
                .arg(format!("-storageDataPath={}", dir.join("vm").display()))
                .arg("-httpListenAddr=127.0.0.1:0")
                .arg("-retentionPeriod=100y")
                .arg("-dedup.minScrapeInterval=1ms")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )?;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = guard.exited()? {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                return Err(format!(
                    "victoria-metrics exited ({st}): {}",
                    tail.join(" | ")
                ));
            }
            let addrs = listening_addrs(guard.pid());
            if let [addr] = addrs[..] {
                if let Ok((200, _)) = http_get(addr, "/health") {
                    return Ok(Vm { guard, addr });
                }
            }
            if Instant::now() >= until {
                return Err(format!(
                    "victoria-metrics not healthy within 60 s (listening on {addrs:?}); log {}",
                    log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its line-protocol endpoint.
    pub fn write_url(&self) -> String {
        format!("http://{}/write", self.addr)
    }

    /// Points of the series `selector` picks (all times), counted from
    /// `/api/v1/export` after a flush, and how many series.
    pub fn count(&self, selector: &str) -> Res<(u64, u64)> {
        let (code, body) = http_get(self.addr, "/internal/force_flush")?;
        if code != 200 {
            return Err(format!(
                "force_flush: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let path = format!("/api/v1/export?match[]={}", percent_encode(selector));
        let (code, body) = http_get(self.addr, &path)?;
        if code != 200 {
            return Err(format!(
                "export {selector}: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let (mut points, mut series) = (0, 0);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| format!("export {selector}: bad JSON line: {e}"))?;
            let ts = v["timestamps"]
                .as_array()
                .ok_or_else(|| format!("export {selector}: no timestamps"))?;
            points += ts.len() as u64;
            series += 1;
        }
        Ok((points, series))
    }
}
