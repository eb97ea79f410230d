//! The process's open-file limit (`RLIMIT_NOFILE`).
//!
//! Every connection to a sensor is an open file. Most Linux sessions and
//! systemd's default for services start a process with a soft limit of
//! 1024 under a much higher hard limit, and a `limit` past the soft one
//! failed at run time with "Too many open files" on the connections past
//! it. Any process may raise its own soft limit up to the hard one, so
//! `run` does at start; `check` warns when the config may need more than
//! the limit (see `config`'s count).
//!
//! Under the systemd unit the raise is not needed and may not be allowed.
//! `LimitNOFILE=65536` sets soft and hard alike, so there is nothing to
//! raise. The unit's `SystemCallFilter=~@resources` denies the `setrlimit`
//! system call with EPERM (`SystemCallErrorNumber=EPERM`); the raise goes
//! through `prlimit64` (as glibc's `getrlimit` does), which systemd has
//! kept in `@default`, not `@resources`, since 2017 (v235), so it passes
//! that filter, but a stricter filter (a drop-in's `SystemCallFilter=`, a
//! container runtime's profile) may deny it. A denied raise is no error:
//! the limit the service manager set stands, it is logged at info, and
//! `check` (which ExecStartPre runs under the same limits) has already
//! warned if the config may need more.
//!
//! The limits are read from `/proc/self/limits`, not with `getrlimit`: a
//! filter may deny `prlimit64` outright (reading included), and rustix's
//! `getrlimit` takes that call to be infallible (it panics in a debug
//! build). The file can fail to be read, and then the limit is unknown:
//! nothing is raised and nothing warned about, which is what the agent did
//! before it looked at the limit at all.

use std::fmt;
use std::io;

use rustix::process::{Resource, Rlimit, setrlimit};

/// One open-file limit; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

impl Limit {
    /// Whether `n` open files fit under this limit.
    pub fn fits(self, n: u64) -> bool {
        self.0.is_none_or(|limit| n <= limit)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("unlimited"),
        }
    }
}

/// The soft limit (what is enforced) and the hard one (how far the soft
/// limit may be raised without privileges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: Limit,
    pub hard: Limit,
}

/// This process's open-file limits, from `/proc/self/limits`.
pub fn open_files() -> io::Result<OpenFiles> {
    parse_limits(&std::fs::read_to_string("/proc/self/limits")?)
}

/// The open-file limits in the text of a `/proc/PID/limits`:
/// `Max open files            1024                 524288               files`.
fn parse_limits(text: &str) -> io::Result<OpenFiles> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| invalid("no `Max open files` line in /proc/self/limits".into()))?;
    let mut fields = line.split_whitespace();
    let mut limit = || match fields.next() {
        Some("unlimited") => Ok(Limit(None)),
        Some(n) => n
            .parse()
            .map(|n| Limit(Some(n)))
            .map_err(|_| invalid(format!("`{n}` is not a limit in /proc/self/limits"))),
        None => Err(invalid(
            "a short `Max open files` line in /proc/self/limits".into(),
        )),
    };
    Ok(OpenFiles {
        soft: limit()?,
        hard: limit()?,
    })
}

/// Raise the soft open-file limit to the hard one, saying so in the log;
/// the limits in force afterwards. A failure is logged and the agent goes
/// on: the limit it has may well be enough, and `check` says if not. EPERM
/// (a seccomp filter, see the module docs) is logged at info, any other
/// error as a warning. `None` if the limits cannot be read.
pub fn raise_open_files() -> Option<OpenFiles> {
    let before = match open_files() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::info!("open-file limit unknown, left as it is: {e}");
            return None;
        }
    };
    if before.soft == before.hard {
        tracing::debug!("open-file limit: {}", before.soft);
        return Some(before);
    }
    let raised = Rlimit {
        current: before.hard.0,
        maximum: before.hard.0,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            let after = open_files().unwrap_or(OpenFiles {
                soft: before.hard,
                hard: before.hard,
            });
            tracing::info!(
                "open-file limit raised from {} to {} (the hard limit)",
                before.soft,
                after.soft
            );
            Some(after)
        }
        Err(e) if e == rustix::io::Errno::PERM => {
            tracing::info!(
                "open-file limit stays at {} under the hard limit {}: raising it is not \
                 permitted here ({e}; a system call filter, such as a SystemCallFilter= \
                 that denies prlimit64); set LimitNOFILE= in the unit to change it",
                before.soft,
                before.hard
            );
            Some(before)
        }
        Err(e) => {
            tracing::warn!(
                "cannot raise the open-file limit from {} to the hard limit {}: {e}",
                before.soft,
                before.hard
            );
            Some(before)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_file_line_of_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63439                63439                processes \n\
                    Max open files            1024                 524288               files     \n\
                    Max locked memory         8388608              8388608              bytes     \n";
        let limits = parse_limits(text).unwrap();
        assert_eq!(limits.soft, Limit(Some(1024)));
        assert_eq!(limits.hard, Limit(Some(524288)));
        let unlimited = parse_limits("Max open files  unlimited  unlimited  files\n").unwrap();
        assert_eq!(unlimited.hard, Limit(None));
        for bad in [
            "",
            "Max open files 1024\n",
            "Max open files lots 2048 files\n",
        ] {
            let e = parse_limits(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        // This process's own, as the kernel gives them.
        let own = open_files().unwrap();
        assert!(own.soft.0.is_none_or(|s| own.hard.fits(s)), "{own:?}");
    }
}
