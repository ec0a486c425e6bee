//! DHCPv4 (SPEC 13.1): the client messages the switch's DHCP server reads, and the
//! OFFER, ACK and NAK it writes, through `smoltcp::wire::{DhcpPacket, DhcpRepr}` (no
//! allocation: the options the switch adds are borrowed slices, see [`Lease`]).
//!
//! Not on the forwarding path: only frames a DHCP subnet's ports send to UDP port 67
//! come here ([`udp_ports`] finds them).

use smoltcp::wire::{
    DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, Ipv4Address,
};

use crate::checksum;
use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::ipv4::{IpProtocol, IPV4_MIN_HEADER_LEN};
use crate::MacAddr;

/// The DHCP server's UDP port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// The shortest DHCP message the switch sends (RFC 1542 2.1: a BOOTP message is at
/// least 300 bytes; some clients drop shorter ones).
pub const MIN_MESSAGE_LEN: usize = 300;

/// Option codes the switch writes beyond smoltcp's typed ones.
mod opt {
    pub const DNS: u8 = 6;
    pub const DOMAIN: u8 = 15;
    pub const MTU: u8 = 26;
    pub const RENEWAL: u8 = 58;
    pub const REBINDING: u8 = 59;
    pub const CLASSLESS_ROUTES: u8 = 121;
}

/// The UDP ports `(source, destination)` of an IPv4 frame, when it is UDP, not a
/// fragment after the first, and long enough to hold them; `None` otherwise. The frame
/// must have passed [`crate::classify`] (a checked IPv4 header).
#[inline]
pub fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let h = ip.first_chunk::<IPV4_MIN_HEADER_LEN>()?;
    if h[9] != IpProtocol::UDP || u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return None;
    }
    let hl = usize::from(h[0] & 0x0f) * 4;
    let p = ip.get(hl..hl + 4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// DHCPDISCOVER
    Discover,
    /// DHCPREQUEST
    Request,
    /// DHCPDECLINE
    Decline,
    /// DHCPRELEASE
    Release,
    /// DHCPINFORM
    Inform,
    /// any other message type (a server's, or unknown)
    Other(u8),
}

impl ClientKind {
    /// The name, as traces show it.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Discover => "DISCOVER",
            ClientKind::Request => "REQUEST",
            ClientKind::Decline => "DECLINE",
            ClientKind::Release => "RELEASE",
            ClientKind::Inform => "INFORM",
            ClientKind::Other(_) => "other",
        }
    }
}

/// The fields of a client message the server uses (addresses host order, 0 for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMsg {
    /// the message type
    pub kind: ClientKind,
    /// `xid`
    pub xid: u32,
    /// `secs`
    pub secs: u16,
    /// `chaddr`
    pub chaddr: MacAddr,
    /// `ciaddr`
    pub ciaddr: u32,
    /// option 50 (requested IP address)
    pub requested: Option<u32>,
    /// option 54 (server identifier)
    pub server_id: Option<u32>,
    /// the BROADCAST flag
    pub broadcast: bool,
}

impl ClientMsg {
    /// The address a REQUEST asks for: option 50, else `ciaddr` (RENEWING and
    /// REBINDING clients, RFC 2131 4.3.2); `None` when neither is set.
    pub fn requested_addr(&self) -> Option<u32> {
        self.requested.or((self.ciaddr != 0).then_some(self.ciaddr))
    }
}

/// Why a frame to port 67 is not a client message the server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpError {
    /// the UDP header or the DHCP message does not fit the IPv4 packet
    Truncated,
    /// not a BOOTREQUEST over Ethernet with the DHCP magic cookie and a message type
    NotDhcp,
}

impl std::fmt::Display for DhcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DhcpError::Truncated => "truncated UDP or DHCP message",
            DhcpError::NotDhcp => "not a DHCP client message",
        })
    }
}

