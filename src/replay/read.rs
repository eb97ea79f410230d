//! Reading one recorded file in bounded memory: block by block where the
//! file matches its index, row by row everywhere else.
//!
//! Where the file has an index ([`crate::store::index`]), each indexed
//! block whose CRC matches is a [`Block`]: rows that passed [`parse`] when
//! they were indexed and have not changed since. In a plain file two
//! lanes (threads of the blocking pool) take every other block: each reads
//! it in `--chunk-size` positioned reads, checks it and runs the replay's
//! [`Prepare`] on it (filter, encode), and, given an [`Output`], writes it
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csv_async::ByteRecord;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::io::StreamReader;

use super::chunks::{self, Piece, Pieces, Start};
use super::format::Encoded;
use super::sink::{Chunk, Output};
use crate::aggregate::Row;
use crate::config::Unit;
use crate::store::HEADER;
use crate::store::index::{self, Entry, Index};

/// The column names, in order.
pub const COLUMNS: [&str; 8] = [
    "time", "group", "mean", "min", "max", "unit", "ok", "failed",
];

/// One valid recorded row: the values, and the fields as they were written.
/// The reader reuses one `Record` for every row, so replaying allocates
/// nothing per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub row: Row,
    /// The fields exactly as recorded, for byte-identical CSV output.
    pub raw: ByteRecord,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            row: Row {
                time: SystemTime::UNIX_EPOCH,
                group: String::new(),
                mean: None,
                min: None,
                max: None,
                unit: Unit::Celsius,
                ok: 0,
                failed: 0,
            },
            raw: ByteRecord::new(),
        }
    }
}

impl Record {
    /// Field `i` as recorded (checked to be UTF-8 by [`parse`]).
    pub fn field(&self, i: usize) -> &str {
        std::str::from_utf8(&self.raw[i]).unwrap_or_default()
    }

    /// Parse one CSV line of ours (no quoting: our fields never need it).
    pub fn from_line(line: &str) -> Result<Record, String> {
        let mut record = Record {
            raw: ByteRecord::from(
                line.trim_end_matches(['\n', '\r'])
                    .split(',')
                    .collect::<Vec<_>>(),
            ),
            ..Record::default()
        };
        parse(&mut record)?;
        Ok(record)
    }
}

/// A row as the encoders see it: its fields as recorded, and its time.
pub struct View<'a> {
    pub fields: [&'a [u8]; 8],
    pub time: SystemTime,
}

impl Default for View<'_> {
    fn default() -> Self {
        View {
            fields: [b""; 8],
            time: UNIX_EPOCH,
        }
    }
}

impl Record {
    /// This (parsed, so eight-field) row as a [`View`].
    pub fn view(&self) -> View<'_> {
        let mut fields = [&b""[..]; 8];
        for (slot, field) in fields.iter_mut().zip(self.raw.iter()) {
            *slot = field;
        }
        View {
            fields,
            time: self.row.time,
        }
    }
}

/// Reads the rows of verified blocks. They passed [`parse`] when indexed,
/// so only the fields and the time are taken out, and rows of the same
/// minute (the first 17 bytes of the time) share the work of the date.
#[derive(Default, Clone)]
pub struct BlockRows {
    prefix: [u8; 17],
    minute: Option<SystemTime>,
}

impl BlockRows {
    /// Fill `view` with `line` (without its newline); false if it is not
    /// a row after all (an index made by something else than this
    /// program). Fills in place: this runs for every row.
    pub fn fill<'a>(&mut self, line: &'a [u8], view: &mut View<'a>) -> bool {
        if !split8(line, &mut view.fields) {
            return false;
        }
        match self.time(view.fields[0]) {
            Some(t) => {
                view.time = t;
                true
            }
            None => false,
        }
    }

    pub(crate) fn time(&mut self, b: &[u8]) -> Option<SystemTime> {
        if b.len() == 24 && b[..17] == self.prefix && b[19] == b'.' && b[23] == b'Z' {
            if let (Some(minute), Some(s), Some(ms)) =
                (self.minute, digits(&b[17..19]), digits(&b[20..23]))
            {
                if s < 60 {
                    return Some(minute + Duration::from_millis(s * 1000 + ms));
                }
            }
        }
        if let Some(t) = fast_time(b) {
            let into_minute = digits(&b[17..19])? * 1000 + digits(&b[20..23])?;
            self.prefix.copy_from_slice(&b[..17]);
            self.minute = Some(t - Duration::from_millis(into_minute));
            return Some(t);
        }
        std::str::from_utf8(b)
            .ok()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    }
}

