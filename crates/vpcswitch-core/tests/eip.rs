//! SPEC 7: EIPs and the uplink, stage by stage with byte fixtures. Every translated
//! packet's checksums are verified with smoltcp (an independent implementation).

use std::net::Ipv4Addr;

use smoltcp::wire::{
    EthernetFrame, Icmpv4Packet, IpAddress, Ipv4Packet as SIp, TcpPacket, UdpPacket,
};
use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{Config, ConfigBuilder, MacAddr};
use vpcswitch_wire::{build, checksum, classify, IpProtocol, L3};

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const UPLINK: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);
const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const P2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const P3: MacAddr = MacAddr([2, 0, 0, 0, 1, 3]);
const R1: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// vpc a (10.0.0.0/16), subnet a1: p1, p2 bound to VIP v 10.0.1.100 (EIP
/// 203.0.113.10), p3 10.0.1.13 (EIP 203.0.113.11), p4 10.0.1.14 (no EIP); a routes
/// 0.0.0.0/0 to the uplink. vpc b (10.1.0.0/16): r1, peered with a, routes 0.0.0.0/0 to
/// the peering. Uplink MAC 02:00:00:00:ff:01, next hop 203.0.113.1.
fn config() -> Config {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .port("p4", "a1", "02:00:00:00:01:04", &["10.0.1.14"])
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("b", "0.0.0.0/0", "ab")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
        .route_via_uplink("a", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "v")
        .eip_for_port("203.0.113.11", "p3")
        .build()
        .unwrap()
}

fn snap() -> Snapshot {
    Snapshot::compile(&config(), None).unwrap()
}

struct R {
    v: Verdict,
    out: Vec<u8>,
}

fn run_at(s: &Snapshot, port: &str, frame: &[u8], now_ns: u64) -> R {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let id = s.port_id(port).unwrap();
    let traced = s.trace(now_ns, id, frame).verdict;
    let v = s.process(&Ctx::at(now_ns), id, &mut buf, &mut len, &mut NoTrace);
    assert_eq!(traced, v, "trace and process disagree");
    R {
        v,
        out: buf[..len].to_vec(),
    }
}

fn run(s: &Snapshot, port: &str, frame: &[u8]) -> R {
    run_at(s, port, frame, 1_000)
}

fn to(s: &Snapshot, port: &str) -> Verdict {
    Verdict::Forward(Out::Port(s.port_id(port).unwrap()))
}

fn a(x: Ipv4Addr) -> IpAddress {
    IpAddress::Ipv4(x)
}

fn tcp(dst: MacAddr, src: MacAddr, sip: Ipv4Addr, dip: Ipv4Addr, ttl: u8) -> Vec<u8> {
    build::tcp(
        build::Ends { dst, src, sip, dip },
        ttl,
        443,
        50000,
        b"payload bytes",
    )
}

/// The IPv4 packet of `f`, with its header checksum verified.
fn ipv4(f: &[u8]) -> SIp<&[u8]> {
    let e = EthernetFrame::new_checked(f).unwrap();
    let p = SIp::new_checked(&f[14..14 + (e.payload().len())]).unwrap();
    assert!(p.verify_checksum(), "IPv4 header checksum");
    p
}

fn macs(f: &[u8]) -> (MacAddr, MacAddr) {
    (
        MacAddr::from_slice(&f[0..6]),
        MacAddr::from_slice(&f[6..12]),
    )
}

fn router_arp_reply() -> Vec<u8> {
    build::arp_reply(UPLINK, ip("203.0.113.10"), ROUTER, ip("203.0.113.1"))
}

fn garp(m: MacAddr) -> Vec<u8> {
    build::garp(m, ip("10.0.1.100"))
}

#[test]
fn spec7_1_arp_for_an_eip_is_answered_with_the_uplink_mac() {
    let s = snap();
    for eip in ["203.0.113.10", "203.0.113.11"] {
        let req = build::arp_request(ROUTER, ip("203.0.113.1"), ip(eip));
        let r = run(&s, "uplink", &req);
        assert_eq!(r.v, to(&s, "uplink"), "{eip}");
        let c = classify(&r.out).unwrap();
        let L3::Arp(ans) = c.l3 else {
            panic!("not ARP")
        };
        assert_eq!((c.dst.mac(), c.src.mac()), (ROUTER, UPLINK));
        assert_eq!(ans.op, 2);
        assert_eq!((ans.sha.mac(), Ipv4Addr::from(ans.spa)), (UPLINK, ip(eip)));
        assert_eq!(Ipv4Addr::from(ans.tpa), ip("203.0.113.1"));
    }
    // not an EIP: consumed, counted
    let req = build::arp_request(ROUTER, ip("203.0.113.1"), ip("203.0.113.99"));
    assert_eq!(
        run(&s, "uplink", &req).v,
        Verdict::Drop(DropReason::UplinkArp)
    );
    // a private address is never answered on the uplink
    let req = build::arp_request(ROUTER, ip("203.0.113.1"), ip("10.0.1.13"));
    assert_eq!(
        run(&s, "uplink", &req).v,
        Verdict::Drop(DropReason::UplinkArp)
    );
}

