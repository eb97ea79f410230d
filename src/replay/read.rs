//! Reading one recorded file in bounded memory: block by block where the
//! file matches its index, row by row everywhere else.
//!
//! Where the file has an index ([`crate::history::index`]), each indexed
//! block whose CRC matches is a [`Block`]: rows that passed [`parse`](crate::history::parse::parse) when
//! they were indexed and have not changed since. In a plain file two
//! lanes (threads of the blocking pool) take every other block: each reads
//! it in `--chunk-size` positioned reads, checks it and runs the replay's
//! [`Prepare`] on it (filter, encode), and, given an [`Turns`], writes it
//! there itself in its turn. A `.csv.gz` is inflated in order by a task of
//! its own ([`super::chunks`]), its blocks checked as they come. From the
//! first block that does not match, and after the last one, the bytes come
//! as a tokio-stream of pieces with csv-async on top, and every row is
//! checked as it comes. Nothing holds more than a few blocks and
//! csv-async's own buffer, whatever the size of the history.
//!
//! Damage never stops the replay: a line with the wrong number of fields,
//! a bad time or a bad number is skipped with a [`Skip`] naming file and
//! line (quotes mean nothing, so a stray `"` costs one line, not the rest
//! of the file); a truncated gzip stream is read up to the damage; a last line with
//! no newline (a write in progress, or a torn one) is skipped.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use csv_async::ByteRecord;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::io::StreamReader;

use super::block::{
    Block, Checked, Prepare, Written, matches_entry, prepared, verified, warn_mismatch,
};
use super::chunks::{self, Piece, Pieces, Start};
use super::lanes::{LANES, Tickets, lanes};
use super::turns::Turns;
use crate::history::index::{Entry, Index};
use crate::history::parse::parse;
use crate::history::row::{COLUMNS, HEADER, Record};

/// A line that was not replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub file: PathBuf,
    /// 1-based line number, when known.
    pub line: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// What reading yields: a row, a verified block of rows, verified blocks
/// written to the output already, or a skipped line / damaged rest of
/// file.
pub enum Next<'a> {
    Row(&'a Record),
    Block(Block),
    Written(Written),
    Skip(Skip),
}

/// The bytes the row-by-row reader reads.
type RawBytes = Pin<Box<dyn AsyncRead + Send>>;

/// Blocks of a `.csv.gz` being prepared at once on the blocking pool while
/// its inflating task reads on (the pool has four threads: with the
/// inflating task and a file's writer, three keep both cores busy).
const DEPTH: usize = 3;

/// Where the blocks of an indexed file come from.
enum Blocks {
    /// A plain file: each block is read, checked and prepared by one
    /// thread, with positioned reads, so it stays in one core's cache;
    /// lane `i % LANES` gives block `i`. An influx replay of 1 GiB whose
    /// blocks were read by one thread and encoded by others took 1.4 times
    /// the CPU (about 80 ns per row against 50 in the encoder alone), and
    /// a task per block cost a wake-up of two threads per block.
    Lanes(Vec<mpsc::Receiver<Checked>>, Option<Tickets>),
    /// A `.csv.gz`: the pieces of one inflating task, checked in order.
    Stream(Pieces),
}

/// Reading block by block while the file matches its index.
struct Fast {
    blocks: Blocks,
    entries: Vec<Entry>,
    /// The next entry to queue, and the line before its first row.
    next: usize,
    next_line: u64,
    /// Whether the header came (from the stream; the first lane checks it
    /// with the first block).
    header_seen: bool,
    /// Blocks of the stream being prepared, in file order.
    queue: VecDeque<Pending>,
    /// Where the stream stopped matching the index: a piece to go on row by
    /// row from (and an error that ended the input), once the queue is out.
    stop: Option<(Option<Piece>, Option<std::io::Error>)>,
    /// Lines and bytes handed out so far.
    lines: u64,
    bytes: u64,
    /// Whether the file ends with its last indexed block, for good (a
    /// plain file's lanes only).
    sealed: bool,
    /// The plain file the lanes read, for the rest of it.
    file: Option<Arc<std::fs::File>>,
}

