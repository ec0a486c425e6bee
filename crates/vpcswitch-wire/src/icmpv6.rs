//! ICMPv6 (RFC 4443): a checked view, the checksum over the IPv6 pseudo-header, the
//! typed messages the switch reads (echo and errors; neighbour discovery in
//! [`crate::nd`]), and the messages it writes from a gateway: echo replies and errors
//! (time exceeded, destination unreachable, SPEC 12.5), in the buffer of the frame that
//! caused them.
//!
//! # Contract
//! [`Icmpv6Packet::new_checked`] guarantees the 8-byte header every ICMPv6 message has
//! (RFC 4443 2.1) and the fixed part of the neighbour discovery messages, so no
//! accessor reads past the buffer. [`parse`] additionally verifies the checksum; the
//! switch never acts on a message whose checksum is wrong. Nothing here panics or
//! allocates, whatever the bytes.
//!
//! # Security intent
//! Errors the switch sends follow RFC 4443 2.4(e) ([`error_allowed`]): never about an
//! ICMPv6 error or a redirect, never to a multicast or unspecified source, never about
//! a multicast destination (but packet too big), so no guest can make the switch
//! amplify or loop. They quote at most what fits the 1280-byte minimum MTU.

use std::net::Ipv6Addr;

use crate::checksum;
use crate::ethernet::{EtherType, ETHERNET_HEADER_LEN};
use crate::ipv6::{self, Ipv6Chain, Ipv6Packet, NextHeader, IPV6_HEADER_LEN, IPV6_MIN_MTU};
use crate::nd::{self, NdMessage};
use crate::MacAddr;

/// Destination unreachable.
pub const TYPE_DST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Router solicitation (RFC 4861).
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
/// Router advertisement (RFC 4861).
pub const TYPE_ROUTER_ADVERT: u8 = 134;
/// Neighbour solicitation (RFC 4861).
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement (RFC 4861).
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Redirect (RFC 4861).
pub const TYPE_REDIRECT: u8 = 137;

/// Destination unreachable: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination unreachable: communication administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable: address unreachable.
pub const CODE_ADDR_UNREACHABLE: u8 = 3;
/// Time exceeded: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
/// Parameter problem: unrecognised IPv6 option (the one code that may answer a
/// multicast destination, RFC 4443 2.4(e.3)).
pub const CODE_UNRECOGNIZED_OPTION: u8 = 2;

/// Hop limit of the messages the switch originates, but ND (255).
pub const ORIGIN_HOP_LIMIT: u8 = 64;

/// Length of the header every ICMPv6 message has: type, code, checksum and four
/// message-specific bytes.
pub const ICMPV6_HEADER_LEN: usize = 8;

/// The most bytes of an offending packet an error quotes: what keeps the error within
/// the IPv6 minimum MTU (RFC 4443 2.4(c)).
pub const MAX_QUOTE: usize = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN;

/// Why bytes are not an ICMPv6 message the switch acts on. Each is a drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Error {
    /// Shorter than the message's fixed part.
    Truncated,
    /// The checksum over the pseudo-header and message is wrong.
    BadChecksum,
    /// A code the message type does not define (ND and echo: code 0).
    BadCode,
    /// An ND message with a hop limit other than 255: it crossed a router (RFC 4861).
    BadHopLimit,
    /// An ND message inside a fragment (RFC 6980).
    FragmentedNd,
    /// An ND option of length 0 (RFC 4861 4.6: the message must be discarded).
    BadOptionLen,
    /// An ND option runs past the end of the message.
    OptionOverrun,
    /// A known ND option with a length or content its type does not allow.
    BadOption,
    /// A link-layer address, MTU or redirected-header option given twice: which one a
    /// receiver uses is not defined, so the switch accepts neither (SPEC 12.2).
    DuplicateOption,
    /// A multicast target (NS, NA) or redirect destination (RFC 4861 7.1, 8.1).
    BadTarget,
    /// An ND message from a multicast source (RFC 4291 2.7), or a router advertisement
    /// or redirect whose source is not link-local (RFC 4861 6.1.2, 8.1).
    BadSource,
    /// A message from `::` that breaks RFC 4861 6.1.1 / 7.1.1: a link-layer option, or
    /// (an NS for duplicate address detection) a destination that is not a
    /// solicited-node group.
    BadUnspecifiedSource,
    /// A solicited neighbour advertisement to a multicast destination (RFC 4861 7.1.2).
    BadSolicitedFlag,
    /// Not an ND message type (given to [`nd::parse`]).
    NotNd,
}

