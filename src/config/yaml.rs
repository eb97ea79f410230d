//! A streaming reader of YAML into the config's own structs, collecting
//! every problem it meets instead of stopping at the first.
//!
//! Why not serde: a derive stops at the first unknown key or wrong type,
//! its messages name Rust types (`expected usize`) rather than what a key
//! means, and `serde_yaml_ng` keeps every event of the document in memory
//! before building anything (4.6 MiB at 10,000 sensors, the agent's peak).
//! This reader pulls yaml-rust2's events one at a time and hands each value
//! straight to the code that builds the struct, so the document is never
//! held whole, and every key is judged against a table of [`Field`]s that
//! says what it means and what it takes: a problem reads
//! `groups[0].sensors[2].format: `xml` is not one of json, prometheus, text
//! (how the response body is read)`, at the line and column of the value.
//!
//! Anchors and aliases are supported: the events of an anchored node are
//! kept (only those) and replayed where an alias names it.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::model::Problem;

/// One key a mapping may hold.
pub struct Field {
    pub name: &'static str,
    /// What the key is for, in a few words (shown with its problems).
    pub means: &'static str,
    /// What it takes (`a duration such as 5s`, `one of json, text`).
    pub takes: &'static str,
    /// Whether the mapping is incomplete without it.
    pub required: bool,
}

/// Where a node sits in the document, rendered (only for a problem) as
/// `groups[0].sensors[2].url`.
#[derive(Clone, Copy)]
pub enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl At<'_> {
    pub fn key<'p>(&'p self, name: &'p str) -> At<'p> {
        At::Key(self, name)
    }
    pub fn index(&self, i: usize) -> At<'_> {
        At::Index(self, i)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(parent, name) => {
                if matches!(parent, At::Root) {
                    write!(f, "{name}")
                } else {
                    write!(f, "{parent}.{name}")
                }
            }
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A scalar as written.
pub struct Scalar {
    pub text: String,
    /// Unquoted: `5` is a number, `true` a boolean, `~` nothing.
    pub plain: bool,
}

impl Scalar {
    fn is_null(&self) -> bool {
        self.plain && is_null(&self.text, TScalarStyle::Plain)
    }

    /// YAML's booleans, unquoted.
    pub fn as_bool(&self) -> Option<bool> {
        match (self.plain, self.text.as_str()) {
            (true, "true" | "True" | "TRUE") => Some(true),
            (true, "false" | "False" | "FALSE") => Some(false),
            _ => None,
        }
    }
}

/// YAML's null: `~`, `null` or nothing, unquoted.
fn is_null(text: &str, style: TScalarStyle) -> bool {
    style == TScalarStyle::Plain && matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A 1-based position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

type Marked = (Event, Marker);

/// An anchored node being recorded: its anchor, its events so far, and how
/// many of its collections are still open.
struct Recording {
    anchor: usize,
    events: Vec<Marked>,
    open: usize,
}

/// The document being read, and the problems found in it so far.
pub struct Doc<'a> {
    parser: Parser<std::str::Chars<'a>>,
    peeked: Option<Marked>,
    /// Events of each anchored node, replayed at its aliases.
    anchors: HashMap<usize, Rc<[Marked]>>,
    /// Aliases being replayed: the events and the next one to give.
    replaying: Vec<(Rc<[Marked]>, usize)>,
    recording: Vec<Recording>,
    /// The end of the last event, for problems found at the end.
    last: Pos,
    /// A syntax error ends the reading: nothing after it can be trusted.
    broken: bool,
    /// Lines in the text: the scanner counts a lone `\r` as a line break,
    /// and a position at the very end may lie one past the last line.
    lines: usize,
    /// The document is not valid YAML (a problem says where).
    pub invalid: bool,
    pub problems: Vec<Problem>,
    /// Key paths this reader judged (a missing key's own path included), so
    /// that validation does not report the same key a second time.
    pub judged: Vec<String>,
}

/// What a node is, for "found a list" in messages.
fn kind(event: &Event) -> &'static str {
    match event {
        Event::MappingStart(..) => "a map",
        Event::SequenceStart(..) => "a list",
        Event::Scalar(..) => "a single value",
        _ => "the end of the document",
    }
}

