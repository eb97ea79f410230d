//! Which file is the active one, and whether the open file still is.
//!
//! Other programs and operators touch the output directory: `logrotate`
//! moves the active file away (`create`) or copies and truncates it
//! (`copytruncate`), someone removes it or the whole directory, or puts a
//! file or directory of theirs at its name. The writer appends through an
//! open descriptor, so without a look it would go on writing into a moved
//! or deleted file, or after a truncation into a file without a header.
//!
//! So before each batch the writer compares the path with the open file:
//! one `lstat` of the path, set against the identity (device, inode) the
//! file had when it was opened and the length the writer knows it wrote
//! ([`look`], [`compare`]). Whatever differs ([`Seen`]) is logged once and
//! the active file is opened anew by [`open_active`]:
//! - moved away or deleted: the moved file is the operator's now and is
//!   left as it is; a new active file with its header starts at the path;
//! - truncated: the file is adopted again (see `file.rs`: the header goes
//!   before whatever rows came in since the truncation);
//! - something that is not ours at the name (a foreign file, a directory, a
//!   fifo, a symlink): never opened for writing, renamed or touched; the
//!   store writes to the alternate name `PREFIX+1.csv` (`+2`, ... if that is
//!   taken too, see `history::names`) and goes back to `PREFIX.csv` at the
//!   next rotation once that can be used.
//!
//! A batch whose `write` is under way at the very moment of a `mv` or `rm`
//! still lands in the moved or deleted file: the look comes before each
//! write, not during it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::disk::{Disk, blocking};
use super::error::StoreError;
use super::file::ActiveFile;
use super::rotate::rename_new;
use crate::history::index;
use crate::history::names;
use crate::history::order;

/// Alternate active names tried (`PREFIX+1.csv` up to this) before giving up.
pub const MAX_ALTERNATES: u32 = 9;

/// What the path of the active file shows, set against the open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The same file, as long as the writer made it.
    Same,
    /// The same file, shorter than written (`copytruncate`, `> file`).
    Truncated { size: u64 },
    /// The same file, longer than written: someone else appended to it.
    Grown { size: u64 },
    /// Nothing at the path (moved away, deleted, or the directory removed).
    Gone,
    /// Another file or something else at the path (moved away, then the
    /// name reused, e.g. by `logrotate`'s `create`).
    Replaced,
}

/// What `lstat` of the path found, where it found a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtPath {
    pub id: (u64, u64),
    pub regular: bool,
    pub size: u64,
}

/// The decision itself: `ours` is the open file's identity, `written` the
/// length the writer knows it has (longer is fine while a failed write's
/// bytes wait to be cut, `torn`), `now` what is at the path.
pub fn compare(ours: (u64, u64), written: u64, torn: bool, now: Option<AtPath>) -> Seen {
    let Some(now) = now else { return Seen::Gone };
    if now.id != ours || !now.regular {
        return Seen::Replaced;
    }
    if now.size < written {
        Seen::Truncated { size: now.size }
    } else if now.size > written && !torn {
        Seen::Grown { size: now.size }
    } else {
        Seen::Same
    }
}

/// One `lstat` of the active file's path, compared with the open file.
/// (The file is read before the future starts: it is not `Sync`.)
pub fn look(active: &ActiveFile) -> impl Future<Output = std::io::Result<Seen>> + use<> {
    let (id, written, torn) = (active.id(), active.size(), active.is_torn());
    let path = active.path().to_path_buf();
    async move {
        let now = match tokio::fs::symlink_metadata(path).await {
            Ok(m) => Some(AtPath {
                id: (m.dev(), m.ino()),
                regular: m.file_type().is_file(),
                size: m.len(),
            }),
            Err(e) if is_gone(&e) => None,
            Err(e) => return Err(e),
        };
        Ok(compare(id, written, torn, now))
    }
}

