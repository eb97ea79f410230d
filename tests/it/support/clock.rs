//! A wall clock the tests can step under the real binary: libfaketime
//! preloaded, its offset read from a file the test rewrites (`+0`, `+1d`,
//! `-30`), so the agent's wall clock jumps as when NTP steps it, while
//! monotonic time (tokio's timers) runs on undisturbed.

use std::path::{Path, PathBuf};

use super::Agent;

/// Where Debian's `libfaketime` package puts the library.
const LIBRARIES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The offset file of one test's agents.
pub struct FakeClock {
    library: &'static str,
    file: PathBuf,
}

impl FakeClock {
    /// A clock at real time (`+0`) with its offset file in `dir`; `None`,
    /// with the reason printed, when libfaketime is not installed (CI
    /// installs it, so there the tests run).
    pub fn new(dir: &Path) -> Option<FakeClock> {
        let Some(library) = LIBRARIES.into_iter().find(|l| Path::new(l).exists()) else {
            eprintln!(
                "skipped: libfaketime is not installed (apt install faketime); looked for {LIBRARIES:?}"
            );
            return None;
        };
        let clock = FakeClock {
            library,
            file: dir.join("faketime.rc"),
        };
        clock.set("+0");
        Some(clock)
    }

    /// Step the agents' wall clock to real time plus `offset` (libfaketime's
    /// syntax: `+0`, `-30`, `+1d`). Written to a temp file and renamed, so
    /// the agent never reads half an offset.
    pub fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Start `edge-agent` with this clock.
    pub fn agent(&self, args: &[&str], dir: &Path) -> Agent {
        let file = self.file.to_str().unwrap();
        Agent::start_with(
            args,
            dir,
            &[
                ("LD_PRELOAD", self.library),
                ("FAKETIME_TIMESTAMP_FILE", file),
                ("FAKETIME_NO_CACHE", "1"),
                // Both spellings: libfaketime versions differ.
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                ("DONT_FAKE_MONOTONIC", "1"),
            ],
        )
    }
}