impl std::fmt::Display for Icmpv6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Icmpv6Error::Truncated => "truncated ICMPv6 message",
            Icmpv6Error::BadChecksum => "bad ICMPv6 checksum",
            Icmpv6Error::BadCode => "bad ICMPv6 code",
            Icmpv6Error::BadHopLimit => "ND hop limit is not 255",
            Icmpv6Error::FragmentedNd => "ND in a fragment",
            Icmpv6Error::BadOptionLen => "ND option of length 0",
            Icmpv6Error::OptionOverrun => "ND option beyond the message",
            Icmpv6Error::BadOption => "malformed ND option",
            Icmpv6Error::DuplicateOption => "duplicate ND option",
            Icmpv6Error::BadTarget => "multicast ND target",
            Icmpv6Error::BadSource => "ND from a multicast, or router message not link-local",
            Icmpv6Error::BadUnspecifiedSource => "ND from :: breaks RFC 4861",
            Icmpv6Error::BadSolicitedFlag => "solicited NA to a multicast address",
            Icmpv6Error::NotNd => "not a neighbour discovery message",
        })
    }
}

impl std::error::Error for Icmpv6Error {}

/// The fixed length of a message of type `ty`: 8 bytes, more for ND (RFC 4861 4).
pub fn min_len(ty: u8) -> usize {
    match ty {
        TYPE_ROUTER_ADVERT => 16,
        TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT => 24,
        TYPE_REDIRECT => 40,
        _ => ICMPV6_HEADER_LEN,
    }
}

/// True for the ND message types (133 to 137).
pub fn is_nd(ty: u8) -> bool {
    (TYPE_ROUTER_SOLICIT..=TYPE_REDIRECT).contains(&ty)
}

/// A checked view of an ICMPv6 message (the bytes at the upper-layer offset, up to the
/// end of the IPv6 packet).
#[derive(Debug)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps untrusted bytes, checking they hold the fixed part of their type
    /// ([`min_len`]).
    pub fn new_checked(buf: T) -> Result<Self, Icmpv6Error> {
        let b = buf.as_ref();
        let ty = *b.first().ok_or(Icmpv6Error::Truncated)?;
        if b.len() < min_len(ty) {
            return Err(Icmpv6Error::Truncated);
        }
        Ok(Icmpv6Packet { buf })
    }
    /// Wraps bytes already checked by [`Icmpv6Packet::new_checked`]; accessors may
    /// panic on bytes that were not.
    pub fn new_unchecked(buf: T) -> Self {
        Icmpv6Packet { buf }
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// The whole message.
    pub fn bytes(&self) -> &[u8] {
        self.b()
    }
    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.b()[0]
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        self.b()[1]
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }
    /// Bytes 4..8 as one word: the MTU of a packet too big, the pointer of a parameter
    /// problem, the flags of a neighbour advertisement.
    pub fn word(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        u16::from_be_bytes([self.b()[6], self.b()[7]])
    }
    /// The bytes after the 8-byte header: echo data, or the invoking packet an error
    /// quotes.
    pub fn body(&self) -> &[u8] {
        &self.b()[ICMPV6_HEADER_LEN..]
    }
    /// True when the checksum over the pseudo-header of `src` → `dst` and the whole
    /// message is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.b();
        let acc = checksum::pseudo_v6(src, dst, NextHeader::ICMPV6, b.len() as u32);
        checksum::fold(checksum::sum(acc, b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buf.as_mut()[0] = t;
    }
    /// Computes and writes the checksum for `src` → `dst`.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        fill_checksum(self.buf.as_mut(), src, dst);
    }
}

