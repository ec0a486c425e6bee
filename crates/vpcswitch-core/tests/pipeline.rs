//! Stage-by-stage tests of the pipeline with byte fixtures; each names its SPEC rule.

use std::net::Ipv4Addr;

use vpcswitch_core::{Ctx, Doorbell, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{ConfigBuilder, MacAddr};
use vpcswitch_wire::arp::ArpInfo;
use vpcswitch_wire::{build, classify, icmp, Ipv4Packet, L3};

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// vpc a (10.0.0.0/16): subnets a1 (10.0.1.0/24: p1, p2, p3, lvs) and a2 (10.0.2.0/24: q1)
/// vpc b (10.1.0.0/16): b1 (r1); vpc c (10.2.0.0/16): c1 (s1). Peerings a-b, b-c.
/// VIP v = 10.0.1.100 on p1, p2. lvs has src_dst_check off. nat (check off) in a2 is
/// the next hop for 192.168.0.0/16.
fn topo() -> Snapshot {
    let cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .vpc("c", &["10.2.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .subnet("c1", "c", "10.2.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13", "10.0.1.23"])
        .allowed_mac("02:00:00:00:01:33")
        .port("lvs", "a1", "02:00:00:00:01:04", &["10.0.1.14"])
        .src_dst_check(false)
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .port("nat", "a2", "02:00:00:00:02:02", &["10.0.2.12"])
        .src_dst_check(false)
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .port("s1", "c1", "02:00:00:00:04:01", &["10.2.1.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .vip("w", "a1", "10.0.1.101", &["lvs"])
        .peering("ab", "a", "b")
        .peering("bc", "b", "c")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_peering("b", "10.2.0.0/16", "bc")
        .route_via_peering("c", "10.1.0.0/16", "bc")
        // a's route to c goes to the a-b peering: must not be transitive
        .route_via_peering("a", "10.2.0.0/16", "ab")
        .route_via_port("a", "192.168.0.0/16", "nat")
        .build()
        .unwrap();
    Snapshot::compile(&cfg, None).unwrap()
}

struct R {
    v: Verdict,
    out: Vec<u8>,
}

fn run(s: &Snapshot, port: &str, frame: &[u8]) -> R {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let id = s.port_id(port).unwrap();
    let v = s.process(&Ctx::at(1_000), id, &mut buf, &mut len, &mut NoTrace);
    // trace must agree with process on the verdict
    R {
        v,
        out: buf[..len].to_vec(),
    }
}

fn to(s: &Snapshot, port: &str) -> Verdict {
    Verdict::Forward(Out::Port(s.port_id(port).unwrap()))
}
fn dropped(r: DropReason) -> Verdict {
    Verdict::Drop(r)
}

fn udp(src_mac: &str, dst_mac: MacAddr, sip: &str, dip: &str) -> Vec<u8> {
    build::udp(
        build::Ends {
            dst: dst_mac,
            src: mac(src_mac),
            sip: ip(sip),
            dip: ip(dip),
        },
        64,
        1000,
        2000,
        b"hello",
    )
}

const P1: &str = "02:00:00:00:01:01";
const P2: &str = "02:00:00:00:01:02";
const P3: &str = "02:00:00:00:01:03";
const LVS: &str = "02:00:00:00:01:04";
const Q1: &str = "02:00:00:00:02:01";

#[test]
fn spec2_1_malformed_frames_are_dropped_with_reasons() {
    let s = topo();
    assert_eq!(run(&s, "p1", &[0u8; 5]).v, dropped(DropReason::Truncated));
    let mut f = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    f[14] = 0x65;
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::BadIpVersion));
    f[14] = 0x43;
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::BadIpHeaderLen));
    let mut f = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    f[16] = 0xff;
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::BadIpTotalLen));
    let mut f = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    f[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::VlanTagged));
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::Ipv6), "SPEC 9.1");
    let mut a = build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.12"));
    a[18] = 9; // hlen
    assert_eq!(run(&s, "p1", &a).v, dropped(DropReason::MalformedArp));
}

