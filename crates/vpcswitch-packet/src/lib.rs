//! The AF_PACKET backend: a switch port on an existing interface (a veth whose peer is
//! in the guest's namespace, a physical NIC), one socket per worker in a hash fanout
//! group, frames with a virtio-net header (`PACKET_VNET_HDR`) so offloads work as on a
//! TAP, sends bypassing the qdisc.
//!
//! # Contract
//! * [`PacketBackend::queues`] finds the interface (it must exist: AF_PACKET attaches,
//!   never creates), reads its MTU once (a frame longer than MTU + 14 is dropped by the
//!   runtime as `mtu_exceeded`: the kernel would refuse it), and opens one socket per
//!   worker, all in one fanout group of the port's own.
//! * Two ways to receive, one type each, chosen at open: [`PacketBackend::new`]
//!   receives one frame per `recvmsg` (lowest latency); [`PacketBackend::with_ring`]
//!   receives through a
//!   `TPACKET_V3` mmapped ring ([`RING`]: no system call per frame, more packets per
//!   second; but a partly filled block is handed over only after the kernel's retire
//!   timer, so a lone frame waits 1–4 ms: measured RTT 1.4 ms median, 9.5 ms p99 at 100
//!   pings/s, against 0.1 ms without the ring). Both send a burst with one
//!   `sendmmsg(2)` per [`MAX_BURST`] frames.
//! * A VLAN tag the kernel took out of a received frame is put back, so the pipeline
//!   sees the frame as it was sent and refuses it (SPEC 2.1).
//! * A socket whose interface went away (or down) reports the port down
//!   ([`PortQueue::is_down`]); the port is reopened when the interface is back.
//!
//! Buffers: a queue keeps none between calls (the ownership rule of
//! `vpcswitch_backend`): each read takes one large buffer (a super-frame may come) from
//! the worker's caches lent to the call, and gives it back at once when it finds
//! nothing; `tx_burst` gives every buffer back.
//!
//! `unsafe` lives only in [`sys`].

pub mod sys;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use vpcswitch_backend::sys::{if_index, interface_mtu, DeviceFd};
use vpcswitch_backend::{
    read_burst, Backend, BackendError, PacketBuf, PortQueue, TxResult, VnetHdr, WorkerBufs,
    WorkerMem, MAX_BURST,
};

/// Why an AF_PACKET port could not be opened: one variant per operation, each naming
/// the interface and carrying the OS error.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// No interface of that name (in the switch's network namespace).
    #[error("find interface {ifname} (AF_PACKET attaches to an existing interface): {source}")]
    FindInterface {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Opening, configuring or binding worker `socket`'s socket failed.
    #[error("open AF_PACKET socket {socket} on {ifname}{}: {source}", needs_cap(.source))]
    OpenSocket {
        /// the interface
        ifname: String,
        /// the worker whose socket it was
        socket: usize,
        /// the OS error
        source: io::Error,
    },
}

fn needs_cap(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EPERM) {
        " (needs CAP_NET_RAW)"
    } else {
        ""
    }
}

impl From<PacketError> for BackendError {
    fn from(e: PacketError) -> BackendError {
        BackendError::device(e)
    }
}

/// The receive ring of each AF_PACKET socket: 32 blocks of 128 KiB (4 MiB; a block holds
/// a 64 KiB super-frame), a partly filled block handed over after 1 ms.
pub const RING: sys::RingSpec = sys::RingSpec {
    block_size: 1 << 17,
    block_nr: 32,
    retire_ms: 1,
};

