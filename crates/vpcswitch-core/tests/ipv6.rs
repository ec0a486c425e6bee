//! SPEC 12 (and 9.1): IPv6 through the pipeline, stage by stage, with byte fixtures.

use std::net::Ipv6Addr;

use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{gateway_link_local, ConfigBuilder, MacAddr};
use vpcswitch_wire::build::{self, Ends6};
use vpcswitch_wire::icmpv6;
use vpcswitch_wire::nd::{self, NdMessage};
use vpcswitch_wire::{ipv6, Ipv6Packet, ETHERNET_HEADER_LEN};

mod common;
use common::nd_of;

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const P2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const P3: MacAddr = MacAddr([2, 0, 0, 0, 1, 3]);
const Q1: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const W1: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);
const X1: MacAddr = MacAddr([2, 0, 0, 0, 4, 1]);

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// vpc a (10.0.0.0/16, fd00:a::/48): a1 (fd00:a:0:1::/64: p1, p2, p3 with
/// src_dst_check off), a2 (fd00:a:0:2::/64: q1), a3 (IPv4 only: w1). vpc x (IPv4
/// only): x1. IPv6 VIP v6 = fd00:a:0:1::100 on p1, p2.
fn topo() -> Snapshot {
    let cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["fd00:a::/48"])
        .vpc("x", &["10.9.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("fd00:a:0:1::/64")
        .subnet("a2", "a", "10.0.2.0/24")
        .ipv6_cidr("fd00:a:0:2::/64")
        .subnet("a3", "a", "10.0.3.0/24")
        .subnet("x1", "x", "10.9.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .ipv6_ips(&["fd00:a:0:1::11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .ipv6_ips(&["fd00:a:0:1::12"])
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .ipv6_ips(&["fd00:a:0:1::13"])
        .src_dst_check(false)
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .ipv6_ips(&["fd00:a:0:2::11"])
        .port("w1", "a3", "02:00:00:00:03:01", &["10.0.3.11"])
        .port("x1", "x1", "02:00:00:00:04:01", &["10.9.1.11"])
        .vip("v6", "a1", "fd00:a:0:1::100", &["p1", "p2"])
        .build()
        .unwrap();
    Snapshot::compile(&cfg, None).unwrap()
}

struct R {
    v: Verdict,
    out: Vec<u8>,
}

fn run_at(s: &Snapshot, port: &str, frame: &[u8], now: u64) -> R {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let id = s.port_id(port).unwrap();
    let v = s.process(&Ctx::at(now), id, &mut buf, &mut len, &mut NoTrace);
    // the dry run agrees on the verdict
    if !matches!(v, Verdict::DropAndSend(..)) {
        assert_eq!(s.trace(now, id, frame).verdict, v, "trace disagrees");
    }
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

fn flood_a1(s: &Snapshot) -> Verdict {
    let p1 = s.port(s.port_id("p1").unwrap()).unwrap();
    Verdict::Forward(Out::Flood(p1.subnet))
}

fn udp6(dst: MacAddr, src: MacAddr, sip: &str, dip: &str, hop: u8) -> Vec<u8> {
    build::udp6(
        Ends6 {
            dst,
            src,
            sip: a(sip),
            dip: a(dip),
        },
        hop,
        1000,
        2000,
        b"hello",
    )
}

fn with_eth_src(mut f: Vec<u8>, m: MacAddr) -> Vec<u8> {
    f[6..12].copy_from_slice(&m.0);
    f
}

#[test]
fn spec9_1_ipv6_is_dropped_where_the_subnet_has_no_ipv6_prefix() {
    let s = topo();
    for (port, m) in [("w1", W1), ("x1", X1)] {
        let f = udp6(GW, m, "fe80::1", "fe80::2", 64);
        assert_eq!(
            run(&s, port, &f).v,
            Verdict::Drop(DropReason::Ipv6),
            "{port}"
        );
        let dad = build::dad_probe(m, a("fd00:a:0:3::5"));
        assert_eq!(
            run(&s, port, &dad).v,
            Verdict::Drop(DropReason::Ipv6),
            "{port}"
        );
    }
}

#[test]
fn spec12_2_source_check_fixed_ips_vips_link_local_and_dad_only_for_unspecified() {
    let s = topo();
    // its own fixed address, to p2
    let f = udp6(P2, P1, "fd00:a:0:1::11", "fd00:a:0:1::12", 64);
    assert_eq!(run(&s, "p1", &f).v, to(&s, "p2"));
    // link-local
    let f = udp6(P2, P1, "fe80::1:2:3:4", "fd00:a:0:1::12", 64);
    assert_eq!(run(&s, "p1", &f).v, to(&s, "p2"));
    // a bound VIP
    let f = udp6(P2, P1, "fd00:a:0:1::100", "fd00:a:0:1::12", 64);
    assert_eq!(run(&s, "p1", &f).v, to(&s, "p2"));
    // another port's address, an unknown one, `::` outside DAD
    for src in ["fd00:a:0:1::12", "fd00:a:0:1::77", "fd00:a:0:2::11", "::"] {
        let f = udp6(P2, P1, src, "fd00:a:0:1::12", 64);
        assert_eq!(
            run(&s, "p1", &f).v,
            Verdict::Drop(DropReason::SpoofedSrcIp6),
            "{src}"
        );
    }
    // RFC 3590: an MLDv2 report from `::` to ff02::16 floods the subnet; to a unicast
    // MAC or address it is spoofed
    let mld = |dst: MacAddr, dip: &str| {
        build::icmpv6(
            Ends6 {
                dst,
                src: P1,
                sip: Ipv6Addr::UNSPECIFIED,
                dip: a(dip),
            },
            1,
            (143, 0),
            1,
            &[
                4, 0, 0, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x11,
            ],
        )
    };
    let group = ipv6::multicast_mac(&a("ff02::16"));
    assert_eq!(run(&s, "p1", &mld(group, "ff02::16")).v, flood_a1(&s));
    assert_eq!(
        run(&s, "p1", &mld(P2, "fd00:a:0:1::12")).v,
        Verdict::Drop(DropReason::SpoofedSrcIp6)
    );
    // p3 has the check off: any source passes; the destination check of p2 still holds
    let f = udp6(P2, P3, "fd00:a:0:1::77", "fd00:a:0:1::12", 64);
    assert_eq!(run(&s, "p3", &f).v, to(&s, "p2"));
    let f = udp6(P2, P1, "fd00:a:0:1::11", "fd00:a:0:1::99", 64);
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::DstCheck));
    // SPEC 2.2 still first
    let f = udp6(P2, X1, "fd00:a:0:1::11", "fd00:a:0:1::12", 64);
    assert_eq!(
        run(&s, "p1", &f).v,
        Verdict::Drop(DropReason::SpoofedSrcMac)
    );
}

#[test]
fn spec12_1_malformed_ipv6_and_nd_are_dropped_with_reasons() {
    let s = topo();
    let mut f = udp6(P2, P1, "fd00:a:0:1::11", "fd00:a:0:1::12", 64);
    // payload length past the frame
    f[ETHERNET_HEADER_LEN + 4] = 0x7f;
    assert_eq!(
        run(&s, "p1", &f).v,
        Verdict::Drop(DropReason::MalformedIpv6)
    );
    // an NS with a hop limit below 255 (RFC 4861 7.1.1)
    let mut ns = build::neighbor_solicit(P1, a("fd00:a:0:1::11"), a("fd00:a:0:1::12"));
    ns[ETHERNET_HEADER_LEN + 7] = 64;
    assert_eq!(run(&s, "p1", &ns).v, Verdict::Drop(DropReason::MalformedNd));
}

#[test]
fn spec12_2_nd_link_layer_option_must_be_the_ethernet_source() {
    let s = topo();
    // source link-layer option of an NS
    let ns = with_eth_src(
        build::neighbor_solicit(P2, a("fd00:a:0:1::11"), a("fd00:a:0:1::1")),
        P1,
    );
    assert_eq!(
        run(&s, "p1", &ns).v,
        Verdict::Drop(DropReason::NdLladdrMismatch)
    );
    // target link-layer option of an NA, also with the check off
    let na = with_eth_src(build::unsolicited_na(P2, a("fd00:a:0:1::13")), P3);
    assert_eq!(
        run(&s, "p3", &na).v,
        Verdict::Drop(DropReason::NdLladdrMismatch)
    );
}

#[test]
fn spec12_2_nd_may_not_claim_others_addresses_whatever_the_check_says() {
    let s = topo();
    // p3 has the check off: still no claim of p2's address, the gateway's, an unbound VIP
    for (ip, r) in [
        ("fd00:a:0:1::12", DropReason::NdClaimsForeignIp),
        ("fd00:a:0:1::1", DropReason::NdClaimsForeignIp),
        ("fd00:a:0:2::1", DropReason::NdClaimsForeignIp),
        ("fd00:a:0:1::100", DropReason::Vip6ClaimNotBound),
    ] {
        let na = build::unsolicited_na(P3, a(ip));
        assert_eq!(run(&s, "p3", &na).v, Verdict::Drop(r), "NA for {ip}");
        let ns = build::neighbor_solicit(P3, a(ip), a("fd00:a:0:1::11"));
        assert_eq!(run(&s, "p3", &ns).v, Verdict::Drop(r), "NS from {ip}");
    }
    let ll = gateway_link_local(GW).to_string();
    let na = build::unsolicited_na(P3, a(&ll));
    assert_eq!(
        run(&s, "p3", &na).v,
        Verdict::Drop(DropReason::NdClaimsForeignIp)
    );
    assert_eq!(s.vip_owner_name("v6"), None);
    // with the check on, an NA whose target is not the sender's own address
    let mut na = build::unsolicited_na(P1, a("fd00:a:0:1::77"));
    // its IPv6 source: the port's own link-local, the target another address
    na[ETHERNET_HEADER_LEN + 8..ETHERNET_HEADER_LEN + 24].copy_from_slice(&a("fe80::5").octets());
    let na = refill_icmpv6_checksum(na);
    assert_eq!(
        run(&s, "p1", &na).v,
        Verdict::Drop(DropReason::SpoofedNdTarget)
    );
}

/// Recomputes the ICMPv6 checksum of a frame with no extension headers.
fn refill_icmpv6_checksum(mut f: Vec<u8>) -> Vec<u8> {
    let (src, dst) = {
        let ip = Ipv6Packet::new_unchecked(&f[ETHERNET_HEADER_LEN..]);
        (ip.src(), ip.dst())
    };
    let m = &mut f[ETHERNET_HEADER_LEN + 40..];
    let mut p = icmpv6::Icmpv6Packet::new_unchecked(m);
    p.fill_checksum(&src, &dst);
    f
}

#[test]
fn spec12_3_ns_for_the_gateway_and_known_addresses_is_answered() {
    let s = topo();
    let ll = gateway_link_local(GW);
    for (target, mac, router) in [
        (a("fd00:a:0:1::1"), GW, true),
        (ll, GW, true),
        (a("fd00:a:0:1::12"), P2, false),
    ] {
        let ns = build::neighbor_solicit(P1, a("fd00:a:0:1::11"), target);
        let r = run(&s, "p1", &ns);
        assert_eq!(r.v, to(&s, "p1"), "{target}");
        assert_eq!(&r.out[0..6], &P1.0, "unicast to the solicitor");
        let (src, dst, m) = nd_of(&r.out);
        assert_eq!((src, dst), (target, a("fd00:a:0:1::11")));
        match m {
            NdMessage::NeighborAdvert {
                flags,
                target: t,
                options,
            } => {
                assert_eq!(t, target);
                assert_eq!(options.target_lladdr(), Some(mac));
                assert!(flags.solicited && flags.override_);
                assert_eq!(flags.router, router);
            }
            other => panic!("not an NA: {other:?}"),
        }
    }
    // a VIP without owner: to its bound ports only
    let ns = build::neighbor_solicit(P3, a("fd00:a:0:1::13"), a("fd00:a:0:1::100"));
    assert_eq!(
        run(&s, "p3", &ns).v,
        Verdict::Forward(Out::VipPorts(s.vip_id("v6").unwrap()))
    );
    // an unknown address of the subnet, or a link-local one: delivered to the subnet
    for t in ["fd00:a:0:1::77", "fe80::99"] {
        let ns = build::neighbor_solicit(P1, a("fd00:a:0:1::11"), a(t));
        assert_eq!(run(&s, "p1", &ns).v, flood_a1(&s), "{t}");
    }
    // outside the subnet
    let ns = build::neighbor_solicit(P1, a("fd00:a:0:1::11"), a("fd00:a:0:2::11"));
    assert_eq!(
        run(&s, "p1", &ns).v,
        Verdict::Drop(DropReason::NdTargetOutsideSubnet)
    );
}

#[test]
fn spec12_3_router_solicitation_is_answered_with_the_subnets_advertisement() {
    let s = topo();
    let rs = build::router_solicit(
        Ends6 {
            dst: ipv6::multicast_mac(&ipv6::ALL_ROUTERS),
            src: P1,
            sip: a("fe80::11"),
            dip: ipv6::ALL_ROUTERS,
        },
        255,
        Some(P1),
    );
    let r = run(&s, "p1", &rs);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(
            DropReason::RouterSolicit,
            Out::Port(s.port_id("p1").unwrap())
        )
    );
    assert_eq!(&r.out[0..6], &P1.0);
    assert_eq!(&r.out[6..12], &GW.0);
    let (src, dst, m) = nd_of(&r.out);
    assert_eq!((src, dst), (gateway_link_local(GW), a("fe80::11")));
    match m {
        NdMessage::RouterAdvert(ra) => {
            assert!(ra.router_lifetime > 0, "the gateway is a default router");
            assert_eq!(ra.options.source_lladdr(), Some(GW));
            let pi = ra
                .options
                .iter()
                .find_map(|o| match o {
                    nd::NdOption::PrefixInfo(p) => Some(p),
                    _ => None,
                })
                .expect("prefix option");
            assert_eq!((pi.prefix, pi.prefix_len), (a("fd00:a:0:1::"), 64));
            assert!(pi.on_link);
        }
        other => panic!("not an RA: {other:?}"),
    }
}

