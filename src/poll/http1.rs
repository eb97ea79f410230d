//! A small HTTP/1.1 client for `http://` sensors, with a per-host pool of
//! idle connections kept across cycles.
//!
//! Why not reqwest, which the agent keeps for https sensors and replay's
//! endpoint: at 10,000 sensors on 10 hosts with `limit: 200` (the `cycle`
//! bench), reqwest and hyper keep about 33 KiB per connection (an 8 KiB read
//! buffer, an 8 KiB write buffer, two blocks of hyper's dispatch channel),
//! 6.5 MiB for 200 connections, none of it settable through reqwest; and its
//! per-request layers made 1.28 million allocations in a profiled run, with
//! malloc/free about 15% of the agent's CPU (BENCHMARKS.md, "Issue 16:
//! footprint"). A sensor poll is the simplest of exchanges, a GET and a
//! small answer, so this client does exactly that and no more: one read
//! buffer per connection that starts at 1 KiB and grows only for a larger
//! head, the request written from a buffer the connection keeps, and one
//! allocation per answer, for its body.
//!
//! What it keeps from the reqwest path, so a sensor behaves the same over
//! either: the user agent, `Host`, the sensor's headers and basic auth (or
//! the URL's user and password), no proxy, `TCP_NODELAY`; keep-alive, with
//! at most `limit_per_host` idle connections per host, dropped after the
//! idle timeout; `Connection: close` and HTTP/1.0 answers; bodies by
//! `Content-Length`, chunked (extensions and trailers skipped) or read to
//! the close; 1xx answers skipped; the body cap checked against the declared
//! length first and then while reading; up to [`MAX_REDIRECTS`] redirects,
//! a redirect to https refused in words; the same [`Failure`]s with the same
//! texts. A connection goes back to the pool only after a complete answer
//! with nothing left over: one broken, half-read or timed out is closed. A
//! pooled connection the server closed while it sat idle is retried once
//! on a new connection, and only when nothing of the answer was read.
//!
//! Heads are parsed by `httparse`, the parser hyper uses.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Position, Url};

use super::fetch::Failure;
use crate::config::{Config, Sensor};
use crate::sync::lock;

/// Redirects followed per request at most.
pub const MAX_REDIRECTS: usize = 5;

/// Why a redirect to https is refused for a sensor whose URL is http.
pub const TO_HTTPS: &str = "redirected to an https URL, but TLS is set up only for sensors \
                            whose URL in the config is https: write that URL in the config";

/// A connection's read buffer at first; it grows only for a larger head.
const START_BUF: usize = 1024;
/// A buffer grown past this is not kept with an idle connection.
const KEEP_BUF: usize = 8 * 1024;
/// A response head (or a chunk line, or trailers) larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Header lines in one response head at most (hyper's default).
const MAX_HEADERS: usize = 100;
/// What one read asks for at most when reading a body straight into it.
const READ_CHUNK: usize = 16 * 1024;

const USER_AGENT: &str = concat!("edge-agent/", env!("CARGO_PKG_VERSION"));

/// The client: settings and the idle connections, per `host:port`.
pub struct Http1 {
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

struct Idle {
    conn: Conn<TcpStream>,
    since: Instant,
}

impl Http1 {
    /// The settings reqwest's client had for the same config.
    pub fn new(config: &Config) -> Http1 {
        Http1::with(
            config.limit_per_host,
            config.interval.max(Duration::from_secs(30)) * 2,
            config.timeout,
        )
    }

    fn with(max_idle_per_host: usize, idle_timeout: Duration, connect_timeout: Duration) -> Http1 {
        Http1 {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_host,
            idle_timeout,
            connect_timeout,
        }
    }

