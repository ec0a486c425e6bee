//! Frame builders for tests, benchmarks and `trace` inputs: whole, valid frames with
//! correct checksums. Not used on the forwarding path.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::arp::{self, ArpInfo, OP_REPLY, OP_REQUEST};
use crate::checksum;
use crate::ethernet::EtherType;
use crate::ipv4::IpProtocol;
use crate::ipv6::{self, NextHeader};
use crate::{icmpv6, nd, MacAddr};

fn eth(dst: MacAddr, src: MacAddr, et: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&dst.0);
    v.extend_from_slice(&src.0);
    v.extend_from_slice(&et.to_be_bytes());
    v
}

/// An IPv4 frame carrying `l4` as protocol `proto`, with a valid header checksum.
pub fn ipv4(
    dst: MacAddr,
    src: MacAddr,
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    ttl: u8,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut v = eth(dst, src, EtherType::IPV4);
    let tl = (20 + l4.len()) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&tl.to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&sip.octets());
    h[16..20].copy_from_slice(&dip.octets());
    let c = checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(l4);
    v
}

/// The addresses of a built frame: Ethernet destination and source, IPv4 source and
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// Ethernet destination
    pub dst: MacAddr,
    /// Ethernet source
    pub src: MacAddr,
    /// IPv4 source
    pub sip: Ipv4Addr,
    /// IPv4 destination
    pub dip: Ipv4Addr,
}

/// A UDP datagram with a valid checksum, padded to at least 60 bytes like a NIC does.
pub fn udp(ends: Ends, ttl: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let Ends { dst, src, sip, dip } = ends;
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut acc = checksum::sum(0, &sip.octets());
    acc = checksum::sum(acc, &dip.octets());
    acc += u32::from(IpProtocol::UDP) + u.len() as u32;
    acc = checksum::sum(acc, &u);
    let mut c = !checksum::fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = ipv4(dst, src, sip, dip, ttl, IpProtocol::UDP, &u);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A TCP segment (ports 443 → 50000, flags PSH|ACK or as given) carrying `payload`, with
/// valid IPv4 and TCP checksums.
pub fn tcp(ends: Ends, ttl: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let Ends { dst, src, sip, dip } = ends;
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18;
    t.extend_from_slice(payload);
    let mut acc = checksum::sum(0, &sip.octets());
    acc = checksum::sum(acc, &dip.octets());
    acc += u32::from(IpProtocol::TCP) + t.len() as u32;
    acc = checksum::sum(acc, &t);
    let c = !checksum::fold(acc);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(dst, src, sip, dip, ttl, IpProtocol::TCP, &t)
}

/// An ICMP echo request.
pub fn icmp_echo(
    dst: MacAddr,
    src: MacAddr,
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    ttl: u8,
    ident: u16,
    seq: u16,
) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"vpcswitch-echo!!");
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(dst, src, sip, dip, ttl, IpProtocol::ICMP, &m)
}

/// A whole ARP frame.
pub fn arp_frame(eth_dst: MacAddr, eth_src: MacAddr, info: &ArpInfo) -> Vec<u8> {
    let mut v = vec![0u8; 60];
    arp::emit_frame(&mut v, eth_dst, eth_src, info);
    v
}

/// A broadcast ARP request from `(mac, sip)` for `tip`.
pub fn arp_request(mac: MacAddr, sip: Ipv4Addr, tip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        mac,
        &ArpInfo {
            op: OP_REQUEST,
            sha: mac.into(),
            spa: sip.into(),
            tha: MacAddr::ZERO.into(),
            tpa: tip.into(),
        },
    )
}

/// A gratuitous ARP request (announcement) of `ip` at `mac`, as keepalived sends.
pub fn garp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    arp_request(mac, ip, ip)
}

/// A unicast ARP reply.
pub fn arp_reply(dst: MacAddr, dip: Ipv4Addr, mac: MacAddr, sip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        dst,
        mac,
        &ArpInfo {
            op: OP_REPLY,
            sha: mac.into(),
            spa: sip.into(),
            tha: dst.into(),
            tpa: dip.into(),
        },
    )
}

/// The addresses of a built IPv6 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends6 {
    /// Ethernet destination
    pub dst: MacAddr,
    /// Ethernet source
    pub src: MacAddr,
    /// IPv6 source
    pub sip: Ipv6Addr,
    /// IPv6 destination
    pub dip: Ipv6Addr,
}

/// An IPv6 frame carrying `payload` after a fixed header whose next header is `next`.
pub fn ipv6(ends: Ends6, hop_limit: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = eth(ends.dst, ends.src, EtherType::IPV6);
    v.extend_from_slice(&[0x60, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, hop_limit]);
    v.extend_from_slice(&ends.sip.octets());
    v.extend_from_slice(&ends.dip.octets());
    v.extend_from_slice(payload);
    v
}

