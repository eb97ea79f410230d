//! Reading a row back: the one check every reader makes.
//!
//! Why here: the store's repair and index, replay and tail must agree on
//! what counts as a row. The shapes the agent writes (a millisecond UTC
//! time, plain decimals, counts) are read straight from the bytes; anything
//! else goes through the general parsers, which decide.

use std::time::{Duration, SystemTime};

use csv_async::ByteRecord;

use super::row::{COLUMNS, Record, Unit, View, is_name};

impl Record {
    /// Parse one CSV line of ours (no quoting: our fields never need it).
    pub fn from_line(line: &str) -> Result<Record, String> {
        let mut record = Record {
            raw: ByteRecord::from(
                line.trim_end_matches(['\n', '\r'])
                    .split(',')
                    .collect::<Vec<_>>(),
            ),
            ..Record::default()
        };
        parse(&mut record)?;
        Ok(record)
    }
}

/// Check and convert `record.raw` into the record's fields.
///
/// This runs for every replayed row, so the shapes the agent writes (a
/// millisecond UTC time, plain decimals, counts) are read straight from the
/// bytes; anything else goes through the general parsers, which decide.
pub fn parse(record: &mut Record) -> Result<(), String> {
    let r = &record.raw;
    if r.len() != COLUMNS.len() {
        return Err(format!("{} field(s), expected {}", r.len(), COLUMNS.len()));
    }
    let lossy = |i: usize| short(&String::from_utf8_lossy(&r[i]));
    record.row.time = time(&r[0]).ok_or_else(|| format!("time `{}` is not RFC 3339", lossy(0)))?;
    let group = std::str::from_utf8(&r[1]).map_err(|_| "group is not valid UTF-8".to_string())?;
    if group.is_empty() {
        return Err("empty group".into());
    }
    if !is_name(group) {
        return Err(format!("group `{}` is not a group name", short(group)));
    }
    let num = |i: usize| -> Result<Option<f64>, String> {
        let b = &r[i];
        if b.is_empty() {
            return Ok(None);
        }
        let v = fast_decimal(b).or_else(|| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        });
        match v {
            Some(v) => Ok(Some(v)),
            None => Err(format!("{} `{}` is not a number", COLUMNS[i], lossy(i))),
        }
    };
    let (mean, min, max) = (num(2)?, num(3)?, num(4)?);
    let unit =
        Unit::from_bytes(&r[5]).ok_or_else(|| format!("unit `{}` is not known", lossy(5)))?;
    let count = |i: usize| -> Result<u64, String> {
        digits(&r[i]).ok_or_else(|| format!("{} `{}` is not a count", COLUMNS[i], lossy(i)))
    };
    let (ok, failed) = (count(6)?, count(7)?);
    let row = &mut record.row;
    row.group.clear();
    row.group.push_str(group);
    (row.mean, row.min, row.max) = (mean, min, max);
    (row.unit, row.ok, row.failed) = (unit, ok, failed);
    Ok(())
}

/// A row's time field: the agent's own form read straight from the bytes,
/// any other RFC 3339 spelling through humantime.
pub fn time(b: &[u8]) -> Option<SystemTime> {
    fast_time(b).or_else(|| any_time(b))
}

/// Any RFC 3339 time, through humantime.
fn any_time(b: &[u8]) -> Option<SystemTime> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
}

/// An unsigned decimal integer (1 to 19 digits, so it fits a u64).
pub fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// `-?DIGITS(.DIGITS)?` with at most 15 digits in all: the mantissa is
/// exact in an f64 and one division by an exact power of ten rounds
/// correctly, so this equals `str::parse` for what it accepts.
pub fn fast_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(dot) => (&b[..dot], &b[dot + 1..]),
        None => (b, &b[b.len()..]),
    };
    let has_dot = int.len() < b.len();
    if int.is_empty() || (has_dot && frac.is_empty()) || int.len() + frac.len() > 15 {
        return None;
    }
    let mantissa = digits(int)? * 10u64.pow(frac.len() as u32)
        + if frac.is_empty() { 0 } else { digits(frac)? };
    let v = mantissa as f64 / POW10[frac.len()];
    Some(if negative { -v } else { v })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the agent's own time format (years 1970 to