#[test]
fn spec2_2_source_mac_is_enforced_even_with_check_off() {
    let s = topo();
    let f = udp(P2, mac(P3), "10.0.1.11", "10.0.1.13");
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::SpoofedSrcMac));
    let f = udp(P2, mac(P1), "10.0.1.14", "10.0.1.11");
    assert_eq!(run(&s, "lvs", &f).v, dropped(DropReason::SpoofedSrcMac));
    // an allowed extra MAC is accepted
    let f = udp("02:00:00:00:01:33", mac(P1), "10.0.1.13", "10.0.1.11");
    assert_eq!(run(&s, "p3", &f).v, to(&s, "p1"));
}

#[test]
fn spec2_3_source_ip_check() {
    let s = topo();
    let f = udp(P1, mac(P2), "10.0.1.99", "10.0.1.12");
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::SpoofedSrcIp));
    // secondary fixed IP and bound VIP are in the allowed set
    let f = udp(P3, mac(P1), "10.0.1.23", "10.0.1.11");
    assert_eq!(run(&s, "p3", &f).v, to(&s, "p1"));
    let f = udp(P2, mac(P1), "10.0.1.100", "10.0.1.11");
    assert_eq!(run(&s, "p2", &f).v, to(&s, "p1"));
    // 0.0.0.0 only for DHCP
    let d = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: mac(P1),
            sip: ip("0.0.0.0"),
            dip: ip("255.255.255.255"),
        },
        64,
        68,
        67,
        b"x",
    );
    assert!(matches!(
        run(&s, "p1", &d).v,
        Verdict::Forward(Out::Flood(_))
    ));
    let d = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: mac(P1),
            sip: ip("0.0.0.0"),
            dip: ip("255.255.255.255"),
        },
        64,
        69,
        67,
        b"x",
    );
    assert_eq!(run(&s, "p1", &d).v, dropped(DropReason::SpoofedSrcIp));
    // check off: any source IP
    let f = udp(LVS, mac(P1), "203.0.113.9", "10.0.1.11");
    assert_eq!(run(&s, "lvs", &f).v, to(&s, "p1"));
}

#[test]
fn spec2_3_arp_sender_checks() {
    let s = topo();
    let mut a = ArpInfo {
        op: 1,
        sha: mac(P2).into(),
        spa: ip("10.0.1.11").into(),
        tha: MacAddr::ZERO.into(),
        tpa: ip("10.0.1.12").into(),
    };
    let f = build::arp_frame(MacAddr::BROADCAST, mac(P1), &a);
    assert_eq!(
        run(&s, "p1", &f).v,
        dropped(DropReason::ArpSenderMacMismatch)
    );
    a.sha = mac(P1).into();
    a.spa = ip("10.0.1.77").into();
    let f = build::arp_frame(MacAddr::BROADCAST, mac(P1), &a);
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::SpoofedArpSenderIp));
}

#[test]
fn spec2_3a_arp_claims_of_others_addresses_dropped_whatever_the_check() {
    let s = topo();
    for port in ["p3", "lvs"] {
        let m = if port == "p3" { P3 } else { LVS };
        // another port's fixed IP
        let f = build::garp(mac(m), ip("10.0.1.11"));
        assert_eq!(
            run(&s, port, &f).v,
            dropped(DropReason::ArpClaimsForeignIp),
            "{port}"
        );
        // the gateway
        let f = build::garp(mac(m), ip("10.0.1.1"));
        assert_eq!(
            run(&s, port, &f).v,
            dropped(DropReason::ArpClaimsForeignIp),
            "{port}"
        );
        // a VIP it is not bound to
        let f = build::garp(mac(m), ip("10.0.1.100"));
        assert_eq!(
            run(&s, port, &f).v,
            dropped(DropReason::VipClaimNotBound),
            "{port}"
        );
    }
    assert_eq!(s.vip_owner_name("v"), None);
}

#[test]
fn spec3_1_garp_and_reply_learn_owner_only_for_bound_ports() {
    let s = topo();
    let r = run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    assert_eq!(
        r.v,
        Verdict::Forward(Out::Flood(0)),
        "SPEC 3.3: GARP goes to the subnet"
    );
    assert_eq!(s.vip_owner_name("v"), Some("p1"));
    // a reply from p2 claiming the VIP moves it
    let f = build::arp_reply(mac(P3), ip("10.0.1.13"), mac(P2), ip("10.0.1.100"));
    assert_eq!(run(&s, "p2", &f).v, to(&s, "p3"));
    assert_eq!(s.vip_owner_name("v"), Some("p2"));
    let cell = s.vip_cell(s.vip_id("v").unwrap());
    assert_eq!(cell.moves(), 2, "SPEC 3.6: moves counted");
    // a non-gratuitous request from p1 does not move it
    run(
        &s,
        "p1",
        &build::arp_request(mac(P1), ip("10.0.1.100"), ip("10.0.1.13")),
    );
    assert_eq!(s.vip_owner_name("v"), Some("p2"));
}

