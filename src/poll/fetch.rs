//! One fetch: request, status check, body read under a size cap, then the
//! number extracted and converted to the group's unit.

use std::time::Duration;

use crate::config::{Sensor, Unit};
use crate::extract::{ExtractError, extract};
use crate::units::{UnitError, convert};

/// Why a sensor gave no reading this cycle. The text is what the log says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("not polled: the cycle ran out of time before its turn")]
    NotStarted,
    #[error("still running when the cycle ended")]
    CycleEnd,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error("{0}")]
    Unit(#[from] UnitError),
}

impl Failure {
    /// A coarse kind, so a sensor whose reason changes only in detail (one
    /// byte count or another) is not logged as a new failure.
    pub fn kind(&self) -> std::mem::Discriminant<Failure> {
        std::mem::discriminant(self)
    }
}

/// Fetch one reading from `sensor`, in `target` units.
pub async fn fetch(
    client: &reqwest::Client,
    sensor: &Sensor,
    target: Unit,
    max_body: u64,
) -> Result<f64, Failure> {
    let timeout = sensor.timeout;
    match tokio::time::timeout(timeout, fetch_body(client, sensor, max_body)).await {
        Err(_) => Err(Failure::Timeout(timeout)),
        Ok(Err(f)) => Err(f),
        Ok(Ok(body)) => {
            let value = extract(&body, &sensor.selector)?;
            Ok(convert(value, sensor.unit, target)?)
        }
    }
}

async fn fetch_body(
    client: &reqwest::Client,
    sensor: &Sensor,
    max_body: u64,
) -> Result<Vec<u8>, Failure> {
    let mut request = client.get(sensor.url.clone());
    for (name, value) in &sensor.headers {
        request = request.header(name.as_str(), value.expose());
    }
    if let Some(auth) = &sensor.basic_auth {
        request = request.basic_auth(&auth.username, auth.password.as_ref().map(|p| p.expose()));
    }
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > max_body) {
        return Err(Failure::TooLarge(max_body));
    }
    let mut body =
        Vec::with_capacity(response.content_length().unwrap_or(256).min(max_body) as usize);
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(Failure::TooLarge(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turn a reqwest error into a reason a person can act on: the innermost
/// cause (connection refused, certificate unknown) is the useful part.
fn describe(e: reqwest::Error) -> Failure {
    // Never echo the URL: it may carry a token from ${VAR}.
    let e = e.without_url();
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        Failure::Connect(cause)
    } else if e.is_redirect() {
        Failure::Request("too many redirects".into())
    } else {
        Failure::Request(cause)
    }
}
