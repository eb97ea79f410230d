//! Shared pieces of the integration tests: an instrumented HTTP server that
//! serves scripted sensor answers on several loopback addresses and records
//! how many requests were in flight, and helpers to run the real binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: b"error\n".to_vec(),
            delay: Duration::ZERO,
        }
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Concurrency seen by the server.
#[derive(Default)]
pub struct Counters {
    pub total: AtomicUsize,
    pub max_total: AtomicUsize,
    pub requests: AtomicUsize,
    /// Per listening address: (in flight, max in flight).
    pub per_host: Mutex<HashMap<SocketAddr, (usize, usize)>>,
}

impl Counters {
    pub fn max_total(&self) -> usize {
        self.max_total.load(Ordering::SeqCst)
    }
    pub fn max_for(&self, host: SocketAddr) -> usize {
        self.per_host.lock().unwrap().get(&host).map_or(0, |c| c.1)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An HTTP server on one or more loopback addresses; paths not scripted get 404.
pub struct TestServer {
    pub addrs: Vec<SocketAddr>,
    pub counters: Arc<Counters>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Listen on port 0 of each of `ips` (e.g. "127.0.0.2").
    pub async fn start(ips: &[&str]) -> TestServer {
        let counters = Arc::new(Counters::default());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for ip in ips {
            let listener = TcpListener::bind(format!("{ip}:0"))
                .await
                .expect("bind loopback");
            let addr = listener.local_addr().unwrap();
            addrs.push(addr);
            let (counters, routes) = (counters.clone(), routes.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (counters, routes) = (counters.clone(), routes.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: Request<hyper::body::Incoming>| {
                                let (counters, routes) = (counters.clone(), routes.clone());
                                async move {
                                    Ok::<_, Infallible>(handle(req, addr, counters, routes).await)
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }));
        }
        TestServer {
            addrs,
            counters,
            routes,
            tasks,
        }
    }

    /// Script the answer for `path` (same on every address).
    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// `http://ADDR{path}` on address number `host`.
    pub fn url(&self, host: usize, path: &str) -> String {
        format!("http://{}{}", self.addrs[host], path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct InFlight<'a> {
    counters: &'a Counters,
    addr: SocketAddr,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.total.fetch_sub(1, Ordering::SeqCst);
        self.counters
            .per_host
            .lock()
            .unwrap()
            .entry(self.addr)
            .or_default()
            .0 -= 1;
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    addr: SocketAddr,
    counters: Arc<Counters>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
) -> Response<Full<Bytes>> {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let now = counters.total.fetch_add(1, Ordering::SeqCst) + 1;
    counters.max_total.fetch_max(now, Ordering::SeqCst);
    {
        let mut hosts = counters.per_host.lock().unwrap();
        let entry = hosts.entry(addr).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
    }
    let _guard = InFlight {
        counters: &counters,
        addr,
    };
    let path = req.uri().path().to_string();
    let reply = routes.lock().unwrap().get(&path).cloned();
    let reply = reply.unwrap_or(Reply {
        status: 404,
        body: b"not found\n".to_vec(),
        delay: Duration::ZERO,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    r
}

/// The built `edge-agent` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edge-agent")
}

/// A running `edge-agent` with its stderr going to a file.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(args: &[&str], dir: &Path) -> Agent {
        let log = dir.join(format!("agent-{}.log", std::process::id()));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start edge-agent");
        Agent { child, log }
    }

    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait up to `limit` for the process to exit; panics if it does not.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "edge-agent did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `cond` on the log until it holds, up to `limit`.
    pub async fn wait_log(&self, limit: Duration, cond: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !cond(&self.log_text()) {
            assert!(
                start.elapsed() < limit,
                "log condition not met in {limit:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Data lines (not the header) of a CSV file, or none if it does not exist.
pub fn rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().skip(1).map(str::to_string).collect()
}

/// Wait until `path` holds at least `n` rows matching `filter`.
pub async fn wait_rows(
    path: &Path,
    n: usize,
    limit: Duration,
    filter: impl Fn(&str) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    loop {
        let found: Vec<String> = rows(path).into_iter().filter(|r| filter(r)).collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            start.elapsed() < limit,
            "only {} of {n} rows in {} after {limit:?}",
            found.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One CSV row split into its fields.
pub fn fields(row: &str) -> Vec<String> {
    row.split(',').map(str::to_string).collect()
}

/// The text of a data file, decompressing `.gz`.
pub fn read_text(path: &Path) -> String {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client for tests. reqwest is built without a default crypto
/// provider: install ring first.
pub fn client() -> reqwest::Client {
    edge_agent::poll::install_crypto_provider();
    reqwest::Client::new()
}

/// Store settings for tests: `readings` files in `dir`, no rotation, no
/// compression, fsync on rotation.
pub fn output(dir: &Path) -> edge_agent::config::Output {
    use edge_agent::config::{Compress, Fsync, Output};
    Output {
        dir: dir.to_path_buf(),
        prefix: "readings".into(),
        max_size: None,
        every: None,
        keep: 100,
        compress: Compress::None,
        fsync: Fsync::Rotate,
        decimals: 3,
        queue: 1024,
    }
}
