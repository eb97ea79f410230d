//! Output formats of `replay`: the recorded CSV unchanged, JSON lines, or
//! InfluxDB line protocol (which VictoriaMetrics also accepts).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::history::parse::{BlockRows, digits, fast_decimal};
use crate::history::row::{COLUMNS, Unit, View, csv_line};
use crate::history::scan::fast_cut;

/// How replayed rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The recorded lines, byte for byte, under one header.
    Csv,
    /// One JSON object per row; empty values are `null`.
    Jsonl,
    /// InfluxDB line protocol (group and unit as tags); empty values are left out.
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

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Influx => "influx",
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

/// A verified block, encoded.
pub struct Encoded {
    /// The lines are `bytes[..len]`; the rest is room (see
    /// [`super::sink::room`]).
    pub bytes: Vec<u8>,
    pub len: usize,
    pub rows: u64,
    /// Lines that were not rows after all (an index made by something
    /// else than this program).
    pub bad_lines: Vec<u64>,
}

/// Encodes rows in one format. What is the same for every row (the escaped
/// measurement name) is prepared once: this runs for every replayed row.
#[derive(Clone)]
pub struct Encoder {
    format: Format,
    /// The last time written in line protocol, and its digits: the rows of
    /// one tick (one per group) share it.
    last_time: Option<SystemTime>,
    last_ns: Vec<u8>,
    /// What [`Encoder::influx_block`] keeps from row to row.
    fast: FastInflux,
}

/// Which rows of a block are wanted, by time and group.
pub type Wants<'a> = &'a dyn Fn(SystemTime, &[u8]) -> bool;

/// Bytes copied at once by [`Encoder::influx_block`]: fields are copied
/// whole in one or two such moves, not byte by byte nor by a call to
/// `memcpy` each.
const WIDE: usize = 16;

