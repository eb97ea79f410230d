//! What an operator does on a gateway, through the real binary: `check`,
//! `run`, a reload and `tail` started from a working directory other than
//! the config's, with relative paths in the config; `check` as the service
//! user before the state directory exists.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Agent, Reply, TestServer, wait_rows};

const LIMIT: Duration = Duration::from_secs(20);

/// `edge-agent ARGS` run to its end in `cwd`: (exit code, stdout, stderr).
fn edge_agent_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    support::finish(Command::new(support::binary()).args(args).current_dir(cwd))
}

/// `output.dir`, `password_file` and `ca_file` written relative in
/// `site/conf/agent.yaml` name files in `site/conf`, whatever the working
/// directory of `check`, `run`, a reload or `tail`; `check` shows them
/// absolute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_in_the_config_are_taken_from_its_directory() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/t", Reply::ok("21.5"));
    let site = tempfile::tempdir().unwrap();
    let conf = site.path().join("conf");
    let elsewhere = site.path().join("elsewhere");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    support::write(&conf, "pw", "sensor-pw\n");
    support::write(&conf, "ca.pem", &support::Pki::new().ca_pem);
    let text = format!(
        "interval: 100ms\ntimeout: 80ms\noutput:\n  dir: ./data\ngroups:\n{}",
        support::group(
            "g",
            "celsius",
            &[format!(
                "{{ id: a, url: '{}', format: text, basic_auth: {{ username: u, password_file: pw }}, \
                 tls: {{ ca_file: ca.pem }} }}",
                server.url(0, "/t")
            )]
        )
    );
    let config = support::write(&conf, "agent.yaml", &text);
    let config = config.to_str().unwrap();

    let (code, out, err) = edge_agent_in(&elsewhere, &["check", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let active = conf.join("data").join("readings.csv");
    assert!(
        out.contains(&format!("output: {}\n", active.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(", CA {}", conf.join("ca.pem").display())),
        "{out}"
    );

    // The same config named relative to the working directory.
    let (code, out, err) = edge_agent_in(site.path(), &["check", "--config", "conf/agent.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("output: {}\n", active.display())),
        "{out}"
    );

    let mut agent = Agent::start(&["run", "--config", config], &elsewhere);
    wait_rows(&active, 2, LIMIT, |_| true).await;
    // A reload of the same file names the same files: no second store (it
    // would find the directory locked by the first and refuse the reload).
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(LIMIT, |l| l.contains("new configuration applied"))
        .await;
    let before = support::rows(&active).len();
    wait_rows(&active, before + 2, LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    let status = agent.wait(LIMIT);
    let log = agent.log_text();
    assert!(status.success(), "{log}");
    assert!(!log.contains("reload refused"), "{log}");
    assert!(
        !elsewhere.join("data").exists(),
        "rows went to the working directory"
    );

    let (code, out, err) = edge_agent_in(&elsewhere, &["tail", "--config", config, "-n", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(",g,21.500,"), "{out}");
}

/// `check` as a user who cannot create a missing `output.dir` says that it
/// is missing and how to create it; for the unit's state directory,
/// /var/lib/edge-agent, that systemd creates it when the service starts.
/// Never that the user needs write access to the parent (/var/lib).
#[test]
fn check_as_the_service_user_before_the_output_dir_exists_says_how_it_comes() {
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: needs root to run check as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy `nobody` may run (the build's may be under a 0700 directory).
    let binary = dir.path().join("edge-agent");
    std::fs::copy(support::binary(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = |out_dir: &Path| {
        let text = format!(
            "interval: 1s\ntimeout: 500ms\noutput: {{ dir: {} }}\ngroups:\n{}",
            out_dir.display(),
            support::group(
                "g",
                "celsius",
                &["{ id: a, url: 'http://127.0.0.1:9/t', format: text }".to_string()]
            )
        );
        let config = support::write(dir.path(), "agent.yaml", &text);
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut command = Command::new(&binary);
        command
            .args(["check", "--config", config.to_str().unwrap()])
            .current_dir(dir.path())
            .uid(65534)
            .gid(65534);
        support::finish(&mut command)
    };

    // Any directory: named, with the command that makes it.
    let missing = dir.path().join("data");
    let (code, _, err) = check(&missing);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "output.dir: {} does not exist, and this user cannot create it (cannot write in {}: ",
            missing.display(),
            dir.path().display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "sudo install -d -o USER -g GROUP -m 0750 {}",
            missing.display()
        )),
        "{err}"
    );
    assert!(!err.contains("needs write access"), "{err}");

    // The shipped unit's state directory, where it is not there yet.
    let state = Path::new("/var/lib/edge-agent");
    if state.exists() {
        println!(
            "SKIPPED the state directory case: {} exists here",
            state.display()
        );
        return;
    }
    let (code, _, err) = check(state);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("output.dir: /var/lib/edge-agent does not exist yet"),
        "{err}"
    );
    assert!(
        err.contains("systemd creates it, owned by the service user, when edge-agent.service starts (StateDirectory=edge-agent)"),
        "{err}"
    );
    assert!(
        err.contains("sudo install -d -o edge-agent -g edge-agent -m 0750 /var/lib/edge-agent"),
        "{err}"
    );
    assert!(!err.contains("needs write access"), "{err}");
}
