//! The integration tests, as one test binary (`cargo test --test it`):
//! each file beside this one is a module of it, all sharing [`support`].
//! One binary links the crate and compiles the shared helpers once, where a
//! binary per file did both for every file.

mod support;

mod agent;
mod clock;
mod config;
mod crash;
mod dead_hosts;
mod disk_faults;
mod disk_full;
mod engines;
mod faults;
mod forward;
mod forward_crash;
mod forward_reload;
mod fuzz;
mod gateway;
mod health;
mod nothing;
mod output_file;
mod outside;
mod poll;
mod readers;
mod reload;
mod replay;
mod replay_url;
mod secrets;
mod start;
mod store;
mod tail;
mod when;