    /// GET the sensor's URL: the body of a success answer, at most
    /// `max_body` bytes. The sensor's `timeout` bounds the whole exchange:
    /// no answer by then is [`Failure::Timeout`], a body not complete by
    /// then [`Failure::BodyTimeout`].
    pub async fn get(&self, sensor: &Sensor, max_body: u64) -> Result<Vec<u8>, Failure> {
        let timeout = sensor.timeout;
        let deadline = Instant::now() + timeout;
        let mut url: Option<Url> = None;
        let mut redirects = 0;
        loop {
            let at = match &url {
                None => At::Sensor(sensor),
                Some(url) => At::Redirect(url),
            };
            let same_origin = at.same_origin(sensor);
            let (mut conn, head) =
                tokio::time::timeout_at(deadline, self.exchange(at, sensor, same_origin))
                    .await
                    .map_err(|_| Failure::Timeout(timeout))??;
            if (200..300).contains(&head.status) {
                let body = tokio::time::timeout_at(deadline, conn.read_body(head.body, max_body))
                    .await
                    .map_err(|_| Failure::BodyTimeout(timeout))??;
                if head.keep_alive && head.body != BodyKind::ToClose {
                    self.put_back(at, conn);
                }
                return Ok(body);
            }
            let next = match (is_redirect(head.status), &head.location) {
                (true, Some(location)) => at.url().join(location).ok(),
                _ => None,
            };
            // The body of an answer not used: the connection is kept only
            // when all of it is here already.
            if head.keep_alive && conn.skip_buffered_body(head.body) {
                self.put_back(at, conn);
            }
            let Some(next) = next else {
                return Err(Failure::Status(head.status));
            };
            if next.scheme() == "https" {
                return Err(Failure::Request(TO_HTTPS.to_string()));
            }
            if next.scheme() != "http" {
                return Err(Failure::Request("URL scheme is not allowed".to_string()));
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(Failure::Request("too many redirects".to_string()));
            }
            url = Some(next);
        }
    }

    /// Send the request on a pooled connection, or a new one if there is
    /// none or the pooled one turns out closed; the connection and the head
    /// of the answer.
    async fn exchange(
        &self,
        url: At<'_>,
        sensor: &Sensor,
        same_origin: bool,
    ) -> Result<(Conn<TcpStream>, Head), Failure> {
        if let Some(mut conn) = self.take(url.authority()) {
            match conn.request(url, sensor, same_origin).await {
                Ok(head) => return Ok((conn, head)),
                Err(Exchange::Stale(_)) => {}
                Err(Exchange::Failed(f)) => return Err(f),
            }
        }
        let mut conn = self.connect(&url.url()).await?;
        match conn.request(url, sensor, same_origin).await {
            Ok(head) => Ok((conn, head)),
            Err(Exchange::Stale(f) | Exchange::Failed(f)) => Err(f),
        }
    }

    /// An idle connection to `authority` that is still open, if any.
    fn take(&self, authority: &str) -> Option<Conn<TcpStream>> {
        let mut idle = lock(&self.idle);
        let conns = idle.get_mut(authority)?;
        let now = Instant::now();
        while let Some(Idle { conn, since }) = conns.pop() {
            if now.duration_since(since) < self.idle_timeout && conn.looks_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Keep `conn` for the next request to `url`'s host, if there is room.
    fn put_back(&self, url: At<'_>, mut conn: Conn<TcpStream>) {
        if !conn.reset_for_reuse() || self.max_idle_per_host == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let key = url.authority();
        let conns = match idle.get_mut(key) {
            Some(conns) => conns,
            None => idle.entry(key.into()).or_default(),
        };
        conns.retain(|c| now.duration_since(c.since) < self.idle_timeout);
        if conns.len() >= self.max_idle_per_host {
            conns.remove(0);
        }
        conns.push(Idle { conn, since: now });
    }

    async fn connect(&self, url: &Url) -> Result<Conn<TcpStream>, Failure> {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    let detail = text.strip_prefix("failed to lookup address information: ");
                    Failure::Resolve(detail.unwrap_or(&text).to_string())
                })?
                .collect(),
            None => return Err(Failure::Request("the URL has no host".to_string())),
        };
        let attempt = async {
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(
                || "the host name resolved to no address".to_string(),
                |e| e.to_string(),
            ))
        };
        let stream = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| {
                Failure::Connect(format!(
                    "timed out after {}",
                    humantime::format_duration(self.connect_timeout)
                ))
            })?
            .map_err(Failure::Connect)?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::Connect(e.to_string()))?;
        Ok(Conn::new(stream))
    }
}

