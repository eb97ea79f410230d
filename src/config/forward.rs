//! Rules for `forward:`: each target's name, URL, headers, TLS, batch,
//! rate, retry waits, lag bound and retention hold, resolved into
//! [`Forward`]s.
//!
//! Why a file of its own: a target is a sensor's mirror image (a URL,
//! headers and TLS the agent sends with), so it shares the sensor's header
//! and CA-file rules, but its other keys are about pacing and the files.

use std::collections::HashSet;
use std::time::Duration;

use super::checker::Checker;
use super::model::{Forward, Tls};
use super::raw::{RawForward, RawKeep};
use super::secrets;
use super::sensor;
use crate::history::row::is_name;

/// Defaults, also shown by `check`.
pub const DEFAULT_ROWS: usize = 5_000;
pub const DEFAULT_BYTES: u64 = 1 << 20;
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_RATE: usize = 20_000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
pub const DEFAULT_MEASUREMENT: &str = "temperature";
/// The size `keep_unforwarded: true` stands for.
pub const DEFAULT_KEEP: u64 = 1 << 30;

/// Resolve every target (names unique).
pub(super) fn resolve(c: &mut Checker, targets: Vec<RawForward>) -> Vec<Forward> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(targets.len());
    for (i, t) in targets.into_iter().enumerate() {
        let key = format!("forward[{i}]");
        if !t.name.is_empty() && !names.insert(t.name.clone()) {
            c.fail(
                format!("{key}.name"),
                format!(
                    "target `{}` is defined twice; each names its own cursor",
                    t.name
                ),
            );
        }
        if let Some(f) = target(c, &key, t) {
            out.push(f);
        }
    }
    out
}

fn target(c: &mut Checker, key: &str, t: RawForward) -> Option<Forward> {
    // `.tmp`: the name of another target's cursor while it is saved.
    let name_ok = is_name(&t.name) && !t.name.starts_with('.') && !t.name.ends_with(".tmp");
    if !name_ok {
        c.fail(
            format!("{key}.name"),
            format!(
                "`{}` is not a usable target name; use letters, digits, `_`, `-`, `.`",
                t.name
            ),
        );
    }
    // Kept as expanded (the URL crate would normalise it): that is what is sent.
    let url = sensor::http_url(c, &format!("{key}.url"), &t.url)
        .and_then(|_| c.expand(&format!("{key}.url"), &t.url));
    if secrets::url_has_literal_password(&t.url) {
        c.literal_secrets.push(format!("{key}.url"));
    }
    let headers = sensor::headers(c, key, &t.headers);
    let ca_file = sensor::ca_file(c, key, t.tls.ca_file.as_deref());
    if t.tls.insecure {
        c.warnings.push(format!(
            "{key}.tls.insecure is set: the engine's certificate is not verified"
        ));
    }
    let batch_rows = t.batch.rows.unwrap_or(DEFAULT_ROWS);
    if !(1..=1_000_000).contains(&batch_rows) {
        c.fail(format!("{key}.batch.rows"), "must be 1 to 1000000");
    }
    let batch_bytes = match &t.batch.max_size {
        Some(size) => c
            .size(&format!("{key}.batch.max_size"), size)
            .unwrap_or(DEFAULT_BYTES),
        None => DEFAULT_BYTES,
    };
    if !(1024..=256 << 20).contains(&batch_bytes) {
        c.fail(
            format!("{key}.batch.max_size"),
            "must be 1KiB to 256MiB (a row's line is about 100 bytes)",
        );
    }
    let max_delay = duration(c, &format!("{key}.batch.max_delay"), &t.batch.max_delay)
        .unwrap_or(DEFAULT_MAX_DELAY);
    let measurement = t.measurement.unwrap_or_else(|| DEFAULT_MEASUREMENT.into());
    if measurement.is_empty() || measurement.chars().any(|ch| ch.is_control()) {
        c.fail(
            format!("{key}.measurement"),
            "must be a non-empty name without control characters",
        );
    }
    let max_rate = t.max_rate.unwrap_or(DEFAULT_RATE);
    if max_rate == 0 {
        c.fail(
            format!("{key}.max_rate"),
            "must be at least 1 (rows per second)",
        );
    }
    let timeout = duration(c, &format!("{key}.timeout"), &t.timeout).unwrap_or(DEFAULT_TIMEOUT);
    if timeout < Duration::from_millis(100) {
        c.fail(format!("{key}.timeout"), "must be at least 100ms");
    }
    let retry_first =
        duration(c, &format!("{key}.retry.first"), &t.retry.first).unwrap_or(DEFAULT_RETRY_FIRST);
    let retry_max =
        duration(c, &format!("{key}.retry.max"), &t.retry.max).unwrap_or(DEFAULT_RETRY_MAX);
    if retry_first < Duration::from_millis(10) {
        c.fail(format!("{key}.retry.first"), "must be at least 10ms");
    } else if retry_max < retry_first {
        c.fail(
            format!("{key}.retry.max"),
            "must not be shorter than retry.first",
        );
    }
    let max_lag = duration(c, &format!("{key}.max_lag"), &t.max_lag);
    if max_lag.is_some_and(|l| l < max_delay) {
        c.fail(
            format!("{key}.max_lag"),
            "must not be shorter than batch.max_delay (rows wait that long for their batch)",
        );
    }
    let keep_unforwarded = match t.keep_unforwarded {
        None | Some(RawKeep::Flag(false)) => None,
        Some(RawKeep::Flag(true)) => Some(DEFAULT_KEEP),
        Some(RawKeep::Size(size)) => {
            let size = c.size(&format!("{key}.keep_unforwarded"), &size);
            if size == Some(0) {
                c.fail(
                    format!("{key}.keep_unforwarded"),
                    "must be more than 0 (or false)",
                );
            }
            size
        }
    };
    Some(Forward {
        url: super::values::Secret::new(url?),
        shown_url: secrets::redacted_url(&t.url),
        name: name_ok.then_some(t.name)?,
        headers,
        tls: Tls {
            insecure: t.tls.insecure,
            ca_file,
        },
        batch_rows,
        batch_bytes: batch_bytes.min(usize::MAX as u64) as usize,
        max_delay,
        measurement,
        max_rate,
        timeout,
        retry_first,
        retry_max,
        max_lag,
        keep_unforwarded,
        on_refused: t.on_refused.unwrap_or_default(),
        start: t.start.unwrap_or_default(),
    })
}

