//! The tunnel's system calls: the receiving UDP socket (`SO_REUSEPORT`), the sending
//! raw IPv4 socket (`IP_HDRINCL`), `recvmmsg(2)` and `sendmmsg(2)` over scatter lists
//! the caller owns, draining the raw socket's error queue, and the MTU of an interface
//! by name or address. The only place in this crate with `unsafe`; every call goes
//! through `vpcswitch_backend::sys::cvt`.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use vpcswitch_backend::sys::{cvt, cvt_size, setsockopt};

/// Most datagrams one [`recv_batch`] or [`send_batch`] moves.
pub const BATCH_MAX: usize = 64;

/// What `recvmmsg` said of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// bytes the datagram had (at most what the slot holds, unless `truncated`)
    pub len: usize,
    /// who sent it
    pub from: SocketAddrV4,
    /// longer than the slot: the rest was cut off (`MSG_TRUNC`)
    pub truncated: bool,
}

impl Default for RecvMeta {
    fn default() -> RecvMeta {
        RecvMeta {
            len: 0,
            from: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            truncated: false,
        }
    }
}

fn socket(ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain constants; the result is checked.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto,
        )
    })?;
    // SAFETY: `raw` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sets a socket buffer to `bytes`: first past `rmem_max`/`wmem_max` with the `*FORCE`
/// option (needs `CAP_NET_ADMIN`), else as far as the limit lets. Best effort: the
/// size a caller gets is what [`buffer_size`] reads back.
fn set_buffer(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, force, &v).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, plain, &v);
    }
}

/// The size of `fd`'s receive (`SO_RCVBUF`) or send (`SO_SNDBUF`) buffer, as the kernel
/// reports it (twice what was asked: it counts its bookkeeping).
pub fn buffer_size(fd: impl AsFd, opt: libc::c_int) -> io::Result<usize> {
    vpcswitch_backend::sys::getsockopt_int(fd, libc::SOL_SOCKET, opt).map(|v| v.max(0) as usize)
}

/// A non-blocking UDP socket bound to `at` with `SO_REUSEPORT` (so every worker binds
/// its own to the same address, and the kernel spreads datagrams over them by their
/// 4-tuple), its receive buffer asked to be `rcvbuf` bytes.
pub fn udp_socket(at: SocketAddrV4, rcvbuf: usize) -> io::Result<OwnedFd> {
    let fd = socket(libc::SOCK_DGRAM, 0)?;
    let one: libc::c_int = 1;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one)?;
    set_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcvbuf);
    let sa = sockaddr(at);
    // SAFETY: `sa` is a valid sockaddr_in and the length passed is its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// The address a socket is bound to (`getsockname(2)`): the port the kernel chose
/// when it was bound to port 0.
pub fn bound_addr(fd: impl AsFd) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are live for the call and `len` is `sa`'s size; the
    // kernel writes at most that many bytes and updates `len`.
    cvt(unsafe {
        libc::getsockname(
            fd.as_fd().as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    })?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    ))
}

/// A non-blocking raw IPv4 socket that sends whole IPv4 packets the caller wrote
/// (`IPPROTO_RAW`, `IP_HDRINCL`), receives nothing, and reports send failures the
/// kernel would otherwise hide (`IP_RECVERR`: `ENOBUFS` when the qdisc drops), its
/// send buffer asked to be `sndbuf` bytes. Needs `CAP_NET_RAW`.
pub fn raw_socket(sndbuf: usize) -> io::Result<OwnedFd> {
    let fd = socket(libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let one: libc::c_int = 1;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_HDRINCL, &one)?;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_RECVERR, &one)?;
    set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, sndbuf);
    Ok(fd)
}

