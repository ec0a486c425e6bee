//! SPEC 13.1: the switch's DHCP server in a subnet with `dhcp = true`, and the rogue
//! server guard. Byte frames (client messages emitted by smoltcp) through a compiled
//! snapshot; answers read back with smoltcp; every verdict checked against the trace.

use std::net::Ipv4Addr;

use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, Ipv4Address};
use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{Config, ConfigBuilder, DhcpOptions, DhcpRoute, MacAddr};
use vpcswitch_wire::{build, Ipv4Packet};

mod common;
use common::DhcpMsg;

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const P2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const Q1: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// vpc a: subnet a1 10.0.1.0/24 with DHCP (DNS 10.0.0.2 and 1.1.1.1, domain
/// prod.internal, MTU 1450, 1 h lease, 10.9.0.0/16 via 10.0.1.254) and ports p1
/// (10.0.1.11, 10.0.1.21), p2 (10.0.1.12); subnet a2 10.0.2.0/24 without DHCP, port q1.
fn config() -> Config {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .dhcp(DhcpOptions {
            dns_servers: vec![ip("10.0.0.2"), ip("1.1.1.1")],
            domain: Some("prod.internal".into()),
            mtu: Some(1450),
            lease_secs: Some(3600),
            routes: vec![DhcpRoute {
                destination: "10.9.0.0/16".parse().unwrap(),
                via: ip("10.0.1.254"),
            }],
        })
        .subnet("a2", "a", "10.0.2.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11", "10.0.1.21"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
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
    // a trace spends no budget: it cannot see an answer refused for the budget
    if !matches!(v, Verdict::Drop(DropReason::DhcpClient)) {
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

/// A `kind` message from p1.
fn msg(kind: DhcpMessageType) -> DhcpMsg {
    DhcpMsg::new(kind, P1)
}

fn answered(s: &Snapshot, port: &str) -> Verdict {
    Verdict::DropAndSend(DropReason::DhcpClient, Out::Port(s.port_id(port).unwrap()))
}

/// The fields of an answer the tests check.
struct A {
    message_type: DhcpMessageType,
    transaction_id: u32,
    your_ip: Ipv4Address,
    subnet_mask: Option<Ipv4Address>,
    router: Option<Ipv4Address>,
    server_identifier: Option<Ipv4Address>,
    lease_duration: Option<u32>,
}

/// The answer's Ethernet destination, IPv4 destination and DHCP message.
fn answer(out: &[u8]) -> (MacAddr, Ipv4Addr, A) {
    let ipv4 = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(ipv4.verify_checksum());
    assert_eq!(ipv4.src(), ip("10.0.1.1"), "from the gateway");
    assert_eq!(&out[6..12], &GW.0, "from the gateway MAC");
    assert_eq!(&out[34..38], &[0, 67, 0, 68]);
    let p = DhcpPacket::new_checked(&out[42..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    let a = A {
        message_type: r.message_type,
        transaction_id: r.transaction_id,
        your_ip: r.your_ip,
        subnet_mask: r.subnet_mask,
        router: r.router,
        server_identifier: r.server_identifier,
        lease_duration: r.lease_duration,
    };
    (MacAddr::from_slice(&out[0..6]), ipv4.dst(), a)
}

fn option(out: &[u8], kind: u8) -> Option<Vec<u8>> {
    DhcpPacket::new_checked(&out[42..])
        .unwrap()
        .options()
        .find(|o| o.kind == kind)
        .map(|o| o.data.to_vec())
}

#[test]
fn spec13_1_discover_gets_an_offer_of_the_primary_ip_with_every_option() {
    let s = snap();
    let r = run(&s, "p1", &msg(DhcpMessageType::Discover).bcast());
    assert_eq!(r.v, answered(&s, "p1"), "{}", r.trace);
    assert!(r.trace.contains("SPEC 13.1"), "{}", r.trace);
    let (dst_mac, dst, m) = answer(&r.out);
    assert_eq!((dst_mac, dst), (P1, ip("10.0.1.11")));
    assert_eq!(m.message_type, DhcpMessageType::Offer);
    assert_eq!(m.transaction_id, 0xfeed_0001);
    assert_eq!(m.your_ip, ip("10.0.1.11"));
    assert_eq!(m.subnet_mask, Some(ip("255.255.255.0")));
    assert_eq!(m.router, Some(ip("10.0.1.1")));
    assert_eq!(m.server_identifier, Some(ip("10.0.1.1")));
    assert_eq!(m.lease_duration, Some(3600));
    assert_eq!(option(&r.out, 6).unwrap(), vec![10, 0, 0, 2, 1, 1, 1, 1]);
    assert_eq!(option(&r.out, 15).unwrap(), b"prod.internal".to_vec());
    assert_eq!(option(&r.out, 26).unwrap(), vec![0x05, 0xaa]);
    assert_eq!(
        option(&r.out, 121).unwrap(),
        vec![16, 10, 9, 10, 0, 1, 254, 0, 10, 0, 1, 1]
    );
}

#[test]
fn spec13_1_request_for_the_primary_ip_gets_an_ack_any_other_a_nak() {
    let s = snap();
    let mut m = msg(DhcpMessageType::Request);
    m.requested = Some("10.0.1.11");
    m.server = Some("10.0.1.1");
    let r = run(&s, "p1", &m.bcast());
    assert_eq!(r.v, answered(&s, "p1"));
    let (_, _, a) = answer(&r.out);
    assert_eq!(a.message_type, DhcpMessageType::Ack);
    assert_eq!(a.your_ip, ip("10.0.1.11"));
    // the port's second fixed IP, another port's, one outside: NAK, broadcast
    for other in ["10.0.1.21", "10.0.1.12", "10.0.2.11", "192.168.1.5"] {
        m.requested = Some(other);
        let r = run(&s, "p1", &m.bcast());
        assert_eq!(r.v, answered(&s, "p1"), "{other}");
        let (dst_mac, dst, a) = answer(&r.out);
        assert_eq!(a.message_type, DhcpMessageType::Nak, "{other}");
        assert_eq!((dst_mac, dst), (MacAddr::BROADCAST, Ipv4Addr::BROADCAST));
        assert_eq!(a.your_ip, Ipv4Address::UNSPECIFIED);
    }
    // a REQUEST selecting another server: consumed, no answer
    m.requested = Some("10.0.1.11");
    m.server = Some("10.0.1.12");
    let r = run(&s, "p1", &m.bcast());
    assert_eq!(r.v, Verdict::Drop(DropReason::DhcpClient));
    assert!(r.trace.contains("another server"), "{}", r.trace);
}

#[test]
fn spec13_1_the_address_depends_on_the_port_not_on_chaddr() {
    let s = snap();
    // p2 writes p1's MAC as chaddr: still offered p2's own address
    let mut m = msg(DhcpMessageType::Discover);
    m.chaddr = P1;
    let f = m.frame(MacAddr::BROADCAST, P2, "0.0.0.0", "255.255.255.255");
    let r = run(&s, "p2", &f);
    assert_eq!(r.v, answered(&s, "p2"));
    let (dst_mac, _, a) = answer(&r.out);
    assert_eq!(a.your_ip, ip("10.0.1.12"));
    assert_eq!(dst_mac, P2, "sent to the port's own MAC");
    // and p2 asking for p1's address is refused
    let mut m = msg(DhcpMessageType::Request);
    m.requested = Some("10.0.1.11");
    let f = m.frame(MacAddr::BROADCAST, P2, "0.0.0.0", "255.255.255.255");
    let (_, _, a) = answer(&run(&s, "p2", &f).out);
    assert_eq!(a.message_type, DhcpMessageType::Nak);
}

#[test]
fn spec13_1_renewal_unicast_to_the_gateway_and_rebinding_broadcast_are_answered() {
    let s = snap();
    let mut m = msg(DhcpMessageType::Request);
    m.ciaddr = "10.0.1.11";
    // RENEWING: unicast from the leased address to the server
    let r = run(&s, "p1", &m.frame(GW, P1, "10.0.1.11", "10.0.1.1"));
    assert_eq!(r.v, answered(&s, "p1"), "{}", r.trace);
    let (dst_mac, dst, a) = answer(&r.out);
    assert_eq!(a.message_type, DhcpMessageType::Ack);
    assert_eq!((dst_mac, dst), (P1, ip("10.0.1.11")));
    // REBINDING: broadcast from the leased address: answered, not flooded
    let r = run(
        &s,
        "p1",
        &m.frame(MacAddr::BROADCAST, P1, "10.0.1.11", "255.255.255.255"),
    );
    assert_eq!(r.v, answered(&s, "p1"));
    // INFORM: the options, no address, no lease
    let mut m = msg(DhcpMessageType::Inform);
    m.ciaddr = "10.0.1.11";
    let r = run(&s, "p1", &m.frame(GW, P1, "10.0.1.11", "10.0.1.1"));
    let (_, _, a) = answer(&r.out);
    assert_eq!(a.message_type, DhcpMessageType::Ack);
    assert_eq!(a.your_ip, Ipv4Address::UNSPECIFIED);
    assert_eq!(a.lease_duration, None);
    // RELEASE and DECLINE: consumed; the address stays the port's
    for k in [DhcpMessageType::Release, DhcpMessageType::Decline] {
        let f = m_with(k).frame(GW, P1, "10.0.1.11", "10.0.1.1");
        let r = run(&s, "p1", &f);
        assert_eq!(r.v, Verdict::Drop(DropReason::DhcpClient), "{k:?}");
    }
}

fn m_with(k: DhcpMessageType) -> DhcpMsg {
    let mut m = msg(k);
    m.ciaddr = "10.0.1.11";
    m
}

#[test]
fn spec13_1_no_dhcp_client_packet_reaches_another_guest() {
    let s = snap();
    let d = msg(DhcpMessageType::Discover);
    // to p2's MAC and address, from p1's own address: consumed (answered by the
    // switch, the only server), never delivered
    for f in [
        d.frame(P2, P1, "10.0.1.11", "10.0.1.12"),
        d.frame(MacAddr::BROADCAST, P1, "10.0.1.11", "10.0.1.255"),
        d.frame(GW, P1, "10.0.1.11", "10.0.2.11"),
    ] {
        let r = run(&s, "p1", &f);
        assert_eq!(r.v, answered(&s, "p1"), "{}", r.trace);
    }
    // a malformed message to port 67: consumed too
    let junk = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: P1,
            sip: ip("0.0.0.0"),
            dip: ip("255.255.255.255"),
        },
        64,
        68,
        67,
        b"not dhcp",
    );
    let r = run(&s, "p1", &junk);
    assert_eq!(r.v, Verdict::Drop(DropReason::DhcpClient), "{}", r.trace);
}

#[test]
fn spec2_3_zero_source_is_still_checked_in_a_dhcp_subnet() {
    let s = snap();
    let d = msg(DhcpMessageType::Discover);
    // from 0.0.0.0 to another guest: the source check (SPEC 2.3) drops it first
    for (mac, dst) in [
        (P2, "10.0.1.12"),
        (P2, "255.255.255.255"),
        (GW, "10.0.2.11"),
    ] {
        let r = run(&s, "p1", &d.frame(mac, P1, "0.0.0.0", dst));
        assert_eq!(r.v, Verdict::Drop(DropReason::SpoofedSrcIp), "{dst}");
    }
    // plain UDP from 0.0.0.0 (not 68 to 67) stays spoofed
    let f = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: P1,
            sip: ip("0.0.0.0"),
            dip: ip("255.255.255.255"),
        },
        64,
        1000,
        67,
        b"x",
    );
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::SpoofedSrcIp));
}

