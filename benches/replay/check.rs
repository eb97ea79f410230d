//! The check before any timing: replays must give back exactly what was
//! recorded. Layouts (b) (gzip and plain, indexed) and (c) (no index, row
//! by row) against the bytes of layout (a); and, for a filtered influx and
//! jsonl replay, indexed against row by row. A fast replay of wrong rows
//! would otherwise pass as a good figure.

use crate::common::{Res, io_err};
use crate::generate::{GROUPS, HEADER, History, rfc3339, tick_secs};
use crate::harness::replay;

use std::fs;
use std::path::Path;

/// Replay `dir` with `args` into a file; its bytes.
fn replay_to_file(work: &Path, dir: &Path, args: &[&str], rows: u64) -> Res<Vec<u8>> {
    let out = work.join("check.out");
    let out_s = out.to_str().ok_or("temp path is not UTF-8")?;
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", out_s]);
    replay(work, dir, &all, rows)?;
    let got = fs::read(&out).map_err(io_err(&out))?;
    let _ = fs::remove_file(&out);
    Ok(got)
}

fn first_difference(what: &str, got: &[u8], want: &[u8]) -> Res<()> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{what} differ at byte {at} (got {} bytes, want {})",
        got.len(),
        want.len()
    ))
}

/// Replay layout (b) (plain and gzip files mixed, indexed) and layout (c)
/// (no index, row by row) to files and compare them with the header and
/// the rows of layout (a), in order; then the same for influx `--since`
/// and jsonl: indexed and row-by-row replays must give the same bytes.
pub fn check_identical(work: &Path, h: &History) -> Res<()> {
    let mut want = Vec::with_capacity(h.bytes as usize);
    want.extend_from_slice(HEADER);
    for f in &h.files {
        let p = h.plain.join(&f.name);
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        want.extend_from_slice(&bytes[HEADER.len()..]);
    }
    for dir in [&h.mixed, &h.bare] {
        let got = replay_to_file(work, dir, &["--format", "csv"], h.rows())?;
        first_difference(
            &format!("replay of {} and the recorded rows", dir.display()),
            &got,
            &want,
        )?;
    }
    let since_tick = h.ticks / 4 + 7;
    let since = rfc3339(tick_secs(since_tick));
    let rows = (h.ticks - since_tick) * GROUPS;
    for args in [
        &["--format", "influx", "--since", &since][..],
        &[
            "--format", "jsonl", "--group", "group-3", "--group", "group-7",
        ][..],
    ] {
        let rows = if args[1] == "jsonl" {
            h.rows() / 5
        } else {
            rows
        };
        let indexed = replay_to_file(work, &h.mixed, args, rows)?;
        let bare = replay_to_file(work, &h.bare, args, rows)?;
        first_difference(
            &format!("replay {} of layouts (b) and (c)", args.join(" ")),
            &indexed,
            &bare,
        )?;
    }
    println!(
        "{}: replays of layout (b) (indexed, gzip) and (c) (no index) are byte-identical to header + \
         rows of layout (a) ({} bytes); influx --since and jsonl --group: indexed = row by row",
        h.label,
        want.len()
    );
    Ok(())
}
