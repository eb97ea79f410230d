//! Which engine an `--output URL` is: InfluxDB 1.x, VictoriaMetrics, or
//! something else, asked of the server itself, and what follows from it.
//!
//! Why it matters: a batch whose acknowledgement never came may or may not
//! have been stored. Line protocol sent again to InfluxDB overwrites the
//! same points (same series, same timestamp), so resending is harmless
//! there; so it is to VictoriaMetrics started with
//! `-dedup.minScrapeInterval` (1ms will do), which keeps one sample per
//! series and timestamp. Without that flag VictoriaMetrics keeps both
//! copies (`count_over_time` counts them twice, measured with 1.x), and
//! any other endpoint (a collector that appends, a queue) may too. And each
//! engine drops rows older than its retention while acknowledging them, so
//! a replay that wants to know what was stored needs the retention too.
//!
//! How it is told: InfluxDB answers `GET /ping` with an `X-Influxdb-Build`
//! header (VictoriaMetrics answers `/ping` too, without it);
//! VictoriaMetrics' `/metrics` lists its flags
//! (`flag{name="retentionPeriod", value="1", ...}`). Both are asked at the
//! URL's base: the path without its `/write` (or `/api/v2/write`,
//! `/influx/write`), so an engine behind a path prefix is found as well.

use std::time::Duration;

/// An engine replay knows how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// InfluxDB 1.x: `db` (and `rp`) from the write URL's query.
    InfluxDb {
        db: Option<String>,
        rp: Option<String>,
    },
    /// VictoriaMetrics, with its `-retentionPeriod` when it could be read,
    /// and whether it deduplicates samples of one timestamp
    /// (`-dedup.minScrapeInterval` set).
    VictoriaMetrics {
        retention: Option<Duration>,
        dedup: bool,
    },
    /// Anything else: nothing is assumed about it.
    Other,
}

impl Engine {
    /// Whether sending a batch again cannot store its rows twice.
    pub fn overwrites(&self) -> bool {
        match self {
            Engine::InfluxDb { .. } => true,
            Engine::VictoriaMetrics { dedup, .. } => *dedup,
            Engine::Other => false,
        }
    }

    /// The engine's name in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::InfluxDb { .. } => "InfluxDB",
            Engine::VictoriaMetrics { dedup: true, .. } => "VictoriaMetrics",
            Engine::VictoriaMetrics { dedup: false, .. } => {
                "VictoriaMetrics without -dedup.minScrapeInterval (which keeps both copies)"
            }
            Engine::Other => "an endpoint that is neither InfluxDB nor VictoriaMetrics",
        }
    }
}

/// `url` without its write path and query: where `/ping`, `/query`,
/// `/metrics` and `/api/v1/export` are.
pub fn base(url: &reqwest::Url) -> reqwest::Url {
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let prefix = ["/api/v2/write", "/influx/write", "/write"]
        .iter()
        .find_map(|w| path.strip_suffix(w))
        .unwrap_or(path);
    base.set_path(prefix);
    base
}

