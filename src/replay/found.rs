//! What a reader of the history (`replay`, `tail`) says when it was
//! pointed at nothing: a directory that is not there, one without files of
//! the prefix, a group no row has.
//!
//! Why a module of its own: an empty answer with exit 0 reads as "no rows
//! were recorded", when most often the directory, the prefix or the group
//! name is wrong. Each error names what was asked for and what is there
//! instead (the prefixes in the directory, the groups in the rows read), so
//! the fix is in the message. `tail` uses these too.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::discover::sources;
use crate::history::names;

/// Why there is nothing to read.
#[derive(Debug, thiserror::Error)]
pub enum NothingToRead {
    #[error(
        "{}: no such directory; pass --dir with the agent's `output.dir`, or --config naming \
         its configuration",
        dir.display()
    )]
    MissingDir { dir: PathBuf },
    #[error("{}: not a directory; pass --dir with the agent's `output.dir`", dir.display())]
    NotADir { dir: PathBuf },
    #[error("cannot read the directory {}: {source}", dir.display())]
    Unreadable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no recorded files of prefix `{prefix}` in {}: {}", dir.display(), Others(others))]
    NoFiles {
        dir: PathBuf,
        prefix: String,
        /// The prefixes of the history files that are there.
        others: Vec<String>,
    },
}

/// The prefixes found, or that there are none.
struct Others<'a>(&'a [String]);

impl fmt::Display for Others<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => write!(
                f,
                "it holds no history files of any prefix (PREFIX.csv, \
                 PREFIX-20261124T100000Z.csv[.gz]); is this the agent's `output.dir`?"
            ),
            [one] => write!(f, "the prefix found there is `{one}` (pass --prefix {one})"),
            many => {
                let list: Vec<String> = many.iter().map(|p| format!("`{p}`")).collect();
                write!(
                    f,
                    "the prefixes found there are {} (pass --prefix NAME)",
                    list.join(", ")
                )
            }
        }
    }
}

impl NothingToRead {
    /// How the directory looks when the agent has not written there yet:
    /// it "is not there" or "holds no history files" (of any prefix);
    /// `None` when it looks wrong instead (other prefixes' files are
    /// there, or it is not a directory).
    pub fn not_written_yet(&self) -> Option<&'static str> {
        match self {
            NothingToRead::MissingDir { .. } => Some("is not there"),
            NothingToRead::NoFiles { others, .. } if others.is_empty() => {
                Some("holds no history files")
            }
            _ => None,
        }
    }
}

/// Check that `dir` holds files of `prefix` ([`sources`] finds one at least).
pub fn files_of(dir: &Path, prefix: &str) -> Result<(), NothingToRead> {
    let owned = || dir.to_path_buf();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(NothingToRead::NotADir { dir: owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NothingToRead::MissingDir { dir: owned() });
        }
        Err(source) => {
            return Err(NothingToRead::Unreadable {
                dir: owned(),
                source,
            });
        }
    }
    let listed = sources(dir, prefix, None, None).map_err(|source| NothingToRead::Unreadable {
        dir: owned(),
        source,
    })?;
    if !listed.is_empty() {
        return Ok(());
    }
    let others = prefixes_in(dir).map_err(|source| NothingToRead::Unreadable {
        dir: owned(),
        source,
    })?;
    Err(NothingToRead::NoFiles {
        dir: owned(),
        prefix: prefix.to_string(),
        others,
    })
}

/// The prefixes of the history files in `dir`, sorted.
pub fn prefixes_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(prefix) = name.to_str().and_then(names::prefix_of) {
            found.insert(prefix.to_string());
        }
    }
    Ok(found.into_iter().collect())
}

/// Groups asked for (`--group`) that no row read has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no rows of {} in the {rows} row(s) read; {}",
    Quoted("group", unknown),
    Found(found)
)]
pub struct UnknownGroups {
    pub unknown: Vec<String>,
    /// The groups of the rows read.
    pub found: Vec<String>,
    /// Rows read (whatever their group).
    pub rows: u64,
}

