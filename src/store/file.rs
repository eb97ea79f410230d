//! The active CSV file: opened safely, appended to whole rows at a time.
//!
//! Opening is where damage from a previous run is dealt with:
//! - a partial last line (power cut mid-write) is cut back to the last
//!   newline, and so are complete lines after the last row that parses;
//!   the number of bytes cut is logged;
//! - an empty file, or one holding only a start of the header, gets the
//!   header;
//! - a file whose first line is not our header belongs to someone else and
//!   is never appended to.
//!
//! Appends keep track of the length the file had after the last complete
//! write. If a write fails part-way (disk full), the file is truncated back
//! to that length before the next attempt, so a retry never leaves a torn or
//! doubled row. All file access goes through [`super::disk`], so tests can
//! make any of it fail.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::disk::{Disk, DiskFile};
use super::error::StoreError;
use crate::history::row::{HEADER, Record};

pub struct ActiveFile {
    path: PathBuf,
    file: Box<dyn DiskFile>,
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
    pub async fn open(disk: &dyn Disk, path: &Path) -> Result<ActiveFile, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            action: "open",
            source,
        };
        let mut file = disk.open(path).await.map_err(io)?;
        let mut len = file.size().await.map_err(io)?;
        // Whose file is it? Decided before anything is cut: a file of
        // someone else's is never touched.
        let head = read_head(file.as_mut()).await.map_err(io)?;
        let first_row = match head.iter().position(|b| *b == b'\n') {
            Some(i) if head[..i] == *HEADER.trim_end().as_bytes() => head[i + 1..]
                .split(|b| *b == b'\n')
                .next()
                .and_then(row_time),
            // Only the header was being written: a start of it, then
            // perhaps zeros (blocks the crash left unwritten). Without a
            // header no line is readable: start the file again.
            None if is_torn_header(&head) => {
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
            _ => {
                let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
                return Err(StoreError::ForeignFile {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned(),
                });
            }
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

/// A start of the header, then only zeros: what a crash while writing the
/// header of a new file leaves.
fn is_torn_header(head: &[u8]) -> bool {
    let text = head.iter().position(|b| *b == 0).unwrap_or(head.len());
    HEADER.as_bytes().starts_with(&head[..text]) && head[text..].iter().all(|b| *b == 0)
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
