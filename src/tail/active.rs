//! Which active file the writer appends to.
//!
//! The writer's file is `PREFIX.csv`, unless something that is not ours
//! stands there (another program's file, a directory): then it writes
//! `PREFIX+1.csv` (`+2`, ... if that is taken too; see
//! [`crate::history::names`]). Readers apply the same rule: the first of
//! these names that holds a regular file starting with the header (or a
//! start of it: a file being created) is the writer's.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::history::names;
use crate::history::row::HEADER;

/// (device, inode): a file whatever its name.
pub type FileId = (u64, u64);

/// The active file the writer appends to, if there is one.
pub fn writer_active(dir: &Path, prefix: &str) -> std::io::Result<Option<PathBuf>> {
    let usual = names::active(dir, prefix);
    if holds_ours(&usual) {
        return Ok(Some(usual));
    }
    let mut alternates = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // The directory is gone (for now): no active file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n @ 1..) = names::parse_active(prefix, name) {
            alternates.push((n, entry.path()));
        }
    }
    alternates.sort();
    Ok(alternates
        .into_iter()
        .map(|(_, path)| path)
        .find(|path| holds_ours(path)))
}

/// The identity of the file at `path` now, if any.
pub fn id_of(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `path` is a regular file that starts with the header, or with
/// a start of it.
fn holds_ours(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::with_capacity(HEADER.len());
    match file.take(HEADER.len() as u64).read_to_end(&mut head) {
        Ok(_) => HEADER.as_bytes().starts_with(&head),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_active_name_that_is_ours_is_the_writers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(writer_active(d, "r").unwrap(), None);
        std::fs::write(d.join("r+2.csv"), HEADER).unwrap();
        assert_eq!(writer_active(d, "r").unwrap(), Some(d.join("r+2.csv")));
        // Someone else's file under the usual name, ours beside it.
        std::fs::write(d.join("r.csv"), "id,name\n1,x\n").unwrap();
        std::fs::write(d.join("r+1.csv"), &HEADER[..5]).unwrap();
        assert_eq!(writer_active(d, "r").unwrap(), Some(d.join("r+1.csv")));
        std::fs::remove_file(d.join("r.csv")).unwrap();
        std::fs::create_dir(d.join("r.csv")).unwrap();
        assert_eq!(writer_active(d, "r").unwrap(), Some(d.join("r+1.csv")));
        std::fs::remove_dir(d.join("r.csv")).unwrap();
        // A file being created is empty for a moment.
        std::fs::write(d.join("r.csv"), "").unwrap();
        assert_eq!(writer_active(d, "r").unwrap(), Some(d.join("r.csv")));
    }
}
