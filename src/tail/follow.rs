//! `tail -f`: new rows as the writer appends them, across rotations, and
//! on stderr what tail could not read.
//!
//! Every poll tail reads the followed file's new lines through its
//! descriptor and asks which active file the writer appends to now
//! ([`writer_active`]). When that is another file (a rotation, or the
//! writer moved to `PREFIX+N.csv`), tail opens it at once, reads the old
//! one to its end (the writer finished it first; the open descriptor keeps
//! it readable even if retention has removed it), then the files rotated in
//! between that it never followed, oldest name first, then the new one
//! after its header.
//!
//! What tail can know of rows it could not read:
//! - a rotated file it listed but that was gone when it opened it: its
//!   name, and that its rows lie between the last row tail read and the
//!   next one, not how many (its index went with it);
//! - when the file it was following had been rotated *and* removed by the
//!   time it looked again (it fell `keep` rotations behind), files rotated
//!   after it may have come and gone between two looks: whether any did,
//!   and how many rows they held, tail cannot know; only the span between
//!   the last row it read and the next one.
//!
//! Retention removes the oldest files first, so while the followed file's
//! rotated copy is there, every file rotated after it is there too, and
//! nothing is reported. Each gap is reported once, when the next row is
//! read (or when tail stops).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::active::{id_of, writer_active};
use super::followed::Followed;
use super::options::{TailOptions, line_of, parse_line, shown_time};
use crate::history::names::{self, Rotated};
use crate::history::row::{HEADER, Record};
use crate::replay::read::{FileReader, Next};
use crate::replay::{Source, WrongName};

/// A rotated file: its plain and compressed copies (both while it is
/// being compressed).
struct Listed {
    rotated: Rotated,
    stem: String,
    plain: Option<PathBuf>,
    gz: Option<PathBuf>,
}

impl Listed {
    /// The compressed copy, listed or (compressed since it was listed,
    /// perhaps) beside the plain one.
    fn gz_path(&self) -> Option<PathBuf> {
        self.gz.clone().or_else(|| {
            let mut gz = self.plain.clone()?.into_os_string();
            gz.push(".gz");
            Some(PathBuf::from(gz))
        })
    }
}

/// The rotated files of `prefix` in `dir`, in name order; none when the
/// directory is gone.
fn rotated_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: BTreeMap<(SystemTime, u32), Listed> = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(r) = names::parse_rotated(prefix, name) else {
            continue;
        };
        let listed = files.entry((r.time, r.seq)).or_insert_with(|| Listed {
            stem: r.stem(prefix),
            rotated: r.clone(),
            plain: None,
            gz: None,
        });
        match r.gzip {
            true => listed.gz = Some(entry.path()),
            false => listed.plain = Some(entry.path()),
        }
    }
    Ok(files.into_values().collect())
}

/// The stems of the rotated files there now: what tail does not read
/// again when it follows.
pub fn rotated_stems(dir: &Path, prefix: &str) -> std::io::Result<HashSet<String>> {
    Ok(rotated_files(dir, prefix)?
        .into_iter()
        .map(|l| l.stem)
        .collect())
}

/// Rows tail could not read, reported when it reads the next row.
struct Gap {
    /// The last row read before.
    after: Option<SystemTime>,
    /// Rotated files listed but not read, and why (most often: removed
    /// before tail opened them).
    lost: Vec<(PathBuf, String)>,
    /// The file followed, rotated and removed before tail looked again.
    behind: Option<PathBuf>,
}

impl Gap {
    fn report(&self, before: Option<SystemTime>) {
        let span = match (self.after, before) {
            (Some(a), Some(b)) => {
                format!("rows after {} and before {}", shown_time(a), shown_time(b))
            }
            (None, Some(b)) => format!("rows before {}", shown_time(b)),
            (Some(a), None) => format!("rows after {}", shown_time(a)),
            (None, None) => "rows".to_string(),
        };
        if !self.lost.is_empty() {
            let files: Vec<String> = self
                .lost
                .iter()
                .map(|(path, why)| format!("{}: {why}", path.display()))
                .collect();
            tracing::warn!(
                "skipped: {} rotated file(s) tail could not read ({}); their {span} are not \
                 shown; tail cannot count them",
                files.len(),
                files.join("; ")
            );
        }
        if let Some(followed) = &self.behind {
            tracing::warn!(
                "skipped?: {}, the file tail was following, had been removed (rotated, then \
                 removed by retention) when tail looked again, so files written after it may \
                 have come and gone unseen: {span}, if there were any, are not shown; tail \
                 cannot tell how many",
                followed.display()
            );
        }
    }
}

