//! Transport checksum maintenance for address rewrites (EIP NAT, SPEC 7).
//!
//! TCP and UDP checksums cover a pseudo-header with both IPv4 addresses; when NAT
//! rewrites an address, the L4 checksum changes by the same RFC 1624 delta.

use crate::checksum;
use crate::ipv4::IpProtocol;

/// Offset of the checksum field inside the L4 header, if the protocol has one that
/// covers the IPv4 pseudo-header.
pub fn pseudo_checksum_offset(proto: u8) -> Option<usize> {
    match proto {
        IpProtocol::TCP => Some(16),
        IpProtocol::UDP => Some(6),
        _ => None,
    }
}

/// Updates the L4 checksum in `l4` (the IPv4 payload) after an address changed from
/// `old` to `new`. A UDP checksum of 0 means "none" and stays 0. A header too short to
/// hold the field is left alone.
pub fn update_for_address(proto: u8, l4: &mut [u8], old: u32, new: u32) {
    let Some(off) = pseudo_checksum_offset(proto) else {
        return;
    };
    if l4.len() < off + 2 {
        return;
    }
    let c = u16::from_be_bytes([l4[off], l4[off + 1]]);
    if proto == IpProtocol::UDP && c == 0 {
        return;
    }
    let mut n = checksum::update32(c, old, new);
    if proto == IpProtocol::UDP && n == 0 {
        n = 0xffff;
    }
    l4[off..off + 2].copy_from_slice(&n.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_checksum(src: u32, dst: u32, udp: &[u8]) -> u16 {
        let mut acc = checksum::sum(0, &src.to_be_bytes());
        acc = checksum::sum(acc, &dst.to_be_bytes());
        acc += 17 + udp.len() as u32;
        acc = checksum::sum(acc, udp);
        !checksum::fold(acc)
    }

    #[test]
    fn udp_checksum_follows_address_change() {
        let (src, dst, nsrc) = (0x0a00_0105, 0x0a00_0209, 0xcb00_7101);
        let mut udp = vec![0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4];
        let c = udp_checksum(src, dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        update_for_address(IpProtocol::UDP, &mut udp, src, nsrc);
        let got = u16::from_be_bytes([udp[6], udp[7]]);
        udp[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(got, udp_checksum(nsrc, dst, &udp));
        let mut none = vec![0u8; 8];
        update_for_address(IpProtocol::UDP, &mut none, src, nsrc);
        assert_eq!(none, vec![0u8; 8]);
        update_for_address(IpProtocol::TCP, &mut [0u8; 4], src, nsrc);
    }
}
