//! The files a target reads, in the order they were written, and one file
//! read forward from a byte offset in whole rows.
//!
//! Why not replay's reader: replay reads a range once, fast, and then
//! stops; a target reads one file at a time from a saved offset, stops at
//! the active file's last complete line, and goes on from there when more
//! is written. It shares replay's row check and line-protocol encoder.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::history::row::{HEADER, Record};
use crate::history::{index, parse};
use crate::replay::Encoder;

/// One data file of the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: PathBuf,
    /// `PREFIX-TIME` for a rotated file; `None` for the active one.
    pub stem: Option<String>,
}

impl DataFile {
    /// The name without `.gz`.
    pub fn name(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.strip_suffix(".gz").map(str::to_string).unwrap_or(name)
    }
}

/// The prefix's files in the order they were written: the rotated ones by
/// the journal (a plain copy preferred to its compressed twin while both
/// exist), then the writer's active file.
pub fn in_order(dir: &Path, prefix: &str) -> io::Result<Vec<DataFile>> {
    let mut files: Vec<DataFile> = Vec::new();
    for (r, path) in crate::store::rotated_in_order(dir, prefix)? {
        let stem = r.stem(prefix);
        match files.last_mut() {
            Some(last) if last.stem.as_deref() == Some(stem.as_str()) => {
                if !r.gzip {
                    last.path = path;
                }
            }
            _ => files.push(DataFile {
                path,
                stem: Some(stem),
            }),
        }
    }
    if let Some(path) = crate::tail::active::writer_active(dir, prefix)? {
        files.push(DataFile { path, stem: None });
    }
    Ok(files)
}

fn open_bytes(path: &Path, offset: u64) -> io::Result<(Box<dyn Read + Send + Sync>, (u64, u64))> {
    // A rotated plain file may have been compressed since it was listed:
    // its rows are in `NAME.gz` then.
    let gz_twin = || {
        let mut name = path.as_os_str().to_owned();
        name.push(".gz");
        PathBuf::from(name)
    };
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    let (file, path) = match File::open(path) {
        Ok(f) => (f, path.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !is_gz => {
            let twin = gz_twin();
            match File::open(&twin) {
                Ok(f) => (f, twin),
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let path = path.as_path();
    let meta = file.metadata()?;
    let id = (meta.dev(), meta.ino());
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, file));
        let skipped = io::copy(&mut (&mut gz).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends before byte {offset}", path.display()),
            ));
        }
        Ok((Box::new(gz), id))
    } else {
        let mut file = file;
        if offset > meta.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends before byte {offset}", path.display()),
            ));
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok((Box::new(file), id))
    }
}

/// The first row of `path` as written (no newline); `None` while the
/// file holds no complete row. Blocking.
pub fn first_row(path: &Path) -> io::Result<Option<String>> {
    let (bytes, _) = open_bytes(path, 0)?;
    let mut r = BufReader::new(bytes.take(64 * 1024));
    let mut line = Vec::new();
    for _ in 0..2 {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Ok(None);
        }
        if line != HEADER.as_bytes() {
            break;
        }
    }
    Ok(Some(
        String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
    ))
}

/// The time field of the row that ends at byte `offset` of `path` (a
/// plain file; `None` for a compressed one, for offset 0, or when no line
/// ends there). Blocking.
pub fn time_before(path: &Path, offset: u64) -> io::Result<Option<String>> {
    if offset == 0 || path.extension().is_some_and(|e| e == "gz") {
        return Ok(None);
    }
    let mut file = File::open(path)?;
    if file.metadata()?.len() < offset {
        return Ok(None);
    }
    let from = offset.saturating_sub(4096);
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0; (offset - from) as usize];
    file.read_exact(&mut buf)?;
    let Some(body) = buf.strip_suffix(b"\n") else {
        return Ok(Some(String::new()));
    };
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && from > 0 {
        return Ok(None);
    }
    Ok(body[start..]
        .split(|&b| b == b',')
        .next()
        .map(|t| String::from_utf8_lossy(t).into_owned()))
}

/// The time field of the last complete row of `path` (a plain file: the
/// active one). Blocking.
pub fn last_time(path: &Path) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(4096);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    let start = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = &tail[start..end];
    if line == HEADER.trim_end().as_bytes() || (start == 0 && from > 0) {
        return Ok(None);
    }
    Ok(line
        .split(|&b| b == b',')
        .next()
        .map(|t| String::from_utf8_lossy(t).into_owned()))
}

/// Where a file is in `files`: by inode (`id`: a rename keeps it,
/// compression does not), by name without `.gz`, else by its first row
/// (newest first: a file just rotated is the one looked for, usually). An
/// inode number or a name matches only with the same first row, when that
/// is known: the number is given to a new file once a compressed file's
/// plain copy is removed, and the store gives a name retention freed to a
/// later file. Blocking.
pub fn find(
    files: &[DataFile],
    name: Option<&str>,
    first: Option<&str>,
    id: Option<(u64, u64)>,
) -> Option<usize> {
    let first_of = |i: usize| first_row(&files[i].path).ok().flatten();
    let same_first = |i: usize| first.is_none() || first_of(i).as_deref() == first;
    let by_id = id.and_then(|id| {
        files
            .iter()
            .position(|f| crate::tail::active::id_of(&f.path) == Some(id))
    });
    if let Some(i) = by_id.filter(|&i| same_first(i)) {
        return Some(i);
    }
    let by_name = name.and_then(|name| files.iter().position(|f| f.name() == name));
    if let Some(i) = by_name.filter(|&i| same_first(i)) {
        return Some(i);
    }
    let first = first?;
    (0..files.len())
        .rev()
        .find(|&i| first_of(i).as_deref() == Some(first))
}

