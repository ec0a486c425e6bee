//! Unicast inside a subnet: SPEC 4.2 (to a port's MAC), 4.3 (VIP steering), and the
//! destination check every delivered IPv4 frame passes, switched or routed (6.1).

use std::fmt;

use vpcswitch_wire::MacKey;

use super::{ip, Frame, V4};
use crate::snapshot::PortEntry;
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict, VipId};

impl Snapshot {
    /// SPEC 4.2: the port of subnet `p.subnet` that owns `mac`.
    #[inline(always)]
    pub(super) fn l2_dest(&self, p: &PortEntry, mac: MacKey) -> Result<&PortEntry, DropReason> {
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
    pub(super) fn l2_ipv4<T: Tracer>(&self, f: &mut Frame<'_, T>, v4: V4) -> Verdict {
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
        // The fast path, to the port's primary fixed IP: a fixed IP is never a VIP
        // (SPEC 1), so no steering (4.3), and it is in the allowed set (6.1).
        if q.ips.first() == Some(&v4.dst) {
            step!(f.t, L2, "to {} (SPEC 4.2)", q.name);
            step!(
                f.t,
                DstCheck,
                "{} is the primary fixed IP of {}: delivered (SPEC 6.1)",
                ip(v4.dst),
                q.name
            );
            return Verdict::Forward(Out::Port(q.id));
        }
        let mut dest = q;
        // SPEC 4.3: VIP steering, only for ports bound to the VIP.
        for &v in q.vips.iter() {
            if self.vips[v as usize].ip == v4.dst && self.vips[v as usize].ip6.is_none() {
                dest = self.steer(f, q, v, ip(v4.dst));
                break;
            }
        }
        step!(f.t, L2, "to {} (SPEC 4.2)", dest.name);
        self.egress(f, dest, v4.dst)
    }

    /// SPEC 4.3, 12.4: a frame for VIP `v` sent to the MAC of `q`, a port bound to
    /// it, goes to the VIP's current owner, its destination MAC rewritten to the
    /// owner's, unless the owner is `q` or the sender. Returns the port it goes to.
    #[inline(always)]
    pub(super) fn steer<'s, T: Tracer>(
        &'s self,
        f: &mut Frame<'_, T>,
        q: &'s PortEntry,
        v: VipId,
        dst: impl fmt::Display,
    ) -> &'s PortEntry {
        let p = f.port;
        let cell = self.vip_cell(v);
        let Some(o) = cell.owner().and_then(|o| self.port(o)) else {
            return q;
        };
        if o.id != p.id {
            self.sent_to_owner::<T>(cell);
        }
        if o.id == q.id || o.id == p.id {
            return q;
        }
        f.eth_mut().set_dst(o.mac);
        step!(
            f.t,
            VipSteer,
            "{} is vip {}, owned by {} not {}: MAC rewritten to {} (SPEC 4.3)",
            dst,
            self.vips[v as usize].name,
            o.name,
            q.name,
            o.mac
        );
        o
    }

    /// SPEC 6.1 on egress port `q`.
    #[inline(always)]
    pub(super) fn egress<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        q: &PortEntry,
        dst: u32,
    ) -> Verdict {
        if q.src_dst_check && !q.allows_ip(dst) {
            drop_with!(
                f.t,
                DstCheck,
                DropReason::DstCheck,
                "{} is not in the allowed set of {} (SPEC 6.1)",
                ip(dst),
                q.name
            )
        }
        step!(
            f.t,
            DstCheck,
            "{} delivered to {}{}",
            ip(dst),
            q.name,
            if q.src_dst_check { "" } else { " (check off)" }
        );
        Verdict::Forward(Out::Port(q.id))
    }
}
