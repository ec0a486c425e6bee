//! The overlay's underlay I/O: VXLAN (RFC 7348) datagrams in and out through kernel
//! sockets, one [`Tunnel`] per worker.
//!
//! # Contract
//! * **Receive**: a UDP socket bound to the host's tunnel endpoint (`endpoint:port`)
//!   with `SO_REUSEPORT`, so each worker binds its own and the kernel spreads datagrams
//!   over them by the outer 4-tuple (one flow stays on one worker: no reordering).
//!   [`Tunnel::recv_burst`] takes up to a burst with one `recvmmsg(2)` into buffers the
//!   tunnel made when it was opened, and yields, for each datagram that is VXLAN with an
//!   inner Ethernet frame, its sender, VNI and inner frame ([`Datagram`]); the others
//!   are counted by why ([`TunnelStats`]: too short, I flag clear, longer than a buffer)
//!   and never returned. [`Tunnel::recv_bufs`] does the same straight into the worker's
//!   packet buffers (the inner frame lands at the buffer's first byte: no copy).
//!   **Who sent it and on which VNI is all this crate says**: whether that sender is a
//!   known host, the VNI a known VPC, and the inner frame one that host could have
//!   produced is the tunnel ingress check's (SPEC 10.3), above this crate.
//! * **Send**: a raw IPv4 socket (`IPPROTO_RAW`, `IP_HDRINCL`): the switch writes the
//!   outer IPv4, UDP and VXLAN headers itself ([`vpcswitch_wire::vxlan::Outer::emit`]:
//!   DF set, TTL 64, header checksum right, UDP checksum 0, the UDP source port the
//!   caller chose, normally [`vpcswitch_wire::vxlan::source_port`] of the inner frame),
//!   and the kernel routes the packet, resolves the underlay neighbour and adds the
//!   Ethernet header. [`Tunnel::push`] copies a frame behind its headers into a slot
//!   made at open and sends when the batch is full; [`Tunnel::flush`] sends the rest;
//!   [`Tunnel::send_burst`] sends frames the caller holds without copying them. Every
//!   batch is one `sendmmsg(2)` (more when the kernel refuses one packet of it: the
//!   rest are sent after it).
//! * **Nothing is allocated per packet**, nothing panics: every failure is a counter
//!   (per errno class for sends: `EMSGSIZE`, `ENOBUFS`, a full socket buffer,
//!   unreachable, other). Counters per remote host are the caller's (it knows which
//!   host an address is); the totals of the sockets are here.
//! * [`Tunnel::poll_fd`] is the descriptor a sleeping worker adds to its epoll set
//!   (readable when datagrams wait).
//! * [`route_mtu`] and [`interface_mtu_of`] say how long an underlay packet may be, so
//!   the runtime can give guests `mtu - 50` ([`vpcswitch_wire::vxlan::OVERHEAD`]) and
//!   refuse longer frames before they reach the kernel (SPEC 10.6).
//!
//! `unsafe` lives only in [`sys`].

pub mod sys;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use vpcswitch_backend::{PacketBuf, WorkerBufs, BUF_SIZE};
use vpcswitch_wire::vxlan::{self, Outer, OUTER_HEADER_LEN, VXLAN_HEADER_LEN};
use vpcswitch_wire::ETHERNET_HEADER_LEN;

use vpcswitch_backend::sys::{Received as Meta, RecvBatch, SendBatch};

/// Most datagrams one `recvmmsg` or `sendmmsg` moves (the largest burst).
pub const BATCH_MAX: usize = vpcswitch_backend::sys::MMSG_MAX;
pub use vpcswitch_wire::vxlan::VXLAN_PORT;

/// How a [`Tunnel`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConfig {
    /// the local tunnel endpoint: the address received on and sent from
    pub endpoint: Ipv4Addr,
    /// the UDP port received on ([`VXLAN_PORT`] unless configured; 0: one the kernel
    /// chooses, which [`Tunnel::local`] then says)
    pub port: u16,
    /// the longest inner frame (its Ethernet header included) sent or received;
    /// a longer received one is counted as `rx_truncated`, a longer one to send as
    /// `tx_too_big`. Sizes the tunnel's buffers.
    pub max_frame: usize,
    /// datagrams per `recvmmsg` and per `sendmmsg` (at most [`BATCH_MAX`])
    pub burst: usize,
    /// receive buffer asked of the kernel, bytes
    pub rcvbuf: usize,
    /// send buffer asked of the kernel, bytes
    pub sndbuf: usize,
    /// UDP GSO on send: the segments of a TCP super-frame leave as one train (one
    /// `sendmsg` of up to 64 KiB that the kernel cuts into datagrams, and that crosses
    /// a veth or a GSO-capable NIC whole) from one of `send_ports` UDP sockets
    /// ([`Tunnel::send_train`])
    pub gso: bool,
    /// UDP GRO on receive: the kernel may hand over many datagrams of one flow in one
    /// read (a GSO train from another host arrives that way); they are split again here
    pub gro: bool,
    /// UDP send sockets, each bound to its own source port, when `gso` (1..=64): the
    /// source port of a flow is one of theirs ([`Tunnel::source_port`])
    pub send_ports: usize,
}

impl TunnelConfig {
    /// Defaults for `endpoint:port`: frames of a 9000-byte (jumbo) underlay, bursts of
    /// 32, 4 MiB socket buffers each way. Frames that long do not fit an ordinary
    /// packet buffer, so [`Tunnel::recv_bufs`] then receives into large ones: give the
    /// underlay's real MTU with [`TunnelConfig::with_mtu`].
    pub fn new(endpoint: Ipv4Addr, port: u16) -> TunnelConfig {
        TunnelConfig::with_mtu(endpoint, port, 9000)
    }