/// The state of the block encoder of line protocol.
#[derive(Clone)]
struct FastInflux {
    /// Line protocol's `MEASUREMENT,group=`, then WIDE bytes of padding.
    prefix: Vec<u8>,
    /// The last time field seen (the agent's 24-byte form), its time and
    /// its nanoseconds in digits (padded): ten rows of a tick share them.
    tick: Option<[u8; 24]>,
    tick_time: SystemTime,
    tick_ns: [u8; 32],
    tick_ns_len: usize,
    times: BlockRows,
    /// A line written row by row, before it is copied into the output.
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(format: Format, measurement: &str) -> Encoder {
        let mut prefix = Vec::new();
        escape(measurement.as_bytes(), b", ", &mut prefix);
        prefix.extend_from_slice(b",group=");
        prefix.resize(prefix.len() + WIDE, 0);
        Encoder {
            format,
            fast: FastInflux {
                prefix,
                tick: None,
                tick_time: UNIX_EPOCH,
                tick_ns: [0; 32],
                tick_ns_len: 0,
                times: BlockRows::default(),
                scratch: Vec::new(),
            },
            last_time: None,
            last_ns: Vec::new(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Line protocol for the wanted rows of `buf`, a verified block of
    /// whole lines (see [`super::read::Block`]) whose first line is number
    /// `first_line`: written at `out[at..]`, the numbers of lines that are
    /// not rows after all pushed to `bad`; returns the rows written and the
    /// end of their lines in `out`.
    ///
    /// `out`'s length is room, not content: the lines overwrite it (it is
    /// grown, zeroed, when they need more), and what lies past their end is
    /// left as it was. So a buffer that comes back for the next block is
    /// not zeroed again: zeroing the room took 8% of an influx replay's
    /// time.
    ///
    /// `wants` decides by a row's time and group (`None`: every row).
    /// The same bytes as [`Encoder::encode`] row by row. The common row
    /// (see [`fast_cut`]) is cut into fields without a branch per field
    /// and written with one WIDE-byte move per field: the row-by-row
    /// encoder spent most of an influx replay splitting lines and in small
    /// `memcpy` calls. Any other line takes the row-by-row path.
    pub fn influx_block(
        &mut self,
        buf: &[u8],
        first_line: u64,
        wants: Option<Wants>,
        out: &mut Vec<u8>,
        at: usize,
        bad: &mut Vec<u64>,
    ) -> (u64, usize) {
        let mut rows = 0;
        let mut start = 0;
        let mut line = first_line;
        // `out[at..o]` is written; what lies past it is room.
        let mut o = at;
        while start < buf.len() {
            if let Some((fields, end)) = fast_cut(buf, start) {
                if let Some(time) = self.fast.tick_of(&buf[start..start + 24]) {
                    let (from, len) = fields[0];
                    if wants.is_none_or(|w| w(time, &buf[from..from + len])) {
                        grow(out, o + self.fast.prefix.len() + (end - start) + 128);
                        if let Some(next) = self.fast.row(buf, fields, out, o) {
                            (o, rows) = (next, rows + 1);
                            (start, line) = (end + 1, line + 1);
                            continue;
                        }
                    } else {
                        (start, line) = (end + 1, line + 1);
                        continue;
                    }
                }
            }
            // Row by row: a line of another shape, a time not in the
            // agent's form, a count that is not plain digits, a bad line.
            // (What follows the last newline is not a line.)
            let Some(len) = memchr::memchr(b'\n', &buf[start..]) else {
                break;
            };
            let end = start + len;
            let mut view = View::default();
            if !self.fast.times.fill(&buf[start..end], &mut view) {
                bad.push(line);
            } else if wants.is_none_or(|w| w(view.time, view.fields[1])) {
                // Encoded aside and copied in: cutting `out` back to `o`
                // would throw away its room, and the next fast row would
                // zero 64 KiB again.
                let mut text = std::mem::take(&mut self.fast.scratch);
                text.clear();
                self.encode(&view, &mut text);
                grow(out, o + text.len());
                out[o..o + text.len()].copy_from_slice(&text);
                (o, rows) = (o + text.len(), rows + 1);
                self.fast.scratch = text;
            }
            (start, line) = (end + 1, line + 1);
        }
        (rows, o)
    }

    /// Append `row` as one line to `out`.
    pub fn encode(&mut self, row: &View, out: &mut Vec<u8>) {
        match self.format {
            Format::Csv => csv_line(row, out),
            Format::Jsonl => json_line(row, out),
            Format::Influx => {
                if self.last_time != Some(row.time) {
                    self.last_ns.clear();
                    self.last_ns
                        .extend_from_slice(nanos(row.time, &mut itoa::Buffer::new()));
                    self.last_time = Some(row.time);
                }
                influx_line(row, self.fast.prefix(), &self.last_ns, out)
            }
        }
    }
}

/// A count as recorded (checked by [`crate::history::parse::parse`]), written anew so
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

impl FastInflux {
    /// `MEASUREMENT,group=`, without the padding.
    fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix.len() - WIDE]
    }

    /// The time of a 24-byte time field, the last one's if it is the same
    /// bytes; `None` if it is not a time in the agent's own form.
    fn tick_of(&mut self, field: &[u8]) -> Option<SystemTime> {
        let text = <[u8; 24]>::try_from(field).ok()?;
        if self.tick != Some(text) {
            let time = self.times.time(field)?;
            let mut buffer = itoa::Buffer::new();
            let digits = nanos(time, &mut buffer);
            // 39 digits at most (u128); a row's time has 21 at most.
            let n = digits.len().min(self.tick_ns.len());
            self.tick_ns[..n].copy_from_slice(&digits[..n]);
            self.tick_ns_len = n;
            self.tick_time = time;
            self.tick = Some(text);
        }
        Some(self.tick_time)
    }

    /// The line of the row whose seven fields after the time are `fields`
    /// in `buf` (see [`fast_cut`]), written at `out[o..]`, which has room
    /// for it and 128 bytes more; its end, or `None` if a count is not 1
    /// to 19 plain digits. The row's time field must be the one last given
    /// to [`FastInflux::tick_of`].
    #[inline]
    fn row(
        &self,
        buf: &[u8],
        fields: [(usize, usize); 7],
        out: &mut [u8],
        o: usize,
    ) -> Option<usize> {
        let [group, mean, min, max, unit, ok, failed] = fields;
        let values = [mean, min, max];
        let (ok, failed) = (count(buf, ok)?, count(buf, failed)?);
        // One of the three names, which need no escaping (else the row by
        // row path escapes whatever it is).
        Unit::from_bytes(&buf[unit.0..unit.0 + unit.1])?;
        let mut o = padded_copy(out, o, &self.prefix, self.prefix().len());
        o = wide_copy(out, o, buf, group);
        out[o..o + 6].copy_from_slice(b",unit=");
        o = wide_copy(out, o + 6, buf, unit);
        let mut sep = b' ';
        o = named(out, o, &mut sep, b"mean=", buf, values[0]);
        o = named(out, o, &mut sep, b"min=", buf, values[1]);
        o = named(out, o, &mut sep, b"max=", buf, values[2]);
        out[o] = sep;
        out[o + 1..o + 4].copy_from_slice(b"ok=");
        o = wide_copy(out, o + 4, buf, ok);
        out[o..o + 9].copy_from_slice(b"i,failed=");
        o = wide_copy(out, o + 9, buf, failed);
        out[o..o + 2].copy_from_slice(b"i ");
        out[o + 2..o + 34].copy_from_slice(&self.tick_ns);
        o += 2 + self.tick_ns_len;
        out[o] = b'\n';
        Some(o + 1)
    }
}

/// A count field (start, length) as a number is written (`007` is `7`),
/// or `None` if it is not 1 to 19 plain digits. Up to eight digits are
/// checked in one word: bytes 0x30-0x3f, and still so when 6 is added.
#[inline(always)]
fn count(buf: &[u8], (mut from, mut len): (usize, usize)) -> Option<(usize, usize)> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let digits = match buf.get(from..from + 8) {
        Some(w) if (1..=8).contains(&len) => {
            let keep = u64::MAX >> (64 - 8 * len);
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default()) & keep | ZEROS & !keep;
            w & HIGH == ZEROS && w.wrapping_add(0x0606_0606_0606_0606) & HIGH == ZEROS
        }
        _ => (1..=19).contains(&len) && buf[from..from + len].iter().all(u8::is_ascii_digit),
    };
    if !digits {
        return None;
    }
    while len > 1 && buf[from] == b'0' {
        (from, len) = (from + 1, len - 1);
    }
    Some((from, len))
}

