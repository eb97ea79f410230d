//! The store: one writer task that appends rows to the active CSV file and
//! rotates it.
//!
//! Polling never waits for the disk. The engine hands each cycle's rows to
//! [`StoreSender::send`], which puts them on a bounded queue without
//! blocking; if the writer has fallen that far behind (a stalled SD card),
//! the batch is dropped, counted and logged. The writer task alone touches
//! the files, so there is no locking and rows are appended whole, in order.
//!
//! Rotation (by size, by UTC-aligned time, or both): flush, fsync, rename the
//! active file to its time-stamped name, fsync the directory, open a fresh
//! active file with its header, then compress (in the background) and apply
//! retention.

mod file;
pub mod names;
mod rotate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aggregate::Row;
use crate::config::{Compress, Fsync, Output};
use crate::schedule::align_down;

pub use file::{ActiveFile, HEADER};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not start with the edge-agent header (found `{found}`); \
         refusing to append to a file that is not ours. Move it away or set output.prefix to another name",
        path.display()
    )]
    ForeignFile { path: PathBuf, found: String },
}

/// Counters the writer keeps, reported at shutdown (and by metrics later).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub rows_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub rotations: AtomicU64,
    pub write_errors: AtomicU64,
    /// Rows dropped because the queue was full or the disk never recovered.
    pub rows_dropped: AtomicU64,
    /// False while writes fail.
    pub writable: AtomicBool,
}

/// What the writer task is asked to do, in order.
enum Message {
    Rows(Vec<Row>),
    /// New output settings for the same files (from a reload).
    Settings(Box<Output>),
}

/// The cloneable, non-blocking entry to the store.
#[derive(Clone)]
pub struct StoreSender {
    tx: mpsc::Sender<Message>,
    stats: Arc<StoreStats>,
}

impl StoreSender {
    /// Queue rows for writing. Never waits: a full queue drops the batch and
    /// counts it.
    pub fn send(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        if let Err(e) = self.tx.try_send(Message::Rows(rows)) {
            let total = self.stats.rows_dropped.fetch_add(n, Ordering::Relaxed) + n;
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    tracing::error!(
                        "write queue full: dropped {n} row(s) ({total} dropped so far); the disk is not keeping up"
                    )
                }
                mpsc::error::TrySendError::Closed(_) => {
                    tracing::error!(
                        "writer has stopped: dropped {n} row(s) ({total} dropped so far)"
                    )
                }
            }
        }
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

/// A running store.
pub struct Store {
    output: Output,
    sender: StoreSender,
    closing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Store {
    /// Open the output directory and active file (repairing and checking
    /// it), finish interrupted compression, and start the writer task.
    pub async fn open(output: &Output) -> Result<Store, StoreError> {
        let dir = &output.dir;
        create_dir(dir).await?;
        let active = ActiveFile::open(&names::active(dir, &output.prefix)).await?;
        let dir_err = |action, source| StoreError::Io {
            path: dir.clone(),
            action,
            source,
        };
        let pending = rotate::recover(dir, &output.prefix, output.compress == Compress::Gzip)
            .map_err(|e| dir_err("clean up", e))?;
        let stats = Arc::new(StoreStats::default());
        stats.writable.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(output.queue);
        let closing = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            output: output.clone(),
            active,
            rx,
            stats: stats.clone(),
            closing: closing.clone(),
            background: JoinSet::new(),
            last_sync: Instant::now(),
        };
        for path in pending {
            writer.compress(path);
        }
        writer.retain().await;
        let task = tokio::spawn(writer.run());
        Ok(Store {
            output: output.clone(),
            sender: StoreSender { tx, stats },
            closing,
            task,
        })
    }

