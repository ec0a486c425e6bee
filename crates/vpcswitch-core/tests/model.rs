//! Property test: the pipeline against a small reference model written straight from
//! SPEC 2–7 over the plain configuration (no compiled tables, no shared lookup code).
//! Random topologies, random frames (well-formed, spoofed, misaddressed), and VIP
//! ownership that evolves with the frames. A disagreement is a bug in one of the two.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use vpcswitch_core::{Ctx, DropReason as R, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{
    Config, Eip, Ipv4Cidr, MacAddr, Peering, Port, Route, Subnet, Uplink, Vip, Vpc,
};
use vpcswitch_wire::arp::ArpInfo;
use vpcswitch_wire::build;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exp {
    Port(String),
    Flood(String),
    VipPorts(String),
    Drop(R),
    DropSend(R, String),
}

// ---------- the reference model ----------

struct Model<'a> {
    c: &'a Config,
    owners: HashMap<String, String>,
    /// the uplink's next hop answered ARP (SPEC 7.2)
    next_hop_known: bool,
}

const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn vpc_of<'a>(c: &'a Config, subnet: &str) -> &'a str {
    &c.subnets.iter().find(|s| s.name == subnet).unwrap().vpc
}

impl Model<'_> {
    fn port(&self, n: &str) -> &Port {
        self.c.ports.iter().find(|p| p.name == n).unwrap()
    }
    fn subnet(&self, n: &str) -> &Subnet {
        self.c.subnets.iter().find(|s| s.name == n).unwrap()
    }
    fn bound(&self, p: &Port) -> Vec<&Vip> {
        self.c
            .vips
            .iter()
            .filter(|v| v.ports.contains(&p.name))
            .collect()
    }
    fn allowed(&self, p: &Port, ip: Ipv4Addr) -> bool {
        p.ips.contains(&ip) || self.bound(p).iter().any(|v| v.ip == ip)
    }
    fn owns_mac(p: &Port, m: MacAddr) -> bool {
        p.mac == m || p.allowed_macs.contains(&m)
    }
    /// What `ip` is in VPC `vpc`: ("port", name) / ("vip", name) / ("gw", subnet)
    fn host(&self, vpc: &str, ip: Ipv4Addr) -> Option<(&'static str, String)> {
        for s in self.c.subnets.iter().filter(|s| s.vpc == vpc) {
            if s.gateway_ip() == ip {
                return Some(("gw", s.name.clone()));
            }
        }
        for p in &self.c.ports {
            if vpc_of(self.c, &p.subnet) == vpc && p.ips.contains(&ip) {
                return Some(("port", p.name.clone()));
            }
        }
        for v in &self.c.vips {
            if vpc_of(self.c, &v.subnet) == vpc && v.ip == ip {
                return Some(("vip", v.name.clone()));
            }
        }
        None
    }
    fn l2_port(&self, p: &Port, dst: MacAddr) -> Result<&Port, R> {
        let q = self
            .c
            .ports
            .iter()
            .find(|q| q.subnet == p.subnet && Self::owns_mac(q, dst))
            .ok_or(R::UnknownUnicast)?;
        if q.name == p.name {
            return Err(R::Hairpin);
        }
        Ok(q)
    }
    fn dst_check(&self, q: &Port, dst: Ipv4Addr) -> Exp {
        if q.src_dst_check && !self.allowed(q, dst) {
            Exp::Drop(R::DstCheck)
        } else {
            Exp::Port(q.name.clone())
        }
    }

    /// SPEC 7: the (VPC, private address) an EIP stands for.
    fn eip_target(&self, public: Ipv4Addr) -> Option<(String, Ipv4Addr)> {
        let x = self.c.all_eips().into_iter().find(|x| x.ip == public)?;
        if let Some(v) = &x.vip {
            let v = self.c.vips.iter().find(|w| w.name == *v)?;
            return Some((vpc_of(self.c, &v.subnet).to_string(), v.ip));
        }
        let p = self.port(x.port.as_deref()?);
        Some((
            vpc_of(self.c, &p.subnet).to_string(),
            x.port_ip.unwrap_or(p.ips[0]),
        ))
    }

    /// SPEC 7.3, 7.4: an address of no host of the outside: 0/8, 127/8, 169.254/16,
    /// 224/4, 240/4 (the limited broadcast among them), or inside any VPC CIDR.
    fn not_global_unicast(&self, a: Ipv4Addr) -> bool {
        let o = a.octets();
        o[0] == 0
            || o[0] == 127
            || (o[0] == 169 && o[1] == 254)
            || o[0] >= 224
            || self
                .c
                .vpcs
                .iter()
                .flat_map(|v| &v.cidrs)
                .any(|c| c.contains(a))
    }

    /// RFC 1812 4.3.2.7: an ICMP error (`r`, sent back to `to`) only about a packet
    /// from a unique host to a unicast address; else a plain drop.
    fn icmp_error(r: R, to: String, sip: Ipv4Addr, dip: Ipv4Addr) -> Exp {
        let s = sip.octets()[0];
        let host_src = s != 0 && s != 127 && s < 224;
        if !host_src || dip.is_broadcast() || dip.is_multicast() {
            Exp::Drop(r)
        } else {
            Exp::DropSend(r, to)
        }
    }

    /// SPEC 7.1: a frame on the uplink.
    fn run_uplink(&mut self, f: &Frame) -> Exp {
        match &f.kind {
            Kind::Arp(a) => {
                let spa = Ipv4Addr::from(a.spa);
                if spa == NEXT_HOP && a.sha.mac().is_unicast() {
                    self.next_hop_known = true;
                }
                if a.op == 1 && self.eip_target(Ipv4Addr::from(a.tpa)).is_some() {
                    Exp::Port("uplink".into())
                } else {
                    Exp::Drop(R::UplinkArp)
                }
            }
            Kind::Udp { sip, dip, ttl } => {
                if f.dst != UPLINK_MAC {
                    return Exp::Drop(R::UplinkNotForEip);
                }
                // SPEC 7.3
                let is_eip = self.c.all_eips().iter().any(|x| x.ip == *sip);
                if self.not_global_unicast(*sip) || is_eip {
                    return Exp::Drop(R::UplinkBogusSrc);
                }
                let Some((vpc, private)) = self.eip_target(*dip) else {
                    return Exp::Drop(R::UplinkNotForEip);
                };
                let q = match self.host(&vpc, private) {
                    Some(("port", q)) => q,
                    Some(("vip", v)) => match self.owners.get(&v) {
                        Some(o) => o.clone(),
                        None => return Exp::DropSend(R::VipNoOwner, format!("vip:{v}")),
                    },
                    _ => return Exp::Drop(R::NoSuchHost),
                };
                if *ttl <= 1 {
                    return Exp::DropSend(R::TtlExceeded, "uplink".into());
                }
                self.dst_check(self.port(&q), private)
            }
        }
    }

    /// SPEC 7.2: a packet routed to the uplink.
    fn to_uplink(&self, p: &Port, vpc: &str, sip: Ipv4Addr, dip: Ipv4Addr, ttl: u8) -> Exp {
        // SPEC 7.4
        if self.not_global_unicast(dip) {
            return Exp::Drop(R::UplinkBogusDst);
        }
        let has_eip = self
            .c
            .all_eips()
            .iter()
            .any(|x| self.eip_target(x.ip) == Some((vpc.to_string(), sip)));
        if !has_eip {
            return Exp::Drop(R::NoEip);
        }
        if ttl <= 1 {
            return Self::icmp_error(R::TtlExceeded, p.name.clone(), sip, dip);
        }
        if !self.next_hop_known {
            return Exp::DropSend(R::NextHopUnresolved, "uplink".into());
        }
        Exp::Port("uplink".into())
    }

    fn run(&mut self, in_port: &str, f: &Frame) -> Exp {
        if in_port == "uplink" {
            return self.run_uplink(f);
        }
        let p = self.port(in_port).clone();
        let vpc = vpc_of(self.c, &p.subnet).to_string();
        if !Self::owns_mac(&p, f.src) {
            return Exp::Drop(R::SpoofedSrcMac);
        }
        match &f.kind {
            Kind::Arp(a) => {
                if p.src_dst_check && a.sha != f.src {
                    return Exp::Drop(R::ArpSenderMacMismatch);
                }
                let spa = Ipv4Addr::from(a.spa);
                let tpa = Ipv4Addr::from(a.tpa);
                let claimed = if a.spa != 0 {
                    self.host(&vpc, spa)
                } else {
                    None
                };
                match &claimed {
                    Some(("port", q)) if *q != p.name => return Exp::Drop(R::ArpClaimsForeignIp),
                    Some(("gw", _)) => return Exp::Drop(R::ArpClaimsForeignIp),
                    Some(("vip", v)) if !self.bound(&p).iter().any(|b| b.name == *v) => {
                        return Exp::Drop(R::VipClaimNotBound)
                    }
                    _ => {}
                }
                if p.src_dst_check && a.spa != 0 && !self.allowed(&p, spa) {
                    return Exp::Drop(R::SpoofedArpSenderIp);
                }
                let claim =
                    (a.op == 1 && a.spa == a.tpa && a.spa != 0) || (a.op == 2 && a.spa != 0);
                if claim {
                    if let Some(("vip", v)) = &claimed {
                        self.owners.insert(v.clone(), p.name.clone());
                    }
                }
                if a.op == 2 {
                    if f.dst.is_multicast() {
                        return Exp::Flood(p.subnet.clone());
                    }
                    return match self.l2_port(&p, f.dst) {
                        Ok(q) => Exp::Port(q.name.clone()),
                        Err(r) => Exp::Drop(r),
                    };
                }
                if a.spa == a.tpa && a.spa != 0 {
                    return Exp::Flood(p.subnet.clone());
                }
                if !self.subnet(&p.subnet).cidr.contains(tpa) {
                    return Exp::Drop(R::ArpTargetOutsideSubnet);
                }
                if a.spa == 0 && self.allowed(&p, tpa) {
                    return Exp::Flood(p.subnet.clone());
                }
                match self.host(&vpc, tpa) {
                    Some(("vip", v)) => match self.owners.get(&v) {
                        Some(_) => Exp::Port(p.name.clone()),
                        None => Exp::VipPorts(v),
                    },
                    Some(_) => Exp::Port(p.name.clone()),
                    None => Exp::Flood(p.subnet.clone()),
                }
            }
            Kind::Udp { sip, dip, ttl } => {
                if p.src_dst_check && !self.allowed(&p, *sip) {
                    return Exp::Drop(R::SpoofedSrcIp);
                }
                if f.dst.is_multicast() {
                    // SPEC 2.6: only to what the whole subnet listens to
                    let bcast = self.subnet(&p.subnet).cidr.broadcast();
                    if !(dip.is_broadcast() || dip.is_multicast() || *dip == bcast) {
                        return Exp::Drop(R::FloodToUnicastIp);
                    }
                    return Exp::Flood(p.subnet.clone());
                }
                if f.dst == self.c.switch.gateway_mac {
                    return self.l3(&p, &vpc, *sip, *dip, *ttl);
                }
                let q = match self.l2_port(&p, f.dst) {
                    Ok(q) => q.clone(),
                    Err(r) => return Exp::Drop(r),
                };
                let mut dest = q.clone();
                if let Some(v) = self.bound(&q).iter().find(|v| v.ip == *dip) {
                    if let Some(o) = self.owners.get(&v.name) {
                        if *o != q.name && *o != p.name {
                            dest = self.port(o).clone();
                        }
                    }
                }
                self.dst_check(&dest, *dip)
            }
        }
    }

    fn l3(&self, p: &Port, vpc: &str, sip: Ipv4Addr, dip: Ipv4Addr, ttl: u8) -> Exp {
        // longest prefix among local subnets and explicit routes of the VPC
        let mut best: Option<(u8, String)> = None;
        for s in self.c.subnets.iter().filter(|s| s.vpc == vpc) {
            if s.cidr.contains(dip) && best.as_ref().is_none_or(|b| s.cidr.len() >= b.0) {
                best = Some((s.cidr.len(), "local".into()));
            }
        }
        for r in self.c.routes.iter().filter(|r| r.vpc == vpc) {
            if r.destination.contains(dip)
                && best.as_ref().is_none_or(|b| r.destination.len() > b.0)
            {
                let t = match (&r.peering, &r.port) {
                    (Some(pe), _) => format!("peer:{pe}"),
                    (_, Some(q)) => format!("port:{q}"),
                    _ => "uplink".into(),
                };
                best = Some((r.destination.len(), t));
            }
        }
        let Some((_, t)) = best else {
            return Self::icmp_error(R::NoRoute, p.name.clone(), sip, dip);
        };
        let target = if t == "local" {
            self.host(vpc, dip)
        } else if let Some(pe) = t.strip_prefix("peer:") {
            let peering = self.c.peerings.iter().find(|x| x.name == pe).unwrap();
            let other = peering.vpcs.iter().find(|v| *v != vpc).unwrap();
            match self.host(other, dip) {
                Some(("gw", _)) => None,
                h => h,
            }
        } else if let Some(q) = t.strip_prefix("port:") {
            Some(("port", q.to_string()))
        } else {
            return self.to_uplink(p, vpc, sip, dip, ttl);
        };
        if let Some(("gw", _)) = target {
            return Exp::Drop(R::ToGateway); // UDP to a gateway
        }
        if ttl <= 1 {
            return Self::icmp_error(R::TtlExceeded, p.name.clone(), sip, dip);
        }
        let q = match target {
            Some(("port", q)) => q,
            Some(("vip", v)) => match self.owners.get(&v) {
                Some(o) => o.clone(),
                None => return Exp::DropSend(R::VipNoOwner, format!("vip:{v}")),
            },
            _ => return Exp::Drop(R::NoSuchHost),
        };
        self.dst_check(self.port(&q), dip)
    }
}