    /// [`TunnelConfig::new`] for an underlay of `underlay_mtu` bytes ([`route_mtu`]):
    /// `max_frame` is what fits it ([`vxlan::max_inner_frame`], 1464 for 1500).
    pub fn with_mtu(endpoint: Ipv4Addr, port: u16, underlay_mtu: usize) -> TunnelConfig {
        TunnelConfig {
            endpoint,
            port,
            max_frame: vxlan::max_inner_frame(underlay_mtu),
            burst: 32,
            rcvbuf: 4 << 20,
            sndbuf: 4 << 20,
            gso: true,
            gro: true,
            send_ports: 16,
        }
    }
}

/// Why a [`Tunnel`] could not be opened: one variant per operation, each carrying the
/// OS error.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The receiving UDP socket could not be made or bound.
    #[error("bind the VXLAN receive socket to {at}{}: {source}", bind_hint(.source))]
    Bind {
        /// the endpoint and port
        at: SocketAddrV4,
        /// the OS error
        source: io::Error,
    },
    /// The raw send socket could not be made.
    #[error("open the raw IPv4 send socket{}: {source}", raw_hint(.source))]
    Raw {
        /// the OS error
        source: io::Error,
    },
    /// The configuration cannot work (burst or frame size out of range).
    #[error("tunnel configuration: {0}")]
    Config(String),
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => " (the endpoint is not an address of this host)",
        Some(libc::EADDRINUSE) => {
            " (another socket without SO_REUSEPORT holds the port: a Linux vxlan device?)"
        }
        _ => "",
    }
}

fn raw_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EPERM) {
        " (needs CAP_NET_RAW)"
    } else {
        ""
    }
}

/// The counters of one tunnel's two sockets (see the crate's contract). Plain totals
/// since open; the owning worker is their only writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// datagrams returned (VXLAN with an inner Ethernet frame)
    pub rx_packets: u64,
    /// bytes of their inner frames
    pub rx_bytes: u64,
    /// `recvmmsg` calls that returned datagrams
    pub rx_calls: u64,
    /// datagrams too short for a VXLAN header and an Ethernet header
    pub rx_short: u64,
    /// datagrams whose VXLAN I flag is clear (not VXLAN, or no VNI)
    pub rx_not_vxlan: u64,
    /// datagrams longer than a receive buffer (`max_frame`)
    pub rx_truncated: u64,
    /// datagrams that found no packet buffer to land in ([`Tunnel::recv_bufs`]: none
    /// is lost, they wait in the socket; counted per call that stopped short)
    pub rx_no_buffer: u64,
    /// `recvmmsg` failures other than "nothing there"
    pub rx_errors: u64,
    /// the last of those, as an errno (0: none)
    pub rx_last_errno: i32,
    /// packets the kernel took
    pub tx_packets: u64,
    /// bytes of their inner frames
    pub tx_bytes: u64,
    /// `sendmmsg` calls
    pub tx_calls: u64,
    /// refused before the kernel: longer than `max_frame` or than an IPv4 packet
    pub tx_too_big: u64,
    /// refused before the kernel: a VNI beyond 24 bits
    pub tx_bad_vni: u64,
    /// `EMSGSIZE`: longer than the MTU of the route to the remote endpoint
    pub tx_msgsize: u64,
    /// `ENOBUFS`: the underlay device's queue dropped it
    pub tx_nobufs: u64,
    /// `EAGAIN`: the socket's send buffer was full (dropped, not retried)
    pub tx_full: u64,
    /// no route or neighbour to the remote endpoint (`ENETUNREACH`, `EHOSTUNREACH`,
    /// `ENETDOWN`, `EHOSTDOWN`)
    pub tx_unreachable: u64,
    /// any other send failure
    pub tx_errors: u64,
    /// the errno of the last send failure (0: none)
    pub tx_last_errno: i32,
    /// trains sent with UDP GSO (each one `sendmsg`, `tx_packets` counts its datagrams)
    pub tx_trains: u64,
    /// reads that returned datagrams the kernel coalesced (UDP GRO)
    pub rx_coalesced: u64,
}

impl TunnelStats {
    /// Packets refused on send, whatever the reason.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_too_big
            + self.tx_bad_vni
            + self.tx_msgsize
            + self.tx_nobufs
            + self.tx_full
            + self.tx_unreachable
            + self.tx_errors
    }
    /// Datagrams received and not returned, whatever the reason.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_short + self.rx_not_vxlan + self.rx_truncated
    }
}

/// One received VXLAN datagram: who sent it, on which VNI, and the inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// the sender's address and UDP source port
    pub from: SocketAddrV4,
    /// the VNI
    pub vni: u32,
    /// the inner Ethernet frame (at least an Ethernet header; nothing else checked)
    pub frame: &'a [u8],
}

/// Where a frame [`Tunnel::recv_bufs`] put in a packet buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// the sender's address and UDP source port
    pub from: SocketAddrV4,
    /// the VNI
    pub vni: u32,
}

/// One frame to send: to which endpoint (address and UDP port), on which VNI, from
/// which UDP source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFrame<'a> {
    /// the remote tunnel endpoint and its UDP port
    pub dst: SocketAddrV4,
    /// the VNI
    pub vni: u32,
    /// the UDP source port ([`vpcswitch_wire::vxlan::source_port`] of `frame`)
    pub src_port: u16,
    /// the inner Ethernet frame
    pub frame: &'a [u8],
}

/// What [`Tunnel::send_train`] did with a train's frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    /// frames the kernel took (or, without GSO, that were queued to send)
    pub sent: usize,
    /// bytes of their inner frames
    pub bytes: u64,
    /// frames the kernel or the tunnel refused (counted in [`TunnelStats`])
    pub refused: usize,
    /// frames the caller's `fill` did not write (its own to count)
    pub skipped: usize,
}

