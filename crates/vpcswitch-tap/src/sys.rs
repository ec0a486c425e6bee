//! The TAP ioctls and raw I/O. The only place in this crate with `unsafe`.
//!
//! Every call goes through [`cvt`], which turns `-1` into the `errno` as an
//! `io::Error` (mio's `syscall!` pattern).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` and binds the descriptor to TAP `name` (created if it does not
/// exist), non-blocking. Returns the descriptor and the kernel's name for the device.
/// With `vnet_hdr`, every frame is preceded by a 10-byte virtio-net header and the
/// kernel may hand over checksum-partial and TSO super-frames (`TUNSETOFFLOAD`).
pub fn open_tap(name: &str, multi_queue: bool, vnet_hdr: bool) -> io::Result<(OwnedFd, String)> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} must be 1 to {IFNAME_MAX} bytes"),
        ));
    }
    let path = CString::new("/dev/net/tun").map_err(io::Error::other)?;
    // SAFETY: `path` is a valid NUL-terminated string; the flags are plain constants.
    let raw = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `raw` was just returned by open(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP
            | IFF_NO_PI
            | if multi_queue { IFF_MULTI_QUEUE } else { 0 }
            | if vnet_hdr { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its layout
    // (16-byte name, then the flags union member, padded to 40 bytes) and lives for
    // the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReqFlags) })?;
    if vnet_hdr {
        let off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes the offload bits by value.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, off as libc::c_ulong) })?;
    }
    let len = req
        .name
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(libc::IFNAMSIZ);
    let kname: String = req.name[..len].iter().map(|&c| c as u8 as char).collect();
    Ok((fd, kname))
}

/// Reads one frame; `WouldBlock` when none is waiting.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes one frame; `WouldBlock` when the device queue is full.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The interface index of `name`, or an error when no such interface exists.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// Moves the calling thread into the network namespace open as `ns` (a
/// `/run/netns/NAME` or `/proc/PID/ns/net` file): sockets it opens from then on, and
/// interface names it looks up, are that namespace's; other threads are not affected.
/// For tools and tests that serve many interfaces of one namespace from one process.
pub fn enter_netns(ns: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor, which `BorrowedFd` keeps open for the call.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(|_| ())
}

/// Runs `f` on the calling thread inside the network namespace at `path` (a
/// `/var/run/netns/NAME` or `/proc/PID/ns/net` file), then moves the thread back to the
/// namespace it was in, whatever `f` returned. Devices `f` creates and names it looks
/// up are that namespace's; other threads are not affected.
///
/// Errors: opening `path` (`NotFound` when there is no such namespace), a file that is
/// not a network namespace (`EINVAL` from setns), and failing to move back (the thread
/// is then left in the other namespace: run this on a thread of its own, which ends).
pub fn in_netns<T>(path: &std::path::Path, f: impl FnOnce() -> T) -> io::Result<T> {
    use std::os::unix::fs::OpenOptionsExt;
    let own = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/proc/thread-self/ns/net")?;
    // non-blocking: a configured path that is a FIFO must not hang the caller (a
    // reload on the main thread); setns then refuses it
    let target = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    use std::os::fd::AsFd;
    enter_netns(target.as_fd())?;
    let r = f();
    enter_netns(own.as_fd())?;
    Ok(r)
}

const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// Makes the TAP behind `fd` persistent (`on`: it stays when the last descriptor on it
/// closes, as `ip tuntap add` makes them) or not (it is deleted when the last one
/// closes).
pub fn set_persist(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its flag by value; `fd` is open for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST as _, libc::c_ulong::from(on)) })
        .map(|_| ())
}

/// Reads one frame as a header and a body; returns the total bytes read.
pub fn readv2(fd: RawFd, hdr: &mut [u8], body: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        },
    ];
    // SAFETY: both iovecs point into live, exclusively borrowed buffers of the stated
    // lengths for the whole call.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes one frame as a header and a body.
pub fn writev2(fd: RawFd, hdr: &[u8], body: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: both iovecs point into live buffers of the stated lengths; writev only
    // reads through them.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Most messages one [`send_batch`] sends.
pub const BATCH_MAX: usize = 64;

/// Sends up to [`BATCH_MAX`] datagrams or frames with one `sendmmsg(2)`: message `i` is
/// the `(header, body)` pair `i` of `msgs` (an empty header is left out). Returns how
/// many the kernel took; an error means the first one was refused (`WouldBlock`: the
/// queue is full).
pub fn send_batch<'a>(
    fd: RawFd,
    msgs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> io::Result<usize> {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [[empty; 2]; BATCH_MAX];
    // SAFETY: `mmsghdr` is plain old data; all-zero is a valid empty message.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for (h, b) in msgs.take(BATCH_MAX) {
        let v = &mut iov[n];
        let mut k = 0;
        for part in [h, b] {
            if !part.is_empty() {
                v[k] = libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                };
                k += 1;
            }
        }
        hdrs[n].msg_hdr.msg_iov = v.as_mut_ptr();
        hdrs[n].msg_hdr.msg_iovlen = k as _;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` entries of `hdrs` point at iovecs in `iov`, which point into
    // the caller's live buffers (`'a`) of the stated lengths; sendmmsg only reads them,
    // and both arrays outlive the call.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
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

/// Reads one frame from a packet socket as a header and a body, like [`readv2`], and
/// returns the bytes read and the VLAN tag the kernel took out of the frame, if any
/// (`(tpid, tci)`, from `PACKET_AUXDATA`): a tag a NIC or a veth "accelerated" is not in
/// the bytes, and a switch that must refuse tagged frames has to see it.
pub fn recv_packet(
    fd: RawFd,
    hdr: &mut [u8],
    body: &mut [u8],
) -> io::Result<(usize, Option<(u16, u16)>)> {
    let mut iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        },
    ];
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
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
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
    Ok((n as usize, tag))
}
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const ETH_P_ALL: u16 = 0x0003;

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live `T` of the size passed; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

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
    ptr: std::ptr::NonNull<u8>,
    block_size: usize,
    block_nr: usize,
}

// SAFETY: the mapping belongs to this value alone (shared with the kernel only through
// the block status words, accessed atomically); moving it to another thread is sound.
unsafe impl Send for RxRing {}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map_rx_ring`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.block_size * self.block_nr);
        }
    }
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
            std::slice::from_raw_parts(self.ptr.as_ptr().add(b * self.block_size), self.block_size)
        }
    }
    fn status(&self, b: usize) -> &std::sync::atomic::AtomicU32 {
        let b = b % self.block_nr;
        // SAFETY: `block_status` is the 4-aligned u32 at offset 8 of the block descriptor
        // at the start of block `b`, inside the mapping; the kernel accesses it atomically.
        unsafe {
            &*self
                .ptr
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
    // SAFETY: a fresh shared mapping of the socket's ring, of exactly the size set up
    // above; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr =
        std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
    Ok(RxRing {
        ptr,
        block_size: block_size as usize,
        block_nr: block_nr as usize,
    })
}
