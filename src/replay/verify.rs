//! `replay --verify`: after the last batch, ask the engine what it stored
//! and set it against what was sent.
//!
//! Why: an acknowledgement says a batch arrived, not that its points are
//! kept. VictoriaMetrics acknowledges rows older than its retention and
//! drops them (its default `-retentionPeriod` is one month); a proxy may
//! answer 204 for anything. So the replay counts what it sent, per series
//! (group and unit) and field, as the acknowledged batches go out, and
//! then asks the engine for its counts over the replayed time range:
//! VictoriaMetrics by `/api/v1/export`, InfluxDB by an InfluxQL `count()`.
//! Points older than the engine's retention (read at the start:
//! VictoriaMetrics' `-retentionPeriod`, InfluxDB's retention policy) are
//! counted apart, so the verdict can say how many were dropped for that
//! reason.
//!
//! The engine may hold more than was sent (points written before, in the
//! same series and range): that is said, not counted as a failure. Fewer
//! is a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::engine::{self, Engine};

/// The line-protocol fields a row becomes, in their order.
pub const FIELDS: [&str; 5] = ["mean", "min", "max", "ok", "failed"];

/// Why verifying could not be done.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "--verify: {url} answers as {engine}; replay can only ask InfluxDB and VictoriaMetrics \
         what they stored (drop --verify, or check the endpoint yourself)"
    )]
    Unknown { url: String, engine: &'static str },
    #[error("--verify: InfluxDB's write URL {url} names no database (`db=NAME`)")]
    NoDatabase { url: String },
    #[error("--verify: cannot ask {what}: {error}")]
    Ask { what: String, error: String },
}

/// Points sent per (group, unit) and field.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The engine's retention, read before the first batch.
    pub retention: Option<Duration>,
    /// Points older than this are outside the engine's retention.
    pub cutoff: Option<SystemTime>,
    /// (group, unit) -> points per field, all and outside the retention.
    pub series: BTreeMap<(String, String), ([u64; 5], [u64; 5])>,
    /// Nanoseconds of the first and last point sent.
    pub first_ns: Option<u128>,
    pub last_ns: Option<u128>,
    /// Rows sent, and those outside the retention (with their range).
    pub rows: u64,
    pub old_rows: u64,
    pub old_last_ns: Option<u128>,
}

impl Tally {
    /// Count the lines of an acknowledged batch (the agent's own line
    /// protocol: `MEASUREMENT,group=G,unit=U f=v,... NS`).
    pub fn add(&mut self, batch: &[u8]) {
        let cutoff_ns = self
            .cutoff
            .map(|c| c.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        for line in batch.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((key, fields, ns)) = split_line(line) else {
                continue;
            };
            let tag = |name: &str| {
                tags(key)
                    .into_iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .unwrap_or_default()
            };
            let old = cutoff_ns.is_some_and(|c| ns < c);
            let entry = self.series.entry((tag("group"), tag("unit"))).or_default();
            for field in fields.split(',') {
                let name = field.split('=').next().unwrap_or_default();
                if let Some(i) = FIELDS.iter().position(|f| *f == name) {
                    entry.0[i] += 1;
                    if old {
                        entry.1[i] += 1;
                    }
                }
            }
            self.rows += 1;
            if old {
                self.old_rows += 1;
                self.old_last_ns = self.old_last_ns.max(Some(ns));
            }
            self.first_ns = Some(self.first_ns.map_or(ns, |f| f.min(ns)));
            self.last_ns = self.last_ns.max(Some(ns));
        }
    }
}

/// A line cut into its series key, field set and time (nanoseconds),
/// minding backslash escapes in the key.
fn split_line(line: &str) -> Option<(&str, &str, u128)> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let key_end = loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b' ' => break i,
            _ => i += 1,
        }
    };
    let rest = &line[key_end + 1..];
    let (fields, ns) = rest.rsplit_once(' ')?;
    Some((&line[..key_end], fields, ns.parse().ok()?))
}

