//! Rules that serde alone cannot check, for the file as a whole: ranges,
//! cross-field constraints, uniqueness of group names and sensor ids.
//!
//! Every rule reports a [`Problem`] with the key path it is about and keeps
//! going, so the user sees all mistakes at once. The [`Checker`] collecting
//! them is shared by the rules of the parts: [`super::output`],
//! [`super::sensor`] and [`super::backoff`]; secrets and `${VAR}` are
//! [`super::secrets`]'s.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::checker::Checker;
use super::model::{Config, Group, Problem};
use super::raw::{RawConfig, RawGroup};
use super::values::show_duration;
use super::{backoff, forward, output, secrets, sensor};
use crate::history::row::is_name;

/// The largest `limit`: each request in flight is an open connection, and
/// `systemd/edge-agent.service`'s `LimitNOFILE=65536` leaves room for this
/// many, the agent's own files, and idle connections to many hosts.
pub const MAX_LIMIT: usize = 10_000;

/// Resolve `raw`; with `try_output_dir`, `output.dir` is also tried for
/// write access (a probe file made and removed).
pub fn resolve(
    raw: RawConfig,
    path: &Path,
    env: secrets::Env,
    try_output_dir: bool,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
        env,
        literal_secrets: Vec::new(),
        warnings: Vec::new(),
        base: super::paths::config_dir(path),
    };
    let interval = c.duration("interval", &raw.interval);
    let timeout = c.duration("timeout", &raw.timeout);
    if interval.is_some_and(|i| i < Duration::from_millis(10)) {
        c.fail("interval", "must be at least 10ms");
    }
    match (interval, timeout) {
        (_, Some(t)) if t.is_zero() => c.fail("timeout", "must be greater than 0"),
        (Some(i), Some(t)) if t >= i => c.fail(
            "timeout",
            format!(
                "must be shorter than interval ({}), so a cycle ends before the next one starts",
                show_duration(i)
            ),
        ),
        _ => {}
    }
    if raw.limit == 0 {
        c.fail("limit", "must be at least 1");
    } else if raw.limit > MAX_LIMIT {
        c.fail(
            "limit",
            format!("{} is more than {MAX_LIMIT}, the most requests in flight the agent takes (the systemd unit's LimitNOFILE is sized for it)", raw.limit),
        );
    }
    if raw.limit_per_host == 0 {
        c.fail("limit_per_host", "must be at least 1");
    } else if raw.limit_per_host > raw.limit && raw.limit > 0 {
        c.fail(
            "limit_per_host",
            format!(
                "{} is more than limit ({}); it can never be reached",
                raw.limit_per_host, raw.limit
            ),
        );
    }
    let max_body = match &raw.max_body {
        Some(size) => c.size("max_body", size).unwrap_or(1),
        None => 64 * 1024,
    };
    if max_body == 0 {
        c.fail("max_body", "must be greater than 0");
    }
    let backoff = backoff::resolve(&mut c, raw.backoff, interval);
    let output = output::resolve(&mut c, raw.output, try_output_dir);
    let metrics = raw.metrics.and_then(|m| match m.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Some(addr),
        Ok(addr) => {
            c.fail(
                "metrics.listen",
                format!("{addr} is not a loopback address; the listener is for this machine only (127.0.0.1:9464)"),
            );
            None
        }
        Err(_) => {
            c.fail("metrics.listen", format!("`{}` is not an address such as 127.0.0.1:9464", m.listen));
            None
        }
    });
    let forward = forward::resolve(&mut c, raw.forward);
    if raw.groups.is_empty() {
        c.fail("groups", "needs at least one group");
    }
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut groups = Vec::with_capacity(raw.groups.len());
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let key = format!("groups[{gi}]");
        if !names.insert(g.name.clone()) {
            c.fail(
                format!("{key}.name"),
                format!("group `{}` is defined twice", g.name),
            );
        }
        let usable = interval.filter(|i| *i >= Duration::from_millis(10));
        groups.push(group(
            &mut c,
            &key,
            g,
            (usable, timeout.unwrap_or_default()),
            &mut ids,
        ));
    }
    let (Some(interval), Some(timeout), true) = (interval, timeout, c.problems.is_empty()) else {
        return Err(c.problems);
    };
    c.warnings
        .extend(secrets::readable_config_warning(path, &c.literal_secrets));
    Ok(Config {
        source: path.to_path_buf(),
        interval,
        timeout,
        limit: raw.limit,
        limit_per_host: raw.limit_per_host,
        max_body,
        backoff,
        output,
        groups,
        metrics,
        forward,
        warnings: c.warnings,
    })
}

