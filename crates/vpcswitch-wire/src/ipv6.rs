//! IPv6 headers, the extension-header chain, and the addresses neighbour discovery
//! uses (SPEC 12).
//!
//! # Contract
//! [`Ipv6Packet::new_checked`] validates the fixed header over untrusted bytes: at least
//! 40 bytes, version 6, `40 + payload length <= buffer length` (bytes beyond are
//! Ethernet padding, never payload). [`Ipv6Packet::walk`] then follows the extension
//! headers to the upper-layer header, checking every length it relies on, for at most
//! [`MAX_EXT_HEADERS`] headers. Nothing here panics or allocates, whatever the bytes.
//!
//! # Security intent
//! The walk refuses what lets a guest hide its transport header or the ND message it
//! sends from the switch's checks: chains longer than the bound, a hop-by-hop header
//! anywhere but first, repeated fragment headers, malformed option TLVs, and type-0
//! routing headers still in use (RFC 5095: an amplification tool). A later fragment
//! has no upper-layer header; it is reported as such ([`Upper::LaterFragment`]), never
//! as the protocol its fragment header names, so no check can be made to read payload
//! bytes as a header. ESP, AH and extension headers the switch does not walk end the
//! walk as [`Upper::Opaque`]: the switch cannot see past them and must not pretend to.
//!
//! Not through `smoltcp::wire`: its IPv6 types need smoltcp's `proto-ipv6` feature,
//! and Cargo would unify that into every crate's smoltcp (the simulated guests match
//! on its address enums). smoltcp checks this module in the tests instead.

use std::net::Ipv6Addr;

use crate::MacAddr;

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = field::PAYLOAD;

/// The IPv6 minimum link MTU (RFC 8200 5): no ICMPv6 error the switch sends is longer.
pub const IPV6_MIN_MTU: usize = 1280;

/// The most extension headers [`Ipv6Packet::walk`] follows before it gives up with
/// [`Ipv6Error::TooManyExtHeaders`]. A legitimate packet has at most hop-by-hop,
/// destination options, routing, fragment and destination options again (RFC 8200
/// 4.1); the bound leaves room for that and AH, and caps the work one packet costs.
pub const MAX_EXT_HEADERS: usize = 8;

/// Next-header values the switch knows (IANA "Assigned Internet Protocol Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHeader;

impl NextHeader {
    /// Hop-by-hop options (only directly after the IPv6 header)
    pub const HOP_BY_HOP: u8 = 0;
    /// TCP
    pub const TCP: u8 = 6;
    /// UDP
    pub const UDP: u8 = 17;
    /// Routing header
    pub const ROUTING: u8 = 43;
    /// Fragment header
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload
    pub const ESP: u8 = 50;
    /// Authentication header
    pub const AH: u8 = 51;
    /// ICMPv6
    pub const ICMPV6: u8 = 58;
    /// No next header
    pub const NO_NEXT: u8 = 59;
    /// Destination options
    pub const DEST_OPTS: u8 = 60;
    /// Mobility header
    pub const MOBILITY: u8 = 135;
    /// Host identity protocol
    pub const HIP: u8 = 139;
    /// Shim6
    pub const SHIM6: u8 = 140;
    /// Experimental (RFC 3692)
    pub const EXPERIMENTAL1: u8 = 253;
    /// Experimental (RFC 3692)
    pub const EXPERIMENTAL2: u8 = 254;
}