/// The largest UDP payload of one IPv4 datagram, and so of one GSO train.
const UDP_PAYLOAD_MAX: usize = 65_507;
/// Most datagrams in one GSO train (the kernel's `UDP_MAX_SEGMENTS` is 64 on the
/// oldest kernels with GSO, more on newer ones).
const GSO_SEGMENTS_MAX: usize = 64;
/// A GRO receive slot: the longest UDP payload and a little.
const GRO_SLOT: usize = 1 << 16;
/// Coalesced datagrams read per `recvmmsg`.
const GRO_BATCH: usize = 8;

/// A received datagram's place in the receive buffers.
#[derive(Debug, Clone, Copy)]
struct Slot {
    from: SocketAddrV4,
    vni: u32,
    start: usize,
    end: usize,
}

const UNSPECIFIED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
const EMPTY: &[u8] = &[];

const NO_SLOT: Slot = Slot {
    from: UNSPECIFIED,
    vni: 0,
    start: 0,
    end: 0,
};

/// One worker's VXLAN tunnel: a receive socket on the endpoint and a raw send socket,
/// with the buffers both use made at open (see the crate's contract).
pub struct Tunnel {
    cfg: TunnelConfig,
    udp: OwnedFd,
    raw: OwnedFd,
    /// `burst` receive slots of `VXLAN_HEADER_LEN + max_frame` bytes
    rx: Box<[u8]>,
    rx_slot: usize,
    rx_meta: Box<[Meta; BATCH_MAX]>,
    /// the datagrams of the last receive that parsed
    good: Box<[Slot; BATCH_MAX]>,
    ngood: usize,
    /// VXLAN headers of [`Tunnel::recv_bufs`] (the frame goes to the packet buffer)
    rx_hdrs: Box<[[u8; VXLAN_HEADER_LEN]; BATCH_MAX]>,
    /// `burst` send slots of `OUTER_HEADER_LEN + max_frame` bytes, and each one's
    /// destination and length while pending
    tx: Box<[u8]>,
    tx_slot: usize,
    tx_pending: Box<[(SocketAddrV4, usize); BATCH_MAX]>,
    npending: usize,
    /// outer headers of [`Tunnel::send_burst`]
    tx_hdrs: Box<[[u8; OUTER_HEADER_LEN]; BATCH_MAX]>,
    /// the GSO send sockets and their source ports (empty without GSO)
    tx_udp: Box<[(OwnedFd, u16)]>,
    /// one train being written: VXLAN header + frame, segment after segment
    train: Box<[u8]>,
    /// GRO receive: `GRO_BATCH` slots of `GRO_SLOT` bytes (empty without GRO), how many
    /// datagrams the last read brought, the one being split and the offset reached in it
    gro_buf: Box<[u8]>,
    gro_n: usize,
    gro_i: usize,
    gro_off: usize,
    /// the `good` slots point into `gro_buf`, not `rx`
    good_in_gro: bool,
    ip_id: u16,
    stats: TunnelStats,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("cfg", &self.cfg)
            .field("udp", &self.udp)
            .field("raw", &self.raw)
            .field("pending", &self.npending)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Opens the sockets and makes the buffers. Needs `CAP_NET_RAW` (the raw socket);
    /// the endpoint must be an address of this host (in the calling thread's network
    /// namespace), and every tunnel on `endpoint:port` in the process must be a
    /// [`Tunnel`] (they share the port with `SO_REUSEPORT`).
    pub fn open(cfg: TunnelConfig) -> Result<Tunnel, TunnelError> {
        if cfg.burst == 0 || cfg.burst > BATCH_MAX {
            return Err(TunnelError::Config(format!(
                "burst {} is not in 1..={BATCH_MAX}",
                cfg.burst
            )));
        }
        if cfg.max_frame < ETHERNET_HEADER_LEN || cfg.max_frame > usize::from(u16::MAX) {
            return Err(TunnelError::Config(format!(
                "max_frame {} is not in {ETHERNET_HEADER_LEN}..=65535",
                cfg.max_frame
            )));
        }
        let at = SocketAddrV4::new(cfg.endpoint, cfg.port);
        let udp =
            sys::udp_socket(at, cfg.rcvbuf).map_err(|source| TunnelError::Bind { at, source })?;
        // port 0 asks the kernel for one: keep the one it chose
        let mut cfg = cfg;
        cfg.port = sys::bound_addr(&udp)
            .map_err(|source| TunnelError::Bind { at, source })?
            .port();
        let raw = sys::raw_socket(cfg.sndbuf).map_err(|source| TunnelError::Raw { source })?;
        if cfg.gso && !(1..=64).contains(&cfg.send_ports) {
            return Err(TunnelError::Config(format!(
                "send_ports {} is not in 1..=64",
                cfg.send_ports
            )));
        }
        if cfg.gro {
            sys::set_gro(&udp).map_err(|source| TunnelError::Bind { at, source })?;
        }
        let tx_udp = if cfg.gso {
            open_send_ports(cfg.endpoint, cfg.send_ports, cfg.sndbuf)
                .map_err(|source| TunnelError::Bind { at, source })?
        } else {
            Vec::new()
        };
        let rx_slot = VXLAN_HEADER_LEN + cfg.max_frame;
        let tx_slot = OUTER_HEADER_LEN + cfg.max_frame;
        Ok(Tunnel {
            cfg,
            udp,
            raw,
            rx: vec![0u8; rx_slot * cfg.burst].into_boxed_slice(),
            rx_slot,
            rx_meta: Box::new(
                [Meta {
                    len: 0,
                    from: UNSPECIFIED,
                    truncated: false,
                    segment: 0,
                }; BATCH_MAX],
            ),
            good: Box::new([NO_SLOT; BATCH_MAX]),
            ngood: 0,
            rx_hdrs: Box::new([[0; VXLAN_HEADER_LEN]; BATCH_MAX]),
            tx: vec![0u8; tx_slot * cfg.burst].into_boxed_slice(),
            tx_slot,
            tx_pending: Box::new([(UNSPECIFIED, 0); BATCH_MAX]),
            npending: 0,
            tx_hdrs: Box::new([[0; OUTER_HEADER_LEN]; BATCH_MAX]),
            tx_udp: tx_udp.into_boxed_slice(),
            train: vec![0u8; UDP_PAYLOAD_MAX.max(cfg.max_frame)].into_boxed_slice(),
            gro_buf: vec![0u8; if cfg.gro { GRO_SLOT * GRO_BATCH } else { 0 }].into_boxed_slice(),
            gro_n: 0,
            gro_i: 0,
            gro_off: 0,
            good_in_gro: false,
            ip_id: 1,
            stats: TunnelStats::default(),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &TunnelConfig {
        &self.cfg
    }

    /// The local endpoint and UDP port received on.
    pub fn local(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.cfg.endpoint, self.cfg.port)
    }

    /// The descriptor that becomes readable when datagrams wait: for the worker's epoll
    /// set. The same for the tunnel's life.
    pub fn poll_fd(&self) -> RawFd {
        self.udp.as_raw_fd()
    }

    /// The counters since open.
    pub fn stats(&self) -> TunnelStats {
        self.stats
    }

    /// The receive and send buffer sizes the kernel granted (bytes, as it counts them).
    pub fn socket_buffers(&self) -> io::Result<(usize, usize)> {
        Ok((
            sys::buffer_size(&self.udp, libc::SO_RCVBUF)?,
            sys::buffer_size(&self.raw, libc::SO_SNDBUF)?,
        ))
    }

    /// The MTU of the underlay path to `remote` ([`route_mtu`] from this endpoint).
    pub fn underlay_mtu(&self, remote: Ipv4Addr) -> io::Result<usize> {
        route_mtu(self.cfg.endpoint, remote)
    }

    /// Classifies received datagram `m` whose first bytes (at least its VXLAN header,
    /// when it has one) are `head`: its VNI when it is VXLAN with an inner Ethernet
    /// frame, else counted and `None`.
    fn admit(&mut self, m: &Meta, head: &[u8]) -> Option<u32> {
        if m.truncated {
            self.stats.rx_truncated += 1;
            return None;
        }
        if m.len < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN {
            self.stats.rx_short += 1;
            return None;
        }
        match vxlan::decap(head) {
            Ok((vni, _)) => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += (m.len - VXLAN_HEADER_LEN) as u64;
                Some(vni)
            }
            Err(vxlan::VxlanError::NoVni) => {
                self.stats.rx_not_vxlan += 1;
                None
            }
            Err(_) => {
                self.stats.rx_short += 1;
                None
            }
        }
    }

    /// Receives up to a burst with one `recvmmsg` into the tunnel's own buffers and
    /// returns the datagrams that are VXLAN with an inner Ethernet frame (the others
    /// are counted). Empty when nothing waits. The frames stay valid until the next
    /// receive.
    pub fn recv_burst(&mut self) -> Received<'_> {
        self.ngood = 0;
        if self.cfg.gro {
            self.good_in_gro = true;
            let mut read = false;
            while self.ngood < self.cfg.burst {
                match self.gro_next() {
                    Some(s) => {
                        self.good[self.ngood] = s;
                        self.ngood += 1;
                    }
                    None if read || !self.gro_read() => break,
                    None => read = true,
                }
            }
            return Received {
                tunnel: self,
                next: 0,
            };
        }
        self.good_in_gro = false;
        let slot = self.rx_slot;
        let mut batch = RecvBatch::new();
        for c in self.rx.chunks_exact_mut(slot) {
            batch.push(Default::default(), c);
        }
        let r = batch.recv(self.udp.as_raw_fd());
        let n = received(&batch, r, &mut self.rx_meta, &mut self.stats);
        for i in 0..n {
            let m = self.rx_meta[i];
            let start = i * slot;
            let end = start + m.len.min(slot);
            let head = &self.rx[start..end];
            // `head` borrows `rx`; copy what `admit` needs (the header) first
            let mut h = [0u8; VXLAN_HEADER_LEN];
            let k = head.len().min(VXLAN_HEADER_LEN);
            h[..k].copy_from_slice(&head[..k]);
            if let Some(vni) = self.admit(&m, &h[..k]) {
                self.good[self.ngood] = Slot {
                    from: m.from,
                    vni,
                    start: start + VXLAN_HEADER_LEN,
                    end,
                };
                self.ngood += 1;
            }
        }
        Received {
            tunnel: self,
            next: 0,
        }
    }

