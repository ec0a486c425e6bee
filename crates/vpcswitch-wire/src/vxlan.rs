//! VXLAN (RFC 7348): the 8-byte header, the outer IPv4 + UDP headers the switch writes
//! in front of it, and the UDP source port derived from the inner flow.
//!
//! # Contract
//! * [`VxlanHeader::new_checked`] accepts 8 or more bytes whose I flag is set (a valid
//!   VNI follows, RFC 7348 section 5). Every other bit of the header is reserved and
//!   ignored on receive, as the RFC says, so a Linux `vxlan` device with an extension
//!   the switch does not speak still gets its VNI read; what such a frame means is the
//!   tunnel ingress check's business (SPEC 10.3), not this view's.
//! * [`Outer::emit`] writes the 36 bytes in front of an inner Ethernet frame: IPv4
//!   without options, DF set, TTL 64, a correct header checksum; UDP with its length and
//!   checksum 0 (RFC 7348 allows it over IPv4: the inner frame carries its own
//!   checksums, and the outer IPv4 header checksum covers the addresses); VXLAN with the
//!   I flag, the VNI and every reserved bit 0. The kernel adds the outer Ethernet header
//!   (14 bytes more: [`OVERHEAD`] in all).
//! * [`source_port`] maps an inner frame to a UDP source port in 49152..=65535 (the
//!   range RFC 7348 section 5 recommends) from a hash of its flow: both MAC addresses and
//!   the EtherType, and for IPv4 the addresses and protocol, and the ports of an
//!   unfragmented TCP, UDP or SCTP packet. The hash has no per-process seed: every host
//!   gives one flow the same port, so underlay ECMP keeps a flow on one path (no
//!   reordering) while different flows spread. Fragments of one datagram share a port
//!   (no ports are read from any fragment).
//!
//! Nothing here panics on any input; failures are a [`VxlanError`].

use std::net::Ipv4Addr;

use crate::checksum;
use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::ipv4::{self, IpProtocol, IPV4_MIN_HEADER_LEN};
use crate::WireError;

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const VNI: Range<usize> = 4..7;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = field::PAYLOAD;
/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The bytes the switch writes in front of an inner frame: IPv4 (20), UDP (8), VXLAN (8).
pub const OUTER_HEADER_LEN: usize = IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/// What encapsulation adds to an inner IP packet on the underlay: the inner Ethernet
/// header and [`OUTER_HEADER_LEN`] (the outer Ethernet header is the underlay's own).
/// A guest's MTU is the underlay MTU minus this (SPEC 10.6).
pub const OVERHEAD: usize = ETHERNET_HEADER_LEN + OUTER_HEADER_LEN;
/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// The smallest UDP source port [`source_port`] returns; the largest is 65535.
pub const SRC_PORT_MIN: u16 = 49152;
/// The outer TTL.
pub const OUTER_TTL: u8 = 64;

/// The I flag: a valid VNI is present.
const FLAG_I: u8 = 0x08;
/// IPv4 "don't fragment", in the flags/offset word.
const IPV4_DF: u16 = 0x4000;
/// SCTP's protocol number: ports at the same offsets as TCP and UDP.
const SCTP: u8 = 132;

/// Why bytes are not the VXLAN packet asked for, or cannot be made into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VxlanError {
    /// Shorter than the header it must hold.
    Truncated,
    /// The I flag is clear: no valid VNI (RFC 7348 section 5).
    NoVni,
    /// The outer IPv4 header is malformed.
    Ip(WireError),
    /// The outer packet is not one whole UDP datagram: another protocol, a fragment, or
    /// a UDP length that does not fit the IPv4 packet.
    NotUdp,
    /// A VNI beyond 24 bits (emit).
    VniRange,
    /// The packet would be longer than an IPv4 total length can say (emit).
    TooLong,
}

impl std::fmt::Display for VxlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VxlanError::Truncated => f.write_str("truncated VXLAN header"),
            VxlanError::NoVni => f.write_str("VXLAN I flag clear (no VNI)"),
            VxlanError::Ip(e) => write!(f, "outer IPv4: {e}"),
            VxlanError::NotUdp => f.write_str("outer packet is not a whole UDP datagram"),
            VxlanError::VniRange => f.write_str("VNI beyond 24 bits"),
            VxlanError::TooLong => f.write_str("encapsulated packet longer than 65535 bytes"),
        }
    }
}

