//! IPv6 from a port of a dual-stack subnet (SPEC 12): the source check (12.2),
//! neighbour discovery (12.2 link-layer options and 2.3a, 12.3 the responder and
//! router advertisements, 12.4 VIP claims), floods (4.1, 2.6), unicast inside the
//! subnet with VIP steering and the destination check (4.2, 4.3, 6.1), and routing
//! between the VPC's subnets (12.5). A subnet without an IPv6 prefix drops IPv6 (9.1).
//!
//! Off the IPv4 hot path: [`Snapshot::ingress`] comes here only for EtherType 0x86dd.

use std::net::Ipv6Addr;

use vpcswitch_wire::icmpv6::{self, Ipv6Meta};
use vpcswitch_wire::nd::{self, NdKind, NdMessage, PrefixInfo, RaParams, SeenNs};
use vpcswitch_wire::{
    classify_ipv6, ipv6, Classified6, Ipv6Error, Ipv6Packet, MacAddr, V6Upper, ETHERNET_HEADER_LEN,
    L3,
};

use super::{dropped, Frame, Resolved};
use crate::snapshot::{Addr, Budget, PortEntry, RouteTarget, Subnet6};
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict, VipId, VpcId};

/// Router lifetime the switch advertises, seconds (RFC 4861's default, 3 × 600).
const ROUTER_LIFETIME: u16 = 1800;
/// Hop limit the switch advertises to hosts.
const ADVERTISED_HOP_LIMIT: u8 = 64;

/// MLD listener report (v1, 131), done (132), MLDv2 report (143): sent from `::`
/// while a host's link-local address is tentative (RFC 3590).
const MLD_REPORTS: [u8; 3] = [131, 132, 143];

/// What the ND stage keeps of a validated message (the message borrows the frame,
/// which the stage then rewrites or hands on).
#[derive(Clone, Copy)]
struct NdSeen {
    kind: NdKind,
    /// the NS/NA target
    target: Option<Ipv6Addr>,
    /// link-layer addresses the message claims for its sender
    lladdrs: [Option<MacAddr>; 2],
}

fn malformed(e: Ipv6Error) -> DropReason {
    match e {
        Ipv6Error::FragmentedNd => DropReason::MalformedNd,
        _ => DropReason::MalformedIpv6,
    }
}

impl Snapshot {
    /// SPEC 12, 9.1: an IPv6 frame from a port (source MAC checked).
    #[inline]
    pub(super) fn ipv6_stage<T: Tracer>(&self, mut f: Frame<'_, T>) -> Verdict {
        let p = f.port;
        let Some(s6) = self.subnets.get(p.subnet as usize).and_then(|s| s.ipv6) else {
            return self.not_switched(f.hand_on(), L3::Ipv6);
        };
        let c = match classify_ipv6(&f.bytes()[ETHERNET_HEADER_LEN..]) {
            Ok(c) => c,
            Err(e) => drop_with!(f.t, L3, malformed(e), "IPv6: {e:?} (SPEC 2.1, 12)"),
        };
        // SPEC 12.2: `::` only for duplicate address detection (and router
        // solicitation, consumed by the switch); and (RFC 3590) for
        // the MLD reports a host sends to a multicast group before its link-local
        // address is ready, which only ever flood the subnet
        let dad = ipv6::is_unspecified(&c.src)
            && match c.upper {
                V6Upper::Nd(NdKind::NeighborSolicit) => ipv6::is_solicited_node(&c.dst),
                // RFC 4861 6.3.7: a host without an address yet may solicit from `::`
                V6Upper::Nd(NdKind::RouterSolicit) => c.dst == ipv6::ALL_ROUTERS,
                V6Upper::Icmpv6 { ty, .. } => {
                    MLD_REPORTS.contains(&ty)
                        && ipv6::is_multicast(&c.dst)
                        && f.dst_mac.is_multicast()
                }
                _ => false,
            };
        if p.src_dst_check && !dad && !p.allows_ip6(&c.src) {
            drop_with!(
                f.t,
                SrcIp,
                DropReason::SpoofedSrcIp6,
                "{} is not in the IPv6 allowed set of {} (SPEC 12.2)",
                c.src,
                p.name
            )
        }
        step!(
            f.t,
            SrcIp,
            "{} allowed (SPEC 12.2{})",
            c.src,
            if dad {
                ": duplicate address detection"
            } else if p.src_dst_check {
                ""
            } else {
                ": check off"
            }
        );
        if let V6Upper::Nd(_) = c.upper {
            return self.nd_stage(f, &c, s6);
        }
        if f.dst_mac.is_multicast() {
            if !ipv6::is_multicast(&c.dst) {
                drop_with!(
                    f.t,
                    L2,
                    DropReason::FloodToUnicastIp,
                    "{} to unicast {}: a multicast frame must go to a multicast group \
                     (SPEC 2.6, 12.1)",
                    f.dst_mac,
                    c.dst
                )
            }
            step!(
                f.t,
                L2,
                "multicast {}: every other port of subnet {} (SPEC 4.1, 12.1)",
                c.dst,
                self.subnet_name(p)
            );
            return self.flood(&mut f);
        }
        if f.dst_mac == self.gateway_mac {
            return self.l3_ipv6(f, &c, s6);
        }
        self.l2_ipv6(&mut f, &c)
    }

