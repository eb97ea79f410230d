//! The shared reqwest clients, for `https://` sensors and replay's endpoint
//! (`http://` sensors go through [`super::http1`]).
//!
//! One `reqwest::Client` serves every sensor with the same TLS settings, so
//! connections are pooled and reused across cycles. Most sites have a single
//! TLS setting and so a single client; a sensor with its own `ca_file` or
//! `insecure: true` gets the client for that setting (the config warns about
//! each insecure sensor when it is loaded).
//!
//! TLS is set up only where a URL needs it. A client none of whose sensors
//! is `https://` trusts no certificate at all and loads none, so the agent
//! starts on an image without a CA bundle (a minimal Debian has no
//! `ca-certificates`); it refuses a redirect to https with a reason in
//! words. A client for https sensors trusts the system's CA certificates,
//! loaded once per set-up by rustls-native-certs (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` if set, else the usual bundle files and directories),
//! plus the setting's `tls.ca_file`. With neither there is nothing to check
//! a certificate against, and the error says where the bundle was looked
//! for, what provides it, and that `tls.ca_file` would do instead.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, Sensor, Tls};

use super::http1::{MAX_REDIRECTS, TO_HTTPS};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {source}")]
    CaPem {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    NoCaBundle(NoCaBundle),
    /// reqwest says only "builder error"; the message carries its causes.
    #[error("cannot set up the HTTP client: {}", causes(.0))]
    Build(#[source] reqwest::Error),
}

/// No CA certificate to verify an https server's certificate against.
#[derive(Debug)]
pub struct NoCaBundle {
    /// Who needs one: "the https sensor `t1` (https://10.0.0.5:443)".
    pub what: String,
    /// Where the system's certificates were looked for, and what went wrong.
    pub looked: String,
    /// Whether `tls.ca_file` is a way out (for sensors, not replay's endpoint).
    pub ca_file_helps: bool,
}

impl fmt::Display for NoCaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot verify the certificate of {}: no CA certificates found ({}); install the package `ca-certificates` (it provides \
             /etc/ssl/certs/ca-certificates.crt)",
            self.what, self.looked
        )?;
        if self.ca_file_helps {
            f.write_str(
                ", or set `tls.ca_file` on the sensor to the CA certificate (PEM) that signed its certificate",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NoCaBundle {}

/// `e` and its causes, outermost first: "builder error: ...".
fn causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Make ring the process's rustls crypto provider. reqwest is built without
/// one (to keep aws-lc and its C toolchain out of the ARM builds), so this
/// must run before the first client is built. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The clients for a config, one per distinct TLS setting.
pub struct Clients {
    by_tls: HashMap<Tls, reqwest::Client>,
}

impl Clients {
    pub fn build(config: &Config) -> Result<Clients, ClientError> {
        install_crypto_provider();
        // Per TLS setting of https sensors: the first of them, and how many.
        // http sensors go through `http1` and need no client here.
        let mut settings: HashMap<&Tls, (&Sensor, usize)> = HashMap::new();
        for (_, sensor) in config.sensors() {
            if sensor.url.scheme() == "https" {
                settings.entry(sensor.tls()).or_insert((sensor, 0)).1 += 1;
            }
        }
        let mut system = SystemRoots::default();
        let mut by_tls = HashMap::new();
        for (tls, (first, n)) in settings {
            let trust = if tls.insecure {
                Trust::Anything
            } else {
                Trust::Roots {
                    ca_file: tls.ca_file.as_deref(),
                    what: https_sensors(first, n),
                    ca_file_helps: true,
                }
            };
            let client = build_one(trust, config, &mut system)?;
            by_tls.insert(tls.clone(), client);
        }
        Ok(Clients { by_tls })
    }

    /// The client for an https sensor's `tls`; every setting of an https
    /// sensor in the config has one.
    pub fn get(&self, tls: &Tls) -> &reqwest::Client {
        &self.by_tls[tls]
    }
}

/// "the https sensor `a` (https://host:port)", "... and 3 more".
fn https_sensors(first: &Sensor, n: usize) -> String {
    let mut s = format!("the https sensor `{}` ({})", first.id(), first.host());
    if n > 1 {
        s.push_str(&format!(" and {} more", n - 1));
    }
    s
}

/// What a client's certificates are checked against.
enum Trust<'a> {
    /// No https URL: no TLS set-up at all.
    Nothing,
    /// `tls.insecure`: any certificate.
    Anything,
    /// The system's CA certificates and `ca_file`'s.
    Roots {
        ca_file: Option<&'a Path>,
        what: String,
        ca_file_helps: bool,
    },
}

fn build_one(
    trust: Trust,
    config: &Config,
    system: &mut SystemRoots,
) -> Result<reqwest::Client, ClientError> {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
        // Sensors live on the local network; a proxy from the environment
        // would only add a hop that can fail.
        .no_proxy()
        .pool_max_idle_per_host(config.limit_per_host)
        .pool_idle_timeout(Some(config.interval.max(Duration::from_secs(30)) * 2))
        .tcp_nodelay(true)
        .connect_timeout(config.timeout);
    with_trust(builder, trust, system)?
        .build()
        .map_err(ClientError::Build)
}

/// `builder` with its TLS and redirects set up for `trust`.
fn with_trust(
    builder: reqwest::ClientBuilder,
    trust: Trust,
    system: &mut SystemRoots,
) -> Result<reqwest::ClientBuilder, ClientError> {
    Ok(match trust {
        // No roots to load; a redirect to https is refused in words rather
        // than failing the handshake against an empty trust store.
        Trust::Nothing => {
            builder
                .tls_certs_only(Vec::new())
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() == "https" {
                        attempt.error(TO_HTTPS)
                    } else if attempt.previous().len() > MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }))
        }
        Trust::Anything => builder
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS)),
        Trust::Roots {
            ca_file,
            what,
            ca_file_helps,
        } => {
            let mut roots = Vec::new();
            if let Some(path) = ca_file {
                roots = ca_file_certs(path)?;
            }
            let loaded = system.get();
            if loaded.certs.is_empty() && roots.is_empty() {
                return Err(ClientError::NoCaBundle(NoCaBundle {
                    what,
                    looked: loaded.looked.clone(),
                    ca_file_helps,
                }));
            }
            if loaded.certs.is_empty() {
                tracing::debug!(
                    "no system CA certificates ({}): {what} trusts its tls.ca_file only",
                    loaded.looked
                );
            }
            roots.extend(loaded.certs.iter().cloned());
            builder
                .tls_certs_only(roots)
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        }
    })
}