/// `,NAME` (` NAME` for the first) and the field `value` at `out[o..]`,
/// unless the field is empty; the end of the copy in `out`.
#[inline(always)]
fn named<const N: usize>(
    out: &mut [u8],
    o: usize,
    sep: &mut u8,
    name: &[u8; N],
    buf: &[u8],
    value: (usize, usize),
) -> usize {
    if value.1 == 0 {
        return o;
    }
    out[o] = *sep;
    *sep = b',';
    out[o + 1..o + 1 + N].copy_from_slice(name);
    wide_copy(out, o + 1 + N, buf, value)
}

/// Copy the field `(from, len)` of `src` to `out[o..]`: one WIDE-byte move
/// when it fits (overwriting up to WIDE - 1 bytes past its end with what
/// follows it in `src`); the end of the copy in `out`.
#[inline(always)]
fn wide_copy(out: &mut [u8], o: usize, src: &[u8], (from, len): (usize, usize)) -> usize {
    if len <= WIDE && from + WIDE <= src.len() && o + WIDE <= out.len() {
        out[o..o + WIDE].copy_from_slice(&src[from..from + WIDE]);
    } else {
        out[o..o + len].copy_from_slice(&src[from..from + len]);
    }
    o + len
}

/// Copy `src[..len]` to `out[o..]` in WIDE-byte moves: `src` has WIDE
/// bytes of padding past `len`, `out` room for them (a measurement name
/// and `,group=` is often just over WIDE bytes, and `copy_from_slice` of
/// a length not known when compiling is a call to `memcpy`).
#[inline(always)]
fn padded_copy(out: &mut [u8], o: usize, src: &[u8], len: usize) -> usize {
    for k in (0..len).step_by(WIDE) {
        out[o + k..o + k + WIDE].copy_from_slice(&src[k..k + WIDE]);
    }
    o + len
}

/// Make `out` at least `len` long, zeroing 64 KiB more at a time.
fn grow(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len + 64 * 1024, 0);
    }
}

/// Nanoseconds since 1970 (0 before) in digits, at most 21 up to the year
/// 9999, the last a row can have. A u128 takes itoa several times as long
/// as a u64, which lasts to the year 2554.
fn nanos(t: SystemTime, digits: &mut itoa::Buffer) -> &[u8] {
    let ns = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    match u64::try_from(ns) {
        Ok(ns) => digits.format(ns),
        Err(_) => digits.format(ns),
    }
    .as_bytes()
}

