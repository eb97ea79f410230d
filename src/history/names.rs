//! File names of the history, and the mode its files are created with.
//!
//! The active file has a stable name, `PREFIX.csv`, so `tail -F` keeps
//! working across rotations. A rotated file is named after the time of its
//! first row, `PREFIX-20261124T100000Z.csv` (`.csv.gz` once compressed), so
//! names sort in time order and replay can pick files by name alone. Two
//! files starting in the same second (tiny `max_size`) get `_1`, `_2` ...
//! after the time, which still sorts after the plain name.
//!
//! When `PREFIX.csv` cannot be used (something that is not ours, or not a
//! regular file, stands there), the store never touches it and writes its
//! active file beside it as `PREFIX+1.csv` (`+2`, ... if that is taken too):
//! `+` is not allowed in a prefix, so no other prefix's file has such a
//! name. Such an alternate active file is rotated like the usual one, and the
//! next active file goes back to `PREFIX.csv` if that can be used again.
//! Readers treat every active name ([`parse_active`]) as active.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Mode of created data files: owner read/write, group read (for `tail -F`
/// by an admin group), nothing for others.
pub const FILE_MODE: u32 = 0o640;

/// The active file of `prefix` in `dir`.
pub fn active(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(active_name(prefix))
}

/// The active file's name for `prefix`.
pub fn active_name(prefix: &str) -> String {
    format!("{prefix}.csv")
}

/// The `n`th alternate active file of `prefix` in `dir` (`n` >= 1), for
/// when `PREFIX.csv` cannot be used.
pub fn alternate_active(dir: &Path, prefix: &str, n: u32) -> PathBuf {
    dir.join(format!("{prefix}+{n}.csv"))
}

/// Which active file `name` is: `Some(0)` for `PREFIX.csv`, `Some(n)` for
/// the alternate `PREFIX+n.csv`, `None` for any other name.
pub fn parse_active(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".csv")?;
    if rest.is_empty() {
        return Some(0);
    }
    let n = rest.strip_prefix('+')?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The prefix a history file's name was made with: `readings` for
/// `readings.csv`, `readings+1.csv` and `readings-20261124T100000Z.csv[.gz]`;
/// `None` for names that are none of these. Tells a reader pointed at the
/// wrong prefix which ones the directory holds.
pub fn prefix_of(name: &str) -> Option<&str> {
    if let Some((prefix, _)) = name.rsplit_once('-') {
        if !prefix.is_empty() && parse_rotated(prefix, name).is_some() {
            return Some(prefix);
        }
    }
    let stem = name.strip_suffix(".csv")?;
    let prefix = match stem.split_once('+') {
        Some((prefix, _)) => prefix,
        None => stem,
    };
    (!prefix.is_empty() && parse_active(prefix, name).is_some()).then_some(prefix)
}

/// `20261124T100000Z` for a time.
pub fn compact_time(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The name of a rotated, uncompressed file.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use edge_agent::history::names::{parse_rotated, rotated};
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_514_400);
/// assert_eq!(rotated("readings", t, 0), "readings-20261124T100000Z.csv");
/// assert_eq!(parse_rotated("readings", "readings-20261124T100000Z_1.csv.gz").unwrap().seq, 1);
/// ```
pub fn rotated(prefix: &str, first_row: SystemTime, seq: u32) -> String {
    let time = compact_time(first_row);
    if seq == 0 {
        format!("{prefix}-{time}.csv")
    } else {
        format!("{prefix}-{time}_{seq}.csv")
    }
}

/// What a rotated file's name says about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rotated {
    /// Time of the file's first row.
    pub time: SystemTime,
    pub seq: u32,
    /// `.csv.gz` rather than `.csv`.
    pub gzip: bool,
}

impl Rotated {
    /// The name without `.csv` / `.csv.gz`, shared by both forms of a file.
    pub fn stem(&self, prefix: &str) -> String {
        rotated(prefix, self.time, self.seq)
            .trim_end_matches(".csv")
            .to_string()
    }
}

/// A forward target's cursor: `.PREFIX.forward.TARGET` in the output
/// directory (hidden, beside the indexes; no reader takes it for data).
pub fn forward_cursor(dir: &Path, prefix: &str, target: &str) -> PathBuf {
    dir.join(format!(".{prefix}.forward.{target}"))
}

/// Parse `PREFIX-YYYYMMDDTHHMMSSZ[_N].csv[.gz]`; `None` for other files.
pub fn parse_rotated(prefix: &str, name: &str) -> Option<Rotated> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (rest, gzip) = match rest.strip_suffix(".csv.gz") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".csv")?, false),
    };
    let (time, seq) = match rest.split_once('_') {
        Some((t, n)) => (t, n.parse().ok().filter(|n| *n > 0)?),
        None => (rest, 0),
    };
    let b = time.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| {
        time.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
    };
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    let time = humantime::parse_rfc3339(&rfc).ok()?;
    Some(Rotated { time, seq, gzip })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_a_name_was_made_with() {
        assert_eq!(prefix_of("readings.csv"), Some("readings"));
        assert_eq!(prefix_of("readings+2.csv"), Some("readings"));
        assert_eq!(prefix_of("site-a-20261124T100000Z.csv"), Some("site-a"));
        assert_eq!(
            prefix_of("site-a-20261124T100000Z_3.csv.gz"),
            Some("site-a")
        );
        assert_eq!(prefix_of("site-a.csv"), Some("site-a"));
        for other in [
            "readings.csv.idx",
            "notes.txt",
            ".csv",
            "x+0.csv",
            "x.csv.gz",
        ] {
            assert_eq!(prefix_of(other), None, "{other}");
        }
    }

    #[test]
    fn active_names_and_their_alternates() {
        let dir = Path::new("/d");
        assert_eq!(alternate_active(dir, "r", 2), Path::new("/d/r+2.csv"));
        assert_eq!(parse_active("r", "r.csv"), Some(0));
        assert_eq!(parse_active("r", "r+1.csv"), Some(1));
        assert_eq!(parse_active("r", "r+12.csv"), Some(12));
        for other in [
            "r+.csv",
            "r+01.csv",
            "r+1x.csv",
            "r-1.csv",
            "rr.csv",
            "r.csv.gz",
            "r+1.csv.gz",
        ] {
            assert_eq!(parse_active("r", other), None, "{other}");
        }
        // Another prefix's rotated file is never an alternate of this one.
        assert_eq!(parse_active("r", "r-20261124T100000Z.csv"), None);
    }
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_514_400);
        let name = rotated("readings", t, 0);
        assert_eq!(name, "readings-20261124T100000Z.csv");
        assert_eq!(
            parse_rotated("readings", &name),
            Some(Rotated {
                time: t,
                seq: 0,
                gzip: false
            })
        );
        let gz = format!("{}.gz", rotated("readings", t, 2));
        assert_eq!(
            parse_rotated("readings", &gz),
            Some(Rotated {
                time: t,
                seq: 2,
                gzip: true
            })
        );
        assert!(rotated("r", t, 0) < rotated("r", t, 1));
    }

    #[test]
    fn other_files_are_not_rotated_files() {
        for name in [
            "readings.csv",
            "readings-2026.csv",
            "readings-20261124T100000Z.csv.gz.tmp",
            "other-20261124T100000Z.csv",
            "readings-20261124T100000Z_0.csv",
            "readings-2026112xT100000Z.csv",
        ] {
            assert_eq!(parse_rotated("readings", name), None, "{name}");
        }
    }
}
