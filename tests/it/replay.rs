//! `edge-agent replay` on real recorded files: byte-identical CSV across
//! rotated (plain and gzip) and active files, range and group filters, JSON
//! lines and line protocol field by field, damaged input, pacing on tokio's
//! paused clock, and an HTTP target that fails a batch and recovers.

use crate::support;
use support::edge_agent;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::config::{Compress, Fsync, Output, Unit};
use edge_agent::history::HEADER;
use edge_agent::history::Row;
use edge_agent::replay::{self, Format, Options, Sink};
use edge_agent::store::Store;

/// 2026-11-24T10:00:00Z plus `secs`.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs)
}

/// Ten minutes of rows, every 10 s, for groups `a` and `b` (`b` with an
/// empty row now and then), rotated every minute; every other rotated file
/// gzipped as the agent does with `compress: gzip`.
async fn history(dir: &Path) -> Vec<PathBuf> {
    let out = Output {
        dir: dir.to_path_buf(),
        prefix: "readings".into(),
        max_size: None,
        every: Some(Duration::from_secs(60)),
        keep: 1000,
        compress: Compress::None,
        fsync: Fsync::Rotate,
        decimals: 3,
        queue: 4096,
    };
    let store = Store::open(&out).await.unwrap();
    let tx = store.sender();
    for i in 0..60u64 {
        let v = 20.0 + (i as f64) / 8.0;
        let a = Row {
            time: at(i * 10),
            group: "a".into(),
            mean: Some(v),
            min: Some(v - 0.5),
            max: Some(v + 0.25),
            unit: Unit::Celsius,
            ok: 4,
            failed: 0,
        };
        let mut b = Row {
            group: "b".into(),
            unit: Unit::Fahrenheit,
            ..a.clone()
        };
        if i % 7 == 3 {
            (b.mean, b.min, b.max, b.ok, b.failed) = (None, None, None, 0, 4);
        }
        tx.send(vec![a, b]);
    }
    drop(tx);
    store.close().await.unwrap();
    let mut files: Vec<PathBuf> = support::file_names(dir)
        .iter()
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    let active = files.pop().unwrap();
    assert!(active.ends_with("readings.csv"));
    for (i, f) in files.iter_mut().enumerate() {
        if i % 2 == 1 {
            let data = std::fs::read(&*f).unwrap();
            let gz = PathBuf::from(format!("{}.gz", f.display()));
            let mut enc = flate2::write::GzEncoder::new(
                std::fs::File::create(&gz).unwrap(),
                flate2::Compression::fast(),
            );
            enc.write_all(&data).unwrap();
            enc.finish().unwrap();
            std::fs::remove_file(&*f).unwrap();
            *f = gz;
        }
    }
    files.push(active);
    files
}

use support::read_text as text_of;