/// The tags of a series key, unescaped.
fn tags(key: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .skip(1)
        .filter_map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The engine's retention: how far back it keeps points (`None`: forever
/// or unknown).
pub async fn retention(
    client: &reqwest::Client,
    url: &reqwest::Url,
    engine: &Engine,
    timeout: Duration,
) -> Result<Option<Duration>, VerifyError> {
    match engine {
        Engine::VictoriaMetrics { retention, .. } => Ok(*retention),
        Engine::InfluxDb { db, rp } => {
            let db = db.as_deref().ok_or_else(|| VerifyError::NoDatabase {
                url: engine::shown(url),
            })?;
            let q = format!("SHOW RETENTION POLICIES ON {}", ident(db));
            let body = influx_query(client, url, db, &q, timeout).await?;
            let values = body["results"][0]["series"][0]["values"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let policy = values.iter().find(|v| match rp {
                Some(rp) => v[0].as_str() == Some(rp.as_str()),
                None => v[4].as_bool() == Some(true),
            });
            let duration = policy.and_then(|p| p[1].as_str()).unwrap_or("0s");
            Ok(go_duration(duration).filter(|d| !d.is_zero()))
        }
        Engine::Other => Err(VerifyError::Unknown {
            url: engine::shown(url),
            engine: engine.name(),
        }),
    }
}

/// A Go duration as InfluxDB prints it (`168h0m0s`).
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = std::mem::take(&mut number).parse().ok()?;
        total += n * match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
    }
    number.is_empty().then(|| Duration::from_secs_f64(total))
}

/// An InfluxQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn get_json(
    client: &reqwest::Client,
    url: reqwest::Url,
    what: &str,
    timeout: Duration,
) -> Result<String, VerifyError> {
    let fail = |error: String| VerifyError::Ask {
        what: what.to_string(),
        error,
    };
    let r = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!("HTTP {}: {}", status.as_u16(), text.trim())));
    }
    Ok(text)
}

async fn influx_query(
    client: &reqwest::Client,
    url: &reqwest::Url,
    db: &str,
    q: &str,
    timeout: Duration,
) -> Result<serde_json::Value, VerifyError> {
    let mut query = engine::at(url, "/query");
    {
        let mut pairs = query.query_pairs_mut();
        pairs.append_pair("db", db).append_pair("q", q);
        // Credentials given as query parameters go along.
        for (k, v) in url.query_pairs() {
            if k == "u" || k == "p" {
                pairs.append_pair(&k, &v);
            }
        }
    }
    let what = format!("InfluxDB ({q})");
    let text = get_json(client, query, &what, timeout).await?;
    let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| VerifyError::Ask {
        what: what.clone(),
        error: e.to_string(),
    })?;
    if let Some(error) = body["results"][0]["error"].as_str() {
        return Err(VerifyError::Ask {
            what,
            error: error.to_string(),
        });
    }
    Ok(body)
}

/// (group, unit) -> points per field the engine holds in the tally's range.
pub type Stored = BTreeMap<(String, String), [u64; 5]>;