impl std::error::Error for VxlanError {}

/// A checked view of a VXLAN header and the inner frame after it (a UDP payload).
#[derive(Debug)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Wraps untrusted bytes: at least 8 of them, with the I flag set.
    pub fn new_checked(buf: T) -> Result<Self, VxlanError> {
        let b = buf.as_ref();
        if b.len() < VXLAN_HEADER_LEN {
            return Err(VxlanError::Truncated);
        }
        if b[field::FLAGS] & FLAG_I == 0 {
            return Err(VxlanError::NoVni);
        }
        Ok(VxlanHeader { buf })
    }
    /// Wraps bytes already checked by [`VxlanHeader::new_checked`]; accessors may panic
    /// on a shorter buffer.
    pub fn new_unchecked(buf: T) -> Self {
        VxlanHeader { buf }
    }
    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        let v = &self.buf.as_ref()[field::VNI];
        u32::from_be_bytes([0, v[0], v[1], v[2]])
    }
    /// The flags byte (the I flag and seven reserved bits, which are ignored).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }
    /// The inner frame (everything after the header; may be empty).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[field::PAYLOAD..]
    }
}

/// The VNI and inner frame of a UDP payload: the receive path's one call.
#[inline]
pub fn decap(udp_payload: &[u8]) -> Result<(u32, &[u8]), VxlanError> {
    let (h, inner) = udp_payload
        .split_first_chunk::<VXLAN_HEADER_LEN>()
        .ok_or(VxlanError::Truncated)?;
    if h[field::FLAGS] & FLAG_I == 0 {
        return Err(VxlanError::NoVni);
    }
    Ok((u32::from_be_bytes([0, h[4], h[5], h[6]]), inner))
}

/// Writes a VXLAN header for `vni`: the I flag, every reserved bit 0.
#[inline]
pub fn emit_header(vni: u32, out: &mut [u8; VXLAN_HEADER_LEN]) -> Result<(), VxlanError> {
    if vni > VNI_MAX {
        return Err(VxlanError::VniRange);
    }
    let v = vni.to_be_bytes();
    *out = [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
    Ok(())
}

/// The outer headers of one VXLAN packet: who sends it to whom, on which ports and VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// the sending tunnel endpoint
    pub src: Ipv4Addr,
    /// the receiving tunnel endpoint
    pub dst: Ipv4Addr,
    /// the UDP source port ([`source_port`] of the inner frame)
    pub src_port: u16,
    /// the UDP destination port (the receiver's, [`VXLAN_PORT`] unless configured)
    pub dst_port: u16,
    /// the VNI (24 bits)
    pub vni: u32,
}

/// What [`Outer::parse`] reads besides the [`Outer`]: fields the switch sets to fixed
/// values when it sends, for tests and traces to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterInfo {
    /// the IPv4 DF flag
    pub dont_fragment: bool,
    /// the outer TTL
    pub ttl: u8,
    /// the IPv4 identification
    pub ip_id: u16,
    /// the IPv4 header checksum is right
    pub ip_checksum_ok: bool,
    /// the UDP checksum field (0: none)
    pub udp_checksum: u16,
}

