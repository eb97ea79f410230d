//! The `agent.yaml` schema exactly as written by the user, and its reading.
//!
//! These structs only describe the shape of the file. [`read`] fills them
//! from the YAML with [`super::yaml`], judging every key against the
//! [`Field`] tables below: unknown and repeated keys, wrong types and
//! missing keys are all reported, with their position, what the key means
//! and what it takes. Everything that needs more than one field, the
//! environment or the file system to judge is done in [`super::validate`],
//! which turns these into the resolved [`super::Config`].
//!
//! A key that is missing or unreadable is left at a placeholder (empty text,
//! the default) and its path noted in [`Read::judged`], so validation does
//! not report it a second time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::model::Problem;
pub use super::model::{BodyFormat, Compress};
use super::values::{Secret, SizeText};
use super::yaml::{At, Doc, Field, Scalar};

#[derive(Debug, Default)]
pub struct RawConfig {
    pub interval: String,
    pub timeout: String,
    pub limit: usize,
    pub limit_per_host: usize,
    /// Largest response body accepted from a sensor (default 64 KiB).
    pub max_body: Option<SizeText>,
    /// `off`, or `{ after: 3, max: 10x }` (the default).
    pub backoff: RawBackoff,
    pub output: RawOutput,
    pub groups: Vec<RawGroup>,
    /// Optional `/metrics` and `/healthz` listener.
    pub metrics: Option<RawMetrics>,
    /// Engines the recorded rows are forwarded to.
    pub forward: Vec<RawForward>,
}

/// One `forward:` target as written; judged in [`super::forward`].
#[derive(Debug, Default)]
pub struct RawForward {
    pub name: String,
    pub url: String,
    pub headers: BTreeMap<String, Secret>,
    pub tls: RawTls,
    pub batch: RawBatch,
    pub measurement: Option<String>,
    pub max_rate: Option<usize>,
    pub timeout: Option<String>,
    pub retry: RawRetry,
    pub max_lag: Option<String>,
    /// `false`, or the most bytes of rotated files kept for this target.
    pub keep_unforwarded: Option<RawKeep>,
    pub on_refused: Option<OnRefused>,
    pub start: Option<Start>,
}

#[derive(Debug, Default)]
pub struct RawBatch {
    pub rows: Option<usize>,
    pub max_size: Option<SizeText>,
    pub max_delay: Option<String>,
}

#[derive(Debug, Default)]
pub struct RawRetry {
    pub first: Option<String>,
    pub max: Option<String>,
}

/// `keep_unforwarded` as written: a flag or a size.
#[derive(Debug)]
pub enum RawKeep {
    Flag(bool),
    Size(SizeText),
}

pub use super::model::{OnRefused, Start};

#[derive(Debug, Default)]
pub struct RawMetrics {
    pub listen: String,
}

/// `backoff:` as written: `off` (or `false`), or a map. Checked in
/// [`super::backoff`], where the interval is known.
#[derive(Debug, Default)]
pub enum RawBackoff {
    /// Not in the file.
    #[default]
    Default,
    Text(String),
    Flag(bool),
    Map(RawBackoffMap),
}

#[derive(Debug, Default)]
pub struct RawBackoffMap {
    pub after: Option<u64>,
    /// `10x` (intervals) or a duration; judged in validation.
    pub max: Option<MaxText>,
}

/// `backoff.max` as written.
#[derive(Debug)]
pub enum MaxText {
    /// A bare number (`10`): intervals or seconds? Refused with a hint.
    Number(String),
    Text(String),
}

#[derive(Debug)]
pub struct RawOutput {
    pub dir: PathBuf,
    pub prefix: String,
    pub rotate: RawRotate,
    pub keep: usize,
    pub compress: Compress,
    pub fsync: String,
    /// Decimals written for mean/min/max.
    pub decimals: usize,
    /// Batches (one per cycle) the writer may fall behind before rows are dropped.
    pub queue: usize,
}

impl Default for RawOutput {
    fn default() -> RawOutput {
        RawOutput {
            dir: PathBuf::new(),
            prefix: "readings".into(),
            rotate: RawRotate::default(),
            keep: 168,
            compress: Compress::None,
            fsync: "rotate".into(),
            decimals: 3,
            queue: 1024,
        }
    }
}

#[derive(Debug, Default)]
pub struct RawRotate {
    pub max_size: Option<SizeText>,
    pub every: Option<String>,
}

