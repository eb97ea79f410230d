//! One target's loop: locate the cursor, read the files forward in
//! batches, send, save the cursor, follow the active file, catch up.
//!
//! ```text
//! cursor -> locate (name, else first row) -> Reader (file, offset)
//!   -> fill a batch (whole rows; at most batch.rows / max_size)
//!   -> full, or the file ended, or max_delay passed -> pace (max_rate) -> send
//!   -> acknowledged -> cursor saved -> hold updated -> lag
//!   -> end of a rotated file -> the next file in the order of writing
//!   -> end of the active file -> wait for more; once it was rotated,
//!      read it to its end and go on with the next
//! ```

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Forward, Start};
use crate::health::ForwardStats;
use crate::history::index;
use crate::replay::{Encoder, Format};
use crate::store::holds::{Hold, Position};

use super::cursor::{self, Cursor};
use super::files::{self, Batch, DataFile, Filled, Reader};
use super::send::{Sender, Sent, wait};

/// How often the active file is looked at for new rows.
const POLL: Duration = Duration::from_millis(500);
/// Reads of a file that fails tried again before its rest is given up.
const READ_TRIES: u32 = 3;
/// How often lag is worked out from the files while rows flow.
const LAG_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Target {
    pub config: Forward,
    pub dir: PathBuf,
    pub prefix: String,
    /// The target's figures, and its hold on the files (`stats.hold`).
    pub stats: Arc<ForwardStats>,
    /// Shutdown: send what is written without waiting, then end.
    pub draining: Arc<AtomicBool>,
}

