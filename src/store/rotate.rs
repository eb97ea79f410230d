//! Rotated files: compression in the background, retention, and clean-up of
//! work a crash interrupted.
//!
//! Compression writes `X.csv.gz.tmp`, fsyncs it, renames it to `X.csv.gz`
//! and only then removes `X.csv`. Whatever moment a crash picks, one complete
//! copy of the rows exists; [`recover`] finishes or restarts the job.
//!
//! Retention removes the files written *first*, by the order the store
//! records in the journal beside them ([`order`]), never by their names:
//! names carry the wall-clock time of a file's first row, and a clock set
//! ahead and then corrected (NTP on a board without a real-time clock) makes
//! names that sort after every file written since. Keeping the newest
//! *names* would then delete each freshly rotated file at once. Files the
//! journal does not list (an older version's, or a lost journal) count as
//! written before all listed ones, oldest name first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::history::index;
use crate::history::names::{self, Rotated, parse_rotated};
use crate::history::order::{self, Order};

use super::holds::{Holds, Needs};

/// Rotated files of `prefix` in `dir`, oldest first: (name info, path).
pub fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<(Rotated, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(r) = parse_rotated(prefix, name) {
            found.push((r, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Finish what a crash interrupted: drop half-written `.gz.tmp` files, indexes
/// whose file is gone, write
/// probes of a killed start (see `config::WRITE_PROBE_PREFIX`) and plain
/// copies whose `.gz` is complete. Returns the plain rotated files that
/// still want compressing (when `gzip` is on).
pub fn recover(dir: &Path, prefix: &str, gzip: bool) -> std::io::Result<Vec<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(crate::config::WRITE_PROBE_PREFIX) {
            tracing::info!(
                "removing {}, left by a start that was killed",
                entry.path().display()
            );
            std::fs::remove_file(entry.path())?;
            continue;
        }
        // An index whose file is gone (removed by hand, or a crash between
        // a rotation's two renames).
        if let Some(data) = index::data_name(name) {
            let ours = names::parse_active(prefix, data).is_some()
                || parse_rotated(prefix, data).is_some();
            let plain = dir.join(data);
            let gz = dir.join(format!("{data}.gz"));
            if ours && !plain.exists() && !gz.exists() {
                tracing::info!("removing {}: its file is gone", entry.path().display());
                std::fs::remove_file(entry.path())?;
            }
            continue;
        }
        if let Some(base) = name.strip_suffix(".gz.tmp") {
            if parse_rotated(prefix, base).is_some() {
                tracing::info!("removing unfinished compression {}", entry.path().display());
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    let files = list(dir, prefix)?;
    let stems: BTreeMap<String, Vec<&(Rotated, PathBuf)>> =
        files.iter().fold(BTreeMap::new(), |mut m, f| {
            m.entry(f.0.stem(prefix)).or_insert_with(Vec::new).push(f);
            m
        });
    let mut pending = Vec::new();
    for copies in stems.values() {
        let has_gz = copies.iter().any(|(r, _)| r.gzip);
        for (r, path) in copies {
            if !r.gzip && has_gz {
                tracing::info!(
                    "removing {}: its compressed copy is complete",
                    path.display()
                );
                std::fs::remove_file(path)?;
            } else if !r.gzip && gzip {
                pending.push(path.clone());
            }
        }
    }
    Ok(pending)
}

/// Rotated files of `prefix` in `dir` in the order they were written,
/// oldest first (see [`order`]).
pub fn list_in_order(dir: &Path, prefix: &str) -> std::io::Result<Vec<(Rotated, PathBuf)>> {
    let mut files = list(dir, prefix)?;
    Order::load(dir, prefix)?.sort(prefix, &mut files);
    Ok(files)
}

/// Remove the rotated files written first so at most `keep` remain. A file
/// counts once whether it is plain, compressed, or (mid-compression) both.
/// When the journal has grown well past the files it lists, it is rewritten
/// without the lines of removed files.
///
/// A file a forward target has not passed ([`Holds`]) is kept while the
/// rotated files stay within the largest `keep_unforwarded` budget of the
/// targets that need it; otherwise it is removed and the rows each target
/// had not sent are counted and logged. While a target is still locating
/// its cursor, nothing is removed (the next rotation retains again).
pub fn retain(dir: &Path, prefix: &str, keep: usize, holds: &Holds) -> std::io::Result<usize> {
    let mut files = list(dir, prefix)?;
    let order = Order::load(dir, prefix)?;
    order.sort(prefix, &mut files);
    // Each file once, with its copies (plain, compressed, or both while it
    // is compressed), in the order written.
    let mut stems: Vec<String> = Vec::new();
    let mut copies: Vec<Vec<&PathBuf>> = Vec::new();
    let mut at_of: HashMap<String, usize> = HashMap::new();
    for (r, path) in &files {
        let stem = r.stem(prefix);
        match at_of.get(&stem) {
            Some(&i) => copies[i].push(path),
            None => {
                at_of.insert(stem.clone(), stems.len());
                stems.push(stem);
                copies.push(vec![path]);
            }
        }
    }
    let excess = stems.len().saturating_sub(keep);
    if excess == 0 {
        return Ok(0);
    }
    let needs = Needs::new(holds, &stems);
    if needs.unknown {
        tracing::debug!("retention waits: a forward target is still locating its cursor");
        return Ok(0);
    }
    let size_of = |paths: &[&PathBuf]| -> u64 {
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    // Sizes only matter to a target's disk budget.
    let mut total: u64 = if needs.any_budget() {
        copies.iter().map(|c| size_of(c)).sum()
    } else {
        0
    };
    let mut removed = 0;
    let mut kept_back = 0;
    let mut gone = HashSet::new();
    for (at, stem) in stems[..excess].iter().enumerate() {
        if needs.budget(at).is_some_and(|budget| total <= budget) {
            kept_back += 1;
            continue;
        }
        let copies = &copies[at];
        // Counted before the file goes: afterwards there is nothing to count.
        let count = |offset: u64| {
            copies
                .last()
                .map_or(0, |p| index::rows_from(p, offset).unwrap_or(0))
        };
        let size = if needs.any_budget() {
            size_of(copies)
        } else {
            0
        };
        let unsent = needs.unsent(at, &count);
        for path in copies {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!("retention: removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        needs.removed(at, stem, unsent);
        if let Some(p) = copies.first() {
            index::remove(p)?;
        }
        total = total.saturating_sub(size);
        gone.insert(stem.clone());
        removed += 1;
    }
    if kept_back > 0 {
        tracing::info!(
            "retention keeps {kept_back} file(s) beyond output.keep: a forward target has not \
             sent them yet (keep_unforwarded)"
        );
    }
    let kept: Vec<&String> = stems.iter().filter(|s| !gone.contains(*s)).collect();
    if order.lines() > 2 * kept.len() + JOURNAL_SLACK {
        let names: Vec<String> = kept.iter().map(|s| format!("{s}.csv")).collect();
        order::rewrite(dir, prefix, &names)?;
    }
    Ok(removed)
}

/// Lines of removed files the journal may hold beyond twice the kept files
/// before it is rewritten.
const JOURNAL_SLACK: usize = 64;

/// Rename `from` to `to` only if nothing exists at `to` (`renameat2` with
/// `RENAME_NOREPLACE`): a rotation never replaces a file, whoever made it.
/// Where the file system does not support that flag, a check then a plain
/// rename.
pub fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// Undo a rotation's rename, `rotated` back to `active`, when no new
/// active file could be made (disk full while writing its header): over
/// nothing, or over the partial header that attempt left, never over a file
/// someone else put at the name (then `AlreadyExists`, and the writer goes
/// on in the file under its rotated name).
pub fn put_back(rotated: &Path, active: &Path) -> std::io::Result<()> {
    match rename_new(rotated, active) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_partial_header(active) => {
            std::fs::rename(rotated, active)
        }
        other => other,
    }
}

/// A regular file holding a start of the header (or all of it), then
/// perhaps zeros: what a failed start of an active file leaves.
fn is_partial_header(path: &Path) -> bool {
    let header = crate::history::HEADER.as_bytes();
    let small_file = std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_file() && m.len() <= header.len() as u64);
    let Some(bytes) = small_file.then(|| std::fs::read(path).ok()).flatten() else {
        return false;
    };
    let text = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    header.starts_with(&bytes[..text]) && bytes[text..].iter().all(|b| *b == 0)
}

/// Compress `path` (a rotated `.csv`) to `path.gz`, then remove `path`.
/// Blocking: run it on the blocking pool.
pub fn gzip(path: &Path) -> std::io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let done = PathBuf::from(&gz_name);
    gz_name.push(".tmp");
    let tmp = PathBuf::from(gz_name);
    let result = (|| {
        let mut src = match std::fs::File::open(path) {
            Ok(f) => f,
            // Retention got there first: nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::history::names::FILE_MODE)
            .open(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(out),
            flate2::Compression::default(),
        );
        std::io::copy(&mut src, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &done)?;
        std::fs::remove_file(path)?;
        Ok(true)
    })();
    match result {
        Ok(true) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Make renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn name(secs: u64, seq: u32) -> String {
        names::rotated(
            "r",
            UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs),
            seq,
        )
    }

    #[test]
    fn rename_new_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&from, "rows").unwrap();
        std::fs::write(&to, "someone's").unwrap();
        let e = rename_new(&from, &to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "someone's");
        assert_eq!(std::fs::read_to_string(&from).unwrap(), "rows");
        std::fs::remove_file(&to).unwrap();
        rename_new(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "rows");
        assert!(!from.exists());
    }

    #[test]
    fn a_rotation_is_put_back_only_over_nothing_or_its_own_partial_header() {
        let dir = tempfile::tempdir().unwrap();
        let (rotated, active) = (dir.path().join(name(0, 0)), dir.path().join("r.csv"));
        let rows = "time,group,mean,min,max,unit,ok,failed\nrow\n";
        std::fs::write(&rotated, rows).unwrap();
        // Someone's file at the name: left alone.
        std::fs::write(&active, "theirs").unwrap();
        let e = put_back(&rotated, &active).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&active).unwrap(), "theirs");
        // The start of a header and zeros: the failed attempt's own file.
        std::fs::write(&active, b"time,gro\0\0").unwrap();
        put_back(&rotated, &active).unwrap();
        assert_eq!(std::fs::read_to_string(&active).unwrap(), rows);
        assert!(!rotated.exists());
        // Nothing at the name.
        std::fs::rename(&active, &rotated).unwrap();
        put_back(&rotated, &active).unwrap();
        assert_eq!(std::fs::read_to_string(&active).unwrap(), rows);
    }

    #[test]
    fn retention_removes_the_files_written_first_whatever_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // An older version's file (not in the journal), then a day ahead,
        // then today again after the correction.
        let old = name(0, 0);
        let ahead = name(86_400, 0);
        let (today, today_1) = (name(600, 0), name(600, 1));
        for n in [&old, &ahead, &today, &today_1] {
            if n != &old {
                order::record(d, "r", n).unwrap();
            }
        }
        for n in [&old, &today] {
            std::fs::write(d.join(n), "x").unwrap();
        }
        // Compressed: matched on the stem.
        for n in [&ahead, &today_1] {
            std::fs::write(d.join(format!("{n}.gz")), "x").unwrap();
        }
        assert_eq!(retain(d, "r", 3, &Holds::default()).unwrap(), 1);
        assert!(!d.join(&old).exists(), "unlisted counts as written first");
        assert_eq!(retain(d, "r", 2, &Holds::default()).unwrap(), 1);
        assert!(!d.join(format!("{ahead}.gz")).exists());
        assert!(d.join(&today).exists() && d.join(format!("{today_1}.gz")).exists());
    }

    /// Four rotated files of 3 rows each (no index: counted line by line).
    fn four_files(d: &Path) -> Vec<String> {
        let names: Vec<String> = (0..4).map(|i| name(600 * i, 0)).collect();
        for (i, n) in names.iter().enumerate() {
            order::record(d, "r", n).unwrap();
            let mut text = crate::history::row::HEADER.to_string();
            for r in 0..3 {
                text.push_str(&format!(
                    "2026-11-24T10:{i:02}:0{r}.000Z,g,1.000,1.000,1.000,celsius,1,0\n"
                ));
            }
            std::fs::write(d.join(n), text).unwrap();
        }
        names
    }

    #[test]
    fn retention_counts_the_rows_a_forward_target_had_not_sent() {
        use crate::store::holds::{Hold, Position};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let names = four_files(d);
        let holds = Holds::default();
        let hold = Hold::new("central", None);
        holds.replace(vec![hold.clone()]);
        // Still locating its cursor: nothing is removed.
        assert_eq!(retain(d, "r", 1, &holds).unwrap(), 0);
        assert!(d.join(&names[0]).exists());
        // In the second file, after its first row (header 39 bytes + one row).
        let row = "2026-11-24T10:01:00.000Z,g,1.000,1.000,1.000,celsius,1,0\n".len() as u64;
        let offset = crate::history::row::HEADER.len() as u64 + row;
        let stem = names[1].trim_end_matches(".csv").to_string();
        hold.set(Position::Rotated {
            stem: stem.clone(),
            offset,
        });
        assert_eq!(retain(d, "r", 1, &holds).unwrap(), 3);
        // File 0 was sent; file 1 had 2 rows unsent, file 2 all 3.
        assert_eq!(hold.lost_rows.load(std::sync::atomic::Ordering::Relaxed), 5);
        assert_eq!(
            hold.lost_files.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert!(hold.last_loss().is_some());
        assert_eq!(
            hold.take_removed(),
            Some(stem),
            "the target is told its file went"
        );
        assert!(d.join(&names[3]).exists());
    }

    #[test]
    fn keep_unforwarded_keeps_unsent_files_within_its_budget() {
        use crate::store::holds::{Hold, Position};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let names = four_files(d);
        let size = std::fs::metadata(d.join(&names[0])).unwrap().len();
        let holds = Holds::default();
        // Needs every file; the budget holds all four.
        let hold = Hold::new("central", Some(4 * size));
        holds.replace(vec![hold.clone()]);
        let stem = names[0].trim_end_matches(".csv").to_string();
        hold.set(Position::Rotated { stem, offset: 0 });
        assert_eq!(retain(d, "r", 1, &holds).unwrap(), 0);
        assert!(names.iter().all(|n| d.join(n).exists()));
        // A budget of three files: the oldest goes, counted.
        let holds = Holds::default();
        let tight = Hold::new("central", Some(3 * size));
        holds.replace(vec![tight.clone()]);
        tight.set(hold.position());
        assert_eq!(retain(d, "r", 1, &holds).unwrap(), 1);
        assert_eq!(
            tight.lost_rows.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert!(!d.join(&names[0]).exists() && d.join(&names[1]).exists());
        // A target in the active file needs none of them.
        tight.set(Position::Active {
            id: (0, 0),
            offset: 0,
        });
        assert_eq!(retain(d, "r", 1, &holds).unwrap(), 2);
        assert_eq!(
            tight.lost_rows.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn the_journal_is_rewritten_once_it_has_grown() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for i in 0..(2 + JOURNAL_SLACK as u64 + 10) {
            let n = name(i * 60, 0);
            order::record(d, "r", &n).unwrap();
            std::fs::write(d.join(&n), "x").unwrap();
            retain(d, "r", 1, &Holds::default()).unwrap();
        }
        let order = Order::load(d, "r").unwrap();
        assert!(
            order.lines() <= 2 + JOURNAL_SLACK + 1,
            "{} lines",
            order.lines()
        );
        let left = list(d, "r").unwrap();
        assert_eq!(left.len(), 1);
        assert!(
            order.key("r", &left[0].0).0.is_some(),
            "the kept file is listed"
        );
    }
}