/// Writes the checksum of the ICMPv6 message `m` (whole buffer) for `src` → `dst`.
pub(crate) fn fill_checksum(m: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    m[2..4].copy_from_slice(&[0, 0]);
    let acc = checksum::pseudo_v6(src, dst, NextHeader::ICMPV6, m.len() as u32);
    let c = !checksum::fold(checksum::sum(acc, m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// What ICMPv6 parsing needs from the IPv6 layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Meta {
    /// source address (pseudo-header)
    pub src: Ipv6Addr,
    /// destination address (pseudo-header)
    pub dst: Ipv6Addr,
    /// the hop limit (ND requires 255)
    pub hop_limit: u8,
    /// a fragment header was present (ND refuses it)
    pub fragmented: bool,
}

impl Ipv6Meta {
    /// The meta of a checked packet and its walked chain.
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>, chain: &Ipv6Chain) -> Ipv6Meta {
        Ipv6Meta {
            src: ip.src(),
            dst: ip.dst(),
            hop_limit: ip.hop_limit(),
            fragmented: chain.is_fragment(),
        }
    }
}

/// A checked, checksum-verified ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Message<'a> {
    /// Echo request.
    EchoRequest {
        /// identifier
        ident: u16,
        /// sequence number
        seq: u16,
        /// data
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// identifier
        ident: u16,
        /// sequence number
        seq: u16,
        /// data
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// code
        code: u8,
        /// as much of the invoking packet as the sender quoted
        invoking: &'a [u8],
    },
    /// Packet too big.
    PacketTooBig {
        /// the next-hop MTU
        mtu: u32,
        /// the invoking packet, as quoted
        invoking: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// code
        code: u8,
        /// the invoking packet, as quoted
        invoking: &'a [u8],
    },
    /// Parameter problem.
    ParamProblem {
        /// code
        code: u8,
        /// offset of the problem in the invoking packet
        pointer: u32,
        /// the invoking packet, as quoted
        invoking: &'a [u8],
    },
    /// A neighbour discovery message, validated as [`nd::parse`] says.
    Nd(NdMessage<'a>),
    /// Any other type (MLD, unknown informational or error types), checksum verified.
    Other {
        /// type
        ty: u8,
        /// code
        code: u8,
    },
}

/// Parses and verifies the ICMPv6 message `m` (the bytes from the upper-layer offset to
/// the end of the IPv6 packet) sent as `meta` says. Echo needs code 0; ND is validated
/// as [`nd::parse`] says.
pub fn parse<'a>(meta: &Ipv6Meta, m: &'a [u8]) -> Result<Icmpv6Message<'a>, Icmpv6Error> {
    let p = Icmpv6Packet::new_checked(m)?;
    if is_nd(p.msg_type()) {
        return nd::parse(meta, m).map(Icmpv6Message::Nd);
    }
    if !p.verify_checksum(&meta.src, &meta.dst) {
        return Err(Icmpv6Error::BadChecksum);
    }
    let body = &m[ICMPV6_HEADER_LEN..];
    let (ty, code) = (p.msg_type(), p.code());
    Ok(match ty {
        TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY if code != 0 => return Err(Icmpv6Error::BadCode),
        TYPE_ECHO_REQUEST => Icmpv6Message::EchoRequest {
            ident: p.echo_ident(),
            seq: p.echo_seq(),
            data: body,
        },
        TYPE_ECHO_REPLY => Icmpv6Message::EchoReply {
            ident: p.echo_ident(),
            seq: p.echo_seq(),
            data: body,
        },
        TYPE_DST_UNREACHABLE => Icmpv6Message::DstUnreachable {
            code,
            invoking: body,
        },
        TYPE_PACKET_TOO_BIG => Icmpv6Message::PacketTooBig {
            mtu: p.word(),
            invoking: body,
        },
        TYPE_TIME_EXCEEDED => Icmpv6Message::TimeExceeded {
            code,
            invoking: body,
        },
        TYPE_PARAM_PROBLEM => Icmpv6Message::ParamProblem {
            code,
            pointer: p.word(),
            invoking: body,
        },
        _ => Icmpv6Message::Other { ty, code },
    })
}

