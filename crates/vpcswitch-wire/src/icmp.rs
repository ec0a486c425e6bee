//! ICMP messages the switch itself sends: echo replies from a gateway (SPEC 5.6) and
//! errors (time exceeded, SPEC 5.5; net unreachable, SPEC 5.7). Built with
//! `smoltcp::wire::Icmpv4Packet`, in the buffer of the frame that caused them.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet};
use std::net::Ipv4Addr;

use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::ipv4::{IpProtocol, Ipv4Packet, IPV4_MIN_HEADER_LEN};
use crate::{checksum, MacAddr};

/// ICMP type: destination unreachable.
pub const TYPE_DST_UNREACHABLE: u8 = 3;
/// ICMP type: time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Code for net unreachable.
pub const CODE_NET_UNREACHABLE: u8 = 0;
/// Code for TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;
/// Destination unreachable: fragmentation needed and DF set (RFC 792, RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// TTL of packets the switch originates.
pub const ORIGIN_TTL: u8 = 64;

/// True when the checked IPv4 packet `ip` carries an ICMP error message: any ICMP type
/// but the queries and their replies (echo, timestamp). The switch never answers one
/// with an error of its own (RFC 1812 4.3.2.7). A packet too short for an ICMP type is
/// not one.
pub fn is_error(ip: &Ipv4Packet<&[u8]>) -> bool {
    ip.protocol() == IpProtocol::ICMP
        && ip
            .payload()
            .first()
            .is_some_and(|&ty| !matches!(ty, 0 | 8 | 13 | 14))
}

/// True when the IPv4 packet in `frame` (already checked) is an ICMP echo request with a
/// valid ICMP checksum.
pub fn is_echo_request(frame: &[u8]) -> bool {
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    if ip.protocol() != IpProtocol::ICMP || ip.is_fragment() {
        return false;
    }
    match Icmpv4Packet::new_checked(ip.payload()) {
        Ok(p) => p.msg_type() == Icmpv4Message::EchoRequest && p.verify_checksum(),
        Err(_) => false,
    }
}

/// Turns the echo request in `frame` into the reply, in place: the gateway `gw_ip` at
/// `gw_mac` answers the sender. Callers check [`is_echo_request`] first.
pub fn echo_reply_in_place(frame: &mut [u8], gw_mac: MacAddr, gw_ip: Ipv4Addr) {
    let (eth, rest) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let requester = MacAddr::from_slice(&eth[6..12]);
    eth[0..6].copy_from_slice(&requester.0);
    eth[6..12].copy_from_slice(&gw_mac.0);
    let mut ip = Ipv4Packet::new_unchecked(rest);
    let src = ip.src();
    ip.set_dst(src);
    ip.set_src(gw_ip);
    ip.set_ttl(ORIGIN_TTL);
    let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
    let old = u16::from_be_bytes([8, icmp.msg_code()]);
    icmp.set_msg_type(Icmpv4Message::EchoReply);
    let new = u16::from_be_bytes([0, icmp.msg_code()]);
    let c = checksum::update16(icmp.checksum(), old, new);
    icmp.set_checksum(c);
}

/// Bytes of the offending packet quoted in an ICMP error: its header and 8 bytes.
fn quote_len(frame: &[u8]) -> usize {
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    (ip.header_len() + 8).min(ip.total_len())
}

/// Length of the error frame [`error_in_place`] makes from `frame`.
pub fn error_len(frame: &[u8]) -> usize {
    ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + 8 + quote_len(frame)
}