/// An existing interface as a switch port, through AF_PACKET sockets.
#[derive(Debug)]
pub struct PacketBackend {
    ifname: String,
    opened: bool,
    ring: bool,
    /// the interface's kernel counters, once opened (`None` if unreadable)
    link: Option<std::sync::Arc<vpcswitch_backend::sys::LinkStats>>,
    /// sockets opened, and the interface's MTU then
    queues: usize,
    mtu: Option<u32>,
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
            link: None,
            queues: 0,
            mtu: None,
        }
    }
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
            return Err(BackendError::opened_twice(&self.ifname, n));
        }
        let ifname = &self.ifname;
        let ifindex = if_index(ifname).map_err(|source| PacketError::FindInterface {
            ifname: ifname.clone(),
            source,
        })?;
        // what the interface takes (read once, at open)
        let max_frame = interface_mtu(ifname).map_or(usize::MAX, |m| m + 14);
        let ring = self.ring.then_some(RING);
        // a fanout group id of our own; one another process holds on another interface
        // makes the first join fail with EINVAL: try the next
        let mut group = next_fanout_group();
        let mut queues: Vec<Box<dyn PortQueue>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut r = sys::open_packet_with(ifindex, (n > 1).then_some(group), ring);
            for _ in 0..FANOUT_TRIES {
                match &r {
                    Err(e) if i == 0 && n > 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                        group = next_fanout_group();
                        r = sys::open_packet_with(ifindex, Some(group), ring);
                    }
                    _ => break,
                }
            }
            let (fd, rx_ring) = r.map_err(|source| PacketError::OpenSocket {
                ifname: ifname.clone(),
                socket: i,
                source,
            })?;
            queues.push(match rx_ring {
                Some(ring) => Box::new(PacketQueue {
                    dev: DeviceFd::new(fd),
                    max_frame,
                    rx: Ring::new(ring),
                    drops_read: std::time::Instant::now(),
                }),
                None => Box::new(PacketQueue {
                    dev: DeviceFd::new(fd),
                    max_frame,
                    rx: Recvmsg,
                    drops_read: std::time::Instant::now(),
                }),
            });
        }
        self.opened = true;
        self.queues = queues.len();
        self.mtu = (max_frame != usize::MAX).then(|| (max_frame - 14) as u32);
        self.link = vpcswitch_backend::sys::LinkStats::open(ifname)
            .ok()
            .map(std::sync::Arc::new);
        Ok(queues)
    }

    fn capabilities(&self) -> vpcswitch_backend::Capabilities {
        let mut c = vpcswitch_backend::Capabilities::new("af_packet", self.queues);
        c.interface = Some(self.ifname.clone());
        c.mtu = self.mtu;
        c.max_frame = self.mtu.map(|m| m as usize + 14);
        c.checksum_offload = true;
        c.segmentation_offload = true;
        c.mode = Some(if self.ring { "ring" } else { "recvmsg" }.into());
        c
    }

    fn device_stats(&self) -> Option<Box<dyn vpcswitch_backend::DeviceStats>> {
        self.link
            .clone()
            .map(|l| Box::new(l) as Box<dyn vpcswitch_backend::DeviceStats>)
    }
}

/// One worker's socket on the port: sending, and whether the interface is gone, are
/// the same for both ways of receiving (`R`: [`Recvmsg`] or [`Ring`]), chosen once at
/// open, so a burst costs no branch on it.
#[derive(Debug)]
struct PacketQueue<R> {
    dev: DeviceFd,
    /// the longest frame the interface takes without offload work
    /// (`PortQueue::max_frame`): its MTU + 14 (longer, the kernel refuses it with
    /// `EMSGSIZE`)
    max_frame: usize,
    rx: R,
    /// when the kernel's drop count was last read ([`DROPS_EVERY`])
    drops_read: std::time::Instant,
}

/// How often the kernel's count of frames it dropped for a full socket (or ring) is
/// read (`PACKET_STATISTICS`, one system call): at most this often, when a receive
/// burst drains the queue.
const DROPS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// How a queue receives: one job per type.
trait Receive: Send {
    /// Appends up to `b.max` frames read from socket `b.dev` to `b.out` (noting there an
    /// error that says the interface is gone). Returns how many.
    fn recv(&mut self, b: Burst<'_>) -> usize;
}

/// One `rx_burst`: the socket, the worker's caches lent to the call, where the frames
/// go and how many at most.
struct Burst<'a> {
    dev: &'a mut DeviceFd,
    bufs: &'a mut WorkerBufs,
    out: &'a mut Vec<PacketBuf>,
    max: usize,
}

/// One `recvmsg` per frame.
#[derive(Debug)]
struct Recvmsg;

