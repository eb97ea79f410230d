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

use std::fmt;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

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

/// This process's open-file limits.
pub fn open_files() -> OpenFiles {
    let r = getrlimit(Resource::Nofile);
    OpenFiles {
        soft: Limit(r.current),
        hard: Limit(r.maximum),
    }
}

/// Raise the soft open-file limit to the hard one, saying so in the log;
/// the limits in force afterwards. A failure is logged and the agent goes
/// on: the limit it has may well be enough, and `check` says if not. EPERM
/// (a seccomp filter, see the module docs) is logged at info, any other
/// error as a warning.
pub fn raise_open_files() -> OpenFiles {
    let before = open_files();
    if before.soft == before.hard {
        tracing::debug!("open-file limit: {}", before.soft);
        return before;
    }
    let raised = Rlimit {
        current: before.hard.0,
        maximum: before.hard.0,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            let after = open_files();
            tracing::info!(
                "open-file limit raised from {} to {} (the hard limit)",
                before.soft,
                after.soft
            );
            after
        }
        Err(e) if e == rustix::io::Errno::PERM => {
            tracing::info!(
                "open-file limit stays at {} under the hard limit {}: raising it is not \
                 permitted here ({e}; a system call filter such as the systemd unit's \
                 SystemCallFilter=~@resources); set LimitNOFILE= in the unit to change it",
                before.soft,
                before.hard
            );
            before
        }
        Err(e) => {
            tracing::warn!(
                "cannot raise the open-file limit from {} to the hard limit {}: {e}",
                before.soft,
                before.hard
            );
            before
        }
    }
}
