//! The last rows: the writer's active file first, then, while they are
//! fewer than asked for, the other files in [`sources`] order read
//! backwards: the other active files (a foreign `PREFIX.csv` holds no
//! rows), then the rotated files, newest name first.
//!
//! A rotated file named after a time later than now (the clock was ahead
//! when it was written) sorts after the files named before it, even those
//! written after it; tail says so on stderr when it reads one.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;

use super::active::{FileId, id_of};
use super::options::{TailOptions, line_of};
use crate::replay::read::{FileReader, Next};
use crate::replay::{Source, sources};

/// What tail says after a clock-named file's note.
pub const ORDER_NOTE: &str = "tail shows its rows in name order, after every file named before it";

/// Keep the last `max` lines of `buf`.
pub fn push_bounded(buf: &mut VecDeque<Vec<u8>>, line: Vec<u8>, max: usize) {
    if max == 0 {
        return;
    }
    if buf.len() == max {
        buf.pop_front();
    }
    buf.push_back(line);
}

/// The last `n` wanted rows of the files other than `followed`, oldest
/// first; the groups of the rows read go into `seen.0`, their count is
/// added to `seen.1`. None when the
/// directory is not there (yet: `tail -f` waits for it).
pub async fn older_rows(
    opts: &TailOptions,
    n: usize,
    followed: Option<FileId>,
    seen: &mut (BTreeSet<String>, u64),
) -> std::io::Result<Vec<Vec<u8>>> {
    // Files that cannot hold rows since `--since` are not opened.
    let files = match sources(&opts.dir, &opts.prefix, opts.since, None) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut found: VecDeque<Vec<u8>> = VecDeque::new();
    for source in files.iter().rev() {
        if found.len() >= n {
            break;
        }
        // The followed file, under its active name or, rotated since, its
        // rotated one: its rows are read already.
        if followed.is_some() && id_of(&source.path) == followed {
            continue;
        }
        let Some(mut reader) = open(source).await else {
            continue;
        };
        if let Some(note) = source.wrong_name_note() {
            tracing::warn!("{note}; {ORDER_NOTE}");
        }
        let mut ring = VecDeque::new();
        while let Some(next) = reader.next().await {
            if let Next::Row(r) = next {
                seen.1 += 1;
                if !seen.0.contains(&r.row.group) {
                    seen.0.insert(r.row.group.clone());
                }
                if opts.wants(r) {
                    push_bounded(&mut ring, line_of(r), n - found.len());
                }
            }
        }
        for line in ring.into_iter().rev() {
            found.push_front(line);
        }
    }
    Ok(found.into())
}

/// A listed file's reader; a plain rotated file compressed since it was
/// listed is read from its `.gz`. `None` (with a warning) when it cannot
/// be read.
async fn open(source: &Source) -> Option<FileReader> {
    let opened = match FileReader::open(&source.path, source.gzip, 64 * 1024).await {
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && source.start.is_some()
                && !source.gzip =>
        {
            let mut gz = source.path.clone().into_os_string();
            gz.push(".gz");
            FileReader::open(&PathBuf::from(gz), true, 64 * 1024).await
        }
        other => other,
    };
    match opened {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("{}: cannot read, skipped: {e}", source.path.display());
            None
        }
    }
}
