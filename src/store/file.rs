//! The active CSV file: opened safely, appended to whole rows at a time.
//!
//! Opening is where damage from a previous run is dealt with:
//! - a partial last line (power cut mid-write) is cut back to the last
//!   newline, and so are complete lines after the last row that parses;
//!   the number of bytes cut is logged;
//! - an empty file, or one holding only zeros or a start of the header
//!   (then perhaps zeros), gets the header;
//! - a file of our rows without the header (what `logrotate`'s
//!   `copytruncate` leaves when a row comes in after the truncation, perhaps
//!   behind zeros a writer without `O_APPEND` left) is adopted: the header
//!   is put before the rows (a new file renamed over it, so a crash leaves
//!   one or the other whole) and not a row is dropped;
//! - a file whose first line is neither our header nor a row of ours
//!   belongs to someone else, and anything that is not a regular file (a
//!   directory, fifo, symlink...) is not ours either: never cut, renamed or
//!   appended to ([`StoreError::is_not_ours`]; the store writes beside it).
//!
//! Appends keep track of the length the file had after the last complete
//! write. If a write fails part-way (disk full), the file is truncated back
//! to that length before the next attempt, so a retry never leaves a torn or
//! doubled row. All file access goes through [`super::disk`], so tests can
//! make any of it fail.

use std::fs::FileType;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::disk::{Disk, DiskFile, blocking};
use super::error::StoreError;
use crate::history::index;
use crate::history::names::FILE_MODE;
use crate::history::row::{HEADER, Record};

pub struct ActiveFile {
    path: PathBuf,
    file: Box<dyn DiskFile>,
    /// (device, inode) of the open file, to notice when the path names
    /// another file (moved away, deleted, replaced).
    id: (u64, u64),
    /// Length after the last complete write.
    len: u64,
    /// A failed write left bytes after `len` that could not be cut yet:
    /// they are cut before the next write.
    torn: bool,
    /// Time of the first row, if the file has rows.
    first_row: Option<SystemTime>,
    /// Written since the last fsync.
    dirty: bool,
}

