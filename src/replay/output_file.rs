//! `replay --output PATH`: a file that can neither overwrite what is being
//! replayed nor leave half a file under the name asked for.
//!
//! Why each rule:
//! - A path inside the data directory is refused (both resolved, symlinks
//!   included): written there it could truncate the active file the replay
//!   is reading, or replace a rotated `.gz` with plain CSV, and the agent
//!   and every later replay would read it as history.
//! - An existing regular file is refused unless `--force` (replace it) or
//!   `--append` (add to it; a CSV replay adds no second header, and a file
//!   that starts with anything but the replay's CSV header is refused for a
//!   CSV append, as a CSV file is for a line append). A device or a FIFO
//!   (`/dev/null`, a named pipe) is written as it is: nothing in it can be
//!   lost.
//! - The rows go to a temporary file beside the target (`.NAME.PID.partial`,
//!   the existing file copied into it first for `--append`), which is
//!   fsynced and renamed over the target only when the replay is complete
//!   ([`OutputFile::commit`]). Dropped without a commit (an error, SIGINT,
//!   SIGTERM), it removes its temporary file: the target is as it was.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::format::Format;
use super::sink::{FileWriter, Sink};

/// What to do with an existing regular file at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it (the default).
    Refuse,
    /// Replace it (`--force`).
    Replace,
    /// Add the rows after its own (`--append`).
    Append,
}

/// Why `--output PATH` cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputFileError {
    #[error(
        "--output {}: inside the data directory being replayed ({}); write the replay \
         outside it, where it cannot replace the files it reads",
        path.display(),
        dir.display()
    )]
    InsideData { path: PathBuf, dir: PathBuf },
    #[error(
        "--output {}: the file exists; pass --force to replace it or --append to add the \
         rows after its own",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "--output {} --append: its first line is `{first}`, not the header of a CSV replay \
         (`{}`); append to a file a CSV replay wrote, or pass --force to replace it",
        path.display(),
        super::format::Format::Csv.header().unwrap_or_default().trim_end()
    )]
    OtherHeader { path: PathBuf, first: String },
    #[error(
        "--output {} --append: it holds CSV rows, and --format {format:?} writes other lines; \
         append to a file of that format, or pass --force to replace it",
        path.display()
    )]
    CsvFile { path: PathBuf, format: Format },
    #[error("--output {}: a directory; name a file", path.display())]
    Directory { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot finish {} (the replay is in {}): {source}", path.display(), temp.display())]
    Commit {
        path: PathBuf,
        temp: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file `replay --output PATH` writes, until it is committed.
#[derive(Debug)]
pub struct OutputFile {
    /// Where the rows end up (the symlink's target, when the path is one).
    target: PathBuf,
    /// Written until the commit; `None` for a device or FIFO written as it is.
    temp: Option<PathBuf>,
    /// The open file, for the writer (a clone) and the fsync.
    file: File,
    /// Whether the format's header goes first (not when appending to a
    /// file that has it).
    header: bool,
}

impl OutputFile {
    /// Check `path` against the rules (see the module's documentation) and
    /// open the temporary file the rows go to.
    pub fn create(
        path: &Path,
        data_dir: &Path,
        existing: Existing,
        format: Format,
    ) -> Result<OutputFile, OutputFileError> {
        let create = |source| OutputFileError::Create {
            path: path.to_path_buf(),
            source,
        };
        let resolved = resolve(path).map_err(create)?;
        if let Ok(dir) = data_dir.canonicalize() {
            if resolved.starts_with(&dir) {
                return Err(OutputFileError::InsideData {
                    path: path.to_path_buf(),
                    dir,
                });
            }
        }
        let meta = match std::fs::metadata(&resolved) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(create(e)),
        };
        let mut header = true;
        match &meta {
            Some(m) if m.is_dir() => {
                return Err(OutputFileError::Directory {
                    path: path.to_path_buf(),
                });
            }
            // A device or a FIFO: written as it is.
            Some(m) if !m.is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&resolved)
                    .map_err(create)?;
                return Ok(OutputFile {
                    target: resolved,
                    temp: None,
                    file,
                    header,
                });
            }
            Some(_) if existing == Existing::Refuse => {
                return Err(OutputFileError::Exists {
                    path: path.to_path_buf(),
                });
            }
            Some(m) if existing == Existing::Append && m.len() > 0 => {
                header = appendable(path, &resolved, format)?;
            }
            _ => {}
        }
        let (temp, file) = temp_beside(&resolved).map_err(create)?;
        let mut out = OutputFile {
            target: resolved,
            temp: Some(temp),
            file,
            header,
        };
        if existing == Existing::Append && meta.is_some() {
            // The temporary file starts as a copy (std::fs::copy keeps the
            // mode, and uses copy_file_range where it can).
            let temp = out.temp.clone().unwrap_or_default();
            std::fs::copy(&out.target, &temp).map_err(create)?;
            out.file = OpenOptions::new()
                .append(true)
                .open(&temp)
                .map_err(create)?;
        }
        Ok(out)
    }

    /// A sink writing to this file.
    pub fn sink(&self) -> Result<Sink, OutputFileError> {
        let file = self
            .file
            .try_clone()
            .map_err(|source| OutputFileError::Create {
                path: self.target.clone(),
                source,
            })?;
        let writer = FileWriter::new(Box::new(file));
        Ok(Sink::File(if self.header {
            writer
        } else {
            writer.without_header()
        }))
    }

    /// The temporary file the rows go to until the commit.
    pub fn temp(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// The replay is complete (its sink finished): fsync the file, rename
    /// it over the target and fsync the directory, so the target holds
    /// either what it held before or the whole replay, even after a crash.
    pub fn commit(mut self) -> Result<PathBuf, OutputFileError> {
        let Some(temp) = self.temp.clone() else {
            return Ok(self.target.clone());
        };
        let fail = |source| OutputFileError::Commit {
            path: self.target.clone(),
            temp: temp.clone(),
            source,
        };
        self.file.sync_all().map_err(fail)?;
        std::fs::rename(&temp, &self.target).map_err(fail)?;
        self.temp = None;
        if let Some(dir) = self.target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| OutputFileError::Commit {
                    path: self.target.clone(),
                    temp: temp.clone(),
                    source,
                })?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for OutputFile {
    /// Not committed: the temporary file goes, the target stays as it was.
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            if let Err(e) = std::fs::remove_file(&temp) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove {}: {e}", temp.display());
                }
            }
        }
    }
}

