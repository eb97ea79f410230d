//! The order in which rotated files were written: the journal
//! `.PREFIX.rotations` beside them.
//!
//! Why: a rotated file is named after its first row's time, and that time
//! comes from the wall clock. A board without a real-time clock steps its
//! clock when NTP syncs after boot; after a forward step that is later
//! corrected, the names made meanwhile lie in the future, and "the newest
//! names" are no longer the newest files: retention, keeping the N newest
//! names, would delete every freshly rotated file at once until real time
//! caught up. Modification times come from the same wrong clock, so they
//! cannot tell either. The store therefore keeps the order itself, without
//! asking any clock.
//!
//! The journal is text, one rotated file name (`PREFIX-TIME[_N].csv`) per
//! line, appended and fsynced by the store just *before* each rotation's
//! rename: a crash in between leaves a line whose file does not exist
//! (ignored), never a rotated file the journal misses. The order of writing
//! is then:
//!
//! 1. rotated files the journal does not list (written by a version without
//!    it, copied in, or the journal was lost), oldest first by name;
//! 2. then the listed ones, in the order of their lines; a name listed twice
//!    (a name used again after its file was removed) stands at its last line.
//!
//! `X.csv` and its compressed `X.csv.gz` are one file (matched on the stem).
//! Lines that are not a rotated name of this prefix (a line torn by a crash)
//! are ignored. The store rewrites the journal without the lines of removed
//! files (a temp file, fsync, rename) once it has grown well past the files
//! it lists ([`rewrite`]), so it stays a few lines per kept file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::names::{FILE_MODE, Rotated, parse_rotated};

/// The journal of `prefix`'s rotations in `dir`.
pub fn path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(journal_name(prefix))
}

/// The journal's file name: hidden, so `ls` and `tail -F` users see only
/// data files.
pub fn journal_name(prefix: &str) -> String {
    format!(".{prefix}.rotations")
}

/// Where each rotated file stands in the order of writing.
#[derive(Debug, Default, Clone)]
pub struct Order {
    /// Stem -> its last line's number.
    place: HashMap<String, usize>,
    /// Lines read, including those of files long gone.
    lines: usize,
}

