//! The pipeline stages (SPEC 2–7). Each stage is a small function over one [`Frame`]
//! that returns a typed [`Verdict`]; [`Snapshot::process`] dispatches once per frame.
//!
//! Stage order: classify (2.1) → ingress port → VLAN (2.1) → source MAC (2.2) →
//! ARP (2.3, 2.3a, 3.x), IPv6 in a dual-stack subnet (12: its own stages in `ipv6`,
//! 9.1 without) or IPv4 source check (2.3) → DHCP in a DHCP subnet (13.1) →
//! broadcast/multicast (2.6, 4.1) →
//! L3 when sent to the gateway MAC (5.x), else L2 (4.2, 4.3) → destination check (6.1).
//! The uplink has a door of its own (7.x).
//!
//! One file per stage family, each an `impl Snapshot` block (docs/architecture.md has
//! the map of SPEC rules to files):
//! - `ingress`: ports' frames up to the L2/L3 choice (2.1–2.3, 2.6, 4.1, 9.1)
//! - `arp`: ARP from ports, VIP learning and the responder (2.3, 2.3a, 3.x)
//! - `l2`: unicast inside a subnet, VIP steering, the destination check (4.2, 4.3, 6.1)
//! - `l3`: routing (5.1–5.5)
//! - `ipv6`: IPv6 in a dual-stack subnet: source check, ND, floods, L2, routing (12)
//! - `answer`: what the switch sends instead of a dropped frame (5.2, 5.5, 5.6, 5.7)
//! - `dhcp`: the DHCP server of a subnet with DHCP on, and the rogue-server guard (13.1)
//! - `uplink`: the outside network (7.x)
//! - `tunnel`: frames from another host (10.2, 10.3), and what the trace says about
//!   outputs to other hosts (10.1, 10.4)
//!
//! This file holds what every stage shares: the per-frame context ([`Frame`]), the
//! trace macros, the side effects (the only code that changes learned state or spends
//! budgets, each checking the mode once: see [`crate::trace`]), and the entry points.

use std::fmt;
use std::net::Ipv4Addr;

use vpcswitch_wire::{
    classify, EthernetFrame, Ipv4Packet, MacKey, WireError, ETHERNET_HEADER_LEN, L3,
};

use crate::snapshot::{Budget, PortEntry};
use crate::{
    Ctx, DropReason, Out, PortId, Snapshot, Stage, Trace, Tracer, Verdict, VipCell, VipId,
};

/// Records a step, then the drop verdict, and returns the drop from the enclosing stage.
macro_rules! drop_with {
    ($t:expr, $stage:ident, $r:expr, $($fmt:tt)*) => {{
        let r: DropReason = $r;
        if T::ON {
            $t.step(Stage::$stage, format_args!($($fmt)*));
            $t.step(Stage::Verdict, format_args!("drop: {}", r.name()));
        }
        return Verdict::Drop(r);
    }};
}

/// Records a step (compiled away when tracing is off).
macro_rules! step {
    ($t:expr, $stage:ident, $($fmt:tt)*) => {
        if T::ON {
            $t.step(Stage::$stage, format_args!($($fmt)*));
        }
    };
}

/// [`drop_with!`] as a function, for a stage that returns its verdict in a `Result`.
#[inline(always)]
fn dropped<T: Tracer>(
    t: &mut T,
    stage: Stage,
    r: DropReason,
    detail: fmt::Arguments<'_>,
) -> Verdict {
    if T::ON {
        t.step(stage, detail);
        t.step(Stage::Verdict, format_args!("drop: {}", r.name()));
    }
    Verdict::Drop(r)
}

mod answer;
mod arp;
mod dhcp;
mod ingress;
mod ipv6;
mod l2;
mod l3;
mod tunnel;
mod uplink;

/// One frame on its way through the pipeline: what every stage needs, in one place.
///
/// The entry stages take it by value and lend it (`&mut`) only to stages inlined into
/// them, or hand it on by value: a frame whose address never leaves the hot path (L2)
/// stays in registers, as separate arguments did.
pub(crate) struct Frame<'a, T> {
    /// the runtime's context: the time, checksum offload
    pub ctx: Ctx,
    /// the ingress port
    pub port: &'a PortEntry,
    /// the whole packet buffer: answers the switch makes may be longer than the frame
    pub buf: &'a mut [u8],
    /// the frame's length in `buf` (classified: at least its headers)
    pub len: &'a mut usize,
    /// Ethernet source
    pub src_mac: MacKey,
    /// Ethernet destination
    pub dst_mac: MacKey,
    /// where decisions are recorded
    pub t: &'a mut T,
}

