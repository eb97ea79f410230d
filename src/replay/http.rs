//! Pushing replayed lines to an HTTP endpoint (InfluxDB's or
//! VictoriaMetrics' `/write`), in batches bounded by rows and bytes.
//!
//! Each batch is sent as a streamed (chunked) POST body, and the next batch
//! only starts once the previous one was acknowledged (2xx), so there is
//! no gap; an acknowledged batch is never sent again. What happens to a
//! batch that was not acknowledged depends on what is known of its fate:
//!
//! - not stored, certainly: the connection could not be made, or the
//!   server answered 5xx, 408 or 429. Sent again after a growing pause.
//! - refused: any other 4xx. Retrying would not help: the replay stops
//!   with the server's reason.
//! - unknown: the request went out but no answer came within `--timeout`
//!   (or the connection broke before one). The server may have stored the
//!   rows. Sent again only to an engine where that is harmless (line
//!   protocol to InfluxDB, or to VictoriaMetrics that deduplicates,
//!   overwrites the same points; see [`super::engine`]), asked of the
//!   server at that moment; to any
//!   other endpoint the replay stops and says which rows may or may not be
//!   there, rather than risk storing them twice.
//!
//! A batch is given up after `--attempts` sends or `--give-up-after` from
//! its first send, whichever comes first; each request's timeout is cut to
//! what is left of the latter.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::engine::{self, Engine};
use super::verify::{self, Tally, Verdict, VerifyError};

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
        "{url}: rows {first}..={last} not acknowledged after {attempts} attempt(s) in {spent} \
         ({limit} reached); last error: {error}"
    )]
    GaveUp {
        url: String,
        first: u64,
        last: u64,
        attempts: u32,
        /// How long the batch was tried, rounded for the message.
        spent: String,
        /// Which limit stopped it: `--attempts N` or `--give-up-after D`.
        limit: String,
        error: String,
    },
    #[error(
        "{url}: rows {first}..={last} were sent but not acknowledged ({error}); they may or may \
         not be stored. Not sent again: {url} answers as {engine}, where a second copy could be \
         stored beside the first (replay resends only to InfluxDB, and to VictoriaMetrics \
         started with -dedup.minScrapeInterval=1ms, which keep one point per series and time). \
         Check what it holds from row {first} on and replay the rest with --since, or raise \
         --timeout"
    )]
    Unacknowledged {
        url: String,
        first: u64,
        last: u64,
        engine: &'static str,
        error: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// How long and how often a batch is tried (`--timeout`, `--attempts`,
/// `--give-up-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// One request, from its start to the server's answer.
    pub timeout: Duration,
    /// Sends of one batch at most (at least 1).
    pub attempts: u32,
    /// One batch, from its first send: attempts and pauses together.
    pub give_up_after: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            timeout: Duration::from_secs(30),
            attempts: 10,
            give_up_after: Duration::from_secs(300),
        }
    }
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub max_rows: u64,
    pub max_bytes: usize,
    pub patience: Patience,
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
            patience: Patience::default(),
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
    /// Sends after a batch's first.
    pub retries: u64,
    /// Of those, sends of a batch whose earlier send got no answer (to an
    /// engine that overwrites: see [`super::engine`]).
    pub resent_unanswered: u64,
    /// Rows (InfluxDB's points: lines) InfluxDB dropped as older than its
    /// retention policy (it says so in a 400 answer, having stored the
    /// rest of the batch).
    pub dropped_by_retention: u64,
    /// The engine, once asked.
    engine: Option<Engine>,
    /// What was sent, counted for `--verify`.
    pub tally: Option<Tally>,
}

impl Pusher {
    pub fn new(url: reqwest::Url, opts: PushOptions) -> Result<Pusher, PushError> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .connect_timeout(opts.patience.timeout.min(Duration::from_secs(10)));
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
            resent_unanswered: 0,
            dropped_by_retention: 0,
            engine: None,
            tally: None,
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

