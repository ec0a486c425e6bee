//! The Linux TAP backend: one switch port is one TAP device, one queue per worker
//! (`IFF_MULTI_QUEUE`), non-blocking.
//!
//! # Contract
//! * [`TapBackend::new`] names the device. [`Backend::queues`] opens it: a missing
//!   device is created (and disappears when the switch closes it); an existing one,
//!   made by `ip tuntap add ... mode tap [multi_queue]` or by QEMU, is attached to.
//!   With one worker a single-queue device is accepted too.
//! * [`TapBackend::in_netns`] puts the device in a guest's network namespace: the
//!   opening thread (a short-lived one of its own) enters the namespace, creates or
//!   attaches the device there, and leaves; the device is made persistent
//!   (`TUNSETPERSIST`), so it outlives the switch (its carrier goes down while no
//!   switch holds it; the guest's interface keeps its name, MAC and addresses) and a
//!   restarted switch attaches to the same device. [`delete_tap_in`] deletes such a
//!   device when its port is removed.
//! * Frames are plain Ethernet (`IFF_NO_PI`). With offloads on (the default), the
//!   device also carries a virtio-net header (`IFF_VNET_HDR`) and accepts checksum and
//!   TSO offload (`TUNSETOFFLOAD`): a guest's 64 KB TCP segments cross the switch
//!   whole, in large buffers, and leave through another offload TAP unchanged; the
//!   runtime completes checksums in software, and counts super-frames it cannot
//!   deliver, for destinations without offload.
//! * `rx_burst` reads until the device is empty or the burst is full; `tx_burst`
//!   writes every buffer: a full device queue counts as `full`, any other error (the
//!   interface is down: `EIO`) as `errors`.
//!
//! [`PacketBackend`] is the AF_PACKET backend on the same queue code: a switch port on
//! an existing interface (a veth whose peer is in the guest's namespace, a physical
//! NIC), one socket per worker in a hash fanout group, frames with a virtio-net header
//! (`PACKET_VNET_HDR`) so offloads work as on a TAP, sends bypassing the qdisc.
//! It sends a burst with one `sendmmsg(2)`. It receives one frame per `recvmsg` by
//! default, or, with `ring = true`, through a `TPACKET_V3` mmapped ring ([`RING`]: no
//! system call per frame, more packets per second; but a partly filled block is handed
//! over only after the kernel's retire timer, so a lone frame waits 1–4 ms: measured
//! RTT 1.4 ms median, 9.5 ms p99 at 100 pings/s, against 0.1 ms without the ring).
//!
//! Buffers: a queue keeps none between calls (the ownership rule of
//! `vpcswitch_backend`). `rx_burst` takes one buffer at a time from the worker's caches
//! lent to the call (large ones with offloads, since a super-frame may come), and gives
//! it back at once when the read finds nothing; `tx_burst` gives every buffer back to
//! them. So an idle TAP holds no buffer, and a thousand TAPs on a worker need no more
//! buffers than one.
//!
//! `unsafe` lives only in [`sys`].

pub mod sys;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use vpcswitch_backend::{
    Backend, BackendError, PacketBuf, PortQueue, TxResult, VnetHdr, WorkerBufs, WorkerMem,
    MAX_BURST,
};

/// A TAP device as a switch port.
#[derive(Debug)]
pub struct TapBackend {
    ifname: String,
    offload: bool,
    opened: bool,
    /// the guest's network namespace: as configured (for messages), and its file
    netns: Option<(String, PathBuf)>,
}

impl TapBackend {
    /// The port's device; nothing is opened until the runtime asks for queues.
    pub fn new(ifname: &str) -> TapBackend {
        TapBackend::with_offload(ifname, true)
    }

    /// As [`TapBackend::new`], choosing whether to negotiate offloads.
    pub fn with_offload(ifname: &str, offload: bool) -> TapBackend {
        TapBackend {
            ifname: ifname.to_string(),
            offload,
            opened: false,
            netns: None,
        }
    }

    /// The device lives in the network namespace at `path` (`shown` names it in
    /// messages, e.g. the configured `web1` for `/var/run/netns/web1`): it is created or
    /// attached inside that namespace, and made persistent, so it outlives the switch
    /// and a restarted switch attaches to the same device.
    pub fn in_netns(mut self, shown: &str, path: impl Into<PathBuf>) -> TapBackend {
        self.netns = Some((shown.to_string(), path.into()));
        self
    }