impl Fast {
    /// The rest of the plain file from byte `from`, read as a stream.
    fn rest(&self, from: u64, chunk: usize) -> Pieces {
        match &self.file {
            Some(file) => chunks::spawn(Start::Open(file.clone(), from), chunk, Vec::new()),
            None => Pieces::none(),
        }
    }
}

/// A queued block of a stream: its task, or what it is (nothing to
/// prepare).
enum Pending {
    Task(tokio::task::JoinHandle<Checked>),
    Ready(Checked),
}

/// Rows of one file.
pub struct FileReader {
    path: PathBuf,
    /// While the file's bytes match their index.
    fast: Option<Fast>,
    /// For every verified block.
    prepare: Option<Prepare>,
    /// The row-by-row reader, once reading goes row by row.
    csv: Option<csv_async::AsyncReader<Tracked<RawBytes>>>,
    last_byte: Arc<AtomicU8>,
    bytes: Arc<AtomicU64>,
    /// Lines before the row-by-row reader's first line.
    line_base: u64,
    /// The record being read.
    cur: ByteRecord,
    /// One row of look-ahead: the last row is only good if a newline ends it.
    held: Option<(u64, ByteRecord)>,
    /// A complete row waiting to be parsed and returned, with its line.
    out: Option<(u64, ByteRecord)>,
    /// Skips decided but not yet returned (after `out`).
    skips: VecDeque<Skip>,
    /// The row handed out last; its buffers are reused.
    record: Record,
    chunk_size: usize,
    done: bool,
    header_checked: bool,
}

impl FileReader {
    /// Read `path` row by row.
    pub async fn open(path: &Path, gzip: bool, chunk_size: usize) -> std::io::Result<FileReader> {
        Self::open_indexed(path, gzip, chunk_size, None, None, None).await
    }

    /// Read `path`, block by block as far as its bytes match `index`, row by
    /// row after that (or from the start without an index); `prepare` runs
    /// on every verified block. With an `output` too, the verified blocks
    /// of a plain file are written to it (in turns, by the threads that
    /// read them) and come out as [`Next::Written`]: the caller must have
    /// written everything that goes before them.
    pub async fn open_indexed(
        path: &Path,
        gzip: bool,
        chunk_size: usize,
        index: Option<Index>,
        prepare: Option<Prepare>,
        output: Option<Arc<Turns>>,
    ) -> std::io::Result<FileReader> {
        let (entries, ended) = index.map_or((Vec::new(), false), |i| (i.entries, i.ended));
        if gzip || entries.is_empty() {
            // Fail here, not in the reading task, when the file is gone.
            tokio::fs::metadata(path).await?;
        }
        let mut reader = FileReader {
            path: path.to_path_buf(),
            fast: None,
            prepare,
            csv: None,
            last_byte: Arc::new(AtomicU8::new(b'\n')),
            bytes: Arc::new(AtomicU64::new(0)),
            line_base: 0,
            cur: ByteRecord::new(),
            held: None,
            out: None,
            skips: VecDeque::new(),
            record: Record::default(),
            chunk_size,
            done: false,
            header_checked: false,
        };
        if entries.is_empty() {
            let pieces = chunks::spawn(
                Start::Path(path.to_path_buf(), gzip),
                chunk_size,
                Vec::new(),
            );
            reader.row_by_row(pieces, None, 0, 0, None);
            return Ok(reader);
        }
        let (mut sealed, mut opened) = (false, None);
        let (blocks, lines, bytes) = if gzip {
            let mut plan = vec![HEADER.len() as u64];
            plan.extend(entries.iter().map(|e| e.len));
            let pieces = chunks::spawn(Start::Path(path.to_path_buf(), gzip), chunk_size, plan);
            (Blocks::Stream(pieces), 0, 0)
        } else {
            let (file, len) = tokio::task::spawn_blocking({
                let path = path.to_path_buf();
                move || {
                    let file = std::fs::File::open(path)?;
                    let len = file.metadata()?.len();
                    std::io::Result::Ok((file, len))
                }
            })
            .await
            .map_err(std::io::Error::other)??;
            // A rotated file that ends where its index does has no rest to
            // read row by row.
            sealed = ended && entries.last().map(Entry::end) == Some(len);
            let tickets = match (&reader.prepare, output) {
                (Some(_), Some(output)) => Some(Tickets {
                    base: output.reserve(entries.len() as u64),
                    output,
                    blocks: entries.len() as u64,
                    drained: false,
                    stop: None,
                }),
                _ => None,
            };
            let to = tickets.as_ref().map(|t| (t.output.clone(), t.base));
            let file = Arc::new(file);
            opened = Some(file.clone());
            let lanes = lanes(file, &entries, chunk_size, reader.prepare.clone(), to);
            // The first lane checks the header with the first block.
            (Blocks::Lanes(lanes, tickets), 1, HEADER.len() as u64)
        };
        reader.fast = Some(Fast {
            header_seen: matches!(blocks, Blocks::Lanes(..)),
            blocks,
            entries,
            next: 0,
            next_line: 1,
            queue: VecDeque::new(),
            stop: None,
            lines,
            bytes,
            sealed,
            file: opened,
        });
        Ok(reader)
    }

