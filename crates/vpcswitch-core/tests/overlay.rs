//! Property tests of SPEC 10: the same random topology on one host and spread over
//! several must end the same way (10.2: guests cannot tell where their peers live), and
//! hostile tunnel frames never get further than their sending host's ports could
//! (10.3, 10.5).
//!
//! One host's verdicts are checked against the reference model in `tests/model.rs`;
//! here the multi-host network is checked against one host. A frame runs the pipeline
//! at the host where it enters; what goes to another host runs `process_tunnel` there,
//! as the runtime would do it: one copy to the remote port's host, or one copy of a
//! flood to each of `flood_hosts` (`vip_hosts`), delivered there to local ports only.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use vpcswitch_core::{
    Ctx, DropReason as R, HostId, Location, NoTrace, Out, PortId, Snapshot, Verdict,
};
use vpcswitch_model::{Config, Host, MacAddr};
use vpcswitch_wire::arp::ArpInfo;

mod common;
use common::{
    build_config, fixed_topo, make_frame, pick_ip, raw, run, topo, Frame, Kind, Raw, ROUTER_MAC,
    UPLINK_MAC,
};

/// How a frame ends, wherever it went: dropped, dropped with the switch's answer sent
/// (to an output named as on one host), or delivered: (port, bytes) for each copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Drop(R),
    Answer(R, String, Vec<u8>),
    Delivered(BTreeSet<(String, Vec<u8>)>),
}

/// The network of `c` placed on `n` hosts: port *i* on host `placement[i] % n`, the
/// uplink on `uplink % n`.
fn placed(c: &Config, n: usize, placement: &[u8], uplink: u8) -> Config {
    let mut m = c.clone();
    m.hosts = (0..n)
        .map(|h| Host {
            name: format!("h{h}"),
            endpoint: Ipv4Addr::new(192, 0, 2, h as u8 + 1),
            port: 4789,
        })
        .collect();
    for (i, p) in m.ports.iter_mut().enumerate() {
        p.host = Some(format!("h{}", placement[i % placement.len()] as usize % n));
    }
    if let Some(u) = m.uplink.as_mut() {
        u.host = Some(format!("h{}", uplink as usize % n));
    }
    m
}

/// Where the ports go: most on the first host, the rest anywhere, so that other hosts
/// often hold a port of a VPC but none of a subnet (they must still learn its VIPs'
/// owners, SPEC 10.5), or only the uplink.
fn placement() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![2 => Just(0u8), 1 => any::<u8>()], 18)
}

/// Each host's snapshot of `m`.
fn snapshots(m: &Config) -> Vec<Snapshot> {
    m.hosts
        .iter()
        .map(|h| {
            let local = m.clone().with_local_host(&h.name).unwrap();
            Snapshot::compile(&local, None).unwrap()
        })
        .collect()
}

fn name(s: &Snapshot, o: Out) -> String {
    match o {
        Out::Port(p) => s.port(p).unwrap().name.clone(),
        Out::Flood(x) => s.subnets[x as usize].name.clone(),
        Out::VipPorts(x) => format!("vip:{}", s.vips[x as usize].name),
    }
}

/// Copies of `bytes` to each of `ports` but the ingress port.
fn copies(
    s: &Snapshot,
    ports: &[PortId],
    in_port: PortId,
    bytes: &[u8],
) -> BTreeSet<(String, Vec<u8>)> {
    ports
        .iter()
        .filter(|&&p| p != in_port)
        .map(|&p| (s.port(p).unwrap().name.clone(), bytes.to_vec()))
        .collect()
}

/// On one host.
fn one_host(s: &Snapshot, ctx: &Ctx, in_port: PortId, frame: &[u8]) -> End {
    let (v, out) = run(frame, |b, l| s.process(ctx, in_port, b, l, &mut NoTrace));
    match v {
        Verdict::Drop(r) => End::Drop(r),
        Verdict::DropAndSend(r, o) => End::Answer(r, name(s, o), out),
        Verdict::Forward(Out::Port(q)) => End::Delivered(copies(s, &[q], u32::MAX, &out)),
        Verdict::Forward(Out::Flood(x)) => {
            End::Delivered(copies(s, &s.subnets[x as usize].ports, in_port, &out))
        }
        Verdict::Forward(Out::VipPorts(x)) => {
            End::Delivered(copies(s, &s.vips[x as usize].ports, in_port, &out))
        }
    }
}