/// SPEC 3.1, 11.4: a move in the datapath rings the switch's VIP bell (its listener,
/// the store thread, publishes the claim at once); a claim that moves nothing does
/// not; a later snapshot rings the same bell; a parked listener is woken.
#[test]
fn spec3_1_a_vip_move_rings_the_bell_and_wakes_its_listener() {
    let s = topo();
    let bell = s.vip_bell().clone();
    assert!(bell.listen(), "the first listener");
    assert!(bell.listen(), "the same thread again");
    let r0 = bell.rings();
    run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    assert_eq!(bell.rings(), r0 + 1, "a move rings");
    run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    assert_eq!(bell.rings(), r0 + 1, "the same owner again: no ring");
    // a later snapshot (a reload) rings the same bell
    let next = Snapshot::compile(&s.config, Some(&s)).unwrap();
    assert!(std::sync::Arc::ptr_eq(next.vip_bell(), &bell));
    assert!(next.set_vip_owner("v", "p2", 7));
    assert_eq!(bell.rings(), r0 + 2, "set_vip_owner's move rings");
    // another thread listens too (up to LISTENERS); its ring wakes this parked one and
    // itself
    let (b2, me) = (bell.clone(), std::thread::current().id());
    let t = std::thread::spawn(move || {
        assert_ne!(std::thread::current().id(), me);
        assert!(b2.listen(), "a second listener");
        std::thread::sleep(std::time::Duration::from_millis(50));
        b2.ring();
    });
    let start = std::time::Instant::now();
    while bell.rings() < r0 + 3 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::park_timeout(std::time::Duration::from_secs(20));
    }
    assert_eq!(bell.rings(), r0 + 3);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "woken by the ring, not by the 20 s timeout"
    );
    t.join().unwrap();
    // the slots run out: a fifth thread is refused (three more fill them)
    let more: Vec<bool> = (0..Doorbell::LISTENERS)
        .map(|_| {
            let b = bell.clone();
            std::thread::spawn(move || b.listen()).join().unwrap()
        })
        .collect();
    assert_eq!(
        more,
        vec![true, true, false, false],
        "two slots were taken, two remain"
    );
}

fn arp_answer(r: &R) -> ArpInfo {
    match classify(&r.out).unwrap().l3 {
        L3::Arp(a) => a,
        other => panic!("not ARP: {other:?}"),
    }
}

#[test]
fn spec3_4_arp_responder() {
    let s = topo();
    // gateway
    let r = run(
        &s,
        "p1",
        &build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.1")),
    );
    assert_eq!(r.v, to(&s, "p1"));
    let a = arp_answer(&r);
    assert_eq!(
        (a.op, a.sha.mac(), a.spa, a.tpa),
        (2, GW, ip("10.0.1.1").into(), ip("10.0.1.11").into())
    );
    // a port's fixed IP (secondary too)
    let r = run(
        &s,
        "p1",
        &build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.23")),
    );
    assert_eq!(arp_answer(&r).sha, mac(P3));
    // VIP without owner: to the bound ports only (p1 is one, it is excluded by the runtime)
    let r = run(
        &s,
        "p3",
        &build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.1.100")),
    );
    assert_eq!(r.v, Verdict::Forward(Out::VipPorts(0)));
    // VIP with owner: answered with the owner's MAC
    s.set_vip_owner("v", "p2", 5);
    let r = run(
        &s,
        "p3",
        &build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.1.100")),
    );
    assert_eq!(arp_answer(&r).sha, mac(P2));
    // unknown address in the subnet: flooded
    let r = run(
        &s,
        "p3",
        &build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.1.200")),
    );
    assert_eq!(r.v, Verdict::Forward(Out::Flood(0)));
    // outside the subnet: dropped
    let r = run(
        &s,
        "p3",
        &build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.2.11")),
    );
    assert_eq!(r.v, dropped(DropReason::ArpTargetOutsideSubnet));
    // unicast request (cache confirmation) is answered the same way
    let mut f = build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.1.11"));
    f[0..6].copy_from_slice(&mac(P1).0);
    assert_eq!(arp_answer(&run(&s, "p3", &f)).sha, mac(P1));
}