/// Run a blocking job on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Target {
    /// `reader` is the target's file now: its place for retention. An
    /// active file just opened is not a file the store rotated before under
    /// the same inode number.
    fn adopt(&self, reader: &Reader) {
        if reader.file.stem.is_none() && !reader.closed {
            self.stats.hold.opened_active(reader.id);
        }
        self.stats.hold.set(position(reader));
    }

    fn cursor_path(&self) -> PathBuf {
        cursor::path(&self.dir, &self.prefix, &self.config.name)
    }

    /// Forward until `stop` says so.
    pub async fn run(self, sender: Sender, mut stop: watch::Receiver<bool>) {
        let name = self.config.name.clone();
        let mut sender = sender;
        let (mut reader, mut cursor) = loop {
            match self.locate().await {
                Ok(found) => break found,
                Err(e) => {
                    self.stats.error("read");
                    self.stats.failing();
                    tracing::error!("forward `{name}`: {e}; trying again in 10s");
                    if wait(Duration::from_secs(10), &mut stop).await {
                        return;
                    }
                }
            }
        };
        self.stats.failing_since_ms.store(0, Relaxed);
        self.adopt(&reader);
        let mut encoder = Encoder::new(Format::Influx, &self.config.measurement);
        let mut batch = Batch::default();
        let mut batch_since: Option<Instant> = None;
        let mut next_send = Instant::now();
        let mut last_lag = None::<Instant>;
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut read_errors: u32 = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            // Retention removed the file under the cursor: its rows are
            // counted lost; go on with what is left.
            if let Some(stem) = self.stats.hold.take_removed() {
                let ours = reader
                    .file
                    .stem
                    .clone()
                    .or_else(|| self.stats.hold.rotated_stem(reader.id));
                if ours.as_deref() == Some(stem.as_str()) {
                    batch.clear();
                    batch_since = None;
                    match self.next_file(&reader, true).await {
                        Ok(Some(r)) => {
                            reader = r;
                            self.adopt(&reader);
                        }
                        Ok(None) => {}
                        Err(e) => self.read_failed(&e, &mut stop).await,
                    }
                    continue;
                }
            }
            let cap = sender.row_cap.min(self.config.batch_rows);
            let bytes = self.config.batch_bytes;
            let filled;
            (reader, batch, encoder, filled) = blocking(move || {
                let mut reader = reader;
                let mut batch = batch;
                let mut encoder = encoder;
                let filled = reader.fill(&mut batch, &mut encoder, cap, bytes);
                (reader, batch, encoder, filled)
            })
            .await;
            let bad = std::mem::take(&mut reader.bad_lines);
            self.stats.bad_lines.fetch_add(bad, Relaxed);
            let filled = match filled {
                Ok(f) => {
                    read_errors = 0;
                    f
                }
                Err(e) => {
                    self.stats.error("read");
                    read_errors += 1;
                    let path = reader.file.path.clone();
                    if read_errors <= READ_TRIES {
                        // Opened again where the last whole row ended: a
                        // passing error (EIO) costs nothing.
                        tracing::error!(
                            "forward `{name}`: cannot read {} at byte {}: {e}; trying again in 1s",
                            path.display(),
                            reader.offset
                        );
                        if wait(Duration::from_secs(1), &mut stop).await {
                            return;
                        }
                        let (file, offset) = (reader.file.clone(), reader.offset);
                        if let Ok(mut r) = blocking(move || Reader::open(file, offset)).await {
                            r.acked = reader.acked;
                            r.first = reader.first.take().or(r.first);
                            r.closed = reader.closed;
                            reader = r;
                        }
                        continue;
                    }
                    read_errors = 0;
                    if reader.file.stem.is_none() && !reader.closed {
                        // The writer's own file: it goes on; so do the tries.
                        continue;
                    }
                    // A rotated file damaged for good (a broken gzip): its
                    // rest is counted lost to this target, then the next file.
                    let offset = reader.offset;
                    let rest = blocking(move || index::rows_from(&path, offset).unwrap_or(0)).await;
                    self.stats.hold.lost(rest, 1);
                    tracing::error!(
                        "forward `{name}`: cannot read {} at byte {offset}: {e}; its rest ({rest} \
                         row(s) by its index) is lost to this target",
                        reader.file.path.display()
                    );
                    Filled::End
                }
            };
            if !batch.is_empty() && batch_since.is_none() {
                batch_since = Some(Instant::now());
            }
            let active = reader.file.stem.is_none();
            let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
            // The writer's file was cut back under the read position.
            let mut cut_under = false;
            // Whether the file read is complete: rotated, or no longer the
            // writer's (read to its end just now, after it changed).
            let complete = match filled {
                Filled::Full => false,
                Filled::End if !active || reader.closed => true,
                Filled::End => {
                    let (id_reader, offset) = (reader.id, reader.offset);
                    let first = reader.first.clone();
                    let (still, cut) = blocking(move || {
                        let active = crate::tail::active::writer_active(&dir, &prefix)
                            .ok()
                            .flatten();
                        // The same inode and, once it has a row, the same
                        // first row: an inode number is reused once a file
                        // is compressed and removed.
                        let Some(active) = active else {
                            return (false, false);
                        };
                        let Ok(meta) = std::fs::metadata(&active) else {
                            return (false, false);
                        };
                        let still = (meta.dev(), meta.ino()) == id_reader
                            && (first.is_none()
                                || files::first_row(&active).ok().flatten() == first);
                        (still, still && meta.len() < offset)
                    })
                    .await;
                    if cut {
                        // Cut back under the cursor (truncated in place): the
                        // writer starts it again with a header; so do we,
                        // once the rows read before the cut are sent.
                        tracing::warn!(
                            "forward `{name}`: {} is shorter than the {} byte(s) read; reading it again from its start \
                             (rows written after that byte and before the cut are not in it any more)",
                            reader.file.path.display(),
                            reader.offset
                        );
                        cut_under = true;
                        true
                    } else if !still {
                        // Rotated (or moved) after the read above ended: what
                        // was written before that is read in the next rounds,
                        // in batches as usual; then the file is complete. Its
                        // rotated name is found now, so retention knows it is
                        // still needed and the next file follows from it.
                        reader.closed = true;
                        let (dir, prefix, id) = (self.dir.clone(), self.prefix.clone(), reader.id);
                        let first = reader.first.clone();
                        let rotated = blocking(move || {
                            let files = files::in_order(&dir, &prefix).ok()?;
                            let at = files::find(&files, None, first.as_deref(), Some(id))?;
                            files.into_iter().nth(at).filter(|f| f.stem.is_some())
                        })
                        .await;
                        match rotated {
                            Some(f) => {
                                reader.file = f;
                                self.adopt(&reader);
                            }
                            // Not rotated by the writer: moved away or cut
                            // in place by another program (copytruncate).
                            // Rows it took after the last read are in its
                            // copy only; nothing here can count them.
                            None => tracing::warn!(
                                "forward `{name}`: {} was moved away or cut by another program; its \
                                 rows are read to byte {} (the end this reader sees), then the writer's \
                                 new file; rows the other program took after that are not forwarded",
                                reader.file.path.display(),
                                reader.offset
                            ),
                        }
                        continue;
                    } else {
                        // Still the writer's: more rows come later.
                        false
                    }
                }
            };
            let draining = self.draining.load(Relaxed);
            let due = draining || batch_since.is_some_and(|t| t.elapsed() >= self.config.max_delay);
            if !batch.is_empty() && (filled == Filled::Full || complete || due) {
                // Pace: at most max_rate rows a second, batch by batch.
                let now = Instant::now();
                if next_send > now && wait(next_send - now, &mut stop).await {
                    return;
                }
                // The next batch may start rows/max_rate after this one
                // started: the time the send takes counts toward the pause.
                let started = Instant::now();
                let file_name = reader.file.name();
                let refused = match sender.send(&batch, &file_name, &mut stop).await {
                    Sent::Stopped => return,
                    Sent::Done { refused } => refused,
                };
                let rows = batch.rows.len() as u64;
                next_send =
                    started + Duration::from_secs_f64(rows as f64 / self.config.max_rate as f64);
                let Some(last) = batch.rows.last() else {
                    continue;
                };
                cursor = Cursor {
                    file: file_name,
                    first: reader.first.clone().unwrap_or_default(),
                    offset: last.offset,
                    time: humantime::format_rfc3339_millis(last.time).to_string(),
                    rows: cursor.rows + rows,
                };
                let (c, path) = (cursor.clone(), self.cursor_path());
                if let Err(e) = blocking(move || c.save(&path)).await {
                    // The engine has the rows; a restart sends them again.
                    tracing::error!(
                        "forward `{name}`: cannot save the cursor {}: {e}",
                        self.cursor_path().display()
                    );
                    self.stats.error("read");
                }
                // What the engine acknowledged; refused rows are counted
                // in rows_refused.
                let acked = rows - refused;
                self.stats.rows_forwarded.fetch_add(acked, Relaxed);
                if acked > 0 {
                    self.stats.batches.fetch_add(1, Relaxed);
                    self.stats
                        .last_ack_ms
                        .store(unix_ms(SystemTime::now()), Relaxed);
                }
                reader.acked = last.offset;
                self.stats.hold.set(position(&reader));
                batch.clear();
                batch_since = None;
            }
            if cut_under && batch.is_empty() {
                let file = reader.file.clone();
                match blocking(move || Reader::open(file, 0)).await {
                    Ok(r) => {
                        reader = r;
                        self.adopt(&reader);
                    }
                    Err(e) => self.read_failed(&e.to_string(), &mut stop).await,
                }
                continue;
            }
            if complete && batch.is_empty() {
                match self.next_file(&reader, false).await {
                    Ok(Some(r)) => {
                        reader = r;
                        self.adopt(&reader);
                    }
                    // No file after it yet (the writer opens the next one
                    // with its next rows).
                    Ok(None) => {
                        if wait(POLL, &mut stop).await {
                            return;
                        }
                    }
                    Err(e) => self.read_failed(&e, &mut stop).await,
                }
                continue;
            }
            if last_lag.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                last_lag = Some(Instant::now());
                self.lag(&reader, batch.rows.len(), &cursor, &mut counts)
                    .await;
            }
            if filled == Filled::End && !complete && batch.is_empty() && draining {
                // Everything written is acknowledged.
                return;
            }
            if filled == Filled::End && !complete {
                // Caught up with the writer: wait for more rows (or for the
                // batch's max_delay).
                let mut pause = POLL;
                if let Some(t) = batch_since {
                    pause = pause.min(self.config.max_delay.saturating_sub(t.elapsed()));
                }
                if wait(pause, &mut stop).await {
                    return;
                }
            }
        }
    }

    async fn read_failed(&self, e: &str, stop: &mut watch::Receiver<bool>) {
        self.stats.error("read");
        tracing::error!("forward `{}`: {e}; trying again in 10s", self.config.name);
        wait(Duration::from_secs(10), stop).await;
    }

    /// Where to begin: the cursor's file and offset, found by name or by
    /// first row; without a cursor, `start`.
    async fn locate(&self) -> Result<(Reader, Cursor), String> {
        let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
        let path = self.cursor_path();
        let start = self.config.start;
        let name = self.config.name.clone();
        let hold = self.stats.hold.clone();
        blocking(move || locate(&dir, &prefix, &path, start, &name, &hold)).await
    }

    /// The file after `reader`'s in the order of writing; `None` while
    /// `reader`'s is still the newest. With `removed`, `reader`'s file is
    /// gone (retention): the oldest file left is next.
    async fn next_file(&self, reader: &Reader, removed: bool) -> Result<Option<Reader>, String> {
        let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
        let (mut file, first) = (reader.file.clone(), reader.first.clone());
        let id = reader.id;
        // An active file the store rotated: known by its rotated name even
        // once retention removed it (then the oldest file left follows it).
        if file.stem.is_none() {
            file.stem = self.stats.hold.rotated_stem(id);
        }
        let name = file.stem.as_ref().map(|stem| format!("{stem}.csv"));
        blocking(move || {
            // Listed, then opened by path: a rotation in between would open
            // the writer's new file and pass over the one just rotated, so
            // an active file opened is checked to be the one listed.
            for _ in 0..5 {
                let files = files::in_order(&dir, &prefix)
                    .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
                let at = if removed {
                    None
                } else {
                    files::find(&files, name.as_deref(), first.as_deref(), Some(id))
                };
                let next = match at {
                    Some(i) => files.get(i + 1).cloned(),
                    // Not there any more (retention, or moved away): the
                    // oldest file written after it is the first one left,
                    // unless it was an active file moved away (not rotated):
                    // then the writer's new file follows it.
                    None if file.stem.is_none() => files.last().cloned(),
                    None => files.first().cloned(),
                };
                let Some(f) = next else {
                    return Ok(None);
                };
                let r = Reader::open(f.clone(), 0)
                    .map_err(|e| format!("cannot open {}: {e}", f.path.display()))?;
                if f.stem.is_some() || at.is_none() {
                    return Ok(Some(r));
                }
                // Listed again: still right after ours, and the file opened?
                let again = files::in_order(&dir, &prefix)
                    .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
                let follows = files::find(&again, name.as_deref(), first.as_deref(), Some(id))
                    .and_then(|i| again.get(i + 1))
                    .is_some_and(|g| crate::tail::active::id_of(&g.path) == Some(r.id));
                if follows {
                    return Ok(Some(r));
                }
            }
            Err(format!(
                "the files in {} keep changing under the reader",
                dir.display()
            ))
        })
        .await
    }

    /// Rows after the cursor (those in the batch not yet acknowledged,
    /// then the files from the read position on) and how far behind in
    /// time, from the files. Rotated files' counts are kept: they do not
    /// change.
    async fn lag(
        &self,
        reader: &Reader,
        pending: usize,
        cursor: &Cursor,
        counts: &mut HashMap<String, u64>,
    ) {
        let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
        let (file, offset) = (reader.file.clone(), reader.offset);
        let mut known = std::mem::take(counts);
        // Nothing acknowledged yet: behind since the first row waiting.
        let waiting = reader
            .first
            .as_deref()
            .and_then(|row| crate::history::parse::time(row.split(',').next()?.as_bytes()));
        let acked_time = crate::history::parse::time(cursor.time.as_bytes()).or(waiting);
        let (rows, newest, known) = blocking(move || {
            let files = files::in_order(&dir, &prefix).unwrap_or_default();
            let rows = match files.iter().position(|f| f.path == file.path) {
                Some(at) => files::rows_after(&files, at, offset, &mut known),
                None => index::rows_from(&file.path, offset).unwrap_or(0),
            };
            let newest =
                files::newest_time(&files).and_then(|t| crate::history::parse::time(t.as_bytes()));
            (rows, newest, known)
        })
        .await;
        *counts = known;
        let rows = rows + pending as u64;
        self.stats.lag_rows.store(rows, Relaxed);
        let lag = match (rows, newest, acked_time) {
            (0, _, _) => 0,
            (_, Some(n), Some(a)) => n.duration_since(a).map_or(0, |d| d.as_millis() as u64),
            _ => 0,
        };
        self.stats.lag_ms.store(lag, Relaxed);
    }
}

