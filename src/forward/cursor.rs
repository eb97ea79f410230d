//! A target's cursor: how far its engine has acknowledged the files.
//!
//! Why a file of its own, saved only after an acknowledgement: a restart,
//! a crash or a power cut resumes from the last batch the engine took. The
//! batch sent after it but not acknowledged is sent again, which line
//! protocol makes harmless (the same series and time overwrite).
//!
//! The cursor names the file by its name when saved and by its first row:
//! the active file is renamed at rotation and compressed later, but its
//! first row (a time and group written once) stays, so the file is found
//! again under any of its names. Offsets count uncompressed bytes, which a
//! file keeps through compression.
//!
//! Saving is atomic: write `.NAME.tmp`, fsync, rename over the cursor,
//! fsync the directory. A crash leaves the old cursor or the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The first line of a cursor file.
const MAGIC: &str = "edge-agent-forward-cursor 1";

/// Where a target stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The file's name when saved, without `.gz`.
    pub file: String,
    /// The file's first row, as written (no newline).
    pub first: String,
    /// Bytes of the (uncompressed) file acknowledged: the next row starts here.
    pub offset: u64,
    /// The time field of the last row acknowledged.
    pub time: String,
    /// Rows acknowledged through this cursor since it was made.
    pub rows: u64,
}

/// `.PREFIX.forward.NAME` in the output directory (see
/// [`crate::history::names::forward_cursor`]).
pub fn path(dir: &Path, prefix: &str, target: &str) -> PathBuf {
    crate::history::names::forward_cursor(dir, prefix, target)
}

impl Cursor {
    /// The cursor at `path`; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Cursor>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Cursor::parse(&text)
            .map(Some)
            .ok_or_else(|| format!("{} is not a cursor this version wrote", path.display()))
    }

    fn parse(text: &str) -> Option<Cursor> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut c = Cursor::default();
        for (seen, line) in lines.enumerate() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "file" => c.file = value.to_string(),
                "first" => c.first = value.to_string(),
                "offset" => c.offset = value.parse().ok()?,
                "time" => c.time = value.to_string(),
                "rows" => c.rows = value.parse().ok()?,
                "end" => return (seen == 5 && !c.file.is_empty()).then_some(c),
                _ => return None,
            }
        }
        None
    }

    fn text(&self) -> String {
        format!(
            "{MAGIC}\nfile {}\nfirst {}\noffset {}\ntime {}\nrows {}\nend\n",
            self.file, self.first, self.offset, self.time, self.rows
        )
    }

    /// Where the cursor's file is in `files`: by its name, else by its
    /// first row (rotated and compressed since). Blocking.
    pub fn find_in(&self, files: &[super::files::DataFile]) -> Option<usize> {
        super::files::find(files, Some(&self.file), Some(&self.first), None)
    }

    /// Save atomically at `path` (see the module docs). Blocking.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        // Beside the cursor, named after it: targets never share one.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?;
            f.write_all(self.text().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("cursor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = path(&dir, "readings", "central");
        assert_eq!(Cursor::load(&p).unwrap(), None);
        let c = Cursor {
            file: "readings-20261205T080000Z.csv".into(),
            first: "2026-12-05T08:00:00.000Z,g1,1.000,1.000,1.000,celsius,1,0".into(),
            offset: 12345,
            time: "2026-12-05T08:10:00.000Z".into(),
            rows: 99,
        };
        c.save(&p).unwrap();
        assert_eq!(Cursor::load(&p).unwrap(), Some(c.clone()));
        // Torn (no `end`): refused, never half-read.
        let text = c.text();
        std::fs::write(&p, &text[..text.len() - 4]).unwrap();
        assert!(Cursor::load(&p).is_err());
        std::fs::write(&p, "garbage").unwrap();
        assert!(Cursor::load(&p).unwrap_err().contains("not a cursor"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_target_saves_through_a_temp_file_of_its_own() {
        let dir = std::env::temp_dir().join(format!("cursor-tmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Where a temp file shared by all targets would be: in the way.
        std::fs::create_dir_all(dir.join(".readings.forward.tmp")).unwrap();
        let c = Cursor {
            file: "readings.csv".into(),
            first: "2026-12-05T08:00:00.000Z,g1,1.000,1.000,1.000,celsius,1,0".into(),
            offset: 64,
            time: "2026-12-05T08:00:00.000Z".into(),
            rows: 1,
        };
        for target in ["vm", "influx"] {
            let p = path(&dir, "readings", target);
            c.save(&p).unwrap();
            assert_eq!(Cursor::load(&p).unwrap(), Some(c.clone()));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
