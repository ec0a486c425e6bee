//! The pipeline stages (SPEC 2–6). Each stage is a small function over one frame that
//! returns a typed [`Verdict`]; [`Snapshot::process`] dispatches once per frame.
//!
//! Stage order: classify (2.1) → ingress port → VLAN (2.1) → source MAC (2.2) →
//! ARP (2.3, 2.3a, 3.x) or IPv4 source check (2.3) → broadcast/multicast (4.1) →
//! L3 when sent to the gateway MAC (5.x), else L2 (4.2, 4.3) → destination check (6.1).

use std::net::Ipv4Addr;

use vpcswitch_wire::arp::{self, ArpInfo, OP_REPLY, OP_REQUEST};
use vpcswitch_wire::nat::{self, Side};
use vpcswitch_wire::{
    classify, icmp, Classified, IpProtocol, Ipv4Packet, MacAddr, MacKey, WireError, L3,
};

use crate::snapshot::{Budget, Host, PortEntry, RouteTarget, UplinkEntry, VpcEntry};
use crate::{Ctx, DropReason, Out, PortId, Snapshot, Trace, Tracer, Verdict, VipId, VpcId};

/// The IPv4 fields the stages use.
#[derive(Clone, Copy)]
struct V4 {
    src: u32,
    dst: u32,
    proto: u8,
    ttl: u8,
}

fn wire_reason(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        WireError::BadVersion => DropReason::BadIpVersion,
        WireError::BadHeaderLen => DropReason::BadIpHeaderLen,
        WireError::BadTotalLen => DropReason::BadIpTotalLen,
        WireError::BadArp => DropReason::MalformedArp,
    }
}

macro_rules! drop_with {
    ($t:expr, $stage:literal, $r:expr, $($fmt:tt)*) => {{
        if T::ON {
            $t.step($stage, format_args!($($fmt)*));
            $t.step("verdict", format_args!("drop: {}", $r.name()));
        }
        return Verdict::Drop($r);
    }};
}

macro_rules! step {
    ($t:expr, $stage:literal, $($fmt:tt)*) => {
        if T::ON {
            $t.step($stage, format_args!($($fmt)*));
        }
    };
}

fn ip(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v)
}

/// The limited broadcast, 255.255.255.255.
const LIMITED_BROADCAST: u32 = u32::MAX;

/// SPEC 7.3, 7.4: not a global unicast address: 0/8 (this network), 127/8 (loopback),
/// 169.254/16 (link-local), 224/4 (multicast), 240/4 (reserved, with the limited
/// broadcast). Private ranges (RFC 1918) are not on the list: an outside network may
/// well use them; the VPC CIDRs are checked apart.
#[inline]
fn is_martian(a: u32) -> bool {
    let first = a >> 24;
    first == 0 || first == 127 || first >= 224 || a >> 16 == 0xa9fe
}

/// RFC 1812 4.3.2.7: a source an ICMP error may be sent to (a unique host): not 0/8,
/// 127/8, 224/4 or 240/4.
#[inline]
fn is_host_source(a: u32) -> bool {
    let first = a >> 24;
    first != 0 && first != 127 && first < 224
}

/// A multicast group (224/4).
#[inline]
fn is_multicast_ip(a: u32) -> bool {
    a >> 28 == 0xe
}

/// Where a local address of a VPC leads (SPEC 5.2).
enum Resolved {
    Port(PortId),
    VipNoOwner(VipId),
    Gateway,
    Nothing,
}

/// The result of [`Snapshot::trace`].
#[derive(Debug, Clone)]
pub struct TraceResult {
    /// the final verdict
    pub verdict: Verdict,
    /// every decision, in order
    pub trace: Trace,
    /// the frame as it would leave (rewritten or answered), empty for a plain drop
    pub output: Vec<u8>,
}

