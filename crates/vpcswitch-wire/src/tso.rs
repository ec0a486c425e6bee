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

/// Receive-side coalescing (the reverse of [`Tcp4Layout::write_segment`]): consecutive
/// TCPv4 segments of one flow, as another host's switch cut them from a super-frame,
/// joined again into one super-frame for a device that takes segmentation offload.
///
/// **Security**: the segments come from the network, so a segment joins only when
/// joining changes nothing a checker or the guest could see: its Ethernet header, IPv4
/// header (but length, identification and checksum) and TCP header (but sequence and
/// checksum, and PSH on the last) equal the first's, its sequence follows, the one
/// before it was full-sized, and **its IPv4 and TCP checksums are right** (a joined
/// frame gets a fresh partial checksum: a corrupt segment must never be laundered into
/// a valid one). No fragments, no flags but ACK (PSH ends the run). Nothing allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp4Merge {
    /// Ethernet + IPv4 + TCP header length
    hl: usize,
    ihl: usize,
    /// payload of the first segment: every segment but the last has it
    mss: usize,
    /// payload joined so far
    payload: usize,
    /// segments joined so far
    count: usize,
    /// the sequence number the next segment must have
    next_seq: u32,
    /// another segment may still join (the last one was full-sized, without PSH)
    open: bool,
}

/// TCP flags a joined segment may carry: ACK, and PSH (which ends the run).
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

impl Tcp4Merge {
    /// Starts a run at `frame`: an unfragmented IPv4 TCP segment with payload, flags
    /// ACK (and PSH), right checksums. `None` when it cannot join anything.
    pub fn start(frame: &[u8]) -> Option<Tcp4Merge> {
        let (hl, ihl, payload) = Self::parse(frame)?;
        let t = ETHERNET_HEADER_LEN + ihl;
        let flags = frame[t + 13];
        let seq = u32::from_be_bytes([frame[t + 4], frame[t + 5], frame[t + 6], frame[t + 7]]);
        Some(Tcp4Merge {
            hl,
            ihl,
            mss: payload,
            payload,
            count: 1,
            next_seq: seq.wrapping_add(payload as u32),
            open: flags & TCP_PSH == 0,
        })
    }

    /// The header length, IPv4 header length and payload of an IPv4 TCP segment that
    /// may join a run (see the type's rules), its checksums verified.
    fn parse(frame: &[u8]) -> Option<(usize, usize, usize)> {
        let e = ETHERNET_HEADER_LEN;
        let ip = frame.get(e..)?;
        if frame.get(12..14)? != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if ip[9] != IpProtocol::TCP || ihl < 20 || total > ip.len() || frag & 0x3fff != 0 {
            return None;
        }
        let thl = usize::from(*ip.get(ihl + 12)? >> 4) * 4;
        if thl < 20 || total < ihl + thl {
            return None;
        }
        let tcp = &ip[ihl..total];
        if tcp[13] & !(TCP_ACK | TCP_PSH) != 0 || tcp[13] & TCP_ACK == 0 || total == ihl + thl {
            return None;
        }
        // IPv4 header checksum, then the TCP checksum over the pseudo-header
        if checksum::checksum(&ip[..ihl]) != 0 {
            return None;
        }
        let mut acc = checksum::sum(0, &ip[12..20]);
        acc += u32::from(IpProtocol::TCP) + tcp.len() as u32;
        acc = checksum::sum(acc, tcp);
        if checksum::fold(acc) != 0xffff {
            return None;
        }
        Some((e + ihl + thl, ihl, total - ihl - thl))
    }

