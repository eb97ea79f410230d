//! The poller against real HTTP servers on loopback: the caps are respected
//! *and reached* (a host alone takes all of `limit`), slow hosts do not
//! starve others, failing sensors back off, every value format is
//! read, units are converted, and each kind of bad answer counts as failed
//! with a reason.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::config::Config;
use edge_agent::poll::{Failure, Outcome, Poller};
use support::{Reply, TestServer};
use tokio::sync::watch;
use tokio::time::Instant;

/// A config with one group per `(name, unit, sensors)`, sensors given as YAML flow maps.
fn config(head: &str, groups: &[(&str, &str, Vec<String>)]) -> Arc<Config> {
    let mut text = format!("{head}\noutput: {{ dir: /nonexistent/unused }}\ngroups:\n");
    for (name, unit, sensors) in groups {
        text.push_str(&format!(
            "  - name: {name}\n    unit: {unit}\n    sensors:\n"
        ));
        for s in sensors {
            text.push_str(&format!("      - {s}\n"));
        }
    }
    Arc::new(Config::parse(&text, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

async fn poll_once(poller: &Poller, within: Duration) -> Vec<Outcome> {
    let (_tx, rx) = watch::channel(Instant::now() + within);
    poller.poll(rx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_cap_is_respected_and_reached() {
    let server = TestServer::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    server.route("/slow", Reply::ok("20").after(Duration::from_millis(150)));
    let mut sensors = Vec::new();
    for h in 0..3 {
        for i in 0..40 {
            sensors.push(format!(
                "{{ id: s{h}-{i}, url: '{}?n={i}', format: text }}",
                server.url(h, "/slow")
            ));
        }
    }
    let cfg = config(
        "interval: 10s\ntimeout: 5s\nlimit: 50\nlimit_per_host: 20",
        &[("g", "celsius", sensors)],
    );
    let poller = Poller::new(cfg).unwrap();
    let out = poll_once(&poller, Duration::from_secs(9)).await;
    assert!(out.iter().all(|o| *o == Ok(20.0)), "{out:?}");
    let c = &server.counters;
    assert_eq!(c.requests(), 120);
    assert_eq!(c.max_total(), 50, "total cap must be reached, never passed");
    for addr in &server.addrs {
        assert!(c.max_for(*addr) <= 20, "{addr}: {}", c.max_for(*addr));
    }
    // 3 hosts x 20 > 50, so the total cap binds; every host still got a fair share.
    for addr in &server.addrs {
        assert!(
            c.max_for(*addr) >= 15,
            "{addr} starved: max {}",
            c.max_for(*addr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_cap_is_respected_and_reached() {
    let server = TestServer::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]).await;
    server.route("/slow", Reply::ok("1").after(Duration::from_millis(100)));
    let mut sensors = Vec::new();
    for h in 0..4 {
        for i in 0..30 {
            sensors.push(format!(
                "{{ id: s{h}-{i}, url: '{}', format: text }}",
                server.url(h, "/slow")
            ));
        }
    }
    let cfg = config(
        "interval: 10s\ntimeout: 5s\nlimit: 100\nlimit_per_host: 8",
        &[("g", "kelvin", sensors)],
    );
    let poller = Poller::new(cfg).unwrap();
    let out = poll_once(&poller, Duration::from_secs(9)).await;
    assert!(out.iter().all(|o| o.is_ok()), "{out:?}");
    for addr in &server.addrs {
        assert_eq!(server.counters.max_for(*addr), 8, "{addr}");
    }
    assert_eq!(server.counters.max_total(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_does_not_starve_the_others() {
    let server = TestServer::start(&["127.0.0.6", "127.0.0.7"]).await;
    // Host 0 answers after 1.5 s, host 1 at once. With limit 4 and 2 per host,
    // host 0 may only ever hold 2 slots: host 1's 40 sensors all finish.
    server.route("/slow", Reply::ok("5").after(Duration::from_millis(1500)));
    server.route("/fast", Reply::ok("6"));
    let mut sensors = Vec::new();
    for i in 0..40 {
        sensors.push(format!(
            "{{ id: slow{i}, url: '{}', format: text }}",
            server.url(0, "/slow")
        ));
        sensors.push(format!(
            "{{ id: fast{i}, url: '{}', format: text }}",
            server.url(1, "/fast")
        ));
    }
    let cfg = config(
        "interval: 10s\ntimeout: 2s\nlimit: 4\nlimit_per_host: 2",
        &[("g", "celsius", sensors)],
    );
    let poller = Poller::new(cfg).unwrap();
    let out = poll_once(&poller, Duration::from_secs(2)).await;
    let fast_ok = out.iter().filter(|o| **o == Ok(6.0)).count();
    assert_eq!(
        fast_ok, 40,
        "every fast sensor is polled while the slow host holds its 2 slots"
    );
    // The slow host got its 2 slots but could not finish 40 sensors in 2 s.
    assert!(out.contains(&Err(Failure::NotStarted)));
    assert!(out.contains(&Err(Failure::CycleEnd)));
    assert_eq!(server.counters.max_for(server.addrs[0]), 2);
}

/// Fair slots are work-conserving: a host alone with sensors still to poll
/// (the other host's few are done) takes the whole of `limit`, and a site
/// with a single host uses it all from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_alone_with_sensors_waiting_uses_the_whole_limit() {
    let server = TestServer::start(&["127.0.0.8", "127.0.0.9"]).await;
    server.route("/slow", Reply::ok("1").after(Duration::from_millis(150)));
    server.route("/fast", Reply::ok("2"));
    let slow: Vec<String> = (0..60)
        .map(|i| {
            format!(
                "{{ id: slow{i}, url: '{}', format: text }}",
                server.url(0, "/slow")
            )
        })
        .collect();
    let fast: Vec<String> = (0..2)
        .map(|i| {
            format!(
                "{{ id: fast{i}, url: '{}', format: text }}",
                server.url(1, "/fast")
            )
        })
        .collect();
    let head = "interval: 10s\ntimeout: 5s\nlimit: 20\nlimit_per_host: 20";
    let poller = Poller::new(config(
        head,
        &[("a", "celsius", slow.clone()), ("b", "celsius", fast)],
    ))
    .unwrap();
    let out = poll_once(&poller, Duration::from_secs(9)).await;
    assert!(out.iter().all(|o| o.is_ok()), "{out:?}");
    assert_eq!(server.counters.max_for(server.addrs[0]), 20);

    let poller = Poller::new(config(head, &[("a", "celsius", slow)])).unwrap();
    let out = poll_once(&poller, Duration::from_secs(9)).await;
    assert!(out.iter().all(|o| o.is_ok()), "{out:?}");
    assert_eq!(server.counters.max_total(), 20);
}

/// Backoff, cycle by cycle through the poller: after 2 failures the
/// sensor is skipped (`BackingOff`, a failure) for 2 cycles, then 3 or 4,
/// never more than `max` = 4 apart, and the server sees only the polls;
/// once it answers it is polled every cycle again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sensor_is_skipped_for_growing_waits_until_it_answers() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/dead", Reply::status(500));
    let sensors = vec![format!(
        "{{ id: dead, url: '{}', format: text }}",
        server.url(0, "/dead")
    )];
    let cfg = config(
        "interval: 10s\ntimeout: 2s\nbackoff: { after: 2, max: 4x }",
        &[("g", "celsius", sensors)],
    );
    let poller = Poller::new(cfg).unwrap();
    let mut polled = Vec::new();
    for cycle in 0..40 {
        match poll_once(&poller, Duration::from_secs(5)).await.remove(0) {
            Err(Failure::BackingOff) => {}
            Err(Failure::Status(500)) => polled.push(cycle),
            other => panic!("cycle {cycle}: {other:?}"),
        }
    }
    assert_eq!(server.counters.requests(), polled.len());
    assert_eq!(polled[..3], [0, 1, 3], "{polled:?}");
    let gaps: Vec<usize> = polled.windows(2).skip(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (3..=4).contains(g)), "{polled:?}");
    assert_eq!(poller.backing_off(), 1);

    server.route("/dead", Reply::ok("7"));
    let mut waited = 0;
    while poll_once(&poller, Duration::from_secs(5)).await[0] != Ok(7.0) {
        waited += 1;
        assert!(waited < 4, "still skipped after {waited} cycles");
    }
    assert_eq!(poller.backing_off(), 0);
    for _ in 0..3 {
        assert_eq!(poll_once(&poller, Duration::from_secs(5)).await, [Ok(7.0)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_unit() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route(
        "/json",
        Reply::ok(r#"{"temperature_f": 68.0, "nested": {"c": [1, "21.5"]}}"#),
    );
    server.route(
        "/prom",
        Reply::ok("# TYPE t gauge\nt{sensor=\"a\"} 294.15 1700000000000\nt{sensor=\"b\"} 0\nhumidity 40\n"),
    );
    server.route("/text", Reply::ok("  19.25\n"));
    let s = |id: &str, rest: String| format!("{{ id: {id}, {rest} }}");
    let sensors = vec![
        s(
            "f",
            format!(
                "url: '{}', format: json, value: /temperature_f, unit: fahrenheit",
                server.url(0, "/json")
            ),
        ),
        s(
            "str",
            format!(
                "url: '{}', format: json, value: /nested/c/1",
                server.url(0, "/json")
            ),
        ),
        s(
            "k",
            format!(
                "url: '{}', format: prometheus, value: 't{{sensor=\"a\"}}', unit: kelvin",
                server.url(0, "/prom")
            ),
        ),
        s(
            "h",
            format!(
                "url: '{}', format: prometheus, value: humidity",
                server.url(0, "/prom")
            ),
        ),
        s(
            "t",
            format!("url: '{}', format: text", server.url(0, "/text")),
        ),
    ];
    let cfg = config("interval: 5s\ntimeout: 2s", &[("g", "celsius", sensors)]);
    let poller = Poller::new(cfg).unwrap();
    let out = poll_once(&poller, Duration::from_secs(4)).await;
    let values: Vec<f64> = out.iter().map(|o| o.clone().unwrap()).collect();
    let expected = [20.0, 21.5, 21.0, 40.0, 19.25];
    for (v, e) in values.iter().zip(expected) {
        assert!((v - e).abs() < 1e-9, "{values:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_fail_with_a_reason() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/html", Reply::ok("<html><body>hello</body></html>"));
    server.route("/nan", Reply::ok(r#"{"t": "NaN"}"#));
    server.route("/inf", Reply::ok("+Inf"));
    server.route("/cold", Reply::ok(r#"{"t": -300}"#));
    server.route("/garbage", Reply::ok(r#"{"t": "warm"}"#));
    server.route("/missing", Reply::ok(r#"{"x": 1}"#));
    server.route("/big", Reply::ok(vec![b'1'; 5000]));
    server.route("/slow", Reply::ok("1").after(Duration::from_secs(3)));
    server.route("/500", Reply::status(500));
    // A port nothing listens on.
    let closed = support::closed_port();
    let refused = format!("http://{}/x", closed.addr);
    let json = |id: &str, path: &str| {
        format!(
            "{{ id: {id}, url: '{}', format: json, value: /t }}",
            server.url(0, path)
        )
    };
    let sensors = vec![
        json("html", "/html"),
        json("nan", "/nan"),
        format!(
            "{{ id: inf, url: '{}', format: text }}",
            server.url(0, "/inf")
        ),
        json("cold", "/cold"),
        json("garbage", "/garbage"),
        json("missing", "/missing"),
        format!(
            "{{ id: big, url: '{}', format: text }}",
            server.url(0, "/big")
        ),
        format!(
            "{{ id: slow, url: '{}', format: text, timeout: 300ms }}",
            server.url(0, "/slow")
        ),
        json("e500", "/500"),
        json("e404", "/nothing-here"),
        format!("{{ id: refused, url: '{refused}', format: text }}"),
    ];
    let cfg = config(
        "interval: 5s\ntimeout: 2s\nmax_body: 4KiB",
        &[("g", "celsius", sensors)],
    );
    let poller = Poller::new(cfg).unwrap();
    let out = poll_once(&poller, Duration::from_secs(4)).await;
    let reasons: Vec<String> = out
        .iter()
        .map(|o| o.clone().unwrap_err().to_string())
        .collect();
    let expect = [
        "not valid JSON",
        "not a finite number",
        "not a finite number",
        "below absolute zero",
        "not a number",
        "not found in body",
        "larger than 4096 bytes",
        "no answer within 300ms",
        "HTTP status 500",
        "HTTP status 404",
        "cannot connect",
    ];
    for (reason, want) in reasons.iter().zip(expect) {
        assert!(
            reason.contains(want),
            "`{reason}` should say `{want}`; all: {reasons:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_deadline_cuts_the_poll_short() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/slow", Reply::ok("1").after(Duration::from_secs(4)));
    let sensors = vec![format!(
        "{{ id: a, url: '{}', format: text }}",
        server.url(0, "/slow")
    )];
    let cfg = config("interval: 10s\ntimeout: 5s", &[("g", "celsius", sensors)]);
    let poller = Poller::new(cfg).unwrap();
    let (tx, rx) = watch::channel(Instant::now() + Duration::from_secs(9));
    let poll = tokio::spawn(async move { poller.poll(rx).await });
    support::wait_until(Duration::from_secs(3), "the request in flight", || {
        server.counters.requests() == 1
    })
    .await;
    // What a shutdown does: the cycle may run at most this much longer.
    tx.send_modify(|d| *d = Instant::now() + Duration::from_millis(200));
    let out = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .expect("poll must end at the moved deadline")
        .unwrap();
    assert_eq!(out, vec![Err(Failure::CycleEnd)]);
}