    /// SPEC 12.2 (link-layer options, 2.3a), 12.3, 12.4: a neighbour discovery message.
    fn nd_stage<T: Tracer>(&self, mut f: Frame<'_, T>, c: &Classified6, s6: Subnet6) -> Verdict {
        let p = f.port;
        if !self.spend(&f, Budget::Arp, 1) {
            drop_with!(
                f.t,
                Nd,
                DropReason::ArpRateLimited,
                "over the ARP/ND budget of {}",
                p.name
            )
        }
        let seen = {
            let meta = Ipv6Meta {
                src: c.src,
                dst: c.dst,
                hop_limit: c.hop_limit,
                fragmented: c.fragment,
            };
            let m = f
                .bytes()
                .get(ETHERNET_HEADER_LEN + c.l4_offset..ETHERNET_HEADER_LEN + c.packet_len)
                .unwrap_or(&[]);
            match nd::parse(&meta, m) {
                Ok(msg) => NdSeen {
                    kind: msg.kind(),
                    target: match msg {
                        NdMessage::NeighborSolicit { target, .. }
                        | NdMessage::NeighborAdvert { target, .. } => Some(target),
                        _ => None,
                    },
                    lladdrs: msg.claimed_lladdrs(),
                },
                Err(e) => drop_with!(
                    f.t,
                    Nd,
                    DropReason::MalformedNd,
                    "{e:?} (RFC 4861 validity checks, SPEC 12.2)"
                ),
            }
        };
        match seen.kind {
            NdKind::RouterAdvert => drop_with!(
                f.t,
                Nd,
                DropReason::RaFromPort,
                "router advertisement from {}: the gateway is the only router (SPEC 12.3)",
                p.name
            ),
            NdKind::Redirect => drop_with!(
                f.t,
                Nd,
                DropReason::RedirectFromPort,
                "redirect from {} (SPEC 12.3)",
                p.name
            ),
            _ => {}
        }
        // SPEC 12.2: whatever `src_dst_check` says (a neighbour cache poisoned with
        // another MAC is an attack on the whole subnet)
        for m in seen.lladdrs.into_iter().flatten() {
            if f.src_mac != m {
                drop_with!(
                    f.t,
                    Nd,
                    DropReason::NdLladdrMismatch,
                    "link-layer option {m} != Ethernet source {} (SPEC 12.2)",
                    f.src_mac
                )
            }
        }
        match (seen.kind, seen.target) {
            (NdKind::NeighborSolicit, Some(t)) => self.neighbor_solicit(f, c, s6, t),
            (NdKind::NeighborAdvert, Some(t)) => self.neighbor_advert(f, t),
            _ => self.router_solicit(&mut f, c, s6),
        }
    }

