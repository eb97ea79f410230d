//! Sensors misbehaving, through the real binary: every fault we know of at
//! once, in one group beside good sensors. The promise for each: the cycle
//! still ends on time, the row is written with that sensor counted failed,
//! one log line names it with the reason, no panic, memory bounded (a 1 GiB
//! body is offered every cycle, chunked and with its length declared). Then
//! the TLS cases one by one: a self-signed certificate not trusted, then
//! trusted through `tls.ca_file`; accepted with `tls.insecure` (which warns
//! at start); a certificate for another name refused.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{Agent, Body, Pki, Reply, TestServer, fields, group, self_signed, wait_rows, write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);
const GIB: u64 = 1 << 30;

/// A server that answers with headers and part of the body, then resets
/// the connection (SO_LINGER 0: an RST, not an orderly close).
async fn resetting_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/t", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"t\": 2";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.flush().await;
                // The fault under test: the reset comes after the client
                // has had the head and the start of the body.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = stream.set_zero_linger();
            });
        }
    });
    url
}

/// `http://` on `closed`, where nothing listens.
fn refused_url(closed: &support::ClosedPort) -> String {
    format!("http://{}/t", closed.addr)
}

/// A host name that fails to resolve without any packet leaving the
/// machine: its first label is 64 characters, over DNS's 63-character
/// limit, so glibc's resolver refuses to build the query (EAI_NONAME, "Name
/// or service not known") after looking in /etc/hosts. Checked with
/// `strace -f -e trace=network`: no socket other than AF_UNIX (nscd) is
/// opened, nothing is sent to the name server.
fn unresolvable_url() -> String {
    format!("http://{}.invalid/t", "x".repeat(64))
}

/// Peak resident memory of process `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// agent.yaml with a 1 s interval and caps high enough that every sensor
/// of these tests starts at once.
fn config(dir: &Path, groups: &str) -> String {
    format!(
        "interval: 1s\ntimeout: 600ms\nlimit: 64\nlimit_per_host: 64\nmax_body: 64KiB\noutput:\n  dir: {}\ngroups:\n{groups}",
        dir.join("data").display()
    )
}

/// The value of `name=` in a log line, if present.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// The id of a sensor written as `{ id: ID, ... }`.
fn sensor_id(yaml: &str) -> &str {
    let rest = yaml.strip_prefix("{ id: ").unwrap();
    &rest[..rest.find(',').unwrap()]
}