/// Why bytes are not an IPv6 packet whose headers the switch can check. Each is a drop
/// reason for the pipeline (SPEC 2.1, 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv6Error {
    /// Shorter than the 40-byte fixed header.
    Truncated,
    /// Version field is not 6.
    BadVersion,
    /// Payload length runs past the end of the buffer.
    BadPayloadLen,
    /// An extension header runs past the end of the payload (or, in a first fragment,
    /// the chain does not fit it: RFC 7112).
    ExtTruncated,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyExtHeaders,
    /// A hop-by-hop header after the first position (RFC 8200 4.3).
    HopByHopNotFirst,
    /// An option TLV in a hop-by-hop or destination options header runs past it.
    BadOption,
    /// A second fragment header (RFC 8200 4.1 allows one; two is an evasion).
    RepeatedFragment,
    /// A type-0 routing header with segments left (RFC 5095 deprecates it).
    RoutingType0,
    /// The upper-layer header (TCP, UDP, ICMPv6) is shorter than the bytes the
    /// classifier reads from it.
    L4Truncated,
    /// A neighbour discovery message inside a fragment (RFC 6980: never legitimate).
    FragmentedNd,
    /// A multicast source address (RFC 4291 2.7 forbids it).
    MulticastSource,
}

impl std::fmt::Display for Ipv6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ipv6Error::Truncated => "truncated IPv6 header",
            Ipv6Error::BadVersion => "IPv6 version is not 6",
            Ipv6Error::BadPayloadLen => "IPv6 payload length beyond the frame",
            Ipv6Error::ExtTruncated => "IPv6 extension header beyond the payload",
            Ipv6Error::TooManyExtHeaders => "too many IPv6 extension headers",
            Ipv6Error::HopByHopNotFirst => "IPv6 hop-by-hop header not first",
            Ipv6Error::BadOption => "malformed IPv6 option",
            Ipv6Error::RepeatedFragment => "repeated IPv6 fragment header",
            Ipv6Error::RoutingType0 => "IPv6 type-0 routing header",
            Ipv6Error::L4Truncated => "truncated upper-layer header",
            Ipv6Error::FragmentedNd => "neighbour discovery in a fragment",
            Ipv6Error::MulticastSource => "multicast IPv6 source address",
        })
    }
}

impl std::error::Error for Ipv6Error {}

/// A fragment header, as [`Ipv6Chain::fragment`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// offset of this fragment's data in bytes (a multiple of 8)
    pub offset: u16,
    /// the M flag: more fragments follow
    pub more: bool,
    /// the identification
    pub ident: u32,
}

/// Where the walk of the extension headers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// An upper-layer header (TCP, UDP, ICMPv6, or any protocol that is not an IPv6
    /// extension header) starts at [`Ipv6Chain::offset`].
    Proto(u8),
    /// Next header 59: nothing follows.
    NoNext,
    /// A fragment with a non-zero offset: the bytes at [`Ipv6Chain::offset`] are the
    /// middle of a datagram, not a header. The value is the fragment header's next
    /// header, for information only.
    LaterFragment(u8),
    /// ESP, AH, or an extension header the switch does not walk (mobility, HIP, shim6,
    /// experimental): the switch cannot see the upper layer behind it.
    Opaque(u8),
}

/// The result of a successful [`Ipv6Packet::walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Chain {
    /// what follows the last extension header walked
    pub upper: Upper,
    /// offset of that header from the start of the IPv6 header (`40` when there are no
    /// extension headers); never beyond [`Ipv6Packet::packet_len`]
    pub offset: usize,
    /// extension headers walked
    pub ext_headers: u8,
    /// the fragment header, if there was one (an atomic fragment, offset 0 and M clear,
    /// included)
    pub fragment: Option<Fragment>,
}

impl Ipv6Chain {
    /// The upper-layer protocol when its header is here to read ([`Upper::Proto`]).
    pub fn proto(&self) -> Option<u8> {
        match self.upper {
            Upper::Proto(p) => Some(p),
            _ => None,
        }
    }
    /// True when a fragment header was present.
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some()
    }
}

