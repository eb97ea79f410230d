//! The store on real files in temp dirs: rotation by size and by time,
//! retention, gzip, torn-line repair, foreign files and crash leftovers.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::config::{Compress, Unit};
use edge_agent::history::Row;
use edge_agent::history::{HEADER, names};
use edge_agent::store::{Store, StoreError};

/// 2026-11-24T10:00:00Z plus `secs`.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs)
}

fn row(t: SystemTime, group: &str, v: f64) -> Row {
    Row {
        time: t,
        group: group.into(),
        mean: Some(v),
        min: Some(v - 1.0),
        max: Some(v + 1.0),
        unit: Unit::Celsius,
        ok: 3,
        failed: 0,
    }
}

/// Every file in `dir`, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = support::file_names(dir)
        .iter()
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

use support::output;
use support::read_text as read;

/// All rows of the rotated files (oldest first) then the active file,
/// checking each file starts with the header.
fn all_rows(dir: &Path) -> Vec<String> {
    let mut rotated: Vec<PathBuf> = files(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "readings.csv")
        .collect();
    rotated.push(dir.join("readings.csv"));
    let mut rows = Vec::new();
    for f in rotated {
        let text = read(&f);
        assert!(
            text.starts_with(HEADER),
            "{} starts with {:?}",
            f.display(),
            &text[..text.len().min(60)]
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", f.display());
        rows.extend(text.lines().skip(1).map(str::to_string));
    }
    rows
}

#[tokio::test]
async fn rows_are_written_whole_in_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&output(dir.path())).await.unwrap();
    let tx = store.sender();
    let mut empty = row(at(5), "cold", 0.0);
    (empty.mean, empty.min, empty.max, empty.ok, empty.failed) = (None, None, None, 0, 2);
    tx.send(vec![row(at(0), "greenhouse", 21.23456), empty]);
    drop(tx);
    let stats = store.close().await.unwrap();
    assert_eq!(
        stats
            .rows_written
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let text = std::fs::read_to_string(dir.path().join("readings.csv")).unwrap();
    assert_eq!(
        text,
        "time,group,mean,min,max,unit,ok,failed\n\
         2026-11-24T10:00:00.000Z,greenhouse,21.235,20.235,22.235,celsius,3,0\n\
         2026-11-24T10:00:05.000Z,cold,,,,celsius,0,2\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("readings.csv"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
}

#[tokio::test]
async fn rotates_by_size_without_losing_or_splitting_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = output(dir.path());
    out.max_size = Some(1024);
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    let mut sent = 0;
    for i in 0..200u64 {
        tx.send(vec![
            row(at(i * 5), "a", i as f64),
            row(at(i * 5), "b", i as f64),
        ]);
        sent += 2;
    }
    drop(tx);
    store.close().await.unwrap();
    let names: Vec<PathBuf> = files(dir.path());
    assert!(names.len() > 10, "expected many rotations, got {names:?}");
    for f in &names {
        assert!(
            std::fs::metadata(f).unwrap().len() <= 1024,
            "{} is over max_size",
            f.display()
        );
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "readings.csv" || names::parse_rotated("readings", name).is_some(),
            "{name}"
        );
    }
    let rows = all_rows(dir.path());
    assert_eq!(rows.len(), sent);
    // In order, nothing repeated: row k belongs to batch k / 2.
    for (k, r) in rows.iter().enumerate() {
        let t = humantime::format_rfc3339_millis(at((k as u64 / 2) * 5)).to_string();
        assert!(r.starts_with(&t), "row {k}: {r}");
    }
    // A rotated file is named after its first row.
    let second = &names[1];
    let first_row = read(second)
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let parsed =
        names::parse_rotated("readings", second.file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!(
        humantime::format_rfc3339_millis(parsed.time).to_string(),
        first_row
    );
}

#[tokio::test]
async fn rotates_on_utc_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = output(dir.path());
    out.every = Some(Duration::from_secs(3600));
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    // 10:00 to 12:59 every 15 minutes: three hours, three files.
    for i in 0..12u64 {
        tx.send(vec![row(at(i * 900), "a", 1.0)]);
    }
    drop(tx);
    store.close().await.unwrap();
    let found = support::file_names(dir.path());
    assert_eq!(
        found,
        vec![
            "readings-20261124T100000Z.csv",
            "readings-20261124T110000Z.csv",
            "readings.csv"
        ]
    );
    assert_eq!(
        support::rows(&dir.path().join("readings-20261124T100000Z.csv")).len(),
        4
    );
    assert_eq!(all_rows(dir.path()).len(), 12);
}

