//! Reading one recorded file, row by row, in bounded memory.
//!
//! The file is read in chunks of `--chunk-size` with async I/O: a
//! tokio-stream of chunks (`ReaderStream`), turned back into a reader for
//! the gzip decoder (rotated `.csv.gz`) and for csv-async on top. Nothing
//! holds more than a chunk and csv-async's own buffer, whatever the size of
//! the history.
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
use std::time::SystemTime;

use async_compression::tokio::bufread::GzipDecoder;
use csv_async::ByteRecord;
use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::aggregate::Row;
use crate::config::Unit;

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

/// What reading yields: a row, or a skipped line / damaged rest of file.
pub enum Next<'a> {
    Row(&'a Record),
    Skip(Skip),
}

type Source = Pin<Box<dyn AsyncRead + Send>>;

/// Rows of one file.
pub struct FileReader {
    path: PathBuf,
    csv: csv_async::AsyncReader<Tracked<Source>>,
    last_byte: Arc<AtomicU8>,
    bytes: Arc<AtomicU64>,
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
    done: bool,
    header_checked: bool,
}

impl FileReader {
    pub async fn open(path: &Path, gzip: bool, chunk_size: usize) -> std::io::Result<FileReader> {
        let file = tokio::fs::File::open(path).await?;
        let chunks = ReaderStream::with_capacity(file, chunk_size.max(512));
        let raw = StreamReader::new(chunks);
        let source: Source = if gzip {
            let mut decoder = GzipDecoder::new(BufReader::with_capacity(chunk_size.max(512), raw));
            decoder.multiple_members(true);
            Box::pin(decoder)
        } else {
            Box::pin(raw)
        };
        let last_byte = Arc::new(AtomicU8::new(b'\n'));
        let bytes = Arc::new(AtomicU64::new(0));
        let tracked = Tracked {
            inner: source,
            last_byte: last_byte.clone(),
            bytes: bytes.clone(),
        };
        let csv = csv_async::AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // Our files never quote (group names are plain words), so a
            // stray `"` is damage to one line, not the start of a field
            // that swallows every line after it.
            .quoting(false)
            .buffer_capacity(chunk_size.clamp(512, 64 * 1024))
            .create_reader(tracked);
        Ok(FileReader {
            path: path.to_path_buf(),
            csv,
            last_byte,
            bytes,
            cur: ByteRecord::new(),
            held: None,
            out: None,
            skips: VecDeque::new(),
            record: Record::default(),
            done: false,
            header_checked: false,
        })
    }

    /// Bytes read so far (after decompression).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn skip(&self, line: Option<u64>, reason: impl Into<String>) -> Skip {
        Skip {
            file: self.path.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// The next row or skip; `None` at the end of the file.
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
            self.advance().await;
        }
    }

    /// Read one more record, deciding what it lets us decide.
    async fn advance(&mut self) {
        let mut record = std::mem::take(&mut self.cur);
        let read = self.csv.read_byte_record(&mut record).await;
        match read {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
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

/// Check and convert `record.raw` into the record's fields.
pub fn parse(record: &mut Record) -> Result<(), String> {
    let r = &record.raw;
    if r.len() != COLUMNS.len() {
        return Err(format!("{} field(s), expected {}", r.len(), COLUMNS.len()));
    }
    let text = |i: usize| {
        std::str::from_utf8(&r[i]).map_err(|_| format!("{} is not valid UTF-8", COLUMNS[i]))
    };
    let time = text(0)?;
    record.row.time = humantime::parse_rfc3339(time)
        .map_err(|_| format!("time `{}` is not RFC 3339", short(time)))?;
    let group = text(1)?;
    if group.is_empty() {
        return Err("empty group".into());
    }
    let num = |i: usize| -> Result<Option<f64>, String> {
        if r[i].is_empty() {
            return Ok(None);
        }
        let t = text(i)?;
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("{} `{}` is not a number", COLUMNS[i], short(t))),
        }
    };
    let (mean, min, max) = (num(2)?, num(3)?, num(4)?);
    let unit = match &r[5] {
        b"celsius" => Unit::Celsius,
        b"fahrenheit" => Unit::Fahrenheit,
        b"kelvin" => Unit::Kelvin,
        other => {
            return Err(format!(
                "unit `{}` is not known",
                short(&String::from_utf8_lossy(other))
            ));
        }
    };
    let count = |i: usize| -> Result<u64, String> {
        let t = text(i)?;
        t.parse::<u64>()
            .map_err(|_| format!("{} `{}` is not a count", COLUMNS[i], short(t)))
    };
    let (ok, failed) = (count(6)?, count(7)?);
    let row = &mut record.row;
    row.group.clear();
    row.group.push_str(group);
    (row.mean, row.min, row.max) = (mean, min, max);
    (row.unit, row.ok, row.failed) = (unit, ok, failed);
    Ok(())
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
