//! The resolved configuration: what the rest of the agent reads.
//!
//! Why a file of its own: every rule file of this module builds these
//! types, and the agent's other modules only ever see them; keeping them
//! apart from the loading steps keeps the steps from importing each other.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::values::Secret;
use crate::extract::selector::Selector;
pub use crate::history::row::Unit;

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from, for messages.
    pub source: PathBuf,
    /// One poll of every sensor per interval.
    pub interval: Duration,
    /// Default per-request timeout, shorter than `interval`.
    pub timeout: Duration,
    /// Requests in flight in total.
    pub limit: usize,
    /// Requests in flight to one host (scheme + host + port).
    pub limit_per_host: usize,
    /// Largest response body accepted; longer bodies count as failed.
    pub max_body: u64,
    /// How sensors that keep failing are polled less often; `None`: off.
    pub backoff: Option<Backoff>,
    pub output: Output,
    pub groups: Vec<Group>,
    /// Loopback address of the `/metrics` and `/healthz` listener, if on.
    pub metrics: Option<std::net::SocketAddr>,
    /// Engines the recorded rows are forwarded to (`forward:`).
    pub forward: Vec<Forward>,
    /// Things that work but deserve a word when the config is loaded (a
    /// world-readable file holding secrets, say).
    pub warnings: Vec<String>,
}

/// `backoff`: a sensor that fails `after` polls in a row is polled less
/// often, exponentially with jitter, at most `max` intervals apart, until
/// it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failed polls in a row before a sensor backs off (1..=1000).
    pub after: u16,
    /// Most intervals between two polls of a sensor in backoff (2..=1000).
    pub max: u16,
}

impl Backoff {
    /// `backoff: { after: 3, max: 10x }`, what an agent does unless told.
    pub const DEFAULT: Backoff = Backoff { after: 3, max: 10 };
}

/// Where and how rows are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Absolute: a relative `output.dir` is taken from the config file's
    /// directory.
    pub dir: PathBuf,
    /// File name stem: `PREFIX.csv` active, `PREFIX-YYYYMMDDTHHMMSSZ.csv[.gz]` rotated.
    pub prefix: String,
    /// Rotate before a write would take the active file past this size.
    pub max_size: Option<u64>,
    /// Rotate when rows cross a UTC-aligned boundary of this length.
    pub every: Option<Duration>,
    /// Rotated files kept; older ones are removed after each rotation.
    pub keep: usize,
    pub compress: Compress,
    pub fsync: Fsync,
    /// Decimals written for mean, min and max.
    pub decimals: usize,
    /// Batches the writer may fall behind before rows are dropped (and counted).
    pub queue: usize,
}

impl Output {
    /// True when `other` names the same files (directory and prefix): what
    /// a reload keeps writing to rather than opening a new store for.
    pub fn same_files(&self, other: &Output) -> bool {
        self.dir == other.dir && self.prefix == other.prefix
    }
}

/// When written rows are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// On rotation and on shutdown.
    Rotate,
    /// After every batch of rows.
    Always,
    /// At most this long after a batch was written.
    Every(Duration),
}

/// Sensors averaged together into one row per window.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// Unit of the averaged columns.
    pub unit: Unit,
    /// Row length: a whole multiple of `interval`.
    pub window: Duration,
    pub sensors: Vec<Sensor>,
}

/// One HTTP sensor. Its `Debug` shows [`Sensor::shown_url`], never `url`,
/// which may carry a token from `${VAR}`.
///
/// Why so compact: the agent holds one per sensor for its whole life, and at
/// 10,000 sensors every 100 bytes here are 1 MB of resident memory
/// (BENCHMARKS.md, "Issue 16: footprint"). So the URL is its text and the
/// offsets polling needs rather than a `url::Url` (88 bytes), with the id
/// in the same allocation (a short string of its own costs a 32-byte block
/// and a pointer), the host and the shown URL are computed from it rather
/// than stored, and what few sensors set (headers, basic auth, TLS
/// settings, a URL written with `${VAR}`) sits behind one pointer that is
/// null for the others.
#[derive(Clone, PartialEq)]
pub struct Sensor {
    /// What is requested, and the id; only the HTTP clients read the URL's
    /// text.
    pub url: SensorUrl,
    pub format: BodyFormat,
    /// Unit the sensor reports.
    pub unit: Unit,
    /// Where the number is in the body.
    pub selector: Selector,
    pub timeout: Duration,
    /// `None` when the sensor sets none of these.
    pub(super) extra: Option<Box<Extra>>,
}

