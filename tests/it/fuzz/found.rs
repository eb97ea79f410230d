//! The cases the targets found, kept as plain tests.

use super::*;
use edge_agent::history::HEADER;
use edge_agent::replay::{FileReader, Next};
use edge_agent::store::ActiveFile;

const ROW: &str = "2023-11-14T22:13:20.000Z,g,21.000,20.000,22.000,celsius,3,0\n";

/// open() used to cut the partial last line of a file that is not ours
/// before noticing it is not ours.
#[test]
fn foreign_file_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["\na", "name,age\nbob,4", "no newline at all"] {
        let path = dir.path().join("readings.csv");
        std::fs::write(&path, text).unwrap();
        assert!(
            block_on(ActiveFile::open(&RealDisk, &path)).is_err(),
            "{text:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

/// Complete lines of garbage after the last row (a crash that left
/// stale bytes with newlines in them) used to stay, and new rows went
/// after them.
#[test]
fn garbage_lines_after_the_last_row_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.csv");
    let good = format!("{HEADER}{ROW}");
    std::fs::write(
        &path,
        format!("{good}2023-11-14T22:1\u{0}\u{0}\nxx,\n\u{0}"),
    )
    .unwrap();
    let mut active = block_on(ActiveFile::open(&RealDisk, &path)).unwrap();
    assert_eq!(active.size(), good.len() as u64);
    block_on(active.append(ROW.as_bytes())).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{good}{ROW}")
    );
}

/// A header cut short and followed by more than 512 zero bytes is a
/// torn header, not someone else's file (a guard for the check of the
/// header that now comes before any cut).
#[test]
fn torn_header_with_many_zeros_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.csv");
    let mut bytes = HEADER.as_bytes()[..9].to_vec();
    bytes.extend(vec![0u8; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let active = block_on(ActiveFile::open(&RealDisk, &path)).unwrap();
    assert!(!active.has_rows());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
}

/// A stray `"` used to open a quoted field that swallowed every later
/// line; now it costs its own line only.
#[test]
fn stray_quote_costs_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let damaged = ROW.replacen("21.000", "\"1.000", 1);
    let last = ROW.replacen("22:13:20", "22:13:30", 1);
    std::fs::write(&path, format!("{HEADER}{ROW}{damaged}{last}")).unwrap();
    let (rows, skips) = block_on(async {
        let mut reader = FileReader::open(&path, false, 4096).await.unwrap();
        let (mut rows, mut skips) = (Vec::new(), Vec::new());
        while let Some(next) = reader.next().await {
            match next {
                Next::Row(r) => rows.push(r.field(0).to_string()),
                Next::Skip(s) => skips.push(s.line),
                Next::Block(_) | Next::Written(_) => unreachable!("a reader without an index"),
            }
        }
        (rows, skips)
    });
    assert_eq!(
        rows,
        ["2023-11-14T22:13:20.000Z", "2023-11-14T22:13:30.000Z"]
    );
    assert_eq!(skips, [Some(3)]);
}