/// Where a request goes: the sensor's own URL, read from its text without
/// parsing it again, or where a redirect led.
#[derive(Clone, Copy)]
enum At<'a> {
    Sensor(&'a Sensor),
    Redirect(&'a Url),
}

impl At<'_> {
    /// `host:port` as written (no port when it is the default): the pool's
    /// key and the `Host` header.
    fn authority(&self) -> &str {
        match self {
            At::Sensor(s) => s.url.authority(),
            At::Redirect(url) => &url[Position::BeforeHost..Position::AfterPort],
        }
    }

    /// Path and query: what the request line asks for.
    fn path_and_query(&self) -> &str {
        match self {
            At::Sensor(s) => s.url.path_and_query(),
            At::Redirect(url) => &url[Position::BeforePath..Position::AfterQuery],
        }
    }

    /// The URL, parsed: for a new connection or a redirect, not per request.
    fn url(&self) -> Url {
        match self {
            At::Sensor(s) => s.url.parse(),
            At::Redirect(url) => (*url).clone(),
        }
    }

    /// User and password in the URL, percent-decoded, if it has a user or
    /// a password.
    fn userinfo(&self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let decode = |url: &Url| {
            (!url.username().is_empty() || url.password().is_some()).then(|| {
                let user = percent_encoding::percent_decode_str(url.username()).collect();
                let password = url
                    .password()
                    .map(|p| percent_encoding::percent_decode_str(p).collect());
                (user, password)
            })
        };
        match self {
            At::Sensor(s) if !s.url.has_userinfo() => None,
            At::Sensor(s) => decode(&s.url.parse()),
            At::Redirect(url) => decode(url),
        }
    }

    /// Same host and port as `sensor`'s URL: where its credentials may go.
    fn same_origin(&self, sensor: &Sensor) -> bool {
        match self {
            At::Sensor(_) => true,
            At::Redirect(url) => {
                url.host_str() == Some(sensor.url.host_str())
                    && url.port_or_known_default() == Some(sensor.url.port())
            }
        }
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    ToClose,
}

/// What the client needs of a response head.
#[derive(Debug)]
struct Head {
    status: u16,
    body: BodyKind,
    /// The connection may carry another request after this answer.
    keep_alive: bool,
    /// `Location`, for a redirect.
    location: Option<String>,
}

/// A request that failed; `Stale` when it may be retried on a new
/// connection: the connection was found closed before any of the answer.
enum Exchange {
    Stale(Failure),
    Failed(Failure),
}

/// The head in `bytes`, and its length, or `None` if incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, Head)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let n = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid HTTP response: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut location = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            for part in header.value.split(|b| *b == b',') {
                let n = std::str::from_utf8(part.trim_ascii())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("invalid content-length parsed")?;
                if length.is_some_and(|l| l != n) {
                    return Err("invalid content-length parsed".to_string());
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked when it is the last coding named.
            for coding in header.value.split(|b| *b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    chunked = Some(coding.eq_ignore_ascii_case(b"chunked"));
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("location") {
            location = std::str::from_utf8(header.value).ok().map(str::to_string);
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::Empty
    } else if let Some(chunked) = chunked {
        if chunked {
            BodyKind::Chunked
        } else {
            BodyKind::ToClose
        }
    } else {
        match length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::ToClose,
        }
    };
    let keep_alive = !close && (!http10 || keep_alive);
    Ok(Some((
        n,
        Head {
            status,
            body,
            keep_alive,
            location,
        },
    )))
}

/// One connection: the stream, what was read and not yet used, and the
/// buffer requests are written from.
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
    /// `buf[pos..]` is read and not yet used.
    pos: usize,
    out: Vec<u8>,
    /// This connection carried an answer before.
    reused: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S) -> Conn<S> {
        Conn {
            io,
            buf: Vec::with_capacity(START_BUF),
            pos: 0,
            out: Vec::new(),
            reused: false,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read more into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.capacity().max(START_BUF));
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Write the GET for `url` and read the head of the answer, skipping
    /// 1xx answers.
    async fn request(
        &mut self,
        url: At<'_>,
        sensor: &Sensor,
        same_origin: bool,
    ) -> Result<Head, Exchange> {
        self.write_request(url, sensor, same_origin);
        let reused = self.reused;
        if let Err(e) = self.io.write_all(&self.out).await {
            let f = Failure::Request(e.to_string());
            return Err(if reused {
                Exchange::Stale(f)
            } else {
                Exchange::Failed(f)
            });
        }
        let mut any = false;
        loop {
            if self.pos < self.buf.len() {
                let parsed = parse_head(self.buffered())
                    .map_err(|e| Exchange::Failed(Failure::Request(e)))?;
                match parsed {
                    Some((n, head)) => {
                        self.pos += n;
                        if head.status == 101 {
                            return Err(Exchange::Failed(Failure::Request(
                                "unexpected 101 Switching Protocols".to_string(),
                            )));
                        }
                        if (100..200).contains(&head.status) {
                            continue;
                        }
                        return Ok(head);
                    }
                    None if self.buffered().len() >= MAX_HEAD => {
                        return Err(Exchange::Failed(Failure::Request(
                            "message head is too large".to_string(),
                        )));
                    }
                    None => {}
                }
            }
            let retry = reused && !any;
            match self.fill().await {
                Ok(0) => {
                    let f =
                        Failure::Request("connection closed before message completed".to_string());
                    return Err(if retry {
                        Exchange::Stale(f)
                    } else {
                        Exchange::Failed(f)
                    });
                }
                Ok(_) => any = true,
                Err(e) => {
                    let closed = matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    );
                    let f = Failure::Request(e.to_string());
                    return Err(if retry && closed {
                        Exchange::Stale(f)
                    } else {
                        Exchange::Failed(f)
                    });
                }
            }
        }
    }

    /// The request into `out`: reqwest's default headers unless the sensor
    /// sets them, then the sensor's, then basic auth; credentials only to
    /// the sensor's own host and port (as reqwest drops them on a redirect
    /// elsewhere).
    fn write_request(&mut self, url: At<'_>, sensor: &Sensor, same_origin: bool) {
        let out = &mut self.out;
        out.clear();
        let has = |name: &str| {
            sensor
                .headers()
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(url.path_and_query().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !has("host") {
            header(out, "host", url.authority());
        }
        if !has("user-agent") {
            header(out, "user-agent", USER_AGENT);
        }
        if !has("accept") {
            header(out, "accept", "*/*");
        }
        for (name, value) in sensor.headers() {
            if !same_origin && is_sensitive(name) {
                continue;
            }
            header(out, name, value.expose());
        }
        if same_origin {
            if let Some(auth) = sensor.basic_auth() {
                let password = auth.password.as_ref().map(|p| p.expose());
                basic_auth(out, auth.username.as_bytes(), password.map(str::as_bytes));
            } else if !has("authorization") {
                if let Some((user, password)) = url.userinfo() {
                    basic_auth(out, &user, password.as_deref());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The body, at most `max_body` bytes.
    async fn read_body(&mut self, kind: BodyKind, max_body: u64) -> Result<Vec<u8>, Failure> {
        match kind {
            BodyKind::Empty => Ok(Vec::new()),
            BodyKind::Length(n) => self.read_length(n, max_body).await,
            BodyKind::Chunked => self.read_chunked(max_body).await,
            BodyKind::ToClose => self.read_to_close(max_body).await,
        }
    }

    async fn read_length(&mut self, n: u64, max_body: u64) -> Result<Vec<u8>, Failure> {
        if n > max_body {
            return Err(Failure::TooLarge(max_body));
        }
        let n = n as usize;
        let mut body = vec![0u8; n];
        let have = self.buffered().len().min(n);
        body[..have].copy_from_slice(&self.buf[self.pos..self.pos + have]);
        self.pos += have;
        let mut filled = have;
        while filled < n {
            match self.io.read(&mut body[filled..]).await {
                Ok(0) => return Err(cut_eof()),
                Ok(k) => filled += k,
                Err(e) => return Err(Failure::BodyCut(e.to_string())),
            }
        }
        Ok(body)
    }

    async fn read_chunked(&mut self, max_body: u64) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let size = loop {
                match httparse::parse_chunk_size(self.buffered()) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        self.pos += n;
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buffered().len() >= MAX_HEAD => {
                        return Err(Failure::BodyCut("invalid chunk size line".to_string()));
                    }
                    Ok(httparse::Status::Partial) => self.fill_body().await?,
                    Err(_) => return Err(Failure::BodyCut("invalid chunk size line".to_string())),
                }
            };
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(body);
            }
            if body.len() as u64 + size > max_body {
                return Err(Failure::TooLarge(max_body));
            }
            let mut left = size as usize;
            while left > 0 {
                if self.pos == self.buf.len() {
                    // Nothing buffered: read straight into the body.
                    let start = body.len();
                    body.resize(start + left.min(READ_CHUNK), 0);
                    let k = match self.io.read(&mut body[start..]).await {
                        Ok(0) => return Err(cut_eof()),
                        Ok(k) => k,
                        Err(e) => return Err(Failure::BodyCut(e.to_string())),
                    };
                    body.truncate(start + k);
                    left -= k;
                } else {
                    let k = self.buffered().len().min(left);
                    body.extend_from_slice(&self.buf[self.pos..self.pos + k]);
                    self.pos += k;
                    left -= k;
                }
            }
            while self.buffered().len() < 2 {
                self.fill_body().await?;
            }
            if &self.buffered()[..2] != b"\r\n" {
                return Err(Failure::BodyCut(
                    "invalid chunk: no CRLF after its data".to_string(),
                ));
            }
            self.pos += 2;
        }
    }

    /// The trailer lines after the last chunk, up to the empty line.
    async fn skip_trailers(&mut self) -> Result<(), Failure> {
        let mut seen = 0;
        loop {
            match memchr::memmem::find(self.buffered(), b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(end) => {
                    self.pos += end + 2;
                    seen += end + 2;
                }
                None => self.fill_body().await?,
            }
            if seen + self.buffered().len() > MAX_HEAD {
                return Err(Failure::BodyCut("trailers too large".to_string()));
            }
        }
    }

    async fn read_to_close(&mut self, max_body: u64) -> Result<Vec<u8>, Failure> {
        if self.buffered().len() as u64 > max_body {
            return Err(Failure::TooLarge(max_body));
        }
        let mut body = self.buffered().to_vec();
        self.pos = self.buf.len();
        loop {
            let start = body.len();
            let room = (max_body - start as u64).min(READ_CHUNK as u64) as usize;
            // One byte past the cap tells a body of exactly `max_body` from
            // a longer one.
            body.resize(start + room + 1, 0);
            let k = match self.io.read(&mut body[start..]).await {
                Ok(k) => k,
                Err(e) => return Err(Failure::BodyCut(e.to_string())),
            };
            body.truncate(start + k);
            if k == 0 {
                return Ok(body);
            }
            if body.len() as u64 > max_body {
                return Err(Failure::TooLarge(max_body));
            }
        }
    }

    /// Read more of a body; the end of the stream cuts it.
    async fn fill_body(&mut self) -> Result<(), Failure> {
        match self.fill().await {
            Ok(0) => Err(cut_eof()),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::BodyCut(e.to_string())),
        }
    }

    /// Skip the body of an answer not used if all of it is buffered
    /// already; false if it is not (the connection cannot be reused).
    fn skip_buffered_body(&mut self, kind: BodyKind) -> bool {
        match kind {
            BodyKind::Empty => true,
            BodyKind::Length(n) if self.buffered().len() as u64 >= n => {
                self.pos += n as usize;
                true
            }
            _ => false,
        }
    }

    /// Ready for the next request: false if anything is left unread (a
    /// server that sent more than its answer).
    fn reset_for_reuse(&mut self) -> bool {
        if self.pos != self.buf.len() {
            return false;
        }
        self.buf.clear();
        self.pos = 0;
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::with_capacity(START_BUF);
        }
        self.reused = true;
        true
    }
}