/// Rewrites the checked IPv4 frame occupying `buf[..frame_len]` into an ICMP error
/// (`ty`, `code`) from `gw_ip`/`gw_mac` back to its sender, and returns the new length.
/// `mtu` is the next-hop MTU of a "fragmentation needed" (RFC 1191: the header's last
/// two bytes); 0 for every other error (the bytes are unused, zero).
/// `buf` is the whole buffer; it must hold [`error_len`] bytes, else nothing changes
/// and 0 is returned.
pub fn error_in_place(
    buf: &mut [u8],
    frame_len: usize,
    gw_mac: MacAddr,
    gw_ip: Ipv4Addr,
    (ty, code): (u8, u8),
    mtu: u16,
) -> usize {
    let frame = &buf[..frame_len];
    let q = quote_len(frame);
    let total = error_len(frame);
    if buf.len() < total {
        return 0;
    }
    let requester = MacAddr::from_slice(&frame[6..12]);
    let orig_src = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]).src();
    let body = ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + 8;
    buf.copy_within(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + q, body);
    buf[0..6].copy_from_slice(&requester.0);
    buf[6..12].copy_from_slice(&gw_mac.0);
    buf[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
    let ip_len = (total - ETHERNET_HEADER_LEN) as u16;
    let ip = &mut buf[ETHERNET_HEADER_LEN..total];
    ip[..IPV4_MIN_HEADER_LEN].copy_from_slice(&[
        0x45,
        0xc0,
        0,
        0,
        0,
        0,
        0,
        0,
        ORIGIN_TTL,
        IpProtocol::ICMP,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let mut v = Ipv4Packet::new_unchecked(&mut *ip);
    v.set_src(gw_ip);
    v.set_dst(orig_src);
    v.fill_checksum();
    let mut icmp = Icmpv4Packet::new_unchecked(v.payload_mut());
    icmp.set_msg_type(Icmpv4Message::from(ty));
    icmp.set_msg_code(code);
    // bytes 4..8: unused (zero), but for the next-hop MTU of "fragmentation needed"
    icmp.set_echo_ident(0);
    icmp.set_echo_seq_no(mtu);
    icmp.fill_checksum();
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;

    fn echo_frame(ttl: u8) -> Vec<u8> {
        let mut f = vec![2, 0xfe, 0, 0, 0, 1, 2, 0, 0, 0, 0, 5, 8, 0];
        let mut ip = vec![
            0x45, 0, 0, 32, 0, 1, 0, 0, ttl, 1, 0, 0, 10, 0, 1, 5, 10, 0, 1, 1,
        ];
        let c = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 7, b'p', b'i', b'n', b'g'];
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        f
    }

    #[test]
    fn echo_reply_is_valid() {
        let mut f = echo_frame(64);
        assert!(is_echo_request(&f));
        let gw = MacAddr([2, 0xfe, 0, 0, 0, 1]);
        echo_reply_in_place(&mut f, gw, Ipv4Addr::new(10, 0, 1, 1));
        let c = classify(&f).unwrap();
        assert_eq!(c.dst, MacAddr([2, 0, 0, 0, 0, 5]));
        assert_eq!(c.src, gw);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 0, 1, 5));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.echo_ident(), 0x1234);
        assert!(!is_echo_request(&f));
    }

    #[test]
    fn errors_are_told_from_queries() {
        let f = echo_frame(64);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(!is_error(&ip), "an echo request is a query");
        let mut buf = vec![0u8; 256];
        buf[..f.len()].copy_from_slice(&f);
        let n = error_in_place(
            &mut buf,
            f.len(),
            MacAddr::ZERO,
            Ipv4Addr::LOCALHOST,
            (11, 0),
            0,
        );
        let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(is_error(&ip), "time exceeded is an error");
    }

    /// RFC 1191: "fragmentation needed" carries the next-hop MTU in the header's last
    /// two bytes, inside the checksum.
    #[test]
    fn frag_needed_carries_the_next_hop_mtu() {
        let f = echo_frame(64);
        let mut buf = vec![0u8; 256];
        buf[..f.len()].copy_from_slice(&f);
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        let n = error_in_place(
            &mut buf,
            f.len(),
            MacAddr::ZERO,
            gw,
            (TYPE_DST_UNREACHABLE, CODE_FRAG_NEEDED),
            1450,
        );
        let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        let icmp = &ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450);
        let c = Icmpv4Packet::new_checked(&icmp[..]).unwrap();
        assert!(c.verify_checksum(), "checksum covers the MTU");
    }

    #[test]
    fn time_exceeded_quotes_header_and_8_bytes() {
        let f = echo_frame(1);
        let mut buf = vec![0u8; 256];
        buf[..f.len()].copy_from_slice(&f);
        let n = error_in_place(
            &mut buf,
            f.len(),
            MacAddr([2, 0xfe, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 1, 1),
            (TYPE_TIME_EXCEEDED, CODE_TTL_EXCEEDED),
            0,
        );
        assert_eq!(n, 14 + 20 + 8 + 28);
        let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 0, 1, 5));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), Icmpv4Message::TimeExceeded);
        assert_eq!(&icmp.data()[..20], &f[14..34]);
        // too small a buffer: refused, untouched
        let mut small = f.clone();
        let len = small.len();
        assert_eq!(
            error_in_place(
                &mut small,
                len,
                MacAddr::ZERO,
                Ipv4Addr::LOCALHOST,
                (11, 0),
                0
            ),
            0
        );
        assert_eq!(small, f);
    }
}