/// `path` with every symlink resolved: the path itself when it exists,
/// else its directory's resolved path and its name.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    match path.canonicalize() {
        Ok(p) => return Ok(p),
        // A dangling symlink is not a path to create.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound || path.is_symlink() => {
            return Err(e);
        }
        Err(_) => {}
    }
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(dir.canonicalize()?.join(name))
}

/// Whether the file at `resolved` (named `path`) takes the rows of
/// `format` after its own: `Ok(false)` when it already has the CSV header
/// (none is written again), `Ok(true)` when the header should go first.
fn appendable(path: &Path, resolved: &Path, format: Format) -> Result<bool, OutputFileError> {
    let create = |source| OutputFileError::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut first = Vec::new();
    File::open(resolved)
        .map_err(create)?
        .take(4096)
        .read_to_end(&mut first)
        .map_err(create)?;
    let header = Format::Csv.header().unwrap_or_default();
    let has_header = first.starts_with(header.as_bytes());
    match format {
        Format::Csv if has_header => Ok(false),
        Format::Csv => {
            let line = first.split(|b| *b == b'\n').next().unwrap_or_default();
            Err(OutputFileError::OtherHeader {
                path: path.to_path_buf(),
                first: String::from_utf8_lossy(line).chars().take(80).collect(),
            })
        }
        _ if has_header => Err(OutputFileError::CsvFile {
            path: path.to_path_buf(),
            format,
        }),
        _ => Ok(true),
    }
}

/// A new file beside `target`: `.NAME.PID.partial` (`.NAME.PID-N.partial`
/// if that is taken).
fn temp_beside(target: &Path) -> std::io::Result<(PathBuf, File)> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    let mut n = 0;
    loop {
        let temp = match n {
            0 => dir.join(format!(".{name}.{pid}.partial")),
            n => dir.join(format!(".{name}.{pid}-{n}.partial")),
        };
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn dropped_without_commit_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        std::fs::write(&target, "old").unwrap();
        let out = OutputFile::create(&target, data.path(), Existing::Replace, Format::Csv).unwrap();
        let temp = out.temp().unwrap().to_path_buf();
        assert!(temp.is_file());
        drop(out);
        assert_eq!(names(dir.path()), ["out.csv"]);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        let out = OutputFile::create(&target, data.path(), Existing::Replace, Format::Csv).unwrap();
        std::fs::write(out.temp().unwrap(), "new").unwrap();
        out.commit().unwrap();
        assert_eq!(names(dir.path()), ["out.csv"]);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    }

    #[test]
    fn a_device_is_written_as_it_is() {
        let data = tempfile::tempdir().unwrap();
        let out = OutputFile::create(
            Path::new("/dev/null"),
            data.path(),
            Existing::Refuse,
            Format::Csv,
        )
        .unwrap();
        assert_eq!(out.temp(), None);
        assert_eq!(out.commit().unwrap(), Path::new("/dev/null"));
    }
}