#[test]
fn spec3_5_no_answer_to_announcements_or_own_probes() {
    let s = topo();
    let r = run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.11")));
    assert_eq!(r.v, Verdict::Forward(Out::Flood(0)));
    let probe = build::arp_request(mac(P1), ip("0.0.0.0"), ip("10.0.1.11"));
    assert_eq!(run(&s, "p1", &probe).v, Verdict::Forward(Out::Flood(0)));
    // a probe for someone else's address is answered (conflict detection)
    let probe = build::arp_request(mac(P1), ip("0.0.0.0"), ip("10.0.1.12"));
    assert_eq!(arp_answer(&run(&s, "p1", &probe)).sha, mac(P2));
}

#[test]
fn spec4_1_broadcast_and_multicast_stay_in_subnet() {
    let s = topo();
    let vrrp = build::ipv4(
        mac("01:00:5e:00:00:12"),
        mac(P1),
        ip("10.0.1.11"),
        ip("224.0.0.18"),
        255,
        112,
        &[0x21; 20],
    );
    assert_eq!(run(&s, "p1", &vrrp).v, Verdict::Forward(Out::Flood(0)));
    assert_eq!(s.subnets[0].ports.len(), 4);
}

#[test]
fn spec4_2_unicast_to_known_mac_and_unknown_dropped() {
    let s = topo();
    assert_eq!(
        run(&s, "p1", &udp(P1, mac(P2), "10.0.1.11", "10.0.1.12")).v,
        to(&s, "p2")
    );
    let f = udp(P1, mac("02:99:00:00:00:01"), "10.0.1.11", "10.0.1.12");
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::UnknownUnicast));
    // a MAC in another subnet is not reachable at L2
    let f = udp(P1, mac(Q1), "10.0.1.11", "10.0.2.11");
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::UnknownUnicast));
    let f = udp(P1, mac(P1), "10.0.1.11", "10.0.1.11");
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::Hairpin));
}

#[test]
fn spec4_3_vip_steering_for_stale_caches() {
    let s = topo();
    s.set_vip_owner("v", "p2", 1);
    // client p3 still sends to p1's MAC
    let r = run(&s, "p3", &udp(P3, mac(P1), "10.0.1.13", "10.0.1.100"));
    assert_eq!(r.v, to(&s, "p2"));
    assert_eq!(
        &r.out[0..6],
        &mac(P2).0,
        "destination MAC rewritten to the owner"
    );
    // to the owner itself: unchanged
    let r = run(&s, "p3", &udp(P3, mac(P2), "10.0.1.13", "10.0.1.100"));
    assert_eq!(r.v, to(&s, "p2"));
    // sent to a port not bound to the VIP (LVS DR): plain L2, then 6.1 decides
    let r = run(&s, "p3", &udp(P3, mac(LVS), "10.0.1.13", "10.0.1.100"));
    assert_eq!(r.v, to(&s, "lvs"));
    let r = run(&s, "lvs", &udp(LVS, mac(P3), "10.0.1.13", "10.0.1.100"));
    assert_eq!(r.v, dropped(DropReason::DstCheck), "p3 has the check on");
}

