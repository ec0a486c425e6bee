//! Batches of messages for one `sendmmsg(2)` or `recvmmsg(2)`: each message a scatter
//! list of up to two parts (a header and a body) and, optionally, an IPv4 address.
//! The batch borrows the buffers it points into for as long as it lives, so the kernel
//! never reads or writes memory that is gone or shared.

use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use super::cvt;

/// Most messages one batch holds.
pub const MMSG_MAX: usize = 64;

/// The arrays the kernel reads a batch from (and, receiving, writes into). Pointers in
/// `hdrs` are set by [`Msgs::link`] just before the call, so the arrays can move
/// while messages are added.
struct Msgs {
    iov: [[libc::iovec; 2]; MMSG_MAX],
    names: [libc::sockaddr_in; MMSG_MAX],
    hdrs: [libc::mmsghdr; MMSG_MAX],
    /// which messages have an address in `names`
    named: [bool; MMSG_MAX],
    /// each message's control data (`cmsghdr`s, 8-byte aligned) and its length (0:
    /// none)
    ctrl: [[u64; CTRL_WORDS]; MMSG_MAX],
    ctrl_len: [usize; MMSG_MAX],
    n: usize,
}

/// Words of control data per message: room for one `cmsghdr` with an `int` (the only
/// ones asked for: `UDP_SEGMENT` on send, `UDP_GRO` on receive), and one more.
const CTRL_WORDS: usize = 6;
/// `sizeof(struct cmsghdr)` on the 64-bit Linux targets this builds for: `size_t`
/// length, `int` level, `int` type; data follows at the next 8-byte boundary.
const CMSG_HDR: usize = 16;
const _: () = assert!(std::mem::size_of::<libc::cmsghdr>() == CMSG_HDR);
/// `SOL_UDP` options (linux/udp.h): segment size of a send, of a received coalesced
/// datagram.
pub const UDP_SEGMENT: libc::c_int = 103;
/// See [`UDP_SEGMENT`].
pub const UDP_GRO: libc::c_int = 104;

/// Writes one control message (`level`, `ty`, data `v` as a native `u16`) into `c`;
/// its length in bytes.
fn put_cmsg_u16(c: &mut [u64; CTRL_WORDS], level: libc::c_int, ty: libc::c_int, v: u16) -> usize {
    let len = CMSG_HDR + 2;
    c[0] = len as u64;
    let mut lt = [0u8; 8];
    lt[..4].copy_from_slice(&level.to_ne_bytes());
    lt[4..].copy_from_slice(&ty.to_ne_bytes());
    c[1] = u64::from_ne_bytes(lt);
    let mut d = [0u8; 8];
    d[..2].copy_from_slice(&v.to_ne_bytes());
    c[2] = u64::from_ne_bytes(d);
    // CMSG_SPACE: the data padded to 8 bytes
    CMSG_HDR + 8
}