    /// Opens `n` queues (at least one) on the device in the calling thread's namespace,
    /// making it persistent when it belongs to a guest's namespace.
    fn open_queues(&self, n: usize) -> Result<Vec<OwnedFd>, BackendError> {
        let io = |what: String, source: io::Error| BackendError::Io { what, source };
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let r = sys::open_tap(&self.ifname, true, self.offload);
            let fd = match r {
                Ok((fd, _)) => fd,
                // a single-queue device made by someone else: fine for one worker
                Err(e) if n == 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::open_tap(&self.ifname, false, self.offload)
                        .map_err(|e| io(format!("attach TAP {} (single queue)", self.ifname), e))?
                        .0
                }
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                        " (an existing device must be a multi_queue TAP when workers > 1)"
                    } else if e.raw_os_error() == Some(libc::EBUSY) {
                        " (the device is in use by another process)"
                    } else {
                        ""
                    };
                    return Err(io(format!("open TAP {} queue {i}{hint}", self.ifname), e));
                }
            };
            if i == 0 && self.netns.is_some() {
                sys::set_persist(fd.as_fd(), true)
                    .map_err(|e| io(format!("make TAP {} persistent", self.ifname), e))?;
            }
            fds.push(fd);
        }
        Ok(fds)
    }
}

/// Runs `f` inside the network namespace at `path` on a short-lived thread of its own
/// (`sys::in_netns`: in, `f`, back out): the namespace change can never leak to the
/// caller's thread, even if moving back failed.
fn on_netns_thread<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("vpcswitch-netns".into())
            .spawn_scoped(s, || sys::in_netns(path, f))?
            .join()
            .map_err(|_| io::Error::other("the thread entering the namespace panicked"))?
    })
}

/// Says what went wrong entering namespace `shown` (file `path`).
fn netns_error(shown: &str, path: &Path, e: io::Error) -> BackendError {
    let what = if e.kind() == io::ErrorKind::NotFound {
        if shown.starts_with('/') {
            format!("network namespace {shown} not found (the process that held it may have ended): fix or remove netns")
        } else {
            format!(
                "network namespace {shown} not found ({}): create it with ip netns add {shown}, or remove netns",
                path.display()
            )
        }
    } else if e.raw_os_error() == Some(libc::EINVAL) {
        format!("{} is not a network namespace", path.display())
    } else {
        format!("enter network namespace {shown} ({})", path.display())
    };
    BackendError::Io { what, source: e }
}

/// Deletes TAP `ifname` in the network namespace at `netns` if it is there: it is made
/// non-persistent, and goes when the last descriptor on it closes (at once, or when a
/// switch still holding it lets go). `Ok(false)`: no such device there. For a port with
/// `netns` that was removed from the configuration: its persistent device must not
/// stay behind.
pub fn delete_tap_in(ifname: &str, netns: &Path) -> io::Result<bool> {
    on_netns_thread(netns, || {
        if sys::if_index(ifname).is_err() {
            return Ok(false);
        }
        let fd = match sys::open_tap(ifname, true, false) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                sys::open_tap(ifname, false, false)?.0
            }
            r => r?.0,
        };
        sys::set_persist(fd.as_fd(), false)?;
        Ok(true)
    })?
}

/// True when interface `ifname` exists in the network namespace at `netns`.
pub fn exists_in(ifname: &str, netns: &Path) -> io::Result<bool> {
    on_netns_thread(netns, || sys::if_index(ifname).is_ok())
}

