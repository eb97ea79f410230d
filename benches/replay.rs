//! End-to-end benchmark of `edge-agent replay` with the real binary.
//!
//! ```text
//! cargo bench --bench replay
//! ```
//!
//! 1. Generates two recorded histories under /tmp, in the agent's exact row
//!    format (10 groups, one row per group every 5 s, 3 decimals, about 1%
//!    empty rows), rotated at 16 MiB into `readings-YYYYMMDDTHHMMSSZ.csv`
//!    plus an active `readings.csv`: 100 MiB and 1 GiB. Each in two layouts:
//!    (a) all plain; (b) the same rows with every other rotated file gzipped
//!    (`Compression::fast()`), the plain ones hard links to (a).
//! 2. Checks that replaying layout (b) of 100 MiB gives back, byte for byte,
//!    the header and every row of (a) in order.
//! 3. With the page cache warm, times `cat DIR/*.csv > /dev/null` of layout
//!    (a) and, interleaved, `replay --format csv`, `replay --format influx
//!    --since T` (T 25% into the history) and `replay` of layout (b), all
//!    `--output /dev/null`, 3 repetitions each, a cat before every replay.
//!    Ratio = median of the 9 cat times / median replay time (a throughput
//!    ratio). Every replay runs under `/usr/bin/time -f %M` for its
//!    peak RSS (or, without it, a 10 ms poll of VmHWM) and must report the
//!    expected row count and no skipped line.
//! 4. Starts VictoriaMetrics on 127.0.0.1 (a free port, temp data dir),
//!    replays 3 disjoint windows of 200,000 rows of the 100 MiB history with
//!    `--format influx --output http://127.0.0.1:PORT/write`, then counts
//!    the points back through `/api/v1/export`: every window must be there,
//!    no duplicate. Points/s = points of a window / its replay time.
//!
//! 5. Times the block encoder of line protocol alone, in this process, on
//!    one rotated file of the 1 GiB history, in the blocks of its index:
//!    ns per row, best of 15, beside a copy of the same bytes.
//!
//! With `REPLAY_BENCH_HISTORY=DIR` it only generates the 1 GiB history
//! (`DIR/1 GiB-plain`, `-mixed`, `-bare`) and keeps it, for comparing
//! binaries outside the bench. With `REPLAY_BENCH_MIB=N` (above 100) the
//! large history has N MiB instead of 1 GiB, for a quicker run; its
//! figures then carry that label (the RESULT keys keep `_1g`).
//!
//! The process exits non-zero only when the run itself failed, not when a
//! goal is missed. Children run in their own process groups and are killed
//! on every path (also on SIGINT/SIGTERM); the temp dir is removed on drop.
//! Only loopback addresses are used. Without `--bench` (e.g. under
//! `cargo test --all-targets`) it does nothing, so test runs stay fast.
//!
//! The parts, in `benches/replay/`: `generate` (the histories), `check`
//! (step 2), `harness` (running and timing, step 3), `victoria` (step 4),
//! `encoder` (step 5) and `report` (the figures, the table, the RESULT
//! line). This file only runs them in order.

// A bench's root file looks for its modules beside it, in `benches/`,
// where every `.rs` file is a bench of its own: hence the paths.
#[path = "replay/check.rs"]
mod check;
mod common;
#[path = "replay/encoder.rs"]
mod encoder;
#[path = "replay/generate.rs"]
mod generate;
#[path = "replay/harness.rs"]
mod harness;
#[path = "replay/report.rs"]
mod report;
#[path = "replay/victoria.rs"]
mod victoria;

use common::{BIN, Res, exit_code, outside_bench};
use encoder::ENCODE_REPS;
use generate::{GROUPS, MIB, SMALL_BYTES, label};
use harness::{REPS, TIME_BIN};
use victoria::{VM_BIN, VM_TICKS, VM_WINDOWS};

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by SIGINT/SIGTERM: every wait loop then kills its child and fails.
static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn main() -> ExitCode {
    if outside_bench("replay") {
        return ExitCode::SUCCESS;
    }
    exit_code("replay", on_signals_stop().and_then(|()| run_all()))
}

/// SIGINT and SIGTERM set STOP instead of ending the process, so that
/// children are killed and the temp dir removed on the way out.
fn on_signals_stop() -> Res<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, &STOP)
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    Ok(())
}

fn run_all() -> Res<()> {
    let started = Instant::now();
    let large_bytes = generate::large_bytes()?;
    if generate::keep_if_asked(large_bytes)? {
        return Ok(());
    }
    let tmp = Path::new("/tmp");
    let need = (SMALL_BYTES + large_bytes) * 2 + 512 * MIB;
    let free = harness::free_bytes(tmp)?;
    if free < need {
        return Err(format!(
            "/tmp has {:.1} GiB free; the histories need about {:.1} GiB",
            free as f64 / (1u64 << 30) as f64,
            need as f64 / (1u64 << 30) as f64
        ));
    }
    // Removed when dropped, on every return path.
    let dir = tempfile::Builder::new()
        .prefix("edge-agent-replay-bench-")
        .tempdir_in(tmp)
        .map_err(|e| format!("cannot create a temp dir in /tmp: {e}"))?;
    let work = dir.path();
    println!("edge-agent replay bench, binary {BIN}");
    println!(
        "temp dir {} ({:.1} GiB free); peak RSS via {}",
        work.display(),
        free as f64 / (1u64 << 30) as f64,
        if Path::new(TIME_BIN).exists() {
            "/usr/bin/time -f %M"
        } else {
            "a 10 ms poll of /proc/PID/status VmHWM"
        }
    );

    let small = generate::generate(work, label(SMALL_BYTES), SMALL_BYTES)?;
    let large = generate::generate(work, label(large_bytes), large_bytes)?;
    check::check_identical(work, &small)?;

    let enc = encoder::bench_encoder(&large)?;
    println!(
        "encoder alone: {} rows ({:.1} MiB) in {:.1} ms, a copy of them {:.2} ms (best of {ENCODE_REPS} each)",
        enc.rows,
        enc.bytes as f64 / MIB as f64,
        enc.encode_secs * 1e3,
        enc.copy_secs * 1e3
    );
    println!("timing (page cache warm; cat and replay interleaved, {REPS} repetitions)");
    let s = harness::bench_size(work, &small)?;
    let l = harness::bench_size(work, &large)?;

    let vm = if Path::new(VM_BIN).exists() {
        println!(
            "VictoriaMetrics: {VM_WINDOWS} windows of {} rows of the {} history",
            VM_TICKS * GROUPS,
            small.label
        );
        Some(victoria::bench_vm(work, &small)?)
    } else {
        println!(
            "VictoriaMetrics: skipped, {VM_BIN} is missing (apt-get install victoria-metrics)"
        );
        None
    };

    report::print(&s, &l, &enc, vm.as_ref(), started);
    drop(dir);
    Ok(())
}
