//! `agent.yaml`: reading, validating and resolving the agent's configuration.
//!
//! Loading happens in three steps, each with one job:
//! 1. [`raw`]: serde turns the YAML into typed structs, rejecting unknown keys
//!    and wrong types (serde knows the position of these errors).
//! 2. [`validate`]: cross-field rules, with the rules of the parts beside it
//!    ([`output`], [`sensor`]), `${VAR}` and password files in [`secrets`],
//!    file-system questions in [`probe`], and selectors parsed by
//!    [`crate::extract::selector`]. It collects *every* problem rather than
//!    stopping at the first, so one `edge-agent check` shows all that is wrong.
//! 3. [`locate`]: positions for the problems of step 2, so each one reads
//!    `agent.yaml:14:9: groups[0].sensors[2].value: not a JSON pointer`.
//!
//! The result, [`Config`], holds only checked values: the rest of the agent
//! never re-validates anything.

mod locate;
mod output;
mod probe;
pub mod raw;
mod secrets;
mod sensor;
mod validate;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::extract::selector::{PromSelector, Selector};
pub use probe::WRITE_PROBE_PREFIX;
pub use raw::{BodyFormat, Compress, Unit};
pub(crate) use validate::is_name;
pub use values::{HumanSize, Secret};

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
    pub output: Output,
    pub groups: Vec<Group>,
    /// Loopback address of the `/metrics` and `/healthz` listener, if on.
    pub metrics: Option<std::net::SocketAddr>,
    /// Things that work but deserve a word when the config is loaded (a
    /// world-readable file holding secrets, say).
    pub warnings: Vec<String>,
}

/// Where and how rows are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
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

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Celsius => "celsius",
            Unit::Fahrenheit => "fahrenheit",
            Unit::Kelvin => "kelvin",
        }
    }
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

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let mut s = file.to_string();
            if let (Some(l), Some(c)) = (p.line, p.col) {
                s.push_str(&format!(":{l}:{c}"));
            }
            s.push_str(": ");
            if !p.key.is_empty() {
                s.push_str(&p.key);
                s.push_str(": ");
            }
            s.push_str(&p.message);
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems found, if the file was read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

impl Config {
    /// Read and validate the config at `path` (for commands that only read
    /// the recorded files: `replay`, `tail`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::resolve(&read(path)?, path, false)
    }

    /// [`Config::load`] for the agent that will run it (`run`, `check`, a
    /// reload): `output.dir` is also tried for write access.
    pub fn load_to_run(path: &Path) -> Result<Config, ConfigError> {
        Config::resolve(&read(path)?, path, true)
    }

    /// Validate config `text`; `path` names it in messages and anchors
    /// relative paths (`password_file`, `ca_file`) nowhere but as written.
    /// Nothing is created anywhere (the output dir's write access is tried
    /// by [`Config::load_to_run`] only).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::resolve(text, path, false)
    }

    fn resolve(text: &str, path: &Path, try_output_dir: bool) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let invalid = |problems| ConfigError::Invalid {
            file: file.clone(),
            problems,
        };
        let raw: raw::RawConfig =
            serde_yaml_ng::from_str(text).map_err(|e| invalid(vec![serde_problem(&e)]))?;
        let env = |name: &str| std::env::var(name).ok();
        validate::resolve(raw, path, &env, try_output_dir).map_err(|mut problems| {
            // Built only for errors: with 10,000 sensors the index is large.
            let locations = locate::Locations::index(text);
            for p in &mut problems {
                if let Some(pos) = locations.find(&p.key) {
                    p.line = Some(pos.line);
                    p.col = Some(pos.col);
                }
            }
            invalid(problems)
        })
    }

    /// Log [`Config::warnings`], at start and at each reload.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }

    /// All sensors, with the group each belongs to.
    pub fn sensors(&self) -> impl Iterator<Item = (usize, &Sensor)> {
        self.groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| group.sensors.iter().map(move |s| (g, s)))
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Turn a serde_yaml error into a [`Problem`]: its message starts with the
/// key path (`groups[0].sensors[1]: unknown field ...`) and ends with the
/// position, which we move to the front in our own format.
fn serde_problem(e: &serde_yaml_ng::Error) -> Problem {
    let mut message = e.to_string();
    let (mut line, mut col) = (None, None);
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(i) = message.find(&suffix) {
            message.replace_range(i..i + suffix.len(), "");
        }
        line = Some(loc.line());
        col = Some(loc.column());
    }
    // Split a leading `path: ` off the message.
    let mut key = String::new();
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.contains(' ') && !head.is_empty() {
            key = head.to_string();
            message = rest.to_string();
        }
    }
    Problem {
        key,
        line,
        col,
        message,
    }
}