/// The eight fields of `line`, or `None` if it has more or fewer.
///
/// Eight bytes at a time: a word XOR `,,,,,,,,` has a zero byte where a
/// comma is, found exactly (no borrow between bytes) by the high bit of
/// `((w & 0x7f..) + 0x7f..) | w`. A byte-by-byte split took most of a
/// replay's time for influx output.
fn split8<'a>(line: &'a [u8], fields: &mut [&'a [u8]; 8]) -> bool {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const COMMAS: u64 = 0x2c2c_2c2c_2c2c_2c2c;
    let mut n = 0;
    let mut start = 0;
    let words = line.chunks_exact(8);
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    let last = [u64::from_le_bytes(tail)];
    let all = words
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .chain(last);
    for (w, word) in all.enumerate() {
        let x = word ^ COMMAS;
        let mut hits = !(((x & LO7) + LO7) | x | LO7);
        // Zero padding XOR commas is not zero: no hit past the line's end.
        while hits != 0 {
            let at = w * 8 + (hits.trailing_zeros() / 8) as usize;
            let Some(field) = fields.get_mut(n) else {
                return false;
            };
            *field = &line[start..at];
            n += 1;
            start = at + 1;
            hits &= hits - 1;
        }
    }
    if n != 7 {
        return false;
    }
    fields[7] = &line[start..];
    true
}

/// The fields of the common row of a verified block, without a branch
/// per field: a time of 24 bytes (the agent's form) and the other seven
/// fields within the 64 bytes after its comma. Those 64 bytes become bit
/// masks of their bytes below `-` (0x2d) and of their commas
/// ([`simd::masks`]); the first byte below `-` that is not a comma must be
/// the newline that ends the row, and exactly six commas must come before
/// it (a space or a `+` in a field sends the line to the row-by-row path).
/// A loop per separator mispredicted about once per field.
///
/// Returns the seven fields after the time as (start, length) in `buf`,
/// and where the row's newline is, or `None` for any other line (split by
/// [`split8`], as a row read one by one). The caller checks that the first
/// 24 bytes are a time: then they hold no comma or newline.
///
/// The newline's place comes straight from the masks, not through the
/// fields: the next row's start waits on it, and a chain of six separators
/// taken off one by one in between made every row wait for the last.
#[inline(always)]
pub(crate) fn fast_cut(buf: &[u8], start: usize) -> Option<([(usize, usize); 7], usize)> {
    let bytes: &[u8; 65] = buf.get(start + 24..start + 25 + 64)?.try_into().ok()?;
    if bytes[0] != b',' {
        return None;
    }
    let (below, commas) = simd::masks(bytes[1..].try_into().ok()?);
    let others = below & !commas;
    let end = others & others.wrapping_neg();
    let at = end.trailing_zeros() as usize;
    if end == 0 || bytes[1 + at] != b'\n' {
        return None;
    }
    let base = start + 25;
    let newline = base + at;
    // The commas before the newline, then the newline: the separators
    // that end the seven fields. Taken off one at a time, lowest first;
    // with fewer than six commas a field's length is nonsense, but then
    // no bit is left for the newline, and it is not used.
    let mut seps = commas & (end - 1) | end;
    let mut from = base;
    let mut next = || {
        let at = base + seps.trailing_zeros() as usize;
        seps &= seps.wrapping_sub(1);
        let field = (from, at.wrapping_sub(from));
        from = at + 1;
        field
    };
    let six = [next(), next(), next(), next(), next(), next()];
    // Exactly one bit left, the newline (the highest): six commas.
    if seps != end {
        return None;
    }
    let last = (from, newline - from);
    Some((
        [six[0], six[1], six[2], six[3], six[4], six[5], last],
        newline,
    ))
}

