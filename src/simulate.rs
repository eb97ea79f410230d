//! Simulated sensors, so the agent can be tried and tested without hardware.
//!
//! One HTTP server (hyper) per listen address answers any path of the form
//! `/FORMAT/ID`, where FORMAT is `json`, `prometheus` or `text`. Values are
//! plausible temperatures: a per-sensor base between 15 and 25 °C, a slow
//! daily-ish swing and a little noise, all derived from the sensor id and the
//! current second, so two requests in the same second agree and runs are
//! reproducible.
//!
//! Query parameters shape a sensor's behaviour, overriding the server's
//! defaults: `latency=20ms` delays the answer, `fail=0.1` answers 10% of
//! requests with HTTP 500, `garbage=0.1` answers 10% with HTTP 200 and an
//! HTML page instead of a reading, `unit=fahrenheit` changes the unit of
//! `text`.
//!
//! ```text
//! GET /json/gh-1        {"id":"gh-1","temperature_c":21.31,"temperature_f":70.36,...}
//! GET /prometheus/gh-1  sim_temperature_celsius{sensor="gh-1"} 21.310
//! GET /text/gh-1        21.310
//! ```
//!
//! `run --simulate` stands in for a whole site ([`serve_site`]): one server
//! per address the config polls, each of which must be on loopback and plain
//! http, so the agent never answers for a real device.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;

/// Defaults for every simulated sensor of a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Delay before answering.
    pub latency: Duration,
    /// Share of requests answered with HTTP 500, 0.0 to 1.0.
    pub fail_rate: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency: Duration::ZERO,
            fail_rate: 0.0,
        }
    }
}

/// Bind every address first (so a port in use is reported before anything
/// starts), then serve them all in background tasks.
pub async fn start(addrs: &[SocketAddr], behaviour: Behaviour) -> std::io::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listeners.push(l);
    }
    let mut bound = Vec::new();
    for l in listeners {
        bound.push(l.local_addr()?);
        tokio::spawn(serve(l, behaviour));
    }
    Ok(bound)
}

/// Why `run --simulate` cannot stand in for the sensors of a config.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A sensor's host is not a loopback address (`host` as the URL names it).
    #[error("--simulate needs sensors on loopback addresses; sensor {sensor} is on {host}")]
    NotLoopback { sensor: String, host: String },
    #[error("--simulate serves plain http; sensor {sensor} uses {scheme}")]
    NotHttp { sensor: String, scheme: String },
    #[error(transparent)]
    Listen(std::io::Error),
}

/// Every address the sensors of `config` are polled on, each once, in the
/// order of the config; an error if one is not on loopback or not plain
/// http (`localhost` is taken as 127.0.0.1).
pub fn site_addrs(config: &Config) -> Result<Vec<SocketAddr>, SiteError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for (_, s) in config.sensors() {
        let host = s.url.host_str();
        let not_loopback = |host: String| SiteError::NotLoopback {
            sensor: s.id().to_string(),
            host,
        };
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| not_loopback(host.to_string()))?,
        };
        if !ip.is_loopback() {
            return Err(not_loopback(ip.to_string()));
        }
        if s.url.scheme() != "http" {
            return Err(SiteError::NotHttp {
                sensor: s.id().to_string(),
                scheme: s.url.scheme().to_string(),
            });
        }
        let addr = SocketAddr::new(ip, s.url.port());
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Ok(addrs)
}

/// Serve simulated sensors for every address of [`site_addrs`], with the
/// default [`Behaviour`] (the URLs' queries shape each sensor); the bound
/// addresses.
pub async fn serve_site(config: &Config) -> Result<Vec<SocketAddr>, SiteError> {
    let addrs = site_addrs(config)?;
    let bound = start(&addrs, Behaviour::default())
        .await
        .map_err(SiteError::Listen)?;
    let shown: Vec<String> = bound.iter().map(|a| a.to_string()).collect();
    tracing::info!("simulating the site's sensors on {}", shown.join(", "));
    Ok(bound)
}