/// Rows in `files` from byte `offset` of file `at` on; rotated files'
/// counts are taken from `known` (they do not change) or added to it.
/// Blocking.
pub fn rows_after(
    files: &[DataFile],
    at: usize,
    offset: u64,
    known: &mut std::collections::HashMap<String, u64>,
) -> u64 {
    let Some(file) = files.get(at) else {
        return 0;
    };
    let mut rows = index::rows_from(&file.path, offset).unwrap_or(0);
    for f in &files[at + 1..] {
        rows += match &f.stem {
            Some(stem) => *known
                .entry(stem.clone())
                .or_insert_with(|| index::rows_from(&f.path, 0).unwrap_or(0)),
            None => index::rows_from(&f.path, 0).unwrap_or(0),
        };
    }
    rows
}

/// The time field of the newest row: the writer's active file's last.
/// Blocking.
pub fn newest_time(files: &[DataFile]) -> Option<String> {
    files
        .last()
        .filter(|f| f.stem.is_none())
        .and_then(|f| last_time(&f.path).ok().flatten())
}

/// One row in a batch: where its line ends in the body, where it ends in
/// the file, and its time field.
#[derive(Debug, Clone)]
pub struct RowEnd {
    pub body_end: usize,
    pub offset: u64,
    pub time: SystemTime,
}

/// Rows of one file, encoded, on their way to the engine.
#[derive(Debug, Default)]
pub struct Batch {
    pub body: Vec<u8>,
    pub rows: Vec<RowEnd>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.body.clear();
        self.rows.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What [`Reader::fill`] stopped at.
#[derive(Debug, PartialEq, Eq)]
pub enum Filled {
    /// The batch is full.
    Full,
    /// No complete line left (for now, in the active file).
    End,
}

/// One file read forward in complete lines.
pub struct Reader {
    pub file: DataFile,
    /// (device, inode) of the file read, to tell whether the active path
    /// still names it.
    pub id: (u64, u64),
    inner: BufReader<Box<dyn Read + Send + Sync>>,
    /// Uncompressed bytes through the last complete line read.
    pub offset: u64,
    /// Where the rows not yet acknowledged begin in this file (the offset
    /// it was opened at, then each acknowledgement's): what retention must
    /// count if it removes the file.
    pub acked: u64,
    /// An incomplete last line, read so far.
    partial: Vec<u8>,
    /// The file's first row (its identity), once known.
    pub first: Option<String>,
    record: Record,
    /// Damaged lines passed over, and the first few of their places.
    pub bad_lines: u64,
    /// The writer no longer appends to it (it was the active file and was
    /// rotated or moved away): its end is its end.
    pub closed: bool,
}

impl Reader {
    /// `file` from byte `offset` (a line's start). Blocking.
    pub fn open(file: DataFile, offset: u64) -> io::Result<Reader> {
        let (bytes, id) = open_bytes(&file.path, offset)?;
        let first = if offset > 0 {
            first_row(&file.path)?
        } else {
            None
        };
        Ok(Reader {
            file,
            id,
            inner: BufReader::with_capacity(64 * 1024, bytes),
            offset,
            acked: offset,
            partial: Vec::new(),
            first,
            record: Record::default(),
            bad_lines: 0,
            closed: false,
        })
    }

    /// Encode complete lines into `batch` until it holds `max_rows` rows or
    /// `max_bytes` bytes, or no complete line is left. Blocking.
    pub fn fill(
        &mut self,
        batch: &mut Batch,
        encoder: &mut Encoder,
        max_rows: usize,
        max_bytes: usize,
    ) -> io::Result<Filled> {
        loop {
            if batch.rows.len() >= max_rows || batch.body.len() >= max_bytes {
                return Ok(Filled::Full);
            }
            let n = self.inner.read_until(b'\n', &mut self.partial)?;
            if n == 0 || !self.partial.ends_with(b"\n") {
                // Kept: the rest of the line comes with the next write.
                return Ok(Filled::End);
            }
            let start = self.offset;
            self.offset += self.partial.len() as u64;
            let line = std::mem::take(&mut self.partial);
            self.row(&line, start, batch, encoder);
            self.partial = line;
            self.partial.clear();
        }
    }

    fn row(&mut self, line: &[u8], start: u64, batch: &mut Batch, encoder: &mut Encoder) {
        if line == HEADER.as_bytes() {
            return;
        }
        let text = &line[..line.len() - 1];
        self.record.raw.clear();
        for field in text.split(|&b| b == b',') {
            self.record.raw.push_field(field);
        }
        if self.first.is_none() {
            // As written, valid or not: what `first_row` reads back.
            self.first = Some(String::from_utf8_lossy(text).into_owned());
        }
        if let Err(why) = parse::parse(&mut self.record) {
            self.bad_lines += 1;
            if self.bad_lines <= 10 {
                tracing::warn!(
                    "{} at byte {start}: not a row ({why}); passed over",
                    self.file.path.display()
                );
            }
            return;
        }
        encoder.encode(&self.record.view(), &mut batch.body);
        batch.rows.push(RowEnd {
            body_end: batch.body.len(),
            offset: self.offset,
            time: self.record.row.time,
        });
    }
}