/// 9999, real calendar dates); `None` sends anything else to humantime.
pub fn fast_time(b: &[u8]) -> Option<SystemTime> {
    let b: &[u8; 24] = b.try_into().ok()?;
    let sep = |i: usize, c: u8| b[i] == c;
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':'))
        || !(sep(19, b'.') && sep(23, b'Z'))
    {
        return None;
    }
    let n = |from: usize, to: usize| digits(&b[from..to]);
    let (year, month, day) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hour, minute, second, milli) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 (the civil-from-days inverse, March-based year).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era_days = y * 365 + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + day - 1;
    let days = era_days - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + milli))
}

fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Reads the rows of verified blocks. They passed [`parse`] when indexed,
/// so only the fields and the time are taken out, and rows of the same
/// minute (the first 17 bytes of the time) share the work of the date.
#[derive(Default, Clone)]
pub struct BlockRows {
    prefix: [u8; 17],
    minute: Option<SystemTime>,
}

impl BlockRows {
    /// Fill `view` with `line` (without its newline); false if it is not
    /// a row after all (an index made by something else than this
    /// program). Fills in place: this runs for every row.
    pub fn fill<'a>(&mut self, line: &'a [u8], view: &mut View<'a>) -> bool {
        if !split8(line, &mut view.fields) {
            return false;
        }
        match self.time(view.fields[0]) {
            Some(t) => {
                view.time = t;
                true
            }
            None => false,
        }
    }

    pub fn time(&mut self, b: &[u8]) -> Option<SystemTime> {
        if b.len() == 24 && b[..17] == self.prefix && b[19] == b'.' && b[23] == b'Z' {
            if let (Some(minute), Some(s), Some(ms)) =
                (self.minute, digits(&b[17..19]), digits(&b[20..23]))
            {
                if s < 60 {
                    return Some(minute + Duration::from_millis(s * 1000 + ms));
                }
            }
        }
        if let Some(t) = fast_time(b) {
            let into_minute = digits(&b[17..19])? * 1000 + digits(&b[20..23])?;
            self.prefix.copy_from_slice(&b[..17]);
            self.minute = Some(t - Duration::from_millis(into_minute));
            return Some(t);
        }
        any_time(b)
    }
}

