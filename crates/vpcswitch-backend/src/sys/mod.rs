//! The Linux floor the backends share: system-call error conversion ([`cvt`]),
//! socket options ([`setsockopt`], [`getsockopt_int`]), batches of messages for
//! `sendmmsg`/`recvmmsg` ([`SendBatch`], [`RecvBatch`]), memory mappings ([`Mmap`], and the buffer [`Region`] carved from one), interface
//! lookups ([`if_index`], [`interface_mtu`], [`interface_gone`]), an interface's kernel
//! counters ([`LinkStats`], netlink), and waiting for
//! device readiness ([`Epoll`], [`EventFd`]).
//!
//! The only `unsafe` in this crate; each backend crate's own `sys` module holds its
//! device's system calls and builds on these.
#![allow(unsafe_code)]

mod link;
mod mmap;
mod mmsg;
mod poll;

pub use link::{LinkInfo, LinkStats};
pub use mmap::{Mmap, Region, RegionBuf};
pub use mmsg::{sockaddr_in, Received, RecvBatch, SendBatch, MMSG_MAX, UDP_GRO, UDP_SEGMENT};
pub use poll::{Epoll, EventFd, EPOLL_EVENTS};

use std::ffi::CString;
use std::io;

/// Turns a system call's `-1` into the `errno` as an `io::Error` (mio's `syscall!`
/// pattern); any other value is the call's result.
#[inline]
pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// [`cvt`] for the calls that return a byte count (`read`, `sendto`, `syscall`, ...).
#[inline]
pub fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sets socket option `name` at `level` on `fd` to `v` (`setsockopt(2)`: the kernel
/// reads `size_of::<T>()` bytes of `v`).
pub fn setsockopt<T>(
    fd: impl std::os::fd::AsFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `v` points to a live `T` of the size passed; the kernel only reads it, and
    // `fd` is borrowed open for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Reads an integer socket option (`getsockopt(2)`: `SO_RCVBUF`, `IP_MTU`, ...).
pub fn getsockopt_int(
    fd: impl std::os::fd::AsFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live for the call and `len` says how many bytes `v`
    // has; the kernel writes at most that many and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// The interface index of `name`, or an error when no such interface exists (in the
/// calling thread's network namespace).
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

/// The two-part scatter list of a frame read as a header and a body (`readv`,
/// `recvmsg`): the `iovec`s point into `hdr` and `body`, which must stay borrowed while
/// the kernel writes through them.
#[inline]
pub fn iovecs(hdr: &mut [u8], body: &mut [u8]) -> [libc::iovec; 2] {
    [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        },
    ]
}

/// The MTU of interface `ifname` (sysfs).
pub fn interface_mtu(ifname: &str) -> io::Result<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))?
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// True when `e` says the device was deleted under us: `EBADFD` from a detached TAP
/// descriptor; `ENETDOWN`, `ENXIO` or `ENODEV` from a packet or AF_XDP socket whose
/// interface went away (or down: the port is then reopened when the interface is back).
pub fn interface_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

/// A device's descriptor (a TAP queue, a packet socket), and whether the device is gone:
/// what a queue on it polls, and where it notes the errors that say so.
#[derive(Debug)]
pub struct DeviceFd {
    fd: std::os::fd::OwnedFd,
    down: bool,
}

impl DeviceFd {
    /// A descriptor on a device that is there.
    pub fn new(fd: std::os::fd::OwnedFd) -> DeviceFd {
        DeviceFd { fd, down: false }
    }
    /// The descriptor, for system calls.
    #[inline]
    pub fn raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
    /// True once an error said the device is gone ([`interface_gone`]).
    #[inline]
    pub fn is_down(&self) -> bool {
        self.down
    }
    /// Notes an error of a call on the descriptor: the device is down from now on if it
    /// says the device is gone.
    #[inline]
    pub fn note(&mut self, e: &io::Error) {
        self.down |= interface_gone(e);
    }
    /// The descriptor to wait on (`PortQueue::poll_fd`): none once the device is gone,
    /// whose descriptor polls as always ready (a worker must not spin on it).
    #[inline]
    pub fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        (!self.down).then(|| self.raw())
    }
}

/// Sets the process's file mode creation mask to `mask` and returns the previous one
/// (`umask(2)`). The mask is process-wide: while it is set, a file any thread creates
/// gets at most the mask's permissions. Set a mask that only removes more bits (e.g.
/// 0o177 around creating a private socket) and restore it right after: other threads
/// can then only create files more private than they asked for, never less.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask(2) takes an integer by value, cannot fail and touches no memory.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    old as u32
}

/// `CLOCK_MONOTONIC` now, in microseconds: the clock systemd's notification protocol
/// names (`MONOTONIC_USEC=` of a reload, sd_notify(3)); `std::time::Instant` reads the
/// same clock but does not show its value.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration; with
    // CLOCK_MONOTONIC clock_gettime(2) cannot fail on Linux (it writes `ts` or nothing).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}
