//! A verified block: rows whose bytes still match their entry in the
//! file's index, and what the replay makes of it on the thread that read it.
//!
//! Why a file of its own: the readers ([`super::read`], [`super::lanes`])
//! produce blocks and the replay loop consumes them; this is the type they
//! share, with the one check (length and CRC) that makes a block verified.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::chunks::Piece;
use super::format::Encoded;
use crate::history::index::{self, Entry};

/// Rows whose bytes match their block in the file's index: every line is a
/// row that passed [`parse`] when it was indexed, newline included.
pub struct Block {
    /// The bytes, in the buffer they were read into.
    pub piece: Piece,
    pub rows: u64,
    /// Earliest and latest row time in the block.
    pub min: SystemTime,
    pub max: SystemTime,
    /// Line number of the first row.
    pub first_line: u64,
    /// What the reader's [`Prepare`] made of it, on the thread that
    /// checked it.
    pub prepared: Option<Prepared>,
}

/// What becomes of a verified block (see [`Prepare`]).
pub enum Prepared {
    /// No row of it is wanted.
    Nothing,
    /// It goes out as it is.
    Whole,
    /// These lines go out.
    Lines(Encoded),
}

/// Work done on each verified block by the thread of the blocking pool
/// that read and checked it (the replay's filter and encoding), while the
/// block is in that core's cache.
pub type Prepare = Arc<dyn Fn(&Block) -> Prepared + Send + Sync>;

/// Verified blocks that their reading threads wrote to the output
/// themselves (see [`FileReader::open_indexed`]).
#[derive(Default)]
pub struct Written {
    /// Rows that went out.
    pub rows: u64,
    /// Lines that were not rows after all.
    pub bad_lines: Vec<u64>,
}

/// What a lane that writes its blocks did, reported when it is done.
#[derive(Default)]
pub(super) struct Report {
    /// Blocks given to the output: (index, rows written, lines that were
    /// not rows). One given after a block another lane stopped at was
    /// dropped, not written.
    pub(super) blocks: Vec<(usize, u64, Vec<u64>)>,
    /// The block it stopped at (what it found follows the report).
    pub(super) stopped_at: Option<usize>,
}

impl Block {
    /// The block's lines (without newlines), each with its line number.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        memchr::memchr_iter(b'\n', &self.piece)
            .zip(self.first_line..)
            .map(move |(end, line)| {
                let text = &self.piece[start..end];
                start = end + 1;
                (line, text)
            })
    }
}

/// What became of one indexed block (in a lane or a task of a stream), or
/// what a lane did.
pub(super) enum Checked {
    Block(Block),
    /// Bytes that do not match their entry, read up to file byte `resume`;
    /// `whole`: the file's first bytes, whose header is not ours.
    Mismatch {
        piece: Piece,
        resume: u64,
        whole: bool,
    },
    Failed(std::io::Error),
    /// What a lane wrote (see [`Tickets`]).
    Report(Report),
}

/// Whether `bytes` are those `e` was made of.
pub(super) fn matches_entry(bytes: &[u8], e: &Entry) -> bool {
    bytes.len() as u64 == e.len && crc32fast::hash(bytes) == e.crc
}

/// Rows from `line` of `path` on no longer match their index.
pub(super) fn warn_mismatch(path: &Path, line: u64) {
    tracing::warn!(
        "{}:{line}: the rows from here on do not match their checksum in {}; reading them one by one",
        path.display(),
        index::path_for(path).display()
    );
}

/// `piece`, whose bytes match `e`, as a block.
pub(super) fn verified(piece: Piece, e: &Entry, first_line: u64) -> Block {
    let ms = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    Block {
        piece,
        rows: e.rows,
        min: ms(e.min_ms),
        max: ms(e.max_ms),
        first_line,
        prepared: None,
    }
}

pub(super) fn prepared(mut block: Block, prepare: &Prepare) -> Checked {
    block.prepared = Some(prepare(&block));
    Checked::Block(block)
}