#[tokio::test]
async fn retention_keeps_the_newest_and_gzip_compresses_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = output(dir.path());
    out.every = Some(Duration::from_secs(60));
    out.keep = 3;
    out.compress = Compress::Gzip;
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    for i in 0..10u64 {
        tx.send(vec![
            row(at(i * 60), "a", i as f64),
            row(at(i * 60 + 30), "a", i as f64),
        ]);
    }
    drop(tx);
    store.close().await.unwrap();
    let found = support::file_names(dir.path());
    assert_eq!(
        found,
        vec![
            "readings-20261124T100600Z.csv.gz",
            "readings-20261124T100700Z.csv.gz",
            "readings-20261124T100800Z.csv.gz",
            "readings.csv"
        ]
    );
    let rows = all_rows(dir.path());
    assert_eq!(
        rows.len(),
        8,
        "the 3 kept files and the active one, 2 rows each"
    );
    assert!(rows[0].starts_with("2026-11-24T10:06:00.000Z,a,6.000"));
}

#[tokio::test]
async fn torn_last_line_is_cut_back_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.csv");
    let good = "2026-11-24T10:00:00.000Z,a,1.000,1.000,1.000,celsius,1,0\n";
    std::fs::write(
        &path,
        format!("{HEADER}{good}2026-11-24T10:00:05.000Z,a,2.0"),
    )
    .unwrap();
    let store = Store::open(&output(dir.path())).await.unwrap();
    let tx = store.sender();
    tx.send(vec![row(at(10), "a", 3.0)]);
    drop(tx);
    store.close().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!("{HEADER}{good}2026-11-24T10:00:10.000Z,a,3.000,2.000,4.000,celsius,3,0\n")
    );
}

#[tokio::test]
async fn empty_or_torn_header_files_get_a_header() {
    for content in ["", "time,gro"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readings.csv");
        std::fs::write(&path, content).unwrap();
        Store::open(&output(dir.path()))
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            HEADER,
            "from {content:?}"
        );
    }
}

