//! Fuzz target: sensor bodies. Any body with any selector gives a number or
//! a typed error; a reading placed among noise (JSON, Prometheus text, plain
//! text) is read exactly; unit conversion is consistent and reversible.

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
            .prop_map(
                |(name, labels)| Selector::Prometheus(Box::new(PromSelector { name, labels }))
            ),
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
        let sel = Selector::Prometheus(Box::new(PromSelector { name, labels }));
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
