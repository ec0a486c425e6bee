//! Capture filters: which frames of a port a capture keeps, decided by the worker
//! before it copies a frame (so a busy port's other traffic does not fill the capture's
//! queue). A small subset of tcpdump's expressions, all terms ANDed, dual stack:
//!
//! - `arp`; `ip` (IPv4 only, as in tcpdump); `ip6` (EtherType 0x86dd); `icmp` (IPv4
//!   only); `icmp6`; `tcp`, `udp` (over IPv4 or IPv6);
//! - `host A`, `src A`, `dst A` (also `src host A`, `dst host A`), A an IPv4 or IPv6
//!   address: an IPv4 address matches IPv4 source/destination and ARP sender/target,
//!   an IPv6 address the IPv6 header's source/destination (as in tcpdump, not the
//!   target of a neighbour discovery message);
//! - `net A/N`, `src net A/N`, `dst net A/N`, an IPv4 (N up to 32) or IPv6 (N up to
//!   128) prefix, matched as `host` is;
//! - `port N`, `src port N`, `dst port N` (TCP or UDP, over IPv4 or IPv6);
//! - `ether host M`, `ether src M`, `ether dst M`; `not TERM`; `and` between terms is
//!   optional (so tcpdump's `ip6 host A` reads as `ip6 and host A`, which means the
//!   same).
//!
//! Over IPv6, `icmp6`, `tcp`, `udp` and `port` look at the upper-layer header after the
//! extension headers, walked by [`Ipv6Packet::walk`] (the switch's own walker: bounded,
//! bounds-checked): so they match a first fragment but not a later one (it has no
//! upper-layer header), nor a packet whose chain the walker refuses or cannot see
//! through (ESP, AH, an over-long chain). tcpdump's `ip6 proto` reads only the fixed
//! header's next header; this goes further, as its `ip6 protochain` does.
//!
//! Matching reads the frame through bounds-checked slices: a short or malformed frame
//! simply does not match a term that needs the missing bytes. It allocates nothing.

use std::net::{IpAddr, Ipv4Addr};

use vpcswitch_wire::ipv6::{Ipv6Packet, NextHeader};
use vpcswitch_wire::IpCidr;

/// Which address of a frame a term looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
    Either,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Arp,
    Ip,
    Ip6,
    Icmp,
    Icmp6,
    Tcp,
    Udp,
    Host(Side, Ipv4Addr),
    Host6(Side, u128),
    Net(Side, u32, u32),
    /// network and mask
    Net6(Side, u128, u128),
    Port(Side, u16),
    Ether(Side, [u8; 6]),
    Not(Box<Term>),
}

/// A parsed capture filter (see the module docs). The empty filter keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    terms: Vec<Term>,
    text: String,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;
/// The Ethernet header: where the IP header starts.
const L3: usize = 14;

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn addr(f: &[u8], at: usize) -> Option<u32> {
    let b = f.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn addr6(f: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_be_bytes(*f.get(at..)?.first_chunk::<16>()?))
}

/// The frame's IPv4 (src, dst) or ARP (sender, target) addresses.
fn addrs(f: &[u8]) -> Option<(u32, u32)> {
    match be16(f, 12)? {
        ETH_IPV4 => Some((addr(f, 26)?, addr(f, 30)?)),
        ETH_ARP => Some((addr(f, 28)?, addr(f, 38)?)),
        _ => None,
    }
}

/// The frame's IPv6 (src, dst) addresses: the fixed header's, whatever follows it.
fn addrs6(f: &[u8]) -> Option<(u128, u128)> {
    if be16(f, 12)? != ETH_IPV6 {
        return None;
    }
    Some((addr6(f, L3 + 8)?, addr6(f, L3 + 24)?))
}