/// The settings of a sensor that most sensors leave unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Extra {
    pub(super) headers: Box<[(Box<str>, Secret)]>,
    pub(super) basic_auth: Option<BasicAuth>,
    pub(super) tls: Tls,
    /// The URL as written, when it holds a `${VAR}` before any query: what
    /// [`Sensor::shown_url`] starts from, so no value from the environment
    /// is shown.
    pub(super) written_url: Option<Box<str>>,
}

/// What every sensor without TLS settings has.
static NO_TLS: Tls = Tls {
    insecure: false,
    ca_file: None,
};

impl Sensor {
    pub fn id(&self) -> &str {
        &self.url.text[self.url.url_len as usize..]
    }

    /// Extra request headers, in the order written.
    pub fn headers(&self) -> &[(Box<str>, Secret)] {
        self.extra.as_ref().map_or(&[], |e| &e.headers)
    }

    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.extra.as_ref()?.basic_auth.as_ref()
    }

    pub fn tls(&self) -> &Tls {
        self.extra.as_ref().map_or(&NO_TLS, |e| &e.tls)
    }

    /// `scheme://host:port`, the unit `limit_per_host` counts in.
    pub fn host(&self) -> HostKey<'_> {
        self.url.host()
    }

    /// The URL for people: password and query redacted, `${VAR}` unexpanded.
    pub fn shown_url(&self) -> String {
        let written = self.extra.as_ref().and_then(|e| e.written_url.as_deref());
        super::secrets::redacted_url(written.unwrap_or(self.url.as_str()))
    }
}

impl fmt::Debug for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Sensor")
            .field("id", &self.id())
            .field("url", &self.shown_url())
            .field("host", &self.host().to_string())
            .field("format", &self.format)
            .field("selector", &self.selector)
            .field("unit", &self.unit)
            .field("headers", &self.headers())
            .field("basic_auth", &self.basic_auth())
            .field("tls", self.tls())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A sensor's host: `scheme://host:port` when shown, the port always
/// written; sensors with equal ones share `limit_per_host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostKey<'a> {
    pub scheme: &'a str,
    /// As in the URL: an IPv6 address in brackets.
    pub name: &'a str,
    pub port: u16,
}

impl fmt::Display for HostKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.name, self.port)
    }
}

/// A sensor's URL (an http or https URL with a host), kept as the text
/// `url::Url` gives it, so the default port is never written and equal
/// URLs are equal text, with where the parts polling reads start; the
/// sensor's id follows it in the same allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SensorUrl {
    /// The URL, then the id.
    text: Box<str>,
    url_len: u32,
    /// Where the host starts (after any `user:password@`).
    host_at: u32,
    /// Where the path starts: the end of the port, if written.
    path_at: u32,
    /// The port, the scheme's when none is written.
    port: u16,
}

impl SensorUrl {
    /// `None` when `url` is not http(s) with a host, or it and `id` are
    /// longer than 4 GiB.
    pub fn new(url: &url::Url, id: &str) -> Option<SensorUrl> {
        use url::Position;
        let at = |p: Position| u32::try_from(url[..p].len()).ok();
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return None;
        }
        let text = [url.as_str(), id].concat();
        u32::try_from(text.len()).ok()?;
        Some(SensorUrl {
            text: text.into_boxed_str(),
            url_len: at(Position::AfterFragment)?,
            host_at: at(Position::BeforeHost)?,
            path_at: at(Position::BeforePath)?,
            port: url.port_or_known_default()?,
        })
    }

    /// The whole URL, user and password included: for requests only.
    pub fn as_str(&self) -> &str {
        &self.text[..self.url_len as usize]
    }

    /// The URL parsed again: for what needs a `url::Url` (a new
    /// connection, a redirect), never per request.
    pub fn parse(&self) -> url::Url {
        url::Url::parse(self.as_str()).expect("a URL's own text parses as the same URL")
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.text.split_once(':').map_or("", |(scheme, _)| scheme)
    }

    /// The host as written in the URL (an IPv6 address in brackets).
    pub fn host_str(&self) -> &str {
        let authority = self.authority();
        match authority.rfind([':', ']']) {
            Some(i) if authority.as_bytes()[i] == b':' => &authority[..i],
            _ => authority,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the URL names, with its port.
    pub fn host(&self) -> HostKey<'_> {
        HostKey {
            scheme: self.scheme(),
            name: self.host_str(),
            port: self.port,
        }
    }

    /// `host:port` as written (no port when it is the scheme's).
    pub fn authority(&self) -> &str {
        &self.text[self.host_at as usize..self.path_at as usize]
    }

    /// Path and query, what a request line asks for.
    pub fn path_and_query(&self) -> &str {
        let rest = &self.as_str()[self.path_at as usize..];
        rest.split_once('#').map_or(rest, |(before, _)| before)
    }

    /// Whether the URL holds a user (and maybe a password).
    pub fn has_userinfo(&self) -> bool {
        self.host_at as usize > self.scheme().len() + 3
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<Secret>,
}

/// TLS settings of a sensor; sensors with equal settings share one client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tls {
    /// Accept any certificate (logged as a warning at start).
    pub insecure: bool,
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl BodyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Json => "json",
            BodyFormat::Prometheus => "prometheus",
            BodyFormat::Text => "text",
        }
    }
}