    /// Whether `frame` joins the run that `first` started (and then it is counted).
    /// A run stops at 64 KiB of IP packet and at [`MAX_GSO_SEGMENTS`](crate::offload::MAX_GSO_SEGMENTS).
    pub fn join(&mut self, first: &[u8], frame: &[u8]) -> bool {
        if !self.open || self.count == crate::offload::MAX_GSO_SEGMENTS {
            return false;
        }
        let Some((hl, ihl, payload)) = Self::parse(frame) else {
            return false;
        };
        if hl != self.hl
            || ihl != self.ihl
            || payload > self.mss
            || self.hl - ETHERNET_HEADER_LEN + self.payload + payload > usize::from(u16::MAX)
        {
            return false;
        }
        let (e, t) = (ETHERNET_HEADER_LEN, ETHERNET_HEADER_LEN + ihl);
        // equal but for: IPv4 length, id, checksum; TCP sequence, flags' PSH, checksum
        let same = |a: usize, b: usize| first.get(a..b) == frame.get(a..b);
        let flags_ok = (first[t + 13] & !TCP_PSH) == (frame[t + 13] & !TCP_PSH);
        if !(same(0, e + 2)
            && same(e + 6, e + 10)
            && same(e + 12, t + 4)
            && same(t + 8, t + 13)
            && same(t + 14, t + 16)
            && same(t + 18, hl)
            && flags_ok)
        {
            return false;
        }
        let seq = u32::from_be_bytes([frame[t + 4], frame[t + 5], frame[t + 6], frame[t + 7]]);
        if seq != self.next_seq {
            return false;
        }
        self.next_seq = seq.wrapping_add(payload as u32);
        self.payload += payload;
        self.count += 1;
        self.open = payload == self.mss && frame[t + 13] & TCP_PSH == 0;
        true
    }