impl Snapshot {
    /// Runs one frame received on `in_port` through the pipeline.
    ///
    /// `buf` is the whole packet buffer and `*len` the frame length in it; the frame may
    /// be rewritten in place and `*len` changed (answers the switch makes). The verdict
    /// says where the buffer's frame goes. Never panics, never allocates.
    #[inline]
    pub fn process<T: Tracer>(
        &self,
        ctx: &Ctx,
        in_port: PortId,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let flen = (*len).min(buf.len());
        *len = flen;
        let c = match classify(&buf[..flen]) {
            Ok(c) => c,
            Err(e) => drop_with!(t, "parse", wire_reason(e), "{flen} bytes: {e}"),
        };
        step!(t, "parse", "{} > {} {:?}", c.src, c.dst, c.l3);
        let Some(p) = self.port(in_port) else {
            drop_with!(
                t,
                "ingress",
                DropReason::UnknownPort,
                "port id {in_port} is not configured"
            )
        };
        step!(
            t,
            "ingress",
            "port {} (subnet {}, check {})",
            p.name,
            self.subnet_name(p),
            on(p.src_dst_check)
        );
        if p.is_uplink {
            return self.uplink_stage(ctx, p, &c, buf, len, t);
        }
        if matches!(c.l3, L3::Vlan) {
            drop_with!(
                t,
                "vlan",
                DropReason::VlanTagged,
                "802.1Q/802.1ad tag on an access port (SPEC 2.1)"
            )
        }
        if !p.owns_mac(c.src) {
            drop_with!(
                t,
                "src-mac",
                DropReason::SpoofedSrcMac,
                "{} is not a MAC of {} (SPEC 2.2)",
                c.src,
                p.name
            )
        }
        step!(t, "src-mac", "{} belongs to {} (SPEC 2.2)", c.src, p.name);
        match c.l3 {
            L3::Arp(a) => self.arp_stage(ctx, p, &c, a, buf, len, t),
            L3::Ipv4 {
                src,
                dst,
                proto,
                ttl,
                dhcp_client,
                ..
            } => {
                // SPEC 2.3: 0.0.0.0 only for a DHCP client that stays in the subnet
                let dhcp = dhcp_client && self.dhcp_stays_local(p, c.dst, dst);
                if p.src_dst_check && !dhcp && !p.allows_ip(src) {
                    if src == 0 && dhcp_client {
                        drop_with!(
                            t,
                            "src-ip",
                            DropReason::SpoofedSrcIp,
                            "DHCP client from 0.0.0.0 to {} at {}: allowed only to \
                             255.255.255.255 (flooded) or to the gateway (SPEC 2.3)",
                            ip(dst),
                            c.dst
                        )
                    }
                    drop_with!(
                        t,
                        "src-ip",
                        DropReason::SpoofedSrcIp,
                        "{} is not in the allowed set of {} (SPEC 2.3)",
                        ip(src),
                        p.name
                    )
                }
                step!(
                    t,
                    "src-ip",
                    "{} allowed (SPEC 2.3{})",
                    ip(src),
                    if p.src_dst_check { "" } else { ": check off" }
                );
                let v4 = V4 {
                    src,
                    dst,
                    proto,
                    ttl,
                };
                if c.dst.is_multicast() {
                    if !self.subnet_listens(p, dst) {
                        drop_with!(
                            t,
                            "l2",
                            DropReason::FloodToUnicastIp,
                            "{} to unicast {}: a broadcast/multicast frame must go to \
                             255.255.255.255, a multicast group or the subnet's broadcast \
                             address (SPEC 2.6)",
                            c.dst,
                            ip(dst)
                        )
                    }
                    step!(
                        t,
                        "l2",
                        "broadcast/multicast: every other port of subnet {} (SPEC 4.1)",
                        self.subnet_name(p)
                    );
                    return self.flood::<T>(ctx, p);
                }
                if c.dst == self.gateway_mac {
                    self.l3_stage(ctx, p, v4, buf, len, t)
                } else {
                    self.l2_ipv4(p, c.dst, v4, buf, t)
                }
            }
            L3::Ipv6 => drop_with!(
                t,
                "l3",
                DropReason::Ipv6,
                "IPv6 is not enabled on VPCs yet (SPEC 9.1)"
            ),
            L3::Other(et) => drop_with!(
                t,
                "l3",
                DropReason::UnsupportedEthertype,
                "EtherType {et:#06x}"
            ),
            L3::Vlan => drop_with!(t, "vlan", DropReason::VlanTagged, "tagged"),
        }
    }

    /// Traces one frame without changing learned state or rate limits (SPEC: trace).
    pub fn trace(&self, now_ns: u64, in_port: PortId, frame: &[u8]) -> TraceResult {
        let mut buf = vec![0u8; frame.len().max(2048)];
        buf[..frame.len()].copy_from_slice(frame);
        let mut len = frame.len();
        let mut t = Trace::default();
        let verdict = self.process(&Ctx::at(now_ns), in_port, &mut buf, &mut len, &mut t);
        let output = match verdict {
            Verdict::Drop(_) => Vec::new(),
            _ => buf[..len].to_vec(),
        };
        let v = match verdict {
            Verdict::Forward(o) => format!("forward to {}", self.out_name(o)),
            Verdict::Drop(r) => format!("drop: {r}"),
            Verdict::DropAndSend(r, o) => format!(
                "drop: {r}; send the switch's answer to {}",
                self.out_name(o)
            ),
        };
        if !matches!(verdict, Verdict::Drop(_)) {
            t.step("verdict", format_args!("{v}"));
        }
        TraceResult {
            verdict,
            trace: t,
            output,
        }
    }

    /// A readable name for an output.
    pub fn out_name(&self, o: Out) -> String {
        match o {
            Out::Port(p) => format!("port {}", self.port(p).map_or("?", |p| p.name.as_str())),
            Out::Flood(s) => format!(
                "subnet {} (flood)",
                self.subnets
                    .get(s as usize)
                    .map_or("?", |s| s.name.as_str())
            ),
            Out::VipPorts(v) => format!(
                "ports bound to vip {}",
                self.vips.get(v as usize).map_or("?", |v| v.name.as_str())
            ),
        }
    }