/// Bit masks of 64 bytes (bit i: byte i): bytes below `-`, and commas.
/// One compare of 16 bytes per mask where the target has one (SSE2 on
/// x86_64, NEON on little-endian aarch64: both part of those targets, so
/// there is nothing to detect at run time; any other target takes
/// [`scalar_masks`]): eight bytes at a time in plain integers took about
/// a quarter of an influx replay's encoding.
mod simd {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    pub(super) fn masks(bytes: &[u8; 64]) -> (u64, u64) {
        use std::arch::x86_64::*;
        // The masks of bytes 16 * i.. (a movemask of 16 bytes sets only
        // the low 16 bits). Called with constant `i`: no shift by a
        // variable, no loop.
        let part = |i: usize| {
            let part = &bytes[16 * i..16 * i + 16];
            // SAFETY: `part` is 16 readable bytes (an unaligned load is
            // allowed); SSE2 is always there on x86_64.
            let (b, c) = unsafe {
                let v = _mm_loadu_si128(part.as_ptr().cast());
                let below = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x2c)), v);
                let commas = _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8));
                (_mm_movemask_epi8(below), _mm_movemask_epi8(commas))
            };
            (u64::from(b as u16), u64::from(c as u16))
        };
        let (p0, p1, p2, p3) = (part(0), part(1), part(2), part(3));
        (
            p0.0 | p1.0 << 16 | p2.0 << 32 | p3.0 << 48,
            p0.1 | p1.1 << 16 | p2.1 << 32 | p3.1 << 48,
        )
    }

    // Little-endian: lane 0 read as a u64 puts byte k of the fold at bits
    // 8k..8k+8.
    #[cfg(all(
        target_arch = "aarch64",
        target_feature = "neon",
        target_endian = "little"
    ))]
    #[inline(always)]
    pub(super) fn masks(bytes: &[u8; 64]) -> (u64, u64) {
        use std::arch::aarch64::*;
        // SAFETY: four 16-byte loads inside `bytes`; NEON is always there
        // on aarch64.
        unsafe {
            let p = bytes.as_ptr();
            let v = [
                vld1q_u8(p),
                vld1q_u8(p.add(16)),
                vld1q_u8(p.add(32)),
                vld1q_u8(p.add(48)),
            ];
            // Bit j of byte j % 8 in each half, then three pairwise adds
            // fold 64 such bytes into the 8 bytes of one mask.
            const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
            let weights = vld1q_u8(WEIGHTS.as_ptr());
            let gather = |m: [uint8x16_t; 4]| {
                let m = m.map(|m| vandq_u8(m, weights));
                let a = vpaddq_u8(m[0], m[1]);
                let b = vpaddq_u8(m[2], m[3]);
                let c = vpaddq_u8(a, b);
                vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(c, c)))
            };
            (
                gather(v.map(|v| vcltq_u8(v, vdupq_n_u8(b'-')))),
                gather(v.map(|v| vceqq_u8(v, vdupq_n_u8(b',')))),
            )
        }
    }

    #[cfg(not(any(
        all(target_arch = "x86_64", target_feature = "sse2"),
        all(
            target_arch = "aarch64",
            target_feature = "neon",
            target_endian = "little"
        )
    )))]
    pub(super) use super::scalar_masks as masks;
}

