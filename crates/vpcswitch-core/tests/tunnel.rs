//! SPEC 10: one network on four hosts. Each host compiles the same configuration seen
//! from itself; a frame runs the pipeline where it enters, and a frame sent to another
//! host runs `process_tunnel` there. Each test names its rule.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use vpcswitch_core::{
    Ctx, DropReason as R, HostId, Location, NoTrace, Out, Snapshot, Stage, Verdict,
};
use vpcswitch_model::{Config, ConfigBuilder, MacAddr};
use vpcswitch_wire::build::{self, Ends};
use vpcswitch_wire::{classify, L3};

mod common;
use common::run;

const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const UPLINK: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Hosts h1..h4. VPC a (VNI 100): a1 = p1 (h1), p2 (h2), p3 (h1), lvs (h1, check
/// off); a2 = q1 (h2, EIP .11), nat (h1, check off, next hop of 192.168/16). VIP v =
/// 10.0.1.100 on p1, p2, EIP .10. VPC b (VNI 200, peered with a): r1 (h3). VPC c (VNI
/// 300): s1 (h4). The uplink on h3; a routes 0/0 to it.
fn config() -> Config {
    ConfigBuilder::new()
        .host("h1", "192.0.2.1")
        .host("h2", "192.0.2.2")
        .host("h3", "192.0.2.3")
        .host("h4", "192.0.2.4")
        .vpc("a", &["10.0.0.0/16"])
        .vni(100)
        .vpc("b", &["10.1.0.0/16"])
        .vni(200)
        .vpc("c", &["10.2.0.0/16"])
        .vni(300)
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .subnet("c1", "c", "10.2.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .on_host("h1")
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .on_host("h2")
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .on_host("h1")
        .port("lvs", "a1", "02:00:00:00:01:04", &["10.0.1.14"])
        .src_dst_check(false)
        .on_host("h1")
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .on_host("h2")
        .port("nat", "a2", "02:00:00:00:02:02", &["10.0.2.12"])
        .src_dst_check(false)
        .on_host("h1")
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .on_host("h3")
        .port("s1", "c1", "02:00:00:00:04:01", &["10.2.1.11"])
        .on_host("h4")
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_port("a", "192.168.0.0/16", "nat")
        .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
        .uplink_on_host("h3")
        .route_via_uplink("a", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "v")
        .eip_for_port("203.0.113.11", "q1")
        .build()
        .unwrap()
}

struct Net {
    snaps: HashMap<&'static str, Snapshot>,
}

fn net() -> Net {
    let c = config();
    let snaps = ["h1", "h2", "h3", "h4"]
        .into_iter()
        .map(|h| {
            let local = c.clone().with_local_host(h).unwrap();
            (h, Snapshot::compile(&local, None).unwrap())
        })
        .collect();
    Net { snaps }
}

struct Got {
    v: Verdict,
    out: Vec<u8>,
}

impl Net {
    fn at(&self, h: &str) -> &Snapshot {
        &self.snaps[h]
    }
    fn hid(&self, h: &str) -> HostId {
        self.at("h1").host_id(h).unwrap()
    }
    fn pid(&self, p: &str) -> u32 {
        self.at("h1").port_id(p).unwrap()
    }
    fn to(&self, p: &str) -> Verdict {
        Verdict::Forward(Out::Port(self.pid(p)))
    }
    /// A frame entering on `port` at its host `h`.
    fn send(&self, h: &str, port: &str, frame: &[u8]) -> Got {
        let s = self.at(h);
        let pid = self.pid(port);
        assert_eq!(s.location(pid), Some(Location::Local), "{port} is on {h}");
        let traced = s.trace(1_000, pid, frame).verdict;
        let (v, out) = run(frame, |buf, len| {
            s.process(&Ctx::at(1_000), pid, buf, len, &mut NoTrace)
        });
        assert_eq!(traced, v, "trace and process agree");
        Got { v, out }
    }
    /// A frame decapsulated at host `h` from host `from` with `vni`.
    fn tunnel(&self, h: &str, from: &str, vni: u32, frame: &[u8]) -> Got {
        let s = self.at(h);
        let from = self.hid(from);
        let traced = s.trace_tunnel(1_000, from, vni, frame).verdict;
        let (v, out) = run(frame, |buf, len| {
            s.process_tunnel(&Ctx::at(1_000), from, vni, buf, len, &mut NoTrace)
        });
        assert_eq!(traced, v, "trace and process agree");
        Got { v, out }
    }
}

fn udp(dst: MacAddr, src: MacAddr, sip: &str, dip: &str) -> Vec<u8> {
    build::udp(
        Ends {
            dst,
            src,
            sip: ip(sip),
            dip: ip(dip),
        },
        64,
        1000,
        2000,
        b"overlay",
    )
}

const P1: &str = "02:00:00:00:01:01";
const P2: &str = "02:00:00:00:01:02";
const P3: &str = "02:00:00:00:01:03";
const Q1: &str = "02:00:00:00:02:01";
const NAT: &str = "02:00:00:00:02:02";
const R1: &str = "02:00:00:00:03:01";

#[test]
fn spec10_1_every_host_compiles_the_same_network_seen_from_itself() {
    let n = net();
    let (h1, h2) = (n.at("h1"), n.at("h2"));
    assert_eq!(h1.hosts().len(), 4);
    assert_eq!(h1.local_host(), Some(n.hid("h1")));
    assert_eq!(h1.location(n.pid("p1")), Some(Location::Local));
    assert_eq!(
        h1.location(n.pid("p2")),
        Some(Location::Remote(n.hid("h2")))
    );
    assert_eq!(h2.location(n.pid("p2")), Some(Location::Local));
    assert_eq!(h1.uplink_location(), Some(Location::Remote(n.hid("h3"))));
    // port ids and VNIs are the same everywhere
    for p in ["p1", "q1", "uplink"] {
        assert_eq!(h1.port_id(p), h2.port_id(p));
    }
    let a = h1.vpc_by_vni(100).unwrap();
    assert_eq!(h1.vpcs[a as usize].name, "a");
    assert_eq!(h1.vpc_by_vni(999), None);
    assert_eq!(h1.vni_for(Out::Port(n.pid("q1")), n.pid("p1")), Some(100));
    assert_eq!(h1.vni_for(Out::Port(n.pid("r1")), n.pid("p1")), Some(200));
    // the uplink: the ingress port's VPC
    assert_eq!(
        h1.vni_for(Out::Port(n.pid("uplink")), n.pid("q1")),
        Some(100)
    );
    // endpoints: any host but this one
    assert_eq!(h1.host_by_addr(ip("192.0.2.2")), Some(n.hid("h2")));
    assert_eq!(h1.host_by_addr(ip("192.0.2.1")), None, "not itself");
    assert_eq!(h1.host_by_addr(ip("192.0.2.9")), None);
    let h3 = h1.host(n.hid("h3")).unwrap();
    assert_eq!(h3.endpoint.to_string(), "192.0.2.3:4789");
    assert!(h3.ports.contains(&n.pid("uplink")) && h3.ports.contains(&n.pid("r1")));
}

#[test]
fn spec10_4_floods_are_local_here_and_replicated_once_per_host() {
    let n = net();
    let h1 = n.at("h1");
    let (a1, a2) = (0, 1);
    let ids = |v: &[&str]| v.iter().map(|p| n.pid(p)).collect::<Vec<_>>();
    assert_eq!(h1.flood_ports(a1), ids(&["p1", "p3", "lvs"]));
    assert_eq!(n.at("h2").flood_ports(a1), ids(&["p2"]));
    // a2 has no VIP: the hosts with ports in it
    assert_eq!(h1.flood_hosts(a2), [n.hid("h2")]);
    // a1 has VIP v: also every host that may send to it, so that each learns its
    // owner from a replicated announcement (SPEC 10.5): h3 holds r1 (vpc b routes to
    // a) and the uplink (v has an EIP); h4 holds only vpc c
    assert_eq!(h1.flood_hosts(a1), [n.hid("h2"), n.hid("h3")]);
    assert_eq!(n.at("h3").flood_hosts(a1), [n.hid("h1"), n.hid("h2")]);
    let v = h1.vip_id("v").unwrap();
    assert_eq!(h1.vip_ports(v), ids(&["p1"]));
    assert_eq!(h1.vip_hosts(v), [n.hid("h2")]);
    assert!(n.at("h4").flood_hosts(3).is_empty(), "c1 is all on h4");
}

#[test]
fn a_network_with_hosts_needs_the_local_host_and_one_without_is_all_local() {
    let e = Snapshot::compile(&config(), None).unwrap_err();
    assert!(e.mentions("switch", "host"), "{e}");
    let one = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", P1, &["10.0.1.11"])
        .build()
        .unwrap();
    let s = Snapshot::compile(&one, None).unwrap();
    assert!(s.hosts().is_empty());
    assert_eq!(s.local_host(), None);
    assert_eq!(s.location(0), Some(Location::Local));
    assert_eq!(s.flood_ports(0), [0]);
    assert!(s.flood_hosts(0).is_empty());
}

#[test]
fn spec10_2_switched_across_hosts_ingress_decides_the_egress_host_checks() {
    let n = net();
    let f = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.12");
    let g = n.send("h1", "p1", &f);
    assert_eq!(g.v, n.to("p2"));
    let tr = n.at("h1").trace(1_000, n.pid("p1"), &f);
    let encap = tr.trace.steps.iter().find(|(s, _)| *s == Stage::Encap);
    let encap = encap.expect("the trace names the tunnel").1.as_str();
    assert!(
        encap.contains("host h2") && encap.contains("VNI 100"),
        "{encap}"
    );
    assert!(tr.trace.to_string().contains("on host h2"), "{}", tr.trace);
    // at h2: checked as p1's and delivered
    let d = n.tunnel("h2", "h1", 100, &g.out);
    assert_eq!(d.v, n.to("p2"));
    assert_eq!(d.out, f);
}

#[test]
fn spec10_3_unknown_hosts_and_vnis_are_dropped() {
    let n = net();
    let f = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h1", 999, &f).v,
        Verdict::Drop(R::TunnelUnknownVni)
    );
    assert_eq!(
        n.tunnel("h2", "h2", 100, &f).v,
        Verdict::Drop(R::TunnelUnknownHost)
    );
    let s = n.at("h2");
    let (v, _) = run(&f, |b, l| {
        s.process_tunnel(&Ctx::at(1), 77, 100, b, l, &mut NoTrace)
    });
    assert_eq!(v, Verdict::Drop(R::TunnelUnknownHost));
    // a frame too short to parse
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f[..10]).v,
        Verdict::Drop(R::Truncated)
    );
}

