//! Property-based fuzzing (proptest) of the four places where untrusted
//! bytes come in: config text, sensor bodies (with unit conversion), the
//! active file left by a crash, and recorded files read by replay.
//!
//! Each target states what must hold beyond "does not panic". They run a
//! bounded number of cases in `cargo test` (all together well under 30 s in
//! a debug build); for a longer local run raise the count, e.g.
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --test it fuzz::
//! ```
//!
//! A failing case is shrunk by proptest and its seed saved beside the
//! source file (see [`cases`]); real bugs found are also kept as plain
//! tests at the end.

use std::path::Path;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

use edge_agent::aggregate::Row;
use edge_agent::config::Unit;
use edge_agent::store::disk::RealDisk;

/// `cases` unless `PROPTEST_CASES` asks for another count. Failing cases
/// are kept beside the test's source file, `NAME.rs` in
/// `NAME.proptest-regressions`: proptest's default would look for a
/// `proptest-regressions/` tree beside the directory holding `main.rs`.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
}

/// Run `f` to completion on this test thread's runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(Unit::Celsius),
        Just(Unit::Fahrenheit),
        Just(Unit::Kelvin)
    ]
}

/// Rows as the agent writes them: distinct times (so each line is unique),
/// group names the config allows, empty means for all-failed windows.
fn rows(max: usize) -> impl Strategy<Value = Vec<Row>> {
    let row = (
        "[a-z][a-z0-9_.-]{0,11}",
        proptest::option::weighted(0.9, -500.0f64..500.0),
        unit(),
        0u64..10_000,
        0u64..10_000,
    );
    proptest::collection::vec(row, 0..max).prop_map(|rows| {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        rows.into_iter()
            .enumerate()
            .map(|(i, (group, mean, unit, ok, failed))| Row {
                time: start + Duration::from_millis(1500 * i as u64),
                group,
                mean,
                min: mean.map(|m| m - 1.0),
                max: mean.map(|m| m + 1.0),
                unit,
                ok,
                failed,
            })
            .collect()
    })
}

/// Rows encoded by the store's own encoder.
fn encode(rows: &[Row]) -> Vec<u8> {
    block_on(edge_agent::store::encode(rows, 3)).unwrap()
}

/// The lines of `bytes` (each without its `\n`) and the partial rest.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    out.pop();
    out
}

fn parses(line: &[u8]) -> bool {
    std::str::from_utf8(line)
        .ok()
        .is_some_and(|l| edge_agent::replay::Record::from_line(l).is_ok())
}

mod config {
    use super::*;
    use edge_agent::config::{Config, ConfigError};

    /// A valid config, one key per line, so mutations act on whole keys.
    const BASE: &[&str] = &[
        "interval: 5s",
        "timeout: 2s",
        "limit: 10",
        "limit_per_host: 5",
        "max_body: 64KiB",
        "output:",
        "  dir: /nonexistent/edge-agent-fuzz",
        "  prefix: readings",
        "  rotate:",
        "    max_size: 1MiB",
        "    every: 1h",
        "  keep: 24",
        "  compress: gzip",
        "  fsync: always",
        "groups:",
        "  - name: greenhouse",
        "    unit: celsius",
        "    window: 10s",
        "    sensors:",
        "      - id: gh-1",
        "        url: http://127.0.0.1:9/j",
        "        format: json",
        "        value: /t",
        "        timeout: 1s",
        "      - id: gh-2",
        "        url: http://127.0.0.1:9/p",
        "        format: prometheus",
        "        value: temp{sensor=\"a\"}",
        "        unit: fahrenheit",
        "        headers:",
        "          X-Key: abc",
        "      - id: gh-3",
        "        url: https://127.0.0.2:9/t",
        "        format: text",
        "        tls:",
        "          insecure: true",
    ];

    /// Values of the wrong type, out of range or plain garbage.
    const GARBAGE: &[&str] = &[
        "",
        "~",
        "0",
        "-1",
        "18446744073709551616",
        "1e400",
        "true",
        "[1, 2]",
        "{a: 1}",
        "\"\"",
        "'",
        "\"unterminated",
        "&a x",
        "*a",
        "!!binary aGk=",
        "${NOPE_NOT_SET}",
        "${",
        "0s",
        "9ms",
        "10ms",
        "1y",
        "-5s",
        "0B",
        "5 XB",
        "ftp://127.0.0.1/x",
        "http://",
        "/t~2",
        "temp{",
        "temp{a=b}",
        "kelvin",
        "xml",
        "127.0.0.1:99999",
        "10.0.0.1:9464",
        "|\n  block",
        "- item",
        "? complex",
        ": :",
        "#",
        "\t",
        "é€\u{0}",
    ];

