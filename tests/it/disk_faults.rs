//! Disk full and I/O errors, through a fault-injecting disk behind the
//! store's own file interface (`store::disk`): the same `Store` code runs,
//! only the active file's write/set_len/fsync fail on demand (ENOSPC, EIO,
//! also after writing part of a buffer). Timing goes through tokio's paused
//! clock, so minutes of backoff take no time.

use crate::support;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::config::{Fsync, Output, Unit};
use edge_agent::history::HEADER;
use edge_agent::history::Row;
use edge_agent::store::disk::{Disk, DiskFile, IoFuture, RealDisk};
use edge_agent::store::{Store, StoreStats};

/// One kind of fault: fail `times` more calls (`usize::MAX`: until healed)
/// with `errno`, after writing `partial` bytes of an append.
#[derive(Clone, Copy)]
struct Fault {
    errno: i32,
    times: usize,
    partial: usize,
}

#[derive(Default)]
struct Faults {
    append: Option<Fault>,
    set_len: Option<Fault>,
    sync: Option<Fault>,
    /// Calls that failed, per operation: (append, set_len, sync).
    failed: (usize, usize, usize),
    appends: usize,
}

/// Take one failure of `f`, if armed.
fn hit(f: &mut Option<Fault>) -> Option<Fault> {
    let fault = (*f)?;
    if fault.times != usize::MAX {
        f.as_mut().unwrap().times -= 1;
        if fault.times == 1 {
            *f = None;
        }
    }
    Some(fault)
}

/// The real disk, with faults switched on and off by the test.
#[derive(Clone, Default)]
struct FaultyDisk(Arc<Mutex<Faults>>);

impl FaultyDisk {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.0.lock().unwrap()
    }
    fn heal(&self) {
        let mut f = self.faults();
        (f.append, f.set_len, f.sync) = (None, None, None);
    }
}

fn fault(errno: i32, times: usize) -> Option<Fault> {
    Some(Fault {
        errno,
        times,
        partial: 0,
    })
}

impl Disk for FaultyDisk {
    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Box<dyn DiskFile>> {
        Box::pin(async move {
            let inner = RealDisk.open(path).await?;
            Ok(Box::new(FaultyFile {
                inner,
                faults: self.0.clone(),
            }) as Box<dyn DiskFile>)
        })
    }
}

struct FaultyFile {
    inner: Box<dyn DiskFile>,
    faults: Arc<Mutex<Faults>>,
}

impl DiskFile for FaultyFile {
    fn size(&mut self) -> IoFuture<'_, u64> {
        self.inner.size()
    }
    fn metadata(&mut self) -> IoFuture<'_, std::fs::Metadata> {
        self.inner.metadata()
    }
    fn read_at<'a>(&'a mut self, offset: u64, buf: &'a mut [u8]) -> IoFuture<'a, usize> {
        self.inner.read_at(offset, buf)
    }
    fn append<'a>(&'a mut self, bytes: &'a [u8]) -> IoFuture<'a, ()> {
        self.faults.lock().unwrap().appends += 1;
        let fault = self.take(|f| (&mut f.append, &mut f.failed.0));
        Box::pin(async move {
            match fault {
                None => self.inner.append(bytes).await,
                Some(fault) => {
                    let n = fault.partial.min(bytes.len());
                    if n > 0 {
                        self.inner.append(&bytes[..n]).await?;
                    }
                    Err(io::Error::from_raw_os_error(fault.errno))
                }
            }
        })
    }
    fn set_len(&mut self, len: u64) -> IoFuture<'_, ()> {
        match self.take(|f| (&mut f.set_len, &mut f.failed.1)) {
            None => self.inner.set_len(len),
            Some(fault) => failure(fault),
        }
    }
    fn sync(&mut self) -> IoFuture<'_, ()> {
        match self.take(|f| (&mut f.sync, &mut f.failed.2)) {
            None => self.inner.sync(),
            Some(fault) => failure(fault),
        }
    }
}

impl FaultyFile {
    /// Take one failure of the operation `pick` selects (its fault and its
    /// count of failed calls), if armed.
    fn take(&self, pick: fn(&mut Faults) -> (&mut Option<Fault>, &mut usize)) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        let (armed, failed) = pick(&mut faults);
        let fault = hit(armed);
        *failed += fault.is_some() as usize;
        fault
    }
}