impl Backend for TapBackend {
    fn describe(&self) -> String {
        format!(
            "tap {}{}{}",
            self.ifname,
            match &self.netns {
                Some((ns, _)) => format!(" netns {ns}"),
                None => String::new(),
            },
            if self.offload { " +offload" } else { "" }
        )
    }

    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let n = workers.len();
        if self.opened {
            return Err(BackendError::Queues {
                name: self.ifname.clone(),
                have: 0,
                want: n,
            });
        }
        let fds = match &self.netns {
            None => self.open_queues(n)?,
            Some((shown, path)) => {
                let me = &*self;
                on_netns_thread(path, || me.open_queues(n))
                    .map_err(|e| netns_error(shown, path, e))??
            }
        };
        self.opened = true;
        Ok(fds
            .into_iter()
            .map(|fd| {
                Box::new(TapQueue {
                    max_frame: usize::MAX,
                    fd,
                    offload: self.offload,
                    rx_errors: 0,
                    down: false,
                    packet: false,
                    ring: None,
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
}

struct TapQueue {
    fd: OwnedFd,
    /// a virtio-net header on every frame: receive into large buffers (a super-frame
    /// may come)
    offload: bool,
    rx_errors: u64,
    down: bool,
    /// an AF_PACKET socket: VLAN tags the kernel took out come back as metadata
    packet: bool,
    /// an AF_PACKET socket's `TPACKET_V3` receive ring, and where we are in it
    ring: Option<RingPos>,
    /// the longest frame the device takes without offload work (`PortQueue::max_frame`):
    /// an AF_PACKET interface's MTU + 14 (longer, the kernel refuses it with
    /// `EMSGSIZE`); a TAP has no limit the switch knows of
    max_frame: usize,
}

/// A receive ring and the reader's place in it.
#[derive(Debug)]
struct RingPos {
    ring: sys::RxRing,
    /// the block being read (or to be read next)
    blk: usize,
    /// frames left in it; 0 when no block is held
    left: u32,
    /// offset of the next frame in it
    off: usize,
    /// polls that found nothing since the socket's error was last looked at
    idle: u32,
}

/// The receive ring of each AF_PACKET socket: 32 blocks of 128 KiB (4 MiB; a block holds
/// a 64 KiB super-frame), a partly filled block handed over after 1 ms.
pub const RING: sys::RingSpec = sys::RingSpec {
    block_size: 1 << 17,
    block_nr: 32,
    retire_ms: 1,
};

impl TapQueue {
    /// Receives from the mmapped ring: no system call per frame. Frames too long for
    /// the buffer, and a block whose headers do not add up, are counted and skipped.
    fn rx_ring(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let Some(p) = self.ring.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while n < max {
            if p.left == 0 {
                if !p.ring.ready(p.blk) {
                    break;
                }
                let (k, first) = p.ring.first(p.blk);
                if k == 0 {
                    p.ring.release(p.blk);
                    p.blk = (p.blk + 1) % p.ring.blocks();
                    continue;
                }
                p.left = k;
                p.off = first;
            }
            let Some(mut b) = bufs.alloc_large() else {
                break;
            };
            let next = match p.ring.frame(p.blk, p.off) {
                Some((f, next)) => {
                    let (data, len) = b.parts_mut();
                    if f.data.len() <= data.len() {
                        data[..f.data.len()].copy_from_slice(f.data);
                        *len = match f.vlan {
                            Some(t) => reinsert_vlan(data, f.data.len(), t),
                            None => f.data.len(),
                        };
                        b.vnet = VnetHdr::from_wire(&f.vnet);
                        out.push(b);
                        n += 1;
                    } else {
                        self.rx_errors += 1;
                        bufs.free(b);
                    }
                    next
                }
                None => {
                    self.rx_errors += 1;
                    bufs.free(b);
                    0
                }
            };
            p.left -= 1;
            p.off = next;
            if p.left == 0 || next == 0 {
                p.left = 0;
                p.ring.release(p.blk);
                p.blk = (p.blk + 1) % p.ring.blocks();
            }
        }
        if n == 0 {
            // a ring never reports the interface going away: look at the socket's error
            // now and then (a receive on the socket's own, empty, queue returns it)
            p.idle += 1;
            if p.idle >= 4096 {
                p.idle = 0;
                let mut h = [0u8; VnetHdr::WIRE_LEN];
                let mut one = [0u8; 1];
                if let Err(e) = sys::recv_packet(self.fd.as_raw_fd(), &mut h, &mut one) {
                    self.down |= gone(&e);
                }
            }
        } else {
            p.idle = 0;
        }
        n
    }
}

/// Puts a VLAN tag the kernel took out of a received frame back in (after the MACs), so
/// the pipeline sees the frame as it was sent and refuses it (SPEC 2.1). `body` holds
/// `len` bytes; returns the new length. When the buffer has no room for the four bytes
/// (a frame that fills it), the frame's last four bytes give way: the tag must be seen,
/// or a tagged frame would pass as untagged; the frame is dropped for its tag anyway.
fn reinsert_vlan(body: &mut [u8], len: usize, (tpid, tci): (u16, u16)) -> usize {
    let len = len.min(body.len());
    if len < 12 {
        return len;
    }
    let end = (len + 4).min(body.len());
    body.copy_within(12..end - 4, 16);
    body[12..14].copy_from_slice(&tpid.to_be_bytes());
    body[14..16].copy_from_slice(&tci.to_be_bytes());
    end
}

/// Group ids tried before an AF_PACKET port gives up joining a fanout group.
const FANOUT_TRIES: usize = 16;

/// A fanout group id for one AF_PACKET port: every call in a process returns a
/// different id (until 65 536 have been handed out), from a start derived from the
/// process id so two switches on one host rarely meet. (Ids derived from the interface
/// index collided for interfaces whose indexes differ by 512: the second port then
/// joined the first one's group or failed to open.)
fn next_fanout_group() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(0x9e37_79b1) >> 16;
    (base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) & 0xffff) as u16
}

/// The device was deleted under us: `EBADFD` from a detached TAP descriptor; `ENETDOWN`,
/// `ENXIO` or `ENODEV` from a packet socket whose interface went away (or down: the port
/// is then reopened when the interface is back). Also used by the AF_XDP backend, whose
/// sockets report a vanished interface the same way.
pub fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

/// An existing interface as a switch port, through AF_PACKET sockets.
#[derive(Debug)]
pub struct PacketBackend {
    ifname: String,
    opened: bool,
    ring: bool,
}

impl PacketBackend {
    /// The port's interface, read with one `recvmsg` per frame (lowest latency);
    /// nothing is opened until the runtime asks for queues.
    pub fn new(ifname: &str) -> PacketBackend {
        PacketBackend::with_ring(ifname, false)
    }

    /// As [`PacketBackend::new`], choosing to receive through the `TPACKET_V3` ring
    /// ([`RING`]): no system call per frame, but a frame can wait for its block's
    /// retire timer (1 ms, rounded up to the kernel's tick) when traffic is light.
    pub fn with_ring(ifname: &str, ring: bool) -> PacketBackend {
        PacketBackend {
            ifname: ifname.to_string(),
            opened: false,
            ring,
        }
    }
}

impl Backend for PacketBackend {
    fn describe(&self) -> String {
        format!(
            "af_packet {} +offload{}",
            self.ifname,
            if self.ring { " +ring" } else { "" }
        )
    }

    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let n = workers.len();
        if self.opened {
            return Err(BackendError::Queues {
                name: self.ifname.clone(),
                have: 0,
                want: n,
            });
        }
        let io = |what: String, source: io::Error| BackendError::Io { what, source };
        let ifindex = sys::if_index(&self.ifname).map_err(|e| {
            io(
                format!(
                    "find interface {} (AF_PACKET attaches to an existing interface)",
                    self.ifname
                ),
                e,
            )
        })?;
        // what the interface takes (read once, at open)
        let max_frame = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", self.ifname))
            .ok()
            .and_then(|m| m.trim().parse::<usize>().ok())
            .map_or(usize::MAX, |m| m + 14);
        // a fanout group id of our own; one another process holds on another interface
        // makes the first join fail with EINVAL: try the next
        let mut group = next_fanout_group();
        let mut queues: Vec<Box<dyn PortQueue>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut r =
                sys::open_packet_with(ifindex, (n > 1).then_some(group), self.ring.then_some(RING));
            for _ in 0..FANOUT_TRIES {
                match &r {
                    Err(e) if i == 0 && n > 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                        group = next_fanout_group();
                        r = sys::open_packet_with(ifindex, Some(group), self.ring.then_some(RING));
                    }
                    _ => break,
                }
            }
            let (fd, ring) = r.map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EPERM) {
                    " (needs CAP_NET_RAW)"
                } else {
                    ""
                };
                io(
                    format!("open AF_PACKET socket {i} on {}{hint}", self.ifname),
                    e,
                )
            })?;
            queues.push(Box::new(TapQueue {
                max_frame,
                fd,
                offload: true,
                rx_errors: 0,
                down: false,
                packet: true,
                ring: ring.map(|ring| RingPos {
                    ring,
                    blk: 0,
                    left: 0,
                    off: 0,
                    idle: 0,
                }),
            }));
        }
        self.opened = true;
        Ok(queues)
    }
}

