//! Rotated files: compression in the background, retention, and clean-up of
//! work a crash interrupted.
//!
//! Compression writes `X.csv.gz.tmp`, fsyncs it, renames it to `X.csv.gz`
//! and only then removes `X.csv`. Whatever moment a crash picks, one complete
//! copy of the rows exists; [`recover`] finishes or restarts the job.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::history::index;
use crate::history::names::{self, Rotated, parse_rotated};

/// Rotated files of `prefix` in `dir`, oldest first: (name info, path).
pub fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<(Rotated, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(r) = parse_rotated(prefix, name) {
            found.push((r, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Finish what a crash interrupted: drop half-written `.gz.tmp` files, indexes
/// whose file is gone, write
/// probes of a killed start (see `config::WRITE_PROBE_PREFIX`) and plain
/// copies whose `.gz` is complete. Returns the plain rotated files that
/// still want compressing (when `gzip` is on).
pub fn recover(dir: &Path, prefix: &str, gzip: bool) -> std::io::Result<Vec<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(crate::config::WRITE_PROBE_PREFIX) {
            tracing::info!(
                "removing {}, left by a start that was killed",
                entry.path().display()
            );
            std::fs::remove_file(entry.path())?;
            continue;
        }
        // An index whose file is gone (removed by hand, or a crash between
        // a rotation's two renames).
        if let Some(data) = index::data_name(name) {
            let ours = names::parse_active(prefix, data).is_some()
                || parse_rotated(prefix, data).is_some();
            let plain = dir.join(data);
            let gz = dir.join(format!("{data}.gz"));
            if ours && !plain.exists() && !gz.exists() {
                tracing::info!("removing {}: its file is gone", entry.path().display());
                std::fs::remove_file(entry.path())?;
            }
            continue;
        }
        if let Some(base) = name.strip_suffix(".gz.tmp") {
            if parse_rotated(prefix, base).is_some() {
                tracing::info!("removing unfinished compression {}", entry.path().display());
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    let files = list(dir, prefix)?;
    let stems: BTreeMap<String, Vec<&(Rotated, PathBuf)>> =
        files.iter().fold(BTreeMap::new(), |mut m, f| {
            m.entry(f.0.stem(prefix)).or_insert_with(Vec::new).push(f);
            m
        });
    let mut pending = Vec::new();
    for copies in stems.values() {
        let has_gz = copies.iter().any(|(r, _)| r.gzip);
        for (r, path) in copies {
            if !r.gzip && has_gz {
                tracing::info!(
                    "removing {}: its compressed copy is complete",
                    path.display()
                );
                std::fs::remove_file(path)?;
            } else if !r.gzip && gzip {
                pending.push(path.clone());
            }
        }
    }
    Ok(pending)
}

/// Remove the oldest rotated files so at most `keep` remain. A file counts
/// once whether it is plain, compressed, or (mid-compression) both.
pub fn retain(dir: &Path, prefix: &str, keep: usize) -> std::io::Result<usize> {
    let files = list(dir, prefix)?;
    let mut stems: Vec<String> = files.iter().map(|(r, _)| r.stem(prefix)).collect();
    stems.dedup();
    let excess = stems.len().saturating_sub(keep);
    if excess == 0 {
        return Ok(0);
    }
    let doomed = &stems[..excess];
    for (r, path) in &files {
        if doomed.contains(&r.stem(prefix)) {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!("retention: removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            index::remove(path)?;
        }
    }
    Ok(excess)
}

/// Compress `path` (a rotated `.csv`) to `path.gz`, then remove `path`.
/// Blocking: run it on the blocking pool.
pub fn gzip(path: &Path) -> std::io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let done = PathBuf::from(&gz_name);
    gz_name.push(".tmp");
    let tmp = PathBuf::from(gz_name);
    let result = (|| {
        let mut src = match std::fs::File::open(path) {
            Ok(f) => f,
            // Retention got there first: nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::history::names::FILE_MODE)
            .open(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(out),
            flate2::Compression::default(),
        );
        std::io::copy(&mut src, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &done)?;
        std::fs::remove_file(path)?;
        Ok(true)
    })();
    match result {
        Ok(true) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Make renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
