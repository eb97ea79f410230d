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
    #[error(
        "{} does not start with the edge-agent header (found `{found}`); \
         refusing to append to a file that is not ours. Move it away or set output.prefix to another name",
        path.display()
    )]
    ForeignFile { path: PathBuf, found: String },
}
