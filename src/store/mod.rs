//! The store: one writer task that appends rows to the active CSV file and
//! rotates it.
//!
//! Polling never waits for the disk. The engine hands each cycle's rows to
//! [`StoreSender::send`], which puts them on a bounded queue without
//! blocking; if the writer has fallen that far behind (a stalled SD card),
//! the batch is dropped and counted (`rows_dropped`); the first drop is
//! logged, then a count every few minutes and a summary once the queue has
//! emptied. The writer task alone touches the files, so there is no locking
//! and rows are appended whole, in order.
//!
//! A failing disk (ENOSPC, EIO) is retried with backoff while the batch in
//! hand and the queue hold the rows; each kind of failure (write, fsync,
//! rotation) is logged when it starts and when it ends, not per attempt.
//! With `fsync: always` a failed fsync cuts the batch off and writes it
//! again (after a failed fsync the kernel may have dropped the pages).
//!
//! Rotation (by size, by UTC-aligned time, or both): flush, fsync, record
//! the rotated name in the order journal ([`crate::history::order`]), rename
//! the active file to its time-stamped name (never over an existing file),
//! fsync the directory, open a fresh active file with its header, then
//! compress (in the background) and apply retention, which removes the files
//! written first, whatever their names say.
//!
//! The wall clock may step (NTP on a board without a real-time clock): a row
//! whose (time, group) is already in the files is skipped and counted
//! (`rows_repeated`), never written twice ([`dedup`]).
//!
//! Nothing else writes to the output directory: an exclusive lock
//! ([`lock`]) is taken at open and held while the writer runs, so a second
//! agent on the same directory is refused. Before each batch the writer
//! checks that the active file is still the one at its path, as long as it
//! wrote it ([`active`]): a file moved away, deleted or truncated by another
//! program, a directory removed, or something not ours put at the name, is
//! logged once and the writer goes on in a new (or adopted, or alternate)
//! active file. While no active file can be opened the rows wait as for a
//! full disk.
//!
//! The writer also keeps each file's checksum index ([`index`]) current:
//! a block is added once that many bytes have been written, the last one at
//! rotation, and the index is renamed and removed with its file. Indexing
//! never holds up rows: a failure is logged once and costs replay speed.

mod active;
mod dedup;
#[doc(hidden)]
pub mod disk;
mod error;
mod file;
pub mod holds;
mod lock;
mod rotate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Compress, Fsync, Output};
use crate::schedule::align_down;
use crate::sync::lock;

use crate::history::index;
use crate::history::order;
use crate::history::row::{Row, encode};
use active::Seen;
use disk::{Disk, RealDisk, blocking};
pub use error::StoreError;
pub use file::ActiveFile;
use holds::Holds;
use lock::DirLock;

/// Rotated files of `prefix` in `dir` in the order they were written,
/// oldest first (the journal's order; see `history::order`).
pub fn rotated_in_order(
    dir: &Path,
    prefix: &str,
) -> std::io::Result<Vec<(crate::history::names::Rotated, PathBuf)>> {
    rotate::list_in_order(dir, prefix)
}
pub use lock::LOCK_FILE;

/// While the queue stays full, how often the count of dropped rows is
/// logged again.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(300);
/// Longest wait between two attempts of a failing write.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// At shutdown, rows still failing this long after the disk started failing
/// are given up (and counted as dropped).
const GIVE_UP_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Counters the writer keeps, reported at shutdown (and by metrics later).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub rows_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub rotations: AtomicU64,
    pub write_errors: AtomicU64,
    /// Rows dropped because the queue was full or the disk never recovered.
    pub rows_dropped: AtomicU64,
    /// Rows not written because a row for the same time and group is
    /// already in the files (the clock was set back).
    pub rows_repeated: AtomicU64,
    /// False while writes fail (or no active file can be opened).
    pub writable: AtomicBool,
    /// Failures by what failed, in the order of [`StoreStats::OPS`].
    pub errors: [AtomicU64; 4],
    /// Why each of [`StoreStats::OPS`] is failing now, if it is.
    problems: Mutex<[Option<String>; 4]>,
}

