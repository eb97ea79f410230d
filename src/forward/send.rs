//! Sending one batch until the engine has it: retries with full jitter, a
//! 413 split in halves, a refused batch passed over or waited on.
//!
//! Why full jitter: after a central outage, every gateway of a fleet fails
//! at once; waits drawn from `0..=bound` (the bound doubling from
//! `retry.first` to `retry.max`) spread their return instead of bringing
//! them back in lock-step. The bound resets once a batch is acknowledged.
//!
//! A batch is never given up on while the engine cannot take it (that is
//! what the files are for); only a batch the engine *refuses* (a 4xx other
//! than 408, 413 and 429: retrying cannot help) is logged with the engine's
//! reason and passed over (`on_refused: skip`), or waited on
//! (`on_refused: pause`, `/healthz` failing meanwhile).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::{Forward, OnRefused};
use crate::health::ForwardStats;
use crate::replay::http::{self, Failure};

use super::files::Batch;

/// How a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Every row acknowledged, or refused and passed over: how many were
    /// refused (counted in rows_refused, not acknowledged).
    Done { refused: u64 },
    /// The target was told to stop first: nothing after the last
    /// acknowledgement counts.
    Stopped,
}

pub struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    target: Forward,
    stats: Arc<ForwardStats>,
    /// Rows a batch may hold: halved by each 413.
    pub row_cap: usize,
    rng: u64,
}

impl Sender {
    pub fn new(
        client: reqwest::Client,
        url: reqwest::Url,
        target: &Forward,
        stats: Arc<ForwardStats>,
    ) -> Sender {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &target.headers {
            // Checked when the config was read.
            if let (Ok(n), Ok(mut v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value.expose()),
            ) {
                v.set_sensitive(true);
                headers.insert(n, v);
            }
        }
        Sender {
            client,
            url,
            headers,
            row_cap: target.batch_rows,
            target: target.clone(),
            stats,
            rng: std::collections::hash_map::RandomState::new().hash_one(0x666f_7277_u64) | 1,
        }
    }

    /// A wait drawn from `0..=bound` (full jitter).
    fn jitter(&mut self, bound: Duration) -> Duration {
        // xorshift64*: the spread is what matters, not the quality.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let draw = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let ms = bound.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(draw % (ms + 1))
    }

