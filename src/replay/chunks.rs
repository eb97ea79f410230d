//! The bytes of one file in pieces: as a stream read ahead by a task of
//! its own ([`spawn`]), or one indexed block read by the calling thread
//! ([`read_at`], for the lanes of [`super::lanes`]).
//!
//! A task on tokio's blocking pool opens the file (and inflates a `.gz`),
//! reads it in `--chunk-size` reads and hands the bytes over as a
//! tokio-stream of [`Piece`]s, two at a time and one such batch ahead of
//! the consumer: each hand-off wakes the other thread. In four interleaved
//! runs of a csv replay of 1 GiB, batches of two beat single pieces (two
//! ahead) in three, 0.59 / 0.85 / 0.82 of `cat` against 0.53 / 0.82 /
//! 0.78, and lost one, 0.73 against 0.78. The
//! pieces follow a plan: first the lengths asked for (of a `.csv.gz`: the
//! header and each indexed block, so a block arrives whole and its CRC can
//! be checked before any of it is used), then the rest of the file in
//! pieces of a few reads each.
//!
//! Why a task of our own and not `tokio::fs::File`: tokio's file does every
//! read on the blocking pool anyway, one hand-off per read; one task per
//! file reads back to back and hands over a few reads at once (a hand-off
//! per 64 KiB read cost a third of the throughput here). Why page-aligned
//! buffers: reading the page cache into a buffer at an odd address ran at
//! 1.5 GB/s on this machine, into a page-aligned one at 7 GB/s, as fast
//! as `cat`. Buffers go back to a pool when a piece is dropped, so a
//! replay touches the same few pages over and over.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::pool::Pool;

/// Batches read ahead of the one in use.
const READ_AHEAD: usize = 1;
/// Buffers kept for the next pieces, across files: more than are ever in
/// flight at once, so none is freed (freed and allocated again, buffers
/// this size scatter over malloc's per-thread arenas and RSS grows).
const POOL_MAX: usize = 32;
/// Reads per piece after the planned ones.
const READS_PER_PIECE: usize = 4;
const PAGE: usize = 4096;

/// Buffers of pieces dropped, for the next ones (of any file): a fresh
/// buffer of this size costs page faults on every page.
static POOL: Pool = Pool::new(POOL_MAX);

/// A buffer of at least `len` bytes, from the pool if it has one.
fn buffer(len: usize) -> Vec<u8> {
    POOL.take(|b| b.len() >= len)
        .unwrap_or_else(|| vec![0; len])
}

/// A run of bytes of the file; hands its buffer back when dropped.
pub struct Piece {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl std::ops::Deref for Piece {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        POOL.give(std::mem::take(&mut self.buf));
    }
}

impl bytes::Buf for Piece {
    fn remaining(&self) -> usize {
        self.end - self.start
    }
    fn chunk(&self) -> &[u8] {
        self
    }
    fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

/// Pieces handed over at once: every hand-off wakes the thread on the
/// other side, and in a VM a wake-up costs about what a CRC of the piece
/// does.
const BATCH: usize = 2;

type Batch = Vec<io::Result<Piece>>;

/// The stream of a file's pieces; an error ends it.
pub struct Pieces {
    rx: mpsc::Receiver<Batch>,
    ready: std::collections::VecDeque<io::Result<Piece>>,
}

impl Pieces {
    /// A stream with no pieces.
    pub fn none() -> Pieces {
        Pieces {
            rx: mpsc::channel(1).1,
            ready: Default::default(),
        }
    }