    /// Receives up to `max` datagrams (at most a burst) with one `recvmmsg` straight
    /// into packet buffers taken from `bufs` (large ones when `max_frame` is beyond an
    /// ordinary buffer): each VXLAN datagram's inner frame is appended to `out` and its
    /// sender and VNI to `meta`, in the same order; the others are counted and their
    /// buffers given back, as are the ones nothing arrived in. Returns how many were
    /// appended.
    pub fn recv_bufs(
        &mut self,
        bufs: &mut WorkerBufs,
        out: &mut Vec<PacketBuf>,
        meta: &mut Vec<RxMeta>,
        max: usize,
    ) -> usize {
        if self.cfg.gro {
            return self.recv_bufs_gro(bufs, out, meta, max);
        }
        let want = max.min(self.cfg.burst);
        let start = out.len();
        for _ in 0..want {
            match self.alloc_buf(bufs) {
                Some(b) => out.push(b),
                None => {
                    self.stats.rx_no_buffer += 1;
                    break;
                }
            }
        }
        let k = out.len() - start;
        let cap = out[start..]
            .first()
            .map_or(0, |b| b.capacity().min(self.cfg.max_frame));
        let mut batch = RecvBatch::new();
        for (h, b) in self.rx_hdrs.iter_mut().zip(out[start..].iter_mut()) {
            let d = b.parts_mut().0;
            let c = cap.min(d.len());
            batch.push(&mut h[..], &mut d[..c]);
        }
        let r = batch.recv(self.udp.as_raw_fd());
        let n = received(&batch, r, &mut self.rx_meta, &mut self.stats);
        // keep the good ones in order at the front of out[start..]
        let mut w = start;
        for i in 0..n.min(k) {
            let m = self.rx_meta[i];
            let h = self.rx_hdrs[i];
            let hl = m.len.min(VXLAN_HEADER_LEN);
            if let Some(vni) = self.admit(&m, &h[..hl]) {
                let b = &mut out[start + i];
                b.set_len(m.len - VXLAN_HEADER_LEN);
                b.offload = vpcswitch_backend::Offload::None;
                b.vnet = vpcswitch_backend::VnetHdr::default();
                out.swap(w, start + i);
                meta.push(RxMeta { from: m.from, vni });
                w += 1;
            }
        }
        while out.len() > w {
            if let Some(b) = out.pop() {
                bufs.free(b);
            }
        }
        w - start
    }

