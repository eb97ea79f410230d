//! The figures and what the bench prints at the end: the series a history
//! size's timed rounds fill and their medians, the goals, the Markdown
//! table and the one `RESULT key=value ...` line that scripts compare
//! across runs.

use crate::common::{median, mib, print_table, verdict};
use crate::encoder::{ENCODE_REPS, EncoderResult};
use crate::generate::{FILE_BYTES, GROUPS, MIB, STEP_S};
use crate::victoria::VmResult;

use std::time::Instant;

const GOAL_CSV_RATIO: f64 = 0.8;
const GOAL_INFLUX_RATIO: f64 = 0.3;
const GOAL_RSS_MIB: f64 = 16.0;

fn spread(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

pub fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Timings of one kind of replay.
#[derive(Default)]
pub struct Series {
    pub secs: Vec<f64>,
    pub rss_kib: Vec<u64>,
    pub files: u64,
}

impl Series {
    fn secs(&self) -> f64 {
        median(&self.secs)
    }
    /// Throughput ratio to `cat` of the whole history: cat time / replay time.
    fn ratio(&self, cat_secs: f64) -> f64 {
        cat_secs / self.secs()
    }
    fn rss_mib(&self) -> f64 {
        mib(self.rss_kib.iter().copied().max().unwrap_or(0))
    }
}

/// Results for one history size.
pub struct SizeResult {
    pub label: String,
    pub bytes: u64,
    pub since_bytes: u64,
    pub since_rows: u64,
    pub since: String,
    pub csv: Series,
    pub influx: Series,
    pub mixed: Series,
    /// The same replays of layout (c): row by row, no index.
    pub bare_csv: Series,
    pub bare_influx: Series,
    /// Every cat run of this size (one before each replay run).
    pub cat_all: Vec<f64>,
}

impl SizeResult {
    fn cat_secs(&self) -> f64 {
        median(&self.cat_all)
    }
}

fn row(figure: String, value: String, goal: &str, result: String) -> [String; 4] {
    [figure, value, goal.to_string(), result]
}

fn size_rows(s: &SizeResult, table: &mut Vec<[String; 4]>) {
    let l = &s.label;
    let cat = s.cat_secs();
    let (clo, chi) = spread(&s.cat_all);
    table.push(row(
        format!("{l}: cat of layout (a), {} runs", s.cat_all.len()),
        format!(
            "{:.0} MB/s ({cat:.3} s) [{clo:.3} – {chi:.3} s]",
            mbps(s.bytes, cat)
        ),
        "-",
        "-".into(),
    ));
    let csv = s.csv.ratio(cat);
    table.push(row(
        format!("{l}: replay --format csv / cat"),
        format!(
            "{csv:.3} ({:.0} MB/s, {:.2} s)",
            mbps(s.bytes, s.csv.secs()),
            s.csv.secs()
        ),
        ">= 0.8",
        verdict(csv >= GOAL_CSV_RATIO).into(),
    ));
    let inf = s.influx.ratio(cat);
    table.push(row(
        format!("{l}: replay --format influx --since (25%) / cat"),
        format!("{inf:.3} ({:.2} s, {} rows)", s.influx.secs(), s.since_rows),
        ">= 0.3",
        verdict(inf >= GOAL_INFLUX_RATIO).into(),
    ));
    let per_byte = mbps(s.since_bytes, s.influx.secs()) / mbps(s.bytes, cat);
    table.push(row(
        format!("{l}: same, per byte of the files it opens"),
        format!(
            "{per_byte:.3} ({:.0} MB/s of {:.0} MiB)",
            mbps(s.since_bytes, s.influx.secs()),
            s.since_bytes as f64 / MIB as f64
        ),
        "-",
        "-".into(),
    ));
    table.push(row(
        format!("{l}: replay --format csv, layout (b) with gzip"),
        format!(
            "{:.0} MB/s of rows ({:.2} s), ratio {:.3}",
            mbps(s.bytes, s.mixed.secs()),
            s.mixed.secs(),
            s.mixed.ratio(cat)
        ),
        "-",
        "-".into(),
    ));
    for (what, series) in [("csv", &s.bare_csv), ("influx --since", &s.bare_influx)] {
        table.push(row(
            format!("{l}: replay --format {what}, layout (c) without indexes / cat"),
            format!(
                "{:.3} ({:.0} MB/s, {:.2} s)",
                series.ratio(cat),
                mbps(s.bytes, series.secs()),
                series.secs()
            ),
            "-",
            "-".into(),
        ));
    }
    for (what, series) in [
        ("csv", &s.csv),
        ("influx --since", &s.influx),
        ("csv, gzip layout", &s.mixed),
        ("csv, no index", &s.bare_csv),
        ("influx --since, no index", &s.bare_influx),
    ] {
        let r = series.rss_mib();
        table.push(row(
            format!(
                "{l}: peak RSS, replay {what} (max of {})",
                series.rss_kib.len()
            ),
            format!("{r:.1} MiB"),
            "<= 16 MiB",
            verdict(r <= GOAL_RSS_MIB).into(),
        ));
    }
}

/// Everything after the timed runs: what the histories were, the table of
/// figures and goals (the large history first), and the RESULT line.
/// `started`: when the bench began, for the elapsed time.
pub fn print(
    s: &SizeResult,
    l: &SizeResult,
    enc: &EncoderResult,
    vm: Option<&VmResult>,
    started: Instant,
) {
    println!();
    println!(
        "history: {} groups, a row per group every {STEP_S} s, files rotated at {} MiB; influx --since is \
         {} ({}) / {} ({})",
        GROUPS,
        FILE_BYTES / MIB,
        s.since,
        s.label,
        l.since,
        l.label
    );
    println!(
        "files replayed: {} csv {} files, influx --since {} files, gzip layout {} files",
        l.label, l.csv.files, l.influx.files, l.mixed.files
    );
    let mut table = Vec::new();
    size_rows(l, &mut table);
    size_rows(s, &mut table);
    table.push(row(
        format!(
            "influx block encoder alone: ns per row (one file, {} rows, best of {ENCODE_REPS})",
            enc.rows
        ),
        format!(
            "{:.1} ns ({:.0} MB/s of rows; a copy of the same bytes {:.0}x faster)",
            enc.ns_per_row(),
            mbps(enc.bytes, enc.encode_secs),
            enc.encode_secs / enc.copy_secs
        ),
        "-",
        "-".into(),
    ));
    if let Some(v) = vm {
        let (lo, hi) = spread(&v.pps);
        table.push(row(
            format!(
                "points/s into VictoriaMetrics ({} rows = {} points per run, {} runs)",
                v.rows_per_window,
                v.points_per_window,
                v.pps.len()
            ),
            format!("{:.0} [{lo:.0} – {hi:.0}]", median(&v.pps)),
            "-",
            "-".into(),
        ));
        table.push(row(
            "points counted back via /api/v1/export".into(),
            format!(
                "{} of {} ({} batches, {} retried)",
                v.counted, v.expected, v.batches, v.retries
            ),
            "all, no duplicate",
            verdict(v.counted == v.expected).into(),
        ));
    }
    print_table(&["figure", "value", "goal", "result"], &table);
    println!();
    let pps = vm.map_or(f64::NAN, |v| median(&v.pps));
    println!(
        "RESULT cat_mbps_1g={:.0} csv_ratio_1g={:.4} influx_ratio_1g={:.4} influx_ratio_per_byte_1g={:.4} \
         csv_mbps_1g={:.1} influx_s_1g={:.2} gz_mbps_1g={:.1} rss_csv_1g={:.2} rss_influx_1g={:.2} \
         rss_gz_1g={:.2} cat_mbps_100m={:.0} csv_ratio_100m={:.4} influx_ratio_100m={:.4} csv_mbps_100m={:.1} \
         gz_mbps_100m={:.1} rss_csv_100m={:.2} rss_influx_100m={:.2} rss_gz_100m={:.2} vm_pps={pps:.0} \
         bare_csv_ratio_1g={:.4} bare_influx_ratio_1g={:.4} rss_bare_1g={:.2} encode_ns_per_row={:.2} elapsed_s={:.0}",
        mbps(l.bytes, l.cat_secs()),
        l.csv.ratio(l.cat_secs()),
        l.influx.ratio(l.cat_secs()),
        mbps(l.since_bytes, l.influx.secs()) / mbps(l.bytes, l.cat_secs()),
        mbps(l.bytes, l.csv.secs()),
        l.influx.secs(),
        mbps(l.bytes, l.mixed.secs()),
        l.csv.rss_mib(),
        l.influx.rss_mib(),
        l.mixed.rss_mib(),
        mbps(s.bytes, s.cat_secs()),
        s.csv.ratio(s.cat_secs()),
        s.influx.ratio(s.cat_secs()),
        mbps(s.bytes, s.csv.secs()),
        mbps(s.bytes, s.mixed.secs()),
        s.csv.rss_mib(),
        s.influx.rss_mib(),
        s.mixed.rss_mib(),
        l.bare_csv.ratio(l.cat_secs()),
        l.bare_influx.ratio(l.cat_secs()),
        l.bare_csv.rss_mib().max(l.bare_influx.rss_mib()),
        enc.ns_per_row(),
        started.elapsed().as_secs_f64()
    );
}