    #[derive(Debug, Clone)]
    enum Mutation {
        Drop(usize),
        Dup(usize),
        Swap(usize, usize),
        /// Replace the value after `key:` (or the whole line).
        Value(usize, usize),
        /// Change the indentation by this many spaces.
        Indent(usize, i8),
        /// Insert a line of random text.
        Insert(usize, String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let i = 0..BASE.len() + 4;
        prop_oneof![
            i.clone().prop_map(Mutation::Drop),
            i.clone().prop_map(Mutation::Dup),
            (i.clone(), i.clone()).prop_map(|(a, b)| Mutation::Swap(a, b)),
            (i.clone(), 0..GARBAGE.len()).prop_map(|(a, g)| Mutation::Value(a, g)),
            (i.clone(), -4i8..4).prop_map(|(a, d)| Mutation::Indent(a, d)),
            (i, "[ -~]{0,24}").prop_map(|(a, s)| Mutation::Insert(a, s)),
        ]
    }

    fn mutate(muts: &[Mutation]) -> String {
        let mut lines: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
        for m in muts {
            let n = lines.len().max(1);
            match m {
                Mutation::Drop(i) if !lines.is_empty() => {
                    lines.remove(i % n);
                }
                Mutation::Dup(i) if !lines.is_empty() => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Mutation::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
                Mutation::Value(i, g) if !lines.is_empty() => {
                    let l = &mut lines[i % n];
                    let head = match l.find(':') {
                        Some(c) => l[..=c].to_string() + " ",
                        None => String::new(),
                    };
                    *l = head + GARBAGE[*g];
                }
                Mutation::Indent(i, d) if !lines.is_empty() => {
                    let l = &mut lines[i % n];
                    if *d >= 0 {
                        l.insert_str(0, &" ".repeat(*d as usize));
                    } else {
                        let cut = (-d as usize).min(l.len() - l.trim_start().len());
                        l.drain(..cut);
                    }
                }
                Mutation::Insert(i, s) => lines.insert(i % (lines.len() + 1), s.clone()),
                _ => {}
            }
        }
        lines.join("\n") + "\n"
    }

    /// YAML-ish text: indented keys of the schema, list items, flow
    /// collections, anchors and garbage values.
    fn yamlish() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            proptest::sample::select(vec![
                "interval",
                "timeout",
                "limit",
                "limit_per_host",
                "output",
                "dir",
                "groups",
                "name",
                "unit",
                "sensors",
                "id",
                "url",
                "format",
                "value",
                "rotate",
                "max_size",
                "headers",
                "basic_auth",
                "password",
                "tls",
                "metrics",
                "listen",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,8}",
        ];
        let value = prop_oneof![
            proptest::sample::select(GARBAGE.to_vec()).prop_map(str::to_string),
            proptest::sample::select(BASE.to_vec()).prop_map(|l| l
                .split_once(':')
                .map_or("", |p| p.1)
                .trim()
                .to_string()),
            "[ -~]{0,12}",
        ];
        let line = (0usize..8, any::<bool>(), key, value).prop_map(|(ind, item, k, v)| {
            format!(
                "{}{}{k}: {v}",
                "  ".repeat(ind),
                if item { "- " } else { "" }
            )
        });
        proptest::collection::vec(line, 0..24).prop_map(|l| l.join("\n"))
    }

