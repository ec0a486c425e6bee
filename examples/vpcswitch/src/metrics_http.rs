//! `[switch] metrics = "127.0.0.1:9477"`: Prometheus metrics over HTTP (`GET /metrics`).
//!
//! One thread answers one request at a time (a scrape is small and rare), with 2 s
//! read and write timeouts and an 8 KiB cap on the request head, so a slow or hostile
//! client delays other scrapes by at most that much and never touches the workers: the
//! page is rendered from the same relaxed counters as `ctl stats`. Bind it to a
//! loopback or management address; it has no authentication.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use vpcswitch::runtime::metrics::prometheus;

use crate::Running;

const MAX_HEAD: usize = 8192;

/// Binds `addr` and serves on a thread for the life of the process.
pub fn serve(addr: &str, running: Arc<Running>) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("vpcswitch-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let mut head = [0u8; MAX_HEAD];
                let mut n = 0;
                while n < head.len() {
                    match s.read(&mut head[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if head[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let req = String::from_utf8_lossy(&head[..n]);
                let mut first = req.lines().next().unwrap_or("").split(' ');
                let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                let (status, ctype, body) = match (method, path) {
                    ("GET", "/metrics") => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        prometheus(
                            &running.switch,
                            running.reload_failures.load(Ordering::Relaxed),
                        ),
                    ),
                    ("GET", "/") => (
                        "200 OK",
                        "text/plain; charset=utf-8",
                        "vpcswitch: metrics at /metrics\n".to_string(),
                    ),
                    _ => (
                        "404 Not Found",
                        "text/plain; charset=utf-8",
                        "only GET /metrics is served\n".to_string(),
                    ),
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(local)
}