/// The certificates of `tls.ca_file`.
fn ca_file_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
        path: shown.clone(),
        source,
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaPem {
        path: shown,
        source,
    })
}

/// A client builder for replay's HTTP endpoint `url`: TLS only for https,
/// verified against the system's CA certificates.
pub fn endpoint_client(
    builder: reqwest::ClientBuilder,
    url: &url::Url,
) -> Result<reqwest::ClientBuilder, ClientError> {
    install_crypto_provider();
    let trust = if url.scheme() == "https" {
        Trust::Roots {
            ca_file: None,
            what: format!("the endpoint {}", url.origin().ascii_serialization()),
            ca_file_helps: false,
        }
    } else {
        Trust::Nothing
    };
    with_trust(builder, trust, &mut SystemRoots::default())
}

/// The client for a forward target's endpoint: its `tls` settings (a CA
/// file besides the system's, or no checks at all) for an https URL.
pub fn forward_client(
    builder: reqwest::ClientBuilder,
    url: &url::Url,
    tls: &Tls,
) -> Result<reqwest::ClientBuilder, ClientError> {
    install_crypto_provider();
    let trust = if url.scheme() != "https" {
        Trust::Nothing
    } else if tls.insecure {
        Trust::Anything
    } else {
        Trust::Roots {
            ca_file: tls.ca_file.as_deref(),
            what: format!("the forward target {}", url.origin().ascii_serialization()),
            ca_file_helps: true,
        }
    };
    with_trust(builder, trust, &mut SystemRoots::default())
}

/// The system's CA certificates, loaded at most once per set-up.
#[derive(Default)]
struct SystemRoots(Option<Loaded>);

struct Loaded {
    /// The certificates rustls accepts as roots.
    certs: Vec<reqwest::Certificate>,
    /// Where they were looked for, and what could not be read, for messages.
    looked: String,
}

impl SystemRoots {
    fn get(&mut self) -> &Loaded {
        self.0.get_or_insert_with(load_system_roots)
    }
}

fn load_system_roots() -> Loaded {
    let found = rustls_native_certs::load_native_certs();
    // reqwest refuses the whole list for one certificate rustls cannot use
    // as a root; such a certificate is left out, as a browser would.
    let mut store = rustls::RootCertStore::empty();
    let mut unusable = 0;
    let mut certs = Vec::with_capacity(found.certs.len());
    for der in found.certs {
        match store.add(der.clone()) {
            Ok(()) => certs.extend(reqwest::Certificate::from_der(&der).ok()),
            Err(_) => unusable += 1,
        }
    }
    let mut looked = looked_in();
    if unusable > 0 {
        looked.push_str(&format!("; {unusable} certificate(s) not usable as a root"));
    }
    for error in found.errors.iter().take(3) {
        looked.push_str(&format!("; {error}"));
    }
    if found.errors.len() > 3 {
        looked.push_str(&format!("; {} more error(s)", found.errors.len() - 3));
    }
    tracing::debug!("{} system CA certificate(s): {looked}", certs.len());
    Loaded { certs, looked }
}

/// Where rustls-native-certs looks: the places `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` name if either is set, else openssl-probe's list.
fn looked_in() -> String {
    let file = std::env::var_os("SSL_CERT_FILE");
    let dir = std::env::var_os("SSL_CERT_DIR")
        .filter(|d| std::env::split_paths(d).any(|p| !p.as_os_str().is_empty()));
    if file.is_none() && dir.is_none() {
        return "looked for /etc/ssl/certs/ca-certificates.crt and the other usual bundle \
                files, and in /etc/ssl/certs and /etc/pki/tls/certs"
            .to_string();
    }
    let named: Vec<String> = [("SSL_CERT_FILE", file), ("SSL_CERT_DIR", dir)]
        .into_iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", value?.to_string_lossy())))
        .collect();
    format!(
        "looked only at {}, set in the environment",
        named.join(" and ")
    )
}
