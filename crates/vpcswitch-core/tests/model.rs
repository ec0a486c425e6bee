//! Property test: the pipeline against a small reference model written straight from
//! SPEC 2–7 over the plain configuration (no compiled tables, no shared lookup code).
//! Random topologies, random frames (well-formed, spoofed, misaddressed), and VIP
//! ownership that evolves with the frames. A disagreement is a bug in one of the two.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use vpcswitch_core::{Ctx, DropReason as R, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{Config, MacAddr, Port, Subnet, Vip};

mod common;
use common::{build_config, make_frame, raw, topo, Frame, Kind, NEXT_HOP, UPLINK_MAC};

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
            let std::net::IpAddr::V4(ip) = v.ip else {
                return None;
            };
            return Some((vpc_of(self.c, &v.subnet).to_string(), ip));
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
            Kind::Udp { sip, dip, ttl, .. } => {
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
            Kind::Udp {
                sip,
                dip,
                ttl,
                ports,
            } => {
                // SPEC 2.3: 0.0.0.0 only for a DHCP client that stays in the subnet
                let gw_mac = self.c.switch.gateway_mac;
                let exempt = *ports == (68, 67)
                    && sip.is_unspecified()
                    && ((dip.is_broadcast() && f.dst.is_multicast())
                        || (f.dst == gw_mac && *dip == self.subnet(&p.subnet).gateway_ip()));
                if p.src_dst_check && !exempt && !self.allowed(&p, *sip) {
                    return Exp::Drop(R::SpoofedSrcIp);
                }
                // SPEC 13.1: in a DHCP subnet, servers are dropped and clients consumed
                // (the model's payload is no DHCP message: consumed unanswered)
                if self.subnet(&p.subnet).dhcp {
                    if ports.0 == 67 {
                        return Exp::Drop(R::RogueDhcpServer);
                    }
                    if *ports == (68, 67) {
                        return Exp::Drop(R::DhcpClient);
                    }
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
            if r.destination.v4().is_some_and(|d| d.contains(dip))
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
        raws in prop::collection::vec(raw(), 1..60),
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
