//! What a replay is asked to do: which files, which rows, in what form.

use std::path::PathBuf;
use std::time::SystemTime;

use super::format::Format;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub prefix: String,
    /// Rows at or after this time.
    pub since: Option<SystemTime>,
    /// Rows before this time.
    pub until: Option<SystemTime>,
    /// Only these groups (all when empty).
    pub groups: Vec<String>,
    pub format: Format,
    /// Measurement name of the influx format.
    pub measurement: String,
    /// `None`: as fast as possible; `Some(x)`: x times the recorded pace.
    pub speed: Option<f64>,
    /// Bytes read from a file at a time.
    pub chunk_size: usize,
}
