//! Response body -> number, for each sensor format.
//!
//! Every failure says what was wrong in words fit for a log line; the number
//! itself is checked for finiteness later, in [`crate::units`].
//!
//! This layer sits below `config`: it imports nothing from it. The selector
//! types and their grammar are in [`selector`], which `config` uses to check
//! a sensor's `value`.

pub mod selector;

pub use selector::{PromSelector, Selector};

/// Why no number could be read from a body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// With the start of the body: an HTML login page or an error text
    /// is recognisable at a glance.
    #[error("body is not valid JSON ({error}): {start}")]
    Json { error: String, start: String },
    #[error("JSON pointer {0} not found in body")]
    Missing(String),
    #[error("value at {pointer} is {found}, not a number")]
    NotNumber { pointer: String, found: String },
    #[error("no series {0} in body")]
    NoSeries(String),
    #[error("{count} series match {selector}; add labels to pick one")]
    Ambiguous { selector: String, count: usize },
    #[error("body is not a number: {0}")]
    Text(String),
    #[error("body is not UTF-8 text")]
    NotUtf8,
}

/// Read the number `selector` points at in `body`.
pub fn extract(body: &[u8], selector: &Selector) -> Result<f64, ExtractError> {
    match selector {
        Selector::JsonPointer(p) => json(body, p),
        Selector::Prometheus(s) => prometheus(body, s),
        Selector::Text => {
            let text = std::str::from_utf8(body).map_err(|_| ExtractError::NotUtf8)?;
            parse_number(text.trim()).ok_or_else(|| ExtractError::Text(snippet(text)))
        }
    }
}

/// A short, single-line excerpt of untrusted text for messages.
fn snippet(text: &str) -> String {
    let flat: String = text
        .trim()
        .chars()
        .take(40)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > 40 {
        format!("`{flat}...`")
    } else {
        format!("`{flat}`")
    }
}

/// A decimal number; also the spellings of non-finite values a sensor may
/// send (they are refused later with a clear reason).
fn parse_number(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    match text {
        "NaN" | "nan" => return Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "Infinity" => return Some(f64::INFINITY),
        "-Inf" | "-inf" | "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust also accepts "infinity" spelled in odd cases; keep to digits.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    text.parse().ok()
}

fn json(body: &[u8], pointer: &str) -> Result<f64, ExtractError> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| ExtractError::Json {
        error: e.to_string(),
        start: snippet(&String::from_utf8_lossy(&body[..body.len().min(160)])),
    })?;
    let value = doc
        .pointer(pointer)
        .ok_or_else(|| ExtractError::Missing(pointer.to_string()))?;
    let not_number = |found: String| ExtractError::NotNumber {
        pointer: pointer.to_string(),
        found,
    };
    match value {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| not_number(n.to_string())),
        serde_json::Value::String(s) => {
            parse_number(s.trim()).ok_or_else(|| not_number(format!("the string {}", snippet(s))))
        }
        serde_json::Value::Null => Err(not_number("null".into())),
        serde_json::Value::Bool(b) => Err(not_number(b.to_string())),
        serde_json::Value::Array(_) => Err(not_number("an array".into())),
        serde_json::Value::Object(_) => Err(not_number("an object".into())),
    }
}

fn prometheus(body: &[u8], sel: &PromSelector) -> Result<f64, ExtractError> {
    let text = std::str::from_utf8(body).map_err(|_| ExtractError::NotUtf8)?;
    let shown = Selector::Prometheus(Box::new(sel.clone())).to_string();
    let mut found = None;
    let mut count = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(Sample {
            name,
            labels,
            value,
        }) = split_sample(line)
        else {
            continue;
        };
        if name != sel.name {
            continue;
        }
        let matches = sel
            .labels
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v));
        if matches {
            count += 1;
            found = Some(value);
        }
    }
    match (count, found) {
        (0, _) | (_, None) => Err(ExtractError::NoSeries(shown)),
        (1, Some(v)) => parse_number(v).ok_or_else(|| ExtractError::Text(snippet(v))),
        (n, _) => Err(ExtractError::Ambiguous {
            selector: shown,
            count: n,
        }),
    }
}

/// Split one sample line of the text exposition format into name, labels and
/// value (a trailing timestamp is ignored). Lines that do not parse are
/// skipped by the caller: they are not the series asked for.
fn split_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let close = find_label_end(rest)?;
        let sel = selector::parse_prom_selector(&line[..name_end + close + 1]).ok()?;
        labels = sel.labels;
        rest = &rest[close + 1..];
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// One sample line of the Prometheus text format.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: &'a str,
}

/// Index of the `}` closing a label set, skipping quoted values.
fn find_label_end(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::selector::parse_prom_selector;
    use super::*;

    fn ptr(p: &str) -> Selector {
        Selector::JsonPointer(p.into())
    }

    #[test]
    fn json_values() {
        let body =
            br#"{"t": 21.5, "s": "22.25", "bad": "warm", "n": null, "deep": {"a": [1, 2.5]}}"#;
        assert_eq!(extract(body, &ptr("/t")), Ok(21.5));
        assert_eq!(extract(body, &ptr("/s")), Ok(22.25));
        assert_eq!(extract(body, &ptr("/deep/a/1")), Ok(2.5));
        assert!(matches!(
            extract(body, &ptr("/bad")),
            Err(ExtractError::NotNumber { .. })
        ));
        assert!(matches!(
            extract(body, &ptr("/n")),
            Err(ExtractError::NotNumber { .. })
        ));
        assert!(matches!(
            extract(body, &ptr("/x")),
            Err(ExtractError::Missing(_))
        ));
        assert_eq!(
            extract(b"<html>\n<body>", &ptr("/t"))
                .unwrap_err()
                .to_string(),
            "body is not valid JSON (expected value at line 1 column 1): `<html> <body>`"
        );
        assert!(extract(br#"{"t": "NaN"}"#, &ptr("/t")).unwrap().is_nan());
    }

    #[test]
    fn prometheus_values() {
        let body = b"# HELP temp a\n# TYPE temp gauge\ntemp{sensor=\"a\",room=\"x y\"} 21.5 1700000000\ntemp{sensor=\"b\"} -3e1\nother 5\n";
        let sel = |s| Selector::Prometheus(Box::new(parse_prom_selector(s).unwrap()));
        assert_eq!(extract(body, &sel(r#"temp{sensor="a"}"#)), Ok(21.5));
        assert_eq!(extract(body, &sel(r#"temp{sensor="b"}"#)), Ok(-30.0));
        assert_eq!(extract(body, &sel("other")), Ok(5.0));
        assert!(matches!(
            extract(body, &sel("temp")),
            Err(ExtractError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            extract(body, &sel(r#"temp{sensor="c"}"#)),
            Err(ExtractError::NoSeries(_))
        ));
        assert!(extract(b"t +Inf\n", &sel("t")).unwrap().is_infinite());
    }

    #[test]
    fn text_values() {
        assert_eq!(extract(b" 21.5\n", &Selector::Text), Ok(21.5));
        assert!(matches!(
            extract(b"warm", &Selector::Text),
            Err(ExtractError::Text(_))
        ));
        assert!(matches!(
            extract(b"", &Selector::Text),
            Err(ExtractError::Text(_))
        ));
        assert!(matches!(
            extract(&[0xff, 0xfe], &Selector::Text),
            Err(ExtractError::NotUtf8)
        ));
    }
}
