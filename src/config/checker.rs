//! The [`Checker`]: where the rules of every part of the config put the
//! problems and warnings they find, so that all are reported at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::Problem;
use super::paths;
use super::secrets;
use super::values::{SizeText, parse_duration};

/// Collects the problems and warnings of one config as its rules run.
pub(super) struct Checker<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) env: secrets::Env<'a>,
    /// Key paths of secrets written into the config file itself (not taken
    /// from `${VAR}` or a file), for the world-readable warning.
    pub(super) literal_secrets: Vec<String>,
    /// Things that work but deserve a word at start.
    pub(super) warnings: Vec<String>,
    /// The config file's directory: relative paths are taken from it.
    pub(super) base: PathBuf,
}

impl Checker<'_> {
    pub(super) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            line: None,
            col: None,
            message: message.into(),
        });
    }

    pub(super) fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        parse_duration(text).map_err(|e| self.fail(key, e)).ok()
    }

    pub(super) fn size(&mut self, key: &str, size: &SizeText) -> Option<u64> {
        size.parse().map_err(|e| self.fail(key, e)).ok()
    }

    /// A path the config names, relative ones under the config file's
    /// directory ([`paths`]).
    pub(super) fn path(&self, written: &Path) -> PathBuf {
        paths::anchor(&self.base, written)
    }

    /// Replace each `${NAME}` in `text` by the variable's value.
    pub(super) fn expand(&mut self, key: &str, text: &str) -> Option<String> {
        secrets::expand(text, self.env)
            .map_err(|e| self.fail(key, e))
            .ok()
    }

    /// A secret as `written` at `key`: noted if typed into the file itself
    /// (for the world-readable warning), then expanded.
    pub(super) fn secret(&mut self, key: &str, written: &str) -> Option<String> {
        if secrets::is_literal(written) {
            self.literal_secrets.push(key.to_string());
        }
        self.expand(key, written)
    }
}
