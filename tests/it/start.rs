//! A start on any image, through the real binary.
//!
//! - No CA bundle (a minimal Debian without `ca-certificates`): http-only
//!   sensors start and are polled, and so is a replay to an http endpoint;
//!   an https sensor is refused at start (by `check` and `run`) with the
//!   places looked in, the package and `tls.ca_file` named; an https sensor
//!   with `tls.ca_file` works without the system's bundle; an http sensor
//!   redirected to https is refused in words. "No bundle" is made by
//!   pointing `SSL_CERT_FILE` and `SSL_CERT_DIR`, which the loader honours
//!   instead of the usual places, at a missing file and an empty directory.
//! - The open-file limit: `check` warns when the config may hold more files
//!   than `RLIMIT_NOFILE` allows; `run` raises its soft limit to the hard one
//!   and polls 200 sensors at once under a soft limit of 64.
//!   A raise the system denies (EPERM from a seccomp filter, as a systemd
//!   unit's `SystemCallFilter=` may) is logged at info and the agent runs on.
//! - `check --quiet` and the unit that uses it.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    Agent, Pki, Reply, TestServer, fields, finish, group, wait_rows, with_open_files, write,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The environment of a machine without a CA bundle: `SSL_CERT_FILE` names
/// a file that does not exist, `SSL_CERT_DIR` an empty directory.
fn no_ca_bundle(dir: &Path) -> Vec<(&'static str, String)> {
    let certs = dir.join("no-certs");
    std::fs::create_dir_all(&certs).unwrap();
    vec![
        (
            "SSL_CERT_FILE",
            dir.join("no-bundle.crt").display().to_string(),
        ),
        ("SSL_CERT_DIR", certs.display().to_string()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// agent.yaml in `dir` with a 1 s interval and `sensors` in group `g`.
fn config(dir: &Path, sensors: &[String]) -> PathBuf {
    let text = format!(
        "interval: 1s\ntimeout: 800ms\noutput:\n  dir: {}\ngroups:\n{}",
        dir.join("data").display(),
        group("g", "celsius", sensors)
    );
    write(dir, "agent.yaml", &text)
}

fn text_sensor(id: &str, url: &str, extra: &str) -> String {
    format!("{{ id: {id}, url: '{url}', format: text{extra} }}")
}

/// Run the agent on `cfg` under `env` until `rows` rows are written; stop
/// it; the rows' `mean..failed` fields and the log.
async fn run_rows(
    dir: &Path,
    cfg: &Path,
    env: &[(&str, &str)],
    rows: usize,
) -> (Vec<String>, String) {
    let mut agent = Agent::start_with(&["run", "--config", cfg.to_str().unwrap()], dir, env);
    let csv = dir.join("data/readings.csv");
    wait_rows(&csv, rows, LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let rows = support::rows(&csv)
        .iter()
        .map(|r| fields(r)[2..].join(","))
        .collect();
    (rows, agent.log_text())
}

/// `edge-agent ARGS` under `env`, to its end, off the async workers.
async fn edge_agent_with(args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        finish(
            std::process::Command::new(support::binary())
                .args(&args)
                .envs(env.iter().map(|(k, v)| (k, v))),
        )
    })
    .await
    .unwrap()
}

const GOOD: &str = "19.500,19.500,19.500,celsius,1,0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sensors_start_and_are_polled_without_a_ca_bundle() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/t", Reply::ok("19.5"));
    let dir = tempfile::tempdir().unwrap();
    let env = no_ca_bundle(dir.path());
    let cfg = config(
        dir.path(),
        &[text_sensor("plain", &server.url(0, "/t"), "")],
    );

    let (code, out, err) =
        edge_agent_with(&["check", "--config", cfg.to_str().unwrap()], &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plain"), "{out}");

    let (rows, log) = run_rows(dir.path(), &cfg, &env_refs(&env), 2).await;
    assert!(rows.iter().all(|r| r == GOOD), "{rows:?}\n{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_sensor_without_a_ca_bundle_is_refused_at_start_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let env = no_ca_bundle(dir.path());
    let cfg = config(
        dir.path(),
        &[
            text_sensor("plain", "http://127.0.0.1:9/t", ""),
            text_sensor("secure", "https://127.0.0.1:9/t", ""),
            text_sensor("secure-2", "https://127.0.0.2:9/t", ""),
        ],
    );
    let cfg = cfg.to_str().unwrap();
    let bundle = &env[0].1;
    for command in ["check", "run"] {
        let (code, out, err) = edge_agent_with(&[command, "--config", cfg], &env).await;
        assert_eq!(code, 1, "{command}: {err}");
        assert!(out.is_empty(), "{command}: {out}");
        for words in [
            "error: cannot verify the certificate of the https sensor `secure` (https://127.0.0.1:9) and 1 more: no CA certificates found",
            &format!("SSL_CERT_FILE={bundle}"),
            &format!("No such file or directory (os error 2) at '{bundle}'"),
            "install the package `ca-certificates` (it provides /etc/ssl/certs/ca-certificates.crt)",
            "or set `tls.ca_file` on the sensor",
        ] {
            assert!(err.contains(words), "{command}: `{words}` not in:\n{err}");
        }
        assert!(!err.contains("builder error"), "{command}: {err}");
    }

    // A bundle that cannot be read (a directory at its name) is named too.
    let unreadable = [
        ("SSL_CERT_FILE", dir.path().display().to_string()),
        env[1].clone(),
    ];
    let (code, _, err) = edge_agent_with(&["check", "--config", cfg], &unreadable).await;
    assert_eq!(code, 1, "{err}");
    let read_error = format!("Is a directory (os error 21) at '{}'", dir.path().display());
    assert!(err.contains(&read_error), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_sensor_with_ca_file_needs_no_system_bundle() {
    let pki = Pki::new();
    let tls = TestServer::start_tls(&["127.0.0.1"], pki.right_name.clone()).await;
    tls.route("/t", Reply::ok("19.5"));
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/t", Reply::ok("19.5"));
    let dir = tempfile::tempdir().unwrap();
    let env = no_ca_bundle(dir.path());
    let ca = write(dir.path(), "site-ca.pem", &pki.ca_pem);
    let ca_file = format!(", tls: {{ ca_file: '{}' }}", ca.display());
    let cfg = config(
        dir.path(),
        &[
            text_sensor("secure", &tls.https_url(0, "/t"), &ca_file),
            text_sensor("plain", &server.url(0, "/t"), ""),
        ],
    );
    let (rows, log) = run_rows(dir.path(), &cfg, &env_refs(&env), 2).await;
    let both = "19.500,19.500,19.500,celsius,2,0";
    assert!(rows.iter().all(|r| r == both), "{rows:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sensor_redirected_to_https_is_refused_in_words() {
    let pki = Pki::new();
    let tls = TestServer::start_tls(&["127.0.0.1"], pki.right_name.clone()).await;
    tls.route("/t", Reply::ok("19.5"));
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route(
        "/t",
        Reply::status(302).header("location", &tls.https_url(0, "/t")),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[text_sensor("moved", &server.url(0, "/t"), "")],
    );
    let (rows, log) = run_rows(dir.path(), &cfg, &[], 2).await;
    assert!(
        rows.iter().all(|r| r == ",,,celsius,0,1"),
        "{rows:?}\n{log}"
    );
    let failing: Vec<&str> = log.lines().filter(|l| l.contains("sensor=moved")).collect();
    assert_eq!(failing.len(), 1, "{log}");
    assert!(
        failing[0].contains(
            "request failed: redirected to an https URL, but TLS is set up only for sensors whose URL in the config is https"
        ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_an_http_endpoint_needs_no_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let env = no_ca_bundle(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write(
        &data,
        "readings.csv",
        &format!(
            "{}\n2026-11-24T10:00:00.000Z,g,19.500,19.500,19.500,celsius,1,0\n",
            edge_agent::history::row::HEADER
        ),
    );
    let addr = support::serve_status(|_req| async { 204 }).await;
    let url = format!("http://{addr}/write?db=edge");
    let args = [
        "replay",
        "--dir",
        data.to_str().unwrap(),
        "--format",
        "influx",
        "--output",
        &url,
    ];
    let (code, _, err) = edge_agent_with(&args, &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 row"), "{err}");
}

/// A config of `sensors` sensors at `url` + `/N`, all of one host, with
/// `limit` and `limit_per_host` both `limit`.
fn one_host(dir: &Path, url: &str, sensors: usize, limit: usize) -> PathBuf {
    let list: Vec<String> = (0..sensors)
        .map(|i| text_sensor(&format!("s{i}"), &format!("{url}/{i}"), ""))
        .collect();
    let text = format!(
        "interval: 2s\ntimeout: 1500ms\nlimit: {limit}\nlimit_per_host: {limit}\noutput:\n  dir: {}\ngroups:\n{}",
        dir.join("data").display(),
        group("g", "celsius", &list)
    );
    write(dir, "agent.yaml", &text)
}

/// `edge-agent check --config CFG` with the open-file limit `soft:hard`.
async fn check_with_open_files(cfg: &Path, soft: u64, hard: u64) -> (i32, String, String) {
    let cfg = cfg.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        finish(with_open_files(soft, hard).args(["check", "--quiet", "--config", &cfg]))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_the_config_may_pass_the_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    // 100 sensors of one host, 100 at once: 100 connections + 32 own files.
    let cfg = one_host(dir.path(), "http://127.0.0.1:9", 100, 100);
    let (code, out, err) = check_with_open_files(&cfg, 64, 64).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    for words in [
        "WARN open files: this config may hold up to 132 files open, more than the open-file limit (RLIMIT_NOFILE) of 64",
        "100 connection(s) to sensors",
        "the hard limit is 64, and `run` raises the soft limit to it at start, which is still too few",
        "LimitNOFILE=",
    ] {
        assert!(err.contains(words), "`{words}` not in:\n{err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, _, err) = check_with_open_files(&cfg, 64, 4096).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the hard limit is 4096, and `run` raises the soft limit to it at start, which is enough"),
        "{err}"
    );

    // 20 sensors: 20 connections + 32 fit under 64, whatever `limit` is.
    let few = one_host(dir.path(), "http://127.0.0.1:9", 20, 1000);
    let (code, _, err) = check_with_open_files(&few, 64, 64).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_raises_its_soft_open_file_limit_and_polls_200_sensors_at_once() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    // Every answer waits, so all 200 requests are in flight together.
    for i in 0..200 {
        server.route(
            &format!("/{i}"),
            Reply::ok("19.5").after(Duration::from_millis(300)),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_host(dir.path(), &server.url(0, ""), 200, 200);
    let agent = Agent::spawn(
        with_open_files(64, 4096).args(["run", "--config", cfg.to_str().unwrap()]),
        dir.path(),
        &[],
    );
    let csv = dir.path().join("data/readings.csv");
    wait_rows(&csv, 2, LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    let mut agent = agent;
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let log = agent.log_text();
    assert!(
        log.contains("open-file limit raised from 64 to 4096 (the hard limit)"),
        "{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    for row in support::rows(&csv) {
        assert!(row.ends_with(",celsius,200,0"), "{row}\n{log}");
    }
    assert!(
        server.counters.max_total() >= 150,
        "requests were not concurrent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_quiet_prints_only_errors_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(
        dir.path(),
        &[text_sensor("plain", "http://127.0.0.1:9/t", "")],
    );
    let good = good.to_str().unwrap().to_string();
    let (code, out, err) = edge_agent_with(&["check", "--quiet", "--config", &good], &[]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    // Without --quiet, the plan.
    let (code, out, _) = edge_agent_with(&["check", "--config", &good], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains("plain"), "{out}");

    let warned = config(
        dir.path(),
        &[text_sensor(
            "lax",
            "https://127.0.0.1:9/t",
            ", tls: { insecure: true }",
        )],
    );
    let (code, out, err) =
        edge_agent_with(&["check", "-q", "--config", warned.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("tls.insecure is set"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let bad = write(
        dir.path(),
        "bad.yaml",
        &format!(
            "interval: 1s\ntimeout: 800ms\nlimit: 10001\nlimit_per_host: 0\noutput:\n  dir: {}\ngroups:\n{}",
            dir.path().join("data").display(),
            group(
                "g",
                "celsius",
                &[text_sensor("x", "http://127.0.0.1:9/t", "")]
            )
        ),
    );
    let (code, out, err) = edge_agent_with(
        &["check", "--quiet", "--config", bad.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    let file = bad.display();
    assert!(
        err.contains(&format!("{file}:3:1: limit: 10001 is more than 10000, the most requests in flight the agent takes")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:4:1: limit_per_host: must be at least 1")),
        "{err}"
    );
}

/// The unit runs `check --quiet` before starting, and its open-file limit
/// holds the largest `limit` the config accepts and the agent's own files.
#[test]
fn the_unit_checks_quietly_and_allows_the_largest_limit() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/edge-agent.service"
    ))
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key}= not in the unit"))
            .to_string()
    };
    assert!(
        value("ExecStartPre").contains("edge-agent check --quiet --config"),
        "{unit}"
    );
    let nofile: usize = value("LimitNOFILE").parse().unwrap();
    // 32: the agent's own files, as `check` counts them.
    assert!(nofile >= edge_agent::config::MAX_LIMIT + 32, "{nofile}");
}

/// `command` with the open-file limit `soft:hard` and a seccomp filter that
/// denies raising it with EPERM (`setrlimit`, and `prlimit64` with a new
/// limit), and with `deny_reading` every `prlimit64`, reading included:
/// what a systemd unit with `SystemCallErrorNumber=EPERM` and a
/// `SystemCallFilter=` that denies those calls does to the agent.
#[cfg(target_arch = "x86_64")]
fn with_raise_denied(
    command: &mut std::process::Command,
    soft: u64,
    hard: u64,
    deny_reading: bool,
) {
    use std::os::unix::process::CommandExt;

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    // struct seccomp_data: nr at 0, args[i] at 16 + 8 i (little-endian).
    let mut filter = vec![
        stmt(load, 0),                         // 0: nr
        jeq(libc::SYS_setrlimit as u32, 6, 0), // 1: -> 8 deny
        // 2: -> 3 (or 8 deny, with deny_reading), else 7 allow
        jeq(
            libc::SYS_prlimit64 as u32,
            if deny_reading { 5 } else { 0 },
            4,
        ),
        stmt(load, 32), // 3: new_limit, low half
        jeq(0, 0, 3),   // 4: -> 5, else 8 deny
        stmt(load, 36), // 5: new_limit, high half
        jeq(0, 0, 1),   // 6: -> 7 allow, else 8 deny
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW), // 7
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ), // 8
    ];
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: between fork and exec the closure makes only system calls
    // (no allocation: `filter` was built before the fork).
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_the_system_denies_is_logged_at_info_and_the_agent_runs_on() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    for i in 0..3 {
        server.route(&format!("/{i}"), Reply::ok("19.5"));
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_host(dir.path(), &server.url(0, ""), 3, 3);
    let cfg = cfg.to_str().unwrap();
    for deny_reading in [false, true] {
        // `check` under the same filter: no panic, nothing to say.
        let mut command = std::process::Command::new(support::binary());
        command.args(["check", "--quiet", "--config", cfg]);
        with_raise_denied(&mut command, 512, 4096, deny_reading);
        let (code, out, err) = tokio::task::spawn_blocking(move || finish(&mut command))
            .await
            .unwrap();
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "", ""),
            "{deny_reading}"
        );

        run_with_raise_denied(dir.path(), cfg, deny_reading).await;
        std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    }
}

#[cfg(target_arch = "x86_64")]
async fn run_with_raise_denied(dir: &Path, cfg: &str, deny_reading: bool) {
    let mut command = std::process::Command::new(support::binary());
    command.args(["run", "--config", cfg]);
    with_raise_denied(&mut command, 512, 4096, deny_reading);
    let mut agent = Agent::spawn(&mut command, dir, &[]);
    let csv = dir.join("data/readings.csv");
    wait_rows(&csv, 1, LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let log = agent.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("no open-file line in:\n{log}"));
    assert!(line.contains(" INFO "), "{log}");
    assert!(
        line.contains(
            "open-file limit stays at 512 under the hard limit 4096: raising it is not permitted here (Operation not permitted"
        ),
        "{log}"
    );
    assert!(line.contains("LimitNOFILE="), "{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    for row in support::rows(&csv) {
        assert!(row.ends_with(",celsius,3,0"), "{row}\n{log}");
    }
}
