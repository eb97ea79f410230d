//! The recorded histories the bench replays, written as the agent writes
//! them: rows in its exact format, files rotated by its naming rule, their
//! indexes made by the store's own code, in three layouts (plain, every
//! other rotated file gzipped, without indexes). The history's clock (a
//! tick's time, the `--since` text) lives here too, since the checks and
//! the windows of the other parts pick rows by tick.
//!
//! Also `REPLAY_BENCH_MIB` (the large history's size) and
//! `REPLAY_BENCH_HISTORY` (generate it and keep it), both read here so
//! that every size rule stays beside the generator.

use crate::common::{Res, io_err};
use crate::stopped;
use edge_agent::history::{index, names};

/// The prefix of the generated files.
const PREFIX: &str = "readings";

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

pub const MIB: u64 = 1 << 20;
pub const SMALL_BYTES: u64 = 100 * MIB;
pub const LARGE_BYTES: u64 = 1024 * MIB;
/// A rotated file is closed at the first tick boundary past this size.
pub const FILE_BYTES: u64 = 16 * MIB;
pub const GROUPS: u64 = 10;
pub const STEP_S: u64 = 5;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;
/// `replay`'s slack before `--since` when picking files by name (discover.rs).
const SLACK_S: u64 = 3600;

/// The large history's size: 1 GiB, or `REPLAY_BENCH_MIB` MiB (above the
/// small history's 100) for a quicker run.
pub fn large_bytes() -> Res<u64> {
    let Some(v) = std::env::var_os("REPLAY_BENCH_MIB") else {
        return Ok(LARGE_BYTES);
    };
    v.to_str()
        .and_then(|s| s.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(MIB))
        .filter(|bytes| *bytes > SMALL_BYTES)
        .ok_or_else(|| {
            format!(
                "REPLAY_BENCH_MIB must be a whole number of MiB above {}, got {v:?}",
                SMALL_BYTES / MIB
            )
        })
}

/// How a history of `bytes` is named in the output: `100 MiB`, `1 GiB`.
pub fn label(bytes: u64) -> String {
    let gib = 1024 * MIB;
    if bytes % gib == 0 {
        format!("{} GiB", bytes / gib)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// With `REPLAY_BENCH_HISTORY=DIR`, for comparisons outside the bench (see
/// BENCHMARKS.md): the large history alone, generated into DIR, which is
/// kept. False when it was not asked for.
pub fn keep_if_asked(large_bytes: u64) -> Res<bool> {
    let Some(keep) = std::env::var_os("REPLAY_BENCH_HISTORY") else {
        return Ok(false);
    };
    let keep = PathBuf::from(keep);
    fs::create_dir_all(&keep).map_err(io_err(&keep))?;
    generate(&keep, label(large_bytes), large_bytes)?;
    println!("kept in {}", keep.display());
    Ok(true)
}

// ------------------------------------------------------------------ clock

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `2026-01-01T00:00:05Z` (`--since`/`--until`).
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d) = civil(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

pub fn tick_secs(tick: u64) -> u64 {
    T0 + tick * STEP_S
}

// ------------------------------------------------------------------- rows

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A row without values: no sensor of the group answered.
fn is_gap(tick: u64, group: u64) -> bool {
    (tick + group) % 97 == 0
}

/// Points a row gives in line protocol: mean, min, max, ok, failed.
pub fn points_of(tick: u64, group: u64) -> u64 {
    if is_gap(tick, group) { 2 } else { 5 }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Thousandths as `21.346`.
fn push_milli(out: &mut Vec<u8>, v: u64) {
    push_u64(out, v / 1000);
    let f = v % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (f / 100) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ]);
}

/// The 10 rows of one tick, as the agent writes them.
fn push_tick(out: &mut Vec<u8>, tick: u64) {
    let mut time = rfc3339(tick_secs(tick)).into_bytes();
    time.pop(); // `Z`
    time.extend_from_slice(b".000Z,");
    for g in 0..GROUPS {
        out.extend_from_slice(&time);
        out.extend_from_slice(b"group-");
        push_u64(out, g);
        out.push(b',');
        let x = mix(tick * 16 + g);
        if is_gap(tick, g) {
            out.extend_from_slice(b",,,celsius,0,25\n");
            continue;
        }
        let mean = 15_000 + g * 1000 + x % 8000;
        push_milli(out, mean);
        out.push(b',');
        push_milli(out, mean - (x >> 16) % 2000);
        out.push(b',');
        push_milli(out, mean + (x >> 32) % 2000);
        out.extend_from_slice(b",celsius,");
        let failed = (x >> 48) % 3;
        push_u64(out, 25 - failed);
        out.push(b',');
        push_u64(out, failed);
        out.push(b'\n');
    }
}

// ------------------------------------------------------------------ files

/// The header of every data file: the agent's own.
pub const HEADER: &[u8] = edge_agent::history::HEADER.as_bytes();

/// One recorded file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Name in layout (a).
    pub name: String,
    pub first_tick: u64,
    pub bytes: u64,
    /// False for the active `readings.csv`.
    pub rotated: bool,
}

