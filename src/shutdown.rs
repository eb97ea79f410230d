//! Signals -> control events for the run loop.
//!
//! SIGTERM and SIGINT ask for a graceful stop (finish the cycle, write its
//! rows, fsync, exit 0); SIGHUP asks to re-read `agent.yaml`. The run loop
//! only ever sees [`Control`] values on a channel, so tests drive it without
//! real signals and the signal plumbing stays in this one file.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// What the run loop is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Finish the current cycle, write, flush, stop.
    Shutdown,
    /// Re-read the config; keep the old one if the new one is invalid.
    Reload,
}

/// Start listening for SIGTERM, SIGINT and SIGHUP. A second SIGTERM or
/// SIGINT while stopping ends the process at once (exit 130): the next start
/// repairs any torn line.
pub fn listen() -> std::io::Result<mpsc::Receiver<Control>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut stopping = false;
        while let Some(signal) = signals.next().await {
            let control = match signal {
                SIGHUP => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    Control::Reload
                }
                _ if stopping => {
                    tracing::warn!("second stop signal: exiting now");
                    std::process::exit(130);
                }
                s => {
                    stopping = true;
                    let name = if s == SIGINT { "SIGINT" } else { "SIGTERM" };
                    tracing::info!("{name}: finishing the current cycle, then stopping");
                    Control::Shutdown
                }
            };
            if tx.send(control).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