impl Outer {
    /// Writes the IPv4, UDP and VXLAN headers in front of an inner frame of `inner_len`
    /// bytes into `out` (see the module's contract), with IPv4 identification `ip_id`.
    /// Errors: a VNI beyond 24 bits, a packet longer than 65535 bytes; `out` is then
    /// left as it was.
    #[inline]
    pub fn emit(
        &self,
        ip_id: u16,
        inner_len: usize,
        out: &mut [u8; OUTER_HEADER_LEN],
    ) -> Result<(), VxlanError> {
        if self.vni > VNI_MAX {
            return Err(VxlanError::VniRange);
        }
        let total = inner_len
            .checked_add(OUTER_HEADER_LEN)
            .filter(|&t| t <= usize::from(u16::MAX))
            .ok_or(VxlanError::TooLong)? as u16;
        let udp_len = total - IPV4_MIN_HEADER_LEN as u16;
        let (src, dst) = (u32::from(self.src), u32::from(self.dst));
        // the header checksum from the header's 16-bit words, without reading it back
        let sum = 0x4500
            + u32::from(total)
            + u32::from(ip_id)
            + u32::from(IPV4_DF)
            + (u32::from(OUTER_TTL) << 8 | u32::from(IpProtocol::UDP))
            + (src >> 16)
            + (src & 0xffff)
            + (dst >> 16)
            + (dst & 0xffff);
        let [c0, c1] = (!checksum::fold(sum)).to_be_bytes();
        let [t0, t1] = total.to_be_bytes();
        let [i0, i1] = ip_id.to_be_bytes();
        let [f0, f1] = IPV4_DF.to_be_bytes();
        let [s0, s1, s2, s3] = src.to_be_bytes();
        let [d0, d1, d2, d3] = dst.to_be_bytes();
        let [p0, p1] = self.src_port.to_be_bytes();
        let [q0, q1] = self.dst_port.to_be_bytes();
        let [u0, u1] = udp_len.to_be_bytes();
        let [_, v0, v1, v2] = self.vni.to_be_bytes();
        #[rustfmt::skip]
        let h = [
            0x45, 0, t0, t1, i0, i1, f0, f1, OUTER_TTL, IpProtocol::UDP, c0, c1, // IPv4
            s0, s1, s2, s3, d0, d1, d2, d3,
            p0, p1, q0, q1, u0, u1, 0, 0, // UDP, checksum 0
            FLAG_I, 0, 0, 0, v0, v1, v2, 0, // VXLAN
        ];
        *out = h;
        Ok(())
    }

    /// Parses an outer IPv4 packet (from its IPv4 header: what a raw socket or a packet
    /// capture past the Ethernet header holds) carrying a VXLAN datagram; returns the
    /// outer fields, the fixed ones, and the inner frame. The UDP destination port is
    /// not checked (the caller knows which it listens on); the UDP checksum is not
    /// verified (see [`OuterInfo::udp_checksum`]).
    pub fn parse(packet: &[u8]) -> Result<(Outer, OuterInfo, &[u8]), VxlanError> {
        ipv4::check(packet).map_err(VxlanError::Ip)?;
        let p = ipv4::Ipv4Packet::new_unchecked(packet);
        if p.protocol() != IpProtocol::UDP || p.is_fragment() {
            return Err(VxlanError::NotUdp);
        }
        // the payload up to the total length, borrowed from `packet` (not from `p`)
        let udp = packet
            .get(p.header_len()..p.total_len())
            .ok_or(VxlanError::Truncated)?;
        let u = udp
            .first_chunk::<UDP_HEADER_LEN>()
            .ok_or(VxlanError::Truncated)?;
        let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if ulen < UDP_HEADER_LEN || ulen > udp.len() {
            return Err(VxlanError::NotUdp);
        }
        let (vni, inner) = decap(&udp[UDP_HEADER_LEN..ulen])?;
        let h = p.header();
        let info = OuterInfo {
            dont_fragment: u16::from_be_bytes([h[6], h[7]]) & IPV4_DF != 0,
            ttl: p.ttl(),
            ip_id: u16::from_be_bytes([h[4], h[5]]),
            ip_checksum_ok: p.verify_checksum(),
            udp_checksum: u16::from_be_bytes([u[6], u[7]]),
        };
        let outer = Outer {
            src: p.src(),
            dst: p.dst(),
            src_port: u16::from_be_bytes([u[0], u[1]]),
            dst_port: u16::from_be_bytes([u[2], u[3]]),
            vni,
        };
        Ok((outer, info, inner))
    }
}

