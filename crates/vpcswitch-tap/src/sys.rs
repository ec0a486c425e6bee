//! The TAP ioctls and raw I/O, and moving a thread into a network namespace. The only
//! place in this crate with `unsafe`.
//!
//! Every call goes through `vpcswitch_backend::sys::cvt`, which turns `-1` into the
//! `errno` as an `io::Error` (mio's `syscall!` pattern).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vpcswitch_backend::sys::{cvt, cvt_size, iovecs};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

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
        // no TUN_F_TSO6: the switch segments only TCPv4 (SPEC 2.5), so the guest's
        // kernel segments its IPv6 TCP itself (its checksums stay offloaded)
        let off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN;
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
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Writes one frame; `WouldBlock` when the device queue is full.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
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
    let iov = iovecs(hdr, body);
    // SAFETY: both iovecs point into live, exclusively borrowed buffers of the stated
    // lengths for the whole call.
    cvt_size(unsafe { libc::readv(fd, iov.as_ptr(), 2) })
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
    cvt_size(unsafe { libc::writev(fd, iov.as_ptr(), 2) })
}
