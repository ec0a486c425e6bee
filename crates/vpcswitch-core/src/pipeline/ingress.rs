//! A port's frame, from the ingress checks to the L2/L3 choice: SPEC 2.1 (VLAN, EtherType),
//! 2.2 (source MAC), 2.3 (IPv4 source, the DHCP exemption), 2.6 and 4.1 (floods), 9.1,
//! and the way into DHCP (13.1).

use vpcswitch_wire::dhcp::udp_ports;
use vpcswitch_wire::{IpProtocol, MacKey, L3};

use super::dhcp::is_dhcp;
use super::{dropped, ip, is_multicast_ip, on, Frame, LIMITED_BROADCAST, V4};
use crate::snapshot::{Budget, PortEntry};
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict};

impl Snapshot {
    /// A classified frame from a port (not the uplink).
    #[inline(always)]
    pub(super) fn ingress<T: Tracer>(&self, mut f: Frame<'_, T>, l3: L3) -> Verdict {
        let p = f.port;
        step!(
            f.t,
            Ingress,
            "port {} (subnet {}, check {})",
            p.name,
            self.subnet_name(p),
            on(p.src_dst_check)
        );
        if matches!(l3, L3::Vlan) {
            return self.not_switched(f.hand_on(), l3);
        }
        if !p.owns_mac(f.src_mac) {
            drop_with!(
                f.t,
                SrcMac,
                DropReason::SpoofedSrcMac,
                "{} is not a MAC of {} (SPEC 2.2)",
                f.src_mac,
                p.name
            )
        }
        step!(
            f.t,
            SrcMac,
            "{} belongs to {} (SPEC 2.2)",
            f.src_mac,
            p.name
        );
        if let L3::Arp(a) = l3 {
            return self.arp_stage(f.hand_on(), a);
        }
        let Some(v4) = V4::of(l3) else {
            if let L3::Ipv6 = l3 {
                return self.ipv6_stage(f.hand_on());
            }
            return self.not_switched(f.hand_on(), l3);
        };
        // SPEC 2.3: 0.0.0.0 only for a DHCP client that stays in the subnet
        let dhcp = v4.dhcp_client && self.dhcp_stays_local(p, f.dst_mac, v4.dst);
        if p.src_dst_check && !dhcp && !p.allows_ip(v4.src) {
            if v4.src == 0 && v4.dhcp_client {
                drop_with!(
                    f.t,
                    SrcIp,
                    DropReason::SpoofedSrcIp,
                    "DHCP client from 0.0.0.0 to {} at {}: allowed only to \
                     255.255.255.255 (flooded) or to the gateway (SPEC 2.3)",
                    ip(v4.dst),
                    f.dst_mac
                )
            }
            drop_with!(
                f.t,
                SrcIp,
                DropReason::SpoofedSrcIp,
                "{} is not in the allowed set of {} (SPEC 2.3)",
                ip(v4.src),
                p.name
            )
        }
        step!(
            f.t,
            SrcIp,
            "{} allowed (SPEC 2.3{})",
            ip(v4.src),
            if p.src_dst_check { "" } else { ": check off" }
        );
        // SPEC 13.1: in a DHCP subnet, DHCP is the switch's (one byte and one compare
        // for every other frame)
        if p.dhcp && v4.proto == IpProtocol::UDP {
            if let Some(ports) = udp_ports(f.bytes()).filter(|&u| is_dhcp(u)) {
                // by value, as every stage out of line: `f` stays in registers
                return self.dhcp_stage(f.hand_on(), ports);
            }
        }
        if f.dst_mac.is_multicast() {
            if !self.subnet_listens(p, v4.dst) {
                drop_with!(
                    f.t,
                    L2,
                    DropReason::FloodToUnicastIp,
                    "{} to unicast {}: a broadcast/multicast frame must go to \
                     255.255.255.255, a multicast group or the subnet's broadcast \
                     address (SPEC 2.6)",
                    f.dst_mac,
                    ip(v4.dst)
                )
            }
            step!(
                f.t,
                L2,
                "broadcast/multicast: every other port of subnet {} (SPEC 4.1)",
                self.subnet_name(p)
            );
            return self.flood(&mut f);
        }
        if f.dst_mac == self.gateway_mac {
            self.l3_stage(f.hand_on(), v4)
        } else {
            self.l2_ipv4(&mut f, v4)
        }
    }

