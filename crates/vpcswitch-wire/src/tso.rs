//! TCP segmentation in software (TSO), for a super-frame that must leave through a
//! port that cannot take it. Each segment is written straight into a caller's buffer:
//! no allocation.

use crate::checksum;
use crate::ethernet::ETHERNET_HEADER_LEN;
use crate::ipv4::IpProtocol;

/// The layout of a TCPv4 super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp4Layout {
    ihl: usize,
    thl: usize,
    payload: usize,
    mss: usize,
}

impl Tcp4Layout {
    /// Checks `frame` is Ethernet/IPv4/TCP with consistent lengths and `mss > 0`.
    pub fn parse(frame: &[u8], mss: usize) -> Option<Tcp4Layout> {
        let ip = frame.get(ETHERNET_HEADER_LEN..)?;
        if frame.get(12..14)? != [0x08, 0x00]
            || ip.len() < 20
            || ip[0] >> 4 != 4
            || ip[9] != IpProtocol::TCP
        {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let thl = usize::from(*ip.get(ihl + 12)? >> 4) * 4;
        if ihl < 20 || thl < 20 || total < ihl + thl || total > ip.len() || mss == 0 {
            return None;
        }
        Some(Tcp4Layout {
            ihl,
            thl,
            payload: total - ihl - thl,
            mss,
        })
    }
    /// Number of segments.
    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }
    /// Length of the headers (Ethernet, IPv4, TCP).
    pub fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN + self.ihl + self.thl
    }
    /// Length of segment `i`.
    pub fn segment_len(&self, i: usize) -> usize {
        let start = i * self.mss;
        self.header_len() + self.payload.saturating_sub(start).min(self.mss)
    }

    /// Writes segment `i` of `frame` into `out`, with valid IPv4 and TCP checksums;
    /// returns its length, or `None` when `out` is too small or `i` out of range.
    pub fn write_segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
        if i >= self.count() {
            return None;
        }
        let h = self.header_len();
        let start = i * self.mss;
        let len = self.payload.saturating_sub(start).min(self.mss);
        let n = h + len;
        if out.len() < n || frame.len() < h + self.payload {
            return None;
        }
        out[..h].copy_from_slice(&frame[..h]);
        out[h..n].copy_from_slice(&frame[h + start..h + start + len]);
        let last = i + 1 == self.count();
        let e = ETHERNET_HEADER_LEN;
        // IPv4: length, id, checksum
        let tl = (self.ihl + self.thl + len) as u16;
        out[e + 2..e + 4].copy_from_slice(&tl.to_be_bytes());
        let id = u16::from_be_bytes([out[e + 4], out[e + 5]]).wrapping_add(i as u16);
        out[e + 4..e + 6].copy_from_slice(&id.to_be_bytes());
        out[e + 10..e + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&out[e..e + self.ihl]);
        out[e + 10..e + 12].copy_from_slice(&c.to_be_bytes());
        // TCP: sequence, flags, checksum
        let t = e + self.ihl;
        let seq = u32::from_be_bytes([out[t + 4], out[t + 5], out[t + 6], out[t + 7]])
            .wrapping_add(start as u32);
        out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        if !last {
            out[t + 13] &= !(0x01 | 0x08); // FIN, PSH only on the last segment
        }
        if i > 0 {
            out[t + 13] &= !0x80; // CWR only on the first
        }
        out[t + 16..t + 18].copy_from_slice(&[0, 0]);
        let tcp_len = (self.thl + len) as u32;
        let mut acc = checksum::sum(0, &out[e + 12..e + 20]); // source and destination
        acc += u32::from(IpProtocol::TCP) + tcp_len;
        acc = checksum::sum(acc, &out[t..n]);
        let c = !checksum::fold(acc);
        out[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, MacAddr};
    use std::net::Ipv4Addr;

    fn super_frame(payload: usize, flags: u8) -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp.extend((0..payload).map(|i| (i % 251) as u8));
        build::ipv4(
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 1, 11),
            Ipv4Addr::new(10, 0, 1, 12),
            64,
            6,
            &tcp,
        )
    }

    #[test]
    fn segments_reassemble_with_valid_checksums() {
        let f = super_frame(10_000, 0x18 | 0x01); // PSH ACK FIN
        let l = Tcp4Layout::parse(&f, 1448).unwrap();
        assert_eq!(l.count(), 7);
        let mut data = Vec::new();
        let mut out = vec![0u8; 2048];
        for i in 0..l.count() {
            let n = l.write_segment(&f, i, &mut out).unwrap();
            assert_eq!(n, l.segment_len(i));
            let ip = &out[14..n];
            assert_eq!(
                checksum::fold(checksum::sum(0, &ip[..20])),
                0xffff,
                "IP checksum of {i}"
            );
            let mut acc = checksum::sum(0, &ip[12..20]);
            acc += 6 + (n - 34) as u32;
            acc = checksum::sum(acc, &ip[20..]);
            assert_eq!(checksum::fold(acc), 0xffff, "TCP checksum of {i}");
            let seq = u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]);
            assert_eq!(seq, 1_000_000 + (i * 1448) as u32);
            let fin_psh = ip[33] & 0x09;
            assert_eq!(fin_psh != 0, i == 6, "FIN/PSH only on the last");
            data.extend_from_slice(&ip[40..]);
        }
        let want: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
        assert_eq!(data, want);
        assert!(l.write_segment(&f, 7, &mut out).is_none());
        assert!(l.write_segment(&f, 0, &mut out[..100]).is_none());
    }

    #[test]
    fn refuses_what_is_not_tcpv4() {
        let f = super_frame(100, 0x10);
        assert!(Tcp4Layout::parse(&f, 0).is_none());
        let mut udp = f.clone();
        udp[23] = 17;
        assert!(Tcp4Layout::parse(&udp, 1448).is_none());
        assert!(Tcp4Layout::parse(&f[..40], 1448).is_none());
        for n in 0..f.len() {
            let _ = Tcp4Layout::parse(&f[..n], 1448);
        }
    }
}
