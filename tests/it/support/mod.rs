//! Shared pieces of the integration tests, one concern per file: scripted
//! sensors ([`server`]), hosts that never answer ([`silent`]), the real
//! binary ([`agent`]) and a wall clock it can be made to step ([`clock`]),
//! configs and the files the store leaves ([`config`], [`files`]), loopback
//! ports ([`net`]) and waiting with a deadline ([`wait`]). The tests name
//! them through this module (`support::Agent`, `support::wait_rows`, ...).

mod agent;
mod clock;
mod config;
mod files;
mod net;
mod pki;
mod server;
mod silent;
mod wait;

pub use agent::{Agent, binary, collect_stdout, edge_agent, finish, with_open_files};
pub use clock::FakeClock;
pub use config::{group, output};
pub use files::{all_names, fields, file_names, is_journal, read_text, rows, wait_rows, write};
pub use net::{ClosedPort, client, closed_port, listening_addr, metric, metric_in, metrics_text};
pub use pki::{Pki, self_signed};
pub use server::{Body, Reply, TestServer, serve_status};
pub use silent::Silent;
pub use wait::{eventually, eventually_blocking, wait_until};