/// One thing wrong with a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `groups[0].sensors[2].value`; empty for the whole file.
    pub key: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

/// One `forward:` target: an engine that takes line protocol, and how the
/// rows are sent to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// Names the target in logs and metrics, and its cursor file.
    pub name: String,
    /// The write URL, `${VAR}`s expanded: it may hold a token (InfluxDB
    /// 1.x's `u=`/`p=`), so it is a secret; [`Forward::shown_url`] is what
    /// messages show.
    pub url: Secret,
    /// The URL with its password and query redacted.
    pub shown_url: String,
    pub headers: Vec<(Box<str>, Secret)>,
    pub tls: Tls,
    /// Most rows in one request.
    pub batch_rows: usize,
    /// Most bytes of line protocol in one request.
    pub batch_bytes: usize,
    /// Longest a written row waits for its batch to fill.
    pub max_delay: Duration,
    pub measurement: String,
    /// Most rows sent per second.
    pub max_rate: usize,
    /// One request, from its start to the engine's answer.
    pub timeout: Duration,
    /// The first wait after a failure is drawn from `0..=retry_first`; each
    /// failure doubles the bound up to `retry_max` (full jitter).
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// `/healthz` fails while the target is further behind than this.
    pub max_lag: Option<Duration>,
    /// Retention keeps rotated files this target has not passed while the
    /// rotated files stay within this many bytes; `None`: it does not wait.
    pub keep_unforwarded: Option<u64>,
    pub on_refused: OnRefused,
    pub start: Start,
}

/// What a batch the engine refuses (a 4xx other than 408, 413, 429) does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum OnRefused {
    /// Logged with the engine's reason, counted, and passed over.
    #[default]
    Skip,
    /// The target stops and tries the same batch again every `retry.max`
    /// until the engine takes it (or the config changes).
    Pause,
}

/// Where a target without a cursor begins.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the first row of the oldest file kept.
    #[default]
    Oldest,
    /// At the end of the active file: only rows written from now on.
    Now,
}

/// What to do with rotated files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    #[default]
    None,
    Gzip,
}

/// How a sensor's response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Prometheus,
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent keeps one `Sensor` per sensor for its whole life: at
    /// 10,000 sensors each byte here is 10 kB resident. Main had 336 bytes;
    /// grow it only knowingly (and update BENCHMARKS.md, "Issue 16").
    #[test]
    fn a_sensor_stays_small() {
        assert!(
            size_of::<Sensor>() <= 88,
            "Sensor is {} bytes",
            size_of::<Sensor>()
        );
        assert!(size_of::<SensorUrl>() <= 32);
        assert!(size_of::<Selector>() <= 24);
    }

    #[test]
    fn a_sensor_url_has_its_parts_where_polling_reads_them() {
        let parse = |s: &str| SensorUrl::new(&url::Url::parse(s).unwrap(), "id-1").unwrap();
        let u = parse("http://u:p%40@Example.com:80/a/b?q=1#frag");
        assert_eq!(u.as_str(), "http://u:p%40@example.com/a/b?q=1#frag");
        assert_eq!(&u.text[u.url_len as usize..], "id-1");
        assert_eq!(u.scheme(), "http");
        assert_eq!(u.host_str(), "example.com");
        assert_eq!(u.port(), 80);
        assert_eq!(u.authority(), "example.com");
        assert_eq!(u.path_and_query(), "/a/b?q=1");
        assert!(u.has_userinfo());
        assert_eq!(u.parse().password(), Some("p%40"));
        let u = parse("https://[::1]:8443");
        assert_eq!(
            (u.scheme(), u.host_str(), u.port(), u.authority()),
            ("https", "[::1]", 8443, "[::1]:8443")
        );
        assert_eq!(u.path_and_query(), "/");
        assert!(!u.has_userinfo());
        let u = parse("http://127.0.0.1:8080");
        assert_eq!(
            (u.host_str(), u.authority(), u.port()),
            ("127.0.0.1", "127.0.0.1:8080", 8080)
        );
        assert_eq!(parse("http://[::1]/").host_str(), "[::1]");
        assert!(SensorUrl::new(&url::Url::parse("ftp://h/x").unwrap(), "a").is_none());
    }
}
