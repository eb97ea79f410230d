//! `edge-agent tail`: the last rows, then (with `-f`) new rows as they are
//! written, across rotations.
//!
//! The last N rows come from the writer's active file ([`active`]: the
//! usual `PREFIX.csv`, or `PREFIX+N.csv` while something that is not ours
//! stands there) and, when it holds fewer, from the other files, newest
//! first ([`last`]). Following ([`follow`]) reads the active file through
//! one open descriptor from the end of the last complete line and goes on
//! to the writer's next file when it changes; no row is printed twice, no
//! second header shows, and rows tail could not read (retention removed
//! them first) are reported on stderr, never skipped without a word.

pub mod active;
mod follow;
mod followed;
mod last;
mod options;

use std::collections::{BTreeSet, VecDeque};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::history::row::COLUMNS;
use crate::replay::UnknownGroups;

pub use options::TailOptions;

/// Print the last rows and, when following, new ones until `stop` resolves.
///
/// A `--group` that no row read has is an error ([`UnknownGroups`], as an
/// `io::Error` of kind `InvalidInput`) when tail read every row there is
/// (it found fewer than it was asked for), before anything is printed; when
/// it stopped reading early (it found enough rows of the other groups asked
/// for) it is a warning. Whether the directory holds files of the prefix at
/// all is for the caller to check first ([`crate::replay::files_of`]): with
/// `-f`, waiting for an agent that has not written yet can be right.
pub async fn tail<W, S>(opts: &TailOptions, out: &mut W, stop: S) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    S: std::future::Future<Output = ()>,
{
    // The writer's file, read through the descriptor kept for following.
    let mut current = match active::writer_active(&opts.dir, &opts.prefix)? {
        Some(path) => match followed::Followed::open(&path).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    // Listed after the active file was opened: a rotation in between leaves
    // its rotated copy here, not to be read again when following.
    let known = if opts.follow {
        follow::rotated_stems(&opts.dir, &opts.prefix)?
    } else {
        Default::default()
    };
    let mut last: VecDeque<Vec<u8>> = VecDeque::new();
    let mut last_row = None;
    // The groups of the rows read, and how many rows.
    let mut seen = (BTreeSet::new(), 0u64);
    if let Some(f) = current.as_mut() {
        for line in f.read_lines().await? {
            let Some(r) = options::parse_line(&line) else {
                continue;
            };
            seen.1 += 1;
            if !seen.0.contains(&r.row.group) {
                seen.0.insert(r.row.group.clone());
            }
            last_row = Some(r.row.time);
            if opts.wants(&r) {
                last::push_bounded(&mut last, line, opts.lines);
            }
        }
    }
    if last.len() < opts.lines {
        let followed = current.as_ref().map(|f| f.id);
        let older = last::older_rows(opts, opts.lines - last.len(), followed, &mut seen).await?;
        for line in older.into_iter().rev() {
            last.push_front(line);
        }
    }
    // Fewer rows than asked for: every file was read.
    let every_row_read = last.len() < opts.lines;
    let (groups, rows) = seen;
    if rows > 0 {
        if let Err(e) = UnknownGroups::check(&opts.groups, groups.into_iter().collect(), rows) {
            if every_row_read {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
            }
            tracing::warn!("{e} (tail stopped reading once it had {} rows)", opts.lines);
        }
    }
    out.write_all(format!("{}\n", COLUMNS.join(",")).as_bytes())
        .await?;
    for line in &last {
        out.write_all(line).await?;
    }
    out.flush().await?;
    if !opts.follow {
        return Ok(());
    }
    follow::Follower::new(opts, current, known, last_row)
        .run(out, stop)
        .await
}
