//! Ethernet II frames.

use crate::{MacAddr, WireError};

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an untagged Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = field::PAYLOAD;

/// EtherType values the switch cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherType;

impl EtherType {
    /// IPv4
    pub const IPV4: u16 = 0x0800;
    /// ARP
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ)
    pub const QINQ: u16 = 0x88a8;
    /// IPv6
    pub const IPV6: u16 = 0x86dd;
}

/// A checked view of an Ethernet frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf`, checking it holds a whole Ethernet header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < field::PAYLOAD {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buf })
    }
    /// Wraps bytes already known to hold a whole Ethernet header (a frame that passed
    /// [`EthernetFrame::new_checked`] or [`crate::classify`]). Accessors may panic on a
    /// shorter buffer.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }
    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf.as_ref()[field::DST])
    }
    /// Source MAC.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf.as_ref()[field::SRC])
    }
    /// The EtherType (or TPID of a tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buf.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[field::PAYLOAD..]
    }
    /// The inner buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }
    /// Sets the source MAC.
    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buf.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }
    /// Mutable bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_fields() {
        let mut f = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06, 0xaa,
        ];
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        assert!(e.dst().is_broadcast());
        assert_eq!(e.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(e.payload(), &[0xaa]);
        e.set_dst(MacAddr([2, 0, 0, 0, 0, 9]));
        assert_eq!(e.dst(), MacAddr([2, 0, 0, 0, 0, 9]));
    }

    #[test]
    fn short_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            WireError::Truncated
        );
        assert!(EthernetFrame::new_checked(&[][..]).is_err());
    }
}
