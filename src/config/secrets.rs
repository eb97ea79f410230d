//! Secrets in `agent.yaml`: `${VAR}` expansion, password files, the warnings
//! about secrets other users can read, and the redacted form of a URL.
//!
//! One place decides what may be shown: a value taken from the environment
//! or a password file never reaches a log line, an error or `check`'s plan,
//! and a secret typed into the file itself is named (by key, not value) when
//! the file is readable by every user.

use std::path::Path;

use super::probe::{read_small, readable_by_all};
use super::values::Secret;

/// Looks up an environment variable (a parameter so tests need not touch the
/// process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replace each `${NAME}` in `text` by the variable's value; the error is
/// about the first `${...}` that cannot be replaced.
pub(super) fn expand(text: &str, env: Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without a closing `}`; write ${NAME}".to_string());
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable name"
            ));
        }
        match env(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a secret as `written` is typed into the file itself rather than
/// taken from `${VAR}`.
pub(super) fn is_literal(written: &str) -> bool {
    !written.contains("${")
}

/// The password in `file` (`{bkey}.password_file`), without the line end an
/// editor leaves; with a warning when every user may read the file.
pub(super) fn read_password_file(
    bkey: &str,
    file: &Path,
) -> Result<(Secret, Option<String>), String> {
    let text = read_small(file, 64 * 1024).and_then(|b| {
        String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", file.display()))
    })?;
    let warning = readable_by_all(file).then(|| {
        format!(
            "{bkey}.password_file: {} is readable by every user; `chmod o-r` it",
            file.display()
        )
    });
    let password = Secret::new(text.trim_end_matches(['\r', '\n']).to_string());
    Ok((password, warning))
}

/// The warning for a config file at `path` that every user may read while it
/// holds secrets written in it (`literal`: their key paths).
pub(super) fn readable_config_warning(path: &Path, literal: &[String]) -> Option<String> {
    (!literal.is_empty() && readable_by_all(path)).then(|| {
        format!(
            "{} is readable by every user and holds secrets written in it ({}); \
             `chmod o-r` it, or take them from ${{VAR}} or a password_file",
            path.display(),
            literal.join(", ")
        )
    })
}

/// Whether the URL as `written` holds a password typed into the file itself.
pub(super) fn url_has_literal_password(written: &str) -> bool {
    url_password(written).is_some_and(|r| !r.is_empty() && !written[r].contains("${"))
}

/// The URL as written in the config when it holds a `${VAR}` before any
/// query: what [`redacted_url`] must start from, rather than the expanded
/// URL, so no value from the environment is ever printed.
pub(super) fn written_url(raw: &str) -> Option<&str> {
    raw.split('?')
        .next()
        .unwrap_or("")
        .contains("${")
        .then(|| raw.trim())
}

/// The URL as logs, errors, `Debug` and `check` show it, from the URL as
/// `written` (see [`written_url`]) or else the expanded URL's text: no
/// password, the query (which may carry a token) as `?<redacted>`.
pub(super) fn redacted_url(written: &str) -> String {
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
pub(super) fn url_password(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find("://")? + 3;
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let at = start + text[start..end].rfind('@')?;
    let colon = start + text[start..at].find(':')?;
    Some(colon + 1..at)
}
