//! Property-based fuzzing (proptest) of the four places where untrusted
//! bytes come in: config text, sensor bodies (with unit conversion), the
//! active file left by a crash, and recorded files read by replay.
//!
//! Each target states what must hold beyond "does not panic". They run a
//! bounded number of cases in `cargo test` (all together well under 30 s in
//! a debug build); for a longer local run raise the count, e.g.
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --test it fuzz::
//! ```
//!
//! A failing case is shrunk by proptest and its seed saved beside the
//! target's source file (see [`cases`]); real bugs found are also kept as
//! plain tests, in [`found`].
//!
//! This module holds what the targets share: the case counts, a runtime for
//! the async store and reader, and strategies for rows as the store writes
//! them.

mod config;
mod extract;
mod found;
mod repair;
mod replay;

use std::path::Path;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

use edge_agent::config::Unit;
use edge_agent::history::Row;
use edge_agent::store::disk::RealDisk;

/// `cases` unless `PROPTEST_CASES` asks for another count. Failing cases
/// are kept beside the test's source file, `NAME.rs` in
/// `NAME.proptest-regressions`: proptest's default would look for a
/// `proptest-regressions/` tree beside the directory holding `main.rs`.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
}

/// Run `f` to completion on this test thread's runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(Unit::Celsius),
        Just(Unit::Fahrenheit),
        Just(Unit::Kelvin)
    ]
}

/// Rows as the agent writes them: distinct times (so each line is unique),
/// group names the config allows, empty means for all-failed windows.
fn rows(max: usize) -> impl Strategy<Value = Vec<Row>> {
    let row = (
        "[a-z][a-z0-9_.-]{0,11}",
        proptest::option::weighted(0.9, -500.0f64..500.0),
        unit(),
        0u64..10_000,
        0u64..10_000,
    );
    proptest::collection::vec(row, 0..max).prop_map(|rows| {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        rows.into_iter()
            .enumerate()
            .map(|(i, (group, mean, unit, ok, failed))| Row {
                time: start + Duration::from_millis(1500 * i as u64),
                group,
                mean,
                min: mean.map(|m| m - 1.0),
                max: mean.map(|m| m + 1.0),
                unit,
                ok,
                failed,
            })
            .collect()
    })
}

/// Rows encoded by the store's own encoder.
fn encode(rows: &[Row]) -> Vec<u8> {
    block_on(edge_agent::history::row::encode(rows, 3)).unwrap()
}

/// The lines of `bytes` (each without its `\n`) and the partial rest.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    out.pop();
    out
}

fn parses(line: &[u8]) -> bool {
    std::str::from_utf8(line)
        .ok()
        .is_some_and(|l| edge_agent::history::Record::from_line(l).is_ok())
}