/// The IPv4 protocol or IPv6 upper-layer protocol and the bytes from the start of its
/// header on. IPv4 reads the protocol field, and the bytes after the header in a first
/// (or only) fragment only; IPv6 walks the extension headers
/// (a later fragment has no upper layer) and ends at the packet's payload length.
fn l4(f: &[u8]) -> Option<(u8, &[u8])> {
    match be16(f, 12)? {
        ETH_IPV4 => {
            let ihl = usize::from(*f.get(L3)? & 0x0f) * 4;
            // a later fragment (offset ≠ 0) has the protocol but no header to read
            // ports from (tcpdump reads them from the first fragment only)
            let later = be16(f, L3 + 6)? & 0x1fff != 0;
            let rest = if later {
                &[][..]
            } else {
                f.get(L3 + ihl..).unwrap_or(&[])
            };
            Some((*f.get(23)?, rest))
        }
        ETH_IPV6 => {
            let ip = f.get(L3..)?;
            let p = Ipv6Packet::new_checked(ip).ok()?;
            let chain = p.walk().ok()?;
            Some((chain.proto()?, ip.get(chain.offset..p.packet_len())?))
        }
        _ => None,
    }
}

fn side_matches(side: Side, s: bool, d: bool) -> bool {
    match side {
        Side::Src => s,
        Side::Dst => d,
        Side::Either => s || d,
    }
}

impl Term {
    fn matches(&self, f: &[u8]) -> bool {
        match self {
            Term::Arp => be16(f, 12) == Some(ETH_ARP),
            Term::Ip => be16(f, 12) == Some(ETH_IPV4),
            Term::Ip6 => be16(f, 12) == Some(ETH_IPV6),
            Term::Icmp => be16(f, 12) == Some(ETH_IPV4) && l4(f).is_some_and(|(p, _)| p == 1),
            Term::Icmp6 => {
                be16(f, 12) == Some(ETH_IPV6) && l4(f).is_some_and(|(p, _)| p == NextHeader::ICMPV6)
            }
            Term::Tcp => l4(f).is_some_and(|(p, _)| p == 6),
            Term::Udp => l4(f).is_some_and(|(p, _)| p == 17),
            Term::Host(side, a) => {
                let a = u32::from(*a);
                addrs(f).is_some_and(|(s, d)| side_matches(*side, s == a, d == a))
            }
            Term::Host6(side, a) => {
                addrs6(f).is_some_and(|(s, d)| side_matches(*side, s == *a, d == *a))
            }
            Term::Net(side, net, mask) => addrs(f)
                .is_some_and(|(s, d)| side_matches(*side, s & mask == *net, d & mask == *net)),
            Term::Net6(side, net, mask) => addrs6(f)
                .is_some_and(|(s, d)| side_matches(*side, s & mask == *net, d & mask == *net)),
            Term::Port(side, port) => l4(f)
                .filter(|(p, _)| *p == 6 || *p == 17)
                .and_then(|(_, h)| Some((be16(h, 0)?, be16(h, 2)?)))
                .is_some_and(|(s, d)| side_matches(*side, s == *port, d == *port)),
            Term::Ether(side, m) => {
                let (d, s) = (f.get(0..6), f.get(6..12));
                side_matches(*side, s == Some(&m[..]), d == Some(&m[..]))
            }
            Term::Not(t) => !t.matches(f),
        }
    }
}

impl CaptureFilter {
    /// Parses `text` (see the module docs); the error names the word it stopped at.
    pub fn parse(text: &str) -> Result<CaptureFilter, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut terms = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if words[i] == "and" {
                i += 1;
                continue;
            }
            let (t, next) = term(&words, i)?;
            terms.push(t);
            i = next;
        }
        Ok(CaptureFilter {
            terms,
            text: words.join(" "),
        })
    }

    /// Does the filter keep `frame`?
    #[inline]
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.terms.iter().all(|t| t.matches(frame))
    }

    /// Keeps everything?
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The expression, normalised (one space between words).
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn want<'a>(w: &[&'a str], i: usize, what: &str) -> Result<&'a str, String> {
    w.get(i)
        .copied()
        .ok_or_else(|| format!("capture filter: {what} expected at the end"))
}

fn ip(w: &[&str], i: usize) -> Result<IpAddr, String> {
    let s = want(w, i, "an IPv4 or IPv6 address")?;
    s.parse()
        .map_err(|_| format!("capture filter: {s:?} is not an IPv4 or IPv6 address"))
}

/// A `host` term for `a`, IPv4 or IPv6.
fn host(side: Side, a: IpAddr) -> Term {
    match a {
        IpAddr::V4(a) => Term::Host(side, a),
        IpAddr::V6(a) => Term::Host6(side, u128::from(a)),
    }
}