/// A generated history in its two layouts.
pub struct History {
    pub label: String,
    pub plain: PathBuf,
    pub mixed: PathBuf,
    /// Layout (c): the files of (a) without their indexes, as an older
    /// version of the agent left them.
    pub bare: PathBuf,
    pub files: Vec<FileInfo>,
    pub ticks: u64,
    pub bytes: u64,
    /// Bytes on disk of layout (b).
    pub mixed_bytes: u64,
    pub gzipped: usize,
}

impl History {
    pub fn rows(&self) -> u64 {
        self.ticks * GROUPS
    }

    /// Bytes of the files `replay --since` opens (same rule as discover.rs).
    pub fn bytes_from(&self, since_tick: u64) -> u64 {
        let rotated: Vec<&FileInfo> = self.files.iter().filter(|f| f.rotated).collect();
        let mut bytes = 0;
        for (i, f) in rotated.iter().enumerate() {
            let keep = rotated
                .get(i + 1)
                .is_none_or(|next| tick_secs(next.first_tick) + SLACK_S > tick_secs(since_tick));
            if keep {
                bytes += f.bytes;
            }
        }
        bytes
            + self
                .files
                .iter()
                .filter(|f| !f.rotated)
                .map(|f| f.bytes)
                .sum::<u64>()
    }
}

