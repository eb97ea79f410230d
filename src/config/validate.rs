//! Rules that serde alone cannot check: ranges, cross-field constraints,
//! uniqueness, `${VAR}` expansion, password and CA files, URLs and selectors.
//!
//! Every rule reports a [`Problem`] with the key path it is about and keeps
//! going, so the user sees all mistakes at once.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::raw::{Format, RawConfig, RawGroup, RawOutput, RawSensor};
use super::values::{Secret, SizeText, parse_duration, show_duration};
use super::{
    BasicAuth, Config, Fsync, Group, Output, Problem, PromSelector, Selector, Sensor, Tls,
};

/// Looks up an environment variable (a parameter so tests need not touch the
/// process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Checker<'a> {
    problems: Vec<Problem>,
    env: Env<'a>,
    /// Key paths of secrets written into the config file itself (not taken
    /// from `${VAR}` or a file), for the world-readable warning.
    literal_secrets: Vec<String>,
    /// Things that work but deserve a word at start.
    warnings: Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            line: None,
            col: None,
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        parse_duration(text).map_err(|e| self.fail(key, e)).ok()
    }

    fn size(&mut self, key: &str, size: &SizeText) -> Option<u64> {
        size.parse().map_err(|e| self.fail(key, e)).ok()
    }

    /// Replace each `${NAME}` in `text` by the variable's value.
    fn expand(&mut self, key: &str, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.fail(key, "`${` without a closing `}`; write ${NAME}");
                return None;
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                self.fail(
                    key,
                    format!("`${{{name}}}` is not a valid environment variable name"),
                );
                return None;
            }
            match (self.env)(name) {
                Some(v) => out.push_str(&v),
                None => {
                    self.fail(key, format!("environment variable {name} is not set"));
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// Resolve `raw`; with `try_output_dir`, `output.dir` is also tried for
/// write access (a probe file made and removed).
pub fn resolve(
    raw: RawConfig,
    path: &Path,
    env: Env,
    try_output_dir: bool,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
        env,
        literal_secrets: Vec::new(),
        warnings: Vec::new(),
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
    let output = output(&mut c, raw.output, try_output_dir);
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
    if raw.groups.is_empty() {
        c.fail("groups", "needs at least one group");
    }
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut groups = Vec::new();
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
    if !c.literal_secrets.is_empty() && readable_by_all(path) {
        c.warnings.push(format!(
            "{} is readable by every user and holds secrets written in it ({}); \
             `chmod o-r` it, or take them from ${{VAR}} or a password_file",
            path.display(),
            c.literal_secrets.join(", ")
        ));
    }
    Ok(Config {
        source: path.to_path_buf(),
        interval,
        timeout,
        limit: raw.limit,
        limit_per_host: raw.limit_per_host,
        max_body,
        output,
        groups,
        metrics,
        warnings: c.warnings,
    })
}

/// Whether the agent can create files in `dir`, or create `dir` itself: a
/// file is made and removed in the nearest directory that exists. Asking the
/// file system is the only sure way (root, read-only mounts, ACLs).
fn can_write_in(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(format!("{} is not a directory", at.display()));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = at.join(format!(
        "{}{}-{nanos}",
        super::WRITE_PROBE_PREFIX,
        std::process::id()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot write in {}: {e}; the user the agent runs as needs write access there",
            at.display()
        )),
    }
}

/// A small file the config names (a password, CA certificates): a regular
/// file of at most `limit` bytes, so a path such as /dev/zero or a FIFO can
/// never hang `check` or a reload.
fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{} is larger than {}; is it the right file?",
            path.display(),
            super::HumanSize(limit)
        ));
    }
    Ok(bytes)
}

