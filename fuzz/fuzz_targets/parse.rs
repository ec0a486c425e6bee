//! Frame parsing on arbitrary bytes: classify, ARP, DHCP (and the replies to what parsed),
//! IPv4 views, ICMP helpers, IPv6 (header, extension headers, ICMPv6, ND and the
//! answers to what parsed, which must parse back), TSO
//! layout, VXLAN (the header, a whole outer packet, the flow hash, and the outer
//! headers emitted for what parsed, which must parse back the same). No input may
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpcswitch_wire::{
    arp, classify, classify_ipv6, dhcp, icmp, icmpv6, ipv6, nd,
    tso::{Tcp4Layout, Tcp4Merge},
    vxlan, Ipv4Packet, Ipv6Packet, MacAddr, V6Upper, L3,
};

/// SPEC 12: the bytes as an IPv6 packet (header, extension-header walk, ICMPv6 and ND
/// with the checksum as sent and as fixed up, so that ND validation is reached), and as
/// an ND option area. What parses as an NS is answered, and the answer must parse back.
fn ipv6_packet(data: &[u8]) {
    let _ = nd::NdOptions::new_checked(data).map(|o| o.iter().count());
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let Ok(chain) = p.walk() else {
        return;
    };
    assert!(chain.offset <= p.packet_len(), "the walk stays in the packet");
    assert!(usize::from(chain.ext_headers) <= ipv6::MAX_EXT_HEADERS);
    for ty in [(3, 0), (1, 0), (2, 0), (4, 2)] {
        let _ = icmpv6::error_allowed(&p, &chain, ty);
    }
    if chain.proto() != Some(ipv6::NextHeader::ICMPV6) {
        return;
    }
    let m = &p.packet()[chain.offset..];
    let mut meta = icmpv6::Ipv6Meta::of(&p, &chain);
    let _ = icmpv6::parse(&meta, m);
    let mut fixed = m.to_vec();
    if let Ok(mut v) = icmpv6::Icmpv6Packet::new_checked(&mut fixed[..]) {
        v.fill_checksum(&meta.src, &meta.dst);
    }
    meta.hop_limit = nd::ND_HOP_LIMIT;
    let _ = icmpv6::parse(&meta, &fixed);
    let Ok(msg) = nd::parse(&meta, &fixed) else {
        return;
    };
    let _ = msg.claimed_lladdrs();
    let opts = msg.options();
    assert!(opts.iter().count() <= opts.bytes().len() / 8);
    if let nd::NdMessage::NeighborSolicit { target, .. } = msg {
        let seen = nd::SeenNs {
            eth_src: MacAddr([2, 0, 0, 0, 0, 5]),
            src: meta.src,
            target,
        };
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut buf = [0u8; nd::NA_FRAME_LEN];
        let n = nd::emit_na_reply(&mut buf, &seen, mac, true);
        assert_eq!(n, nd::NA_FRAME_LEN);
        let c = classify_ipv6(&buf[14..n]).expect("the NA classifies");
        assert_eq!(c.upper, V6Upper::Nd(nd::NdKind::NeighborAdvert));
        let ip = Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        let ch = ip.walk().unwrap();
        let back = nd::parse(&icmpv6::Ipv6Meta::of(&ip, &ch), &ip.packet()[ch.offset..])
            .expect("the NA parses back");
        assert_eq!(back.claimed_lladdrs(), [None, Some(mac)]);
    }
}