    /// The engine at the URL, asked once (see [`engine::probe`]).
    pub async fn engine(&mut self) -> &Engine {
        if self.engine.is_none() {
            let found = engine::probe(&self.client, &self.url, self.opts.patience.timeout).await;
            tracing::debug!("{} answers as {}", engine::shown(&self.url), found.name());
            self.engine = Some(found);
        }
        self.engine.get_or_insert(Engine::Other)
    }

    /// For `--verify`: ask the engine what it is and its retention, before
    /// the first batch, and start counting what is sent.
    pub async fn begin_verify(&mut self) -> Result<(), VerifyError> {
        let timeout = self.timeout();
        let engine = self.engine().await.clone();
        let retention = verify::retention(&self.client, &self.url, &engine, timeout).await?;
        self.tally = Some(Tally {
            retention,
            cutoff: retention.and_then(|r| std::time::SystemTime::now().checked_sub(r)),
            ..Tally::default()
        });
        Ok(())
    }

    /// After the last batch: what the engine holds of `measurement`
    /// against what was sent. VictoriaMetrics makes new points searchable
    /// within a second or so of a flush: a short count is asked again a few
    /// times before it stands.
    pub async fn verify(&mut self, measurement: &str) -> Result<Verdict, VerifyError> {
        let timeout = self.timeout();
        let engine = self.engine().await.clone();
        let tally = self.tally.clone().unwrap_or_default();
        let mut tries = 0;
        loop {
            tries += 1;
            let held = verify::stored(
                &self.client,
                &self.url,
                &engine,
                measurement,
                &tally,
                timeout,
            )
            .await?;
            let verdict = Verdict::new(&engine, &tally, &held, tally.retention);
            if verdict.complete() || tries >= 4 {
                return Ok(verdict);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One request's timeout (`--timeout`).
    pub fn timeout(&self) -> Duration {
        self.opts.patience.timeout
    }

    /// The HTTP client, for questions to the engine after the replay.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Send what is pending and wait for its acknowledgement.
    pub async fn flush(&mut self) -> Result<(), PushError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let body = Bytes::from(std::mem::take(&mut self.batch));
        let (first, last) = (self.acked + 1, self.acked + self.batch_rows);
        let patience = self.opts.patience;
        let started = Instant::now();
        let deadline = started + patience.give_up_after;
        let mut pause = self.opts.backoff;
        let mut attempt = 0;
        let mut unanswered = false;
        loop {
            attempt += 1;
            if unanswered {
                self.resent_unanswered += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = patience.timeout.min(left).max(Duration::from_millis(1));
            let sent = send(
                &self.client,
                &self.url,
                self.opts.content_type,
                None,
                body.clone(),
                timeout,
            )
            .await;
            let error = match sent {
                Ok(0) => break,
                Ok(dropped) => {
                    tracing::warn!(
                        "{}: rows {first}..={last}: the engine dropped {dropped} row(s) as older than its retention policy",
                        engine::shown(&self.url)
                    );
                    self.dropped_by_retention += dropped;
                    break;
                }
                Err(Failure::TooLarge(text)) => {
                    return Err(PushError::Refused {
                        url: engine::shown(&self.url),
                        first,
                        last,
                        status: 413,
                        body: format!("{text}; lower --batch-size"),
                    });
                }
                Err(Failure::Permanent(status, text)) => {
                    return Err(PushError::Refused {
                        url: engine::shown(&self.url),
                        first,
                        last,
                        status,
                        body: text,
                    });
                }
                Err(Failure::Retry(_, e)) => {
                    unanswered = false;
                    e
                }
                Err(Failure::Unanswered(_, e)) => {
                    let engine = self.engine().await.clone();
                    if !engine.overwrites() {
                        return Err(PushError::Unacknowledged {
                            url: engine::shown(&self.url),
                            first,
                            last,
                            engine: engine.name(),
                            error: e,
                        });
                    }
                    unanswered = true;
                    format!(
                        "{e}; {} overwrites the same points, so it is sent again",
                        engine.name()
                    )
                }
            };
            let limit = if attempt >= patience.attempts.max(1) {
                Some(format!("--attempts {}", patience.attempts))
            } else if Instant::now() + pause >= deadline {
                Some(format!(
                    "--give-up-after {}",
                    humantime::format_duration(patience.give_up_after)
                ))
            } else {
                None
            };
            if let Some(limit) = limit {
                let spent = Duration::from_millis(started.elapsed().as_millis() as u64);
                return Err(PushError::GaveUp {
                    url: engine::shown(&self.url),
                    first,
                    last,
                    attempts: attempt,
                    spent: humantime::format_duration(spent).to_string(),
                    limit,
                    error,
                });
            }
            tracing::warn!(
                "{}: rows {first}..={last} not acknowledged ({error}); retrying in {}",
                engine::shown(&self.url),
                humantime::format_duration(pause)
            );
            self.retries += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.opts.max_backoff);
        }
        if let Some(tally) = &mut self.tally {
            tally.add(&body);
        }
        self.acked = last;
        self.batch_rows = 0;
        self.batches_sent += 1;
        // Reuse the allocation when nobody else holds the body.
        self.batch = Vec::from(body);
        self.batch.clear();
        Ok(())
    }
}

/// One send of `body` to `url`: `Ok` with the points the engine dropped
/// as older than its retention (InfluxDB's `partial write: points beyond
/// retention policy dropped=N`, a 400 for a batch whose other points it
/// stored), or what is known of the batch's fate. Replay and forward both
/// send through here.
pub async fn send(
    client: &reqwest::Client,
    url: &reqwest::Url,
    content_type: &'static str,
    headers: Option<&reqwest::header::HeaderMap>,
    body: Bytes,
    timeout: Duration,
) -> Result<u64, Failure> {
    // A streamed body: chunks of the batch, sent with chunked encoding.
    const CHUNK: usize = 64 * 1024;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(CHUNK)
        .map(|i| Ok(body.slice(i..(i + CHUNK).min(body.len()))))
        .collect();
    let stream = tokio_stream::iter(chunks);
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type);
    if let Some(headers) = headers {
        request = request.headers(headers.clone());
    }
    let response = request
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            // The URL may carry a token (`p=`): never part of a reason.
            let e = e.without_url();
            if e.is_connect() {
                // Nothing reached the server.
                Failure::Retry("connect", innermost(&e))
            } else if e.is_timeout() {
                Failure::Unanswered(
                    "timeout",
                    format!("no answer within {}", humantime::format_duration(timeout)),
                )
            } else {
                Failure::Unanswered("connect", innermost(&e))
            }
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(0);
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
    let beyond = "points beyond retention policy dropped=";
    if let Some(n) = text.split(beyond).nth(1) {
        if code == 400 && !text.contains("field type conflict") {
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u64>() {
                return Ok(n);
            }
        }
    }
    if status.is_server_error() || code == 408 || code == 429 {
        Err(Failure::Retry("server", format!("HTTP {code}: {text}")))
    } else if code == 413 {
        Err(Failure::TooLarge(format!("HTTP {code}: {text}")))
    } else if code == 404 && text.contains("database not found") {
        // InfluxDB 1.x writes only into a database that exists.
        let db = url
            .query_pairs()
            .find(|(k, _)| k == "db")
            .map_or_else(|| "NAME".to_string(), |(_, v)| v.into_owned());
        // Shown: the URL's password stays out of the message.
        let query = engine::shown(&engine::at(url, "/query"));
        Err(Failure::Permanent(
            code,
            format!(
                "{text}; create it first: curl -XPOST {query} --data-urlencode 'q=CREATE DATABASE \"{db}\"'"
            ),
        ))
    } else {
        Err(Failure::Permanent(code, text))
    }
}

/// What is known of a batch that was not acknowledged.
#[derive(Debug)]
pub enum Failure {
    /// Not stored: safe to send again. The kind (`connect`: nothing reached
    /// the server; `server`: 5xx, 408, 429) and the reason.
    Retry(&'static str, String),
    /// Refused: sending again would not help.
    Permanent(u16, String),
    /// 413: the engine takes smaller bodies; nothing stored.
    TooLarge(String),
    /// Sent, no answer: maybe stored. The kind (`timeout`, `connect`) and
    /// the reason.
    Unanswered(&'static str, String),
}

pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
