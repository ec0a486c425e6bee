//! Offload metadata: the virtio-net header a TAP or AF_PACKET device hands over with
//! each frame, checked once at ingress into a trusted [`Offload`] (SPEC 2.5).
//!
//! # Security intent
//! A VM's kernel writes this header itself, so it is guest input like every byte of the
//! frame. The raw header ([`VnetHdr`]) has no method that touches a frame: the only way
//! from it to anything the switch acts on is [`Offload::check`], which accepts
//!
//! * "checksum needed" only for an unfragmented IPv4 TCP or UDP packet, or an IPv6 one
//!   with TCP or UDP right after its fixed header (SPEC 12.1: dual-stack guests), whose
//!   checksum start is its L4 header and whose offset is that protocol's checksum field;
//! * segmentation only for such a TCP packet, with a segment size that fits a pool
//!   buffer and a segment count of at most [`MAX_GSO_SEGMENTS`];
//!
//! and refuses anything else with an [`OffloadError`] (a drop reason). The trusted
//! [`Offload`] keeps **no offsets**: where the checksum lives is derived from the frame
//! itself each time it is needed (completing a checksum in software, or writing the
//! header for a device that takes offload), bounded by the IPv4 total length. So the
//! switch never writes at an offset a guest chose, whatever the header said, and a
//! frame the switch builds itself (an ARP, an ICMP error) cannot inherit offload work:
//! it is not TCP or UDP, so no offset can be derived for it.

use crate::checksum;
use crate::ethernet::ETHERNET_HEADER_LEN;
use crate::ipv4::IpProtocol;
use crate::tso::Tcp4Layout;