/// The eight fields of `line`, or `None` if it has more or fewer.
///
/// Eight bytes at a time: a word XOR `,,,,,,,,` has a zero byte where a
/// comma is, found exactly (no borrow between bytes) by the high bit of
/// `((w & 0x7f..) + 0x7f..) | w`. A byte-by-byte split took most of a
/// replay's time for influx output.
pub fn split8<'a>(line: &'a [u8], fields: &mut [&'a [u8]; 8]) -> bool {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const COMMAS: u64 = 0x2c2c_2c2c_2c2c_2c2c;
    let mut n = 0;
    let mut start = 0;
    let words = line.chunks_exact(8);
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    let last = [u64::from_le_bytes(tail)];
    let all = words
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .chain(last);
    for (w, word) in all.enumerate() {
        let x = word ^ COMMAS;
        let mut hits = !(((x & LO7) + LO7) | x | LO7);
        // Zero padding XOR commas is not zero: no hit past the line's end.
        while hits != 0 {
            let at = w * 8 + (hits.trailing_zeros() / 8) as usize;
            let Some(field) = fields.get_mut(n) else {
                return false;
            };
            *field = &line[start..at];
            n += 1;
            start = at + 1;
            hits &= hits - 1;
        }
    }
    if n != 7 {
        return false;
    }
    fields[7] = &line[start..];
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The next of a xorshift sequence: test inputs without a dependency.
    pub(crate) fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn fast_time_agrees_with_humantime() {
        // Every 7 hours 13 minutes and a few ms, 1970 to 2110: all months,
        // leap days, year ends.
        let mut t = SystemTime::UNIX_EPOCH;
        let step = std::time::Duration::from_millis(7 * 3_600_000 + 13 * 60_000 + 7);
        for _ in 0..170_000 {
            let text = humantime::format_rfc3339_millis(t).to_string();
            assert_eq!(fast_time(text.as_bytes()), Some(t), "{text}");
            t += step;
        }
        for bad in [
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:60:00.000Z",
            "2026-01-01T00:00:60.000Z",
            "2026-01-01 00:00:00.000Z",
            "2026-01-01T00:00:00.000+",
            "1969-12-31T23:59:59.999Z",
            "2026-01-01T00:00:0x.000Z",
        ] {
            assert_eq!(fast_time(bad.as_bytes()), None, "{bad}");
        }
        assert!(fast_time(b"2024-02-29T12:00:00.000Z").is_some());
    }

    #[test]
    fn fast_decimal_agrees_with_str_parse() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "21.5",
            "-273.150",
            "0.001",
            "999999999999999",
            "0.000000000000001",
            "123456.789012345",
            "1.0",
            "-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            let x = xorshift(&mut x);
            let decimals = (x % 8) as usize;
            let v = (x >> 20) as f64 / 1e6 - 5e6;
            texts.push(format!("{v:.decimals$}"));
        }
        // Up to 15 digits the fast path answers, and exactly as parse does;
        // longer numbers are left to parse.
        for t in &texts {
            let want: f64 = t.parse().unwrap();
            let digits = t.bytes().filter(u8::is_ascii_digit).count();
            let fast = fast_decimal(t.as_bytes());
            assert_eq!(fast, (digits <= 15).then_some(want), "{t}");
            assert_eq!(fast.map(f64::to_bits), fast.map(|_| want.to_bits()), "{t}");
        }
        for other in [
            "",
            "-",
            ".5",
            "5.",
            "1e3",
            "nan",
            "inf",
            "1,5",
            "+1",
            "1234567890123456",
            "0x10",
        ] {
            assert_eq!(fast_decimal(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn split8_finds_every_comma() {
        let line = b"2026-11-24T10:00:05.000Z,g,-1.5,,22,kelvin,3,0";
        let want: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        let mut fields = [&b""[..]; 8];
        assert!(split8(line, &mut fields));
        assert_eq!(fields.to_vec(), want);
        // Every length and comma position, and commas next to `-` (0x2d,
        // one bit off a comma: a borrowing zero-byte test gets it wrong).
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let x = xorshift(&mut x);
            let len = (x % 40) as usize;
            let line: Vec<u8> = (0..len)
                .map(|i| [b',', b'-', b'a', b'+', b'.'][((x >> (i % 60)) % 5) as usize])
                .collect();
            let want: Vec<&[u8]> = line.split(|&b| b == b',').collect();
            let mut fields = [&b""[..]; 8];
            let got = split8(&line, &mut fields).then(|| fields.to_vec());
            assert_eq!(got, (want.len() == 8).then_some(want), "{line:?}");
        }
    }

    #[test]
    fn rows_are_checked_field_by_field() {
        let ok = Record::from_line("2026-11-24T10:00:05.000Z,g,21.5,,22,kelvin,3,0").unwrap();
        assert_eq!(ok.row.mean, Some(21.5));
        assert_eq!(ok.row.min, None);
        assert_eq!(ok.row.unit, Unit::Kelvin);
        // Another valid RFC 3339 spelling goes through humantime.
        let other = Record::from_line("2026-11-24T10:00:05Z,g,1,1,1,celsius,1,0").unwrap();
        assert_eq!(other.row.time, ok.row.time);
        for (line, why) in [
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,1",
                "7 field(s), expected 8",
            ),
            (
                "2026-11-31T10:00:05.000Z,g,1,1,1,celsius,1,0",
                "time `2026-11-31T10:00:05.000Z` is not RFC 3339",
            ),
            ("2026-11-24T10:00:05.000Z,,1,1,1,celsius,1,0", "empty group"),
            (
                "2026-11-24T10:00:05.000Z,g\"h,1,1,1,celsius,1,0",
                "group `g\"h` is not a group name",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1x,1,1,celsius,1,0",
                "mean `1x` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,NaN,1,celsius,1,0",
                "min `NaN` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1e999,celsius,1,0",
                "max `1e999` is not a number",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,rankine,1,0",
                "unit `rankine` is not known",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,-1,0",
                "ok `-1` is not a count",
            ),
            (
                "2026-11-24T10:00:05.000Z,g,1,1,1,celsius,1,99999999999999999999",
                "failed `99999999999999999999` is not a count",
            ),
        ] {
            assert_eq!(Record::from_line(line).unwrap_err(), why, "{line}");
        }
    }
}
