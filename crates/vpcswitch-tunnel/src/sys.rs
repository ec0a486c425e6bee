//! The tunnel's system calls: the receiving UDP socket (`SO_REUSEPORT`), the sending
//! raw IPv4 socket (`IP_HDRINCL`), draining the raw socket's error queue, and the MTU of
//! an interface by name or address (`recvmmsg` and `sendmmsg` are
//! `vpcswitch_backend::sys`'s batches). The only place in this crate with `unsafe`;
//! every call goes through `vpcswitch_backend::sys::cvt`.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use vpcswitch_backend::sys::{cvt, cvt_size, setsockopt, sockaddr_in};

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
    let sa = sockaddr_in(at);
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

/// Asks the kernel to hand a UDP socket datagrams it coalesced (UDP GRO: one read
/// of many equal-sized datagrams of one flow, with their size in a control message).
pub fn set_gro(fd: &OwnedFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    setsockopt(fd, libc::SOL_UDP, vpcswitch_backend::sys::UDP_GRO, &one)
}

/// A non-blocking UDP socket to send VXLAN from `endpoint` with UDP GSO (its UDP
/// checksum is the kernel's: GSO refuses a socket without one): DF set
/// (`IP_PMTUDISC_DO`, so the kernel refuses what the path cannot carry instead of
/// fragmenting), TTL 64, its send buffer asked to be `sndbuf` bytes and its receive
/// buffer the smallest (nothing is read from it: a datagram sent to its port is dropped
/// once that small buffer is full). Bound to the first port of `ports` that is free, or
/// to one the kernel chooses when none is. Returns it and its port.
pub fn udp_send_socket(
    endpoint: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
    sndbuf: usize,
) -> io::Result<(OwnedFd, u16)> {
    let fd = socket(libc::SOCK_DGRAM, 0)?;
    let pmtu: libc::c_int = libc::IP_PMTUDISC_DO;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &pmtu)?;
    let ttl: libc::c_int = libc::c_int::from(vpcswitch_wire::vxlan::OUTER_TTL);
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
    // no IP_RECVERR here: on an unconnected UDP socket it would turn every ICMP error
    // from a remote (port unreachable...) into a failure of the next send
    set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, sndbuf);
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &0);
    let bind = |port: u16| {
        let sa = sockaddr_in(SocketAddrV4::new(endpoint, port));
        // SAFETY: `sa` is a valid sockaddr_in and the length passed is its size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })
    };
    let mut bound = false;
    for p in ports {
        match bind(p) {
            Ok(_) => {
                bound = true;
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
            Err(e) => return Err(e),
        }
    }
    if !bound {
        bind(0)?;
    }
    let port = bound_addr(&fd)?.port();
    Ok((fd, port))
}
