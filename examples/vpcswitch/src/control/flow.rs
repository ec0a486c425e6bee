//! `ctl trace PORT --flow EXPR`: a frame described by its fields, as `ovn-trace` and
//! `ofproto/trace` take them, instead of hex. Words are separated by spaces or commas
//! (`&&` is ignored); a protocol word and `key=value` pairs, with OVN's dotted names or
//! OVS's:
//!
//! | protocol words | frame |
//! | --- | --- |
//! | `arp` | ARP |
//! | `icmp` `icmp4`; `icmp6` | ICMP echo request; ICMPv6 echo request |
//! | `tcp` `udp` (`tcp6` `udp6`) | TCP, UDP over IPv4, or over IPv6 when IPv6 addresses are given |
//! | `ip` `ip4` `ip6` `ipv6` | any IP (an echo request unless another word says): `ip4`, `ip6` fix the family |
//! | `nd_ns` (`nd`), `nd_na`, `nd_rs`, `nd_ra` | neighbour solicitation, advertisement, router solicitation, advertisement (SPEC 12.2, 12.3) |
//!
//! | field | names |
//! | --- | --- |
//! | Ethernet source, destination | `eth.src` `dl_src`, `eth.dst` `dl_dst` |
//! | ARP opcode (1/`request`, 2/`reply`), addresses | `arp.op` `arp_op`, `arp.sha` `arp_sha`, `arp.spa` `arp_spa`, `arp.tha` `arp_tha`, `arp.tpa` `arp_tpa` |
//! | IPv4 source, destination | `ip4.src` `nw_src`, `ip4.dst` `nw_dst` |
//! | IPv6 source, destination | `ip6.src` `ipv6_src`, `ip6.dst` `ipv6_dst` |
//! | either family's source, destination | `ip.src`, `ip.dst` |
//! | TTL (IPv4), hop limit (IPv6) | `ip.ttl` `nw_ttl` |
//! | TCP/UDP ports | `tcp.src` `tcp.dst` `udp.src` `udp.dst` `tp_src` `tp_dst` |
//! | ND target, source and target link-layer options | `nd.target` `nd_target`, `nd.sll` `nd_sll`, `nd.tll` `nd_tll` |
//!
//! One address family per flow: an IPv4 word or field (`arp`, `icmp4`, `ip4.*`, `nw_*`,
//! an IPv4 address) with an IPv6 one is an error naming both.
//!
//! What is not given comes from the port and the network, as its guest would send it:
//! the port's MAC and primary IP (IPv6: first IPv6 fixed IP, else its link-local
//! address) as sources; for IP, the destination MAC of the port (or VIP owner) holding
//! the destination address in the port's subnet (its /64 for IPv6), else the gateway's,
//! and a multicast destination's group MAC; TTL and hop limit 64. ARP: a broadcast
//! request. ND (hop limit 255, link-layer options of the Ethernet source): an NS for
//! `nd.target` to its solicited-node group, from `::` (duplicate address detection)
//! without an option; an NA of the source address (or `nd.target`), unsolicited (O
//! set) to all nodes; an RS to all routers and an RA to all nodes, from the port's
//! link-local address. The protocol defaults to ARP when an `arp.` field is given, to
//! an NA for `nd.tll`, an NS for another `nd.` field, else to the L4 protocol of a port
//! field, else to an echo request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vpcswitch::core::{Addr, PortEntry, Snapshot};
use vpcswitch::model::MacAddr;
use vpcswitch::wire::build::{self, Ends6};
use vpcswitch::wire::{arp::ArpInfo, ipv6, nd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Arp,
    /// echo request, either family
    Icmp,
    Tcp,
    Udp,
    Ns,
    Na,
    Rs,
    Ra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

#[derive(Debug, Default)]
struct Fields {
    proto: Option<Proto>,
    /// the address family, and the word or field that set it first
    family: Option<(Family, String)>,
    /// an `ip`/`ip4`/`ip6` word was given (no ARP then)
    ip_word: Option<String>,
    eth_src: Option<MacAddr>,
    eth_dst: Option<MacAddr>,
    arp_op: Option<u16>,
    sha: Option<MacAddr>,
    spa: Option<Ipv4Addr>,
    tha: Option<MacAddr>,
    tpa: Option<Ipv4Addr>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    ttl: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
    target: Option<Ipv6Addr>,
    sll: Option<MacAddr>,
    tll: Option<MacAddr>,
}

impl Fields {
    fn family(&self) -> Family {
        self.family.as_ref().map_or(Family::V4, |(x, _)| *x)
    }
}

fn mac(k: &str, v: &str) -> Result<MacAddr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not a MAC address"))
}

