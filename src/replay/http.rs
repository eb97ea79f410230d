//! Pushing replayed lines to an HTTP endpoint (InfluxDB's or
//! VictoriaMetrics' `/write`), in batches bounded by rows and bytes.
//!
//! Each batch is sent as a streamed (chunked) POST body. A batch that fails
//! (connection error, 5xx, 408, 429) is sent again after a growing pause; a
//! batch the server acknowledged (2xx) is never sent again, and the next
//! batch only starts once the previous one was acknowledged, so there is
//! neither a gap nor a duplicate. A 4xx other than 408/429 means the data is
//! refused and retrying would not help: the replay stops and says why.

use std::time::Duration;

use bytes::Bytes;

/// Why pushing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{url} refused rows {first}..={last} with HTTP {status}: {body}")]
    Refused {
        url: String,
        first: u64,
        last: u64,
        status: u16,
        body: String,
    },
    #[error(
        "{url}: rows {first}..={last} not acknowledged after {attempts} attempt(s); last error: {error}"
    )]
    GaveUp {
        url: String,
        first: u64,
        last: u64,
        attempts: u32,
        error: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub max_rows: u64,
    pub max_bytes: usize,
    /// Attempts per batch before giving up.
    pub attempts: u32,
    /// First pause after a failure; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub content_type: &'static str,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_rows: 5_000,
            max_bytes: 1 << 20,
            attempts: 10,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            content_type: "text/plain; charset=utf-8",
        }
    }
}

/// Accumulates lines and sends them in acknowledged batches.
pub struct Pusher {
    client: reqwest::Client,
    url: reqwest::Url,
    opts: PushOptions,
    batch: Vec<u8>,
    batch_rows: u64,
    /// Rows acknowledged so far (numbering for messages starts at 1).
    acked: u64,
    pub batches_sent: u64,
    pub retries: u64,
}

impl Pusher {
    pub fn new(url: reqwest::Url, opts: PushOptions) -> Result<Pusher, PushError> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        // TLS only for an https endpoint, so a replay to http needs no CA bundle.
        let client = crate::poll::endpoint_client(builder, &url)
            .map_err(|e| PushError::Client(e.to_string()))?
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        Ok(Pusher {
            client,
            url,
            batch: Vec::with_capacity(opts.max_bytes.min(1 << 20)),
            opts,
            batch_rows: 0,
            acked: 0,
            batches_sent: 0,
            retries: 0,
        })
    }

    /// Rows acknowledged by the server.
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// Add `rows` rows' worth of lines; sends a batch when one is full.
    pub async fn push(&mut self, lines: &[u8], rows: u64) -> Result<(), PushError> {
        if !self.batch.is_empty() && self.batch.len() + lines.len() > self.opts.max_bytes {
            self.flush().await?;
        }
        self.batch.extend_from_slice(lines);
        self.batch_rows += rows;
        if self.batch_rows >= self.opts.max_rows || self.batch.len() >= self.opts.max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Send what is pending and wait for its acknowledgement.
    pub async fn flush(&mut self) -> Result<(), PushError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let body = Bytes::from(std::mem::take(&mut self.batch));
        let (first, last) = (self.acked + 1, self.acked + self.batch_rows);
        let mut pause = self.opts.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send_once(body.clone()).await {
                Ok(()) => break,
                Err(Failure::Permanent(status, text)) => {
                    return Err(PushError::Refused {
                        url: self.url.to_string(),
                        first,
                        last,
                        status,
                        body: text,
                    });
                }
                Err(Failure::Retry(e)) => e,
            };
            if attempt >= self.opts.attempts {
                return Err(PushError::GaveUp {
                    url: self.url.to_string(),
                    first,
                    last,
                    attempts: attempt,
                    error,
                });
            }
            tracing::warn!(
                "{}: rows {first}..={last} not acknowledged ({error}); retrying in {}",
                self.url,
                humantime::format_duration(pause)
            );
            self.retries += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.opts.max_backoff);
        }
        self.acked = last;
        self.batch_rows = 0;
        self.batches_sent += 1;
        // Reuse the allocation when nobody else holds the body.
        self.batch = Vec::from(body);
        self.batch.clear();
        Ok(())
    }

    async fn send_once(&self, body: Bytes) -> Result<(), Failure> {
        // A streamed body: chunks of the batch, sent with chunked encoding.
        const CHUNK: usize = 64 * 1024;
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
            .step_by(CHUNK)
            .map(|i| Ok(body.slice(i..(i + CHUNK).min(body.len()))))
            .collect();
        let stream = tokio_stream::iter(chunks);
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, self.opts.content_type)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| Failure::Retry(innermost(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let text = text.trim().to_string();
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            Err(Failure::Retry(format!("HTTP {code}: {text}")))
        } else {
            Err(Failure::Permanent(code, text))
        }
    }
}

enum Failure {
    Retry(String),
    Permanent(u16, String),
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