/// True when the checked packet `ip` (with its walked `chain`) carries an ICMPv6 error
/// or a redirect: the messages no error may answer (RFC 4443 2.4(e.1)). A later
/// fragment or a message too short for a type counts as one (the switch cannot tell,
/// and silence is the safe side).
pub fn is_error<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>, chain: &Ipv6Chain) -> bool {
    match chain.upper {
        ipv6::Upper::Proto(NextHeader::ICMPV6) => ip
            .packet()
            .get(chain.offset)
            .is_none_or(|&ty| ty < 128 || ty == TYPE_REDIRECT),
        ipv6::Upper::LaterFragment(NextHeader::ICMPV6) => true,
        _ => false,
    }
}

/// RFC 4443 2.4(e): may the switch answer the checked packet `ip` with the error
/// `(ty, code)`? Not an ICMPv6 error or redirect, not from `::` or a multicast source,
/// and not to a multicast destination but for packet too big and parameter problem
/// code 2. (A frame to a multicast or broadcast MAC is the pipeline's to refuse: it
/// knows the Ethernet header.) Rate limiting is the caller's (SPEC 12.5).
pub fn error_allowed<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    chain: &Ipv6Chain,
    (ty, code): (u8, u8),
) -> bool {
    let src = ip.src();
    if is_error(ip, chain) || ipv6::is_unspecified(&src) || ipv6::is_multicast(&src) {
        return false;
    }
    !ipv6::is_multicast(&ip.dst())
        || ty == TYPE_PACKET_TOO_BIG
        || (ty == TYPE_PARAM_PROBLEM && code == CODE_UNRECOGNIZED_OPTION)
}

/// True when `frame` (an Ethernet frame whose IPv6 header passed the checks) carries,
/// directly after the fixed header, an ICMPv6 echo request with code 0 and a valid
/// checksum. Requests behind extension headers are not answered: the reply would have
/// to echo or drop them, and no guest needs that to ping its gateway.
pub fn is_echo_request(frame: &[u8]) -> bool {
    let Some(Ok(ip)) = frame
        .get(ETHERNET_HEADER_LEN..)
        .map(Ipv6Packet::new_checked)
    else {
        return false;
    };
    if ip.next_header() != NextHeader::ICMPV6 {
        return false;
    }
    let m = ip.payload();
    match Icmpv6Packet::new_checked(m) {
        Ok(p) => {
            p.msg_type() == TYPE_ECHO_REQUEST
                && p.code() == 0
                && p.verify_checksum(&ip.src(), &ip.dst())
        }
        Err(_) => false,
    }
}

/// Turns the echo request in `frame` into the reply, in place: `gw_ip` at `gw_mac`
/// answers the sender, hop limit [`ORIGIN_HOP_LIMIT`], checksum recomputed. Callers
/// check [`is_echo_request`] first (else nothing is written). The frame keeps its
/// length.
pub fn echo_reply_in_place(frame: &mut [u8], gw_mac: MacAddr, gw_ip: Ipv6Addr) {
    if !is_echo_request(frame) {
        return;
    }
    let (eth, rest) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let requester = MacAddr::from_slice(&eth[6..12]);
    eth[0..6].copy_from_slice(&requester.0);
    eth[6..12].copy_from_slice(&gw_mac.0);
    let mut ip = Ipv6Packet::new_unchecked(rest);
    let src = ip.src();
    ip.set_dst(src);
    ip.set_src(gw_ip);
    ip.set_hop_limit(ORIGIN_HOP_LIMIT);
    let m = ip.payload_mut();
    m[0] = TYPE_ECHO_REPLY;
    fill_checksum(m, &gw_ip, &src);
}