fn ip(k: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not an IPv4 address"))
}

fn ip6(k: &str, v: &str) -> Result<Ipv6Addr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not an IPv6 address"))
}

fn ip_any(k: &str, v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not an IP address"))
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not a number in range"))
}

fn set_proto(f: &mut Fields, p: Proto, why: &str) -> Result<(), String> {
    match f.proto {
        Some(q) if q != p => Err(format!(
            "flow: {why} does not fit a {q:?} frame (one protocol per flow)"
        )),
        _ => {
            f.proto = Some(p);
            Ok(())
        }
    }
}

fn set_family(f: &mut Fields, fam: Family, why: &str) -> Result<(), String> {
    match &f.family {
        Some((g, first)) if *g != fam => Err(format!(
            "flow: {why} is {fam} but {first} is {g} (one address family per flow)"
        )),
        Some(_) => Ok(()),
        None => {
            f.family = Some((fam, why.to_string()));
            Ok(())
        }
    }
}

fn family_of(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// A protocol word: its protocol, if it fixes one, and its family, if it fixes one.
fn word(w: &str) -> Option<(Option<Proto>, Option<Family>)> {
    use Family::*;
    use Proto::*;
    Some(match w {
        "arp" => (Some(Arp), Some(V4)),
        "icmp" | "icmp4" => (Some(Icmp), Some(V4)),
        "icmp6" => (Some(Icmp), Some(V6)),
        "ip" => (None, None),
        "ip4" => (None, Some(V4)),
        "ip6" | "ipv6" => (None, Some(V6)),
        "tcp" => (Some(Tcp), None),
        "udp" => (Some(Udp), None),
        "tcp6" => (Some(Tcp), Some(V6)),
        "udp6" => (Some(Udp), Some(V6)),
        "nd" | "nd_ns" => (Some(Ns), Some(V6)),
        "nd_na" => (Some(Na), Some(V6)),
        "nd_rs" => (Some(Rs), Some(V6)),
        "nd_ra" => (Some(Ra), Some(V6)),
        _ => return None,
    })
}

fn parse(expr: &str) -> Result<Fields, String> {
    let mut f = Fields::default();
    for w in expr
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty() && *w != "&&")
    {
        let Some((k, v)) = w.split_once(['=']) else {
            let (proto, fam) = word(w).ok_or_else(|| {
                format!(
                    "flow: unknown word {w:?} (arp, icmp, icmp6, ip4, ip6, tcp, udp, nd_ns, \
                     nd_na, nd_rs, nd_ra, or key=value)"
                )
            })?;
            if let Some(p) = proto {
                set_proto(&mut f, p, w)?;
            }
            if let Some(fam) = fam {
                set_family(&mut f, fam, w)?;
            }
            if w.starts_with("ip") {
                f.ip_word.get_or_insert_with(|| w.to_string());
            }
            continue;
        };
        let v = v.trim_start_matches('=');
        let arp = |f: &mut Fields| -> Result<(), String> {
            set_proto(f, Proto::Arp, k)?;
            set_family(f, Family::V4, k)
        };
        match k {
            "eth.src" | "dl_src" => f.eth_src = Some(mac(k, v)?),
            "eth.dst" | "dl_dst" => f.eth_dst = Some(mac(k, v)?),
            "arp.op" | "arp_op" => {
                arp(&mut f)?;
                f.arp_op = Some(match v {
                    "request" => 1,
                    "reply" => 2,
                    n => num(k, n)?,
                });
            }
            "arp.sha" | "arp_sha" => {
                arp(&mut f)?;
                f.sha = Some(mac(k, v)?)
            }
            "arp.tha" | "arp_tha" => {
                arp(&mut f)?;
                f.tha = Some(mac(k, v)?)
            }
            "arp.spa" | "arp_spa" => {
                arp(&mut f)?;
                f.spa = Some(ip(k, v)?)
            }
            "arp.tpa" | "arp_tpa" => {
                arp(&mut f)?;
                f.tpa = Some(ip(k, v)?)
            }
            "ip4.src" | "nw_src" | "ip4.dst" | "nw_dst" => {
                let a = IpAddr::V4(ip(k, v)?);
                set_family(&mut f, Family::V4, k)?;
                set_addr(&mut f, k, a);
            }
            "ip6.src" | "ipv6_src" | "ip6.dst" | "ipv6_dst" => {
                let a = IpAddr::V6(ip6(k, v)?);
                set_family(&mut f, Family::V6, k)?;
                set_addr(&mut f, k, a);
            }
            "ip.src" | "ip.dst" => {
                let a = ip_any(k, v)?;
                set_family(&mut f, family_of(a), k)?;
                set_addr(&mut f, k, a);
            }
            "ip.ttl" | "nw_ttl" => f.ttl = Some(num(k, v)?),
            "tcp.src" | "tcp.dst" => {
                set_proto(&mut f, Proto::Tcp, k)?;
                set_port(&mut f, k, num(k, v)?);
            }
            "udp.src" | "udp.dst" => {
                set_proto(&mut f, Proto::Udp, k)?;
                set_port(&mut f, k, num(k, v)?);
            }
            "tp_src" => f.sport = Some(num(k, v)?),
            "tp_dst" => f.dport = Some(num(k, v)?),
            "nd.target" | "nd_target" => {
                set_family(&mut f, Family::V6, k)?;
                f.target = Some(ip6(k, v)?);
            }
            "nd.sll" | "nd_sll" => {
                set_family(&mut f, Family::V6, k)?;
                f.sll = Some(mac(k, v)?);
            }
            "nd.tll" | "nd_tll" => {
                set_family(&mut f, Family::V6, k)?;
                f.tll = Some(mac(k, v)?);
            }
            "in_port" | "inport" => {
                return Err(format!(
                    "flow: {k}= is the PORT argument of `ctl trace PORT --flow ...`"
                ))
            }
            _ => return Err(format!("flow: unknown field {k:?}")),
        }
    }
    if f.proto.is_none() {
        f.proto = if f.tll.is_some() {
            Some(Proto::Na)
        } else if f.sll.is_some() || f.target.is_some() {
            Some(Proto::Ns)
        } else if f.sport.is_some() || f.dport.is_some() {
            Some(Proto::Tcp)
        } else {
            None
        };
    }
    let proto = f.proto.unwrap_or(Proto::Icmp);
    for (given, field, fits) in [
        (f.target.is_some(), "nd.target", &[Proto::Ns, Proto::Na][..]),
        (
            f.sll.is_some(),
            "nd.sll",
            &[Proto::Ns, Proto::Rs, Proto::Ra][..],
        ),
        (f.tll.is_some(), "nd.tll", &[Proto::Na][..]),
    ] {
        if given && !fits.contains(&proto) {
            return Err(format!(
                "flow: {field} does not fit a {proto:?} frame (one protocol per flow)"
            ));
        }
    }
    if let (Proto::Arp, Some(w)) = (proto, &f.ip_word) {
        return Err(format!(
            "flow: {w} does not fit an Arp frame (one protocol per flow)"
        ));
    }
    Ok(f)
}

