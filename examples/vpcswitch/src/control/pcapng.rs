//! Writing captures as pcapng (the IETF pcapng draft, as Wireshark and tcpdump read it):
//! a section header, one interface description per port (its name, the switch that
//! captured it, the capture filter), and an enhanced packet block per frame carrying
//! its interface and its direction (`epb_flags`: inbound = received from the port's
//! guest, outbound = sent to it), which classic pcap cannot say. Little-endian;
//! timestamps in microseconds (the default resolution); every block padded to 32 bits.

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;

/// Option codes.
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_FILTER: u16 = 11;
const EPB_FLAGS: u16 = 2;

/// A frame's direction as `epb_flags` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// received from the port's guest
    Inbound,
    /// sent to the port's guest
    Outbound,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0u8, pad4(value.len())));
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// The section header block, naming the writer.
pub fn section_header(comment: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
    option(
        &mut body,
        SHB_USERAPPL,
        format!("vpcswitch {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    if !comment.is_empty() {
        option(&mut body, OPT_COMMENT, comment.as_bytes());
    }
    option(&mut body, OPT_END, &[]);
    block(SHB, &body)
}

/// An interface description block: Ethernet, `snaplen`, named after the port, with the
/// capture filter (if any) as a libpcap-style string.
pub fn interface(name: &str, description: &str, snaplen: u32, filter: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut body, IF_NAME, name.as_bytes());
    option(&mut body, IF_DESCRIPTION, description.as_bytes());
    if !filter.is_empty() {
        let mut f = vec![0u8]; // 0: a libpcap filter string
        f.extend_from_slice(filter.as_bytes());
        option(&mut body, IF_FILTER, &f);
    }
    option(&mut body, OPT_END, &[]);
    block(IDB, &body)
}

/// An enhanced packet block: interface `iface`, `ts_us` (unix µs), the captured bytes,
/// the frame's length on the wire and its direction.
pub fn packet(iface: u32, ts_us: u64, data: &[u8], orig_len: usize, dir: Dir) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + data.len());
    body.extend_from_slice(&iface.to_le_bytes());
    body.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_us as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&(orig_len as u32).to_le_bytes());
    body.extend_from_slice(data);
    body.extend(std::iter::repeat_n(0u8, pad4(data.len())));
    let flags: u32 = match dir {
        Dir::Inbound => 0b01,
        Dir::Outbound => 0b10,
    };
    option(&mut body, EPB_FLAGS, &flags.to_le_bytes());
    option(&mut body, OPT_END, &[]);
    block(EPB, &body)
}

/// Writes `blocks` and flushes (a live reader sees each frame at once).
pub fn write(w: &mut dyn Write, b: &[u8]) -> io::Result<()> {
    w.write_all(b)?;
    w.flush()
}

/// A frame read back from a capture file (`ctl trace --pcap`; the tests check
/// captures with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// the interface's name (`if_name`)
    pub interface: String,
    /// its direction, from `epb_flags`
    pub dir: Option<Dir>,
    /// unix µs
    pub ts_us: u64,
    /// the bytes captured
    pub data: Vec<u8>,
}

/// Reads the frames of a capture file: pcapng (little-endian, as written above; other
/// block types skipped) or classic pcap (either byte order, µs or ns timestamps).
pub fn read_any(bytes: &[u8]) -> Result<Vec<Read>, String> {
    match bytes.get(0..4).map(|b| [b[0], b[1], b[2], b[3]]) {
        Some(m) if u32::from_le_bytes(m) == SHB => read(bytes),
        Some(m) => read_pcap(bytes, m),
        None => Err("not a capture file (too short)".into()),
    }
}

/// Classic pcap: a 24-byte header, then records of 16 bytes + data.
fn read_pcap(bytes: &[u8], magic: [u8; 4]) -> Result<Vec<Read>, String> {
    let (le, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
        (0xa1b2_c3d4, _) => (true, false),
        (0xa1b2_3c4d, _) => (true, true),
        (_, 0xa1b2_c3d4) => (false, false),
        (_, 0xa1b2_3c4d) => (false, true),
        _ => return Err("not a pcap or pcapng file (unknown magic number)".into()),
    };
    let word = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    if word(20) != Some(1) {
        return Err("only Ethernet captures (link type 1) can be traced".into());
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (Some(sec), Some(frac), Some(cap)) = (word(at), word(at + 4), word(at + 8)) else {
            return Err(format!("truncated record at byte {at}"));
        };
        let data = bytes
            .get(at + 16..at + 16 + cap as usize)
            .ok_or_else(|| format!("truncated record at byte {at}"))?;
        let sub = if nanos {
            u64::from(frac) / 1000
        } else {
            u64::from(frac)
        };
        out.push(Read {
            interface: String::new(),
            dir: None,
            ts_us: u64::from(sec) * 1_000_000 + sub,
            data: data.to_vec(),
        });
        at += 16 + cap as usize;
    }
    Ok(out)
}

/// Reads the frames of a little-endian pcapng file written as above (one section).
pub fn read(bytes: &[u8]) -> Result<Vec<Read>, String> {
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at byte {at}"))
    };
    let u16_of = |b: &[u8], at: usize| -> Option<u16> {
        b.get(at..at + 2).map(|x| u16::from_le_bytes([x[0], x[1]]))
    };
    // options from `at` to `end` of a block: (code, value)
    let options = |b: &[u8]| -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while let (Some(code), Some(len)) = (u16_of(b, i), u16_of(b, i + 2)) {
            if code == OPT_END {
                break;
            }
            let len = usize::from(len);
            let Some(v) = b.get(i + 4..i + 4 + len) else {
                break;
            };
            out.push((code, v.to_vec()));
            i += 4 + len + pad4(len);
        }
        out
    };
    let mut names = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (kind, len) = (u32_at(at)?, u32_at(at + 4)? as usize);
        if len < 12 || at + len > bytes.len() || u32_at(at + len - 4)? as usize != len {
            return Err(format!("bad block length {len} at byte {at}"));
        }
        let body = &bytes[at + 8..at + len - 4];
        match kind {
            SHB if u32_at(at + 8)? != BYTE_ORDER_MAGIC => {
                return Err("not a little-endian pcapng section".into());
            }
            IDB => {
                let name = options(body.get(8..).unwrap_or_default())
                    .into_iter()
                    .find(|(c, _)| *c == IF_NAME)
                    .map(|(_, v)| String::from_utf8_lossy(&v).to_string())
                    .unwrap_or_default();
                names.push(name);
            }
            EPB => {
                let w = |i: usize| -> Result<u32, String> {
                    body.get(i..i + 4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| "truncated packet block".to_string())
                };
                let (iface, hi, lo, cap) = (w(0)?, w(4)?, w(8)?, w(12)? as usize);
                let data = body
                    .get(20..20 + cap)
                    .ok_or("truncated packet data")?
                    .to_vec();
                let opts = options(body.get(20 + cap + pad4(cap)..).unwrap_or_default());
                let dir = opts
                    .iter()
                    .find(|(c, _)| *c == EPB_FLAGS)
                    .and_then(|(_, v)| v.first())
                    .and_then(|f| match f & 0b11 {
                        0b01 => Some(Dir::Inbound),
                        0b10 => Some(Dir::Outbound),
                        _ => None,
                    });
                frames.push(Read {
                    interface: names.get(iface as usize).cloned().unwrap_or_default(),
                    dir,
                    ts_us: (u64::from(hi) << 32) | u64::from(lo),
                    data,
                });
            }
            _ => {}
        }
        at += len;
    }
    Ok(frames)
}