fn port(w: &[&str], i: usize) -> Result<u16, String> {
    let s = want(w, i, "a port number")?;
    s.parse()
        .map_err(|_| format!("capture filter: {s:?} is not a port number"))
}

fn mac(w: &[&str], i: usize) -> Result<[u8; 6], String> {
    let s = want(w, i, "a MAC address")?;
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("capture filter: {s:?} is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| format!("capture filter: {s:?} is not a MAC address"))
}

/// One term starting at word `i`; returns it and the index after it.
fn term(w: &[&str], i: usize) -> Result<(Term, usize), String> {
    let side = |s: &str| match s {
        "src" => Some(Side::Src),
        "dst" => Some(Side::Dst),
        _ => None,
    };
    Ok(match w[i] {
        "arp" => (Term::Arp, i + 1),
        "ip" => (Term::Ip, i + 1),
        "ip6" => (Term::Ip6, i + 1),
        "icmp" => (Term::Icmp, i + 1),
        "icmp6" => (Term::Icmp6, i + 1),
        "tcp" => (Term::Tcp, i + 1),
        "udp" => (Term::Udp, i + 1),
        "not" | "!" => {
            want(w, i + 1, "a term after \"not\"")?;
            let (t, next) = term(w, i + 1)?;
            (Term::Not(Box::new(t)), next)
        }
        "host" => (host(Side::Either, ip(w, i + 1)?), i + 2),
        "port" => (Term::Port(Side::Either, port(w, i + 1)?), i + 2),
        "net" => (net(Side::Either, want(w, i + 1, NETWORK)?)?, i + 2),
        "src" | "dst" => {
            let s = side(w[i]).unwrap_or(Side::Either);
            match want(w, i + 1, "host, port, net or an address")? {
                "host" => (host(s, ip(w, i + 2)?), i + 3),
                "port" => (Term::Port(s, port(w, i + 2)?), i + 3),
                "net" => (net(s, want(w, i + 2, NETWORK)?)?, i + 3),
                _ => (host(s, ip(w, i + 1)?), i + 2),
            }
        }
        "ether" => {
            let s = match want(w, i + 1, "host, src or dst")? {
                "host" => Side::Either,
                x => side(x).ok_or_else(|| {
                    format!("capture filter: \"ether {x}\": ether host|src|dst MAC")
                })?,
            };
            (Term::Ether(s, mac(w, i + 2)?), i + 3)
        }
        other => {
            return Err(format!(
                "capture filter: unknown word {other:?} (arp, ip, ip6, icmp, icmp6, tcp, udp, \
                 host A, src A, dst A, net A/N, port N, src port N, dst port N, \
                 ether host|src|dst M, not)"
            ))
        }
    })
}

/// What `net` wants, for its errors.
const NETWORK: &str = "a network A.B.C.D/N or an IPv6 prefix A::/N";

/// A `net` term for `s`, an IPv4 network (N up to 32) or an IPv6 prefix (N up to 128).
/// Host bits are ignored, as the prefix says nothing about them.
fn net(side: Side, s: &str) -> Result<Term, String> {
    match s.parse::<IpCidr>() {
        Ok(IpCidr::V4(c)) => Ok(Term::Net(side, u32::from(c.network()), c.mask())),
        Ok(IpCidr::V6(c)) => Ok(Term::Net6(side, u128::from(c.network()), c.mask())),
        Err(_) => Err(format!("capture filter: {s:?} is not {NETWORK}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use vpcswitch_model::MacAddr;
    use vpcswitch_wire::build;

    fn m(x: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, x])
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// 10.0.1.11 (MAC :01) to 10.0.2.12 (MAC :02), the IPv4 frames' ends.
    fn ends4() -> build::Ends {
        build::Ends {
            dst: m(2),
            src: m(1),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.2.12"),
        }
    }

    #[test]
    fn terms_match_what_they_name() {
        let arp = build::arp_request(m(1), ip("10.0.1.11"), ip("10.0.1.12"));
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        assert!(f("").matches(&arp) && f("").is_empty());
        assert!(f("arp").matches(&arp));
        assert!(!f("ip").matches(&arp));
        assert!(f("host 10.0.1.12").matches(&arp), "ARP target");
        assert!(f("src 10.0.1.11 and dst host 10.0.1.12").matches(&arp));
        assert!(!f("dst 10.0.1.11").matches(&arp));
        assert!(f("net 10.0.1.0/24").matches(&arp));
        assert!(!f("net 10.0.2.0/24").matches(&arp));
        assert!(f("ether src 02:00:00:00:00:01").matches(&arp));
        assert!(
            f("ether host ff:ff:ff:ff:ff:ff").matches(&arp),
            "broadcast dst"
        );
        assert!(!f("ether dst 02:00:00:00:00:01").matches(&arp));
        assert!(f("not icmp").matches(&arp));
        assert!(!f("port 80").matches(&arp), "no ports in ARP");
        // truncated frames match nothing that needs the missing bytes
        assert!(!f("host 10.0.1.12").matches(&arp[..30]));
        assert!(f("arp").matches(&arp[..14]));
        assert!(!f("arp").matches(&arp[..5]));
        assert_eq!(f("  tcp   and port  80 ").text(), "tcp and port 80");
    }

    #[test]
    fn protocols_and_ports() {
        let ends = ends4();
        let tcp = build::tcp(ends, 64, 40000, 80, b"x");
        let udp = build::udp(ends, 64, 53, 5353, b"y");
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        assert!(f("tcp port 80").matches(&tcp));
        assert!(f("ip and tcp and dst port 80 and src port 40000").matches(&tcp));
        assert!(!f("src port 80").matches(&tcp));
        assert!(!f("udp").matches(&tcp) && !f("icmp").matches(&tcp));
        assert!(f("udp and port 53 and dst 10.0.2.12").matches(&udp));
        assert!(!f("tcp").matches(&udp));
        assert!(f("not arp and not tcp").matches(&udp));
        assert!(f("src net 10.0.1.0/24 and dst net 10.0.2.0/24").matches(&udp));
        // a later fragment has the protocol but no ports (its first bytes are data)
        let mut later = tcp.clone();
        later[20] = 0x00;
        later[21] = 0xb9; // fragment offset 185 × 8
        assert!(f("tcp").matches(&later));
        assert!(!f("port 80").matches(&later) && !f("port 40000").matches(&later));
        let mut first = tcp.clone();
        first[20] = 0x20; // MF set, offset 0: the first fragment has the ports
        assert!(f("tcp port 80").matches(&first));
    }

    #[test]
    fn bad_expressions_name_the_word() {
        for (t, want) in [
            ("host", "an IPv4 or IPv6 address expected"),
            ("host 10.0.0", "\"10.0.0\" is not an IPv4 or IPv6 address"),
            ("port http", "\"http\" is not a port number"),
            ("net 10.0.0.0/33", "is not a network"),
            ("ether up 02:00:00:00:00:01", "\"ether up\""),
            ("ether host 02:00:00", "is not a MAC address"),
            ("bogus", "unknown word \"bogus\""),
            ("not", "a term after \"not\""),
        ] {
            let e = CaptureFilter::parse(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    const A6: &str = "fd00:0:0:1::5";
    const B6: &str = "fd00:0:0:2::9";

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn ends6() -> build::Ends6 {
        build::Ends6 {
            dst: m(2),
            src: m(1),
            sip: ip6(A6),
            dip: ip6(B6),
        }
    }

    fn echo6() -> Vec<u8> {
        build::icmpv6_echo(m(2), m(1), ip6(A6), ip6(B6), 64, 7, 1)
    }

    /// `payload` behind the extension headers `ext` (each: its next header is set
    /// here), the last one's next header `upper`.
    fn with_ext(ext: &[(u8, &[u8])], upper: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (_, h)) in ext.iter().enumerate() {
            let mut h = h.to_vec();
            h[0] = ext.get(i + 1).map_or(upper, |(nh, _)| *nh);
            body.extend_from_slice(&h);
        }
        build::ipv6(ends6(), 64, ext[0].0, &[&body[..], payload].concat())
    }

    /// Hop-by-hop options header with one PadN option (8 bytes).
    const HBH: (u8, &[u8]) = (0, &[0, 0, 1, 4, 0, 0, 0, 0]);
    /// Destination options header, likewise.
    const DOPT: (u8, &[u8]) = (60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    /// A first fragment (offset 0, M set).
    const FRAG0: (u8, &[u8]) = (44, &[0, 0, 0, 1, 0, 0, 0, 9]);
    /// A later fragment (offset 8).
    const FRAG8: (u8, &[u8]) = (44, &[0, 0, 0, 8, 0, 0, 0, 9]);

    /// The upper-layer bytes of the frame `f` (after its IPv6 header), for rebuilding it
    /// behind extension headers.
    fn l4_of(f: &[u8]) -> &[u8] {
        &f[54..]
    }

    /// Issue 20: `ip6` is the EtherType, `ip` stays IPv4 only, `icmp6` is ICMPv6 and
    /// `icmp` stays ICMPv4 only (tcpdump semantics).
    #[test]
    fn ip6_and_icmp6_are_their_own_words() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let e6 = echo6();
        let e4 = build::icmp_echo(m(2), m(1), ip("10.0.1.11"), ip("10.0.2.12"), 64, 1, 1);
        let arp = build::arp_request(m(1), ip("10.0.1.11"), ip("10.0.1.12"));
        assert!(f("ip6").matches(&e6) && f("icmp6").matches(&e6));
        assert!(f("ip6 and icmp6 and not ip and not icmp").matches(&e6));
        assert!(!f("tcp").matches(&e6) && !f("udp").matches(&e6) && !f("arp").matches(&e6));
        assert!(!f("port 7").matches(&e6), "ICMPv6 has no ports");
        for v4 in [&e4, &arp] {
            assert!(!f("ip6").matches(v4) && !f("icmp6").matches(v4));
        }
        assert!(f("ip and icmp").matches(&e4));
        // an IPv6 packet whose next header is 1 is not `icmp` (that is `ip proto 1`)
        let odd = build::ipv6(ends6(), 64, 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert!(f("ip6").matches(&odd) && !f("icmp").matches(&odd) && !f("icmp6").matches(&odd));
        // `ip6` is the EtherType alone, as tcpdump: even a header too short to read
        assert!(f("ip6").matches(&e6[..14]) && !f("icmp6").matches(&e6[..14]));
        assert_eq!(f(" ip6  icmp6 ").text(), "ip6 icmp6");
    }

    /// Issue 20: `tcp`, `udp` and the `port` words match over IPv6.
    #[test]
    fn tcp_udp_and_ports_over_ipv6() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let tcp = build::tcp6(ends6(), 64, 40000, 443, b"x");
        let udp = build::udp6(ends6(), 64, 546, 547, b"y");
        assert!(f("ip6 tcp port 443").matches(&tcp));
        assert!(f("tcp and src port 40000 and dst port 443").matches(&tcp));
        assert!(!f("src port 443").matches(&tcp) && !f("dst port 40000").matches(&tcp));
        assert!(!f("udp").matches(&tcp) && !f("icmp6").matches(&tcp) && !f("ip").matches(&tcp));
        assert!(f("udp port 547 and src port 546").matches(&udp));
        assert!(!f("tcp").matches(&udp) && !f("port 443").matches(&udp));
    }

    /// Issue 20: the upper layer is found behind extension headers (the switch's own
    /// walker), in a first fragment but not a later one, and not behind ESP.
    #[test]
    fn upper_layer_behind_extension_headers() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let e = echo6();
        let t = build::tcp6(ends6(), 64, 40000, 443, b"x");
        let icmp_hbh = with_ext(&[HBH], 58, l4_of(&e));
        assert!(f("icmp6").matches(&icmp_hbh), "behind hop-by-hop");
        let tcp_chain = with_ext(&[HBH, DOPT, FRAG0], 6, l4_of(&t));
        assert!(f("tcp port 443 and src port 40000").matches(&tcp_chain));
        assert!(!f("udp").matches(&tcp_chain) && !f("icmp6").matches(&tcp_chain));
        let later = with_ext(&[FRAG8], 6, l4_of(&t));
        assert!(f("ip6 and host fd00:0:0:1::5").matches(&later));
        assert!(!f("tcp").matches(&later) && !f("port 443").matches(&later));
        let esp = build::ipv6(ends6(), 64, 50, &[0; 16]);
        assert!(!f("tcp").matches(&esp) && !f("icmp6").matches(&esp));
        // the walker refuses a hop-by-hop header after the first position: no match
        let refused = with_ext(&[DOPT, HBH], 58, l4_of(&e));
        assert!(f("ip6").matches(&refused) && !f("icmp6").matches(&refused));
    }

    /// Issue 20: `host`, `src`, `dst` with an IPv6 address look at the IPv6 header's
    /// addresses (not an ND target, as tcpdump), and never at IPv4 or ARP frames.
    #[test]
    fn ipv6_hosts() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let e = echo6();
        assert!(f("host fd00:0:0:1::5").matches(&e));
        assert!(f("host fd00:0:0:2:0:0:0:9").matches(&e), "any spelling");
        assert!(f("src fd00:0:0:1::5 and dst host fd00:0:0:2::9").matches(&e));
        assert!(f("src host fd00:0:0:1::5").matches(&e));
        assert!(!f("dst fd00:0:0:1::5").matches(&e) && !f("src fd00:0:0:2::9").matches(&e));
        assert!(!f("host fd00:0:0:1::6").matches(&e));
        assert!(
            !f("host 10.0.1.11").matches(&e),
            "an IPv4 address never matches IPv6"
        );
        let target = ip6("fd00:0:0:1::77");
        let ns = build::neighbor_solicit(m(1), ip6(A6), target);
        assert!(f("icmp6 and src fd00:0:0:1::5").matches(&ns));
        assert!(!f("host fd00:0:0:1::77").matches(&ns), "not the ND target");
        assert!(
            f("dst ff02::1:ff00:77").matches(&ns),
            "its solicited-node group"
        );
        // IPv4 and ARP frames whose address bytes happen to sit where IPv6's would
        let arp = build::arp_request(m(1), ip("10.0.1.11"), ip("10.0.1.12"));
        assert!(!f("host ::").matches(&arp) && !f("net ::/0").matches(&arp));
        let u4 = build::udp(ends4(), 64, 53, 53, &[0; 64]);
        assert!(!f("host ::").matches(&u4) && !f("net ::/0").matches(&u4));
    }

    /// Issue 20: `net` with an IPv6 prefix, host bits ignored; `/0` is all IPv6.
    #[test]
    fn ipv6_nets() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let e = echo6();
        assert!(f("net fd00::/8").matches(&e) && f("net ::/0").matches(&e));
        assert!(f("src net fd00:0:0:1::/64 and dst net fd00:0:0:2::/64").matches(&e));
        assert!(!f("src net fd00:0:0:2::/64").matches(&e));
        assert!(!f("dst net fd00:0:0:1::/64").matches(&e));
        assert!(f("net fd00:0:0:1::5/128").matches(&e));
        assert!(!f("net fd00:0:0:1::4/128").matches(&e));
        assert!(
            f("net fd00:0:0:1::ffff/64").matches(&e),
            "host bits ignored"
        );
        assert!(!f("net fe80::/10").matches(&e));
        assert!(
            f("not net 10.0.0.0/8").matches(&e),
            "an IPv4 net never matches IPv6"
        );
    }

    /// Issue 20: short and malformed IPv6 frames match nothing that needs the missing
    /// or bad bytes, and never panic.
    #[test]
    fn short_and_malformed_ipv6_frames() {
        let words = [
            "ip6",
            "icmp6",
            "tcp",
            "udp",
            "port 443",
            "src port 40000",
            "host fd00:0:0:1::5",
            "dst fd00:0:0:2::9",
            "net fd00::/8",
            "icmp",
            "ip",
            "arp",
        ];
        let fs: Vec<CaptureFilter> = words
            .iter()
            .map(|t| CaptureFilter::parse(t).unwrap())
            .collect();
        let t = build::tcp6(ends6(), 64, 40000, 443, b"x");
        let chain = with_ext(&[HBH, FRAG0], 6, l4_of(&t));
        for frame in [&t, &chain, &echo6()] {
            for n in 0..frame.len() {
                let cut = &frame[..n];
                for (w, f) in words.iter().zip(&fs) {
                    let hit = f.matches(cut);
                    // the payload length now runs past the frame: no upper layer
                    if ["icmp6", "tcp", "udp", "port 443", "src port 40000"].contains(w) {
                        assert!(!hit, "{w} on {n} bytes");
                    }
                    if w.starts_with("host") || w.starts_with("dst") || w.starts_with("net") {
                        assert_eq!(hit, n >= 54, "{w} on {n} bytes");
                    }
                }
            }
        }
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        // version 4 in an IPv6 EtherType: the EtherType is `ip6`, nothing above it is
        let mut v = t.clone();
        v[14] = 0x45;
        assert!(f("ip6").matches(&v) && !f("tcp").matches(&v) && !f("port 443").matches(&v));
        // TCP header cut inside the payload length: no ports to read
        let short = build::ipv6(ends6(), 64, 6, &l4_of(&t)[..3]);
        assert!(f("tcp").matches(&short) && !f("port 443").matches(&short));
        // an extension header longer than the packet
        let mut long = with_ext(&[DOPT], 6, l4_of(&t));
        long[55] = 200;
        assert!(!f("tcp").matches(&long) && f("host fd00:0:0:1::5").matches(&long));
        // Ethernet padding after the packet is not read as ports
        let pad = [
            &build::ipv6(ends6(), 64, 17, &[0, 1])[..],
            &[0x01, 0xbb, 0x01, 0xbb],
        ]
        .concat();
        assert!(f("udp").matches(&pad) && !f("port 443").matches(&pad));
    }

    /// Issue 20: the IPv4 and ARP terms mean what they meant (IPv6 frames aside).
    #[test]
    fn ipv4_behaviour_is_unchanged() {
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        // the IPv4 offsets read as before, truncated frames included: the protocol
        // byte alone is enough for `tcp` (ports need their bytes)
        let tcp = build::tcp(ends4(), 64, 40000, 80, b"x");
        assert!(f("tcp").matches(&tcp[..24]) && !f("tcp").matches(&tcp[..23]));
        assert!(!f("port 80").matches(&tcp[..37]) && f("port 80").matches(&tcp[..38]));
        assert!(
            f("net 10.0.1.77/24").matches(&tcp),
            "host bits ignored, as before"
        );
        assert!(f("net 0.0.0.0/0").matches(&tcp) && !f("net 0.0.0.0/0").matches(&echo6()));
        assert!(!f("ip").matches(&echo6()));
    }

    /// Issue 20: bad IPv6 words are refused naming the word.
    #[test]
    fn bad_ipv6_expressions_name_the_word() {
        for (t, want) in [
            (
                "host fd00::zz",
                "\"fd00::zz\" is not an IPv4 or IPv6 address",
            ),
            (
                "src fd00:::1",
                "\"fd00:::1\" is not an IPv4 or IPv6 address",
            ),
            ("net fd00::/129", "\"fd00::/129\" is not a network"),
            ("dst net fd00::", "\"fd00::\" is not a network"),
            (
                "net",
                "a network A.B.C.D/N or an IPv6 prefix A::/N expected",
            ),
            ("icmpv6", "unknown word \"icmpv6\""),
            ("ipv6", "unknown word \"ipv6\""),
        ] {
            let e = CaptureFilter::parse(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    proptest::proptest! {
        /// Issue 20: matching never panics, whatever the bytes: random frames under
        /// each EtherType, and real IPv6 frames with bytes overwritten and cut.
        #[test]
        fn matching_never_panics(
            et in proptest::sample::select(vec![0x0800u16, 0x0806, 0x86dd, 0x8100]),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            pokes in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 0..8),
            cut in 0usize..200,
        ) {
            let fs: Vec<CaptureFilter> = [
                "ip6", "icmp6", "tcp", "udp", "icmp", "ip", "arp", "port 443",
                "src port 1", "host fd00::1", "net fd00::/8", "host 10.0.0.1",
                "net 10.0.0.0/8", "not icmp6", "ether src 02:00:00:00:00:01",
            ]
            .iter()
            .map(|t| CaptureFilter::parse(t).unwrap())
            .collect();
            let mut raw = vec![0u8; 12];
            raw.extend_from_slice(&et.to_be_bytes());
            raw.extend_from_slice(&body);
            let t = build::tcp6(ends6(), 64, 40000, 443, b"x");
            let mut chain = with_ext(&[HBH, DOPT, FRAG0], 6, l4_of(&t));
            for (at, b) in &pokes {
                if let Some(x) = chain.get_mut(*at) {
                    *x = *b;
                }
            }
            let chain = &chain[..cut.min(chain.len())];
            for f in &fs {
                let _ = f.matches(&raw);
                let _ = f.matches(chain);
            }
        }
    }
}
