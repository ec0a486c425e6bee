//! The one-pass classifier the pipeline runs on every received frame.
//!
//! It validates everything later stages read (SPEC 2.1) and extracts the fields they
//! need into a small `Copy` struct, so stages never re-parse. IPv6 takes a second step,
//! [`classify_ipv6`], on frames the first found to be IPv6.

use std::net::Ipv6Addr;

use crate::arp::{self, ArpInfo};
use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::ipv4::{self, IpProtocol, IPV4_MIN_HEADER_LEN};
use crate::ipv6::{self, Ipv6Error, Ipv6Packet, NextHeader, Upper};
use crate::nd::NdKind;
use crate::{MacKey, WireError};

/// What the classifier found above Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// An Ethernet/IPv4 ARP packet.
    Arp(ArpInfo),
    /// A well-formed IPv4 header (addresses host order).
    Ipv4 {
        /// source address
        src: u32,
        /// destination address
        dst: u32,
        /// protocol number
        proto: u8,
        /// time to live
        ttl: u8,
        /// true when MF is set or the offset is non-zero
        fragment: bool,
        /// a DHCP client packet: source 0.0.0.0, UDP 68 to 67, not a fragment (the only
        /// traffic SPEC 2.3 allows from 0.0.0.0). Computed only when the source is 0.
        dhcp_client: bool,
    },
    /// An 802.1Q or 802.1ad tag (access ports drop these, SPEC 2.1).
    Vlan,
    /// IPv6 (SPEC 9.1, 12). Its headers are not read here: [`classify_ipv6`] does
    /// that, on the Ethernet payload, for the pipeline stages that handle IPv6.
    Ipv6,
    /// Any other EtherType.
    Other(u16),
}

/// A classified frame: both MACs and the L3 summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// Ethernet destination (a [`MacKey`]: see there why not a `MacAddr`)
    pub dst: MacKey,
    /// Ethernet source
    pub src: MacKey,
    /// what follows the Ethernet header
    pub l3: L3,
}

/// Classifies untrusted bytes. Never panics; every malformation is a [`WireError`].
/// Always inlined: out of line, its result goes through memory on every packet.
#[inline(always)]
pub fn classify(frame: &[u8]) -> Result<Classified, WireError> {
    let (e, p) = frame
        .split_first_chunk::<ETHERNET_HEADER_LEN>()
        .ok_or(WireError::Truncated)?;
    let [d @ .., _, _, _, _, _, _, _, _] = e;
    let [_, _, _, _, _, _, s @ .., t0, t1] = e;
    let dst = MacKey::from_bytes(d);
    let src = MacKey::from_bytes(s);
    let et = u16::from_be_bytes([*t0, *t1]);
    let l3 = match et {
        EtherType::IPV4 => {
            ipv4::check(p)?;
            // the fixed header as an array: the field reads below need no bounds checks
            let h: &[u8; IPV4_MIN_HEADER_LEN] = p
                .first_chunk::<IPV4_MIN_HEADER_LEN>()
                .ok_or(WireError::Truncated)?;
            let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            let proto = h[9];
            let dhcp_client = src == 0 && !fragment && proto == IpProtocol::UDP && {
                let hl = usize::from(h[0] & 0x0f) * 4;
                let tl = usize::from(u16::from_be_bytes([h[2], h[3]]));
                tl >= hl + 4 && p.get(hl..hl + 4) == Some(&[0, 68, 0, 67][..])
            };
            L3::Ipv4 {
                src,
                dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
                proto,
                ttl: h[8],
                fragment,
                dhcp_client,
            }
        }
        EtherType::ARP => L3::Arp(arp::parse(p)?),
        EtherType::VLAN | EtherType::QINQ => L3::Vlan,
        EtherType::IPV6 => L3::Ipv6,
        other => L3::Other(other),
    };
    Ok(Classified { dst, src, l3 })
}

/// What follows an IPv6 packet's extension headers, as the pipeline dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Upper {
    /// A neighbour discovery message of this kind, not in a fragment. Only its type was
    /// read: [`crate::nd::parse`] validates it before the switch acts on it.
    Nd(NdKind),
    /// Any other ICMPv6 message (at least type, code and checksum present).
    Icmpv6 {
        /// type
        ty: u8,
        /// code
        code: u8,
    },
    /// TCP, its 20-byte header present.
    Tcp {
        /// source port
        sport: u16,
        /// destination port
        dport: u16,
    },
    /// UDP, its 8-byte header present.
    Udp {
        /// source port
        sport: u16,
        /// destination port
        dport: u16,
    },
    /// Another upper-layer protocol, unread.
    Other(u8),
    /// Next header 59.
    NoNext,
    /// A fragment after the first: no upper-layer header (the fragment header's next
    /// header, for information).
    LaterFragment(u8),
    /// ESP, AH or an extension header the switch does not walk.
    Opaque(u8),
}