#[derive(Debug)]
pub struct RawGroup {
    pub name: String,
    pub unit: Unit,
    pub window: Option<String>,
    pub sensors: Vec<RawSensor>,
}

pub use crate::history::row::Unit;

#[derive(Debug, Default)]
pub struct RawSensor {
    pub id: String,
    pub url: String,
    /// `None` when missing or not one of the formats (already reported).
    pub format: Option<BodyFormat>,
    pub value: Option<String>,
    pub unit: Option<Unit>,
    pub headers: BTreeMap<String, Secret>,
    pub basic_auth: Option<RawBasicAuth>,
    pub tls: RawTls,
    pub timeout: Option<String>,
}

#[derive(Debug, Default)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct RawTls {
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
}

/// What [`read`] found: the structs (placeholders where a key was missing or
/// unreadable) and the problems, in the order of the file.
pub struct Read {
    pub config: RawConfig,
    pub problems: Vec<Problem>,
    /// Key paths already reported on.
    pub judged: Vec<String>,
    /// Whether the file was a YAML map at all: if not, only its problems
    /// are worth showing (every key would otherwise be "missing" twice).
    pub readable: bool,
}

/// Read `text` into a [`RawConfig`], reporting every problem of shape.
pub fn read(text: &str) -> Read {
    let mut doc = Doc::new(text);
    let mut config = RawConfig {
        limit: 100,
        limit_per_host: 25,
        ..RawConfig::default()
    };
    let mut readable = false;
    doc.document(|doc| {
        readable = doc.map(&At::Root, &TOP, &CONFIG, |doc, at, i| {
            match CONFIG[i].name {
                "interval" => set(&mut config.interval, doc.string(at, &CONFIG[i])),
                "timeout" => set(&mut config.timeout, doc.string(at, &CONFIG[i])),
                "limit" => set(&mut config.limit, doc.count(at, &CONFIG[i])),
                "limit_per_host" => set(&mut config.limit_per_host, doc.count(at, &CONFIG[i])),
                "max_body" => config.max_body = size(doc, at, &CONFIG[i]),
                "backoff" => config.backoff = backoff(doc, at, &CONFIG[i]),
                "output" => config.output = output(doc, at, &CONFIG[i]),
                "groups" => {
                    doc.list(at, &CONFIG[i], |doc, at, _| {
                        config.groups.push(group(doc, at));
                    });
                    // Exactly as many as written (see validate's sensors).
                    config.groups.shrink_to_fit();
                }
                "forward" => {
                    doc.list(at, &CONFIG[i], |doc, at, _| {
                        config.forward.push(forward(doc, at));
                    });
                }
                "metrics" => {
                    let mut listen = None;
                    if doc.map(at, &CONFIG[i], &METRICS, |doc, at, j| {
                        listen = doc.string(at, &METRICS[j]);
                    }) {
                        config.metrics = Some(RawMetrics {
                            listen: listen.unwrap_or_default(),
                        });
                    }
                }
                _ => doc.skip(),
            }
        });
    });
    Read {
        config,
        readable: readable && !doc.invalid,
        problems: doc.problems,
        judged: doc.judged,
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn size(doc: &mut Doc, at: &At, field: &Field) -> Option<SizeText> {
    doc.scalar(at, field).map(|(s, _)| size_text(s))
}

/// A size as written: a plain whole number is bytes, anything else text
/// for validation to read (`64KiB`).
fn size_text(s: Scalar) -> SizeText {
    match s.text.parse::<u64>() {
        Ok(n) if s.plain => SizeText::Bytes(n),
        _ => SizeText::Text(s.text),
    }
}

fn backoff(doc: &mut Doc, at: &At, field: &Field) -> RawBackoff {
    if doc.peek_is_map() {
        let mut map = RawBackoffMap::default();
        doc.map(at, field, &BACKOFF, |doc, at, i| match BACKOFF[i].name {
            "after" => map.after = doc.count(at, &BACKOFF[i]).map(|n| n as u64),
            _ => {
                map.max = doc.scalar(at, &BACKOFF[i]).map(|(s, _)| {
                    if s.plain && s.text.parse::<f64>().is_ok() {
                        MaxText::Number(s.text)
                    } else {
                        MaxText::Text(s.text)
                    }
                })
            }
        });
        return RawBackoff::Map(map);
    }
    match doc.scalar(at, field) {
        Some((s, _)) => match s.as_bool() {
            Some(flag) => RawBackoff::Flag(flag),
            None => RawBackoff::Text(s.text),
        },
        None => RawBackoff::Default,
    }
}

fn output(doc: &mut Doc, at: &At, field: &Field) -> RawOutput {
    let mut o = RawOutput::default();
    doc.map(at, field, &OUTPUT, |doc, at, i| {
        let f = &OUTPUT[i];
        match f.name {
            "dir" => set(&mut o.dir, doc.string(at, f).map(PathBuf::from)),
            "prefix" => set(&mut o.prefix, doc.string(at, f)),
            "rotate" => {
                doc.map(at, f, &ROTATE, |doc, at, j| match ROTATE[j].name {
                    "max_size" => o.rotate.max_size = size(doc, at, &ROTATE[j]),
                    _ => o.rotate.every = doc.string(at, &ROTATE[j]),
                });
            }
            "keep" => set(&mut o.keep, doc.count(at, f)),
            "compress" => set(
                &mut o.compress,
                doc.choice(at, f, &[("none", Compress::None), ("gzip", Compress::Gzip)]),
            ),
            "fsync" => set(&mut o.fsync, doc.string(at, f)),
            "decimals" => set(&mut o.decimals, doc.count(at, f)),
            "queue" => set(&mut o.queue, doc.count(at, f)),
            _ => doc.skip(),
        }
    });
    o
}

fn forward(doc: &mut Doc, at: &At) -> RawForward {
    let mut t = RawForward::default();
    doc.map(at, &FORWARD_ITEM, &FORWARD, |doc, at, i| {
        let f = &FORWARD[i];
        match f.name {
            "name" => set(&mut t.name, doc.string(at, f)),
            "url" => set(&mut t.url, doc.string(at, f)),
            "headers" => doc.entries(at, f, |doc, at, name| {
                if let Some(v) = doc.string(at, &HEADER_VALUE) {
                    t.headers.insert(name, Secret::new(v));
                }
            }),
            "tls" => {
                doc.map(at, f, &TLS, |doc, at, j| match TLS[j].name {
                    "insecure" => set(&mut t.tls.insecure, doc.flag(at, &TLS[j])),
                    _ => t.tls.ca_file = doc.string(at, &TLS[j]).map(PathBuf::from),
                });
            }
            "batch" => {
                doc.map(at, f, &BATCH, |doc, at, j| {
                    let f = &BATCH[j];
                    match f.name {
                        "rows" => t.batch.rows = doc.count(at, f),
                        "max_size" => t.batch.max_size = size(doc, at, f),
                        _ => t.batch.max_delay = doc.string(at, f),
                    }
                });
            }
            "measurement" => t.measurement = doc.string(at, f),
            "max_rate" => t.max_rate = doc.count(at, f),
            "timeout" => t.timeout = doc.string(at, f),
            "retry" => {
                doc.map(at, f, &RETRY, |doc, at, j| match RETRY[j].name {
                    "first" => t.retry.first = doc.string(at, &RETRY[j]),
                    _ => t.retry.max = doc.string(at, &RETRY[j]),
                });
            }
            "max_lag" => t.max_lag = doc.string(at, f),
            "keep_unforwarded" => {
                t.keep_unforwarded = doc.scalar(at, f).map(|(s, _)| match s.as_bool() {
                    Some(flag) => RawKeep::Flag(flag),
                    None => RawKeep::Size(size_text(s)),
                })
            }
            "on_refused" => {
                t.on_refused = doc.choice(
                    at,
                    f,
                    &[("skip", OnRefused::Skip), ("pause", OnRefused::Pause)],
                )
            }
            "start" => {
                t.start = doc.choice(at, f, &[("oldest", Start::Oldest), ("now", Start::Now)])
            }
            _ => doc.skip(),
        }
    });
    t
}

const UNITS: [(&str, Unit); 3] = [
    ("celsius", Unit::Celsius),
    ("fahrenheit", Unit::Fahrenheit),
    ("kelvin", Unit::Kelvin),
];

fn group(doc: &mut Doc, at: &At) -> RawGroup {
    let mut g = RawGroup {
        name: String::new(),
        unit: Unit::Celsius,
        window: None,
        sensors: Vec::new(),
    };
    doc.map(at, &GROUP_ITEM, &GROUP, |doc, at, i| {
        let f = &GROUP[i];
        match f.name {
            "name" => set(&mut g.name, doc.string(at, f)),
            "unit" => set(&mut g.unit, doc.choice(at, f, &UNITS)),
            "window" => g.window = doc.string(at, f),
            "sensors" => {
                doc.list(at, f, |doc, at, _| g.sensors.push(sensor(doc, at)));
                g.sensors.shrink_to_fit();
            }
            _ => doc.skip(),
        }
    });
    g
}

fn sensor(doc: &mut Doc, at: &At) -> RawSensor {
    let mut s = RawSensor::default();
    doc.map(at, &SENSOR_ITEM, &SENSOR, |doc, at, i| {
        let f = &SENSOR[i];
        match f.name {
            "id" => set(&mut s.id, doc.string(at, f)),
            "url" => set(&mut s.url, doc.string(at, f)),
            "format" => {
                s.format = doc.choice(
                    at,
                    f,
                    &[
                        ("json", BodyFormat::Json),
                        ("prometheus", BodyFormat::Prometheus),
                        ("text", BodyFormat::Text),
                    ],
                )
            }
            "value" => s.value = doc.string(at, f),
            "unit" => s.unit = doc.choice(at, f, &UNITS),
            "headers" => doc.entries(at, f, |doc, at, name| {
                if let Some(v) = doc.string(at, &HEADER_VALUE) {
                    s.headers.insert(name, Secret::new(v));
                }
            }),
            "basic_auth" => {
                let mut b = RawBasicAuth::default();
                if doc.map(at, f, &BASIC_AUTH, |doc, at, j| {
                    let f = &BASIC_AUTH[j];
                    match f.name {
                        "username" => set(&mut b.username, doc.string(at, f)),
                        "password" => b.password = doc.string(at, f).map(Secret::new),
                        _ => b.password_file = doc.string(at, f).map(PathBuf::from),
                    }
                }) {
                    s.basic_auth = Some(b);
                }
            }
            "tls" => {
                doc.map(at, f, &TLS, |doc, at, j| match TLS[j].name {
                    "insecure" => set(&mut s.tls.insecure, doc.flag(at, &TLS[j])),
                    _ => s.tls.ca_file = doc.string(at, &TLS[j]).map(PathBuf::from),
                });
            }
            "timeout" => s.timeout = doc.string(at, f),
            _ => doc.skip(),
        }
    });
    s
}

const fn field(
    name: &'static str,
    required: bool,
    means: &'static str,
    takes: &'static str,
) -> Field {
    Field {
        name,
        means,
        takes,
        required,
    }
}

const DURATION: &str = "a duration such as 5s, 250ms, 1h";
const SIZE: &str = "a size such as 64KiB, 10MiB, or a byte count";
const UNIT: &str = "one of celsius, fahrenheit, kelvin";

const TOP: Field = field(
    "",
    true,
    "the agent's configuration",
    "a map with interval, timeout, output and groups",
);

const CONFIG: [Field; 10] = [
    field(
        "interval",
        true,
        "how often every sensor is polled",
        DURATION,
    ),
    field(
        "timeout",
        true,
        "how long one poll may take, shorter than interval",
        DURATION,
    ),
    field(
        "limit",
        false,
        "most requests in flight at once, default 100",
        "a whole number",
    ),
    field(
        "limit_per_host",
        false,
        "most requests in flight to one host, default 25",
        "a whole number",
    ),
    field(
        "max_body",
        false,
        "largest response body taken from a sensor, default 64KiB",
        SIZE,
    ),
    field(
        "backoff",
        false,
        "how failing sensors are polled less often",
        "`off`, or a map such as { after: 3, max: 10x }",
    ),
    field(
        "output",
        true,
        "where and how rows are written",
        "a map with at least dir",
    ),
    field(
        "groups",
        true,
        "the sensor groups, one row each per window",
        "a list of groups",
    ),
    field(
        "metrics",
        false,
        "the /metrics and /healthz listener",
        "a map with listen",
    ),
    field(
        "forward",
        false,
        "engines the recorded rows are sent to as they are written",
        "a list of targets, each a map with name and url",
    ),
];

const FORWARD_ITEM: Field = field("", true, "a forward target", "a map with name and url");

const FORWARD: [Field; 13] = [
    field(
        "name",
        true,
        "the target's name, which also names its cursor file",
        "a word of letters, digits, _, -, .",
    ),
    field(
        "url",
        true,
        "the engine's line-protocol write URL",
        "an http:// or https:// URL such as http://vm:8428/write",
    ),
    field(
        "headers",
        false,
        "HTTP headers sent with each batch (a token: use ${VAR})",
        "a map of header names to values",
    ),
    field(
        "tls",
        false,
        "certificate checks for an https url",
        "a map with ca_file and/or insecure",
    ),
    field(
        "batch",
        false,
        "how many rows go in one request",
        "a map with rows, max_size and/or max_delay",
    ),
    field(
        "measurement",
        false,
        "the line-protocol measurement name, default temperature",
        "a word",
    ),
    field(
        "max_rate",
        false,
        "most rows sent per second while catching up, default 20000",
        "a whole number",
    ),
    field(
        "timeout",
        false,
        "how long the engine may take to acknowledge a batch, default 30s",
        DURATION,
    ),
    field(
        "retry",
        false,
        "waits between failed sends (full jitter, doubling)",
        "a map with first and/or max, such as { first: 1s, max: 5m }",
    ),
    field(
        "max_lag",
        false,
        "/healthz fails while the target is this far behind the files",
        DURATION,
    ),
    field(
        "keep_unforwarded",
        false,
        "retention keeps rotated files not yet forwarded, up to this size of rotated files",
        "false, or a size such as 2GiB",
    ),
    field(
        "on_refused",
        false,
        "what a batch the engine refuses (4xx) does, default skip",
        "one of skip, pause",
    ),
    field(
        "start",
        false,
        "where a target without a cursor begins, default oldest",
        "one of oldest, now",
    ),
];

const BATCH: [Field; 3] = [
    field(
        "rows",
        false,
        "most rows in one request, default 5000",
        "a whole number",
    ),
    field(
        "max_size",
        false,
        "most bytes in one request, default 1MiB",
        SIZE,
    ),
    field(
        "max_delay",
        false,
        "longest a written row waits for its batch to fill, default 5s",
        DURATION,
    ),
];

const RETRY: [Field; 2] = [
    field(
        "first",
        false,
        "the longest first wait after a failed send, default 1s",
        DURATION,
    ),
    field(
        "max",
        false,
        "the longest wait between sends, default 5m",
        DURATION,
    ),
];

const METRICS: [Field; 1] = [field(
    "listen",
    true,
    "the loopback address of /metrics and /healthz",
    "an address such as 127.0.0.1:9464",
)];

const BACKOFF: [Field; 2] = [
    field(
        "after",
        false,
        "failures in a row before a sensor is polled less often, default 3",
        "a whole number",
    ),
    field(
        "max",
        false,
        "the longest wait between polls of a failing sensor, default 10x",
        "intervals such as 10x, or a duration such as 5m",
    ),
];

const OUTPUT: [Field; 8] = [
    field(
        "dir",
        true,
        "the directory the CSV files are written in",
        "a directory path",
    ),
    field(
        "prefix",
        false,
        "the start of the file names, default readings",
        "a word",
    ),
    field(
        "rotate",
        false,
        "when the active file is closed and a new one begun",
        "a map with max_size and/or every",
    ),
    field(
        "keep",
        false,
        "how many rotated files are kept, default 168",
        "a whole number",
    ),
    field(
        "compress",
        false,
        "what is done to rotated files",
        "one of none, gzip",
    ),
    field(
        "fsync",
        false,
        "when rows are forced to disk, default rotate",
        "rotate, always, or a duration such as 30s",
    ),
    field(
        "decimals",
        false,
        "decimals written for mean, min and max, default 3",
        "a whole number",
    ),
    field(
        "queue",
        false,
        "cycles of rows the writer may fall behind before rows are dropped, default 1024",
        "a whole number",
    ),
];

const ROTATE: [Field; 2] = [
    field(
        "max_size",
        false,
        "rotate when the active file reaches this size",
        SIZE,
    ),
    field(
        "every",
        false,
        "rotate when the active file is this old",
        DURATION,
    ),
];

const GROUP_ITEM: Field = field("", true, "a group", "a map with name, unit and sensors");

const GROUP: [Field; 4] = [
    field(
        "name",
        true,
        "the group's name, written in each of its rows",
        "a word of letters, digits, _, -, .",
    ),
    field("unit", true, "the unit the group's rows are in", UNIT),
    field(
        "window",
        false,
        "the time one row averages over, default interval",
        DURATION,
    ),
    field(
        "sensors",
        true,
        "the sensors averaged into the group's rows",
        "a list of sensors",
    ),
];

const SENSOR_ITEM: Field = field("", true, "a sensor", "a map with id, url and format");

const SENSOR: [Field; 9] = [
    field(
        "id",
        true,
        "the sensor's name, unique in the file",
        "a word of letters, digits, _, -, .",
    ),
    field(
        "url",
        true,
        "where the sensor is read",
        "an http:// or https:// URL",
    ),
    field(
        "format",
        true,
        "how the response body is read",
        "one of json, prometheus, text",
    ),
    field(
        "value",
        false,
        "where the number is in the body",
        "a JSON pointer such as /temp, or a Prometheus selector",
    ),
    field(
        "unit",
        false,
        "the unit the sensor reports in, default the group's",
        UNIT,
    ),
    field(
        "headers",
        false,
        "HTTP headers sent with each request",
        "a map of header names to values",
    ),
    field(
        "basic_auth",
        false,
        "HTTP basic authentication",
        "a map with username and password or password_file",
    ),
    field(
        "tls",
        false,
        "certificate checks for https",
        "a map with ca_file and/or insecure",
    ),
    field(
        "timeout",
        false,
        "how long a poll of this sensor may take, default timeout",
        DURATION,
    ),
];

const HEADER_VALUE: Field = field("", true, "an HTTP header's value", "text");

const BASIC_AUTH: [Field; 3] = [
    field("username", true, "the user name", "text"),
    field("password", false, "the password (or ${VAR})", "text"),
    field(
        "password_file",
        false,
        "a file holding the password",
        "a file path",
    ),
];

const TLS: [Field; 2] = [
    field(
        "insecure",
        false,
        "skip certificate checks (never in production)",
        "true or false",
    ),
    field(
        "ca_file",
        false,
        "PEM file of the CA that signed the sensor's certificate",
        "a file path",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        read(text)
            .problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}: {}",
                    p.line.unwrap_or(0),
                    p.col.unwrap_or(0),
                    p.key,
                    p.message
                )
            })
            .collect()
    }

    #[test]
    fn aliases_repeat_what_their_anchor_holds() {
        let text = "\
interval: 5s
timeout: 2s
output: { dir: /tmp/x }
groups:
  - name: g
    unit: celsius
    sensors:
      - id: a
        url: http://h/a
        format: text
        headers: &auth { Authorization: t1, X-Site: s }
      - id: b
        url: http://h/b
        format: &fmt json
        value: /t
        headers: *auth
      - id: c
        url: http://h/c
        format: *fmt
        value: /t
";
        let r = read(text);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let sensors = &r.config.groups[0].sensors;
        assert_eq!(sensors.len(), 3);
        assert_eq!(sensors[1].headers.len(), 2);
        assert_eq!(sensors[1].headers["X-Site"].expose(), "s");
        assert_eq!(sensors[2].format, Some(BodyFormat::Json));
    }

    #[test]
    fn every_problem_of_shape_is_reported_with_its_place() {
        let text = "\
interval: 5s
timeout: [2s]
output:
  dir: /tmp/x
  compress: zip
  keep: -1
groups:
  - name: g
    unit: rankine
    sensors:
      - id: a
        tls: { insecure: maybe }
";
        let got = messages(text);
        let want = [
            "2:10: timeout: expected a duration such as 5s, 250ms, 1h, found a list",
            "5:13: output.compress: `zip` is not one of none, gzip",
            "6:9: output.keep: `-1` is not a whole number",
            "9:11: groups[0].unit: `rankine` is not one of celsius, fahrenheit, kelvin",
            "11:9: groups[0].sensors[0]: missing key `url`",
            "11:9: groups[0].sensors[0]: missing key `format`",
            "12:26: groups[0].sensors[0].tls.insecure: `maybe` is not true or false",
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w} not in {got:#?}");
        }
    }

    #[test]
    fn a_second_document_and_broken_yaml_are_named() {
        let got = messages("interval: 5s\n---\ninterval: 6s\n");
        assert!(
            got.iter().any(|g| g.contains("a second YAML document")),
            "{got:?}"
        );
        let r = read("interval: 5s\ngroups: [\n");
        assert!(!r.readable);
        assert!(
            r.problems
                .iter()
                .any(|p| p.message.starts_with("not valid YAML"))
        );
        assert!(!read("").readable);
    }
}
