//! Config errors, through the real binary: each broken config makes `check`
//! and `run` exit 2 with a message naming file, line, column and key path,
//! `run` writes nothing, and a SIGHUP with it keeps the running config. A
//! valid config prints its plan with secrets redacted.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A valid config; each case below replaces one of its lines.
const BASE: &[&str] = &[
    "interval: 1s",                      // 1
    "timeout: 500ms",                    // 2
    "limit: 10",                         // 3
    "limit_per_host: 5",                 // 4
    "output:",                           // 5
    "  dir: OUT",                        // 6
    "  prefix: readings",                // 7
    "groups:",                           // 8
    "  - name: greenhouse",              // 9
    "    unit: celsius",                 // 10
    "    sensors:",                      // 11
    "      - id: gh-1",                  // 12
    "        url: http://127.0.0.1:9/j", // 13
    "        format: json",              // 14
    "        value: /t",                 // 15
    "      - id: gh-2",                  // 16
    "        url: http://127.0.0.1:9/p", // 17
    "        format: prometheus",        // 18
    "        value: temp{sensor=\"a\"}", // 19
];

/// Write BASE with `replace`d lines as `dir/test.yaml`; its sensors are on
/// `site` (`http://127.0.0.1:9` in BASE, where nothing listens).
fn write_config(dir: &Path, replace: &[(usize, &str)], site: &str) -> PathBuf {
    let mut lines: Vec<String> = BASE.iter().map(|l| l.to_string()).collect();
    for (line, text) in replace {
        lines[line - 1] = text.to_string();
    }
    let out = dir.join("out");
    let text = lines
        .join("\n")
        .replace("OUT", out.to_str().unwrap())
        .replace("http://127.0.0.1:9/", &format!("{site}/"))
        + "\n";
    let path = dir.join("test.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn edge_agent(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("EDGE_TEST_KEY", "s3cr3t-value")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (name, lines replaced, expected start of the first message line).
type Case<'a> = (&'static str, Vec<(usize, &'a str)>, &'static str);

/// Broken configs, each BASE with some lines replaced. `file_dir` is an
/// `output.dir` line naming a plain file.
fn cases(file_dir: &str) -> Vec<Case<'_>> {
    vec![
        (
            "interval 0",
            vec![(1, "interval: 0s")],
            "test.yaml:1:1: interval: must be at least 10ms",
        ),
        (
            "interval not a duration",
            vec![(1, "interval: soon")],
            "test.yaml:1:1: interval: `soon` is not a duration",
        ),
        (
            "interval wrong type",
            vec![(1, "interval: [5]")],
            "test.yaml:1:11: interval: expected a duration such as 5s, 250ms, 1h, found a list (how often every sensor is polled)",
        ),
        (
            "timeout >= interval",
            vec![(2, "timeout: 1s")],
            "test.yaml:2:1: timeout: must be shorter than interval (1s)",
        ),
        (
            "limit 0",
            vec![(3, "limit: 0")],
            "test.yaml:3:1: limit: must be at least 1",
        ),
        (
            "limit negative",
            vec![(3, "limit: -4")],
            "test.yaml:3:8: limit: `-4` is not a whole number (most requests in flight at once, default 100)",
        ),
        (
            "per host above total",
            vec![(4, "limit_per_host: 50")],
            "test.yaml:4:1: limit_per_host: 50 is more than limit (10)",
        ),
        (
            "forward url scheme",
            vec![(
                7,
                "  prefix: readings\nforward:\n  - name: c\n    url: ftp://x/write",
            )],
            "test.yaml:10:5: forward[0].url: scheme `ftp` is not http or https",
        ),
        (
            "forward unknown key",
            vec![(
                7,
                "  prefix: readings\nforward:\n  - name: c\n    url: http://127.0.0.1:9/write\n    max_rates: 5",
            )],
            "test.yaml:11:5: forward[0].max_rates: unknown key; did you mean `max_rate`?",
        ),
        (
            "forward target twice",
            vec![(
                7,
                "  prefix: readings\nforward:\n  - { name: c, url: \"http://127.0.0.1:9/write\" }\n  - { name: c, url: \"http://127.0.0.1:9/w\" }",
            )],
            "test.yaml:10:7: forward[1].name: target `c` is defined twice",
        ),
        (
            "forward rate 0 and retry backwards",
            vec![(
                7,
                "  prefix: readings\nforward:\n  - name: c\n    url: http://127.0.0.1:9/write\n    max_rate: 0\n    retry: { first: 2s, max: 1s }",
            )],
            "test.yaml:11:5: forward[0].max_rate: must be at least 1 (rows per second)",
        ),
        (
            "unknown top-level key",
            vec![(3, "limits: 10")],
            "test.yaml:3:1: limits: unknown key; did you mean `limit`? The keys here are: interval, timeout, limit,",
        ),
        (
            "unknown output key",
            vec![(7, "  prefx: readings")],
            "test.yaml:7:3: output.prefx: unknown key; did you mean `prefix`?",
        ),
        (
            "unknown sensor key",
            vec![(15, "        valeu: /t")],
            "test.yaml:15:9: groups[0].sensors[0].valeu: unknown key; did you mean `value`?",
        ),
        (
            "bad prefix",
            vec![(7, "  prefix: ../up")],
            "test.yaml:7:3: output.prefix: `../up` is not a usable file name prefix",
        ),
        (
            "dir is a file",
            vec![(6, file_dir)],
            "test.yaml:6:3: output.dir: ",
        ),
        (
            "dir not writable",
            // Not even root may create files in /sys.
            vec![(6, "  dir: /sys/edge-agent-test-out")],
            "test.yaml:6:3: output.dir: /sys/edge-agent-test-out does not exist, and this user cannot create it (cannot write in /sys: ",
        ),
        (
            "duplicate group",
            vec![(
                16,
                "  - name: greenhouse\n    unit: celsius\n    sensors:\n      - id: gh-2",
            )],
            "test.yaml:16:5: groups[1].name: group `greenhouse` is defined twice",
        ),
        (
            "unknown sensor unit",
            vec![(15, "        value: /t\n        unit: reaumur")],
            "test.yaml:16:15: groups[0].sensors[0].unit: `reaumur` is not one of celsius, fahrenheit, kelvin",
        ),
        (
            "header from a missing variable",
            vec![(
                15,
                "        value: /t\n        headers: { X-Key: \"${EDGE_TEST_MISSING}\" }",
            )],
            "test.yaml:16:20: groups[0].sensors[0].headers.X-Key: environment variable EDGE_TEST_MISSING is not set",
        ),
        (
            "unknown group unit",
            vec![(10, "    unit: rankine")],
            "test.yaml:10:11: groups[0].unit: `rankine` is not one of celsius, fahrenheit, kelvin",
        ),
        (
            "bad group name",
            vec![(9, "  - name: green house")],
            "test.yaml:9:5: groups[0].name: `green house` is not a usable group name",
        ),
        (
            "window not a multiple",
            vec![(10, "    unit: celsius\n    window: 1500ms")],
            "test.yaml:11:5: groups[0].window: must be a whole multiple of interval (1s), got 1s 500ms",
        ),
        (
            "duplicate sensor id",
            vec![(16, "      - id: gh-1")],
            "test.yaml:16:9: groups[0].sensors[1].id: sensor id `gh-1` is used twice",
        ),
        (
            "not http",
            vec![(13, "        url: ftp://127.0.0.1/j")],
            "test.yaml:13:9: groups[0].sensors[0].url: scheme `ftp` is not http or https",
        ),
        (
            "not a url",
            vec![(13, "        url: nonsense")],
            "test.yaml:13:9: groups[0].sensors[0].url: not a URL",
        ),
        (
            "missing variable",
            vec![(
                13,
                "        url: http://127.0.0.1:9/j?key=${EDGE_TEST_MISSING}",
            )],
            "test.yaml:13:9: groups[0].sensors[0].url: environment variable EDGE_TEST_MISSING is not set",
        ),
        (
            "bad pointer",
            vec![(15, "        value: temperature")],
            "test.yaml:15:9: groups[0].sensors[0].value: not a JSON pointer",
        ),
        (
            "bad selector",
            vec![(19, "        value: temp{sensor=a}")],
            "test.yaml:19:9: groups[0].sensors[1].value: not a Prometheus selector",
        ),
        (
            "unknown format",
            vec![(14, "        format: xml")],
            "test.yaml:14:17: groups[0].sensors[0].format: `xml` is not one of json, prometheus, text (how the response body is read)",
        ),
        (
            "json without value",
            vec![(15, "        unit: celsius")],
            "test.yaml:12:9: groups[0].sensors[0].value: format json needs `value`",
        ),
        (
            "sensor timeout too long",
            vec![(15, "        value: /t\n        timeout: 9s")],
            "test.yaml:16:9: groups[0].sensors[0].timeout: must be greater than 0 and shorter than interval",
        ),
        (
            "unreadable password file",
            vec![(
                15,
                "        value: /t\n        basic_auth: { username: u, password_file: /nonexistent/pw }",
            )],
            "groups[0].sensors[0].basic_auth.password_file: cannot read /nonexistent/pw",
        ),
        (
            "password file that never ends",
            vec![(
                15,
                "        value: /t\n        basic_auth: { username: u, password_file: /dev/zero }",
            )],
            "test.yaml:16:36: groups[0].sensors[0].basic_auth.password_file: /dev/zero is not a regular file",
        ),
        (
            "max_size 0",
            vec![(7, "  prefix: readings\n  rotate: { max_size: 0 }")],
            "test.yaml:8:13: output.rotate.max_size: must be at least 256 bytes",
        ),
        (
            "bad fsync",
            vec![(7, "  prefix: readings\n  fsync: sometimes")],
            "test.yaml:8:3: output.fsync: `sometimes` is not `rotate`, `always` or a duration",
        ),
        (
            "metrics not on loopback",
            vec![(7, "  prefix: readings\nmetrics: { listen: 0.0.0.0:9464 }")],
            "test.yaml:8:12: metrics.listen: 0.0.0.0:9464 is not a loopback address",
        ),
        (
            "keep 0",
            vec![(7, "  prefix: readings\n  keep: 0")],
            "test.yaml:8:3: output.keep: must be at least 1",
        ),
        (
            "no sensors",
            vec![
                (11, "    sensors: []"),
                (12, ""),
                (13, ""),
                (14, ""),
                (15, ""),
                (16, ""),
                (17, ""),
                (18, ""),
                (19, ""),
            ],
            "test.yaml:11:5: groups[0].sensors: needs at least one sensor",
        ),
        (
            "backoff neither off nor a map",
            vec![(4, "limit_per_host: 5\nbackoff: sometimes")],
            "test.yaml:5:1: backoff: `sometimes` is not `off` or a map such as { after: 3, max: 10x }",
        ),
        (
            "backoff after 0",
            vec![(4, "limit_per_host: 5\nbackoff: { after: 0, max: 10x }")],
            "test.yaml:5:12: backoff.after: must be from 1 to 1000",
        ),
        (
            "backoff max below two intervals",
            vec![(4, "limit_per_host: 5\nbackoff: { after: 3, max: 1500ms }")],
            "test.yaml:5:22: backoff.max: 1 interval(s) would never skip a poll: give at least 2x (2s)",
        ),
        (
            "backoff max without x",
            vec![(4, "limit_per_host: 5\nbackoff: { max: 10 }")],
            "test.yaml:5:12: backoff.max: write `10x` for 10 intervals",
        ),
        (
            "backoff unknown key",
            vec![(4, "limit_per_host: 5\nbackoff: { after: 3, every: 2x }")],
            "test.yaml:5:22: backoff.every: unknown key; the keys here are: after, max",
        ),
        (
            "missing key",
            vec![(1, "")],
            "missing key `interval` (how often every sensor is polled): a duration such as 5s",
        ),
        ("not yaml", vec![(9, "  - name: [greenhouse")], "test.yaml:"),
    ]
}

/// Whether a line of `log` names the config file and, from there, reads
/// `want` (the temp dir before the file name left out).
fn has_problem(log: &str, want: &str) -> bool {
    log.lines()
        .filter_map(|l| l.find("test.yaml:").map(|i| &l[i..]))
        .any(|l| l.contains(want))
}

#[test]
fn broken_configs_are_refused_by_check_and_run_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notadir");
    std::fs::write(&file, "x").unwrap();
    let file_dir = format!("  dir: {}", file.display());
    let cases = cases(&file_dir);
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (name, replace, want) in &cases {
        let path = write_config(dir.path(), replace, "http://127.0.0.1:9");
        for command in ["check", "run"] {
            let (code, _, err) =
                edge_agent(dir.path(), &[command, "--config", path.to_str().unwrap()]);
            if code != 2 || !has_problem(&err, want) {
                failures.push(format!(
                    "{command} {name}: exit {code}, wanted `{want}`, got:\n{err}"
                ));
            }
            if dir.path().join("out").exists() {
                failures.push(format!("{command} {name}: created the output dir"));
                std::fs::remove_dir_all(dir.path().join("out")).unwrap();
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A server for BASE's sensors, its URL, and an agent running BASE in
/// `dir` (its config `dir/test.yaml`) that has written a row.
async fn running_base(dir: &Path) -> (support::TestServer, String, support::Agent) {
    let server = support::TestServer::start(&["127.0.0.1"]).await;
    server.route("/j", support::Reply::ok(r#"{"t": 20.5}"#));
    server.route("/p", support::Reply::ok("temp{sensor=\"a\"} 21.5\n"));
    let site = server.url(0, "").trim_end_matches('/').to_string();
    let config = write_config(dir, &[], &site);
    let agent = support::Agent::start(&["run", "--config", config.to_str().unwrap()], dir);
    let csv = dir.join("out/readings.csv");
    support::wait_rows(&csv, 1, Duration::from_secs(20), |_| true).await;
    (server, site, agent)
}

/// One agent runs the valid BASE; each broken config in turn is written over
/// it and announced with SIGHUP. Each is refused with its reason, and the
/// agent goes on writing the original group's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notadir");
    std::fs::write(&file, "x").unwrap();
    let file_dir = format!("  dir: {}", file.display());
    let (_server, site, agent) = running_base(dir.path()).await;
    let site = site.as_str();
    let csv = dir.path().join("out/readings.csv");
    let limit = Duration::from_secs(20);

    let mut failures = Vec::new();
    for (name, replace, want) in cases(&file_dir).iter() {
        write_config(dir.path(), replace, site);
        let seen = agent.log_text().len();
        agent.signal(libc::SIGHUP);
        agent
            .wait_log(limit, |log| log[seen..].contains("reload refused"))
            .await;
        // Each problem on a line of its own that says the reload was refused.
        let refused_with = |log: &str| {
            log[seen..]
                .lines()
                .any(|l| l.contains("reload refused") && has_problem(l, want))
        };
        if !support::eventually(Duration::from_secs(5), || refused_with(&agent.log_text())).await {
            let log = agent.log_text();
            failures.push(format!("{name}: wanted `{want}`, got:\n{}", &log[seen..]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Still the original config: new rows of greenhouse, averaged as before.
    let before = support::rows(&csv).len();
    let rows = support::wait_rows(&csv, before + 2, limit, |_| true).await;
    for row in &rows[before..] {
        let f = support::fields(row);
        assert_eq!(
            (f[1].as_str(), f[2].as_str()),
            ("greenhouse", "21.000"),
            "{row}"
        );
    }
    assert!(!agent.log_text().contains("new configuration applied"));
    assert!(!agent.log_text().contains("panicked"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &[(3, "limit: 0"), (15, "        value: t")],
        "http://127.0.0.1:9",
    );
    let (code, _, err) = edge_agent(dir.path(), &["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(":3:1: limit: must be at least 1"), "{err}");
    assert!(
        err.contains(":15:9: groups[0].sensors[0].value: not a JSON pointer"),
        "{err}"
    );
}

#[test]
fn check_prints_the_plan_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "file-secret-pw\n").unwrap();
    let auth = format!(
        "        value: /t\n        headers: {{ Authorization: \"Bearer ${{EDGE_TEST_KEY}}\" }}\n        basic_auth: {{ username: admin, password_file: {} }}",
        pw.display()
    );
    let path = write_config(
        dir.path(),
        &[
            (15, &auth),
            (
                13,
                "        url: http://127.0.0.1:9/j?token=${EDGE_TEST_KEY}",
            ),
        ],
        "http://127.0.0.1:9",
    );
    let (code, out, err) = edge_agent(dir.path(), &["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for secret in ["s3cr3t-value", "file-secret-pw"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "secret leaked:\n{out}\n{err}"
        );
    }
    assert!(out.contains("header Authorization: <redacted>"), "{out}");
    assert!(out.contains("basic auth admin:<redacted>"), "{out}");
    assert!(out.contains("http://127.0.0.1:9/j?<redacted>"), "{out}");
    assert!(
        out.contains("http://127.0.0.1:9: 2 sensor(s), up to 2 at once"),
        "{out}"
    );
    assert!(
        out.contains("at most 10 request(s) in flight, 5 per host"),
        "{out}"
    );
}

#[test]
fn a_missing_config_file_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = edge_agent(dir.path(), &["check", "--config", "nope.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config file nope.yaml"), "{err}");
}

/// The resolved config is what the agent keeps for its whole run (10,000
/// sensors take a few MiB): its lists hold exactly what the file lists, with
/// no room left over from growing them one by one.
#[test]
fn the_resolved_config_keeps_no_spare_room_per_sensor() {
    let mut text = String::from(
        "interval: 1s\ntimeout: 500ms\noutput:\n  dir: /nonexistent/edge-agent-test\ngroups:\n",
    );
    for g in 0..3 {
        text.push_str(&format!(
            "  - name: g-{g}\n    unit: celsius\n    sensors:\n"
        ));
        for i in 0..100 {
            text.push_str(&format!(
                "      - {{ id: s-{g}-{i}, url: \"http://127.0.0.1:9/text/{i}\", format: text }}\n"
            ));
        }
    }
    let config = edge_agent::config::Config::parse(&text, Path::new("big.yaml")).unwrap();
    assert_eq!(config.groups.len(), 3);
    assert_eq!(config.groups.capacity(), 3);
    for group in &config.groups {
        assert_eq!(group.sensors.len(), 100);
        assert_eq!(group.sensors.capacity(), 100, "group {}", group.name);
    }
}

/// One `check` reports every problem of the file, shape and rules alike:
/// each at its own line, with what the key means and, where there is a
/// set, the values it takes. A refused reload logs the same problems, one
/// line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_a_refused_reload_report_every_problem_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
interval: 5s
timeout: 2s
limit: many
interval: 6s
tiemout: 1s
output:
  dir: out
groups:
  - name: g
    unit: celsius
    sensors:
      - id: a
        url: http://127.0.0.1:9/a
      - id: bad id
        url: http://127.0.0.1:9/b
        format: text
";
    let path = dir.path().join("test.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = edge_agent(dir.path(), &["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let want = [
        "test.yaml:3:8: limit: `many` is not a whole number (most requests in flight at once",
        "test.yaml:4:1: interval: is given twice (first on line 1); remove one",
        "test.yaml:5:1: tiemout: unknown key; did you mean `timeout`?",
        "test.yaml:12:9: groups[0].sensors[0]: missing key `format` (how the response body is read): one of json, prometheus, text",
        "test.yaml:14:9: groups[0].sensors[1].id: `bad id` is not a usable sensor id",
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), want.len(), "{err}");
    for (line, want) in lines.iter().zip(want) {
        assert!(
            has_problem(line, want),
            "wanted `{want}` in order, got:\n{err}"
        );
    }

    // The same file announced to a running agent: refused, each problem on
    // a line of its own.
    let (_server, _, agent) = running_base(dir.path()).await;
    std::fs::write(&path, text).unwrap();
    agent.signal(libc::SIGHUP);
    let refused = |log: &str| {
        want.iter().all(|w| {
            log.lines()
                .any(|l| l.contains("reload refused") && has_problem(l, w))
        })
    };
    agent.wait_log(Duration::from_secs(20), refused).await;
}