impl<'a> Doc<'a> {
    pub fn new(text: &'a str) -> Doc<'a> {
        Doc {
            parser: Parser::new_from_str(text),
            peeked: None,
            anchors: HashMap::new(),
            replaying: Vec::new(),
            recording: Vec::new(),
            last: Pos { line: 1, col: 1 },
            broken: false,
            lines: text.lines().count().max(1),
            invalid: false,
            problems: Vec::new(),
            judged: Vec::new(),
        }
    }

    /// Note a problem at `pos` about `at`.
    pub fn fail(&mut self, at: &At, pos: Pos, message: impl Into<String>) {
        let key = at.to_string();
        self.judged.push(key.clone());
        self.problems.push(Problem {
            key,
            line: Some(pos.line.min(self.lines)),
            col: Some(pos.col),
            message: message.into(),
        });
    }

    /// The next event, aliases resolved; `None` after a syntax error or at
    /// the end of the stream.
    fn pull(&mut self) -> Option<Marked> {
        if let Some(e) = self.peeked.take() {
            return Some(e);
        }
        loop {
            if self.broken {
                return None;
            }
            let (event, mark, replayed) = if let Some((events, next)) = self.replaying.last_mut() {
                if *next == events.len() {
                    self.replaying.pop();
                    continue;
                }
                let (e, m) = events[*next].clone();
                *next += 1;
                (e, m, true)
            } else {
                match self.parser.next_token() {
                    Ok((e, m)) => (e, m, false),
                    Err(e) => {
                        self.broken = true;
                        self.invalid = true;
                        let pos = Pos::from(*e.marker());
                        self.fail(&At::Root, pos, format!("not valid YAML: {}", e.info()));
                        return None;
                    }
                }
            };
            if let Event::Alias(id) = event {
                match self.anchors.get(&id) {
                    Some(events) => {
                        let events = events.clone();
                        self.replaying.push((events, 0));
                    }
                    None => {
                        self.broken = true;
                        self.invalid = true;
                        let pos = Pos::from(mark);
                        self.fail(
                            &At::Root,
                            pos,
                            "this alias refers to the node that contains it; a config cannot repeat itself",
                        );
                        return None;
                    }
                }
                continue;
            }
            if event == Event::StreamEnd {
                // The parser repeats its last event forever.
                self.broken = true;
            }
            self.record(&event, mark, replayed);
            self.last = Pos::from(mark);
            return Some((event, mark));
        }
    }

    /// Keep `event` for the anchors being recorded, and start recording an
    /// anchored node. Replayed events are not recorded again as anchors
    /// (their anchors are already kept) but still belong to enclosing ones.
    fn record(&mut self, event: &Event, mark: Marker, replayed: bool) {
        let anchor = match event {
            Event::Scalar(_, _, a, _) | Event::SequenceStart(a, _) | Event::MappingStart(a, _) => {
                *a
            }
            _ => 0,
        };
        if anchor != 0 && !replayed {
            self.recording.push(Recording {
                anchor,
                events: Vec::new(),
                open: 0,
            });
        }
        let delta: isize = match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => 1,
            Event::SequenceEnd | Event::MappingEnd => -1,
            _ => 0,
        };
        let mut done = Vec::new();
        for (i, r) in self.recording.iter_mut().enumerate() {
            r.events.push((event.clone(), mark));
            r.open = r.open.saturating_add_signed(delta);
            if r.open == 0 {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let r = self.recording.remove(i);
            self.anchors.insert(r.anchor, r.events.into());
        }
    }

    fn peek(&mut self) -> Option<&Marked> {
        if self.peeked.is_none() {
            self.peeked = self.pull();
        }
        self.peeked.as_ref()
    }

    /// Whether the next node is a map.
    pub fn peek_is_map(&mut self) -> bool {
        matches!(self.peek(), Some((Event::MappingStart(..), _)))
    }

    /// Consume one whole node.
    pub fn skip(&mut self) {
        let mut open = 0usize;
        while let Some((event, _)) = self.pull() {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => open += 1,
                Event::SequenceEnd | Event::MappingEnd => open = open.saturating_sub(1),
                Event::Scalar(..) => {}
                _ => return,
            }
            if open == 0 {
                return;
            }
        }
    }

    /// The position of the next node.
    pub fn here(&mut self) -> Pos {
        match self.peek() {
            Some((_, m)) => Pos::from(*m),
            None => self.last,
        }
    }

