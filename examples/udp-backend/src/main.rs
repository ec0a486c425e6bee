//! An embedder's own backend (issue 21): `vpcswitch` as a library, with ports whose
//! device it supplies itself. Each port here is a UDP socket on which one datagram is
//! one Ethernet frame, as QEMU's `-netdev dgram` (or `-netdev socket,udp=...`) sends
//! them: a VM started with
//! `-netdev dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=5001,remote.type=inet,remote.host=127.0.0.1,remote.port=6001`
//! is a port whose `--port NAME=127.0.0.1:6001,127.0.0.1:5001`.
//!
//! The configuration names such ports `backend = { type = "external", kind = "udp" }`;
//! the program builds a [`UdpBackend`] for each, starts the switch with them
//! (`Switch::start`), prints the switch's events as they come (`Switch::events`) and
//! each port's counters at the end.
//!
//! ```text
//! vpcswitch-udp-example CONFIG --port NAME=LOCAL,REMOTE ... [--seconds N]
//! ```
//!
//! `LOCAL` may have port 0: the line `port NAME listens on ADDR` says which it got.
//! Runs until SIGINT/SIGTERM, or for `--seconds`.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch::backend::{
    read_burst, Backend, BackendError, Capabilities, PacketBuf, PortQueue, TxResult, WorkerBufs,
    WorkerMem,
};
use vpcswitch::model::{BackendSpec, Config};
use vpcswitch::runtime::{EventKind, Switch};

/// A port whose guest is at the other end of a UDP "wire": frames come in datagrams to
/// `local` and go out in datagrams to `remote`. Datagrams from anyone but `remote` are
/// refused (a connected socket): the port's guest is who the operator said.
#[derive(Debug)]
pub struct UdpBackend {
    name: String,
    sock: Option<UdpSocket>,
    remote: SocketAddr,
    queues: usize,
}

impl UdpBackend {
    /// Binds `local` and connects to `remote`.
    pub fn bind(name: &str, local: SocketAddr, remote: SocketAddr) -> io::Result<UdpBackend> {
        let sock = UdpSocket::bind(local)?;
        sock.connect(remote)?;
        sock.set_nonblocking(true)?;
        Ok(UdpBackend {
            name: name.to_string(),
            sock: Some(sock),
            remote,
            queues: 0,
        })
    }

    /// The address it received on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.sock {
            Some(s) => s.local_addr(),
            None => Err(io::Error::other("opened already")),
        }
    }
}

impl Backend for UdpBackend {
    fn describe(&self) -> String {
        format!("udp {} -> {}", self.name, self.remote)
    }

    /// One socket serves the port. With several workers, worker 0 receives and every
    /// worker sends on its own clone of the socket (a datagram socket is safe to share).
    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let sock = self
            .sock
            .take()
            .ok_or_else(|| BackendError::opened_twice(&self.name, workers.len()))?;
        let mut out: Vec<Box<dyn PortQueue>> = Vec::with_capacity(workers.len());
        for i in 0..workers.len() {
            let s = sock.try_clone().map_err(BackendError::device)?;
            out.push(Box::new(UdpQueue {
                sock: s,
                receives: i == 0,
            }));
        }
        self.queues = out.len();
        Ok(out)
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::new("udp", self.queues);
        c.max_frame = Some(MAX_DATAGRAM);
        c
    }
}

/// Longest frame one datagram carries here (a VM's MTU 1500 + Ethernet header, with room).
const MAX_DATAGRAM: usize = 2048;

struct UdpQueue {
    sock: UdpSocket,
    receives: bool,
}

impl PortQueue for UdpQueue {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if !self.receives {
            return 0;
        }
        let sock = &self.sock;
        // one datagram per buffer; errors other than "empty" (a refused send's ICMP
        // coming back as ECONNREFUSED) end the burst and are retried next poll
        read_burst(bufs, out, max, false, |_hdr, data| sock.recv(data)).0
    }

    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let mut r = TxResult::default();
        for b in frames.drain(..) {
            match self.sock.send(b.frame()) {
                Ok(_) => r.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.full += 1,
                Err(_) => r.errors += 1,
            }
            bufs.free(b);
        }
        r
    }

    /// The worker sleeps in epoll on the socket: no polling while idle.
    fn poll_fd(&self) -> Option<RawFd> {
        self.receives.then(|| self.sock.as_raw_fd())
    }

    fn max_frame(&self) -> usize {
        MAX_DATAGRAM
    }
}