impl StoreStats {
    /// What the writer does to the disk: the `op` label of
    /// `edge_agent_store_errors_total`.
    pub const OPS: [&'static str; 4] = ["write", "fsync", "rotate", "open"];

    /// Why the store is not doing its work right now (`None`: it is): each
    /// failing operation's last error, for `/healthz`.
    pub fn problem(&self) -> Option<String> {
        let problems = lock(&self.problems);
        let all: Vec<&str> = problems.iter().flatten().map(String::as_str).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
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
    drops: Arc<Mutex<DropLog>>,
}

impl StoreSender {
    /// Queue rows for writing. Never waits: a full queue drops the batch and
    /// counts it. The first drop is logged; while the queue stays full, a
    /// count every [`DROP_REPORT_EVERY`]; and a summary once the writer has
    /// caught up.
    pub fn send(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        if let Err(e) = self.tx.try_send(Message::Rows(rows)) {
            let total = self.stats.rows_dropped.fetch_add(n, Ordering::Relaxed) + n;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => {
                    "write queue full: the disk is not keeping up or keeps failing"
                }
                mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
            };
            lock(&self.drops).dropped(n, total, why);
        }
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

/// Logging of dropped rows: once when drops start, then rate-limited.
#[derive(Default)]
struct DropLog {
    episode: Option<DropEpisode>,
}

struct DropEpisode {
    rows: u64,
    last_report: Instant,
    since_report: u64,
}

impl DropLog {
    fn dropped(&mut self, n: u64, total: u64, why: &str) {
        let now = Instant::now();
        match &mut self.episode {
            None => {
                tracing::error!(
                    "{why}: dropped {n} row(s) ({total} dropped so far); further drops are \
                     counted (rows_dropped) and summed up in the log every {} and once the \
                     writer has caught up",
                    humantime::format_duration(DROP_REPORT_EVERY)
                );
                self.episode = Some(DropEpisode {
                    rows: n,
                    last_report: now,
                    since_report: 0,
                });
            }
            Some(ep) => {
                ep.rows += n;
                ep.since_report += n;
                if now.duration_since(ep.last_report) >= DROP_REPORT_EVERY {
                    tracing::error!(
                        "{why}: {} more row(s) dropped in the last {} ({total} dropped so far)",
                        ep.since_report,
                        humantime::format_duration(DROP_REPORT_EVERY)
                    );
                    ep.last_report = now;
                    ep.since_report = 0;
                }
            }
        }
    }

    /// The queue is empty again: close the episode with a summary.
    fn drained(&mut self, total: u64) {
        if let Some(ep) = self.episode.take() {
            tracing::warn!(
                "write queue has room again; {} row(s) were dropped while it was full ({total} dropped so far)",
                ep.rows
            );
        }
    }
}

/// A running store.
pub struct Store {
    output: Output,
    /// The active file the store opened with.
    first_file: PathBuf,
    sender: StoreSender,
    closing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Store {
    /// Open the output directory and active file (repairing and checking
    /// it), finish interrupted compression, and start the writer task.
    pub async fn open(output: &Output) -> Result<Store, StoreError> {
        Store::open_with(output, Arc::new(RealDisk)).await
    }

    /// [`Store::open`] with the active file's operations going through
    /// `disk` (tests inject faults this way).
    #[doc(hidden)]
    pub async fn open_with(output: &Output, disk: Arc<dyn Disk>) -> Result<Store, StoreError> {
        Store::open_held(output, disk, Holds::new()).await
    }

    /// [`Store::open_with`] whose retention asks `holds` what the forward
    /// targets still need.
    pub async fn open_held(
        output: &Output,
        disk: Arc<dyn Disk>,
        holds: Arc<Holds>,
    ) -> Result<Store, StoreError> {
        let dir = &output.dir;
        create_dir(dir).await?;
        // Before any file is touched: another agent may be writing here.
        let dir_lock = DirLock::acquire(dir)?;
        let chosen = active::open_active(disk.as_ref(), dir, &output.prefix).await?;
        active::finish_alternates(disk.as_ref(), dir, &output.prefix, chosen.file.path()).await?;
        let passed = chosen.passed;
        let active = chosen.file;
        let first_file = active.path().to_path_buf();
        let indexed_end = {
            let (path, limit) = (active.path().to_path_buf(), active.size());
            blocking(move || index::reopen(&path, limit)).await
        };
        let dir_err = |action, source| StoreError::Io {
            path: dir.clone(),
            action,
            source,
        };
        let pending = rotate::recover(dir, &output.prefix, output.compress == Compress::Gzip)
            .map_err(|e| dir_err("clean up", e))?;
        let written = dedup_start(dir, &output.prefix, active.path()).await;
        let stats = Arc::new(StoreStats::default());
        stats.writable.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(output.queue);
        let closing = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(Mutex::new(DropLog::default()));
        let mut writer = Writer {
            output: output.clone(),
            disk,
            active,
            rx,
            stats: stats.clone(),
            drops: drops.clone(),
            closing: closing.clone(),
            background: JoinSet::new(),
            last_sync: Instant::now(),
            failing: [None; 4],
            rotate_retry: None,
            given_up: 0,
            indexed_end: 0,
            _lock: dir_lock,
            holds,
            lost: false,
            passed_over: None,
            written,
        };
        writer.note_choice(&passed);
        writer.indexed(indexed_end);
        for path in pending {
            writer.compress(path);
        }
        writer.retain().await;
        let task = tokio::spawn(writer.run());
        Ok(Store {
            output: output.clone(),
            first_file,
            sender: StoreSender { tx, stats, drops },
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

    /// The active file the store opened with: `PREFIX.csv`, or an
    /// alternate beside something that is not ours (for the start-up
    /// line; rotations and other programs change it later).
    pub fn first_file(&self) -> &Path {
        &self.first_file
    }

    /// True when `output` names the same files as this store.
    pub fn same_files(&self, output: &Output) -> bool {
        self.output.same_files(output)
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

/// What the writer does to the disk, for failure tracking (the index in
/// [`StoreStats::OPS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    Rotate,
    /// Opening a new active file after the last one was moved, deleted or
    /// cut by another program.
    Open,
}

/// The writer task's state.
struct Writer {
    output: Output,
    disk: Arc<dyn Disk>,
    active: ActiveFile,
    rx: mpsc::Receiver<Message>,
    stats: Arc<StoreStats>,
    drops: Arc<Mutex<DropLog>>,
    /// Set by [`Store::close`]: stop retrying a failing disk soon.
    closing: Arc<AtomicBool>,
    /// Compression jobs.
    background: JoinSet<(PathBuf, std::io::Result<()>)>,
    last_sync: Instant,
    /// Since when each [`Op`] has been failing, so each failure and each
    /// recovery is logged once, not on every attempt.
    failing: [Option<Instant>; 4],
    /// After a failed rotation: not before this, and the next wait.
    rotate_retry: Option<(Instant, Duration)>,
    /// Rows given up at shutdown because the disk kept failing.
    given_up: u64,
    /// How far the active file's index reaches (`u64::MAX` after a failure:
    /// no more tries until the next file).
    indexed_end: u64,
    /// The output directory's lock, held while the writer runs.
    _lock: DirLock,
    /// What forward targets still need of the rotated files.
    holds: Arc<Holds>,
    /// The active file is no longer the one at its path: open it anew
    /// before the next append.
    lost: bool,
    /// While the usual active name cannot be used: why (logged once).
    passed_over: Option<String>,
    /// The (time, group) pairs written, so none is written twice.
    written: dedup::Written,
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
        if self.given_up > 0 {
            tracing::error!(
                "gave up on {} row(s) at shutdown: {} still cannot be written",
                self.given_up,
                self.active.path().display()
            );
        }
        let total = self.stats.rows_dropped.load(Ordering::Relaxed);
        lock(&self.drops).drained(total);
        self.written.close();
        let result = self.active.sync().await;
        while let Some(done) = self.background.join_next().await {
            report_compression(done);
        }
        result
    }

    /// Record a failure of `op`; logged only when `op` starts failing.
    fn failed(&mut self, op: Op, e: &dyn std::fmt::Display) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        if op != Op::Rotate {
            self.stats.writable.store(false, Ordering::Relaxed);
        }
        let path = self.active.path().display();
        let problem = match op {
            Op::Write => format!("cannot write to {path}: {e}; rows are held"),
            Op::Sync => format!("cannot fsync {path}: {e}"),
            Op::Rotate => format!("rotation failed: {e}; still writing to {path}"),
            Op::Open => format!("no active file to write to: {e}; rows are held"),
        };
        lock(&self.stats.problems)[op as usize] = Some(problem);
        let since = &mut self.failing[op as usize];
        if since.is_some() {
            tracing::debug!("{op:?} still failing: {e}");
            return;
        }
        *since = Some(Instant::now());
        let path = self.active.path().display();
        match op {
            Op::Write => tracing::error!(
                "cannot write to {path}: {e}; holding rows (up to {} batch(es) queued) and retrying",
                self.output.queue
            ),
            Op::Sync => tracing::error!("cannot fsync {path}: {e}; retrying"),
            Op::Rotate => {
                tracing::error!("rotation failed, still writing to the active file: {e}")
            }
            Op::Open => tracing::error!(
                "cannot open a new active file: {e}; holding rows (up to {} batch(es) queued) \
                 and retrying",
                self.output.queue
            ),
        }
    }

    /// `op` succeeded: log the recovery if it had been failing.
    fn worked(&mut self, op: Op) {
        lock(&self.stats.problems)[op as usize] = None;
        if let Some(since) = self.failing[op as usize].take() {
            let after = humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
            let path = self.active.path().display();
            match op {
                Op::Write => tracing::info!("writing to {path} works again after {after}"),
                Op::Sync => tracing::info!("fsync of {path} works again after {after}"),
                Op::Rotate => tracing::info!("rotation works again after {after}"),
                Op::Open => tracing::info!("writing to {path} after {after}"),
            }
        }
        if [Op::Write, Op::Sync, Op::Open]
            .iter()
            .all(|op| self.failing[*op as usize].is_none())
        {
            self.stats.writable.store(true, Ordering::Relaxed);
        }
    }

    async fn sync(&mut self) {
        match self.active.sync_io().await {
            Ok(()) => self.worked(Op::Sync),
            Err(e) => self.failed(Op::Sync, &e),
        }
        // After a failure too: the next attempt comes one period later.
        self.last_sync = Instant::now();
    }

    /// Append one batch, rotating first if it is due. A failing disk is
    /// retried with backoff while the batch waits here and later ones wait
    /// in the queue; with `fsync: always` a failed fsync cuts the batch off
    /// again and writes it anew, so it is on disk exactly once.
    async fn write(&mut self, mut rows: Vec<Row>) {
        let repeated = self.written.admit(&mut rows);
        if repeated > 0 {
            self.stats
                .rows_repeated
                .fetch_add(repeated, Ordering::Relaxed);
            if rows.is_empty() {
                return;
            }
        }
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
        let always = self.output.fsync == Fsync::Always;
        let mut backoff = Duration::from_millis(100);
        let mut rotation_checked = false;
        loop {
            // The file at the path must still be the one written, before
            // rotation renames it and before rows go into it.
            if let Err(e) = self.ensure_active().await {
                self.failed(Op::Open, &e);
                if self.give_up(Op::Open, rows.len(), &mut backoff) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            self.worked(Op::Open);
            if !rotation_checked {
                rotation_checked = true;
                if self.rotation_due(first, bytes.len() as u64)
                    && self.rotate_retry.is_none_or(|(at, _)| Instant::now() >= at)
                {
                    self.rotate().await;
                }
            }
            let before = self.active.size();
            let result = match self.active.append(&bytes).await {
                Err(e) => Err((Op::Write, e)),
                Ok(()) if always => match self.active.sync_io().await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // The kernel may have dropped the pages: write them again.
                        self.active.cut_back(before).await;
                        Err((Op::Sync, e))
                    }
                },
                Ok(()) => Ok(()),
            };
            let Err((op, e)) = result else { break };
            self.failed(op, &e);
            if self.give_up(op, rows.len(), &mut backoff) {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.worked(Op::Write);
        if always {
            self.worked(Op::Sync);
            self.last_sync = Instant::now();
        }
        self.active.set_first_row(first);
        if self.active.size() >= self.indexed_end.saturating_add(index::BLOCK) {
            let (path, limit) = (self.active.path().to_path_buf(), self.active.size());
            let end = blocking(move || index::update_with(&path, false, index::BLOCK, limit)).await;
            self.indexed(end);
        }
        self.stats
            .rows_written
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.rx.is_empty() {
            let total = self.stats.rows_dropped.load(Ordering::Relaxed);
            lock(&self.drops).drained(total);
        }
    }

    /// At shutdown, rows that have kept failing (`op`) for
    /// [`GIVE_UP_AT_SHUTDOWN`] are given up and counted: true then. Until
    /// then retries come at least every second.
    fn give_up(&mut self, op: Op, rows: usize, backoff: &mut Duration) -> bool {
        if !self.closing.load(Ordering::Relaxed) {
            return false;
        }
        let since = self.failing[op as usize].unwrap_or_else(Instant::now);
        if since.elapsed() >= GIVE_UP_AT_SHUTDOWN {
            let n = rows as u64;
            self.stats.rows_dropped.fetch_add(n, Ordering::Relaxed);
            self.given_up += n;
            return true;
        }
        *backoff = (*backoff).min(Duration::from_secs(1));
        false
    }

    /// Make sure the open active file is still the one at its path, as
    /// long as the writer wrote it (one `lstat`); if not, log what happened
    /// once and open the active file anew. An error: no active file could
    /// be opened (the rows wait).
    async fn ensure_active(&mut self) -> Result<(), StoreError> {
        if !self.lost {
            let seen = match active::look(&self.active).await {
                Ok(seen) => seen,
                Err(e) => {
                    // The look failed, not the file: write on.
                    tracing::debug!("cannot stat {}: {e}", self.active.path().display());
                    Seen::Same
                }
            };
            if seen == Seen::Same {
                return Ok(());
            }
            self.lose(seen).await;
        }
        self.reopen().await
    }

    /// The active file is no longer what the writer wrote: say what
    /// happened, leave the file as it is (fsynced: the rows in it are
    /// written), and drop the index at its path, which would describe
    /// another file.
    async fn lose(&mut self, seen: Seen) {
        let path = self.active.path().to_path_buf();
        let links = self.active.links().await.ok();
        let dir = &self.output.dir;
        let dir_gone = !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir());
        let what = active::describe(
            seen,
            &path,
            self.active.size(),
            links,
            dir_gone.then_some(dir.as_path()),
        );
        tracing::warn!("{what}");
        let _ = self.active.sync_io().await;
        if !matches!(seen, Seen::Grown { .. }) && !dir_gone {
            let p = path.clone();
            if let Err(e) = blocking(move || index::remove(&p)).await {
                tracing::warn!("cannot remove the index of {}: {e}", path.display());
            }
        }
        self.lost = true;
    }

    /// Open the active file anew (the directory made again if it is gone,
    /// and locked again then).
    async fn reopen(&mut self) -> Result<(), StoreError> {
        let dir = self.output.dir.clone();
        let existed = tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir());
        create_dir(&dir).await?;
        if !existed {
            tracing::warn!("made {} again (mode 0750)", dir.display());
        }
        if self._lock.renew()? {
            tracing::info!("locked {} again ({LOCK_FILE})", dir.display());
        }
        let chosen = active::open_active(self.disk.as_ref(), &dir, &self.output.prefix).await?;
        self.active = chosen.file;
        self.lost = false;
        self.note_choice(&chosen.passed);
        let (path, limit) = (self.active.path().to_path_buf(), self.active.size());
        let end = blocking(move || index::reopen(&path, limit)).await;
        self.indexed(end);
        Ok(())
    }

    /// Log, once, that the usual active name is passed over (and why), or
    /// that it is used again.
    fn note_choice(&mut self, passed: &[StoreError]) {
        let Some(first) = passed.first() else {
            if self.passed_over.take().is_some() {
                tracing::info!(
                    "{} can be used again: writing to it",
                    self.active.path().display()
                );
            }
            return;
        };
        let why = first.to_string();
        if self.passed_over.as_ref() == Some(&why) {
            return;
        }
        let more = match passed.len() {
            1 => String::new(),
            n => format!(" ({} alternate name(s) are taken too)", n - 1),
        };
        tracing::warn!(
            "{why}: left as it is; writing to {} instead{more}, back to the usual name at a \
             rotation once it can be used",
            self.active.path().display()
        );
        self.passed_over = Some(why);
    }

    /// Note how far the active file's index now reaches; a failure is
    /// logged and indexing stops until the next file.
    fn indexed(&mut self, end: std::io::Result<u64>) {
        self.indexed_end = match end {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(
                    "cannot update the index of {}: {e}; replay reads its rows one by one",
                    self.active.path().display()
                );
                u64::MAX
            }
        };
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
    /// A failure leaves the agent appending to the current file (rows are
    /// worth more than the size limit) and is retried with backoff.
    async fn rotate(&mut self) {
        if let Err(e) = self.try_rotate().await {
            self.failed(Op::Rotate, &e);
            let wait = self.rotate_retry.map_or(Duration::from_secs(1), |(_, w)| {
                (w * 2).min(MAX_BACKOFF * 6)
            });
            self.rotate_retry = Some((Instant::now() + wait, wait));
            return;
        }
        self.rotate_retry = None;
        self.worked(Op::Rotate);
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        self.retain().await;
    }

    async fn try_rotate(&mut self) -> Result<(), StoreError> {
        if self.indexed_end != u64::MAX {
            // The last block, however short: the file is complete.
            let (path, limit) = (self.active.path().to_path_buf(), self.active.size());
            let end = blocking(move || index::update_with(&path, true, index::BLOCK, limit)).await;
            self.indexed(end);
        }
        let dir = self.output.dir.clone();
        let prefix = &self.output.prefix;
        self.active.sync().await?;
        let io = |path: &Path, action, source| StoreError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        // Normally the active file has an active name (the usual one or an
        // alternate); after a failed rotation whose rename back failed
        // too, it already has its rotated name. Only the file the writer
        // has open is renamed: the path was checked before this batch.
        let active_path = self.active.path().to_path_buf();
        let renamed = active::is_active_name(&active_path, prefix);
        let target = if renamed {
            let start = self
                .active
                .first_row()
                .unwrap_or_else(std::time::SystemTime::now);
            let target = active::rotated_path(&dir, prefix, start).await;
            // Recorded first: a crash after it leaves a line for a file that
            // does not exist (ignored), never a rotated file out of order.
            let (journal_dir, journal_prefix) = (dir.clone(), prefix.clone());
            let name = target_name(&target);
            blocking(move || order::record(&journal_dir, &journal_prefix, &name))
                .await
                .map_err(|e| io(&order::path(&dir, prefix), "record the rotation in", e))?;
            let (from, to) = (active_path.clone(), target.clone());
            blocking(move || rotate::rename_new(&from, &to))
                .await
                .map_err(|e| io(&target, "rename to", e))?;
            self.active.set_path(target.clone());
            // A forward target reading the file now needs it as rotated.
            if let (Ok(meta), Some(stem)) = (
                std::fs::metadata(&target),
                crate::history::names::parse_rotated(prefix, &target_name(&target))
                    .map(|r| r.stem(prefix)),
            ) {
                use std::os::unix::fs::MetadataExt;
                self.holds.rotated((meta.dev(), meta.ino()), &stem);
            }
            // The index follows its file; a failure leaves the rotated file
            // without one (replay reads it row by row).
            if let Err(e) = index::rename(&active_path, &target) {
                tracing::warn!("cannot rename the index of {}: {e}", target.display());
                let _ = index::remove(&active_path);
            }
            target
        } else {
            active_path.clone()
        };
        // From here on a crash leaves no active file; the next start makes one.
        let fresh = match active::open_active(self.disk.as_ref(), &dir, prefix).await {
            Ok(f) => f,
            Err(e) => {
                // Disk full while writing the header: keep appending to the
                // old file under its active name (put back over the partial
                // new one, never over a file someone put there: then under
                // its rotated name).
                let (from, to) = (target.clone(), active_path.clone());
                if renamed && blocking(move || rotate::put_back(&from, &to)).await.is_ok() {
                    let _ = index::rename(&target, &active_path);
                    self.active.set_path(active_path);
                }
                return Err(e);
            }
        };
        let _ = std::mem::replace(&mut self.active, fresh.file);
        self.note_choice(&fresh.passed);
        self.indexed_end = 0;
        tracing::info!("rotated {} to {}", active_path.display(), target.display());
        if self.output.compress == Compress::Gzip {
            self.compress(target);
        }
        // The rotation has happened; a failed directory fsync is an fsync
        // failure (logged once, like the file's), not a failed rotation.
        let sync_dir = dir.clone();
        let synced = tokio::task::spawn_blocking(move || rotate::sync_dir(&sync_dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = synced {
            self.failed(Op::Sync, &io(&dir, "fsync directory", e));
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
        let (dir, prefix, keep, holds) = (
            self.output.dir.clone(),
            self.output.prefix.clone(),
            self.output.keep,
            self.holds.clone(),
        );
        let result =
            tokio::task::spawn_blocking(move || rotate::retain(&dir, &prefix, keep, &holds)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("retention in {} failed: {e}", self.output.dir.display()),
            Err(e) => tracing::error!("retention task failed: {e}"),
        }
    }
}

/// What the files already hold, so no (time, group) is written twice: read
/// from the newest rows (the active file, and the newest rotated file before
/// it). A failure costs only that guard across this restart, and is logged.
async fn dedup_start(dir: &Path, prefix: &str, active: &Path) -> dedup::Written {
    let (files, prefix, active) = (dir.to_path_buf(), prefix.to_string(), active.to_path_buf());
    let result = blocking(move || {
        let newest = rotate::list_in_order(&files, &prefix)?
            .pop()
            .map(|(_, p)| p);
        dedup::Written::load(&active, newest.as_deref())
    })
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(
            "cannot read the newest rows in {} to learn which times are written: {e}; if the \
             clock was set back, rows of the repeated period may be written a second time",
            dir.display()
        );
        dedup::Written::default()
    })
}

/// The file name of `path`, for the order journal.
fn target_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