/// The checksum of upper-layer bytes `l4` (checksum field zero) over the IPv6
/// pseudo-header.
fn l4_checksum6(sip: &Ipv6Addr, dip: &Ipv6Addr, next: u8, l4: &[u8]) -> u16 {
    let acc = checksum::pseudo_v6(sip, dip, next, l4.len() as u32);
    !checksum::fold(checksum::sum(acc, l4))
}

/// A UDP datagram over IPv6 with its (mandatory) checksum.
pub fn udp6(ends: Ends6, hop_limit: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = l4_checksum6(&ends.sip, &ends.dip, NextHeader::UDP, &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6(ends, hop_limit, NextHeader::UDP, &u)
}

/// A TCP segment (PSH|ACK) over IPv6 with a valid checksum.
pub fn tcp6(ends: Ends6, hop_limit: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18;
    t.extend_from_slice(payload);
    let c = l4_checksum6(&ends.sip, &ends.dip, NextHeader::TCP, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv6(ends, hop_limit, NextHeader::TCP, &t)
}

/// An ICMPv6 message (type, code, the four header bytes `word`, then `body`) with its
/// checksum.
pub fn icmpv6(ends: Ends6, hop_limit: u8, (ty, code): (u8, u8), word: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&word.to_be_bytes());
    m.extend_from_slice(body);
    let c = l4_checksum6(&ends.sip, &ends.dip, NextHeader::ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6(ends, hop_limit, NextHeader::ICMPV6, &m)
}

/// An ICMPv6 echo request.
pub fn icmpv6_echo(
    dst: MacAddr,
    src: MacAddr,
    sip: Ipv6Addr,
    dip: Ipv6Addr,
    hop_limit: u8,
    ident: u16,
    seq: u16,
) -> Vec<u8> {
    let word = (u32::from(ident) << 16) | u32::from(seq);
    icmpv6(
        Ends6 { dst, src, sip, dip },
        hop_limit,
        (icmpv6::TYPE_ECHO_REQUEST, 0),
        word,
        b"vpcswitch-echo!!",
    )
}

/// A link-layer address option (RFC 4861 4.6.1) of `kind` (1 source, 2 target).
fn lladdr_option(kind: u8, mac: MacAddr) -> [u8; 8] {
    let mut o = [kind, 1, 0, 0, 0, 0, 0, 0];
    o[2..].copy_from_slice(&mac.0);
    o
}

/// A neighbour solicitation for `target`, addressed as `ends` says, with a source
/// link-layer option of `sll` when given (which need not be `ends.src`: a forged one is
/// how SPEC 12.2's check is exercised).
pub fn ns_frame(ends: Ends6, hop_limit: u8, target: Ipv6Addr, sll: Option<MacAddr>) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    if let Some(m) = sll {
        body.extend_from_slice(&lladdr_option(1, m));
    }
    icmpv6(
        ends,
        hop_limit,
        (icmpv6::TYPE_NEIGHBOR_SOLICIT, 0),
        0,
        &body,
    )
}

/// A neighbour advertisement of `target` with `flags`, addressed as `ends` says, with a
/// target link-layer option of `tll` when given.
pub fn na_frame(
    ends: Ends6,
    hop_limit: u8,
    flags: nd::NaFlags,
    target: Ipv6Addr,
    tll: Option<MacAddr>,
) -> Vec<u8> {
    let mut v = vec![0u8; nd::NA_FRAME_LEN];
    let n = nd::emit_na(
        &mut v,
        &nd::NaParams {
            eth_dst: ends.dst,
            eth_src: ends.src,
            src: ends.sip,
            dst: ends.dip,
            flags,
            target,
            target_mac: tll,
        },
    );
    v.truncate(n);
    // the hop limit is outside the checksum's pseudo-header: set after the fact
    ipv6::Ipv6Packet::new_unchecked(&mut v[crate::ETHERNET_HEADER_LEN..]).set_hop_limit(hop_limit);
    v
}

/// A router solicitation, addressed as `ends` says (a host sends it to
/// [`ipv6::ALL_ROUTERS`]), with a source link-layer option of `sll` when given.
pub fn router_solicit(ends: Ends6, hop_limit: u8, sll: Option<MacAddr>) -> Vec<u8> {
    let body = sll.map(|m| lladdr_option(1, m));
    icmpv6(
        ends,
        hop_limit,
        (icmpv6::TYPE_ROUTER_SOLICIT, 0),
        0,
        body.as_ref().map_or(&[][..], |b| &b[..]),
    )
}

/// A router advertisement as a rogue router would send it (hop limit 64, router
/// lifetime 1800 s, no prefix), addressed as `ends` says, with a source link-layer
/// option of `sll` when given: what SPEC 12.3 drops from ports. The switch's own
/// advertisements are [`nd::emit_ra`]'s.
pub fn router_advert(ends: Ends6, hop_limit: u8, sll: Option<MacAddr>) -> Vec<u8> {
    // reachable time and retransmission timer: unspecified
    let mut body = vec![0u8; 8];
    if let Some(m) = sll {
        body.extend_from_slice(&lladdr_option(1, m));
    }
    icmpv6(
        ends,
        hop_limit,
        (icmpv6::TYPE_ROUTER_ADVERT, 0),
        0x4000_0708,
        &body,
    )
}

/// A neighbour solicitation from `(mac, sip)` for `target`, to the target's
/// solicited-node group, with a source link-layer option.
pub fn neighbor_solicit(mac: MacAddr, sip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dip = ipv6::solicited_node(&target);
    let ends = Ends6 {
        dst: ipv6::multicast_mac(&dip),
        src: mac,
        sip,
        dip,
    };
    ns_frame(ends, nd::ND_HOP_LIMIT, target, Some(mac))
}

/// A duplicate address detection probe by `mac` for `tentative`: an NS from `::`
/// without a link-layer option (RFC 4862 5.4.2).
pub fn dad_probe(mac: MacAddr, tentative: Ipv6Addr) -> Vec<u8> {
    let dip = ipv6::solicited_node(&tentative);
    let ends = Ends6 {
        dst: ipv6::multicast_mac(&dip),
        src: mac,
        sip: Ipv6Addr::UNSPECIFIED,
        dip,
    };
    ns_frame(ends, nd::ND_HOP_LIMIT, tentative, None)
}

/// An unsolicited neighbour advertisement of `ip` at `mac` (O set) to all nodes, as
/// keepalived sends on failover (SPEC 12.4).
pub fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let ends = Ends6 {
        dst: ipv6::multicast_mac(&ipv6::ALL_NODES),
        src: mac,
        sip: ip,
        dip: ipv6::ALL_NODES,
    };
    let flags = nd::NaFlags {
        override_: true,
        ..Default::default()
    };
    na_frame(ends, nd::ND_HOP_LIMIT, flags, ip, Some(mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icmpv6::Ipv6Meta;
    use crate::nd::NdMessage;
    use crate::{classify_ipv6, ETHERNET_HEADER_LEN};

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 5]);
    const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Parses the ND message of `f` as a host would (validity checks included).
    fn nd_of(f: &[u8]) -> NdMessage<'_> {
        let ipb = &f[ETHERNET_HEADER_LEN..];
        let c = classify_ipv6(ipb).unwrap();
        let meta = Ipv6Meta {
            src: c.src,
            dst: c.dst,
            hop_limit: c.hop_limit,
            fragmented: c.fragment,
        };
        nd::parse(&meta, &ipb[c.l4_offset..c.packet_len]).unwrap()
    }

    fn to(dip: Ipv6Addr, sip: Ipv6Addr) -> Ends6 {
        Ends6 {
            dst: ipv6::multicast_mac(&dip),
            src: MAC,
            sip,
            dip,
        }
    }

    #[test]
    fn nd_builders_make_valid_messages_with_the_options_asked_for() {
        let me = a("fd00::5");
        // the general NA is the unsolicited one when asked for it
        let flags = nd::NaFlags {
            override_: true,
            ..Default::default()
        };
        let na = na_frame(to(ipv6::ALL_NODES, me), 255, flags, me, Some(MAC));
        assert_eq!(na, unsolicited_na(MAC, me));
        // an NS whose source link-layer option is not its Ethernet source
        let dip = ipv6::solicited_node(&a("fd00::1"));
        let ns = ns_frame(to(dip, me), 255, a("fd00::1"), Some(OTHER));
        match nd_of(&ns) {
            NdMessage::NeighborSolicit { target, options } => {
                assert_eq!(target, a("fd00::1"));
                assert_eq!(options.source_lladdr(), Some(OTHER));
            }
            m => panic!("not an NS: {m:?}"),
        }
        let ll = ipv6::link_local_from_mac(MAC);
        let rs = router_solicit(to(ipv6::ALL_ROUTERS, ll), 255, Some(MAC));
        match nd_of(&rs) {
            NdMessage::RouterSolicit { options } => {
                assert_eq!(options.source_lladdr(), Some(MAC))
            }
            m => panic!("not an RS: {m:?}"),
        }
        let rs = router_solicit(to(ipv6::ALL_ROUTERS, ll), 255, None);
        assert!(
            matches!(nd_of(&rs), NdMessage::RouterSolicit { options } if options.source_lladdr().is_none())
        );
        let ra = router_advert(to(ipv6::ALL_NODES, ll), 255, Some(MAC));
        match nd_of(&ra) {
            NdMessage::RouterAdvert(ra) => {
                assert_eq!((ra.cur_hop_limit, ra.router_lifetime), (64, 1800));
                assert_eq!(ra.options.source_lladdr(), Some(MAC));
            }
            m => panic!("not an RA: {m:?}"),
        }
    }
}