fn set_addr(f: &mut Fields, k: &str, a: IpAddr) {
    if k.ends_with("src") {
        f.src = Some(a)
    } else {
        f.dst = Some(a)
    }
}

fn set_port(f: &mut Fields, k: &str, p: u16) {
    if k.ends_with("src") {
        f.sport = Some(p)
    } else {
        f.dport = Some(p)
    }
}

/// The MAC a guest of `port`'s subnet would send a frame for `dst` to: the port (or
/// VIP owner) with that address in the subnet (its /64 for IPv6), else the gateway.
fn next_mac(snap: &Snapshot, port: &PortEntry, dst: IpAddr) -> MacAddr {
    let subnet = snap.subnets.get(port.subnet as usize);
    let held = match dst {
        IpAddr::V4(d) => subnet
            .filter(|s| s.cidr.contains(d))
            .and_then(|_| snap.addr(port.vpc, u32::from(d))),
        IpAddr::V6(d) => subnet
            .and_then(|s| s.ipv6)
            .filter(|s6| s6.cidr.contains(d))
            .and_then(|_| snap.addr6(port.vpc, &d)),
    };
    let holder = match held {
        Some(Addr::Port(id)) => snap.port(id),
        Some(Addr::Vip(v)) => snap.vip_cell(v).owner().and_then(|o| snap.port(o)),
        Some(Addr::Gateway(_)) | None => None,
    };
    holder.map_or(snap.gateway_mac, |p| p.mac)
}