/// Whether users other than the owner and group may read `path`.
fn readable_by_all(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// The URL as logs, errors, `Debug` and `check` show it: no password, the
/// query (which may carry a token) as `?<redacted>`, and a `${VAR}` in the
/// rest left as written, so no value from the environment is ever printed.
fn shown_url(raw: &str, url: &url::Url) -> String {
    let expanded = url.to_string();
    let written = if raw.split('?').next().unwrap_or("").contains("${") {
        raw.trim()
    } else {
        &expanded
    };
    let (base, query) = match written.find(['?', '#']) {
        Some(i) => (&written[..i], true),
        None => (written, false),
    };
    let mut shown = base.to_string();
    // Keep the user, hide the password.
    if let Some(range) = url_password(&shown) {
        shown.replace_range(range, "<redacted>");
    }
    if query {
        shown.push_str("?<redacted>");
    }
    shown
}

/// Where the password of `scheme://user:password@host/...` is in `text`.
fn url_password(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find("://")? + 3;
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let at = start + text[start..end].rfind('@')?;
    let colon = start + text[start..at].find(':')?;
    Some(colon + 1..at)
}

/// Letters, digits, `_`, `-`, `.`: group names and sensor ids.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
}

fn output(c: &mut Checker, o: RawOutput, try_dir: bool) -> Output {
    if o.dir.as_os_str().is_empty() {
        c.fail("output.dir", "must not be empty");
    } else if o.dir.exists() && !o.dir.is_dir() {
        c.fail(
            "output.dir",
            format!("{} exists and is not a directory", o.dir.display()),
        );
    } else if let Some(Err(message)) = try_dir.then(|| can_write_in(&o.dir)) {
        c.fail("output.dir", message);
    }
    if !is_name(&o.prefix) || o.prefix.starts_with('.') {
        c.fail(
            "output.prefix",
            format!(
                "`{}` is not a usable file name prefix; use letters, digits, `_`, `-`, `.`",
                o.prefix
            ),
        );
    }
    let max_size = o
        .rotate
        .max_size
        .as_ref()
        .and_then(|s| c.size("output.rotate.max_size", s));
    if max_size.is_some_and(|s| s < 256) {
        c.fail(
            "output.rotate.max_size",
            "must be at least 256 bytes (one header and a row)",
        );
    }
    let every = o
        .rotate
        .every
        .as_deref()
        .and_then(|e| c.duration("output.rotate.every", e));
    if every.is_some_and(|e| e < Duration::from_secs(1)) {
        c.fail("output.rotate.every", "must be at least 1s");
    }
    if o.keep == 0 {
        c.fail("output.keep", "must be at least 1 (rotated files kept)");
    }
    let fsync = match o.fsync.trim() {
        "rotate" => Fsync::Rotate,
        "always" => Fsync::Always,
        other => match humantime::parse_duration(other) {
            Ok(d) if !d.is_zero() => Fsync::Every(d),
            _ => {
                c.fail(
                    "output.fsync",
                    format!("`{other}` is not `rotate`, `always` or a duration such as 30s"),
                );
                Fsync::Rotate
            }
        },
    };
    if o.decimals > 12 {
        c.fail("output.decimals", "must be at most 12");
    }
    if o.queue == 0 {
        c.fail("output.queue", "must be at least 1");
    }
    Output {
        dir: o.dir,
        prefix: o.prefix,
        max_size,
        every,
        keep: o.keep,
        compress: o.compress,
        fsync,
        decimals: o.decimals,
        queue: o.queue,
    }
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
    let mut sensors = Vec::new();
    for (si, s) in g.sensors.into_iter().enumerate() {
        let skey = format!("{key}.sensors[{si}]");
        if !ids.insert(s.id.clone()) {
            c.fail(
                format!("{skey}.id"),
                format!("sensor id `{}` is used twice", s.id),
            );
        }
        if let Some(s) = sensor(c, &skey, s, g.unit, timing) {
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

fn sensor(
    c: &mut Checker,
    key: &str,
    s: RawSensor,
    group_unit: super::Unit,
    timing: (Option<Duration>, Duration),
) -> Option<Sensor> {
    let (interval, default_timeout) = timing;
    if !is_name(&s.id) {
        c.fail(
            format!("{key}.id"),
            format!(
                "`{}` is not a usable sensor id; use letters, digits, `_`, `-`, `.`",
                s.id
            ),
        );
    }
    let url =
        c.expand(&format!("{key}.url"), &s.url)
            .and_then(|text| match url::Url::parse(&text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    Some(u)
                }
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    c.fail(
                        format!("{key}.url"),
                        format!("scheme `{}` is not http or https", u.scheme()),
                    );
                    None
                }
                Ok(_) => {
                    c.fail(format!("{key}.url"), "has no host");
                    None
                }
                Err(e) => {
                    c.fail(format!("{key}.url"), format!("not a URL ({e})"));
                    None
                }
            });
    let selector = selector(c, &format!("{key}.value"), s.format, s.value.as_deref());
    let mut headers = Vec::new();
    for (name, value) in &s.headers {
        let hkey = format!("{key}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.fail(&hkey, format!("`{name}` is not a valid HTTP header name"));
            continue;
        }
        if !value.expose().contains("${") {
            c.literal_secrets.push(hkey.clone());
        }
        if let Some(v) = c.expand(&hkey, value.expose()) {
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                c.fail(
                    &hkey,
                    "value is not a valid HTTP header value (control characters?)",
                );
            } else {
                headers.push((name.clone(), Secret::new(v)));
            }
        }
    }
    let basic_auth = s.basic_auth.and_then(|b| {
        let bkey = format!("{key}.basic_auth");
        let username = c.expand(&format!("{bkey}.username"), &b.username)?;
        let password = match (b.password, b.password_file) {
            (Some(_), Some(_)) => {
                c.fail(&bkey, "give either password or password_file, not both");
                return None;
            }
            (Some(p), None) => {
                let pkey = format!("{bkey}.password");
                if !p.expose().contains("${") {
                    c.literal_secrets.push(pkey.clone());
                }
                Some(Secret::new(c.expand(&pkey, p.expose())?))
            }
            (None, Some(file)) => match read_small(&file, 64 * 1024).and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", file.display()))
            }) {
                Ok(text) => {
                    if readable_by_all(&file) {
                        c.warnings.push(format!(
                            "{bkey}.password_file: {} is readable by every user; `chmod o-r` it",
                            file.display()
                        ));
                    }
                    Some(Secret::new(text.trim_end_matches(['\r', '\n']).to_string()))
                }
                Err(e) => {
                    c.fail(format!("{bkey}.password_file"), e);
                    return None;
                }
            },
            (None, None) => None,
        };
        Some(BasicAuth { username, password })
    });
    if let Some(ca) = &s.tls.ca_file {
        match read_small(ca, 1024 * 1024) {
            Ok(pem) => {
                if reqwest::Certificate::from_pem_bundle(&pem)
                    .map_or(true, |certs| certs.is_empty())
                {
                    c.fail(
                        format!("{key}.tls.ca_file"),
                        format!("{} holds no PEM certificate", ca.display()),
                    );
                }
            }
            Err(e) => c.fail(format!("{key}.tls.ca_file"), e),
        }
    }
    let timeout = s
        .timeout
        .as_deref()
        .and_then(|t| c.duration(&format!("{key}.timeout"), t));
    if let (Some(t), Some(interval)) = (timeout, interval) {
        if t.is_zero() || t >= interval {
            c.fail(
                format!("{key}.timeout"),
                format!(
                    "must be greater than 0 and shorter than interval ({})",
                    show_duration(interval)
                ),
            );
        }
    }
    let url = url?;
    if url_password(&s.url).is_some_and(|r| !r.is_empty() && !s.url[r].contains("${")) {
        c.literal_secrets.push(format!("{key}.url"));
    }
    let shown_url = shown_url(&s.url, &url);
    let host = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    );
    if s.tls.insecure {
        c.warnings.push(format!(
            "{key}.tls.insecure is set: certificates of {host} are not verified"
        ));
    }
    Some(Sensor {
        id: s.id,
        url,
        shown_url,
        host,
        format: s.format,
        selector: selector?,
        unit: s.unit.unwrap_or(group_unit),
        headers,
        basic_auth,
        tls: Tls {
            insecure: s.tls.insecure,
            ca_file: s.tls.ca_file,
        },
        timeout: timeout.unwrap_or(default_timeout),
    })
}