/// Ask the engine what it holds of `measurement` in the tally's range.
pub async fn stored(
    client: &reqwest::Client,
    url: &reqwest::Url,
    engine: &Engine,
    measurement: &str,
    tally: &Tally,
    timeout: Duration,
) -> Result<Stored, VerifyError> {
    let (Some(first), Some(last)) = (tally.first_ns, tally.last_ns) else {
        return Ok(Stored::new());
    };
    let mut stored = Stored::new();
    match engine {
        Engine::VictoriaMetrics { .. } => {
            // Points written last are searchable once flushed.
            let _ = get_json(
                client,
                engine::at(url, "/internal/force_flush"),
                "",
                timeout,
            )
            .await;
            let mut export = engine::at(url, "/api/v1/export");
            let names = FIELDS.join("|");
            let selector = format!("{{__name__=~\"{}_({names})\"}}", regex_escape(measurement));
            let secs = |ns: u128| format!("{}.{:03}", ns / 1_000_000_000, ns / 1_000_000 % 1000);
            export
                .query_pairs_mut()
                .append_pair("match[]", &selector)
                .append_pair("start", &secs(first))
                .append_pair("end", &secs(last));
            // Streamed, a line (one series) at a time: the export of a long
            // replay is far larger than what is kept of it (counts).
            let what = "VictoriaMetrics' /api/v1/export";
            let fail = |error: String| VerifyError::Ask {
                what: what.to_string(),
                error,
            };
            let mut r = client
                .get(export)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !r.status().is_success() {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                return Err(fail(format!("HTTP {status}: {}", text.trim())));
            }
            let range = (first / 1_000_000, last / 1_000_000);
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = r.chunk().await.map_err(|e| fail(e.to_string()))? {
                pending.extend_from_slice(&chunk);
                let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
                    continue;
                };
                for line in pending[..end].split(|&b| b == b'\n') {
                    count_series(line, measurement, range, &mut stored);
                }
                pending.drain(..=end);
            }
            count_series(&pending, measurement, range, &mut stored);
        }
        Engine::InfluxDb { db, rp } => {
            let db = db.as_deref().ok_or_else(|| VerifyError::NoDatabase {
                url: engine::shown(url),
            })?;
            let from = match rp {
                Some(rp) => format!("{}.{}", ident(rp), ident(measurement)),
                None => ident(measurement),
            };
            let counts: Vec<String> = FIELDS
                .iter()
                .map(|f| format!("count({0}) AS {0}", ident(f)))
                .collect();
            let q = format!(
                "SELECT {} FROM {from} WHERE time >= {first} AND time <= {last} GROUP BY \"group\", \"unit\"",
                counts.join(", ")
            );
            let body = influx_query(client, url, db, &q, timeout).await?;
            let series = body["results"][0]["series"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for s in series {
                let tag = |k: &str| s["tags"][k].as_str().unwrap_or_default().to_string();
                let columns: Vec<String> = s["columns"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let row = &s["values"][0];
                let counts = stored.entry((tag("group"), tag("unit"))).or_default();
                for (i, f) in FIELDS.iter().enumerate() {
                    if let Some(col) = columns.iter().position(|c| c == f) {
                        counts[i] += row[col].as_u64().unwrap_or(0);
                    }
                }
            }
        }
        Engine::Other => {
            return Err(VerifyError::Unknown {
                url: engine::shown(url),
                engine: engine.name(),
            });
        }
    }
    Ok(stored)
}

/// Add the points of one line of VictoriaMetrics' export (a series:
/// labels, values, timestamps in ms) within `range` (ms) to `stored`.
fn count_series(line: &[u8], measurement: &str, (first, last): (u128, u128), stored: &mut Stored) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return;
    };
    let label = |k: &str| v["metric"][k].as_str().unwrap_or_default().to_string();
    let name = label("__name__");
    let field = name.strip_prefix(&format!("{measurement}_")).unwrap_or("");
    let Some(i) = FIELDS.iter().position(|f| *f == field) else {
        return;
    };
    let n = v["timestamps"].as_array().map_or(0, |ts| {
        ts.iter()
            .filter_map(serde_json::Value::as_u64)
            .filter(|t| (first..=last).contains(&u128::from(*t)))
            .count() as u64
    });
    stored.entry((label("group"), label("unit"))).or_default()[i] += n;
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What verifying found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The engine's name.
    pub engine: &'static str,
    /// Points sent, and how many of them the engine holds (at most the sent).
    pub sent: u64,
    pub held: u64,
    /// Points the engine holds beyond those sent (written before).
    pub extra: u64,
    /// Per (group, unit, field) where fewer are held than were sent:
    /// (sent, held, of the sent outside the retention).
    pub short: Vec<(String, String, &'static str, u64, u64, u64)>,
    /// Rows outside the retention, the last one's time, and the retention.
    pub old_rows: u64,
    pub old_last: Option<SystemTime>,
    pub retention: Option<Duration>,
    pub rows: u64,
}