fn server_reply(eth_dst: MacAddr, dst: &str, sport: u16) -> Vec<u8> {
    build::udp(
        build::Ends {
            dst: eth_dst,
            src: P2,
            sip: ip("10.0.1.12"),
            dip: ip(dst),
        },
        64,
        sport,
        68,
        &[0u8; 300],
    )
}

#[test]
fn spec13_1_rogue_dhcp_server_replies_are_dropped_and_counted() {
    let s = snap();
    // broadcast OFFER, unicast OFFER to p1's MAC and address (it would pass the
    // destination check), a relay's 67 to 67
    for f in [
        server_reply(MacAddr::BROADCAST, "255.255.255.255", 67),
        server_reply(P1, "10.0.1.11", 67),
        server_reply(GW, "10.0.2.11", 67),
    ] {
        let r = run(&s, "p2", &f);
        assert_eq!(
            r.v,
            Verdict::Drop(DropReason::RogueDhcpServer),
            "{}",
            r.trace
        );
        assert!(r.trace.contains("SPEC 13.1"), "{}", r.trace);
    }
    // other UDP to port 68 is plain traffic
    let r = run(&s, "p2", &server_reply(P1, "10.0.1.11", 5000));
    assert_eq!(r.v, Verdict::Forward(Out::Port(s.port_id("p1").unwrap())));
}