    /// What every outcome must satisfy.
    fn check(text: &str) -> Result<(), TestCaseError> {
        let result = std::panic::catch_unwind(|| Config::parse(text, Path::new("fuzz.yaml")));
        let result = result.map_err(|_| TestCaseError::fail("Config::parse panicked"))?;
        match result {
            Ok(c) => {
                // Only checked values come out.
                prop_assert!(c.interval >= Duration::from_millis(10));
                prop_assert!(!c.timeout.is_zero() && c.timeout < c.interval);
                prop_assert!(c.limit >= 1 && (1..=c.limit).contains(&c.limit_per_host));
                prop_assert!(!c.groups.is_empty());
                for g in &c.groups {
                    prop_assert!(!g.window.is_zero());
                    prop_assert_eq!(g.window.as_nanos() % c.interval.as_nanos(), 0);
                    for s in &g.sensors {
                        prop_assert!(!s.timeout.is_zero() && s.timeout < c.interval);
                        prop_assert!(matches!(s.url.scheme(), "http" | "https"));
                    }
                }
            }
            Err(ConfigError::Read { .. }) => prop_assert!(false, "parse never reads a file"),
            Err(e @ ConfigError::Invalid { .. }) => {
                let problems = e.problems();
                prop_assert!(!problems.is_empty(), "an error with no problem");
                let line_count = text.lines().count() + 1;
                let shown = e.to_string();
                for p in problems {
                    // Every problem names a position or a key path.
                    prop_assert!(
                        p.line.is_some() || !p.key.is_empty(),
                        "problem with neither position nor key: {p:?}\n--- text:\n{text}"
                    );
                    prop_assert_eq!(p.line.is_some(), p.col.is_some());
                    if let (Some(l), Some(c)) = (p.line, p.col) {
                        prop_assert!(l >= 1 && l <= line_count, "line {l} out of the file");
                        prop_assert!(c >= 1, "column {c}");
                        let at = format!("fuzz.yaml:{l}:{c}: ");
                        prop_assert!(shown.contains(&at), "{at} not in {shown}");
                    } else {
                        let at = format!("fuzz.yaml: {}: ", p.key);
                        prop_assert!(shown.contains(&at), "{at} not in {shown}");
                    }
                    prop_assert!(!p.message.is_empty());
                }
            }
        }
        Ok(())
    }

    #[test]
    fn base_is_valid() {
        let text = mutate(&[]);
        Config::parse(&text, Path::new("fuzz.yaml")).unwrap();
    }

    proptest! {
        #![proptest_config(cases(1000))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            check(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn yaml_like_text(text in yamlish()) {
            check(&text)?;
        }

        #[test]
        fn mutated_valid_config(muts in proptest::collection::vec(mutation(), 1..6)) {
            check(&mutate(&muts))?;
        }
    }
}

mod extract {
    use super::*;
    use edge_agent::config::{PromSelector, Selector};
    use edge_agent::extract::extract;
    use edge_agent::units::{UnitError, convert};

    fn kelvin(v: f64, u: Unit) -> f64 {
        match u {
            Unit::Kelvin => v,
            Unit::Celsius => v + 273.15,
            Unit::Fahrenheit => (v - 32.0) * 5.0 / 9.0 + 273.15,
        }
    }

    /// A reading as a sensor would write it, and its exact value.
    fn reading() -> impl Strategy<Value = (String, f64)> {
        (-1_000_000i64..1_000_000, 0usize..4, any::<bool>()).prop_map(|(n, dec, exp)| {
            let text = if exp {
                format!("{n}e-{dec}")
            } else if dec == 0 {
                n.to_string()
            } else {
                let s = format!("{:0>width$}", n.unsigned_abs(), width = dec + 1);
                let (int, frac) = s.split_at(s.len() - dec);
                format!("{}{int}.{frac}", if n < 0 { "-" } else { "" })
            };
            let value = text.parse::<f64>().unwrap();
            (text, value)
        })
    }

    fn selector() -> impl Strategy<Value = Selector> {
        prop_oneof![
            Just(Selector::Text),
            "(/[a-z~01]{0,4}){0,3}".prop_map(Selector::JsonPointer),
            (
                "[a-z_][a-z_0-9:]{0,6}",
                proptest::collection::vec(("[a-z]{1,3}", "[ -~]{0,4}"), 0..3)
            )
                .prop_map(|(name, labels)| Selector::Prometheus(PromSelector { name, labels })),
        ]
    }