/// Parses the DHCP client message of an Ethernet/IPv4/UDP frame (one that passed
/// [`crate::classify`]). Never panics; never allocates.
pub fn parse_client(frame: &[u8]) -> Result<ClientMsg, DhcpError> {
    let ip = frame
        .get(ETHERNET_HEADER_LEN..)
        .ok_or(DhcpError::Truncated)?;
    let h = ip
        .first_chunk::<IPV4_MIN_HEADER_LEN>()
        .ok_or(DhcpError::Truncated)?;
    let hl = usize::from(h[0] & 0x0f) * 4;
    let tl = usize::from(u16::from_be_bytes([h[2], h[3]])).min(ip.len());
    let udp = ip.get(hl..tl).ok_or(DhcpError::Truncated)?;
    let ulen = udp
        .get(4..6)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(DhcpError::Truncated)?;
    let payload = udp.get(8..ulen).ok_or(DhcpError::Truncated)?;
    let pkt = DhcpPacket::new_checked(payload).map_err(|_| DhcpError::Truncated)?;
    let r = DhcpRepr::parse(&pkt).map_err(|_| DhcpError::NotDhcp)?;
    let kind = match r.message_type {
        DhcpMessageType::Discover => ClientKind::Discover,
        DhcpMessageType::Request => ClientKind::Request,
        DhcpMessageType::Decline => ClientKind::Decline,
        DhcpMessageType::Release => ClientKind::Release,
        DhcpMessageType::Inform => ClientKind::Inform,
        other => ClientKind::Other(u8::from(other)),
    };
    Ok(ClientMsg {
        kind,
        xid: r.transaction_id,
        secs: r.secs,
        chaddr: MacAddr(r.client_hardware_address.0),
        ciaddr: u32::from(r.client_ip),
        requested: r.requested_ip.map(u32::from),
        server_id: r.server_identifier.map(u32::from),
        broadcast: r.broadcast,
    })
}

/// What the server hands out beyond the address: the subnet's options, encoded once
/// when the configuration is compiled and borrowed for every answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lease<'a> {
    /// subnet mask, host order
    pub mask: u32,
    /// the router (the subnet's gateway), host order
    pub router: u32,
    /// lease time in seconds
    pub lease_secs: u32,
    /// option 6's data: the DNS servers, 4 bytes each (empty: no option 6)
    pub dns: &'a [u8],
    /// option 15's data: the domain (empty: none)
    pub domain: &'a [u8],
    /// option 26: the MTU (none: no option 26)
    pub mtu: Option<u16>,
    /// option 121's data (RFC 3442; empty: none)
    pub routes: &'a [u8],
}

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// DHCPOFFER of the address
    Offer,
    /// DHCPACK of the address (0 for an INFORM: the options only)
    Ack,
    /// DHCPNAK
    Nak,
}

/// The server's own addresses.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// the MAC it sends from (the gateway MAC)
    pub mac: MacAddr,
    /// its address and identifier (the subnet's gateway), host order
    pub ip: u32,
}