/// The `int` of the first control message `level`/`ty` in the `len` bytes of `c`.
fn find_cmsg_int(
    c: &[u64; CTRL_WORDS],
    len: usize,
    level: libc::c_int,
    ty: libc::c_int,
) -> Option<i32> {
    let len = len.min(CTRL_WORDS * 8);
    let mut off = 0;
    while off + CMSG_HDR <= len {
        let k = off / 8;
        let clen = c[k] as usize;
        if clen < CMSG_HDR || off + clen > len {
            return None;
        }
        let lt = c[k + 1].to_ne_bytes();
        let l = i32::from_ne_bytes([lt[0], lt[1], lt[2], lt[3]]);
        let t = i32::from_ne_bytes([lt[4], lt[5], lt[6], lt[7]]);
        if l == level && t == ty && clen >= CMSG_HDR + 4 {
            // off + 20 <= len <= 48: k + 2 is within `c`
            let d = c.get(k + 2)?.to_ne_bytes();
            return Some(i32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
        }
        off += clen.div_ceil(8) * 8;
    }
    None
}

/// `a` as a `sockaddr_in`, for `bind`, `connect` and messages.
pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

impl Msgs {
    fn new() -> Msgs {
        Msgs {
            iov: [[libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2]; MMSG_MAX],
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            names: unsafe { std::mem::zeroed() },
            // SAFETY: `mmsghdr` is plain old data; all-zero is a valid empty message.
            hdrs: unsafe { std::mem::zeroed() },
            named: [false; MMSG_MAX],
            ctrl: [[0; CTRL_WORDS]; MMSG_MAX],
            ctrl_len: [0; MMSG_MAX],
            n: 0,
        }
    }

    /// Adds a message of the non-empty ones of `parts` (pointer, length), to or from
    /// `name`; false when the batch is full.
    fn push(&mut self, name: Option<SocketAddrV4>, parts: [(*mut u8, usize); 2]) -> bool {
        if self.n == MMSG_MAX {
            return false;
        }
        let i = self.n;
        let mut k = 0;
        for (p, len) in parts {
            if len > 0 {
                self.iov[i][k] = libc::iovec {
                    iov_base: p.cast(),
                    iov_len: len,
                };
                k += 1;
            }
        }
        let h = &mut self.hdrs[i].msg_hdr;
        h.msg_iovlen = k as _;
        self.named[i] = name.is_some();
        self.names[i] = sockaddr_in(name.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
        self.ctrl_len[i] = 0;
        self.n += 1;
        true
    }

    /// Points every message's header at its scatter list and address, where the arrays
    /// are now; the batch must not move until the call that follows is done.
    fn link(&mut self) -> *mut libc::mmsghdr {
        for i in 0..self.n {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = self.iov[i].as_mut_ptr();
            if self.named[i] {
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
            if self.ctrl_len[i] > 0 {
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = self.ctrl_len[i] as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        self.hdrs.as_mut_ptr()
    }
}

/// Up to [`MMSG_MAX`] messages to send with one `sendmmsg(2)`, each a header and a
/// body borrowed for `'a` and, on an unconnected socket, a destination.
pub struct SendBatch<'a> {
    m: Msgs,
    _bufs: PhantomData<&'a [u8]>,
}

impl std::fmt::Debug for SendBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("len", &self.m.n).finish()
    }
}

impl Default for SendBatch<'_> {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl<'a> SendBatch<'a> {
    /// An empty batch.
    pub fn new() -> SendBatch<'a> {
        SendBatch {
            m: Msgs::new(),
            _bufs: PhantomData,
        }
    }
    /// Adds the message `hdr` + `body` (an empty part is left out) to `to` (`None`:
    /// the socket's own destination, or none for a packet socket); false when the
    /// batch is full.
    pub fn push(&mut self, to: Option<SocketAddrV4>, hdr: &'a [u8], body: &'a [u8]) -> bool {
        // the kernel only reads through these pointers (sendmmsg)
        self.m.push(
            to,
            [
                (hdr.as_ptr().cast_mut(), hdr.len()),
                (body.as_ptr().cast_mut(), body.len()),
            ],
        )
    }
    /// [`SendBatch::push`] of a message the kernel cuts into datagrams of `segment`
    /// bytes each (the last may be shorter): UDP GSO (`UDP_SEGMENT`), for a UDP socket.
    pub fn push_segmented(
        &mut self,
        to: Option<SocketAddrV4>,
        hdr: &'a [u8],
        body: &'a [u8],
        segment: u16,
    ) -> bool {
        if !self.push(to, hdr, body) {
            return false;
        }
        let i = self.m.n - 1;
        self.m.ctrl_len[i] = put_cmsg_u16(&mut self.m.ctrl[i], libc::SOL_UDP, UDP_SEGMENT, segment);
        true
    }
    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.m.n
    }
    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.m.n == 0
    }
    /// Sends the batch with one non-blocking `sendmmsg(2)` on `fd`; returns how many
    /// messages the kernel took (0 for an empty batch). An error means the first one
    /// was refused (`WouldBlock`: the socket's buffer or the device's queue is full).
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        if self.m.n == 0 {
            return Ok(0);
        }
        let n = self.m.n as libc::c_uint;
        let hdrs = self.m.link();
        // SAFETY: the first `n` headers point at scatter lists and addresses in `self.m`,
        // which stays in place for the call, and those lists point into buffers
        // borrowed for `'a` with their true lengths; sendmmsg only reads them.
        cvt(unsafe { libc::sendmmsg(fd, hdrs, n, libc::MSG_DONTWAIT) }).map(|r| r as usize)
    }
}

