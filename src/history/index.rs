//! A checksum index beside each data file, so that replay can pass rows
//! through without checking each one again.
//!
//! Why: a replay of months of history spends nearly all its time splitting
//! and checking rows that were checked once already, when they were
//! written. The index lists consecutive blocks of whole rows (about
//! [`BLOCK`] bytes each) with their byte range, row count, earliest and
//! latest time and a CRC-32 of their bytes. Every row of a block passed the
//! same check replay makes ([`super::parse::parse`]) when the block was
//! indexed. Replay recomputes the CRC (several GB/s), and a block whose
//! bytes still match is known to be those rows; a block that does not
//! match, and whatever comes after the last block, is read row by row as
//! before. So a wrong, stale or damaged index costs speed, never rows.
//!
//! The index of `NAME.csv` is `.NAME.csv.idx` in the same directory (hidden,
//! so `ls` and `tail -F` users see only data files); it serves `NAME.csv.gz`
//! too, as offsets count uncompressed bytes. It is text: a first line
//! [`MAGIC`], then one line per block, `OFFSET LEN ROWS MIN_MS MAX_MS CRC`
//! (times in ms since 1970, the CRC in hex), and possibly a last line `end`:
//! a line that is not a row was found there, so no block follows and replay
//! reads the rest of the file row by row. Blocks are contiguous from the end
//! of the header on; a line that breaks that (or a torn last line) ends the
//! index where it stands.
//!
//! The store keeps the active file's index current (a block is added once
//! that many bytes are written), completes it at rotation and renames it
//! with the file; retention removes it with the file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::names::FILE_MODE;
use super::parse;
use super::row::{HEADER, Record};

/// Bytes of rows per block: large enough that a replay checks one CRC per
/// few thousand rows, small enough to hold one block in memory at a time.
pub const BLOCK: u64 = 256 * 1024;

/// The first line of an index file.
pub const MAGIC: &str = "edge-agent-index 1";

/// One block of whole rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Where the block starts in the (uncompressed) file.
    pub offset: u64,
    pub len: u64,
    pub rows: u64,
    /// Earliest and latest row time, ms since 1970.
    pub min_ms: u64,
    pub max_ms: u64,
    /// CRC-32 (as in gzip) of the block's bytes.
    pub crc: u32,
}

impl Entry {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {:08x}\n",
            self.offset, self.len, self.rows, self.min_ms, self.max_ms, self.crc
        )
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split(' ');
        let mut num = || f.next()?.parse::<u64>().ok();
        let entry = Entry {
            offset: num()?,
            len: num()?,
            rows: num()?,
            min_ms: num()?,
            max_ms: num()?,
            crc: 0,
        };
        let crc = u32::from_str_radix(f.next()?, 16).ok()?;
        (f.next().is_none() && entry.len > 0 && entry.rows > 0 && entry.min_ms <= entry.max_ms)
            .then_some(Entry { crc, ..entry })
    }

    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The blocks of one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Index {
    pub entries: Vec<Entry>,
    /// No block follows the last one (see the module docs).
    pub ended: bool,
}

/// `.NAME.csv.idx` for `NAME.csv` and for `NAME.csv.gz`.
pub fn path_for(data: &Path) -> PathBuf {
    let name = data.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    data.with_file_name(format!(".{name}.idx"))
}

impl Index {
    /// The index of `data`, as far as it is whole and consistent; `None`
    /// when there is none (or it cannot be read).
    pub fn load(data: &Path) -> Option<Index> {
        Self::read(data).map(|(index, _)| index)
    }

    /// [`Index::load`], and whether every line of the index file was
    /// taken (new blocks may be appended to it only then).
    fn read(data: &Path) -> Option<(Index, bool)> {
        let text = std::fs::read(path_for(data)).ok()?;
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.split_inclusive('\n');
        if lines.next()? != format!("{MAGIC}\n") {
            return None;
        }
        let mut index = Index::default();
        let mut end = HEADER.len() as u64;
        for line in lines {
            // A torn last line (no newline) is not there yet.
            let Some(line) = line.strip_suffix('\n') else {
                return Some((index, false));
            };
            if line == "end" {
                index.ended = true;
                break;
            }
            match Entry::parse(line) {
                Some(e) if e.offset == end => {
                    end = e.end();
                    index.entries.push(e);
                }
                _ => return Some((index, false)),
            }
        }
        Some((index, true))
    }

