//! The resolved configuration: what the rest of the agent reads.
//!
//! Why a file of its own: every rule file of this module builds these
//! types, and the agent's other modules only ever see them; keeping them
//! apart from the loading steps keeps the steps from importing each other.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{BodyFormat, Compress, Unit};
use super::values::Secret;
use crate::extract::selector::Selector;

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
#[derive(Clone, PartialEq)]
pub struct Sensor {
    pub id: String,
    /// What is requested; only the HTTP client reads it.
    pub url: url::Url,
    /// The URL for people: password and query redacted, `${VAR}` unexpanded.
    pub shown_url: String,
    /// `scheme://host:port`, the unit `limit_per_host` counts in.
    pub host: String,
    pub format: BodyFormat,
    /// Where the number is in the body.
    pub selector: Selector,
    /// Unit the sensor reports.
    pub unit: Unit,
    pub headers: Vec<(String, Secret)>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: Tls,
    pub timeout: Duration,
}

impl fmt::Debug for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Sensor")
            .field("id", &self.id)
            .field("url", &self.shown_url)
            .field("host", &self.host)
            .field("format", &self.format)
            .field("selector", &self.selector)
            .field("unit", &self.unit)
            .field("headers", &self.headers)
            .field("basic_auth", &self.basic_auth)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
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