/// Length of the error frame [`error_in_place`] makes from the IPv6 frame `frame`:
/// Ethernet, IPv6, the 8-byte ICMPv6 header and as much of the offending IPv6 packet
/// (padding excluded) as keeps the IPv6 packet within 1280 bytes. 0 when `frame` is
/// not an Ethernet frame with a valid IPv6 header.
pub fn error_len(frame: &[u8]) -> usize {
    match frame
        .get(ETHERNET_HEADER_LEN..)
        .map(Ipv6Packet::new_checked)
    {
        Some(Ok(ip)) => {
            ETHERNET_HEADER_LEN
                + IPV6_HEADER_LEN
                + ICMPV6_HEADER_LEN
                + ip.packet_len().min(MAX_QUOTE)
        }
        _ => 0,
    }
}

/// Rewrites the IPv6 frame occupying `buf[..frame_len]` (its header checked) into the
/// ICMPv6 error `(ty, code)` from `gw_ip`/`gw_mac` back to its sender, and returns the
/// new length. `param` is the header's last four bytes: the MTU of a packet too big,
/// the pointer of a parameter problem, 0 otherwise. `buf` is the whole buffer and must
/// hold [`error_len`] bytes, else nothing changes and 0 is returned. Callers check
/// [`error_allowed`] first.
pub fn error_in_place(
    buf: &mut [u8],
    frame_len: usize,
    gw_mac: MacAddr,
    gw_ip: Ipv6Addr,
    (ty, code): (u8, u8),
    param: u32,
) -> usize {
    let Some(frame) = buf.get(..frame_len) else {
        return 0;
    };
    let total = error_len(frame);
    if total == 0 || buf.len() < total {
        return 0;
    }
    let ip = Ipv6Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    let q = ip.packet_len().min(MAX_QUOTE);
    let orig_src = ip.src();
    let requester = MacAddr::from_slice(&buf[6..12]);
    let body = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + ICMPV6_HEADER_LEN;
    buf.copy_within(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + q, body);
    write_eth_ipv6(
        buf,
        requester,
        gw_mac,
        (gw_ip, orig_src),
        ORIGIN_HOP_LIMIT,
        ICMPV6_HEADER_LEN + q,
    );
    let m = &mut buf[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..total];
    m[0] = ty;
    m[1] = code;
    m[4..8].copy_from_slice(&param.to_be_bytes());
    fill_checksum(m, &gw_ip, &orig_src);
    total
}