fn v4(a: Option<IpAddr>) -> Option<Ipv4Addr> {
    match a {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    }
}

fn v6(a: Option<IpAddr>) -> Option<Ipv6Addr> {
    match a {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    }
}

/// The frame `expr` describes, sent by `port`'s guest (see the module docs).
pub fn frame(snap: &Snapshot, port: &str, expr: &str) -> Result<Vec<u8>, String> {
    let f = parse(expr)?;
    let p = snap
        .port_id(port)
        .and_then(|id| snap.port(id))
        .ok_or_else(|| format!("no port named {port:?}"))?;
    let my_ip = p.ips.first().map(|a| Ipv4Addr::from(*a));
    let src_mac = f.eth_src.unwrap_or(p.mac);
    let proto = f.proto.unwrap_or(Proto::Icmp);
    if f.family() == Family::V6 {
        return frame6(snap, p, &f, proto, src_mac);
    }
    match proto {
        Proto::Arp => {
            let op = f.arp_op.unwrap_or(1);
            let spa = f
                .spa
                .or(my_ip)
                .ok_or("flow: arp.spa= needed (the port has no IP)")?;
            let tpa = f
                .tpa
                .ok_or("flow: arp.tpa= is needed (the address asked for)")?;
            let tha = f.tha.unwrap_or(MacAddr::ZERO);
            let dst = f
                .eth_dst
                .unwrap_or(if op == 1 { MacAddr::BROADCAST } else { tha });
            Ok(build::arp_frame(
                dst,
                src_mac,
                &ArpInfo {
                    op,
                    sha: f.sha.unwrap_or(src_mac).into(),
                    spa: spa.into(),
                    tha: tha.into(),
                    tpa: tpa.into(),
                },
            ))
        }
        proto => {
            let src = v4(f.src)
                .or(my_ip)
                .ok_or("flow: ip4.src= needed (the port has no IP)")?;
            let dst = v4(f.dst).ok_or("flow: ip4.dst= is needed")?;
            let eth_dst = f
                .eth_dst
                .unwrap_or_else(|| next_mac(snap, p, IpAddr::V4(dst)));
            let ttl = f.ttl.unwrap_or(64);
            let ends = build::Ends {
                dst: eth_dst,
                src: src_mac,
                sip: src,
                dip: dst,
            };
            let (sp, dp) = (f.sport.unwrap_or(40000), f.dport.unwrap_or(80));
            Ok(match proto {
                Proto::Tcp => build::tcp(ends, ttl, sp, dp, b""),
                Proto::Udp => build::udp(ends, ttl, sp, dp, b""),
                _ => build::icmp_echo(eth_dst, src_mac, src, dst, ttl, 1, 1),
            })
        }
    }
}