#[test]
fn spec12_3_router_advertisements_and_redirects_from_ports_are_dropped() {
    let s = topo();
    let ends = Ends6 {
        dst: ipv6::multicast_mac(&ipv6::ALL_NODES),
        src: P3,
        sip: a("fe80::13"),
        dip: ipv6::ALL_NODES,
    };
    let ra = build::router_advert(ends, 255, None);
    assert_eq!(run(&s, "p3", &ra).v, Verdict::Drop(DropReason::RaFromPort));
    let mut body = a("fe80::13").octets().to_vec();
    body.extend_from_slice(&a("fd00:a:0:2::11").octets());
    let redirect = build::icmpv6(
        Ends6 {
            dst: P1,
            dip: a("fd00:a:0:1::11"),
            ..ends
        },
        255,
        (icmpv6::TYPE_REDIRECT, 0),
        0,
        &body,
    );
    assert_eq!(
        run(&s, "p3", &redirect).v,
        Verdict::Drop(DropReason::RedirectFromPort)
    );
}

#[test]
fn spec12_3_dad_passes_within_the_subnet_and_is_never_learned_from() {
    let s = topo();
    // for its own address: delivered, not answered
    let dad = build::dad_probe(P1, a("fd00:a:0:1::11"));
    assert_eq!(run(&s, "p1", &dad).v, flood_a1(&s));
    // for a bound VIP: delivered, no owner learned
    let dad = build::dad_probe(P2, a("fd00:a:0:1::100"));
    assert_eq!(run(&s, "p2", &dad).v, flood_a1(&s));
    assert_eq!(s.vip_owner_name("v6"), None);
    // for a link-local address
    let dad = build::dad_probe(P1, a("fe80::11"));
    assert_eq!(run(&s, "p1", &dad).v, flood_a1(&s));
    // for another port's address: the switch defends it, to all nodes
    let dad = build::dad_probe(P1, a("fd00:a:0:1::12"));
    let r = run(&s, "p1", &dad);
    assert_eq!(r.v, to(&s, "p1"));
    let (_, dst, m) = nd_of(&r.out);
    assert_eq!(dst, ipv6::ALL_NODES);
    assert!(matches!(m, NdMessage::NeighborAdvert { flags, .. } if !flags.solicited));
}