/// `group `a`` or `groups `a`, `b``.
struct Quoted<'a>(&'static str, &'a [String]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.1.iter().map(|g| format!("`{g}`")).collect();
        let s = if self.1.len() == 1 { "" } else { "s" };
        write!(f, "{}{s} {}", self.0, list.join(", "))
    }
}

/// The groups found, or that there were none.
struct Found<'a>(&'a [String]);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => write!(f, "no groups were found"),
            found => write!(
                f,
                "the {} found (a group is named in agent.yaml's `groups`)",
                Quoted("group", found)
            ),
        }
    }
}

impl UnknownGroups {
    /// The groups of `asked` that `found` lacks, if any.
    pub fn check(asked: &[String], found: Vec<String>, rows: u64) -> Result<(), UnknownGroups> {
        let unknown: Vec<String> = asked
            .iter()
            .filter(|g| !found.contains(g))
            .cloned()
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(UnknownGroups {
                unknown,
                found,
                rows,
            })
        }
    }
}

/// The distinct group names of a run of rows, gathered without a lock
/// per row: rows of a block cycle through a few groups, so a short list
/// searched from its last entry is enough, merged into [`Groups`] once per
/// block.
#[derive(Debug, Default)]
pub struct Tally {
    names: Vec<Vec<u8>>,
    rows: u64,
}

impl Tally {
    pub fn note(&mut self, group: &[u8]) {
        self.rows += 1;
        if !self.names.iter().rev().any(|n| n == group) {
            self.names.push(group.to_vec());
        }
    }
}

/// The groups of every row a filter looked at, from every thread.
#[derive(Debug, Default)]
pub struct Groups {
    seen: std::sync::Mutex<(BTreeSet<String>, u64)>,
}

impl Groups {
    pub fn merge(&self, tally: Tally) {
        if tally.rows == 0 {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.1 += tally.rows;
        for name in tally.names {
            seen.0.insert(String::from_utf8_lossy(&name).into_owned());
        }
    }

    /// The groups seen, sorted, and the rows counted.
    pub fn found(&self) -> (Vec<String>, u64) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.0.iter().cloned().collect(), seen.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_prefix_names_the_ones_there() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = files_of(d, "readings").unwrap_err();
        assert_eq!(err.not_written_yet(), Some("holds no history files"));
        assert!(err.to_string().contains("holds no history files"), "{err}");
        std::fs::write(d.join("site-20261124T100000Z.csv.gz"), "").unwrap();
        std::fs::write(d.join("lab.csv"), "").unwrap();
        std::fs::write(d.join("notes.txt"), "").unwrap();
        let err = files_of(d, "readings").unwrap_err();
        assert_eq!(err.not_written_yet(), None);
        assert_eq!(
            err.to_string(),
            format!(
                "no recorded files of prefix `readings` in {}: the prefixes found there are \
                 `lab`, `site` (pass --prefix NAME)",
                d.display()
            )
        );
        assert!(files_of(d, "site").is_ok());
        let missing = d.join("nope");
        assert!(
            files_of(&missing, "site")
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{}: no such directory", missing.display()))
        );
    }

    #[test]
    fn unknown_groups_name_the_found_ones() {
        let asked = vec!["a".to_string(), "kitchn".to_string()];
        assert_eq!(
            UnknownGroups::check(&asked, vec!["a".into(), "kitchen".into()], 9)
                .unwrap_err()
                .to_string(),
            "no rows of group `kitchn` in the 9 row(s) read; the groups `a`, `kitchen` found \
             (a group is named in agent.yaml's `groups`)"
        );
        assert!(UnknownGroups::check(&asked[..1], vec!["a".into()], 1).is_ok());
        let groups = Groups::default();
        let mut t = Tally::default();
        for g in ["b", "a", "b", "a"] {
            t.note(g.as_bytes());
        }
        groups.merge(t);
        assert_eq!(groups.found(), (vec!["a".into(), "b".into()], 4));
    }
}