    /// A packet buffer a received frame fits: a large one when `max_frame` is beyond an
    /// ordinary buffer.
    fn alloc_buf(&self, bufs: &mut WorkerBufs) -> Option<PacketBuf> {
        if self.cfg.max_frame > BUF_SIZE {
            bufs.alloc_large()
        } else {
            bufs.alloc()
        }
    }

    /// [`Tunnel::recv_bufs`] with GRO: each inner frame is copied from the tunnel's
    /// coalesced reads into a packet buffer (a read of many datagrams is split over
    /// as many calls as it takes).
    fn recv_bufs_gro(
        &mut self,
        bufs: &mut WorkerBufs,
        out: &mut Vec<PacketBuf>,
        meta: &mut Vec<RxMeta>,
        max: usize,
    ) -> usize {
        let want = max.min(self.cfg.burst);
        let mut got = 0;
        let mut read = false;
        while got < want {
            let Some(mut b) = self.alloc_buf(bufs) else {
                // what was read waits in the tunnel's buffer for the next call
                self.stats.rx_no_buffer += 1;
                break;
            };
            let s = loop {
                if let Some(s) = self.gro_next() {
                    break Some(s);
                }
                if read || !self.gro_read() {
                    break None;
                }
                read = true;
            };
            let Some(s) = s else {
                bufs.free(b);
                break;
            };
            let n = s.end - s.start;
            let (d, len) = b.parts_mut();
            let Some(dst) = d.get_mut(..n) else {
                self.stats.rx_truncated += 1;
                bufs.free(b);
                continue;
            };
            dst.copy_from_slice(&self.gro_buf[s.start..s.end]);
            *len = n;
            b.offload = vpcswitch_backend::Offload::None;
            b.vnet = vpcswitch_backend::VnetHdr::default();
            out.push(b);
            meta.push(RxMeta {
                from: s.from,
                vni: s.vni,
            });
            got += 1;
        }
        got
    }

    /// Reads up to `GRO_BATCH` datagrams, coalesced or not, into the GRO slots with one
    /// `recvmmsg`; false when none waits. Only when every segment of the last read
    /// was taken.
    fn gro_read(&mut self) -> bool {
        self.gro_n = 0;
        self.gro_i = 0;
        self.gro_off = 0;
        let mut batch = RecvBatch::new();
        batch.want_gro();
        for c in self.gro_buf.chunks_exact_mut(GRO_SLOT) {
            batch.push(Default::default(), c);
        }
        let r = batch.recv(self.udp.as_raw_fd());
        let n = received(&batch, r, &mut self.rx_meta, &mut self.stats);
        self.stats.rx_coalesced +=
            self.rx_meta[..n].iter().filter(|m| m.segment > 0).count() as u64;
        self.gro_n = n;
        n > 0
    }

    /// The next datagram of the last GRO read (a coalesced read is cut at its segment
    /// size): its sender, VNI and inner frame's place in `gro_buf`, when it is VXLAN
    /// with an inner Ethernet frame no longer than `max_frame`; the others are
    /// counted and passed over. `None` when all are taken.
    fn gro_next(&mut self) -> Option<Slot> {
        while self.gro_i < self.gro_n {
            let m = self.rx_meta[self.gro_i];
            let base = self.gro_i * GRO_SLOT;
            let len = m.len.min(GRO_SLOT);
            let seg = if m.segment == 0 { len } else { m.segment };
            let start = self.gro_off;
            let end = (start + seg).min(len);
            if m.truncated || end <= start {
                if m.truncated {
                    self.stats.rx_truncated += 1;
                }
                self.gro_i += 1;
                self.gro_off = 0;
                continue;
            }
            self.gro_off = end;
            if end >= len {
                self.gro_i += 1;
                self.gro_off = 0;
            }
            let one = Meta {
                len: end - start,
                from: m.from,
                // a datagram longer than a frame may be (the tunnel's own receive
                // buffers would have cut it)
                truncated: end - start > VXLAN_HEADER_LEN + self.cfg.max_frame,
                segment: 0,
            };
            let mut h = [0u8; VXLAN_HEADER_LEN];
            let k = (end - start).min(VXLAN_HEADER_LEN);
            h[..k].copy_from_slice(&self.gro_buf[base + start..base + start + k]);
            if let Some(vni) = self.admit(&one, &h[..k]) {
                return Some(Slot {
                    from: m.from,
                    vni,
                    start: base + start + VXLAN_HEADER_LEN,
                    end: base + end,
                });
            }
        }
        None
    }

