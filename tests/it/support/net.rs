//! Loopback networking for the tests without picking a port that might be
//! taken meanwhile: a client, a port where nothing listens (connection
//! refused), the address a process got when it was told port 0, and what
//! its `/metrics` says.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::Duration;

use super::wait::eventually;

/// An HTTP client for tests. reqwest is built without a default crypto
/// provider: install ring first.
pub fn client() -> reqwest::Client {
    edge_agent::poll::install_crypto_provider();
    reqwest::Client::new()
}

/// The text of the agent's `/metrics` at `base` (`http://ADDR`).
pub async fn metrics_text(base: &str) -> String {
    let response = client().get(format!("{base}/metrics")).send().await;
    response.unwrap().text().await.unwrap()
}

/// The value of the series `name` (unlabelled) in a `/metrics` text.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// One unlabelled series of the agent's `/metrics` at `base`
/// (`http://ADDR`), by its name without the `edge_agent_` prefix.
pub async fn metric(base: &str, name: &str) -> f64 {
    metric_in(&metrics_text(base).await, &format!("edge_agent_{name}"))
}

/// A loopback port where nothing listens, kept so while this lives.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

/// A port for "connection refused": a socket bound to port 0 of 127.0.0.1
/// that never listens. Not listening, every connection to it is refused at
/// once (an RST); bound, the port cannot go to another process while the
/// test runs, as the port of a just-dropped listener could.
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// The IPv4 TCP addresses process `pid` listens on: its sockets (the
/// `socket:[INODE]` links in /proc/PID/fd) looked up in its network
/// namespace's table (/proc/PID/net/tcp). Empty if the process is gone.
pub fn listening_addrs(pid: u32) -> Vec<SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let sockets: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            // 0A is TCP_LISTEN.
            if *state != "0A" || !sockets.contains(*inode) {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            // The address is the kernel's u32 printed in hex: its bytes in
            // memory, read back in this machine's order, are the address.
            let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::from((Ipv4Addr::from(ip), port)))
        })
        .collect()
}

/// The one address `child` listens on, for a server told to listen on port
/// 0 that does not say which port it got. Panics if it exits first, listens
/// on more than one address, or does not listen within `limit`.
pub async fn listening_addr(child: &mut Child, limit: Duration) -> SocketAddr {
    let pid = child.id();
    let mut exited = None;
    let mut addrs = Vec::new();
    let listening = eventually(limit, || {
        exited = child.try_wait().unwrap();
        addrs = listening_addrs(pid);
        exited.is_some() || !addrs.is_empty()
    })
    .await;
    if let Some(status) = exited {
        panic!("process {pid} exited with {status} before it listened");
    }
    assert!(listening, "process {pid} did not listen within {limit:?}");
    assert_eq!(
        addrs.len(),
        1,
        "process {pid} listens on more than one address"
    );
    addrs[0]
}
