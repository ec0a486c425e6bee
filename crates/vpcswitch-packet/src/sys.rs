//! AF_PACKET sockets: opening one on an interface (virtio-net headers, fanout, qdisc
//! bypass), receiving with the VLAN tag the kernel took out, sending a burst with one
//! `sendmmsg(2)`, and the `TPACKET_V3` receive ring. The only place in this crate with
//! `unsafe`; every call goes through `vpcswitch_backend::sys::cvt`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vpcswitch_backend::sys::{cvt, cvt_size, iovecs, setsockopt, Mmap, SendBatch};

/// Most messages one [`send_batch`] sends.
pub const BATCH_MAX: usize = vpcswitch_backend::sys::MMSG_MAX;

/// Sends up to [`BATCH_MAX`] datagrams or frames with one `sendmmsg(2)`: message `i` is
/// the `(header, body)` pair `i` of `msgs` (an empty header is left out). Returns how
/// many the kernel took; an error means the first one was refused (`WouldBlock`: the
/// queue is full).
pub fn send_batch<'a>(
    fd: RawFd,
    msgs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> io::Result<usize> {
    let mut batch = SendBatch::new();
    for (h, b) in msgs.take(BATCH_MAX) {
        batch.push(None, h, b);
    }
    batch.send(fd)
}

// AF_PACKET (linux/if_packet.h)
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: libc::c_int = 0;
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: libc::c_int = 0x4000;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;

/// `struct tpacket_auxdata`
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Reads one frame from a packet socket as a header and a body (`readv`), and
/// returns the bytes read and the VLAN tag the kernel took out of the frame, if any
/// (`(tpid, tci)`, from `PACKET_AUXDATA`): a tag a NIC or a veth "accelerated" is not in
/// the bytes, and a switch that must refuse tagged frames has to see it.
pub fn recv_packet(
    fd: RawFd,
    hdr: &mut [u8],
    body: &mut [u8],
) -> io::Result<(usize, Option<(u16, u16)>)> {
    let mut iov = iovecs(hdr, body);
    // room for one cmsg carrying tpacket_auxdata, 8-byte aligned
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at the two live iovecs and the control buffer above, all
    // exclusively borrowed for the call, with their true lengths.
    let n = cvt_size(unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) })?;
    let mut tag = None;
    // SAFETY: the kernel filled `msg.msg_control` with well-formed cmsgs within
    // `msg_controllen`; CMSG_FIRSTHDR/NXTHDR/DATA only walk inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET
                && (*c).cmsg_type == PACKET_AUXDATA
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(std::mem::size_of::<TpacketAuxdata>() as u32) as usize
            {
                let aux: TpacketAuxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>());
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, tag))
}
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const ETH_P_ALL: u16 = 0x0003;

/// Opens a non-blocking AF_PACKET socket on interface `ifindex`: raw Ethernet frames,
/// each preceded by a 10-byte virtio-net header (`PACKET_VNET_HDR`: checksum-partial and
/// GSO super-frames cross whole, as on a vnet-header TAP), sends bypassing the qdisc,
/// its own sends not received back, the interface promiscuous while the socket lives.
/// With `fanout`, the socket joins hash fanout group `fanout`: the kernel spreads the
/// interface's frames over the group's sockets by flow, one socket per worker.
pub fn open_packet(ifindex: u32, fanout: Option<u16>) -> io::Result<OwnedFd> {
    open_packet_with(ifindex, fanout, None).map(|(fd, _)| fd)
}

/// Block size and count, and retire timeout (ms), of a `TPACKET_V3` receive ring.
#[derive(Debug, Clone, Copy)]
pub struct RingSpec {
    /// bytes per block (a power of two, a multiple of the page size, room for a 64 KiB
    /// super-frame)
    pub block_size: u32,
    /// blocks
    pub block_nr: u32,
    /// how long a partly filled block waits before it is handed over
    pub retire_ms: u32,
}

/// The receive buffer asked for each packet socket, bytes.
pub const RCVBUF: usize = 4 << 20;

/// The frames the kernel dropped for socket `fd` (its buffer or ring full) since the
/// last call (`PACKET_STATISTICS`, which resets the counts).
pub fn take_drops(fd: RawFd) -> io::Result<u32> {
    // struct tpacket_stats: tp_packets, tp_drops (the kernel copies at most the size
    // given, also for a TPACKET_V3 socket's longer struct)
    let mut st = [0u32; 2];
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: `st` and `len` are live for the call and `len` says how many bytes `st`
    // has; the kernel writes at most that many and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(st[1])
}