impl Order {
    /// Read the journal of `prefix` in `dir`; no journal is an empty order
    /// (every file ordered by name).
    pub fn load(dir: &Path, prefix: &str) -> io::Result<Order> {
        match std::fs::read(path(dir, prefix)) {
            Ok(bytes) => Ok(Order::parse(prefix, &String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Order::default()),
            Err(e) => Err(e),
        }
    }

    /// The order a journal's text gives.
    pub fn parse(prefix: &str, text: &str) -> Order {
        let mut order = Order::default();
        for line in text.lines() {
            order.lines += 1;
            if let Some(r) = parse_rotated(prefix, line.trim_end()) {
                order.place.insert(r.stem(prefix), order.lines);
            }
        }
        order
    }

    /// Lines of the journal, those of removed files included.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The sort key of a rotated file: unlisted files first, by name, then
    /// the listed ones by their place.
    pub fn key(&self, prefix: &str, r: &Rotated) -> (Option<usize>, Rotated) {
        (self.place.get(&r.stem(prefix)).copied(), r.clone())
    }

    /// Sort `files` oldest-written first. The copies of one file (plain and
    /// compressed) end up side by side.
    pub fn sort<T>(&self, prefix: &str, files: &mut [(Rotated, T)]) {
        files.sort_by_cached_key(|(r, _)| self.key(prefix, r));
    }
}

/// Append `name` (a rotated file's name) to the journal and fsync it. A
/// journal whose last line was torn by a crash gets its newline first, so
/// the new line stays whole.
pub fn record(dir: &Path, prefix: &str, name: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path(dir, prefix))?;
    let len = file.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)?;
    }
    let mut line = String::with_capacity(name.len() + 2);
    if last[0] != b'\n' {
        line.push('\n');
    }
    line.push_str(name);
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Replace the journal by `names` (rotated file names, oldest-written
/// first): written to a temp file, fsynced, renamed over the journal, and
/// the directory fsynced. A crash leaves the old journal or the new one.
pub fn rewrite(dir: &Path, prefix: &str, names: &[String]) -> io::Result<()> {
    let target = path(dir, prefix);
    let tmp = dir.join(format!("{}.tmp", journal_name(prefix)));
    let mut text = String::new();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn rotated(secs: u64, seq: u32, gzip: bool) -> Rotated {
        Rotated {
            time: UNIX_EPOCH + Duration::from_secs(1_795_514_400 + secs),
            seq,
            gzip,
        }
    }

    fn name(r: &Rotated) -> String {
        let plain = super::super::names::rotated("r", r.time, r.seq);
        if r.gzip { format!("{plain}.gz") } else { plain }
    }

    #[test]
    fn unlisted_files_come_first_by_name_then_the_journal_order() {
        // Written: a day ahead (a wrong clock), then corrected.
        let ahead = rotated(86_400, 0, true);
        let fresh = rotated(60, 0, false);
        let fresher = rotated(120, 0, true);
        let old_b = rotated(0, 1, true);
        let old_a = rotated(0, 0, false);
        let text = format!(
            "{}\n{}\ngarbage\n{}\n",
            name(&Rotated {
                gzip: false,
                ..ahead.clone()
            }),
            name(&fresh),
            name(&Rotated {
                gzip: false,
                ..fresher.clone()
            }),
        );
        let order = Order::parse("r", &text);
        assert_eq!(order.lines(), 4);
        let mut files: Vec<(Rotated, ())> = [&fresher, &ahead, &old_b, &fresh, &old_a]
            .into_iter()
            .map(|r| (r.clone(), ()))
            .collect();
        order.sort("r", &mut files);
        let sorted: Vec<Rotated> = files.into_iter().map(|(r, _)| r).collect();
        assert_eq!(sorted, vec![old_a, old_b, ahead, fresh, fresher]);
    }

    #[test]
    fn a_name_listed_twice_stands_at_its_last_line() {
        let a = rotated(0, 0, false);
        let b = rotated(10, 0, false);
        let text = format!("{}\n{}\n{}\n", name(&a), name(&b), name(&a));
        let order = Order::parse("r", &text);
        let mut files = vec![(a.clone(), ()), (b.clone(), ())];
        order.sort("r", &mut files);
        assert_eq!(files[0].0, b);
        assert_eq!(files[1].0, a);
    }

    #[test]
    fn plain_and_compressed_copies_sit_together() {
        let a = rotated(500, 0, false);
        let b = rotated(10, 0, false);
        let text = format!("{}\n{}\n", name(&a), name(&b));
        let order = Order::parse("r", &text);
        let a_gz = Rotated {
            gzip: true,
            ..a.clone()
        };
        let mut files = vec![(b.clone(), ()), (a_gz.clone(), ()), (a.clone(), ())];
        order.sort("r", &mut files);
        let sorted: Vec<Rotated> = files.into_iter().map(|(r, _)| r).collect();
        assert_eq!(sorted, vec![a, a_gz, b]);
    }

    #[test]
    fn record_appends_whole_lines_and_rewrite_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(Order::load(d, "r").unwrap().lines(), 0, "no journal yet");
        let (a, b, c) = (
            rotated(0, 0, false),
            rotated(5, 0, false),
            rotated(9, 2, false),
        );
        record(d, "r", &name(&a)).unwrap();
        // A crash tore the next line.
        let mut f = OpenOptions::new().append(true).open(path(d, "r")).unwrap();
        f.write_all(b"r-2026112").unwrap();
        drop(f);
        record(d, "r", &name(&b)).unwrap();
        let text = std::fs::read_to_string(path(d, "r")).unwrap();
        assert_eq!(text, format!("{}\nr-2026112\n{}\n", name(&a), name(&b)));
        let order = Order::load(d, "r").unwrap();
        assert_eq!(order.lines(), 3);
        assert!(order.key("r", &a) < order.key("r", &b));
        rewrite(d, "r", &[name(&b), name(&c)]).unwrap();
        let order = Order::load(d, "r").unwrap();
        assert_eq!(order.lines(), 2);
        assert_eq!(order.key("r", &a).0, None);
        assert!(order.key("r", &b) < order.key("r", &c));
        assert!(!d.join(".r.rotations.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(d, "r"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, FILE_MODE);
    }
}