    /// Go on row by row from `first` (a piece already taken) and the rest of
    /// `pieces`, `lines` lines and `bytes` bytes into the file.
    fn row_by_row(
        &mut self,
        pieces: Pieces,
        first: Option<Piece>,
        lines: u64,
        bytes: u64,
        error: Option<std::io::Error>,
    ) {
        let stream =
            tokio_stream::iter(first.map(Ok).into_iter().chain(error.map(Err))).chain(pieces);
        let source: RawBytes = Box::pin(StreamReader::new(stream));
        self.bytes.store(bytes, Ordering::Relaxed);
        let tracked = Tracked {
            inner: source,
            last_byte: self.last_byte.clone(),
            bytes: self.bytes.clone(),
        };
        self.line_base = lines;
        self.header_checked = lines > 0;
        self.csv = Some(
            csv_async::AsyncReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                // Our files never quote (group names are plain words), so a
                // stray `"` is damage to one line, not the start of a field
                // that swallows every line after it.
                .quoting(false)
                .buffer_capacity(self.chunk_size.clamp(512, 64 * 1024))
                .create_reader(tracked),
        );
    }

    /// Bytes read so far (after decompression).
    pub fn bytes_read(&self) -> u64 {
        match &self.fast {
            Some(f) => f.bytes,
            None => self.bytes.load(Ordering::Relaxed),
        }
    }