    /// Read the whole stream: `root` reads the one document's top node.
    pub fn document(&mut self, root: impl FnOnce(&mut Doc<'a>)) {
        while let Some((event, _)) = self.peek() {
            match event {
                Event::StreamStart | Event::DocumentStart => {
                    self.pull();
                }
                _ => break,
            }
        }
        let empty = matches!(self.peek(), Some((Event::StreamEnd, _)) | None);
        if empty && !self.invalid {
            let pos = self.here();
            self.invalid = true;
            self.fail(
                &At::Root,
                pos,
                "the file is empty; see the shipped agent.yaml for a complete example",
            );
            return;
        }
        root(self);
        while let Some((event, mark)) = self.pull() {
            match event {
                Event::DocumentEnd | Event::StreamEnd => {}
                _ => {
                    self.fail(
                        &At::Root,
                        Pos::from(mark),
                        "a second YAML document (after `---`); the config is one document",
                    );
                    return;
                }
            }
        }
    }

    /// A scalar value for `field` at `at`. A map or a list is a problem (and
    /// is skipped); a null (`~`, `null`, nothing) gives `None`, a problem
    /// too when the field is required.
    pub fn scalar(&mut self, at: &At, field: &Field) -> Option<(Scalar, Pos)> {
        let (event, mark) = self.pull()?;
        let pos = Pos::from(mark);
        match event {
            Event::Scalar(text, style, _, _) => {
                let s = Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                };
                if s.is_null() {
                    self.empty(at, pos, field);
                    return None;
                }
                Some((s, pos))
            }
            other => {
                self.refuse(at, field, other, mark);
                None
            }
        }
    }

    /// A null where `field` was expected: a problem when it is required.
    fn empty(&mut self, at: &At, pos: Pos, field: &Field) {
        if field.required {
            self.fail(
                at,
                pos,
                format!("is empty; {}: {}", field.means, field.takes),
            );
        }
    }

    /// A scalar that is not one of the values `field` takes.
    fn not_taken(&mut self, at: &At, pos: Pos, s: &Scalar, field: &Field) {
        self.fail(
            at,
            pos,
            format!("`{}` is not {} ({})", s.text, field.takes, field.means),
        );
    }

    /// A node of the wrong kind for `field`, starting with `event`: a
    /// problem, and the whole node skipped.
    fn refuse(&mut self, at: &At, field: &Field, event: Event, mark: Marker) {
        let found = kind(&event);
        self.peeked = Some((event, mark));
        self.skip();
        self.fail(
            at,
            Pos::from(mark),
            format!("expected {}, found {found} ({})", field.takes, field.means),
        );
    }

    /// Open a collection: the next node's start event must be the one
    /// `wanted` (a list or a map). A null is `None`, a problem only when
    /// `field.required`; anything else is a problem and is skipped.
    fn open(&mut self, at: &At, field: &Field, wanted: fn(&Event) -> bool) -> Option<Pos> {
        let (event, mark) = self.pull()?;
        let pos = Pos::from(mark);
        if wanted(&event) {
            return Some(pos);
        }
        match event {
            Event::Scalar(text, style, ..) if is_null(&text, style) => self.empty(at, pos, field),
            other => self.refuse(at, field, other, mark),
        }
        None
    }

    /// A map key: its text, or (a list or map as key) a problem and the
    /// key and its value skipped.
    fn key(&mut self, at: &At, event: Event, mark: Marker) -> Option<String> {
        match event {
            Event::Scalar(text, ..) => Some(text),
            other => {
                self.peeked = Some((other, mark));
                self.skip();
                self.fail(
                    at,
                    Pos::from(mark),
                    "a key must be a plain word, not a list or a map",
                );
                self.skip();
                None
            }
        }
    }

    /// Text (any scalar as written).
    pub fn string(&mut self, at: &At, field: &Field) -> Option<String> {
        self.scalar(at, field).map(|(s, _)| s.text)
    }

    /// A whole number >= 0.
    pub fn count(&mut self, at: &At, field: &Field) -> Option<usize> {
        let (s, pos) = self.scalar(at, field)?;
        match s.text.parse::<usize>() {
            Ok(n) if s.plain => Some(n),
            _ => {
                self.not_taken(at, pos, &s, field);
                None
            }
        }
    }

    /// `true` or `false`.
    pub fn flag(&mut self, at: &At, field: &Field) -> Option<bool> {
        let (s, pos) = self.scalar(at, field)?;
        let flag = s.as_bool();
        if flag.is_none() {
            self.not_taken(at, pos, &s, field);
        }
        flag
    }

