//! What the tests share: random topologies (one host), their configuration, random
//! frames (well-formed, spoofed, misaddressed) from their ports and the uplink, and a
//! runner of one frame.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vpcswitch_core::Verdict;
use vpcswitch_model::{
    gateway_link_local, Config, Eip, Ipv4Cidr, MacAddr, Peering, Port, Route, Subnet, Uplink, Vip,
    Vpc,
};
use vpcswitch_wire::arp::ArpInfo;
use vpcswitch_wire::build::{self, Ends6};
use vpcswitch_wire::{icmpv6, ipv6, nd};

pub const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
pub const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

#[derive(Debug, Clone)]
pub enum Kind {
    Arp(ArpInfo),
    Udp {
        sip: Ipv4Addr,
        dip: Ipv4Addr,
        ttl: u8,
        /// UDP (source, destination) ports: DHCP's 68/67 and 67/68 among them (SPEC
        /// 2.3, 13.1)
        ports: (u16, u16),
    },
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub src: MacAddr,
    pub dst: MacAddr,
    pub kind: Kind,
}

impl Frame {
    pub fn bytes(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Arp(a) => build::arp_frame(self.dst, self.src, a),
            Kind::Udp {
                sip,
                dip,
                ttl,
                ports,
            } => build::udp(
                build::Ends {
                    dst: self.dst,
                    src: self.src,
                    sip: *sip,
                    dip: *dip,
                },
                *ttl,
                ports.0,
                ports.1,
                b"model",
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Topo {
    vpcs: usize,
    subnets: Vec<usize>,      // per VPC: 1..=2
    ports: Vec<(bool, bool)>, // per (vpc, subnet): count from len; (check, second ip)
    vip_bind: Vec<u8>,        // bitmasks of ports bound to VIP k of a subnet
    peer: Vec<(usize, usize, bool)>,
}

pub fn topo() -> impl Strategy<Value = Topo> {
    (
        1usize..=3,
        prop::collection::vec(1usize..=2, 3),
        prop::collection::vec((prop::bool::weighted(0.7), any::<bool>()), 12),
        prop::collection::vec(any::<u8>(), 12),
        prop::collection::vec((0usize..3, 0usize..3, any::<bool>()), 0..3),
    )
        .prop_map(|(vpcs, subnets, ports, vip_bind, peer)| Topo {
            vpcs,
            subnets,
            ports,
            vip_bind,
            peer,
        })
}

/// One VPC with one subnet of three ports, each with the check on and one fixed IP;
/// the subnet's VIP bound to its first two ports; no peering.
pub fn fixed_topo() -> Topo {
    Topo {
        vpcs: 1,
        subnets: vec![1, 1, 1],
        ports: vec![(true, false); 12],
        vip_bind: vec![0b011; 12],
        peer: vec![],
    }
}

pub const PORTS_PER_SUBNET: usize = 3;

pub fn pmac(v: usize, s: usize, i: usize) -> MacAddr {
    MacAddr([2, 0x10, v as u8, s as u8, i as u8, 1])
}

pub fn build_config(t: &Topo) -> Config {
    let mut c = Config::default();
    let mut k = 0;
    for v in 0..t.vpcs {
        let vn = format!("v{v}");
        c.vpcs.push(Vpc {
            name: vn.clone(),
            cidrs: vec![format!("10.{v}.0.0/16").parse().unwrap()],
            ipv6_cidrs: vec![],
            vni: None,
        });
        for s in 0..t.subnets[v] {
            let sn = format!("v{v}s{s}");
            c.subnets.push(Subnet {
                name: sn.clone(),
                vpc: vn.clone(),
                cidr: format!("10.{v}.{s}.0/24").parse().unwrap(),
                gateway: None,
                ipv6_cidr: None,
                // SPEC 13.1: the first subnet of the first VPC serves DHCP
                dhcp: v == 0 && s == 0,
                dhcp_options: Default::default(),
            });
            let mut names = vec![];
            for i in 0..PORTS_PER_SUBNET {
                let (check, second) = t.ports[(k + i) % t.ports.len()];
                let mut ips = vec![Ipv4Addr::new(10, v as u8, s as u8, 10 + i as u8)];
                if second {
                    ips.push(Ipv4Addr::new(10, v as u8, s as u8, 50 + i as u8));
                }
                let name = format!("{sn}p{i}");
                names.push(name.clone());
                c.ports.push(Port {
                    name,
                    subnet: sn.clone(),
                    mac: pmac(v, s, i),
                    ips,
                    ipv6_ips: vec![],
                    src_dst_check: check,
                    allowed_macs: if i == 2 {
                        vec![MacAddr([2, 0x10, v as u8, s as u8, i as u8, 0x99])]
                    } else {
                        vec![]
                    },
                    eip: None,
                    backend: Default::default(),
                    host: None,
                });
            }
            let mask = t.vip_bind[k % t.vip_bind.len()];
            let bound: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| n.clone())
                .collect();
            c.vips.push(Vip {
                name: format!("{sn}vip"),
                subnet: sn.clone(),
                ip: Ipv4Addr::new(10, v as u8, s as u8, 100).into(),
                ports: bound,
                eip: None,
            });
            k += PORTS_PER_SUBNET;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (a, b, both) in &t.peer {
        let (a, b) = (a % t.vpcs, b % t.vpcs);
        if a == b || !seen.insert((a.min(b), a.max(b))) {
            continue;
        }
        let name = format!("pe{a}{b}");
        c.peerings.push(Peering {
            name: name.clone(),
            vpcs: vec![format!("v{a}"), format!("v{b}")],
        });
        c.routes.push(Route {
            vpc: format!("v{a}"),
            destination: format!("10.{b}.0.0/16").parse().unwrap(),
            peering: Some(name.clone()),
            port: None,
            uplink: None,
        });
        if *both {
            c.routes.push(Route {
                vpc: format!("v{b}"),
                destination: format!("10.{a}.0.0/16").parse().unwrap(),
                peering: Some(name),
                port: None,
                uplink: None,
            });
        }
    }
    // SPEC 7: an uplink; VPC 0 routes everything else to it; EIPs for the VIP and the
    // first port of each of its subnets
    c.uplink = Some(Uplink {
        name: "uplink".into(),
        mac: UPLINK_MAC,
        next_hop: NEXT_HOP,
        next_hop_mac: None,
        backend: Default::default(),
        host: None,
    });
    c.routes.push(Route {
        vpc: "v0".into(),
        destination: "0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().into(),
        peering: None,
        port: None,
        uplink: Some(true),
    });
    for s in 0..t.subnets[0] {
        c.eips.push(Eip {
            ip: Ipv4Addr::new(203, 0, 113, 10 + s as u8),
            vip: Some(format!("v0s{s}vip")),
            port: None,
            port_ip: None,
        });
        c.eips.push(Eip {
            ip: Ipv4Addr::new(203, 0, 113, 30 + s as u8),
            vip: None,
            port: Some(format!("v0s{s}p0")),
            port_ip: None,
        });
    }
    // a next-hop route in VPC 0
    c.routes.push(Route {
        vpc: "v0".into(),
        destination: "192.168.0.0/16".parse::<Ipv4Cidr>().unwrap().into(),
        peering: None,
        port: Some("v0s0p1".into()),
        uplink: None,
    });
    c.validate()
        .unwrap_or_else(|e| panic!("generated config invalid: {e}\n{}", c.to_toml_string()));
    c
}

/// Picks from the topology's interesting addresses by index.
pub fn pick_ip(c: &Config, n: u16) -> Ipv4Addr {
    let mut all: Vec<Ipv4Addr> = c.ports.iter().flat_map(|p| p.ips.clone()).collect();
    all.extend(c.vips.iter().filter_map(|v| match v.ip {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    }));
    all.extend(c.subnets.iter().map(|s| s.gateway_ip()));
    all.extend([
        Ipv4Addr::new(10, 0, 0, 77),
        Ipv4Addr::new(10, 2, 1, 9),
        Ipv4Addr::new(192, 168, 3, 3),
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::UNSPECIFIED,
        NEXT_HOP,
        // SPEC 2.6, 7.3, 7.4: what a subnet listens to, martians
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 18),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(240, 0, 0, 1),
        Ipv4Addr::new(198, 51, 100, 7),
    ]);
    all.extend(c.subnets.iter().map(|s| s.cidr.broadcast()));
    all.extend(c.all_eips().iter().map(|x| x.ip));
    all[n as usize % all.len()]
}

pub fn pick_mac(c: &Config, n: u16) -> MacAddr {
    let mut all: Vec<MacAddr> = c.ports.iter().map(|p| p.mac).collect();
    all.extend(c.ports.iter().flat_map(|p| p.allowed_macs.clone()));
    all.extend([
        c.switch.gateway_mac,
        c.switch.gateway_mac,
        MacAddr::BROADCAST,
        MacAddr([1, 0, 0x5e, 0, 0, 18]),
        MacAddr([2, 9, 9, 9, 9, 9]),
        UPLINK_MAC,
        ROUTER_MAC,
    ]);
    all[n as usize % all.len()]
}

pub type Raw = (u16, u8, u16, u16, u16, u16, u8, bool);

/// The random draws one frame is made from ([`make_frame`]).
pub fn raw() -> impl Strategy<Value = Raw> {
    (
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        prop::bool::weighted(0.7),
    )
}

pub fn make_frame(c: &Config, r: &Raw) -> (String, Frame) {
    let (port_i, kind, a, b, d, e, ttl_sel, own_src) = *r;
    // one frame in eight arrives on the uplink, from the router
    let on_uplink = port_i % 8 == 7;
    let p = &c.ports[port_i as usize % c.ports.len()];
    let (name, own_mac) = if on_uplink {
        ("uplink".to_string(), ROUTER_MAC)
    } else {
        (p.name.clone(), p.mac)
    };
    let src = if own_src { own_mac } else { pick_mac(c, a) };
    let ttl = [1u8, 64, 2][ttl_sel as usize % 3];
    let sip = if on_uplink && own_src && a % 2 == 0 {
        NEXT_HOP
    } else if own_src && a % 3 == 0 {
        p.ips[0]
    } else {
        pick_ip(c, b)
    };
    let dip = pick_ip(c, d);
    let f = match kind % 5 {
        0 | 1 => Frame {
            src,
            dst: pick_mac(c, e),
            kind: Kind::Udp {
                sip,
                dip,
                ttl,
                // one in eight a DHCP client's ports, one in eight a server's
                ports: match (a ^ e) % 8 {
                    0 => (68, 67),
                    1 => (67, 68),
                    _ => (1000, 2000),
                },
            },
        },
        2 => Frame {
            src,
            dst: MacAddr::BROADCAST,
            kind: Kind::Arp(ArpInfo {
                op: 1,
                sha: src.into(),
                spa: sip.into(),
                tha: MacAddr::ZERO.into(),
                tpa: dip.into(),
            }),
        },
        3 => Frame {
            src,
            dst: MacAddr::BROADCAST,
            kind: Kind::Arp(ArpInfo {
                op: 1,
                sha: src.into(),
                spa: sip.into(),
                tha: MacAddr::ZERO.into(),
                tpa: sip.into(),
            }),
        },
        _ => {
            let dst = pick_mac(c, e);
            Frame {
                src,
                dst,
                kind: Kind::Arp(ArpInfo {
                    op: 2,
                    sha: (if a % 7 == 0 { pick_mac(c, e) } else { src }).into(),
                    spa: sip.into(),
                    tha: dst.into(),
                    tpa: dip.into(),
                }),
            }
        }
    };
    (name, f)
}

// ---------- dual stack (SPEC 12) ----------

/// Which parts of a [`topo`] get IPv6 ([`add_ipv6`]).
#[derive(Debug, Clone)]
pub struct Dual {
    vpc6: Vec<bool>,    // per VPC: IPv6 CIDR fd00:<v>::/48
    subnet6: Vec<bool>, // per subnet of a dual-stack VPC: its /64
    port6: Vec<u8>,     // per port of a dual-stack subnet: 0..=2 IPv6 fixed IPs
    vip6_bind: Vec<u8>, // per dual-stack subnet: bitmask of the ports bound to its IPv6 VIP
    peer6: Vec<bool>,   // per IPv4 peering route: its IPv6 twin
    routes6: (bool, bool),
}

pub fn dual() -> impl Strategy<Value = Dual> {
    (
        prop::collection::vec(prop::bool::weighted(0.8), 3),
        prop::collection::vec(prop::bool::weighted(0.8), 6),
        prop::collection::vec(0u8..=2, 18),
        prop::collection::vec(any::<u8>(), 6),
        prop::collection::vec(prop::bool::weighted(0.7), 6),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|(vpc6, subnet6, port6, vip6_bind, peer6, routes6)| Dual {
            vpc6,
            subnet6,
            port6,
            vip6_bind,
            peer6,
            routes6,
        })
}

/// The IPv6 prefix of subnet `s` of VPC `v`: fd00:<v>:0:<s>::/64.
pub fn prefix6(v: usize, s: usize, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, v as u16, 0, s as u16, 0, 0, 0, host)
}

/// Makes the configuration of a [`topo`] dual stack (SPEC 12.1) as `d` says: VPC
/// `v` gets fd00:<v>::/48, its subnet `s` fd00:<v>:0:<s>::/64, its ports ::1<i> and
/// ::5<i>, an IPv6 VIP ::100 per subnet; IPv6 twins of the peering routes, and in VPC
/// 0 a next-hop route fd00:99::/32 and a wide route fd00::/16 (longer prefixes, the
/// local /64s and the peerings' /48s, win over it).
pub fn add_ipv6(c: &mut Config, d: &Dual) {
    let idx =
        |name: &str, at: char| -> usize { name[1..].split(at).next().unwrap().parse().unwrap() };
    for vpc in c.vpcs.iter_mut() {
        let v = idx(&vpc.name, ' ');
        if d.vpc6[v % d.vpc6.len()] {
            vpc.ipv6_cidrs = vec![format!("fd00:{v}::/48").parse().unwrap()];
        }
    }
    let dual_vpcs: Vec<String> = c
        .vpcs
        .iter()
        .filter(|v| !v.ipv6_cidrs.is_empty())
        .map(|v| v.name.clone())
        .collect();
    let mut k = 0;
    for sn in c.subnets.iter_mut() {
        if !dual_vpcs.contains(&sn.vpc) {
            continue;
        }
        k += 1;
        if !d.subnet6[k % d.subnet6.len()] {
            continue;
        }
        let v = idx(&sn.vpc, ' ');
        let s: usize = sn.name.rsplit('s').next().unwrap().parse().unwrap();
        sn.ipv6_cidr = Some(format!("{}/64", prefix6(v, s, 0)).parse().unwrap());
        let mask = d.vip6_bind[k % d.vip6_bind.len()];
        let mut bound = vec![];
        for (i, p) in c
            .ports
            .iter_mut()
            .filter(|p| p.subnet == sn.name)
            .enumerate()
        {
            let n = d.port6[(k * PORTS_PER_SUBNET + i) % d.port6.len()];
            p.ipv6_ips = [0x10, 0x50]
                .iter()
                .take(n as usize)
                .map(|h| prefix6(v, s, h + i as u16))
                .collect();
            if mask & (1 << i) != 0 {
                bound.push(p.name.clone());
            }
        }
        c.vips.push(Vip {
            name: format!("{}vip6", sn.name),
            subnet: sn.name.clone(),
            ip: prefix6(v, s, 0x100).into(),
            ports: bound,
            eip: None,
        });
    }
    let peer_routes: Vec<Route> = c
        .routes
        .iter()
        .filter(|r| r.peering.is_some())
        .cloned()
        .collect();
    for (i, r) in peer_routes.into_iter().enumerate() {
        if d.peer6[i % d.peer6.len()] {
            let to = r.destination.v4().unwrap().addr().octets()[1];
            c.routes.push(Route {
                destination: format!("fd00:{to}::/48").parse().unwrap(),
                ..r
            });
        }
    }
    for (on, dest, port) in [
        (d.routes6.0, "fd00:99::/32", "v0s0p1"),
        (d.routes6.1, "fd00::/16", "v0s0p2"),
    ] {
        if on {
            c.routes.push(Route {
                vpc: "v0".into(),
                destination: dest.parse().unwrap(),
                peering: None,
                port: Some(port.into()),
                uplink: None,
            });
        }
    }
    c.validate()
        .unwrap_or_else(|e| panic!("generated config invalid: {e}\n{}", c.to_toml_string()));
}

/// An IPv6 frame of the kinds a dual-stack guest sends (SPEC 12).
#[derive(Debug, Clone)]
pub enum Kind6 {
    Udp {
        sip: Ipv6Addr,
        dip: Ipv6Addr,
        hop: u8,
    },
    Echo {
        sip: Ipv6Addr,
        dip: Ipv6Addr,
        hop: u8,
    },
    /// an MLDv2 report (RFC 3590: from `::` while the link-local address is tentative)
    Mld { sip: Ipv6Addr, dip: Ipv6Addr },
    /// neighbour solicitation with an optional source link-layer option
    Ns {
        sip: Ipv6Addr,
        dip: Ipv6Addr,
        target: Ipv6Addr,
        sll: Option<MacAddr>,
    },
    /// neighbour advertisement with an optional target link-layer option
    Na {
        sip: Ipv6Addr,
        dip: Ipv6Addr,
        target: Ipv6Addr,
        tll: Option<MacAddr>,
        solicited: bool,
    },
    /// router solicitation to ff02::2
    Rs { sip: Ipv6Addr, sll: Option<MacAddr> },
    /// router advertisement to ff02::1
    Ra { sip: Ipv6Addr },
    Redirect {
        sip: Ipv6Addr,
        dip: Ipv6Addr,
        target: Ipv6Addr,
        dest: Ipv6Addr,
    },
}

#[derive(Debug, Clone)]
pub struct Frame6 {
    pub src: MacAddr,
    pub dst: MacAddr,
    pub kind: Kind6,
}

fn lladdr_option(ty: u8, m: Option<MacAddr>) -> Vec<u8> {
    m.map_or(vec![], |m| {
        let mut o = vec![ty, 1];
        o.extend_from_slice(&m.0);
        o
    })
}

impl Frame6 {
    pub fn sip(&self) -> Ipv6Addr {
        match self.kind {
            Kind6::Udp { sip, .. }
            | Kind6::Echo { sip, .. }
            | Kind6::Mld { sip, .. }
            | Kind6::Ns { sip, .. }
            | Kind6::Na { sip, .. }
            | Kind6::Rs { sip, .. }
            | Kind6::Ra { sip }
            | Kind6::Redirect { sip, .. } => sip,
        }
    }

    pub fn dip(&self) -> Ipv6Addr {
        match self.kind {
            Kind6::Udp { dip, .. }
            | Kind6::Echo { dip, .. }
            | Kind6::Mld { dip, .. }
            | Kind6::Ns { dip, .. }
            | Kind6::Na { dip, .. }
            | Kind6::Redirect { dip, .. } => dip,
            Kind6::Rs { .. } => ipv6::ALL_ROUTERS,
            Kind6::Ra { .. } => ipv6::ALL_NODES,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ends = Ends6 {
            dst: self.dst,
            src: self.src,
            sip: self.sip(),
            dip: self.dip(),
        };
        let nd = |ty: u8, word: u32, body: Vec<u8>| {
            build::icmpv6(ends, nd::ND_HOP_LIMIT, (ty, 0), word, &body)
        };
        match &self.kind {
            Kind6::Udp { hop, .. } => build::udp6(ends, *hop, 1000, 2000, b"model6"),
            Kind6::Echo { sip, dip, hop } => {
                build::icmpv6_echo(self.dst, self.src, *sip, *dip, *hop, 7, 1)
            }
            Kind6::Mld { .. } => build::icmpv6(
                ends,
                1,
                (143, 0),
                1,
                &[
                    4, 0, 0, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x11,
                ],
            ),
            Kind6::Ns { target, sll, .. } => {
                let mut b = target.octets().to_vec();
                b.extend(lladdr_option(1, *sll));
                nd(icmpv6::TYPE_NEIGHBOR_SOLICIT, 0, b)
            }
            Kind6::Na {
                target,
                tll,
                solicited,
                ..
            } => {
                let mut b = target.octets().to_vec();
                b.extend(lladdr_option(2, *tll));
                // O always, S when solicited
                let flags = 0x20 | if *solicited { 0x40 } else { 0 };
                nd(icmpv6::TYPE_NEIGHBOR_ADVERT, flags << 24, b)
            }
            Kind6::Rs { sll, .. } => nd(icmpv6::TYPE_ROUTER_SOLICIT, 0, lladdr_option(1, *sll)),
            Kind6::Ra { .. } => {
                let mut b = vec![0u8; 8];
                b.extend(lladdr_option(1, Some(self.src)));
                nd(icmpv6::TYPE_ROUTER_ADVERT, 0x4000_0708, b)
            }
            Kind6::Redirect { target, dest, .. } => {
                let mut b = target.octets().to_vec();
                b.extend_from_slice(&dest.octets());
                nd(icmpv6::TYPE_REDIRECT, 0, b)
            }
        }
    }
}

/// The ND message of an output frame, parsed and validated as a host would (its
/// checksum among RFC 4861's checks): (IPv6 source, destination, message).
pub fn nd_of(out: &[u8]) -> (Ipv6Addr, Ipv6Addr, nd::NdMessage<'_>) {
    let ipb = &out[vpcswitch_wire::ETHERNET_HEADER_LEN..];
    let c = vpcswitch_wire::classify_ipv6(ipb).unwrap();
    let meta = icmpv6::Ipv6Meta {
        src: c.src,
        dst: c.dst,
        hop_limit: c.hop_limit,
        fragmented: c.fragment,
    };
    let m = nd::parse(&meta, &ipb[c.l4_offset..c.packet_len]).unwrap();
    (c.src, c.dst, m)
}

/// Picks from the dual-stack topology's interesting IPv6 addresses by index: fixed
/// IPs, VIPs, gateways (`::1`, the link-local one), the ports' link-local addresses,
/// unknown addresses in and out of the subnets, routed ones, `::`, multicast groups.
pub fn pick_ip6(c: &Config, n: u16) -> Ipv6Addr {
    let mut all: Vec<Ipv6Addr> = c.ports.iter().flat_map(|p| p.ipv6_ips.clone()).collect();
    all.extend(c.vips.iter().filter_map(|v| match v.ip {
        std::net::IpAddr::V6(a) => Some(a),
        std::net::IpAddr::V4(_) => None,
    }));
    all.extend(c.subnets.iter().filter_map(|s| s.gateway_ipv6()));
    all.extend(
        c.ports
            .iter()
            .step_by(2)
            .map(|p| ipv6::link_local_from_mac(p.mac)),
    );
    all.extend([
        gateway_link_local(c.switch.gateway_mac),
        prefix6(0, 0, 0x77),
        prefix6(1, 1, 0x77),
        prefix6(2, 0, 0x10),
        prefix6(0, 9, 1),
        "fd00:99::5".parse().unwrap(),
        "fd00:99:1::".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "fe80::99".parse().unwrap(),
        Ipv6Addr::UNSPECIFIED,
        ipv6::ALL_NODES,
        "ff02::fb".parse().unwrap(),
        ipv6::solicited_node(&prefix6(0, 0, 0x10)),
    ]);
    all[n as usize % all.len()]
}

/// Picks from the IPv6 addresses of `p`'s subnet (of the first subnet when it has
/// none) by index: its ports' fixed IPs, its VIP (twice), its gateways, an unknown
/// address of its /64, the port's own link-local address.
pub fn near_ip6(c: &Config, p: &Port, n: u16) -> Ipv6Addr {
    let s = c
        .subnets
        .iter()
        .find(|s| s.name == p.subnet && s.ipv6_cidr.is_some())
        .or_else(|| c.subnets.iter().find(|s| s.ipv6_cidr.is_some()));
    let Some(s) = s else {
        return pick_ip6(c, n);
    };
    let mut all: Vec<Ipv6Addr> = c
        .ports
        .iter()
        .filter(|q| q.subnet == s.name)
        .flat_map(|q| q.ipv6_ips.clone())
        .collect();
    for v in c.vips.iter().filter(|v| v.subnet == s.name) {
        if let std::net::IpAddr::V6(a) = v.ip {
            all.extend([a, a]);
        }
    }
    let net = s.ipv6_cidr.unwrap().network().segments();
    all.extend([
        s.gateway_ipv6().unwrap(),
        gateway_link_local(c.switch.gateway_mac),
        Ipv6Addr::new(net[0], net[1], net[2], net[3], 0, 0, 0, 0x77),
        ipv6::link_local_from_mac(p.mac),
    ]);
    all[n as usize % all.len()]
}

/// A destination MAC for an IPv6 frame to `dip`: the group's when `dip` is
/// multicast, the gateway's, the MAC of the port that holds `dip` (or, for a VIP, of
/// one bound to it), or any ([`pick_mac6`]).
pub fn mac_for6(c: &Config, n: u16, dip: Ipv6Addr) -> MacAddr {
    let holder = c
        .ports
        .iter()
        .find(|p| p.ipv6_ips.contains(&dip))
        .or_else(|| {
            let v = c.vips.iter().find(|v| v.ip == std::net::IpAddr::V6(dip))?;
            let bound: Vec<&String> = v.ports.iter().collect();
            let name = bound.get(n as usize / 4 % bound.len().max(1))?;
            c.ports.iter().find(|p| p.name == **name)
        });
    match n % 4 {
        0 if ipv6::is_multicast(&dip) => ipv6::multicast_mac(&dip),
        1 => c.switch.gateway_mac,
        2 if holder.is_some() => holder.unwrap().mac,
        _ => pick_mac6(c, n / 4, dip),
    }
}

/// Picks a destination MAC for an IPv6 frame: the ports', the gateway's, multicast
/// ones (the group of `dip`, all nodes), the broadcast, an unknown one.
pub fn pick_mac6(c: &Config, n: u16, dip: Ipv6Addr) -> MacAddr {
    let mut all: Vec<MacAddr> = c.ports.iter().map(|p| p.mac).collect();
    all.extend(c.ports.iter().flat_map(|p| p.allowed_macs.clone()));
    all.extend([
        c.switch.gateway_mac,
        c.switch.gateway_mac,
        c.switch.gateway_mac,
        ipv6::multicast_mac(&dip),
        ipv6::multicast_mac(&dip),
        ipv6::multicast_mac(&ipv6::ALL_NODES),
        MacAddr::BROADCAST,
        MacAddr([2, 9, 9, 9, 9, 9]),
    ]);
    all[n as usize % all.len()]
}

/// An IPv6 frame from the draws `r` (as [`make_frame`]): well-formed ND (RFC 4861's
/// validity rules hold, so that what is tested is the switch's policy) with link-layer
/// options that may lie, spoofed and misaddressed sources and destinations, datagrams
/// with expiring hop limits. One in eight arrives on the uplink.
pub fn make_frame6(c: &Config, r: &Raw) -> (String, Frame6) {
    let (port_i, kind, a, b, d, e, hop_sel, own_src) = *r;
    // one frame in sixteen on the uplink; most from a port of a dual-stack subnet
    let on_uplink = port_i % 16 == 15;
    let dual: Vec<&Port> = c
        .ports
        .iter()
        .filter(|p| {
            c.subnets
                .iter()
                .any(|s| s.name == p.subnet && s.ipv6_cidr.is_some())
        })
        .collect();
    let p = if port_i % 8 != 0 && !dual.is_empty() {
        dual[(port_i / 16) as usize % dual.len()]
    } else {
        &c.ports[(port_i / 16) as usize % c.ports.len()]
    };
    let (name, own_mac) = if on_uplink {
        ("uplink".to_string(), ROUTER_MAC)
    } else {
        (p.name.clone(), p.mac)
    };
    let src = if own_src || a % 2 == 0 {
        own_mac
    } else {
        pick_mac(c, a)
    };
    let own_ll = ipv6::link_local_from_mac(own_mac);
    let own_vip = c.vips.iter().find_map(|v| match v.ip {
        std::net::IpAddr::V6(ip) if v.ports.contains(&p.name) => Some(ip),
        _ => None,
    });
    // half the addresses from the sender's subnet, where ND and VIPs act
    let pick = |n: u16| {
        if n.is_multiple_of(2) {
            near_ip6(c, p, n / 2)
        } else {
            pick_ip6(c, n / 2)
        }
    };
    let fixed = p.ipv6_ips.first().copied().unwrap_or(own_ll);
    let sip = match (own_src, a % 4) {
        (true, 0 | 1) => fixed,
        (true, 2) => own_ll,
        (true, _) => own_vip.unwrap_or(fixed),
        (false, _) => pick(b),
    };
    // no multicast sources (malformed, tested elsewhere) but for one frame in 64
    let sip = if ipv6::is_multicast(&sip) && a % 64 != 0 {
        own_ll
    } else {
        sip
    };
    let dip = pick(d);
    let hop = [1u8, 64, 2, 0][hop_sel as usize % 4];
    // a link-layer option: the sender's own mostly, another MAC, or none
    let lladdr = match e % 8 {
        0 => Some(pick_mac(c, e / 8)),
        1 => None,
        _ => Some(src),
    };
    let unicast = |t: Ipv6Addr| !ipv6::is_multicast(&t);
    let (dst, kind) = match kind % 12 {
        0..=2 => (mac_for6(c, e, dip), Kind6::Udp { sip, dip, hop }),
        3 => {
            // pings, to a gateway half the time
            let dip = match e % 8 {
                0 => gateway_link_local(c.switch.gateway_mac),
                1..=3 => {
                    let s = &c.subnets[d as usize % c.subnets.len()];
                    s.gateway_ipv6()
                        .unwrap_or(gateway_link_local(c.switch.gateway_mac))
                }
                _ => dip,
            };
            (mac_for6(c, e / 8, dip), Kind6::Echo { sip, dip, hop })
        }
        4 => {
            let sip = if a % 2 == 0 {
                Ipv6Addr::UNSPECIFIED
            } else {
                sip
            };
            let dip: Ipv6Addr = if e % 3 == 0 {
                dip
            } else {
                "ff02::16".parse().unwrap()
            };
            (mac_for6(c, e / 3, dip), Kind6::Mld { sip, dip })
        }
        5..=7 => {
            // a solicitation: multicast to the target's group, or unicast (Linux
            // confirms a cached neighbour so); DAD from `::`, without an option
            let target = if unicast(dip) {
                dip
            } else {
                p.ipv6_ips.first().copied().unwrap_or(own_ll)
            };
            // (RFC 4861 7.1.1: from `::` only so)
            let dad = (kind % 12 == 7 && a % 2 == 0) || sip.is_unspecified();
            let sip = if dad { Ipv6Addr::UNSPECIFIED } else { sip };
            if dad || e % 3 != 0 {
                let group = ipv6::solicited_node(&target);
                let sll = if dad { None } else { lladdr };
                (
                    ipv6::multicast_mac(&group),
                    Kind6::Ns {
                        sip,
                        dip: group,
                        target,
                        sll,
                    },
                )
            } else {
                (
                    mac_for6(c, e / 3, target),
                    Kind6::Ns {
                        sip,
                        dip: target,
                        target,
                        sll: lladdr,
                    },
                )
            }
        }
        8 | 9 => {
            // an advertisement: unsolicited to all nodes (a VIP's failover), or
            // solicited to a unicast address; its source mostly its target
            // (keepalived's failover: the port's own VIP, one time in three)
            let target = match (own_vip, d % 3) {
                (Some(v), 0) => v,
                _ if unicast(dip) => dip,
                _ => sip,
            };
            let target = if unicast(target) { target } else { own_ll };
            let sip = if a % 4 == 0 { sip } else { target };
            if e % 2 == 0 {
                (
                    ipv6::multicast_mac(&ipv6::ALL_NODES),
                    Kind6::Na {
                        sip,
                        dip: ipv6::ALL_NODES,
                        target,
                        tll: lladdr,
                        solicited: false,
                    },
                )
            } else {
                let to = pick_ip6(c, b ^ d);
                let to = if unicast(to) { to } else { prefix6(0, 0, 1) };
                (
                    mac_for6(c, e / 2, to),
                    Kind6::Na {
                        sip,
                        dip: to,
                        target,
                        tll: lladdr,
                        solicited: true,
                    },
                )
            }
        }
        10 => {
            // RFC 4861 6.1.1: no option from `::`
            let (sip, sll) = if a % 2 == 0 || sip.is_unspecified() {
                (Ipv6Addr::UNSPECIFIED, None)
            } else {
                (sip, lladdr)
            };
            (
                ipv6::multicast_mac(&ipv6::ALL_ROUTERS),
                Kind6::Rs { sip, sll },
            )
        }
        _ => {
            // a rogue router: advertisements and redirects from a link-local source
            if a % 2 == 0 {
                (
                    ipv6::multicast_mac(&ipv6::ALL_NODES),
                    Kind6::Ra { sip: own_ll },
                )
            } else {
                let dest = if unicast(dip) {
                    dip
                } else {
                    prefix6(0, 1, 0x10)
                };
                (
                    pick_mac6(c, e, dip),
                    Kind6::Redirect {
                        sip: own_ll,
                        dip: p.ipv6_ips.first().copied().unwrap_or(own_ll),
                        target: "fe80::99".parse().unwrap(),
                        dest,
                    },
                )
            }
        }
    };
    (name, Frame6 { src, dst, kind })
}

/// Runs `f` (the pipeline given the buffer and the frame's length) on a copy of `frame`
/// in a 2 KiB buffer: the verdict and the frame as it would leave.
pub fn run(frame: &[u8], f: impl FnOnce(&mut [u8], &mut usize) -> Verdict) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let v = f(&mut buf, &mut len);
    (v, buf[..len].to_vec())
}

/// A DHCP client message (SPEC 13.1), emitted by smoltcp, as whole frames; addresses
/// as text, 0.0.0.0 for none.
pub struct DhcpMsg {
    pub kind: smoltcp::wire::DhcpMessageType,
    pub chaddr: MacAddr,
    pub ciaddr: &'static str,
    /// option 50
    pub requested: Option<&'static str>,
    /// option 54
    pub server: Option<&'static str>,
}

impl DhcpMsg {
    /// A `kind` message from `chaddr` (also its client identifier), nothing else set.
    pub fn new(kind: smoltcp::wire::DhcpMessageType, chaddr: MacAddr) -> DhcpMsg {
        DhcpMsg {
            kind,
            chaddr,
            ciaddr: "0.0.0.0",
            requested: None,
            server: None,
        }
    }

    /// The message in a frame from `src` to `eth_dst`, `sip` to `dip`, UDP 68 to 67.
    pub fn frame(&self, eth_dst: MacAddr, src: MacAddr, sip: &str, dip: &str) -> Vec<u8> {
        use smoltcp::wire::{DhcpPacket, DhcpRepr, EthernetAddress, Ipv4Address};
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("an address");
        let repr = DhcpRepr {
            message_type: self.kind,
            transaction_id: 0xfeed_0001,
            secs: 0,
            client_hardware_address: EthernetAddress(self.chaddr.0),
            client_ip: a(self.ciaddr),
            your_ip: Ipv4Address::UNSPECIFIED,
            server_ip: Ipv4Address::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: self.requested.map(a),
            client_identifier: Some(EthernetAddress(self.chaddr.0)),
            server_identifier: self.server.map(a),
            parameter_request_list: Some(&[1, 3, 6, 15, 26, 121]),
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut d = vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut d))
            .expect("room for the message");
        build::udp(
            build::Ends {
                dst: eth_dst,
                src,
                sip: a(sip),
                dip: a(dip),
            },
            64,
            68,
            67,
            &d,
        )
    }

    /// From `chaddr`, 0.0.0.0 to 255.255.255.255 at the broadcast MAC.
    pub fn bcast(&self) -> Vec<u8> {
        self.frame(
            MacAddr::BROADCAST,
            self.chaddr,
            "0.0.0.0",
            "255.255.255.255",
        )
    }
}

/// A broadcast DHCP client message of `kind` from `src` asking for `requested`.
pub fn dhcp_client(
    kind: smoltcp::wire::DhcpMessageType,
    src: MacAddr,
    requested: Option<&'static str>,
) -> Vec<u8> {
    DhcpMsg {
        requested,
        ..DhcpMsg::new(kind, src)
    }
    .bcast()
}