    /// The UDP source port of the packets carrying `inner`'s flow: from a hash of its
    /// addresses and ports (ECMP spreads flows, a flow keeps one path and, at the
    /// receiver, one worker), one of the GSO send sockets' ports when the tunnel
    /// sends with GSO (so a flow's trains and single frames share one 4-tuple and
    /// stay in order), else in 49152..=65535 ([`vxlan::source_port`]).
    pub fn source_port(&self, inner: &[u8]) -> u16 {
        if self.tx_udp.is_empty() {
            return vxlan::source_port(inner);
        }
        let h = u64::from(vxlan::flow_hash(inner));
        let i = ((h * self.tx_udp.len() as u64) >> 32) as usize;
        self.tx_udp.get(i).map_or(0, |s| s.1)
    }

    /// Sends `count` frames of one flow to `dst` on `vni` from UDP port `src_port`
    /// ([`Tunnel::source_port`] of the flow) as trains: `fill(i, out)` writes frame
    /// `i` into `out` (room for `seg_len` bytes) and returns its length, or `None` to
    /// leave it out. Every frame but the last should be `seg_len` long (a shorter one
    /// ends its train early: correct, slower) — the segments of a TCP super-frame.
    /// With GSO each train of up to 64 KiB is one `sendmsg` (what [`Tunnel::push`]
    /// queued goes first, so order holds); without it, or for a source port that is
    /// not one of the tunnel's, each frame is [`Tunnel::push`]ed.
    pub fn send_train(
        &mut self,
        dst: SocketAddrV4,
        vni: u32,
        src_port: u16,
        count: usize,
        seg_len: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> Train {
        let mut t = Train::default();
        if seg_len > self.cfg.max_frame || seg_len < ETHERNET_HEADER_LEN {
            self.stats.tx_too_big += count as u64;
            t.refused = count;
            return t;
        }
        let mut train = std::mem::take(&mut self.train);
        match self.tx_udp.iter().position(|s| s.1 == src_port) {
            Some(sock) => self.send_gso(
                sock, dst, vni, count, seg_len, &mut train, &mut fill, &mut t,
            ),
            None => {
                for i in 0..count {
                    match fill(i, &mut train[..seg_len]) {
                        Some(n) if n <= seg_len => {
                            if self.push(dst, vni, src_port, &train[..n]) {
                                t.sent += 1;
                                t.bytes += n as u64;
                            } else {
                                t.refused += 1;
                            }
                        }
                        _ => t.skipped += 1,
                    }
                }
            }
        }
        self.train = train;
        t
    }

    /// The GSO half of [`Tunnel::send_train`], on send socket `sock`.
    #[allow(clippy::too_many_arguments)]
    fn send_gso(
        &mut self,
        sock: usize,
        dst: SocketAddrV4,
        vni: u32,
        count: usize,
        seg_len: usize,
        train: &mut [u8],
        fill: &mut impl FnMut(usize, &mut [u8]) -> Option<usize>,
        t: &mut Train,
    ) {
        let mut hdr = [0u8; VXLAN_HEADER_LEN];
        if vxlan::emit_header(vni, &mut hdr).is_err() {
            self.stats.tx_bad_vni += count as u64;
            t.refused = count;
            return;
        }
        // what was queued for the raw socket leaves first: a flow's frames stay in order
        self.flush();
        let step = VXLAN_HEADER_LEN + seg_len;
        let per = (UDP_PAYLOAD_MAX / step).clamp(1, GSO_SEGMENTS_MAX);
        let Ok(seg) = u16::try_from(step) else {
            self.stats.tx_too_big += count as u64;
            t.refused = count;
            return;
        };
        let fd = self.tx_udp[sock].0.as_raw_fd();
        let mut i = 0;
        while i < count {
            let (mut off, mut k, mut bytes) = (0, 0, 0u64);
            while k < per && i < count {
                let slot = &mut train[off..off + step];
                slot[..VXLAN_HEADER_LEN].copy_from_slice(&hdr);
                let r = fill(i, &mut slot[VXLAN_HEADER_LEN..]);
                i += 1;
                match r {
                    Some(n) if (ETHERNET_HEADER_LEN..=seg_len).contains(&n) => {
                        off += VXLAN_HEADER_LEN + n;
                        k += 1;
                        bytes += n as u64;
                        if n < seg_len {
                            break;
                        }
                    }
                    _ => t.skipped += 1,
                }
            }
            if k == 0 {
                continue;
            }
            let mut b = SendBatch::new();
            b.push_segmented(Some(dst), &train[..off], EMPTY, seg);
            self.stats.tx_calls += 1;
            match b.send(fd) {
                Ok(1) => {
                    self.stats.tx_trains += 1;
                    self.stats.tx_packets += k as u64;
                    self.stats.tx_bytes += bytes;
                    t.sent += k;
                    t.bytes += bytes;
                }
                Ok(_) => {
                    self.stats.tx_errors += k as u64;
                    t.refused += k;
                }
                Err(e) => {
                    count_send_error(&mut self.stats, e.raw_os_error().unwrap_or(-1), k as u64);
                    t.refused += k;
                }
            }
        }
    }

    fn next_id(&mut self) -> u16 {
        // DF is set, so the identification only has to be non-zero (a zero one the
        // kernel would replace at a cost): any sequence will do (RFC 6864)
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
        self.ip_id
    }

    /// Writes the outer headers of `frame` to `dst` into `hdr`; false (counted) when
    /// the frame cannot be sent.
    fn encap(
        &mut self,
        dst: SocketAddrV4,
        vni: u32,
        src_port: u16,
        len: usize,
        hdr: &mut [u8; OUTER_HEADER_LEN],
    ) -> bool {
        if len > self.cfg.max_frame {
            self.stats.tx_too_big += 1;
            return false;
        }
        let outer = Outer {
            src: self.cfg.endpoint,
            dst: *dst.ip(),
            src_port,
            dst_port: dst.port(),
            vni,
        };
        let id = self.next_id();
        match outer.emit(id, len, hdr) {
            Ok(()) => true,
            Err(vxlan::VxlanError::VniRange) => {
                self.stats.tx_bad_vni += 1;
                false
            }
            Err(_) => {
                self.stats.tx_too_big += 1;
                false
            }
        }
    }

    /// Queues `frame` for `dst` on `vni` from UDP port `src_port`: its headers and a
    /// copy of it go into a send slot; when every slot is taken, the batch is sent.
    /// False when the frame was refused (too long, a VNI beyond 24 bits: counted).
    pub fn push(&mut self, dst: SocketAddrV4, vni: u32, src_port: u16, frame: &[u8]) -> bool {
        if self.npending == self.cfg.burst {
            self.flush();
        }
        let mut hdr = [0u8; OUTER_HEADER_LEN];
        if !self.encap(dst, vni, src_port, frame.len(), &mut hdr) {
            return false;
        }
        let i = self.npending;
        let slot = &mut self.tx[i * self.tx_slot..(i + 1) * self.tx_slot];
        let total = OUTER_HEADER_LEN + frame.len();
        slot[..OUTER_HEADER_LEN].copy_from_slice(&hdr);
        slot[OUTER_HEADER_LEN..total].copy_from_slice(frame);
        // the raw socket routes by the address alone; the port is in the UDP header
        self.tx_pending[i] = (SocketAddrV4::new(*dst.ip(), 0), total);
        self.npending += 1;
        if self.npending == self.cfg.burst {
            self.flush();
        }
        true
    }

    /// Frames queued by [`Tunnel::push`] and not sent yet.
    pub fn pending(&self) -> usize {
        self.npending
    }

    /// Sends what [`Tunnel::push`] queued; returns how many packets the kernel took
    /// (the others are counted by why).
    pub fn flush(&mut self) -> usize {
        let n = std::mem::take(&mut self.npending);
        if n == 0 {
            return 0;
        }
        let slot = self.tx_slot;
        let mut msgs = [(UNSPECIFIED, EMPTY, EMPTY); BATCH_MAX];
        for (i, (m, &(dst, len))) in msgs
            .iter_mut()
            .zip(self.tx_pending.iter())
            .take(n)
            .enumerate()
        {
            *m = (dst, &self.tx[i * slot..i * slot + len], EMPTY);
        }
        send_all(self.raw.as_raw_fd(), &msgs[..n], &mut self.stats)
    }

    /// Sends `frames` without copying them: their outer headers are written into the
    /// tunnel's header slots, and each packet goes out as headers + frame, one
    /// `sendmmsg` per burst. Frames that cannot be sent are counted. Returns how many
    /// the kernel took. Frames queued by [`Tunnel::push`] are sent first.
    pub fn send_burst<'a>(&mut self, frames: impl IntoIterator<Item = TxFrame<'a>>) -> usize {
        let mut sent = self.flush();
        let mut it = frames.into_iter();
        loop {
            let mut bodies = [(UNSPECIFIED, EMPTY); BATCH_MAX];
            let mut n = 0;
            while n < self.cfg.burst {
                let Some(f) = it.next() else {
                    break;
                };
                let mut hdr = [0u8; OUTER_HEADER_LEN];
                if self.encap(f.dst, f.vni, f.src_port, f.frame.len(), &mut hdr) {
                    self.tx_hdrs[n] = hdr;
                    bodies[n] = (SocketAddrV4::new(*f.dst.ip(), 0), f.frame);
                    n += 1;
                }
            }
            if n == 0 {
                return sent;
            }
            let mut msgs = [(UNSPECIFIED, EMPTY, EMPTY); BATCH_MAX];
            for (m, (h, &(dst, body))) in msgs
                .iter_mut()
                .zip(self.tx_hdrs.iter().zip(bodies.iter()))
                .take(n)
            {
                *m = (dst, &h[..], body);
            }
            sent += send_all(self.raw.as_raw_fd(), &msgs[..n], &mut self.stats);
            if n < self.cfg.burst {
                return sent;
            }
        }
    }
}