    fn subnet_name(&self, p: &PortEntry) -> &str {
        self.subnets
            .get(p.subnet as usize)
            .map_or("-", |s| s.name.as_str())
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

    /// A flood of `p`'s frame to its subnet, within `p`'s flood budget, which counts
    /// copies: one token per other port of the subnet (item: a 256-port subnet's
    /// broadcasts must not cost the same as a 2-port one's). Trace mode spends nothing.
    #[inline]
    fn flood<T: Tracer>(&self, ctx: &Ctx, p: &PortEntry) -> Verdict {
        let copies = self
            .subnets
            .get(p.subnet as usize)
            .map_or(0, |s| s.ports.len().saturating_sub(1));
        let copies = u32::try_from(copies).unwrap_or(u32::MAX);
        if !T::ON && !self.take_n(p.id, Budget::Flood, ctx.now_ns, copies) {
            return Verdict::Drop(DropReason::FloodRateLimited);
        }
        Verdict::Forward(Out::Flood(p.subnet))
    }

    /// Every ARP from a port or the uplink: within the port's `budget`, and a request
    /// or a reply. `Err` is the drop verdict.
    fn arp_admit<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        a: &ArpInfo,
        budget: Budget,
        t: &mut T,
    ) -> Result<(), Verdict> {
        if !T::ON && !self.take(p.id, budget, ctx.now_ns) {
            return Err(Verdict::Drop(DropReason::ArpRateLimited));
        }
        if a.op != OP_REQUEST && a.op != OP_REPLY {
            if T::ON {
                t.step("arp", format_args!("opcode {}", a.op));
                let r = DropReason::ArpUnsupportedOp;
                t.step("verdict", format_args!("drop: {}", r.name()));
            }
            return Err(Verdict::Drop(DropReason::ArpUnsupportedOp));
        }
        Ok(())
    }

    /// SPEC 2.3, 2.3a, 3.1, 3.3–3.5.
    #[allow(clippy::too_many_arguments)]
    fn arp_stage<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        c: &Classified,
        a: ArpInfo,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        if let Err(v) = self.arp_admit(ctx, p, &a, Budget::Arp, t) {
            return v;
        }
        if p.src_dst_check && c.src != a.sha {
            drop_with!(
                t,
                "arp",
                DropReason::ArpSenderMacMismatch,
                "sender MAC {} != Ethernet source {} (SPEC 2.3)",
                a.sha,
                c.src
            )
        }
        let claimed = if a.spa != 0 {
            self.host(p.vpc, a.spa)
        } else {
            None
        };
        match claimed {
            Some(Host::Port(q)) if q != p.id => {
                drop_with!(
                    t,
                    "arp",
                    DropReason::ArpClaimsForeignIp,
                    "sender IP {} is a fixed IP of another port (SPEC 2.3a)",
                    ip(a.spa)
                )
            }
            Some(Host::Gateway(_)) => {
                drop_with!(
                    t,
                    "arp",
                    DropReason::ArpClaimsForeignIp,
                    "sender IP {} is a gateway address (SPEC 2.3a)",
                    ip(a.spa)
                )
            }
            Some(Host::Vip(v)) if !p.vips.contains(&v) => {
                drop_with!(
                    t,
                    "arp",
                    DropReason::VipClaimNotBound,
                    "sender IP {} is vip {}, not bound to {} (SPEC 2.3a, 3.1)",
                    ip(a.spa),
                    self.vips[v as usize].name,
                    p.name
                )
            }
            _ => {}
        }
        if p.src_dst_check && a.spa != 0 && !p.allows_ip(a.spa) {
            drop_with!(
                t,
                "arp",
                DropReason::SpoofedArpSenderIp,
                "sender IP {} is not in the allowed set of {} (SPEC 2.3)",
                ip(a.spa),
                p.name
            )
        }
        step!(
            t,
            "arp",
            "{} {} asks/tells {} (sender ok, SPEC 2.3)",
            if a.op == OP_REQUEST {
                "request"
            } else {
                "reply"
            },
            ip(a.spa),
            ip(a.tpa)
        );

        // SPEC 3.1: announcements and replies for a VIP move its owner.
        let is_claim =
            (a.op == OP_REQUEST && a.is_announcement()) || (a.op == OP_REPLY && a.spa != 0);
        if is_claim {
            if let Some(Host::Vip(v)) = claimed {
                let cell = self.vip_cell(v);
                if T::ON {
                    step!(
                        t,
                        "vip-learn",
                        "would make {} the owner of vip {} (was {}) (SPEC 3.1)",
                        p.name,
                        self.vips[v as usize].name,
                        cell.owner()
                            .and_then(|o| self.port(o))
                            .map_or("none", |q| q.name.as_str())
                    );
                } else {
                    cell.claim(p.id, ctx.now_ns);
                }
            }
        }