#[test]
fn spec10_3_a_host_speaks_only_for_its_own_ports() {
    let n = net();
    // p1 lives on h1, not h3
    let f = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h3", 100, &f).v,
        Verdict::Drop(R::TunnelSource)
    );
    // r1 lives on h3, but in vpc b, not the VNI's
    let f = udp(mac(P2), mac(R1), "10.1.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h3", 100, &f).v,
        Verdict::Drop(R::TunnelSource)
    );
    // an unknown MAC
    let f = udp(mac(P2), mac("02:09:09:09:09:09"), "10.0.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::TunnelSource)
    );
}

#[test]
fn spec10_3_every_check_of_section_2_applies_to_a_remote_port() {
    let n = net();
    // SPEC 2.3: p1 may not send from p2's address, through a tunnel either
    let f = udp(mac(P2), mac(P1), "10.0.1.12", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::SpoofedSrcIp)
    );
    // SPEC 2.3a: nor claim p2's address
    let f = build::garp(mac(P1), ip("10.0.1.12"));
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::ArpClaimsForeignIp)
    );
    // SPEC 2.6
    let f = udp(MacAddr::BROADCAST, mac(P1), "10.0.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::FloodToUnicastIp)
    );
    // SPEC 6.1 at the egress port
    let f = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.99");
    assert_eq!(n.tunnel("h2", "h1", 100, &f).v, Verdict::Drop(R::DstCheck));
}