/// Regression (found by the reference model, tests/model.rs): DAD for the gateway's
/// link-local address was flooded as if it were the sender's own (it is link-local,
/// and fe80::/64 is in every allowed set), so a guest could take the address the
/// router advertisements come from. The gateway holds it: the switch defends it.
#[test]
fn spec12_3_dad_for_the_gateways_link_local_address_is_defended() {
    let s = topo();
    let ll = gateway_link_local(GW);
    for port in ["p1", "p3"] {
        let m = if port == "p1" { P1 } else { P3 };
        let r = run(&s, port, &build::dad_probe(m, ll));
        assert_eq!(r.v, to(&s, port), "{port}");
        let (src, dst, msg) = nd_of(&r.out);
        assert_eq!((src, dst), (ll, ipv6::ALL_NODES));
        match msg {
            NdMessage::NeighborAdvert {
                flags,
                target,
                options,
            } => {
                assert_eq!(target, ll);
                assert_eq!(options.target_lladdr(), Some(GW));
                assert!(flags.router && !flags.solicited);
            }
            other => panic!("not an NA: {other:?}"),
        }
    }
}

#[test]
fn spec12_4_unsolicited_na_claims_a_bound_vip_and_is_delivered() {
    let s = topo();
    let vip = a("fd00:a:0:1::100");
    let na = build::unsolicited_na(P1, vip);
    assert_eq!(run(&s, "p1", &na).v, flood_a1(&s));
    assert_eq!(s.vip_owner_name("v6"), Some("p1"));
    // keepalived fails over to p2
    let na = build::unsolicited_na(P2, vip);
    assert_eq!(run_at(&s, "p2", &na, 2_000).v, flood_a1(&s));
    assert_eq!(s.vip_owner_name("v6"), Some("p2"));
    assert_eq!(s.vip_cell(s.vip_id("v6").unwrap()).moves(), 2);
    // the responder now answers for the VIP with the owner's MAC (SPEC 12.3)
    let ns = build::neighbor_solicit(P3, a("fd00:a:0:1::13"), vip);
    let r = run(&s, "p3", &ns);
    assert_eq!(r.v, to(&s, "p3"));
    let (_, _, m) = nd_of(&r.out);
    assert_eq!(m.options().target_lladdr(), Some(P2));
}

