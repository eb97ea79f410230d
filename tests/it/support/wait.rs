//! Waiting for something to happen, with a deadline, instead of sleeping a
//! fixed time and hoping it happened: a fixed sleep is too short on a loaded
//! machine (a flaky failure) and too long everywhere else (a slow suite).
//! Every wait here gives up after its limit and says what did not happen.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(10);

/// Check `cond` every few milliseconds until it holds (true) or `limit`
/// has passed (false). For callers that add their own context to the
/// failure, such as an agent's log; most want [`wait_until`].
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for code that runs outside a runtime (or on a thread
/// that may block).
pub fn eventually_blocking(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Wait until `cond` holds; panic naming `what` if it does not within
/// `limit`.
pub async fn wait_until(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        eventually(limit, cond).await,
        "waited {limit:?} for {what}, in vain"
    );
}
