//! Fuzz target: recorded files read by replay. Damaged plain files yield
//! exactly what a line-by-line model says, with or without an index made
//! before the damage; a cut gzip file yields its decoded rows and then one
//! skip.

use super::*;
use edge_agent::history::COLUMNS;
use edge_agent::history::Record;
use edge_agent::history::index::{self, Index};
use edge_agent::replay::{self as replayer, FileReader, FileWriter, Format, Next, Sink};
use std::io::Write;

#[derive(Debug, Clone)]
enum Damage {
    /// Set the byte at a position.
    Flip(prop::sample::Index, u8),
    /// Remove a run of bytes (cuts and joins lines).
    Cut(prop::sample::Index, usize),
    /// Add a column to line n.
    AddColumn(prop::sample::Index),
    /// Remove the last column of line n.
    DropColumn(prop::sample::Index),
    /// End the file early.
    Truncate(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop_oneof![
        Just(b'\n'),
        Just(b','),
        Just(b'"'),
        Just(b'\r'),
        Just(b'x'),
        Just(0u8),
        any::<u8>()
    ];
    let i = any::<prop::sample::Index>();
    prop_oneof![
        (i.clone(), byte).prop_map(|(i, b)| Damage::Flip(i, b)),
        (i.clone(), 1usize..80).prop_map(|(i, n)| Damage::Cut(i, n)),
        i.clone().prop_map(Damage::AddColumn),
        i.clone().prop_map(Damage::DropColumn),
        i.prop_map(Damage::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    let ends: Vec<usize> = (0..bytes.len()).filter(|i| bytes[*i] == b'\n').collect();
    match d {
        Damage::Flip(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Damage::Cut(i, n) => {
            let i = i.index(bytes.len());
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Damage::AddColumn(i) if !ends.is_empty() => {
            bytes.splice(ends[i.index(ends.len())]..ends[i.index(ends.len())], *b",7");
        }
        Damage::DropColumn(i) if !ends.is_empty() => {
            let end = ends[i.index(ends.len())];
            if let Some(comma) = bytes[..end].iter().rposition(|b| *b == b',') {
                bytes.drain(comma..end);
            }
        }
        Damage::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        _ => {}
    }
}

#[derive(Debug, PartialEq)]
enum Out {
    Row(String),
    Skip(Option<u64>),
}

/// Everything a reader yields: rows as their CSV line (a verified
/// block as its lines), skips by line. With `indexed`, through the
/// file's index.
fn read_all(path: &Path, gzip: bool, chunk: usize, indexed: bool) -> Vec<Out> {
    block_on(async {
        let index = indexed.then(|| Index::load(path)).flatten();
        let mut reader = FileReader::open_indexed(path, gzip, chunk, index, None, None)
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut lines = 0;
        while let Some(next) = reader.next().await {
            match next {
                Next::Row(r) => {
                    let line = (0..COLUMNS.len()).map(|i| r.field(i)).collect::<Vec<_>>();
                    let line = line.join(",");
                    // The parsed values are those of the line.
                    assert_eq!(Record::from_line(&line).unwrap(), *r);
                    out.push(Out::Row(line));
                }
                Next::Block(b) => {
                    assert!(indexed);
                    let text = std::str::from_utf8(&b.piece).unwrap();
                    let rows: Vec<&str> = text.lines().collect();
                    assert_eq!(rows.len() as u64, b.rows);
                    assert!(b.first_line > lines, "blocks come in line order");
                    lines = b.first_line + b.rows - 1;
                    for line in rows {
                        let t = Record::from_line(line).unwrap().row.time;
                        assert!(b.min <= t && t <= b.max, "{line} outside its block's times");
                        out.push(Out::Row(line.to_string()));
                    }
                }
                Next::Skip(s) => out.push(Out::Skip(s.line)),
                Next::Written(_) => unreachable!("a reader without an output"),
            }
        }
        out
    })
}

/// The rows after a file's index (an active file's newest) come from
/// the file that was opened, not from a new one the agent rotated in
/// under its name while the indexed blocks were read.
#[test]
fn rest_of_a_file_comes_from_the_file_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.csv");
    let row = |i: usize, g: &str| {
        format!(
            "2023-11-14T22:{:02}:{:02}.000Z,{g},1.000,1.000,1.000,celsius,1,0\n",
            i / 60 % 60,
            i % 60
        )
    };
    let header = format!("{}\n", COLUMNS.join(","));
    let first: String = (0..300).map(|i| row(i, "a")).collect();
    let all: String = (0..600).map(|i| row(i, "a")).collect();
    // The first 300 rows indexed in blocks of about 1000 bytes.
    index(&path, format!("{header}{first}").as_bytes(), 1000);
    std::fs::write(&path, format!("{header}{all}")).unwrap();
    let got = block_on(async {
        let index = Index::load(&path);
        assert!(index.is_some());
        let mut reader = FileReader::open_indexed(&path, false, 4096, index, None, None)
            .await
            .unwrap();
        // Rotated: renamed, and a new active file of other rows.
        std::fs::rename(&path, dir.path().join("readings-20231114T220000Z.csv")).unwrap();
        let other: String = (0..600).map(|i| row(i, "b")).collect();
        std::fs::write(&path, format!("{header}{other}")).unwrap();
        let mut got = String::new();
        while let Some(next) = reader.next().await {
            match next {
                Next::Block(b) => got.push_str(std::str::from_utf8(&b.piece).unwrap()),
                Next::Row(r) => {
                    let fields: Vec<&str> = (0..COLUMNS.len()).map(|i| r.field(i)).collect();
                    got.push_str(&(fields.join(",") + "\n"));
                }
                Next::Skip(s) => panic!("{s}"),
                Next::Written(_) => unreachable!("a reader without an output"),
            }
        }
        got
    });
    assert_eq!(got, all);
}

/// The whole replay of `dir` (every row, as `format`) into a file, and
/// its summary.
fn replay_dir(dir: &Path, format: Format, chunk: usize) -> (String, replayer::Summary) {
    block_on(async {
        let out = dir.with_extension("out");
        let file = std::fs::File::create(&out).unwrap();
        let mut sink = Sink::File(FileWriter::new(Box::new(file)));
        let opts = replayer::Options {
            dir: dir.to_path_buf(),
            prefix: "readings".into(),
            since: None,
            until: None,
            groups: Vec::new(),
            format,
            measurement: "temperature".into(),
            speed: None,
            chunk_size: chunk,
        };
        let summary = replayer::replay(&opts, &mut sink).await.unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
        (text, summary)
    })
}

/// Index `original` as the store would (blocks of `block` bytes), for
/// `path` (`.gz` or not) whose bytes are then damaged.
fn index(path: &Path, original: &[u8], block: u64) {
    let plain = path.with_extension("").with_extension("csv");
    std::fs::write(&plain, original).unwrap();
    index::update_with(&plain, true, block, u64::MAX).unwrap();
    std::fs::remove_file(&plain).unwrap();
}

/// What the reader must yield for `bytes`, worked out line by line:
/// the first non-blank line must be the header (else one skip); each
/// later non-blank line ending in a newline is a row if it parses
/// alone, else a skip naming its line; an unfinished last line is a
/// skip. Lines end at `\n` (and at a lone `\r`, as for csv).
fn model(bytes: &[u8]) -> Vec<Out> {
    let mut out = Vec::new();
    let mut header = false;
    let mut line_no = 1u64;
    let mut start = 0;
    let mut i = 0;
    while start < bytes.len() {
        // Find the end of this record.
        while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
            i += 1;
        }
        let rec = &bytes[start..i];
        // The reader decides a row is whole when another record follows
        // it, or when the file ends with a newline.
        let follows = bytes[i..].iter().any(|b| *b != b'\n' && *b != b'\r');
        let complete = follows || bytes.last() == Some(&b'\n');
        let this_line = line_no;
        // Step over the terminator(s), counting newlines.
        let mut j = i;
        if j < bytes.len() && bytes[j] == b'\r' {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'\n' {
            j += 1;
            line_no += 1;
        }
        if rec.is_empty() {
            start = j;
            i = j;
            continue;
        }
        if !header {
            header = true;
            if rec != COLUMNS.join(",").as_bytes() {
                out.push(Out::Skip(Some(1)));
                return out;
            }
        } else if !complete {
            out.push(Out::Skip(Some(this_line)));
        } else if parses(rec) {
            out.push(Out::Row(String::from_utf8(rec.to_vec()).unwrap()));
        } else {
            out.push(Out::Skip(Some(this_line)));
        }
        start = j;
        i = j;
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn file() -> impl Strategy<Value = Vec<u8>> {
    rows(60).prop_map(|rows| {
        let mut bytes = COLUMNS.join(",").into_bytes();
        bytes.push(b'\n');
        bytes.extend(encode(&rows));
        bytes
    })
}

proptest! {
    #![proptest_config(cases(400))]

    /// A plain file with any damage yields exactly what the line model
    /// says: every line that still parses on its own is replayed, in
    /// order (so every untouched row is), every other line is one skip
    /// naming its line. Quotes have no special meaning: our files
    /// never quote, so a stray `"` costs one line, not the file.
    #[test]
    fn damaged_csv(
        original in file(),
        damage in proptest::collection::vec(damage(), 0..6),
        chunk in 1usize..2048,
        block in proptest::option::of(1u64..1500),
    ) {
        let mut bytes = original.clone();
        for d in &damage {
            apply(&mut bytes, d);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        // With an index made before the damage: blocks that still
        // match go out whole, the rest row by row, and the result is
        // the same.
        if let Some(block) = block {
            index(&path, &original, block);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut got = read_all(&path, false, chunk, block.is_some());
        let mut want = model(&bytes);
        // csv-async numbers a record after a blank line (or a lone
        // `\r`) one line short; compare line numbers only without them.
        let blank = bytes.windows(2).any(|w| w == b"\n\n") || bytes.starts_with(b"\n") || bytes.contains(&b'\r');
        if blank {
            for o in got.iter_mut().chain(want.iter_mut()) {
                if let Out::Skip(line) = o {
                    *line = None;
                }
            }
        }
        prop_assert_eq!(&got, &want, "file: {:?}", String::from_utf8_lossy(&bytes));
        // Said in terms of the original: each row whose line (with the
        // newlines around it) is untouched comes out, in order.
        let text = [b"\n".as_slice(), &bytes].concat();
        let rows: Vec<&String> = got.iter().filter_map(|o| match o { Out::Row(r) => Some(r), _ => None }).collect();
        let mut at = 0;
        let header_ok = bytes.starts_with(format!("{}\n", COLUMNS.join(",")).as_bytes());
        for line in lines(&original).iter().skip(1) {
            let whole = [b"\n".as_slice(), line, b"\n"].concat();
            if header_ok && text.windows(whole.len()).any(|w| w == whole.as_slice()) {
                let found = rows[at..].iter().position(|r| r.as_bytes() == *line);
                prop_assert!(found.is_some(), "untouched row lost: {}", String::from_utf8_lossy(line));
                at += found.unwrap() + 1;
            }
        }
        // The whole replay, whose reading threads write the blocks
        // that still match to the output themselves (in turns, two
        // threads, stopping at the first that does not): the same
        // output and counts as without the index.
        if let Some(block) = block {
            let (indexed, bare) = (dir.path().join("indexed"), dir.path().join("bare"));
            for d in [&indexed, &bare] {
                std::fs::create_dir(d).unwrap();
            }
            index(&indexed.join("readings.csv"), &original, block);
            std::fs::write(indexed.join("readings.csv"), &bytes).unwrap();
            std::fs::write(bare.join("readings.csv"), &bytes).unwrap();
            for format in [Format::Csv, Format::Influx] {
                let fast = replay_dir(&indexed, format, chunk);
                let slow = replay_dir(&bare, format, chunk);
                prop_assert_eq!(&fast, &slow, "{:?}", format);
            }
        }
    }

    /// A gzip file cut anywhere yields the rows of the part that was
    /// decoded, in order, and then one skip for the damaged rest.
    #[test]
    fn truncated_gzip(
        original in file(),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..2048,
        block in proptest::option::of(1u64..1500),
    ) {
        let gz = gzip(&original);
        let cut = cut.index(gz.len() + 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv.gz");
        if let Some(block) = block {
            index(&path, &original, block);
        }
        std::fs::write(&path, &gz[..cut]).unwrap();
        let got = read_all(&path, true, chunk, block.is_some());
        let full = model(&original);
        let rows: Vec<&Out> = got.iter().filter(|o| matches!(o, Out::Row(_))).collect();
        prop_assert!(rows.len() <= full.len());
        for (r, f) in rows.iter().zip(&full) {
            prop_assert_eq!(*r, f);
        }
        let skips = got.iter().filter(|o| matches!(o, Out::Skip(_))).count();
        if cut == gz.len() {
            prop_assert_eq!(&got, &full);
        } else {
            prop_assert!(skips >= 1, "a cut gzip file must report damage");
            // Nothing after the damage.
            prop_assert!(matches!(got.last(), Some(Out::Skip(_))));
        }
    }
}