/// The log lines that name sensor `id`.
fn lines_about<'a>(log: &'a str, id: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| field(l, "sensor") == Some(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once_beside_good_sensors() {
    let pki = Pki::new();
    let server = TestServer::start(&["127.0.0.1"]).await;
    let tls = TestServer::start_tls(&["127.0.0.1"], pki.right_name.clone()).await;
    let tls_other = TestServer::start_tls(&["127.0.0.1"], pki.wrong_name.clone()).await;
    let closed = support::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let ca = ca.display();

    // The good sensors: 20.0, 23.0, the string "21.5", 19.5 over TLS.
    server.route("/text", Reply::ok("20.0\n"));
    server.route("/json", Reply::ok(r#"{"t": 23.0}"#));
    server.route("/string", Reply::ok(r#"{"t": "21.5"}"#));
    tls.route("/t", Reply::ok("19.5"));
    tls_other.route("/t", Reply::ok("19.5"));

    let forever = Duration::from_secs(3600);
    server.route("/silent", Reply::ok("1").after(forever));
    server.route("/stall", Reply::with_body(Body::Stall));
    server.route(
        "/drip",
        Reply::with_body(Body::Drip {
            bytes: br#"{"t": 21.0}"#.to_vec(),
            every: Duration::from_secs(1),
        }),
    );
    server.route(
        "/huge",
        Reply::with_body(Body::Huge {
            len: GIB,
            declared: false,
        }),
    );
    server.route(
        "/huge-declared",
        Reply::with_body(Body::Huge {
            len: GIB,
            declared: true,
        }),
    );
    server.route("/500", Reply::status(500));
    server.route("/loop", Reply::status(302).header("location", "/loop"));
    server.route(
        "/html",
        Reply::ok("<!DOCTYPE html>\n<html><body>Login</body></html>")
            .header("content-type", "text/html"),
    );
    server.route("/invalid", Reply::ok(r#"{"t": 21.5"#));
    server.route("/missing", Reply::ok(r#"{"temp": 21.5}"#));
    server.route("/garbage", Reply::ok(r#"{"t": "warm"}"#));
    server.route("/nan", Reply::ok(r#"{"t": "NaN"}"#));
    server.route("/nan-text", Reply::ok("NaN"));
    server.route("/inf", Reply::ok(r#"{"t": "Infinity"}"#));
    server.route("/inf-prom", Reply::ok("# TYPE t gauge\nt -Inf\n"));
    server.route("/overflow", Reply::ok(r#"{"t": 1e999}"#));
    server.route("/cold", Reply::ok(r#"{"t": -300}"#));
    server.route("/cold-k", Reply::ok("-0.5"));

    let text = |id: &str, url: String| format!("{{ id: {id}, url: '{url}', format: text }}");
    let json = |id: &str, path: &str| {
        format!(
            "{{ id: {id}, url: '{}', format: json, value: /t }}",
            server.url(0, path)
        )
    };
    let good = vec![
        text("good-text", server.url(0, "/text")),
        json("good-json", "/json"),
        json("good-string", "/string"),
        format!(
            "{{ id: good-tls, url: '{}', format: text, tls: {{ ca_file: '{ca}' }} }}",
            tls.https_url(0, "/t")
        ),
    ];
    // (sensor, what its one log line must say)
    let faults: Vec<(String, &str)> = vec![
        (json("silent", "/silent"), "no answer within 600ms"),
        (json("stall", "/stall"), "body not complete within 600ms"),
        (json("drip", "/drip"), "body not complete within 600ms"),
        (json("huge", "/huge"), "body larger than 65536 bytes"),
        (
            json("huge-declared", "/huge-declared"),
            "body larger than 65536 bytes",
        ),
        (
            text("reset", resetting_server().await),
            "body cut short: Connection reset by peer",
        ),
        (json("e500", "/500"), "HTTP status 500"),
        (json("e404", "/nowhere"), "HTTP status 404"),
        (json("redirect-loop", "/loop"), "too many redirects"),
        (
            json("html", "/html"),
            "not valid JSON (expected value at line 1 column 1): `<!DOCTYPE html> <html>",
        ),
        (
            json("invalid", "/invalid"),
            "not valid JSON (EOF while parsing an object",
        ),
        (json("missing", "/missing"), "JSON pointer /t not found"),
        (
            json("garbage", "/garbage"),
            "value at /t is the string `warm`, not a number",
        ),
        (json("nan", "/nan"), "not a finite number"),
        (
            text("nan-text", server.url(0, "/nan-text")),
            "not a finite number",
        ),
        (json("inf", "/inf"), "not a finite number"),
        (
            format!(
                "{{ id: inf-prom, url: '{}', format: prometheus, value: t }}",
                server.url(0, "/inf-prom")
            ),
            "not a finite number",
        ),
        (json("overflow", "/overflow"), "number out of range"),
        (json("cold", "/cold"), "-300 celsius is below absolute zero"),
        (
            format!(
                "{{ id: cold-k, url: '{}', format: text, unit: kelvin }}",
                server.url(0, "/cold-k")
            ),
            "-0.5 kelvin is below absolute zero",
        ),
        (
            text("refused", refused_url(&closed)),
            "cannot connect: Connection refused",
        ),
        (
            text("no-dns", unresolvable_url()),
            "cannot resolve the host name: Name or service not known",
        ),
        (
            text("tls-untrusted", tls.https_url(0, "/t")),
            "certificate is not trusted",
        ),
        (
            format!(
                "{{ id: tls-wrong-name, url: '{}', format: text, tls: {{ ca_file: '{ca}' }} }}",
                tls_other.https_url(0, "/t")
            ),
            "certificate is not valid for 127.0.0.1",
        ),
    ];
    let mut sensors = good.clone();
    sensors.extend(faults.iter().map(|(s, _)| s.clone()));
    let cfg = write(
        dir.path(),
        "agent.yaml",
        &config(dir.path(), &group("faults", "celsius", &sensors)),
    );

    let mut agent = Agent::start(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    let csv = dir.path().join("data/readings.csv");
    let rows = wait_rows(&csv, 4, LIMIT, |_| true).await;
    // Measured while running: the 1 GiB bodies were offered every cycle.
    let peak = peak_rss_kib(agent.child.id());
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let log = agent.log_text();

    // The rows: exactly the good sensors' figures, every fault counted.
    let failed = faults.len().to_string();
    let mut times = Vec::new();
    for row in &rows {
        let f = fields(row);
        assert_eq!(
            &f[1..],
            [
                "faults", "21.000", "19.500", "23.000", "celsius", "4", &failed
            ],
            "{row}\n{log}"
        );
        times.push(humantime::parse_rfc3339(&f[0]).unwrap());
    }
    // The cycles ended on time: rows in step with the interval, and no
    // sensor cut off by the cycle's end. (A tick the agent itself was late
    // for on loaded cores is skipped and logged: the scheduler's business,
    // not the faults', so it is allowed here.)
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            !gap.is_zero() && gap.subsec_nanos() == 0,
            "windows must follow each other in whole intervals: {rows:?}\n{log}"
        );
    }
    for complaint in [
        "could not be polled before the cycle ended",
        "still running when the cycle ended",
        "panicked",
    ] {
        assert!(!log.contains(complaint), "`{complaint}` in the log:\n{log}");
    }

    // One line per faulty sensor, with its reason, over all the cycles;
    // besides it, one when a sensor that does not answer goes into backoff.
    for (sensor, reason) in &faults {
        let id = sensor_id(sensor);
        let (backoff, lines): (Vec<&str>, Vec<&str>) = lines_about(&log, id)
            .into_iter()
            .partition(|l| l.contains("sensor backing off after 3 failed polls"));
        assert!(backoff.len() <= 1, "{id}: {backoff:#?}\n{log}");
        assert_eq!(lines.len(), 1, "{id}: {lines:#?}\n{log}");
        assert!(
            lines[0].contains("sensor failing: ") && lines[0].contains(reason),
            "{id} should say `{reason}`: {}\n{log}",
            lines[0]
        );
    }
    for id in ["good-text", "good-json", "good-string", "good-tls"] {
        assert!(lines_about(&log, id).is_empty(), "{id}:\n{log}");
    }

    // Memory: the agent stayed small, and stopped reading at the cap.
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    let offered = server.streamed("/huge");
    assert!(
        offered > 64 * 1024,
        "the server must really offer more than the cap: {offered}"
    );
    assert!(
        offered < GIB / 8,
        "the agent must stop reading at the cap: {offered} bytes read"
    );
    eprintln!(
        "{} rows; peak RSS {peak} KiB; /huge handed out {offered} bytes in total",
        rows.len()
    );
}

/// Run the agent on `groups` until each has `rows` rows, then stop it;
/// the rows by group and the log.
async fn run_until_rows(
    dir: &Path,
    groups: &[(&str, Vec<String>)],
    rows: usize,
) -> (Vec<Vec<String>>, String) {
    let text: String = groups
        .iter()
        .map(|(name, sensors)| group(name, "celsius", sensors))
        .collect();
    let cfg = write(dir, "agent.yaml", &config(dir, &text));
    let mut agent = Agent::start(&["run", "--config", cfg.to_str().unwrap()], dir);
    let csv = dir.join("data/readings.csv");
    wait_rows(&csv, rows * groups.len(), LIMIT, |_| true).await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(LIMIT).success(), "{}", agent.log_text());
    let rows = support::rows(&csv);
    let by_group = groups
        .iter()
        .map(|(name, _)| {
            rows.iter()
                .filter(|r| fields(r)[1] == *name)
                .map(|r| fields(r)[2..].join(","))
                .collect()
        })
        .collect();
    (by_group, agent.log_text())
}

/// A plain-text sensor at `url` with extra YAML `tls` settings.
fn tls_sensor(id: &str, url: &str, tls: &str) -> Vec<String> {
    vec![format!(
        "{{ id: {id}, url: '{url}', format: text, tls: {{ {tls} }} }}"
    )]
}

/// A TLS server whose `/t` answers 19.5, and that URL.
async fn tls_server(tls: Arc<rustls::ServerConfig>) -> (TestServer, String) {
    let server = TestServer::start_tls(&["127.0.0.1"], tls).await;
    server.route("/t", Reply::ok("19.5"));
    let url = server.https_url(0, "/t");
    (server, url)
}

const GOOD: &str = "19.500,19.500,19.500,celsius,1,0";
const FAILED: &str = ",,,celsius,0,1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_not_trusted_unless_ca_file_names_it() {
    let (pem, tls) = self_signed();
    let (_server, url) = tls_server(tls).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "self.pem", &pem);
    let (rows, log) = run_until_rows(
        dir.path(),
        &[
            ("untrusted", tls_sensor("untrusted", &url, "")),
            (
                "trusted",
                tls_sensor("trusted", &url, &format!("ca_file: '{}'", ca.display())),
            ),
        ],
        2,
    )
    .await;
    assert!(rows[0].iter().all(|r| r == FAILED), "{rows:?}\n{log}");
    assert!(rows[1].iter().all(|r| r == GOOD), "{rows:?}\n{log}");
    let lines = lines_about(&log, "untrusted");
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("TLS: the certificate is not trusted"),
        "{log}"
    );
    assert!(lines_about(&log, "trusted").is_empty(), "{log}");
    assert!(!log.contains("tls.insecure"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_accepts_any_certificate_and_warns_at_start() {
    let (_, tls) = self_signed();
    let (server, url) = tls_server(tls).await;
    let dir = tempfile::tempdir().unwrap();
    let (rows, log) = run_until_rows(
        dir.path(),
        &[("g", tls_sensor("lax", &url, "insecure: true"))],
        2,
    )
    .await;
    assert!(rows[0].iter().all(|r| r == GOOD), "{rows:?}\n{log}");
    let warning = format!(
        "tls.insecure is set: certificates of https://{} are not verified",
        server.addrs[0]
    );
    assert_eq!(log.matches(&warning).count(), 1, "{log}");
    let warned = log.find(&warning).unwrap();
    let started = log.find("polling every").expect("start-up line");
    assert!(warned < started, "the warning comes at start:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_even_from_a_trusted_ca() {
    let pki = Pki::new();
    let (_server, url) = tls_server(pki.wrong_name.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (rows, log) = run_until_rows(
        dir.path(),
        &[(
            "g",
            tls_sensor("other", &url, &format!("ca_file: '{}'", ca.display())),
        )],
        2,
    )
    .await;
    assert!(rows[0].iter().all(|r| r == FAILED), "{rows:?}\n{log}");
    let lines = lines_about(&log, "other");
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(
            "TLS: the certificate is not valid for 127.0.0.1, only for DnsName(\"sensor.example\")"
        ),
        "{log}"
    );
}
