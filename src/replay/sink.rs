//! Where replayed lines go: a file or stdout, any async writer, or an
//! HTTP endpoint fed in acknowledged batches ([`super::http`]).
//!
//! A file or stdout is an [`Output`] written in ticket order: by a task of
//! its own on the blocking pool ([`FileWriter`]) for the replay task's
//! blocks, and by the lanes of `super::read` for the verified blocks they
//! read. Blocks go to it by value: a verified block is written straight
//! from the page-aligned buffer it was read into, and an encoded block is
//! handed over, not copied. (Through `tokio::fs::File`,
//! which copies every write into a buffer of its own, half of a csv
//! replay's time went into that copy here.)

use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::ReplayError;
use super::chunks::Piece;
use super::http;

/// Blocks queued for the writing task.
const QUEUE: usize = 1;
/// Written blocks kept for the next ones.
const SPARE_MAX: usize = 8;

/// Buffers of written blocks, for the next ones: allocated on the blocking
/// pool and freed by the writing task, buffers of a MiB would scatter over
/// malloc's per-thread arenas, and RSS would grow with them. A buffer's
/// length is what of it is initialized, whatever its last lines were.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A written buffer of at least `capacity`, if the pool has one.
fn pooled(capacity: usize) -> Option<Vec<u8>> {
    let mut spare = lock(&SPARE);
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

pub(crate) fn give_back(buf: Vec<u8>) {
    let mut spare = lock(&SPARE);
    if spare.len() < SPARE_MAX {
        spare.push(buf);
    }
}

/// Where replayed lines go.
pub enum Sink {
    /// Stdout or a file, written in turns (see [`Output`]).
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

    /// The output that verified blocks may be written to in turns.
    pub(crate) fn output(&self) -> Option<Arc<Output>> {
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

/// Bytes to write, in the buffer they are in.
pub enum Chunk {
    /// The first `.1` bytes.
    Bytes(Vec<u8>, usize),
    Piece(Piece),
}

impl Chunk {
    /// Nothing to write: a turn passed on.
    pub fn nothing() -> Chunk {
        Chunk::Bytes(Vec::new(), 0)
    }

    fn give_back(self) {
        if let Chunk::Bytes(buf, _) = self {
            if buf.capacity() > 0 {
                give_back(buf);
            }
        }
    }
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes that may wait, written, for their turn: a thread that has one
/// ready this far ahead of the next to write leaves it and goes on.
const AHEAD: u64 = 3;

/// The file or stdout of a [`FileWriter`], written in order by many
/// threads: by its task and, for the verified blocks of a plain file, by
/// the threads that read and encode them (see `read::lanes`), each block
/// straight from the thread whose cache holds it. Handing every block to a
/// writing thread through the replay task cost two wake-ups per block and
/// left a fifth of both cores idle.
///
/// Every write has a ticket, handed out in output order by the replay
/// task. A write whose turn has not come is left (up to AHEAD tickets
/// ahead), and whichever thread is writing writes it when it does.
pub struct Output {
    out: Mutex<Box<dyn Write + Send>>,
    /// Written before the first bytes (the CSV header: none without rows).
    preamble: Mutex<Option<Vec<u8>>>,
    turn: Mutex<Turn>,
    next: Condvar,
    issued: AtomicU64,
    failed: AtomicBool,
}

#[derive(Default)]
struct Turn {
    /// Writes done: the ticket whose turn it is.
    served: u64,
    /// Writes waiting for their turn, by ticket.
    waiting: std::collections::BTreeMap<u64, Chunk>,
    /// Whether a thread is writing (it writes what waits, in order).
    writing: bool,
    /// Tickets that will not be written (a file's blocks after one that
    /// did not match), start -> end, disjoint: skipped when their turn
    /// comes, forgotten once passed. Several files may have some at once.
    void: std::collections::BTreeMap<u64, u64>,
    /// The first write that failed.
    error: Option<io::Error>,
}

impl Turn {
    /// Whether `ticket` will not be written: voided, or its turn passed
    /// before its write came (passed because voided).
    fn passed(&self, ticket: u64) -> bool {
        ticket < self.served || self.voided(ticket).is_some()
    }

    /// The end of the voided range that holds `ticket`, if one does.
    fn voided(&self, ticket: u64) -> Option<u64> {
        let (_, &end) = self.void.range(..=ticket).next_back()?;
        (ticket < end).then_some(end)
    }

    /// Void `tickets`, joining the ranges they touch.
    fn add_void(&mut self, tickets: Range<u64>) {
        let (mut start, mut end) = (tickets.start, tickets.end);
        let touching: Vec<(u64, u64)> = self
            .void
            .range(..=end)
            .filter(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.void.remove(&s);
            (start, end) = (start.min(s), end.max(e));
        }
        if start < end {
            self.void.insert(start, end);
        }
        self.waiting.retain(|t, _| !(start..end).contains(t));
    }

    /// The next write in order, passing voided tickets (and forgetting
    /// the ranges passed).
    fn take_next(&mut self) -> Option<Chunk> {
        while let Some(end) = self.voided(self.served) {
            self.served = end;
        }
        while let Some((&s, &e)) = self.void.first_key_value() {
            if e > self.served {
                break;
            }
            self.void.remove(&s);
        }
        self.waiting.remove(&self.served)
    }
}

impl Output {
    fn new(out: Box<dyn Write + Send>) -> Output {
        Output {
            out: Mutex::new(out),
            preamble: Mutex::new(None),
            turn: Mutex::new(Turn::default()),
            next: Condvar::new(),
            issued: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// Write `text` before the first bytes, if any come.
    pub fn preamble(&self, text: &[u8]) {
        *lock(&self.preamble) = Some(text.to_vec());
    }

    /// Tickets for the next `n` writes; the first of them.
    pub fn reserve(&self, n: u64) -> u64 {
        self.issued.fetch_add(n, Ordering::Relaxed)
    }

    /// Write `chunk` ([`Chunk::nothing`] to pass the turn on) as write
    /// `ticket`, after every lower ticket: now if its turn has come, else
    /// by the thread whose write comes before it. Waits only when the
    /// ticket is AHEAD or more past the next to write. False if the ticket
    /// was voided; an error if a write failed (this one or an earlier one).
    pub fn write(&self, ticket: u64, chunk: Chunk) -> io::Result<bool> {
        let mut turn = lock(&self.turn);
        loop {
            if self.failed() {
                return Err(io::Error::other("an earlier write failed"));
            }
            if turn.passed(ticket) {
                return Ok(false);
            }
            if ticket < turn.served + AHEAD {
                break;
            }
            turn = self.next.wait(turn).unwrap_or_else(|e| e.into_inner());
        }
        turn.waiting.insert(ticket, chunk);
        self.drain(turn)
    }

    /// Write what waits whose turn has come, unless another thread is at
    /// it; an error if a write failed.
    fn drain<'a>(&'a self, mut turn: MutexGuard<'a, Turn>) -> io::Result<bool> {
        if turn.writing {
            return Ok(true);
        }
        turn.writing = true;
        let mut result = Ok(true);
        while let Some(chunk) = turn.take_next() {
            drop(turn);
            let written = self.put(&chunk);
            chunk.give_back();
            turn = lock(&self.turn);
            turn.served += 1;
            if let Err(e) = written {
                result = Err(io::Error::new(e.kind(), "the write failed"));
                turn.error.get_or_insert(e);
                turn.waiting.clear();
                self.failed.store(true, Ordering::Relaxed);
                break;
            }
        }
        turn.writing = false;
        drop(turn);
        self.next.notify_all();
        result
    }

    /// Write `bytes` (after the preamble, the first time).
    fn put(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = lock(&self.out);
        if let Some(first) = lock(&self.preamble).take() {
            out.write_all(&first)?;
        }
        out.write_all(bytes)
    }

    /// `tickets` will not be written: their turns pass (and what waits of
    /// them is dropped).
    pub fn void(&self, tickets: Range<u64>) {
        let mut turn = lock(&self.turn);
        turn.add_void(tickets);
        // What waits after them may go now.
        let _ = self.drain(turn);
    }

    /// Whether `ticket` was voided (or a write failed): no use preparing
    /// its write.
    pub fn is_void(&self, ticket: u64) -> bool {
        self.failed() || lock(&self.turn).passed(ticket)
    }

    /// Whether a write failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn take_error(&self) -> Option<io::Error> {
        lock(&self.turn).error.take()
    }
}

/// A file or stdout, written by a task on the blocking pool (and by the
/// threads of [`Output`]).
pub struct FileWriter {
    tx: Option<mpsc::Sender<(u64, Chunk)>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    output: Arc<Output>,
}

impl FileWriter {
    /// Start writing to `out` (unbuffered: it gets whole blocks).
    pub fn new(out: Box<dyn Write + Send>) -> FileWriter {
        let (tx, mut rx) = mpsc::channel::<(u64, Chunk)>(QUEUE);
        let output = Arc::new(Output::new(out));
        let task = tokio::task::spawn_blocking({
            let output = output.clone();
            move || {
                while let Some((ticket, chunk)) = rx.blocking_recv() {
                    output.write(ticket, chunk)?;
                }
                lock(&output.out).flush()
            }
        });
        FileWriter {
            tx: Some(tx),
            task: Some(task),
            output,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse::tests::xorshift;

    /// A writer into a shared buffer that fails from its `fail_at`th write.
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>, Arc<AtomicU64>, u64);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.1.fetch_add(1, Ordering::Relaxed) + 1 >= self.2 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn output(fail_at: u64) -> (Arc<Output>, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let out = Shared(buf.clone(), Arc::new(AtomicU64::new(0)), fail_at);
        (Arc::new(Output::new(Box::new(out))), buf)
    }

    fn text(ticket: u64) -> Chunk {
        let t = format!("<{ticket}>");
        let len = t.len();
        let mut buf = t.into_bytes();
        buf.extend_from_slice(b"room past the end");
        Chunk::Bytes(buf, len)
    }

    /// Write `tickets` from `threads` threads, each taking its own in
    /// increasing order (as a lane does), with random pauses; a thread that
    /// finds a ticket in `stops` voids from there to `end` and stops.
    fn race(output: &Arc<Output>, tickets: Vec<Vec<u64>>, stops: &[u64], end: u64) {
        std::thread::scope(|s| {
            for (k, mine) in tickets.into_iter().enumerate() {
                let output = output.clone();
                s.spawn(move || {
                    let mut x = 0x9e37_79b9 + k as u64;
                    for t in mine {
                        for _ in 0..xorshift(&mut x) % 3 {
                            std::thread::yield_now();
                        }
                        if stops.contains(&t) {
                            output.void(t..end);
                            return;
                        }
                        if !output.write(t, text(t)).unwrap() {
                            return;
                        }
                    }
                });
            }
        });
    }

    fn expected(tickets: impl Iterator<Item = u64>) -> String {
        tickets.map(|t| format!("<{t}>")).collect()
    }

    #[test]
    fn writes_come_out_in_ticket_order_whoever_writes_them() {
        for round in 0..50u64 {
            let (output, buf) = output(u64::MAX);
            output.preamble(b"head\n");
            assert_eq!(output.reserve(300), 0);
            let mut x = round + 1;
            let mut tickets = vec![Vec::new(); 4];
            for t in 0..300 {
                tickets[(xorshift(&mut x) % 4) as usize].push(t);
            }
            race(&output, tickets, &[], 300);
            let got = String::from_utf8(lock(&buf).clone()).unwrap();
            assert_eq!(got, format!("head\n{}", expected(0..300)));
        }
    }

    #[test]
    fn voided_tickets_pass_their_turn() {
        for (round, stops) in [vec![17], vec![17, 20], vec![20, 17], vec![0], vec![39]]
            .into_iter()
            .enumerate()
        {
            for _ in 0..20 {
                let (output, buf) = output(u64::MAX);
                // Something before the file, the file's 40 blocks in two
                // lanes, something after.
                let before = output.reserve(1);
                let base = output.reserve(40);
                assert_eq!((before, base), (0, 1));
                let lanes: Vec<Vec<u64>> = (0..2)
                    .map(|k| (0..40).filter(|i| i % 2 == k).map(|i| base + i).collect())
                    .collect();
                let stops: Vec<u64> = stops.iter().map(|s| base + s).collect();
                std::thread::scope(|s| {
                    s.spawn(|| race(&output, lanes, &stops, base + 40));
                    s.spawn(|| assert!(output.write(before, text(before)).unwrap()));
                });
                let after = output.reserve(2);
                assert!(output.write(after, text(after)).unwrap());
                assert!(output.write(after + 1, text(after + 1)).unwrap());
                let first_stop = *stops.iter().min().unwrap();
                let want = expected((0..first_stop).chain(after..after + 2));
                let got = String::from_utf8(lock(&buf).clone()).unwrap();
                assert_eq!(got, want, "round {round}");
            }
        }
    }

    /// Two lanes stopping at blocks of their own, the later one voiding
    /// last: the turns of both ranges still pass (writes 0-4, then 40).
    #[test]
    fn overlapping_voids_are_joined() {
        let (output, buf) = output(u64::MAX);
        output.reserve(41);
        output.void(5..40);
        output.void(8..40);
        for t in 0..5 {
            assert!(output.write(t, text(t)).unwrap());
        }
        assert!(!output.write(6, text(6)).unwrap());
        assert_eq!(lock(&output.turn).served, 40);
        assert!(output.write(40, text(40)).unwrap());
        let want = expected((0..5).chain([40]));
        assert_eq!(String::from_utf8(lock(&buf).clone()).unwrap(), want);
    }

    /// Files whose blocks were voided before the turn reached the first:
    /// both ranges pass (a second void must not replace the first).
    #[test]
    fn voids_of_two_files_both_pass() {
        let (output, buf) = output(u64::MAX);
        output.reserve(30);
        output.void(3..10);
        output.void(20..30);
        output.void(12..15);
        let written: Vec<u64> = (0..30)
            .filter(|&t| output.write(t, text(t)).unwrap())
            .collect();
        let want: Vec<u64> = (0..3).chain(10..12).chain(15..20).collect();
        assert_eq!(written, want);
        let got = String::from_utf8(lock(&buf).clone()).unwrap();
        assert_eq!(got, expected(want.into_iter()));
        assert!(
            lock(&output.turn).void.is_empty(),
            "passed ranges are forgotten"
        );
    }

    #[test]
    fn a_failed_write_fails_every_later_one_and_is_kept() {
        let (output, buf) = output(5);
        output.reserve(10);
        let results: Vec<_> = (0..10).map(|t| output.write(t, text(t)).is_ok()).collect();
        assert_eq!(
            results,
            [
                true, true, true, true, false, false, false, false, false, false
            ]
        );
        assert!(output.failed());
        assert_eq!(
            output.take_error().unwrap().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert_eq!(
            String::from_utf8(lock(&buf).clone()).unwrap(),
            expected(0..4)
        );
    }
}