/// Writes an Ethernet header and an IPv6 header carrying ICMPv6 of `payload_len`
/// bytes into `buf` (at least 54 bytes long; callers check).
pub(crate) fn write_eth_ipv6(
    buf: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    hop_limit: u8,
    payload_len: usize,
) {
    buf[0..6].copy_from_slice(&eth_dst.0);
    buf[6..12].copy_from_slice(&eth_src.0);
    buf[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
    let h = &mut buf[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + IPV6_HEADER_LEN];
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = NextHeader::ICMPV6;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv6Packet as SIcmp, Icmpv6Repr};

    const GUEST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 5);
    const GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);
    const FAR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 9);
    const GMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 5]);
    const GWMAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);

    fn meta(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6Meta {
        Ipv6Meta {
            src,
            dst,
            hop_limit: 64,
            fragmented: false,
        }
    }

    fn icmp_of(frame: &[u8]) -> (Ipv6Meta, &[u8]) {
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let chain = ip.walk().unwrap();
        let m = Ipv6Meta::of(&ip, &chain);
        let ip = Ipv6Packet::new_unchecked(&frame[14..]);
        let len = ip.packet_len();
        (m, &frame[14 + chain.offset..14 + len])
    }

    #[test]
    fn echo_request_parses_and_checksum_is_verified() {
        let f = build::icmpv6_echo(GWMAC, GMAC, GUEST, GW, 64, 0x1234, 7);
        let (m, icmp) = icmp_of(&f);
        match parse(&m, icmp).unwrap() {
            Icmpv6Message::EchoRequest { ident, seq, data } => {
                assert_eq!((ident, seq), (0x1234, 7));
                assert_eq!(data, b"vpcswitch-echo!!");
            }
            other => panic!("{other:?}"),
        }
        // smoltcp agrees the checksum is right
        let s = SIcmp::new_checked(icmp).unwrap();
        assert!(s.verify_checksum(&GUEST, &GW));
        // every single-bit flip is caught by the checksum or the parser
        for i in 0..icmp.len() * 8 {
            let mut b = icmp.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            assert!(parse(&m, &b).is_err(), "bit {i}");
        }
        // the pseudo-header counts: another destination fails
        assert_eq!(
            parse(&meta(GUEST, FAR), icmp),
            Err(Icmpv6Error::BadChecksum)
        );
        // every truncation is refused (short: Truncated; else the checksum)
        for n in 0..icmp.len() {
            assert!(parse(&m, &icmp[..n]).is_err(), "len {n}");
        }
        for n in 0..8 {
            assert_eq!(
                Icmpv6Packet::new_checked(&icmp[..n]).unwrap_err(),
                Icmpv6Error::Truncated
            );
        }
    }

    #[test]
    fn echo_with_a_code_is_refused() {
        let mut f = build::icmpv6_echo(GWMAC, GMAC, GUEST, GW, 64, 1, 1);
        f[14 + 40 + 1] = 1;
        let (m, icmp) = icmp_of(&f);
        let mut icmp = icmp.to_vec();
        fill_checksum(&mut icmp, &GUEST, &GW);
        assert_eq!(parse(&m, &icmp), Err(Icmpv6Error::BadCode));
    }

    /// SPEC 12.5 (as 5.6): the gateway answers a ping; smoltcp reads the reply.
    #[test]
    fn echo_reply_in_place_is_valid() {
        let mut f = build::icmpv6_echo(GWMAC, GMAC, GUEST, GW, 64, 0x1234, 7);
        assert!(is_echo_request(&f));
        echo_reply_in_place(&mut f, GWMAC, GW);
        assert!(!is_echo_request(&f));
        assert_eq!(&f[0..6], &GMAC.0);
        assert_eq!(&f[6..12], &GWMAC.0);
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.hop_limit()), (GW, GUEST, 64));
        let s = SIcmp::new_checked(ip.payload()).unwrap();
        let r = Icmpv6Repr::parse(&GW, &GUEST, &s, &ChecksumCapabilities::default()).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"vpcswitch-echo!!"
            }
        );
        // not a request: untouched
        let before = f.clone();
        echo_reply_in_place(&mut f, GWMAC, GW);
        assert_eq!(f, before);
    }

    #[test]
    fn echo_behind_an_extension_header_is_not_answered() {
        let mut f = build::icmpv6_echo(GWMAC, GMAC, GUEST, GW, 64, 1, 1);
        // insert an 8-byte destination options header
        let icmp = f.split_off(54);
        f[14 + 6] = NextHeader::DEST_OPTS;
        f.extend_from_slice(&[NextHeader::ICMPV6, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&icmp);
        let pl = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&pl.to_be_bytes());
        assert!(!is_echo_request(&f));
        // yet it parses as an echo request through the walk
        let (m, icmp) = icmp_of(&f);
        assert!(matches!(
            parse(&m, icmp),
            Ok(Icmpv6Message::EchoRequest { .. })
        ));
    }

    /// SPEC 12.5: time exceeded quotes the offending packet, and smoltcp reads it.
    #[test]
    fn time_exceeded_quotes_the_packet() {
        let f = build::icmpv6_echo(GWMAC, GMAC, GUEST, FAR, 1, 9, 9);
        let mut buf = vec![0u8; 1600];
        buf[..f.len()].copy_from_slice(&f);
        let n = error_in_place(
            &mut buf,
            f.len(),
            GWMAC,
            GW,
            (TYPE_TIME_EXCEEDED, CODE_HOP_LIMIT_EXCEEDED),
            0,
        );
        assert_eq!(n, 14 + 40 + 8 + (f.len() - 14));
        assert_eq!(&buf[0..6], &GMAC.0);
        let ip = Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (GW, GUEST));
        let chain = ip.walk().unwrap();
        assert!(is_error(&ip, &chain), "an error answers no error");
        let s = SIcmp::new_checked(ip.payload()).unwrap();
        match Icmpv6Repr::parse(&GW, &GUEST, &s, &ChecksumCapabilities::default()).unwrap() {
            Icmpv6Repr::TimeExceeded { header, data, .. } => {
                assert_eq!((header.src_addr, header.dst_addr), (GUEST, FAR));
                assert_eq!(header.hop_limit, 1);
                assert_eq!(data, &f[54..]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&Ipv6Meta::of(&ip, &chain), ip.payload()).unwrap() {
            Icmpv6Message::TimeExceeded { code, invoking } => {
                assert_eq!(code, 0);
                assert_eq!(invoking, &f[14..]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// RFC 4443 2.4(c): a big packet is quoted up to what fits 1280 bytes.
    #[test]
    fn errors_stay_within_the_minimum_mtu() {
        let f = build::udp6(
            build::Ends6 {
                dst: GWMAC,
                src: GMAC,
                sip: GUEST,
                dip: FAR,
            },
            64,
            1000,
            2000,
            &[0x5a; 1400],
        );
        let mut buf = f.clone();
        let len = buf.len();
        let n = error_in_place(
            &mut buf,
            len,
            GWMAC,
            GW,
            (TYPE_DST_UNREACHABLE, CODE_NO_ROUTE),
            0,
        );
        assert_eq!(n, 14 + IPV6_MIN_MTU);
        let ip = Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        assert_eq!(ip.packet_len(), IPV6_MIN_MTU);
        let body = &ip.payload()[8..];
        assert_eq!(body, &f[14..14 + MAX_QUOTE]);
        let chain = ip.walk().unwrap();
        assert!(matches!(
            parse(&Ipv6Meta::of(&ip, &chain), ip.payload()),
            Ok(Icmpv6Message::DstUnreachable { code: 0, .. })
        ));
        // packet too big carries the MTU inside the checksum
        let mut buf = f.clone();
        let n = error_in_place(&mut buf, len, GWMAC, GW, (TYPE_PACKET_TOO_BIG, 0), 1450);
        let ip = Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        let chain = ip.walk().unwrap();
        assert!(matches!(
            parse(&Ipv6Meta::of(&ip, &chain), ip.payload()),
            Ok(Icmpv6Message::PacketTooBig { mtu: 1450, .. })
        ));
    }

    #[test]
    fn error_refuses_a_small_buffer_and_leaves_it_alone() {
        let f = build::icmpv6_echo(GWMAC, GMAC, GUEST, FAR, 1, 9, 9);
        let mut small = f.clone();
        let len = small.len();
        assert_eq!(error_in_place(&mut small, len, GWMAC, GW, (3, 0), 0), 0);
        assert_eq!(small, f);
        // a frame that is not IPv6: nothing
        let mut junk = vec![0u8; 200];
        assert_eq!(error_len(&junk), 0);
        assert_eq!(error_len(&[]), 0);
        assert_eq!(error_in_place(&mut junk, 60, GWMAC, GW, (3, 0), 0), 0);
        assert_eq!(error_in_place(&mut junk, 500, GWMAC, GW, (3, 0), 0), 0);
    }

    /// SPEC 12.5, RFC 4443 2.4(e): which packets an error may answer.
    #[test]
    fn errors_are_not_sent_about_errors_or_multicast() {
        let allowed = |f: &[u8], ty: (u8, u8)| {
            let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
            let chain = ip.walk().unwrap();
            error_allowed(&ip, &chain, ty)
        };
        let te = (TYPE_TIME_EXCEEDED, 0);
        let ping = build::icmpv6_echo(GWMAC, GMAC, GUEST, FAR, 1, 1, 1);
        assert!(allowed(&ping, te));
        // about an error: never
        let mut buf = vec![0u8; 400];
        buf[..ping.len()].copy_from_slice(&ping);
        let n = error_in_place(&mut buf, ping.len(), GWMAC, GW, te, 0);
        assert!(!allowed(&buf[..n], te));
        // to a multicast destination: only packet too big and param problem code 2
        let mc = build::icmpv6_echo(GWMAC, GMAC, GUEST, ipv6::ALL_NODES, 1, 1, 1);
        assert!(!allowed(&mc, te));
        assert!(allowed(&mc, (TYPE_PACKET_TOO_BIG, 0)));
        assert!(allowed(&mc, (TYPE_PARAM_PROBLEM, 2)));
        assert!(!allowed(&mc, (TYPE_PARAM_PROBLEM, 0)));
        // from :: or a multicast source: never
        let un = build::icmpv6_echo(GWMAC, GMAC, Ipv6Addr::UNSPECIFIED, FAR, 1, 1, 1);
        assert!(!allowed(&un, (TYPE_PACKET_TOO_BIG, 0)));
        let ms = build::icmpv6_echo(GWMAC, GMAC, ipv6::ALL_NODES, FAR, 1, 1, 1);
        assert!(!allowed(&ms, te));
        // a redirect counts as an error
        let mut r = ping.clone();
        r[54] = TYPE_REDIRECT;
        assert!(!allowed(&r, te));
    }

    proptest! {
        /// Nothing panics on any message bytes; what parses had a valid checksum.
        #[test]
        fn arbitrary_messages_never_panic(b in proptest::collection::vec(any::<u8>(), 0..128),
                                          ty in prop_oneof![1u8..=4, 128u8..=137, any::<u8>()],
                                          fix in any::<bool>()) {
            let mut b = b;
            if let Some(t) = b.first_mut() { *t = ty; }
            if fix && b.len() >= 4 {
                fill_checksum(&mut b, &GUEST, &GW);
            }
            let mut m = meta(GUEST, GW);
            m.hop_limit = 255;
            if let Ok(p) = Icmpv6Packet::new_checked(&b[..]) {
                let _ = (p.word(), p.body().len(), p.echo_seq());
            }
            if parse(&m, &b).is_ok() {
                prop_assert!(Icmpv6Packet::new_unchecked(&b[..]).verify_checksum(&GUEST, &GW));
            }
        }

        /// Error emission on arbitrary frames: never panics, and what it writes parses.
        #[test]
        fn error_in_place_on_arbitrary_frames(mut f in proptest::collection::vec(any::<u8>(), 0..200),
                                              extra in 0usize..100) {
            if f.len() >= 54 {
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                f[14] = 0x60;
                let pl = (f.len() - 54) as u16;
                f[18..20].copy_from_slice(&pl.to_be_bytes());
            }
            let len = f.len();
            f.resize(len + extra, 0);
            let n = error_in_place(&mut f, len, GWMAC, GW, (1, 0), 0);
            if n > 0 {
                let ip = Ipv6Packet::new_checked(&f[14..n]).unwrap();
                let chain = ip.walk().unwrap();
                prop_assert!(parse(&Ipv6Meta::of(&ip, &chain), ip.payload()).is_ok());
            }
        }
    }
}