/// [`simd::masks`] in plain integers, eight bytes at a time: the masks of
/// targets without SIMD of their own (armv7, whose NEON is not part of the
/// target), and the tests' reference everywhere (hence the `allow`).
#[allow(dead_code)]
pub(crate) fn scalar_masks(bytes: &[u8; 64]) -> (u64, u64) {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bit 7 of each byte to bit i of one byte: the eight partial products
    // land on distinct bits, so nothing carries.
    let gather = |high: u64| high.wrapping_mul(0x0002_0408_1020_4081) >> 56;
    // High bit set where the low seven bits are below `x` and bit 7 is clear.
    let below =
        |w: u64, x: u8| !(((w & LO7) + u64::from(0x80 - x) * 0x0101_0101_0101_0101) | w) & HIGH;
    let mut masks = (0, 0);
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let at = 8 * i;
        masks.0 |= gather(below(w, b'-')) << at;
        masks.1 |= gather(below(w ^ 0x2c2c_2c2c_2c2c_2c2c, 1)) << at;
    }
    masks
}

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
struct Report {
    /// Blocks given to the output: (index, rows written, lines that were
    /// not rows). One given after a block another lane stopped at was
    /// dropped, not written.
    blocks: Vec<(usize, u64, Vec<u64>)>,
    /// The block it stopped at (what it found follows the report).
    stopped_at: Option<usize>,
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

/// What reading yields: a row, a verified block of rows, verified blocks
/// written to the output already, or a skipped line / damaged rest of
/// file.
pub enum Next<'a> {
    Row(&'a Record),
    Block(Block),
    Written(Written),
    Skip(Skip),
}

type Source = Pin<Box<dyn AsyncRead + Send>>;

/// Blocks of a `.csv.gz` being prepared at once on the blocking pool while
/// its inflating task reads on (the pool has four threads: with the
/// inflating task and a file's writer, three keep both cores busy).
const DEPTH: usize = 3;

/// Threads that read, check and prepare the blocks of a plain file, each
/// every LANES-th block. The blocking pool has four threads: with a file or
/// stdout written by one, two lanes leave one for a reader of the rest of
/// a file.
const LANES: usize = 2;

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

/// The output tickets of a plain file's blocks, when its lanes write them
/// (see [`Output`]): block `i` is ticket `base + i`. Those of blocks not
/// written when reading stops (a block that does not match, a replay that
/// ends early) are voided, so later writes do not wait for them.
struct Tickets {
    output: Arc<Output>,
    base: u64,
    blocks: u64,
    /// Whether every lane reported (and voided what it did not write).
    drained: bool,
    /// Where the lanes stopped early: the first block that did not match
    /// or could not be read (each lane stops at its own).
    stop: Option<(usize, Checked)>,
}

impl Drop for Tickets {
    fn drop(&mut self) {
        if !self.drained {
            self.output.void(self.base..self.base + self.blocks);
        }
    }
}

/// A queued block of a stream: its task, or what it is (nothing to
/// prepare).
enum Pending {
    Task(tokio::task::JoinHandle<Checked>),
    Ready(Checked),
}

/// What became of one indexed block (in a lane or a task of a stream), or
/// what a lane did.
enum Checked {
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

/// Rows of one file.
pub struct FileReader {
    path: PathBuf,
    /// While the file's bytes match their index.
    fast: Option<Fast>,
    /// For every verified block.
    prepare: Option<Prepare>,
    /// The row-by-row reader, once reading goes row by row.
    csv: Option<csv_async::AsyncReader<Tracked<Source>>>,
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
        output: Option<Arc<Output>>,
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
        let source: Source = Box::pin(StreamReader::new(stream));
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

/// Start the lanes of a plain file: lane `k` reads, checks and prepares
/// blocks `k`, `k + LANES`, ... until one does not match, and hands each
/// over in order (two ahead) or, given `to` (the output and the first
/// block's ticket), writes it there in its turn and reports once, at the
/// end, what it wrote (and the block it stopped at, having voided the
/// tickets from there on).
fn lanes(
    file: Arc<std::fs::File>,
    entries: &[Entry],
    chunk: usize,
    prepare: Option<Prepare>,
    to: Option<(Arc<Output>, u64)>,
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
/// (see [`Output::failed`]): the block counts as written.
fn write(b: Block, output: &Output, ticket: u64) -> Option<(u64, Vec<u64>)> {
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

/// Whether `bytes` are those `e` was made of.
fn matches_entry(bytes: &[u8], e: &Entry) -> bool {
    bytes.len() as u64 == e.len && crc32fast::hash(bytes) == e.crc
}

/// Rows from `line` of `path` on no longer match their index.
fn warn_mismatch(path: &Path, line: u64) {
    tracing::warn!(
        "{}:{line}: the rows from here on do not match their checksum in {}; reading them one by one",
        path.display(),
        index::path_for(path).display()
    );
}

/// `piece`, whose bytes match `e`, as a block.
fn verified(piece: Piece, e: &Entry, first_line: u64) -> Block {
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

fn prepared(mut block: Block, prepare: &Prepare) -> Checked {
    block.prepared = Some(prepare(&block));
    Checked::Block(block)
}

/// Check and convert `record.raw` into the record's fields.
///
/// This runs for every replayed row, so the shapes the agent writes (a
/// millisecond UTC time, plain decimals, counts) are read straight from the
/// bytes; anything else goes through the general parsers, which decide.
pub fn parse(record: &mut Record) -> Result<(), String> {
    let r = &record.raw;
    if r.len() != COLUMNS.len() {
        return Err(format!("{} field(s), expected {}", r.len(), COLUMNS.len()));
    }
    let lossy = |i: usize| short(&String::from_utf8_lossy(&r[i]));
    record.row.time = match fast_time(&r[0]) {
        Some(t) => t,
        None => std::str::from_utf8(&r[0])
            .ok()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .ok_or_else(|| format!("time `{}` is not RFC 3339", lossy(0)))?,
    };
    let group = std::str::from_utf8(&r[1]).map_err(|_| "group is not valid UTF-8".to_string())?;
    if group.is_empty() {
        return Err("empty group".into());
    }
    if !crate::config::is_name(group) {
        return Err(format!("group `{}` is not a group name", short(group)));
    }
    let num = |i: usize| -> Result<Option<f64>, String> {
        let b = &r[i];
        if b.is_empty() {
            return Ok(None);
        }
        let v = fast_decimal(b).or_else(|| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        });
        match v {
            Some(v) => Ok(Some(v)),
            None => Err(format!("{} `{}` is not a number", COLUMNS[i], lossy(i))),
        }
    };
    let (mean, min, max) = (num(2)?, num(3)?, num(4)?);
    let unit = match &r[5] {
        b"celsius" => Unit::Celsius,
        b"fahrenheit" => Unit::Fahrenheit,
        b"kelvin" => Unit::Kelvin,
        _ => return Err(format!("unit `{}` is not known", lossy(5))),
    };
    let count = |i: usize| -> Result<u64, String> {
        digits(&r[i]).ok_or_else(|| format!("{} `{}` is not a count", COLUMNS[i], lossy(i)))
    };
    let (ok, failed) = (count(6)?, count(7)?);
    let row = &mut record.row;
    row.group.clear();
    row.group.push_str(group);
    (row.mean, row.min, row.max) = (mean, min, max);
    (row.unit, row.ok, row.failed) = (unit, ok, failed);
    Ok(())
}

/// An unsigned decimal integer (1 to 19 digits, so it fits a u64).
pub(crate) fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// `-?DIGITS(.DIGITS)?` with at most 15 digits in all: the mantissa is
/// exact in an f64 and one division by an exact power of ten rounds
/// correctly, so this equals `str::parse` for what it accepts.
pub(crate) fn fast_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(dot) => (&b[..dot], &b[dot + 1..]),
        None => (b, &b[b.len()..]),
    };
    let has_dot = int.len() < b.len();
    if int.is_empty() || (has_dot && frac.is_empty()) || int.len() + frac.len() > 15 {
        return None;
    }
    let mantissa = digits(int)? * 10u64.pow(frac.len() as u32)
        + if frac.is_empty() { 0 } else { digits(frac)? };
    let v = mantissa as f64 / POW10[frac.len()];
    Some(if negative { -v } else { v })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the agent's own time format (years 1970 to
/// 9999, real calendar dates); `None` sends anything else to humantime.
fn fast_time(b: &[u8]) -> Option<SystemTime> {
    let b: &[u8; 24] = b.try_into().ok()?;
    let sep = |i: usize, c: u8| b[i] == c;
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':'))
        || !(sep(19, b'.') && sep(23, b'Z'))
    {
        return None;
    }
    let n = |from: usize, to: usize| digits(&b[from..to]);
    let (year, month, day) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hour, minute, second, milli) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 (the civil-from-days inverse, March-based year).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era_days = y * 365 + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + day - 1;
    let days = era_days - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + milli))
}

