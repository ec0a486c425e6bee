//! Issue 15 ("hostile guests, round 2"): the outside network as an attacker (SPEC 7.3,
//! 7.4), floods that bypass the destination check (SPEC 2.6), the DHCP exemption of the
//! source check (SPEC 2.3), the flood budget in copies, and the ICMP errors the switch
//! must not send (RFC 1812 4.3.2.7). Byte frames through a compiled snapshot; every
//! verdict is also checked against the trace, whose steps must name the rule.

use std::net::Ipv4Addr;

use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{Config, ConfigBuilder, MacAddr};
use vpcswitch_wire::{build, classify, IpProtocol, Ipv4Packet, L3};

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const UPLINK: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);
const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 0xdd, 1]);
const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const P2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const P3: MacAddr = MacAddr([2, 0, 0, 0, 1, 3]);
const R1: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);
const NAT: MacAddr = MacAddr([2, 0, 0, 0, 1, 9]);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// vpc a (10.0.0.0/16): subnet a1 10.0.1.0/24 with p1, p2, p3 (EIP 203.0.113.11) and
/// nat (check off, next hop for 192.168.0.0/16); VIP v 10.0.1.100 on p1, p2 (EIP
/// 203.0.113.10); a2 10.0.2.0/24 with q1. vpc b (10.1.0.0/16): r1, peered with a.
/// vpc c (10.2.0.0/16): s1, not peered, no default route. a routes 0.0.0.0/0 to the
/// uplink (MAC 02:00:00:00:ff:01, next hop 203.0.113.1).
fn config() -> Config {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .vpc("c", &["10.2.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .subnet("c1", "c", "10.2.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .port("nat", "a1", "02:00:00:00:01:09", &["10.0.1.19"])
        .src_dst_check(false)
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .port("s1", "c1", "02:00:00:00:04:01", &["10.2.1.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_port("a", "192.168.0.0/16", "nat")
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
    trace: String,
}

fn run_at(s: &Snapshot, port: &str, frame: &[u8], now_ns: u64) -> R {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let id = s.port_id(port).unwrap();
    let traced = s.trace(now_ns, id, frame);
    let v = s.process(&Ctx::at(now_ns), id, &mut buf, &mut len, &mut NoTrace);
    // a trace spends no budget, so it cannot see a rate-limit drop
    if !matches!(
        v,
        Verdict::Drop(DropReason::ArpRateLimited | DropReason::FloodRateLimited)
    ) {
        assert_eq!(traced.verdict, v, "trace and process disagree");
    }
    R {
        v,
        out: buf[..len].to_vec(),
        trace: traced.trace.to_string(),
    }
}

fn run(s: &Snapshot, port: &str, frame: &[u8]) -> R {
    run_at(s, port, frame, 1_000)
}

fn to(s: &Snapshot, port: &str) -> Verdict {
    Verdict::Forward(Out::Port(s.port_id(port).unwrap()))
}

fn flood(s: &Snapshot, subnet: &str) -> Verdict {
    let i = s.subnets.iter().position(|x| x.name == subnet).unwrap();
    Verdict::Forward(Out::Flood(i as u32))
}

fn udp(dst: MacAddr, src: MacAddr, sip: &str, dip: &str, ttl: u8) -> Vec<u8> {
    build::udp(
        build::Ends {
            dst,
            src,
            sip: ip(sip),
            dip: ip(dip),
        },
        ttl,
        1000,
        2000,
        b"outside",
    )
}

fn dhcp(dst: MacAddr, src: MacAddr, sip: &str, dip: &str) -> Vec<u8> {
    build::udp(
        build::Ends {
            dst,
            src,
            sip: ip(sip),
            dip: ip(dip),
        },
        64,
        68,
        67,
        b"dhcp discover",
    )
}

/// The next hop's reply to the switch's ARP request: teaches the next hop's MAC.
fn router_reply() -> Vec<u8> {
    build::arp_reply(UPLINK, ip("203.0.113.10"), ROUTER, ip("203.0.113.1"))
}

/// `f` with fragment offset `off` (in 8-byte units) and MF as given, checksum fixed.
fn fragment(mut f: Vec<u8>, off: u16, mf: bool) -> Vec<u8> {
    let v = off | if mf { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&v.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f
}

// ---------- SPEC 7.3: sources on the uplink ----------

#[test]
fn spec7_3_the_uplink_drops_private_eip_and_martian_sources() {
    let s = snap();
    for src in [
        "10.0.1.13",       // a port of vpc a, behind the EIP itself
        "10.1.1.11",       // a port of another VPC
        "10.0.0.5",        // inside vpc a's CIDR, in no subnet
        "10.2.1.11",       // a VPC the EIP's VPC is not peered with
        "203.0.113.10",    // an EIP
        "203.0.113.11",    // the EIP it is sent to
        "127.0.0.1",       // loopback
        "0.0.0.0",         // this network
        "0.1.2.3",         //
        "169.254.169.254", // link-local
        "224.0.0.18",      // multicast
        "240.0.0.1",       // reserved
        "255.255.255.255", // limited broadcast
    ] {
        let f = udp(UPLINK, ROUTER, src, "203.0.113.11", 64);
        let r = run(&s, "uplink", &f);
        assert_eq!(r.v, Verdict::Drop(DropReason::UplinkBogusSrc), "from {src}");
        assert!(r.trace.contains("SPEC 7.3"), "{src}: {}", r.trace);
        assert!(r.trace.contains("uplink_bogus_src"), "{}", r.trace);
    }
    // inbound to an EIP is otherwise unchanged: global sources, a private range that
    // is no VPC's, and the next hop itself are translated to the target
    for src in ["198.51.100.7", "192.168.7.7", "172.16.0.1", "203.0.113.1"] {
        let f = udp(UPLINK, ROUTER, src, "203.0.113.11", 64);
        let r = run(&s, "uplink", &f);
        assert_eq!(r.v, to(&s, "p3"), "from {src}");
        let p = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
        assert_eq!((p.src(), p.dst()), (ip(src), ip("10.0.1.13")));
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }
}

// ---------- SPEC 7.4: destinations through the uplink ----------

#[test]
fn spec7_4_martian_and_private_destinations_never_leave_through_an_eip() {
    let s = snap();
    run(&s, "uplink", &router_reply());
    assert_eq!(s.next_hop_mac(), Some(ROUTER));
    for dst in [
        "255.255.255.255",
        "224.0.0.18",
        "239.1.2.3",
        "127.0.0.1",
        "0.0.0.0",
        "0.0.0.9",
        "169.254.169.254",
        "240.0.0.1",
        "10.0.0.77", // vpc a's own CIDR, in no subnet
        "10.2.1.11", // vpc c, not peered with a
    ] {
        let r = run(&s, "p3", &udp(GW, P3, "10.0.1.13", dst, 64));
        assert_eq!(r.v, Verdict::Drop(DropReason::UplinkBogusDst), "to {dst}");
        assert!(r.trace.contains("SPEC 7.4"), "{dst}: {}", r.trace);
        // not even a time-exceeded answer about it
        let r = run(&s, "p3", &udp(GW, P3, "10.0.1.13", dst, 1));
        assert_eq!(r.v, Verdict::Drop(DropReason::UplinkBogusDst), "to {dst}");
    }
    // a global unicast destination still leaves with the EIP
    let r = run(&s, "p3", &udp(GW, P3, "10.0.1.13", "198.51.100.7", 64));
    assert_eq!(r.v, to(&s, "uplink"));
    let p = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
    assert_eq!(p.src(), ip("203.0.113.11"));
}

// ---------- SPEC 7.3: per-purpose ARP budgets on the uplink ----------

fn arp_burst(s: &Snapshot, frame: &[u8], n: usize, now_ns: u64) -> usize {
    let id = s.port_id("uplink").unwrap();
    (0..n)
        .filter(|_| {
            let mut buf = vec![0u8; 2048];
            buf[..frame.len()].copy_from_slice(frame);
            let mut len = frame.len();
            s.process(&Ctx::at(now_ns), id, &mut buf, &mut len, &mut NoTrace)
                != Verdict::Drop(DropReason::ArpRateLimited)
        })
        .count()
}

fn answered_for_eip(s: &Snapshot, from: MacAddr, spa: &str, now_ns: u64) -> bool {
    let req = build::arp_request(from, ip(spa), ip("203.0.113.10"));
    let r = run_at(s, "uplink", &req, now_ns);
    if r.v != to(s, "uplink") {
        return false;
    }
    matches!(classify(&r.out).unwrap().l3, L3::Arp(a) if a.op == 2 && a.sha.mac() == UPLINK)
}

#[test]
fn spec7_3_an_outside_arp_flood_does_not_starve_the_next_hop_or_eips() {
    let s = snap();
    let limit = config().switch.arp_per_sec as usize;
    let now = 7_000_000_000;
    // an outside host floods requests for addresses that are no EIP
    let junk = build::arp_request(OTHER, ip("198.51.100.9"), ip("203.0.113.99"));
    assert_eq!(arp_burst(&s, &junk, limit + 100, now), limit);
    // in the same second: the next hop's reply is still learned...
    let r = run_at(&s, "uplink", &router_reply(), now);
    assert_eq!(r.v, Verdict::Drop(DropReason::UplinkArp));
    assert_eq!(
        s.next_hop_mac(),
        Some(ROUTER),
        "the next hop's ARP was starved"
    );
    // ...and the next hop's and another outside host's requests for an EIP answered
    assert!(answered_for_eip(&s, ROUTER, "203.0.113.1", now));
    assert!(answered_for_eip(&s, OTHER, "198.51.100.9", now));

    // a flood of requests for an EIP spends the EIP budget, not the next hop's
    let s = snap();
    run_at(&s, "uplink", &router_reply(), now);
    let eip_req = build::arp_request(OTHER, ip("198.51.100.9"), ip("203.0.113.10"));
    assert_eq!(arp_burst(&s, &eip_req, limit + 100, now), limit);
    assert!(!answered_for_eip(&s, OTHER, "198.51.100.9", now));
    assert!(answered_for_eip(&s, ROUTER, "203.0.113.1", now));
}

#[test]
fn spec7_3_a_forger_of_the_next_hops_ip_cannot_starve_the_known_next_hop() {
    // with the next hop's MAC configured, a forger using its IP from another MAC
    // spends a budget of its own and is never learned
    let mut c = config();
    c.uplink.as_mut().unwrap().next_hop_mac = Some(ROUTER);
    let s = Snapshot::compile(&c, None).unwrap();
    let limit = c.switch.arp_per_sec as usize;
    let now = 9_000_000_000;
    let forged = build::arp_request(OTHER, ip("203.0.113.1"), ip("203.0.113.10"));
    assert_eq!(arp_burst(&s, &forged, limit + 100, now), limit);
    assert_eq!(s.next_hop_mac(), Some(ROUTER));
    assert!(answered_for_eip(&s, ROUTER, "203.0.113.1", now));
    let r = run_at(&s, "uplink", &forged, now);
    assert!(r.trace.contains("another MAC"), "{}", r.trace);
}

// ---------- SPEC 2.6: broadcast/multicast MAC, unicast IPv4 destination ----------

#[test]
fn spec2_6_a_flood_to_a_unicast_address_is_dropped() {
    let s = snap();
    let mcast = MacAddr([1, 0, 0x5e, 0, 0, 18]);
    for (port, m, sip) in [("p1", P1, "10.0.1.11"), ("nat", NAT, "10.0.1.19")] {
        for dst_mac in [MacAddr::BROADCAST, mcast] {
            for dst in [
                "10.0.1.12",  // a port of the subnet: would skip its destination check
                "10.0.1.100", // a VIP
                "10.0.2.11",  // another subnet
                "10.0.2.255", // another subnet's broadcast address
                "8.8.8.8",
                "0.0.0.0",
            ] {
                let r = run(&s, port, &udp(dst_mac, m, sip, dst, 64));
                assert_eq!(
                    r.v,
                    Verdict::Drop(DropReason::FloodToUnicastIp),
                    "{port} {dst_mac} to {dst}"
                );
                assert!(r.trace.contains("SPEC 2.6"), "{}", r.trace);
            }
            // what the whole subnet listens to still floods: the limited broadcast
            // (DHCP), a multicast group (VRRP), the subnet's broadcast address
            for dst in ["255.255.255.255", "224.0.0.18", "10.0.1.255"] {
                let r = run(&s, port, &udp(dst_mac, m, sip, dst, 64));
                assert_eq!(r.v, flood(&s, "a1"), "{port} {dst_mac} to {dst}");
            }
        }
    }
}

// ---------- SPEC 2.3: the DHCP exemption ----------

#[test]
fn spec2_3_dhcp_from_0_0_0_0_never_leaves_the_subnet() {
    let s = snap();
    // DHCP discover: flooded in the subnet
    let r = run(
        &s,
        "p1",
        &dhcp(MacAddr::BROADCAST, P1, "0.0.0.0", "255.255.255.255"),
    );
    assert_eq!(r.v, flood(&s, "a1"));
    // to the gateway at the gateway MAC: consumed by the switch as before, not routed
    let r = run(&s, "p1", &dhcp(GW, P1, "0.0.0.0", "10.0.1.1"));
    assert_eq!(r.v, Verdict::Drop(DropReason::ToGateway));
    // anything else from 0.0.0.0 is a spoofed source: routed across the peering, to
    // a next-hop port, to the uplink, to another port at L2, to another gateway, or
    // to the limited broadcast at the gateway MAC (routed)
    for (dst_mac, dst) in [
        (GW, "10.1.1.11"),
        (GW, "192.168.1.1"),
        (GW, "198.51.100.7"),
        (GW, "10.0.2.11"),
        (GW, "10.0.2.1"),
        (GW, "255.255.255.255"),
        (P2, "10.0.1.12"),
        (P2, "255.255.255.255"),
        (P2, "10.0.1.1"),
        (MacAddr::BROADCAST, "10.0.1.1"),
    ] {
        let r = run(&s, "p1", &dhcp(dst_mac, P1, "0.0.0.0", dst));
        assert_eq!(
            r.v,
            Verdict::Drop(DropReason::SpoofedSrcIp),
            "{dst_mac} {dst}"
        );
        assert!(r.trace.contains("SPEC 2.3"), "{}", r.trace);
    }
    // a DHCP client port pair from an address that is not the port's: spoofed, as
    // any other packet
    for (dst_mac, dst) in [(MacAddr::BROADCAST, "255.255.255.255"), (GW, "10.0.1.1")] {
        let r = run(&s, "p1", &dhcp(dst_mac, P1, "10.0.1.77", dst));
        assert_eq!(r.v, Verdict::Drop(DropReason::SpoofedSrcIp), "{dst}");
    }
}

// ---------- flood budget in copies ----------

#[test]
fn floods_cost_one_token_per_copy_ip_and_arp() {
    // a1 has four ports: every flood from p1 makes three copies
    let mut c = config();
    c.switch.flood_per_sec = 30;
    let s = Snapshot::compile(&c, None).unwrap();
    let p1 = s.port_id("p1").unwrap();
    let go = |f: &[u8], now| {
        let mut buf = vec![0u8; 2048];
        buf[..f.len()].copy_from_slice(f);
        let mut len = f.len();
        s.process(&Ctx::at(now), p1, &mut buf, &mut len, &mut NoTrace)
    };
    let bc = udp(MacAddr::BROADCAST, P1, "10.0.1.11", "10.0.1.255", 64);
    let now = 3_000_000_000;
    let flooded = (0..100).filter(|_| go(&bc, now) == flood(&s, "a1")).count();
    assert_eq!(flooded, 10, "30 copies a second, three per frame");
    // flooded ARP (a request for an unknown address) spends the same budget
    let arp = build::arp_request(P1, ip("10.0.1.11"), ip("10.0.1.77"));
    assert_eq!(go(&arp, now), Verdict::Drop(DropReason::FloodRateLimited));
    assert_eq!(go(&arp, now + 1_000_000_000), flood(&s, "a1"));
    // q1 is alone in a2: its broadcasts make no copy and spend nothing
    let q1 = s.port_id("q1").unwrap();
    let q1_bc = udp(
        MacAddr::BROADCAST,
        MacAddr([2, 0, 0, 0, 2, 1]),
        "10.0.2.11",
        "10.0.2.255",
        64,
    );
    for _ in 0..100 {
        let mut buf = vec![0u8; 2048];
        buf[..q1_bc.len()].copy_from_slice(&q1_bc);
        let mut len = q1_bc.len();
        assert_eq!(
            s.process(&Ctx::at(now), q1, &mut buf, &mut len, &mut NoTrace),
            flood(&s, "a2")
        );
    }
}

// ---------- ICMP errors the switch must not send (RFC 1812 4.3.2.7) ----------

#[test]
fn no_icmp_error_about_non_first_fragments() {
    let s = snap();
    let f = udp(GW, P1, "10.0.1.11", "10.0.2.11", 1);
    // a non-first fragment: dropped with its reason, no answer
    for off in [1, 185, 0x1fff] {
        for mf in [true, false] {
            let r = run(&s, "p1", &fragment(f.clone(), off, mf));
            assert_eq!(r.v, Verdict::Drop(DropReason::TtlExceeded), "offset {off}");
            assert!(r.trace.contains("non-first fragment"), "{}", r.trace);
        }
    }
    // the first fragment is answered
    let r = run(&s, "p1", &fragment(f, 0, true));
    assert_eq!(
        r.v,
        Verdict::DropAndSend(DropReason::TtlExceeded, Out::Port(s.port_id("p1").unwrap()))
    );
    // no route, from s1 (vpc c has no default route), a non-first fragment
    let g = fragment(
        udp(GW, MacAddr([2, 0, 0, 0, 4, 1]), "10.2.1.11", "8.8.8.8", 64),
        10,
        false,
    );
    assert_eq!(run(&s, "s1", &g).v, Verdict::Drop(DropReason::NoRoute));
    // and from the outside: a non-first fragment with TTL 1 to an EIP
    let h = fragment(
        udp(UPLINK, ROUTER, "198.51.100.7", "203.0.113.11", 1),
        3,
        false,
    );
    assert_eq!(
        run(&s, "uplink", &h).v,
        Verdict::Drop(DropReason::TtlExceeded)
    );
}

#[test]
fn no_icmp_error_about_broadcast_or_multicast_destinations_or_to_non_host_sources() {
    let s = snap();
    let s1 = MacAddr([2, 0, 0, 0, 4, 1]);
    // routed (to the gateway MAC) to a group or the limited broadcast with no route
    for dst in ["224.0.0.5", "239.255.255.250", "255.255.255.255"] {
        let r = run(&s, "s1", &udp(GW, s1, "10.2.1.11", dst, 64));
        assert_eq!(r.v, Verdict::Drop(DropReason::NoRoute), "to {dst}");
        assert!(r.trace.contains("broadcast/multicast"), "{}", r.trace);
    }
    // a unicast one is answered
    let r = run(&s, "s1", &udp(GW, s1, "10.2.1.11", "8.8.8.8", 64));
    assert!(matches!(r.v, Verdict::DropAndSend(DropReason::NoRoute, _)));
    // nat has its source check off: TTL 1 from 0.0.0.0 or 127.0.0.1 gets no answer
    for src in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "240.0.0.1"] {
        let r = run(&s, "nat", &udp(GW, NAT, src, "10.0.2.11", 1));
        assert_eq!(r.v, Verdict::Drop(DropReason::TtlExceeded), "from {src}");
        assert!(r.trace.contains("not a host address"), "{}", r.trace);
    }
    // from its own address it is answered
    let r = run(&s, "nat", &udp(GW, NAT, "10.0.1.19", "10.0.2.11", 1));
    assert!(matches!(
        r.v,
        Verdict::DropAndSend(DropReason::TtlExceeded, _)
    ));
    // still never about an ICMP error (unchanged)
    let mut m = vec![3u8, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0u8; 28]);
    let e = build::ipv4(
        GW,
        R1,
        ip("10.1.1.11"),
        ip("10.0.2.11"),
        1,
        IpProtocol::ICMP,
        &m,
    );
    assert_eq!(run(&s, "r1", &e).v, Verdict::Drop(DropReason::TtlExceeded));
    let e = build::ipv4(
        GW,
        P1,
        ip("10.0.1.11"),
        ip("10.0.2.11"),
        1,
        IpProtocol::ICMP,
        &m,
    );
    assert_eq!(run(&s, "p1", &e).v, Verdict::Drop(DropReason::TtlExceeded));
}

#[test]
fn every_new_reason_has_its_name() {
    for (r, n) in [
        (DropReason::UplinkBogusSrc, "uplink_bogus_src"),
        (DropReason::UplinkBogusDst, "uplink_bogus_dst"),
        (DropReason::FloodToUnicastIp, "flood_to_unicast_ip"),
    ] {
        assert_eq!(r.name(), n);
        assert!(DropReason::ALL.contains(&r));
    }
    let _ = (P2, R1);
}
