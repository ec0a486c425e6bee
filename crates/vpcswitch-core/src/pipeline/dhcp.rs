//! SPEC 13.1: DHCP in a subnet with `dhcp = true`. The switch is the subnet's only
//! DHCPv4 server: it answers a port's client messages itself, from the gateway's MAC
//! and address, with the port's primary fixed IP and the subnet's options, and drops
//! DHCP server packets (UDP source port 67) from ports.
//!
//! Security intent: the address a port gets depends on the port alone (not on the
//! `chaddr` or client identifier the guest writes); a client message is consumed here,
//! whatever its destination, so no guest sees another's DHCP (or a `0.0.0.0` source,
//! SPEC 2.3); a guest cannot answer for the switch. Answers spend the port's answer
//! budget (SPEC 5.5: no amplifier). The answer is the switch's own frame: the verdict is
//! `DropAndSend`, so the runtime clears the request's offload metadata (SPEC 2.5).

use vpcswitch_wire::dhcp::{self, ClientKind, ClientMsg, ReplyKind, Server};

use super::{ip, Frame};
use crate::{DropReason, Out, Snapshot, Stage, Tracer, Verdict};

/// The UDP ports `(source, destination)` the DHCP stage takes: a server's or relay's
/// (source 67), or a client's (68 to 67).
#[inline(always)]
pub(super) fn is_dhcp((sport, dport): (u16, u16)) -> bool {
    sport == dhcp::SERVER_PORT || (sport, dport) == (dhcp::CLIENT_PORT, dhcp::SERVER_PORT)
}

/// What the server decided about one client message (the stage's typed verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// answer with this reply, for this address (host order; 0 for an INFORM's ACK)
    Reply(ReplyKind, u32),
    /// consume without an answer, for this reason (in words)
    Ignore(&'static str),
}

/// The server's decision for `m` from a port whose primary fixed IP is `primary`, in a
/// subnet whose gateway (the server identifier) is `server_ip`.
fn decide(m: &ClientMsg, primary: u32, server_ip: u32) -> Decision {
    match m.kind {
        ClientKind::Discover => Decision::Reply(ReplyKind::Offer, primary),
        ClientKind::Request => match m.server_id {
            // SELECTING a server that is not this one (RFC 2131 4.3.2)
            Some(s) if s != server_ip => Decision::Ignore("a REQUEST for another server"),
            _ if m.requested_addr() == Some(primary) => Decision::Reply(ReplyKind::Ack, primary),
            _ => Decision::Reply(ReplyKind::Nak, 0),
        },
        ClientKind::Inform => Decision::Reply(ReplyKind::Ack, 0),
        ClientKind::Decline => Decision::Ignore("a DECLINE: the address stays the port's"),
        ClientKind::Release => Decision::Ignore("a RELEASE: the address stays the port's"),
        ClientKind::Other(_) => Decision::Ignore("not a client message type"),
    }
}

impl Snapshot {
    /// SPEC 13.1: a DHCP packet (see [`is_dhcp`]) from a port of a DHCP subnet, with its
    /// UDP `(source, destination)` ports: a rogue server's packet dropped, a client
    /// message consumed and maybe answered.
    #[cold]
    #[inline(never)]
    pub(super) fn dhcp_stage<T: Tracer>(
        &self,
        mut f: Frame<'_, T>,
        (sport, dport): (u16, u16),
    ) -> Verdict {
        if sport == dhcp::SERVER_PORT {
            drop_with!(
                f.t,
                Dhcp,
                DropReason::RogueDhcpServer,
                "UDP {sport} to {dport} from {}: only the switch serves DHCP in subnet {} \
                 (SPEC 13.1)",
                f.port.name,
                self.subnet_name(f.port)
            )
        }
        self.dhcp_answer(&mut f)
    }