    /// SPEC 2.3a for ND: may the port claim `a` (a solicitation's source, an
    /// advertisement's target)? `Ok` with what holds it in the VPC.
    fn nd_claim<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        a: Ipv6Addr,
    ) -> Result<Option<Addr>, Verdict> {
        let p = f.port;
        let found = self.addr6(p.vpc, &a);
        let (reason, why) = match found {
            _ if a == self.gateway_ll => (
                DropReason::NdClaimsForeignIp,
                "the gateway's link-local address",
            ),
            Some(Addr::Gateway(_)) => (DropReason::NdClaimsForeignIp, "a gateway address"),
            Some(Addr::Port(q)) if q != p.id => {
                (DropReason::NdClaimsForeignIp, "a fixed IP of another port")
            }
            Some(Addr::Vip(v)) if !p.vips.contains(&v) => (
                DropReason::Vip6ClaimNotBound,
                "a VIP the port is not bound to",
            ),
            _ => return Ok(found),
        };
        Err(dropped(
            f.t,
            Stage::Nd,
            reason,
            format_args!("{a} is {why} (SPEC 12.2, 2.3a)"),
        ))
    }

    /// SPEC 12.3: a neighbour solicitation: answered for the gateway and known
    /// addresses (as 3.4), to a VIP's bound ports while it has no owner, delivered
    /// otherwise; duplicate address detection for the sender's own address passes
    /// within the subnet, never answered (as 3.5) nor learned from.
    fn neighbor_solicit<T: Tracer>(
        &self,
        mut f: Frame<'_, T>,
        c: &Classified6,
        s6: Subnet6,
        target: Ipv6Addr,
    ) -> Verdict {
        let p = f.port;
        let dad = ipv6::is_unspecified(&c.src);
        if !dad {
            if let Err(v) = self.nd_claim(&mut f, c.src) {
                return v;
            }
        }
        let link_local = ipv6::is_link_local(&target);
        if !link_local && !s6.cidr.contains(target) {
            drop_with!(
                f.t,
                Nd,
                DropReason::NdTargetOutsideSubnet,
                "{target} is outside subnet {} ({}) (SPEC 12.3)",
                self.subnet_name(p),
                s6.cidr
            )
        }
        // the gateway's link-local address is in no port's allowed set as its own
        // (fe80::/64 is): DAD for it is answered, as for the gateway's other addresses
        if dad && target != self.gateway_ll && p.allows_ip6(&target) {
            step!(
                f.t,
                Nd,
                "duplicate address detection for {target}, the sender's own: not answered, \
                 delivered to the subnet (SPEC 12.3)"
            );
            return self.nd_deliver(&mut f);
        }
        let answer = if target == self.gateway_ll {
            Some((self.gateway_mac, true, "the gateway"))
        } else if link_local {
            None
        } else {
            match self.addr6(p.vpc, &target) {
                Some(Addr::Gateway(_)) => Some((self.gateway_mac, true, "the gateway")),
                Some(Addr::Port(q)) => self.port(q).map(|q| (q.mac, false, q.name.as_str())),
                Some(Addr::Vip(v)) => match self.vip_cell(v).owner().and_then(|o| self.port(o)) {
                    Some(o) => Some((o.mac, false, o.name.as_str())),
                    None => {
                        step!(
                            f.t,
                            NdResponder,
                            "vip {} has no owner: solicitation goes to its bound ports only \
                             (SPEC 12.3, 3.4)",
                            self.vips[v as usize].name
                        );
                        return Verdict::Forward(Out::VipPorts(v));
                    }
                },
                None => None,
            }
        };
        let Some((mac, router, who)) = answer else {
            step!(
                f.t,
                NdResponder,
                "{target} unknown to the switch: delivered (SPEC 12.3)"
            );
            return self.nd_deliver(&mut f);
        };
        let ns = SeenNs {
            eth_src: f.src_mac.mac(),
            src: c.src,
            target,
        };
        let n = nd::emit_na_reply(f.buf, &ns, mac, router);
        if n == 0 {
            drop_with!(
                f.t,
                NdResponder,
                DropReason::Truncated,
                "buffer too small for an advertisement"
            )
        }
        *f.len = n;
        step!(
            f.t,
            NdResponder,
            "{target} is at {mac} ({who}), answered by the switch (SPEC 12.3)"
        );
        Verdict::Forward(Out::Port(p.id))
    }

    /// SPEC 12.2, 12.4: a neighbour advertisement: its target must be the sender's;
    /// one for a VIP the port is bound to makes it the owner (as 3.1), and it is
    /// delivered (to the subnet when multicast, as 3.3).
    fn neighbor_advert<T: Tracer>(&self, mut f: Frame<'_, T>, target: Ipv6Addr) -> Verdict {
        let p = f.port;
        let claimed = match self.nd_claim(&mut f, target) {
            Ok(a) => a,
            Err(v) => return v,
        };
        if p.src_dst_check && !p.allows_ip6(&target) {
            drop_with!(
                f.t,
                Nd,
                DropReason::SpoofedNdTarget,
                "target {target} is not in the IPv6 allowed set of {} (SPEC 12.2)",
                p.name
            )
        }
        if let Some(Addr::Vip(v)) = claimed {
            step!(
                f.t,
                VipLearn,
                "{} {} the owner of vip {} (was {}) (SPEC 12.4)",
                if T::DRY_RUN { "would make" } else { "makes" },
                p.name,
                self.vips[v as usize].name,
                self.vip_cell(v)
                    .owner()
                    .and_then(|o| self.port(o))
                    .map_or("none", |q| q.name.as_str())
            );
            self.claim_vip(&f, v);
        }
        self.nd_deliver(&mut f)
    }

    /// ND the switch does not consume: a multicast one to the subnet (SPEC 3.3, 12.4),
    /// a unicast one to the port of its destination MAC (4.2).
    fn nd_deliver<T: Tracer>(&self, f: &mut Frame<'_, T>) -> Verdict {
        if f.dst_mac.is_multicast() {
            step!(
                f.t,
                Nd,
                "multicast: every other port of subnet {} (SPEC 12.3, 12.4)",
                self.subnet_name(f.port)
            );
            return self.flood(f);
        }
        match self.l2_dest(f.port, f.dst_mac) {
            Ok(q) => {
                step!(f.t, L2, "to {} (SPEC 4.2)", q.name);
                Verdict::Forward(Out::Port(q.id))
            }
            Err(r) => drop_with!(
                f.t,
                L2,
                r,
                "no other port of the subnet has MAC {}",
                f.dst_mac
            ),
        }
    }

    /// SPEC 12.3: a router solicitation is answered with the subnet's router
    /// advertisement (the gateway's link-local address as source, the /64 on-link),
    /// within the answer budget.
    fn router_solicit<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        c: &Classified6,
        s6: Subnet6,
    ) -> Verdict {
        let (eth_dst, dst) = if ipv6::is_unspecified(&c.src) {
            (ipv6::multicast_mac(&ipv6::ALL_NODES), ipv6::ALL_NODES)
        } else {
            (f.src_mac.mac(), c.src)
        };
        let ra = RaParams {
            eth_dst,
            router_mac: self.gateway_mac,
            src: self.gateway_ll,
            dst,
            cur_hop_limit: ADVERTISED_HOP_LIMIT,
            managed: false,
            other: false,
            router_lifetime: ROUTER_LIFETIME,
            reachable_time: 0,
            retrans_timer: 0,
            // on-link, no SLAAC: a port's IPv6 addresses are its configured ones
            // (an address formed from the prefix would fail the source check)
            prefix: Some(PrefixInfo {
                prefix_len: s6.cidr.len(),
                on_link: true,
                autonomous: false,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix: s6.cidr.network(),
            }),
            mtu: None,
        };
        let out = Out::Port(f.port.id);
        self.drop_and_answer(
            f,
            DropReason::RouterSolicit,
            out,
            |b, _| nd::emit_ra(b, &ra),
            Stage::NdResponder,
            format_args!(
                "router solicitation: advertisement of {} from {} (SPEC 12.3)",
                s6.cidr, self.gateway_ll
            ),
        )
    }

    /// SPEC 4.2, 4.3, 6.1 for a unicast IPv6 frame not sent to the gateway.
    fn l2_ipv6<T: Tracer>(&self, f: &mut Frame<'_, T>, c: &Classified6) -> Verdict {
        let p = f.port;
        let q = match self.l2_dest(p, f.dst_mac) {
            Ok(q) => q,
            Err(r) => drop_with!(
                f.t,
                L2,
                r,
                "no other port of the subnet has MAC {} (SPEC 4.2)",
                f.dst_mac
            ),
        };
        let mut dest = q;
        // SPEC 4.3, 12.4: VIP steering, only for ports bound to the VIP
        if let Some(&v) = q
            .vips
            .iter()
            .find(|&&v| self.vips[v as usize].ip6 == Some(c.dst))
        {
            dest = self.steer(f, q, v, format_args!("{}", c.dst));
        }
        step!(f.t, L2, "to {} (SPEC 4.2)", dest.name);
        self.egress6(f, dest, &c.dst)
    }

    /// SPEC 6.1, 12.2 on egress port `q`.
    fn egress6<T: Tracer>(&self, f: &mut Frame<'_, T>, q: &PortEntry, dst: &Ipv6Addr) -> Verdict {
        if q.src_dst_check && !q.allows_ip6(dst) {
            drop_with!(
                f.t,
                DstCheck,
                DropReason::DstCheck,
                "{dst} is not in the IPv6 allowed set of {} (SPEC 6.1, 12.2)",
                q.name
            )
        }
        step!(
            f.t,
            DstCheck,
            "{dst} delivered to {}{}",
            q.name,
            if q.src_dst_check { "" } else { " (check off)" }
        );
        Verdict::Forward(Out::Port(q.id))
    }

    /// SPEC 12.5: a frame to the gateway MAC: the gateway answers echo requests
    /// (5.6); anything else is routed: to a local /64 of the VPC, else by its IPv6
    /// routes (a peering: the peer's local addresses only, 5.3; a next-hop port, 5.4).
    fn l3_ipv6<T: Tracer>(&self, mut f: Frame<'_, T>, c: &Classified6, s6: Subnet6) -> Verdict {
        let p = f.port;
        let found = self.addr6(p.vpc, &c.dst);
        if c.dst == self.gateway_ll || matches!(found, Some(Addr::Gateway(_))) {
            if icmpv6::is_echo_request(f.bytes()) {
                let len = *f.len;
                icmpv6::echo_reply_in_place(&mut f.buf[..len], self.gateway_mac, c.dst);
                step!(
                    f.t,
                    Gateway,
                    "echo request to gateway {}: answered (SPEC 5.6, 12.5)",
                    c.dst
                );
                return Verdict::Forward(Out::Port(p.id));
            }
            drop_with!(
                f.t,
                Gateway,
                DropReason::ToGateway,
                "{} is a gateway; only ICMPv6 echo is answered",
                c.dst
            )
        }
        if ipv6::is_link_local(&c.src)
            || ipv6::is_link_local(&c.dst)
            || ipv6::is_unspecified(&c.src)
        {
            drop_with!(
                f.t,
                L3,
                DropReason::NoRoute,
                "{} > {}: a link-local or unspecified address is never routed (SPEC 12.5)",
                c.src,
                c.dst
            )
        }
        // one lookup: the VPC's /64s are local routes of its table (validation refuses
        // a route inside one, so the longest match never hides a local subnet)
        let route = self.vpcs.get(p.vpc as usize).and_then(|v| v.route6(&c.dst));
        let resolved = if let Some(RouteTarget::Local(_)) = route {
            step!(
                f.t,
                Route,
                "{} is local to vpc {} (SPEC 12.5)",
                c.dst,
                self.vpc_name(p.vpc)
            );
            self.resolve_addr::<T>(found)
        } else {
            step!(
                f.t,
                Route,
                "{} in vpc {}: {:?} (SPEC 12.5)",
                c.dst,
                self.vpc_name(p.vpc),
                route
            );
            match route {
                // SPEC 5.3: among the peer's local addresses only (no transit)
                Some(RouteTarget::Peering(peer)) => match self.resolve6::<T>(peer, &c.dst) {
                    Resolved::Gateway => Resolved::Nothing,
                    r => r,
                },
                Some(RouteTarget::Port(q)) => Resolved::Port(q),
                // no IPv6 over the uplink (SPEC 14.1; validation refuses such routes)
                _ => {
                    return self.icmp6_error(
                        &mut f,
                        c,
                        s6,
                        DropReason::NoRoute,
                        (icmpv6::TYPE_DST_UNREACHABLE, icmpv6::CODE_NO_ROUTE),
                        0,
                    )
                }
            }
        };
        if c.hop_limit <= 1 {
            return self.icmp6_error(
                &mut f,
                c,
                s6,
                DropReason::TtlExceeded,
                (icmpv6::TYPE_TIME_EXCEEDED, icmpv6::CODE_HOP_LIMIT_EXCEEDED),
                0,
            );
        }
        let q = match resolved {
            Resolved::Port(q) => q,
            Resolved::VipNoOwner(v) => return self.solicit_vip(&mut f, v),
            _ => drop_with!(
                f.t,
                L3,
                DropReason::NoSuchHost,
                "no port or VIP holds {} (SPEC 5.2, 12.5)",
                c.dst
            ),
        };
        let Some(q) = self.port(q) else {
            drop_with!(f.t, L3, DropReason::NoSuchHost, "port id {q} is gone")
        };
        let v = self.egress6(&mut f, q, &c.dst);
        if let Verdict::Forward(_) = v {
            let mut eth = f.eth_mut();
            eth.set_dst(q.mac);
            eth.set_src(self.gateway_mac);
            let len = *f.len;
            Ipv6Packet::new_unchecked(&mut f.buf[ETHERNET_HEADER_LEN..len]).decrement_hop_limit();
            step!(
                f.t,
                Rewrite,
                "src MAC {}, dst MAC {}, hop limit {} (SPEC 12.5)",
                self.gateway_mac,
                q.mac,
                c.hop_limit - 1
            );
        }
        v
    }

    /// SPEC 5.2, 12.5: an IPv6 VIP without owner: drop, and solicit it on its bound
    /// ports (from its subnet's gateway) so that the holder's advertisement makes it
    /// the owner (12.4) before the next packet; within the answer budget.
    fn solicit_vip<T: Tracer>(&self, f: &mut Frame<'_, T>, v: VipId) -> Verdict {
        let vip = &self.vips[v as usize];
        let (Some(target), Some(s6)) = (vip.ip6, self.subnets[vip.subnet as usize].ipv6) else {
            drop_with!(
                f.t,
                L3,
                DropReason::VipNoOwner,
                "vip {} has no owner",
                vip.name
            )
        };
        let gw_mac = self.gateway_mac;
        self.drop_and_answer(
            f,
            DropReason::VipNoOwner,
            Out::VipPorts(v),
            |b, _| nd::emit_ns(b, gw_mac, s6.gateway, target),
            Stage::L3,
            format_args!(
                "vip {} has no owner: dropped, neighbour solicitation sent to its bound \
                 ports (SPEC 5.2, 12.5)",
                vip.name
            ),
        )
    }

    /// SPEC 10.3 (b), 12.5: an IPv6 frame another host routed (from the gateway MAC)
    /// to port `f.port` of its VNI's VPC on this host: its source must be one the
    /// sending host's ports may send into the VPC, its destination the port's or
    /// routed to it; then the destination check.
    pub(super) fn tunnel_routed6<T: Tracer>(
        &self,
        mut f: Frame<'_, T>,
        from: super::tunnel::Sender,
    ) -> Verdict {
        let q = f.port;
        let c = match classify_ipv6(&f.bytes()[ETHERNET_HEADER_LEN..]) {
            Ok(c) => c,
            Err(e) => drop_with!(f.t, Tunnel, malformed(e), "IPv6: {e:?} (SPEC 10.3)"),
        };
        if !self.host_may_route_from6(from.host, from.vpc, &c.src) {
            drop_with!(
                f.t,
                Tunnel,
                DropReason::TunnelSrcIp,
                "source {} is no address the sending host's ports may send into vpc {} \
                 (SPEC 10.3)",
                c.src,
                self.vpc_name(from.vpc)
            )
        }
        let leads = q.allows_ip6(&c.dst)
            || self
                .vpcs
                .get(from.vpc as usize)
                .and_then(|v| v.route6(&c.dst))
                == Some(RouteTarget::Port(q.id));
        if !leads && !q.src_dst_check {
            drop_with!(
                f.t,
                Tunnel,
                DropReason::TunnelDst,
                "{} is not an address of {} and does not route to it (SPEC 10.3)",
                c.dst,
                q.name
            )
        }
        step!(
            f.t,
            Tunnel,
            "routed by the sending host from {} (SPEC 10.2, 10.3, 12.5)",
            c.src
        );
        self.egress6(&mut f, q, &c.dst)
    }

    /// Where the IPv6 address `dst` of `vpc` leads (as [`Snapshot::resolve`]).
    fn resolve6<T: Tracer>(&self, vpc: VpcId, dst: &Ipv6Addr) -> Resolved {
        self.resolve_addr::<T>(self.addr6(vpc, dst))
    }

    /// SPEC 10.6, 12.5: an IPv6 frame longer than the tunnel to its port's host takes
    /// is answered with "packet too big" (`mtu`: the tunnel's IPv6 MTU) from the
    /// ingress subnet's gateway, as IPv4 with DF is with "fragmentation needed".
    pub(super) fn too_big6<T: Tracer>(
        &self,
        mut f: Frame<'_, T>,
        s6: Subnet6,
        mtu: u32,
    ) -> Verdict {
        let c = match classify_ipv6(&f.bytes()[ETHERNET_HEADER_LEN..]) {
            Ok(c) => c,
            Err(e) => drop_with!(f.t, Encap, DropReason::MtuExceeded, "IPv6: {e:?}"),
        };
        self.icmp6_error(
            &mut f,
            &c,
            s6,
            DropReason::MtuExceeded,
            (icmpv6::TYPE_PACKET_TOO_BIG, 0),
            mtu,
        )
    }

    /// SPEC 12.5: drop for `reason` and answer the ICMPv6 error `kind` (with `param`,
    /// the MTU of a packet too big) from the subnet's gateway, where RFC 4443 2.4(e)
    /// allows one, within the answer budget.
    fn icmp6_error<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        c: &Classified6,
        s6: Subnet6,
        reason: DropReason,
        kind: (u8, u8),
        param: u32,
    ) -> Verdict {
        let allowed = {
            let end = (ETHERNET_HEADER_LEN + c.packet_len).min(*f.len);
            let ip = Ipv6Packet::new_unchecked(&f.buf[ETHERNET_HEADER_LEN..end]);
            ip.walk()
                .is_ok_and(|chain| icmpv6::error_allowed(&ip, &chain, kind))
        };
        if !allowed {
            drop_with!(
                f.t,
                Icmp,
                reason,
                "no ICMPv6 error about this packet (RFC 4443 2.4(e))"
            )
        }
        let (gw_mac, gw) = (self.gateway_mac, s6.gateway);
        let out = Out::Port(f.port.id);
        self.drop_and_answer(
            f,
            reason,
            out,
            |b, n| icmpv6::error_in_place(b, n, gw_mac, gw, kind, param),
            Stage::Icmp,
            format_args!(
                "{}: ICMPv6 type {} code {} from {gw} to the sender (SPEC 12.5)",
                reason.name(),
                kind.0,
                kind.1
            ),
        )
    }
}
