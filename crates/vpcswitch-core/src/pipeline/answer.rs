//! What the switch writes into a frame's buffer and sends itself: ARP replies (SPEC
//! 3.4, 7.1), the echo reply of a gateway (5.6), ICMP errors (5.5, 5.7) and ARP requests
//! (5.2 for an owner-less VIP, 7.2 for the next hop). Answers in place of a dropped
//! frame spend the ingress port's answer budget (5.5: no amplifier).

use std::fmt;
use std::net::Ipv4Addr;

use vpcswitch_wire::arp::{self, ArpInfo};
use vpcswitch_wire::{icmp, IpProtocol, MacAddr};

use super::{dropped, ip, is_host_source, is_multicast_ip, Frame, LIMITED_BROADCAST, V4};
use crate::snapshot::Budget;
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict, VipId};

impl Snapshot {
    /// SPEC 3.4, 7.1: the ARP request becomes the switch's reply (`mac` is-at the
    /// target), sent back on the ingress port; `detail` says who answered.
    /// (Always inlined: `detail` then costs nothing when tracing is off.)
    #[inline(always)]
    pub(super) fn arp_reply<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        a: &ArpInfo,
        mac: MacAddr,
        detail: fmt::Arguments<'_>,
    ) -> Verdict {
        let n = arp::emit_reply(f.buf, a, mac);
        if n == 0 {
            drop_with!(
                f.t,
                ArpResponder,
                DropReason::Truncated,
                "buffer too small for a reply"
            )
        }
        *f.len = n;
        if T::ON {
            f.t.step(Stage::ArpResponder, detail);
        }
        Verdict::Forward(Out::Port(f.port.id))
    }

    /// SPEC 5.6: a ping to a gateway of the VPC is answered; anything else to it is
    /// dropped.
    pub(super) fn gateway_answer<T: Tracer>(&self, f: &mut Frame<'_, T>, v4: V4) -> Verdict {
        if v4.proto == IpProtocol::ICMP && icmp::is_echo_request(f.bytes()) {
            let gw = ip(v4.dst);
            let len = *f.len;
            icmp::echo_reply_in_place(&mut f.buf[..len], self.gateway_mac, gw);
            step!(
                f.t,
                Gateway,
                "echo request to gateway {gw}: answered (SPEC 5.6)"
            );
            return Verdict::Forward(Out::Port(f.port.id));
        }
        drop_with!(
            f.t,
            Gateway,
            DropReason::ToGateway,
            "{} is a gateway; only ICMP echo is answered",
            ip(v4.dst)
        )
    }

    /// SPEC 5.5 / 5.7: drop for `reason`, and answer the sender with the ICMP error
    /// `(type, code)` from `(from_mac, from_ip)` (a gateway; on the uplink, the EIP),
    /// within the answer budget. No error about an ICMP error, nor any RFC 1812
    /// 4.3.2.7 and RFC 1122 3.2.2 leave out.
    pub(super) fn icmp_error<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        from: (MacAddr, Ipv4Addr),
        v4: V4,
        reason: DropReason,
        kind: (u8, u8),
    ) -> Verdict {
        self.icmp_error_mtu(f, from, v4, reason, kind, 0)
    }

    /// [`Self::icmp_error`] with the next-hop MTU of a "fragmentation needed" (SPEC
    /// 10.6; 0 for the other errors).
    pub(super) fn icmp_error_mtu<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        (from_mac, from_ip): (MacAddr, Ipv4Addr),
        v4: V4,
        reason: DropReason,
        (ty, code): (u8, u8),
        mtu: u16,
    ) -> Verdict {
        if icmp::is_error(&f.ipv4()) {
            drop_with!(f.t, Icmp, reason, "no ICMP error about an ICMP error")
        }
        // RFC 1812 4.3.2.7, RFC 1122 3.2.2: no error about a non-first fragment, a
        // packet to a broadcast or multicast address, or from an address that is not
        // a unique host (0/8, 127/8, 224/4, 240/4)
        let frag = f.ipv4().frag_offset();
        if frag != 0 {
            drop_with!(
                f.t,
                Icmp,
                reason,
                "no ICMP error about a non-first fragment (offset {frag})"
            )
        }
        if v4.dst == LIMITED_BROADCAST || is_multicast_ip(v4.dst) {
            drop_with!(
                f.t,
                Icmp,
                reason,
                "no ICMP error about a packet to broadcast/multicast {}",
                ip(v4.dst)
            )
        }
        if !is_host_source(v4.src) {
            drop_with!(
                f.t,
                Icmp,
                reason,
                "no ICMP error to {}: not a host address",
                ip(v4.src)
            )
        }
        let out = Out::Port(f.port.id);
        self.drop_and_answer(
            f,
            reason,
            out,
            |b, n| icmp::error_in_place(b, n, from_mac, from_ip, (ty, code), mtu),
            Stage::Icmp,
            format_args!(
                "{}: ICMP type {ty} code {code} from {from_ip} to the sender (SPEC 5.5/5.7)",
                reason.name()
            ),
        )
    }

    /// SPEC 5.2: a VIP without owner: drop, and ARP for it on its bound ports.
    pub(super) fn arp_for_vip<T: Tracer>(&self, f: &mut Frame<'_, T>, v: VipId) -> Verdict {
        let vip = &self.vips[v as usize];
        let (gw_mac, gw, ip) = (
            self.gateway_mac,
            self.subnets[vip.subnet as usize].gateway,
            vip.ip,
        );
        self.drop_and_answer(
            f,
            DropReason::VipNoOwner,
            Out::VipPorts(v),
            |b, _| arp::emit_request(b, gw_mac, gw, ip),
            Stage::L3,
            format_args!(
                "vip {} has no owner: dropped, ARP request sent to its bound ports (SPEC 5.2)",
                vip.name
            ),
        )
    }

    /// Drops the frame for `reason` and sends, to `out`, what `emit` writes into its
    /// buffer instead (`emit` gets the buffer and the frame length and returns the new
    /// length, 0 if it cannot); `detail` says what was sent. Within the ingress port's
    /// answer budget (SPEC 5.5): over budget, a plain drop.
    /// (Always inlined: `detail` then costs nothing when tracing is off.)
    #[inline(always)]
    pub(super) fn drop_and_answer<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        reason: DropReason,
        out: Out,
        emit: impl FnOnce(&mut [u8], usize) -> usize,
        stage: Stage,
        detail: fmt::Arguments<'_>,
    ) -> Verdict {
        if !self.spend(f, Budget::Answers, 1) {
            return dropped(
                f.t,
                Stage::Answer,
                reason,
                format_args!("over the answer budget of {}: no answer", f.port.name),
            );
        }
        let n = emit(f.buf, *f.len);
        if n == 0 {
            drop_with!(f.t, Answer, reason, "buffer too small for the answer")
        }
        *f.len = n;
        if T::ON {
            f.t.step(stage, detail);
        }
        Verdict::DropAndSend(reason, out)
    }
}