/// On many hosts: at the ingress host `h`, then at each host a copy goes to.
fn many_hosts(
    snaps: &[Snapshot],
    h: HostId,
    ctx: &Ctx,
    in_port: PortId,
    frame: &[u8],
) -> Result<End, String> {
    let s = &snaps[h as usize];
    let (v, out) = run(frame, |b, l| s.process(ctx, in_port, b, l, &mut NoTrace));
    let vni = |o: Out| s.vni_for(o, in_port).ok_or("no VNI");
    // what a copy sent to host `to` becomes there
    let remote = |to: HostId, o: Out| -> Result<(Verdict, Vec<u8>), String> {
        let vni = vni(o)?;
        let t = &snaps[to as usize];
        let traced = t.trace_tunnel(ctx.now_ns, h, vni, &out).verdict;
        let got = run(&out, |b, l| {
            t.process_tunnel(ctx, h, vni, b, l, &mut NoTrace)
        });
        if traced != got.0 {
            return Err(format!(
                "trace_tunnel {traced:?} != process_tunnel {:?}",
                got.0
            ));
        }
        Ok(got)
    };
    Ok(match v {
        Verdict::Drop(r) => End::Drop(r),
        Verdict::DropAndSend(r, o) => {
            if let Out::Port(q) = o {
                if s.location(q) != Some(Location::Local) {
                    return Err(format!("an answer to a remote port: {v:?}"));
                }
            }
            End::Answer(r, name(s, o), out)
        }
        Verdict::Forward(Out::Port(q)) => match s.location(q) {
            Some(Location::Local) => End::Delivered(copies(s, &[q], u32::MAX, &out)),
            Some(Location::Remote(to)) => {
                let (w, bytes) = remote(to, Out::Port(q))?;
                let t = &snaps[to as usize];
                match w {
                    Verdict::Drop(r) => End::Drop(r),
                    Verdict::DropAndSend(r, o) => End::Answer(r, name(t, o), bytes),
                    Verdict::Forward(Out::Port(q2)) => {
                        End::Delivered(copies(t, &[q2], u32::MAX, &bytes))
                    }
                    other => return Err(format!("a unicast copy became {other:?} at h{to}")),
                }
            }
            None => return Err(format!("no port {q}")),
        },
        Verdict::Forward(o @ (Out::Flood(_) | Out::VipPorts(_))) => {
            let (ports, hosts) = match o {
                Out::Flood(x) => (s.flood_ports(x), s.flood_hosts(x)),
                Out::VipPorts(x) => (s.vip_ports(x), s.vip_hosts(x)),
                Out::Port(_) => unreachable!(),
            };
            let mut all = copies(s, ports, in_port, &out);
            for &to in hosts {
                let (w, bytes) = remote(to, o)?;
                let t = &snaps[to as usize];
                let local = match w {
                    Verdict::Forward(Out::Flood(x)) if o == Out::Flood(x) => t.flood_ports(x),
                    Verdict::Forward(Out::VipPorts(x)) if o == Out::VipPorts(x) => t.vip_ports(x),
                    other => return Err(format!("a replica of {o:?} became {other:?} at h{to}")),
                };
                all.extend(copies(t, local, in_port, &bytes));
            }
            End::Delivered(all)
        }
    })
}

/// One frame of the equivalence test: a random one ([`make_frame`]), or one of the
/// kinds that cross hosts most: a port's announcement of a VIP (a claim when the port
/// is bound, SPEC 3.1), a port's packet to the gateway from its own address (routed,
/// to VIPs and ports of other subnets and VPCs, and out through the uplink), an
/// outside packet to an EIP.
#[derive(Debug, Clone)]
enum Step {
    Random(Raw),
    Claim(u16, u16),
    Routed(u16, u16),
    Inbound(u16, u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => raw().prop_map(Step::Random),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(p, v)| Step::Claim(p, v)),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(p, d)| Step::Routed(p, d)),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(s, e)| Step::Inbound(s, e)),
    ]
}