    /// The next piece; `None` at the end of the file.
    pub async fn recv(&mut self) -> Option<io::Result<Piece>> {
        tokio_stream::StreamExt::next(self).await
    }
}

impl tokio_stream::Stream for Pieces {
    type Item = io::Result<Piece>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Poll::Ready(Some(piece));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.ready.extend(batch),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where a reading task starts.
pub enum Start {
    /// Open this file (inflated if `.1`, a `.gz`), at its start.
    Path(PathBuf, bool),
    /// A plain file already open, from this byte: the rest of a file read
    /// block by block, from the file that was opened then (not a new
    /// active file the agent may have rotated in under the same name).
    Open(Arc<std::fs::File>, u64),
}

/// Start reading `from`: pieces of the lengths in `plan`, then the rest. A
/// file that ends early gives a shorter piece.
pub fn spawn(from: Start, chunk_size: usize, plan: Vec<u64>) -> Pieces {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let chunk = chunk_size.max(512);
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            tx,
            batch: Vec::with_capacity(BATCH),
        };
        let result = match from {
            Start::Path(path, gzip) => read_all(&path, gzip, chunk, &plan, &mut out),
            Start::Open(file, offset) => {
                let mut at = Positioned {
                    file: &file,
                    offset,
                };
                pump(&mut at, chunk, &plan, &mut out)
            }
        };
        if let Err(e) = result {
            out.batch.push(Err(e));
        }
        out.flush();
    });
    Pieces {
        rx,
        ready: Default::default(),
    }
}

/// Where the reading task puts its pieces, BATCH at a time.
struct Out {
    tx: mpsc::Sender<Batch>,
    batch: Batch,
}

impl Out {
    /// False if the reader is gone.
    fn push(&mut self, piece: Piece) -> bool {
        self.batch.push(Ok(piece));
        self.batch.len() < BATCH || self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.blocking_send(batch).is_ok()
    }
}

fn read_all(
    path: &PathBuf,
    gzip: bool,
    chunk: usize,
    plan: &[u64],
    out: &mut Out,
) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let mut source: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(chunk, file),
        ))
    } else {
        Box::new(file)
    };
    pump(&mut source, chunk, plan, out)
}

/// Read `source` to its end into pieces (of the lengths in `plan`, then of
/// READS_PER_PIECE reads) for `out`.
fn pump(source: &mut impl Read, chunk: usize, plan: &[u64], out: &mut Out) -> io::Result<()> {
    let rest = chunk * READS_PER_PIECE;
    let biggest = plan.iter().map(|&l| l as usize).max().unwrap_or(0);
    let size = buffer_size(biggest.max(rest));
    let mut planned = plan.iter().map(|&l| l as usize);
    loop {
        let want = planned.next().unwrap_or(rest);
        let (piece, failed) = fill(source, size, want, chunk);
        let short = piece.len() < want;
        if !piece.is_empty() && !out.push(piece) {
            return Ok(()); // the reader is gone
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if short {
            return Ok(());
        }
    }
}

/// The size of a buffer for pieces of up to `len` bytes: one size for all
/// (blocks differ by a row or so), so buffers of one file fit the next,
/// and a page more, to start the piece on a page.
fn buffer_size(len: usize) -> usize {
    len.next_multiple_of(64 * 1024) + PAGE
}

/// A piece of up to `want` bytes of `source` in reads of `chunk` bytes, in a
/// page-aligned buffer of `size`; shorter at the end of the input, and with
/// the error that ended it early, if one did.
fn fill(
    source: &mut impl Read,
    size: usize,
    want: usize,
    chunk: usize,
) -> (Piece, Option<io::Error>) {
    let mut buf = buffer(size);
    let start = buf.as_ptr().align_offset(PAGE).min(PAGE);
    let mut end = start;
    while end < start + want {
        let to = (end + chunk).min(start + want);
        match source.read(&mut buf[end..to]) {
            Ok(0) => break,
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Piece { buf, start, end }, Some(e)),
        }
    }
    (Piece { buf, start, end }, None)
}

/// `len` bytes of a plain file from byte `offset`, read in `chunk`-byte
/// positioned reads by the calling thread (see [`super::read`]: a block is
/// read, checked and encoded by one thread, while it is in that core's
/// cache); shorter if the file ends first.
pub fn read_at(file: &std::fs::File, offset: u64, len: usize, chunk: usize) -> io::Result<Piece> {
    let chunk = chunk.max(512);
    let mut at = Positioned { file, offset };
    // Of the block's size: a large --chunk-size does not grow it.
    match fill(&mut at, buffer_size(len), len, chunk) {
        (_, Some(e)) => Err(e),
        (piece, None) => Ok(piece),
    }
}

/// A file read with positioned reads from `offset` on, as a `Read`.
struct Positioned<'a> {
    file: &'a std::fs::File,
    offset: u64,
}

impl Read for Positioned<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}