/// [`open_packet`], with a `TPACKET_V3` receive ring mapped when `ring` is given (set up
/// before the socket is bound, so no frame is left in the socket's own queue).
pub fn open_packet_with(
    ifindex: u32,
    fanout: Option<u16>,
    ring: Option<RingSpec>,
) -> io::Result<(OwnedFd, Option<RxRing>)> {
    let proto = ETH_P_ALL.to_be();
    // Protocol 0: the socket receives nothing until `bind` names the protocol and the
    // interface. Created with ETH_P_ALL it would see every interface's frames until
    // then (the first burst could hand the port another interface's frames), and bind
    // and ring setup would each unhook and rehook it, waiting for an RCU grace period
    // (`synchronize_net`) every time: 30 ms per socket at start here.
    // SAFETY: plain constants; the result is checked.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `raw` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    setsockopt(&fd, SOL_PACKET, PACKET_VNET_HDR, &one)?;
    setsockopt(&fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one)?;
    setsockopt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one)?;
    setsockopt(&fd, SOL_PACKET, PACKET_AUXDATA, &one)?;
    // The socket's queue holds the frames between two polls of the worker: the
    // default (~208 KiB) is three 64 KiB offload super-frames, so a TCP guest with TSO
    // overran it (10% of its frames lost at 3.7 Gbit/s through one worker, and the
    // retransmissions). Raised as root (SO_RCVBUFFORCE), else as far as rmem_max lets.
    let rcvbuf = RCVBUF as libc::c_int;
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
    }
    let rx_ring = match ring {
        Some(r) => {
            setsockopt(&fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
            Some(map_rx_ring(&fd, r.block_size, r.block_nr, r.retire_ms)?)
        }
        None => None,
    };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as libc::c_int,
        mr_type: PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(&fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
    if let Some(group) = fanout {
        // the group's hook, not the socket's, decides what is delivered: it must also
        // ignore the host's own sends on the interface
        let flags = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let v: libc::c_int = libc::c_int::from(group) | (flags << 16);
        setsockopt(&fd, SOL_PACKET, PACKET_FANOUT, &v)?;
    }
    Ok((fd, rx_ring))
}

// TPACKET_V3 receive ring (linux/if_packet.h)
const PACKET_VERSION: libc::c_int = 10;
const PACKET_RX_RING: libc::c_int = 5;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;

/// `struct tpacket_req3`
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// A `TPACKET_V3` receive ring mapped from a packet socket: `block_nr` blocks of
/// `block_size` bytes that the kernel fills with frames and hands over whole (when full,
/// or after the retire timeout). Every offset read from the kernel's headers is checked
/// against the block before use.
#[derive(Debug)]
pub struct RxRing {
    map: Mmap,
    block_size: usize,
    block_nr: usize,
}

/// One frame in a block of an [`RxRing`].
#[derive(Debug)]
pub struct RingFrame<'a> {
    /// the frame's bytes (`tp_snaplen` of them)
    pub data: &'a [u8],
    /// the virtio-net header in front of it
    pub vnet: [u8; 10],
    /// the VLAN tag the kernel took out, as `(tpid, tci)`
    pub vlan: Option<(u16, u16)>,
}

impl RxRing {
    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.block_nr
    }
    fn block(&self, b: usize) -> &[u8] {
        let b = b % self.block_nr;
        // SAFETY: block `b` lies inside the mapping (b < block_nr). The kernel does not
        // write a block while its status says it is the user's, and this view is only
        // read while it does (`ready` first, `release` after).
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(b * self.block_size), self.block_size)
        }
    }
    fn status(&self, b: usize) -> &std::sync::atomic::AtomicU32 {
        let b = b % self.block_nr;
        // SAFETY: `block_status` is the 4-aligned u32 at offset 8 of the block descriptor
        // at the start of block `b`, inside the mapping; the kernel accesses it atomically.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(b * self.block_size + 8)
                .cast::<std::sync::atomic::AtomicU32>()
        }
    }
    /// True when block `b` is ours to read (acquire: its frames are visible).
    pub fn ready(&self, b: usize) -> bool {
        self.status(b).load(std::sync::atomic::Ordering::Acquire) & TP_STATUS_USER != 0
    }
    /// Gives block `b` back to the kernel.
    pub fn release(&self, b: usize) {
        self.status(b)
            .store(TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release)
    }
    /// The number of frames in ready block `b` and the offset of the first.
    pub fn first(&self, b: usize) -> (u32, usize) {
        let blk = self.block(b);
        let u = |o: usize| u32::from_ne_bytes([blk[o], blk[o + 1], blk[o + 2], blk[o + 3]]);
        (u(12), u(16) as usize)
    }
    /// The frame at `off` in ready block `b`, and the offset of the next one (0: last);
    /// `None` when the kernel's header does not fit the block.
    pub fn frame(&self, b: usize, off: usize) -> Option<(RingFrame<'_>, usize)> {
        let blk = self.block(b);
        let h = blk.get(off..off.checked_add(40)?)?;
        let u32_at = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u16_at = |o: usize| u16::from_ne_bytes([h[o], h[o + 1]]);
        let next = u32_at(0) as usize;
        let snaplen = u32_at(12) as usize;
        let status = u32_at(20);
        let mac = off + usize::from(u16_at(24));
        let data = blk.get(mac..mac.checked_add(snaplen)?)?;
        let vnet: [u8; 10] = blk.get(mac.checked_sub(10)?..mac)?.try_into().ok()?;
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(36)
            } else {
                0x8100
            };
            (tpid, u32_at(32) as u16)
        });
        let next = if next == 0 { 0 } else { off.checked_add(next)? };
        Some((RingFrame { data, vnet, vlan }, next))
    }
}

/// Sets up a `TPACKET_V3` receive ring of `block_nr` blocks of `block_size` bytes on a
/// packet socket (version set, not yet bound) and maps it.
/// `retire_ms`: how long a partly filled block waits before it is handed over.
fn map_rx_ring(fd: &OwnedFd, block_size: u32, block_nr: u32, retire_ms: u32) -> io::Result<RxRing> {
    let frame_size = 2048;
    let req = TpacketReq3 {
        block_size,
        block_nr,
        frame_size,
        frame_nr: block_size / frame_size * block_nr,
        retire_blk_tov: retire_ms,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)?;
    let len = block_size as usize * block_nr as usize;
    let map = Mmap::shared(fd.as_raw_fd(), len, 0)?;
    Ok(RxRing {
        map,
        block_size: block_size as usize,
        block_nr: block_nr as usize,
    })
}
