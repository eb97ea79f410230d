//! Why the store failed: the one error type of the writer and its files.

use std::path::PathBuf;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Never appended to, never touched: the store writes beside it.
    #[error(
        "{} does not start with the edge-agent header (found `{found}`): not an edge-agent file",
        path.display()
    )]
    ForeignFile { path: PathBuf, found: String },
    /// A directory, fifo, socket, device or symlink where the active file
    /// should be: never opened, renamed or touched.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// A file the agent may not open for writing (its owner or mode, e.g.
    /// made by `logrotate`'s `create` for another user): not ours either.
    #[error("{} cannot be opened for writing by the agent ({source})", path.display())]
    NoAccess {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every active name, the usual one and its alternates, is taken by
    /// something that is not ours.
    #[error(
        "no usable active file in {}: {} and its alternates up to {} are all taken by files that are not ours",
        dir.display(), first.display(), last.display()
    )]
    NoActiveFile {
        dir: PathBuf,
        first: PathBuf,
        last: PathBuf,
    },
    /// Another process holds the output directory's lock.
    #[error(
        "another edge-agent ({}) is already writing to {} (it holds the lock {}); two agents on one \
         directory would write every row twice. Stop the other one first (if it is the service: \
         systemctl stop edge-agent), or give this one another output.dir",
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}")),
        dir.display(),
        lock.display()
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
}

impl StoreError {
    /// Something that is not ours stands at the path: the store writes to
    /// an alternate name instead.
    pub fn is_not_ours(&self) -> bool {
        matches!(
            self,
            StoreError::ForeignFile { .. }
                | StoreError::NotAFile { .. }
                | StoreError::NoAccess { .. }
        )
    }
}