#[test]
fn spec7_2_the_next_hop_is_arped_for_then_learned() {
    let s = snap();
    assert_eq!(s.next_hop_mac(), None);
    let f = tcp(GW, P3, ip("10.0.1.13"), ip("198.51.100.7"), 64);
    let r = run(&s, "p3", &f);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(
            DropReason::NextHopUnresolved,
            Out::Port(s.port_id("uplink").unwrap())
        )
    );
    let c = classify(&r.out).unwrap();
    let L3::Arp(req) = c.l3 else {
        panic!("not ARP")
    };
    assert_eq!((c.dst.mac(), c.src.mac()), (MacAddr::BROADCAST, UPLINK));
    assert_eq!(req.op, 1);
    assert_eq!(Ipv4Addr::from(req.tpa), ip("203.0.113.1"));
    // the sender IP is an EIP (the lowest), so the router can answer
    assert_eq!(Ipv4Addr::from(req.spa), ip("203.0.113.10"));

    // trace does not learn
    let reply = router_arp_reply();
    let id = s.port_id("uplink").unwrap();
    let t = s.trace(1_000, id, &reply);
    assert!(
        t.trace.to_string().contains("would be learned"),
        "{}",
        t.trace
    );
    assert_eq!(s.next_hop_mac(), None);
    // the router's reply is consumed and teaches the MAC; so would its request
    assert_eq!(
        run(&s, "uplink", &reply).v,
        Verdict::Drop(DropReason::UplinkArp)
    );
    assert_eq!(s.next_hop_mac(), Some(ROUTER));
    // someone else claiming to be the next hop's neighbour does not matter
    let other = build::arp_reply(
        UPLINK,
        ip("203.0.113.10"),
        MacAddr([2, 9, 9, 9, 9, 9]),
        ip("203.0.113.2"),
    );
    run(&s, "uplink", &other);
    assert_eq!(s.next_hop_mac(), Some(ROUTER));
}

#[test]
fn spec7_2_outbound_leaves_with_the_eip_and_valid_checksums() {
    let s = snap();
    run(&s, "uplink", &router_arp_reply());
    let out_ip = ip("198.51.100.7");
    // a port with an EIP, TCP
    let r = run(&s, "p3", &tcp(GW, P3, ip("10.0.1.13"), out_ip, 64));
    assert_eq!(r.v, to(&s, "uplink"));
    assert_eq!(macs(&r.out), (ROUTER, UPLINK));
    let p = ipv4(&r.out);
    assert_eq!(p.src_addr(), ip("203.0.113.11"));
    assert_eq!(p.dst_addr(), out_ip);
    assert_eq!(p.hop_limit(), 63);
    let t = TcpPacket::new_checked(p.payload()).unwrap();
    assert!(t.verify_checksum(&a(ip("203.0.113.11")), &a(out_ip)));

    // the VIP holder answering from the VIP: the VIP's EIP, UDP
    run(&s, "p1", &garp(P1));
    let f = build::udp(
        build::Ends {
            dst: GW,
            src: P1,
            sip: ip("10.0.1.100"),
            dip: out_ip,
        },
        64,
        53,
        4000,
        b"dns",
    );
    let r = run(&s, "p1", &f);
    assert_eq!(r.v, to(&s, "uplink"));
    let p = ipv4(&r.out);
    assert_eq!(p.src_addr(), ip("203.0.113.10"));
    let u = UdpPacket::new_checked(p.payload()).unwrap();
    assert!(u.verify_checksum(&a(ip("203.0.113.10")), &a(out_ip)));

    // a private address without an EIP never leaves (p1's own fixed IP, p4)
    let f = build::udp(
        build::Ends {
            dst: GW,
            src: P1,
            sip: ip("10.0.1.11"),
            dip: out_ip,
        },
        64,
        53,
        4000,
        b"dns",
    );
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::NoEip));
    let f = build::udp(
        build::Ends {
            dst: GW,
            src: MacAddr([2, 0, 0, 0, 1, 4]),
            sip: ip("10.0.1.14"),
            dip: out_ip,
        },
        64,
        53,
        4000,
        b"dns",
    );
    assert_eq!(run(&s, "p4", &f).v, Verdict::Drop(DropReason::NoEip));

    // TTL 1: time exceeded from the gateway, nothing leaves
    let r = run(&s, "p3", &tcp(GW, P3, ip("10.0.1.13"), out_ip, 1));
    assert_eq!(
        r.v,
        Verdict::DropAndSend(DropReason::TtlExceeded, Out::Port(s.port_id("p3").unwrap()))
    );
}