/// A checked view of an IPv6 packet (the Ethernet payload).
///
/// `new_checked` guarantees: at least 40 bytes, version 6, and `40 + payload_len <=`
/// buffer length. Bytes beyond that (Ethernet padding) are not payload.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps and validates untrusted bytes.
    pub fn new_checked(buf: T) -> Result<Self, Ipv6Error> {
        check(buf.as_ref())?;
        Ok(Ipv6Packet { buf })
    }
    /// Wraps bytes already validated by [`Ipv6Packet::new_checked`] or
    /// [`crate::classify_ipv6`]. Accessors may panic on bytes that were not.
    pub fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    fn word0(&self) -> u32 {
        let b = &self.b()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// The version field (6 after `new_checked`).
    pub fn version(&self) -> u8 {
        self.b()[0] >> 4
    }
    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }
    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }
    /// The payload length field: bytes after the fixed header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        let b = &self.b()[field::PAYLOAD_LEN];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }
    /// Fixed header plus payload: the packet without Ethernet padding.
    #[inline]
    pub fn packet_len(&self) -> usize {
        IPV6_HEADER_LEN + self.payload_len()
    }
    /// The next header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.b()[field::NEXT_HEADER]
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.b()[field::SRC])
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.b()[field::DST])
    }
    /// The packet up to `packet_len` (header included, padding excluded).
    pub fn packet(&self) -> &[u8] {
        &self.b()[..self.packet_len()]
    }
    /// The payload (extension headers included), padding excluded.
    pub fn payload(&self) -> &[u8] {
        &self.b()[IPV6_HEADER_LEN..self.packet_len()]
    }
    /// Follows the extension headers to the upper-layer header. See the module docs for
    /// what is refused and why.
    pub fn walk(&self) -> Result<Ipv6Chain, Ipv6Error> {
        walk(self.packet())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    /// Sets the hop limit (IPv6 has no header checksum to update).
    pub fn set_hop_limit(&mut self, h: u8) {
        self.bm()[field::HOP_LIMIT] = h;
    }
    /// Decrements the hop limit by one. Callers check `hop_limit() > 1` first and
    /// answer time exceeded otherwise (SPEC 12.5).
    #[inline]
    pub fn decrement_hop_limit(&mut self) {
        let b = self.bm();
        b[field::HOP_LIMIT] = b[field::HOP_LIMIT].wrapping_sub(1);
    }
    /// Sets the source address. The caller updates any upper-layer checksum (its
    /// pseudo-header covers the address).
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.bm()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address (upper-layer checksums: as [`Self::set_src`]).
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.bm()[field::DST].copy_from_slice(&a.octets());
    }
    /// Mutable payload up to `packet_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.packet_len();
        &mut self.bm()[IPV6_HEADER_LEN..end]
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// The checks of [`Ipv6Packet::new_checked`] on a raw slice.
#[inline]
pub(crate) fn check(b: &[u8]) -> Result<(), Ipv6Error> {
    let h = b
        .first_chunk::<IPV6_HEADER_LEN>()
        .ok_or(Ipv6Error::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(Ipv6Error::BadVersion);
    }
    let pl = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if IPV6_HEADER_LEN + pl > b.len() {
        return Err(Ipv6Error::BadPayloadLen);
    }
    Ok(())
}

/// True for the extension headers [`walk`] cannot see past.
fn is_opaque(nh: u8) -> bool {
    matches!(
        nh,
        NextHeader::ESP
            | NextHeader::AH
            | NextHeader::MOBILITY
            | NextHeader::HIP
            | NextHeader::SHIM6
            | NextHeader::EXPERIMENTAL1
            | NextHeader::EXPERIMENTAL2
    )
}

/// Checks the option TLVs of a hop-by-hop or destination options header body
/// (`opts`: the bytes after its two-byte prefix): each option fits.
fn check_options(opts: &[u8]) -> Result<(), Ipv6Error> {
    let mut i = 0;
    while let Some(&ty) = opts.get(i) {
        if ty == 0 {
            // Pad1: a single byte
            i += 1;
            continue;
        }
        let len = usize::from(*opts.get(i + 1).ok_or(Ipv6Error::BadOption)?);
        i += 2 + len;
        if i > opts.len() {
            return Err(Ipv6Error::BadOption);
        }
    }
    Ok(())
}