impl ActiveFile {
    /// Open (or create) the active file at `path`, repairing a torn tail.
    /// Something that is not ours at `path` is an error for which
    /// [`StoreError::is_not_ours`] holds, and is left as it was.
    pub async fn open(disk: &dyn Disk, path: &Path) -> Result<ActiveFile, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            action: "open",
            source,
        };
        // What stands at the path decides whether it is opened at all: a
        // fifo or device must not even be opened, a directory never renamed.
        let existed = match tokio::fs::symlink_metadata(path).await {
            Ok(m) if !m.file_type().is_file() => return Err(not_a_file(path, m.file_type())),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(e)),
        };
        let mut adopted = false;
        let (mut file, mut len, id, first_row) = loop {
            let mut file = disk.open(path).await.map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    // Made a symlink since the look above (O_NOFOLLOW).
                    StoreError::NotAFile {
                        path: path.to_path_buf(),
                        kind: "a symbolic link",
                    }
                } else if existed && e.kind() == std::io::ErrorKind::PermissionDenied {
                    StoreError::NoAccess {
                        path: path.to_path_buf(),
                        source: e,
                    }
                } else {
                    io(e)
                }
            })?;
            let meta = file.metadata().await.map_err(io)?;
            if !meta.file_type().is_file() {
                return Err(not_a_file(path, meta.file_type()));
            }
            let id = (meta.dev(), meta.ino());
            let mut len = meta.len();
            // Whose file is it? Decided before anything is cut: a file of
            // someone else's is never touched.
            let head = read_head(file.as_mut()).await.map_err(io)?;
            let first_row = match whose(file.as_mut(), len, &head).await.map_err(io)? {
                Whose::Ours => head.split(|b| *b == b'\n').nth(1).and_then(row_time),
                // Only the header was being written (a start of it, then
                // perhaps zeros: blocks the crash left unwritten), or
                // zeros alone: no line is readable, start the file again.
                Whose::Unwritten => {
                    if len > 0 {
                        tracing::warn!(
                            "{}: cut {len} byte(s): the header was never completely written",
                            path.display()
                        );
                        file.set_len(0).await.map_err(io)?;
                        file.sync().await.map_err(io)?;
                        len = 0;
                    }
                    None
                }
                Whose::Headerless { from } if !adopted => {
                    drop(file);
                    adopt(path, from, len)
                        .await
                        .map_err(|source| StoreError::Io {
                            path: path.to_path_buf(),
                            action: "put the header before the rows of",
                            source,
                        })?;
                    adopted = true;
                    continue;
                }
                Whose::Headerless { .. } | Whose::Foreign => {
                    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
                    return Err(StoreError::ForeignFile {
                        path: path.to_path_buf(),
                        found: String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned(),
                    });
                }
            };
            break (file, len, id, first_row);
        };
        let keep = valid_length(file.as_mut(), len).await.map_err(io)?;
        if keep < len {
            tracing::warn!(
                "{}: cut {} byte(s) of a partial or damaged tail left by an interrupted write",
                path.display(),
                len - keep
            );
            file.set_len(keep).await.map_err(io)?;
            file.sync().await.map_err(io)?;
            len = keep;
        }
        let mut active = ActiveFile {
            path: path.to_path_buf(),
            file,
            id,
            len,
            torn: false,
            // The first row itself may have been the damage.
            first_row: first_row.filter(|_| len > HEADER.len() as u64),
            dirty: false,
        };
        if len == 0 {
            active.append(HEADER.as_bytes()).await.map_err(io)?;
            active.sync().await?;
        }
        Ok(active)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed (or a rename back failed): it now lives at `path`.
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Bytes in the file after the last complete write.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// (device, inode) of the open file.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// A failed write left bytes after [`Self::size`] that are cut before
    /// the next write: the file may be longer than `size` until then.
    pub fn is_torn(&self) -> bool {
        self.torn
    }

    /// How many names the open file has now (0: it was deleted).
    pub async fn links(&mut self) -> std::io::Result<u64> {
        Ok(self.file.metadata().await?.nlink())
    }

    /// True when the file holds only its header.
    pub fn has_rows(&self) -> bool {
        self.len > HEADER.len() as u64
    }

    pub fn first_row(&self) -> Option<SystemTime> {
        self.first_row
    }

    /// Record the time of the first row, for a file that had none.
    pub fn set_first_row(&mut self, t: SystemTime) {
        if self.first_row.is_none() {
            self.first_row = Some(t);
        }
    }

    /// Append `bytes` (whole rows). On error the file is cut back to its
    /// length before the call, so nothing partial stays behind; if even
    /// that fails, the cut is retried before the next append.
    pub async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.torn {
            self.file.set_len(self.len).await?;
            self.torn = false;
        }
        match self.file.append(bytes).await {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                let len = self.len;
                self.cut_back(len).await;
                Err(e)
            }
        }
    }

    /// Forget everything after `len` (rows whose fsync failed, to be
    /// written again). A failed cut is retried before the next append.
    pub async fn cut_back(&mut self, len: u64) {
        self.len = len;
        self.torn = self.file.set_len(len).await.is_err();
    }

    /// Force written rows to stable storage.
    pub async fn sync(&mut self) -> Result<(), StoreError> {
        self.sync_io().await.map_err(|source| StoreError::Io {
            path: self.path.clone(),
            action: "fsync",
            source,
        })
    }

    /// [`Self::sync`] with the bare I/O error.
    pub async fn sync_io(&mut self) -> std::io::Result<()> {
        if self.dirty || self.len == HEADER.len() as u64 {
            self.file.sync().await?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

/// Read from `pos` until `buf` is full or the file ends; the bytes read.
async fn read_up_to(file: &mut dyn DiskFile, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read_at(pos + filled as u64, &mut buf[filled..])
            .await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Fill `buf` from `pos`; an early end of file is an error.
async fn read_exact_at(file: &mut dyn DiskFile, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
    if read_up_to(file, pos, buf).await? < buf.len() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The first bytes of the file: the header and the first row.
async fn read_head(file: &mut dyn DiskFile) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; 512];
    let n = read_up_to(file, 0, &mut head).await?;
    head.truncate(n);
    Ok(head)
}

/// Whose file the store found, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Whose {
    /// Our header on the first line.
    Ours,
    /// Empty, zeros, or a start of the header then zeros: nothing written
    /// that could be read.
    Unwritten,
    /// Rows of ours without the header, after `from` zero bytes.
    Headerless {
        from: u64,
    },
    Foreign,
}

/// Decide [`Whose`] the file of `len` bytes is whose first bytes are `head`.
async fn whose(file: &mut dyn DiskFile, len: u64, head: &[u8]) -> std::io::Result<Whose> {
    if let Some(i) = head.iter().position(|b| *b == b'\n') {
        if head[..i] == *HEADER.trim_end().as_bytes() {
            return Ok(Whose::Ours);
        }
    }
    // A start of the header (perhaps none of it), then zeros.
    let text = head.iter().position(|b| *b == 0).unwrap_or(head.len());
    if !HEADER.as_bytes().starts_with(&head[..text]) {
        return Ok(row_first(head, 0));
    }
    if text == head.len() {
        // The whole file is a start of the header (or empty).
        return Ok(Whose::Unwritten);
    }
    let from = text as u64 + zeros_from(file, text as u64, len).await?;
    if from == len {
        return Ok(Whose::Unwritten);
    }
    if text > 0 {
        // A start of the header, zeros, then more: not what a crash of
        // ours leaves.
        return Ok(Whose::Foreign);
    }
    let mut after = vec![0u8; 512];
    let n = read_up_to(file, from, &mut after).await?;
    after.truncate(n);
    Ok(row_first(&after, from))
}

/// [`Whose::Headerless`] when the first line of `bytes` (found `from`
/// bytes into the file) is a whole row of ours, else [`Whose::Foreign`].
fn row_first(bytes: &[u8], from: u64) -> Whose {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) if is_row(&bytes[..i]) => Whose::Headerless { from },
        _ => Whose::Foreign,
    }
}