/// The virtio-net header as a device handed it over (`struct virtio_net_hdr`, 10
/// bytes, little-endian as a TAP without `TUNSETVNETLE` on x86 writes it). Untrusted:
/// read only by [`Offload::check`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*` flags
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`: 0 none, 1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP L4, 0x80 ECN bit
    pub gso_type: u8,
    /// length of the headers (a hint for the device)
    pub hdr_len: u16,
    /// payload bytes per segment
    pub gso_size: u16,
    /// where checksumming starts
    pub csum_start: u16,
    /// where, from `csum_start`, the checksum is stored
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Length of the header on the wire.
    pub const WIRE_LEN: usize = 10;
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum holds only the pseudo-header sum.
    pub const NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive side).
    pub const DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`
    pub const GSO_TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_ECN`: the super-frame's first segment may carry CWR.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the 10-byte header.
    pub fn from_wire(b: &[u8; Self::WIRE_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }
    /// The 10-byte header.
    pub fn to_wire(&self) -> [u8; Self::WIRE_LEN] {
        let mut b = [0u8; Self::WIRE_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Most segments one super-frame may be cut into: a 64 KiB super-frame at IPv4's
/// default MSS of 536 needs 123. Beyond it the frame is refused
/// ([`OffloadError::TooManySegments`]), so one frame costs the worker every port shares
/// a bounded amount of work.
pub const MAX_GSO_SEGMENTS: usize = 128;

/// Longest frame a segment may be (a pool buffer of the runtime).
pub const MAX_SEGMENT_FRAME: usize = 2048;

/// Why a device's offload header was refused (SPEC 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffloadError {
    /// A flag other than `NEEDS_CSUM` and `DATA_VALID`, or a header length past the end
    /// of the frame.
    BadHeader,
    /// "Checksum needed" for a frame that is not an unfragmented IPv4 TCP or UDP
    /// packet (or IPv6 TCP or UDP without extension headers), or with a start or offset
    /// that is not its L4 checksum field.
    BadChecksumRequest,
    /// Segmentation of anything but IPv4 TCP (UDP, IPv6).
    GsoUnsupported,
    /// A TCPv4 super-frame whose segment size or layout does not fit: no checksum
    /// request, a segment size of 0 or one that makes segments longer than
    /// [`MAX_SEGMENT_FRAME`], inconsistent lengths.
    BadSegmentation,
    /// A super-frame that would make more than [`MAX_GSO_SEGMENTS`] segments.
    TooManySegments,
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OffloadError::BadHeader => {
                "offload header with unknown flags or a header length past the frame"
            }
            OffloadError::BadChecksumRequest => {
                "checksum offload not at the L4 checksum of an IPv4/IPv6 TCP/UDP packet"
            }
            OffloadError::GsoUnsupported => "segmentation offload other than TCPv4",
            OffloadError::BadSegmentation => "segmentation size or layout does not match the frame",
            OffloadError::TooManySegments => "segmentation into more segments than allowed",
        })
    }
}

impl std::error::Error for OffloadError {}

/// Offload work left on a frame, in trusted form: checked by [`Offload::check`], or
/// `None` for every frame that did not come with a header (and every frame the switch
/// builds). Holds no offsets (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Offload {
    /// Nothing to do: the frame is complete.
    #[default]
    None,
    /// The TCP or UDP checksum holds the pseudo-header sum and must be completed.
    Csum,
    /// A TCPv4 super-frame to cut into segments of `mss` payload bytes (checksum
    /// partial as for `Csum`); `ecn` as `VIRTIO_NET_HDR_GSO_ECN`.
    Tso {
        /// payload bytes per segment
        mss: u16,
        /// the ECN bit of the header
        ecn: bool,
    },
}

/// Offset of the checksum field in a TCP header.
const TCP_CSUM: usize = 16;
/// Offset of the checksum field in a UDP header.
const UDP_CSUM: usize = 6;

/// Where the L4 checksum of an unfragmented IPv4 TCP/UDP frame lives: checksum start,
/// field offset and end of the IP packet (padding excluded).
#[derive(Debug, Clone, Copy)]
struct L4Csum {
    start: usize,
    field: usize,
    end: usize,
}

impl L4Csum {
    /// Derives it from the frame; `None` for anything else (ARP, ICMP, fragments,
    /// truncated or inconsistent headers).
    fn of(frame: &[u8]) -> Option<L4Csum> {
        match frame.get(12..14)? {
            [0x08, 0x00] => L4Csum::of_v4(frame),
            [0x86, 0xdd] => L4Csum::of_v6(frame),
            _ => None,
        }
    }

    fn of_v4(frame: &[u8]) -> Option<L4Csum> {
        let e = ETHERNET_HEADER_LEN;
        let ip = frame.get(e..)?;
        let vihl = *ip.first()?;
        let ihl = usize::from(vihl & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
        // more fragments, or an offset: the checksum covers a datagram not all here
        if vihl >> 4 != 4 || ihl < 20 || frag & 0x3fff != 0 || total > ip.len() {
            return None;
        }
        let (field, min) = l4_field(*ip.get(9)?)?;
        if total < ihl + min {
            return None;
        }
        Some(L4Csum {
            start: e + ihl,
            field,
            end: e + total,
        })
    }

    /// SPEC 2.5, 12.1: IPv6 with TCP or UDP right after the fixed header (no
    /// extension headers, so no fragment: a guest's kernel asks for checksum offload
    /// only on such packets).
    fn of_v6(frame: &[u8]) -> Option<L4Csum> {
        let e = ETHERNET_HEADER_LEN;
        let ip = frame.get(e..)?;
        if ip.len() < IPV6_FIXED || ip[0] >> 4 != 6 {
            return None;
        }
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if IPV6_FIXED + plen > ip.len() {
            return None;
        }
        let (field, min) = l4_field(ip[6])?;
        if plen < min {
            return None;
        }
        Some(L4Csum {
            start: e + IPV6_FIXED,
            field,
            end: e + IPV6_FIXED + plen,
        })
    }
}

/// Length of the IPv6 fixed header.
const IPV6_FIXED: usize = 40;

/// The checksum field's offset and the header's minimum length of TCP or UDP.
fn l4_field(proto: u8) -> Option<(usize, usize)> {
    match proto {
        IpProtocol::TCP => Some((TCP_CSUM, 20)),
        IpProtocol::UDP => Some((UDP_CSUM, 8)),
        _ => None,
    }
}

impl Offload {
    /// Checks a device's header against the frame it came with (SPEC 2.5): the trusted
    /// form, or why it is refused. A header of zeros (or only `DATA_VALID`) is
    /// `Offload::None`.
    #[inline]
    pub fn check(h: &VnetHdr, frame: &[u8]) -> Result<Offload, OffloadError> {
        if h.flags & VnetHdr::NEEDS_CSUM == 0 && h.gso_type == 0 {
            // nothing asked; DATA_VALID only says the device verified the checksum
            return if h.flags & !VnetHdr::DATA_VALID != 0 || usize::from(h.hdr_len) > frame.len() {
                Err(OffloadError::BadHeader)
            } else {
                Ok(Offload::None)
            };
        }
        Offload::check_work(h, frame)
    }

    #[cold]
    fn check_work(h: &VnetHdr, frame: &[u8]) -> Result<Offload, OffloadError> {
        // `hdr_len` is a hint (Linux writes the length of the linear part, which may
        // hold payload too): bounded by the frame, never used; a device that takes
        // offload gets the real header length derived from the frame.
        if h.flags & !(VnetHdr::NEEDS_CSUM | VnetHdr::DATA_VALID) != 0
            || usize::from(h.hdr_len) > frame.len()
        {
            return Err(OffloadError::BadHeader);
        }
        let gso = h.gso_type & !VnetHdr::GSO_ECN;
        if gso != 0 && gso != VnetHdr::GSO_TCPV4 {
            return Err(OffloadError::GsoUnsupported);
        }
        let csum_ok = |c: &L4Csum| {
            usize::from(h.csum_start) == c.start && usize::from(h.csum_offset) == c.field
        };
        if gso == 0 {
            if h.flags & VnetHdr::NEEDS_CSUM == 0 {
                // the ECN bit alone: no segmentation, nothing asked
                return Err(OffloadError::BadHeader);
            }
            return match L4Csum::of(frame) {
                Some(c) if csum_ok(&c) => Ok(Offload::Csum),
                _ => Err(OffloadError::BadChecksumRequest),
            };
        }
        // TCPv4 segmentation: a TCP checksum request at the right place, and a layout
        // whose segments fit a buffer and are bounded in number
        let c = L4Csum::of(frame).ok_or(OffloadError::BadSegmentation)?;
        if h.flags & VnetHdr::NEEDS_CSUM == 0 || c.field != TCP_CSUM || !csum_ok(&c) {
            return Err(OffloadError::BadSegmentation);
        }
        let mss = usize::from(h.gso_size);
        let l = Tcp4Layout::parse(frame, mss).ok_or(OffloadError::BadSegmentation)?;
        if l.header_len() + mss > MAX_SEGMENT_FRAME {
            return Err(OffloadError::BadSegmentation);
        }
        if l.count() > MAX_GSO_SEGMENTS {
            return Err(OffloadError::TooManySegments);
        }
        Ok(Offload::Tso {
            mss: h.gso_size,
            ecn: h.gso_type & VnetHdr::GSO_ECN != 0,
        })
    }

    /// True when the frame is a segmentation super-frame.
    #[inline]
    pub fn is_gso(&self) -> bool {
        matches!(self, Offload::Tso { .. })
    }
    /// True when the L4 checksum still has to be completed.
    #[inline]
    pub fn needs_csum(&self) -> bool {
        !matches!(self, Offload::None)
    }

    /// The header to hand a device that takes offload, derived from the frame as it is
    /// now (offsets, header length). A frame from which no L4 checksum field can be
    /// derived gets a header of zeros: it has no work left (the switch built it).
    pub fn vnet_hdr(&self, frame: &[u8]) -> VnetHdr {
        let Some(c) = (!matches!(self, Offload::None))
            .then(|| L4Csum::of(frame))
            .flatten()
        else {
            return VnetHdr::default();
        };
        let mut h = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: c.start as u16,
            csum_offset: c.field as u16,
            ..VnetHdr::default()
        };
        if let Offload::Tso { mss, ecn } = *self {
            if let Some(l) = Tcp4Layout::parse(frame, usize::from(mss)) {
                h.gso_type = VnetHdr::GSO_TCPV4 | if ecn { VnetHdr::GSO_ECN } else { 0 };
                h.gso_size = mss;
                h.hdr_len = l.header_len() as u16;
            }
        }
        h
    }

    /// Completes a partial TCP/UDP checksum in software (for a destination without
    /// offload), at the field derived from the frame, summing the IP payload only (not
    /// Ethernet padding); `self` becomes `None`. False, leaving the frame unchanged,
    /// when the frame is not a TCP/UDP packet any more or `self` is a super-frame
    /// (segment it instead).
    pub fn finish_checksum(&mut self, frame: &mut [u8]) -> bool {
        if *self != Offload::Csum {
            return *self == Offload::None;
        }
        let Some(c) = L4Csum::of(frame) else {
            return false;
        };
        let at = c.start + c.field;
        // the field holds the pseudo-header sum already (CHECKSUM_PARTIAL)
        let mut sum = checksum::checksum(&frame[c.start..c.end]);
        if sum == 0 && c.field == UDP_CSUM {
            sum = 0xffff; // RFC 768: a computed 0 is sent as all ones
        }
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        *self = Offload::None;
        true
    }

    /// The segmentation layout of a super-frame (checked at ingress); `None` for any
    /// other frame or one that no longer parses.
    pub fn segments(&self, frame: &[u8]) -> Option<Tcp4Layout> {
        match *self {
            Offload::Tso { mss, .. } => Tcp4Layout::parse(frame, usize::from(mss)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, MacAddr};
    use std::net::Ipv4Addr;

    fn frame(proto: u8, l4: &[u8]) -> Vec<u8> {
        build::ipv4(
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 1, 11),
            Ipv4Addr::new(10, 0, 1, 12),
            64,
            proto,
            l4,
        )
    }
    fn tcp(payload: usize) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[12] = 5 << 4;
        t.extend((0..payload).map(|i| i as u8));
        frame(IpProtocol::TCP, &t)
    }
    fn csum(start: u16, offset: u16) -> VnetHdr {
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: start,
            csum_offset: offset,
            ..VnetHdr::default()
        }
    }

    #[test]
    fn header_round_trips() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::from_wire(&h.to_wire()), h);
    }

    /// SPEC 2.5, 12.1: IPv6 TCP/UDP checksum requests at their L4 checksum field are
    /// taken and completed right; any other offset, extension headers, ICMPv6 and
    /// IPv6 segmentation are refused.
    #[test]
    fn ipv6_checksum_requests_are_checked_and_completed() {
        use std::net::Ipv6Addr;
        let ends = build::Ends6 {
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            sip: "fd00::11".parse::<Ipv6Addr>().unwrap(),
            dip: "fd00::12".parse::<Ipv6Addr>().unwrap(),
        };
        for (good, field) in [
            (build::tcp6(ends, 64, 1000, 2000, &[7u8; 300]), 16),
            (build::udp6(ends, 64, 1000, 2000, &[7u8; 300]), 6),
        ] {
            assert_eq!(Offload::check(&csum(54, field), &good), Ok(Offload::Csum));
            for (s, o) in [(54, 2), (34, field), (54, 18), (14, 10)] {
                assert_eq!(
                    Offload::check(&csum(s, o), &good),
                    Err(OffloadError::BadChecksumRequest),
                    "{s}+{o}"
                );
            }
            // a partial checksum (the pseudo-header sum, as CHECKSUM_PARTIAL leaves
            // it) is completed to the real one
            let at = 54 + usize::from(field);
            let mut partial = good.clone();
            let pseudo = checksum::fold(checksum::pseudo_v6(
                &ends.sip,
                &ends.dip,
                good[20],
                (good.len() - 54) as u32,
            ));
            partial[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            let mut o = Offload::Csum;
            assert!(o.finish_checksum(&mut partial));
            assert_eq!(partial, good);
            assert_eq!(o.vnet_hdr(&good), VnetHdr::default());
            assert_eq!(Offload::Csum.vnet_hdr(&good).csum_start, 54);
        }
        let icmp = build::icmpv6(ends, 64, (128, 0), 0, &[0; 8]);
        assert!(Offload::check(&csum(54, 2), &icmp).is_err());
        // a hop-by-hop header before TCP
        let mut hbh = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&build::tcp6(ends, 64, 1, 2, &[1; 20])[54..]);
        let ext = build::ipv6(ends, 64, 0, &hbh);
        assert!(Offload::check(&csum(62, 16), &ext).is_err());
        assert!(Offload::check(&csum(54, 16), &ext).is_err());
        let tso6 = VnetHdr {
            gso_type: 4,
            gso_size: 1000,
            ..csum(54, 16)
        };
        let big = build::tcp6(ends, 64, 1000, 2000, &[7u8; 3000]);
        assert_eq!(
            Offload::check(&tso6, &big),
            Err(OffloadError::GsoUnsupported)
        );
    }

    /// SPEC 2.5: checksum requests only at the L4 checksum of IPv4 TCP/UDP.
    #[test]
    fn checksum_requests_are_checked() {
        let f = tcp(100);
        assert_eq!(Offload::check(&csum(34, 16), &f), Ok(Offload::Csum));
        assert_eq!(Offload::check(&VnetHdr::default(), &f), Ok(Offload::None));
        let data_valid = VnetHdr {
            flags: VnetHdr::DATA_VALID,
            ..VnetHdr::default()
        };
        assert_eq!(Offload::check(&data_valid, &f), Ok(Offload::None));
        for (s, o) in [
            (30, 0),
            (34, 6),
            (26, 8),
            (14, 10),
            (34, 18),
            (65535, 65535),
        ] {
            assert_eq!(
                Offload::check(&csum(s, o), &f),
                Err(OffloadError::BadChecksumRequest),
                "{s}+{o}"
            );
        }
        let udp = frame(IpProtocol::UDP, &[0; 16]);
        assert_eq!(Offload::check(&csum(34, 6), &udp), Ok(Offload::Csum));
        assert!(Offload::check(&csum(34, 16), &udp).is_err());
        let icmp = frame(IpProtocol::ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Offload::check(&csum(34, 2), &icmp).is_err());
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(Offload::check(&csum(34, 16), &arp).is_err());
        let mut frag = f.clone();
        frag[20] = 0x20; // more fragments
        assert!(Offload::check(&csum(34, 16), &frag).is_err());
        let ecn_only = VnetHdr {
            gso_type: VnetHdr::GSO_ECN,
            ..VnetHdr::default()
        };
        assert_eq!(Offload::check(&ecn_only, &f), Err(OffloadError::BadHeader));
        let bad_flag = VnetHdr {
            flags: 4,
            ..VnetHdr::default()
        };
        assert_eq!(Offload::check(&bad_flag, &f), Err(OffloadError::BadHeader));
        let long = VnetHdr {
            hdr_len: 60_000,
            ..VnetHdr::default()
        };
        assert_eq!(Offload::check(&long, &f), Err(OffloadError::BadHeader));
    }

    /// SPEC 2.5: segmentation only for TCPv4, with a size that fits and bounded work.
    #[test]
    fn segmentation_is_checked_and_bounded() {
        let f = tcp(10_000);
        let tso = |mss: u16, gso_type: u8| VnetHdr {
            gso_type,
            gso_size: mss,
            hdr_len: 54,
            ..csum(34, 16)
        };
        assert_eq!(
            Offload::check(&tso(1448, 1), &f),
            Ok(Offload::Tso {
                mss: 1448,
                ecn: false
            })
        );
        assert_eq!(
            Offload::check(&tso(1448, 0x81), &f),
            Ok(Offload::Tso {
                mss: 1448,
                ecn: true
            })
        );
        for t in [3, 4, 5] {
            assert_eq!(
                Offload::check(&tso(1448, t), &f),
                Err(OffloadError::GsoUnsupported)
            );
        }
        assert_eq!(
            Offload::check(&tso(0, 1), &f),
            Err(OffloadError::BadSegmentation)
        );
        assert_eq!(
            Offload::check(&tso(4000, 1), &f),
            Err(OffloadError::BadSegmentation),
            "segments longer than a buffer"
        );
        // MSS 88 over 10 000 bytes: 114 segments, within the bound
        assert!(Offload::check(&tso(88, 1), &f).is_ok());
        let big = tcp(60_000);
        assert_eq!(
            Offload::check(&tso(88, 1), &big),
            Err(OffloadError::TooManySegments)
        );
        assert!(Offload::check(&tso(536, 1), &big).is_ok(), "default MSS");
        let no_csum = VnetHdr {
            flags: 0,
            ..tso(1448, 1)
        };
        assert_eq!(
            Offload::check(&no_csum, &f),
            Err(OffloadError::BadSegmentation)
        );
        let udp = frame(IpProtocol::UDP, &[0; 100]);
        assert!(Offload::check(&tso(50, 1), &udp).is_err());
    }

    /// SPEC 2.5: the checksum is written where the frame's own headers say, over the IP
    /// payload only, whatever the device's header said.
    #[test]
    fn completion_derives_its_offsets_and_ignores_padding() {
        let mut f = frame(IpProtocol::UDP, &[0x12, 0x34, 0, 0, 0, 8, 0, 0]);
        let plen = f.len();
        f.extend_from_slice(&[0xff; 10]); // Ethernet padding
                                          // the field holds 0 here: the result is the complement of the IP payload's sum
        let want = !checksum::fold(checksum::sum(0, &f[34..plen]));
        let mut o = Offload::Csum;
        assert!(o.finish_checksum(&mut f));
        assert_eq!(o, Offload::None);
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), want);
        assert_eq!(&f[plen..], &[0xff; 10], "padding untouched");
        // not TCP/UDP (an ARP the switch built): nothing written
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let before = arp.clone();
        assert!(!Offload::Csum.finish_checksum(&mut arp));
        assert_eq!(arp, before);
        assert_eq!(Offload::Csum.vnet_hdr(&arp), VnetHdr::default());
    }

    #[test]
    fn device_headers_are_derived_from_the_frame() {
        let f = tcp(5000);
        let h = Offload::Tso {
            mss: 1000,
            ecn: true,
        }
        .vnet_hdr(&f);
        assert_eq!(
            h,
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type: 0x81,
                hdr_len: 54,
                gso_size: 1000,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert_eq!(Offload::None.vnet_hdr(&f), VnetHdr::default());
        assert_eq!(Offload::Csum.vnet_hdr(&f).csum_offset, 16);
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let f = tcp(3000);
        for n in 0..f.len() {
            for h in [
                csum(34, 16),
                VnetHdr {
                    gso_type: 1,
                    gso_size: 100,
                    ..csum(34, 16)
                },
            ] {
                if let Ok(mut o) = Offload::check(&h, &f[..n]) {
                    let mut g = f[..n].to_vec();
                    let _ = o.vnet_hdr(&g);
                    let _ = o.segments(&g);
                    let _ = o.finish_checksum(&mut g);
                }
            }
        }
    }
}
