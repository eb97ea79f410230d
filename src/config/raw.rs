//! The `agent.yaml` schema exactly as written by the user.
//!
//! These structs only describe the shape of the file: serde rejects unknown
//! keys and wrong types here, with the YAML position. Everything that needs
//! more than one field, the environment or the file system to judge is done
//! in [`super::validate`], which turns these into the resolved [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{Secret, SizeText};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub interval: String,
    pub timeout: String,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default = "default_limit_per_host")]
    pub limit_per_host: usize,
    /// Largest response body accepted from a sensor (default 64 KiB).
    pub max_body: Option<SizeText>,
    /// `off`, or `{ after: 3, max: 10x }` (the default).
    #[serde(default)]
    pub backoff: RawBackoff,
    pub output: RawOutput,
    pub groups: Vec<RawGroup>,
    /// Optional `/metrics` and `/healthz` listener.
    pub metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoffMap {
    pub after: Option<u64>,
    /// `10x` (intervals) or a duration; any YAML value, judged in validation.
    pub max: Option<serde_yaml_ng::Value>,
}

impl<'de> Deserialize<'de> for RawBackoff {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawBackoff;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`off` or a map such as { after: 3, max: 10x }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawBackoff, E> {
                Ok(RawBackoff::Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawBackoff, E> {
                Ok(RawBackoff::Flag(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawBackoff, A::Error> {
                let map = serde::de::value::MapAccessDeserializer::new(map);
                RawBackoffMap::deserialize(map).map(RawBackoff::Map)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn default_limit() -> usize {
    100
}
fn default_limit_per_host() -> usize {
    25
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub dir: PathBuf,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub rotate: RawRotate,
    #[serde(default = "default_keep")]
    pub keep: usize,
    #[serde(default)]
    pub compress: Compress,
    #[serde(default = "default_fsync")]
    pub fsync: String,
    /// Decimals written for mean/min/max.
    #[serde(default = "default_decimals")]
    pub decimals: usize,
    /// Batches (one per cycle) the writer may fall behind before rows are dropped.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_prefix() -> String {
    "readings".into()
}
fn default_keep() -> usize {
    168
}
fn default_fsync() -> String {
    "rotate".into()
}
fn default_decimals() -> usize {
    3
}
fn default_queue() -> usize {
    1024
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotate {
    pub max_size: Option<SizeText>,
    pub every: Option<String>,
}

/// What to do with rotated files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    #[default]
    None,
    Gzip,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: String,
    pub unit: Unit,
    pub window: Option<String>,
    pub sensors: Vec<RawSensor>,
}

pub use crate::history::row::Unit;

/// How a sensor's response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    Json,
    Prometheus,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensor {
    pub id: String,
    pub url: String,
    pub format: BodyFormat,
    pub value: Option<String>,
    pub unit: Option<Unit>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    pub basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    pub tls: RawTls,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
}
