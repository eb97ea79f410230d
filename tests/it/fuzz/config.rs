//! Fuzz target: config text. Arbitrary bytes, YAML-like text and mutated
//! valid configs either give a config whose values were all checked, or
//! errors that each name a position or a key path.

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
