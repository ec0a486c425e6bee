//! 1:1 address translation of an IPv4 packet in place (EIP, SPEC 7), keeping every
//! checksum valid with RFC 1624 incremental updates: the IPv4 header checksum, the TCP
//! or UDP checksum (its pseudo-header holds the address), and for an ICMP error the
//! embedded packet's address, its header checksum, its TCP/UDP checksum and the ICMP
//! checksum that covers them.
//!
//! The cost is constant per packet (no checksum is recomputed over the payload), and a
//! non-first fragment, which carries no transport header, gets only the IPv4 update —
//! the incremental update of the first fragment's transport checksum stays right for
//! the reassembled datagram.
//!
//! The caller has validated the IPv4 header (the classifier has: version, IHL, total
//! length); anything shorter than what a field needs is left as it is, never indexed.

use crate::checksum::{update16, update32};
use crate::ipv4::IpProtocol;
use crate::l4;

/// Which address of a header is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// the source (outbound: private address → EIP)
    Src,
    /// the destination (inbound: EIP → private address)
    Dst,
}

impl Side {
    fn offset(self) -> usize {
        match self {
            Side::Src => 12,
            Side::Dst => 16,
        }
    }
    /// The embedded packet of an ICMP error travelled the other way.
    fn opposite(self) -> Side {
        match self {
            Side::Src => Side::Dst,
            Side::Dst => Side::Src,
        }
    }
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(at..at + 2)?.first_chunk()?))
}

fn get32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..at + 4)?.first_chunk()?))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// ICMP types whose body is the header of the packet that caused them.
fn is_icmp_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Translates the `side` address of the IPv4 packet `ip` (from its header on) to `new`
/// and returns the old address; `None` (nothing changed) when `ip` is shorter than its
/// header.
///
/// `partial`: the TCP/UDP checksum field holds the (not inverted) pseudo-header sum a
/// checksum offload will complete (virtio `NEEDS_CSUM`, Linux `CHECKSUM_PARTIAL`), not
/// a finished checksum; it is updated in that form.
pub fn translate(ip: &mut [u8], side: Side, new: u32, partial: bool) -> Option<u32> {
    let hl = usize::from(*ip.first()? & 0x0f) * 4;
    if hl < 20 || ip.len() < hl {
        return None;
    }
    let old = get32(ip, side.offset())?;
    if old == new {
        return Some(old);
    }
    put32(ip, side.offset(), new);
    let c = get16(ip, 10)?;
    put16(ip, 10, update32(c, old, new));
    let first_fragment = get16(ip, 6)? & 0x1fff == 0;
    if !first_fragment {
        return Some(old);
    }
    let proto = ip[9];
    let end = usize::from(get16(ip, 2)?).clamp(hl, ip.len());
    let body = &mut ip[hl..end];
    match proto {
        IpProtocol::TCP | IpProtocol::UDP if partial => {
            if let Some(off) = l4::pseudo_checksum_offset(proto) {
                if let Some(c) = get16(body, off) {
                    put16(body, off, !update32(!c, old, new));
                }
            }
        }
        IpProtocol::TCP | IpProtocol::UDP => l4::update_for_address(proto, body, old, new),
        IpProtocol::ICMP => translate_icmp_error(body, side.opposite(), old, new),
        _ => {}
    }
    Some(old)
}