#[test]
fn spec3_1_first_packet_to_a_new_owner_is_timed_once_per_move_and_never_by_trace() {
    let s = topo();
    let cell = s.vip_cell(s.vip_id("v").unwrap());
    assert_eq!(cell.first_packet_ns(), None, "no move yet");
    run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    // nothing has been sent to p1 yet: no figure
    assert_eq!(cell.first_packet_ns(), None);
    // a trace of a packet to the VIP does not count (it changes no state)
    let f = udp(P3, mac(P1), "10.0.1.13", "10.0.1.100");
    s.trace(1_000, s.port_id("p3").unwrap(), &f);
    assert_eq!(cell.first_packet_ns(), None, "trace must not time the move");
    // the VIP's owner sending to itself is not a packet to the new owner
    run(&s, "p1", &udp(P1, mac(P2), "10.0.1.11", "10.0.1.100"));
    assert_eq!(cell.first_packet_ns(), None);
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(run(&s, "p3", &f).v, to(&s, "p1"));
    let first = cell.first_packet_ns().expect("timed by the first packet");
    assert!(
        first >= 2_000_000,
        "the 2 ms before it are counted: {first} ns"
    );
    // later packets do not change it
    run(&s, "p3", &f);
    assert_eq!(cell.first_packet_ns(), Some(first));
    // a move to p2, then a stale-cache packet (steered, SPEC 4.3) times the new move
    run(&s, "p2", &build::garp(mac(P2), ip("10.0.1.100")));
    assert_eq!(run(&s, "p3", &f).v, to(&s, "p2"));
    let second = cell.first_packet_ns().unwrap();
    assert!(
        second < first,
        "a new figure for the new move: {second} vs {first}"
    );
    // routed from another subnet (SPEC 5.2) also counts
    run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    std::thread::sleep(std::time::Duration::from_millis(3));
    assert_eq!(
        routed(&s, "q1", Q1, "10.0.2.11", "10.0.1.100", 64).v,
        to(&s, "p1")
    );
    assert!(cell.first_packet_ns().unwrap() >= 3_000_000);
    // carried over a reload
    let again = Snapshot::compile(&s.config, Some(&s)).unwrap();
    assert_eq!(
        again.vip_cell(again.vip_id("v").unwrap()).first_packet_ns(),
        cell.first_packet_ns()
    );
}

#[test]
fn spec6_1_destination_check() {
    let s = topo();
    // p2 has the check on: a packet for an address not its own is dropped
    let r = run(&s, "lvs", &udp(LVS, mac(P2), "10.0.1.14", "10.0.1.200"));
    assert_eq!(r.v, dropped(DropReason::DstCheck));
    // its bound VIP is in its allowed set
    let r = run(&s, "lvs", &udp(LVS, mac(P2), "10.0.1.14", "10.0.1.100"));
    assert_eq!(r.v, to(&s, "p2"));
    // SPEC 6.2: LVS director forwards the client's packet to a backend (check off)
    let r = run(&s, "p1", &udp(P1, mac(LVS), "10.0.1.11", "10.0.1.101"));
    assert_eq!(r.v, to(&s, "lvs"));
}

fn routed(s: &Snapshot, from: &str, src_mac: &str, sip: &str, dip: &str, ttl: u8) -> R {
    let f = build::udp(
        build::Ends {
            dst: GW,
            src: mac(src_mac),
            sip: ip(sip),
            dip: ip(dip),
        },
        ttl,
        1000,
        2000,
        b"routed",
    );
    run(s, from, &f)
}

#[test]
fn spec5_5_l3_across_subnets_rewrites() {
    let s = topo();
    let r = routed(&s, "p1", P1, "10.0.1.11", "10.0.2.11", 64);
    assert_eq!(r.v, to(&s, "q1"));
    assert_eq!(&r.out[0..6], &mac(Q1).0);
    assert_eq!(&r.out[6..12], &GW.0);
    let ipv = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
    assert_eq!(ipv.ttl(), 63);
    assert!(ipv.verify_checksum());
}

#[test]
fn spec5_2_vip_routed_to_owner_or_arped_for() {
    let s = topo();
    let r = routed(&s, "q1", Q1, "10.0.2.11", "10.0.1.100", 64);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(DropReason::VipNoOwner, Out::VipPorts(0))
    );
    let a = arp_answer(&r);
    assert_eq!(
        (a.op, a.tpa, a.spa),
        (1, ip("10.0.1.100").into(), ip("10.0.1.1").into())
    );
    s.set_vip_owner("v", "p1", 2);
    assert_eq!(
        routed(&s, "q1", Q1, "10.0.2.11", "10.0.1.100", 64).v,
        to(&s, "p1")
    );
    s.set_vip_owner("v", "p2", 3);
    assert_eq!(
        routed(&s, "q1", Q1, "10.0.2.11", "10.0.1.100", 64).v,
        to(&s, "p2")
    );
    assert_eq!(
        routed(&s, "q1", Q1, "10.0.2.11", "10.0.1.250", 64).v,
        dropped(DropReason::NoSuchHost)
    );
}