#[test]
fn spec3_2_an_ipv6_vip_owner_is_kept_across_reloads_while_bound() {
    let s = topo();
    run(&s, "p2", &build::unsolicited_na(P2, a("fd00:a:0:1::100")));
    assert_eq!(s.vip_owner_name("v6"), Some("p2"));
    let mut cfg = s.config.clone();
    let again = Snapshot::compile(&cfg, Some(&s)).unwrap();
    assert_eq!(again.vip_owner_name("v6"), Some("p2"));
    // unbinding the owner clears it
    cfg.vips
        .iter_mut()
        .find(|v| v.name == "v6")
        .unwrap()
        .ports
        .retain(|p| p != "p2");
    let unbound = Snapshot::compile(&cfg, Some(&again)).unwrap();
    assert_eq!(unbound.vip_owner_name("v6"), None);
}

#[test]
fn spec12_4_vip_steering_holds_for_ipv6() {
    let s = topo();
    let vip = "fd00:a:0:1::100";
    run(&s, "p2", &build::unsolicited_na(P2, a(vip)));
    assert_eq!(s.vip_owner_name("v6"), Some("p2"));
    // a stale neighbour cache: sent to p1's MAC
    let f = udp6(P1, P3, "fd00:a:0:1::13", vip, 64);
    let r = run(&s, "p3", &f);
    assert_eq!(r.v, to(&s, "p2"));
    assert_eq!(
        &r.out[0..6],
        &P2.0,
        "destination MAC rewritten to the owner's"
    );
}

