//! Which files may hold a time range: from their names, unless a wrong clock
//! made the name.
//!
//! A rotated file is named after the time of its first row, so file `i`
//! holds rows from about its own time up to the next file's time, and
//! selection needs no file to be opened. A slack of an hour on both sides
//! keeps the files whose rows came out of order: a long window's row is
//! written when the window closes, into a file that may be named after a
//! later row.
//!
//! A name only means something if the clock was right. On a board whose
//! clock stepped (no real-time clock, NTP syncing after boot), rows written
//! while the clock was ahead give files named in the future, and the rows
//! written after the correction go on into the file that was active then.
//! So these files are always read and their rows selected by their own
//! times, never skipped by name:
//! - the active files, `PREFIX.csv` and its alternates `PREFIX+N.csv`;
//! - a rotated file named after a time later than now (future-dated);
//! - a rotated file the name rule would skip that was last modified before
//!   the time in its name: the clock went back while it was written (this
//!   still tells once real time has passed a future-dated name).
//!
//! Rotated files come out in name order (a future-dated file therefore
//! after every file named before it, even those written after it), then the
//! active files, `PREFIX.csv` first, then `PREFIX+1.csv`, ...

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::history::names::{self, Rotated};

/// Rows may be written up to this long before the time a file is named
/// after, or after the next file's.
const SLACK: Duration = Duration::from_secs(3600);

/// File systems with coarse times (FAT: 2 s) may record a modification a
/// little before the row that made it.
const MTIME_GRAIN: Duration = Duration::from_secs(2);

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub gzip: bool,
    /// Time of the first row, from the name; `None` for an active file.
    pub start: Option<SystemTime>,
    /// Why the name says nothing of the rows' times, when a wrong clock
    /// made it.
    pub wrong_name: Option<WrongName>,
}

/// How a rotated file's name shows that the clock was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongName {
    /// Named after a time later than `now`: written while the clock was
    /// ahead.
    Future { now: SystemTime },
    /// Last modified at `modified`, before the time it is named after: the
    /// clock went back while it was written.
    WrittenBefore { modified: SystemTime },
}

impl Source {
    /// What the operator should hear about a file whose name a wrong clock
    /// made, without what the reader then does with it.
    pub fn wrong_name_note(&self) -> Option<String> {
        let (start, wrong) = (self.start?, self.wrong_name?);
        let named = humantime::format_rfc3339_seconds(start);
        Some(match wrong {
            WrongName::Future { now } => format!(
                "{} is named after {named}, later than now ({}): the clock was probably \
                 wrong when it was written",
                self.path.display(),
                humantime::format_rfc3339_seconds(now)
            ),
            WrongName::WrittenBefore { modified } => format!(
                "{} is named after {named} but was last written at {}, before that: the \
                 clock went back while it was written",
                self.path.display(),
                humantime::format_rfc3339_seconds(modified)
            ),
        })
    }
}

/// The files of `prefix` in `dir` that may hold rows in `[since, until)`:
/// rotated files in name order, then the active files. A rotated file
/// present both plain and compressed (compression in progress) is read
/// once, from the plain copy.
pub fn sources(
    dir: &Path,
    prefix: &str,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
) -> std::io::Result<Vec<Source>> {
    sources_at(dir, prefix, since, until, SystemTime::now())
}

/// [`sources`] with the time taken for now.
pub fn sources_at(
    dir: &Path,
    prefix: &str,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    now: SystemTime,
) -> std::io::Result<Vec<Source>> {
    let mut rotated: Vec<(Rotated, PathBuf)> = Vec::new();
    let mut active: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(r) = names::parse_rotated(prefix, name) {
            rotated.push((r, entry.path()));
        } else if let Some(n) = names::parse_active(prefix, name) {
            active.push((n, entry.path()));
        }
    }
    // Plain before gzip for the same stem, then drop the duplicate.
    rotated.sort();
    rotated.dedup_by(|b, a| a.0.time == b.0.time && a.0.seq == b.0.seq);
    let mut out = Vec::new();
    for (i, (r, path)) in rotated.iter().enumerate() {
        let end = rotated.get(i + 1).map(|(next, _)| next.time);
        let starts_in_time = until.is_none_or(|u| r.time < u + SLACK);
        let ends_in_time = match (since, end) {
            (Some(s), Some(e)) => e + SLACK > s,
            _ => true,
        };
        let wrong_name = if r.time > now {
            Some(WrongName::Future { now })
        } else if starts_in_time && ends_in_time {
            // Read anyway: whatever the clock did, its rows are filtered.
            None
        } else {
            written_before(path, r.time)
        };
        if (starts_in_time && ends_in_time) || wrong_name.is_some() {
            out.push(Source {
                path: path.clone(),
                gzip: r.gzip,
                start: Some(r.time),
                wrong_name,
            });
        }
    }
    active.sort();
    out.extend(active.into_iter().map(|(_, path)| Source {
        path,
        gzip: false,
        start: None,
        wrong_name: None,
    }));
    Ok(out)
}

