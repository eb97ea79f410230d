//! The shared HTTP clients.
//!
//! One `reqwest::Client` serves every sensor with the same TLS settings, so
//! connections are pooled and reused across cycles. Most sites have a single
//! TLS setting and so a single client; a sensor with its own `ca_file` or
//! `insecure: true` gets the client for that setting (the config warns about
//! each insecure sensor when it is loaded).

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, Tls};

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
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
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
        let mut by_tls = HashMap::new();
        for (_, sensor) in config.sensors() {
            if by_tls.contains_key(&sensor.tls) {
                continue;
            }
            let client = build_one(&sensor.tls, config)?;
            by_tls.insert(sensor.tls.clone(), client);
        }
        Ok(Clients { by_tls })
    }

    /// The client for `tls`; every setting in the config has one.
    pub fn get(&self, tls: &Tls) -> &reqwest::Client {
        &self.by_tls[tls]
    }
}

fn build_one(tls: &Tls, config: &Config) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
        // Sensors live on the local network; a proxy from the environment
        // would only add a hop that can fail.
        .no_proxy()
        .pool_max_idle_per_host(config.limit_per_host)
        .pool_idle_timeout(Some(config.interval.max(Duration::from_secs(30)) * 2))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(config.timeout)
        .tls_danger_accept_invalid_certs(tls.insecure);
    if let Some(path) = &tls.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
            path: shown.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaPem {
                path: shown,
                source,
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(ClientError::Build)
}