/// In an ICMP error, the embedded packet's `side` address, if it is `old`, becomes
/// `new`; the ICMP checksum follows every word changed.
fn translate_icmp_error(icmp: &mut [u8], side: Side, old: u32, new: u32) {
    if icmp.len() < 8 + 20 || !is_icmp_error(icmp[0]) {
        return;
    }
    let (hdr, inner) = icmp.split_at_mut(8);
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if inner[0] >> 4 != 4 || ihl < 20 || inner.len() < ihl {
        return;
    }
    if get32(inner, side.offset()) != Some(old) {
        return;
    }
    let Some(mut ck) = get16(hdr, 2) else {
        return;
    };
    put32(inner, side.offset(), new);
    ck = update32(ck, old, new);
    if let Some(ic_old) = get16(inner, 10) {
        let ic_new = update32(ic_old, old, new);
        put16(inner, 10, ic_new);
        ck = update16(ck, ic_old, ic_new);
    }
    let first_fragment = get16(inner, 6).is_some_and(|f| f & 0x1fff == 0);
    let proto = inner[9];
    if let (true, Some(off)) = (first_fragment, l4::pseudo_checksum_offset(proto)) {
        let l4b = &mut inner[ihl..];
        if let Some(c_old) = get16(l4b, off) {
            l4::update_for_address(proto, l4b, old, new);
            if let Some(c_new) = get16(l4b, off) {
                ck = update16(ck, c_old, c_new);
            }
        }
    }
    put16(hdr, 2, ck);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use smoltcp::wire::{Icmpv4Packet, IpAddress, Ipv4Packet as SIp, TcpPacket, UdpPacket};

    use super::*;
    use crate::{build, checksum, MacAddr};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const PRIV: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
    const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const OUT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// A frame from A to B, from `sip` to `dip`.
    fn ends(sip: Ipv4Addr, dip: Ipv4Addr) -> build::Ends {
        build::Ends {
            dst: B,
            src: A,
            sip,
            dip,
        }
    }

    fn tcp(sip: Ipv4Addr, dip: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        build::tcp(ends(sip, dip), 64, 40000, 80, payload)
    }

    fn a(ip: Ipv4Addr) -> IpAddress {
        IpAddress::Ipv4(ip)
    }

    fn ip_ok(f: &[u8]) -> SIp<&[u8]> {
        let p = SIp::new_checked(&f[14..]).unwrap();
        assert!(p.verify_checksum(), "IPv4 header checksum");
        p
    }

    #[test]
    fn tcp_outbound_and_back() {
        let mut f = tcp(PRIV, OUT, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            translate(&mut f[14..], Side::Src, EIP.into(), false),
            Some(PRIV.into())
        );
        let p = ip_ok(&f);
        assert_eq!(p.src_addr(), EIP);
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(
            t.verify_checksum(&a(EIP), &a(OUT)),
            "TCP checksum after SNAT"
        );
        // and the reply, inbound
        let mut r = tcp(OUT, EIP, b"HTTP/1.0 200 OK\r\n");
        translate(&mut r[14..], Side::Dst, PRIV.into(), false);
        let p = ip_ok(&r);
        assert_eq!(p.dst_addr(), PRIV);
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(
            t.verify_checksum(&a(OUT), &a(PRIV)),
            "TCP checksum after DNAT"
        );
    }

    #[test]
    fn udp_with_and_without_checksum() {
        let mut f = build::udp(ends(OUT, EIP), 64, 53, 40000, b"answer");
        translate(&mut f[14..], Side::Dst, PRIV.into(), false);
        let p = ip_ok(&f);
        let u = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum(&a(OUT), &a(PRIV)));
        // checksum 0 = none: stays 0
        let mut g = build::udp(ends(OUT, EIP), 64, 53, 40000, b"answer");
        g[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        translate(&mut g[14..], Side::Dst, PRIV.into(), false);
        assert_eq!(&g[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
        ip_ok(&g);
    }

    #[test]
    fn echo_needs_only_the_ip_header() {
        let mut f = build::icmp_echo(B, A, OUT, EIP, 64, 7, 1);
        let before = f[34..].to_vec();
        translate(&mut f[14..], Side::Dst, PRIV.into(), false);
        ip_ok(&f);
        assert_eq!(f[34..], before[..], "the ICMP message is untouched");
    }

    #[test]
    fn non_first_fragment_changes_only_the_ip_header() {
        let mut f = build::udp(ends(OUT, EIP), 64, 53, 40000, b"fragment");
        f[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128
        let c = checksum::checksum(&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let l4 = f[34..].to_vec();
        translate(&mut f[14..], Side::Dst, PRIV.into(), false);
        ip_ok(&f);
        assert_eq!(f[34..], l4[..]);
    }

    /// An ICMP error the guest sends about a packet that came in through the EIP: the
    /// embedded packet's destination is the private address and must become the EIP.
    #[test]
    fn icmp_error_embedded_packet_follows() {
        let inbound = build::udp(
            build::Ends {
                dst: A,
                src: B,
                sip: OUT,
                dip: PRIV,
            },
            60,
            5000,
            9999,
            b"probe-payload",
        );
        let inner = &inbound[14..14 + 20 + 8 + 13];
        let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(inner);
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = build::ipv4(B, A, PRIV, OUT, 64, IpProtocol::ICMP, &m);
        translate(&mut f[14..], Side::Src, EIP.into(), false);
        let p = ip_ok(&f);
        assert_eq!(p.src_addr(), EIP);
        let icmp = Icmpv4Packet::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum(), "ICMP checksum");
        let emb = SIp::new_checked(&p.payload()[8..]).unwrap();
        assert!(emb.verify_checksum(), "embedded IPv4 checksum");
        assert_eq!(emb.dst_addr(), EIP);
        assert_eq!(emb.src_addr(), OUT);
        let u = UdpPacket::new_checked(emb.payload()).unwrap();
        assert!(u.verify_checksum(&a(OUT), &a(EIP)), "embedded UDP checksum");

        // inbound error about an outbound packet: embedded source EIP → private
        let outbound = tcp(EIP, OUT, b"x");
        let mut m = vec![11, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&outbound[14..]);
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = build::ipv4(A, B, OUT, EIP, 64, IpProtocol::ICMP, &m);
        translate(&mut f[14..], Side::Dst, PRIV.into(), false);
        let p = ip_ok(&f);
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());
        let emb = SIp::new_checked(&p.payload()[8..]).unwrap();
        assert!(emb.verify_checksum());
        assert_eq!(emb.src_addr(), PRIV);
        let t = TcpPacket::new_checked(emb.payload()).unwrap();
        assert!(
            t.verify_checksum(&a(PRIV), &a(OUT)),
            "embedded TCP checksum"
        );
    }

    /// A checksum-offload frame: the field holds the pseudo-header sum; after NAT, a
    /// device completing it (sum from the L4 header on, field included) must produce
    /// the right checksum for the new addresses.
    #[test]
    fn partial_checksums_stay_partial_and_complete_right() {
        for (proto, side) in [(IpProtocol::TCP, Side::Src), (IpProtocol::UDP, Side::Dst)] {
            let (sip, dip) = (PRIV, OUT);
            let mut l4 = vec![0u8; 40];
            l4[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
            if proto == IpProtocol::TCP {
                l4[12] = 5 << 4;
            } else {
                l4[4..6].copy_from_slice(&40u16.to_be_bytes());
            }
            l4[20..].copy_from_slice(b"partial checksum pay");
            let off = l4::pseudo_checksum_offset(proto).unwrap();
            let mut acc = checksum::sum(0, &sip.octets());
            acc = checksum::sum(acc, &dip.octets());
            acc += u32::from(proto) + l4.len() as u32;
            let partial = checksum::fold(acc); // not inverted: what Linux leaves
            l4[off..off + 2].copy_from_slice(&partial.to_be_bytes());
            let mut f = build::ipv4(B, A, sip, dip, 64, proto, &l4);
            let new = if side == Side::Src {
                EIP
            } else {
                Ipv4Addr::new(10, 0, 9, 9)
            };
            translate(&mut f[14..], side, new.into(), true);
            // complete it as the device would
            let body = &mut f[34..];
            let c = !checksum::fold(checksum::sum(0, body));
            body[off..off + 2].copy_from_slice(&c.to_be_bytes());
            let p = ip_ok(&f);
            let (s2, d2) = (p.src_addr(), p.dst_addr());
            let ok = if proto == IpProtocol::TCP {
                TcpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(&a(s2), &a(d2))
            } else {
                UdpPacket::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum(&a(s2), &a(d2))
            };
            assert!(ok, "proto {proto}: completed checksum after NAT");
        }
    }

    #[test]
    fn short_or_odd_input_never_panics() {
        for n in 0..60 {
            let mut f = build::udp(ends(OUT, EIP), 64, 1, 2, b"abcdefgh")[14..].to_vec();
            f.truncate(n);
            let _ = translate(&mut f, Side::Dst, 1, false);
            let mut m = vec![3u8; n];
            let _ = translate(&mut m, Side::Src, 2, false);
        }
        // an ICMP error whose embedded header is cut short
        let mut m = vec![3, 1, 0, 0, 0, 0, 0, 0, 0x45, 0, 0];
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = build::ipv4(B, A, PRIV, OUT, 64, IpProtocol::ICMP, &m);
        translate(&mut f[14..], Side::Src, EIP.into(), false);
        ip_ok(&f);
    }
}