/// [`frame`] for IPv6 (SPEC 12): echo, TCP, UDP and the ND messages.
fn frame6(
    snap: &Snapshot,
    p: &PortEntry,
    f: &Fields,
    proto: Proto,
    src_mac: MacAddr,
) -> Result<Vec<u8>, String> {
    let link_local = ipv6::link_local_from_mac(p.mac);
    // the guest's address: its first IPv6 fixed IP, else its link-local one
    let guest = p.ips6.first().copied().unwrap_or(link_local);
    let hop = |default| f.ttl.unwrap_or(default);
    let ends = |sip: Ipv6Addr, dip: Ipv6Addr| Ends6 {
        dst: f.eth_dst.unwrap_or_else(|| {
            if ipv6::is_multicast(&dip) {
                ipv6::multicast_mac(&dip)
            } else {
                next_mac(snap, p, IpAddr::V6(dip))
            }
        }),
        src: src_mac,
        sip,
        dip,
    };
    // a link-layer option of the Ethernet source, unless from `::` (RFC 4861 4.1, 4.3)
    let option = |sip: Ipv6Addr| f.sll.or((!ipv6::is_unspecified(&sip)).then_some(src_mac));
    let src = v6(f.src);
    let dst = v6(f.dst);
    Ok(match proto {
        Proto::Ns => {
            let target = f
                .target
                .ok_or("flow: nd.target= is needed (the address asked for)")?;
            let sip = src.unwrap_or(guest);
            let dip = dst.unwrap_or_else(|| ipv6::solicited_node(&target));
            build::ns_frame(ends(sip, dip), hop(nd::ND_HOP_LIMIT), target, option(sip))
        }
        Proto::Na => {
            let sip = src.unwrap_or(guest);
            let dip = dst.unwrap_or(ipv6::ALL_NODES);
            let flags = nd::NaFlags {
                router: false,
                solicited: !ipv6::is_multicast(&dip),
                override_: true,
            };
            build::na_frame(
                ends(sip, dip),
                hop(nd::ND_HOP_LIMIT),
                flags,
                f.target.unwrap_or(sip),
                Some(f.tll.unwrap_or(src_mac)),
            )
        }
        Proto::Rs => {
            let sip = src.unwrap_or(link_local);
            let dip = dst.unwrap_or(ipv6::ALL_ROUTERS);
            build::router_solicit(ends(sip, dip), hop(nd::ND_HOP_LIMIT), option(sip))
        }
        Proto::Ra => {
            let sip = src.unwrap_or(link_local);
            let dip = dst.unwrap_or(ipv6::ALL_NODES);
            build::router_advert(ends(sip, dip), hop(nd::ND_HOP_LIMIT), option(sip))
        }
        Proto::Arp => return Err("flow: ARP is IPv4 (IPv6 has nd_ns, nd_na)".into()),
        Proto::Icmp | Proto::Tcp | Proto::Udp => {
            let sip = match src {
                Some(a) => a,
                None => p
                    .ips6
                    .first()
                    .copied()
                    .ok_or("flow: ip6.src= needed (the port has no IPv6 address)")?,
            };
            let dip = dst.ok_or("flow: ip6.dst= is needed")?;
            let e = ends(sip, dip);
            let (sp, dp) = (f.sport.unwrap_or(40000), f.dport.unwrap_or(80));
            match proto {
                Proto::Tcp => build::tcp6(e, hop(64), sp, dp, b""),
                Proto::Udp => build::udp6(e, hop(64), sp, dp, b""),
                _ => build::icmpv6_echo(e.dst, e.src, sip, dip, hop(64), 1, 1),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_errors() {
        let f = parse("arp, arp.op=reply arp.tpa=10.0.1.100 dl_src=02:00:00:00:00:09").unwrap();
        assert_eq!(f.proto, Some(Proto::Arp));
        assert_eq!(
            (f.arp_op, f.tpa),
            (Some(2), Some("10.0.1.100".parse().unwrap()))
        );
        assert_eq!(f.eth_src, Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(parse("tp_dst=22").unwrap().proto, Some(Proto::Tcp));
        assert_eq!(
            parse("udp.dst=53 nw_dst=10.0.0.2").unwrap().proto,
            Some(Proto::Udp)
        );
        for (e, want) in [
            ("tcp udp", "one protocol per flow"),
            ("arp tcp.dst=80", "one protocol per flow"),
            ("ip4.dst=10.0.0", "not an IPv4 address"),
            ("eth.src=zz", "not a MAC address"),
            ("nw_ttl=300", "not a number in range"),
            ("bogus", "unknown word"),
            ("vlan=3", "unknown field \"vlan\""),
            ("in_port=web1", "PORT argument"),
        ] {
            let err = parse(e).unwrap_err();
            assert!(err.contains(want), "{e}: {err}");
        }
    }

    #[test]
    fn ipv6_words_fields_and_errors() {
        let f = parse("icmp6 ip6.dst=fd00::1 ip.ttl=3").unwrap();
        assert_eq!(
            (f.proto, f.family(), f.ttl),
            (Some(Proto::Icmp), Family::V6, Some(3))
        );
        assert_eq!(f.dst, Some("fd00::1".parse().unwrap()));
        // TCP and UDP take the family of their addresses, in any spelling
        for e in [
            "tcp ip6.dst=fd00::1",
            "tcp, ipv6_dst=fd00::1",
            "ip.dst=fd00::1 tcp.dst=22",
            "ip6 && tcp",
            "tcp6 tp_dst=22",
        ] {
            let f = parse(e).unwrap();
            assert_eq!((f.proto, f.family()), (Some(Proto::Tcp), Family::V6), "{e}");
        }
        let f = parse("udp ip.dst=10.0.0.2").unwrap();
        assert_eq!((f.proto, f.family()), (Some(Proto::Udp), Family::V4));
        assert_eq!(parse("ip4, tcp").unwrap().proto, Some(Proto::Tcp));
        // ND: the word, or the fields that imply it
        for (e, p) in [
            ("nd nd.target=fd00::1", Proto::Ns),
            (
                "nd_ns nd_target=fd00::1 nd_sll=02:00:00:00:00:09",
                Proto::Ns,
            ),
            ("nd.target=fd00::1", Proto::Ns),
            ("nd_na", Proto::Na),
            ("nd.tll=02:00:00:00:00:09", Proto::Na),
            ("nd_rs nd.sll=02:00:00:00:00:09", Proto::Rs),
            ("nd_ra", Proto::Ra),
        ] {
            let f = parse(e).unwrap();
            assert_eq!((f.proto, f.family()), (Some(p), Family::V6), "{e}");
        }
        let f = parse("nd_ns nd.target=fd00::1 nd.sll=02:00:00:00:00:09").unwrap();
        assert_eq!(
            (f.target, f.sll),
            (
                Some("fd00::1".parse().unwrap()),
                Some(MacAddr([2, 0, 0, 0, 0, 9]))
            )
        );
        for (e, want) in [
            // mixing families names both
            (
                "nd_ns ip4.dst=10.0.0.1",
                "ip4.dst is IPv4 but nd_ns is IPv6",
            ),
            (
                "ip6.src=fd00::1 nw_dst=10.0.0.1",
                "nw_dst is IPv4 but ip6.src is IPv6",
            ),
            ("arp nd.target=fd00::1", "nd.target is IPv6 but arp is IPv4"),
            ("icmp6 ip.dst=10.0.0.1", "ip.dst is IPv4 but icmp6 is IPv6"),
            ("ip4 ip6", "ip6 is IPv6 but ip4 is IPv4"),
            // ND fields on the wrong message
            (
                "nd_rs nd.tll=02:00:00:00:00:09",
                "nd.tll does not fit a Rs frame",
            ),
            (
                "nd_na nd.sll=02:00:00:00:00:09",
                "nd.sll does not fit a Na frame",
            ),
            (
                "tcp nd.target=fd00::1",
                "nd.target does not fit a Tcp frame",
            ),
            ("nd_na nd_rs", "one protocol per flow"),
            ("ip arp", "ip does not fit an Arp frame"),
            ("ip6.dst=fd00::zz", "not an IPv6 address"),
            ("ip.src=fd00", "not an IP address"),
            ("nd.sll=zz", "not a MAC address"),
            ("ip6.src=10.0.0.1", "not an IPv6 address"),
        ] {
            let err = parse(e).unwrap_err();
            assert!(err.contains(want), "{e}: {err}");
        }
    }

    mod dual_stack {
        use super::super::frame;
        use std::net::Ipv6Addr;
        use vpcswitch::core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
        use vpcswitch::model::{ConfigBuilder, MacAddr};
        use vpcswitch::wire::{build, ipv6};

        const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
        const P2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);

        /// vpc a: a1 (10.0.1.0/24, fd00:a:0:1::/64: p1, p2, p3 without IPv6 fixed IP),
        /// a2 (fd00:a:0:2::/64: q1), a3 (IPv4 only: w1); IPv6 VIP v6 on p1, p2.
        fn snap() -> Snapshot {
            let cfg = ConfigBuilder::new()
                .vpc("a", &["10.0.0.0/16"])
                .ipv6_cidrs(&["fd00:a::/48"])
                .subnet("a1", "a", "10.0.1.0/24")
                .ipv6_cidr("fd00:a:0:1::/64")
                .subnet("a2", "a", "10.0.2.0/24")
                .ipv6_cidr("fd00:a:0:2::/64")
                .subnet("a3", "a", "10.0.3.0/24")
                .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
                .ipv6_ips(&["fd00:a:0:1::11"])
                .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
                .ipv6_ips(&["fd00:a:0:1::12"])
                .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
                .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
                .ipv6_ips(&["fd00:a:0:2::11"])
                .port("w1", "a3", "02:00:00:00:03:01", &["10.0.3.11"])
                .vip("v6", "a1", "fd00:a:0:1::100", &["p1", "p2"])
                .build()
                .unwrap();
            Snapshot::compile(&cfg, None).unwrap()
        }

        fn a(s: &str) -> Ipv6Addr {
            s.parse().unwrap()
        }

        fn trace(s: &Snapshot, port: &str, expr: &str) -> (Verdict, Vec<u8>) {
            let f = frame(s, port, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let id = s.port_id(port).unwrap();
            (s.trace(1_000, id, &f).verdict, f)
        }

        fn to(s: &Snapshot, port: &str) -> Verdict {
            Verdict::Forward(Out::Port(s.port_id(port).unwrap()))
        }

        fn ip6_src(f: &[u8]) -> Ipv6Addr {
            vpcswitch::wire::Ipv6Packet::new_unchecked(&f[14..]).src()
        }

        fn ip6_dst(f: &[u8]) -> Ipv6Addr {
            vpcswitch::wire::Ipv6Packet::new_unchecked(&f[14..]).dst()
        }

        /// Each IPv6 kind, built as the guest would send it, gets SPEC 12's verdict.
        #[test]
        fn spec12_each_ipv6_kind_is_built_as_the_guest_sends_it() {
            let s = snap();
            let gw = s.gateway_mac;
            let a1 = Verdict::Forward(Out::Flood(s.port(s.port_id("p1").unwrap()).unwrap().subnet));
            // SPEC 12.2: to a neighbour in the /64, from the first IPv6 fixed IP
            for e in [
                "icmp6 ip6.dst=fd00:a:0:1::12",
                "udp ip6.dst=fd00:a:0:1::12 udp.dst=53",
                "tcp ipv6_dst=fd00:a:0:1::12 tcp.dst=22",
            ] {
                let (v, f) = trace(&s, "p1", e);
                assert_eq!(v, to(&s, "p2"), "{e}");
                assert_eq!((&f[0..6], &f[6..12]), (&P2.0[..], &P1.0[..]), "{e}");
                assert_eq!(ip6_src(&f), a("fd00:a:0:1::11"), "{e}");
            }
            // SPEC 12.5: ICMPv6 echo to a port in another subnet, via the gateway: routed
            let (v, f) = trace(&s, "p1", "icmp6 ip6.dst=fd00:a:0:2::11");
            assert_eq!(v, to(&s, "q1"));
            assert_eq!(&f[0..6], &gw.0);
            // hop limit 1: expired at the gateway, answered with ICMPv6 from it
            let (v, _) = trace(&s, "p1", "icmp6 ip6.dst=fd00:a:0:2::11 ip.ttl=1");
            assert!(
                matches!(v, Verdict::DropAndSend(DropReason::TtlExceeded, _)),
                "{v:?}"
            );
            // SPEC 12.2: a spoofed source
            let (v, _) = trace(
                &s,
                "p1",
                "udp ip6.src=fd00:a:0:1::99 ip6.dst=fd00:a:0:1::12",
            );
            assert_eq!(v, Verdict::Drop(DropReason::SpoofedSrcIp6));
            // SPEC 12.3: an NS for the gateway, to its solicited-node group with the
            // port's MAC as source link-layer option: answered by the switch
            let (v, f) = trace(&s, "p1", "nd_ns nd.target=fd00:a:0:1::1");
            assert_eq!(v, to(&s, "p1"));
            let group = ipv6::solicited_node(&a("fd00:a:0:1::1"));
            assert_eq!(&f[0..6], &ipv6::multicast_mac(&group).0);
            assert_eq!((ip6_src(&f), ip6_dst(&f)), (a("fd00:a:0:1::11"), group));
            assert_eq!(
                f,
                build::neighbor_solicit(P1, a("fd00:a:0:1::11"), a("fd00:a:0:1::1"))
            );
            // ... and for a neighbour, through the link-local gateway address too
            let ll = s.gateway_ll.to_string();
            assert_eq!(
                trace(&s, "p1", &format!("nd nd.target={ll}")).0,
                to(&s, "p1")
            );
            // SPEC 12.2: an NS whose source link-layer option is not the Ethernet source
            let (v, _) = trace(
                &s,
                "p1",
                "nd_ns nd.target=fd00:a:0:1::1 nd.sll=02:00:00:00:01:02",
            );
            assert_eq!(v, Verdict::Drop(DropReason::NdLladdrMismatch));
            // SPEC 12.3: duplicate address detection, from ::, passes within the subnet
            let (v, f) = trace(&s, "p1", "nd_ns ip6.src=:: nd.target=fd00:a:0:1::11");
            assert_eq!(v, a1);
            assert_eq!(f, build::dad_probe(P1, a("fd00:a:0:1::11")));
            // ND with a hop limit below 255 is malformed (RFC 4861)
            let (v, _) = trace(&s, "p1", "nd_ns nd.target=fd00:a:0:1::1 nw_ttl=64");
            assert_eq!(v, Verdict::Drop(DropReason::MalformedNd));
            // SPEC 12.4: an unsolicited NA of the port's own address, to all nodes
            let (v, f) = trace(&s, "p1", "nd_na");
            assert_eq!(v, a1);
            assert_eq!(f, build::unsolicited_na(P1, a("fd00:a:0:1::11")));
            // SPEC 12.2: an NA claiming another port's address, whatever its TLL
            let (v, _) = trace(&s, "p1", "nd_na nd.target=fd00:a:0:1::12");
            assert_eq!(v, Verdict::Drop(DropReason::NdClaimsForeignIp));
            let (v, _) = trace(&s, "p1", "nd_na nd.tll=02:00:00:00:01:02");
            assert_eq!(v, Verdict::Drop(DropReason::NdLladdrMismatch));
            // SPEC 12.3: a router solicitation is answered with the advertisement
            let (v, f) = trace(&s, "p1", "nd_rs");
            assert_eq!(
                v,
                Verdict::DropAndSend(
                    DropReason::RouterSolicit,
                    Out::Port(s.port_id("p1").unwrap())
                )
            );
            assert_eq!(ip6_src(&f), ipv6::link_local_from_mac(P1));
            assert_eq!(ip6_dst(&f), ipv6::ALL_ROUTERS);
            // ... and an advertisement from a port is dropped
            let (v, _) = trace(&s, "p1", "nd_ra");
            assert_eq!(v, Verdict::Drop(DropReason::RaFromPort));
            // a port without IPv6 fixed IP speaks ND from its link-local address
            let (v, f) = trace(&s, "p3", "nd_na");
            assert_eq!(v, a1);
            assert_eq!(
                ip6_src(&f),
                ipv6::link_local_from_mac(MacAddr([2, 0, 0, 0, 1, 3]))
            );
            let err = frame(&s, "p3", "icmp6 ip6.dst=fd00:a:0:1::11").unwrap_err();
            assert!(err.contains("has no IPv6 address"), "{err}");
            let err = frame(&s, "p1", "icmp6").unwrap_err();
            assert!(err.contains("ip6.dst= is needed"), "{err}");
            let err = frame(&s, "p1", "nd_ns").unwrap_err();
            assert!(err.contains("nd.target= is needed"), "{err}");
            // SPEC 9.1: IPv6 from a subnet without an IPv6 prefix
            assert_eq!(trace(&s, "w1", "nd_rs").0, Verdict::Drop(DropReason::Ipv6));
        }

        /// The destination MAC of the IPv6 VIP is its owner's once one is learned
        /// (SPEC 12.4), the gateway's before.
        #[test]
        fn spec12_4_ipv6_vip_is_sent_to_its_owner() {
            let s = snap();
            let e = "icmp6 ip6.dst=fd00:a:0:1::100";
            assert_eq!(&trace(&s, "p1", e).1[0..6], &s.gateway_mac.0);
            let na = build::unsolicited_na(P2, a("fd00:a:0:1::100"));
            let mut buf = vec![0u8; 2048];
            buf[..na.len()].copy_from_slice(&na);
            let mut len = na.len();
            let id = s.port_id("p2").unwrap();
            s.process(&Ctx::at(1_000), id, &mut buf, &mut len, &mut NoTrace);
            assert_eq!(s.vip_owner_name("v6"), Some("p2"));
            let (v, f) = trace(&s, "p1", e);
            assert_eq!(&f[0..6], &P2.0);
            assert_eq!(v, to(&s, "p2"));
        }
    }
}