fn influx_line(r: &View, prefix: &[u8], ns: &[u8], out: &mut Vec<u8>) {
    out.reserve(prefix.len() + ns.len() + 128);
    out.extend_from_slice(prefix);
    // A group name (checked by the reader) needs no escaping.
    out.extend_from_slice(r.fields[1]);
    // The unit is a tag: groups in celsius, fahrenheit and kelvin (or a
    // group whose unit changed) are separate series.
    out.extend_from_slice(b",unit=");
    escape(r.fields[5], b", =", out);
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
    out.extend_from_slice(ns);
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

    use crate::history::row::Record;

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
            "temperature,group=greenhouse,unit=celsius mean=21.235,min=20.100,max=22.000,ok=3i,failed=1i 1795514405000000000\n"
        );
        assert_eq!(
            enc(Format::Influx, &empty),
            "temperature,group=cold,unit=celsius ok=0i,failed=2i 1795514405000000000\n"
        );
    }

    /// A random line: mostly rows in the agent's form, with what the
    /// block encoder must hand to the row-by-row path mixed in.
    fn random_line(x: &mut u64, tick: &mut u64) -> String {
        let mut pick = |n: u64| crate::history::parse::tests::xorshift(x) % n;
        if pick(8) == 0 {
            *tick += 5;
        }
        let (secs, ms) = (1_767_225_600 + *tick, pick(3) * 250);
        let t = humantime::format_rfc3339_millis(
            UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms),
        )
        .to_string();
        let time = match pick(22) {
            20 => "9999-12-31T23:59:59.999Z".to_string(),
            21 => t.replacen(":00.", ":60.", 1),
            0 => t
                .replace(".000Z", "Z")
                .replace(".250Z", "Z")
                .replace(".500Z", "Z"),
            1 => t.replace('T', " "),
            2 => "2026-13-01T00:00:00.000Z".to_string(),
            3 => t.replacen('-', ",", 1),
            4 => t.replacen(':', "\n", 1),
            _ => t,
        };
        let group = match pick(10) {
            0 => "g".repeat(1 + pick(40) as usize),
            1 => "grüne-halle".to_string(),
            2 => ["a b", "a+b", "a\"b", "a\0b", "a\tb"][pick(5) as usize].to_string(),
            n => format!("group-{n}"),
        };
        let mut number = || match pick(12) {
            0 => String::new(),
            1 => format!("-{}.{:03}", pick(1000), pick(1000)),
            2 => format!("{}.{}", pick(1_000_000_000), pick(1_000_000)),
            _ => format!("{}.{:03}", pick(40), pick(1000)),
        };
        let (mean, min, max) = (number(), number(), number());
        let mut count = || match pick(16) {
            0 => "007".to_string(),
            1 => "0".repeat(1 + pick(12) as usize),
            2 => format!("{}", pick(u64::MAX)),
            3 => "99999999999999999999".to_string(),
            4 => "2x".to_string(),
            5 => String::new(),
            6 => format!("{:011}", pick(1000)),
            7 => ["1:", "3?", "9/", "1 ", "+1"][pick(5) as usize].to_string(),
            _ => format!("{}", pick(30)),
        };
        let (ok, failed) = (count(), count());
        let unit = [
            "celsius",
            "fahrenheit",
            "kelvin",
            "celsius",
            "rankine",
            "de=g",
        ][pick(6) as usize];
        let mut line = format!("{time},{group},{mean},{min},{max},{unit},{ok},{failed}");
        match pick(40) {
            0 => line.push_str(",extra"),
            1 => line = line.replacen(',', "", 1),
            2 => line.clear(),
            3 => line.push_str(&" ".repeat(pick(70) as usize)),
            _ => {}
        }
        line
    }

    #[test]
    fn influx_block_agrees_with_row_by_row() {
        let mut x = 0x5eed_1234_u64;
        let mut tick = 0;
        let since = UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600 + 900);
        let filter = |t: SystemTime, g: &[u8]| t >= since && g != b"group-2";
        for case in 0..300 {
            // Case 0: an empty block.
            let n = if case == 0 { 0 } else { 1 + case % 97 };
            let lines: Vec<String> = (0..n).map(|_| random_line(&mut x, &mut tick)).collect();
            let mut buf = lines.join("\n").into_bytes();
            // Mostly whole lines, as a block is; sometimes an open last one.
            if case % 5 != 0 {
                buf.push(b'\n');
            }
            for filtered in [false, true] {
                let wants: Option<Wants> = if filtered { Some(&filter) } else { None };
                let mut want = (Vec::new(), 0, Vec::new());
                let name = [
                    "t e,s",
                    "temperature",
                    "a measurement name of forty-five bytes or so",
                ][case % 3];
                let (mut times, mut row_by_row) =
                    (BlockRows::default(), Encoder::new(Format::Influx, name));
                let lines = buf.split(|&b| b == b'\n');
                // What follows the last newline is not a line.
                let whole = lines.clone().count() - 1;
                for (i, line) in lines.take(whole).enumerate() {
                    let mut view = View::default();
                    if !times.fill(line, &mut view) {
                        want.2.push(10 + i as u64);
                    } else if wants.is_none_or(|w| w(view.time, view.fields[1])) {
                        row_by_row.encode(&view, &mut want.0);
                        want.1 += 1;
                    }
                }
                // Room left by an earlier block: not zeros, and sometimes
                // too short.
                let mut got = (b"kept|".to_vec(), 0, Vec::new());
                got.0.resize(
                    5 + (crate::history::parse::tests::xorshift(&mut x) % 4096) as usize,
                    b'#',
                );
                let end;
                (got.1, end) = Encoder::new(Format::Influx, name)
                    .influx_block(&buf, 10, wants, &mut got.0, 5, &mut got.2);
                got.0.truncate(end);
                assert_eq!(&got.0[..5], b"kept|");
                got.0.drain(..5);
                assert_eq!(
                    (String::from_utf8_lossy(&got.0), got.1, &got.2),
                    (String::from_utf8_lossy(&want.0), want.1, &want.2),
                    "case {case}, filtered {filtered}:\n{}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }
}
