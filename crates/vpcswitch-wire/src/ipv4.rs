//! IPv4 headers.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::WireError;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const LENGTH: Range<usize> = 2..4;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// The smallest IPv4 header (IHL 5).
pub const IPV4_MIN_HEADER_LEN: usize = 20;

/// IP protocol numbers the switch cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpProtocol;

impl IpProtocol {
    /// ICMP
    pub const ICMP: u8 = 1;
    /// TCP
    pub const TCP: u8 = 6;
    /// UDP
    pub const UDP: u8 = 17;
}

/// A checked view of an IPv4 packet (the Ethernet payload).
///
/// `new_checked` guarantees: version 4, `20 <= IHL*4 <= total_len <= buffer length`.
/// Bytes beyond `total_len` (Ethernet padding) are ignored by [`Ipv4Packet::payload`].
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps and validates untrusted bytes.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        check(buf.as_ref())?;
        Ok(Ipv4Packet { buf })
    }
    /// Wraps bytes already validated by [`Ipv4Packet::new_checked`] or [`crate::classify`].
    /// Accessors may panic if the bytes were not validated; the pipeline only calls this
    /// after a successful check of the same buffer.
    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }
    /// The total length field.
    #[inline]
    pub fn total_len(&self) -> usize {
        let b = &self.b()[field::LENGTH];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    /// Protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    /// Source address, host order.
    #[inline]
    pub fn src_u32(&self) -> u32 {
        let b = &self.b()[field::SRC];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Destination address, host order.
    #[inline]
    pub fn dst_u32(&self) -> u32 {
        let b = &self.b()[field::DST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }
    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.b()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// True when the header checksum is valid.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold64(checksum::sum_fast(&self.b()[..self.header_len()])) == 0xffff
    }
    /// True when DF (don't fragment) is set.
    pub fn dont_frag(&self) -> bool {
        self.b()[field::FLG_OFF][0] & 0x40 != 0
    }
    /// True for any fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        let b = &self.b()[field::FLG_OFF];
        u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0
    }
    /// The fragment offset in bytes (0 for an unfragmented packet and a first
    /// fragment).
    #[inline]
    pub fn frag_offset(&self) -> usize {
        let b = &self.b()[field::FLG_OFF];
        usize::from(u16::from_be_bytes([b[0], b[1]]) & 0x1fff) * 8
    }
    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }
    /// The payload up to `total_len` (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    fn set_checksum(&mut self, c: u16) {
        self.bm()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    /// Decrements TTL by one and updates the checksum incrementally (RFC 1624).
    /// Callers check `ttl() > 1` first (SPEC 5.5).
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.bm();
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        // The TTL is the high byte of its 16-bit word: the sum drops by 0x0100, so the
        // checksum rises by 0x0100 with end-around carry (RFC 1624; Linux
        // ip_decrease_ttl).
        let c = u32::from(u16::from_be_bytes([b[10], b[11]])) + 0x0100;
        let c = (c + (c >> 16)) as u16;
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    /// Sets the TTL and recomputes the checksum incrementally.
    pub fn set_ttl(&mut self, ttl: u8) {
        let old = u16::from_be_bytes([self.b()[field::TTL], self.b()[field::PROTOCOL]]);
        self.bm()[field::TTL] = ttl;
        let new = u16::from_be_bytes([ttl, self.protocol()]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }
    /// Rewrites the source address, updating the header checksum incrementally.
    /// The caller updates any L4 pseudo-header checksum (see [`crate::l4`]).
    pub fn set_src(&mut self, ip: Ipv4Addr) {
        let old = self.src_u32();
        let new = u32::from(ip);
        self.bm()[field::SRC].copy_from_slice(&new.to_be_bytes());
        let c = checksum::update32(self.checksum(), old, new);
        self.set_checksum(c);
    }
    /// Rewrites the destination address, updating the header checksum incrementally.
    pub fn set_dst(&mut self, ip: Ipv4Addr) {
        let old = self.dst_u32();
        let new = u32::from(ip);
        self.bm()[field::DST].copy_from_slice(&new.to_be_bytes());
        let c = checksum::update32(self.checksum(), old, new);
        self.set_checksum(c);
    }
    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.b()[..hl]);
        self.set_checksum(c);
    }
    /// Mutable payload up to `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &mut self.bm()[h..t]
    }
}

/// The checks of [`Ipv4Packet::new_checked`] on a raw slice.
#[inline]
pub(crate) fn check(b: &[u8]) -> Result<(), WireError> {
    let h = b
        .first_chunk::<IPV4_MIN_HEADER_LEN>()
        .ok_or(WireError::Truncated)?;
    let tl = usize::from(u16::from_be_bytes([h[2], h[3]]));
    // the usual header (version 4, no options): only the total length to check
    if h[field::VER_IHL] == 0x45 {
        return if tl < IPV4_MIN_HEADER_LEN || tl > b.len() {
            Err(WireError::BadTotalLen)
        } else {
            Ok(())
        };
    }
    if h[field::VER_IHL] >> 4 != 4 {
        return Err(WireError::BadVersion);
    }
    let hl = usize::from(h[field::VER_IHL] & 0x0f) * 4;
    if hl < IPV4_MIN_HEADER_LEN || hl > b.len() {
        return Err(WireError::BadHeaderLen);
    }
    if tl < hl || tl > b.len() {
        return Err(WireError::BadTotalLen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.1.5 -> 10.0.2.9, ICMP, TTL 64, total length 28 (header + 8-byte echo).
    fn fixture() -> Vec<u8> {
        let mut v = vec![
            0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 1, 5, 10, 0, 2, 9, 8, 0, 0, 0,
            0, 1, 0, 1,
        ];
        let c = checksum::checksum(&v[..20]);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v
    }

    #[test]
    fn fields() {
        let v = fixture();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::ICMP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 1, 5));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 2, 9));
        assert!(p.verify_checksum());
        assert!(!p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.payload().len(), 8);
        // MF set, offset 185 × 8 bytes: DF is not part of the offset
        let mut f = v.clone();
        f[6..8].copy_from_slice(&(0x6000u16 | 185).to_be_bytes());
        let p = Ipv4Packet::new_unchecked(&f[..]);
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut v = fixture();
        v.extend_from_slice(&[0; 18]);
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn malformed_headers_are_typed() {
        let v = fixture();
        assert_eq!(check(&v[..19]), Err(WireError::Truncated));
        let mut b = v.clone();
        b[0] = 0x65;
        assert_eq!(check(&b), Err(WireError::BadVersion));
        let mut b = v.clone();
        b[0] = 0x44;
        assert_eq!(check(&b), Err(WireError::BadHeaderLen));
        let mut b = v.clone();
        b[0] = 0x4f; // 60 bytes > 28
        assert_eq!(check(&b), Err(WireError::BadHeaderLen));
        let mut b = v.clone();
        b[3] = 29;
        assert_eq!(check(&b), Err(WireError::BadTotalLen));
        let mut b = v;
        b[3] = 19;
        assert_eq!(check(&b), Err(WireError::BadTotalLen));
    }

    #[test]
    fn ttl_and_address_rewrites_keep_checksum_valid() {
        let mut v = fixture();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        p.set_src(Ipv4Addr::new(198, 51, 100, 7));
        p.set_dst(Ipv4Addr::new(203, 0, 113, 1));
        assert!(p.verify_checksum());
        p.set_ttl(1);
        assert!(p.verify_checksum());
    }
}