    /// One of a set of words: `choices` pairs each with its value.
    pub fn choice<T: Copy>(&mut self, at: &At, field: &Field, choices: &[(&str, T)]) -> Option<T> {
        let (s, pos) = self.scalar(at, field)?;
        match choices.iter().find(|(word, _)| *word == s.text) {
            Some((_, v)) => Some(*v),
            None => {
                self.not_taken(at, pos, &s, field);
                None
            }
        }
    }

    /// A list: `item` reads each element (exactly one node). A null gives
    /// an empty list (a problem if required); a scalar or map is a problem.
    pub fn list(&mut self, at: &At, field: &Field, mut item: impl FnMut(&mut Doc<'a>, &At, usize)) {
        if self
            .open(at, field, |e| matches!(e, Event::SequenceStart(..)))
            .is_none()
        {
            return;
        }
        let mut i = 0;
        loop {
            match self.peek() {
                Some((Event::SequenceEnd, _)) => {
                    self.pull();
                    return;
                }
                None => return,
                Some(_) => {
                    item(self, &at.index(i), i);
                    i += 1;
                }
            }
        }
    }

    /// A map whose keys are `fields`: `value` reads the value of each key
    /// found (exactly one node), given the key's index in `fields`. Unknown
    /// and repeated keys are problems (with the keys allowed, or the line of
    /// the first), as are missing required ones. Returns false (and skips
    /// the node) when the node is not a map: a null, which is a problem only
    /// when `whole.required`, or a scalar or list.
    pub fn map(
        &mut self,
        at: &At,
        whole: &Field,
        fields: &[Field],
        mut value: impl FnMut(&mut Doc<'a>, &At, usize),
    ) -> bool {
        let Some(start) = self.open(at, whole, |e| matches!(e, Event::MappingStart(..))) else {
            return false;
        };
        let mut seen = vec![false; fields.len()];
        // A block map's own mark can lie after its first key: a missing key
        // is reported at the first key's position.
        let mut first_key = None;
        self.keys(at, |doc, name, pos| {
            first_key.get_or_insert(pos);
            match fields.iter().position(|f| f.name == name) {
                Some(i) => {
                    seen[i] = true;
                    value(doc, &at.key(fields[i].name), i);
                }
                None => {
                    doc.fail(&at.key(&name), pos, unknown_key(&name, fields));
                    doc.skip();
                }
            }
        });
        for (f, seen) in fields.iter().zip(&seen) {
            if f.required && !seen {
                self.fail(
                    at,
                    first_key.unwrap_or(start),
                    format!("missing key `{}` ({}): {}", f.name, f.means, f.takes),
                );
                self.judged.push(at.key(f.name).to_string());
            }
        }
        true
    }

    /// A map of free-form keys (HTTP headers): `value` reads each value.
    /// A repeated key is a problem.
    pub fn entries(
        &mut self,
        at: &At,
        whole: &Field,
        mut value: impl FnMut(&mut Doc<'a>, &At, String),
    ) {
        if self
            .open(at, whole, |e| matches!(e, Event::MappingStart(..)))
            .is_none()
        {
            return;
        }
        self.keys(at, |doc, name, _| value(doc, &at.key(&name), name.clone()));
    }

    /// The keys of a map whose start was read, up to its end: `each` gets
    /// every key's first appearance and its position, and reads (or skips)
    /// its value. A repeated key is a problem naming the first's line, and
    /// its value is skipped.
    fn keys(&mut self, at: &At, mut each: impl FnMut(&mut Doc<'a>, String, Pos)) {
        let mut seen: Vec<(String, usize)> = Vec::new();
        while let Some((event, mark)) = self.pull() {
            if event == Event::MappingEnd {
                return;
            }
            let pos = Pos::from(mark);
            let Some(name) = self.key(at, event, mark) else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == name) {
                let first = *first;
                self.fail(
                    &at.key(&name),
                    pos,
                    format!("is given twice (first on line {first}); remove one"),
                );
                self.skip();
            } else {
                seen.push((name.clone(), pos.line));
                each(self, name, pos);
            }
        }
    }
}

/// "unknown key `tiemout`; did you mean `timeout`? The keys here are: ..."
fn unknown_key(name: &str, fields: &[Field]) -> String {
    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let close = fields
        .iter()
        .map(|f| (edit_distance(name, f.name), f.name))
        .filter(|(d, f)| *d <= 2.max(f.len() / 4))
        .min();
    match close {
        Some((_, near)) => format!(
            "unknown key; did you mean `{near}`? The keys here are: {}",
            names.join(", ")
        ),
        None => format!("unknown key; the keys here are: {}", names.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}