#[test]
fn spec13_1_a_subnet_without_dhcp_switches_dhcp_as_before() {
    let s = snap();
    let d =
        msg(DhcpMessageType::Discover).frame(MacAddr::BROADCAST, Q1, "0.0.0.0", "255.255.255.255");
    let r = run(&s, "q1", &d);
    let a2 = s.subnets.iter().position(|x| x.name == "a2").unwrap() as u32;
    assert_eq!(r.v, Verdict::Forward(Out::Flood(a2)));
    let f = build::udp(
        build::Ends {
            dst: MacAddr::BROADCAST,
            src: Q1,
            sip: ip("10.0.2.11"),
            dip: ip("255.255.255.255"),
        },
        64,
        67,
        68,
        &[0u8; 300],
    );
    assert_eq!(run(&s, "q1", &f).v, Verdict::Forward(Out::Flood(a2)));
}

#[test]
fn spec13_1_answers_spend_the_answer_budget() {
    let mut c = config();
    c.switch.icmp_errors_per_sec = 2;
    let s = Snapshot::compile(&c, None).unwrap();
    let d = msg(DhcpMessageType::Discover).bcast();
    assert_eq!(run_at(&s, "p1", &d, 1_000).v, answered(&s, "p1"));
    assert_eq!(run_at(&s, "p1", &d, 2_000).v, answered(&s, "p1"));
    assert_eq!(
        run_at(&s, "p1", &d, 3_000).v,
        Verdict::Drop(DropReason::DhcpClient)
    );
    // the next second, answered again
    assert_eq!(run_at(&s, "p1", &d, 1_000_001_000).v, answered(&s, "p1"));
}
