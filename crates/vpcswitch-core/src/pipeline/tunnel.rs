//! Frames from another host (SPEC 10.2, 10.3), and what the trace says of outputs to
//! other hosts (10.1, 10.4).
//!
//! # Security intent (SPEC 10.3)
//! A host is trusted as far as its ports are, no further. A decapsulated frame from
//! host H with the VNI of VPC V is taken only as something H could have produced:
//! - (a) **switched**: its Ethernet source is a MAC of a port P of V living on H. It
//!   goes through the ordinary pipeline as if it had entered on P, so every check of
//!   SPEC 2 applies to it as to P's own frames, and a VIP claim (3.1) moves the owner
//!   only to P, bound to the VIP and living on H (10.5). H routes what P sends: such a
//!   frame to the gateway MAC is dropped.
//! - (b) **routed**: its source is the gateway MAC (H ran SPEC 5 for it). It must be
//!   IPv4 to a port Q of V on this host, its source an address H's ports could have
//!   sent into V (their allowed sets, in V or a VPC whose routes name a peering to V;
//!   any, with a port there whose `src_dst_check` is off), or, from the uplink's host,
//!   an outside address (SPEC 7.3) to an EIP's target; its destination one that leads to
//!   Q (Q's address, or routed to Q by V's table). Then the destination check (6.1).
//! - (c) **to the uplink**: its source is the uplink's MAC and the uplink is here (H
//!   translated an EIP's outbound traffic, 7.2). Its source must be an EIP of V whose
//!   target is an address a port on H may send from; its destination global unicast
//!   outside every VPC (7.4). This host fills in the next hop's MAC, which only it
//!   learns.
//!
//! Anything else is dropped with a `tunnel_*` reason. A frame from a tunnel never goes
//! back into one: an output to a port on another host is dropped (`tunnel_transit`),
//! and floods reach this host's ports only (the runtime's split horizon).

use std::fmt::Write;

use vpcswitch_wire::{classify, icmp, Classified, Ipv4Packet, ETHERNET_HEADER_LEN, L3};

use super::{ip, is_martian, wire_reason, Frame, V4};
use crate::snapshot::{PortEntry, RouteTarget};
use crate::{
    Ctx, DropReason, HostId, Location, Out, PortId, Snapshot, Stage, TraceResult, Tracer, Verdict,
    VpcId,
};

/// Where a frame from a tunnel came from: the sending host and the VNI's VPC.
#[derive(Clone, Copy)]
pub(super) struct Sender {
    pub host: HostId,
    pub vpc: VpcId,
}

