//! One agent per output directory: an exclusive `flock` on a hidden lock
//! file there, held for as long as the store writes.
//!
//! Why: two agents on one directory (the service plus a manual
//! `edge-agent run` of the same config) would each append every row, and
//! race each other at rotation. The second one is refused at start with
//! the directory and the first one's pid.
//!
//! The lock file is `.edge-agent.lock` (mode 0640): hidden, and no data,
//! index or probe name, so retention, replay and the start-up clean-up
//! pass it by. It is never deleted (deleting a lock file someone else is
//! about to lock is how two processes end up holding "the" lock); the
//! holder writes its pid into it, for the message of the one refused. The
//! kernel drops the lock when the holder's process ends, however it ends.
//! Readers (`tail`, `replay`, `check`) take no lock.
//!
//! Within one process a directory's lock is shared: a reload that moves the
//! output to another prefix in the same directory opens its store while
//! the old one still runs, and must not be refused by itself. A reload to
//! another directory locks the new one before the old store closes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use rustix::fs::{FlockOperation, flock};

use super::error::StoreError;
use crate::history::names::FILE_MODE;
use crate::sync::lock;

/// Name of the lock file in the output directory.
pub const LOCK_FILE: &str = ".edge-agent.lock";

/// A held lock on one lock file, shared by the stores of this process.
#[derive(Debug)]
struct Held {
    /// Keeps the lock: the kernel releases it when this is closed.
    _file: File,
    /// (device, inode) of the locked file.
    id: (u64, u64),
}

/// Locks this process holds (one per output directory in use: a few).
static HELD: Mutex<Vec<Weak<Held>>> = Mutex::new(Vec::new());

/// The lock on an output directory, released when the last holder drops.
#[derive(Debug, Clone)]
pub struct DirLock {
    dir: PathBuf,
    held: Arc<Held>,
}

impl DirLock {
    /// Lock `dir` (which exists), or say which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let io = |action, source| StoreError::Io {
            path: path.clone(),
            action,
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| io("open the lock file", e))?;
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        let id = (meta.dev(), meta.ino());
        let mut held = lock(&HELD);
        held.retain(|h| h.strong_count() > 0);
        if let Some(h) = held.iter().filter_map(Weak::upgrade).find(|h| h.id == id) {
            return Ok(DirLock {
                dir: dir.to_path_buf(),
                held: h,
            });
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    lock: path.clone(),
                    pid: holder_pid(&mut file),
                });
            }
            Err(e) => return Err(io("lock", e.into())),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| io("write the pid into", e))?;
        let h = Arc::new(Held { _file: file, id });
        held.push(Arc::downgrade(&h));
        Ok(DirLock {
            dir: dir.to_path_buf(),
            held: h,
        })
    }

    /// After the directory was removed and made again: the lock file there
    /// is no longer the one locked (or is gone), so lock the new one. A
    /// no-op while the lock file is still the one held.
    pub fn renew(&mut self) -> Result<bool, StoreError> {
        let now = std::fs::symlink_metadata(self.dir.join(LOCK_FILE))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now == Some(self.held.id) {
            return Ok(false);
        }
        *self = DirLock::acquire(&self.dir)?;
        Ok(true)
    }
}

/// The pid the holder wrote into the lock file, if it did yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_shares_its_lock_and_another_open_file_cannot_take_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        // The same process (a reload to another prefix): shared.
        let second = DirLock::acquire(dir.path()).unwrap();
        assert!(Arc::ptr_eq(&first.held, &second.held));
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // Another open file description (as another process has) is refused.
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
        drop((first, second));
        // Released with the last holder; the file stays.
        assert!(flock(&other, FlockOperation::NonBlockingLockExclusive).is_ok());
        assert!(dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_lock_taken_elsewhere_is_reported_with_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "4242\n").unwrap();
        let other = File::open(&path).unwrap();
        flock(&other, FlockOperation::NonBlockingLockExclusive).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(StoreError::Locked { pid, dir: d, .. }) => {
                assert_eq!(pid, Some(4242));
                assert_eq!(d, dir.path());
            }
            other => panic!("{other:?}"),
        }
        // The refused one changed nothing.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
    }

    #[test]
    fn renew_locks_the_new_file_after_the_directory_was_made_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let mut held = DirLock::acquire(&dir).unwrap();
        assert!(!held.renew().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert!(held.renew().unwrap());
        let other = File::open(dir.join(LOCK_FILE)).unwrap();
        assert!(flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
    }
}
