//! ARP for Ethernet/IPv4, parsed and emitted through `smoltcp::wire`.

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};
use std::net::Ipv4Addr;

use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::{MacAddr, MacKey, WireError};

/// ARP request opcode.
pub const OP_REQUEST: u16 = 1;
/// ARP reply opcode.
pub const OP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP payload.
pub const ARP_LEN: usize = 28;
/// Length of a whole ARP frame (without padding).
pub const ARP_FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;

/// The fields of an Ethernet/IPv4 ARP packet (addresses host order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpInfo {
    /// opcode (1 request, 2 reply, others kept as seen)
    pub op: u16,
    /// sender hardware address (a [`MacKey`], as in `Classified`: kept in a register)
    pub sha: MacKey,
    /// sender protocol address
    pub spa: u32,
    /// target hardware address
    pub tha: MacKey,
    /// target protocol address
    pub tpa: u32,
}

impl ArpInfo {
    /// A gratuitous announcement: a request whose sender and target IP are equal
    /// (SPEC 3.1), or a reply doing the same.
    pub fn is_announcement(&self) -> bool {
        self.spa == self.tpa && self.spa != 0
    }
    /// A probe (RFC 5227): sender IP 0.0.0.0.
    pub fn is_probe(&self) -> bool {
        self.spa == 0
    }
}

fn mac(e: EthernetAddress) -> MacKey {
    MacKey::from_bytes(&e.0)
}

/// Parses the Ethernet payload of an ARP frame.
pub fn parse(payload: &[u8]) -> Result<ArpInfo, WireError> {
    let pkt = ArpPacket::new_checked(payload).map_err(|_| WireError::Truncated)?;
    match ArpRepr::parse(&pkt).map_err(|_| WireError::BadArp)? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => Ok(ArpInfo {
            op: u16::from(operation),
            sha: mac(source_hardware_addr),
            spa: u32::from(source_protocol_addr),
            tha: mac(target_hardware_addr),
            tpa: u32::from(target_protocol_addr),
        }),
        #[allow(unreachable_patterns)]
        _ => Err(WireError::BadArp),
    }
}

/// Writes a whole ARP frame (Ethernet header included) into `buf` and returns its length.
/// `buf` must hold at least [`ARP_FRAME_LEN`] bytes; a shorter one gets nothing and 0.
pub fn emit_frame(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr, info: &ArpInfo) -> usize {
    if buf.len() < ARP_FRAME_LEN {
        return 0;
    }
    buf[0..6].copy_from_slice(&eth_dst.0);
    buf[6..12].copy_from_slice(&eth_src.0);
    buf[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::from(info.op),
        source_hardware_addr: EthernetAddress(info.sha.mac().0),
        source_protocol_addr: Ipv4Addr::from(info.spa),
        target_hardware_addr: EthernetAddress(info.tha.mac().0),
        target_protocol_addr: Ipv4Addr::from(info.tpa),
    };
    let mut pkt = ArpPacket::new_unchecked(&mut buf[ETHERNET_HEADER_LEN..ARP_FRAME_LEN]);
    repr.emit(&mut pkt);
    ARP_FRAME_LEN
}

/// Writes the reply to `req` saying that `ip` is at `mac`, addressed to the requester.
pub fn emit_reply(buf: &mut [u8], req: &ArpInfo, mac: MacAddr) -> usize {
    let info = ArpInfo {
        op: OP_REPLY,
        sha: mac.into(),
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    };
    emit_frame(buf, req.sha.mac(), mac, &info)
}

/// Writes a broadcast request from `(sha, spa)` asking for `tpa`.
pub fn emit_request(buf: &mut [u8], sha: MacAddr, spa: u32, tpa: u32) -> usize {
    let info = ArpInfo {
        op: OP_REQUEST,
        sha: sha.into(),
        spa,
        tha: MacKey::default(),
        tpa,
    };
    emit_frame(buf, MacAddr::BROADCAST, sha, &info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request from 10.0.1.5 (02:00:00:00:00:05) for 10.0.1.1, as Linux sends it.
    const REQ: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 5, 10, 0, 1, 5, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1,
    ];

    #[test]
    fn parse_fixture() {
        let a = parse(&REQ).unwrap();
        assert_eq!(a.op, OP_REQUEST);
        assert_eq!(a.sha, MacAddr([2, 0, 0, 0, 0, 5]));
        assert_eq!(a.spa, 0x0a00_0105);
        assert_eq!(a.tpa, 0x0a00_0101);
        assert!(!a.is_announcement() && !a.is_probe());
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(&REQ[..27]), Err(WireError::Truncated));
        let mut b = REQ;
        b[4] = 8; // hlen 8
        assert!(parse(&b).is_err());
        let mut b = REQ;
        b[2] = 0x86; // ptype IPv6
        b[3] = 0xdd;
        assert_eq!(parse(&b), Err(WireError::BadArp));
    }

    #[test]
    fn reply_round_trips() {
        let req = parse(&REQ).unwrap();
        let mut buf = [0u8; 64];
        let gw = MacAddr([2, 0xfe, 0, 0, 0, 1]);
        let n = emit_reply(&mut buf, &req, gw);
        assert_eq!(n, ARP_FRAME_LEN);
        assert_eq!(&buf[0..6], &req.sha.mac().0);
        assert_eq!(&buf[6..12], &gw.0);
        let r = parse(&buf[14..n]).unwrap();
        assert_eq!(
            (r.op, r.sha, r.spa, r.tha, r.tpa),
            (OP_REPLY, gw.into(), req.tpa, req.sha, req.spa)
        );
        assert_eq!(emit_reply(&mut buf[..41], &req, gw), 0);
    }
}