/// The longest inner frame (its Ethernet header included) that fits an underlay
/// packet of `underlay_mtu` bytes: `underlay_mtu - 36`; 0 when nothing fits.
#[inline]
pub fn max_inner_frame(underlay_mtu: usize) -> usize {
    underlay_mtu.saturating_sub(OUTER_HEADER_LEN)
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xbf58_476d_1ce4_e5b9;
const K2: u64 = 0x94d0_49bb_1331_11eb;

/// A 64×64→128-bit multiply folded to 64 bits: the mixing step of the flow hash.
#[inline(always)]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A 32-bit hash of an inner frame's flow (see the module's contract for what it
/// covers). Deterministic: the same bytes in those fields give the same hash in every
/// process on every host. A frame shorter than an Ethernet header hashes to 0.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Some((e, p)) = frame.split_first_chunk::<ETHERNET_HEADER_LEN>() else {
        return 0;
    };
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, t0, t1] = *e;
    let a = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let b = u64::from_le_bytes([b0, b1, b2, b3, t0, t1, 0, 0]);
    let mut h = mix(a ^ K0, b ^ K1);
    if u16::from_be_bytes([t0, t1]) == EtherType::IPV4 && ipv4::check(p).is_ok() {
        if let Some(ip) = p.first_chunk::<IPV4_MIN_HEADER_LEN>() {
            let addrs = u64::from_le_bytes([
                ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19],
            ]);
            let proto = ip[9];
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let hl = usize::from(ip[0] & 0x0f) * 4;
            let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let ports = if !fragment
                && matches!(proto, IpProtocol::TCP | IpProtocol::UDP | SCTP)
                && hl + 4 <= tl
            {
                p.get(hl..hl + 4)
                    .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
                    .unwrap_or(0)
            } else {
                0
            };
            h = mix(h ^ addrs, K2 ^ (u64::from(proto) << 32 | u64::from(ports)));
        }
    }
    (h ^ (h >> 32)) as u32
}

