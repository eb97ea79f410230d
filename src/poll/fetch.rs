//! One fetch: request, status check, body read under a size cap, then the
//! number extracted and converted to the group's unit.

use std::time::Duration;

use crate::config::{Sensor, Unit};
use crate::extract::{ExtractError, extract};
use crate::units::{UnitError, convert};

/// The result of one sensor in one cycle, in its group's unit.
pub type Outcome = Result<f64, Failure>;

/// Why a sensor gave no reading this cycle. The text is what the log says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The headers came, the rest of the body did not (a stall, a drip).
    #[error("body not complete within {}", humantime::format_duration(*.0))]
    BodyTimeout(Duration),
    #[error("not polled: the cycle ran out of time before its turn")]
    NotStarted,
    /// Skipped this cycle: it failed repeatedly (`backoff` in the config).
    #[error("not polled: backing off after failed polls in a row")]
    BackingOff,
    #[error("still running when the cycle ended")]
    CycleEnd,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("cannot resolve the host name: {0}")]
    Resolve(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("request failed: {0}")]
    Request(String),
    /// The connection failed after the headers (reset, closed early).
    #[error("body cut short: {0}")]
    BodyCut(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    /// Boxed: the largest of the reasons, and rare, while an [`Outcome`]
    /// per sensor is kept for every cycle (32 bytes instead of 56).
    #[error("{0}")]
    Extract(#[source] Box<ExtractError>),
    #[error("{0}")]
    Unit(#[from] UnitError),
}

impl From<ExtractError> for Failure {
    fn from(e: ExtractError) -> Failure {
        Failure::Extract(Box::new(e))
    }
}

/// Fetch one reading from `sensor`, in `target` units. The sensor's
/// `timeout` bounds the whole exchange, headers and body.
pub async fn fetch(
    client: &reqwest::Client,
    sensor: &Sensor,
    target: Unit,
    max_body: u64,
) -> Result<f64, Failure> {
    let timeout = sensor.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let response = tokio::time::timeout_at(deadline, send(client, sensor))
        .await
        .map_err(|_| Failure::Timeout(timeout))??;
    let body = tokio::time::timeout_at(deadline, read_body(response, max_body))
        .await
        .map_err(|_| Failure::BodyTimeout(timeout))??;
    reading(&body, sensor, target)
}

/// The number in `body`, in `target` units.
pub fn reading(body: &[u8], sensor: &Sensor, target: Unit) -> Result<f64, Failure> {
    let value = extract(body, &sensor.selector)?;
    Ok(convert(value, sensor.unit, target)?)
}

/// Send the request; a response with a success status.
async fn send(client: &reqwest::Client, sensor: &Sensor) -> Result<reqwest::Response, Failure> {
    let mut request = client.get(sensor.url.as_str());
    for (name, value) in sensor.headers() {
        request = request.header(&**name, value.expose());
    }
    if let Some(auth) = sensor.basic_auth() {
        request = request.basic_auth(&auth.username, auth.password.as_ref().map(|p| p.expose()));
    }
    let response = request.send().await.map_err(describe)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    Ok(response)
}

/// The body, refused as soon as it is known to pass `max_body`: from the
/// declared length, or while reading, so memory stays within the cap
/// whatever the sensor sends.
async fn read_body(mut response: reqwest::Response, max_body: u64) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > max_body) {
        return Err(Failure::TooLarge(max_body));
    }
    let mut body =
        Vec::with_capacity(response.content_length().unwrap_or(256).min(max_body) as usize);
    let cut = |e| match describe(e) {
        Failure::Request(cause) | Failure::Connect(cause) => Failure::BodyCut(cause),
        other => other,
    };
    while let Some(chunk) = response.chunk().await.map_err(cut)? {
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(Failure::TooLarge(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turn a reqwest error into a reason a person can act on: the innermost
/// cause (connection refused, name not known) is the useful part, and a
/// refused certificate says why in words.
fn describe(e: reqwest::Error) -> Failure {
    // Never echo the URL: it may carry a token from ${VAR}.
    let e = e.without_url();
    let mut cause = e.to_string();
    let mut dns = false;
    let mut tls = None;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        // hyper-util's connect error type is private; its text is stable.
        dns |= cause == "dns error";
        tls = tls.or_else(|| tls_reason(s));
        source = s.source();
    }
    if let Some(reason) = tls {
        Failure::Tls(reason)
    } else if dns {
        let detail = cause.strip_prefix("failed to lookup address information: ");
        Failure::Resolve(detail.unwrap_or(&cause).to_string())
    } else if e.is_connect() {
        Failure::Connect(cause)
    } else {
        // A refused redirect's cause is its reason: "too many redirects", or
        // the client's own (a redirect to https where TLS is not set up).
        Failure::Request(cause)
    }
}

/// Why the TLS handshake failed, if `e` is a rustls error or wraps one in
/// `io::Error`s (tokio-rustls and reqwest each wrap it once; an
/// `io::Error`'s `source()` skips the error it wraps, so unwrap by hand).
fn tls_reason(mut e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::CertificateError as C;
    let e = loop {
        if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
            break rustls;
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    };
    let rustls::Error::InvalidCertificate(c) = e else {
        return Some(format!("handshake failed: {e}"));
    };
    Some(match c {
        C::UnknownIssuer => "the certificate is not trusted: no known CA signed it \
             (name its CA in tls.ca_file)"
            .to_string(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the certificate is not valid for {}, only for {}",
            expected.to_str(),
            presented.join(", ")
        ),
        C::NotValidForName => "the certificate is not valid for this host name".to_string(),
        _ => format!("the certificate is refused: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One outcome per sensor is held through every cycle: at 10,000
    /// sensors each byte here is 10 kB (main had 56).
    #[test]
    fn an_outcome_stays_small() {
        assert!(size_of::<Outcome>() <= 32, "{}", size_of::<Outcome>());
    }
}