/// Keeps what `recvmmsg` said of the datagrams that arrived in `meta`, and counts the
/// call in `st`: how many arrived (0 on an error, counted unless it only means
/// "none").
fn received(
    batch: &RecvBatch<'_>,
    r: io::Result<usize>,
    meta: &mut [Meta; BATCH_MAX],
    st: &mut TunnelStats,
) -> usize {
    match r {
        Ok(n) => {
            for (i, m) in meta.iter_mut().enumerate().take(n) {
                if let Some(g) = batch.get(i) {
                    *m = g;
                }
            }
            if n > 0 {
                st.rx_calls += 1;
            }
            n
        }
        Err(e) => {
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                st.rx_errors += 1;
                st.rx_last_errno = e.raw_os_error().unwrap_or(-1);
            }
            0
        }
    }
}

/// Sends `msgs` (`(destination, header, body)`) on raw socket `fd`, one `sendmmsg`
/// per [`BATCH_MAX`], going on after a packet the kernel refuses (counted by errno);
/// a full send buffer drops the rest (counted). Returns how many the kernel took.
fn send_all(fd: RawFd, msgs: &[(SocketAddrV4, &[u8], &[u8])], st: &mut TunnelStats) -> usize {
    let mut i = 0;
    let mut sent = 0;
    let mut failed = false;
    while i < msgs.len() {
        let mut batch = SendBatch::new();
        for &(to, h, b) in &msgs[i..] {
            if !batch.push(Some(to), h, b) {
                break;
            }
        }
        st.tx_calls += 1;
        match batch.send(fd) {
            Ok(0) => {
                // nothing taken and no error: do not spin on it
                st.tx_errors += (msgs.len() - i) as u64;
                break;
            }
            Ok(k) => {
                for m in &msgs[i..i + k] {
                    st.tx_bytes += (m.1.len() + m.2.len() - OUTER_HEADER_LEN) as u64;
                }
                st.tx_packets += k as u64;
                sent += k;
                i += k;
            }
            Err(e) => {
                failed = true;
                let errno = e.raw_os_error().unwrap_or(-1);
                if errno == libc::EAGAIN {
                    // a full send buffer: the rest of the batch is dropped
                    count_send_error(st, errno, (msgs.len() - i) as u64);
                    break;
                }
                count_send_error(st, errno, 1);
                i += 1;
            }
        }
    }
    if failed {
        sys::drain_errors(fd);
    }
    sent
}