#[test]
fn spec7_1_inbound_follows_the_vip_owner_through_failover() {
    let s = snap();
    let eip = ip("203.0.113.10");
    let client = ip("198.51.100.7");
    let inbound = tcp(UPLINK, ROUTER, client, eip, 50);
    // no owner yet: dropped, the switch ARPs for the VIP on its bound ports (SPEC 5.2)
    let r = run(&s, "uplink", &inbound);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(DropReason::VipNoOwner, Out::VipPorts(0))
    );
    for (holder, mac) in [("p2", P2), ("p1", P1), ("p2", P2)] {
        run(&s, holder, &garp(mac));
        let r = run(&s, "uplink", &inbound);
        assert_eq!(r.v, to(&s, holder), "after {holder}'s GARP");
        assert_eq!(macs(&r.out), (mac, GW));
        let p = ipv4(&r.out);
        assert_eq!(p.dst_addr(), ip("10.0.1.100"));
        assert_eq!(p.src_addr(), client);
        assert_eq!(p.hop_limit(), 49);
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(t.verify_checksum(&a(client), &a(ip("10.0.1.100"))));
    }
}

#[test]
fn spec7_1_inbound_to_a_port_eip_echo_and_icmp_errors() {
    let s = snap();
    run(&s, "uplink", &router_arp_reply());
    let (eip, private, client) = (ip("203.0.113.11"), ip("10.0.1.13"), ip("198.51.100.7"));
    // ping through the EIP and the answer back out
    let echo = build::icmp_echo(UPLINK, ROUTER, client, eip, 64, 9, 1);
    let r = run(&s, "uplink", &echo);
    assert_eq!(r.v, to(&s, "p3"));
    let p = ipv4(&r.out);
    assert_eq!(p.dst_addr(), private);
    assert!(Icmpv4Packet::new_checked(p.payload())
        .unwrap()
        .verify_checksum());

    // the guest's ICMP port unreachable about an inbound UDP datagram: the quoted
    // packet's destination becomes the EIP again
    let inbound = build::udp(
        build::Ends {
            dst: P3,
            src: GW,
            sip: client,
            dip: private,
        },
        60,
        5000,
        9999,
        b"probe-payload",
    );
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&inbound[14..14 + 20 + 8 + 13]);
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let err = build::ipv4(GW, P3, private, client, 64, IpProtocol::ICMP, &m);
    let r = run(&s, "p3", &err);
    assert_eq!(r.v, to(&s, "uplink"));
    let p = ipv4(&r.out);
    assert_eq!(p.src_addr(), eip);
    assert!(Icmpv4Packet::new_checked(p.payload())
        .unwrap()
        .verify_checksum());
    let quoted = SIp::new_checked(&p.payload()[8..]).unwrap();
    assert!(quoted.verify_checksum());
    assert_eq!(quoted.dst_addr(), eip);
    let u = UdpPacket::new_checked(quoted.payload()).unwrap();
    assert!(u.verify_checksum(&a(client), &a(eip)));
}