    pub fn sender(&self) -> StoreSender {
        self.sender.clone()
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    /// True when `output` names the same files as this store.
    pub fn same_files(&self, output: &Output) -> bool {
        output.dir == self.output.dir && output.prefix == self.output.prefix
    }

    /// Apply new settings (rotation, retention, compression, fsync,
    /// decimals) for the same files, after the rows already queued. The
    /// queue's length is fixed while the store runs.
    pub async fn reconfigure(&mut self, output: &Output) {
        debug_assert!(self.same_files(output));
        if output.queue != self.output.queue {
            tracing::warn!("output.queue changes take effect at the next start");
        }
        let mut next = output.clone();
        next.queue = self.output.queue;
        if self
            .sender
            .tx
            .send(Message::Settings(Box::new(next.clone())))
            .await
            .is_ok()
        {
            self.output = next;
        }
    }

    /// Write what is queued, fsync, finish background compression, stop.
    /// Every other [`StoreSender`] must have been dropped.
    pub async fn close(self) -> Result<Arc<StoreStats>, StoreError> {
        self.closing.store(true, Ordering::Relaxed);
        let stats = self.sender.stats.clone();
        drop(self.sender);
        match self.task.await {
            Ok(result) => result.map(|()| stats),
            Err(e) => {
                tracing::error!("writer task failed: {e}");
                Ok(stats)
            }
        }
    }
}

async fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o750);
    builder.create(dir).await.map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        action: "create directory",
        source,
    })
}

/// The writer task's state.
struct Writer {
    output: Output,
    active: ActiveFile,
    rx: mpsc::Receiver<Message>,
    stats: Arc<StoreStats>,
    /// Set by [`Store::close`]: stop retrying a failing disk soon.
    closing: Arc<AtomicBool>,
    /// Compression jobs.
    background: JoinSet<(PathBuf, std::io::Result<()>)>,
    last_sync: Instant,
}

impl Writer {
    async fn run(mut self) -> Result<(), StoreError> {
        loop {
            let sync_due = match self.output.fsync {
                Fsync::Every(d) if self.active.is_dirty() => Some(self.last_sync + d),
                _ => None,
            };
            tokio::select! {
                message = self.rx.recv() => match message {
                    Some(Message::Rows(rows)) => self.write(rows).await,
                    Some(Message::Settings(output)) => self.output = *output,
                    None => break,
                },
                _ = sleep_until_opt(sync_due) => self.sync().await,
                Some(done) = self.background.join_next(), if !self.background.is_empty() => report_compression(done),
            }
        }
        let result = self.active.sync().await;
        while let Some(done) = self.background.join_next().await {
            report_compression(done);
        }
        result
    }

