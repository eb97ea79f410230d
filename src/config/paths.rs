//! One rule for the relative paths a config names (`output.dir`,
//! `basic_auth.password_file`, `tls.ca_file`): they are taken from the
//! directory of the config file, never from the working directory.
//!
//! The working directory depends on how the agent was started: the unit's
//! `WorkingDirectory=`, a shell somewhere else, `check` run from a home
//! directory. A path taken from it would name other files for `run`, `check`,
//! `tail` and `replay`; the config file's directory is the same for all of
//! them. The result is absolute, so `check` shows where the files are and a
//! reload of the same file names the same files.

use std::path::{Component, Path, PathBuf};

/// The absolute directory of the config file at `config` (the working
/// directory for a bare file name), as named: symlinks are not followed.
pub(super) fn config_dir(config: &Path) -> PathBuf {
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Fails only without a working directory (it was removed); the
    // directory as written is then the best there is.
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// `path` as the config means it: an absolute one as it is, a relative one
/// under `base` (the config file's directory), without `./` in between.
pub(super) fn anchor(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.as_os_str().is_empty() {
        return path.to_path_buf();
    }
    let mut anchored = base.to_path_buf();
    anchored.extend(path.components().filter(|c| *c != Component::CurDir));
    anchored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let base = Path::new("/etc/edge-agent");
        assert_eq!(
            anchor(base, Path::new("./data")),
            Path::new("/etc/edge-agent/data")
        );
        assert_eq!(
            anchor(base, Path::new("certs/ca.pem")),
            Path::new("/etc/edge-agent/certs/ca.pem")
        );
        assert_eq!(
            anchor(base, Path::new("../lib/x")),
            Path::new("/etc/edge-agent/../lib/x")
        );
        assert_eq!(
            anchor(base, Path::new("/var/lib/x")),
            Path::new("/var/lib/x")
        );
        assert_eq!(anchor(base, Path::new("")), Path::new(""));
    }

    #[test]
    fn the_config_dir_is_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config_dir(Path::new("agent.yaml")), cwd);
        assert_eq!(config_dir(Path::new("./agent.yaml")), cwd);
        assert_eq!(config_dir(Path::new("conf/agent.yaml")), cwd.join("conf"));
        assert_eq!(
            config_dir(Path::new("/etc/edge-agent/agent.yaml")),
            Path::new("/etc/edge-agent")
        );
    }
}