/// Receives up to [`BATCH_MAX`] datagrams with one `recvmmsg(2)`: datagram `i` is
/// scattered over the `(header, body)` pair `i` of `slots` (an empty part is left out)
/// and described in `out[i]`. Returns how many arrived; `WouldBlock` when none.
pub fn recv_batch<'a>(
    fd: RawFd,
    slots: impl Iterator<Item = (&'a mut [u8], &'a mut [u8])>,
    out: &mut [RecvMeta; BATCH_MAX],
) -> io::Result<usize> {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [[empty; 2]; BATCH_MAX];
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut names: [libc::sockaddr_in; BATCH_MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: `mmsghdr` is plain old data; all-zero is a valid empty message.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for ((h, b), (v, name)) in slots
        .take(BATCH_MAX)
        .zip(iov.iter_mut().zip(names.iter_mut()))
    {
        let mut k = 0;
        for part in [h, b] {
            if !part.is_empty() {
                v[k] = libc::iovec {
                    iov_base: part.as_mut_ptr().cast(),
                    iov_len: part.len(),
                };
                k += 1;
            }
        }
        let m = &mut hdrs[n].msg_hdr;
        m.msg_iov = v.as_mut_ptr();
        m.msg_iovlen = k as _;
        m.msg_name = (name as *mut libc::sockaddr_in).cast();
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` entries of `hdrs` point at iovecs in `iov`, which point into
    // the caller's exclusively borrowed slots (`'a`) with their true lengths, and at the
    // sockaddr_in entries of `names` with their size; the kernel writes only within
    // them, and all three arrays outlive the call. No timeout is passed.
    let r = cvt(unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })? as usize;
    for ((o, h), name) in out.iter_mut().zip(&hdrs).zip(&names).take(r) {
        *o = RecvMeta {
            len: h.msg_len as usize,
            from: SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                u16::from_be(name.sin_port),
            ),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(r)
}

/// Sends up to [`BATCH_MAX`] datagrams with one `sendmmsg(2)`: datagram `i` is the
/// `(destination, header, body)` triple `i` of `msgs` (an empty part is left out). On
/// a raw `IP_HDRINCL` socket the parts are a whole IPv4 packet, sent as it is, and the
/// kernel routes it by the destination's address (the port is ignored: raw(7)); on a
/// UDP socket they are the payload. Returns how many the kernel took; an error means
/// the first one was refused.
pub fn send_batch<'a>(
    fd: RawFd,
    msgs: impl Iterator<Item = (SocketAddrV4, &'a [u8], &'a [u8])>,
) -> io::Result<usize> {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [[empty; 2]; BATCH_MAX];
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut names: [libc::sockaddr_in; BATCH_MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: `mmsghdr` is plain old data; all-zero is a valid empty message.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for ((dst, h, b), (v, name)) in msgs
        .take(BATCH_MAX)
        .zip(iov.iter_mut().zip(names.iter_mut()))
    {
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
        *name = sockaddr(dst);
        let m = &mut hdrs[n].msg_hdr;
        m.msg_iov = v.as_mut_ptr();
        m.msg_iovlen = k as _;
        m.msg_name = (name as *mut libc::sockaddr_in).cast();
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` entries of `hdrs` point at iovecs in `iov`, which point into
    // the caller's live buffers (`'a`) of the stated lengths, and at addresses in
    // `names`; sendmmsg only reads them, and the arrays outlive the call.
    cvt(unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) })
        .map(|r| r as usize)
}

/// Empties the error queue of a socket with `IP_RECVERR` (each failed send leaves an
/// entry there, charged to the socket's receive buffer); returns how many entries it
/// read. Bounded: at most 1024 per call.
pub fn drain_errors(fd: RawFd) -> usize {
    let mut data = [0u8; 64];
    let mut control = [0u64; 16];
    let mut n = 0;
    while n < 1024 {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at the iovec over `data` and at `control`, both live and
        // exclusively borrowed for the call, with their true lengths.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if cvt_size(r).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// `struct ifreq` as `SIOCGIFMTU` reads it: the name and the MTU (the rest of the
/// union is padding).
#[repr(C)]
struct IfreqMtu {
    name: [libc::c_char; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// The MTU of interface `name` in the network namespace of the calling thread (an
/// ioctl on a socket made there: unlike sysfs, right in a namespace entered with
/// `setns`).
pub fn interface_mtu(name: &str) -> io::Result<usize> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an interface name: {name:?}"),
        ));
    }
    let mut req = IfreqMtu {
        name: [0; libc::IFNAMSIZ],
        mtu: 0,
        _pad: [0; 20],
    };
    for (d, s) in req.name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let fd = socket(libc::SOCK_DGRAM, 0)?;
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name from `req` and writes the MTU
    // into it; `req` is a live ifreq-sized struct for the call.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCGIFMTU as _,
            &mut req as *mut IfreqMtu,
        )
    })?;
    Ok(req.mtu.max(0) as usize)
}

/// The name of the interface that holds IPv4 address `addr`, if one does (in the
/// calling thread's network namespace).
pub fn interface_with(addr: Ipv4Addr) -> io::Result<Option<String>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `list`; freed below.
    cvt(unsafe { libc::getifaddrs(&mut list) })?;
    let mut found = None;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs made, alive until freeifaddrs;
        // `ifa_addr`, when not null, points at a sockaddr whose family says its type,
        // and `ifa_name` at a NUL-terminated name.
        unsafe {
            let ifa = &*p;
            let a = ifa.ifa_addr;
            if !a.is_null()
                && i32::from((*a).sa_family) == libc::AF_INET
                && u32::from_be((*a.cast::<libc::sockaddr_in>()).sin_addr.s_addr) == u32::from(addr)
            {
                found = Some(CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned());
                break;
            }
            p = ifa.ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once; no node is used after.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}