#[test]
fn spec10_5_a_claim_counts_only_from_a_bound_port_on_the_sending_host() {
    let n = net();
    let v = ip("10.0.1.100");
    // p3 (h1) is not bound to v
    let g = n.tunnel("h2", "h1", 100, &build::garp(mac(P3), v));
    assert_eq!(g.v, Verdict::Drop(R::VipClaimNotBound));
    // p2 is bound but lives on h2: h1 cannot claim for it
    let g = n.tunnel("h3", "h1", 100, &build::garp(mac(P2), v));
    assert_eq!(g.v, Verdict::Drop(R::TunnelSource));
    for h in ["h2", "h3"] {
        assert_eq!(n.at(h).vip_owner_name("v"), None, "{h}");
    }
    // p1 (h1, bound) announces: h1 learns and replicates; h2 and h3 learn from it
    let garp = build::garp(mac(P1), v);
    let g = n.send("h1", "p1", &garp);
    assert_eq!(g.v, Verdict::Forward(Out::Flood(0)));
    assert_eq!(n.at("h1").vip_owner_name("v"), Some("p1"));
    for h in ["h2", "h3"] {
        let d = n.tunnel(h, "h1", 100, &g.out);
        // delivered to this host's ports of a1 only (split horizon)
        assert_eq!(d.v, Verdict::Forward(Out::Flood(0)), "{h}");
        assert_eq!(n.at(h).vip_owner_name("v"), Some("p1"), "{h}");
    }
    // p2 (h2) takes over: every host learns it from h2's replicated announcement
    let g = n.send("h2", "p2", &build::garp(mac(P2), v));
    assert_eq!(g.v, Verdict::Forward(Out::Flood(0)));
    for h in ["h1", "h3"] {
        assert_eq!(
            n.tunnel(h, "h2", 100, &g.out).v,
            Verdict::Forward(Out::Flood(0))
        );
    }
    for h in ["h1", "h2", "h3"] {
        assert_eq!(n.at(h).vip_owner_name("v"), Some("p2"), "{h}");
    }
    // SPEC 4.3 across hosts: p3 (h1) with a stale cache sends to v at p1's MAC; h1
    // steers it to p2, on h2, which delivers it
    let f = udp(mac(P1), mac(P3), "10.0.1.13", "10.0.1.100");
    let g = n.send("h1", "p3", &f);
    assert_eq!(g.v, n.to("p2"));
    assert_eq!(&g.out[..6], &mac(P2).0);
    let d = n.tunnel("h2", "h1", 100, &g.out);
    assert_eq!(d.v, n.to("p2"));
    assert_eq!(d.out, g.out);
}