    fn skip(&self, line: Option<u64>, reason: impl Into<String>) -> Skip {
        Skip {
            file: self.path.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// The next row, block or skip; `None` at the end of the file.
    pub async fn next(&mut self) -> Option<Next<'_>> {
        loop {
            if let Some((line, raw)) = self.out.take() {
                // Hand the buffer to the record; take the record's old one back.
                self.cur = std::mem::replace(&mut self.record.raw, raw);
                return Some(match parse(&mut self.record) {
                    Ok(()) => Next::Row(&self.record),
                    Err(why) => Next::Skip(self.skip(Some(line), why)),
                });
            }
            if let Some(skip) = self.skips.pop_front() {
                return Some(Next::Skip(skip));
            }
            if self.done {
                return None;
            }
            if self.fast.is_some() {
                if let Some(next) = self.step().await {
                    return Some(next);
                }
            } else {
                self.advance().await;
            }
        }
    }

    /// The next verified block while reading block by block; `None` once
    /// reading goes row by row (from a block that does not match, or after
    /// the last one) or the file ends.
    async fn step(&mut self) -> Option<Next<'static>> {
        let fast = self.fast.as_mut()?;
        let checked = match &mut fast.blocks {
            Blocks::Lanes(lanes, Some(tickets)) if !tickets.drained => {
                // Each lane reports once, when it is done.
                let mut done = Vec::new();
                for lane in lanes.iter_mut() {
                    let mut at = None;
                    while let Some(report) = lane.recv().await {
                        match (report, at) {
                            (Checked::Report(r), _) => {
                                at = r.stopped_at;
                                done.extend(r.blocks);
                            }
                            (stop, Some(i)) => {
                                if tickets.stop.as_ref().is_none_or(|(first, _)| i < *first) {
                                    tickets.stop = Some((i, stop));
                                }
                            }
                            (_, None) => {}
                        }
                    }
                }
                tickets.drained = true;
                // Written: the blocks before the first one a lane stopped at.
                let upto = tickets
                    .stop
                    .as_ref()
                    .map_or(fast.entries.len(), |(i, _)| *i);
                let mut all = Written::default();
                for (i, rows, bad) in done {
                    if i < upto {
                        all.rows += rows;
                        all.bad_lines.extend(bad);
                    }
                }
                all.bad_lines.sort_unstable();
                for e in &fast.entries[..upto] {
                    fast.lines += e.rows;
                    fast.bytes += e.len;
                }
                return Some(Next::Written(all));
            }
            Blocks::Lanes(_, Some(tickets)) => tickets.stop.take().map(|(_, stop)| stop),
            Blocks::Lanes(..) if fast.next == fast.entries.len() => None,
            Blocks::Lanes(lanes, _) => {
                let lane = &mut lanes[fast.next % LANES];
                fast.next += 1;
                let gone = || Checked::Failed(std::io::Error::other("a reading thread stopped"));
                Some(lane.recv().await.unwrap_or_else(gone))
            }
            Blocks::Stream(_) => {
                fast.fill(&self.path, &self.prepare).await;
                match fast.queue.pop_front() {
                    Some(Pending::Task(task)) => {
                        Some(task.await.unwrap_or_else(|e| Checked::Failed(e.into())))
                    }
                    Some(Pending::Ready(checked)) => Some(checked),
                    None => None,
                }
            }
        };
        let Some(checked) = checked else {
            // Every block handed out, or the stream stopped matching.
            let mut fast = self.fast.take()?;
            if fast.sealed {
                self.done = true;
                return None;
            }
            let (first, error) = fast.stop.take().unwrap_or((None, None));
            let pieces = match fast.blocks {
                Blocks::Stream(pieces) => pieces,
                Blocks::Lanes(..) => {
                    let end = fast.entries.last().map_or(0, Entry::end);
                    fast.rest(end, self.chunk_size)
                }
            };
            self.row_by_row(pieces, first, fast.lines, fast.bytes, error);
            return None;
        };
        let (first, resume, error, whole) = match checked {
            Checked::Block(b) => {
                fast.lines += b.rows;
                fast.bytes += b.piece.len() as u64;
                return Some(Next::Block(b));
            }
            // Reports are read above; not one of a block.
            Checked::Report(_) => {
                let e = std::io::Error::other("a reading thread reported out of turn");
                (None, fast.bytes, Some(e), false)
            }
            Checked::Mismatch {
                piece,
                resume,
                whole,
            } => (Some(piece), resume, None, whole),
            Checked::Failed(e) => (None, fast.bytes, Some(e), false),
        };
        // A lane's (the stream's mismatches stop filling the queue): the
        // lanes stop when their receivers are dropped with `fast`.
        let fast = self.fast.take()?;
        let (lines, bytes) = if whole {
            (0, 0)
        } else {
            (fast.lines, fast.bytes)
        };
        if !whole && error.is_none() {
            warn_mismatch(&self.path, lines + 1);
        }
        let pieces = match error {
            // It ends the input: nothing more to read.
            Some(_) => Pieces::none(),
            None => fast.rest(resume, self.chunk_size),
        };
        self.row_by_row(pieces, first, lines, bytes, error);
        None
    }