/// What `recvmmsg` said of one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// bytes the message had (at most what its parts hold, unless `truncated`)
    pub len: usize,
    /// the sender (IPv4 sockets; `0.0.0.0:0` otherwise)
    pub from: SocketAddrV4,
    /// longer than its parts: the rest was cut off (`MSG_TRUNC`)
    pub truncated: bool,
    /// datagrams coalesced by the kernel (UDP GRO, asked for with
    /// [`RecvBatch::want_gro`]): the size of each but the last; 0 for one datagram
    pub segment: usize,
}

/// Up to [`MMSG_MAX`] places to receive into with one `recvmmsg(2)`, each a header and
/// a body borrowed exclusively for `'a`.
pub struct RecvBatch<'a> {
    m: Msgs,
    got: usize,
    gro: bool,
    _bufs: PhantomData<&'a mut [u8]>,
}

impl std::fmt::Debug for RecvBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.m.n)
            .field("got", &self.got)
            .finish()
    }
}

impl Default for RecvBatch<'_> {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl<'a> RecvBatch<'a> {
    /// An empty batch.
    pub fn new() -> RecvBatch<'a> {
        RecvBatch {
            m: Msgs::new(),
            got: 0,
            gro: false,
            _bufs: PhantomData,
        }
    }
    /// Adds a place for one message: its first bytes go to `hdr`, the rest to `body`
    /// (an empty part is left out), its sender is asked for; false when the batch is
    /// full.
    pub fn push(&mut self, hdr: &'a mut [u8], body: &'a mut [u8]) -> bool {
        let ok = self.m.push(
            Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            [
                (hdr.as_mut_ptr(), hdr.len()),
                (body.as_mut_ptr(), body.len()),
            ],
        );
        if ok && self.gro {
            self.m.ctrl_len[self.m.n - 1] = CTRL_WORDS * 8;
        }
        ok
    }
    /// Asks, for every place added after this, the segment size of a datagram the
    /// kernel coalesced (UDP GRO, on a socket with `UDP_GRO` set): [`Received::segment`].
    pub fn want_gro(&mut self) {
        self.gro = true;
    }
    /// Places in the batch.
    pub fn len(&self) -> usize {
        self.m.n
    }
    /// True when the batch holds no place.
    pub fn is_empty(&self) -> bool {
        self.m.n == 0
    }
    /// Receives into the batch with one non-blocking `recvmmsg(2)` on `fd`: returns how
    /// many messages arrived (0 for an empty batch; `WouldBlock` when none waits).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got = 0;
        if self.m.n == 0 {
            return Ok(0);
        }
        let n = self.m.n as libc::c_uint;
        let hdrs = self.m.link();
        // SAFETY: the first `n` headers point at scatter lists and address slots in
        // `self.m`, which stays in place for the call, and those lists point into
        // buffers borrowed exclusively for `'a` with their true lengths; the kernel
        // writes only within them. No timeout is passed.
        let r =
            cvt(unsafe { libc::recvmmsg(fd, hdrs, n, libc::MSG_DONTWAIT, std::ptr::null_mut()) })?
                as usize;
        self.got = r.min(self.m.n);
        Ok(self.got)
    }
    /// Message `i` of the last [`RecvBatch::recv`], if that many arrived.
    pub fn get(&self, i: usize) -> Option<Received> {
        if i >= self.got {
            return None;
        }
        let h = &self.m.hdrs[i];
        let a = &self.m.names[i];
        let from = if i32::from(a.sin_family) == libc::AF_INET {
            SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )
        } else {
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
        };
        // `msg_controllen` is a `size_t` on glibc and a `socklen_t` elsewhere
        #[allow(clippy::unnecessary_cast)]
        let segment = if self.m.ctrl_len[i] > 0 {
            // the kernel wrote msg_controllen: how much of the control buffer it filled
            find_cmsg_int(
                &self.m.ctrl[i],
                h.msg_hdr.msg_controllen as usize,
                libc::SOL_UDP,
                UDP_GRO,
            )
            .map_or(0, |v| v.max(0) as usize)
        } else {
            0
        };
        Some(Received {
            len: h.msg_len as usize,
            from,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            segment,
        })
    }
}