#[test]
fn spec10_2_a_remote_ports_frame_to_the_gateway_is_routed_at_its_own_host() {
    let n = net();
    let f = udp(GW, mac(P1), "10.0.1.11", "10.0.2.11");
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::TunnelToGateway)
    );
}

#[test]
fn spec10_3_nothing_from_a_tunnel_goes_back_into_one() {
    let n = net();
    // switched from h1 to p2, which lives on h2, arriving at h3
    let f = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.12");
    assert_eq!(
        n.tunnel("h3", "h1", 100, &f).v,
        Verdict::Drop(R::TunnelTransit)
    );
    // an ARP request the switch would answer: the answer would go back to p1
    let f = build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.12"));
    assert_eq!(
        n.tunnel("h2", "h1", 100, &f).v,
        Verdict::Drop(R::TunnelTransit)
    );
    // routed at h1 to q1 (on h2), arriving at h3
    let g = n.send("h1", "p1", &udp(GW, mac(P1), "10.0.1.11", "10.0.2.11"));
    assert_eq!(g.v, n.to("q1"));
    assert_eq!(
        n.tunnel("h3", "h1", 100, &g.out).v,
        Verdict::Drop(R::TunnelTransit)
    );
}

#[test]
fn spec10_2_routed_at_the_ingress_host_delivered_at_the_egress_host() {
    let n = net();
    let f = udp(GW, mac(P1), "10.0.1.11", "10.0.2.11");
    let g = n.send("h1", "p1", &f);
    assert_eq!(g.v, n.to("q1"));
    // SPEC 5.5 at h1: gateway MAC as source, q1's as destination, TTL 63
    assert_eq!(&g.out[..12], [mac(Q1).0, GW.0].concat().as_slice());
    let d = n.tunnel("h2", "h1", 100, &g.out);
    assert_eq!(d.v, n.to("q1"));
    assert_eq!(d.out, g.out, "the egress host rewrites nothing");
    let c = classify(&d.out).unwrap();
    assert!(matches!(c.l3, L3::Ipv4 { ttl: 63, .. }));
    // across the peering: r1 (b, h3) to q1 (a, h2), with a's VNI
    let g = n.send("h3", "r1", &udp(GW, mac(R1), "10.1.1.11", "10.0.2.11"));
    assert_eq!(g.v, n.to("q1"));
    assert_eq!(
        n.at("h3").vni_for(Out::Port(n.pid("q1")), n.pid("r1")),
        Some(100)
    );
    assert_eq!(n.tunnel("h2", "h3", 100, &g.out).v, n.to("q1"));
}