        if a.op == OP_REPLY {
            if c.dst.is_multicast() {
                step!(
                    t,
                    "arp",
                    "gratuitous reply: every other port of the subnet (SPEC 3.3)"
                );
                return self.flood::<T>(ctx, p);
            }
            return match self.l2_dest(p, c.dst) {
                Ok(q) => {
                    step!(t, "l2", "reply to {} (SPEC 4.2)", q.name);
                    Verdict::Forward(Out::Port(q.id))
                }
                Err(r) => drop_with!(t, "l2", r, "no port of the subnet has MAC {}", c.dst),
            };
        }
        if a.is_announcement() {
            step!(
                t,
                "arp",
                "announcement: not answered (SPEC 3.5), delivered to the subnet (SPEC 3.3)"
            );
            return self.flood::<T>(ctx, p);
        }
        let Some(s) = self.subnets.get(p.subnet as usize) else {
            drop_with!(
                t,
                "arp",
                DropReason::ArpTargetOutsideSubnet,
                "port has no subnet"
            )
        };
        if !s.cidr.contains(ip(a.tpa)) {
            drop_with!(
                t,
                "arp",
                DropReason::ArpTargetOutsideSubnet,
                "{} is outside subnet {} ({})",
                ip(a.tpa),
                s.name,
                s.cidr
            )
        }
        if a.is_probe() && p.allows_ip(a.tpa) {
            step!(
                t,
                "arp",
                "probe for the sender's own {}: not answered (SPEC 3.5), delivered to the subnet",
                ip(a.tpa)
            );
            return self.flood::<T>(ctx, p);
        }
        let answer = match self.host(p.vpc, a.tpa) {
            Some(Host::Gateway(_)) => Some((self.gateway_mac, "the gateway")),
            Some(Host::Port(q)) => self.port(q).map(|q| (q.mac, q.name.as_str())),
            Some(Host::Vip(v)) => match self.vip_cell(v).owner().and_then(|o| self.port(o)) {
                Some(o) => Some((o.mac, o.name.as_str())),
                None => {
                    step!(
                        t,
                        "arp-responder",
                        "vip {} has no owner: request goes to its bound ports only (SPEC 3.4)",
                        self.vips[v as usize].name
                    );
                    return Verdict::Forward(Out::VipPorts(v));
                }
            },
            None => None,
        };
        match answer {
            Some((mac, who)) => {
                let n = arp::emit_reply(buf, &a, mac);
                if n == 0 {
                    drop_with!(
                        t,
                        "arp-responder",
                        DropReason::Truncated,
                        "buffer too small for a reply"
                    )
                }
                *len = n;
                step!(
                    t,
                    "arp-responder",
                    "{} is-at {} ({}), answered by the switch (SPEC 3.4)",
                    ip(a.tpa),
                    mac,
                    who
                );
                Verdict::Forward(Out::Port(p.id))
            }
            None => {
                step!(
                    t,
                    "arp-responder",
                    "{} unknown: flooded to subnet {} (SPEC 3.4)",
                    ip(a.tpa),
                    s.name
                );
                self.flood::<T>(ctx, p)
            }
        }
    }

    /// SPEC 4.2: the port of subnet `p.subnet` that owns `mac`.
    #[inline(always)]
    fn l2_dest(&self, p: &PortEntry, mac: MacKey) -> Result<&PortEntry, DropReason> {
        let q = self
            .port_by_mac(mac)
            .and_then(|q| self.port(q))
            .filter(|q| q.subnet == p.subnet)
            .ok_or(DropReason::UnknownUnicast)?;
        if q.id == p.id {
            return Err(DropReason::Hairpin);
        }
        Ok(q)
    }

    /// SPEC 4.2, 4.3, 6.1 for a unicast IPv4 frame not sent to the gateway.
    #[inline(always)]
    fn l2_ipv4<T: Tracer>(
        &self,
        p: &PortEntry,
        dst_mac: MacKey,
        v4: V4,
        buf: &mut [u8],
        t: &mut T,
    ) -> Verdict {
        let q = match self.l2_dest(p, dst_mac) {
            Ok(q) => q,
            Err(r) => drop_with!(
                t,
                "l2",
                r,
                "no other port of the subnet has MAC {} (SPEC 4.2)",
                dst_mac
            ),
        };
        // The usual case, to the port's primary fixed IP: a fixed IP is never a VIP (SPEC
        // 1), so no steering (4.3), and it is in the allowed set (6.1). The trace takes
        // the long way, which says so step by step.
        if !T::ON && q.ips.first() == Some(&v4.dst) {
            return Verdict::Forward(Out::Port(q.id));
        }
        let mut dest = q;
        // SPEC 4.3: VIP steering, only for ports bound to the VIP.
        for &v in q.vips.iter() {
            if self.vips[v as usize].ip == v4.dst {
                let cell = self.vip_cell(v);
                if let Some(o) = cell.owner().and_then(|o| self.port(o)) {
                    if !T::ON && o.id != p.id {
                        cell.sent_to_owner();
                    }
                    if o.id != q.id && o.id != p.id {
                        buf[0..6].copy_from_slice(&o.mac.0);
                        step!(
                            t,
                            "vip-steer",
                            "{} is vip {}, owned by {} not {}: MAC rewritten to {} (SPEC 4.3)",
                            ip(v4.dst),
                            self.vips[v as usize].name,
                            o.name,
                            q.name,
                            o.mac
                        );
                        dest = o;
                    }
                }
                break;
            }
        }
        step!(t, "l2", "to {} (SPEC 4.2)", dest.name);
        self.egress(dest, v4.dst, t)
    }

    /// SPEC 6.1 on egress port `q`.
    #[inline(always)]
    fn egress<T: Tracer>(&self, q: &PortEntry, dst: u32, t: &mut T) -> Verdict {
        if q.src_dst_check && !q.allows_ip(dst) {
            drop_with!(
                t,
                "dst-check",
                DropReason::DstCheck,
                "{} is not in the allowed set of {} (SPEC 6.1)",
                ip(dst),
                q.name
            )
        }
        step!(
            t,
            "dst-check",
            "{} delivered to {}{}",
            ip(dst),
            q.name,
            if q.src_dst_check { "" } else { " (check off)" }
        );
        Verdict::Forward(Out::Port(q.id))
    }

    /// Where `dst` of `vpc` leads. A VIP resolved to its owner counts as a packet sent
    /// to the owner for the failover timing (a later TTL or destination-check drop
    /// does not undo that; traces never count).
    fn resolve<T: Tracer>(&self, vpc: VpcId, dst: u32) -> Resolved {
        match self.host(vpc, dst) {
            Some(Host::Port(q)) => Resolved::Port(q),
            Some(Host::Vip(v)) => {
                let cell = self.vip_cell(v);
                match cell.owner() {
                    Some(o) => {
                        if !T::ON {
                            cell.sent_to_owner();
                        }
                        Resolved::Port(o)
                    }
                    None => Resolved::VipNoOwner(v),
                }
            }
            Some(Host::Gateway(_)) => Resolved::Gateway,
            None => Resolved::Nothing,
        }
    }

    /// SPEC 5.x: a frame sent to the gateway MAC.
    fn l3_stage<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        if !Ipv4Packet::new_unchecked(&buf[14..*len]).verify_checksum() {
            drop_with!(
                t,
                "l3",
                DropReason::BadIpChecksum,
                "IPv4 header checksum is wrong"
            )
        }
        let Some(vpc) = self.vpcs.get(p.vpc as usize) else {
            drop_with!(t, "l3", DropReason::NoRoute, "port has no VPC")
        };
        // A local address of the VPC always wins the longest-prefix match (validation
        // refuses routes equal to or inside a subnet), so the host table answers first
        // and the route table is consulted only for other destinations.
        let resolved = match self.resolve::<T>(p.vpc, v4.dst) {
            Resolved::Nothing => self.route_lookup(ctx, p, vpc, v4, buf, len, t),
            local => {
                step!(
                    t,
                    "route",
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
            if v4.proto == IpProtocol::ICMP && icmp::is_echo_request(&buf[..*len]) {
                let gw = ip(v4.dst);
                icmp::echo_reply_in_place(&mut buf[..*len], self.gateway_mac, gw);
                step!(
                    t,
                    "gateway",
                    "echo request to gateway {gw}: answered (SPEC 5.6)"
                );
                return Verdict::Forward(Out::Port(p.id));
            }
            drop_with!(
                t,
                "gateway",
                DropReason::ToGateway,
                "{} is a gateway; only ICMP echo is answered",
                ip(v4.dst)
            )
        }
        if v4.ttl <= 1 {
            let from = (self.gateway_mac, self.gateway_ip(p.subnet));
            return self.ttl_exceeded(ctx, p, from, v4, buf, len, t);
        }
        let q = match resolved {
            Resolved::Port(q) => q,
            Resolved::VipNoOwner(v) => return self.arp_for_vip(ctx, p, v, buf, len, t),
            _ => drop_with!(
                t,
                "l3",
                DropReason::NoSuchHost,
                "no port or VIP holds {} (SPEC 5.2)",
                ip(v4.dst)
            ),
        };
        let Some(q) = self.port(q) else {
            drop_with!(
                t,
                "l3",
                DropReason::NoSuchHost,
                "next hop port id {q} is gone"
            )
        };
        let v = self.egress(q, v4.dst, t);
        if let Verdict::Forward(_) = v {
            self.rewrite_routed(q, &mut buf[..*len]);
            step!(
                t,
                "rewrite",
                "src MAC {}, dst MAC {}, TTL {} (SPEC 5.5)",
                self.gateway_mac,
                q.mac,
                v4.ttl - 1
            );
        }
        v
    }

    /// SPEC 5.5: a routed frame leaves from the gateway MAC to `q`'s MAC, TTL − 1 (the
    /// IPv4 checksum follows).
    #[inline]
    fn rewrite_routed(&self, q: &PortEntry, frame: &mut [u8]) {
        frame[0..6].copy_from_slice(&q.mac.0);
        frame[6..12].copy_from_slice(&self.gateway_mac.0);
        Ipv4Packet::new_unchecked(&mut frame[14..]).decrement_ttl();
    }

    /// SPEC 5.1, 5.3, 5.4, 5.7 for a destination that is not a local address: the
    /// longest-prefix route. `Err` is the final verdict (no route, uplink).
    #[allow(clippy::too_many_arguments)]
    fn route_lookup<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        vpc: &VpcEntry,
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Result<Resolved, Verdict> {
        let route = vpc.routes.lookup(v4.dst);
        step!(
            t,
            "route",
            "{} in vpc {}: {:?} (SPEC 5.1)",
            ip(v4.dst),
            vpc.name,
            route
        );
        match route {
            None => Err(self.icmp_error(
                ctx,
                p,
                v4,
                buf,
                len,
                t,
                DropReason::NoRoute,
                icmp::TYPE_DST_UNREACHABLE,
                icmp::CODE_NET_UNREACHABLE,
            )),
            // inside a local subnet, but no port, VIP or gateway holds it
            Some(RouteTarget::Local(_)) => Ok(Resolved::Nothing),
            Some(RouteTarget::Peering(peer)) => Ok(match self.resolve::<T>(peer, v4.dst) {
                // a peer's gateway is not reachable through a peering
                Resolved::Gateway => Resolved::Nothing,
                r => r,
            }),
            Some(RouteTarget::Port(q)) => Ok(Resolved::Port(q)),
            Some(RouteTarget::Uplink) => Err(self.to_uplink(ctx, p, v4, buf, len, t)),
        }
    }

    /// SPEC 5.5 / 5.7: drop, and answer with an ICMP error from the ingress gateway,
    /// rate-limited per port. No error about an ICMP error.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
        reason: DropReason,
        ty: u8,
        code: u8,
    ) -> Verdict {
        let from = (self.gateway_mac, self.gateway_ip(p.subnet));
        self.icmp_error_from(ctx, p, from, v4, buf, len, t, reason, ty, code)
    }

    /// SPEC 5.5: TTL 0 or 1 on a packet to be routed: drop, answer time exceeded from
    /// `from` (the gateway; on the uplink, the EIP).
    #[allow(clippy::too_many_arguments)]
    fn ttl_exceeded<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        from: (MacAddr, Ipv4Addr),
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        self.icmp_error_from(
            ctx,
            p,
            from,
            v4,
            buf,
            len,
            t,
            DropReason::TtlExceeded,
            icmp::TYPE_TIME_EXCEEDED,
            icmp::CODE_TTL_EXCEEDED,
        )
    }

    /// [`Self::icmp_error`] from the given (MAC, IP): the uplink answers from the EIP.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error_from<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        (from_mac, from_ip): (MacAddr, Ipv4Addr),
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
        reason: DropReason,
        ty: u8,
        code: u8,
    ) -> Verdict {
        let hl = usize::from(buf[14] & 0x0f) * 4;
        let is_error = v4.proto == IpProtocol::ICMP
            && buf
                .get(14 + hl)
                .is_some_and(|&ty| !matches!(ty, 0 | 8 | 13 | 14));
        if is_error {
            drop_with!(t, "icmp", reason, "no ICMP error about an ICMP error")
        }
        // RFC 1812 4.3.2.7, RFC 1122 3.2.2: no error about a non-first fragment, a
        // packet to a broadcast or multicast address, or from an address that is not
        // a unique host (0/8, 127/8, 224/4, 240/4)
        let frag_off = buf
            .get(14 + 6..14 + 8)
            .map_or(0, |f| u16::from_be_bytes([f[0], f[1]]) & 0x1fff);
        if frag_off != 0 {
            drop_with!(
                t,
                "icmp",
                reason,
                "no ICMP error about a non-first fragment (offset {})",
                u32::from(frag_off) * 8
            )
        }
        if v4.dst == LIMITED_BROADCAST || is_multicast_ip(v4.dst) {
            drop_with!(
                t,
                "icmp",
                reason,
                "no ICMP error about a packet to broadcast/multicast {}",
                ip(v4.dst)
            )
        }
        if !is_host_source(v4.src) {
            drop_with!(
                t,
                "icmp",
                reason,
                "no ICMP error to {}: not a host address",
                ip(v4.src)
            )
        }
        let out = Out::Port(p.id);
        let v = self.drop_and_answer(ctx, p, buf, len, t, reason, out, |b, n| {
            icmp::error_in_place(b, n, from_mac, from_ip, ty, code)
        });
        step!(
            t,
            "icmp",
            "{}: ICMP type {ty} code {code} from {from_ip} to the sender (SPEC 5.5/5.7)",
            reason.name()
        );
        v
    }

    /// SPEC 5.2: a VIP without owner: drop, and ARP for it on its bound ports.
    fn arp_for_vip<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        v: VipId,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let vip = &self.vips[v as usize];
        let (gw_mac, gw, ip) = (
            self.gateway_mac,
            self.subnets[vip.subnet as usize].gateway,
            vip.ip,
        );
        let out = Out::VipPorts(v);
        let verdict =
            self.drop_and_answer(ctx, p, buf, len, t, DropReason::VipNoOwner, out, |b, _| {
                arp::emit_request(b, gw_mac, gw, ip)
            });
        step!(
            t,
            "l3",
            "vip {} has no owner: dropped, ARP request sent to its bound ports (SPEC 5.2)",
            vip.name
        );
        verdict
    }

    /// Drops the frame for `reason` and sends, to `out`, what `emit` writes into its
    /// buffer instead (`emit` gets the buffer and the frame length and returns the new
    /// length, 0 if it cannot). Within the ingress port's answer budget (SPEC 5.5):
    /// over budget, a plain drop. Trace mode spends no budget.
    #[allow(clippy::too_many_arguments)]
    fn drop_and_answer<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
        reason: DropReason,
        out: Out,
        emit: impl FnOnce(&mut [u8], usize) -> usize,
    ) -> Verdict {
        if !T::ON && !self.take(p.id, Budget::Answers, ctx.now_ns) {
            return Verdict::Drop(reason);
        }
        let n = emit(buf, *len);
        if n == 0 {
            drop_with!(t, "answer", reason, "buffer too small for the answer")
        }
        *len = n;
        Verdict::DropAndSend(reason, out)
    }
}