#[test]
fn spec12_1_multicast_is_flooded_in_the_subnet_and_unicast_ip_in_multicast_refused() {
    let s = topo();
    let g = a("ff02::fb");
    let f = udp6(ipv6::multicast_mac(&g), P1, "fd00:a:0:1::11", "ff02::fb", 1);
    assert_eq!(run(&s, "p1", &f).v, flood_a1(&s));
    let f = udp6(
        ipv6::multicast_mac(&g),
        P1,
        "fd00:a:0:1::11",
        "fd00:a:0:1::12",
        64,
    );
    assert_eq!(
        run(&s, "p1", &f).v,
        Verdict::Drop(DropReason::FloodToUnicastIp)
    );
}

#[test]
fn spec12_5_routing_across_subnets_rewrites_and_decrements_the_hop_limit() {
    let s = topo();
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:2::11", 64);
    let r = run(&s, "p1", &f);
    assert_eq!(r.v, to(&s, "q1"));
    assert_eq!(&r.out[0..6], &Q1.0);
    assert_eq!(&r.out[6..12], &GW.0);
    let ip = Ipv6Packet::new_unchecked(&r.out[ETHERNET_HEADER_LEN..]);
    assert_eq!(ip.hop_limit(), 63);
    // back, to the IPv6 VIP once it has an owner
    // SPEC 5.2: no owner yet: dropped, and the switch solicits the VIP on its bound
    // ports from the VIP's gateway
    let f = udp6(GW, Q1, "fd00:a:0:2::11", "fd00:a:0:1::100", 64);
    let v6 = s.vip_id("v6").unwrap();
    let r = run(&s, "q1", &f);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(DropReason::VipNoOwner, Out::VipPorts(v6))
    );
    let (src, dst, m) = nd_of(&r.out);
    assert_eq!(
        (src, dst),
        (
            a("fd00:a:0:1::1"),
            ipv6::solicited_node(&a("fd00:a:0:1::100"))
        )
    );
    assert!(
        matches!(m, NdMessage::NeighborSolicit { target, .. } if target == a("fd00:a:0:1::100"))
    );
    // p2 holds it and answers the gateway: p2 becomes the owner (SPEC 12.4)
    let na = {
        let mut v = vec![0u8; nd::NA_FRAME_LEN];
        let n = nd::emit_na(
            &mut v,
            &nd::NaParams {
                eth_dst: GW,
                eth_src: P2,
                src: a("fd00:a:0:1::100"),
                dst: a("fd00:a:0:1::1"),
                flags: nd::NaFlags {
                    router: false,
                    solicited: true,
                    override_: true,
                },
                target: a("fd00:a:0:1::100"),
                target_mac: Some(P2),
            },
        );
        v.truncate(n);
        v
    };
    run(&s, "p2", &na);
    assert_eq!(s.vip_owner_name("v6"), Some("p2"));
    assert_eq!(run(&s, "q1", &f).v, to(&s, "p2"));
    run(&s, "p1", &build::unsolicited_na(P1, a("fd00:a:0:1::100")));
    assert_eq!(run(&s, "q1", &f).v, to(&s, "p1"));
    // an address of a local /64 nobody holds; link-local is never routed
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:2::77", 64);
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::NoSuchHost));
    let f = udp6(GW, P1, "fe80::11", "fd00:a:0:2::11", 64);
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn spec12_5_hop_limit_expiry_and_no_route_answer_icmpv6_from_the_gateway() {
    let s = topo();
    let me = Out::Port(s.port_id("p1").unwrap());
    for (dst, hop, reason, ty) in [
        (
            "fd00:a:0:2::11",
            1,
            DropReason::TtlExceeded,
            icmpv6::TYPE_TIME_EXCEEDED,
        ),
        (
            "2001:db8::1",
            64,
            DropReason::NoRoute,
            icmpv6::TYPE_DST_UNREACHABLE,
        ),
    ] {
        let f = udp6(GW, P1, "fd00:a:0:1::11", dst, hop);
        let r = run(&s, "p1", &f);
        assert_eq!(r.v, Verdict::DropAndSend(reason, me), "{dst}");
        let ip = Ipv6Packet::new_unchecked(&r.out[ETHERNET_HEADER_LEN..]);
        assert_eq!(ip.src(), a("fd00:a:0:1::1"), "from the gateway");
        assert_eq!(ip.dst(), a("fd00:a:0:1::11"));
        let m = icmpv6::Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.msg_type(), ty);
        assert!(m.verify_checksum(&ip.src(), &ip.dst()));
        assert_eq!(&r.out[0..6], &P1.0);
    }
}