    /// Read one more record, deciding what it lets us decide.
    async fn advance(&mut self) {
        let mut record = std::mem::take(&mut self.cur);
        let Some(csv) = self.csv.as_mut() else {
            self.done = true;
            return;
        };
        let read = csv.read_byte_record(&mut record).await;
        match read {
            Ok(true) => {
                let line = self.line_base + record.position().map_or(0, |p| p.line());
                if !self.header_checked {
                    self.header_checked = true;
                    if !record.iter().eq(COLUMNS.iter().map(|c| c.as_bytes())) {
                        self.done = true;
                        let skip = self.skip(
                            Some(1),
                            "first line is not the edge-agent header; file skipped",
                        );
                        self.skips.push_back(skip);
                    }
                    self.cur = record;
                    return;
                }
                // The held row was followed by another: it is complete.
                self.out = self.held.replace((line, record));
            }
            Ok(false) => {
                self.done = true;
                if let Some((line, record)) = self.held.take() {
                    if self.last_byte.load(Ordering::Relaxed) == b'\n' {
                        self.out = Some((line, record));
                    } else {
                        let skip = self.skip(Some(line), "partial last line (no newline) skipped");
                        self.skips.push_back(skip);
                    }
                }
            }
            Err(e) => {
                // An I/O error, e.g. a truncated gzip: keep what was read.
                // The held row was followed by more input, so it is complete.
                self.done = true;
                self.out = self.held.take();
                let reason = format!(
                    "damaged after {} byte(s); rest of file skipped: {e}",
                    self.bytes_read()
                );
                self.skips.push_back(self.skip(None, reason));
            }
        }
    }
}

impl Fast {
    /// Queue blocks of a stream until DEPTH are in flight, the entries are
    /// all queued or the bytes stop matching them.
    async fn fill(&mut self, path: &Path, prepare: &Option<Prepare>) {
        while self.queue.len() < DEPTH && self.stop.is_none() {
            let Blocks::Stream(pieces) = &mut self.blocks else {
                return;
            };
            let Some(e) = self.entries.get(self.next).copied() else {
                // The rest of the file, row by row (an active file's last
                // rows).
                self.stop = Some(match pieces.recv().await {
                    Some(Ok(p)) => (Some(p), None),
                    Some(Err(e)) => (None, Some(e)),
                    None => (None, None),
                });
                return;
            };
            let first_line = self.next_line + 1;
            let piece = match pieces.recv().await {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    self.stop = Some((None, Some(e)));
                    return;
                }
                // Cut short since it was indexed; what was there went out.
                None => {
                    self.stop = Some((None, None));
                    return;
                }
            };
            if !self.header_seen {
                if *piece != *HEADER.as_bytes() {
                    self.stop = Some((Some(piece), None));
                    return;
                }
                self.header_seen = true;
                (self.lines, self.bytes) = (1, piece.len() as u64);
                continue;
            }
            if !matches_entry(&piece, &e) {
                warn_mismatch(path, first_line);
                self.stop = Some((Some(piece), None));
                return;
            }
            let block = verified(piece, &e, first_line);
            let pending = match prepare.clone() {
                Some(prepare) => Pending::Task(tokio::task::spawn_blocking(move || {
                    prepared(block, &prepare)
                })),
                None => Pending::Ready(Checked::Block(block)),
            };
            self.queue.push_back(pending);
            self.next_line += e.rows;
            self.next += 1;
        }
    }
}

/// Passes reads through, remembering the last byte and the count.
struct Tracked<R> {
    inner: R,
    last_byte: Arc<AtomicU8>,
    bytes: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let filled = buf.filled();
            if filled.len() > before {
                self.last_byte
                    .store(filled[filled.len() - 1], Ordering::Relaxed);
                self.bytes
                    .fetch_add((filled.len() - before) as u64, Ordering::Relaxed);
            }
        }
        result
    }
}
