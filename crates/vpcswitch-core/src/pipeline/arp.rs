//! ARP from a port: SPEC 2.3 (sender checks), 2.3a (foreign claims), 3.1 (VIP
//! learning), 3.3 (gratuitous ARP delivered), 3.4 (the responder), 3.5 (announcements
//! and probes never answered). The budget and opcode check every ARP passes, the
//! uplink's too (7.3), is [`Snapshot::arp_admit`].

use vpcswitch_wire::arp::{ArpInfo, OP_REPLY, OP_REQUEST};

use super::{dropped, ip, Frame};
use crate::snapshot::{Addr, Budget};
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict};

impl Snapshot {
    /// Every ARP from a port or the uplink: within the port's `budget`, and a request
    /// or a reply. `Err` is the drop verdict.
    pub(super) fn arp_admit<T: Tracer>(
        &self,
        f: &mut Frame<'_, T>,
        a: &ArpInfo,
        budget: Budget,
    ) -> Result<(), Verdict> {
        if !self.spend(f, budget, 1) {
            return Err(dropped(
                f.t,
                Stage::Arp,
                DropReason::ArpRateLimited,
                format_args!("over the {budget:?} ARP budget of {}", f.port.name),
            ));
        }
        if a.op != OP_REQUEST && a.op != OP_REPLY {
            return Err(dropped(
                f.t,
                Stage::Arp,
                DropReason::ArpUnsupportedOp,
                format_args!("opcode {}", a.op),
            ));
        }
        Ok(())
    }

    /// SPEC 2.3, 2.3a, 3.1, 3.3–3.5.
    pub(super) fn arp_stage<T: Tracer>(&self, mut f: Frame<'_, T>, a: ArpInfo) -> Verdict {
        let p = f.port;
        if let Err(v) = self.arp_admit(&mut f, &a, Budget::Arp) {
            return v;
        }
        if p.src_dst_check && f.src_mac != a.sha {
            drop_with!(
                f.t,
                Arp,
                DropReason::ArpSenderMacMismatch,
                "sender MAC {} != Ethernet source {} (SPEC 2.3)",
                a.sha,
                f.src_mac
            )
        }
        let claimed = if a.spa != 0 {
            self.addr(p.vpc, a.spa)
        } else {
            None
        };
        match claimed {
            Some(Addr::Port(q)) if q != p.id => {
                drop_with!(
                    f.t,
                    Arp,
                    DropReason::ArpClaimsForeignIp,
                    "sender IP {} is a fixed IP of another port (SPEC 2.3a)",
                    ip(a.spa)
                )
            }
            Some(Addr::Gateway(_)) => {
                drop_with!(
                    f.t,
                    Arp,
                    DropReason::ArpClaimsForeignIp,
                    "sender IP {} is a gateway address (SPEC 2.3a)",
                    ip(a.spa)
                )
            }
            Some(Addr::Vip(v)) if !p.vips.contains(&v) => {
                drop_with!(
                    f.t,
                    Arp,
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
                f.t,
                Arp,
                DropReason::SpoofedArpSenderIp,
                "sender IP {} is not in the allowed set of {} (SPEC 2.3)",
                ip(a.spa),
                p.name
            )
        }
        step!(
            f.t,
            Arp,
            "{} {} asks/tells {} (sender ok, SPEC 2.3)",
            op_name(&a),
            ip(a.spa),
            ip(a.tpa)
        );

        // SPEC 3.1: announcements and replies for a VIP move its owner.
        let is_claim =
            (a.op == OP_REQUEST && a.is_announcement()) || (a.op == OP_REPLY && a.spa != 0);
        if let (true, Some(Addr::Vip(v))) = (is_claim, claimed) {
            step!(
                f.t,
                VipLearn,
                "{} {} the owner of vip {} (was {}) (SPEC 3.1)",
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

        if a.op == OP_REPLY {
            if f.dst_mac.is_multicast() {
                step!(
                    f.t,
                    Arp,
                    "gratuitous reply: every other port of the subnet (SPEC 3.3)"
                );
                return self.flood(&mut f);
            }
            return match self.l2_dest(p, f.dst_mac) {
                Ok(q) => {
                    step!(f.t, L2, "reply to {} (SPEC 4.2)", q.name);
                    Verdict::Forward(Out::Port(q.id))
                }
                Err(r) => drop_with!(f.t, L2, r, "no port of the subnet has MAC {}", f.dst_mac),
            };
        }
        if a.is_announcement() {
            step!(
                f.t,
                Arp,
                "announcement: not answered (SPEC 3.5), delivered to the subnet (SPEC 3.3)"
            );
            return self.flood(&mut f);
        }
        self.arp_request(f, a)
    }

    /// SPEC 3.4, 3.5: a request that is not an announcement: answered by the switch
    /// for a known address of the subnet, sent to a VIP's bound ports while it has no
    /// owner, flooded otherwise.
    fn arp_request<T: Tracer>(&self, mut f: Frame<'_, T>, a: ArpInfo) -> Verdict {
        let p = f.port;
        let Some(s) = self.subnets.get(p.subnet as usize) else {
            drop_with!(
                f.t,
                Arp,
                DropReason::ArpTargetOutsideSubnet,
                "port has no subnet"
            )
        };
        if !s.cidr.contains(ip(a.tpa)) {
            drop_with!(
                f.t,
                Arp,
                DropReason::ArpTargetOutsideSubnet,
                "{} is outside subnet {} ({})",
                ip(a.tpa),
                s.name,
                s.cidr
            )
        }
        if a.is_probe() && p.allows_ip(a.tpa) {
            step!(
                f.t,
                Arp,
                "probe for the sender's own {}: not answered (SPEC 3.5), delivered to the subnet",
                ip(a.tpa)
            );
            return self.flood(&mut f);
        }
        let answer = match self.addr(p.vpc, a.tpa) {
            Some(Addr::Gateway(_)) => Some((self.gateway_mac, "the gateway")),
            Some(Addr::Port(q)) => self.port(q).map(|q| (q.mac, q.name.as_str())),
            Some(Addr::Vip(v)) => match self.vip_cell(v).owner().and_then(|o| self.port(o)) {
                Some(o) => Some((o.mac, o.name.as_str())),
                None => {
                    step!(
                        f.t,
                        ArpResponder,
                        "vip {} has no owner: request goes to its bound ports only (SPEC 3.4)",
                        self.vips[v as usize].name
                    );
                    return Verdict::Forward(Out::VipPorts(v));
                }
            },
            None => None,
        };
        match answer {
            Some((mac, who)) => self.arp_reply(
                &mut f,
                &a,
                mac,
                format_args!(
                    "{} is-at {} ({}), answered by the switch (SPEC 3.4)",
                    ip(a.tpa),
                    mac,
                    who
                ),
            ),
            None => {
                step!(
                    f.t,
                    ArpResponder,
                    "{} unknown: flooded to subnet {} (SPEC 3.4)",
                    ip(a.tpa),
                    s.name
                );
                self.flood(&mut f)
            }
        }
    }
}

/// "request" or "reply" (the only opcodes past [`Snapshot::arp_admit`]).
pub(super) fn op_name(a: &ArpInfo) -> &'static str {
    if a.op == OP_REQUEST {
        "request"
    } else {
        "reply"
    }
}