impl Receive for Recvmsg {
    #[inline]
    fn recv(&mut self, b: Burst<'_>) -> usize {
        let fd = b.dev.raw();
        let (n, err) = read_burst(b.bufs, b.out, b.max, true, |hdr, data| {
            sys::recv_packet(fd, hdr, data).map(|(k, tag)| {
                let k = k.saturating_sub(VnetHdr::WIRE_LEN);
                match tag {
                    Some(t) => reinsert_vlan(data, k, t),
                    None => k,
                }
            })
        });
        if let Some(e) = err {
            b.dev.note(&e);
        }
        n
    }
}

/// The socket's `TPACKET_V3` ring, and the reader's place in it.
#[derive(Debug)]
struct Ring {
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

impl Ring {
    fn new(ring: sys::RxRing) -> Ring {
        Ring {
            ring,
            blk: 0,
            left: 0,
            off: 0,
            idle: 0,
        }
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn next_block(&mut self) {
        self.left = 0;
        self.ring.release(self.blk);
        self.blk = (self.blk + 1) % self.ring.blocks();
    }
}

impl Receive for Ring {
    /// Receives from the mmapped ring: no system call per frame. A frame too long for
    /// the buffer, and a block whose headers do not add up, are skipped.
    #[inline]
    fn recv(&mut self, burst: Burst<'_>) -> usize {
        let (bufs, out, max) = (burst.bufs, burst.out, burst.max);
        let mut n = 0;
        while n < max {
            if self.left == 0 {
                if !self.ring.ready(self.blk) {
                    break;
                }
                let (k, first) = self.ring.first(self.blk);
                if k == 0 {
                    self.next_block();
                    continue;
                }
                self.left = k;
                self.off = first;
            }
            let Some(mut b) = bufs.alloc_large() else {
                break;
            };
            let next = match self.ring.frame(self.blk, self.off) {
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
                        bufs.free(b);
                    }
                    next
                }
                None => {
                    bufs.free(b);
                    0
                }
            };
            self.left -= 1;
            self.off = next;
            if self.left == 0 || next == 0 {
                self.next_block();
            }
        }
        if n == 0 {
            // a ring never reports the interface going away: look at the socket's error
            // now and then (a receive on the socket's own, empty, queue returns it)
            self.idle += 1;
            if self.idle >= 4096 {
                self.idle = 0;
                let mut h = [0u8; VnetHdr::WIRE_LEN];
                let mut one = [0u8; 1];
                if let Err(e) = sys::recv_packet(burst.dev.raw(), &mut h, &mut one) {
                    burst.dev.note(&e);
                }
            }
        } else {
            self.idle = 0;
        }
        n
    }
}

impl<R: Receive> PortQueue for PacketQueue<R> {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.dev.is_down() {
            return 0;
        }
        self.rx.recv(Burst {
            dev: &mut self.dev,
            bufs,
            out,
            max,
        })
    }

    /// Frames the kernel dropped because this socket's buffer (or ring) was full:
    /// read at most every [`DROPS_EVERY`] (the count is the kernel's since the last
    /// read), so a port whose guest outruns the worker shows it (`rx_overrun`).
    fn take_rx_drops(&mut self) -> vpcswitch_backend::RxDrops {
        use vpcswitch_backend::RxDrops;
        if self.drops_read.elapsed() < DROPS_EVERY {
            return RxDrops::default();
        }
        self.drops_read = std::time::Instant::now();
        RxDrops {
            overrun: sys::take_drops(self.dev.raw()).map_or(0, u64::from),
            ..RxDrops::default()
        }
    }

    /// Sends the burst with one `sendmmsg` per [`MAX_BURST`] frames; every buffer goes
    /// back to `bufs`.
    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let fd = self.dev.raw();
        let mut r = TxResult::default();
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
                    self.dev.note(&e);
                    r.errors += 1;
                    i += 1;
                }
            }
        }
        for b in frames.drain(..) {
            bufs.free(b);
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.dev.poll_fd()
    }

    fn is_down(&self) -> bool {
        self.dev.is_down()
    }

    fn accepts_offload(&self) -> bool {
        true
    }

    fn max_frame(&self) -> usize {
        self.max_frame
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
