//! Certificates for the TLS tests: a private CA with server certificates
//! it signed, and a self-signed one, each with a rustls server config that
//! presents it (for [`super::TestServer::start_tls`]).

use std::sync::Arc;

/// A private CA and two server certificates it signed: one for 127.0.0.1,
/// one for another name only.
pub struct Pki {
    pub ca_pem: String,
    pub right_name: Arc<rustls::ServerConfig>,
    pub wrong_name: Arc<rustls::ServerConfig>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge-agent test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            server_config(vec![cert.der().clone(), ca.der().clone()], &key)
        };
        Pki {
            ca_pem: ca.pem(),
            right_name: leaf("127.0.0.1"),
            wrong_name: leaf("sensor.example"),
        }
    }
}

/// A certificate for 127.0.0.1 signed by its own key (no CA at all): its
/// PEM and a server config presenting it.
pub fn self_signed() -> (String, Arc<rustls::ServerConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let config = server_config(vec![made.cert.der().clone()], &made.signing_key);
    (made.cert.pem(), config)
}

fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    edge_agent::poll::install_crypto_provider();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}