/// Walks the extension headers of `pkt`, a packet that passed [`check`] cut to its
/// `packet_len`.
fn walk(pkt: &[u8]) -> Result<Ipv6Chain, Ipv6Error> {
    let mut nh = pkt[field::NEXT_HEADER];
    let mut off = IPV6_HEADER_LEN;
    let mut n = 0u8;
    let mut fragment = None;
    let upper = loop {
        match nh {
            NextHeader::HOP_BY_HOP
            | NextHeader::ROUTING
            | NextHeader::DEST_OPTS
            | NextHeader::FRAGMENT => {}
            NextHeader::NO_NEXT => break Upper::NoNext,
            x if is_opaque(x) => break Upper::Opaque(x),
            x => break Upper::Proto(x),
        }
        if usize::from(n) == MAX_EXT_HEADERS {
            return Err(Ipv6Error::TooManyExtHeaders);
        }
        if nh == NextHeader::HOP_BY_HOP && n != 0 {
            return Err(Ipv6Error::HopByHopNotFirst);
        }
        let rest = pkt.get(off..).unwrap_or(&[]);
        let h = rest.first_chunk::<8>().ok_or(Ipv6Error::ExtTruncated)?;
        n += 1;
        if nh == NextHeader::FRAGMENT {
            if fragment.is_some() {
                return Err(Ipv6Error::RepeatedFragment);
            }
            let fo = u16::from_be_bytes([h[2], h[3]]);
            let f = Fragment {
                offset: fo & 0xfff8,
                more: fo & 1 != 0,
                ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            };
            fragment = Some(f);
            off += 8;
            if f.offset != 0 {
                break Upper::LaterFragment(h[0]);
            }
            nh = h[0];
            continue;
        }
        let len = (usize::from(h[1]) + 1) * 8;
        let body = rest.get(..len).ok_or(Ipv6Error::ExtTruncated)?;
        if nh == NextHeader::ROUTING {
            // type 0 with segments left (RFC 5095)
            if h[2] == 0 && h[3] != 0 {
                return Err(Ipv6Error::RoutingType0);
            }
        } else {
            check_options(&body[2..])?;
        }
        nh = h[0];
        off += len;
    };
    Ok(Ipv6Chain {
        upper,
        offset: off,
        ext_headers: n,
        fragment,
    })
}

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// True for a link-local unicast address in fe80::/64, the only link-local prefix
/// SPEC 12.2 admits (RFC 4291 2.5.6: the 54 bits after fe80 are zero). Stricter than
/// `Ipv6Addr::is_unicast_link_local` (fe80::/10).
#[inline]
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0]
}

/// True for `::` (allowed as a source only for duplicate address detection, SPEC 12.2).
#[inline]
pub fn is_unspecified(a: &Ipv6Addr) -> bool {
    a.octets() == [0; 16]
}

