//! The lanes of a plain indexed file: threads of the blocking pool that
//! each read, check, prepare and (given an output) write every other block.
//!
//! Why: a block read, checked and encoded by one thread stays in that
//! core's cache, and no thread wakes another per block. The lanes take
//! turns at the output by tickets ([`super::turns`]) handed out in output
//! order, so the output is in file order whichever lane is faster.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::block::{Block, Checked, Prepare, Prepared, Report, matches_entry, prepared, verified};
use super::chunks;
use super::turns::{Chunk, Turns};
use crate::history::index::Entry;
use crate::history::row::HEADER;

/// Threads that read, check and prepare the blocks of a plain file, each
/// every LANES-th block. The blocking pool has four threads: with a file or
/// stdout written by one, two lanes leave one for a reader of the rest of
/// a file.
pub(super) const LANES: usize = 2;

/// The output tickets of a plain file's blocks, when its lanes write them
/// (see [`Turns`]): block `i` is ticket `base + i`. Those of blocks not
/// written when reading stops (a block that does not match, a replay that
/// ends early) are voided, so later writes do not wait for them.
pub(super) struct Tickets {
    pub(super) output: Arc<Turns>,
    pub(super) base: u64,
    pub(super) blocks: u64,
    /// Whether every lane reported (and voided what it did not write).
    pub(super) drained: bool,
    /// Where the lanes stopped early: the first block that did not match
    /// or could not be read (each lane stops at its own).
    pub(super) stop: Option<(usize, Checked)>,
}

impl Drop for Tickets {
    fn drop(&mut self) {
        if !self.drained {
            self.output.void(self.base..self.base + self.blocks);
        }
    }
}

/// Start the lanes of a plain file: lane `k` reads, checks and prepares
/// blocks `k`, `k + LANES`, ... until one does not match, and hands each
/// over in order (two ahead) or, given `to` (the output and the first
/// block's ticket), writes it there in its turn and reports once, at the
/// end, what it wrote (and the block it stopped at, having voided the
/// tickets from there on).
pub(super) fn lanes(
    file: Arc<std::fs::File>,
    entries: &[Entry],
    chunk: usize,
    prepare: Option<Prepare>,
    to: Option<(Arc<Turns>, u64)>,
) -> Vec<mpsc::Receiver<Checked>> {
    let mut line = 1;
    let blocks: Arc<Vec<(Entry, u64)>> = Arc::new(
        entries
            .iter()
            .map(|e| {
                line += e.rows;
                (*e, line - e.rows + 1)
            })
            .collect(),
    );
    (0..LANES)
        .map(|k| {
            let (tx, rx) = mpsc::channel(2);
            let (file, blocks) = (file.clone(), blocks.clone());
            let (prepare, to) = (prepare.clone(), to.clone());
            tokio::task::spawn_blocking(move || match &to {
                Some((output, base)) => {
                    let mut report = Report::default();
                    let mut stop = None;
                    for (i, &(e, first_line)) in blocks.iter().enumerate().skip(k).step_by(LANES) {
                        if output.is_void(base + i as u64) {
                            break; // the other lane stopped before it, or a write failed
                        }
                        // A panic (were panics not to abort) is a block
                        // that could not be read, not a lane gone silent.
                        let checked =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                check_at(&file, e, i == 0, first_line, chunk, prepare.as_ref())
                            }))
                            .unwrap_or_else(|_| {
                                Checked::Failed(std::io::Error::other("a reading thread panicked"))
                            });
                        match checked {
                            Checked::Block(b) => match write(b, output, base + i as u64) {
                                Some((rows, bad)) => report.blocks.push((i, rows, bad)),
                                None => break, // voided
                            },
                            other => {
                                // Nor is any block after it written.
                                let end = base + blocks.len() as u64;
                                output.void(base + i as u64..end);
                                report.stopped_at = Some(i);
                                stop = Some(other);
                                break;
                            }
                        }
                    }
                    // The channel has room for both.
                    let _ = tx.blocking_send(Checked::Report(report));
                    if let Some(stop) = stop {
                        let _ = tx.blocking_send(stop);
                    }
                }
                None => {
                    for (i, &(e, first_line)) in blocks.iter().enumerate().skip(k).step_by(LANES) {
                        let checked =
                            check_at(&file, e, i == 0, first_line, chunk, prepare.as_ref());
                        let go_on = matches!(checked, Checked::Block(_));
                        if tx.blocking_send(checked).is_err() || !go_on {
                            break;
                        }
                    }
                }
            });
            rx
        })
        .collect()
}

/// Write what was prepared of `b` as write `ticket` of `output`; `None` if
/// the ticket was voided. A failed write is left to the output to report
/// (see [`Turns::failed`]): the block counts as written.
fn write(b: Block, output: &Turns, ticket: u64) -> Option<(u64, Vec<u64>)> {
    let Block {
        piece,
        rows,
        prepared,
        ..
    } = b;
    let (chunk, rows, bad_lines) = match prepared {
        Some(Prepared::Whole) => (Chunk::Piece(piece), rows, Vec::new()),
        // The piece goes back to its pool before the write waits its turn.
        Some(Prepared::Lines(e)) => {
            drop(piece);
            (Chunk::Bytes(e.bytes, e.len), e.rows, e.bad_lines)
        }
        Some(Prepared::Nothing) | None => {
            drop(piece);
            (Chunk::nothing(), 0, Vec::new())
        }
    };
    output
        .write(ticket, chunk)
        .unwrap_or(true)
        .then_some((rows, bad_lines))
}

/// The block of `e`, read from `file` (from its start, header included,
/// for the first one), checked and prepared.
fn check_at(
    file: &std::fs::File,
    e: Entry,
    first: bool,
    first_line: u64,
    chunk: usize,
    prepare: Option<&Prepare>,
) -> Checked {
    let from = if first { 0 } else { e.offset };
    let mut piece = match chunks::read_at(file, from, (e.end() - from) as usize, chunk) {
        Ok(piece) => piece,
        Err(error) => return Checked::Failed(error),
    };
    let resume = from + piece.len() as u64;
    if first {
        if !piece.starts_with(HEADER.as_bytes()) {
            return Checked::Mismatch {
                piece,
                resume,
                whole: true,
            };
        }
        bytes::Buf::advance(&mut piece, HEADER.len());
    }
    if !matches_entry(&piece, &e) {
        return Checked::Mismatch {
            piece,
            resume,
            whole: false,
        };
    }
    let block = verified(piece, &e, first_line);
    match prepare {
        Some(prepare) => prepared(block, prepare),
        None => Checked::Block(block),
    }
}