#[test]
fn spec5_3_peering_is_not_transitive() {
    let s = topo();
    assert_eq!(
        routed(&s, "p1", P1, "10.0.1.11", "10.1.1.11", 64).v,
        to(&s, "r1")
    );
    assert_eq!(
        routed(&s, "r1", "02:00:00:00:03:01", "10.1.1.11", "10.0.1.11", 64).v,
        to(&s, "p1")
    );
    assert_eq!(
        routed(&s, "r1", "02:00:00:00:03:01", "10.1.1.11", "10.2.1.11", 64).v,
        to(&s, "s1")
    );
    // a -> c through a-b: c is not b's local subnet, so nothing
    assert_eq!(
        routed(&s, "p1", P1, "10.0.1.11", "10.2.1.11", 64).v,
        dropped(DropReason::NoSuchHost)
    );
}

#[test]
fn spec5_4_next_hop_port() {
    let s = topo();
    let r = routed(&s, "p1", P1, "10.0.1.11", "192.168.7.7", 64);
    assert_eq!(r.v, to(&s, "nat"));
    assert_eq!(&r.out[0..6], &mac("02:00:00:00:02:02").0);
}

#[test]
fn spec5_5_ttl_expiry_answers_time_exceeded() {
    let s = topo();
    for ttl in [0u8, 1] {
        let r = routed(&s, "p1", P1, "10.0.1.11", "10.0.2.11", ttl);
        assert_eq!(
            r.v,
            Verdict::DropAndSend(DropReason::TtlExceeded, Out::Port(s.port_id("p1").unwrap()))
        );
        let ipv = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
        assert_eq!(ipv.src(), ip("10.0.1.1"));
        assert_eq!(ipv.dst(), ip("10.0.1.11"));
        assert_eq!(ipv.payload()[0], icmp::TYPE_TIME_EXCEEDED);
        assert_eq!(&r.out[0..6], &mac(P1).0);
    }
}

#[test]
fn spec5_5_icmp_errors_are_rate_limited_per_port() {
    let s = topo();
    let mut sent = 0;
    for _ in 0..500 {
        if let Verdict::DropAndSend(..) = routed(&s, "p1", P1, "10.0.1.11", "10.0.2.11", 1).v {
            sent += 1;
        }
    }
    assert_eq!(sent, 100, "default icmp_errors_per_sec is 100");
    // another port has its own budget
    assert!(matches!(
        routed(&s, "p3", P3, "10.0.1.13", "10.0.2.11", 1).v,
        Verdict::DropAndSend(..)
    ));
}

#[test]
fn spec5_6_gateway_answers_ping_in_its_vpc() {
    let s = topo();
    for gw in ["10.0.1.1", "10.0.2.1"] {
        let f = build::icmp_echo(GW, mac(P1), ip("10.0.1.11"), ip(gw), 64, 7, 1);
        let r = run(&s, "p1", &f);
        assert_eq!(r.v, to(&s, "p1"), "{gw}");
        let ipv = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
        assert_eq!((ipv.src(), ipv.dst()), (ip(gw), ip("10.0.1.11")));
        assert_eq!(ipv.payload()[0], 0, "echo reply");
    }
    // UDP to the gateway: dropped
    let f = build::udp(
        build::Ends {
            dst: GW,
            src: mac(P1),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.1"),
        },
        64,
        1,
        2,
        b"",
    );
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::ToGateway));
}

#[test]
fn spec5_7_no_route_answers_net_unreachable() {
    let s = topo();
    let r = routed(&s, "q1", Q1, "10.0.2.11", "8.8.8.8", 64);
    assert!(matches!(
        r.v,
        Verdict::DropAndSend(DropReason::NoRoute, Out::Port(_))
    ));
    let ipv = Ipv4Packet::new_checked(&r.out[14..]).unwrap();
    assert_eq!(&ipv.payload()[..2], &[3, 0]);
}

