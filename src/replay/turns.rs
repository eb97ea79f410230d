//! An output written in ticket order by many threads.
//!
//! Why: the verified blocks of a plain file are written by the threads
//! that read and encode them ([`super::lanes`]), each straight from the
//! thread whose cache holds it, while the replay task's own blocks go
//! through a [`super::sink::FileWriter`]. Tickets, handed out in output
//! order by the replay task, keep the output in file order whoever writes.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::chunks::Piece;
use super::pool::give_back;
use crate::sync::lock;

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

/// Writes that may wait, written, for their turn: a thread that has one
/// ready this far ahead of the next to write leaves it and goes on.
const AHEAD: u64 = 3;

/// The file or stdout of a [`FileWriter`], written in order by many
/// threads: by its task and, for the verified blocks of a plain file, by
/// the threads that read and encode them (see [`super::lanes`]), each block
/// straight from the thread whose cache holds it. Handing every block to a
/// writing thread through the replay task cost two wake-ups per block and
/// left a fifth of both cores idle.
///
/// Every write has a ticket, handed out in output order by the replay
/// task. A write whose turn has not come is left (up to AHEAD tickets
/// ahead), and whichever thread is writing writes it when it does.
pub struct Turns {
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

impl Turns {
    pub(super) fn new(out: Box<dyn Write + Send>) -> Turns {
        Turns {
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

    /// Flush what was written (the writers hand over whole blocks).
    pub(super) fn flush(&self) -> io::Result<()> {
        lock(&self.out).flush()
    }

    pub(super) fn take_error(&self) -> Option<io::Error> {
        lock(&self.turn).error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse::tests::xorshift;
    use std::sync::Arc;

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

    fn output(fail_at: u64) -> (Arc<Turns>, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let out = Shared(buf.clone(), Arc::new(AtomicU64::new(0)), fail_at);
        (Arc::new(Turns::new(Box::new(out))), buf)
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
    fn race(output: &Arc<Turns>, tickets: Vec<Vec<u64>>, stops: &[u64], end: u64) {
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
