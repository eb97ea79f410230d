//! Where replayed lines go: a file or stdout, any async writer, or an
//! HTTP endpoint fed in acknowledged batches ([`super::http`]).
//!
//! A file or stdout is a [`Turns`] written in ticket order: by a task of
//! its own on the blocking pool ([`FileWriter`]) for the replay task's
//! blocks, and by the lanes ([`super::lanes`]) for the verified blocks they
//! read. Blocks go to it by value: a verified block is written straight
//! from the page-aligned buffer it was read into, and an encoded block is
//! handed over, not copied. (Through `tokio::fs::File`,
//! which copies every write into a buffer of its own, half of a csv
//! replay's time went into that copy here.)

use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::chunks::Piece;
use super::error::ReplayError;
use super::http;
use super::turns::{Chunk, Turns};

/// Blocks queued for the writing task.
const QUEUE: usize = 1;
/// Where replayed lines go.
pub enum Sink {
    /// Stdout or a file, written in turns (see [`Turns`]).
    File(FileWriter),
    /// Any async writer; flushed after every row when pacing.
    Writer(Box<dyn AsyncWrite + Unpin + Send>),
    /// An HTTP endpoint, in acknowledged batches.
    Http(Box<http::Pusher>),
}

impl Sink {
    /// Write `block` (`rows` lines).
    pub(crate) async fn write(
        &mut self,
        block: Vec<u8>,
        rows: u64,
        flush: bool,
    ) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) => {
                let len = block.len();
                f.send(Chunk::Bytes(block, len)).await
            }
            Sink::Writer(w) => {
                w.write_all(&block).await.map_err(ReplayError::Output)?;
                if flush {
                    w.flush().await.map_err(ReplayError::Output)?;
                }
                Ok(())
            }
            Sink::Http(p) => Ok(p.push(&block, rows).await?),
        }
    }

    /// Write `buf[..len]` (`rows` lines), the rest of `buf` being room
    /// (see [`super::pool::room`]): a file keeps the buffer whole for the next block.
    pub(crate) async fn write_room(
        &mut self,
        mut buf: Vec<u8>,
        len: usize,
        rows: u64,
    ) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) => {
                let len = len.min(buf.len());
                f.send(Chunk::Bytes(buf, len)).await
            }
            _ => {
                buf.truncate(len);
                self.write(buf, rows, false).await
            }
        }
    }

    /// Write a verified block as it was read.
    pub(crate) async fn write_piece(&mut self, piece: Piece, rows: u64) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) => f.send(Chunk::Piece(piece)).await,
            _ => self.write(piece.to_vec(), rows, false).await,
        }
    }

    /// Whether the format's header goes first (not when appending to a
    /// file that has it).
    pub(crate) fn header(&self) -> bool {
        match self {
            Sink::File(f) => f.header,
            _ => true,
        }
    }

    /// The output that verified blocks may be written to in turns.
    pub(crate) fn output(&self) -> Option<Arc<Turns>> {
        match self {
            Sink::File(f) => Some(f.output.clone()),
            _ => None,
        }
    }

    /// The error of a write done in turns, if one failed.
    pub(crate) async fn check(&mut self) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) if f.output.failed() => f.finish().await,
            _ => Ok(()),
        }
    }

    pub(crate) async fn finish(&mut self) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) => f.finish().await,
            Sink::Writer(w) => w.flush().await.map_err(ReplayError::Output),
            Sink::Http(p) => Ok(p.flush().await?),
        }
    }
}

/// A file or stdout, written by a task on the blocking pool (and by the
/// threads of [`Turns`]).
pub struct FileWriter {
    tx: Option<mpsc::Sender<(u64, Chunk)>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    output: Arc<Turns>,
    header: bool,
}

impl FileWriter {
    /// Start writing to `out` (unbuffered: it gets whole blocks).
    pub fn new(out: Box<dyn Write + Send>) -> FileWriter {
        let (tx, mut rx) = mpsc::channel::<(u64, Chunk)>(QUEUE);
        let output = Arc::new(Turns::new(out));
        let task = tokio::task::spawn_blocking({
            let output = output.clone();
            move || {
                while let Some((ticket, chunk)) = rx.blocking_recv() {
                    output.write(ticket, chunk)?;
                }
                output.flush()
            }
        });
        FileWriter {
            tx: Some(tx),
            task: Some(task),
            output,
            header: true,
        }
    }

    /// No header before the rows: they go after a file's own.
    pub fn without_header(mut self) -> FileWriter {
        self.header = false;
        self
    }

    async fn send(&mut self, chunk: Chunk) -> Result<(), ReplayError> {
        let ticket = self.output.reserve(1);
        let sent = match &self.tx {
            Some(tx) => tx.send((ticket, chunk)).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The task stopped at an error: that is the answer.
            self.finish().await?;
            Err(ReplayError::Output(std::io::Error::other(
                "the writer stopped",
            )))
        }
    }

    /// Wait until everything sent is written (and flushed).
    async fn finish(&mut self) -> Result<(), ReplayError> {
        self.tx = None;
        let result = match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        // The first error, wherever it happened.
        match self.output.take_error() {
            Some(e) => Err(ReplayError::Output(e)),
            None => result.map_err(ReplayError::Output),
        }
    }
}