    /// Where the indexed bytes end (the end of the header if none are).
    pub fn covered_end(&self) -> u64 {
        self.entries.last().map_or(HEADER.len() as u64, Entry::end)
    }
}

/// A block being gathered.
struct Gather {
    entry: Entry,
    hasher: crc32fast::Hasher,
}

impl Gather {
    fn at(offset: u64) -> Gather {
        Gather {
            entry: Entry {
                offset,
                len: 0,
                rows: 0,
                min_ms: u64::MAX,
                max_ms: 0,
                crc: 0,
            },
            hasher: crc32fast::Hasher::new(),
        }
    }

    fn add(&mut self, line: &[u8], ms: u64) {
        self.hasher.update(line);
        let e = &mut self.entry;
        e.len += line.len() as u64;
        e.rows += 1;
        e.min_ms = e.min_ms.min(ms);
        e.max_ms = e.max_ms.max(ms);
    }

    fn finish(self) -> Entry {
        Entry {
            crc: self.hasher.finalize(),
            ..self.entry
        }
    }
}

/// The time of `line` (with its newline) in ms, if it is a row replay
/// would read, checked in `record` (reused: no allocation per row). Our
/// writer never writes `\r` or an empty line, so those end an index too:
/// the row-by-row reader decides what they are.
fn row_ms(line: &[u8], record: &mut Record) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    if line.contains(&b'\r') {
        return None;
    }
    record.raw.clear();
    for field in line.split(|&b| b == b',') {
        record.raw.push_field(field);
    }
    parse::parse(record).ok()?;
    let ms = record.row.time.duration_since(UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// Index what of `data` is not indexed yet: whole blocks of complete rows
/// and, with `last` (the file is closed: rotated), the shorter block at
/// the end. Returns where the indexed bytes now end. Blocking: run it on
/// the blocking pool.
pub fn update(data: &Path, last: bool) -> io::Result<u64> {
    update_with(data, last, BLOCK, u64::MAX)
}

/// [`update`] with blocks of `block_size` bytes (tests use small ones),
/// looking at no byte at or after `limit` (the store passes the length of
/// its last complete write).
#[doc(hidden)]
pub fn update_with(data: &Path, last: bool, block_size: u64, limit: u64) -> io::Result<u64> {
    // An index file with a torn or inconsistent line is written anew
    // (appended to, its new blocks would never be read).
    let (mut index, whole) = Index::read(data).unwrap_or_default();
    let start = index.covered_end();
    if index.ended {
        return Ok(start);
    }
    let mut file = File::open(data)?;
    if index.entries.is_empty() {
        let mut head = vec![0; HEADER.len()];
        if file.read_exact(&mut head).is_err() || head != HEADER.as_bytes() {
            // Not one of ours, or no header yet: nothing to index.
            return Ok(start);
        }
    }
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(limit.saturating_sub(start)));
    let mut new = Vec::new();
    let mut block = Gather::at(start);
    let mut line = Vec::with_capacity(256);
    let mut record = Record::default();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            break; // the end, or a row still being written
        }
        let Some(ms) = row_ms(&line, &mut record) else {
            index.ended = true;
            break;
        };
        block.add(&line, ms);
        if block.entry.len >= block_size {
            let end = block.entry.end();
            new.push(std::mem::replace(&mut block, Gather::at(end)).finish());
        }
    }
    if (last || index.ended) && block.entry.rows > 0 {
        new.push(block.finish());
    }
    let end = new.last().map_or(start, Entry::end);
    if new.is_empty() && !index.ended {
        return Ok(end);
    }
    let fresh = !whole;
    let mut out = OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .mode(FILE_MODE)
        .open(path_for(data))?;
    let mut text = String::new();
    if fresh {
        text.push_str(MAGIC);
        text.push('\n');
        for e in &index.entries {
            text.push_str(&e.line());
        }
    }
    for e in &new {
        text.push_str(&e.line());
    }
    if index.ended {
        text.push_str("end\n");
    }
    out.write_all(text.as_bytes())?;
    Ok(end)
}