    /// Segments in the run.
    pub fn count(&self) -> usize {
        self.count
    }
    /// The segment size of the joined frame (its first segment's payload).
    pub fn mss(&self) -> u16 {
        self.mss as u16
    }
    /// Length of the joined frame.
    pub fn len(&self) -> usize {
        self.hl + self.payload
    }
    /// Never empty: a run holds at least its first segment.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the joined frame of the run's segments `frames` (the first, then the ones
    /// that joined, in order) into `out`: the first's headers with the total length, a
    /// new IPv4 checksum, PSH if the last had it, and the TCP checksum field holding
    /// the pseudo-header sum (partial, for the device: as a guest's super-frame has
    /// it), then every payload. Its length, or `None` when `out` is too small.
    pub fn write<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut [u8],
    ) -> Option<usize> {
        let n = self.len();
        let out = out.get_mut(..n)?;
        let (e, t, hl) = (ETHERNET_HEADER_LEN, ETHERNET_HEADER_LEN + self.ihl, self.hl);
        let mut at = hl;
        let mut psh = false;
        for (i, f) in frames.into_iter().take(self.count).enumerate() {
            if i == 0 {
                out[..hl].copy_from_slice(f.get(..hl)?);
            }
            let total = usize::from(u16::from_be_bytes([*f.get(e + 2)?, *f.get(e + 3)?]));
            let p = f.get(hl..e + total)?;
            out.get_mut(at..at + p.len())?.copy_from_slice(p);
            at += p.len();
            psh = f.get(t + 13)? & TCP_PSH != 0;
        }
        if at != n {
            return None;
        }
        let ip_len = (n - e) as u16;
        out[e + 2..e + 4].copy_from_slice(&ip_len.to_be_bytes());
        out[e + 10..e + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&out[e..t]);
        out[e + 10..e + 12].copy_from_slice(&c.to_be_bytes());
        if psh {
            out[t + 13] |= TCP_PSH;
        }
        let tcp_len = (n - t) as u32;
        let acc = checksum::sum(u32::from(IpProtocol::TCP) + tcp_len, &out[e + 12..e + 20]);
        out[t + 16..t + 18].copy_from_slice(&checksum::fold(acc).to_be_bytes());
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

    /// The segments of `f` cut at `mss`.
    fn cut(f: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let l = Tcp4Layout::parse(f, mss).unwrap();
        (0..l.count())
            .map(|i| {
                let mut out = vec![0u8; 2048];
                let n = l.write_segment(f, i, &mut out).unwrap();
                out.truncate(n);
                out
            })
            .collect()
    }

    /// Joins as many of `segs` as join; the run.
    fn run(segs: &[Vec<u8>]) -> Option<Tcp4Merge> {
        let mut m = Tcp4Merge::start(&segs[0])?;
        for s in &segs[1..] {
            if !m.join(&segs[0], s) {
                break;
            }
        }
        Some(m)
    }

    #[test]
    fn segments_join_back_into_the_super_frame_they_were_cut_from() {
        let f = super_frame(20_000, 0x18); // PSH ACK
        let segs = cut(&f, 1448);
        let m = run(&segs).unwrap();
        assert_eq!((m.count(), m.mss(), m.len()), (segs.len(), 1448, f.len()));
        let mut out = vec![0u8; 70_000];
        let n = m.write(segs.iter().map(Vec::as_slice), &mut out).unwrap();
        let j = &out[..n];
        // headers as the original's but the partial checksum, payload the same
        assert_eq!(&j[..50], &f[..50]);
        assert_eq!(&j[54..], &f[54..]);
        // the partial checksum completes to a right one
        let mut done = j.to_vec();
        let mut o = crate::offload::Offload::Csum;
        assert!(o.finish_checksum(&mut done));
        let mut acc = checksum::sum(0, &done[26..34]);
        acc += 6 + (n - 34) as u32;
        acc = checksum::sum(acc, &done[34..]);
        assert_eq!(checksum::fold(acc), 0xffff);
        // and cut again, it gives the same segments
        assert_eq!(cut(j, 1448), segs);
        assert!(m
            .write(segs.iter().map(Vec::as_slice), &mut out[..n - 1])
            .is_none());
    }

    #[test]
    fn only_consecutive_sound_segments_of_one_flow_join() {
        let f = super_frame(5 * 1000, 0x10);
        let segs = cut(&f, 1000);
        // a corrupt payload byte: its checksum is wrong, it neither starts nor joins
        let mut bad = segs[1].clone();
        bad[100] ^= 1;
        assert!(Tcp4Merge::start(&bad).is_none());
        let mut m = Tcp4Merge::start(&segs[0]).unwrap();
        assert!(!m.join(&segs[0], &bad));
        // a corrupt IPv4 header checksum
        let mut bad_ip = segs[1].clone();
        bad_ip[24] ^= 1;
        assert!(!m.join(&segs[0], &bad_ip));
        // out of order
        assert!(!m.join(&segs[0], &segs[2]));
        assert!(m.join(&segs[0], &segs[1]));
        // another flow: the same segment from another source port (checksum fixed)
        let g = {
            let mut g = f.clone();
            g[34..36].copy_from_slice(&4321u16.to_be_bytes());
            g
        };
        let other = cut(&g, 1000);
        assert!(!m.join(&segs[0], &other[2]));
        // a short segment ends the run
        let h = super_frame(2 * 1000 + 10, 0x10);
        let hs = cut(&h, 1000);
        let mut m = run(&hs).unwrap();
        assert_eq!(m.count(), 3);
        let more = cut(&super_frame(4000, 0x10), 1000);
        assert!(!m.join(&hs[0], &more[3]));
        // PSH ends it; SYN, FIN, RST start nothing
        let p = cut(&super_frame(3000, 0x18), 1000);
        let mut m = Tcp4Merge::start(&p[2]).unwrap();
        assert!(!m.join(&p[2], &p[2]));
        for flags in [0x02, 0x11, 0x04, 0x12] {
            let s = super_frame(100, flags);
            assert!(Tcp4Merge::start(&s).is_none(), "flags {flags:#x}");
        }
        // a segment without payload (a pure ACK) starts nothing
        assert!(Tcp4Merge::start(&super_frame(0, 0x10)).is_none());
        // truncated frames never panic
        for n in 0..segs[0].len() {
            let _ = Tcp4Merge::start(&segs[0][..n]);
            let mut m = Tcp4Merge::start(&segs[0]).unwrap();
            let _ = m.join(&segs[0], &segs[1][..n]);
        }
    }
}
