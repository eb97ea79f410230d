//! Output formats of `replay`: the recorded CSV unchanged, JSON lines, or
//! InfluxDB line protocol (which VictoriaMetrics also accepts).

use std::io::Write;
use std::time::UNIX_EPOCH;

use super::read::{COLUMNS, Record};

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

    /// Append `record` as one line to `out`.
    pub fn encode(self, record: &Record, measurement: &str, out: &mut Vec<u8>) {
        match self {
            Format::Csv => csv_line(record, out),
            Format::Jsonl => json_line(record, out),
            Format::Influx => influx_line(record, measurement, out),
        }
    }
}

fn csv_line(r: &Record, out: &mut Vec<u8>) {
    for (i, field) in r.raw.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        {
            out.push(b'"');
            for b in field {
                if *b == b'"' {
                    out.push(b'"');
                }
                out.push(*b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
    out.push(b'\n');
}

fn json_line(r: &Record, out: &mut Vec<u8>) {
    // Numbers are written as recorded (already checked to be finite), so
    // the decimals the agent chose survive.
    let values = [r.row.mean, r.row.min, r.row.max];
    let raw = |i: usize| match values[i - 2] {
        None => "null".to_string(),
        Some(_) if is_json_number(r.field(i)) => r.field(i).to_string(),
        Some(v) => v.to_string(),
    };
    let _ = write!(out, "{{\"time\":");
    let _ = serde_json::to_writer(&mut *out, r.field(0));
    let _ = write!(out, ",\"group\":");
    let _ = serde_json::to_writer(&mut *out, &r.row.group);
    let _ = writeln!(
        out,
        ",\"mean\":{},\"min\":{},\"max\":{},\"unit\":\"{}\",\"ok\":{},\"failed\":{}}}",
        raw(2),
        raw(3),
        raw(4),
        r.row.unit.as_str(),
        r.row.ok,
        r.row.failed
    );
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

fn influx_line(r: &Record, measurement: &str, out: &mut Vec<u8>) {
    escape(measurement, &[',', ' '], out);
    out.extend_from_slice(b",group=");
    escape(&r.row.group, &[',', ' ', '='], out);
    let mut first = true;
    for (name, value) in COLUMNS.iter().zip(r.raw.iter()).take(5).skip(2) {
        if value.is_empty() {
            continue;
        }
        out.push(if first { b' ' } else { b',' });
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
    }
    let _ = write!(
        out,
        "{}ok={}i,failed={}i ",
        if first { " " } else { "," },
        r.row.ok,
        r.row.failed
    );
    let ns = r
        .row
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let _ = writeln!(out, "{ns}");
}

/// Backslash-escape `chars` (and backslashes) as line protocol wants.
fn escape(text: &str, chars: &[char], out: &mut Vec<u8>) {
    for c in text.chars() {
        if c == '\\' || chars.contains(&c) {
            out.push(b'\\');
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            f.encode(r, "temperature", &mut out);
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