/// Not there: the name (ENOENT) or a directory on the way (ENOTDIR).
fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// The one log line for what happened to the active file at `path` (whose
/// open file has `links` names left, if known; `dir_gone`: its directory,
/// when that is gone too) and what the store does about it.
pub fn describe(
    seen: Seen,
    path: &Path,
    written: u64,
    links: Option<u64>,
    dir_gone: Option<&Path>,
) -> String {
    let p = path.display();
    match (seen, links) {
        (Seen::Same, _) => format!("{p} is as the agent left it"),
        (Seen::Truncated { size }, _) => format!(
            "{p} was cut from {written} to {size} byte(s) by another program (logrotate's \
             copytruncate?): writing on in it, with the header first"
        ),
        (Seen::Grown { size }, _) => format!(
            "{p} grew by {} byte(s) that the agent did not write: checking it as at a start \
             (a partial line, or lines that are not rows, at its end are cut)",
            size - written
        ),
        (Seen::Gone, _) if dir_gone.is_some() => format!(
            "{} was removed, and {p} with it: making the directory again",
            dir_gone.unwrap_or(path).display()
        ),
        (Seen::Gone | Seen::Replaced, Some(0)) => {
            format!("{p} was deleted by another program (with the rows in it): starting a new {p}")
        }
        (Seen::Gone, _) => format!(
            "{p} was moved away by another program (logrotate?): the moved file is left as it \
             is, no longer written to; starting a new {p}"
        ),
        (Seen::Replaced, _) => format!(
            "{p} was moved away by another program and the name is taken again: the moved file \
             is left as it is, no longer written to; opening what is at {p} now"
        ),
    }
}

/// The active file opened, and the names passed over on the way.
pub struct Chosen {
    pub file: ActiveFile,
    /// Why each name before the chosen one could not be used.
    pub passed: Vec<StoreError>,
}

/// Open the active file of `prefix` in `dir`: `PREFIX.csv` if it can be
/// used, else the first alternate `PREFIX+N.csv` that can. What is not
/// ours is passed over untouched.
pub async fn open_active(disk: &dyn Disk, dir: &Path, prefix: &str) -> Result<Chosen, StoreError> {
    let mut passed = Vec::new();
    for n in 0..=MAX_ALTERNATES {
        let path = candidate(dir, prefix, n);
        match ActiveFile::open(disk, &path).await {
            Ok(file) => return Ok(Chosen { file, passed }),
            Err(e) if e.is_not_ours() => passed.push(e),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::NoActiveFile {
        dir: dir.to_path_buf(),
        first: candidate(dir, prefix, 0),
        last: candidate(dir, prefix, MAX_ALTERNATES),
    })
}

fn candidate(dir: &Path, prefix: &str, n: u32) -> PathBuf {
    if n == 0 {
        names::active(dir, prefix)
    } else {
        names::alternate_active(dir, prefix, n)
    }
}

/// True when `path` has one of the active names of `prefix` (the usual one
/// or an alternate).
pub fn is_active_name(path: &Path, prefix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| names::parse_active(prefix, n).is_some())
}

/// A free rotated name in `dir` for a file whose first row is at `start`:
/// neither it nor its `.gz` exists.
pub async fn rotated_path(dir: &Path, prefix: &str, start: SystemTime) -> PathBuf {
    let mut seq = 0;
    loop {
        let name = names::rotated(prefix, start, seq);
        let plain = dir.join(&name);
        let gz = dir.join(format!("{name}.gz"));
        if !tokio::fs::try_exists(&plain).await.unwrap_or(true)
            && !tokio::fs::try_exists(&gz).await.unwrap_or(true)
        {
            return plain;
        }
        seq += 1;
    }
}

