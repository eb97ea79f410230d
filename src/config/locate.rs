//! Where each key of `agent.yaml` stands, so that errors found after parsing
//! (a bad JSON pointer, a duplicate id) can still name `file:line:col`.
//!
//! serde's derive gives us typed structs but forgets positions. Rather than
//! wrap every field in a spanned type, we walk the document once more with
//! yaml-rust2's event parser and record the position of every key path
//! (`groups[0].sensors[2].value`). Validation then asks this index for the
//! path it complains about.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// Key path -> position of that key (or of that sequence item).
#[derive(Debug, Default)]
pub struct Locations {
    map: HashMap<String, Position>,
}

impl Locations {
    /// Index `text`. A document the scanner rejects yields an empty index:
    /// serde reports the syntax error itself, with its own position.
    pub fn index(text: &str) -> Locations {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Locations::default();
        }
        Locations { map: walker.map }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(pos) = self.map.get(path) {
                return Some(*pos);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// One open container while walking the event stream.
enum Frame {
    /// A mapping: `key` is the key whose value comes next, if any.
    /// `placed` is false for a mapping inside a sequence until its first key
    /// gives the item a position (the parser's own mark for it lies after
    /// that key).
    Map {
        path: String,
        key: Option<String>,
        placed: bool,
    },
    /// A sequence: the index the next item will get.
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
}

impl Walker {
    /// The path of the node that is about to start, recording its position.
    /// Returns `None` when the node is a mapping key, not a value.
    fn enter(&mut self, mark: Marker, is_scalar: Option<&str>) -> Option<String> {
        let pos = Position {
            line: mark.line(),
            // yaml-rust2 counts columns from 0.
            col: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key, placed }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key. Only scalar keys make sense here.
                    let k = is_scalar.unwrap_or("?").to_string();
                    if !*placed {
                        self.map.insert(path.clone(), pos);
                        *placed = true;
                    }
                    self.map.insert(join(path, &k), pos);
                    *key = Some(k);
                    None
                }
            },
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                if is_scalar.is_some() {
                    self.map.insert(p.clone(), pos);
                }
                Some(p)
            }
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.enter(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.enter(mark, Some("?"));
            }
            Event::MappingStart(..) => {
                let in_seq = matches!(self.stack.last(), Some(Frame::Seq { .. }));
                let path = self.enter(mark, None);
                // A mapping used as a key gets path "?" so nesting stays right.
                self.stack.push(Frame::Map {
                    placed: path.is_some() && !in_seq,
                    path: path.unwrap_or_else(|| "?".into()),
                    key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.enter(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text =
            "interval: 5s\ngroups:\n  - name: a\n    sensors:\n      - id: x\n        value: /t\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("interval"), Some(Position { line: 1, col: 1 }));
        assert_eq!(
            loc.find("groups[0].sensors[0].value"),
            Some(Position { line: 6, col: 9 })
        );
        assert_eq!(
            loc.find("groups[0].sensors[0]"),
            Some(Position { line: 5, col: 9 })
        );
        // Unknown leaf falls back to the nearest ancestor.
        assert_eq!(
            loc.find("groups[0].sensors[0].unit"),
            Some(Position { line: 5, col: 9 })
        );
    }
}