    /// SPEC 2.1, 9.1: what the switch does not carry (tagged frames, IPv6, other
    /// EtherTypes), from a port or on the uplink.
    #[cold]
    pub(super) fn not_switched<T: Tracer>(&self, f: Frame<'_, T>, l3: L3) -> Verdict {
        let on = if f.port.is_uplink {
            "the uplink"
        } else {
            "an access port"
        };
        let (stage, reason) = match l3 {
            L3::Vlan => (Stage::Vlan, DropReason::VlanTagged),
            L3::Ipv6 => (Stage::L3, DropReason::Ipv6),
            // ARP and IPv4 never come here: the callers dispatch them
            _ => (Stage::L3, DropReason::UnsupportedEthertype),
        };
        let et = f.eth().ethertype();
        let rule = match reason {
            DropReason::VlanTagged => "802.1Q/802.1ad tag (SPEC 2.1)",
            DropReason::Ipv6 if f.port.is_uplink => "no IPv6 over the uplink (SPEC 14.1)",
            DropReason::Ipv6 => "the port's subnet has no ipv6_cidr (SPEC 9.1, 12.1)",
            _ => "not switched",
        };
        dropped(
            f.t,
            stage,
            reason,
            format_args!("EtherType {et:#06x} on {on}: {rule}"),
        )
    }

    /// SPEC 2.3: a DHCP client packet from 0.0.0.0 passes the source check only where
    /// it never leaves the subnet and is never routed: to 255.255.255.255 at a
    /// broadcast/multicast MAC (flooded in the subnet), or to the subnet's gateway at
    /// the gateway MAC (which consumes it).
    #[inline]
    fn dhcp_stays_local(&self, p: &PortEntry, dst_mac: MacKey, dst: u32) -> bool {
        if dst == LIMITED_BROADCAST {
            return dst_mac.is_multicast();
        }
        dst_mac == self.gateway_mac
            && self
                .subnets
                .get(p.subnet as usize)
                .is_some_and(|s| s.gateway == dst)
    }

    /// SPEC 2.6: may a broadcast/multicast frame from `p` go to `dst`? Only to an
    /// address every port of the subnet listens to: the limited broadcast, a multicast
    /// group (224/4), or the subnet's broadcast address. Any other (unicast) address
    /// would reach every port past the destination check (6.1).
    #[inline]
    fn subnet_listens(&self, p: &PortEntry, dst: u32) -> bool {
        dst == LIMITED_BROADCAST
            || is_multicast_ip(dst)
            || self
                .subnets
                .get(p.subnet as usize)
                .is_some_and(|s| u32::from(s.cidr.broadcast()) == dst)
    }

    /// SPEC 4.1, 3.3: a flood of the frame to the ingress port's subnet, within the
    /// port's flood budget, which counts copies: one token per other port of the subnet
    /// (a 256-port subnet's broadcasts must not cost the same as a 2-port one's).
    #[inline(always)]
    pub(super) fn flood<T: Tracer>(&self, f: &mut Frame<'_, T>) -> Verdict {
        let p = f.port;
        let copies = self
            .subnets
            .get(p.subnet as usize)
            .map_or(0, |s| s.ports.len().saturating_sub(1));
        let copies = u32::try_from(copies).unwrap_or(u32::MAX);
        if !self.spend(f, Budget::Flood, copies) {
            drop_with!(
                f.t,
                L2,
                DropReason::FloodRateLimited,
                "{copies} copies: over the flood budget of {}",
                p.name
            )
        }
        Verdict::Forward(Out::Flood(p.subnet))
    }
}
