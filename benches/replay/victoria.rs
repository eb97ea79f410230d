//! Replay into a real time-series store: VictoriaMetrics on loopback, fed
//! disjoint windows of the small history with `--output http://.../write`,
//! then every point counted back through `/api/v1/export` (each window
//! whole, nothing outside, no duplicate). Points/s = points of a window /
//! its replay time. The server runs in its own process group and is killed
//! with it when dropped.

use crate::common::{Res, free_port, io_err, mib};
use crate::generate::{GROUPS, History, points_of, rfc3339, tick_secs};
use crate::harness::{kill_group, replay};
use crate::stopped;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const VM_BIN: &str = "/usr/bin/victoria-metrics";
/// Rows of one VictoriaMetrics window: 20,000 ticks of 10 groups.
pub const VM_TICKS: u64 = 20_000;
pub const VM_WINDOWS: u64 = 3;
const VM_FIRST_TICK: u64 = 10_000;

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

pub struct VmResult {
    /// Points per second of each window.
    pub pps: Vec<f64>,
    pub points_per_window: u64,
    pub rows_per_window: u64,
    pub batches: u64,
    pub retries: u64,
    pub counted: u64,
    pub expected: u64,
}

pub fn bench_vm(work: &Path, h: &History) -> Res<VmResult> {
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