impl<T> Frame<'_, T> {
    /// The frame, for a stage out of line: a fresh value made field by field, so that
    /// the one it is made from never has its address taken and stays in registers on
    /// the paths that do not leave (the L2 hot path).
    #[inline(always)]
    pub fn hand_on(self) -> Self {
        Frame {
            ctx: self.ctx,
            port: self.port,
            buf: self.buf,
            len: self.len,
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            t: self.t,
        }
    }
    /// The frame's bytes.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..*self.len]
    }
    /// The Ethernet header.
    #[inline(always)]
    pub fn eth(&self) -> EthernetFrame<&[u8]> {
        EthernetFrame::new_unchecked(self.bytes())
    }
    /// The Ethernet header, to rewrite (a view of the whole buffer, which saves a
    /// bounds check: only the header's setters are used on it).
    #[inline(always)]
    pub fn eth_mut(&mut self) -> EthernetFrame<&mut [u8]> {
        EthernetFrame::new_unchecked(&mut *self.buf)
    }
    /// The IPv4 packet (only after the classifier found one).
    #[inline(always)]
    pub fn ipv4(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(&self.buf[ETHERNET_HEADER_LEN..*self.len])
    }
    /// The IPv4 packet's bytes, to rewrite (only after the classifier found one).
    #[inline(always)]
    pub fn ipv4_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[ETHERNET_HEADER_LEN..*self.len]
    }
}

/// The IPv4 fields the stages use.
#[derive(Clone, Copy)]
struct V4 {
    src: u32,
    dst: u32,
    proto: u8,
    ttl: u8,
    /// UDP 68 to 67 from 0.0.0.0, not a fragment (SPEC 2.3)
    dhcp_client: bool,
}

