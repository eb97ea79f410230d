//! Reloads (SIGHUP) prepared beside the cycles, never in their way.
//!
//! Reading and checking the config file, building the HTTP clients and
//! opening a store for a new output can take long (a slow disk, CA bundles,
//! 10,000 sensors to check). Done in the run loop, that time was taken from
//! the ticks, and a burst of SIGHUPs lost several with no row. Here a SIGHUP
//! starts a task that prepares the new config while cycles go on; the run
//! loop applies the result between two cycles ([`crate::run`]), which is
//! quick. SIGHUPs that come while one is being prepared make exactly one
//! more reload after it (the file may have changed after it was read), so a
//! burst costs at most two reloads, never one per signal.
//!
//! A file that does not load, clients or a store that cannot be set up: the
//! reload is refused with the reason in the log, and the agent keeps
//! running on the configuration it has.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::{Config, Forward, Output};
use crate::health::ForwardStats;
use crate::poll::Poller;
use crate::store::Store;
use crate::store::disk::Disk;
use crate::store::holds::Holds;

/// A validated replacement config, ready to run.
pub(crate) struct Next {
    pub(crate) config: Arc<Config>,
    pub(crate) poller: Poller,
    /// A new store when the output goes to other files.
    pub(crate) store: Option<Store>,
    /// New forward targets (or the same over other files): their holds
    /// and figures, the new store's retention already asking the holds.
    pub(crate) forward: Option<(Arc<Holds>, Vec<Arc<ForwardStats>>)>,
}

/// The reload being prepared off the loop, if any.
pub(crate) struct Reloads {
    /// The config file, read again at each reload.
    path: PathBuf,
    disk: Arc<dyn Disk>,
    pending: Option<JoinHandle<Option<Next>>>,
    /// A SIGHUP came while `pending` was being prepared: one more after it.
    again: bool,
}

impl Reloads {
    /// Reloads of the config at `path`; a new store's files go through `disk`.
    pub(crate) fn new(path: PathBuf, disk: Arc<dyn Disk>) -> Reloads {
        Reloads {
            path,
            disk,
            pending: None,
            again: false,
        }
    }

    /// A SIGHUP: prepare a reload from the running `output`, or, while one
    /// is being prepared, one more after it (however many SIGHUPs came).
    pub(crate) fn ask(&mut self, output: &Output, forward: &[Forward]) {
        if self.pending.is_some() {
            self.again = true;
            return;
        }
        let (path, disk) = (self.path.clone(), self.disk.clone());
        let running = (output.clone(), forward.to_vec());
        self.pending = Some(tokio::spawn(prepare_reload(path, running, disk)));
    }

    /// The prepared reload (`None`: refused, already logged); never
    /// returns while nothing is being prepared. Cancel-safe.
    pub(crate) async fn ready(&mut self) -> Option<Next> {
        let Some(task) = self.pending.as_mut() else {
            return std::future::pending().await;
        };
        let prepared = task.await;
        self.pending = None;
        prepared.unwrap_or_else(|e| {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            None
        })
    }

    /// After a reload was applied (or refused): the one more asked for
    /// meanwhile, from the now running `output`.
    pub(crate) fn follow_up(&mut self, output: &Output, forward: &[Forward]) {
        if std::mem::take(&mut self.again) {
            self.ask(output, forward);
        }
    }
}

impl Drop for Reloads {
    fn drop(&mut self) {
        if let Some(task) = &self.pending {
            task.abort();
        }
    }
}

/// Load and set up the config at `path` (`running` is the output in use);
/// `None` (after logging why) when anything about it fails, so the caller
/// keeps the running config. Runs as a task of its own, beside the cycles.
async fn prepare_reload(
    path: PathBuf,
    (running, running_forward): (Output, Vec<Forward>),
    disk: Arc<dyn Disk>,
) -> Option<Next> {
    // Reading and checking the file and building the clients block (file
    // reads, CA bundles, 10,000 sensors to check): on the blocking pool.
    let built = tokio::task::spawn_blocking(move || {
        let config = match Config::load_to_run(&path) {
            Ok(c) => {
                c.log_warnings();
                Arc::new(c)
            }
            // One line per problem, each readable alone in the journal.
            Err(e) => return Err(e.to_string().lines().map(str::to_string).collect()),
        };
        match Poller::new(config.clone()) {
            Ok(poller) => Ok((config, poller)),
            Err(e) => Err(vec![e.to_string()]),
        }
    })
    .await;
    let (config, poller) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(lines)) => {
            for why in lines {
                tracing::error!("reload refused, keeping the running configuration: {why}");
            }
            return None;
        }
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return None;
        }
    };
    let moved = !config.output.same_files(&running);
    // New targets, or the same ones over other files: their holds are made
    // before a new store opens, so its retention knows them from the start.
    let forward = (moved || config.forward != running_forward).then(|| {
        let holds = Holds::new();
        let stats = crate::forward::prepare(&config.forward, &holds);
        (holds, stats)
    });
    let store = if moved {
        let holds = forward.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
        match Store::open_held(&config.output, disk, holds).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e}");
                return None;
            }
        }
    } else {
        None
    };
    Some(Next {
        config,
        poller,
        store,
        forward,
    })
}