/// True for ff00::/8.
#[inline]
pub fn is_multicast(a: &Ipv6Addr) -> bool {
    a.octets()[0] == 0xff
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1): ff02::1:ff00:0/104
/// with the low 24 bits of `a`.
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// True when `a` is a solicited-node multicast address (of any address).
pub fn is_solicited_node(a: &Ipv6Addr) -> bool {
    a.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// The Ethernet MAC a multicast IPv6 address maps to (RFC 2464 7): 33:33 and its low
/// 32 bits. Callers pass a multicast address; any other gets the same mapping.
pub fn multicast_mac(a: &Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The MAC of the solicited-node multicast group of `a`: 33:33:ff and its low 24 bits.
pub fn solicited_node_mac(a: &Ipv6Addr) -> MacAddr {
    multicast_mac(&solicited_node(a))
}

/// The fe80::/64 address with the modified EUI-64 interface identifier of `mac` (RFC
/// 4291 appendix A): the link-local address a gateway sends router advertisements from
/// (RFC 4861 4.2 requires a link-local source).
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 5);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 9);

    /// An IPv6 header with `next` and the given payload (lengths filled in).
    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0x12, 0x34, 0x56];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&SRC.octets());
        v.extend_from_slice(&DST.octets());
        v.extend_from_slice(payload);
        v
    }

    /// An 8-byte options header (hop-by-hop or destination) with a PadN filling it.
    fn opts(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0]
    }

    fn frag(next: u8, offset: u16, more: bool) -> [u8; 8] {
        let fo = (offset & 0xfff8) | u16::from(more);
        let f = fo.to_be_bytes();
        [next, 0, f[0], f[1], 0xde, 0xad, 0xbe, 0xef]
    }

    const UDP: [u8; 8] = [0x12, 0x34, 0, 53, 0, 8, 0, 0];

    #[test]
    fn fixed_header_fields() {
        let mut p = packet(NextHeader::UDP, &UDP);
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.version(), 6);
        assert_eq!(v.traffic_class(), 0x01);
        assert_eq!(v.flow_label(), 0x23456);
        assert_eq!(v.payload_len(), 8);
        assert_eq!(v.next_header(), NextHeader::UDP);
        assert_eq!(v.hop_limit(), 64);
        assert_eq!((v.src(), v.dst()), (SRC, DST));
        assert_eq!(v.payload(), &UDP);
        let c = v.walk().unwrap();
        assert_eq!(c.upper, Upper::Proto(NextHeader::UDP));
        assert_eq!((c.offset, c.ext_headers, c.fragment), (40, 0, None));
        let mut v = Ipv6Packet::new_checked(&mut p[..]).unwrap();
        v.decrement_hop_limit();
        assert_eq!(v.hop_limit(), 63);
        v.set_src(DST);
        v.set_dst(SRC);
        assert_eq!((v.src(), v.dst()), (DST, SRC));
    }

    /// SPEC 2.1 (as 12.1 applies it): every malformation of the fixed header is typed.
    #[test]
    fn fixed_header_malformations_are_typed() {
        let p = packet(NextHeader::UDP, &UDP);
        for n in 0..40 {
            assert_eq!(check(&p[..n]), Err(Ipv6Error::Truncated), "len {n}");
        }
        for n in 40..p.len() {
            assert_eq!(check(&p[..n]), Err(Ipv6Error::BadPayloadLen), "len {n}");
        }
        let mut b = p.clone();
        b[0] = 0x45;
        assert_eq!(check(&b), Err(Ipv6Error::BadVersion));
        // padding after the payload is allowed and is not payload
        let mut b = p.clone();
        b.extend_from_slice(&[0xee; 10]);
        let v = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(v.payload(), &UDP);
        assert_eq!(v.packet(), &p[..]);
    }

    #[test]
    fn chain_of_every_walked_header_finds_the_transport() {
        let mut pl = Vec::new();
        pl.extend_from_slice(&opts(NextHeader::DEST_OPTS)); // hop-by-hop
        pl.extend_from_slice(&opts(NextHeader::ROUTING)); // destination options
        pl.extend_from_slice(&[NextHeader::FRAGMENT, 0, 4, 0, 0, 0, 0, 0]); // RH type 4
        pl.extend_from_slice(&frag(NextHeader::UDP, 0, true));
        pl.extend_from_slice(&UDP);
        let p = packet(NextHeader::HOP_BY_HOP, &pl);
        let c = Ipv6Packet::new_checked(&p[..]).unwrap().walk().unwrap();
        assert_eq!(c.upper, Upper::Proto(NextHeader::UDP));
        assert_eq!(c.proto(), Some(NextHeader::UDP));
        assert_eq!((c.offset, c.ext_headers), (72, 4));
        assert_eq!(
            c.fragment,
            Some(Fragment {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert_eq!(&p[c.offset..], &UDP);
        // every shorter payload length: an error, never a wrong offset
        for n in 0..pl.len() {
            let q = packet(NextHeader::HOP_BY_HOP, &pl[..n]);
            match Ipv6Packet::new_checked(&q[..]).unwrap().walk() {
                Err(e) => assert!(e == Ipv6Error::ExtTruncated && n < 32, "len {n}"),
                Ok(c) => {
                    // the whole chain fits (32 bytes); the UDP header may be cut, which
                    // classify_ipv6 checks
                    assert!(n >= 32, "len {n}");
                    assert_eq!(c.offset, 72);
                    assert!(c.offset <= q.len(), "offset within the packet");
                }
            }
        }
    }

    #[test]
    fn later_fragment_has_no_upper_header() {
        let mut pl = frag(NextHeader::TCP, 1448, false).to_vec();
        pl.extend_from_slice(&[0xab; 16]);
        let p = packet(NextHeader::FRAGMENT, &pl);
        let c = Ipv6Packet::new_checked(&p[..]).unwrap().walk().unwrap();
        assert_eq!(c.upper, Upper::LaterFragment(NextHeader::TCP));
        assert_eq!(c.proto(), None);
        assert!(c.is_fragment());
        assert_eq!(c.fragment.unwrap().offset, 1448);
    }

    #[test]
    fn chain_refusals_are_typed() {
        let walk_of = |next: u8, pl: &[u8]| {
            Ipv6Packet::new_checked(&packet(next, pl)[..])
                .unwrap()
                .walk()
        };
        // hop-by-hop after a destination options header
        let mut pl = opts(NextHeader::HOP_BY_HOP).to_vec();
        pl.extend_from_slice(&opts(NextHeader::UDP));
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::DEST_OPTS, &pl),
            Err(Ipv6Error::HopByHopNotFirst)
        );
        // a chain one longer than the bound
        let mut pl = Vec::new();
        for _ in 0..MAX_EXT_HEADERS {
            pl.extend_from_slice(&opts(NextHeader::DEST_OPTS));
        }
        pl.extend_from_slice(&opts(NextHeader::UDP));
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::DEST_OPTS, &pl),
            Err(Ipv6Error::TooManyExtHeaders)
        );
        // exactly the bound is fine
        let c = walk_of(NextHeader::DEST_OPTS, &pl[8..]).unwrap();
        assert_eq!(usize::from(c.ext_headers), MAX_EXT_HEADERS);
        // two fragment headers
        let mut pl = frag(NextHeader::FRAGMENT, 0, true).to_vec();
        pl.extend_from_slice(&frag(NextHeader::UDP, 0, true));
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::FRAGMENT, &pl),
            Err(Ipv6Error::RepeatedFragment)
        );
        // RH0 with segments left; RH0 without is ignored (RFC 5095)
        let mut rh0 = vec![NextHeader::UDP, 2, 0, 1, 0, 0, 0, 0];
        rh0.extend_from_slice(&[0; 16]);
        let mut pl = rh0.clone();
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::ROUTING, &pl),
            Err(Ipv6Error::RoutingType0)
        );
        pl[3] = 0;
        assert_eq!(
            walk_of(NextHeader::ROUTING, &pl).unwrap().upper,
            Upper::Proto(NextHeader::UDP)
        );
        // an option TLV running past its header, and a type byte with no length
        let mut pl = vec![NextHeader::UDP, 0, 1, 5, 0, 0, 0, 0];
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::HOP_BY_HOP, &pl),
            Err(Ipv6Error::BadOption)
        );
        let mut pl = vec![NextHeader::UDP, 0, 0, 0, 0, 0, 0, 5];
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::HOP_BY_HOP, &pl),
            Err(Ipv6Error::BadOption)
        );
        // Pad1 bytes and a router alert (as MLD sends) are fine
        let mut pl = vec![NextHeader::ICMPV6, 0, 5, 2, 0, 0, 0, 0];
        pl.extend_from_slice(&[143, 0, 0, 0]);
        assert_eq!(
            walk_of(NextHeader::HOP_BY_HOP, &pl).unwrap().upper,
            Upper::Proto(NextHeader::ICMPV6)
        );
        // an extension header length beyond the payload
        let mut pl = vec![NextHeader::UDP, 3, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&UDP);
        assert_eq!(
            walk_of(NextHeader::DEST_OPTS, &pl),
            Err(Ipv6Error::ExtTruncated)
        );
    }

    #[test]
    fn opaque_and_no_next_end_the_walk() {
        for nh in [
            NextHeader::ESP,
            NextHeader::AH,
            NextHeader::MOBILITY,
            NextHeader::HIP,
            NextHeader::SHIM6,
            253,
            254,
        ] {
            let mut pl = opts(nh).to_vec();
            pl.extend_from_slice(&[0; 16]);
            let c = Ipv6Packet::new_checked(&packet(NextHeader::DEST_OPTS, &pl)[..])
                .unwrap()
                .walk()
                .unwrap();
            assert_eq!(
                (c.upper, c.offset, c.proto()),
                (Upper::Opaque(nh), 48, None)
            );
        }
        let c = Ipv6Packet::new_checked(&packet(NextHeader::NO_NEXT, &[])[..])
            .unwrap()
            .walk()
            .unwrap();
        assert_eq!((c.upper, c.offset), (Upper::NoNext, 40));
        // unknown, non-extension protocol numbers are upper layers (e.g. SCTP, GRE)
        let c = Ipv6Packet::new_checked(&packet(132, &[0; 12])[..])
            .unwrap()
            .walk()
            .unwrap();
        assert_eq!(c.upper, Upper::Proto(132));
    }

    /// The walk agrees with smoltcp's reading of the same fixed header.
    #[test]
    fn fixed_header_agrees_with_smoltcp() {
        let p = packet(NextHeader::UDP, &UDP);
        let s = smoltcp::wire::Ipv6Packet::new_checked(&p[..]).unwrap();
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(s.src_addr(), v.src());
        assert_eq!(s.dst_addr(), v.dst());
        assert_eq!(s.flow_label(), v.flow_label());
        assert_eq!(s.traffic_class(), v.traffic_class());
        assert_eq!(usize::from(s.payload_len()), v.payload_len());
    }

    #[test]
    fn address_helpers() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        assert!(is_link_local(&ll));
        // fe80::/10 but not fe80::/64: refused by SPEC 12.2's reading
        assert!(!is_link_local(&"fe80:1::1".parse().unwrap()));
        assert!(!is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&SRC));
        assert!(is_unspecified(&Ipv6Addr::UNSPECIFIED));
        assert!(!is_unspecified(&ll));
        assert!(is_multicast(&ALL_NODES) && !is_multicast(&ll));
        let a: Ipv6Addr = "fd00::1:2:a1b2:c3d4".parse().unwrap();
        let sn = solicited_node(&a);
        assert_eq!(sn, "ff02::1:ffb2:c3d4".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(&sn) && !is_solicited_node(&a));
        assert!(!is_solicited_node(&ALL_NODES));
        assert_eq!(
            solicited_node_mac(&a),
            MacAddr([0x33, 0x33, 0xff, 0xb2, 0xc3, 0xd4])
        );
        assert_eq!(multicast_mac(&ALL_NODES), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(
            multicast_mac(&"ff05::1:3".parse().unwrap()),
            MacAddr([0x33, 0x33, 0, 1, 0, 3])
        );
        // RFC 4291 appendix A: ff:fe in the middle, the U/L bit flipped
        assert_eq!(
            link_local_from_mac(MacAddr([0x02, 0, 0x0a, 0xff, 0, 0x01])),
            "fe80::aff:feff:1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local_from_mac(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    proptest! {
        /// SPEC 2.1: nothing panics, whatever the bytes; a successful walk's offset lies
        /// within the packet.
        #[test]
        fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..200),
                                       nh in prop_oneof![Just(0u8), Just(43), Just(44), Just(60), any::<u8>()]) {
            if b.len() >= 40 {
                b[0] = 0x60;
                b[6] = nh;
                let pl = (b.len() - 40) as u16;
                b[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
                if let Ok(c) = p.walk() {
                    prop_assert!(c.offset <= p.packet_len());
                    prop_assert!(usize::from(c.ext_headers) <= MAX_EXT_HEADERS);
                }
            }
        }
    }
}