fn duration(c: &mut Checker, key: &str, text: &Option<String>) -> Option<Duration> {
    c.duration(key, text.as_deref()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Secret;

    fn checker(env: secrets::Env) -> Checker {
        Checker {
            problems: Vec::new(),
            env,
            literal_secrets: Vec::new(),
            warnings: Vec::new(),
            base: std::path::PathBuf::from("/etc/edge-agent"),
        }
    }

    #[test]
    fn a_targets_secrets_are_sent_as_given_and_never_shown() {
        let env = |name: &str| match name {
            "TOKEN" => Some("tok-SECRET-1".to_string()),
            "PW" => Some("pw-SECRET-2".to_string()),
            _ => None,
        };
        let mut c = checker(&env);
        let mut raw = RawForward {
            name: "central".into(),
            url: "http://user:${PW}@127.0.0.1:8086/write?db=x&p=${PW}".into(),
            ..RawForward::default()
        };
        raw.headers
            .insert("Authorization".into(), Secret::new("Token ${TOKEN}".into()));
        let targets = resolve(&mut c, vec![raw]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let t = &targets[0];
        // What is sent...
        assert!(t.url.expose().contains("p=pw-SECRET-2"));
        assert_eq!(t.headers[0].1.expose(), "Token tok-SECRET-1");
        // ...is never what is shown.
        let shown = format!("{t:?} {}", t.shown_url);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert_eq!(
            t.shown_url,
            "http://user:<redacted>@127.0.0.1:8086/write?<redacted>"
        );
        assert_eq!(t.measurement, "temperature");
        assert_eq!((t.batch_rows, t.max_rate), (DEFAULT_ROWS, DEFAULT_RATE));
    }

    #[test]
    fn every_bad_setting_of_a_target_is_reported() {
        let mut c = checker(&|_| None);
        let raw = RawForward {
            name: "bad name".into(),
            url: "vm.example:8428/write".into(),
            max_rate: Some(0),
            retry: super::super::raw::RawRetry {
                first: Some("1ms".into()),
                max: None,
            },
            keep_unforwarded: Some(RawKeep::Size(super::super::values::SizeText::Bytes(0))),
            ..RawForward::default()
        };
        resolve(&mut c, vec![raw]);
        let keys: Vec<&str> = c.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "forward[0].name",
            "forward[0].url",
            "forward[0].max_rate",
            "forward[0].retry.first",
            "forward[0].keep_unforwarded",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }
}
