//! `edge-agent forward --status`: each target's cursor and lag, from the
//! files alone (the agent may be running or not).

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use crate::config::Config;

use super::cursor::{self, Cursor};
use super::files;

/// One target's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub name: String,
    pub url: String,
    pub cursor: Option<Cursor>,
    /// The file the cursor is in, when found.
    pub file: Option<String>,
    /// Rows in the files after the cursor.
    pub lag_rows: u64,
    /// The newest row's time in the files.
    pub newest: Option<String>,
    pub problem: Option<String>,
}

/// Every target's standing.
pub fn standings(config: &Config) -> Vec<Standing> {
    let (dir, prefix) = (&config.output.dir, &config.output.prefix);
    config
        .forward
        .iter()
        .map(|t| standing(dir, prefix, &t.name, &t.shown_url))
        .collect()
}

fn standing(dir: &Path, prefix: &str, name: &str, url: &str) -> Standing {
    let mut s = Standing {
        name: name.to_string(),
        url: url.to_string(),
        cursor: None,
        file: None,
        lag_rows: 0,
        newest: None,
        problem: None,
    };
    let files = match files::in_order(dir, prefix) {
        Ok(f) => f,
        // No run has made the output dir yet: no files, no cursor.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            s.problem = Some(format!("cannot list {}: {e}", dir.display()));
            return s;
        }
    };
    s.newest = files::newest_time(&files);
    let mut known = HashMap::new();
    match Cursor::load(&cursor::path(dir, prefix, name)) {
        Err(e) => s.problem = Some(e),
        Ok(None) => {
            s.lag_rows = files::rows_after(&files, 0, 0, &mut known);
            s.problem = Some("no cursor yet: nothing acknowledged".into());
        }
        Ok(Some(c)) => {
            match c.find_in(&files) {
                Some(i) => {
                    s.file = Some(files[i].path.display().to_string());
                    s.lag_rows = files::rows_after(&files, i, c.offset, &mut known);
                }
                None => {
                    s.problem = Some(format!(
                        "the cursor's file {} is gone: rows after {} in it were not sent",
                        c.file, c.time
                    ));
                }
            }
            s.cursor = Some(c);
        }
    }
    s
}

/// The standings as `forward --status` prints them.
pub fn render(standings: &[Standing]) -> String {
    let mut out = String::new();
    if standings.is_empty() {
        out.push_str("no forward targets in the config\n");
    }
    for s in standings {
        let _ = writeln!(out, "{} -> {}", s.name, s.url);
        match &s.cursor {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "  cursor: {} byte {} (last row sent {}, {} row(s) through this cursor)",
                    s.file.as_deref().unwrap_or(&c.file),
                    c.offset,
                    c.time,
                    c.rows
                );
            }
            None => {
                let _ = writeln!(out, "  cursor: none");
            }
        }
        let _ = writeln!(
            out,
            "  lag: {} row(s){}",
            s.lag_rows,
            match (&s.cursor, &s.newest) {
                (Some(c), Some(n)) if s.lag_rows > 0 =>
                    format!(", newest row {n}, last sent {}", c.time),
                _ => String::new(),
            }
        );
        if let Some(p) = &s.problem {
            let _ = writeln!(out, "  note: {p}");
        }
    }
    out
}