/// Counts `n` packets a send refused with `errno`, by its class.
fn count_send_error(st: &mut TunnelStats, errno: i32, n: u64) {
    st.tx_last_errno = errno;
    match errno {
        libc::EAGAIN => st.tx_full += n,
        libc::EMSGSIZE => st.tx_msgsize += n,
        libc::ENOBUFS => st.tx_nobufs += n,
        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN | libc::EHOSTDOWN => {
            st.tx_unreachable += n
        }
        _ => st.tx_errors += n,
    }
}

/// Opens `n` GSO send sockets on `endpoint`, each on its own port of 49152..=65535
/// when one is free (from a start that differs between processes), else one the
/// kernel chooses.
fn open_send_ports(endpoint: Ipv4Addr, n: usize, sndbuf: usize) -> io::Result<Vec<(OwnedFd, u16)>> {
    const RANGE: u32 = 1 << 14;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut next = seed % RANGE;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let from = next;
        let s = sys::udp_send_socket(
            endpoint,
            (0..256u32).map(|k| vxlan::SRC_PORT_MIN + ((from + k) % RANGE) as u16),
            sndbuf,
        )?;
        next = (u32::from(s.1.wrapping_sub(vxlan::SRC_PORT_MIN)) + 1) % RANGE;
        v.push(s);
    }
    Ok(v)
}

/// The datagrams of one [`Tunnel::recv_burst`].
#[derive(Debug)]
pub struct Received<'a> {
    tunnel: &'a Tunnel,
    next: usize,
}

impl Received<'_> {
    /// How many datagrams are left to take.
    pub fn remaining(&self) -> usize {
        self.tunnel.ngood - self.next
    }
}

impl<'a> Iterator for Received<'a> {
    type Item = Datagram<'a>;
    fn next(&mut self) -> Option<Datagram<'a>> {
        let t: &'a Tunnel = self.tunnel;
        if self.next >= t.ngood {
            return None;
        }
        let s = t.good[self.next];
        self.next += 1;
        let buf: &'a [u8] = if t.good_in_gro { &t.gro_buf } else { &t.rx };
        Some(Datagram {
            from: s.from,
            vni: s.vni,
            frame: buf.get(s.start..s.end).unwrap_or(&[]),
        })
    }
}

/// The MTU of the underlay path from `local` to `remote` as the kernel routes it: the
/// route's MTU (the outgoing interface's, unless the route or a learned path MTU says
/// less), at most 65535 (an IPv4 packet's limit: the kernel caps it there, so a
/// loopback of 65536 reads as 65535). Found by connecting a UDP socket (no packet is
/// sent). Guests behind a tunnel
/// to `remote` get this minus [`vpcswitch_wire::vxlan::OVERHEAD`].
pub fn route_mtu(local: Ipv4Addr, remote: Ipv4Addr) -> io::Result<usize> {
    let s = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
    s.connect(SocketAddrV4::new(remote, VXLAN_PORT))?;
    let mtu = vpcswitch_backend::sys::getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MTU)?;
    Ok(mtu.max(0) as usize)
}

/// The interface that holds `endpoint`, and its MTU (in the calling thread's network
/// namespace); `NotFound` when no interface has the address.
pub fn interface_mtu_of(endpoint: Ipv4Addr) -> io::Result<(String, usize)> {
    let name = sys::interface_with(endpoint)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface has address {endpoint}"),
        )
    })?;
    let mtu = sys::interface_mtu(&name)?;
    Ok((name, mtu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_that_cannot_work_is_refused_before_any_socket() {
        let mut c = TunnelConfig::new(Ipv4Addr::LOCALHOST, VXLAN_PORT);
        c.burst = 0;
        let e = Tunnel::open(c).unwrap_err();
        assert!(matches!(e, TunnelError::Config(_)), "{e}");
        c.burst = BATCH_MAX + 1;
        assert!(e.to_string().contains("burst 0"), "{e}");
        assert!(matches!(Tunnel::open(c), Err(TunnelError::Config(_))));
        c.burst = 32;
        c.max_frame = 13;
        assert!(matches!(Tunnel::open(c), Err(TunnelError::Config(_))));
        c.max_frame = 65_536;
        assert!(matches!(Tunnel::open(c), Err(TunnelError::Config(_))));
    }

    /// The endpoint's interface and the route's MTU agree on loopback (whatever its
    /// MTU is on this machine); a name or address that is not there is an error.
    #[test]
    fn mtu_of_the_endpoint_interface_and_of_the_route() {
        let (name, mtu) = interface_mtu_of(Ipv4Addr::LOCALHOST).expect("lo has 127.0.0.1");
        assert_eq!(name, "lo");
        assert!(mtu >= 1280, "{mtu}");
        // the route's MTU is the device's, capped at what an IPv4 packet can be (lo's
        // 65536 reads as 65535)
        assert_eq!(
            route_mtu(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST).expect("route"),
            mtu.min(65_535)
        );
        assert_eq!(
            interface_mtu_of(Ipv4Addr::new(192, 0, 2, 77))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert!(sys::interface_mtu("").is_err());
        assert!(sys::interface_mtu("a-name-too-long-for-linux").is_err());
        assert!(sys::interface_mtu("vtnosuchif0").is_err());
        // an endpoint that is not ours cannot be bound
        assert!(route_mtu(Ipv4Addr::new(192, 0, 2, 77), Ipv4Addr::LOCALHOST).is_err());
    }
}