#[test]
fn spec10_3_a_routed_frame_has_a_source_the_sending_hosts_ports_may_use() {
    let n = net();
    let routed = |sip: &str, dip: &str, to: &str| {
        let mut f = udp(mac(to), GW, sip, dip);
        f[22] -= 1; // as routed: TTL 63 (the checksum is not checked here)
        f
    };
    // h3 holds r1 (vpc b, check on): r1's address passes, p1's does not
    let ok = n.tunnel("h2", "h3", 100, &routed("10.1.1.11", "10.0.2.11", Q1));
    assert_eq!(ok.v, n.to("q1"));
    let bad = n.tunnel("h2", "h3", 100, &routed("10.0.1.11", "10.0.2.11", Q1));
    assert_eq!(bad.v, Verdict::Drop(R::TunnelSrcIp));
    // h4's port is in vpc c, which does not route to a
    let bad = n.tunnel("h2", "h4", 100, &routed("10.2.1.11", "10.0.2.11", Q1));
    assert_eq!(bad.v, Verdict::Drop(R::TunnelSrcIp));
    // h1 holds nat and lvs, check off: any source may come from h1
    let ok = n.tunnel("h2", "h1", 100, &routed("198.51.100.7", "10.0.2.11", Q1));
    assert_eq!(ok.v, n.to("q1"));
    // the uplink's host (h3) may send outside sources, to an EIP's target only
    let ok = n.tunnel("h2", "h3", 100, &routed("198.51.100.7", "10.0.2.11", Q1));
    assert_eq!(ok.v, n.to("q1"));
    let bad = n.tunnel("h2", "h3", 100, &routed("198.51.100.7", "10.0.1.12", P2));
    assert_eq!(bad.v, Verdict::Drop(R::TunnelSrcIp), "p2 has no EIP");
    let bad = n.tunnel("h2", "h3", 100, &routed("127.0.0.1", "10.0.2.11", Q1));
    assert_eq!(bad.v, Verdict::Drop(R::TunnelSrcIp), "a martian");
    let bad = n.tunnel("h2", "h4", 100, &routed("198.51.100.7", "10.0.2.11", Q1));
    assert_eq!(bad.v, Verdict::Drop(R::TunnelSrcIp), "h4 has no uplink");
    // to a port of another VPC than the VNI's, or no port at all
    let bad = n.tunnel(
        "h4",
        "h3",
        100,
        &routed("10.1.1.11", "10.2.1.11", "02:00:00:00:04:01"),
    );
    assert_eq!(bad.v, Verdict::Drop(R::TunnelDst));
    let bad = n.tunnel(
        "h2",
        "h3",
        100,
        &routed("10.1.1.11", "10.0.2.11", "02:09:09:09:09:09"),
    );
    assert_eq!(bad.v, Verdict::Drop(R::UnknownUnicast));
    // not IPv4 from the gateway MAC
    let arp = build::arp_frame(
        mac(Q1),
        GW,
        &vpcswitch_wire::arp::ArpInfo {
            op: 1,
            sha: GW.into(),
            spa: ip("10.0.2.1").into(),
            tha: MacAddr::ZERO.into(),
            tpa: ip("10.0.2.11").into(),
        },
    );
    assert_eq!(
        n.tunnel("h2", "h1", 100, &arp).v,
        Verdict::Drop(R::TunnelSource)
    );
}

#[test]
fn spec10_3_a_routed_frame_goes_where_its_destination_leads() {
    let n = net();
    let routed = |dip: &str| udp(mac(NAT), GW, "10.0.2.11", dip);
    // nat (check off, on h1) is the next hop of 192.168/16 only
    assert_eq!(
        n.tunnel("h1", "h2", 100, &routed("192.168.3.3")).v,
        n.to("nat")
    );
    assert_eq!(
        n.tunnel("h1", "h2", 100, &routed("10.0.2.12")).v,
        n.to("nat")
    );
    assert_eq!(
        n.tunnel("h1", "h2", 100, &routed("10.0.9.9")).v,
        Verdict::Drop(R::TunnelDst)
    );
    // a port with the check on: SPEC 6.1
    let f = udp(mac(Q1), GW, "10.0.1.11", "10.0.2.99");
    assert_eq!(n.tunnel("h2", "h1", 100, &f).v, Verdict::Drop(R::DstCheck));
}

