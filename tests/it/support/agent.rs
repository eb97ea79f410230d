//! The real `edge-agent` binary as the tests run it: started in a temp dir
//! with its stderr in a file, signalled, waited for with a deadline, and
//! killed when the test is done with it, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait::{eventually, eventually_blocking};

/// The built `edge-agent` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edge-agent")
}

/// Run `edge-agent ARGS` to its end: (exit code, stdout, stderr).
pub fn edge_agent(args: &[&str]) -> (i32, String, String) {
    finish(Command::new(binary()).args(args))
}

/// Run `command` (an `edge-agent` one) to its end: (exit code, stdout, stderr).
pub fn finish(command: &mut Command) -> (i32, String, String) {
    let out = command.env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `edge-agent` started with the open-file limit (RLIMIT_NOFILE) `soft`
/// under `hard`: through prlimit(1) of util-linux where installed, else
/// bash's `ulimit`. Either replaces itself with the agent (exec), so the
/// child is the agent itself; arguments go after.
pub fn with_open_files(soft: u64, hard: u64) -> Command {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if on_path("prlimit") {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={soft}:{hard}")).arg(binary());
        c
    } else {
        let mut c = Command::new("bash");
        let script = format!("ulimit -Hn {hard} && ulimit -Sn {soft} && exec \"$0\" \"$@\"");
        c.args(["-c", &script, binary()]);
        c
    }
}

/// A running `edge-agent` with its stderr going to a file.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(args: &[&str], dir: &Path) -> Agent {
        Agent::start_with(args, dir, &[])
    }

    /// Start with extra environment variables.
    pub fn start_with(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Agent {
        Agent::spawn(Command::new(binary()).args(args), dir, env)
    }

    /// Start `command`, an `edge-agent` one (see [`with_open_files`]).
    pub fn spawn(command: &mut Command, dir: &Path, env: &[(&str, &str)]) -> Agent {
        let log = dir.join(format!("agent-{}.log", std::process::id()));
        let err = std::fs::File::create(&log).unwrap();
        let child = command
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start edge-agent");
        Agent { child, log }
    }

    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait up to `limit` for the process to exit; panics if it does not.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        let exited = eventually_blocking(limit, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
            panic!(
                "edge-agent did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
        }
        status.unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `cond` on the log until it holds, up to `limit`.
    pub async fn wait_log(&self, limit: Duration, cond: impl Fn(&str) -> bool) {
        if !eventually(limit, || cond(&self.log_text())).await {
            panic!(
                "log condition not met in {limit:?}; log:\n{}",
                self.log_text()
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `child`'s stdout prints, collected as it comes by a thread (joined
/// once the child is gone).
pub fn collect_stdout(
    child: &mut Child,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    let printed: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
    let mut stdout = child.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn({
        let printed = printed.clone();
        move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                printed.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    });
    (printed, reader)
}
