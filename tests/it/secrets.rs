//! Secrets: header values, passwords and URL tokens from `${VAR}` or files
//! are sent to the sensors, and never printed: not in the log (even at trace
//! level), not in errors or a refused reload, not in `check`. A config file
//! that holds a secret and is readable by everyone gets a warning.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Agent, Reply, TestServer};

const TOKEN: &str = "tok-SECRET-4711";
const PASSWORD: &str = "pw-SECRET-0815";
const HEADER: &str = "hdr-SECRET-2342";
const USERINFO: &str = "ui-SECRET-1234";
const ENV: &[(&str, &str)] = &[
    ("EDGE_T_TOKEN", TOKEN),
    ("EDGE_T_HEADER", HEADER),
    ("EDGE_T_USERINFO", USERINFO),
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN, PASSWORD, HEADER, USERINFO] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
    assert!(!text.contains("SECRET"), "{what} shows a secret:\n{text}");
}

/// Sensors that each carry a secret somewhere and each fail differently.
fn config(dir: &Path, site: &str, closed: &str) -> String {
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        r#"interval: 1s
timeout: 400ms
limit: 10
limit_per_host: 5
output:
  dir: {out}
groups:
  - name: vault
    unit: celsius
    sensors:
      - id: good
        url: "{site}/ok?token=${{EDGE_T_TOKEN}}"
        format: text
        headers: {{ Authorization: "Bearer ${{EDGE_T_HEADER}}" }}
      - id: denied
        url: "{site}/denied?token=${{EDGE_T_TOKEN}}"
        format: text
        basic_auth: {{ username: admin, password_file: {pw} }}
      - id: broken
        url: "{site}/broken?key=${{EDGE_T_TOKEN}}"
        format: json
        value: /t
      - id: slow
        url: "{site}/slow/${{EDGE_T_TOKEN}}"
        format: text
      - id: refused
        url: "http://user:${{EDGE_T_USERINFO}}@{closed}/x?token=${{EDGE_T_TOKEN}}"
        format: text
"#,
        out = dir.join("out").display(),
        pw = pw.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sent_but_never_printed() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/ok", Reply::ok("20.5"));
    server.route("/denied", Reply::status(401));
    server.route("/broken", Reply::ok("<html>not json</html>"));
    server.route(
        &format!("/slow/{TOKEN}"),
        Reply::ok("1").after(Duration::from_secs(2)),
    );
    // Held until the end: the "refused" sensor's port, where nothing listens.
    let closed_port = support::closed_port();
    let closed = closed_port.addr.to_string();
    let site = server.url(0, "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, config(dir.path(), &site, &closed)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let mut env = ENV.to_vec();
    env.push(("RUST_LOG", "trace"));
    let mut agent = Agent::start_with(
        &["run", "--config", path.to_str().unwrap()],
        dir.path(),
        &env,
    );
    let csv = dir.path().join("out/readings.csv");
    support::wait_rows(&csv, 2, Duration::from_secs(20), |_| true).await;
    // Every failing sensor has said why.
    for id in ["denied", "broken", "slow", "refused"] {
        agent
            .wait_log(Duration::from_secs(10), |log| {
                log.lines()
                    .any(|l| l.contains("sensor failing") && l.contains(&format!("sensor={id}")))
            })
            .await;
    }
    // A refused reload names the problem, not the secrets around it.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("timeout: 400ms", "timeout: 4s")).unwrap();
    agent.signal(libc::SIGHUP);
    agent
        .wait_log(Duration::from_secs(10), |log| {
            log.contains("reload refused")
        })
        .await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(10)).success());
    std::fs::write(&path, text).unwrap();

    // The secrets did reach the sensors...
    let seen = server.counters.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(uri, auth)| uri == &format!("/ok?token={TOKEN}")
                && auth.as_deref() == Some(&*format!("Bearer {HEADER}"))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(uri, auth)| uri.starts_with("/denied") && auth.is_some()),
        "{seen:?}"
    );
    // ...and nothing printed them.
    let log = agent.log_text();
    assert!(log.contains("url=http://127.0.0.1"), "{log}");
    assert!(
        log.contains(&format!("url=http://user:<redacted>@{closed}/x?<redacted>")),
        "{log}"
    );
    assert!(log.contains("/slow/${EDGE_T_TOKEN}"), "{log}");
    assert_no_secret("the log", &log);

    let out = Command::new(support::binary())
        .args(["check", "--config", path.to_str().unwrap()])
        .envs(ENV.iter().copied())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_no_secret("check", &String::from_utf8_lossy(&out.stdout));
    assert_no_secret("check's stderr", &String::from_utf8_lossy(&out.stderr));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("readable by every user"),
        "0640 files are fine"
    );
}

#[test]
fn a_world_readable_config_with_a_secret_in_it_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    let path = dir.path().join("agent.yaml");
    let text = format!(
        r#"interval: 1s
timeout: 400ms
output: {{ dir: {out} }}
groups:
  - name: g
    unit: celsius
    sensors:
      - id: a
        url: http://127.0.0.1:9/a
        format: text
        headers: {{ X-Api-Key: {HEADER} }}
      - id: b
        url: http://127.0.0.1:9/b
        format: text
        basic_auth: {{ username: u, password_file: {pw} }}
"#,
        out = dir.path().join("out").display(),
        pw = pw.display()
    );
    std::fs::write(&path, &text).unwrap();
    let check = || {
        let out = Command::new(support::binary())
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_no_secret("check", &err);
        assert_no_secret("check", &String::from_utf8_lossy(&out.stdout));
        err
    };
    for (mode, warned) in [(0o644, true), (0o640, false)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = check();
        assert_eq!(
            err.contains(&format!(
                "{} is readable by every user and holds secrets written in it (groups[0].sensors[0].headers.X-Api-Key)",
                path.display()
            )),
            warned,
            "mode {mode:o}: {err}"
        );
        assert_eq!(
            err.contains(&format!(
                "groups[0].sensors[1].basic_auth.password_file: {} is readable by every user",
                pw.display()
            )),
            warned,
            "mode {mode:o}: {err}"
        );
    }
    // Secrets taken from ${VAR} leave nothing in the file to protect.
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, text.replace(HEADER, "\"${EDGE_T_HEADER}\"")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(support::binary())
        .args(["check", "--config", path.to_str().unwrap()])
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("readable by every user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