#[test]
fn spec10_2_eip_traffic_through_the_uplink_on_another_host() {
    let n = net();
    // inbound at h3 (the uplink) to q1's EIP: routed there, delivered at h2
    let inbound = udp(UPLINK, ROUTER, "198.51.100.7", "203.0.113.11");
    let g = n.send("h3", "uplink", &inbound);
    assert_eq!(g.v, n.to("q1"));
    assert_eq!(
        n.at("h3").vni_for(Out::Port(n.pid("q1")), n.pid("uplink")),
        Some(100)
    );
    let d = n.tunnel("h2", "h3", 100, &g.out);
    assert_eq!(d.v, n.to("q1"));
    // outbound from q1 at h2: translated at h2, sent to h3 with a's VNI
    let out = udp(GW, mac(Q1), "10.0.2.11", "8.8.8.8");
    let g = n.send("h2", "q1", &out);
    assert_eq!(g.v, n.to("uplink"));
    let vni = n.at("h2").vni_for(Out::Port(n.pid("uplink")), n.pid("q1"));
    assert_eq!(vni, Some(100));
    let c = classify(&g.out).unwrap();
    assert!(matches!(c.l3, L3::Ipv4 { src, .. } if src == u32::from(ip("203.0.113.11"))));
    assert_eq!(c.src, UPLINK);
    // h3 does not know the next hop yet: it ARPs for it on the uplink
    let d = n.tunnel("h3", "h2", 100, &g.out);
    assert_eq!(
        d.v,
        Verdict::DropAndSend(R::NextHopUnresolved, Out::Port(n.pid("uplink")))
    );
    assert!(matches!(classify(&d.out).unwrap().l3, L3::Arp(_)));
    // the next hop answers on the uplink at h3; then h3 fills in its MAC
    let reply = build::arp_reply(UPLINK, ip("203.0.113.10"), ROUTER, ip("203.0.113.1"));
    n.send("h3", "uplink", &reply);
    assert_eq!(n.at("h3").next_hop_mac(), Some(ROUTER));
    let d = n.tunnel("h3", "h2", 100, &g.out);
    assert_eq!(d.v, n.to("uplink"));
    assert_eq!(&d.out[..6], &ROUTER.0);
    assert_eq!(&d.out[6..], &g.out[6..]);
}

#[test]
fn spec10_3_outbound_eip_traffic_only_from_a_host_that_holds_its_target() {
    let n = net();
    let out = |sip: &str, dip: &str| udp(MacAddr::ZERO, UPLINK, sip, dip);
    let f = out("203.0.113.11", "8.8.8.8");
    // h4 has no port in vpc a
    assert_eq!(
        n.tunnel("h3", "h4", 100, &f).v,
        Verdict::Drop(R::TunnelSrcIp)
    );
    // the EIP of vpc a under c's VNI
    assert_eq!(
        n.tunnel("h3", "h2", 300, &f).v,
        Verdict::Drop(R::TunnelSrcIp)
    );
    // not an EIP
    let f = out("10.0.2.11", "8.8.8.8");
    assert_eq!(
        n.tunnel("h3", "h2", 100, &f).v,
        Verdict::Drop(R::TunnelSrcIp)
    );
    // SPEC 7.4 again at the uplink's host
    let f = out("203.0.113.11", "10.1.1.11");
    assert_eq!(
        n.tunnel("h3", "h2", 100, &f).v,
        Verdict::Drop(R::UplinkBogusDst)
    );
    // the uplink's MAC from a host, at a host without the uplink
    let f = out("203.0.113.11", "8.8.8.8");
    assert_eq!(
        n.tunnel("h1", "h2", 100, &f).v,
        Verdict::Drop(R::TunnelSource)
    );
}