fn parse_port(arg: &str) -> Result<(String, SocketAddr, SocketAddr), String> {
    let (name, addrs) = arg
        .split_once('=')
        .ok_or_else(|| format!("--port {arg}: expected NAME=LOCAL,REMOTE"))?;
    let (local, remote) = addrs
        .split_once(',')
        .ok_or_else(|| format!("--port {arg}: expected NAME=LOCAL,REMOTE"))?;
    let parse = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| format!("--port {arg}: {a:?} is not an address:port ({e})"))
    };
    Ok((name.to_string(), parse(local)?, parse(remote)?))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut ports = Vec::new();
    let mut seconds = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => ports.push(parse_port(&args.next().ok_or("--port needs a value")?)?),
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a value")?;
                seconds = Some(
                    v.parse::<f64>()
                        .map_err(|e| format!("--seconds {v}: {e}"))?,
                );
            }
            "-h" | "--help" => {
                println!("usage: vpcswitch-udp-example CONFIG --port NAME=LOCAL,REMOTE ... [--seconds N]");
                return Ok(());
            }
            _ if config.is_none() => config = Some(a),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    let path = config.ok_or("usage: vpcswitch-udp-example CONFIG --port NAME=LOCAL,REMOTE ...")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let cfg = Config::from_toml_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut given: HashMap<String, (SocketAddr, SocketAddr)> =
        ports.into_iter().map(|(n, l, r)| (n, (l, r))).collect();
    let mut backends: Vec<(String, Box<dyn Backend>)> = Vec::new();
    for name in cfg.local_port_names() {
        match cfg.backend_of(name) {
            Some(BackendSpec::External { kind }) if kind.as_deref() == Some("udp") => {
                let (local, remote) = given
                    .remove(name)
                    .ok_or_else(|| format!("port {name:?} is a udp port: give --port {name}=LOCAL,REMOTE"))?;
                let b = UdpBackend::bind(name, local, remote)
                    .map_err(|e| format!("port {name:?}: cannot bind {local}: {e}"))?;
                println!(
                    "port {name} listens on {}",
                    b.local_addr().map_err(|e| e.to_string())?
                );
                backends.push((name.to_string(), Box::new(b)));
            }
            other => {
                return Err(format!(
                    "port {name:?}: this example serves backend = {{ type = \"external\", kind = \"udp\" }} only, not {other:?}"
                ))
            }
        }
    }
    if let Some(extra) = given.keys().next() {
        return Err(format!(
            "--port {extra}: the configuration has no such port"
        ));
    }
    let switch = Switch::start(&cfg, backends).map_err(|e| format!("cannot start: {e}"))?;
    for (name, c) in {
        let mut c: Vec<_> = switch.capabilities().into_iter().collect();
        c.sort_by(|a, b| a.0.cmp(&b.0));
        c
    } {
        println!("port {name}: {} device, {} queue(s)", c.kind, c.queues);
    }
    println!("switch started");
    // the switch's events, as they happen (a thread of our own reads them)
    let events = switch.events();
    let printer = std::thread::spawn(move || {
        for ev in events {
            match ev.kind {
                EventKind::VipMoved {
                    vip,
                    from,
                    to,
                    moves,
                    ..
                } => println!(
                    "event: vip {vip} moved from {} to {} (moves {moves})",
                    from.as_deref().unwrap_or("-"),
                    to.as_deref().unwrap_or("-")
                ),
                other => println!("event: {other:?}"),
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let end = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = switch.stats();
    for p in &stats.ports {
        let drops: Vec<String> = p
            .drops
            .iter()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        println!(
            "stats {}: rx {} tx {} drops [{}]",
            p.name,
            p.rx_packets,
            p.tx_packets,
            drops.join(" ")
        );
    }
    switch.stop();
    let _ = printer.join();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
