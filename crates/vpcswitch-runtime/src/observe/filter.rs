//! Capture filters: which frames of a port a capture keeps, decided by the worker
//! before it copies a frame (so a busy port's other traffic does not fill the capture's
//! queue). A small subset of tcpdump's expressions, all terms ANDed:
//!
//! `arp`, `ip`, `icmp`, `tcp`, `udp`; `host A`, `src A`, `dst A` (also `src host A`,
//! `dst host A`; an address matches IPv4 source/destination and ARP sender/target);
//! `net A/N`; `port N`, `src port N`, `dst port N` (TCP or UDP); `ether host M`,
//! `ether src M`, `ether dst M`; `not TERM`; `and` between terms is optional.
//!
//! Matching reads the frame through bounds-checked slices: a short or malformed frame
//! simply does not match a term that needs the missing bytes. It allocates nothing.

use std::net::Ipv4Addr;

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
    Icmp,
    Tcp,
    Udp,
    Host(Side, Ipv4Addr),
    Net(Side, u32, u32),
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

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn addr(f: &[u8], at: usize) -> Option<u32> {
    let b = f.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The frame's IPv4 (src, dst) or ARP (sender, target) addresses.
fn addrs(f: &[u8]) -> Option<(u32, u32)> {
    match be16(f, 12)? {
        ETH_IPV4 => Some((addr(f, 26)?, addr(f, 30)?)),
        ETH_ARP => Some((addr(f, 28)?, addr(f, 38)?)),
        _ => None,
    }
}

/// The IPv4 protocol and the offset of its payload (first fragments only carry ports).
fn l4(f: &[u8]) -> Option<(u8, usize)> {
    if be16(f, 12)? != ETH_IPV4 {
        return None;
    }
    let ihl = usize::from(*f.get(14)? & 0x0f) * 4;
    Some((*f.get(23)?, 14 + ihl))
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
            Term::Icmp => l4(f).is_some_and(|(p, _)| p == 1),
            Term::Tcp => l4(f).is_some_and(|(p, _)| p == 6),
            Term::Udp => l4(f).is_some_and(|(p, _)| p == 17),
            Term::Host(side, a) => {
                let a = u32::from(*a);
                addrs(f).is_some_and(|(s, d)| side_matches(*side, s == a, d == a))
            }
            Term::Net(side, net, mask) => addrs(f)
                .is_some_and(|(s, d)| side_matches(*side, s & mask == *net, d & mask == *net)),
            Term::Port(side, port) => l4(f)
                .filter(|(p, _)| *p == 6 || *p == 17)
                .and_then(|(_, at)| Some((be16(f, at)?, be16(f, at + 2)?)))
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

fn ip(w: &[&str], i: usize) -> Result<Ipv4Addr, String> {
    let s = want(w, i, "an IPv4 address")?;
    s.parse()
        .map_err(|_| format!("capture filter: {s:?} is not an IPv4 address"))
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
        "icmp" => (Term::Icmp, i + 1),
        "tcp" => (Term::Tcp, i + 1),
        "udp" => (Term::Udp, i + 1),
        "not" | "!" => {
            want(w, i + 1, "a term after \"not\"")?;
            let (t, next) = term(w, i + 1)?;
            (Term::Not(Box::new(t)), next)
        }
        "host" => (Term::Host(Side::Either, ip(w, i + 1)?), i + 2),
        "port" => (Term::Port(Side::Either, port(w, i + 1)?), i + 2),
        "net" => {
            let (n, m) = net(want(w, i + 1, "a network A.B.C.D/N")?)?;
            (Term::Net(Side::Either, n, m), i + 2)
        }
        "src" | "dst" => {
            let s = side(w[i]).unwrap_or(Side::Either);
            match want(w, i + 1, "host, port, net or an address")? {
                "host" => (Term::Host(s, ip(w, i + 2)?), i + 3),
                "port" => (Term::Port(s, port(w, i + 2)?), i + 3),
                "net" => {
                    let (n, m) = net(want(w, i + 2, "a network A.B.C.D/N")?)?;
                    (Term::Net(s, n, m), i + 3)
                }
                _ => (Term::Host(s, ip(w, i + 1)?), i + 2),
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
                "capture filter: unknown word {other:?} (arp, ip, icmp, tcp, udp, host A, \
                 src A, dst A, net A/N, port N, src port N, dst port N, ether host|src|dst M, not)"
            ))
        }
    })
}

fn net(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("capture filter: {s:?} is not a network A.B.C.D/N");
    let (a, n) = s.split_once('/').ok_or_else(bad)?;
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    if n > 32 {
        return Err(bad());
    }
    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    Ok((u32::from(a) & mask, mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcswitch_model::MacAddr;
    use vpcswitch_wire::build;

    fn m(x: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, x])
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
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
        let ends = build::Ends {
            dst: m(2),
            src: m(1),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.2.12"),
        };
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
    }

    #[test]
    fn bad_expressions_name_the_word() {
        for (t, want) in [
            ("host", "an IPv4 address expected"),
            ("host 10.0.0", "\"10.0.0\" is not an IPv4 address"),
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
}