#[test]
fn spec10_4_arp_for_known_addresses_never_crosses_a_tunnel() {
    let n = net();
    // p1 (h1) asks for p2 (h2): answered at h1 with p2's MAC
    let f = build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.12"));
    let g = n.send("h1", "p1", &f);
    assert_eq!(g.v, n.to("p1"));
    let tr = n.at("h1").trace(1_000, n.pid("p1"), &f);
    assert!(
        tr.trace.steps.iter().all(|(s, _)| *s != Stage::Encap),
        "{}",
        tr.trace
    );
    // an unknown address is flooded, and replicated
    let f = build::arp_request(mac(P1), ip("10.0.1.11"), ip("10.0.1.77"));
    let tr = n.at("h1").trace(1_000, n.pid("p1"), &f);
    assert_eq!(tr.verdict, Verdict::Forward(Out::Flood(0)));
    let step = tr.trace.steps.iter().find(|(s, _)| *s == Stage::Encap);
    let step = step.expect("replication traced").1.as_str();
    assert!(
        step.contains("h2") && step.contains("h3") && step.contains("VNI 100"),
        "{step}"
    );
}

/// SPEC 10.6: a frame longer than the tunnel carries (underlay MTU 1500: 1450-byte
/// packets, 1464-byte frames) is answered with "fragmentation needed" when it is IPv4
/// with DF set, from the ingress port's gateway, to the port's own MAC (also when it
/// was routed), and dropped otherwise; an offload super-frame is the runtime's to cut.
#[test]
fn spec10_6_too_long_for_the_tunnel_frag_needed_or_dropped() {
    let mut s = Snapshot::compile(&config().with_local_host("h1").unwrap(), None).unwrap();
    s.set_tunnel_frame_max(1464);
    let p1 = s.port_id("p1").unwrap();
    let sized = |dst: MacAddr, dip: &str, len: usize, df: bool| {
        let payload = vec![7u8; len - 14 - 20 - 8];
        let mut f = build::udp(
            Ends {
                dst,
                src: mac(P1),
                sip: ip("10.0.1.11"),
                dip: ip(dip),
            },
            64,
            1000,
            2000,
            &payload,
        );
        assert_eq!(f.len(), len);
        if df {
            f[14 + 6] |= 0x40;
        } else {
            f[14 + 6] &= !0x40;
        }
        let mut v = vpcswitch_wire::Ipv4Packet::new_unchecked(&mut f[14..]);
        v.fill_checksum();
        f
    };
    let go = |f: &[u8], ctx: Ctx| run(f, |buf, len| s.process(&ctx, p1, buf, len, &mut NoTrace));
    let to_p2 = Verdict::Forward(Out::Port(s.port_id("p2").unwrap()));
    // fits: forwarded
    assert_eq!(
        go(&sized(mac(P2), "10.0.1.12", 1464, true), Ctx::at(1)).0,
        to_p2
    );
    // too long, DF: the answer, back to p1
    for (dst, dip) in [(mac(P2), "10.0.1.12"), (GW, "10.0.2.11")] {
        let (v, out) = go(&sized(dst, dip, 1465, true), Ctx::at(1));
        assert_eq!(
            v,
            Verdict::DropAndSend(R::MtuExceeded, Out::Port(p1)),
            "to {dip}"
        );
        assert_eq!(&out[0..6], &mac(P1).0, "to p1's own MAC");
        let ip4 = vpcswitch_wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(ip4.src(), ip("10.0.1.1"), "from p1's gateway");
        assert_eq!(ip4.dst(), ip("10.0.1.11"));
        let icmp = ip4.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
        assert_eq!(
            u16::from_be_bytes([icmp[6], icmp[7]]),
            1450,
            "the tunnel's MTU"
        );
    }
    // too long, no DF: dropped (the switch fragments nothing)
    let (v, _) = go(&sized(mac(P2), "10.0.1.12", 1465, false), Ctx::at(1));
    assert_eq!(v, Verdict::Drop(R::MtuExceeded));
    // an offload super-frame: forwarded, cut into segments by the runtime
    let gso = Ctx {
        gso: true,
        ..Ctx::at(1)
    };
    assert_eq!(go(&sized(mac(P2), "10.0.1.12", 1465, true), gso).0, to_p2);
    // to a port on this host: not the tunnel's business
    let to_p3 = Verdict::Forward(Out::Port(s.port_id("p3").unwrap()));
    assert_eq!(
        go(&sized(mac(P3), "10.0.1.13", 1465, true), Ctx::at(1)).0,
        to_p3
    );
}

