//! Why a replay failed: the one error type of the replay's parts.

use std::path::PathBuf;

use super::found::{NothingToRead, UnknownGroups};
use super::http;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Http(#[from] http::PushError),
    /// No directory, or no files of the prefix in it.
    #[error(transparent)]
    Nothing(#[from] NothingToRead),
    /// A `--group` that no row read has.
    #[error(transparent)]
    Groups(#[from] UnknownGroups),
}