fn failure<'a>(fault: Fault) -> IoFuture<'a, ()> {
    Box::pin(async move { Err(io::Error::from_raw_os_error(fault.errno)) })
}

/// Log lines of the current thread, for counting messages.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A store on a [`FaultyDisk`] in a temp dir, with its log captured.
struct Rig {
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
    dir: tempfile::TempDir,
    disk: FaultyDisk,
    store: Store,
}

impl Rig {
    async fn open(tune: impl FnOnce(&mut Output)) -> Rig {
        let (logs, _guard) = Logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let disk = FaultyDisk::default();
        let mut out = support::output(dir.path());
        tune(&mut out);
        let store = Store::open_with(&out, Arc::new(disk.clone()))
            .await
            .unwrap();
        Rig {
            logs,
            _guard,
            dir,
            disk,
            store,
        }
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs)
}

fn row(secs: u64) -> Row {
    let v = secs as f64;
    Row {
        time: at(secs),
        group: "g".into(),
        mean: Some(v),
        min: Some(v),
        max: Some(v),
        unit: Unit::Celsius,
        ok: 1,
        failed: 0,
    }
}

fn expected(secs: impl IntoIterator<Item = u64>) -> Vec<String> {
    secs.into_iter()
        .map(|s| {
            format!(
                "{},g,{s}.000,{s}.000,{s}.000,celsius,1,0",
                humantime::format_rfc3339_millis(at(s))
            )
        })
        .collect()
}

/// The active file: header first, whole lines only; its rows.
fn file_rows(path: &PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with(HEADER), "{text:?}");
    assert!(text.ends_with('\n'), "torn last line: {text:?}");
    support::rows(path)
}

