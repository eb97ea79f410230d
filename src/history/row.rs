//! One row of the history: its type, its columns, and its CSV form.
//!
//! Why here: the writer (`store`) and the readers (`replay`, `tail`) must
//! agree on every byte of a row. This file is the one place that says what
//! a row is; [`super::parse::parse`] is the one place that reads it back.
//!
//! A file is the [`HEADER`], then one line per row: an RFC 3339 UTC time
//! with milliseconds, the group (a [`is_name`] name), mean, min and max
//! (fixed decimals, empty when no reading was good), the unit, and the
//! counts of good and failed readings. No field ever needs quoting.

use std::time::{SystemTime, UNIX_EPOCH};

use csv_async::ByteRecord;
use serde::Deserialize;

/// Line 1 of every data file.
pub const HEADER: &str = "time,group,mean,min,max,unit,ok,failed\n";

/// The column names, in order.
pub const COLUMNS: [&str; 8] = [
    "time", "group", "mean", "min", "max", "unit", "ok", "failed",
];

/// Temperature units a sensor may report and a group may average in; a
/// row records the group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Celsius,
    Fahrenheit,
    Kelvin,
}

impl Unit {
    /// The unit as written in a row and in `agent.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Celsius => "celsius",
            Unit::Fahrenheit => "fahrenheit",
            Unit::Kelvin => "kelvin",
        }
    }

    /// The unit written as `b`, if it is one.
    pub fn from_bytes(b: &[u8]) -> Option<Unit> {
        match b {
            b"celsius" => Some(Unit::Celsius),
            b"fahrenheit" => Some(Unit::Fahrenheit),
            b"kelvin" => Some(Unit::Kelvin),
            _ => None,
        }
    }
}

/// One line of the CSV: a group's averages over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The window's scheduled start.
    pub time: SystemTime,
    pub group: String,
    /// `None` when no reading of the window was good.
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Unit,
    /// Good readings in the window.
    pub ok: u64,
    /// Failed readings in the window.
    pub failed: u64,
}

/// A name that may appear in a row or a file name (groups, sensor ids,
/// file prefixes): ASCII letters, digits, `_`, `-` and `.`, never empty.
/// No such name needs quoting in CSV or escaping in JSON or line protocol.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
}

/// One valid recorded row: the values, and the fields as they were written.
/// The reader reuses one `Record` for every row, so replaying allocates
/// nothing per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub row: Row,
    /// The fields exactly as recorded, for byte-identical CSV output.
    pub raw: ByteRecord,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            row: Row {
                time: SystemTime::UNIX_EPOCH,
                group: String::new(),
                mean: None,
                min: None,
                max: None,
                unit: Unit::Celsius,
                ok: 0,
                failed: 0,
            },
            raw: ByteRecord::new(),
        }
    }
}

impl Record {
    /// Field `i` as recorded (checked to be UTF-8 by [`super::parse::parse`]).
    pub fn field(&self, i: usize) -> &str {
        std::str::from_utf8(&self.raw[i]).unwrap_or_default()
    }

    /// This (parsed, so eight-field) row as a [`View`].
    pub fn view(&self) -> View<'_> {
        let mut fields = [&b""[..]; 8];
        for (slot, field) in fields.iter_mut().zip(self.raw.iter()) {
            *slot = field;
        }
        View {
            fields,
            time: self.row.time,
        }
    }
}

/// A row as the encoders see it: its fields as recorded, and its time.
pub struct View<'a> {
    pub fields: [&'a [u8]; 8],
    pub time: SystemTime,
}

impl Default for View<'_> {
    fn default() -> Self {
        View {
            fields: [b""; 8],
            time: UNIX_EPOCH,
        }
    }
}

/// `r` as a CSV line: the recorded line, byte for byte. The reader splits
/// on every comma (quotes mean nothing in our files) and [`super::parse::parse`]
/// admits no field with a quote or line break, so joining the fields with
/// commas gives the line back.
pub fn csv_line(r: &View, out: &mut Vec<u8>) {
    for (i, field) in r.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(field);
    }
    out.push(b'\n');
}

/// Rows as CSV bytes, through csv-async: quoting stays right whatever a
/// group name holds.
pub async fn encode(rows: &[Row], decimals: usize) -> Result<Vec<u8>, csv_async::Error> {
    let mut w = csv_async::AsyncWriterBuilder::new()
        .has_headers(false)
        .create_writer(Vec::with_capacity(rows.len() * 64));
    for row in rows {
        let num = |v: Option<f64>| v.map(|v| format_number(v, decimals)).unwrap_or_default();
        w.write_record([
            humantime::format_rfc3339_millis(row.time).to_string(),
            row.group.clone(),
            num(row.mean),
            num(row.min),
            num(row.max),
            row.unit.as_str().to_string(),
            row.ok.to_string(),
            row.failed.to_string(),
        ])
        .await?;
    }
    w.into_inner()
        .await
        .map_err(|e| csv_async::Error::from(std::io::Error::other(e.to_string())))
}

/// Fixed decimals, and never `-0.000`.
fn format_number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
        s[1..].to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(format_number(21.456789, 3), "21.457");
        assert_eq!(format_number(-0.0001, 3), "0.000");
        assert_eq!(format_number(-1.5, 1), "-1.5");
        assert_eq!(format_number(3.0, 0), "3");
    }
}
