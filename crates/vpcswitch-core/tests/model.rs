//! Property test: the pipeline against a small reference model written straight from
//! SPEC 2–7 and 12 over the plain configuration (no compiled tables, no shared lookup
//! code). Random dual-stack topologies, random IPv4 and IPv6 frames (well-formed,
//! spoofed, misaddressed) interleaved, and VIP ownership of both families that evolves
//! with the frames. A disagreement is a bug in one of the two.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vpcswitch_core::{Ctx, DropReason as R, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{gateway_link_local, Config, MacAddr, Port, Route, Subnet, Vip};
use vpcswitch_wire::icmpv6::TYPE_ECHO_REPLY;
use vpcswitch_wire::nd::NdMessage;
use vpcswitch_wire::{classify_ipv6, IpCidr, ETHERNET_HEADER_LEN};

mod common;
use common::{
    add_ipv6, build_config, dual, make_frame, make_frame6, nd_of, raw, topo, Frame, Frame6, Kind,
    Kind6, NEXT_HOP, UPLINK_MAC,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exp {
    Port(String),
    Flood(String),
    VipPorts(String),
    Drop(R),
    DropSend(R, String),
    /// IPv6: delivered to a port with this Ethernet destination and hop limit
    Sent(String, MacAddr, u8),
    /// IPv6: the switch's answer on the port: an advertisement with this target
    /// link-layer address, or (`None`) an echo reply
    Answer(String, Option<MacAddr>),
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

/// A route's target: "peer:<peering>", "port:<port>" or "uplink".
fn route_target(r: &Route) -> String {
    match (&r.peering, &r.port) {
        (Some(pe), _) => format!("peer:{pe}"),
        (_, Some(q)) => format!("port:{q}"),
        _ => "uplink".into(),
    }
}

impl Model<'_> {
    fn port(&self, n: &str) -> &Port {
        self.c.ports.iter().find(|p| p.name == n).unwrap()
    }
    fn subnet(&self, n: &str) -> &Subnet {
        self.c.subnets.iter().find(|s| s.name == n).unwrap()
    }
    /// The other VPC of peering `pe`.
    fn peer_vpc(&self, vpc: &str, pe: &str) -> &str {
        let peering = self.c.peerings.iter().find(|x| x.name == pe).unwrap();
        peering.vpcs.iter().find(|v| *v != vpc).unwrap()
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

    /// SPEC 5.1, 12.5: the longest prefix holding `dip` among the VPC's local subnets
    /// (their IPv4 CIDRs or /64s, as `dip`'s family) and its routes, a local one winning
    /// a tie: "local", or the route's target as [`route_target`] names it.
    fn best_route(&self, vpc: &str, dip: IpAddr) -> Option<String> {
        let holds = |c: &IpCidr| match (c, dip) {
            (IpCidr::V4(c), IpAddr::V4(a)) => c.contains(a),
            (IpCidr::V6(c), IpAddr::V6(a)) => c.contains(a),
            _ => false,
        };
        let mut best: Option<(u8, String)> = None;
        for s in self.c.subnets.iter().filter(|s| s.vpc == vpc) {
            let local = [Some(IpCidr::V4(s.cidr)), s.ipv6_cidr.map(IpCidr::V6)];
            for c in local.into_iter().flatten().filter(|c| holds(c)) {
                if best.as_ref().is_none_or(|b| c.len() >= b.0) {
                    best = Some((c.len(), "local".into()));
                }
            }
        }
        for r in self.c.routes.iter().filter(|r| r.vpc == vpc) {
            if holds(&r.destination) && best.as_ref().is_none_or(|b| r.destination.len() > b.0) {
                best = Some((r.destination.len(), route_target(r)));
            }
        }
        best.map(|(_, t)| t)
    }

    fn l3(&self, p: &Port, vpc: &str, sip: Ipv4Addr, dip: Ipv4Addr, ttl: u8) -> Exp {
        let Some(t) = self.best_route(vpc, dip.into()) else {
            return Self::icmp_error(R::NoRoute, p.name.clone(), sip, dip);
        };
        let target = if t == "local" {
            self.host(vpc, dip)
        } else if let Some(pe) = t.strip_prefix("peer:") {
            match self.host(self.peer_vpc(vpc, pe), dip) {
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

// ---------- the reference model, IPv6 (SPEC 12) ----------

/// fe80::/64, the link-local addresses SPEC 12.2 admits.
fn link_local(a: Ipv6Addr) -> bool {
    a.segments()[..4] == [0xfe80, 0, 0, 0]
}

fn multicast6(a: Ipv6Addr) -> bool {
    a.octets()[0] == 0xff
}

impl Model<'_> {
    fn gateway_ll(&self) -> Ipv6Addr {
        gateway_link_local(self.c.switch.gateway_mac)
    }

    /// SPEC 12.2: the IPv6 allowed set: the IPv6 fixed IPs, the bound IPv6 VIPs and
    /// link-local addresses.
    fn allowed6(&self, p: &Port, ip: Ipv6Addr) -> bool {
        link_local(ip)
            || p.ipv6_ips.contains(&ip)
            || self.bound(p).iter().any(|v| v.ip == IpAddr::V6(ip))
    }

    /// What `ip` is in VPC `vpc` (as [`Model::host`]): a subnet's IPv6 gateway (`::1`
    /// of its /64), a port's IPv6 fixed IP, an IPv6 VIP.
    fn host6(&self, vpc: &str, ip: Ipv6Addr) -> Option<(&'static str, String)> {
        for s in self.c.subnets.iter().filter(|s| s.vpc == vpc) {
            if s.ipv6_cidr.is_some_and(|c| c.first_host() == ip) {
                return Some(("gw", s.name.clone()));
            }
        }
        for p in &self.c.ports {
            if vpc_of(self.c, &p.subnet) == vpc && p.ipv6_ips.contains(&ip) {
                return Some(("port", p.name.clone()));
            }
        }
        for v in &self.c.vips {
            if vpc_of(self.c, &v.subnet) == vpc && v.ip == IpAddr::V6(ip) {
                return Some(("vip", v.name.clone()));
            }
        }
        None
    }

    /// SPEC 12.2 with 2.3a: may `p` claim `a` by ND (a solicitation's source, an
    /// advertisement's target)? Not a gateway's (its link-local one among them),
    /// another port's fixed IP, a VIP it is not bound to. `Ok(Some(vip))` for a VIP
    /// it is bound to.
    fn claim6(&self, p: &Port, vpc: &str, a: Ipv6Addr) -> Result<Option<String>, R> {
        if a == self.gateway_ll() {
            return Err(R::NdClaimsForeignIp);
        }
        match self.host6(vpc, a) {
            Some(("gw", _)) => Err(R::NdClaimsForeignIp),
            Some(("port", q)) if q != p.name => Err(R::NdClaimsForeignIp),
            Some(("vip", v)) if !self.bound(p).iter().any(|b| b.name == v) => {
                Err(R::Vip6ClaimNotBound)
            }
            Some(("vip", v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// SPEC 4.1, 4.2 for what the switch passes on unchanged: to the subnet when the
    /// frame is multicast, else to the port of its MAC.
    fn deliver6(&self, p: &Port, f: &Frame6, hop: u8) -> Exp {
        if f.dst.is_multicast() {
            return Exp::Flood(p.subnet.clone());
        }
        match self.l2_port(p, f.dst) {
            Ok(q) => Exp::Sent(q.name.clone(), f.dst, hop),
            Err(r) => Exp::Drop(r),
        }
    }

    /// SPEC 6.1 with 12.2's allowed set.
    fn dst_check6(&self, q: &Port, dip: Ipv6Addr, eth_dst: MacAddr, hop: u8) -> Exp {
        if q.src_dst_check && !self.allowed6(q, dip) {
            Exp::Drop(R::DstCheck)
        } else {
            Exp::Sent(q.name.clone(), eth_dst, hop)
        }
    }

    /// SPEC 12.5: an ICMPv6 error to the sender, where RFC 4443 2.4(e) allows one
    /// (not about a packet to a multicast address; the sources here are unicast and
    /// the packets no ICMPv6 errors).
    fn icmp6_error(r: R, p: &Port, dip: Ipv6Addr) -> Exp {
        if multicast6(dip) {
            Exp::Drop(r)
        } else {
            Exp::DropSend(r, p.name.clone())
        }
    }

    fn run6(&mut self, in_port: &str, f: &Frame6) -> Exp {
        // SPEC 14.1: no IPv6 over the uplink
        if in_port == "uplink" {
            return Exp::Drop(R::Ipv6);
        }
        let p = self.port(in_port).clone();
        let vpc = vpc_of(self.c, &p.subnet).to_string();
        if !Self::owns_mac(&p, f.src) {
            return Exp::Drop(R::SpoofedSrcMac);
        }
        // SPEC 9.1: a subnet without an IPv6 prefix
        let Some(prefix) = self.subnet(&p.subnet).ipv6_cidr else {
            return Exp::Drop(R::Ipv6);
        };
        let (sip, dip) = (f.sip(), f.dip());
        // SPEC 2.1: RFC 4291 2.7, no multicast source
        if multicast6(sip) {
            return Exp::Drop(R::MalformedIpv6);
        }
        // SPEC 12.2: `::` only for duplicate address detection (an NS to a
        // solicited-node group); docs/security.md adds a router solicitation to
        // ff02::2 and (RFC 3590) MLD reports to a group at a multicast MAC
        let solicited_node = |a: Ipv6Addr| {
            a.octets()[..13] == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0).octets()[..13]
        };
        let exempt = sip.is_unspecified()
            && match f.kind {
                Kind6::Ns { .. } => solicited_node(dip),
                Kind6::Rs { .. } => true,
                Kind6::Mld { .. } => multicast6(dip) && f.dst.is_multicast(),
                _ => false,
            };
        if p.src_dst_check && !exempt && !self.allowed6(&p, sip) {
            return Exp::Drop(R::SpoofedSrcIp6);
        }
        // SPEC 12.3: the gateway is the subnet's only router
        match f.kind {
            Kind6::Ra { .. } => return Exp::Drop(R::RaFromPort),
            Kind6::Redirect { .. } => return Exp::Drop(R::RedirectFromPort),
            _ => {}
        }
        // SPEC 12.2: a link-layer option must be the Ethernet source, whatever the
        // check says
        let lladdr = match f.kind {
            Kind6::Ns { sll, .. } | Kind6::Rs { sll, .. } => sll,
            Kind6::Na { tll, .. } => tll,
            _ => None,
        };
        if lladdr.is_some_and(|m| m != f.src) {
            return Exp::Drop(R::NdLladdrMismatch);
        }
        let gw_mac = self.c.switch.gateway_mac;
        match f.kind {
            Kind6::Rs { .. } => {
                // SPEC 12.3: answered with the subnet's router advertisement
                return Exp::DropSend(R::RouterSolicit, p.name.clone());
            }
            Kind6::Ns { target, .. } => {
                let dad = sip.is_unspecified();
                if !dad {
                    if let Err(r) = self.claim6(&p, &vpc, sip) {
                        return Exp::Drop(r);
                    }
                }
                if !link_local(target) && !prefix.contains(target) {
                    return Exp::Drop(R::NdTargetOutsideSubnet);
                }
                // SPEC 12.3, 3.5: DAD for the sender's own address passes within the
                // subnet, unanswered; the gateway's link-local address is the
                // gateway's, not the sender's (docs/security.md: the switch answers
                // DAD for an address the gateway holds)
                if dad && target != self.gateway_ll() && self.allowed6(&p, target) {
                    return self.deliver6(&p, f, 255);
                }
                // SPEC 12.3 as 3.4: the gateway, fixed IPs, VIPs with an owner are
                // answered; a VIP without one goes to its bound ports
                if target == self.gateway_ll() {
                    return Exp::Answer(p.name.clone(), Some(gw_mac));
                }
                if link_local(target) {
                    return self.deliver6(&p, f, 255);
                }
                return match self.host6(&vpc, target) {
                    Some(("gw", _)) => Exp::Answer(p.name.clone(), Some(gw_mac)),
                    Some(("port", q)) => Exp::Answer(p.name.clone(), Some(self.port(&q).mac)),
                    Some(("vip", v)) => match self.owners.get(&v) {
                        Some(o) => Exp::Answer(p.name.clone(), Some(self.port(o).mac)),
                        None => Exp::VipPorts(v),
                    },
                    _ => self.deliver6(&p, f, 255),
                };
            }
            Kind6::Na { target, .. } => {
                let vip = match self.claim6(&p, &vpc, target) {
                    Ok(v) => v,
                    Err(r) => return Exp::Drop(r),
                };
                if p.src_dst_check && !self.allowed6(&p, target) {
                    return Exp::Drop(R::SpoofedNdTarget);
                }
                // SPEC 12.4 as 3.1 (docs/keepalived.md: a solicited NA too)
                if let Some(v) = vip {
                    self.owners.insert(v, p.name.clone());
                }
                return self.deliver6(&p, f, 255);
            }
            _ => {}
        }
        let hop = match f.kind {
            Kind6::Udp { hop, .. } | Kind6::Echo { hop, .. } => hop,
            _ => 1, // MLD
        };
        if f.dst.is_multicast() {
            // SPEC 2.6, 4.1
            if !multicast6(dip) {
                return Exp::Drop(R::FloodToUnicastIp);
            }
            return Exp::Flood(p.subnet.clone());
        }
        if f.dst == gw_mac {
            return self.l3_6(&p, &vpc, f, hop);
        }
        // SPEC 4.2, 4.3 (12.4), 6.1
        let q = match self.l2_port(&p, f.dst) {
            Ok(q) => q.clone(),
            Err(r) => return Exp::Drop(r),
        };
        let mut dest = q.clone();
        if let Some(v) = self.bound(&q).iter().find(|v| v.ip == IpAddr::V6(dip)) {
            if let Some(o) = self.owners.get(&v.name) {
                if *o != q.name && *o != p.name {
                    dest = self.port(o).clone();
                }
            }
        }
        let eth_dst = if dest.name == q.name { f.dst } else { dest.mac };
        self.dst_check6(&dest, dip, eth_dst, hop)
    }

    /// SPEC 12.5: a frame to the gateway MAC.
    fn l3_6(&self, p: &Port, vpc: &str, f: &Frame6, hop: u8) -> Exp {
        let (sip, dip) = (f.sip(), f.dip());
        // SPEC 5.6: the gateways answer ping
        if dip == self.gateway_ll() || matches!(self.host6(vpc, dip), Some(("gw", _))) {
            return match f.kind {
                Kind6::Echo { .. } => Exp::Answer(p.name.clone(), None),
                _ => Exp::Drop(R::ToGateway),
            };
        }
        // RFC 4291 2.5.2, 2.5.6: `::` and link-local addresses are never forwarded
        if link_local(sip) || link_local(dip) || sip.is_unspecified() {
            return Exp::Drop(R::NoRoute);
        }
        // (never the uplink: SPEC 14.1, refused by validation)
        let Some(t) = self.best_route(vpc, dip.into()) else {
            return Self::icmp6_error(R::NoRoute, p, dip);
        };
        let target = if t == "local" {
            self.host6(vpc, dip)
        } else if let Some(pe) = t.strip_prefix("peer:") {
            // SPEC 5.3: the peer's local addresses only, not its gateways
            match self.host6(self.peer_vpc(vpc, pe), dip) {
                Some(("gw", _)) => None,
                h => h,
            }
        } else {
            Some(("port", t.strip_prefix("port:").unwrap().to_string()))
        };
        if hop <= 1 {
            return Self::icmp6_error(R::TtlExceeded, p, dip);
        }
        let q = match target {
            Some(("port", q)) => q,
            Some(("vip", v)) => match self.owners.get(&v) {
                Some(o) => o.clone(),
                None => return Exp::DropSend(R::VipNoOwner, format!("vip:{v}")),
            },
            _ => return Exp::Drop(R::NoSuchHost),
        };
        let q = self.port(&q);
        // SPEC 5.5: to the port's MAC, the hop limit decremented
        self.dst_check6(q, dip, q.mac, hop - 1)
    }
}

/// What the pipeline did with an IPv6 frame `input`, `output` being the frame as it
/// would leave: as [`actual`], and a frame to one port told apart as the switch's
/// answer (an NA for an NS, an echo reply for an echo request) or a frame sent on
/// (its Ethernet destination and hop limit).
fn actual6(s: &Snapshot, v: Verdict, input: &[u8], output: &[u8]) -> Exp {
    let Verdict::Forward(Out::Port(q)) = v else {
        return actual(s, v);
    };
    let q = s.port(q).unwrap().name.clone();
    let icmp_type = |f: &[u8]| {
        let c = classify_ipv6(&f[ETHERNET_HEADER_LEN..]).ok()?;
        (c.packet_len > c.l4_offset).then(|| f[ETHERNET_HEADER_LEN + c.l4_offset])
    };
    let (tin, tout) = (icmp_type(input), icmp_type(output));
    if tin == Some(128) && tout == Some(TYPE_ECHO_REPLY) {
        return Exp::Answer(q, None);
    }
    if tin == Some(135) && tout == Some(136) {
        let (_, _, m) = nd_of(output);
        assert!(matches!(m, NdMessage::NeighborAdvert { .. }));
        return Exp::Answer(q, m.options().target_lladdr());
    }
    Exp::Sent(
        q,
        MacAddr(output[0..6].try_into().unwrap()),
        output[ETHERNET_HEADER_LEN + 7],
    )
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

/// One frame of a run: IPv4 (SPEC 2–7) or IPv6 (SPEC 12).
#[derive(Debug, Clone)]
enum Any {
    V4(Frame),
    V6(Frame6),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_agrees_with_the_reference_model(
        t in topo(),
        d in dual(),
        raws in prop::collection::vec((any::<bool>(), raw()), 1..80),
    ) {
        let mut c = build_config(&t);
        add_ipv6(&mut c, &d);
        let snap = Snapshot::compile(&c, None).unwrap();
        let mut model = Model { c: &c, owners: HashMap::new(), next_hop_known: false };
        for (i, (v6, r)) in raws.iter().enumerate() {
            let (port, f) = if *v6 {
                let (port, f) = make_frame6(&c, r);
                (port, Any::V6(f))
            } else {
                let (port, f) = make_frame(&c, r);
                (port, Any::V4(f))
            };
            let bytes = match &f {
                Any::V4(f) => f.bytes(),
                Any::V6(f) => f.bytes(),
            };
            let mut buf = vec![0u8; 2048];
            buf[..bytes.len()].copy_from_slice(&bytes);
            let mut len = bytes.len();
            let pid = snap.port_id(&port).unwrap();
            // one second apart: the ICMP error budget never runs out in this test
            let ctx = Ctx::at((i as u64 + 1) * 1_000_000_000);
            let traced = snap.trace(ctx.now_ns, pid, &bytes).verdict;
            let got = snap.process(&ctx, pid, &mut buf, &mut len, &mut NoTrace);
            prop_assert_eq!(traced, got, "trace and process disagree");
            let (got, want) = match &f {
                Any::V4(f) => (actual(&snap, got), model.run(&port, f)),
                Any::V6(f) => (actual6(&snap, got, &bytes, &buf[..len]), model.run6(&port, f)),
            };
            prop_assert_eq!(got, want, "frame {} from {}: {:?}", i, port, f);
            // learned owners agree too
            prop_assert_eq!(snap.next_hop_mac().is_some(), model.next_hop_known, "next hop learned");
            for v in &c.vips {
                prop_assert_eq!(snap.vip_owner_name(&v.name).map(String::from), model.owners.get(&v.name).cloned(), "owner of {}", v.name);
            }
        }
    }
}