#[test]
fn spec6_1_routed_to_a_next_hop_with_check_on_is_dropped() {
    let cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("nh", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .route_via_port("a", "0.0.0.0/0", "nh")
        .build()
        .unwrap();
    let s = Snapshot::compile(&cfg, None).unwrap();
    assert_eq!(
        routed(&s, "p1", P1, "10.0.1.11", "1.1.1.1", 64).v,
        dropped(DropReason::DstCheck)
    );
}

#[test]
fn spec3_2_owner_survives_reload_while_bound() {
    let s = topo();
    s.set_vip_owner("v", "p2", 1);
    let mut cfg = s.config.clone();
    cfg.ports[0].src_dst_check = false; // unrelated change
    let s2 = Snapshot::compile(&cfg, Some(&s)).unwrap();
    assert_eq!(s2.vip_owner_name("v"), Some("p2"));
    assert_eq!(s2.generation, 2);
    assert_eq!(s2.port_id("p2"), s.port_id("p2"), "ids stable by name");
    // unbinding the owner clears it
    let mut cfg3 = cfg.clone();
    cfg3.vips[0].ports = vec!["p1".into()];
    let s3 = Snapshot::compile(&cfg3, Some(&s2)).unwrap();
    assert_eq!(s3.vip_owner_name("v"), None);
    // deleting the owner clears it, and its id is reused only by a new port
    let mut cfg4 = cfg.clone();
    cfg4.vips[0].ports = vec!["p1".into()];
    cfg4.ports.retain(|p| p.name != "p2");
    let s4 = Snapshot::compile(&cfg4, Some(&s2)).unwrap();
    assert_eq!(s4.vip_owner_name("v"), None);
    assert!(s4.port_id("p2").is_none());
}

#[test]
fn spec3_2_learning_between_compile_and_swap_is_not_lost() {
    let s = topo();
    let cfg = s.config.clone();
    let s2 = Snapshot::compile(&cfg, Some(&s)).unwrap();
    // a GARP is processed on the old snapshot after the new one was compiled
    run(&s, "p1", &build::garp(mac(P1), ip("10.0.1.100")));
    assert_eq!(s2.vip_owner_name("v"), None);
    s2.reconcile_learned(&s);
    assert_eq!(s2.vip_owner_name("v"), Some("p1"));
}

#[test]
fn trace_explains_and_does_not_learn() {
    let s = topo();
    let f = build::garp(mac(P1), ip("10.0.1.100"));
    let t = s.trace(0, s.port_id("p1").unwrap(), &f);
    assert_eq!(t.verdict, Verdict::Forward(Out::Flood(0)));
    let text = t.trace.to_string();
    assert!(text.contains("would make p1 the owner"), "{text}");
    assert_eq!(s.vip_owner_name("v"), None, "trace changes nothing");
    let t = s.trace(
        0,
        s.port_id("p1").unwrap(),
        &udp(P2, mac(P3), "10.0.1.11", "10.0.1.13"),
    );
    assert_eq!(t.verdict, dropped(DropReason::SpoofedSrcMac));
    assert!(t.trace.to_string().contains("SPEC 2.2"));
    let t = s.trace(
        0,
        s.port_id("p1").unwrap(),
        &build::udp(
            build::Ends {
                dst: GW,
                src: mac(P1),
                sip: ip("10.0.1.11"),
                dip: ip("10.0.2.11"),
            },
            1,
            1,
            2,
            b"",
        ),
    );
    assert!(matches!(
        t.verdict,
        Verdict::DropAndSend(DropReason::TtlExceeded, _)
    ));
    assert!(!t.output.is_empty());
}

#[test]
fn arp_and_broadcast_storms_are_bounded_per_port() {
    let s = topo();
    let p1 = s.port_id("p1").unwrap();
    let p3 = s.port_id("p3").unwrap();
    let run_at = |port, frame: &[u8], now| {
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(frame);
        let mut len = frame.len();
        s.process(&Ctx::at(now), port, &mut buf, &mut len, &mut NoTrace)
    };
    // an ARP storm from p1 within one second: 500 accepted (the default), the rest dropped
    let req = build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.12"));
    let answered = (0..2000)
        .filter(|_| run_at(p1, &req, 5_000_000_000) != dropped(DropReason::ArpRateLimited))
        .count();
    assert_eq!(answered, 500);
    // another port is not starved, and the next second p1 is served again
    let req3 = build::arp_request(mac(P3), ip("10.0.1.13"), ip("10.0.1.12"));
    assert_eq!(run_at(p3, &req3, 5_000_000_000), to(&s, "p3"));
    assert_eq!(run_at(p1, &req, 6_000_000_000), to(&s, "p1"));
    // a broadcast storm: 5000 copies per second per port; a1 has four ports, so each
    // broadcast makes three copies (issue 15 item 7: the budget counts copies)
    let bc = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: mac(P1),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.255"),
        },
        64,
        1,
        9,
        b"storm",
    );
    let flooded = (0..20_000)
        .filter(|_| run_at(p1, &bc, 7_000_000_000) == Verdict::Forward(Out::Flood(0)))
        .count();
    assert_eq!(flooded, 5000_usize.div_ceil(3));
    assert_eq!(
        run_at(p1, &bc, 7_000_000_000),
        dropped(DropReason::FloodRateLimited)
    );
    let bc3 = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: mac(P3),
            sip: ip("10.0.1.13"),
            dip: ip("10.0.1.255"),
        },
        64,
        1,
        9,
        b"ok",
    );
    assert_eq!(
        run_at(p3, &bc3, 7_000_000_000),
        Verdict::Forward(Out::Flood(0))
    );
}