    /// SPEC 13.1: a client message, consumed: answered or ignored.
    fn dhcp_answer<T: Tracer>(&self, f: &mut Frame<'_, T>) -> Verdict {
        let reason = DropReason::DhcpClient;
        let m = match dhcp::parse_client(f.bytes()) {
            Ok(m) => m,
            Err(e) => drop_with!(f.t, Dhcp, reason, "UDP 68 to 67: {e}: consumed"),
        };
        let p = f.port;
        let Some(s) = self.subnets.get(p.subnet as usize) else {
            drop_with!(f.t, Dhcp, reason, "port {} has no subnet", p.name)
        };
        let (Some(server), Some(&primary)) = (s.dhcp.as_deref(), p.ips.first()) else {
            drop_with!(f.t, Dhcp, reason, "no DHCP server for port {}", p.name)
        };
        let (kind, yiaddr) = match decide(&m, primary, s.gateway) {
            Decision::Reply(k, a) => (k, a),
            Decision::Ignore(why) => drop_with!(
                f.t,
                Dhcp,
                reason,
                "{} xid {:#010x}: {why}: consumed, no answer",
                m.kind.name(),
                m.xid
            ),
        };
        let srv = Server {
            mac: self.gateway_mac,
            ip: s.gateway,
        };
        let client_mac = f.src_mac.mac();
        let lease = server.lease(s.gateway);
        self.drop_and_answer(
            f,
            reason,
            Out::Port(p.id),
            |b, _| dhcp::emit_reply(b, kind, srv, client_mac, &m, yiaddr, &lease),
            Stage::Dhcp,
            format_args!(
                "{} xid {:#010x} from {}: {kind:?} of {} to {} (SPEC 13.1)",
                m.kind.name(),
                m.xid,
                p.name,
                ip(yiaddr),
                p.name
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcswitch_wire::MacAddr;

    fn msg(
        kind: ClientKind,
        ciaddr: u32,
        requested: Option<u32>,
        server: Option<u32>,
    ) -> ClientMsg {
        ClientMsg {
            kind,
            xid: 1,
            secs: 0,
            chaddr: MacAddr([2, 0, 0, 0, 0, 9]),
            ciaddr,
            requested,
            server_id: server,
            broadcast: false,
        }
    }

    const ME: u32 = 0x0a00_010b;
    const GW: u32 = 0x0a00_0101;

    #[test]
    fn spec13_1_decisions() {
        use ClientKind::*;
        use Decision::*;
        assert_eq!(
            decide(&msg(Discover, 0, None, None), ME, GW),
            Reply(ReplyKind::Offer, ME)
        );
        assert_eq!(
            decide(&msg(Discover, 0, Some(ME + 1), None), ME, GW),
            Reply(ReplyKind::Offer, ME)
        );
        assert_eq!(
            decide(&msg(Request, 0, Some(ME), Some(GW)), ME, GW),
            Reply(ReplyKind::Ack, ME)
        );
        assert_eq!(
            decide(&msg(Request, ME, None, None), ME, GW),
            Reply(ReplyKind::Ack, ME)
        );
        assert_eq!(
            decide(&msg(Request, 0, Some(ME + 1), None), ME, GW),
            Reply(ReplyKind::Nak, 0)
        );
        assert_eq!(
            decide(&msg(Request, ME + 1, None, None), ME, GW),
            Reply(ReplyKind::Nak, 0)
        );
        assert_eq!(
            decide(&msg(Request, 0, None, None), ME, GW),
            Reply(ReplyKind::Nak, 0)
        );
        assert!(matches!(
            decide(&msg(Request, 0, Some(ME), Some(GW + 5)), ME, GW),
            Ignore(_)
        ));
        assert_eq!(
            decide(&msg(Inform, ME, None, None), ME, GW),
            Reply(ReplyKind::Ack, 0)
        );
        for k in [Decline, Release, Other(2)] {
            assert!(matches!(
                decide(&msg(k, 0, Some(ME), None), ME, GW),
                Ignore(_)
            ));
        }
    }
}
