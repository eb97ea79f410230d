//! Hosts that accept a connection and never answer: what a hung sensor,
//! a PLC whose web server wedged, or a port behind a black-holing proxy
//! looks like to the agent. Each connection is held open, its request read
//! and never answered, until the client gives up or the [`Silent`] is
//! dropped.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Listeners on port 0 of each of several loopback addresses (Linux routes
/// all of 127.0.0.0/8 to `lo`, so each is a host of its own to the agent).
pub struct Silent {
    pub addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Silent {
    pub async fn start(ips: &[String]) -> Silent {
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for ip in ips {
            let listener = TcpListener::bind(format!("{ip}:0"))
                .await
                .expect("bind loopback");
            addrs.push(listener.local_addr().unwrap());
            tasks.push(tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(hold(stream));
                }
            }));
        }
        Silent { addrs, tasks }
    }

    /// `http://ADDR{path}` on address number `host`.
    pub fn url(&self, host: usize, path: &str) -> String {
        format!("http://{}{}", self.addrs[host], path)
    }
}

/// Read what the client sends, answer nothing, until the client closes:
/// dropped at once, the socket would close and the client would see an
/// error instead of silence; kept after the client left, it would hold a
/// descriptor for nothing.
async fn hold(mut stream: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

impl Drop for Silent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
