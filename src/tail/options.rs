//! What `tail` is asked to show, and which rows that means.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::history::row::{Record, csv_line};

/// What to show.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub dir: PathBuf,
    pub prefix: String,
    /// Rows shown before following.
    pub lines: usize,
    pub follow: bool,
    /// Only these groups (all when empty).
    pub groups: Vec<String>,
    /// Only rows at or after this time (`--since`, read by
    /// [`crate::replay::parse_when`] as for replay).
    pub since: Option<SystemTime>,
    /// How often to look for new rows when following.
    pub poll: Duration,
}

impl TailOptions {
    /// Whether `record` is in a wanted group, and not before `since`.
    pub fn wants(&self, record: &Record) -> bool {
        (self.groups.is_empty() || self.groups.contains(&record.row.group))
            && self.since.is_none_or(|s| record.row.time >= s)
    }
}

/// A line (with its newline) read back as a row; `None` for anything else
/// (a header, a foreign or damaged line).
pub fn parse_line(line: &[u8]) -> Option<Record> {
    Record::from_line(std::str::from_utf8(line).ok()?).ok()
}

/// A row's line, as recorded.
pub fn line_of(record: &Record) -> Vec<u8> {
    let mut line = Vec::with_capacity(80);
    csv_line(&record.view(), &mut line);
    line
}

/// A row's time as the files write it, for messages.
pub fn shown_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