/// SPEC 11.3: with host h2 down (its lease expired), h1 drops frames to h2's ports,
/// the routed ones too (reason `host_down`, the trace says which host), no longer
/// replicates floods or VIP requests to it, and still forwards to every other host and
/// locally. The local host and unknown names cannot be marked down; a snapshot
/// compiled without the mark has the host back.
#[test]
fn spec11_3_ports_of_a_host_that_is_down_are_dropped_with_the_reason() {
    let n = net();
    let local = config().with_local_host("h1").unwrap();
    let mut s = Snapshot::compile(&local, None).unwrap();
    let marked = s.set_hosts_down(&["h2".into(), "h1".into(), "nope".into()]);
    assert_eq!(marked, ["h2"]);
    assert!(s.host_down(n.hid("h2")) && !s.host_down(n.hid("h3")));
    let p1 = n.pid("p1");
    let go = |f: &[u8]| {
        run(f, |buf, len| {
            s.process(&Ctx::at(1_000), p1, buf, len, &mut NoTrace)
        })
        .0
    };
    // switched to p2 (h2) and routed to q1 (h2): dropped
    let to_p2 = udp(mac(P2), mac(P1), "10.0.1.11", "10.0.1.12");
    assert_eq!(go(&to_p2), Verdict::Drop(R::HostDown));
    let to_q1 = udp(GW, mac(P1), "10.0.1.11", "10.0.2.11");
    assert_eq!(go(&to_q1), Verdict::Drop(R::HostDown));
    let tr = s.trace(1_000, p1, &to_p2);
    assert!(
        tr.trace.to_string().contains("on host h2, which is down"),
        "{}",
        tr.trace
    );
    // local and other hosts: as before
    assert_eq!(
        go(&udp(mac(P3), mac(P1), "10.0.1.11", "10.0.1.13")),
        n.to("p3")
    );
    assert_eq!(go(&udp(GW, mac(P1), "10.0.1.11", "10.1.1.11")), n.to("r1"));
    // floods and VIP requests: not to h2 any more
    assert_eq!(s.flood_hosts(0), [n.hid("h3")]);
    assert!(s.flood_hosts(1).is_empty());
    assert!(s.vip_hosts(s.vip_id("v").unwrap()).is_empty());
    // back: compiled without the mark
    let s = Snapshot::compile(&local, None).unwrap();
    assert!(!s.host_down(n.hid("h2")));
    let (v, _) = run(&to_p2, |buf, len| {
        s.process(&Ctx::at(1_000), p1, buf, len, &mut NoTrace)
    });
    assert_eq!(v, n.to("p2"));
}

#[test]
fn spec13_1_dhcp_from_a_tunnel_is_consumed_and_rogue_servers_dropped() {
    // a1 (p1, p3 on h1; p2 on h2) serves DHCP
    let mut c = config();
    c.subnets[0].dhcp = true;
    let snaps = ["h1", "h2"]
        .into_iter()
        .map(|h| {
            let local = c.clone().with_local_host(h).unwrap();
            (h, Snapshot::compile(&local, None).unwrap())
        })
        .collect();
    let n = Net { snaps };
    let discover =
        |m: &str| common::dhcp_client(smoltcp::wire::DhcpMessageType::Discover, mac(m), None);
    // p2's DISCOVER is answered on its own host, h2, back to p2
    let g = n.send("h2", "p2", &discover(P2));
    assert_eq!(
        g.v,
        Verdict::DropAndSend(R::DhcpClient, Out::Port(n.pid("p2")))
    );
    // were it sent on anyway, h1 would not deliver it to p1 or p3: its answer would be
    // for a port on another host, which nothing from a tunnel reaches
    let g = n.tunnel("h1", "h2", 100, &discover(P2));
    assert_eq!(g.v, Verdict::Drop(R::TunnelTransit));
    // a rogue server on h2, through the tunnel: dropped on h1 as on h2
    let offer = build::udp(
        Ends {
            dst: MacAddr::BROADCAST,
            src: mac(P2),
            sip: ip("10.0.1.12"),
            dip: ip("255.255.255.255"),
        },
        64,
        67,
        68,
        &[0u8; 300],
    );
    assert_eq!(
        n.send("h2", "p2", &offer).v,
        Verdict::Drop(R::RogueDhcpServer)
    );
    assert_eq!(
        n.tunnel("h1", "h2", 100, &offer).v,
        Verdict::Drop(R::RogueDhcpServer)
    );
}
