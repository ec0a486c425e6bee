//! The outside network: SPEC 7.1 (inbound to an EIP, ARP for EIPs), 7.2 (outbound from
//! an address with an EIP, the next hop's MAC), 7.3 (what the outside may not send,
//! ARP budgets per purpose), 7.4 (what never leaves).
//!
//! With the uplink on another host (SPEC 10.2), outbound traffic is translated and
//! routed here and sent to the uplink's host, which resolves the next hop's MAC (only
//! it hears the next hop's ARP): [`Snapshot::uplink_next_hop`].

use vpcswitch_wire::arp::{self, ArpInfo, OP_REQUEST};
use vpcswitch_wire::nat::{self, Side};
use vpcswitch_wire::{MacAddr, MacKey, L3};

use super::arp::op_name;
use super::{ip, is_martian, Frame, Resolved, V4};
use crate::snapshot::{Budget, UplinkEntry};
use crate::{DropReason, Location, Out, Snapshot, Stage, Tracer, Verdict};

impl Snapshot {
    /// SPEC 7.2: a packet routed to the uplink. Its source must have an EIP; it leaves
    /// with the EIP as source, to the outside next hop's MAC (ARPed for when unknown:
    /// that packet is dropped, as the ARP request goes out).
    pub(super) fn to_uplink<T: Tracer>(&self, f: &mut Frame<'_, T>, v4: V4) -> Verdict {
        let p = f.port;
        let Some(u) = &self.uplink else {
            drop_with!(f.t, Uplink, DropReason::NoRoute, "no uplink is configured")
        };
        // SPEC 7.4: only global unicast destinations outside every VPC go out
        if is_martian(v4.dst) {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkBogusDst,
                "{} is not a global unicast address: never sent to the outside (SPEC 7.4)",
                ip(v4.dst)
            )
        }
        if let Some(vpc) = self.vpc_of_addr(v4.dst) {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkBogusDst,
                "{} is inside a CIDR of vpc {}: never sent to the outside (SPEC 7.4)",
                ip(v4.dst),
                self.vpc_name(vpc)
            )
        }
        let Some(eip) = self.eip_of(p.vpc, v4.src) else {
            drop_with!(
                f.t,
                Eip,
                DropReason::NoEip,
                "{} has no EIP: a private address never leaves (SPEC 7.2)",
                ip(v4.src)
            )
        };
        if let Err(v) = self.ttl_ok(f, self.gateway_of(p.subnet), v4) {
            return v;
        }
        let remote = self.location(u.port) != Some(Location::Local);
        // SPEC 10.2: the uplink's host fills in the next hop's MAC
        let nh_mac = if remote {
            MacAddr::ZERO
        } else {
            match self.uplink_next_hop(f, u) {
                Ok(m) => m,
                Err(v) => return v,
            }
        };
        let partial = f.ctx.csum_partial;
        nat::translate(f.ipv4_bytes_mut(), Side::Src, eip, partial);
        f.rewrite_routed(u.mac, nh_mac);
        if T::ON {
            let nh: &dyn std::fmt::Display = if remote {
                &"its MAC filled in by the uplink's host"
            } else {
                &nh_mac
            };
            f.t.step(
                Stage::Eip,
                format_args!(
                    "source {} translated to EIP {}, to next hop {} ({nh}) (SPEC 7.2)",
                    ip(v4.src),
                    ip(eip),
                    ip(u.next_hop),
                ),
            );
        }
        Verdict::Forward(Out::Port(u.port))
    }

    /// SPEC 7.2: the next hop's MAC, once learned. Unknown: the frame is dropped and the
    /// switch ARPs for the next hop on the uplink instead (`Err`, within the answer
    /// budget of the frame's port).
    pub(super) fn uplink_next_hop<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        u: &UplinkEntry,
    ) -> Result<MacAddr, Verdict> {
        if let Some(m) = self.next_hop_mac() {
            return Ok(m);
        }
        let (mac, spa, tpa) = (u.mac, u.arp_src, u.next_hop);
        Err(self.drop_and_answer(
            f,
            DropReason::NextHopUnresolved,
            Out::Port(u.port),
            |b, _| arp::emit_request(b, mac, spa, tpa),
            Stage::Uplink,
            format_args!(
                "next hop {} not resolved: dropped, ARP request sent on {} (SPEC 7.2)",
                ip(u.next_hop),
                self.port(u.port).map_or("?", |q| q.name.as_str())
            ),
        ))
    }

    /// SPEC 7.1: a frame received on the uplink. Only ARP (answered for EIPs; the next
    /// hop's is learned) and IPv4 to an EIP at the uplink's MAC get in.
    pub(super) fn uplink_ingress<T: Tracer>(&self, mut f: Frame<'_, T>, l3: L3) -> Verdict {
        let Some(u) = &self.uplink else {
            drop_with!(f.t, Uplink, DropReason::UnknownPort, "no uplink configured")
        };
        step!(f.t, Ingress, "uplink {} (SPEC 7.1)", f.port.name);
        if let L3::Arp(a) = l3 {
            return self.uplink_arp(&mut f, u, a);
        }
        match V4::of(l3) {
            Some(v4) => self.uplink_ipv4(&mut f, u, v4),
            None => self.not_switched(f, l3),
        }
    }

    /// SPEC 7.1, 7.3: IPv4 from the outside, to an EIP.
    fn uplink_ipv4<T: Tracer>(&self, f: &mut Frame<'_, T>, u: &UplinkEntry, v4: V4) -> Verdict {
        let (src, dst) = (v4.src, v4.dst);
        if f.dst_mac != u.mac {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkNotForEip,
                "to {}, not the uplink's MAC {} (SPEC 7.1)",
                f.dst_mac,
                u.mac
            )
        }
        // SPEC 7.3: the outside cannot pose as a private address, an EIP, or an
        // address no host on the outside may have
        if is_martian(src) {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkBogusSrc,
                "source {} is not a global unicast address (SPEC 7.3)",
                ip(src)
            )
        }
        if let Some(vpc) = self.vpc_of_addr(src) {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkBogusSrc,
                "source {} is inside a CIDR of vpc {} (SPEC 7.3)",
                ip(src),
                self.vpc_name(vpc)
            )
        }
        if self.eip_target(src).is_some() {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkBogusSrc,
                "source {} is an EIP of this switch (SPEC 7.3)",
                ip(src)
            )
        }
        step!(
            f.t,
            Uplink,
            "source {} is global unicast (SPEC 7.3)",
            ip(src)
        );
        let Some((vpc, private)) = self.eip_target(dst) else {
            drop_with!(
                f.t,
                Uplink,
                DropReason::UplinkNotForEip,
                "{} is not an EIP (SPEC 7.1)",
                ip(dst)
            )
        };
        if let Err(v) = self.header_checksum_ok(f) {
            return v;
        }
        step!(
            f.t,
            Eip,
            "EIP {} is {} in vpc {} (SPEC 7.1)",
            ip(dst),
            ip(private),
            self.vpc_name(vpc)
        );
        let q = match self.resolve::<T>(vpc, private) {
            Resolved::Port(q) => q,
            Resolved::VipNoOwner(v) => return self.arp_for_vip(f, v),
            _ => drop_with!(
                f.t,
                Eip,
                DropReason::NoSuchHost,
                "no port or VIP holds {}",
                ip(private)
            ),
        };
        if let Err(v) = self.ttl_ok(f, (u.mac, ip(dst)), v4) {
            return v;
        }
        let Some(q) = self.port(q) else {
            drop_with!(f.t, Eip, DropReason::NoSuchHost, "port id {q} is gone")
        };
        let v = self.egress(f, q, private);
        if let Verdict::Forward(_) = v {
            let partial = f.ctx.csum_partial;
            nat::translate(f.ipv4_bytes_mut(), Side::Dst, private, partial);
            f.rewrite_routed(self.gateway_mac, q.mac);
            step!(
                f.t,
                Rewrite,
                "destination {} → {}, src MAC {}, dst MAC {}, TTL {} (SPEC 7.1, 5.5)",
                ip(dst),
                ip(private),
                self.gateway_mac,
                q.mac,
                v4.ttl - 1
            );
        }
        v
    }

    /// SPEC 7.1: ARP on the uplink. Requests for an EIP are answered with the uplink's
    /// MAC; the next hop's requests and replies teach the switch its MAC; the rest is
    /// consumed. SPEC 7.3: rate-limited per purpose, so that outside traffic cannot
    /// spend the budget of the next hop's ARP or of requests for EIPs (see
    /// [`Self::uplink_arp_budget`]).
    fn uplink_arp<T: Tracer>(&self, f: &mut Frame<'_, T>, u: &UplinkEntry, a: ArpInfo) -> Verdict {
        let budget = self.uplink_arp_budget(u, f.src_mac, &a);
        step!(
            f.t,
            Arp,
            "uplink ARP budget: {} (SPEC 7.3)",
            match budget {
                Budget::NextHopArp => "the next hop's, at its known MAC",
                Budget::NextHopArpOther => "the next hop's IP from another MAC",
                Budget::EipArp => "requests for an EIP",
                _ => "other outside ARP",
            }
        );
        if let Err(v) = self.arp_admit(f, &a, budget) {
            return v;
        }
        if a.spa == u.next_hop && a.spa != 0 && a.sha.mac().is_unicast() {
            step!(
                f.t,
                Arp,
                "next hop {} is-at {}: {} (SPEC 7.2)",
                ip(a.spa),
                a.sha,
                if T::DRY_RUN {
                    "would be learned"
                } else {
                    "learned"
                }
            );
            self.learn_next_hop_mac::<T>(a.sha);
        }
        if a.op == OP_REQUEST && self.eip_target(a.tpa).is_some() {
            return self.arp_reply(
                f,
                &a,
                u.mac,
                format_args!(
                    "EIP {} is-at {} (the uplink), answered by the switch (SPEC 7.1)",
                    ip(a.tpa),
                    u.mac
                ),
            );
        }
        drop_with!(
            f.t,
            Arp,
            DropReason::UplinkArp,
            "{} for {}: not a request for an EIP",
            op_name(&a),
            ip(a.tpa)
        )
    }

    /// SPEC 7.3: which budget an ARP packet on the uplink spends. The next hop's ARP
    /// (sender IP the next hop's) at its known MAC (Ethernet source and sender MAC
    /// both the learned or configured one) has a budget of its own, so does the next
    /// hop's IP from any other MAC (first learning, a replaced router, or a forger:
    /// they cannot starve the known router), and requests for an EIP from anyone
    /// else; the rest of the outside shares the uplink's general ARP budget.
    #[inline]
    fn uplink_arp_budget(&self, u: &UplinkEntry, eth_src: MacKey, a: &ArpInfo) -> Budget {
        if a.spa == u.next_hop && a.spa != 0 {
            if self.is_next_hop_mac(eth_src) && eth_src == a.sha {
                Budget::NextHopArp
            } else {
                Budget::NextHopArpOther
            }
        } else if a.op == OP_REQUEST && self.eip_target(a.tpa).is_some() {
            Budget::EipArp
        } else {
            Budget::Arp
        }
    }
}