/// How many zero bytes follow `pos` (up to `len`).
async fn zeros_from(file: &mut dyn DiskFile, pos: u64, len: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = pos;
    while at < len {
        let n = read_up_to(file, at, &mut buf).await?;
        if n == 0 {
            break;
        }
        match buf[..n].iter().position(|b| *b != 0) {
            Some(i) => return Ok(at + i as u64 - pos),
            None => at += n as u64,
        }
    }
    Ok(at - pos)
}

/// Put the header before the rows of `path` that start at `from` (after
/// zeros): a new file with the header and those bytes, fsynced, renamed
/// over `path`. A crash leaves either file whole (and a stray temporary
/// file, which the next adoption writes over). The index of the file
/// that was there is dropped: its offsets are wrong now.
async fn adopt(path: &Path, from: u64, len: u64) -> std::io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || {
        use std::io::{Seek, SeekFrom, Write};
        let tmp = adopt_tmp(&path);
        let mut src = std::fs::File::open(&path)?;
        src.seek(SeekFrom::Start(from))?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        out.write_all(HEADER.as_bytes())?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        index::remove(&path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        tracing::warn!(
            "{}: {} byte(s) of rows had no header (cut by another program, such as \
             logrotate's copytruncate){}: put the header before them, no row dropped",
            path.display(),
            len - from,
            if from > 0 {
                format!(", after {from} zero byte(s), which were dropped")
            } else {
                String::new()
            }
        );
        Ok(())
    })
    .await
}

/// The temporary file of an adoption of `path`: hidden, beside it.
pub fn adopt_tmp(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.adopt.tmp"))
}

/// The error for something at `path` that is not a regular file.
fn not_a_file(path: &Path, t: FileType) -> StoreError {
    let kind = if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "something else"
    };
    StoreError::NotAFile {
        path: path.to_path_buf(),
        kind,
    }
}

/// The length of the file up to the end of its last good line: a partial
/// last line (no newline) is cut, and so are complete lines after the last
/// row that parses (or the header), as long as they lie in the last 64 KiB;
/// damage from an interrupted write is never that large.
async fn valid_length(file: &mut dyn DiskFile, len: u64) -> std::io::Result<u64> {
    const STEP: u64 = 64 * 1024;
    let mut buf = vec![0u8; STEP as usize];
    // Up to the last newline.
    let mut end = len;
    let keep = loop {
        if end == 0 {
            return Ok(0);
        }
        let start = end.saturating_sub(STEP);
        let chunk = &mut buf[..(end - start) as usize];
        read_exact_at(file, start, chunk).await?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    // Back over complete lines that are neither a row nor the header.
    let start = keep.saturating_sub(STEP);
    let window = &mut buf[..(keep - start) as usize];
    read_exact_at(file, start, window).await?;
    let mut end = window.len();
    while end > 0 {
        let line_start = window[..end - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        if line_start == 0 && start > 0 {
            // The line goes on before the window: not looked at, kept.
            break;
        }
        let line = &window[line_start..end - 1];
        if (start == 0 && line_start == 0) || is_row(line) {
            break;
        }
        end = line_start;
    }
    Ok(start + end as u64)
}

/// A line that replay would read as a row.
fn is_row(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|l| Record::from_line(l).is_ok())
}

/// The time in the first field of a CSV row.
fn row_time(line: &[u8]) -> Option<SystemTime> {
    let field = line.split(|b| *b == b',').next()?;
    crate::history::parse::time(field)
}
