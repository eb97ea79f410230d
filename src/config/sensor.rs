//! Rules for one sensor: its id, URL, selector, headers, basic auth, CA
//! file and timeout, resolved into a [`Sensor`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::Checker;
use super::model::{BasicAuth, Extra, Sensor, SensorUrl, Tls};
use super::probe::read_small;
use super::raw::Unit;
use super::raw::{BodyFormat, RawSensor};
use super::secrets;
use super::values::{Secret, show_duration};
use crate::extract::selector::{Selector, check_pointer, parse_prom_selector};
use crate::history::row::is_name;

/// Resolve the sensor at `key`; `None` when it is unusable (the problems
/// are reported). `timing` is as for a group.
pub(super) fn resolve(
    c: &mut Checker,
    key: &str,
    s: RawSensor,
    group_unit: Unit,
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
    let url = http_url(c, &format!("{key}.url"), &s.url).and_then(|u| {
        let made = SensorUrl::new(&u, &s.id);
        if made.is_none() {
            c.fail(format!("{key}.url"), "is too long");
        }
        made
    });
    // No format: already reported by the reader, and nothing to judge `value` by.
    let selector = s
        .format
        .and_then(|format| selector(c, &format!("{key}.value"), format, s.value.as_deref()));
    let headers = headers(c, key, &s.headers);
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
                Some(Secret::new(c.secret(&pkey, p.expose())?))
            }
            (None, Some(file)) => match secrets::read_password_file(&bkey, &c.path(&file)) {
                Ok((password, warning)) => {
                    c.warnings.extend(warning);
                    Some(password)
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
    let ca_file = ca_file(c, key, s.tls.ca_file.as_deref());
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
    if secrets::url_has_literal_password(&s.url) {
        c.literal_secrets.push(format!("{key}.url"));
    }
    let host = url.host();
    if s.tls.insecure {
        c.warnings.push(format!(
            "{key}.tls.insecure is set: certificates of {host} are not verified"
        ));
    }
    let extra = Extra {
        headers: headers.into_boxed_slice(),
        basic_auth,
        tls: Tls {
            insecure: s.tls.insecure,
            ca_file,
        },
        written_url: secrets::written_url(&s.url).map(Box::from),
    };
    Some(Sensor {
        url,
        format: s.format?,
        selector: selector?,
        unit: s.unit.unwrap_or(group_unit),
        timeout: timeout.unwrap_or(default_timeout),
        extra: (extra != Extra::default()).then(|| Box::new(extra)),
    })
}

/// The http(s) URL `written` at `key`, `${VAR}`s expanded; sensors and
/// forward targets alike.
pub(super) fn http_url(c: &mut Checker, key: &str, written: &str) -> Option<url::Url> {
    let text = c.expand(key, written)?;
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            c.fail(key, format!("scheme `{}` is not http or https", u.scheme()));
            None
        }
        Ok(_) => {
            c.fail(key, "has no host");
            None
        }
        Err(e) => {
            c.fail(key, format!("not a URL ({e})"));
            None
        }
    }
}

/// The HTTP headers at `{key}.headers`, their values secrets (`${VAR}`
/// expanded); sensors and forward targets send them alike.
pub(super) fn headers(
    c: &mut Checker,
    key: &str,
    written: &BTreeMap<String, Secret>,
) -> Vec<(Box<str>, Secret)> {
    let mut headers = Vec::new();
    for (name, value) in written {
        let hkey = format!("{key}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.fail(&hkey, format!("`{name}` is not a valid HTTP header name"));
            continue;
        }
        if let Some(v) = c.secret(&hkey, value.expose()) {
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                c.fail(
                    &hkey,
                    "value is not a valid HTTP header value (control characters?)",
                );
            } else {
                headers.push((name.as_str().into(), Secret::new(v)));
            }
        }
    }
    headers
}

/// `{key}.tls.ca_file`, taken from the config's directory, checked to hold
/// a PEM certificate.
pub(super) fn ca_file(c: &mut Checker, key: &str, written: Option<&Path>) -> Option<PathBuf> {
    let ca = c.path(written?);
    match read_small(&ca, 1024 * 1024) {
        Ok(pem) => {
            if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |certs| certs.is_empty()) {
                c.fail(
                    format!("{key}.tls.ca_file"),
                    format!("{} holds no PEM certificate", ca.display()),
                );
            }
        }
        Err(e) => c.fail(format!("{key}.tls.ca_file"), e),
    }
    Some(ca)
}

/// The selector `value` is for a body of `format`, in the grammar
/// [`crate::extract::selector`] defines (extraction reads bodies by it).
fn selector(
    c: &mut Checker,
    key: &str,
    format: BodyFormat,
    value: Option<&str>,
) -> Option<Selector> {
    match (format, value) {
        (BodyFormat::Text, None) => Some(Selector::Text),
        (BodyFormat::Text, Some(_)) => {
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
        (BodyFormat::Json, Some(p)) => match check_pointer(p) {
            Ok(()) => Some(Selector::JsonPointer(p.to_string())),
            Err(why) => {
                c.fail(key, format!("not a JSON pointer: {why}"));
                None
            }
        },
        (BodyFormat::Prometheus, Some(s)) => match parse_prom_selector(s) {
            Ok(sel) => Some(Selector::Prometheus(Box::new(sel))),
            Err(why) => {
                c.fail(key, format!("not a Prometheus selector: {why}"));
                None
            }
        },
    }
}
