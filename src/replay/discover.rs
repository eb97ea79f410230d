//! Which files hold a time range, from their names alone.
//!
//! A rotated file is named after the time of its first row, so file `i`
//! holds rows from its own time up to the next file's time, and the active
//! file holds rows from the newest rotated file's end on. Selection needs no
//! file to be opened. A little slack before `since` keeps the file whose
//! rows were closed late (a long window whose last tick was skipped).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::history::names::{self, Rotated};

/// Rows may be written up to this long after a later-named file started.
const SLACK: Duration = Duration::from_secs(3600);

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub gzip: bool,
    /// Time of the first row, from the name; `None` for the active file.
    pub start: Option<SystemTime>,
}

/// The files of `prefix` in `dir` that may hold rows in `[since, until)`,
/// oldest first, the active file last. A rotated file present both plain and
/// compressed (compression in progress) is read once, from the plain copy.
pub fn sources(
    dir: &Path,
    prefix: &str,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
) -> std::io::Result<Vec<Source>> {
    let mut rotated: Vec<(Rotated, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(r) = names::parse_rotated(prefix, name) {
            rotated.push((r, entry.path()));
        }
    }
    // Plain before gzip for the same stem, then drop the duplicate.
    rotated.sort();
    rotated.dedup_by(|b, a| a.0.time == b.0.time && a.0.seq == b.0.seq);
    let mut out = Vec::new();
    for (i, (r, path)) in rotated.iter().enumerate() {
        let end = rotated.get(i + 1).map(|(next, _)| next.time);
        let starts_in_time = until.is_none_or(|u| r.time < u);
        let ends_in_time = match (since, end) {
            (Some(s), Some(e)) => e + SLACK > s,
            _ => true,
        };
        if starts_in_time && ends_in_time {
            out.push(Source {
                path: path.clone(),
                gzip: r.gzip,
                start: Some(r.time),
            });
        }
    }
    let active = names::active(dir, prefix);
    let newest = rotated.last().map(|(r, _)| r.time);
    let active_in_time = match (until, newest) {
        (Some(u), Some(n)) => n < u + SLACK,
        _ => true,
    };
    if active.exists() && active_in_time {
        out.push(Source {
            path: active,
            gzip: false,
            start: None,
        });
    }
    Ok(out)
}