#[test]
fn spec7_1_only_eip_traffic_at_the_uplink_mac_gets_in() {
    let s = snap();
    let client = ip("198.51.100.7");
    // not to the uplink's MAC
    let f = tcp(P3, ROUTER, client, ip("203.0.113.11"), 64);
    assert_eq!(
        run(&s, "uplink", &f).v,
        Verdict::Drop(DropReason::UplinkNotForEip)
    );
    // to a private address directly, or an address that is no EIP
    for dst in ["10.0.1.13", "203.0.113.99"] {
        let f = tcp(UPLINK, ROUTER, client, ip(dst), 64);
        assert_eq!(
            run(&s, "uplink", &f).v,
            Verdict::Drop(DropReason::UplinkNotForEip),
            "{dst}"
        );
    }
    // TTL 1: time exceeded, from the EIP, back out of the uplink
    let f = tcp(UPLINK, ROUTER, client, ip("203.0.113.11"), 1);
    let r = run(&s, "uplink", &f);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(
            DropReason::TtlExceeded,
            Out::Port(s.port_id("uplink").unwrap())
        )
    );
    let p = ipv4(&r.out);
    assert_eq!(p.src_addr(), ip("203.0.113.11"));
    assert_eq!(macs(&r.out), (ROUTER, UPLINK));
    // bad header checksum, tagged, IPv6
    let mut f = tcp(UPLINK, ROUTER, client, ip("203.0.113.11"), 64);
    f[24] ^= 0xff;
    assert_eq!(
        run(&s, "uplink", &f).v,
        Verdict::Drop(DropReason::BadIpChecksum)
    );
    let mut f = tcp(UPLINK, ROUTER, client, ip("203.0.113.11"), 64);
    f[12..14].copy_from_slice(&[0x81, 0]);
    assert_eq!(
        run(&s, "uplink", &f).v,
        Verdict::Drop(DropReason::VlanTagged)
    );
}

#[test]
fn spec5_3_traffic_from_a_peering_never_leaves_through_the_uplink() {
    let s = snap();
    run(&s, "uplink", &router_arp_reply());
    // r1 (vpc b) routes everything to the a-b peering; in a, only local subnets count
    let f = tcp(GW, R1, ip("10.1.1.11"), ip("198.51.100.7"), 64);
    let r = run(&s, "r1", &f);
    assert_eq!(r.v, Verdict::Drop(DropReason::NoSuchHost));
    // even when the destination is an EIP
    let f = tcp(GW, R1, ip("10.1.1.11"), ip("203.0.113.11"), 64);
    assert_eq!(run(&s, "r1", &f).v, Verdict::Drop(DropReason::NoSuchHost));
}

#[test]
fn spec8_1_the_learned_next_hop_survives_a_reload() {
    let s = snap();
    run(&s, "uplink", &router_arp_reply());
    let s2 = Snapshot::compile(&config(), Some(&s)).unwrap();
    assert_eq!(s2.next_hop_mac(), Some(ROUTER));
    // learned by a worker still on the old snapshot after the new one was compiled
    let s3 = Snapshot::compile(&config(), None).unwrap();
    s3.reconcile_learned(&s);
    assert_eq!(s3.next_hop_mac(), Some(ROUTER));
    // a different next hop starts unresolved
    let mut c = config();
    c.uplink.as_mut().unwrap().next_hop = ip("203.0.113.2");
    let s4 = Snapshot::compile(&c, Some(&s)).unwrap();
    assert_eq!(s4.next_hop_mac(), None);
    s4.reconcile_learned(&s);
    assert_eq!(s4.next_hop_mac(), None);
    // a static next hop MAC is used at once and never replaced by ARP
    let mut c = config();
    c.uplink.as_mut().unwrap().next_hop_mac = Some(MacAddr([2, 0, 0, 0, 0xee, 7]));
    let s5 = Snapshot::compile(&c, None).unwrap();
    assert_eq!(s5.next_hop_mac(), Some(MacAddr([2, 0, 0, 0, 0xee, 7])));
    run(&s5, "uplink", &router_arp_reply());
    assert_eq!(s5.next_hop_mac(), Some(MacAddr([2, 0, 0, 0, 0xee, 7])));
}

#[test]
fn uplink_arp_is_rate_limited_per_purpose() {
    // SPEC 7.3: each purpose (the next hop's ARP at its known MAC, its IP from another
    // MAC, requests for an EIP from others, the rest) has `arp_per_sec` a second
    let s = snap();
    let limit = config().switch.arp_per_sec as usize;
    let id = s.port_id("uplink").unwrap();
    let answered = |req: &[u8]| {
        (0..limit + 100)
            .filter(|_| {
                let mut buf = vec![0u8; 2048];
                buf[..req.len()].copy_from_slice(req);
                let mut len = req.len();
                matches!(
                    s.process(&Ctx::at(5), id, &mut buf, &mut len, &mut NoTrace),
                    Verdict::Forward(_)
                )
            })
            .count()
    };
    // before the next hop's MAC is known, its requests spend the "other MAC" budget
    // (and the first teaches the MAC); then its own
    let req = build::arp_request(ROUTER, ip("203.0.113.1"), ip("203.0.113.10"));
    assert_eq!(answered(&req), limit + 1);
    assert_eq!(s.next_hop_mac(), Some(ROUTER));
    let req = build::arp_request(P1, ip("198.51.100.7"), ip("203.0.113.11"));
    assert_eq!(answered(&req), limit);
}