/// Following, from the file read by `tail -n` on.
pub struct Follower<'a> {
    opts: &'a TailOptions,
    current: Option<Followed>,
    /// Stems of rotated files accounted for: there when tail started,
    /// read, or the rotated copy of a file followed; only those still
    /// listed are kept (a clock that went back may reuse a name).
    known: HashSet<String>,
    /// The time of the last row read, whatever its group.
    last_row: Option<SystemTime>,
    gap: Option<Gap>,
    /// Wanted lines of this poll.
    out: Vec<Vec<u8>>,
}

impl<'a> Follower<'a> {
    pub fn new(
        opts: &'a TailOptions,
        current: Option<Followed>,
        known: HashSet<String>,
        last_row: Option<SystemTime>,
    ) -> Follower<'a> {
        Follower {
            opts,
            current,
            known,
            last_row,
            gap: None,
            out: Vec::new(),
        }
    }

    /// Print new rows until `stop` resolves.
    pub async fn run<W, S>(mut self, out: &mut W, stop: S) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
        S: std::future::Future<Output = ()>,
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(self.opts.poll) => {}
            }
            self.poll().await?;
            for line in std::mem::take(&mut self.out) {
                out.write_all(&line).await?;
            }
            out.flush().await?;
        }
        if let Some(gap) = self.gap.take() {
            gap.report(None);
        }
        Ok(())
    }

    async fn poll(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.current.as_mut() {
            let lines = f.read_lines().await?;
            self.lines(lines);
        }
        let Some(mut next) = self.newer_active().await? else {
            return Ok(());
        };
        // The old file is complete: read what was added before the writer
        // left it, then what came between.
        let finished = match self.current.take() {
            Some(mut old) => {
                let lines = old.read_lines().await?;
                self.lines(lines);
                Some(old)
            }
            None => None,
        };
        self.between(finished.as_ref(), &next).await?;
        let lines = next.read_lines().await?;
        self.lines(lines);
        self.current = Some(next);
        Ok(())
    }

    /// The writer's active file, opened, when it is not the one followed.
    async fn newer_active(&self) -> std::io::Result<Option<Followed>> {
        if let Some(cur) = &self.current {
            // The writer keeps its file until it rotates it (a rename) or
            // finds it is not ours.
            if !cur.foreign && id_of(&cur.path) == Some(cur.id) {
                return Ok(None);
            }
        }
        let Some(path) = writer_active(&self.opts.dir, &self.opts.prefix)? else {
            return Ok(None);
        };
        match Followed::open(&path).await {
            Ok(f) if self.current.as_ref().is_some_and(|c| c.id == f.id) => Ok(None),
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read the files rotated after `finished` (the file followed until
    /// now) that tail never followed; note what it could not read.
    async fn between(
        &mut self,
        finished: Option<&Followed>,
        next: &Followed,
    ) -> std::io::Result<()> {
        let listed = rotated_files(&self.opts.dir, &self.opts.prefix)?;
        let stems: HashSet<&str> = listed.iter().map(|l| l.stem.as_str()).collect();
        self.known.retain(|s| stems.contains(s.as_str()));
        let mut copy_seen = false;
        let mut unread = Vec::new();
        for l in listed {
            if self.known.contains(&l.stem) {
                continue;
            }
            let plain_id = l.plain.as_deref().and_then(id_of);
            let followed = match (plain_id, finished) {
                (Some(id), _) if id == next.id => true,
                (Some(id), Some(f)) if id == f.id => {
                    copy_seen = true;
                    true
                }
                (None, Some(f)) if compressed_copy(&l, f).await => {
                    copy_seen = true;
                    true
                }
                _ => false,
            };
            if followed {
                self.known.insert(l.stem);
            } else {
                unread.push(l);
            }
        }
        // No rotated copy of the file followed, yet files rotated after it
        // (or it was removed: retention that went by names a wrong clock
        // made removes even the newest file): what came and went between
        // two looks, tail cannot know.
        if let Some(f) = finished {
            if !copy_seen && (!unread.is_empty() || f.removed().await) {
                self.gap().behind = Some(f.path.clone());
            }
        }
        let now = SystemTime::now();
        for l in unread {
            self.known.insert(l.stem.clone());
            let (mut reader, source) = match open(&l, now).await {
                Ok(opened) => opened,
                Err(e) => {
                    let name = l.plain.or(l.gz).unwrap_or_default();
                    let why = match e.kind() {
                        std::io::ErrorKind::NotFound => "removed before tail opened it".to_string(),
                        _ => e.to_string(),
                    };
                    self.gap().lost.push((name, why));
                    continue;
                }
            };
            if let Some(note) = source.wrong_name_note() {
                tracing::warn!("{note}");
            }
            while let Some(next) = reader.next().await {
                if let Next::Row(r) = next {
                    self.row(line_of(r), r);
                }
            }
        }
        Ok(())
    }

    fn gap(&mut self) -> &mut Gap {
        let after = self.last_row;
        self.gap.get_or_insert_with(|| Gap {
            after,
            lost: Vec::new(),
            behind: None,
        })
    }

    fn lines(&mut self, lines: Vec<Vec<u8>>) {
        for line in lines {
            if let Some(r) = parse_line(&line) {
                self.row(line, &r);
            }
        }
    }

    fn row(&mut self, line: Vec<u8>, record: &Record) {
        if let Some(gap) = self.gap.take() {
            gap.report(Some(record.row.time));
        }
        self.last_row = Some(record.row.time);
        if self.opts.wants(record) {
            self.out.push(line);
        }
    }
}

/// A listed file's reader: its plain copy, else its compressed one
/// (compressed since it was listed, perhaps).
async fn open(l: &Listed, now: SystemTime) -> std::io::Result<(FileReader, Source)> {
    let compressed = l.gz_path();
    let mut failed = std::io::Error::from(std::io::ErrorKind::NotFound);
    for (path, gzip) in [(l.plain.clone(), false), (compressed, true)] {
        let Some(path) = path else { continue };
        match FileReader::open(&path, gzip, 64 * 1024).await {
            Ok(reader) => {
                let wrong_name = (l.rotated.time > now).then_some(WrongName::Future { now });
                let start = Some(l.rotated.time);
                let source = Source {
                    path,
                    gzip,
                    start,
                    wrong_name,
                };
                return Ok((reader, source));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed = e,
        }
    }
    Err(failed)
}

/// Whether `l`'s compressed copy is `f`'s: named after `f`'s first row,
/// that row first, the same length.
async fn compressed_copy(l: &Listed, f: &Followed) -> bool {
    let (Some(gz), Some(first)) = (l.gz_path(), f.first_row.clone()) else {
        return false;
    };
    if parse_line(&first).map(|r| second(r.row.time)) != Some(l.rotated.time) {
        return false;
    }
    let len = f.len();
    tokio::task::spawn_blocking(move || inflates_to(&gz, &first, len))
        .await
        .unwrap_or(false)
}

/// `t` without its fraction of a second, as a name holds it.
fn second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// Whether the gzip file at `path` holds `len` bytes that start with the
/// header and then `first`.
fn inflates_to(path: &Path, first: &[u8], len: u64) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let head_len = HEADER.len() + first.len();
    let (mut head, mut total) = (Vec::with_capacity(head_len), 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return false,
        };
        if head.len() < head_len {
            let take = n.min(head_len - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        total += n as u64;
        if total > len {
            return false;
        }
    }
    total == len && head.starts_with(HEADER.as_bytes()) && head[HEADER.len()..] == *first
}
