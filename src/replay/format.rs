//! Output formats of `replay`: the recorded CSV unchanged, JSON lines, or
//! InfluxDB line protocol (which VictoriaMetrics also accepts).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::read::{COLUMNS, View, digits, fast_decimal};

/// How replayed rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The recorded lines, byte for byte, under one header.
    Csv,
    /// One JSON object per row; empty values are `null`.
    Jsonl,
    /// InfluxDB line protocol; empty values are left out.
    Influx,
}

impl Format {
    /// What goes before the first row.
    pub fn header(self) -> Option<String> {
        match self {
            Format::Csv => Some(format!("{}\n", COLUMNS.join(","))),
            _ => None,
        }
    }

    /// The HTTP content type of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Jsonl => "application/x-ndjson",
            Format::Influx => "text/plain; charset=utf-8",
        }
    }
}

/// Encodes rows in one format. What is the same for every row (the escaped
/// measurement name) is prepared once: this runs for every replayed row.
#[derive(Clone)]
pub struct Encoder {
    format: Format,
    /// Line protocol's `MEASUREMENT,group=`.
    influx_prefix: Vec<u8>,
    /// The last time written in line protocol, and its digits: the rows of
    /// one tick (one per group) share it.
    last_time: Option<SystemTime>,
    last_ns: Vec<u8>,
}

impl Encoder {
    pub fn new(format: Format, measurement: &str) -> Encoder {
        let mut influx_prefix = Vec::new();
        escape(measurement.as_bytes(), b", ", &mut influx_prefix);
        influx_prefix.extend_from_slice(b",group=");
        Encoder {
            format,
            influx_prefix,
            last_time: None,
            last_ns: Vec::new(),
        }
    }

    /// Append `row` as one line to `out`.
    pub fn encode(&mut self, row: &View, out: &mut Vec<u8>) {
        match self.format {
            Format::Csv => csv_line(row, out),
            Format::Jsonl => json_line(row, out),
            Format::Influx => {
                if self.last_time != Some(row.time) {
                    // u64 nanoseconds reach the year 2554.
                    let ns = row
                        .time
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    let ns = u64::try_from(ns).unwrap_or(u64::MAX);
                    self.last_ns.clear();
                    self.last_ns
                        .extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
                    self.last_time = Some(row.time);
                }
                influx_line(row, &self.influx_prefix, &self.last_ns, out)
            }
        }
    }
}

/// `r` as a CSV line: the recorded line, byte for byte. The reader splits
/// on every comma (quotes mean nothing in our files) and [`super::read`]
/// admits no field with a quote or line break, so joining the fields with
/// commas gives the line back.
pub(crate) fn csv_line(r: &View, out: &mut Vec<u8>) {
    for (i, field) in r.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(field);
    }
    out.push(b'\n');
}

/// A count as recorded (checked by [`super::read::parse`]), written anew so
/// that `007` comes out as `7`.
fn push_count(field: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        itoa::Buffer::new()
            .format(digits(field).unwrap_or(0))
            .as_bytes(),
    );
}

fn json_line(r: &View, out: &mut Vec<u8>) {
    // The time (RFC 3339), the group (a group name) and the unit were
    // checked by the reader: none holds anything a JSON string must escape.
    let f = &r.fields;
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(f[0]);
    out.extend_from_slice(b"\",\"group\":\"");
    out.extend_from_slice(f[1]);
    out.push(b'"');
    // Numbers are written as recorded (already checked to be finite), so
    // the decimals the agent chose survive.
    let names = [&b",\"mean\":"[..], b",\"min\":", b",\"max\":"];
    for (name, &field) in names.iter().zip(&f[2..5]) {
        out.extend_from_slice(name);
        let text = std::str::from_utf8(field).unwrap_or_default();
        if text.is_empty() {
            out.extend_from_slice(b"null");
        } else if is_json_number(text) {
            out.extend_from_slice(field);
        } else {
            let v = fast_decimal(field)
                .or_else(|| text.parse::<f64>().ok())
                .unwrap_or_default();
            let _ = write!(out, "{v}");
        }
    }
    out.extend_from_slice(b",\"unit\":\"");
    out.extend_from_slice(f[5]);
    out.extend_from_slice(b"\",\"ok\":");
    push_count(f[6], out);
    out.extend_from_slice(b",\"failed\":");
    push_count(f[7], out);
    out.extend_from_slice(b"}\n");
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let int_end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if int_end == 0 || (b[0] == b'0' && int_end > 1) {
        return false;
    }
    let mut rest = &b[int_end..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if let Some(exp) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exp = exp
            .strip_prefix(b"+")
            .or_else(|| exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        return !exp.is_empty() && exp.iter().all(u8::is_ascii_digit);
    }
    rest.is_empty()
}

fn influx_line(r: &View, prefix: &[u8], ns: &[u8], out: &mut Vec<u8>) {
    out.reserve(prefix.len() + ns.len() + 128);
    out.extend_from_slice(prefix);
    // A group name (checked by the reader) needs no escaping.
    out.extend_from_slice(r.fields[1]);
    let mut first = true;
    for (name, value) in COLUMNS[2..5].iter().zip(&r.fields[2..5]) {
        if value.is_empty() {
            continue;
        }
        out.push(if first { b' ' } else { b',' });
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
    }
    out.extend_from_slice(if first { b" ok=" } else { b",ok=" });
    push_count(r.fields[6], out);
    out.extend_from_slice(b"i,failed=");
    push_count(r.fields[7], out);
    out.extend_from_slice(b"i ");
    let ns = r
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
    out.push(b'\n');
}

/// Backslash-escape `special` bytes (and backslashes) as line protocol
/// wants; all of them are ASCII, so UTF-8 passes through whole.
fn escape(text: &[u8], special: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if b == b'\\' || special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::replay::read::Record;

    fn record(line: &str) -> Record {
        Record::from_line(line).unwrap()
    }

    #[test]
    fn json_numbers() {
        for ok in ["0", "21.235", "-1.5", "1e5", "2.5E-3"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [".5", "21.", "01", "-", "1e", "nan", ""] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn formats() {
        let full = record("2026-11-24T10:00:05.000Z,greenhouse,21.235,20.100,22.000,celsius,3,1");
        let empty = record("2026-11-24T10:00:05.000Z,cold,,,,celsius,0,2");
        let enc = |f: Format, r: &Record| {
            let mut out = Vec::new();
            Encoder::new(f, "temperature").encode(&r.view(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            enc(Format::Csv, &full),
            "2026-11-24T10:00:05.000Z,greenhouse,21.235,20.100,22.000,celsius,3,1\n"
        );
        assert_eq!(
            enc(Format::Jsonl, &full),
            "{\"time\":\"2026-11-24T10:00:05.000Z\",\"group\":\"greenhouse\",\"mean\":21.235,\"min\":20.100,\"max\":22.000,\"unit\":\"celsius\",\"ok\":3,\"failed\":1}\n"
        );
        assert_eq!(
            enc(Format::Jsonl, &empty),
            "{\"time\":\"2026-11-24T10:00:05.000Z\",\"group\":\"cold\",\"mean\":null,\"min\":null,\"max\":null,\"unit\":\"celsius\",\"ok\":0,\"failed\":2}\n"
        );
        assert_eq!(
            enc(Format::Influx, &full),
            "temperature,group=greenhouse mean=21.235,min=20.100,max=22.000,ok=3i,failed=1i 1795514405000000000\n"
        );
        assert_eq!(
            enc(Format::Influx, &empty),
            "temperature,group=cold ok=0i,failed=2i 1795514405000000000\n"
        );
    }
}