/// `timing` is (interval, default timeout); the interval is `None` when it
/// did not parse (already reported), which skips the checks against it.
fn group(
    c: &mut Checker,
    key: &str,
    g: RawGroup,
    timing: (Option<Duration>, Duration),
    ids: &mut HashSet<String>,
) -> Group {
    let interval = timing.0.unwrap_or(Duration::from_nanos(1));
    if !is_name(&g.name) {
        c.fail(
            format!("{key}.name"),
            format!(
                "`{}` is not a usable group name; use letters, digits, `_`, `-`, `.`",
                g.name
            ),
        );
    }
    let window = match &g.window {
        Some(w) => c.duration(&format!("{key}.window"), w).unwrap_or(interval),
        None => interval,
    };
    if window < interval || window.as_nanos() % interval.as_nanos() != 0 {
        c.fail(
            format!("{key}.window"),
            format!(
                "must be a whole multiple of interval ({}), got {}",
                show_duration(interval),
                show_duration(window)
            ),
        );
    }
    if g.sensors.is_empty() {
        c.fail(format!("{key}.sensors"), "needs at least one sensor");
    }
    // Exactly as many as written: with 10,000 sensors the slack of a
    // growing Vec (up to a quarter more) would be about 1 MiB for good.
    let mut sensors = Vec::with_capacity(g.sensors.len());
    for (si, s) in g.sensors.into_iter().enumerate() {
        let skey = format!("{key}.sensors[{si}]");
        if !ids.insert(s.id.clone()) {
            c.fail(
                format!("{skey}.id"),
                format!("sensor id `{}` is used twice", s.id),
            );
        }
        if let Some(s) = sensor::resolve(c, &skey, s, g.unit, timing) {
            sensors.push(s);
        }
    }
    Group {
        name: g.name,
        unit: g.unit,
        window,
        sensors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;
    use crate::config::secrets::{redacted_url, url_password, written_url};

    #[test]
    fn debug_output_holds_no_secret() {
        let text = r#"
interval: 1s
timeout: 500ms
output: { dir: /tmp/edge-agent-debug-test }
groups:
  - name: g
    unit: celsius
    sensors:
      - id: a
        url: "http://u:${PW}@127.0.0.1:9/${TOKEN}/t?key=${TOKEN}&x=1"
        format: text
        headers: { Authorization: "Bearer ${TOKEN}", X-Literal: lit-secret }
        basic_auth: { username: u, password: "${PW}" }
"#;
        let read = crate::config::raw::read(text);
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        let raw: RawConfig = read.config;
        let env = |name: &str| match name {
            "TOKEN" => Some("tok-secret".to_string()),
            "PW" => Some("pw-secret".to_string()),
            _ => None,
        };
        let config = resolve(raw, Path::new("t.yaml"), &env, false).unwrap();
        let sensor = &config.groups[0].sensors[0];
        assert_eq!(sensor.url.parse().password(), Some("pw-secret"));
        assert_eq!(
            sensor.shown_url(),
            "http://u:<redacted>@127.0.0.1:9/${TOKEN}/t?<redacted>"
        );
        let debug = format!("{config:?} {config:#?} {sensor:?}");
        for secret in ["tok-secret", "pw-secret", "lit-secret"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("<redacted>"));
        assert_eq!(redacted_url("http://h/a?b"), "http://h/a?<redacted>");
        assert_eq!(redacted_url("http://h:1/a"), "http://h:1/a");
        assert_eq!(written_url("http://h/a?b=${X}"), None);
        assert_eq!(written_url(" http://${H}/a "), Some("http://${H}/a"));
        assert_eq!(url_password("http://u:p@h/x@y"), Some(9..10));
        assert_eq!(url_password("http://u@h/a:b@c"), None);
        assert_eq!(url_password("http://h/?a=b:c@d"), None);
    }
}
