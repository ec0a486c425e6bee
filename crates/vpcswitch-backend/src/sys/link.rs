//! A network interface's kernel-side counters and MTU, read with one `RTM_GETLINK`
//! request on a `NETLINK_ROUTE` socket ([`LinkStats`]).
//!
//! The socket is bound to the network namespace it was made in, so a backend whose
//! device lives in a guest's namespace (a TAP with `netns`) makes it there, once, and
//! reads that device's counters from the switch's own thread ever after. The answer is
//! the kernel's, but it is parsed with checked lengths all the same: a short or odd
//! message is an error, never a read out of bounds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_size, setsockopt};
use crate::DeviceCounters;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_STATS64: u16 = 23;
/// nlmsghdr (16) + ifinfomsg (16)
const HEAD: usize = 32;

/// One interface's counters, by its index in the namespace the socket was made in.
#[derive(Debug)]
pub struct LinkStats {
    fd: OwnedFd,
    ifindex: i32,
    seq: std::sync::atomic::AtomicU32,
}

/// What one read returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// the interface's MTU
    pub mtu: Option<u32>,
    /// its counters (`struct rtnl_link_stats64`)
    pub counters: DeviceCounters,
}

impl LinkStats {
    /// Finds interface `ifname` in the calling thread's network namespace and keeps a
    /// socket bound to that namespace for [`LinkStats::read`].
    pub fn open(ifname: &str) -> io::Result<LinkStats> {
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {ifname:?} is not 1-15 bytes"),
            ));
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        let mut me = LinkStats {
            fd,
            ifindex: 0,
            seq: std::sync::atomic::AtomicU32::new(1),
        };
        let (index, _) = me.query(Some(ifname))?;
        me.ifindex = index;
        Ok(me)
    }

    /// The interface's MTU and counters now.
    pub fn read(&self) -> io::Result<LinkInfo> {
        self.query(None).map(|(_, info)| info)
    }

    /// One RTM_GETLINK, by name (at open) or by index: the index and what came back.
    fn query(&self, name: Option<&str>) -> io::Result<(i32, LinkInfo)> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = [0u8; HEAD + 4 + libc::IFNAMSIZ];
        let mut len = HEAD;
        if let Some(n) = name {
            // IFLA_IFNAME, NUL-terminated, padded to 4
            let alen = 4 + n.len() + 1;
            req[len..len + 2].copy_from_slice(&(alen as u16).to_ne_bytes());
            req[len + 2..len + 4].copy_from_slice(&IFLA_IFNAME.to_ne_bytes());
            req[len + 4..len + 4 + n.len()].copy_from_slice(n.as_bytes());
            len += (alen + 3) & !3;
        }
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        // ifinfomsg: family AF_UNSPEC, index (0 with a name)
        req[20..24].copy_from_slice(&self.ifindex.to_ne_bytes());
        // SAFETY: `req[..len]` is initialised and outlives the call; the kernel reads it
        // only. The destination is the kernel (a netlink socket's default peer).
        cvt_size(unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), len, 0) })?;
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: `buf` is writable for its whole length for the call.
            let n = cvt_size(unsafe {
                libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
            })?;
            match parse(&buf[..n], seq)? {
                Some(r) => return Ok(r),
                None => continue, // an answer to an earlier, timed-out request
            }
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses one answer: `None` when it answers another request.
fn parse(msg: &[u8], seq: u32) -> io::Result<Option<(i32, LinkInfo)>> {
    let len = u32_at(msg, 0).ok_or_else(|| bad("short message"))? as usize;
    let kind = u16_at(msg, 4).ok_or_else(|| bad("short message"))?;
    if len < 16 || len > msg.len() {
        return Err(bad("message length out of range"));
    }
    if u32_at(msg, 8) != Some(seq) {
        return Ok(None);
    }
    let msg = &msg[..len];
    if kind == NLMSG_ERROR {
        let errno = u32_at(msg, 16).ok_or_else(|| bad("short error"))? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != RTM_NEWLINK || len < HEAD {
        return Err(bad("not a link message"));
    }
    let index = u32_at(msg, 20).ok_or_else(|| bad("short ifinfomsg"))? as i32;
    let mut info = LinkInfo::default();
    let mut at = HEAD;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at).unwrap_or(0) as usize;
        let atype = u16_at(msg, at + 2).unwrap_or(0) & 0x3fff;
        if alen < 4 || at + alen > msg.len() {
            return Err(bad("attribute length out of range"));
        }
        let val = &msg[at + 4..at + alen];
        match atype {
            IFLA_MTU => info.mtu = u32_at(val, 0),
            IFLA_STATS64 => {
                let f = |i: usize| u64_at(val, i * 8).unwrap_or(0);
                info.counters = DeviceCounters {
                    rx_packets: f(0),
                    tx_packets: f(1),
                    rx_bytes: f(2),
                    tx_bytes: f(3),
                    rx_errors: f(4),
                    tx_errors: f(5),
                    rx_dropped: f(6),
                    tx_dropped: f(7),
                };
            }
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(Some((index, info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_counters_and_an_mtu() {
        let l = LinkStats::open("lo").expect("lo exists in every namespace");
        let a = l.read().unwrap();
        assert!(a.mtu.is_some_and(|m| m >= 1280));
        // traffic on lo moves its counters
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"x", s.local_addr().unwrap()).unwrap();
        let b = l.read().unwrap();
        assert!(
            b.counters.tx_packets > a.counters.tx_packets,
            "{a:?} -> {b:?}"
        );
    }

    #[test]
    fn a_missing_interface_is_an_error_naming_no_such_device() {
        let e = LinkStats::open("vsnope0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        assert!(LinkStats::open("").is_err());
        assert!(LinkStats::open("sixteen-bytes-xx").is_err());
    }

    #[test]
    fn parse_rejects_what_does_not_fit() {
        assert!(parse(&[], 1).is_err());
        let mut m = [0u8; 40];
        m[0..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(parse(&m, 1).is_err(), "length beyond the buffer");
        m[0..4].copy_from_slice(&40u32.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        m[32..34].copy_from_slice(&60u16.to_ne_bytes());
        assert!(parse(&m, 1).is_err(), "attribute beyond the message");
        assert!(parse(&m, 2).unwrap().is_none(), "another request's answer");
        m[32..34].copy_from_slice(&8u16.to_ne_bytes());
        m[34..36].copy_from_slice(&IFLA_MTU.to_ne_bytes());
        m[36..40].copy_from_slice(&1500u32.to_ne_bytes());
        assert_eq!(parse(&m, 1).unwrap().unwrap().1.mtu, Some(1500));
    }
}