#[test]
fn spec12_5_icmpv6_errors_are_rate_limited_per_port() {
    let s = topo();
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:2::11", 1);
    let id = s.port_id("p1").unwrap();
    let sent = (0..300)
        .filter(|_| {
            let mut buf = vec![0u8; 2048];
            buf[..f.len()].copy_from_slice(&f);
            let mut len = f.len();
            let v = s.process(&Ctx::at(1_000), id, &mut buf, &mut len, &mut NoTrace);
            assert!(matches!(
                v,
                Verdict::DropAndSend(DropReason::TtlExceeded, _)
                    | Verdict::Drop(DropReason::TtlExceeded)
            ));
            matches!(v, Verdict::DropAndSend(..))
        })
        .count();
    assert_eq!(sent, 100, "default icmp_errors_per_sec is 100");
}

#[test]
fn spec12_5_the_gateways_answer_ping() {
    let s = topo();
    for gw in [
        a("fd00:a:0:1::1"),
        a("fd00:a:0:2::1"),
        gateway_link_local(GW),
    ] {
        let src = if ipv6::is_link_local(&gw) {
            a("fe80::11")
        } else {
            a("fd00:a:0:1::11")
        };
        let f = build::icmpv6_echo(GW, P1, src, gw, 64, 7, 1);
        let r = run(&s, "p1", &f);
        assert_eq!(r.v, to(&s, "p1"), "{gw}");
        let ip = Ipv6Packet::new_unchecked(&r.out[ETHERNET_HEADER_LEN..]);
        assert_eq!((ip.src(), ip.dst()), (gw, src));
        let m = icmpv6::Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.msg_type(), icmpv6::TYPE_ECHO_REPLY);
        assert!(m.verify_checksum(&ip.src(), &ip.dst()));
    }
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:1::1", 64);
    assert_eq!(run(&s, "p1", &f).v, Verdict::Drop(DropReason::ToGateway));
}

