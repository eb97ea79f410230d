//! Where the number is in a body: the [`Selector`] types and the grammar of
//! their text as `agent.yaml` writes it.
//!
//! The grammar lives here, beside extraction, because it is used twice: the
//! config check parses a sensor's `value` with it, and the Prometheus reader
//! parses the label sets of the lines it scans with the same rules, so a
//! selector and the series it names are always read alike. It depends on
//! nothing else in the crate.

use std::fmt;

/// How to find the reading in a response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// RFC 6901 pointer into a JSON document (`/temperature_f`).
    JsonPointer(String),
    /// A Prometheus series: `name{label="value",...}`.
    Prometheus(Box<PromSelector>),
    /// The whole body is the number.
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromSelector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Selector::JsonPointer(p) => write!(f, "{p}"),
            Selector::Prometheus(s) => {
                write!(f, "{}", s.name)?;
                if !s.labels.is_empty() {
                    let labels: Vec<String> = s
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{v}\""))
                        .collect();
                    write!(f, "{{{}}}", labels.join(","))?;
                }
                Ok(())
            }
            Selector::Text => f.write_str("(body)"),
        }
    }
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is only `~0` or `~1`.
pub(crate) fn check_pointer(p: &str) -> Result<(), String> {
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
    fn pointers() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/a/b~1c/~0").is_ok());
        assert!(check_pointer("a").is_err());
        assert!(check_pointer("/a~2").is_err());
    }
}
