//! edge-agent polls HTTP sensors on a Linux gateway, averages their readings
//! per group and appends the averages to rotating CSV files.
//!
//! Data flows one way, one module per step:
//!
//! ```text
//! config ─> schedule ─> poll (caps) ─> extract + units ─> aggregate ─> store (rotating CSV)
//!                                                                        │ writes
//!                                                                     history (the files' format)
//!                                                                        │ read by
//!                                                                  replay, tail
//! ```
//!
//! - [`config`] reads and validates `agent.yaml` into a [`config::Config`];
//!   every error names the key path and line.
//! - [`schedule`] produces ticks aligned to wall-clock multiples of the interval.
//! - [`poll`] fetches every sensor once per tick under the total and per-host
//!   caps, cutting off at the cycle's deadline.
//! - [`extract`] reads the number from a body; [`units`] converts it and
//!   refuses impossible values.
//! - [`aggregate`] turns readings into one row per group per window.
//! - [`history`] owns what is on disk (file names, header, row, parse,
//!   index) and imports nothing else of the crate: the writer and the
//!   readers meet only there.
//! - [`store`] is the writer task: bounded queue, whole-row appends, rotation,
//!   compression, retention and repair of torn files.
//! - [`replay`] streams recorded files back out (csv, jsonl, influx; to a
//!   file or an HTTP endpoint); [`tail`] shows the last rows and follows the
//!   active file across rotations.
//! - [`health`] serves `/metrics` and `/healthz` and talks to systemd.
//! - [`run`] ties them into the agent's loop; [`shutdown`] turns signals into
//!   control events; [`simulate`] serves fake sensors; [`plan`] prints what
//!   `check` found.
//!
//! The binary and the integration tests use what is `pub` here; `aggregate`,
//! `health` and `sync` are the agent's own, and `store::disk` is public only
//! as a test seam (fault injection), hidden from the docs.

#![deny(unsafe_code)]

mod aggregate;
pub mod config;
pub mod extract;
pub mod forward;
mod health;
pub mod history;
pub mod memory;
pub mod plan;
pub mod poll;
mod reload;
pub mod replay;
pub mod rlimit;
pub mod run;
pub mod schedule;
pub mod shutdown;
pub mod simulate;
pub mod store;
mod sync;
pub mod tail;
pub mod units;