impl Verdict {
    pub fn new(
        engine: &Engine,
        tally: &Tally,
        stored: &Stored,
        retention: Option<Duration>,
    ) -> Verdict {
        let mut v = Verdict {
            engine: match engine {
                Engine::InfluxDb { .. } => "InfluxDB",
                Engine::VictoriaMetrics { .. } => "VictoriaMetrics",
                Engine::Other => engine.name(),
            },
            sent: 0,
            held: 0,
            extra: 0,
            short: Vec::new(),
            old_rows: tally.old_rows,
            old_last: tally
                .old_last_ns
                .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns as u64)),
            retention,
            rows: tally.rows,
        };
        for ((group, unit), (sent, old)) in &tally.series {
            let held = stored
                .get(&(group.clone(), unit.clone()))
                .copied()
                .unwrap_or_default();
            for i in 0..FIELDS.len() {
                v.sent += sent[i];
                v.held += held[i].min(sent[i]);
                v.extra += held[i].saturating_sub(sent[i]);
                if held[i] < sent[i] {
                    v.short.push((
                        group.clone(),
                        unit.clone(),
                        FIELDS[i],
                        sent[i],
                        held[i],
                        old[i],
                    ));
                }
            }
        }
        v
    }

    /// Whether every point sent is held.
    pub fn complete(&self) -> bool {
        self.short.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.complete() {
            write!(
                f,
                "verified: {} holds all {} point(s) of the {} row(s) sent",
                self.engine, self.sent, self.rows
            )?;
        } else {
            let mut list = String::new();
            for (i, (g, u, field, sent, held, _)) in self.short.iter().enumerate() {
                if i == 5 {
                    let _ = write!(list, "; and {} more", self.short.len() - 5);
                    break;
                }
                let sep = if i == 0 { "" } else { "; " };
                let _ = write!(list, "{sep}group {g} ({u}) {field}: {held} of {sent}");
            }
            write!(
                f,
                "verify: {} holds {} of the {} point(s) sent ({} missing): {list}",
                self.engine,
                self.held,
                self.sent,
                self.sent - self.held
            )?;
        }
        if self.extra > 0 {
            write!(
                f,
                "; it also holds {} point(s) in that range that this replay did not send (written before)",
                self.extra
            )?;
        }
        if self.old_rows > 0 {
            let retention = match self.retention {
                Some(d) if d.as_secs() % 86_400 == 0 => format!("{}d", d.as_secs() / 86_400),
                Some(d) => humantime::format_duration(d).to_string(),
                None => "unknown".into(),
            };
            let hint = match self.engine {
                "VictoriaMetrics" => {
                    "start VictoriaMetrics with a longer -retentionPeriod (e.g. -retentionPeriod=10y) to keep them"
                }
                _ => "write them to a retention policy with a longer DURATION (rp=NAME in the URL)",
            };
            let last = self
                .old_last
                .map(|t| humantime::format_rfc3339_millis(t).to_string())
                .unwrap_or_default();
            write!(
                f,
                "; {} row(s) sent (up to {last}) are older than the retention of {} ({retention}), which drops such rows; {hint}",
                self.old_rows, self.engine
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_points_per_series_and_field() {
        let mut t = Tally {
            cutoff: Some(UNIX_EPOCH + Duration::from_secs(2)),
            ..Tally::default()
        };
        t.add(
            b"temperature,group=a,unit=celsius mean=1,min=1,max=1,ok=3i,failed=0i 1000000000\n\
              temperature,group=a,unit=celsius ok=0i,failed=3i 2000000000\n\
              t\\ e\\,x,group=b,unit=de\\=g ok=1i,failed=0i 3000000000\n",
        );
        let a = t.series[&("a".to_string(), "celsius".to_string())];
        assert_eq!(a, ([1, 1, 1, 2, 2], [1, 1, 1, 1, 1]));
        let b = t.series[&("b".to_string(), "de=g".to_string())];
        assert_eq!(b, ([0, 0, 0, 1, 1], [0; 5]));
        assert_eq!((t.rows, t.old_rows), (3, 1));
        assert_eq!(
            (t.first_ns, t.last_ns),
            (Some(1_000_000_000), Some(3_000_000_000))
        );
    }

    #[test]
    fn an_export_line_counts_the_points_of_its_field_in_range() {
        let mut stored = Stored::new();
        let line = br#"{"metric":{"__name__":"temperature_ok","group":"g","unit":"kelvin"},"values":[1,2,3],"timestamps":[1000,2000,3000]}"#;
        count_series(line, "temperature", (2000, 3000), &mut stored);
        let other = br#"{"metric":{"__name__":"other_ok","group":"g","unit":"kelvin"},"values":[1],"timestamps":[2000]}"#;
        count_series(other, "temperature", (2000, 3000), &mut stored);
        count_series(b"", "temperature", (2000, 3000), &mut stored);
        assert_eq!(
            stored[&("g".to_string(), "kelvin".to_string())],
            [0, 0, 0, 2, 0]
        );
        assert_eq!(stored.len(), 1);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(go_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(
            go_duration("168h0m0s"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(go_duration("1x"), None);
        assert_eq!(go_duration("12"), None);
    }

    #[test]
    fn a_verdict_names_what_is_missing() {
        let mut t = Tally::default();
        t.add(b"m,group=a,unit=celsius mean=1,ok=1i,failed=0i 5\n");
        let mut stored = Stored::new();
        stored.insert(("a".into(), "celsius".into()), [1, 0, 0, 1, 2]);
        let engine = Engine::InfluxDb { db: None, rp: None };
        let v = Verdict::new(&engine, &t, &stored, None);
        assert!(v.complete());
        assert_eq!(
            v.to_string(),
            "verified: InfluxDB holds all 3 point(s) of the 1 row(s) sent; it also holds 1 \
             point(s) in that range that this replay did not send (written before)"
        );
        let v = Verdict::new(&engine, &t, &Stored::new(), None);
        assert!(!v.complete());
        assert_eq!(
            v.to_string(),
            "verify: InfluxDB holds 0 of the 3 point(s) sent (3 missing): group a (celsius) \
             mean: 0 of 1; group a (celsius) ok: 0 of 1; group a (celsius) failed: 0 of 1"
        );
    }
}