    /// Bodies a sensor might send: random bytes, or text made of the
    /// characters the three formats use.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "[a-z0-9_{}\\[\\]\":,.#=\\\\ \n+eE-]{0,200}".prop_map(String::into_bytes),
        ]
    }

    fn json_key() -> impl Strategy<Value = String> {
        // `/` and `~` must be escaped in the pointer.
        "[a-z/~0-9 ]{0,6}"
    }

    /// A JSON value of noise.
    fn noise() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i32>().prop_map(|n| serde_json::json!(n)),
            "[ -~]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(json_key(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// One step of the path to the reading: a key in an object (beside
    /// noise keys) or an index in an array (after noise items).
    #[derive(Debug, Clone)]
    enum Step {
        Key(String, serde_json::Map<String, serde_json::Value>),
        Index(Vec<serde_json::Value>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (
                json_key(),
                proptest::collection::btree_map(json_key(), noise(), 0..3)
            )
                .prop_map(|(k, m)| Step::Key(k, m.into_iter().collect())),
            proptest::collection::vec(noise(), 0..3).prop_map(Step::Index),
        ]
    }

    fn escape(key: &str) -> String {
        key.replace('~', "~0").replace('/', "~1")
    }

    /// A Prometheus label value as written in the text format.
    fn prom_escape(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    fn labels_text(labels: &[(String, String)]) -> String {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", prom_escape(v)))
            .collect();
        format!("{{{}}}", l.join(","))
    }

    proptest! {
        #![proptest_config(cases(1000))]

        /// Any body with any selector: a number or a typed error; and what
        /// `convert` then says is consistent with the value.
        #[test]
        fn arbitrary_body(body in body(), sel in selector(), from in unit(), to in unit()) {
            match extract(&body, &sel) {
                Ok(v) => match convert(v, from, to) {
                    Ok(x) => {
                        prop_assert!(v.is_finite() && kelvin(v, from) >= -1e-9);
                        prop_assert!(x.is_finite() || kelvin(v, from) > 1e300);
                        if from == to {
                            prop_assert_eq!(x, v);
                        }
                    }
                    Err(UnitError::NotFinite) => prop_assert!(!v.is_finite()),
                    Err(UnitError::BelowAbsoluteZero { value, .. }) => {
                        prop_assert_eq!(value, v);
                        prop_assert!(kelvin(v, from) < 0.0);
                    }
                },
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// The number at a generated path among noise, as a JSON number or
        /// as a string, is read exactly.
        #[test]
        fn json_embedded(
            (text, value) in reading(),
            as_string in any::<bool>(),
            path in proptest::collection::vec(step(), 0..4),
        ) {
            let mut doc = if as_string {
                serde_json::Value::String(format!(" {text} "))
            } else {
                serde_json::from_str(&text).unwrap()
            };
            let mut pointer = Vec::new();
            for s in path.into_iter().rev() {
                match s {
                    Step::Key(k, mut map) => {
                        pointer.push(escape(&k));
                        map.insert(k, doc);
                        doc = serde_json::Value::Object(map);
                    }
                    Step::Index(mut items) => {
                        pointer.push(items.len().to_string());
                        items.push(doc);
                        doc = serde_json::Value::Array(items);
                    }
                }
            }
            let pointer: String = pointer.iter().rev().map(|p| format!("/{p}")).collect();
            let body = serde_json::to_vec_pretty(&doc).unwrap();
            prop_assert_eq!(extract(&body, &Selector::JsonPointer(pointer)), Ok(value));
        }

        /// The one series the selector matches, among comments, other
        /// series and series of the same name with other label values, is
        /// read exactly; labels may come in any order, with escapes.
        #[test]
        fn prometheus_embedded(
            (text, value) in reading(),
            name in "[a-z_][a-z0-9_:]{0,8}",
            labels in proptest::collection::btree_map("[a-z_]{1,4}", "[ -~\n]{0,6}", 0..3),
            extra in proptest::collection::btree_map("[A-Z]{1,3}", "[ -~]{0,4}", 0..2),
            reversed in any::<bool>(),
            timestamp in proptest::option::of(0u64..2_000_000_000_000),
            noise in proptest::collection::vec((0u8..4, "[a-z_]{1,6}", "[ -~]{0,6}"), 0..12),
            at in any::<prop::sample::Index>(),
        ) {
            let labels: Vec<(String, String)> = labels.into_iter().collect();
            let mut written: Vec<(String, String)> =
                labels.iter().cloned().chain(extra).collect();
            if reversed {
                written.reverse();
            }
            let mut target = name.clone();
            if !written.is_empty() {
                target.push_str(&labels_text(&written));
            }
            target.push_str(&format!(" {text}"));
            if let Some(ts) = timestamp {
                target.push_str(&format!(" {ts}"));
            }
            let mut lines: Vec<String> = noise
                .iter()
                .map(|(kind, word, v)| match kind {
                    0 => format!("# HELP {word} {v}"),
                    1 => format!("{}_{word} {}", name, v.len()),
                    // Same name, a selected label with another value.
                    2 if !labels.is_empty() => {
                        let mut l = labels.clone();
                        l[0].1.push('x');
                        format!("{name}{} 1", labels_text(&l))
                    }
                    _ => String::new(),
                })
                .collect();
            lines.insert(at.index(lines.len() + 1), target);
            let body = lines.join("\n") + "\n";
            let sel = Selector::Prometheus(PromSelector { name, labels });
            prop_assert_eq!(extract(body.as_bytes(), &sel), Ok(value), "body:\n{}", body);
        }

        /// A text body is the number, whatever whitespace surrounds it.
        #[test]
        fn text_embedded(
            (text, value) in reading(),
            before in "[ \t\r\n]{0,4}",
            after in "[ \t\r\n]{0,4}",
        ) {
            let body = format!("{before}{text}{after}");
            prop_assert_eq!(extract(body.as_bytes(), &Selector::Text), Ok(value));
        }

        /// Converting there and back gives the value again.
        #[test]
        fn units_round_trip(v in -1e6f64..1e6, from in unit(), to in unit()) {
            match convert(v, from, to) {
                Ok(x) => {
                    let back = convert(x, to, from).unwrap();
                    prop_assert!((back - v).abs() <= 1e-9 * v.abs().max(1.0), "{v} -> {x} -> {back}");
                }
                Err(UnitError::BelowAbsoluteZero { .. }) => prop_assert!(kelvin(v, from) < -1e-9),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}

mod repair {
    use super::*;
    use edge_agent::store::{ActiveFile, HEADER};

    /// What follows the cut: nothing, zeros (a block allocated but never
    /// written), or arbitrary bytes, with or without newlines.
    fn tail() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            (1usize..600).prop_map(|n| vec![0u8; n]),
            proptest::collection::vec(
                any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
                1..64
            ),
            proptest::collection::vec(any::<u8>(), 1..64),
            "[0-9a-z,:.T\n-]{1,64}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(cases(300))]

        /// After a cut anywhere and any tail: the header, every row that
        /// was complete before the cut, then lines the tail itself formed
        /// that parse as rows (the damage cannot be told from data there),
        /// then the new rows. Every line parses; nothing is torn.
        #[test]
        fn torn_tail_repaired(
            old in rows(40),
            new in rows(5),
            cut in any::<prop::sample::Index>(),
            tail in tail(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("readings.csv");
            let mut full = HEADER.as_bytes().to_vec();
            full.extend(encode(&old));
            let cut = cut.index(full.len() + 1);
            let mut damaged = full[..cut].to_vec();
            damaged.extend(&tail);
            std::fs::write(&path, &damaged).unwrap();
            // Ours: the first line is the header, or only the header was
            // being written (a start of it, then zeros).
            let whole = lines(&damaged);
            let head = &damaged[..damaged.len().min(512)];
            let ours = match head.iter().position(|b| *b == b'\n') {
                Some(i) => head[..i] == *HEADER.trim_end().as_bytes(),
                None => {
                    let text = head.iter().position(|b| *b == 0).unwrap_or(head.len());
                    HEADER.as_bytes().starts_with(&head[..text])
                        && head[text..].iter().all(|b| *b == 0)
                }
            };
            let opened = block_on(ActiveFile::open(&RealDisk, &path));
            if !ours {
                // Someone else's file: never cut, never appended to.
                prop_assert!(opened.is_err(), "opened a file that is not ours");
                prop_assert_eq!(std::fs::read(&path).unwrap(), damaged);
                return Ok(());
            }
            let mut active = opened.unwrap();
            let added = encode(&new);
            block_on(active.append(&added)).unwrap();
            prop_assert_eq!(active.size(), std::fs::metadata(&path).unwrap().len());
            drop(active);
            let after = std::fs::read(&path).unwrap();
            prop_assert_eq!(after.last().copied().unwrap_or(b'\n'), b'\n', "torn last line");
            let got = lines(&after);
            prop_assert_eq!(got[0], HEADER.trim_end().as_bytes());
            let kept = lines(&full[..cut]);
            let new_lines = lines(&added);
            prop_assert!(got.len() >= kept.len().max(1) + new_lines.len());
            // Every complete row before the cut is still there, in order.
            prop_assert_eq!(&got[..kept.len().max(1)], &lines(&full)[..kept.len().max(1)]);
            // The new rows come last.
            prop_assert_eq!(&got[got.len() - new_lines.len()..], &new_lines[..]);
            // Between them only lines of the damaged file that parse.
            for l in &got[kept.len().max(1)..got.len() - new_lines.len()] {
                prop_assert!(whole.contains(l), "line not in the damaged file");
            }
            for (i, l) in got.iter().enumerate().skip(1) {
                prop_assert!(parses(l), "line {} does not parse: {:?}", i + 1, String::from_utf8_lossy(l));
            }
        }
    }
}

mod replay {
    use super::*;
    use edge_agent::replay::read::COLUMNS;
    use edge_agent::replay::{
        self as replayer, FileReader, FileWriter, Format, Next, Record, Sink,
    };
    use edge_agent::store::index::{self, Index};
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
}

/// The cases the targets found, kept as plain tests.
mod found {
    use super::*;
    use edge_agent::replay::{FileReader, Next};
    use edge_agent::store::{ActiveFile, HEADER};

    const ROW: &str = "2023-11-14T22:13:20.000Z,g,21.000,20.000,22.000,celsius,3,0\n";

    /// open() used to cut the partial last line of a file that is not ours
    /// before noticing it is not ours.
    #[test]
    fn foreign_file_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["\na", "name,age\nbob,4", "no newline at all"] {
            let path = dir.path().join("readings.csv");
            std::fs::write(&path, text).unwrap();
            assert!(
                block_on(ActiveFile::open(&RealDisk, &path)).is_err(),
                "{text:?}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    /// Complete lines of garbage after the last row (a crash that left
    /// stale bytes with newlines in them) used to stay, and new rows went
    /// after them.
    #[test]
    fn garbage_lines_after_the_last_row_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readings.csv");
        let good = format!("{HEADER}{ROW}");
        std::fs::write(
            &path,
            format!("{good}2023-11-14T22:1\u{0}\u{0}\nxx,\n\u{0}"),
        )
        .unwrap();
        let mut active = block_on(ActiveFile::open(&RealDisk, &path)).unwrap();
        assert_eq!(active.size(), good.len() as u64);
        block_on(active.append(ROW.as_bytes())).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{good}{ROW}")
        );
    }

    /// A header cut short and followed by more than 512 zero bytes is a
    /// torn header, not someone else's file (a guard for the check of the
    /// header that now comes before any cut).
    #[test]
    fn torn_header_with_many_zeros_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readings.csv");
        let mut bytes = HEADER.as_bytes()[..9].to_vec();
        bytes.extend(vec![0u8; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        let active = block_on(ActiveFile::open(&RealDisk, &path)).unwrap();
        assert!(!active.has_rows());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    /// A stray `"` used to open a quoted field that swallowed every later
    /// line; now it costs its own line only.
    #[test]
    fn stray_quote_costs_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let damaged = ROW.replacen("21.000", "\"1.000", 1);
        let last = ROW.replacen("22:13:20", "22:13:30", 1);
        std::fs::write(&path, format!("{HEADER}{ROW}{damaged}{last}")).unwrap();
        let (rows, skips) = block_on(async {
            let mut reader = FileReader::open(&path, false, 4096).await.unwrap();
            let (mut rows, mut skips) = (Vec::new(), Vec::new());
            while let Some(next) = reader.next().await {
                match next {
                    Next::Row(r) => rows.push(r.field(0).to_string()),
                    Next::Skip(s) => skips.push(s.line),
                    Next::Block(_) | Next::Written(_) => unreachable!("a reader without an index"),
                }
            }
            (rows, skips)
        });
        assert_eq!(
            rows,
            ["2023-11-14T22:13:20.000Z", "2023-11-14T22:13:30.000Z"]
        );
        assert_eq!(skips, [Some(3)]);
    }
}