impl PortQueue for TapQueue {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.down {
            return 0;
        }
        if self.ring.is_some() {
            return self.rx_ring(bufs, out, max);
        }
        let fd = self.fd.as_raw_fd();
        let mut n = 0;
        while n < max {
            let b = if self.offload {
                bufs.alloc_large()
            } else {
                bufs.alloc()
            };
            let Some(mut b) = b else {
                break;
            };
            let mut hdr = [0u8; VnetHdr::WIRE_LEN];
            let (data, len) = b.parts_mut();
            let r = if self.packet {
                sys::recv_packet(fd, &mut hdr, data).map(|(k, tag)| {
                    let k = k.saturating_sub(VnetHdr::WIRE_LEN);
                    match tag {
                        Some(t) => reinsert_vlan(data, k, t),
                        None => k,
                    }
                })
            } else if self.offload {
                sys::readv2(fd, &mut hdr, data).map(|k| k.saturating_sub(VnetHdr::WIRE_LEN))
            } else {
                sys::read(fd, data)
            };
            match r {
                Ok(k) => {
                    *len = k;
                    b.vnet = VnetHdr::from_wire(&hdr);
                    out.push(b);
                    n += 1;
                }
                Err(e) => {
                    // nothing read: the buffer goes back to the worker now
                    bufs.free(b);
                    if e.kind() != io::ErrorKind::WouldBlock
                        && e.kind() != io::ErrorKind::Interrupted
                    {
                        self.rx_errors += 1;
                        self.down |= gone(&e);
                    }
                    break;
                }
            }
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let fd = self.fd.as_raw_fd();
        let mut r = TxResult::default();
        if self.packet {
            // a packet socket takes the burst in one sendmmsg per MAX_BURST frames
            let mut i = 0;
            while i < frames.len() {
                let end = (i + MAX_BURST).min(frames.len());
                let mut hdr = [[0u8; VnetHdr::WIRE_LEN]; MAX_BURST];
                for (h, b) in hdr.iter_mut().zip(&frames[i..end]) {
                    *h = b.offload.vnet_hdr(b.frame()).to_wire();
                }
                let msgs = hdr
                    .iter()
                    .zip(&frames[i..end])
                    .map(|(h, b)| (&h[..], b.frame()));
                match sys::send_batch(fd, msgs) {
                    Ok(k) if k > 0 => {
                        r.sent += k;
                        i += k;
                    }
                    Ok(_) => {
                        r.full += frames.len() - i;
                        i = frames.len();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        r.full += frames.len() - i;
                        i = frames.len();
                    }
                    Err(e) => {
                        // the first frame was refused: count it, go on with the rest
                        self.down |= gone(&e);
                        r.errors += 1;
                        i += 1;
                    }
                }
            }
            for b in frames.drain(..) {
                bufs.free(b);
            }
            return r;
        }
        for b in frames.drain(..) {
            let w = if self.offload {
                sys::writev2(fd, &b.offload.vnet_hdr(b.frame()).to_wire(), b.frame())
            } else {
                sys::write(fd, b.frame())
            };
            match w {
                Ok(_) => r.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.full += 1,
                Err(e) => {
                    self.down |= gone(&e);
                    r.errors += 1
                }
            }
            bufs.free(b);
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        // a deleted device's descriptor polls as always ready: do not spin on it
        (!self.down).then(|| self.fd.as_raw_fd())
    }

    fn is_down(&self) -> bool {
        self.down
    }

    fn accepts_offload(&self) -> bool {
        self.offload
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every AF_PACKET port of a process gets its own fanout group, whatever its
    /// interface index (ids once collided for indexes 512 apart).
    #[test]
    fn fanout_groups_are_unique_per_process() {
        let ids: std::collections::HashSet<u16> = (0..4096).map(|_| next_fanout_group()).collect();
        assert_eq!(ids.len(), 4096);
    }

    #[test]
    fn a_vlan_tag_taken_out_by_the_kernel_is_put_back() {
        let mut b = [0u8; 64];
        let frame: Vec<u8> = (0..20u8).collect();
        b[..20].copy_from_slice(&frame);
        let n = reinsert_vlan(&mut b, 20, (0x8100, 7));
        assert_eq!(n, 24);
        assert_eq!(&b[..12], &frame[..12]);
        assert_eq!(&b[12..16], &[0x81, 0x00, 0, 7]);
        assert_eq!(&b[16..24], &frame[12..20]);
        // no room: the tag still shows (SPEC 2.1), the tail gives way
        let mut c = [0u8; 20];
        c.copy_from_slice(&frame);
        assert_eq!(reinsert_vlan(&mut c, 20, (0x8100, 7)), 20);
        assert_eq!(&c[12..16], &[0x81, 0x00, 0, 7]);
        assert_eq!(&c[16..20], &frame[12..16]);
    }
}
