//! `agent.yaml`: reading, validating and resolving the agent's configuration.
//!
//! Loading happens in three steps, each with one job:
//! 1. [`raw`]: the YAML is read into typed structs by [`yaml`]'s streaming
//!    reader, which reports every unknown key, wrong type and missing key,
//!    with its position, what the key means and what it takes.
//! 2. [`validate`]: cross-field rules, with the rules of the parts beside it
//!    ([`output`], [`sensor`], [`backoff`]), `${VAR}` and password files in
//!    [`secrets`], file-system questions in [`probe`], and selectors parsed by
//!    [`crate::extract::selector`]. It collects *every* problem rather than
//!    stopping at the first, so one `edge-agent check` shows all that is wrong.
//! 3. [`locate`]: positions for the problems of step 2, so each one reads
//!    `agent.yaml:14:9: groups[0].sensors[2].value: not a JSON pointer`.
//!
//! The result, [`Config`], holds only checked values: the rest of the agent
//! never re-validates anything.

mod backoff;
mod checker;
pub mod forward;
mod locate;
mod model;
mod nofile;
mod output;
mod paths;
mod probe;
pub mod raw;
mod secrets;
mod sensor;
mod validate;
pub mod values;
mod yaml;

use std::path::{Path, PathBuf};

pub use crate::extract::selector::{PromSelector, Selector};
pub use model::{
    Backoff, BasicAuth, Config, Forward, Fsync, Group, OnRefused, Output, Problem, Sensor, Start,
    Tls,
};
pub use model::{BodyFormat, Compress, Unit};
pub use probe::WRITE_PROBE_PREFIX;
pub use validate::MAX_LIMIT;
pub use values::{HumanSize, Secret};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let mut s = file.to_string();
            if let (Some(l), Some(c)) = (p.line, p.col) {
                s.push_str(&format!(":{l}:{c}"));
            }
            s.push_str(": ");
            if !p.key.is_empty() {
                s.push_str(&p.key);
                s.push_str(": ");
            }
            s.push_str(&p.message);
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems found, if the file was read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

impl Config {
    /// Read and validate the config at `path` (for commands that only read
    /// the recorded files: `replay`, `tail`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::resolve(&read(path)?, path, false)
    }

    /// [`Config::load`] for the agent that will run it (`run`, `check`, a
    /// reload): `output.dir` is also tried for write access, and the
    /// process's open-file limit is held against what the config may open.
    pub fn load_to_run(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::resolve(&read(path)?, path, true)?;
        // An unknown limit (no /proc) is not warned about.
        if let Ok(limits) = crate::rlimit::open_files() {
            config.warnings.extend(nofile::warning(&config, limits));
        }
        Ok(config)
    }

    /// Validate config `text`; `path` names it in messages, and relative
    /// paths in it (`output.dir`, `password_file`, `ca_file`) are taken from
    /// its directory.
    /// Nothing is created anywhere (the output dir's write access is tried
    /// by [`Config::load_to_run`] only).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::resolve(text, path, false)
    }

    fn resolve(text: &str, path: &Path, try_output_dir: bool) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let invalid = |problems| ConfigError::Invalid {
            file: file.clone(),
            problems,
        };
        let read = raw::read(text);
        let env = |name: &str| std::env::var(name).ok();
        let shape = read.problems;
        let judged = read.judged;
        if !read.readable {
            return Err(invalid(shape));
        }
        let mut problems = match validate::resolve(read.config, path, &env, try_output_dir) {
            Ok(config) if shape.is_empty() => return Ok(config),
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        // A key the reader already reported on (missing, wrong type) holds a
        // placeholder that validation may complain about again.
        problems.retain(|p| !judged.iter().any(|j| within(&p.key, j)));
        if !problems.is_empty() {
            // Built only for errors: with 10,000 sensors the index is large.
            let locations = locate::Locations::index(text);
            for p in &mut problems {
                if let Some(pos) = locations.find(&p.key) {
                    p.line = Some(pos.line);
                    p.col = Some(pos.col);
                }
            }
        }
        // One list in the order of the file.
        problems.extend(shape);
        problems.sort_by_key(|p| (p.line.unwrap_or(0), p.col.unwrap_or(0)));
        Err(invalid(problems))
    }

    /// Log [`Config::warnings`], at start and at each reload.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }

    /// All sensors, with the group each belongs to.
    pub fn sensors(&self) -> impl Iterator<Item = (usize, &Sensor)> {
        self.groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| group.sensors.iter().map(move |s| (g, s)))
    }
}

/// Whether `key` is `judged` or lies inside it (`output.dir` in `output`).
fn within(key: &str, judged: &str) -> bool {
    key.strip_prefix(judged).is_some_and(|rest| {
        rest.is_empty() || !judged.is_empty() && (rest.starts_with('.') || rest.starts_with('['))
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}