impl V4 {
    /// The classifier's IPv4 summary; `None` for anything but IPv4.
    #[inline(always)]
    fn of(l3: L3) -> Option<V4> {
        match l3 {
            L3::Ipv4 {
                src,
                dst,
                proto,
                ttl,
                dhcp_client,
                ..
            } => Some(V4 {
                src,
                dst,
                proto,
                ttl,
                dhcp_client,
            }),
            _ => None,
        }
    }
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

fn ip(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v)
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
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
    ///
    /// `in_port` is a port on this host (frames from other hosts go through
    /// [`Self::process_tunnel`]). An output on another host is the runtime's to send
    /// through a tunnel (see [`crate::Location`]); with a recording tracer, the trace
    /// says so (an `encap` step).
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
            Err(e) => drop_with!(t, Parse, wire_reason(e), "{flen} bytes: {e}"),
        };
        step!(t, Parse, "{} > {} {:?}", c.src, c.dst, c.l3);
        let Some(port) = self.port(in_port) else {
            drop_with!(
                t,
                Ingress,
                DropReason::UnknownPort,
                "port id {in_port} is not configured"
            )
        };
        let f = Frame {
            ctx: *ctx,
            port,
            buf,
            len,
            src_mac: c.src,
            dst_mac: c.dst,
            t: &mut *t,
        };
        let v = if port.is_uplink {
            self.uplink_ingress(f.hand_on(), c.l3)
        } else {
            self.ingress(f, c.l3)
        };
        // SPEC 11.3: a port on a host that is down (one branch while none is)
        if let Verdict::Forward(Out::Port(q)) = v {
            if let Some(h) = self.on_down_host(q) {
                drop_with!(
                    t,
                    Encap,
                    DropReason::HostDown,
                    "port {} is on host {}, which is down (its lease expired, SPEC 11.3)",
                    self.port(q).map_or("?", |p| p.name.as_str()),
                    self.host(h).map_or("?", |h| h.name.as_str())
                )
            }
        }
        // SPEC 10.6: too long for the tunnel to the port's host (one compare for
        // every frame that fits)
        let max = self.tunnel_frame_max();
        if *len > max && max != 0 && !ctx.gso {
            if let Verdict::Forward(Out::Port(q)) = v {
                if matches!(self.location(q), Some(crate::Location::Remote(_))) {
                    return self.too_big_for_tunnel(ctx, port, q, buf, len, t);
                }
            }
        }
        if T::ON {
            self.note_encap(in_port, v, t);
        }
        v
    }

    /// Traces one frame: a dry run of [`Self::process`] (no learned state, budget or
    /// timing changes) that records every step.
    pub fn trace(&self, now_ns: u64, in_port: PortId, frame: &[u8]) -> TraceResult {
        self.dry_run(frame, |buf, len, t| {
            self.process(&Ctx::at(now_ns), in_port, buf, len, t)
        })
    }

    /// A dry run of one frame through `run` (the pipeline given the buffer, the frame's
    /// length and a recording tracer), with its verdict in words as the last step.
    fn dry_run(
        &self,
        frame: &[u8],
        run: impl FnOnce(&mut [u8], &mut usize, &mut Trace) -> Verdict,
    ) -> TraceResult {
        let mut buf = vec![0u8; frame.len().max(2048)];
        buf[..frame.len()].copy_from_slice(frame);
        let mut len = frame.len();
        let mut t = Trace::default();
        let verdict = run(&mut buf, &mut len, &mut t);
        let output = match verdict {
            Verdict::Drop(_) => Vec::new(),
            _ => buf[..len].to_vec(),
        };
        if !matches!(verdict, Verdict::Drop(_)) {
            t.step(Stage::Verdict, format_args!("{}", self.describe(verdict)));
        }
        TraceResult {
            verdict,
            trace: t,
            output,
        }
    }

    /// A verdict in words, as traces and `ctl trace` show it: "forward to port a",
    /// "drop: reason", "drop: reason; send the switch's answer to port a".
    pub fn describe(&self, v: Verdict) -> String {
        match v {
            Verdict::Forward(o) => format!("forward to {}", self.out_name(o)),
            Verdict::Drop(r) => format!("drop: {r}"),
            Verdict::DropAndSend(r, o) => format!(
                "drop: {r}; send the switch's answer to {}",
                self.out_name(o)
            ),
        }
    }

    /// A readable name for an output.
    pub fn out_name(&self, o: Out) -> String {
        match o {
            Out::Port(p) => match self.location(p) {
                Some(crate::Location::Remote(h)) => format!(
                    "port {} on host {}",
                    self.port(p).map_or("?", |p| p.name.as_str()),
                    self.host(h).map_or("?", |h| h.name.as_str())
                ),
                _ => format!("port {}", self.port(p).map_or("?", |p| p.name.as_str())),
            },
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

    fn vpc_name(&self, vpc: u32) -> &str {
        self.vpcs.get(vpc as usize).map_or("?", |v| v.name.as_str())
    }
}

/// Side effects: the only code in the pipeline that changes learned state, spends a
/// budget or times anything. Each checks the mode once; a dry run
/// ([`Tracer::DRY_RUN`]) changes nothing and is granted every budget.
impl Snapshot {
    /// Spends `n` tokens of the ingress port's `budget` (see [`Snapshot::take_n`]).
    #[inline(always)]
    fn spend<T: Tracer>(&self, f: &Frame<'_, T>, budget: Budget, n: u32) -> bool {
        T::DRY_RUN || self.take_n(f.port.id, budget, f.ctx.now_ns, n)
    }

    /// SPEC 3.1: the ingress port becomes the owner of VIP `v`.
    #[inline]
    fn claim_vip<T: Tracer>(&self, f: &Frame<'_, T>, v: VipId) {
        if !T::DRY_RUN && self.vip_cell(v).claim(f.port.id, f.ctx.now_ns) {
            self.vip_bell().ring();
        }
    }

    /// A frame for a VIP goes to its owner: the failover timing (see
    /// [`VipCell::first_packet_ns`]).
    #[inline(always)]
    fn sent_to_owner<T: Tracer>(&self, cell: &VipCell) {
        if !T::DRY_RUN {
            cell.sent_to_owner();
        }
    }

    /// SPEC 7.2: the next hop's MAC, learned from its ARP on the uplink.
    #[inline]
    fn learn_next_hop_mac<T: Tracer>(&self, mac: MacKey) {
        if !T::DRY_RUN {
            self.learn_next_hop(mac);
        }
    }
}