    /// Send `batch` (rows of `file`) until the engine has all of it.
    pub async fn send(
        &mut self,
        batch: &Batch,
        file: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Sent {
        // Row ranges still to send, last first.
        let mut todo = vec![(0, batch.rows.len())];
        let mut refused = 0;
        while let Some((a, b)) = todo.pop() {
            let from = if a == 0 {
                0
            } else {
                batch.rows[a - 1].body_end
            };
            let body = Bytes::copy_from_slice(&batch.body[from..batch.rows[b - 1].body_end]);
            match self.range(body, b - a, file, stop).await {
                Range::Acked => {}
                Range::Stopped => return Sent::Stopped,
                Range::TooLarge if b - a > 1 => {
                    let mid = a + (b - a) / 2;
                    self.row_cap = self.row_cap.min(mid - a).max(1);
                    tracing::warn!(
                        "forward `{}`: {} takes no batch of {} rows (413); sending halves, at most {} rows from now on",
                        self.target.name,
                        self.target.shown_url,
                        b - a,
                        self.row_cap
                    );
                    todo.push((mid, b));
                    todo.push((a, mid));
                }
                // Only reached for ranges of more rows: one row is paused on.
                Range::TooLarge => {}
                // A batch with a bad row in it: halves, so the good rows
                // around it are taken and only the bad ones passed over.
                Range::Refused(n, status, _) if n > 1 => {
                    let mid = a + (b - a) / 2;
                    tracing::debug!(
                        "forward `{}`: HTTP {status} for {n} rows of {file}: sending halves to find the rows refused",
                        self.target.name
                    );
                    todo.push((mid, b));
                    todo.push((a, mid));
                }
                Range::Refused(n, status, text) => {
                    self.refused(n, status, &text, file);
                    refused += n as u64;
                }
            }
        }
        // Batches fit again after a 413 from a proxy since reconfigured:
        // the cap grows back, one doubling per batch taken.
        self.row_cap = (self.row_cap * 2).min(self.target.batch_rows);
        self.stats.failing_since_ms.store(0, Relaxed);
        Sent::Done { refused }
    }

    fn refused(&self, rows: usize, status: u16, text: &str, file: &str) {
        self.stats.rows_refused.fetch_add(rows as u64, Relaxed);
        tracing::error!(
            "forward `{}`: {} refused {rows} row(s) of {file} with HTTP {status}: {text}; passed over \
             (on_refused: skip)",
            self.target.name,
            self.target.shown_url
        );
    }

    /// One range of rows, sent until acknowledged.
    async fn range(
        &mut self,
        body: Bytes,
        rows: usize,
        file: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Range {
        let mut bound = self.target.retry_first;
        let mut failures: u32 = 0;
        let mut first_failure = None;
        loop {
            if *stop.borrow() {
                return Range::Stopped;
            }
            if failures > 0 {
                self.stats.resends.fetch_add(1, Relaxed);
            }
            let sent = tokio::select! {
                biased;
                _ = stop.changed() => return Range::Stopped,
                r = http::send(
                    &self.client,
                    &self.url,
                    "text/plain; charset=utf-8",
                    Some(&self.headers),
                    body.clone(),
                    self.target.timeout,
                ) => r,
            };
            let (kind, error) = match sent {
                Ok(dropped) => {
                    if dropped > 0 {
                        tracing::warn!(
                            "forward `{}`: the engine dropped {dropped} row(s) of {file} as older than its retention policy",
                            self.target.name
                        );
                    }
                    if failures > 0 {
                        tracing::info!(
                            "forward `{}`: {} acknowledged again after {failures} failed send(s) over {}",
                            self.target.name,
                            self.target.shown_url,
                            humantime::format_duration(Duration::from_secs(
                                first_failure
                                    .map_or(0, |t: tokio::time::Instant| t.elapsed().as_secs())
                            ))
                        );
                    }
                    self.stats.paused.store(0, Relaxed);
                    self.stats.failing_since_ms.store(0, Relaxed);
                    return Range::Acked;
                }
                Err(Failure::TooLarge(text)) if rows == 1 => {
                    // One row too large: a limit set far too low somewhere
                    // (a proxy), not the rows. Waited on.
                    self.stats.error("too_large");
                    if self.pause(413, &text, rows, file, stop).await {
                        return Range::Stopped;
                    }
                    continue;
                }
                Err(Failure::TooLarge(_)) => {
                    self.stats.error("too_large");
                    return Range::TooLarge;
                }
                Err(Failure::Permanent(status, text)) => {
                    self.stats.error("refused");
                    // 400 and 422 are about the rows sent: on_refused says
                    // what happens to them. Any other 4xx (401, 403, 404,
                    // 405, 411, ...) says the engine or a setting is wrong,
                    // whatever the rows: passing rows over would throw every
                    // row away until it is fixed, so the target waits.
                    let about_rows = matches!(status, 400 | 422);
                    if about_rows && self.target.on_refused == OnRefused::Skip {
                        return Range::Refused(rows, status, text);
                    }
                    if self.pause(status, &text, rows, file, stop).await {
                        return Range::Stopped;
                    }
                    continue;
                }
                Err(Failure::Retry(kind, e)) => (kind, e),
                Err(Failure::Unanswered(kind, e)) => {
                    (kind, format!("{e}; sent again (the same points overwrite)"))
                }
            };
            self.stats.error(kind);
            self.stats.failing();
            failures += 1;
            first_failure.get_or_insert_with(tokio::time::Instant::now);
            let pause = self.jitter(bound);
            // The first failure, then each time the bound doubles: an outage
            // of hours logs a few dozen lines, not one per try.
            if failures == 1 || bound < self.target.retry_max || failures % 64 == 0 {
                tracing::warn!(
                    "forward `{}`: {} did not take {rows} row(s) of {file} ({error}); retry {failures} in {} \
                     (backoff with full jitter up to {})",
                    self.target.name,
                    self.target.shown_url,
                    humantime::format_duration(Duration::from_millis(pause.as_millis() as u64)),
                    humantime::format_duration(bound)
                );
            }
            bound = (bound * 2).min(self.target.retry_max);
            if wait(pause, stop).await {
                return Range::Stopped;
            }
        }
    }
}

impl Sender {
    /// Wait `retry.max` on a batch the engine refuses (paused: `/healthz`
    /// fails); `true` when told to stop meanwhile.
    async fn pause(
        &mut self,
        status: u16,
        text: &str,
        rows: usize,
        file: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        self.stats.failing();
        if self.stats.paused.swap(1, Relaxed) == 0 {
            let why = if matches!(status, 400 | 422) {
                "on_refused: pause"
            } else {
                "the engine or a setting refuses it, not the rows"
            };
            tracing::error!(
                "forward `{}`: {} refused {rows} row(s) of {file} with HTTP {status}: {text}; \
                 paused ({why}), trying again every {}",
                self.target.name,
                self.target.shown_url,
                humantime::format_duration(self.target.retry_max)
            );
        }
        let pause = self.jitter(self.target.retry_max);
        wait(self.target.retry_max / 2 + pause / 2, stop).await
    }
}

enum Range {
    Acked,
    Stopped,
    TooLarge,
    Refused(usize, u16, String),
}

/// Sleep `d` unless told to stop first (then `true`).
pub async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}
