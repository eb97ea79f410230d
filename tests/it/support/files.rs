//! The files the tests write and the store leaves: configs and certificates
//! written into a temp dir, and the CSV files read back (rows, fields, `.gz`
//! decompressed, the data files of a dir apart from their indexes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::wait::eventually;

/// Write `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Data lines (not the header) of a CSV file, or none if it does not exist.
pub fn rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().skip(1).map(str::to_string).collect()
}

/// Wait until `path` holds at least `n` rows matching `filter`.
pub async fn wait_rows(
    path: &Path,
    n: usize,
    limit: Duration,
    filter: impl Fn(&str) -> bool,
) -> Vec<String> {
    let matching = || -> Vec<String> { rows(path).into_iter().filter(|r| filter(r)).collect() };
    if !eventually(limit, || matching().len() >= n).await {
        panic!(
            "only {} of {n} rows in {} after {limit:?}",
            matching().len(),
            path.display()
        );
    }
    matching()
}

/// One CSV row split into its fields.
pub fn fields(row: &str) -> Vec<String> {
    row.split(',').map(str::to_string).collect()
}

/// The text of a data file, decompressing `.gz`.
pub fn read_text(path: &Path) -> String {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// The names of the files in `dir`, sorted, indexes (`.NAME.idx`) too.
pub fn all_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The names of the data files in `dir`, sorted: all but the hidden
/// files (the indexes `.NAME.idx`, the lock file `.edge-agent.lock`, the
/// order journal `.PREFIX.rotations`).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names = all_names(dir);
    names.retain(|n| !n.starts_with('.'));
    names
}

/// The order journal of rotations (`.PREFIX.rotations`), or its temp file.
pub fn is_journal(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".rotations") || name.ends_with(".rotations.tmp"))
}
