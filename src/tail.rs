//! `edge-agent tail`: the last rows, then (with `-f`) new rows as they are
//! written, across rotations.
//!
//! The last N rows come from the active file and, when it holds fewer, from
//! the newest rotated files (plain or gzip). Following reads the active file
//! through one open descriptor from the end of the last complete line:
//! - only complete lines are printed; a partial one waits for its newline;
//! - when the active file's name points to a new file (rotation), the old
//!   descriptor is read to its end first (the writer finished it before the
//!   rename), then rotated files that appeared after it (more than one
//!   rotation between two polls), then the new active file after its header.
//!
//! So no row is printed twice, none is skipped, and no second header shows.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::history::names;
use crate::history::row::{COLUMNS, Record, csv_line};
use crate::replay::read::{FileReader, Next};
use crate::replay::sources;

/// What to show.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub dir: PathBuf,
    pub prefix: String,
    /// Rows shown before following.
    pub lines: usize,
    pub follow: bool,
    /// Only these groups (all when empty).
    pub groups: Vec<String>,
    /// How often to look for new rows when following.
    pub poll: Duration,
}

/// Print the last rows and, when following, new ones until `stop` resolves.
pub async fn tail<W, S>(opts: &TailOptions, out: &mut W, stop: S) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    S: std::future::Future<Output = ()>,
{
    let active_path = names::active(&opts.dir, &opts.prefix);
    out.write_all(format!("{}\n", COLUMNS.join(",")).as_bytes())
        .await?;
    // The active file, read through the descriptor we keep for following.
    let mut active = match File::open(&active_path).await {
        Ok(f) => Some(Followed::new(f).await?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut last: VecDeque<Vec<u8>> = VecDeque::new();
    if let Some(f) = active.as_mut() {
        for line in f.read_lines().await? {
            if wanted(opts, &line) {
                push_bounded(&mut last, line, opts.lines);
            }
        }
    }
    if last.len() < opts.lines {
        let older = older_rows(opts, opts.lines - last.len()).await?;
        for line in older.into_iter().rev() {
            last.push_front(line);
        }
    }
    for line in &last {
        out.write_all(line).await?;
    }
    out.flush().await?;
    if !opts.follow {
        return Ok(());
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(opts.poll) => {}
        }
        let mut lines = Vec::new();
        if let Some(f) = active.as_mut() {
            lines.extend(f.read_lines().await?);
        }
        let current = tokio::fs::metadata(&active_path)
            .await
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let moved = match (&active, current) {
            (Some(f), Some(id)) => f.id != id,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if moved {
            // The old file is complete: read what was added before the rename.
            if let Some(f) = active.as_mut() {
                lines.extend(f.read_lines().await?);
                lines.extend(rotated_after(opts, f.id).await?);
            }
            let mut next = Followed::new(File::open(&active_path).await?).await?;
            lines.extend(next.read_lines().await?);
            active = Some(next);
        }
        for line in lines.into_iter().filter(|l| wanted(opts, l)) {
            out.write_all(&line).await?;
        }
        out.flush().await?;
    }
}

fn push_bounded(buf: &mut VecDeque<Vec<u8>>, line: Vec<u8>, max: usize) {
    if max == 0 {
        return;
    }
    if buf.len() == max {
        buf.pop_front();
    }
    buf.push_back(line);
}

/// A row line (with its newline) that is valid and in a wanted group.
fn wanted(opts: &TailOptions, line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    match Record::from_line(text) {
        Ok(r) => opts.groups.is_empty() || opts.groups.contains(&r.row.group),
        Err(_) => false,
    }
}

/// The last `n` wanted rows of the rotated files, oldest first.
async fn older_rows(opts: &TailOptions, n: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut files = sources(&opts.dir, &opts.prefix, None, None)?;
    files.retain(|s| s.start.is_some());
    let mut found: VecDeque<Vec<u8>> = VecDeque::new();
    for source in files.iter().rev() {
        if found.len() >= n {
            break;
        }
        let mut ring = VecDeque::new();
        let mut reader = match FileReader::open(&source.path, source.gzip, 64 * 1024).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        while let Some(next) = reader.next().await {
            if let Next::Row(r) = next {
                if opts.groups.is_empty() || opts.groups.contains(&r.row.group) {
                    push_bounded(&mut ring, line_of(r), n - found.len());
                }
            }
        }
        for line in ring.into_iter().rev() {
            found.push_front(line);
        }
    }
    Ok(found.into())
}

fn line_of(record: &Record) -> Vec<u8> {
    let mut line = Vec::with_capacity(80);
    csv_line(&record.view(), &mut line);
    line
}

/// Rows of rotated files newer than the one with identity `id` (the file
/// we were following), for rotations that happened between two polls.
async fn rotated_after(opts: &TailOptions, id: (u64, u64)) -> std::io::Result<Vec<Vec<u8>>> {
    let files = sources(&opts.dir, &opts.prefix, None, None)?;
    let mut ours = None;
    for (i, s) in files.iter().enumerate() {
        if let Ok(m) = tokio::fs::metadata(&s.path).await {
            if (m.dev(), m.ino()) == id {
                ours = Some(i);
            }
        }
    }
    let mut lines = Vec::new();
    let Some(i) = ours else { return Ok(lines) };
    for s in files[i + 1..].iter().filter(|s| s.start.is_some()) {
        if let Ok(mut reader) = FileReader::open(&s.path, s.gzip, 64 * 1024).await {
            while let Some(next) = reader.next().await {
                if let Next::Row(r) = next {
                    lines.push(line_of(r));
                }
            }
        }
    }
    Ok(lines)
}

/// One file read through an open descriptor, in complete lines.
struct Followed {
    file: File,
    /// (device, inode) of the file.
    id: (u64, u64),
    /// Bytes after the last newline, waiting for theirs.
    partial: Vec<u8>,
    /// The first line (the header) is not a row.
    header_pending: bool,
}

impl Followed {
    async fn new(file: File) -> std::io::Result<Followed> {
        let m = file.metadata().await?;
        Ok(Followed {
            file,
            id: (m.dev(), m.ino()),
            partial: Vec::new(),
            header_pending: true,
        })
    }

    /// Complete lines added since the last call, each with its newline.
    async fn read_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        // A restarted agent cuts a torn last line back: the file shrank
        // under us. Go back to its new end; the partial line is gone.
        let len = self.file.metadata().await?.len();
        let pos = self.file.stream_position().await?;
        if len < pos {
            self.file.seek(SeekFrom::Start(len)).await?;
            self.partial.clear();
        }
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
                if !std::mem::take(&mut self.header_pending) {
                    lines.push(line);
                }
            }
            self.partial.extend_from_slice(chunk);
        }
        Ok(lines)
    }
}