// ---------- generators ----------

#[derive(Debug, Clone)]
enum Kind {
    Arp(ArpInfo),
    Udp {
        sip: Ipv4Addr,
        dip: Ipv4Addr,
        ttl: u8,
    },
}

#[derive(Debug, Clone)]
struct Frame {
    src: MacAddr,
    dst: MacAddr,
    kind: Kind,
}

impl Frame {
    fn bytes(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Arp(a) => build::arp_frame(self.dst, self.src, a),
            Kind::Udp { sip, dip, ttl } => build::udp(
                build::Ends {
                    dst: self.dst,
                    src: self.src,
                    sip: *sip,
                    dip: *dip,
                },
                *ttl,
                1000,
                2000,
                b"model",
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Topo {
    vpcs: usize,
    subnets: Vec<usize>,      // per VPC: 1..=2
    ports: Vec<(bool, bool)>, // per (vpc, subnet): count from len; (check, second ip)
    vip_bind: Vec<u8>,        // bitmasks of ports bound to VIP k of a subnet
    peer: Vec<(usize, usize, bool)>,
}

fn topo() -> impl Strategy<Value = Topo> {
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

const PORTS_PER_SUBNET: usize = 3;

fn pmac(v: usize, s: usize, i: usize) -> MacAddr {
    MacAddr([2, 0x10, v as u8, s as u8, i as u8, 1])
}

fn build_config(t: &Topo) -> Config {
    let mut c = Config::default();
    let mut k = 0;
    for v in 0..t.vpcs {
        let vn = format!("v{v}");
        c.vpcs.push(Vpc {
            name: vn.clone(),
            cidrs: vec![format!("10.{v}.0.0/16").parse().unwrap()],
            vni: None,
        });
        for s in 0..t.subnets[v] {
            let sn = format!("v{v}s{s}");
            c.subnets.push(Subnet {
                name: sn.clone(),
                vpc: vn.clone(),
                cidr: format!("10.{v}.{s}.0/24").parse().unwrap(),
                gateway: None,
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
                ip: Ipv4Addr::new(10, v as u8, s as u8, 100),
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
        destination: "0.0.0.0/0".parse::<Ipv4Cidr>().unwrap(),
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
        destination: "192.168.0.0/16".parse::<Ipv4Cidr>().unwrap(),
        peering: None,
        port: Some("v0s0p1".into()),
        uplink: None,
    });
    c.validate()
        .unwrap_or_else(|e| panic!("generated config invalid: {e}\n{}", c.to_toml_string()));
    c
}

/// Picks from the topology's interesting addresses by index.
fn pick_ip(c: &Config, n: u16) -> Ipv4Addr {
    let mut all: Vec<Ipv4Addr> = c.ports.iter().flat_map(|p| p.ips.clone()).collect();
    all.extend(c.vips.iter().map(|v| v.ip));
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

fn pick_mac(c: &Config, n: u16) -> MacAddr {
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

type Raw = (u16, u8, u16, u16, u16, u16, u8, bool);

fn make_frame(c: &Config, r: &Raw) -> (String, Frame) {
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
            kind: Kind::Udp { sip, dip, ttl },
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

fn actual(s: &Snapshot, v: Verdict) -> Exp {
    let name = |o: Out| match o {
        Out::Port(p) => s.port(p).unwrap().name.clone(),
        Out::Flood(x) => s.subnets[x as usize].name.clone(),
        Out::VipPorts(x) => format!("vip:{}", s.vips[x as usize].name),
    };
    match v {
        Verdict::Forward(Out::Port(p)) => Exp::Port(s.port(p).unwrap().name.clone()),
        Verdict::Forward(Out::Flood(x)) => Exp::Flood(s.subnets[x as usize].name.clone()),
        Verdict::Forward(Out::VipPorts(x)) => Exp::VipPorts(s.vips[x as usize].name.clone()),
        Verdict::Drop(r) => Exp::Drop(r),
        Verdict::DropAndSend(r, o) => Exp::DropSend(r, name(o)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_agrees_with_the_reference_model(
        t in topo(),
        raws in prop::collection::vec((any::<u16>(), any::<u8>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u8>(), prop::bool::weighted(0.7)), 1..60),
    ) {
        let c = build_config(&t);
        let snap = Snapshot::compile(&c, None).unwrap();
        let mut model = Model { c: &c, owners: HashMap::new(), next_hop_known: false };
        for (i, r) in raws.iter().enumerate() {
            let (port, f) = make_frame(&c, r);
            let bytes = f.bytes();
            let mut buf = vec![0u8; 2048];
            buf[..bytes.len()].copy_from_slice(&bytes);
            let mut len = bytes.len();
            let pid = snap.port_id(&port).unwrap();
            // one second apart: the ICMP error budget never runs out in this test
            let ctx = Ctx::at((i as u64 + 1) * 1_000_000_000);
            let traced = snap.trace(ctx.now_ns, pid, &bytes).verdict;
            let got = snap.process(&ctx, pid, &mut buf, &mut len, &mut NoTrace);
            prop_assert_eq!(traced, got, "trace and process disagree");
            let want = model.run(&port, &f);
            prop_assert_eq!(actual(&snap, got), want, "frame {} from {}: {:?}", i, port, f);
            // learned owners agree too
            prop_assert_eq!(snap.next_hop_mac().is_some(), model.next_hop_known, "next hop learned");
            for v in &c.vips {
                prop_assert_eq!(snap.vip_owner_name(&v.name).map(String::from), model.owners.get(&v.name).cloned(), "owner of {}", v.name);
            }
        }
    }
}
