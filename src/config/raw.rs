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
