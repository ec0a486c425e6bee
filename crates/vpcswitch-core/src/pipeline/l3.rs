//! Routing, for a frame sent to the gateway MAC: SPEC 5.1 (longest prefix), 5.2 (local
//! addresses), 5.3 (peering), 5.4 (next-hop port), 5.5 (the rewrite and the TTL rule);
//! the answers it makes (5.2, 5.5–5.7) are in `answer`, the uplink (7.2) in `uplink`.

use std::net::Ipv4Addr;

use vpcswitch_wire::{icmp, Ipv4Packet, MacAddr};

use super::{ip, Frame, Resolved, V4};
use crate::snapshot::{Addr, RouteTarget, VpcEntry};
use crate::{DropReason, Snapshot, Stage, Tracer, Verdict, VpcId};

impl Snapshot {
    /// SPEC 5.x: a frame sent to the gateway MAC.
    pub(super) fn l3_stage<T: Tracer>(&self, mut f: Frame<'_, T>, v4: V4) -> Verdict {
        let p = f.port;
        if let Err(v) = self.header_checksum_ok(&mut f) {
            return v;
        }
        let Some(vpc) = self.vpcs.get(p.vpc as usize) else {
            drop_with!(f.t, L3, DropReason::NoRoute, "port has no VPC")
        };
        // A local address of the VPC always wins the longest-prefix match (validation
        // refuses routes equal to or inside a subnet), so the host table answers first
        // and the route table is consulted only for other destinations.
        let resolved = match self.resolve::<T>(p.vpc, v4.dst) {
            Resolved::Nothing => self.route_lookup(&mut f, vpc, v4),
            local => {
                step!(
                    f.t,
                    Route,
                    "{} is a local address of vpc {} (SPEC 5.1, 5.2)",
                    ip(v4.dst),
                    vpc.name
                );
                Ok(local)
            }
        };
        let resolved = match resolved {
            Ok(r) => r,
            Err(v) => return v,
        };
        if let Resolved::Gateway = resolved {
            return self.gateway_answer(&mut f, v4);
        }
        if let Err(v) = self.ttl_ok(&mut f, self.gateway_of(p.subnet), v4) {
            return v;
        }
        let q = match resolved {
            Resolved::Port(q) => q,
            Resolved::VipNoOwner(v) => return self.arp_for_vip(&mut f, v),
            _ => drop_with!(
                f.t,
                L3,
                DropReason::NoSuchHost,
                "no port or VIP holds {} (SPEC 5.2)",
                ip(v4.dst)
            ),
        };
        let Some(q) = self.port(q) else {
            drop_with!(
                f.t,
                L3,
                DropReason::NoSuchHost,
                "next hop port id {q} is gone"
            )
        };
        let v = self.egress(&mut f, q, v4.dst);
        if let Verdict::Forward(_) = v {
            f.rewrite_routed(self.gateway_mac, q.mac);
            step!(
                f.t,
                Rewrite,
                "src MAC {}, dst MAC {}, TTL {} (SPEC 5.5)",
                self.gateway_mac,
                q.mac,
                v4.ttl - 1
            );
        }
        v
    }

    /// Where `dst` of `vpc` leads. A VIP resolved to its owner counts as a packet sent
    /// to the owner for the failover timing (a later TTL or destination-check drop
    /// does not undo that; dry runs never count).
    pub(super) fn resolve<T: Tracer>(&self, vpc: VpcId, dst: u32) -> Resolved {
        self.resolve_addr::<T>(self.addr(vpc, dst))
    }

    /// Where a local address of either family leads ([`Snapshot::resolve`], and its
    /// IPv6 twin): a port, a VIP's owner (counted for the failover timing), the gateway.
    pub(super) fn resolve_addr<T: Tracer>(&self, a: Option<Addr>) -> Resolved {
        match a {
            Some(Addr::Port(q)) => Resolved::Port(q),
            Some(Addr::Vip(v)) => {
                let cell = self.vip_cell(v);
                match cell.owner() {
                    Some(o) => {
                        self.sent_to_owner::<T>(cell);
                        Resolved::Port(o)
                    }
                    None => Resolved::VipNoOwner(v),
                }
            }
            Some(Addr::Gateway(_)) => Resolved::Gateway,
            None => Resolved::Nothing,
        }
    }

    /// SPEC 5.1, 5.3, 5.4, 5.7 for a destination that is not a local address: the
    /// longest-prefix route. `Err` is the final verdict (no route, uplink).
    fn route_lookup<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        vpc: &VpcEntry,
        v4: V4,
    ) -> Result<Resolved, Verdict> {
        let subnet = f.port.subnet;
        let route = vpc.routes.lookup(v4.dst);
        step!(
            f.t,
            Route,
            "{} in vpc {}: {:?} (SPEC 5.1)",
            ip(v4.dst),
            vpc.name,
            route
        );
        match route {
            None => Err(self.icmp_error(
                f,
                self.gateway_of(subnet),
                v4,
                DropReason::NoRoute,
                (icmp::TYPE_DST_UNREACHABLE, icmp::CODE_NET_UNREACHABLE),
            )),
            // inside a local subnet, but no port, VIP or gateway holds it
            Some(RouteTarget::Local(_)) => Ok(Resolved::Nothing),
            Some(RouteTarget::Peering(peer)) => Ok(match self.resolve::<T>(peer, v4.dst) {
                // a peer's gateway is not reachable through a peering
                Resolved::Gateway => Resolved::Nothing,
                r => r,
            }),
            Some(RouteTarget::Port(q)) => Ok(Resolved::Port(q)),
            Some(RouteTarget::Uplink) => Err(self.to_uplink(f, v4)),
        }
    }

    /// The L3 path checks the IPv4 header checksum (a bridge, L2, does not). `Err` is
    /// the drop.
    #[inline(always)]
    pub(super) fn header_checksum_ok<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
    ) -> Result<(), Verdict> {
        if f.ipv4().verify_checksum() {
            return Ok(());
        }
        Err(super::dropped(
            f.t,
            Stage::L3,
            DropReason::BadIpChecksum,
            format_args!("IPv4 header checksum is wrong"),
        ))
    }

    /// SPEC 5.5: a packet to be routed needs a TTL of 2 or more; with 0 or 1 it is
    /// dropped and time exceeded is answered from `from` (the gateway; on the uplink,
    /// the EIP). `Err` is that verdict.
    #[inline(always)]
    pub(super) fn ttl_ok<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        from: (MacAddr, Ipv4Addr),
        v4: V4,
    ) -> Result<(), Verdict> {
        if v4.ttl > 1 {
            return Ok(());
        }
        Err(self.icmp_error(
            f,
            from,
            v4,
            DropReason::TtlExceeded,
            (icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED),
        ))
    }

    /// The gateway of subnet `s`, as the source of what the switch answers.
    pub(super) fn gateway_of(&self, s: u32) -> (MacAddr, Ipv4Addr) {
        (self.gateway_mac, self.gateway_ip(s))
    }
}

impl<T> Frame<'_, T> {
    /// SPEC 5.5: the routed frame leaves from `src` (the gateway MAC; the uplink's
    /// outbound) to `dst`, TTL − 1 (the IPv4 checksum follows).
    #[inline(always)]
    pub(super) fn rewrite_routed(&mut self, src: MacAddr, dst: MacAddr) {
        let mut eth = self.eth_mut();
        eth.set_dst(dst);
        eth.set_src(src);
        Ipv4Packet::new_unchecked(self.ipv4_bytes_mut()).decrement_ttl();
    }
}