/// An IPv6 packet's summary: what the pipeline's IPv6 stages read, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified6 {
    /// source address
    pub src: Ipv6Addr,
    /// destination address
    pub dst: Ipv6Addr,
    /// hop limit
    pub hop_limit: u8,
    /// offset of the upper-layer header from the start of the IPv6 header (for
    /// [`V6Upper::LaterFragment`]: of the fragment data)
    pub l4_offset: usize,
    /// fixed header plus payload length (the packet without Ethernet padding)
    pub packet_len: usize,
    /// a fragment header was present
    pub fragment: bool,
    /// what follows the extension headers
    pub upper: V6Upper,
}

/// Classifies the untrusted Ethernet payload of a frame [`classify`] found to be
/// [`L3::Ipv6`]: checks the fixed header, walks the extension headers
/// ([`Ipv6Packet::walk`]), and reads the transport ports or the ICMPv6 type. Never
/// panics; every malformation is an [`Ipv6Error`] for the pipeline to count (SPEC 2.1,
/// 12). An upper-layer header too short for its fixed part (TCP 20 bytes, UDP 8,
/// ICMPv6 4) is [`Ipv6Error::L4Truncated`], in a first fragment too (RFC 7112: the
/// first fragment holds the whole header chain); an ND message in a fragment is
/// [`Ipv6Error::FragmentedNd`] (RFC 6980); a multicast source is
/// [`Ipv6Error::MulticastSource`] (RFC 4291 2.7).
///
/// A separate step rather than a field of [`L3::Ipv6`]: two IPv6 addresses would
/// double the size of [`Classified`], which every IPv4 packet carries through the
/// pipeline in registers.
#[inline]
pub fn classify_ipv6(ip: &[u8]) -> Result<Classified6, Ipv6Error> {
    ipv6::check(ip)?;
    let p = Ipv6Packet::new_unchecked(ip);
    let src = p.src();
    if ipv6::is_multicast(&src) {
        return Err(Ipv6Error::MulticastSource);
    }
    let packet_len = p.packet_len();
    let pkt = ip.get(..packet_len).unwrap_or(&[]);
    // the common case, no extension header, without the walk (it would find the same)
    let (upper, offset, fragment) = match p.next_header() {
        nh @ (NextHeader::TCP | NextHeader::UDP | NextHeader::ICMPV6) => {
            (Upper::Proto(nh), ipv6::IPV6_HEADER_LEN, false)
        }
        _ => {
            let chain = p.walk()?;
            (chain.upper, chain.offset, chain.is_fragment())
        }
    };
    let l4 = pkt.get(offset..).unwrap_or(&[]);
    let ports = |min: usize| -> Result<(u16, u16), Ipv6Error> {
        match l4.get(..min) {
            Some(h) => Ok((
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            )),
            None => Err(Ipv6Error::L4Truncated),
        }
    };
    let upper = match upper {
        Upper::Proto(NextHeader::TCP) => {
            let (sport, dport) = ports(20)?;
            V6Upper::Tcp { sport, dport }
        }
        Upper::Proto(NextHeader::UDP) => {
            let (sport, dport) = ports(8)?;
            V6Upper::Udp { sport, dport }
        }
        Upper::Proto(NextHeader::ICMPV6) => {
            let (tc, _) = ports(4)?;
            let [ty, code] = tc.to_be_bytes();
            match NdKind::from_type(ty) {
                Some(_) if fragment => return Err(Ipv6Error::FragmentedNd),
                Some(k) => V6Upper::Nd(k),
                None => V6Upper::Icmpv6 { ty, code },
            }
        }
        Upper::Proto(x) => V6Upper::Other(x),
        Upper::NoNext => V6Upper::NoNext,
        Upper::LaterFragment(x) => V6Upper::LaterFragment(x),
        Upper::Opaque(x) => V6Upper::Opaque(x),
    };
    Ok(Classified6 {
        src,
        dst: p.dst(),
        hop_limit: p.hop_limit(),
        l4_offset: offset,
        packet_len,
        fragment,
        upper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, MacAddr};

    fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        v.extend_from_slice(&et.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn dhcp_client_is_recognised() {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
        ];
        ip.extend_from_slice(&[0, 68, 0, 67, 0, 8, 0, 0]);
        let c = classify(&eth(0x0800, &ip)).unwrap();
        match c.l3 {
            L3::Ipv4 {
                dhcp_client, src, ..
            } => {
                assert_eq!((dhcp_client, src), (true, 0));
            }
            _ => panic!("not ipv4"),
        }
        assert_eq!(c.src.mac(), crate::MacAddr([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn fragments_are_never_dhcp() {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 17, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(&[0, 68, 0, 67, 0, 8, 0, 0]);
        let c = classify(&eth(0x0800, &ip)).unwrap();
        assert!(matches!(
            c.l3,
            L3::Ipv4 {
                fragment: true,
                dhcp_client: false,
                ..
            }
        ));
    }

    #[test]
    fn other_ethertypes() {
        assert_eq!(classify(&eth(0x8100, &[0; 4])).unwrap().l3, L3::Vlan);
        assert_eq!(classify(&eth(0x88a8, &[0; 4])).unwrap().l3, L3::Vlan);
        assert_eq!(classify(&eth(0x86dd, &[])).unwrap().l3, L3::Ipv6);
        assert_eq!(classify(&eth(0x88cc, &[])).unwrap().l3, L3::Other(0x88cc));
        assert_eq!(classify(&[0u8; 5]), Err(WireError::Truncated));
        assert_eq!(
            classify(&eth(0x0800, &[0x45; 3])),
            Err(WireError::Truncated)
        );
        assert_eq!(classify(&eth(0x0806, &[0; 5])), Err(WireError::Truncated));
        assert_eq!(classify(&eth(0x0806, &[0; 10])), Err(WireError::BadArp));
    }

    const G6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 5);
    const F6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 9);

    fn ends6() -> build::Ends6 {
        build::Ends6 {
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            sip: G6,
            dip: F6,
        }
    }

    fn v6(f: &[u8]) -> Result<Classified6, Ipv6Error> {
        assert_eq!(
            classify(f).unwrap().l3,
            L3::Ipv6,
            "SPEC 9.1: still L3::Ipv6"
        );
        classify_ipv6(&f[ETHERNET_HEADER_LEN..])
    }

    /// SPEC 12.5: TCP and UDP over IPv6 classify with addresses, hop limit and ports.
    #[test]
    fn ipv6_transport_classifies() {
        let c = v6(&build::tcp6(ends6(), 64, 443, 50000, b"hi")).unwrap();
        assert_eq!(
            c,
            Classified6 {
                src: G6,
                dst: F6,
                hop_limit: 64,
                l4_offset: 40,
                packet_len: 40 + 22,
                fragment: false,
                upper: V6Upper::Tcp {
                    sport: 443,
                    dport: 50000
                },
            }
        );
        let mut u = build::udp6(ends6(), 9, 546, 547, b"x");
        u.extend_from_slice(&[0; 20]); // padding is not packet
        let c = v6(&u).unwrap();
        assert_eq!(
            (c.upper, c.hop_limit, c.packet_len),
            (
                V6Upper::Udp {
                    sport: 546,
                    dport: 547
                },
                9,
                49
            )
        );
        let c = v6(&build::ipv6(ends6(), 64, 132, &[0; 12])).unwrap();
        assert_eq!(c.upper, V6Upper::Other(132));
        let c = v6(&build::ipv6(ends6(), 64, 59, &[])).unwrap();
        assert_eq!(c.upper, V6Upper::NoNext);
        let c = v6(&build::ipv6(ends6(), 64, 50, &[0; 16])).unwrap();
        assert_eq!(c.upper, V6Upper::Opaque(50));
        let mc = build::Ends6 {
            sip: "ff02::1".parse().unwrap(),
            ..ends6()
        };
        assert_eq!(
            v6(&build::udp6(mc, 64, 1, 2, b"")),
            Err(Ipv6Error::MulticastSource)
        );
    }

    /// SPEC 12.2, 12.3: ND kinds are told apart; other ICMPv6 keeps type and code.
    #[test]
    fn ipv6_nd_and_icmpv6_classify() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let c = v6(&build::neighbor_solicit(mac, G6, F6)).unwrap();
        assert_eq!(c.upper, V6Upper::Nd(NdKind::NeighborSolicit));
        assert_eq!(c.hop_limit, 255);
        let c = v6(&build::unsolicited_na(mac, G6)).unwrap();
        assert_eq!(c.upper, V6Upper::Nd(NdKind::NeighborAdvert));
        let c = v6(&build::dad_probe(mac, G6)).unwrap();
        assert_eq!(
            (c.upper, c.src),
            (V6Upper::Nd(NdKind::NeighborSolicit), Ipv6Addr::UNSPECIFIED)
        );
        for (ty, kind) in [
            (133, NdKind::RouterSolicit),
            (134, NdKind::RouterAdvert),
            (137, NdKind::Redirect),
        ] {
            let f = build::icmpv6(ends6(), 255, (ty, 0), 0, &[0; 40]);
            assert_eq!(v6(&f).unwrap().upper, V6Upper::Nd(kind));
        }
        let f = build::icmpv6_echo(mac, mac, G6, F6, 64, 1, 2);
        assert_eq!(v6(&f).unwrap().upper, V6Upper::Icmpv6 { ty: 128, code: 0 });
    }

    /// Fragments: a first fragment classifies by its transport header; a later one
    /// has none; ND in a fragment is refused (RFC 6980).
    #[test]
    fn ipv6_fragments() {
        let frag = |next: u8, off: u16, l4: &[u8]| {
            let mut pl = vec![next, 0];
            pl.extend_from_slice(&(off | 1).to_be_bytes());
            pl.extend_from_slice(&[0, 0, 0, 7]);
            pl.extend_from_slice(l4);
            build::ipv6(ends6(), 64, 44, &pl)
        };
        let c = v6(&frag(17, 0, &[0, 1, 0, 2, 0, 8, 0, 0])).unwrap();
        assert_eq!(
            (c.upper, c.fragment, c.l4_offset),
            (V6Upper::Udp { sport: 1, dport: 2 }, true, 48)
        );
        let c = v6(&frag(17, 1448, &[0xee; 16])).unwrap();
        assert_eq!((c.upper, c.fragment), (V6Upper::LaterFragment(17), true));
        assert_eq!(
            v6(&frag(58, 0, &[135, 0, 0, 0, 0, 0, 0, 0])),
            Err(Ipv6Error::FragmentedNd)
        );
        // a first fragment too short for its UDP header (RFC 7112)
        assert_eq!(v6(&frag(17, 0, &[0, 1, 0])), Err(Ipv6Error::L4Truncated));
    }

    /// SPEC 2.1: a transport header cut short is typed, at every length.
    #[test]
    fn ipv6_truncated_transport_is_typed() {
        let f = build::tcp6(ends6(), 64, 1, 2, &[]);
        for n in 0..20 {
            let mut g = f[..54 + n].to_vec();
            g[18..20].copy_from_slice(&(n as u16).to_be_bytes());
            assert_eq!(v6(&g), Err(Ipv6Error::L4Truncated), "tcp len {n}");
        }
        let f = build::icmpv6_echo(MacAddr::ZERO, MacAddr::ZERO, G6, F6, 64, 1, 2);
        let mut g = f[..54 + 3].to_vec();
        g[18..20].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(v6(&g), Err(Ipv6Error::L4Truncated));
        // every prefix of a frame, payload length unchanged: refused
        for n in 14..f.len() {
            let r = classify_ipv6(&f[ETHERNET_HEADER_LEN..n]);
            let want = if n < 54 {
                Ipv6Error::Truncated
            } else {
                Ipv6Error::BadPayloadLen
            };
            assert_eq!(r, Err(want), "len {n}");
        }
    }

    proptest::proptest! {
        /// SPEC 2.1: classifying arbitrary bytes as IPv6 never panics; what classifies
        /// has its upper-layer offset within the packet.
        #[test]
        fn ipv6_arbitrary_bytes_never_panic(
            mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
            nh in proptest::prelude::any::<u8>(),
        ) {
            if b.len() >= 40 {
                b[0] = 0x60;
                b[6] = nh;
                let pl = (b.len() - 40) as u16;
                b[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            if let Ok(c) = classify_ipv6(&b) {
                proptest::prop_assert!(c.l4_offset <= c.packet_len && c.packet_len <= b.len());
            }
        }
    }

    #[test]
    fn every_prefix_of_a_frame_classifies_without_panic() {
        let mut ip = vec![
            0x46, 0, 0, 32, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1, 1,
        ];
        ip.extend_from_slice(&[0, 80, 0, 81, 0, 0, 0, 0]);
        let f = eth(0x0800, &ip);
        for n in 0..=f.len() {
            let _ = classify(&f[..n]);
        }
        assert!(classify(&f).is_ok());
    }
}