/// Let the writer run (and retry) for `d` of paused time. Not a wait for
/// something to happen: the time passing is what is under test (backoff,
/// periodic fsync), and on tokio's paused clock it takes no real time.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn stat(s: &StoreStats) -> (u64, u64, bool) {
    (
        s.rows_written.load(Relaxed),
        s.rows_dropped.load(Relaxed),
        s.writable.load(Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn disk_full_holds_rows_and_writes_each_once_when_space_returns() {
    let rig = Rig::open(|_| {}).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    tx.send(vec![row(0)]);
    pass(Duration::from_secs(1)).await;
    // The disk fills up mid-row: part of each attempt lands before ENOSPC.
    disk.faults().append = Some(Fault {
        errno: libc::ENOSPC,
        times: usize::MAX,
        partial: 17,
    });
    for s in 1..=30 {
        tx.send(vec![row(s)]);
        pass(Duration::from_secs(10)).await;
    }
    let path = rig.dir.path().join("readings.csv");
    assert_eq!(
        file_rows(&path),
        expected([0]),
        "nothing partial stays behind"
    );
    let stats = tx.stats().clone();
    assert_eq!(stat(&stats), (1, 0, false));
    let attempts = disk.faults().failed.0;
    assert!(
        (25..=60).contains(&attempts),
        "retried with backoff (100ms doubling to 10s) over 300s: {attempts} attempts"
    );
    assert_eq!(stats.write_errors.load(Relaxed), attempts as u64);

    disk.heal();
    pass(Duration::from_secs(11)).await;
    assert_eq!(stat(&stats), (31, 0, true));
    tx.send(vec![row(31)]);
    drop(tx);
    rig.store.close().await.unwrap();
    assert_eq!(
        file_rows(&path),
        expected(0..=31),
        "each row once, in order"
    );
    assert_eq!(logs.count("cannot write to"), 1, "{}", logs.text());
    assert!(logs.text().contains("No space left on device"));
    assert_eq!(logs.count("works again"), 1, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_failed_fsync_writes_the_batch_again_exactly_once() {
    let rig = Rig::open(|o| o.fsync = Fsync::Always).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    disk.faults().sync = fault(libc::EIO, 4);
    for s in 0..5 {
        tx.send(vec![row(s), row(s + 100)]);
    }
    pass(Duration::from_secs(30)).await;
    let (failed, appends) = {
        let f = disk.faults();
        (f.failed, f.appends)
    };
    assert_eq!(failed, (0, 0, 4));
    assert_eq!(
        appends,
        1 + 5 + 4,
        "the header, the first batch 5 times, the other batches once"
    );
    drop(tx);
    let stats = rig.store.close().await.unwrap();
    assert_eq!(stat(&stats), (10, 0, true));
    let want: Vec<String> = (0..5).flat_map(|s| expected([s, s + 100])).collect();
    assert_eq!(file_rows(&rig.dir.path().join("readings.csv")), want);
    assert_eq!(logs.count("cannot fsync"), 1, "{}", logs.text());
    assert!(logs.text().contains("Input/output error"));
    assert_eq!(logs.count("fsync of"), 1, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_failed_periodic_fsync_is_logged_once_and_retried_a_period_later() {
    let rig = Rig::open(|o| o.fsync = Fsync::Every(Duration::from_secs(5))).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    disk.faults().sync = fault(libc::EIO, usize::MAX);
    tx.send(vec![row(0)]);
    pass(Duration::from_secs(60)).await;
    let failed = disk.faults().failed.2;
    assert!(
        (10..=13).contains(&failed),
        "one attempt per 5s period, not a busy loop: {failed}"
    );
    assert!(!tx.stats().writable.load(Relaxed));
    disk.heal();
    pass(Duration::from_secs(6)).await;
    assert!(tx.stats().writable.load(Relaxed));
    drop(tx);
    rig.store.close().await.unwrap();
    assert_eq!(logs.count("cannot fsync"), 1, "{}", logs.text());
    assert_eq!(logs.count("works again"), 1, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_partial_write_whose_cut_back_fails_is_cut_before_the_next_write() {
    let rig = Rig::open(|_| {}).await;
    let disk = &rig.disk;
    let tx = rig.store.sender();
    tx.send(vec![row(0)]);
    pass(Duration::from_secs(1)).await;
    {
        let mut f = disk.faults();
        f.append = Some(Fault {
            errno: libc::EIO,
            times: 2,
            partial: 30,
        });
        // The first cut-back fails too: the torn bytes stay for a while.
        f.set_len = fault(libc::EIO, 1);
    }
    tx.send(vec![row(1), row(2)]);
    pass(Duration::from_millis(50)).await;
    let path = rig.dir.path().join("readings.csv");
    let torn = std::fs::read_to_string(&path).unwrap();
    assert!(
        !torn.ends_with('\n'),
        "the fault left a torn line: {torn:?}"
    );
    pass(Duration::from_secs(5)).await;
    tx.send(vec![row(3)]);
    drop(tx);
    rig.store.close().await.unwrap();
    assert_eq!(disk.faults().failed, (2, 1, 0));
    assert_eq!(file_rows(&path), expected(0..=3));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_counts_and_logs_once_then_sums_up() {
    let rig = Rig::open(|o| o.queue = 4).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    disk.faults().append = fault(libc::ENOSPC, usize::MAX);
    // One batch per "cycle" for 10 minutes of paused time, two rows each.
    for s in 0..600 {
        tx.send(vec![row(s), row(s + 1000)]);
        pass(Duration::from_secs(1)).await;
    }
    let stats = tx.stats().clone();
    // The writer holds one batch, the queue four: the rest is dropped.
    assert_eq!(stat(&stats), (0, 2 * 595, false));
    assert_eq!(logs.count("write queue full"), 2, "{}", logs.text());
    assert_eq!(logs.count("dropped 2 row(s) (2 dropped so far)"), 1);
    assert_eq!(logs.count("more row(s) dropped in the last 5m"), 1);
    disk.heal();
    pass(Duration::from_secs(11)).await;
    assert_eq!(stat(&stats), (10, 1190, true));
    assert_eq!(
        logs.count("write queue has room again; 1190 row(s) were dropped"),
        1,
        "{}",
        logs.text()
    );
    // The rows written are the oldest ones, each once.
    drop(tx);
    rig.store.close().await.unwrap();
    let want: Vec<String> = (0..5).flat_map(|s| expected([s, s + 1000])).collect();
    assert_eq!(file_rows(&rig.dir.path().join("readings.csv")), want);
    assert_eq!(logs.count("cannot write to"), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_dead_disk_gives_up_counts_and_logs_once() {
    let rig = Rig::open(|_| {}).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    disk.faults().append = fault(libc::EIO, usize::MAX);
    for s in 0..20 {
        tx.send(vec![row(s)]);
    }
    drop(tx);
    let stats = rig.store.close().await.unwrap();
    assert_eq!(stat(&stats), (0, 20, false));
    assert_eq!(
        logs.count("gave up on 20 row(s) at shutdown"),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(
        file_rows(&rig.dir.path().join("readings.csv")),
        expected([])
    );
}

#[tokio::test(start_paused = true)]
async fn no_room_for_the_new_files_header_keeps_the_old_file_and_retries_rotation() {
    let rig = Rig::open(|o| o.max_size = Some(300)).await;
    let (logs, disk) = (&rig.logs, &rig.disk);
    let tx = rig.store.sender();
    for s in 0..4 {
        tx.send(vec![row(s)]);
    }
    pass(Duration::from_secs(1)).await;
    // The next rotation's fresh file gets no header written; rows still fit
    // into the old file until the retry.
    disk.faults().append = fault(libc::ENOSPC, 1);
    for s in 4..8 {
        tx.send(vec![row(s)]);
    }
    pass(Duration::from_secs(5)).await;
    for s in 8..12 {
        tx.send(vec![row(s)]);
    }
    drop(tx);
    rig.store.close().await.unwrap();
    let mut files = support::file_names(rig.dir.path());
    let active = files.pop().unwrap();
    assert_eq!(active, "readings.csv");
    let mut rows = Vec::new();
    for f in files.iter().chain([&active]) {
        rows.extend(file_rows(&rig.dir.path().join(f)));
    }
    assert_eq!(rows, expected(0..12), "{files:?}");
    assert_eq!(logs.count("rotation failed"), 1, "{}", logs.text());
    assert_eq!(logs.count("rotation works again"), 1, "{}", logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_loop_keeps_its_schedule_while_the_disk_is_full() {
    const LIMIT: Duration = Duration::from_secs(20);
    let server = support::TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", support::Reply::ok("20"));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(
        &config_path,
        format!(
            "interval: 100ms\ntimeout: 80ms\noutput:\n  dir: {}\n  fsync: always\n\
             groups:\n  - name: g\n    unit: celsius\n    sensors:\n      \
             - {{ id: s, url: '{}', format: text }}\n",
            dir.path().join("data").display(),
            server.url(0, "/v")
        ),
    )
    .unwrap();
    let config = edge_agent::config::Config::load(&config_path).unwrap();
    let disk = FaultyDisk::default();
    let (control, rx) = tokio::sync::mpsc::channel(4);
    let agent = tokio::spawn(edge_agent::run::run_with(
        config,
        config_path,
        rx,
        edge_agent::schedule::Clock::System,
        Arc::new(disk.clone()),
    ));
    let csv = dir.path().join("data/readings.csv");
    support::wait_rows(&csv, 2, LIMIT, |_| true).await;
    disk.faults().append = fault(libc::ENOSPC, usize::MAX);
    let full_from = SystemTime::now();
    // Backoff 100, 200, 400, 800ms: about 1.5s of a full disk.
    support::wait_until(LIMIT, "the writer to retry 5 times", || {
        disk.faults().failed.0 >= 5
    })
    .await;
    let full_until = SystemTime::now();
    let before_heal = support::rows(&csv).len();
    disk.heal();
    support::wait_rows(&csv, before_heal + 5, LIMIT, |_| true).await;
    control
        .send(edge_agent::shutdown::Control::Shutdown)
        .await
        .unwrap();
    let summary = agent.await.unwrap().unwrap();
    assert_eq!(summary.rows_dropped, 0);
    let rows = file_rows(&csv);
    assert_eq!(
        rows.len() as u64,
        summary.cycles,
        "one row per cycle, each once: {rows:#?}"
    );
    let times: Vec<SystemTime> = rows
        .iter()
        .map(|r| humantime::parse_rfc3339(&support::fields(r)[0]).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{rows:#?}");
    let polled_while_full = times
        .iter()
        .filter(|t| (full_from..full_until).contains(*t))
        .count();
    assert!(
        polled_while_full >= 3,
        "cycles went on while writes failed: {polled_while_full} rows from then"
    );
}