impl Snapshot {
    /// SPEC 7.2: a packet routed to the uplink. Its source must have an EIP; it leaves
    /// with the EIP as source, to the outside next hop's MAC (ARPed for when unknown:
    /// that packet is dropped, as the ARP request goes out).
    fn to_uplink<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        v4: V4,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let Some(u) = &self.uplink else {
            drop_with!(t, "uplink", DropReason::NoRoute, "no uplink is configured")
        };
        // SPEC 7.4: only global unicast destinations outside every VPC go out
        if is_martian(v4.dst) {
            drop_with!(
                t,
                "uplink",
                DropReason::UplinkBogusDst,
                "{} is not a global unicast address: never sent to the outside (SPEC 7.4)",
                ip(v4.dst)
            )
        }
        if let Some(vpc) = self.vpc_of_addr(v4.dst) {
            drop_with!(
                t,
                "uplink",
                DropReason::UplinkBogusDst,
                "{} is inside a CIDR of vpc {}: never sent to the outside (SPEC 7.4)",
                ip(v4.dst),
                self.vpcs.get(vpc as usize).map_or("?", |v| v.name.as_str())
            )
        }
        let Some(eip) = self.eip_of(p.vpc, v4.src) else {
            drop_with!(
                t,
                "eip",
                DropReason::NoEip,
                "{} has no EIP: a private address never leaves (SPEC 7.2)",
                ip(v4.src)
            )
        };
        if v4.ttl <= 1 {
            let from = (self.gateway_mac, self.gateway_ip(p.subnet));
            return self.ttl_exceeded(ctx, p, from, v4, buf, len, t);
        }
        let Some(nh_mac) = self.next_hop_mac() else {
            let (mac, spa, tpa) = (u.mac, u.arp_src, u.next_hop);
            let out = Out::Port(u.port);
            let reason = DropReason::NextHopUnresolved;
            let v = self.drop_and_answer(ctx, p, buf, len, t, reason, out, |b, _| {
                arp::emit_request(b, mac, spa, tpa)
            });
            step!(
                t,
                "uplink",
                "next hop {} not resolved: dropped, ARP request sent on {} (SPEC 7.2)",
                ip(u.next_hop),
                self.port(u.port).map_or("?", |q| q.name.as_str())
            );
            return v;
        };
        let frame_end = *len;
        nat::translate(&mut buf[14..frame_end], Side::Src, eip, ctx.csum_partial);
        buf[0..6].copy_from_slice(&nh_mac.0);
        buf[6..12].copy_from_slice(&u.mac.0);
        Ipv4Packet::new_unchecked(&mut buf[14..frame_end]).decrement_ttl();
        step!(
            t,
            "eip",
            "source {} translated to EIP {}, to next hop {} ({}) (SPEC 7.2)",
            ip(v4.src),
            ip(eip),
            ip(u.next_hop),
            nh_mac
        );
        Verdict::Forward(Out::Port(u.port))
    }

    /// SPEC 7.1: a frame received on the uplink. Only ARP (answered for EIPs; the next
    /// hop's is learned) and IPv4 to an EIP at the uplink's MAC get in.
    fn uplink_stage<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        c: &Classified,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let Some(u) = &self.uplink else {
            drop_with!(t, "uplink", DropReason::UnknownPort, "no uplink configured")
        };
        step!(t, "ingress", "uplink {} (SPEC 7.1)", p.name);
        match c.l3 {
            L3::Arp(a) => self.uplink_arp(ctx, p, u, c.src, a, buf, len, t),
            L3::Ipv4 {
                src,
                dst,
                proto,
                ttl,
                ..
            } => {
                if c.dst != u.mac {
                    drop_with!(
                        t,
                        "uplink",
                        DropReason::UplinkNotForEip,
                        "to {}, not the uplink's MAC {} (SPEC 7.1)",
                        c.dst,
                        u.mac
                    )
                }
                // SPEC 7.3: the outside cannot pose as a private address, an EIP, or an
                // address no host on the outside may have
                if is_martian(src) {
                    drop_with!(
                        t,
                        "uplink",
                        DropReason::UplinkBogusSrc,
                        "source {} is not a global unicast address (SPEC 7.3)",
                        ip(src)
                    )
                }
                if let Some(vpc) = self.vpc_of_addr(src) {
                    drop_with!(
                        t,
                        "uplink",
                        DropReason::UplinkBogusSrc,
                        "source {} is inside a CIDR of vpc {} (SPEC 7.3)",
                        ip(src),
                        self.vpcs.get(vpc as usize).map_or("?", |v| v.name.as_str())
                    )
                }
                if self.eip_target(src).is_some() {
                    drop_with!(
                        t,
                        "uplink",
                        DropReason::UplinkBogusSrc,
                        "source {} is an EIP of this switch (SPEC 7.3)",
                        ip(src)
                    )
                }
                step!(
                    t,
                    "uplink",
                    "source {} is global unicast (SPEC 7.3)",
                    ip(src)
                );
                let Some((vpc, private)) = self.eip_target(dst) else {
                    drop_with!(
                        t,
                        "uplink",
                        DropReason::UplinkNotForEip,
                        "{} is not an EIP (SPEC 7.1)",
                        ip(dst)
                    )
                };
                if !Ipv4Packet::new_unchecked(&buf[14..*len]).verify_checksum() {
                    drop_with!(
                        t,
                        "l3",
                        DropReason::BadIpChecksum,
                        "IPv4 header checksum is wrong"
                    )
                }
                let v4 = V4 {
                    src,
                    dst,
                    proto,
                    ttl,
                };
                step!(
                    t,
                    "eip",
                    "EIP {} is {} in vpc {} (SPEC 7.1)",
                    ip(dst),
                    ip(private),
                    self.vpcs.get(vpc as usize).map_or("?", |v| v.name.as_str())
                );
                let q = match self.resolve::<T>(vpc, private) {
                    Resolved::Port(q) => q,
                    Resolved::VipNoOwner(v) => return self.arp_for_vip(ctx, p, v, buf, len, t),
                    _ => drop_with!(
                        t,
                        "eip",
                        DropReason::NoSuchHost,
                        "no port or VIP holds {}",
                        ip(private)
                    ),
                };
                if ttl <= 1 {
                    return self.ttl_exceeded(ctx, p, (u.mac, ip(dst)), v4, buf, len, t);
                }
                let Some(q) = self.port(q) else {
                    drop_with!(t, "eip", DropReason::NoSuchHost, "port id {q} is gone")
                };
                let v = self.egress(q, private, t);
                if let Verdict::Forward(_) = v {
                    let frame_end = *len;
                    nat::translate(
                        &mut buf[14..frame_end],
                        Side::Dst,
                        private,
                        ctx.csum_partial,
                    );
                    self.rewrite_routed(q, &mut buf[..frame_end]);
                    step!(
                        t,
                        "rewrite",
                        "destination {} → {}, src MAC {}, dst MAC {}, TTL {} (SPEC 7.1, 5.5)",
                        ip(dst),
                        ip(private),
                        self.gateway_mac,
                        q.mac,
                        ttl - 1
                    );
                }
                v
            }
            L3::Vlan => drop_with!(t, "vlan", DropReason::VlanTagged, "tagged on the uplink"),
            L3::Ipv6 => drop_with!(t, "l3", DropReason::Ipv6, "IPv6 on the uplink"),
            L3::Other(et) => drop_with!(
                t,
                "l3",
                DropReason::UnsupportedEthertype,
                "EtherType {et:#06x}"
            ),
        }
    }

    /// SPEC 7.1: ARP on the uplink. Requests for an EIP are answered with the uplink's
    /// MAC; the next hop's requests and replies teach the switch its MAC; the rest is
    /// consumed. SPEC 7.3: rate-limited per purpose, so that outside traffic cannot
    /// spend the budget of the next hop's ARP or of requests for EIPs (see
    /// [`Self::uplink_arp_budget`]).
    #[allow(clippy::too_many_arguments)]
    fn uplink_arp<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        u: &UplinkEntry,
        eth_src: MacKey,
        a: ArpInfo,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let budget = self.uplink_arp_budget(u, eth_src, &a);
        step!(
            t,
            "arp",
            "uplink ARP budget: {} (SPEC 7.3)",
            match budget {
                Budget::NextHopArp => "the next hop's, at its known MAC",
                Budget::NextHopArpOther => "the next hop's IP from another MAC",
                Budget::EipArp => "requests for an EIP",
                _ => "other outside ARP",
            }
        );
        if let Err(v) = self.arp_admit(ctx, p, &a, budget, t) {
            return v;
        }
        if a.spa == u.next_hop && a.spa != 0 && a.sha.mac().is_unicast() {
            if T::ON {
                step!(
                    t,
                    "arp",
                    "next hop {} is-at {}: would be learned (SPEC 7.2)",
                    ip(a.spa),
                    a.sha
                );
            } else {
                self.learn_next_hop(a.sha);
            }
        }
        if a.op == OP_REQUEST && self.eip_target(a.tpa).is_some() {
            let n = arp::emit_reply(buf, &a, u.mac);
            if n == 0 {
                drop_with!(
                    t,
                    "arp",
                    DropReason::Truncated,
                    "buffer too small for a reply"
                )
            }
            *len = n;
            step!(
                t,
                "arp-responder",
                "EIP {} is-at {} (the uplink), answered by the switch (SPEC 7.1)",
                ip(a.tpa),
                u.mac
            );
            return Verdict::Forward(Out::Port(p.id));
        }
        drop_with!(
            t,
            "arp",
            DropReason::UplinkArp,
            "{} for {}: not a request for an EIP",
            if a.op == OP_REQUEST {
                "request"
            } else {
                "reply"
            },
            ip(a.tpa)
        )
    }
}

impl Snapshot {
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

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