#[tokio::test]
async fn a_file_that_is_not_ours_is_never_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.csv");
    let foreign = "date;temperature\n2026-01-01;20\n";
    std::fs::write(&path, foreign).unwrap();
    // Not ours: the store writes beside it, under the alternate name.
    let store = Store::open(&output(dir.path())).await.unwrap();
    let tx = store.sender();
    tx.send(vec![row(at(0), "a", 1.0)]);
    drop(tx);
    store.close().await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
    assert_eq!(
        support::rows(&dir.path().join("readings+1.csv")),
        vec!["2026-11-24T10:00:00.000Z,a,1.000,0.000,2.000,celsius,3,0"]
    );
    // The file itself is still refused, with what it starts with.
    let err = match edge_agent::store::ActiveFile::open(&edge_agent::store::disk::RealDisk, &path)
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("must refuse a foreign file"),
    };
    assert!(matches!(err, StoreError::ForeignFile { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("readings.csv") && msg.contains("date;temperature"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
}

#[tokio::test]
async fn crash_leftovers_of_compression_and_write_probes_are_cleaned_up_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body = format!("{HEADER}2026-11-24T10:00:00.000Z,a,1.000,1.000,1.000,celsius,1,0\n");
    // Crash mid-compression: a partial .gz.tmp beside the plain file.
    std::fs::write(d.join("readings-20261124T100000Z.csv"), &body).unwrap();
    std::fs::write(
        d.join("readings-20261124T100000Z.csv.gz.tmp"),
        b"\x1f\x8b partial",
    )
    .unwrap();
    // Crash after the rename, before removing the plain copy.
    std::fs::write(d.join("readings-20261124T110000Z.csv"), &body).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
    std::fs::write(
        d.join("readings-20261124T110000Z.csv.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();

    // A start killed while trying the dir for write access.
    let probe = format!("{}4242-17", edge_agent::config::WRITE_PROBE_PREFIX);
    std::fs::write(d.join(&probe), b"").unwrap();

    let mut out = output(d);
    out.compress = Compress::Gzip;
    Store::open(&out).await.unwrap().close().await.unwrap();
    assert!(!d.join(&probe).exists(), "the probe is removed");
    let found = support::file_names(d);
    assert_eq!(
        found,
        vec![
            "readings-20261124T100000Z.csv.gz",
            "readings-20261124T110000Z.csv.gz",
            "readings.csv"
        ]
    );
    assert_eq!(read(&d.join("readings-20261124T100000Z.csv.gz")), body);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = output(dir.path());
    out.queue = 1;
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    // Sent from within one task without yielding: the writer cannot drain in between.
    for i in 0..50u64 {
        tx.send(vec![row(at(i), "a", 1.0)]);
    }
    let dropped = tx
        .stats()
        .rows_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(tx);
    let stats = store.close().await.unwrap();
    let written = stats
        .rows_written
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0);
    assert_eq!(
        written + dropped,
        50,
        "every row is either written or counted as dropped"
    );
    assert_eq!(all_rows(dir.path()).len() as u64, written);
}

#[tokio::test]
async fn new_settings_apply_to_the_same_files_after_queued_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&output(dir.path())).await.unwrap();
    let tx = store.sender();
    tx.send(vec![row(at(0), "a", 1.0)]);
    let mut out = output(dir.path());
    out.every = Some(Duration::from_secs(60));
    out.decimals = 1;
    store.reconfigure(&out).await;
    tx.send(vec![row(at(30), "a", 2.0)]);
    tx.send(vec![row(at(60), "a", 3.0)]);
    drop(tx);
    store.close().await.unwrap();
    assert_eq!(
        support::rows(&dir.path().join("readings-20261124T100000Z.csv")),
        vec![
            "2026-11-24T10:00:00.000Z,a,1.000,0.000,2.000,celsius,3,0",
            "2026-11-24T10:00:30.000Z,a,2.0,1.0,3.0,celsius,3,0"
        ]
    );
    assert_eq!(
        support::rows(&dir.path().join("readings.csv")),
        vec!["2026-11-24T10:01:00.000Z,a,3.0,2.0,4.0,celsius,3,0"]
    );
}

/// Each file's checksum index, as replay finds it: blocks that match the
/// file's bytes, covering a rotated file to its end.
fn check_index(file: &Path) -> edge_agent::history::index::Index {
    let ix = edge_agent::history::index::Index::load(file)
        .unwrap_or_else(|| panic!("no index for {}", file.display()));
    let bytes = read(file).into_bytes();
    for e in &ix.entries {
        let block = &bytes[e.offset as usize..(e.offset + e.len) as usize];
        let mut crc = flate2::Crc::new();
        crc.update(block);
        assert_eq!(crc.sum(), e.crc, "{}: {e:?}", file.display());
        assert_eq!(block.iter().filter(|b| **b == b'\n').count() as u64, e.rows);
    }
    ix
}

#[tokio::test]
async fn every_file_gets_an_index_that_follows_it_through_rotation_gzip_and_retention() {
    use edge_agent::history::index;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An index whose file is gone (removed by hand) is cleaned up at start.
    let orphan = d.join(".readings-20200101T000000Z.csv.idx");
    std::fs::write(&orphan, "edge-agent-index 1\n").unwrap();
    let mut out = output(d);
    out.max_size = Some(2_000_000);
    out.keep = 2;
    out.compress = Compress::Gzip;
    let store = Store::open(&out).await.unwrap();
    assert!(!orphan.exists());
    let tx = store.sender();
    // About 4.5 MB of rows: several blocks per file, three rotations.
    for batch in 0..70u64 {
        let rows = (0..1000)
            .map(|i| batch * 1000 + i)
            .map(|i| row(at(i), "greenhouse", 20.0 + (i % 1000) as f64 / 7.0))
            .collect();
        tx.send(rows);
        // Pacing, not waiting for anything: batches arrive over time, as
        // from the poll loop, not all queued at once.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    store.close().await.unwrap();
    let names = support::all_names(d);
    let data: Vec<&String> = names
        .iter()
        .filter(|n| index::data_name(n).is_none())
        .collect();
    let rotated: Vec<&&String> = data.iter().filter(|n| n.ends_with(".csv.gz")).collect();
    assert_eq!(rotated.len(), 2, "{names:?}");
    // Rotated and compressed: the index still covers every byte of the rows.
    for name in &rotated {
        let file = d.join(name);
        let ix = check_index(&file);
        assert_eq!(ix.covered_end(), read(&file).len() as u64, "{name}");
        assert!(ix.entries.len() >= 3, "{name}: {} blocks", ix.entries.len());
    }
    // Retention removed the oldest file's index with it.
    let indexes: Vec<&String> = names
        .iter()
        .filter(|n| index::data_name(n).is_some())
        .collect();
    assert_eq!(indexes.len(), 3, "{names:?}");
    // The active file: whole blocks so far, kept across a restart.
    let active = d.join("readings.csv");
    let before = check_index(&active);
    assert!(before.covered_end() <= read(&active).len() as u64);
    assert!(!before.entries.is_empty());
    let store = Store::open(&out).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(check_index(&active), before);
}

#[tokio::test]
async fn an_index_that_no_longer_fits_the_active_file_is_rebuilt_at_start() {
    use edge_agent::history::index;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = output(d);
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    for batch in 0..20u64 {
        tx.send(
            (0..1000)
                .map(|i| row(at(batch * 1000 + i), "g", i as f64))
                .collect(),
        );
        // Pacing, as above: batches over time, not all queued at once.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    store.close().await.unwrap();
    let active = d.join("readings.csv");
    let old = check_index(&active);
    // Another file now has the active name (a crash between a rotation's
    // renames leaves the previous file's index behind).
    let mut text = HEADER.to_string();
    for i in 0..12_000u64 {
        let r = edge_agent::history::Record::from_line(&format!(
            "{},h,1.000,1.000,1.000,celsius,1,0",
            humantime::format_rfc3339_millis(at(100_000 + i))
        ))
        .unwrap();
        text.push_str(&format!(
            "{}\n",
            (0..8).map(|f| r.field(f)).collect::<Vec<_>>().join(",")
        ));
    }
    std::fs::write(&active, &text).unwrap();
    let store = Store::open(&out).await.unwrap();
    store.close().await.unwrap();
    let new = check_index(&active);
    assert_ne!(new.entries[0].crc, old.entries[0].crc);
    assert_eq!(new.entries[0].offset, HEADER.len() as u64);
    assert_eq!(index::path_for(&active), d.join(".readings.csv.idx"));
}