/// `url` as messages show it: a password (in `user:password@` or a `p`,
/// `password` or `token` parameter, as InfluxDB 1.x takes credentials)
/// replaced by `<redacted>`; the rest (host, path, `db=`) kept, since it
/// says where the rows went.
pub fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("<redacted>"));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = matches!(k.as_ref(), "p" | "password" | "token");
                let v = if secret {
                    "<redacted>".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// `url`'s base joined with `path` (which starts with `/`).
pub fn at(url: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut u = base(url);
    let joined = format!("{}{path}", u.path().trim_end_matches('/'));
    u.set_path(&joined);
    u
}

/// Ask the server at `url` which engine it is; `Other` when neither
/// answers as itself (or does not answer within `timeout`).
pub async fn probe(client: &reqwest::Client, url: &reqwest::Url, timeout: Duration) -> Engine {
    let ping = client.get(at(url, "/ping")).timeout(timeout).send().await;
    if let Ok(r) = ping {
        if r.headers().contains_key("x-influxdb-build") {
            let param = |k: &str| {
                url.query_pairs()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.into_owned())
            };
            return Engine::InfluxDb {
                db: param("db"),
                rp: param("rp"),
            };
        }
    }
    let metrics = client
        .get(at(url, "/metrics"))
        .timeout(timeout)
        .send()
        .await;
    let text = match metrics {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => return Engine::Other,
    };
    if !text.contains("vm_app_version") && !text.contains("flag{name=\"retentionPeriod\"") {
        return Engine::Other;
    }
    let flag = |name: &str| {
        let start = format!("flag{{name=\"{name}\"");
        text.lines()
            .find(|l| l.starts_with(&start))
            .and_then(|l| l.split("value=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .map(str::to_string)
    };
    let retention = flag("retentionPeriod").and_then(|v| victoria_retention(&v));
    let dedup = flag("dedup.minScrapeInterval")
        .and_then(|v| humantime::parse_duration(&v).ok())
        .is_some_and(|d| !d.is_zero());
    Engine::VictoriaMetrics { retention, dedup }
}

/// VictoriaMetrics' `-retentionPeriod`: a number alone is months (31
/// days, as VictoriaMetrics counts them), else a number with `h`, `d`,
/// `w` or `y` (365 days).
pub fn victoria_retention(value: &str) -> Option<Duration> {
    const DAY: f64 = 86_400.0;
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => value.split_at(i),
        None => (value, "M"),
    };
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "h" => 3600.0,
        "d" => DAY,
        "w" => 7.0 * DAY,
        "M" => 31.0 * DAY,
        "y" => 365.0 * DAY,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then(|| Duration::from_secs_f64(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_the_url_without_its_write_path() {
        let b = |u: &str| base(&u.parse().unwrap()).to_string();
        assert_eq!(
            b("http://127.0.0.1:8086/write?db=edge"),
            "http://127.0.0.1:8086/"
        );
        assert_eq!(b("http://h:8428/influx/write"), "http://h:8428/");
        assert_eq!(b("http://h/vm/api/v2/write?bucket=x"), "http://h/vm");
        assert_eq!(b("http://h/other/path/"), "http://h/other/path");
        let at = |u: &str, p| at(&u.parse().unwrap(), p).to_string();
        assert_eq!(
            at("http://h:8086/write?db=e", "/ping"),
            "http://h:8086/ping"
        );
        assert_eq!(at("http://h/vm/write", "/metrics"), "http://h/vm/metrics");
    }

    #[test]
    fn a_shown_url_keeps_no_password() {
        let s = |u: &str| shown(&u.parse().unwrap());
        assert_eq!(
            s("http://127.0.0.1:8086/write?db=edge&u=me&p=secret"),
            "http://127.0.0.1:8086/write?db=edge&u=me&p=%3Credacted%3E"
        );
        assert_eq!(
            s("https://me:secret@h/write?db=edge"),
            "https://me:%3Credacted%3E@h/write?db=edge"
        );
        assert_eq!(s("http://h:8428/write"), "http://h:8428/write");
    }

    #[test]
    fn victoria_retention_periods() {
        let days = |d: u64| Some(Duration::from_secs(d * 86_400));
        assert_eq!(victoria_retention("1"), days(31));
        assert_eq!(victoria_retention("100y"), days(36_500));
        assert_eq!(victoria_retention("30d"), days(30));
        assert_eq!(victoria_retention("2w"), days(14));
        assert_eq!(victoria_retention("12h"), Some(Duration::from_secs(43_200)));
        for bad in ["", "x", "0", "-1", "3q"] {
            assert_eq!(victoria_retention(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_engines_overwrite() {
        let vm = |dedup| Engine::VictoriaMetrics {
            retention: None,
            dedup,
        };
        assert!(vm(true).overwrites());
        assert!(!vm(false).overwrites());
        let influx = Engine::InfluxDb { db: None, rp: None };
        assert!(influx.overwrites());
        assert!(!Engine::Other.overwrites());
    }
}
