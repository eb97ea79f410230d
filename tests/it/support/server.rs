//! Sensors for the tests: an instrumented HTTP server that serves scripted
//! answers (status, headers, delay, a body sent whole, dripped, stalled or
//! endless) on several loopback addresses and records how many requests were
//! in flight, per host and in total; and a bare status server for replay's
//! HTTP targets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub delay: Duration,
}

/// How the body of a scripted answer is sent.
#[derive(Clone, Debug)]
pub enum Body {
    /// All at once.
    Full(Vec<u8>),
    /// Never: the headers go out, then nothing more.
    Stall,
    /// One byte every `every`, with the full length declared up front.
    Drip { bytes: Vec<u8>, every: Duration },
    /// `len` spaces, made lazily chunk by chunk as the client reads them
    /// (so a 1 GiB body costs the server nothing); chunked encoding unless
    /// `declared`, then with `Content-Length`. Bytes handed to the
    /// connection are counted in [`Counters::streamed`].
    Huge { len: u64, declared: bool },
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::with_body(Body::Full(body.into()))
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok("error\n")
        }
    }
    pub fn with_body(body: Body) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Concurrency seen by the server.
#[derive(Default)]
pub struct Counters {
    pub total: AtomicUsize,
    pub max_total: AtomicUsize,
    pub requests: AtomicUsize,
    /// Bytes of [`Body::Huge`] bodies handed to connections, per request
    /// path: how much of them clients actually read (plus socket buffers).
    pub streamed: Mutex<HashMap<String, u64>>,
    /// Per listening address: (in flight, max in flight).
    pub per_host: Mutex<HashMap<SocketAddr, (usize, usize)>>,
    /// Each request's path with query and its Authorization header.
    pub seen: Mutex<Vec<(String, Option<String>)>>,
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

type Routes = Arc<Mutex<HashMap<String, Reply>>>;

/// An HTTP server on one or more loopback addresses; paths not scripted get 404.
pub struct TestServer {
    pub addrs: Vec<SocketAddr>,
    pub counters: Arc<Counters>,
    routes: Routes,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Listen on port 0 of each of `ips` (e.g. "127.0.0.2").
    pub async fn start(ips: &[&str]) -> TestServer {
        TestServer::start_with(ips, None).await
    }

    /// The same, speaking HTTPS with `tls` (its certificate and key).
    pub async fn start_tls(ips: &[&str], tls: Arc<rustls::ServerConfig>) -> TestServer {
        TestServer::start_with(ips, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(ips: &[&str], tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let counters = Arc::new(Counters::default());
        let routes: Routes = Arc::default();
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for ip in ips {
            let listener = TcpListener::bind(format!("{ip}:0"))
                .await
                .expect("bind loopback");
            let addr = listener.local_addr().unwrap();
            addrs.push(addr);
            let (counters, routes, tls) = (counters.clone(), routes.clone(), tls.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (counters, routes) = (counters.clone(), routes.clone());
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve(stream, addr, counters, routes).await,
                            // A client that refuses the certificate ends the
                            // handshake; nothing to serve then.
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(stream).await {
                                    serve(stream, addr, counters, routes).await;
                                }
                            }
                        }
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

    /// `http://ADDR{path}` on address number `host` (`https://` when
    /// started with TLS: use [`TestServer::https_url`]).
    pub fn url(&self, host: usize, path: &str) -> String {
        format!("http://{}{}", self.addrs[host], path)
    }

    pub fn https_url(&self, host: usize, path: &str) -> String {
        format!("https://{}{}", self.addrs[host], path)
    }

    /// Bytes of the [`Body::Huge`] body at `path` handed out so far.
    pub fn streamed(&self, path: &str) -> u64 {
        let streamed = self.counters.streamed.lock().unwrap();
        streamed.get(path).copied().unwrap_or(0)
    }
}

async fn serve<IO>(io: IO, addr: SocketAddr, counters: Arc<Counters>, routes: Routes)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (counters, routes) = (counters.clone(), routes.clone());
        async move { Ok::<_, Infallible>(handle(req, addr, counters, routes).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
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
    routes: Routes,
) -> Response<ScriptedBody> {
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
    counters.seen.lock().unwrap().push((
        req.uri().to_string(),
        req.headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    ));
    let reply = routes.lock().unwrap().get(&path).cloned();
    let reply = reply.unwrap_or(Reply {
        status: 404,
        ..Reply::ok("not found\n")
    });
    if !reply.delay.is_zero() {
        // The scripted slowness: what the test asked this sensor to do.
        tokio::time::sleep(reply.delay).await;
    }
    let body = ScriptedBody {
        body: reply.body,
        sent: 0,
        wait: None,
        path,
        counters: counters.clone(),
    };
    let mut r = Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in &reply.headers {
        r.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            hyper::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    r
}

/// Chunk size of [`Body::Huge`].
const HUGE_CHUNK: usize = 64 * 1024;

/// A response body played from a [`Body`] script.
pub struct ScriptedBody {
    body: Body,
    /// Bytes sent so far.
    sent: u64,
    /// The pause before the next dripped byte.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    path: String,
    counters: Arc<Counters>,
}

impl hyper::body::Body for ScriptedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = match &mut this.body {
            Body::Full(bytes) if bytes.is_empty() => None,
            Body::Full(bytes) => Some(Bytes::from(std::mem::take(bytes))),
            // Dropped with the connection when the client gives up.
            Body::Stall => return Poll::Pending,
            Body::Drip { bytes, every } => {
                if this.sent >= bytes.len() as u64 {
                    None
                } else {
                    let every = *every;
                    let wait = this
                        .wait
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                    if wait.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.wait = None;
                    let i = this.sent as usize;
                    Some(Bytes::copy_from_slice(&bytes[i..i + 1]))
                }
            }
            Body::Huge { len, .. } => {
                let n = (*len - this.sent).min(HUGE_CHUNK as u64);
                if n == 0 {
                    None
                } else {
                    static SPACES: [u8; HUGE_CHUNK] = [b' '; HUGE_CHUNK];
                    let mut streamed = this.counters.streamed.lock().unwrap();
                    *streamed.entry(this.path.clone()).or_default() += n;
                    Some(Bytes::from_static(&SPACES[..n as usize]))
                }
            }
        };
        Poll::Ready(frame.map(|data| {
            this.sent += data.len() as u64;
            Ok(Frame::data(data))
        }))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.body {
            Body::Full(bytes) => hyper::body::SizeHint::with_exact(bytes.len() as u64),
            Body::Drip { bytes, .. } => hyper::body::SizeHint::with_exact(bytes.len() as u64),
            Body::Huge {
                len,
                declared: true,
            } => hyper::body::SizeHint::with_exact(*len),
            Body::Stall | Body::Huge { .. } => hyper::body::SizeHint::default(),
        }
    }
}

/// An HTTP/1 server on 127.0.0.1 (port 0: the system picks) that answers every request
/// with the status `handle` returns and an empty body; for sinks that only
/// need a yes or no (replay's HTTP targets).
pub async fn serve_status<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = handle(req);
                    async move {
                        let mut r = Response::new(http_body_util::Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::from_u16(answer.await).unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