/// The ingress port's name and the frame of `step`.
fn frame_of(c: &Config, step: &Step) -> (String, Frame) {
    let port = |i: u16| &c.ports[i as usize % c.ports.len()];
    match *step {
        Step::Random(ref r) => make_frame(c, r),
        Step::Claim(p, v) => {
            let (p, vip) = (port(p), &c.vips[v as usize % c.vips.len()]);
            let garp = ArpInfo {
                op: 1,
                sha: p.mac.into(),
                spa: vip.ipv4().unwrap().into(),
                tha: MacAddr::ZERO.into(),
                tpa: vip.ipv4().unwrap().into(),
            };
            let f = Frame {
                src: p.mac,
                dst: MacAddr::BROADCAST,
                kind: Kind::Arp(garp),
            };
            (p.name.clone(), f)
        }
        Step::Routed(p, d) => {
            let p = port(p);
            let f = Frame {
                src: p.mac,
                dst: c.switch.gateway_mac,
                kind: Kind::Udp {
                    sip: p.ips[0],
                    dip: pick_ip(c, d),
                    ttl: 64,
                    ports: (1000, 2000),
                },
            };
            (p.name.clone(), f)
        }
        Step::Inbound(s, e) => {
            let eips = c.all_eips();
            let f = Frame {
                src: ROUTER_MAC,
                dst: UPLINK_MAC,
                kind: Kind::Udp {
                    sip: Ipv4Addr::new(198, 51, 100, s as u8),
                    dip: eips[e as usize % eips.len()].ip,
                    ttl: 64,
                    ports: (1000, 2000),
                },
            };
            ("uplink".into(), f)
        }
    }
}