fuzz_target!(|data: &[u8]| {
    // SPEC 13.1: a DHCP client message; what parses is answered with every reply kind,
    // each of which must parse back (smoltcp) as the reply to it
    let _ = dhcp::udp_ports(data);
    if let Ok(m) = dhcp::parse_client(data) {
        let lease = dhcp::Lease {
            mask: 0xffff_ff00,
            router: 0x0a00_0101,
            lease_secs: 3600,
            dns: &[10, 0, 0, 2],
            domain: b"a.internal",
            mtu: Some(1400),
            routes: &[0, 10, 0, 1, 1],
        };
        let server = dhcp::Server {
            mac: vpcswitch_wire::MacAddr([2, 0, 0, 0, 0, 1]),
            ip: 0x0a00_0101,
        };
        for kind in [dhcp::ReplyKind::Offer, dhcp::ReplyKind::Ack, dhcp::ReplyKind::Nak] {
            let mut buf = [0u8; 1024];
            let n = dhcp::emit_reply(&mut buf, kind, server, m.chaddr, &m, 0x0a00_010b, &lease);
            assert!(n > 0, "a reply fits 1 KiB");
            let c = classify(&buf[..n]).expect("the reply classifies");
            assert!(matches!(c.l3, L3::Ipv4 { .. }));
            assert_eq!(dhcp::udp_ports(&buf[..n]), Some((67, 68)));
        }
    }
    let _ = arp::parse(data.get(14..).unwrap_or(&[]));
    ipv6_packet(data);
    ipv6_packet(data.get(14..).unwrap_or(&[]));
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (p.verify_checksum(), p.payload().len(), p.is_fragment());
    }
    if let Ok(c) = classify(data) {
        if let L3::Ipv4 { .. } = c.l3 {
            let _ = icmp::is_echo_request(data);
            let mut buf = vec![0u8; data.len() + 128];
            buf[..data.len()].copy_from_slice(data);
            let _ = icmp::error_in_place(
                &mut buf,
                data.len(),
                c.src.mac(),
                std::net::Ipv4Addr::LOCALHOST,
                (11, 0),
                0,
            );
        }
        // SPEC 12.5: the gateway's echo reply and errors, on what classifies as IPv6;
        // both must classify again
        if let (L3::Ipv6, Ok(c6)) = (c.l3, classify_ipv6(&data[14..])) {
            assert!(c6.l4_offset <= c6.packet_len);
            let gw = std::net::Ipv6Addr::LOCALHOST;
            if icmpv6::is_echo_request(data) {
                let mut f = data.to_vec();
                icmpv6::echo_reply_in_place(&mut f, c.src.mac(), gw);
                assert!(!icmpv6::is_echo_request(&f));
                let r = classify_ipv6(&f[14..]).expect("the reply classifies");
                assert_eq!(r.upper, V6Upper::Icmpv6 { ty: 129, code: 0 });
            }
            let mut buf = vec![0u8; data.len().max(icmpv6::error_len(data))];
            buf[..data.len()].copy_from_slice(data);
            let n = icmpv6::error_in_place(&mut buf, data.len(), c.src.mac(), gw, (3, 0), 0);
            assert_eq!(n, icmpv6::error_len(data));
            let e = classify_ipv6(&buf[14..n]).expect("the error classifies");
            assert_eq!(e.upper, V6Upper::Icmpv6 { ty: 3, code: 0 });
            assert!(n - 14 <= ipv6::IPV6_MIN_MTU);
        }
    }
    // VXLAN: the bytes as a UDP payload, as an outer IPv4 packet, and as an inner
    // frame to hash; what parses is emitted again and must parse back the same
    if let Ok((vni, inner)) = vxlan::decap(data) {
        let v = vxlan::VxlanHeader::new_checked(data).expect("decap accepted it");
        assert_eq!((v.vni(), v.payload()), (vni, inner));
    }
    if let Ok((outer, _, inner)) = vxlan::Outer::parse(data) {
        let mut h = [0u8; vxlan::OUTER_HEADER_LEN];
        outer
            .emit(7, inner.len(), &mut h)
            .expect("a parsed packet fits");
        let mut again = h.to_vec();
        again.extend_from_slice(inner);
        let (o2, info, in2) = vxlan::Outer::parse(&again).expect("emitted packet parses");
        assert_eq!((o2, in2), (outer, inner));
        assert!(info.dont_fragment && info.ip_checksum_ok && info.udp_checksum == 0);
        let p = vxlan::source_port(inner);
        assert!(p >= vxlan::SRC_PORT_MIN);
    }
    let _ = vxlan::source_port(data);
    if let Some(l) = Tcp4Layout::parse(data, 1 + data.first().copied().unwrap_or(0) as usize) {
        let mut out = vec![0u8; 2048];
        for i in 0..l.count().min(64) {
            let _ = l.write_segment(data, i, &mut out);
        }
    }
    // receive-side joining (untrusted segments from a tunnel): the input as a first
    // segment and its halves as followers; whatever joins writes a frame of the run's
    // length, and nothing panics
    if let Some(mut m) = Tcp4Merge::start(data) {
        let mid = data.len() / 2;
        let mut run: Vec<&[u8]> = vec![data];
        for f in [&data[..mid], &data[mid..], data] {
            if m.join(data, f) {
                run.push(f);
            }
        }
        let mut out = vec![0u8; 70_000];
        if let Some(n) = m.write(run.iter().copied(), &mut out) {
            assert_eq!(n, m.len());
        }
    }
});