/// At the store's start: keep the active file's index if it still belongs
/// to the file (its first and last blocks match), otherwise rebuild it; then
/// index what was written since. A crash can leave an index describing more
/// than the repaired file holds, or the file rotated before it. Blocking.
pub fn reopen(data: &Path, limit: u64) -> io::Result<u64> {
    if let Some(index) = Index::load(data) {
        let fits = match (index.entries.first(), index.entries.last()) {
            (Some(first), Some(last)) => matches(data, first)? && matches(data, last)?,
            _ => true,
        };
        if !fits {
            remove(data)?;
        }
    }
    update_with(data, false, BLOCK, limit)
}

/// True when the bytes of `data` at `e` have `e`'s CRC.
fn matches(data: &Path, e: &Entry) -> io::Result<bool> {
    let mut file = File::open(data)?;
    if file.metadata()?.len() < e.end() {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(e.offset))?;
    let mut bytes = vec![0; e.len as usize];
    file.read_exact(&mut bytes)?;
    Ok(crc32fast::hash(&bytes) == e.crc)
}

/// How many rows `data` (plain or `.gz`) holds from byte `offset` of its
/// rows on (offsets count uncompressed bytes; `offset` is at a line's
/// start). Indexed blocks are counted from the index; a block cut by
/// `offset` and the bytes after the index are counted line by line in a
/// plain file (in a compressed one, a cut block is counted in proportion).
/// Blocking.
pub fn rows_from(data: &Path, offset: u64) -> io::Result<u64> {
    let gz = data.extension().is_some_and(|e| e == "gz");
    let index = Index::load(data).unwrap_or_default();
    let mut rows = 0;
    for e in &index.entries {
        if e.offset >= offset {
            rows += e.rows;
        } else if e.end() > offset {
            rows += if gz {
                e.rows * (e.end() - offset) / e.len.max(1)
            } else {
                count_lines(data, offset, Some(e.end()))?
            };
        }
    }
    if index.ended {
        return Ok(rows);
    }
    let from = offset.max(index.covered_end());
    let mut tail = count_lines(data, from, None)?;
    if from < HEADER.len() as u64 {
        tail = tail.saturating_sub(1);
    }
    Ok(rows + tail)
}

/// Complete lines of `data` between uncompressed bytes `from` and `to`.
fn count_lines(data: &Path, from: u64, to: Option<u64>) -> io::Result<u64> {
    let file = File::open(data)?;
    let mut reader: Box<dyn Read> = if data.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
        io::copy(&mut (&mut gz).take(from), &mut io::sink())?;
        Box::new(gz)
    } else {
        let mut file = file;
        file.seek(SeekFrom::Start(from))?;
        Box::new(file)
    };
    if let Some(to) = to {
        reader = Box::new(reader.take(to.saturating_sub(from)));
    }
    let mut buf = vec![0; 64 * 1024];
    let mut lines = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(lines),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

