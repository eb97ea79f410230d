//! One file read through an open descriptor, in complete lines.
//!
//! The descriptor keeps the file readable whatever happens to its name:
//! renamed by a rotation, removed by retention, tail still reads it to its
//! end. Only complete lines are handed out; a partial one waits for its
//! newline. A file that shrinks under the reader was either cut back by
//! the writer (a torn or failed last write: reading goes on from its new
//! end) or truncated and written again from its start (`copytruncate`; its
//! first row is no longer the one read): then it is read again from its
//! start, header first.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::active::FileId;
use crate::history::row::HEADER;

pub struct Followed {
    /// The name it was opened by.
    pub path: PathBuf,
    pub id: FileId,
    file: File,
    /// Bytes after the last newline, waiting for theirs.
    partial: Vec<u8>,
    /// Offset just past the last complete line.
    end: u64,
    /// The first line (the header) is not a row.
    header_pending: bool,
    /// The first line was not our header.
    pub foreign: bool,
    /// The first line after the header, to tell the file again: after an
    /// outside truncation, or compressed under a rotated name.
    pub first_row: Option<Vec<u8>>,
    /// Where the first row starts.
    first_row_at: u64,
}

impl Followed {
    pub async fn open(path: &Path) -> std::io::Result<Followed> {
        let file = File::open(path).await?;
        let m = file.metadata().await?;
        Ok(Followed {
            path: path.to_path_buf(),
            id: (m.dev(), m.ino()),
            file,
            partial: Vec::new(),
            end: 0,
            header_pending: true,
            foreign: false,
            first_row: None,
            first_row_at: 0,
        })
    }

    /// Whether the file has no name left: removed (held open, still
    /// readable).
    pub async fn removed(&self) -> bool {
        self.file.metadata().await.is_ok_and(|m| m.nlink() == 0)
    }

    /// Bytes read so far: the file's length once it is complete.
    pub fn len(&self) -> u64 {
        self.end + self.partial.len() as u64
    }

    /// Complete lines added since the last call, each with its newline.
    pub async fn read_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let len = self.file.metadata().await?.len();
        if self.rewritten(len).await? {
            self.restart().await?;
        } else if len < self.len() {
            // A restarted agent (or a failed write) cut a partial last
            // line back: go on from the new end.
            let end = self.end.min(len);
            self.file.seek(SeekFrom::Start(end)).await?;
            self.end = end;
            self.partial.clear();
        }
        let lines = self.read_more().await?;
        // Written again while being read: what was read may be of either.
        let len = self.file.metadata().await?.len();
        if self.rewritten(len).await? {
            self.restart().await?;
            return self.read_more().await;
        }
        Ok(lines)
    }

    /// Read the file again from its start, header first.
    async fn restart(&mut self) -> std::io::Result<()> {
        tracing::warn!(
            "{}: truncated and written again from its start (copytruncate?): reading it again \
             from there",
            self.path.display()
        );
        self.file.seek(SeekFrom::Start(0)).await?;
        (self.end, self.header_pending, self.foreign) = (0, true, false);
        self.partial.clear();
        self.first_row = None;
        Ok(())
    }

    /// The complete lines from where reading stopped to the end.
    async fn read_more(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = Vec::new();
        loop {
            let n = self.file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
                self.partial.extend_from_slice(&chunk[..=i]);
                chunk = &chunk[i + 1..];
                let line = std::mem::take(&mut self.partial);
                self.end += line.len() as u64;
                if std::mem::take(&mut self.header_pending) {
                    self.foreign = line != HEADER.as_bytes();
                } else {
                    if self.first_row.is_none() {
                        self.first_row = Some(line.clone());
                        self.first_row_at = self.end - line.len() as u64;
                    }
                    lines.push(line);
                }
            }
            self.partial.extend_from_slice(chunk);
        }
        Ok(lines)
    }

    /// Whether the file of length `len` no longer holds the first row read
    /// from it where it was: truncated and written again.
    async fn rewritten(&mut self, len: u64) -> std::io::Result<bool> {
        let Some(first) = &self.first_row else {
            // Nothing but a header read: starting again repeats nothing.
            return Ok(len < self.end);
        };
        let at = self.first_row_at;
        if len < at + first.len() as u64 {
            return Ok(true);
        }
        let mut now = vec![0u8; first.len()];
        self.file.seek(SeekFrom::Start(at)).await?;
        let read = self.file.read_exact(&mut now).await;
        self.file.seek(SeekFrom::Start(self.len())).await?;
        read?;
        Ok(now != *first)
    }
}