/// Writes the server's reply to `req` into `buf` as a whole frame (Ethernet, IPv4,
/// UDP 67 → 68 with its checksum, the DHCP message padded to [`MIN_MESSAGE_LEN`]),
/// sent to `client_mac`, offering or acknowledging `yiaddr` (host order) with `lease`.
/// Addressed as RFC 2131 4.1 says: a NAK, and any reply with the BROADCAST flag, to
/// the broadcast MAC and 255.255.255.255; a reply to a client with `ciaddr`, unicast to
/// it; else unicast to `yiaddr` at `client_mac`. Returns the frame length, or 0 when
/// `buf` is too small. Never allocates.
pub fn emit_reply(
    buf: &mut [u8],
    kind: ReplyKind,
    server: Server,
    client_mac: MacAddr,
    req: &ClientMsg,
    yiaddr: u32,
    lease: &Lease<'_>,
) -> usize {
    let nak = kind == ReplyKind::Nak;
    let lease_opts = !nak && req.kind != ClientKind::Inform;
    let mtu = lease.mtu.map(u16::to_be_bytes);
    let (t1, t2) = if lease.lease_secs == u32::MAX {
        (u32::MAX, u32::MAX)
    } else {
        (
            lease.lease_secs / 2,
            (u64::from(lease.lease_secs) * 7 / 8) as u32,
        )
    };
    let (t1, t2) = (t1.to_be_bytes(), t2.to_be_bytes());
    let mtu: &[u8] = mtu.as_ref().map_or(&[], |m| &m[..]);
    let (t1, t2): (&[u8], &[u8]) = if lease_opts { (&t1, &t2) } else { (&[], &[]) };
    let all = [
        (opt::DNS, lease.dns),
        (opt::DOMAIN, lease.domain),
        (opt::MTU, mtu),
        (opt::CLASSLESS_ROUTES, lease.routes),
        (opt::RENEWAL, t1),
        (opt::REBINDING, t2),
    ];
    let mut extra = [DhcpOption { kind: 0, data: &[] }; 6];
    let mut n = 0;
    for (kind, data) in all {
        if !nak && !data.is_empty() {
            extra[n] = DhcpOption { kind, data };
            n += 1;
        }
    }
    let ip4 = Ipv4Address::from;
    let repr = DhcpRepr {
        message_type: match kind {
            ReplyKind::Offer => DhcpMessageType::Offer,
            ReplyKind::Ack => DhcpMessageType::Ack,
            ReplyKind::Nak => DhcpMessageType::Nak,
        },
        transaction_id: req.xid,
        secs: 0,
        client_hardware_address: EthernetAddress(req.chaddr.0),
        client_ip: ip4(if nak { 0 } else { req.ciaddr }),
        your_ip: ip4(if nak { 0 } else { yiaddr }),
        server_ip: ip4(0),
        router: (!nak).then(|| ip4(lease.router)),
        subnet_mask: (!nak).then(|| ip4(lease.mask)),
        relay_agent_ip: ip4(0),
        broadcast: req.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(ip4(server.ip)),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: lease_opts.then_some(lease.lease_secs),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &extra[..n],
    };
    let dhcp_len = repr.buffer_len().max(MIN_MESSAGE_LEN);
    let udp_len = 8 + dhcp_len;
    let ip_len = IPV4_MIN_HEADER_LEN + udp_len;
    let total = ETHERNET_HEADER_LEN + ip_len;
    let Some(f) = buf.get_mut(..total) else {
        return 0;
    };
    let to_all = nak || req.broadcast;
    let (dst_mac, dst_ip) = if to_all {
        (MacAddr::BROADCAST, u32::MAX)
    } else if req.ciaddr != 0 {
        (client_mac, req.ciaddr)
    } else {
        (client_mac, yiaddr)
    };
    // Ethernet
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&server.mac.0);
    f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
    // IPv4
    let (_, rest) = f.split_at_mut(ETHERNET_HEADER_LEN);
    let (ih, udp) = rest.split_at_mut(IPV4_MIN_HEADER_LEN);
    ih.fill(0);
    ih[0] = 0x45;
    ih[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ih[8] = 64;
    ih[9] = IpProtocol::UDP;
    ih[12..16].copy_from_slice(&server.ip.to_be_bytes());
    ih[16..20].copy_from_slice(&dst_ip.to_be_bytes());
    let c = checksum::checksum(ih);
    ih[10..12].copy_from_slice(&c.to_be_bytes());
    // UDP and DHCP
    udp.fill(0);
    udp[0..2].copy_from_slice(&SERVER_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pkt = DhcpPacket::new_unchecked(&mut udp[8..]);
    if repr.emit(&mut pkt).is_err() {
        return 0;
    }
    let mut acc = checksum::sum(0, &server.ip.to_be_bytes());
    acc = checksum::sum(acc, &dst_ip.to_be_bytes());
    acc += u32::from(IpProtocol::UDP) + udp_len as u32;
    acc = checksum::sum(acc, udp);
    let mut c = !checksum::fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{self, Ends};
    use std::net::Ipv4Addr;

    const CLIENT: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    /// A client message as a whole frame, from smoltcp's emitter.
    fn client_frame(
        kind: DhcpMessageType,
        ciaddr: Ipv4Addr,
        requested: Option<Ipv4Addr>,
        bcast: bool,
    ) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: kind,
            transaction_id: 0x1234_5678,
            secs: 3,
            client_hardware_address: EthernetAddress(CLIENT.0),
            client_ip: ciaddr,
            your_ip: Ipv4Address::UNSPECIFIED,
            server_ip: Ipv4Address::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: bcast,
            requested_ip: requested,
            client_identifier: Some(EthernetAddress(CLIENT.0)),
            server_identifier: None,
            parameter_request_list: Some(&[1, 3, 6, 15, 26, 121]),
            dns_servers: None,
            max_size: Some(1500),
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut d = vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut d)).unwrap();
        build::udp(
            Ends {
                dst: MacAddr::BROADCAST,
                src: CLIENT,
                sip: ciaddr,
                dip: Ipv4Addr::BROADCAST,
            },
            64,
            CLIENT_PORT,
            SERVER_PORT,
            &d,
        )
    }

    #[test]
    fn spec13_1_parses_a_discover_and_finds_its_ports() {
        let f = client_frame(
            DhcpMessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
            None,
            false,
        );
        assert_eq!(udp_ports(&f), Some((68, 67)));
        let m = parse_client(&f).unwrap();
        assert_eq!(m.kind, ClientKind::Discover);
        assert_eq!((m.xid, m.secs, m.chaddr), (0x1234_5678, 3, CLIENT));
        assert_eq!(m.requested_addr(), None);
        let f = client_frame(
            DhcpMessageType::Request,
            "10.0.1.11".parse().unwrap(),
            None,
            true,
        );
        let m = parse_client(&f).unwrap();
        assert_eq!(m.kind, ClientKind::Request);
        assert!(m.broadcast);
        assert_eq!(m.requested_addr(), Some(0x0a00_010b));
    }

    #[test]
    fn truncated_or_foreign_payloads_are_errors_not_panics() {
        let f = client_frame(
            DhcpMessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
            None,
            false,
        );
        for n in 0..f.len() {
            let _ = parse_client(&f[..n]);
            let _ = udp_ports(&f[..n]);
        }
        // a DNS query to port 67 is no DHCP message
        let g = build::udp(
            Ends {
                dst: GW,
                src: CLIENT,
                sip: "10.0.1.11".parse().unwrap(),
                dip: "10.0.1.1".parse().unwrap(),
            },
            64,
            68,
            67,
            &[0u8; 300],
        );
        assert_eq!(parse_client(&g), Err(DhcpError::NotDhcp));
    }

    fn reply(kind: ReplyKind, req: &ClientMsg) -> Vec<u8> {
        let routes = [16, 10, 9, 10, 0, 1, 254, 0, 10, 0, 1, 1];
        let lease = Lease {
            mask: 0xffff_ff00,
            router: 0x0a00_0101,
            lease_secs: 3600,
            dns: &[10, 0, 0, 2, 1, 1, 1, 1],
            domain: b"prod.internal",
            mtu: Some(1450),
            routes: &routes,
        };
        let mut buf = [0u8; 2048];
        let server = Server {
            mac: GW,
            ip: 0x0a00_0101,
        };
        let n = emit_reply(&mut buf, kind, server, CLIENT, req, 0x0a00_010b, &lease);
        assert!(n > 0);
        // too small a buffer: 0, no panic
        assert_eq!(
            emit_reply(
                &mut buf[..n - 1].to_vec(),
                kind,
                server,
                CLIENT,
                req,
                0x0a00_010b,
                &lease
            ),
            0
        );
        buf[..n].to_vec()
    }

    fn options(f: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let p = DhcpPacket::new_checked(&f[42..]).unwrap();
        p.options().map(|o| (o.kind, o.data.to_vec())).collect()
    }

    #[test]
    fn spec13_1_offer_carries_every_option_and_valid_checksums() {
        let f = client_frame(
            DhcpMessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
            None,
            false,
        );
        let req = parse_client(&f).unwrap();
        let r = reply(ReplyKind::Offer, &req);
        assert!(r.len() >= 14 + 20 + 8 + MIN_MESSAGE_LEN);
        // unicast to yiaddr at the client's MAC, from the gateway
        assert_eq!(&r[0..6], &CLIENT.0);
        assert_eq!(&r[6..12], &GW.0);
        let ip = crate::Ipv4Packet::new_checked(&r[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src().to_string(), "10.0.1.1");
        assert_eq!(ip.dst().to_string(), "10.0.1.11");
        // UDP checksum over the pseudo header verifies to 0
        let udp = &r[34..];
        let mut acc = checksum::sum(0, &r[26..34]);
        acc += u32::from(IpProtocol::UDP) + udp.len() as u32;
        acc = checksum::sum(acc, udp);
        assert_eq!(checksum::fold(acc), 0xffff);
        // smoltcp reads it back
        let p = DhcpPacket::new_checked(&r[42..]).unwrap();
        let back = DhcpRepr::parse(&p).unwrap();
        assert_eq!(back.message_type, DhcpMessageType::Offer);
        assert_eq!(back.transaction_id, 0x1234_5678);
        assert_eq!(back.your_ip.to_string(), "10.0.1.11");
        assert_eq!(back.subnet_mask.unwrap().to_string(), "255.255.255.0");
        assert_eq!(back.router.unwrap().to_string(), "10.0.1.1");
        assert_eq!(back.server_identifier.unwrap().to_string(), "10.0.1.1");
        assert_eq!(back.lease_duration, Some(3600));
        assert_eq!(back.renew_duration, Some(1800));
        assert_eq!(back.rebind_duration, Some(3150));
        let o = options(&r);
        let get = |k: u8| o.iter().find(|(kk, _)| *kk == k).map(|(_, d)| d.clone());
        assert_eq!(get(6).unwrap(), vec![10, 0, 0, 2, 1, 1, 1, 1]);
        assert_eq!(get(15).unwrap(), b"prod.internal".to_vec());
        assert_eq!(get(26).unwrap(), 1450u16.to_be_bytes().to_vec());
        assert_eq!(
            get(121).unwrap(),
            vec![16, 10, 9, 10, 0, 1, 254, 0, 10, 0, 1, 1]
        );
    }

    #[test]
    fn spec13_1_nak_is_broadcast_without_lease_options() {
        let f = client_frame(
            DhcpMessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            Some("10.0.1.99".parse().unwrap()),
            false,
        );
        let req = parse_client(&f).unwrap();
        let r = reply(ReplyKind::Nak, &req);
        assert_eq!(&r[0..6], &MacAddr::BROADCAST.0);
        assert_eq!(&r[30..34], &[255, 255, 255, 255]);
        let kinds: Vec<u8> = options(&r).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec![53, 54]);
        let p = DhcpPacket::new_checked(&r[42..]).unwrap();
        assert_eq!(
            DhcpRepr::parse(&p).unwrap().your_ip,
            Ipv4Address::UNSPECIFIED
        );
    }

    #[test]
    fn spec13_1_renewal_ack_goes_to_ciaddr() {
        let f = client_frame(
            DhcpMessageType::Request,
            "10.0.1.11".parse().unwrap(),
            None,
            false,
        );
        let req = parse_client(&f).unwrap();
        let r = reply(ReplyKind::Ack, &req);
        assert_eq!(&r[0..6], &CLIENT.0);
        assert_eq!(&r[30..34], &[10, 0, 1, 11]);
    }
}