/// `Some` when `path` was last modified before `named`, the time of its
/// first row: only a clock that went back can do that.
fn written_before(path: &Path, named: SystemTime) -> Option<WrongName> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    (modified + MTIME_GRAIN < named).then_some(WrongName::WrittenBefore { modified })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 2026-11-24T10:00:00Z plus `secs`.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs)
    }

    /// An empty file last modified after every name of these tests.
    fn touch(dir: &Path, name: &str) {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_modified(at(72 * 3600)).unwrap();
    }

    fn picked(
        dir: &Path,
        since: Option<SystemTime>,
        until: Option<SystemTime>,
        now: SystemTime,
    ) -> Vec<String> {
        sources_at(dir, "r", since, until, now)
            .unwrap()
            .iter()
            .map(|s| s.path.file_name().unwrap().to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn names_pick_files_and_active_files_always_come_last() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "r-20261124T100000Z.csv",
            "r-20261124T120000Z.csv.gz",
            "r-20261124T140000Z.csv",
            "r.csv",
            "r+2.csv",
            "r+1.csv",
            "other.csv",
            "r+01.csv",
        ] {
            touch(d, name);
        }
        let now = at(10 * 3600);
        let all = picked(d, None, None, now);
        assert_eq!(
            all,
            [
                "r-20261124T100000Z.csv",
                "r-20261124T120000Z.csv.gz",
                "r-20261124T140000Z.csv",
                "r.csv",
                "r+1.csv",
                "r+2.csv"
            ]
        );
        // --since 15:00: the 12:00 file ends at 14:00, past the slack.
        assert_eq!(
            picked(d, Some(at(5 * 3600)), None, now),
            ["r-20261124T140000Z.csv", "r.csv", "r+1.csv", "r+2.csv"]
        );
        // --until 11:30: the 12:00 file may hold a long window's earlier
        // row; the 14:00 one is past the slack; the active files are read
        // whatever their neighbours' names.
        assert_eq!(
            picked(d, None, Some(at(5400)), now),
            [
                "r-20261124T100000Z.csv",
                "r-20261124T120000Z.csv.gz",
                "r.csv",
                "r+1.csv",
                "r+2.csv"
            ]
        );
    }

    #[test]
    fn future_dated_files_are_read_whatever_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "r-20261124T100000Z.csv",
            "r-20261125T100000Z.csv",
            "r-20261125T110000Z.csv.gz",
            "r.csv",
        ] {
            touch(d, name);
        }
        // Now is 2026-11-24T10:30Z: the two files of the 25th are future.
        let now = at(1800);
        let got = sources_at(d, "r", None, Some(at(1200)), now).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|s| (s.path.file_name().unwrap().to_str().unwrap(), s.wrong_name))
            .collect();
        let future = Some(WrongName::Future { now });
        assert_eq!(
            names,
            [
                ("r-20261124T100000Z.csv", None),
                ("r-20261125T100000Z.csv", future),
                ("r-20261125T110000Z.csv.gz", future),
                ("r.csv", None)
            ]
        );
        assert_eq!(
            got[1].wrong_name_note().unwrap(),
            format!(
                "{} is named after 2026-11-25T10:00:00Z, later than now \
                 (2026-11-24T10:30:00Z): the clock was probably wrong when it was written",
                d.join("r-20261125T100000Z.csv").display()
            )
        );
        assert_eq!(got[0].wrong_name_note(), None);
        assert_eq!(got[3].wrong_name_note(), None);
    }

    #[test]
    fn a_file_last_written_before_its_name_is_read_whatever_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["r-20261124T100000Z.csv", "r-20261124T120000Z.csv", "r.csv"] {
            touch(d, name);
        }
        // The 12:00 file was last written at 10:30: the clock went back.
        let back = std::fs::File::options()
            .write(true)
            .open(d.join("r-20261124T120000Z.csv"))
            .unwrap();
        back.set_modified(at(1800)).unwrap();
        let old = std::fs::File::options()
            .write(true)
            .open(d.join("r-20261124T100000Z.csv"))
            .unwrap();
        old.set_modified(at(3000)).unwrap();
        let now = at(48 * 3600);
        let got = sources_at(d, "r", None, Some(at(60)), now).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].wrong_name, None);
        assert_eq!(
            got[1].wrong_name,
            Some(WrongName::WrittenBefore { modified: at(1800) })
        );
        assert!(
            got[1]
                .wrong_name_note()
                .unwrap()
                .ends_with("is named after 2026-11-24T12:00:00Z but was last written at 2026-11-24T10:30:00Z, before that: the clock went back while it was written"),
            "{:?}",
            got[1].wrong_name_note()
        );
        // A file the range wants anyway is not looked at.
        let got = sources_at(d, "r", None, None, now).unwrap();
        assert!(got.iter().all(|s| s.wrong_name.is_none()));
    }
}