/// All recorded data lines, in file order.
fn recorded(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            text_of(f)
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn csv_replay_is_byte_identical_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = history(dir.path()).await;
    assert!(files.len() >= 10, "{files:?}");
    assert!(files.iter().any(|f| f.extension().unwrap() == "gz"));
    let mut expected = HEADER.to_string();
    for f in &files {
        let text = text_of(f);
        assert!(text.starts_with(HEADER));
        expected.push_str(&text[HEADER.len()..]);
    }
    // Outside the data directory: inside it is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("replayed.csv");
    // A tiny chunk size crosses chunk boundaries inside rows all the time.
    let (code, _, err) = edge_agent(&[
        "replay",
        "--dir",
        dir.path().to_str().unwrap(),
        "--chunk-size",
        "100",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    assert!(
        err.contains(&format!(
            "replayed 120 row(s) from {} file(s), skipped 0 line(s)",
            files.len()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn range_and_group_filters() {
    let dir = tempfile::tempdir().unwrap();
    let files = history(dir.path()).await;
    let (code, out, err) = edge_agent(&[
        "replay",
        "--dir",
        dir.path().to_str().unwrap(),
        "--since",
        "2026-11-24T10:02:30Z",
        "--until",
        "2026-11-24T10:05:00Z",
        "--group",
        "b",
    ]);
    assert_eq!(code, 0, "{err}");
    let want: Vec<String> = recorded(&files)
        .into_iter()
        .filter(|l| {
            let t = &l[..24];
            l.split(',').nth(1) == Some("b")
                && ("2026-11-24T10:02:30.000Z".."2026-11-24T10:05:00.000Z").contains(&t)
        })
        .collect();
    assert_eq!(want.len(), 15);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got[0], HEADER.trim_end());
    assert_eq!(
        got[1..],
        want.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
}

#[tokio::test]
async fn jsonl_and_influx_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let files = history(dir.path()).await;
    let rows = recorded(&files);
    let d = dir.path().to_str().unwrap();
    let (code, json, err) = edge_agent(&["replay", "--dir", d, "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let (code, influx, err) = edge_agent(&[
        "replay",
        "--dir",
        d,
        "--format",
        "influx",
        "--measurement",
        "temp",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: Vec<&str> = json.lines().collect();
    let influx: Vec<&str> = influx.lines().collect();
    assert_eq!(json.len(), rows.len());
    assert_eq!(influx.len(), rows.len());
    for ((row, j), line) in rows.iter().zip(json).zip(influx) {
        let f: Vec<&str> = row.split(',').collect();
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        assert_eq!(v["time"], f[0]);
        assert_eq!(v["group"], f[1]);
        for (i, key) in [(2, "mean"), (3, "min"), (4, "max")] {
            if f[i].is_empty() {
                assert!(v[key].is_null(), "{j}");
            } else {
                assert_eq!(
                    v[key].as_f64().unwrap(),
                    f[i].parse::<f64>().unwrap(),
                    "{j}"
                );
            }
        }
        assert_eq!(v["unit"], f[5]);
        assert_eq!(v["ok"].as_u64().unwrap().to_string(), f[6]);
        assert_eq!(v["failed"].as_u64().unwrap().to_string(), f[7]);

        let ns = humantime::parse_rfc3339(f[0])
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut fields: Vec<String> = [(2, "mean"), (3, "min"), (4, "max")]
            .iter()
            .filter(|(i, _)| !f[*i].is_empty())
            .map(|(i, k)| format!("{k}={}", f[*i]))
            .collect();
        fields.push(format!("ok={}i", f[6]));
        fields.push(format!("failed={}i", f[7]));
        assert_eq!(
            line,
            format!(
                "temp,group={},unit={} {} {ns}",
                f[1],
                f[5],
                fields.join(",")
            )
        );
    }
}

#[tokio::test]
async fn damaged_input_is_skipped_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = |t: &str| format!("2026-11-24T10:{t}.000Z,a,1.000,1.000,1.000,celsius,1,0\n");
    // A rotated file with bad lines in the middle.
    let bad = format!(
        "{HEADER}{}2026-11-24T10:00:10.000Z,a,1.000\n{}2026-11-24T10:00:30.000Z,a,warm,1,1,celsius,1,0\nyesterday,a,1,1,1,celsius,1,0\n{}",
        good("00:00"),
        good("00:20"),
        good("00:40")
    );
    std::fs::write(d.join("readings-20261124T100000Z.csv"), bad).unwrap();
    // A gzip file cut short: rows before the damage are replayed.
    let mut body = HEADER.to_string();
    for s in 0..400 {
        body.push_str(&good(&format!("{:02}:{:02}", 1 + s / 60, s % 60)));
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    std::fs::write(
        d.join("readings-20261124T100100Z.csv.gz"),
        &gz[..gz.len() * 2 / 3],
    )
    .unwrap();
    // The active file ends in a torn line.
    std::fs::write(
        d.join("readings.csv"),
        format!("{HEADER}{}2026-11-24T10:09:", good("08:00")),
    )
    .unwrap();

    let dir_arg = d.to_str().unwrap();
    let (code, out, err) = edge_agent(&["replay", "--dir", dir_arg]);
    assert_eq!(code, 0, "{err}");
    let first = d.join("readings-20261124T100000Z.csv");
    for (line, why) in [
        (3, "3 field(s), expected 8"),
        (5, "mean `warm` is not a number"),
        (6, "time `yesterday`"),
    ] {
        let want = format!("{}:{line}: {why}", first.display());
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert!(
        err.contains("readings-20261124T100100Z.csv.gz: damaged after"),
        "{err}"
    );
    assert!(err.contains("readings.csv:3: partial last line"), "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(
        &rows[..3],
        [
            good("00:00").trim(),
            good("00:20").trim(),
            good("00:40").trim()
        ]
    );
    let from_gz = rows.len() - 4;
    assert!(
        from_gz > 50 && from_gz < 400,
        "read up to the damage: {from_gz} rows"
    );
    assert_eq!(*rows.last().unwrap(), good("08:00").trim());
    assert!(
        err.contains(&format!(
            "replayed {} row(s) from 3 file(s), skipped 5 line(s)",
            rows.len()
        )),
        "{err}"
    );

    let (code, _, err) = edge_agent(&[
        "replay",
        "--dir",
        dir_arg,
        "--strict",
        "--output",
        "/dev/null",
    ]);
    assert_eq!(code, 1, "--strict fails on skips: {err}");
}

#[tokio::test]
async fn a_range_without_files_says_so() {
    // Files there, none of the range: nothing to replay, said, exit 0 (no
    // files at all is an error: tests/it/nothing.rs).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("readings-20261124T100000Z.csv"),
        format!("{HEADER}2026-11-24T10:00:00.000Z,a,1.000,1.000,1.000,celsius,1,0\n"),
    )
    .unwrap();
    let (code, out, err) = edge_agent(&[
        "replay",
        "--dir",
        dir.path().to_str().unwrap(),
        "--until",
        "2026-11-24T09:00:00Z",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("no recorded files of `readings` in")
            && err.contains("hold rows of this range"),
        "{err}"
    );
}

/// Records when each write happens on tokio's clock.
#[derive(Clone, Default)]
struct Timed(Arc<Mutex<Vec<TimedWrite>>>);

/// When a write happened, and what it wrote.
type TimedWrite = (tokio::time::Instant, Vec<u8>);

impl tokio::io::AsyncWrite for Timed {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), buf.to_vec()));
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn speed_reproduces_the_recorded_spacing_on_a_paused_clock() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path()).await;
    let opts = Options {
        dir: dir.path().to_path_buf(),
        prefix: "readings".into(),
        since: Some(at(100)),
        until: Some(at(200)),
        groups: vec!["a".into()],
        format: Format::Csv,
        measurement: "temperature".into(),
        speed: Some(60.0),
        chunk_size: 4096,
    };
    let timed = Timed::default();
    let mut sink = Sink::Writer(Box::new(timed.clone()));
    let start = tokio::time::Instant::now();
    let summary = replay::replay(&opts, &mut sink).await.unwrap();
    assert_eq!(summary.rows, 10);
    let writes = timed.0.lock().unwrap().clone();
    assert_eq!(writes.len(), 10);
    let first = writes[0].0;
    for (k, (when, _)) in writes.iter().enumerate() {
        // Rows are 10 s apart: 1/6 s apart at 60x (the timer has 1 ms steps).
        let want = Duration::from_secs(10 * k as u64) / 60;
        let got = *when - first;
        assert!(
            got >= want && got <= want + Duration::from_millis(1),
            "row {k}: {got:?} vs {want:?}"
        );
    }
    assert!(first - start < Duration::from_millis(1));
}

/// An HTTP target that records the bodies it accepted and fails chosen requests.
struct Target {
    addr: std::net::SocketAddr,
    accepted: Arc<Mutex<Vec<String>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

async fn target(fail: &'static [usize]) -> Target {
    use http_body_util::BodyExt;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (acc, reqs) = (accepted.clone(), requests.clone());
    let addr = support::serve_status(move |req: hyper::Request<hyper::body::Incoming>| {
        let (acc, reqs) = (acc.clone(), reqs.clone());
        async move {
            let n = reqs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let chunked = req
                .headers()
                .get("transfer-encoding")
                .is_some_and(|v| v == "chunked");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if fail.contains(&n) {
                return 500;
            }
            assert!(chunked, "bodies are streamed");
            acc.lock()
                .unwrap()
                .push(String::from_utf8(body.to_vec()).unwrap());
            204
        }
    })
    .await;
    Target {
        addr,
        accepted,
        requests,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let files = history(dir.path()).await;
    // The 2nd and 3rd POSTs fail: batch 2 is sent three times, acknowledged once.
    let t = target(&[2, 3]).await;
    let url = format!("http://{}/write?db=edge", t.addr);
    let (code, _, err) = tokio::task::spawn_blocking({
        let d = dir.path().to_str().unwrap().to_string();
        move || {
            edge_agent(&[
                "replay",
                "--dir",
                &d,
                "--format",
                "influx",
                "--output",
                &url,
                "--batch-rows",
                "25",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not acknowledged (HTTP 500"), "{err}");
    assert!(
        err.contains("120 row(s) acknowledged in 5 batch(es), 2 retried"),
        "{err}"
    );
    assert_eq!(t.requests.load(std::sync::atomic::Ordering::SeqCst), 7);
    let lines: Vec<String> = t
        .accepted
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(lines.len(), recorded(&files).len(), "no gap, no duplicate");
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), lines.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_stops_the_replay_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |_req: hyper::Request<hyper::body::Incoming>| async {
                        let mut r = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from("database not found"),
                        ));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let url = format!("http://{addr}/write?db=nope");
    let d = dir.path().to_str().unwrap().to_string();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        edge_agent(&[
            "replay", "--dir", &d, "--format", "influx", "--output", &url,
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused rows 1..=120 with HTTP 404: database not found"),
        "{err}"
    );
}

/// Index `files` again in blocks of `block` bytes (the store's are about
/// 512 KiB: one block per file here), so block edges fall everywhere.
fn reindex(files: &[PathBuf], block: u64) {
    use edge_agent::history::index;
    for f in files {
        let plain = PathBuf::from(f.to_str().unwrap().trim_end_matches(".gz"));
        index::remove(&plain).unwrap();
        let gz = plain != *f;
        if gz {
            std::fs::write(&plain, text_of(f)).unwrap();
        }
        let last = !plain.ends_with("readings.csv");
        index::update_with(&plain, last, block, u64::MAX).unwrap();
        if gz {
            std::fs::remove_file(&plain).unwrap();
        }
    }
}

/// The same files without their indexes, in `to`.
fn copy_data(files: &[PathBuf], to: &Path) {
    std::fs::create_dir(to).unwrap();
    for f in files {
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[tokio::test]
async fn an_index_never_changes_what_replay_gives() {
    let dir = tempfile::tempdir().unwrap();
    let indexed = dir.path().join("indexed");
    let files = history(&indexed).await;
    reindex(&files, 333);
    let bare = dir.path().join("bare");
    copy_data(&files, &bare);
    let replay = |d: &Path, args: &[&str]| {
        let mut all = vec![
            "replay",
            "--dir",
            d.to_str().unwrap(),
            "--chunk-size",
            "100",
        ];
        all.extend(args);
        let (code, out, err) = edge_agent(&all);
        assert_eq!(code, 0, "{err}");
        let summary = err.lines().last().unwrap_or_default().to_string();
        (out, summary, err)
    };
    let (t1, t2, t3) = (
        humantime::format_rfc3339(at(125)).to_string(),
        humantime::format_rfc3339(at(400)).to_string(),
        humantime::format_rfc3339(at(333)).to_string(),
    );
    for args in [
        vec!["--format", "csv"],
        vec!["--format", "jsonl", "--group", "b"],
        vec!["--format", "influx", "--since", &t1, "--until", &t2],
        vec!["--format", "csv", "--since", &t3, "--group", "a"],
    ] {
        let (fast, fast_summary, _) = replay(&indexed, &args);
        let (slow, slow_summary, _) = replay(&bare, &args);
        assert!(!fast.is_empty());
        assert_eq!(fast, slow, "{args:?}");
        assert_eq!(fast_summary, slow_summary, "{args:?}");
    }
    // Damage to indexed files: a changed digit (still a row) and a line
    // that is no row. Both replays give the same rows and skips; the
    // indexed one says which rows no longer match their checksum.
    let plain: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().unwrap() == "csv" && !f.ends_with("readings.csv"))
        .collect();
    let (changed, broken) = (plain[0].file_name().unwrap(), plain[1].file_name().unwrap());
    for d in [&indexed, &bare] {
        let path = d.join(changed);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen(",4,0\n", ",5,0\n", 1)).unwrap();
        let path = d.join(broken);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "2026-11-24T10:00:00.000Z,a,oops";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let (fast, fast_summary, fast_err) = replay(&indexed, &["--format", "csv"]);
    let (slow, slow_summary, slow_err) = replay(&bare, &["--format", "csv"]);
    assert_eq!(fast, slow);
    assert_eq!(fast_summary, slow_summary);
    assert!(fast.contains(",5,0\n"), "the changed row is still a row");
    assert!(fast_summary.contains("skipped 1 line(s)"), "{fast_summary}");
    let skip = format!("{}:3: 3 field(s), expected 8", broken.to_str().unwrap());
    assert!(
        fast_err.contains(&skip) && slow_err.contains(&skip),
        "{fast_err}"
    );
    for name in [changed, broken] {
        let warned = format!("{}", indexed.join(name).display());
        assert!(
            fast_err
                .lines()
                .any(|l| l.contains(&warned) && l.contains("do not match their checksum")),
            "{fast_err}"
        );
    }
    assert!(!slow_err.contains("checksum"));
}