/// Accept connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, behaviour: Behaviour) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("simulator accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, behaviour));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    defaults: Behaviour,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // The latency counts from the request's arrival, not from after parsing.
    let arrived = tokio::time::Instant::now();
    let mut behaviour = defaults;
    let mut unit = "celsius".to_string();
    let mut garbage_rate = 0.0;
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("latency", v)) => {
                if let Ok(d) = humantime::parse_duration(v) {
                    behaviour.latency = d;
                }
            }
            Some(("fail", v)) => {
                if let Ok(r) = v.parse::<f64>() {
                    behaviour.fail_rate = r.clamp(0.0, 1.0);
                }
            }
            Some(("garbage", v)) => {
                if let Ok(r) = v.parse::<f64>() {
                    garbage_rate = r.clamp(0.0, 1.0);
                }
            }
            Some(("unit", v)) => unit = v.to_string(),
            _ => {}
        }
    }
    if !behaviour.latency.is_zero() {
        tokio::time::sleep_until(arrived + behaviour.latency).await;
    }
    let path = req.uri().path();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (format, id) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if id.is_empty() || !matches!(format, "json" | "prometheus" | "text") {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "use /json/ID, /prometheus/ID or /text/ID\n".into(),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let second = now.as_secs();
    if behaviour.fail_rate > 0.0
        && unit_interval(hash(id.as_bytes(), second ^ 0xfa11)) < behaviour.fail_rate
    {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "simulated failure\n".into(),
        ));
    }
    if garbage_rate > 0.0 && unit_interval(hash(id.as_bytes(), second ^ 0x6a5b)) < garbage_rate {
        return Ok(reply(
            StatusCode::OK,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>\n".into(),
        ));
    }
    let c = celsius(id, now);
    let f = c * 9.0 / 5.0 + 32.0;
    let k = c + 273.15;
    let humidity = 40.0 + 20.0 * unit_interval(hash(id.as_bytes(), 7));
    let (ctype, body) = match format {
        "json" => (
            "application/json",
            format!(
                "{{\"id\":\"{id}\",\"temperature_c\":{c:.3},\"temperature_f\":{f:.3},\"temperature_k\":{k:.3},\"humidity\":{humidity:.1}}}\n"
            ),
        ),
        "prometheus" => (
            "text/plain; version=0.0.4",
            format!(
                "# HELP sim_temperature_celsius Simulated temperature.\n# TYPE sim_temperature_celsius gauge\n\
                 sim_temperature_celsius{{sensor=\"{id}\"}} {c:.3}\n\
                 sim_temperature_fahrenheit{{sensor=\"{id}\"}} {f:.3}\n\
                 sim_humidity_percent{{sensor=\"{id}\"}} {humidity:.1}\n"
            ),
        ),
        _ => {
            let v = match unit.as_str() {
                "fahrenheit" => f,
                "kelvin" => k,
                _ => c,
            };
            ("text/plain", format!("{v:.3}\n"))
        }
    };
    Ok(reply(StatusCode::OK, ctype, body))
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The simulated temperature of sensor `id` at `now`, in °C.
pub fn celsius(id: &str, now: Duration) -> f64 {
    let base = 15.0 + 10.0 * unit_interval(hash(id.as_bytes(), 1));
    let phase = std::f64::consts::TAU * unit_interval(hash(id.as_bytes(), 2));
    let swing = 3.0 * (std::f64::consts::TAU * now.as_secs_f64() / 3600.0 + phase).sin();
    let noise = 0.5 * (unit_interval(hash(id.as_bytes(), now.as_secs())) - 0.5);
    base + swing + noise
}

/// FNV-1a over `bytes`, mixed with `salt` (splitmix64 finaliser).
fn hash(bytes: &[u8], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Map a hash to [0, 1).
fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_plausible_and_deterministic() {
        for i in 0..100 {
            let id = format!("s{i}");
            let t = Duration::from_secs(1_800_000_000 + i * 37);
            let c = celsius(&id, t);
            assert!((11.0..=29.0).contains(&c), "{c}");
            assert_eq!(c, celsius(&id, t));
        }
    }

    /// A config whose sensors have these URLs, one group.
    fn site(urls: &[&str]) -> Config {
        let mut text = String::from(
            "interval: 2s\ntimeout: 1s\noutput: { dir: /tmp/sim-site }\n\
             groups:\n  - name: g\n    unit: celsius\n    sensors:\n",
        );
        for (i, url) in urls.iter().enumerate() {
            text.push_str(&format!(
                "      - {{ id: s{i}, url: \"{url}\", format: text }}\n"
            ));
        }
        Config::parse(&text, std::path::Path::new("t.yaml")).unwrap()
    }

    fn refusal(urls: &[&str]) -> String {
        site_addrs(&site(urls)).unwrap_err().to_string()
    }

    #[test]
    fn a_site_on_loopback_is_served_once_per_address() {
        let addrs = site_addrs(&site(&[
            "http://127.0.0.1:18321/json/a",
            "http://localhost:18321/text/b",
            "http://127.0.0.2/text/c",
            "http://[::1]:9000/text/d",
            "http://127.0.0.1:18321/prometheus/e",
        ]))
        .unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:18321", "127.0.0.2:80", "[::1]:9000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(addrs, want);
    }

    #[test]
    fn a_site_off_loopback_or_not_plain_http_is_refused() {
        let loopback = "--simulate needs sensors on loopback addresses";
        assert_eq!(
            refusal(&["http://127.0.0.1/a", "http://10.0.0.1:1/b"]),
            format!("{loopback}; sensor s1 is on 10.0.0.1")
        );
        assert_eq!(
            refusal(&["http://sensor.example:1/a"]),
            format!("{loopback}; sensor s0 is on sensor.example")
        );
        assert_eq!(
            refusal(&["http://[::2]:1/a"]),
            format!("{loopback}; sensor s0 is on ::2")
        );
        assert_eq!(
            refusal(&["https://127.0.0.1/a"]),
            "--simulate serves plain http; sensor s0 uses https"
        );
        // Off loopback is said first.
        assert_eq!(
            refusal(&["https://10.0.0.1/a"]),
            format!("{loopback}; sensor s0 is on 10.0.0.1")
        );
    }
}