    async fn sync(&mut self) {
        match self.active.sync().await {
            Ok(()) => self.last_sync = Instant::now(),
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("{e}");
            }
        }
    }

    /// Append one batch, rotating first if it is due.
    async fn write(&mut self, rows: Vec<Row>) {
        let bytes = match encode(&rows, self.output.decimals).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot encode rows: {e}");
                return;
            }
        };
        let first = rows
            .iter()
            .map(|r| r.time)
            .min()
            .expect("batches are never empty");
        if self.rotation_due(first, bytes.len() as u64) {
            self.rotate().await;
        }
        let mut backoff = Duration::from_millis(100);
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.active.append(&bytes).await {
                Ok(()) => break,
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.stats.writable.store(false, Ordering::Relaxed);
                    if failing_since.is_none() {
                        tracing::error!(
                            "cannot write to {}: {e}; holding rows and retrying",
                            self.active.path().display()
                        );
                        failing_since = Some(Instant::now());
                    }
                    let closing = self.closing.load(Ordering::Relaxed);
                    if closing
                        && failing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(5))
                    {
                        let n = rows.len() as u64;
                        self.stats.rows_dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::error!("giving up on {n} row(s) at shutdown: {e}");
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.stats.writable.store(true, Ordering::Relaxed);
        if let Some(since) = failing_since {
            tracing::info!(
                "writing to {} works again after {}",
                self.active.path().display(),
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
            );
        }
        self.active.set_first_row(first);
        self.stats
            .rows_written
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.output.fsync == Fsync::Always {
            self.sync().await;
        }
    }

    fn rotation_due(&self, first: std::time::SystemTime, incoming: u64) -> bool {
        if !self.active.has_rows() {
            return false;
        }
        let by_size = self
            .output
            .max_size
            .is_some_and(|max| self.active.size() + incoming > max);
        let by_time = match (self.output.every, self.active.first_row()) {
            (Some(every), Some(start)) => align_down(first, every) != align_down(start, every),
            _ => false,
        };
        by_size || by_time
    }

    /// Close the active file under its rotated name and open a fresh one.
    /// A failure leaves the agent appending to the current file: rows are
    /// worth more than the size limit.
    async fn rotate(&mut self) {
        if let Err(e) = self.try_rotate().await {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("rotation failed, still writing to the active file: {e}");
            return;
        }
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        self.retain().await;
    }

    async fn try_rotate(&mut self) -> Result<(), StoreError> {
        let dir = self.output.dir.clone();
        let prefix = &self.output.prefix;
        self.active.sync().await?;
        let start = self
            .active
            .first_row()
            .unwrap_or_else(std::time::SystemTime::now);
        let mut seq = 0;
        let target = loop {
            let name = names::rotated(prefix, start, seq);
            let plain = dir.join(&name);
            let gz = dir.join(format!("{name}.gz"));
            if !tokio::fs::try_exists(&plain).await.unwrap_or(true)
                && !tokio::fs::try_exists(&gz).await.unwrap_or(true)
            {
                break plain;
            }
            seq += 1;
        };
        let io = |path: &Path, action, source| StoreError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let active_path = self.active.path().to_path_buf();
        tokio::fs::rename(&active_path, &target)
            .await
            .map_err(|e| io(&target, "rename to", e))?;
        // From here on a crash leaves no active file; the next start makes one.
        let fresh = ActiveFile::open(&active_path).await?;
        let _ = std::mem::replace(&mut self.active, fresh);
        let sync_dir = dir.clone();
        tokio::task::spawn_blocking(move || rotate::sync_dir(&sync_dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| io(&dir, "fsync directory", e))?;
        tracing::info!("rotated {} to {}", active_path.display(), target.display());
        if self.output.compress == Compress::Gzip {
            self.compress(target);
        }
        Ok(())
    }

    fn compress(&mut self, path: PathBuf) {
        self.background.spawn_blocking(move || {
            let result = rotate::gzip(&path);
            (path, result)
        });
    }

    async fn retain(&mut self) {
        let (dir, prefix, keep) = (
            self.output.dir.clone(),
            self.output.prefix.clone(),
            self.output.keep,
        );
        let result = tokio::task::spawn_blocking(move || rotate::retain(&dir, &prefix, keep)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("retention in {} failed: {e}", self.output.dir.display()),
            Err(e) => tracing::error!("retention task failed: {e}"),
        }
    }
}

fn report_compression(done: Result<(PathBuf, std::io::Result<()>), tokio::task::JoinError>) {
    match done {
        Ok((path, Ok(()))) => tracing::debug!("compressed {}", path.display()),
        Ok((path, Err(e))) => {
            tracing::error!(
                "cannot compress {}: {e}; it stays uncompressed",
                path.display()
            )
        }
        Err(e) => tracing::error!("compression task failed: {e}"),
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Rows as CSV bytes, through csv-async: quoting stays right whatever a
/// group name holds.
pub async fn encode(rows: &[Row], decimals: usize) -> Result<Vec<u8>, csv_async::Error> {
    let mut w = csv_async::AsyncWriterBuilder::new()
        .has_headers(false)
        .create_writer(Vec::with_capacity(rows.len() * 64));
    for row in rows {
        let num = |v: Option<f64>| v.map(|v| format_number(v, decimals)).unwrap_or_default();
        w.write_record([
            humantime::format_rfc3339_millis(row.time).to_string(),
            row.group.clone(),
            num(row.mean),
            num(row.min),
            num(row.max),
            row.unit.as_str().to_string(),
            row.ok.to_string(),
            row.failed.to_string(),
        ])
        .await?;
    }
    w.into_inner()
        .await
        .map_err(|e| csv_async::Error::from(std::io::Error::other(e.to_string())))
}

/// Fixed decimals, and never `-0.000`.
fn format_number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
        s[1..].to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(format_number(21.456789, 3), "21.457");
        assert_eq!(format_number(-0.0001, 3), "0.000");
        assert_eq!(format_number(-1.5, 1), "-1.5");
        assert_eq!(format_number(3.0, 0), "3");
    }
}