#[test]
fn spec2_1_hostile_shapes_zero_one_byte_double_tag_options_fragments_jumbo() {
    let s = topo();
    assert_eq!(run(&s, "p1", &[]).v, dropped(DropReason::Truncated));
    assert_eq!(run(&s, "p1", &[0xff]).v, dropped(DropReason::Truncated));
    // double-tagged (QinQ) frame
    let mut f = vec![];
    f.extend_from_slice(&mac(P2).0);
    f.extend_from_slice(&mac(P1).0);
    f.extend_from_slice(&[0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 7, 0x08, 0x00]);
    f.extend_from_slice(&[0x45; 40]);
    assert_eq!(run(&s, "p1", &f).v, dropped(DropReason::VlanTagged));
    // IPv4 with options (IHL 6) is forwarded like any other
    let mut o = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    o.splice(34..34, [1u8, 1, 1, 1]);
    o[14] = 0x46;
    let tl = u16::from_be_bytes([o[16], o[17]]) + 4;
    o[16..18].copy_from_slice(&tl.to_be_bytes());
    o[24..26].copy_from_slice(&[0, 0]);
    let c = vpcswitch_wire::checksum::checksum(&o[14..38]);
    o[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(run(&s, "p1", &o).v, to(&s, "p2"));
    // fragments are forwarded at L2 and routed at L3 (no ports needed)
    let mut fr = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    fr[20] = 0x20; // MF
    assert_eq!(run(&s, "p1", &fr).v, to(&s, "p2"));
    // a 9000-byte frame is forwarded whole (the buffer decides, not the pipeline)
    let big = build::udp(
        build::Ends {
            dst: mac(P2),
            src: mac(P1),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        &vec![7u8; 8900],
    );
    let mut buf = vec![0u8; 9216];
    buf[..big.len()].copy_from_slice(&big);
    let mut len = big.len();
    let v = s.process(
        &Ctx::default(),
        s.port_id("p1").unwrap(),
        &mut buf,
        &mut len,
        &mut NoTrace,
    );
    assert_eq!(v, to(&s, "p2"));
    // a total length larger than the frame
    let mut short = udp(P1, mac(P2), "10.0.1.11", "10.0.1.12");
    short[16..18].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(run(&s, "p1", &short).v, dropped(DropReason::BadIpTotalLen));
}

#[test]
fn spec6_1_trace_takes_the_fast_path_to_a_primary_fixed_ip() {
    let s = topo();
    let p1 = s.port_id("p1").unwrap();
    // to p2's primary fixed IP: the fast path, traced with what it decides
    let t = s.trace(0, p1, &udp(P1, mac(P2), "10.0.1.11", "10.0.1.12"));
    assert_eq!(t.verdict, to(&s, "p2"));
    let text = t.trace.to_string();
    assert!(text.contains("primary fixed IP of p2"), "{text}");
    assert!(text.contains("forward to port p2"), "{text}");
    // to p3's second fixed IP: the long way, through the destination check
    let t = s.trace(0, p1, &udp(P1, mac(P3), "10.0.1.11", "10.0.1.23"));
    assert_eq!(t.verdict, to(&s, "p3"));
    let text = t.trace.to_string();
    assert!(text.contains("10.0.1.23 delivered to p3"), "{text}");
    assert!(!text.contains("primary fixed IP"), "{text}");
}