/// Write `target` bytes (or a little more: whole ticks) of history into
/// `root/LABEL-plain`, then build `root/LABEL-mixed`.
pub fn generate(root: &Path, label: String, target: u64) -> Res<History> {
    let started = Instant::now();
    let plain = root.join(format!("{label}-plain"));
    let mixed = root.join(format!("{label}-mixed"));
    let bare = root.join(format!("{label}-bare"));
    for d in [&plain, &mixed, &bare] {
        fs::create_dir(d).map_err(io_err(d))?;
    }
    let current = plain.join("current.tmp");
    let mut files: Vec<FileInfo> = Vec::new();
    let mut total = 0u64;
    let mut tick = 0u64;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let first_tick = tick;
        let file = fs::File::create(&current).map_err(io_err(&current))?;
        let mut w = BufWriter::with_capacity(MIB as usize, file);
        w.write_all(HEADER).map_err(io_err(&current))?;
        let mut bytes = HEADER.len() as u64;
        let mut last = false;
        while bytes < FILE_BYTES {
            buf.clear();
            push_tick(&mut buf, tick);
            w.write_all(&buf).map_err(io_err(&current))?;
            bytes += buf.len() as u64;
            tick += 1;
            if total + bytes >= target {
                last = true;
                break;
            }
        }
        w.flush().map_err(io_err(&current))?;
        drop(w);
        total += bytes;
        // The agent's own names: the active file, and rotated files named
        // after their first row.
        let name = if last {
            names::active_name(PREFIX)
        } else {
            let first =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(tick_secs(first_tick));
            names::rotated(PREFIX, first, 0)
        };
        let path = plain.join(&name);
        fs::rename(&current, &path).map_err(io_err(&path))?;
        files.push(FileInfo {
            name,
            first_tick,
            bytes,
            rotated: !last,
        });
        if last {
            break;
        }
        if stopped() {
            return Err("interrupted".into());
        }
    }
    // Layout (c): the data files alone.
    for f in &files {
        link(&plain.join(&f.name), &bare.join(&f.name))?;
    }
    // Indexes, as the store leaves them: complete for rotated files, whole
    // blocks for the active one; made by the store's own code.
    let indexing = Instant::now();
    let all: Vec<&FileInfo> = files.iter().collect();
    on_two_threads("index", &all, |f| {
        let p = plain.join(&f.name);
        index::update(&p, f.rotated).map(|_| ()).map_err(io_err(&p))
    })?;
    let indexing = indexing.elapsed().as_secs_f64();
    // Layout (b): every other rotated file gzipped, the rest hard links;
    // the indexes of all.
    for f in &files {
        let from = index::path_for(&plain.join(&f.name));
        let to = index::path_for(&mixed.join(&f.name));
        if from.exists() {
            link(&from, &to)?;
        }
    }
    let mut to_gzip: Vec<&FileInfo> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.rotated && i % 2 == 1 {
            to_gzip.push(f);
        } else {
            link(&plain.join(&f.name), &mixed.join(&f.name))?;
        }
    }
    on_two_threads("gzip", &to_gzip, |f| {
        gzip_file(&plain.join(&f.name), &mixed.join(format!("{}.gz", f.name)))
    })?;
    let mut mixed_bytes = 0;
    for e in fs::read_dir(&mixed).map_err(io_err(&mixed))? {
        let e = e.map_err(io_err(&mixed))?;
        mixed_bytes += e.metadata().map_err(io_err(&e.path()))?.len();
    }
    let h = History {
        label,
        plain,
        mixed,
        bare,
        ticks: tick,
        bytes: total,
        mixed_bytes,
        gzipped: to_gzip.len(),
        files,
    };
    println!(
        "{}: {} rows, {} files ({} rotated + active), {:.1} MiB plain; layout (b): {} gzipped, \
         {:.1} MiB on disk; {} .. {}; generated in {:.1} s, of which indexing {indexing:.1} s (2 threads)",
        h.label,
        h.rows(),
        h.files.len(),
        h.files.len() - 1,
        h.bytes as f64 / MIB as f64,
        h.gzipped,
        h.mixed_bytes as f64 / MIB as f64,
        rfc3339(tick_secs(0)),
        rfc3339(tick_secs(h.ticks - 1)),
        started.elapsed().as_secs_f64()
    );
    Ok(h)
}

/// `work` for each of `items`, on two threads (every other item each);
/// the first error, or "interrupted" after SIGINT/SIGTERM.
fn on_two_threads<T: Sync>(
    what: &str,
    items: &[T],
    work: impl Fn(&T) -> Res<()> + Sync,
) -> Res<()> {
    let results: Vec<Res<()>> = thread::scope(|s| {
        let handles: Vec<_> = [0, 1]
            .map(|half| {
                let work = &work;
                s.spawn(move || -> Res<()> {
                    for item in items.iter().skip(half).step_by(2) {
                        work(item)?;
                        if stopped() {
                            return Err("interrupted".into());
                        }
                    }
                    Ok(())
                })
            })
            .into_iter()
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("{what} thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// A hard link (a copy where links do not work).
fn link(from: &Path, to: &Path) -> Res<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(io_err(to))?;
    }
    Ok(())
}

fn gzip_file(from: &Path, to: &Path) -> Res<()> {
    let src = fs::File::open(from).map_err(io_err(from))?;
    let dst = fs::File::create(to).map_err(io_err(to))?;
    let mut enc = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(MIB as usize, dst),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut BufReader::with_capacity(MIB as usize, src), &mut enc)
        .map_err(io_err(to))?;
    let mut w = enc.finish().map_err(io_err(to))?;
    w.flush().map_err(io_err(to))
}
