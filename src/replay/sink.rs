//! Where replayed lines go: a file or stdout, any async writer, or an
//! HTTP endpoint fed in acknowledged batches ([`super::http`]).
//!
//! A file or stdout is written by a task of its own on the blocking pool
//! ([`FileWriter`]), and blocks go to it by value: a verified block is
//! written straight from the page-aligned buffer it was read into, and an
//! encoded block is handed over, not copied. (Through `tokio::fs::File`,
//! which copies every write into a buffer of its own, half of a csv
//! replay's time went into that copy here.)

use std::io::Write;
use std::sync::Mutex;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::ReplayError;
use super::chunks::Piece;
use super::http;

/// Blocks queued for the writing task.
const QUEUE: usize = 1;
/// Written blocks kept for the next ones.
const SPARE_MAX: usize = 4;

/// Buffers of written blocks, for the next ones: allocated on the blocking
/// pool and freed by the writing task, buffers of a MiB would scatter over
/// malloc's per-thread arenas, and RSS would grow with them. A buffer's
/// length is what of it is initialized, whatever its last lines were.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A written buffer of at least `capacity`, if the pool has one.
fn pooled(capacity: usize) -> Option<Vec<u8>> {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    let at = spare.iter().position(|b| b.capacity() >= capacity);
    at.map(|i| spare.swap_remove(i))
}

/// A buffer of at least `len` initialized bytes (rounded up, so that
/// buffers for blocks a row longer or shorter fit each other), a written
/// one if there is one: room to write lines over, with no need to zero it
/// first (only what no block ever used gets zeroed).
pub(crate) fn room(len: usize) -> Vec<u8> {
    let len = len.next_multiple_of(64 * 1024);
    match pooled(len) {
        Some(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            buf
        }
        None => vec![0; len],
    }
}

/// An empty buffer of at least `capacity` (rounded up as for [`room`]),
/// a written one if there is one: for lines that are appended.
pub(crate) fn spare(capacity: usize) -> Vec<u8> {
    let capacity = capacity.next_multiple_of(64 * 1024);
    match pooled(capacity) {
        Some(mut buf) => {
            buf.clear();
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

fn give_back(buf: Vec<u8>) {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < SPARE_MAX {
        spare.push(buf);
    }
}

/// Where replayed lines go.
pub enum Sink {
    /// Stdout or a file, written by a task of its own.
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
    /// (see [`room`]): a file keeps the buffer whole for the next block.
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

    pub(crate) async fn finish(&mut self) -> Result<(), ReplayError> {
        match self {
            Sink::File(f) => f.finish().await,
            Sink::Writer(w) => w.flush().await.map_err(ReplayError::Output),
            Sink::Http(p) => Ok(p.flush().await?),
        }
    }
}

enum Chunk {
    /// The first `.1` bytes.
    Bytes(Vec<u8>, usize),
    Piece(Piece),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Bytes(b, len) => &b[..*len],
            Chunk::Piece(p) => p,
        }
    }
}

/// A file or stdout, written by a task on the blocking pool.
pub struct FileWriter {
    tx: Option<mpsc::Sender<Chunk>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl FileWriter {
    /// Start writing to `out` (unbuffered: it gets whole blocks).
    pub fn new(mut out: Box<dyn Write + Send>) -> FileWriter {
        let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
                if let Chunk::Bytes(buf, _) = chunk {
                    give_back(buf);
                }
            }
            out.flush()
        });
        FileWriter {
            tx: Some(tx),
            task: Some(task),
        }
    }

    async fn send(&mut self, chunk: Chunk) -> Result<(), ReplayError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
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
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(ReplayError::Output),
            None => Ok(()),
        }
    }
}