/// At start: alternate active files of ours that an earlier run left and
/// that are not the one chosen now become rotated files (with their index),
/// so no active file is left behind that nothing writes to; one holding
/// only the header is removed. Files that are not ours are left alone.
pub async fn finish_alternates(
    disk: &dyn Disk,
    dir: &Path,
    prefix: &str,
    chosen: &Path,
) -> Result<(), StoreError> {
    let io = |action, source| StoreError::Io {
        path: dir.to_path_buf(),
        action,
        source,
    };
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| io("read directory", e))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| io("read directory", e))?
    {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if names::parse_active(prefix, name).is_some_and(|n| n > 0) && entry.path() != chosen {
            found.push(entry.path());
        }
    }
    for path in found {
        let file = match ActiveFile::open(disk, &path).await {
            Ok(f) => f,
            Err(e) if e.is_not_ours() => continue,
            Err(e) => return Err(e),
        };
        let Some(start) = file.first_row().filter(|_| file.has_rows()) else {
            drop(file);
            let p = path.clone();
            blocking(move || {
                std::fs::remove_file(&p)?;
                index::remove(&p)
            })
            .await
            .map_err(|e| io("remove", e))?;
            tracing::info!(
                "removed {}, an alternate active file of an earlier run with no rows",
                path.display()
            );
            continue;
        };
        drop(file);
        let target = rotated_path(dir, prefix, start).await;
        let (from, to) = (path.clone(), target.clone());
        let (files, prefix_of) = (dir.to_path_buf(), prefix.to_string());
        blocking(move || {
            // The index is completed first: the file is closed for good.
            let _ = index::update(&from, true);
            // The last file the earlier run wrote: last in the order of
            // writing, as any rotation (the journal before the rename).
            let name = to.file_name().map(|n| n.to_string_lossy().into_owned());
            order::record(&files, &prefix_of, &name.unwrap_or_default())?;
            rename_new(&from, &to)?;
            index::rename(&from, &to)
        })
        .await
        .map_err(|e| io("rotate", e))?;
        tracing::info!(
            "rotated {} (an alternate active file of an earlier run) to {}",
            path.display(),
            target.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: (u64, u64) = (1, 42);

    fn at(id: (u64, u64), size: u64) -> Option<AtPath> {
        Some(AtPath {
            id,
            regular: true,
            size,
        })
    }

    #[test]
    fn the_path_is_compared_by_identity_then_size() {
        assert_eq!(compare(OURS, 100, false, at(OURS, 100)), Seen::Same);
        assert_eq!(compare(OURS, 100, false, None), Seen::Gone);
        // logrotate's create: moved away, a new file at the name.
        assert_eq!(compare(OURS, 100, false, at((1, 43), 0)), Seen::Replaced);
        // Same inode number on another device is another file.
        assert_eq!(compare(OURS, 100, false, at((2, 42), 100)), Seen::Replaced);
        let dir = Some(AtPath {
            id: OURS,
            regular: false,
            size: 4096,
        });
        assert_eq!(compare(OURS, 100, false, dir), Seen::Replaced);
        // copytruncate, with or without a row written since.
        assert_eq!(
            compare(OURS, 100, false, at(OURS, 0)),
            Seen::Truncated { size: 0 }
        );
        assert_eq!(
            compare(OURS, 100, false, at(OURS, 60)),
            Seen::Truncated { size: 60 }
        );
        assert_eq!(
            compare(OURS, 100, false, at(OURS, 130)),
            Seen::Grown { size: 130 }
        );
        // A failed write's bytes are still there until they are cut.
        assert_eq!(compare(OURS, 100, true, at(OURS, 130)), Seen::Same);
        assert_eq!(
            compare(OURS, 100, true, at(OURS, 10)),
            Seen::Truncated { size: 10 }
        );
    }

    #[test]
    fn each_change_is_described_with_the_path_and_what_happens_next() {
        let p = Path::new("/d/r.csv");
        let moved = describe(Seen::Gone, p, 100, Some(1), None);
        assert!(moved.contains("/d/r.csv was moved away"), "{moved}");
        let deleted = describe(Seen::Gone, p, 100, Some(0), None);
        assert!(deleted.contains("was deleted"), "{deleted}");
        let dir = describe(Seen::Gone, p, 100, Some(0), Some(Path::new("/d")));
        assert!(dir.starts_with("/d was removed"), "{dir}");
        let cut = describe(Seen::Truncated { size: 0 }, p, 100, None, None);
        assert!(cut.contains("from 100 to 0 byte(s)"), "{cut}");
        assert!(is_active_name(Path::new("/d/r+2.csv"), "r"));
        assert!(!is_active_name(Path::new("/d/r-20261124T100000Z.csv"), "r"));
    }
}