impl Position {
    fn from_cursor(reader: &Reader, offset: u64) -> Position {
        match &reader.file.stem {
            Some(stem) => Position::Rotated {
                stem: stem.clone(),
                offset,
            },
            None => Position::Active {
                id: reader.id,
                offset,
            },
        }
    }
}

/// Where `reader`'s unacknowledged rows begin, for retention.
fn position(reader: &Reader) -> Position {
    Position::from_cursor(reader, reader.acked)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// See [`Target::locate`]. Blocking.
fn locate(
    dir: &Path,
    prefix: &str,
    path: &Path,
    start: Start,
    name: &str,
    hold: &Hold,
) -> Result<(Reader, Cursor), String> {
    let files =
        files::in_order(dir, prefix).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let open = |f: &DataFile, offset: u64| {
        Reader::open(f.clone(), offset)
            .map_err(|e| format!("cannot open {}: {e}", f.path.display()))
    };
    let mut start = start;
    let cursor = match Cursor::load(path) {
        Ok(c) => c,
        Err(e) => {
            // Whatever `start` says: `now` would pass over every row since.
            start = Start::Oldest;
            // Never guess forward: from the oldest file, the engine
            // overwrites what it has.
            tracing::error!(
                "forward `{name}`: {e}; starting from the oldest file (rows already sent are sent again)"
            );
            None
        }
    };
    let Some(cursor) = cursor else {
        let Some(first) = files.first() else {
            return Err(format!("no data file in {} yet", dir.display()));
        };
        let reader = match start {
            Start::Oldest => open(first, 0)?,
            Start::Now => {
                let last = files.last().unwrap_or(first);
                let end = complete_end(&last.path)
                    .map_err(|e| format!("cannot read {}: {e}", last.path.display()))?;
                open(last, end)?
            }
        };
        tracing::info!(
            "forward `{name}`: no cursor yet; starting at byte {} of {}",
            reader.offset,
            reader.file.path.display()
        );
        return Ok((reader, Cursor::default()));
    };
    match cursor.find_in(&files) {
        Some(i) => {
            let f = &files[i];
            // The row before the cursor must be the last row sent: after a
            // power cut the file may have lost its unsynced end and grown
            // again with other rows; then the file is read from its start
            // (what was sent is sent again, which overwrites).
            let offset = match files::time_before(&f.path, cursor.offset) {
                Ok(Some(t))
                    if crate::history::parse::time(t.as_bytes())
                        != crate::history::parse::time(cursor.time.as_bytes()) =>
                {
                    tracing::warn!(
                        "forward `{name}`: the row before byte {} of {} is from {t}, not {} as the \
                         cursor says (the file lost its end, in a power cut?): reading it from its start",
                        cursor.offset,
                        f.path.display(),
                        cursor.time
                    );
                    0
                }
                _ => cursor.offset,
            };
            let reader = match open(f, offset) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        "forward `{name}`: {e}; the file is shorter than the cursor says: reading it from its start"
                    );
                    open(f, 0)?
                }
            };
            tracing::info!(
                "forward `{name}`: resuming at byte {} of {} (last row sent: {})",
                cursor.offset,
                f.path.display(),
                cursor.time
            );
            Ok((reader, cursor))
        }
        None => {
            // The cursor's file is gone: its rows after the cursor cannot be
            // counted. The first file begun after the cursor's last row is next.
            let next = files
                .iter()
                .position(|f| {
                    files::first_row(&f.path)
                        .ok()
                        .flatten()
                        .is_some_and(|row| row.as_str() > cursor.time.as_str())
                })
                .unwrap_or(files.len().saturating_sub(1));
            let Some(f) = files.get(next) else {
                return Err(format!("no data file in {} yet", dir.display()));
            };
            hold.lost(0, 1);
            tracing::warn!(
                "forward `{name}`: the cursor's file {} is gone (removed before it was sent); rows \
                 written after {} in it are lost to this target; going on with {}",
                cursor.file,
                cursor.time,
                f.path.display()
            );
            Ok((open(f, 0)?, cursor))
        }
    }
}

/// The end of the last complete line of `path`. Blocking.
fn complete_end(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut at = len;
    let mut buf = vec![0; 4096];
    while at > 0 {
        let from = at.saturating_sub(buf.len() as u64);
        file.seek(SeekFrom::Start(from))?;
        let n = (at - from) as usize;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        at = from;
    }
    Ok(0)
}