fn short(s: &str) -> String {
    s.chars().take(32).collect()
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The next of a xorshift sequence: test inputs without a dependency.
    pub(crate) fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn separator_masks_agree_with_byte_by_byte() {
        // Bytes around each boundary the masks draw, and high bytes.
        const PICK: &[u8] = b",,,,\n\n\n+-.0 \t\r\"\x00\x2b\x2c\x2d\x80\xac\x8a\xff\x7f";
        let mut x = 0x5eed_u64;
        for round in 0..20_000 {
            let mut bytes = [0u8; 64];
            for b in &mut bytes {
                let r = xorshift(&mut x);
                *b = if round % 2 == 0 {
                    PICK[r as usize % PICK.len()]
                } else {
                    r as u8
                };
            }
            let mut want = (0u64, 0u64);
            for (i, &b) in bytes.iter().enumerate() {
                want.0 |= u64::from(b < b'-') << i;
                want.1 |= u64::from(b == b',') << i;
            }
            assert_eq!(simd::masks(&bytes), want, "{bytes:?}");
            assert_eq!(scalar_masks(&bytes), want, "{bytes:?}");
        }
    }

    #[test]
    fn fast_time_agrees_with_humantime() {
        // Every 7 hours 13 minutes and a few ms, 1970 to 2110: all months,
        // leap days, year ends.
        let mut t = SystemTime::UNIX_EPOCH;
        let step = std::time::Duration::from_millis(7 * 3_600_000 + 13 * 60_000 + 7);
        for _ in 0..170_000 {
            let text = humantime::format_rfc3339_millis(t).to_string();
            assert_eq!(fast_time(text.as_bytes()), Some(t), "{text}");
            t += step;
        }
        for bad in [
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:60:00.000Z",
            "2026-01-01T00:00:60.000Z",
            "2026-01-01 00:00:00.000Z",
            "2026-01-01T00:00:00.000+",
            "1969-12-31T23:59:59.999Z",
            "2026-01-01T00:00:0x.000Z",
        ] {
            assert_eq!(fast_time(bad.as_bytes()), None, "{bad}");
        }
        assert!(fast_time(b"2024-02-29T12:00:00.000Z").is_some());
    }

    #[test]
    fn fast_decimal_agrees_with_str_parse() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "21.5",
            "-273.150",
            "0.001",
            "999999999999999",
            "0.000000000000001",
            "123456.789012345",
            "1.0",
            "-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            let x = xorshift(&mut x);
            let decimals = (x % 8) as usize;
            let v = (x >> 20) as f64 / 1e6 - 5e6;
            texts.push(format!("{v:.decimals$}"));
        }
        // Up to 15 digits the fast path answers, and exactly as parse does;
        // longer numbers are left to parse.
        for t in &texts {
            let want: f64 = t.parse().unwrap();
            let digits = t.bytes().filter(u8::is_ascii_digit).count();
            let fast = fast_decimal(t.as_bytes());
            assert_eq!(fast, (digits <= 15).then_some(want), "{t}");
            assert_eq!(fast.map(f64::to_bits), fast.map(|_| want.to_bits()), "{t}");
        }
        for other in [
            "",
            "-",
            ".5",
            "5.",
            "1e3",
            "nan",
            "inf",
            "1,5",
            "+1",
            "1234567890123456",
            "0x10",
        ] {
            assert_eq!(fast_decimal(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn split8_finds_every_comma() {
        let line = b"2026-11-24T10:00:05.000Z,g,-1.5,,22,kelvin,3,0";
        let want: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        let mut fields = [&b""[..]; 8];
        assert!(split8(line, &mut fields));
        assert_eq!(fields.to_vec(), want);
        // Every length and comma position, and commas next to `-` (0x2d,
        // one bit off a comma: a borrowing zero-byte test gets it wrong).
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let x = xorshift(&mut x);
            let len = (x % 40) as usize;
            let line: Vec<u8> = (0..len)
                .map(|i| [b',', b'-', b'a', b'+', b'.'][((x >> (i % 60)) % 5) as usize])
                .collect();
            let want: Vec<&[u8]> = line.split(|&b| b == b',').collect();
            let mut fields = [&b""[..]; 8];
            let got = split8(&line, &mut fields).then(|| fields.to_vec());
            assert_eq!(got, (want.len() == 8).then_some(want), "{line:?}");
        }
    }

    #[test]
    fn rows_are_checked_field_by_field() {
        let ok = Record::from_line("2026-11-24T10:00:05.000Z,g,21.5,,22,kelvin,3,0").unwrap();
        assert_eq!(ok.row.mean, Some(21.5));
        assert_eq!(ok.row.min, None);
        assert_eq!(ok.row.unit, Unit::Kelvin);
        // Another valid RFC 3339 spelling goes through humantime.
        let other = Record::from_line("2026-11-24T10:00:05Z,g,1,1,1,celsius,1,0").unwrap();
        assert_eq!(other.row.time, ok.row.time);
        for (line, why) in [
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,1",
                "7 field(s), expected 8",
            ),
            (
                "2026-11-31T10:00:05.000Z,g,1,1,1,celsius,1,0",
                "time `2026-11-31T10:00:05.000Z` is not RFC 3339",
            ),
            ("2026-11-24T10:00:05.000Z,,1,1,1,celsius,1,0", "empty group"),
            (
                "2026-11-24T10:00:05.000Z,g\"h,1,1,1,celsius,1,0",
                "group `g\"h` is not a group name",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1x,1,1,celsius,1,0",
                "mean `1x` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,NaN,1,celsius,1,0",
                "min `NaN` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1e999,celsius,1,0",
                "max `1e999` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,rankine,1,0",
                "unit `rankine` is not known",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,-1,0",
                "ok `-1` is not a count",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,1,99999999999999999999",
                "failed `99999999999999999999` is not a count",
            ),
        ] {
            assert_eq!(Record::from_line(line).unwrap_err(), why, "{line}");
        }
    }
}