/// The UDP source port of the VXLAN packet carrying `inner`: 49152 plus 14 bits of
/// [`flow_hash`] (RFC 7348 section 5's range, 49152..=65535).
#[inline]
pub fn source_port(inner: &[u8]) -> u16 {
    SRC_PORT_MIN | (flow_hash(inner) >> 18) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{self, Ends};
    use crate::MacAddr;

    fn ends() -> Ends {
        Ends {
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            sip: Ipv4Addr::new(10, 0, 1, 5),
            dip: Ipv4Addr::new(10, 0, 2, 9),
        }
    }

    fn outer() -> Outer {
        Outer {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            src_port: 50000,
            dst_port: VXLAN_PORT,
            vni: 0x12_3456,
        }
    }

    /// RFC 7348 section 5's layout, byte by byte: flags 0x08, 24 reserved bits, the VNI,
    /// 8 reserved bits.
    #[test]
    fn header_fixture() {
        let mut h = [0u8; 8];
        emit_header(0x12_3456, &mut h).unwrap();
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let v = VxlanHeader::new_checked(&h[..]).unwrap();
        assert_eq!(v.vni(), 0x12_3456);
        assert!(v.payload().is_empty());
        assert_eq!(emit_header(VNI_MAX + 1, &mut h), Err(VxlanError::VniRange));
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0], "left alone");
        emit_header(VNI_MAX, &mut h).unwrap();
        assert_eq!(decap(&h), Ok((VNI_MAX, &[0u8; 0][..])));
    }

    #[test]
    fn reserved_bits_are_ignored_and_the_i_flag_is_required() {
        // every reserved bit set (a Group Policy or GPE sender): the VNI still reads
        let d = [0xff, 0xff, 0xff, 0xff, 0, 0, 42, 0xff, 0xaa, 0xbb];
        assert_eq!(decap(&d), Ok((42, &[0xaa, 0xbb][..])));
        let v = VxlanHeader::new_checked(&d[..]).unwrap();
        assert_eq!((v.vni(), v.flags(), v.payload()), (42, 0xff, &d[8..]));
        // I flag clear: refused, whatever else is set
        let mut n = d;
        n[0] = 0xf7;
        assert_eq!(decap(&n), Err(VxlanError::NoVni));
        assert_eq!(
            VxlanHeader::new_checked(&n[..]).unwrap_err(),
            VxlanError::NoVni
        );
        for len in 0..8 {
            assert_eq!(decap(&d[..len]), Err(VxlanError::Truncated), "len {len}");
        }
    }

    #[test]
    fn outer_headers_are_right_and_parse_back() {
        let inner = build::udp(ends(), 64, 1234, 53, b"hello");
        let mut h = [0u8; OUTER_HEADER_LEN];
        outer().emit(0xbeef, inner.len(), &mut h).unwrap();
        // fixed fields, by offset
        assert_eq!(h[0], 0x45);
        assert_eq!(
            usize::from(u16::from_be_bytes([h[2], h[3]])),
            36 + inner.len()
        );
        assert_eq!(&h[4..6], &[0xbe, 0xef]);
        assert_eq!(&h[6..8], &[0x40, 0], "DF, no offset");
        assert_eq!((h[8], h[9]), (64, 17));
        assert_eq!(checksum::checksum(&h[..20]), 0, "IPv4 header checksum");
        assert_eq!(&h[20..22], &50000u16.to_be_bytes());
        assert_eq!(&h[22..24], &4789u16.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([h[24], h[25]])),
            16 + inner.len()
        );
        assert_eq!(&h[26..28], &[0, 0], "UDP checksum none");
        assert_eq!(&h[28..36], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let mut pkt = h.to_vec();
        pkt.extend_from_slice(&inner);
        let (o, info, got) = Outer::parse(&pkt).unwrap();
        assert_eq!(o, outer());
        assert_eq!(
            info,
            OuterInfo {
                dont_fragment: true,
                ttl: 64,
                ip_id: 0xbeef,
                ip_checksum_ok: true,
                udp_checksum: 0,
            }
        );
        assert_eq!(got, &inner[..]);
        // the checksum follows every field it covers
        let mut o2 = outer();
        o2.src = Ipv4Addr::new(198, 51, 100, 200);
        o2.dst = Ipv4Addr::new(203, 0, 113, 7);
        let mut h2 = [0u8; OUTER_HEADER_LEN];
        o2.emit(0xffff, 1400, &mut h2).unwrap();
        assert_eq!(checksum::checksum(&h2[..20]), 0);
    }

    #[test]
    fn emit_refuses_what_cannot_be_said() {
        let mut h = [7u8; OUTER_HEADER_LEN];
        assert_eq!(
            outer().emit(1, 65535 - 36 + 1, &mut h),
            Err(VxlanError::TooLong)
        );
        assert_eq!(
            outer().emit(1, usize::MAX, &mut h),
            Err(VxlanError::TooLong)
        );
        let mut o = outer();
        o.vni = 1 << 24;
        assert_eq!(o.emit(1, 64, &mut h), Err(VxlanError::VniRange));
        assert_eq!(h, [7u8; OUTER_HEADER_LEN], "left alone");
        assert!(outer().emit(1, 65535 - 36, &mut h).is_ok());
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 65535);
    }

    #[test]
    fn parse_refuses_what_is_not_a_vxlan_datagram() {
        let inner = build::udp(ends(), 64, 1234, 53, b"x");
        let mut h = [0u8; OUTER_HEADER_LEN];
        outer().emit(1, inner.len(), &mut h).unwrap();
        let mut pkt = h.to_vec();
        pkt.extend_from_slice(&inner);
        // not UDP
        let mut p = pkt.clone();
        p[9] = 6;
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::NotUdp);
        // a fragment
        let mut p = pkt.clone();
        p[6] = 0x20;
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::NotUdp);
        // UDP length past the packet, and below the header
        let mut p = pkt.clone();
        p[24..26].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::NotUdp);
        p[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::NotUdp);
        // UDP length that leaves no whole VXLAN header
        p[24..26].copy_from_slice(&15u16.to_be_bytes());
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::Truncated);
        // I flag clear
        let mut p = pkt.clone();
        p[28] = 0;
        assert_eq!(Outer::parse(&p).unwrap_err(), VxlanError::NoVni);
        // bad IPv4
        let mut p = pkt.clone();
        p[0] = 0x65;
        assert_eq!(
            Outer::parse(&p).unwrap_err(),
            VxlanError::Ip(WireError::BadVersion)
        );
        // every prefix: an error or the whole thing, never a panic
        for n in 0..pkt.len() {
            assert!(Outer::parse(&pkt[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn mtu_arithmetic() {
        assert_eq!(OVERHEAD, 50);
        assert_eq!(max_inner_frame(1500), 1464);
        // a guest with MTU 1450 sends 1464-byte frames: exactly what fits
        assert_eq!(max_inner_frame(1500), 1450 + ETHERNET_HEADER_LEN);
        assert_eq!(max_inner_frame(20), 0);
    }

    /// `source_port` of `build::udp(ends(), _, 40000, 53, _)`.
    const PINNED: u16 = 61807;

    #[test]
    fn source_port_is_stable_per_flow_and_in_range() {
        let f = build::udp(ends(), 64, 40000, 53, b"one");
        // same flow, other payload, TTL and padding: same port
        let mut g = build::udp(ends(), 12, 40000, 53, b"a longer payload");
        g.extend_from_slice(&[0; 7]);
        assert_eq!(source_port(&f), source_port(&g));
        assert_eq!(flow_hash(&f), flow_hash(&g));
        // the value is a function of the bytes alone (no per-process seed): pinned, so
        // a change that would send one flow down two paths on two hosts shows up here
        assert_eq!(
            source_port(&f),
            PINNED,
            "flow hash changed: {}",
            source_port(&f)
        );
        for b in [&f[..], &[][..], &[1; 13][..], &[0xff; 14][..]] {
            let p = source_port(b);
            assert!(p >= SRC_PORT_MIN, "{p}");
        }
        assert_eq!(flow_hash(&[0; 13]), 0);
    }

    #[test]
    fn source_port_follows_each_field_of_the_flow() {
        let base = build::udp(ends(), 64, 40000, 53, b"one");
        let p0 = source_port(&base);
        // each field on its own moves the port: over 64 values of each, almost all land
        // on another port than the base flow's and on distinct ports (14 bits: a few
        // collisions are chance, not a missing field)
        type Variant = (&'static str, fn(u16) -> Vec<u8>);
        let field_variants: [Variant; 7] = [
            ("src port", |i| {
                build::udp(ends(), 64, 40000 + i, 53, b"one")
            }),
            ("dst port", |i| {
                build::udp(ends(), 64, 40000, 53 + i, b"one")
            }),
            ("src ip", |i| {
                let mut e = ends();
                e.sip = Ipv4Addr::from(u32::from(e.sip) + u32::from(i));
                build::udp(e, 64, 40000, 53, b"one")
            }),
            ("dst ip", |i| {
                let mut e = ends();
                e.dip = Ipv4Addr::from(u32::from(e.dip) + u32::from(i));
                build::udp(e, 64, 40000, 53, b"one")
            }),
            ("src mac", |i| {
                let mut e = ends();
                e.src.0[5] = e.src.0[5].wrapping_add(i as u8);
                build::udp(e, 64, 40000, 53, b"one")
            }),
            ("dst mac", |i| {
                let mut e = ends();
                e.dst.0[4] = e.dst.0[4].wrapping_add(i as u8);
                build::udp(e, 64, 40000, 53, b"one")
            }),
            ("protocol", |i| {
                let mut f = build::udp(ends(), 64, 40000, 53, b"one");
                f[14 + 9] = f[14 + 9].wrapping_add(i as u8);
                f
            }),
        ];
        for (name, make) in field_variants {
            let mut ports: Vec<u16> = (1..=64).map(|i| source_port(&make(i))).collect();
            let same = ports.iter().filter(|&&p| p == p0).count();
            assert!(same <= 2, "{name}: {same} of 64 variants kept the port");
            ports.sort_unstable();
            ports.dedup();
            assert!(
                ports.len() >= 56,
                "{name}: only {} distinct ports",
                ports.len()
            );
        }
    }

    #[test]
    fn fragments_and_non_ipv4_hash_without_ports() {
        let f = build::udp(ends(), 64, 40000, 53, b"one");
        // a first fragment (MF) and a later one: ports are not read, so both give the
        // port of the same addresses whatever the "ports" bytes hold
        let mut a = f.clone();
        a[14 + 6] = 0x20; // MF
        let mut b = a.clone();
        b[34..38].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(source_port(&a), source_port(&b));
        // ICMP: no ports
        let mut c = f.clone();
        c[14 + 9] = IpProtocol::ICMP;
        let mut d = c.clone();
        d[34..38].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(source_port(&c), source_port(&d));
        // ARP and malformed IPv4 hash the Ethernet header only
        let arp = build::arp_request(
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 1, 5),
            Ipv4Addr::new(10, 0, 1, 1),
        );
        let mut arp2 = arp.clone();
        arp2[30] ^= 0xff;
        assert_eq!(source_port(&arp), source_port(&arp2));
        let mut bad = f.clone();
        bad[14] = 0x65;
        let mut bad2 = bad.clone();
        bad2[30] ^= 0xff;
        assert_eq!(source_port(&bad), source_port(&bad2));
    }
}