/// vpc a (fd00:a::/48: a1 with p1, nat with check off), b (fd00:b::/48: b1 with r1),
/// c (fd00:c::/48: c1 with s1); peerings a-b, b-c; a routes fd00:b::/48 and (to test
/// transit) fd00:c::/48 into a-b, and fd00:99::/32 to nat.
fn peered() -> Snapshot {
    let cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["fd00:a::/48"])
        .vpc("b", &["10.1.0.0/16"])
        .ipv6_cidrs(&["fd00:b::/48"])
        .vpc("c", &["10.2.0.0/16"])
        .ipv6_cidrs(&["fd00:c::/48"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("fd00:a:0:1::/64")
        .subnet("b1", "b", "10.1.1.0/24")
        .ipv6_cidr("fd00:b:0:1::/64")
        .subnet("c1", "c", "10.2.1.0/24")
        .ipv6_cidr("fd00:c:0:1::/64")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .ipv6_ips(&["fd00:a:0:1::11"])
        .port("nat", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .ipv6_ips(&["fd00:a:0:1::13"])
        .src_dst_check(false)
        .port("r1", "b1", "02:00:00:00:02:01", &["10.1.1.11"])
        .ipv6_ips(&["fd00:b:0:1::11"])
        .port("s1", "c1", "02:00:00:00:03:01", &["10.2.1.11"])
        .ipv6_ips(&["fd00:c:0:1::11"])
        .peering("ab", "a", "b")
        .peering("bc", "b", "c")
        .route_via_peering("a", "fd00:b::/48", "ab")
        .route_via_peering("b", "fd00:a::/48", "ab")
        .route_via_peering("b", "fd00:c::/48", "bc")
        .route_via_peering("c", "fd00:b::/48", "bc")
        .route_via_peering("a", "fd00:c::/48", "ab")
        .route_via_port("a", "fd00:99::/32", "nat")
        .build()
        .unwrap();
    Snapshot::compile(&cfg, None).unwrap()
}

#[test]
fn spec12_5_routing_through_peerings_and_to_a_next_hop_port() {
    let s = peered();
    // SPEC 5.3: across the a-b peering, both ways
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:b:0:1::11", 64);
    let r = run(&s, "p1", &f);
    assert_eq!(r.v, to(&s, "r1"));
    assert_eq!(&r.out[0..6], &Q1.0, "r1's MAC");
    assert_eq!(
        Ipv6Packet::new_unchecked(&r.out[ETHERNET_HEADER_LEN..]).hop_limit(),
        63
    );
    let f = udp6(GW, Q1, "fd00:b:0:1::11", "fd00:a:0:1::11", 64);
    assert_eq!(run(&s, "r1", &f).v, to(&s, "p1"));
    // no transit through b to c, and the peer's gateway is not reachable
    for dst in ["fd00:c:0:1::11", "fd00:b:0:1::1"] {
        let f = udp6(GW, P1, "fd00:a:0:1::11", dst, 64);
        assert_eq!(
            run(&s, "p1", &f).v,
            Verdict::Drop(DropReason::NoSuchHost),
            "{dst}"
        );
    }
    // b routes to c itself
    let f = udp6(GW, Q1, "fd00:b:0:1::11", "fd00:c:0:1::11", 64);
    assert_eq!(run(&s, "r1", &f).v, to(&s, "s1"));
    // c has no route to a
    let f = udp6(GW, W1, "fd00:c:0:1::11", "fd00:a:0:1::11", 64);
    assert!(matches!(
        run(&s, "s1", &f).v,
        Verdict::DropAndSend(DropReason::NoRoute, _)
    ));
    // SPEC 5.4: a next-hop port (its check off)
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:99::5", 64);
    assert_eq!(run(&s, "p1", &f).v, to(&s, "nat"));
}

/// SPEC 10.2, 10.3, 12.5: IPv6 routed on the host where it enters, then checked by the
/// receiving host as any routed frame: its source must be one the sending host's
/// ports may use.
#[test]
fn spec12_5_routed_ipv6_crosses_hosts_and_is_checked_there() {
    let cfg = |local: &str| {
        ConfigBuilder::new()
            .host("h1", "192.0.2.1")
            .host("h2", "192.0.2.2")
            .local_host(local)
            .vpc("a", &["10.0.0.0/16"])
            .ipv6_cidrs(&["fd00:a::/48"])
            .subnet("a1", "a", "10.0.1.0/24")
            .ipv6_cidr("fd00:a:0:1::/64")
            .subnet("a2", "a", "10.0.2.0/24")
            .ipv6_cidr("fd00:a:0:2::/64")
            .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
            .ipv6_ips(&["fd00:a:0:1::11"])
            .on_host("h1")
            .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
            .ipv6_ips(&["fd00:a:0:2::11"])
            .on_host("h2")
            .build()
            .unwrap()
    };
    let mut h1 = Snapshot::compile(&cfg("h1"), None).unwrap();
    let h2 = Snapshot::compile(&cfg("h2"), None).unwrap();
    let f = udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:2::11", 64);
    let r = run(&h1, "p1", &f);
    assert_eq!(r.v, to(&h1, "q1"), "routed on h1, to q1 on h2");
    let from = h2.host_id("h1").unwrap();
    let vni = h2.vpcs[0].vni;
    let tunnel = |frame: &[u8]| {
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(frame);
        let mut len = frame.len();
        h2.process_tunnel(&Ctx::at(1_000), from, vni, &mut buf, &mut len, &mut NoTrace)
    };
    assert_eq!(tunnel(&r.out), to(&h2, "q1"));
    // h1 has no port that may send from fd00:a:0:1::77
    let mut forged = r.out.clone();
    forged[ETHERNET_HEADER_LEN + 8..ETHERNET_HEADER_LEN + 24]
        .copy_from_slice(&a("fd00:a:0:1::77").octets());
    assert_eq!(tunnel(&forged), Verdict::Drop(DropReason::TunnelSrcIp));
    // nor to an address that is not q1's
    let mut elsewhere = r.out.clone();
    elsewhere[ETHERNET_HEADER_LEN + 24..ETHERNET_HEADER_LEN + 40]
        .copy_from_slice(&a("fd00:a:0:2::99").octets());
    assert_eq!(tunnel(&elsewhere), Verdict::Drop(DropReason::DstCheck));
    // SPEC 10.6: too long for the tunnel: "packet too big" with the tunnel's MTU, from
    // the ingress subnet's gateway
    h1.set_tunnel_frame_max(200);
    let big = build::udp6(
        Ends6 {
            dst: GW,
            src: P1,
            sip: a("fd00:a:0:1::11"),
            dip: a("fd00:a:0:2::11"),
        },
        64,
        1000,
        2000,
        &[0u8; 300],
    );
    let r = run(&h1, "p1", &big);
    assert_eq!(
        r.v,
        Verdict::DropAndSend(
            DropReason::MtuExceeded,
            Out::Port(h1.port_id("p1").unwrap())
        )
    );
    assert_eq!(&r.out[0..6], &P1.0);
    let ip = Ipv6Packet::new_unchecked(&r.out[ETHERNET_HEADER_LEN..]);
    assert_eq!(
        (ip.src(), ip.dst()),
        (a("fd00:a:0:1::1"), a("fd00:a:0:1::11"))
    );
    let m = icmpv6::Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.word()), (icmpv6::TYPE_PACKET_TOO_BIG, 186));
    assert!(m.verify_checksum(&ip.src(), &ip.dst()));
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Valid IPv6 frames of every kind the IPv6 stages take, from p1 or p3.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let vip = a("fd00:a:0:1::100");
        vec![
            (
                "p1",
                build::neighbor_solicit(P1, a("fd00:a:0:1::11"), a("fd00:a:0:1::1")),
            ),
            ("p1", build::dad_probe(P1, a("fd00:a:0:1::11"))),
            ("p1", build::unsolicited_na(P1, vip)),
            ("p3", build::unsolicited_na(P3, a("fd00:a:0:1::13"))),
            ("p1", udp6(GW, P1, "fd00:a:0:1::11", "fd00:a:0:2::11", 64)),
            ("p1", udp6(P2, P1, "fd00:a:0:1::11", "fd00:a:0:1::12", 64)),
            ("p3", udp6(P1, P3, "fd00:a:0:1::13", "fd00:a:0:1::100", 1)),
            (
                "p1",
                build::icmpv6_echo(GW, P1, a("fd00:a:0:1::11"), a("fd00:a:0:1::1"), 64, 1, 1),
            ),
            (
                "p1",
                build::router_solicit(
                    Ends6 {
                        dst: ipv6::multicast_mac(&ipv6::ALL_ROUTERS),
                        src: P1,
                        sip: a("fe80::11"),
                        dip: ipv6::ALL_ROUTERS,
                    },
                    255,
                    Some(P1),
                ),
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// SPEC 2.1, 12: whatever bytes an IPv6 frame carries (mutated, truncated,
        /// extended), nothing panics, every output names a configured port, subnet or
        /// VIP, and the dry run agrees with the run on drops and forwards.
        #[test]
        fn spec2_1_hostile_ipv6_frames_get_a_verdict(
            seed in 0usize..9,
            edits in prop::collection::vec((14usize..140, any::<u8>()), 0..6),
            cut in 0usize..200,
            extra in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let s = topo();
            let (port, mut f) = seeds().swap_remove(seed);
            for (at, b) in edits {
                if at < f.len() {
                    f[at] = b;
                }
            }
            if cut < f.len() {
                f.truncate(cut.max(14));
            }
            f.extend_from_slice(&extra);
            let id = s.port_id(port).unwrap();
            let traced = s.trace(1_000, id, &f).verdict;
            let mut buf = vec![0u8; 2048];
            buf[..f.len()].copy_from_slice(&f);
            let mut len = f.len();
            let v = s.process(&Ctx::at(1_000), id, &mut buf, &mut len, &mut NoTrace);
            prop_assert!(len <= buf.len());
            if let Verdict::Forward(o) | Verdict::DropAndSend(_, o) = v {
                match o {
                    Out::Port(p) => prop_assert!(s.port(p).is_some()),
                    Out::Flood(x) => prop_assert!((x as usize) < s.subnets.len()),
                    Out::VipPorts(x) => prop_assert!((x as usize) < s.vips.len()),
                }
            }
            if !matches!(v, Verdict::DropAndSend(..)) && !matches!(traced, Verdict::DropAndSend(..)) {
                prop_assert_eq!(v, traced);
            }
        }
    }
}