impl Conn<TcpStream> {
    /// Whether an idle connection may still be open: not closed by the
    /// server, and nothing unasked-for sent on it.
    fn looks_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

fn cut_eof() -> Failure {
    Failure::BodyCut("end of file before message length reached".to_string())
}

fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `authorization: Basic base64(user:password)`, encoded straight into `out`.
fn basic_auth(out: &mut Vec<u8>, user: &[u8], password: Option<&[u8]>) {
    use std::io::Write;
    out.extend_from_slice(b"authorization: Basic ");
    {
        let mut encoder = base64::write::EncoderWriter::new(
            &mut *out,
            &base64::engine::general_purpose::STANDARD,
        );
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(user);
        let _ = encoder.write_all(b":");
        if let Some(password) = password {
            let _ = encoder.write_all(password);
        }
        let _ = encoder.finish();
    }
    out.extend_from_slice(b"\r\n");
}

/// Headers reqwest drops on a redirect to another host or port.
fn is_sensitive(name: &str) -> bool {
    [
        "authorization",
        "cookie",
        "proxy-authorization",
        "www-authenticate",
    ]
    .iter()
    .any(|s| name.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;
    use tokio::net::TcpListener;

    /// A stream that answers `bytes`, at most `step` bytes per read, then
    /// ends; what is written to it is dropped.
    struct Canned {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Canned {
        fn new(bytes: &[u8], step: usize) -> Canned {
            Canned {
                bytes: bytes.to_vec(),
                at: 0,
                step: step.max(1),
            }
        }
    }

    impl AsyncRead for Canned {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = (self.bytes.len() - self.at)
                .min(self.step)
                .min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Canned {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn config(url: &str, extra: &str) -> Config {
        let yaml = format!(
            "interval: 10s\ntimeout: 2s\nlimit: 4\nlimit_per_host: 2\noutput:\n  dir: /nonexistent\n\
             groups:\n  - name: g\n    unit: celsius\n    sensors:\n      - {{ id: s, url: '{url}', format: text{extra} }}\n"
        );
        Config::parse(&yaml, Path::new("agent.yaml")).unwrap()
    }

    fn sensor(config: &Config) -> &Sensor {
        &config.groups[0].sensors[0]
    }

    /// Head and body of `answer`, read in pieces of `step` bytes, with
    /// whether the connection could carry another request.
    async fn answer(
        answer: &[u8],
        step: usize,
        max_body: u64,
    ) -> Result<(u16, Vec<u8>, bool), Failure> {
        let config = config("http://127.0.0.1:1/t", "");
        let mut conn = Conn::new(Canned::new(answer, step));
        let head = match conn
            .request(At::Sensor(sensor(&config)), sensor(&config), true)
            .await
        {
            Ok(head) => head,
            Err(Exchange::Stale(f) | Exchange::Failed(f)) => return Err(f),
        };
        let body = conn.read_body(head.body, max_body).await?;
        let reusable = head.keep_alive && head.body != BodyKind::ToClose && conn.reset_for_reuse();
        Ok((head.status, body, reusable))
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                      2;name=value\r\n21\r\n3 ; x=\"y\"\r\n.50\r\n0\r\nx-check: 1\r\nx-more: 2\r\n\r\n";
        for step in [1, 2, 7, 1000] {
            let got = answer(bytes, step, 64).await.unwrap();
            assert_eq!(
                got,
                (200, b"21.50".to_vec(), true),
                "read {step} bytes at a time"
            );
        }
    }

    #[tokio::test]
    async fn transfer_encoding_wins_over_content_length_and_needs_chunked_last() {
        let chunked = b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\n7\r\n0\r\n\r\n";
        assert_eq!(
            answer(chunked, 5, 64).await.unwrap(),
            (200, b"7".to_vec(), true)
        );
        let to_close =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\n1\r\n7\r\n0\r\n\r\n";
        let (_, body, reusable) = answer(to_close, 5, 64).await.unwrap();
        assert_eq!(body, b"1\r\n7\r\n0\r\n\r\n");
        assert!(!reusable, "a body read to the close ends the connection");
    }

    #[tokio::test]
    async fn the_cap_is_checked_against_content_length_before_reading() {
        // Only the head is there: the declared length alone refuses it.
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 65\r\n\r\n";
        assert_eq!(answer(bytes, 100, 64).await, Err(Failure::TooLarge(64)));
        let exact = [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n"[..],
            &[b'1'; 64],
        ]
        .concat();
        assert_eq!(answer(&exact, 100, 64).await.unwrap().1.len(), 64);
    }

    #[tokio::test]
    async fn the_cap_is_checked_while_reading_chunked_and_to_close_bodies() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n20\r\n";
        assert_eq!(answer(chunked, 100, 31).await, Err(Failure::TooLarge(31)));
        let mut to_close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        to_close.extend_from_slice(&[b'1'; 32]);
        assert_eq!(answer(&to_close, 3, 31).await, Err(Failure::TooLarge(31)));
        assert_eq!(answer(&to_close, 3, 32).await.unwrap().1.len(), 32);
    }

    #[tokio::test]
    async fn connection_close_and_http10_answers_are_not_reused() {
        let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n5";
        assert!(!answer(close, 100, 64).await.unwrap().2);
        let old = b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n5";
        assert!(!answer(old, 100, 64).await.unwrap().2);
        let old_kept = b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n5";
        assert!(answer(old_kept, 100, 64).await.unwrap().2);
        // More than the answer: the connection is out of step, not reused.
        let extra = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n5HTTP/1.1";
        assert!(!answer(extra, 100, 64).await.unwrap().2);
    }

    #[tokio::test]
    async fn informational_answers_are_skipped() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                      HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n42";
        assert_eq!(
            answer(bytes, 4, 64).await.unwrap(),
            (200, b"42".to_vec(), true)
        );
    }

    #[tokio::test]
    async fn cut_and_malformed_answers_fail_in_words() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345";
        assert_eq!(
            answer(cut, 100, 64).await,
            Err(Failure::BodyCut(
                "end of file before message length reached".into()
            ))
        );
        let bad_chunk = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(
            answer(bad_chunk, 100, 64).await,
            Err(Failure::BodyCut("invalid chunk size line".into()))
        );
        let lengths = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n12";
        assert_eq!(
            answer(lengths, 100, 64).await,
            Err(Failure::Request("invalid content-length parsed".into()))
        );
        assert_eq!(
            answer(b"", 100, 64).await,
            Err(Failure::Request(
                "connection closed before message completed".into()
            ))
        );
        assert!(matches!(
            answer(b"SSH-2.0-OpenSSH\r\n\r\n", 100, 64).await,
            Err(Failure::Request(m)) if m.starts_with("invalid HTTP response")
        ));
    }

    #[tokio::test]
    async fn a_reused_connection_closed_before_any_answer_is_stale() {
        let config = config("http://127.0.0.1:1/t", "");
        let mut conn = Conn::new(Canned::new(b"", 1));
        conn.reused = true;
        let got = conn
            .request(At::Sensor(sensor(&config)), sensor(&config), true)
            .await;
        assert!(matches!(got, Err(Exchange::Stale(_))));
        // Part of an answer came: not stale, it fails.
        let mut conn = Conn::new(Canned::new(b"HTTP/1.1 2", 1));
        conn.reused = true;
        let got = conn
            .request(At::Sensor(sensor(&config)), sensor(&config), true)
            .await;
        assert!(matches!(got, Err(Exchange::Failed(_))));
    }

    #[test]
    fn the_request_carries_the_defaults_the_headers_and_basic_auth() {
        let config = config(
            "http://[::1]:8080/v?q=1",
            ", headers: { X-Key: k1 }, basic_auth: { username: me, password: pw }",
        );
        let mut conn = Conn::new(Canned::new(b"", 1));
        conn.write_request(At::Sensor(sensor(&config)), sensor(&config), true);
        let text = String::from_utf8(conn.out.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "GET /v?q=1 HTTP/1.1\r\nhost: [::1]:8080\r\nuser-agent: {USER_AGENT}\r\naccept: */*\r\n\
                 X-Key: k1\r\nauthorization: Basic bWU6cHc=\r\n\r\n"
            )
        );
        // To another host (a redirect), no credentials.
        conn.write_request(At::Sensor(sensor(&config)), sensor(&config), false);
        assert!(!String::from_utf8_lossy(&conn.out).contains("authorization"));
        let config = config_with_userinfo();
        conn.write_request(At::Sensor(sensor(&config)), sensor(&config), true);
        // "a b:p@ss" percent-decoded from the URL.
        assert!(
            String::from_utf8_lossy(&conn.out).contains("authorization: Basic YSBiOnBAc3M=\r\n")
        );
    }

    fn config_with_userinfo() -> Config {
        config("http://a%20b:p%40ss@127.0.0.1:1/t", "")
    }

    /// What a test server sends for request `n` (counted from 0), the
    /// `on_conn`-th on its connection, and whether it closes after it.
    type Answer = fn(usize, usize) -> (Vec<u8>, bool);

    /// A server that answers every request by `answer`; counts the
    /// connections it accepted.
    async fn server(answer: Answer) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/t", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    for on_conn in 0.. {
                        while memchr::memmem::find(&request, b"\r\n\r\n").is_none() {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        request.clear();
                        let n = requests.fetch_add(1, Ordering::SeqCst);
                        let (bytes, close) = answer(n, on_conn);
                        if stream.write_all(&bytes).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn ok(_: usize, _: usize) -> (Vec<u8>, bool) {
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n21.5".to_vec(),
            false,
        )
    }

    /// Connections the server saw for three GETs in a row, each answered.
    async fn connections_for_three_gets(answer: Answer) -> usize {
        let (url, accepted) = server(answer).await;
        let config = config(&url, "");
        let http = Http1::new(&config);
        for _ in 0..3 {
            assert_eq!(http.get(sensor(&config), 64).await.unwrap(), b"21.5");
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        assert_eq!(connections_for_three_gets(ok).await, 1);
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        fn close(_: usize, _: usize) -> (Vec<u8>, bool) {
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\n21.5".to_vec(),
                true,
            )
        }
        assert_eq!(connections_for_three_gets(close).await, 3);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        // Each answer says keep-alive, then the server closes anyway.
        fn then_close(_: usize, _: usize) -> (Vec<u8>, bool) {
            (ok(0, 0).0, true)
        }
        assert_eq!(connections_for_three_gets(then_close).await, 3);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_under_the_request_is_retried_once_on_a_new_one() {
        // Still open when taken from the pool, so the request goes out on
        // it; the server closes it instead of answering. Nothing of the
        // answer was read: the request goes again on a new connection.
        fn once_per_connection(_: usize, on_conn: usize) -> (Vec<u8>, bool) {
            match on_conn {
                0 => ok(0, 0),
                _ => (Vec::new(), true),
            }
        }
        assert_eq!(connections_for_three_gets(once_per_connection).await, 3);
    }

    #[tokio::test]
    async fn a_new_connection_closed_before_the_answer_is_not_retried() {
        fn never(_: usize, _: usize) -> (Vec<u8>, bool) {
            (Vec::new(), true)
        }
        let (url, accepted) = server(never).await;
        let config = config(&url, "");
        let http = Http1::new(&config);
        assert_eq!(
            http.get(sensor(&config), 64).await,
            Err(Failure::Request(
                "connection closed before message completed".into()
            ))
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_half_read_connection_is_not_reused() {
        // The first answer stalls after half its body; the next are whole.
        fn half_first(n: usize, _: usize) -> (Vec<u8>, bool) {
            match n {
                0 => (
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n21".to_vec(),
                    false,
                ),
                _ => ok(n, 0),
            }
        }
        let (url, accepted) = server(half_first).await;
        let config = config(&url, ", timeout: 300ms");
        let http = Http1::new(&config);
        assert_eq!(
            http.get(sensor(&config), 64).await,
            Err(Failure::BodyTimeout(Duration::from_millis(300)))
        );
        assert_eq!(http.get(sensor(&config), 64).await.unwrap(), b"21.5");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn at_most_limit_per_host_connections_stay_idle() {
        let (url, _) = server(ok).await;
        let config = config(&url, "");
        let http = Http1::new(&config);
        let s = sensor(&config);
        let (a, b, c) = tokio::join!(http.get(s, 64), http.get(s, 64), http.get(s, 64));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        let idle = lock(&http.idle);
        assert_eq!(idle[s.url.authority()].len(), config.limit_per_host);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any bytes at all as an answer, read in any pieces: no panic, and
        /// never a body over the cap.
        #[test]
        fn any_answer_is_read_without_panic_within_the_cap(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            head in proptest::sample::select(vec![
                "", "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n",
                "HTTP/1.1 100 Continue\r\n\r\n",
            ]),
            step in 1usize..64,
            max_body in 0u64..64,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut all = head.as_bytes().to_vec();
            all.extend_from_slice(&bytes);
            if let Ok((_, body, _)) = runtime.block_on(answer(&all, step, max_body)) {
                proptest::prop_assert!(body.len() as u64 <= max_body);
            }
        }
    }
}