fn selector(c: &mut Checker, key: &str, format: Format, value: Option<&str>) -> Option<Selector> {
    match (format, value) {
        (Format::Text, None) => Some(Selector::Text),
        (Format::Text, Some(_)) => {
            c.fail(key, "format text reads the whole body; remove `value`");
            None
        }
        (_, None) => {
            c.fail(
                key,
                format!(
                    "format {} needs `value` (where the number is in the body)",
                    format.as_str()
                ),
            );
            None
        }
        (Format::Json, Some(p)) => match check_pointer(p) {
            Ok(()) => Some(Selector::JsonPointer(p.to_string())),
            Err(why) => {
                c.fail(key, format!("not a JSON pointer: {why}"));
                None
            }
        },
        (Format::Prometheus, Some(s)) => match parse_prom_selector(s) {
            Ok(sel) => Some(Selector::Prometheus(sel)),
            Err(why) => {
                c.fail(key, format!("not a Prometheus selector: {why}"));
                None
            }
        },
    }
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is only `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`, e.g. /temperature"));
    }
    let bytes = p.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')) {
            return Err(format!("`~` at byte {i} must be followed by 0 or 1"));
        }
    }
    Ok(())
}

/// `metric_name` or `metric_name{label="value",other="x"}`.
pub(crate) fn parse_prom_selector(s: &str) -> Result<PromSelector, String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_name {
        return Err(format!("`{s}`: metric name `{name}` is not valid"));
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let Some(body) = rest.strip_suffix('}') else {
            return Err(format!("`{s}`: missing closing `}}`"));
        };
        let mut body = body.trim();
        while !body.is_empty() {
            let Some(eq) = body.find('=') else {
                return Err(format!("`{s}`: expected label=\"value\""));
            };
            let label = body[..eq].trim();
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{s}`: label name `{label}` is not valid"));
            }
            let after = body[eq + 1..].trim_start();
            let Some(quoted) = after.strip_prefix('"') else {
                return Err(format!(
                    "`{s}`: value of `{label}` must be in double quotes"
                ));
            };
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    other => value.push(other),
                }
            }
            let Some(end) = end else {
                return Err(format!("`{s}`: unterminated value of `{label}`"));
            };
            labels.push((label.to_string(), value));
            body = quoted[end + 1..].trim_start();
            if let Some(r) = body.strip_prefix(',') {
                body = r.trim_start();
            } else if !body.is_empty() {
                return Err(format!("`{s}`: expected `,` between labels"));
            }
        }
    }
    Ok(PromSelector {
        name: name.to_string(),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prom_selectors() {
        let s = parse_prom_selector(r#"temp_celsius{sensor="gh-1", room="a\"b"}"#).unwrap();
        assert_eq!(s.name, "temp_celsius");
        assert_eq!(
            s.labels,
            vec![
                ("sensor".into(), "gh-1".into()),
                ("room".into(), "a\"b".into())
            ]
        );
        assert!(parse_prom_selector("temp").unwrap().labels.is_empty());
        assert!(parse_prom_selector("1temp").is_err());
        assert!(parse_prom_selector("temp{a=b}").is_err());
        assert!(parse_prom_selector("temp{a=\"b\"").is_err());
    }

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
        let raw: RawConfig = serde_yaml_ng::from_str(text).unwrap();
        let env = |name: &str| match name {
            "TOKEN" => Some("tok-secret".to_string()),
            "PW" => Some("pw-secret".to_string()),
            _ => None,
        };
        let config = resolve(raw, Path::new("t.yaml"), &env, false).unwrap();
        let sensor = &config.groups[0].sensors[0];
        assert_eq!(sensor.url.password(), Some("pw-secret"));
        assert_eq!(
            sensor.shown_url,
            "http://u:<redacted>@127.0.0.1:9/${TOKEN}/t?<redacted>"
        );
        let debug = format!("{config:?} {config:#?} {sensor:?}");
        for secret in ["tok-secret", "pw-secret", "lit-secret"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("<redacted>"));
        assert_eq!(
            shown_url("http://h/a?b", &url::Url::parse("http://h/a?b").unwrap()),
            "http://h/a?<redacted>"
        );
        assert_eq!(
            shown_url("http://h:1/a", &url::Url::parse("http://h:1/a").unwrap()),
            "http://h:1/a"
        );
        assert_eq!(url_password("http://u:p@h/x@y"), Some(9..10));
        assert_eq!(url_password("http://u@h/a:b@c"), None);
        assert_eq!(url_password("http://h/?a=b:c@d"), None);
    }

    #[test]
    fn pointers() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/a/b~1c/~0").is_ok());
        assert!(check_pointer("a").is_err());
        assert!(check_pointer("/a~2").is_err());
    }
}