/// The host a port (or the uplink) lives on.
fn host_of(m: &Config, snaps: &[Snapshot], port: &str) -> HostId {
    snaps[0].host_id(m.host_of(port).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// SPEC 10.2, 10.4, 10.5: wherever the ports live, every frame ends as on one host.
    #[test]
    fn spec10_2_many_hosts_end_as_one_host(
        t in topo(),
        nhosts in 2usize..=3,
        placement in placement(),
        uplink in any::<u8>(),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let c = build_config(&t);
        let one = Snapshot::compile(&c, None).unwrap();
        let m = placed(&c, nhosts, &placement, uplink);
        let snaps = snapshots(&m);
        for (i, st) in steps.iter().enumerate() {
            let (port, f) = frame_of(&c, st);
            let bytes = f.bytes();
            let pid = one.port_id(&port).unwrap();
            let ctx = Ctx::at((i as u64 + 1) * 1_000_000_000);
            let want = one_host(&one, &ctx, pid, &bytes);
            let h = host_of(&m, &snaps, &port);
            let got = many_hosts(&snaps, h, &ctx, pid, &bytes);
            prop_assert_eq!(got, Ok(want), "frame {} from {} on h{}: {:?}", i, port, h, f);
            // a claim by a unicast ARP reply is learned only where the reply goes: the
            // control plane spreads it (SPEC 11.4); this test plays that part
            if let Kind::Arp(a) = &f.kind {
                if a.op == 2 && !f.dst.is_multicast() {
                    for v in &c.vips {
                        if let Some(o) = one.vip_owner_name(&v.name) {
                            for s in &snaps {
                                s.set_vip_owner(&v.name, o, ctx.now_ns);
                            }
                        }
                    }
                }
            }
        }
    }

    /// SPEC 10.3, 10.5: any frame from any port, sent through a tunnel by any host with
    /// any VNI: accepted only from a port on the sending host in the VNI's VPC (or as
    /// the sender's routed or EIP traffic), never output to another host, and a VIP
    /// moves only to a bound port living on the sending host.
    #[test]
    fn spec10_3_hostile_tunnel_frames_go_no_further_than_the_senders_ports(
        t in topo(),
        nhosts in 2usize..=3,
        placement in placement(),
        uplink in any::<u8>(),
        frames in prop::collection::vec((raw(), any::<u8>(), any::<u8>(), any::<u8>()), 1..40),
    ) {
        let c = build_config(&t);
        let m = placed(&c, nhosts, &placement, uplink);
        let snaps = snapshots(&m);
        for (i, (r, at, from, vni_sel)) in frames.iter().enumerate() {
            let (_, f) = make_frame(&c, r);
            let bytes = f.bytes();
            let at = *at as usize % nhosts;
            let from = ((at + 1 + *from as usize % (nhosts - 1)) % nhosts) as HostId;
            let s = &snaps[at];
            let vnis = m.vnis();
            let vni = if *vni_sel as usize % (vnis.len() + 1) == vnis.len() {
                (1..).find(|n| !vnis.contains(n)).unwrap()
            } else {
                vnis[*vni_sel as usize % vnis.len()]
            };
            let owners: Vec<Option<String>> =
                c.vips.iter().map(|v| s.vip_owner_name(&v.name).map(String::from)).collect();
            let ctx = Ctx::at((i as u64 + 1) * 1_000_000_000);
            let (v, _) = run(&bytes, |b, l| s.process_tunnel(&ctx, from, vni, b, l, &mut NoTrace));
            // never to another host
            if let Verdict::Forward(Out::Port(q)) | Verdict::DropAndSend(_, Out::Port(q)) = v {
                prop_assert_eq!(s.location(q), Some(Location::Local), "{:?}", v);
            }
            // an unknown VNI, or a port's MAC the sender does not hold
            let sender_port = s.port_by_mac(f.src.into()).and_then(|p| s.port(p));
            if !vnis.contains(&vni) {
                prop_assert_eq!(v, Verdict::Drop(R::TunnelUnknownVni));
            } else if let Some(p) = sender_port.filter(|p| !p.is_uplink) {
                let vpc = s.vpc_by_vni(vni).unwrap();
                if p.location != Location::Remote(from) || p.vpc != vpc {
                    prop_assert_eq!(v, Verdict::Drop(R::TunnelSource), "{} from h{}", p.name, from);
                }
            }
            // a VIP moves only to a bound port of the sender
            for (k, vip) in c.vips.iter().enumerate() {
                let now = s.vip_owner_name(&vip.name).map(String::from);
                if now != owners[k] {
                    let o = now.unwrap();
                    let p = s.port(s.port_id(&o).unwrap()).unwrap();
                    prop_assert_eq!(p.location, Location::Remote(from), "{} moved to {}", vip.name, o);
                    prop_assert!(vip.ports.contains(&o), "{} moved to unbound {}", vip.name, o);
                }
            }
        }
    }
}

/// The hostile frames above include the one named in issue 18: a VIP claim for a port
/// that lives on another host than the sender.
#[test]
fn spec10_5_a_claim_for_a_port_on_another_host_moves_nothing() {
    let c = build_config(&fixed_topo());
    let m = placed(&c, 2, &[0, 1], 0);
    let snaps = snapshots(&m);
    let v = &c.vips[0];
    let bound = v.ports.first().expect("a bound port");
    let p = c.ports.iter().find(|p| p.name == *bound).unwrap();
    let lives = host_of(&m, &snaps, &p.name);
    let (at, from) = (lives as usize, 1 - lives);
    let garp = vpcswitch_wire::build::garp(p.mac, v.ipv4().unwrap());
    let vni = m.vnis()[0];
    let s = &snaps[at];
    let (got, _) = run(&garp, |b, l| {
        s.process_tunnel(&Ctx::at(1), from, vni, b, l, &mut NoTrace)
    });
    assert_eq!(got, Verdict::Drop(R::TunnelSource));
    assert_eq!(s.vip_owner_name(&v.name), None);
    // from its own host it counts (at the other one)
    let other = &snaps[from as usize];
    let (got, _) = run(&garp, |b, l| {
        other.process_tunnel(&Ctx::at(1), lives, vni, b, l, &mut NoTrace)
    });
    assert!(matches!(got, Verdict::Forward(Out::Flood(_))), "{got:?}");
    assert_eq!(other.vip_owner_name(&v.name), Some(p.name.as_str()));
}