impl Snapshot {
    /// Runs one frame decapsulated from host `from` with VNI `vni` (SPEC 10.3).
    ///
    /// As [`Self::process`]: `buf` is the whole packet buffer, `*len` the inner frame's
    /// length; the frame may be rewritten in place. The verdict never names a port on
    /// another host; a `Flood` or `VipPorts` verdict is for this host's ports only
    /// ([`Self::flood_ports`], [`Self::vip_ports`]): never replicated again. Never
    /// panics, never allocates.
    #[inline]
    pub fn process_tunnel<T: Tracer>(
        &self,
        ctx: &Ctx,
        from: HostId,
        vni: u32,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let flen = (*len).min(buf.len());
        *len = flen;
        let Some(h) = self.host(from).filter(|h| Some(h.id) != self.local_host()) else {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelUnknownHost,
                "host id {from} is no other host of the network (SPEC 10.3)"
            )
        };
        let Some(vpc) = self.vpc_by_vni(vni) else {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelUnknownVni,
                "VNI {vni} from host {} is no VPC's (SPEC 10.3)",
                h.name
            )
        };
        let c = match classify(&buf[..flen]) {
            Ok(c) => c,
            Err(e) => drop_with!(t, Parse, wire_reason(e), "{flen} bytes: {e}"),
        };
        step!(t, Parse, "{} > {} {:?}", c.src, c.dst, c.l3);
        step!(
            t,
            Tunnel,
            "from host {} ({}), VNI {vni}: vpc {}",
            h.name,
            h.endpoint,
            self.vpc_name(vpc)
        );
        let from = Sender { host: from, vpc };
        let v = if c.src == self.gateway_mac {
            self.tunnel_routed(ctx, from, &c, buf, len, &mut *t)
        } else if self.uplink.as_ref().is_some_and(|u| c.src == u.mac) {
            self.tunnel_to_uplink(ctx, from, &c, buf, len, &mut *t)
        } else {
            match self.port_by_mac(c.src).and_then(|p| self.port(p)) {
                Some(p) if p.location == Location::Remote(from.host) && p.vpc == vpc => {
                    self.tunnel_switched(ctx, p, &c, buf, len, &mut *t)
                }
                p => drop_with!(
                    t,
                    Tunnel,
                    DropReason::TunnelSource,
                    "source {} is no port of vpc {} on host {}{} (SPEC 10.3)",
                    c.src,
                    self.vpc_name(vpc),
                    h.name,
                    p.map_or(String::new(), |p| format!(
                        " ({} is {})",
                        p.name,
                        self.placed(p)
                    ))
                ),
            }
        };
        self.split_horizon(v, t)
    }

    /// Traces one frame from a tunnel: a dry run of [`Self::process_tunnel`].
    pub fn trace_tunnel(&self, now_ns: u64, from: HostId, vni: u32, frame: &[u8]) -> TraceResult {
        self.dry_run(frame, |buf, len, t| {
            self.process_tunnel(&Ctx::at(now_ns), from, vni, buf, len, t)
        })
    }

    /// (a): a frame from port `p` of the sending host, through the ordinary pipeline.
    #[inline(always)]
    fn tunnel_switched<T: Tracer>(
        &self,
        ctx: &Ctx,
        p: &PortEntry,
        c: &Classified,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        if c.dst == self.gateway_mac {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelToGateway,
                "from port {} to the gateway MAC: its own host routes it (SPEC 10.2)",
                p.name
            )
        }
        step!(
            t,
            Tunnel,
            "source {} is port {} of that host: checked as if it entered on {} (SPEC 10.3)",
            c.src,
            p.name,
            p.name
        );
        let f = Frame {
            ctx: *ctx,
            port: p,
            buf,
            len,
            src_mac: c.src,
            dst_mac: c.dst,
            t,
        };
        self.ingress(f, c.l3)
    }

    /// (b): a frame the sending host routed, to a port here.
    fn tunnel_routed<T: Tracer>(
        &self,
        ctx: &Ctx,
        from: Sender,
        c: &Classified,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let v4 = V4::of(c.l3);
        if v4.is_none() && !matches!(c.l3, L3::Ipv6) {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelSource,
                "from the gateway MAC but neither IPv4 nor IPv6: a host sends only routed \
                 IP from it"
            )
        }
        let Some(q) = self.port_by_mac(c.dst).and_then(|q| self.port(q)) else {
            drop_with!(
                t,
                Tunnel,
                DropReason::UnknownUnicast,
                "routed to {}, no port's MAC",
                c.dst
            )
        };
        if q.vpc != from.vpc {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelDst,
                "routed to {}, not a port of vpc {} (SPEC 10.3)",
                q.name,
                self.vpc_name(from.vpc)
            )
        }
        if q.location != Location::Local {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelTransit,
                "routed to {}, which is {}: no transit (SPEC 10.3)",
                q.name,
                self.placed(q)
            )
        }
        let Some(v4) = v4 else {
            let f = Frame {
                ctx: *ctx,
                port: q,
                buf,
                len,
                src_mac: c.src,
                dst_mac: c.dst,
                t,
            };
            return self.tunnel_routed6(f, from);
        };
        if !self.host_may_route_from(from.host, from.vpc, v4.src) && !self.outside_to_eip(from, v4)
        {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelSrcIp,
                "source {} is no address the sending host's ports may send into vpc {} \
                 (SPEC 10.3)",
                ip(v4.src),
                self.vpc_name(from.vpc)
            )
        }
        let leads = q.allows_ip(v4.dst)
            || self
                .vpcs
                .get(from.vpc as usize)
                .and_then(|v| v.routes.lookup(v4.dst))
                == Some(RouteTarget::Port(q.id));
        if !leads && !q.src_dst_check {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelDst,
                "{} is not an address of {} and does not route to it (SPEC 10.3)",
                ip(v4.dst),
                q.name
            )
        }
        step!(
            t,
            Tunnel,
            "routed by the sending host from {} (SPEC 10.2, 10.3)",
            ip(v4.src)
        );
        let mut f = Frame {
            ctx: *ctx,
            port: q,
            buf,
            len,
            src_mac: c.src,
            dst_mac: c.dst,
            t,
        };
        self.egress(&mut f, q, v4.dst)
    }

    /// (b) from the uplink's host: an outside source (SPEC 7.3) to an EIP's target in
    /// the VNI's VPC (7.1).
    #[inline]
    fn outside_to_eip(&self, from: Sender, v4: V4) -> bool {
        self.uplink_location() == Some(Location::Remote(from.host))
            && !is_martian(v4.src)
            && self.vpc_of_addr(v4.src).is_none()
            && self.eip_target(v4.src).is_none()
            && self.eip_of(from.vpc, v4.dst).is_some()
    }

    /// (c): an EIP's outbound traffic the sending host translated, to the uplink here.
    fn tunnel_to_uplink<T: Tracer>(
        &self,
        ctx: &Ctx,
        from: Sender,
        c: &Classified,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let Some((u, up)) = self
            .uplink
            .as_ref()
            .and_then(|u| Some((u, self.port(u.port)?)))
            .filter(|(_, up)| up.location == Location::Local)
        else {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelSource,
                "from the uplink's MAC, but the uplink is not on this host (SPEC 10.3)"
            )
        };
        let Some(v4) = V4::of(c.l3) else {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelSource,
                "from the uplink's MAC but not IPv4 (SPEC 10.3)"
            )
        };
        let eip_vpc = self.eip_target(v4.src).map(|(vpc, _)| vpc);
        if eip_vpc != Some(from.vpc) || !self.host_may_send_from_eip(from.host, v4.src) {
            drop_with!(
                t,
                Tunnel,
                DropReason::TunnelSrcIp,
                "source {} is no EIP of vpc {} whose target is on the sending host (SPEC 10.3)",
                ip(v4.src),
                self.vpc_name(from.vpc)
            )
        }
        if is_martian(v4.dst) || self.vpc_of_addr(v4.dst).is_some() {
            drop_with!(
                t,
                Uplink,
                DropReason::UplinkBogusDst,
                "{} is not a global unicast address outside every VPC: never sent to the \
                 outside (SPEC 7.4)",
                ip(v4.dst)
            )
        }
        step!(
            t,
            Tunnel,
            "from EIP {}, translated by the sending host: to the uplink (SPEC 7.2, 10.2)",
            ip(v4.src)
        );
        let mut f = Frame {
            ctx: *ctx,
            port: up,
            buf,
            len,
            src_mac: c.src,
            dst_mac: c.dst,
            t,
        };
        let nh_mac = match self.uplink_next_hop(&mut f, u) {
            Ok(m) => m,
            Err(v) => return v,
        };
        f.eth_mut().set_dst(nh_mac);
        step!(
            f.t,
            Eip,
            "to next hop {} ({}) (SPEC 7.2)",
            ip(u.next_hop),
            nh_mac
        );
        Verdict::Forward(Out::Port(u.port))
    }

    /// SPEC 10.3: what came from a tunnel never goes back into one.
    #[inline(always)]
    fn split_horizon<T: Tracer>(&self, v: Verdict, t: &mut T) -> Verdict {
        let (Verdict::Forward(Out::Port(q)) | Verdict::DropAndSend(_, Out::Port(q))) = v else {
            return v;
        };
        if self.location(q) == Some(Location::Local) {
            return v;
        }
        drop_with!(
            t,
            Tunnel,
            DropReason::TunnelTransit,
            "the output, port {}, is not on this host: nothing from a tunnel goes back \
             into one (SPEC 10.3)",
            self.port(q).map_or("?", |p| p.name.as_str())
        )
    }

    /// SPEC 10.6: a frame for port `q` on another host is longer than the tunnel
    /// carries. IPv4 with DF set: dropped, and answered with ICMP "fragmentation needed"
    /// (the tunnel's inner MTU) from the ingress port's gateway, to the ingress port
    /// (within its answer budget, as every ICMP error); anything else: dropped
    /// (`mtu_exceeded`: the switch fragments nothing).
    #[cold]
    pub(super) fn too_big_for_tunnel<T: Tracer>(
        &self,
        ctx: &Ctx,
        port: &PortEntry,
        q: PortId,
        buf: &mut [u8],
        len: &mut usize,
        t: &mut T,
    ) -> Verdict {
        let max = self.tunnel_frame_max();
        let name = self.port(q).map_or("?", |p| p.name.as_str());
        let c = match classify(&buf[..*len]) {
            Ok(c) => c,
            Err(_) => drop_with!(
                t,
                Encap,
                DropReason::MtuExceeded,
                "{} bytes for {name}: longer than the tunnel's {max} (SPEC 10.6)",
                *len
            ),
        };
        // SPEC 10.6, 12.5: IPv6 is never fragmented on the way: "packet too big"
        if let (L3::Ipv6, Some(s6)) = (
            c.l3,
            self.subnets.get(port.subnet as usize).and_then(|s| s.ipv6),
        ) {
            let mtu = (max - ETHERNET_HEADER_LEN) as u32;
            buf[6..12].copy_from_slice(&port.mac.0);
            let f = Frame {
                ctx: *ctx,
                port,
                buf,
                len,
                src_mac: vpcswitch_wire::MacKey(port.mac.key()),
                dst_mac: c.dst,
                t: &mut *t,
            };
            return self.too_big6(f, s6, mtu);
        }
        let v4 = V4::of(c.l3);
        let df = v4.is_some()
            && Ipv4Packet::new_checked(&buf[ETHERNET_HEADER_LEN..*len])
                .is_ok_and(|p| p.dont_frag());
        let Some(v4) = v4.filter(|_| df) else {
            drop_with!(
                t,
                Encap,
                DropReason::MtuExceeded,
                "{} bytes for {name}: longer than the tunnel's {max}, not IPv4 with DF:                  dropped, the switch fragments nothing (SPEC 10.6)",
                *len
            )
        };
        step!(
            t,
            Encap,
            "{} bytes for {name}: longer than the tunnel's {max} (SPEC 10.6)",
            *len
        );
        // the answer goes back on the ingress port, to the port's own MAC: a routed
        // frame's source MAC is the gateway's by now
        let mtu = (max - ETHERNET_HEADER_LEN).min(usize::from(u16::MAX)) as u16;
        buf[6..12].copy_from_slice(&port.mac.0);
        let mut f = Frame {
            ctx: *ctx,
            port,
            buf,
            len,
            src_mac: vpcswitch_wire::MacKey(port.mac.key()),
            dst_mac: c.dst,
            t: &mut *t,
        };
        self.icmp_error_mtu(
            &mut f,
            self.gateway_of(port.subnet),
            v4,
            DropReason::MtuExceeded,
            (icmp::TYPE_DST_UNREACHABLE, icmp::CODE_FRAG_NEEDED),
            mtu,
        )
    }

    /// "on host h" / "local", for traces.
    fn placed(&self, p: &PortEntry) -> String {
        match p.location {
            Location::Local => "on this host".into(),
            Location::Remote(h) => {
                format!("on host {}", self.host(h).map_or("?", |h| h.name.as_str()))
            }
        }
    }

    /// SPEC 10.1, 10.4: the trace of a frame that entered here says where its output
    /// goes through a tunnel: to the remote port's host with its VNI, or the hosts a
    /// flood is replicated to.
    #[cold]
    pub(super) fn note_encap<T: Tracer>(&self, in_port: PortId, v: Verdict, t: &mut T) {
        let (Verdict::Forward(out) | Verdict::DropAndSend(_, out)) = v else {
            return;
        };
        let vni = self.vni_for(out, in_port).unwrap_or(0);
        let hosts: &[HostId] = match out {
            Out::Port(q) => {
                if let Some(Location::Remote(h)) = self.location(q) {
                    let name = self.port(q).map_or("?", |p| p.name.as_str());
                    if let Some(h) = self.host(h) {
                        t.step(
                            Stage::Encap,
                            format_args!(
                                "port {name} is on host {} ({}): encapsulate with VNI {vni} \
                                 (SPEC 10.1)",
                                h.name, h.endpoint
                            ),
                        );
                    }
                }
                return;
            }
            // the switch's own ARP request for an owner-less VIP stays on this host
            Out::VipPorts(_) if matches!(v, Verdict::DropAndSend(..)) => return,
            Out::Flood(s) => self.flood_hosts(s),
            Out::VipPorts(vip) => self.vip_hosts(vip),
        };
        if hosts.is_empty() {
            return;
        }
        let mut names = String::new();
        for h in hosts.iter().filter_map(|&h| self.host(h)) {
            let sep = if names.is_empty() { "" } else { ", " };
            let _ = write!(names, "{sep}{} ({})", h.name, h.endpoint);
        }
        t.step(
            Stage::Encap,
            format_args!("replicated once to each of {names}, with VNI {vni} (SPEC 10.4)"),
        );
    }
}
