//! Small value types of the config file: human durations (`5s`, `1h 30m`),
//! human sizes (`64KiB`, `10MiB`, or a plain byte count) and secrets that
//! never show up in `Debug` output, logs or `check`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;

/// A size as written: a byte count or text with a unit (`64KiB`, `10MB`).
/// Parsed in validation, where the key path is known for the error.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeText {
    Bytes(u64),
    Text(String),
}

impl SizeText {
    pub fn parse(&self) -> Result<u64, String> {
        match self {
            SizeText::Bytes(n) => Ok(*n),
            SizeText::Text(t) => t
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| format!("`{t}` is not a size ({e}); write e.g. 64KiB or 10MiB")),
        }
    }
}

/// A parsed size, displayed with binary units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

/// Parse a humantime duration (`5s`, `250ms`, `1h 30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 5s, 250ms, 1h"))
}

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// A credential: a header value or a password. Its `Debug` and `Display`
/// print `<redacted>`; only [`Secret::expose`] gives the text, and only the
/// HTTP client calls it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Formats a duration the way a user would write it in `agent.yaml`.
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