/// Remove the index of `data`, if any.
pub fn remove(data: &Path) -> io::Result<()> {
    match std::fs::remove_file(path_for(data)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Rename the index of `from` to go with `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(path_for(from), path_for(to)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The data file an index file name belongs to (`.NAME.csv.idx` ->
/// `NAME.csv`), for clean-up of indexes whose file is gone.
pub fn data_name(index_name: &str) -> Option<&str> {
    index_name.strip_prefix('.')?.strip_suffix(".idx")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: u64) -> String {
        format!(
            "{},g,21.500,20.000,23.000,celsius,3,0\n",
            humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_secs(t))
        )
    }

    /// `readings.csv` in `dir` with the header and `n` rows; its text.
    fn file_of_rows(dir: &Path, n: u64) -> (PathBuf, String) {
        let data = dir.join("readings.csv");
        let mut text = HEADER.to_string();
        for i in 0..n {
            text.push_str(&row(1_800_000_000 + i));
        }
        std::fs::write(&data, &text).unwrap();
        (data, text)
    }

    #[test]
    fn blocks_cover_whole_rows_and_match_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (data, mut text) = file_of_rows(dir.path(), 24_000);
        // While the file is active only whole blocks count.
        let end = update(&data, false).unwrap();
        let index = Index::load(&data).unwrap();
        assert_eq!(
            index.entries.len(),
            (text.len() as u64 - 40) as usize / BLOCK as usize
        );
        assert_eq!(end, index.covered_end());
        // Rows appended later go into new blocks; `last` closes the file.
        text.push_str(&row(1_800_100_000));
        std::fs::write(&data, &text).unwrap();
        assert_eq!(update(&data, true).unwrap(), text.len() as u64);
        let index = Index::load(&data).unwrap();
        let mut rows = 0;
        for e in &index.entries {
            let bytes = &text.as_bytes()[e.offset as usize..e.end() as usize];
            assert_eq!(crc32fast::hash(bytes), e.crc);
            assert!(bytes.ends_with(b"\n"));
            rows += e.rows;
        }
        assert_eq!(rows, 24_001);
        assert_eq!(index.entries[0].min_ms, 1_800_000_000_000);
        assert_eq!(index.entries.last().unwrap().max_ms, 1_800_100_000_000);
        assert!(!index.ended);
    }

    #[test]
    fn a_line_that_is_not_a_row_ends_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("readings-x.csv");
        let text = format!("{HEADER}{}{}garbage\n{}", row(1), row(2), row(3));
        std::fs::write(&data, &text).unwrap();
        update(&data, true).unwrap();
        let index = Index::load(&data).unwrap();
        assert_eq!(index.entries.len(), 1);
        assert_eq!(index.entries[0].rows, 2);
        assert!(index.ended);
        // Nothing more is ever added after `end`.
        update(&data, true).unwrap();
        assert_eq!(Index::load(&data).unwrap(), index);
    }

    #[test]
    fn an_index_with_a_torn_line_is_written_anew_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (data, mut text) = file_of_rows(dir.path(), 6_000);
        update(&data, false).unwrap();
        let before = Index::load(&data).unwrap();
        assert!(!before.entries.is_empty());
        // A crash in the middle of appending a block's line.
        let mut ix = std::fs::read_to_string(path_for(&data)).unwrap();
        ix.push_str("262");
        std::fs::write(path_for(&data), ix).unwrap();
        for i in 0..6_000 {
            text.push_str(&row(1_900_000_000 + i));
        }
        std::fs::write(&data, &text).unwrap();
        update(&data, false).unwrap();
        let after = Index::load(&data).unwrap();
        assert_eq!(after.entries[..before.entries.len()], before.entries[..]);
        assert!(after.entries.len() > before.entries.len());
        assert!(Index::read(&data).unwrap().1, "the torn line is gone");
    }

    #[test]
    fn a_stale_index_is_rebuilt_at_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = file_of_rows(dir.path(), 6_000);
        update(&data, true).unwrap();
        // The file was replaced (a crash between rotation's renames).
        let fresh = format!("{HEADER}{}", row(5));
        std::fs::write(&data, &fresh).unwrap();
        reopen(&data, u64::MAX).unwrap();
        assert_eq!(Index::load(&data), None);
        assert_eq!(update(&data, true).unwrap(), fresh.len() as u64);
        assert_eq!(Index::load(&data).unwrap().entries[0].rows, 1);
    }

    #[test]
    fn torn_and_inconsistent_index_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("readings.csv");
        let good = Entry {
            offset: HEADER.len() as u64,
            len: 10,
            rows: 1,
            min_ms: 1,
            max_ms: 1,
            crc: 0xabc,
        };
        let gap = Entry {
            offset: 100,
            ..good
        };
        std::fs::write(
            path_for(&data),
            format!("{MAGIC}\n{}{}", good.line(), gap.line()),
        )
        .unwrap();
        assert_eq!(Index::load(&data).unwrap().entries, vec![good]);
        std::fs::write(path_for(&data), format!("{MAGIC}\n{}40 1", good.line())).unwrap();
        assert_eq!(Index::load(&data).unwrap().entries, vec![good]);
        assert_eq!(
            path_for(Path::new("/d/readings-x.csv.gz")),
            Path::new("/d/.readings-x.csv.idx")
        );
        assert_eq!(data_name(".readings-x.csv.idx"), Some("readings-x.csv"));
    }
}
