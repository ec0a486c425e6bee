//! `ctl trace PORT --flow EXPR`: a frame described by its fields, as `ovn-trace` and
//! `ofproto/trace` take them, instead of hex. Words are separated by spaces or commas;
//! a protocol word (`arp`, `icmp`, `tcp`, `udp`) and `key=value` pairs, with OVN's
//! dotted names or OVS's:
//!
//! | field | names |
//! | --- | --- |
//! | Ethernet source, destination | `eth.src` `dl_src`, `eth.dst` `dl_dst` |
//! | ARP opcode (1/`request`, 2/`reply`), addresses | `arp.op` `arp_op`, `arp.sha` `arp_sha`, `arp.spa` `arp_spa`, `arp.tha` `arp_tha`, `arp.tpa` `arp_tpa` |
//! | IPv4 source, destination, TTL | `ip4.src` `nw_src`, `ip4.dst` `nw_dst`, `ip.ttl` `nw_ttl` |
//! | TCP/UDP ports | `tcp.src` `tcp.dst` `udp.src` `udp.dst` `tp_src` `tp_dst` |
//!
//! What is not given comes from the port and the network, as its guest would send it:
//! the port's MAC and primary IP as sources; for IP, the destination MAC of the port (or
//! VIP owner) holding the destination address in the port's subnet, else the gateway's;
//! ARP a broadcast request. The protocol defaults to ARP when an `arp.` field is given,
//! else to the L4 protocol of a port field, else ICMP echo.

use std::net::Ipv4Addr;

use vpcswitch::core::Snapshot;
use vpcswitch::model::MacAddr;
use vpcswitch::wire::{arp::ArpInfo, build};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Arp,
    Icmp,
    Tcp,
    Udp,
}

#[derive(Debug, Default)]
struct Fields {
    proto: Option<Proto>,
    eth_src: Option<MacAddr>,
    eth_dst: Option<MacAddr>,
    arp_op: Option<u16>,
    sha: Option<MacAddr>,
    spa: Option<Ipv4Addr>,
    tha: Option<MacAddr>,
    tpa: Option<Ipv4Addr>,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    ttl: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
}

fn mac(k: &str, v: &str) -> Result<MacAddr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not a MAC address"))
}

fn ip(k: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("flow: {k}={v}: not an IPv4 address"))
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

fn parse(expr: &str) -> Result<Fields, String> {
    let mut f = Fields::default();
    for w in expr
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty() && *w != "&&")
    {
        let Some((k, v)) = w.split_once(['=']) else {
            match w {
                "arp" => set_proto(&mut f, Proto::Arp, w)?,
                "icmp" | "icmp4" | "ip" | "ip4" => set_proto(&mut f, Proto::Icmp, w)?,
                "tcp" => set_proto(&mut f, Proto::Tcp, w)?,
                "udp" => set_proto(&mut f, Proto::Udp, w)?,
                _ => {
                    return Err(format!(
                        "flow: unknown word {w:?} (arp, icmp, tcp, udp, or key=value)"
                    ))
                }
            }
            continue;
        };
        let v = v.trim_start_matches('=');
        match k {
            "eth.src" | "dl_src" => f.eth_src = Some(mac(k, v)?),
            "eth.dst" | "dl_dst" => f.eth_dst = Some(mac(k, v)?),
            "arp.op" | "arp_op" => {
                set_proto(&mut f, Proto::Arp, k)?;
                f.arp_op = Some(match v {
                    "request" => 1,
                    "reply" => 2,
                    n => num(k, n)?,
                });
            }
            "arp.sha" | "arp_sha" => {
                set_proto(&mut f, Proto::Arp, k)?;
                f.sha = Some(mac(k, v)?)
            }
            "arp.tha" | "arp_tha" => {
                set_proto(&mut f, Proto::Arp, k)?;
                f.tha = Some(mac(k, v)?)
            }
            "arp.spa" | "arp_spa" => {
                set_proto(&mut f, Proto::Arp, k)?;
                f.spa = Some(ip(k, v)?)
            }
            "arp.tpa" | "arp_tpa" => {
                set_proto(&mut f, Proto::Arp, k)?;
                f.tpa = Some(ip(k, v)?)
            }
            "ip4.src" | "ip.src" | "nw_src" => f.src = Some(ip(k, v)?),
            "ip4.dst" | "ip.dst" | "nw_dst" => f.dst = Some(ip(k, v)?),
            "ip.ttl" | "nw_ttl" => f.ttl = Some(num(k, v)?),
            "tcp.src" | "tcp.dst" => {
                set_proto(&mut f, Proto::Tcp, k)?;
                let p = num(k, v)?;
                if k.ends_with("src") {
                    f.sport = Some(p)
                } else {
                    f.dport = Some(p)
                }
            }
            "udp.src" | "udp.dst" => {
                set_proto(&mut f, Proto::Udp, k)?;
                let p = num(k, v)?;
                if k.ends_with("src") {
                    f.sport = Some(p)
                } else {
                    f.dport = Some(p)
                }
            }
            "tp_src" => f.sport = Some(num(k, v)?),
            "tp_dst" => f.dport = Some(num(k, v)?),
            "in_port" | "inport" => {
                return Err(format!(
                    "flow: {k}= is the PORT argument of `ctl trace PORT --flow ...`"
                ))
            }
            _ => return Err(format!("flow: unknown field {k:?}")),
        }
    }
    if f.proto.is_none() && (f.sport.is_some() || f.dport.is_some()) {
        f.proto = Some(Proto::Tcp);
    }
    Ok(f)
}

/// The MAC a guest of `port`'s subnet would send a frame for `dst` to: the port (or
/// VIP owner) with that address in the subnet, else the gateway.
fn next_mac(snap: &Snapshot, subnet: u32, dst: Ipv4Addr) -> MacAddr {
    let d = u32::from(dst);
    let in_subnet = snap
        .subnets
        .get(subnet as usize)
        .is_some_and(|s| s.cidr.contains(dst));
    if in_subnet {
        let by_port = snap
            .ports
            .iter()
            .flatten()
            .find(|p| p.subnet == subnet && p.ips.contains(&d))
            .map(|p| p.mac);
        let by_vip = || {
            snap.vips
                .iter()
                .find(|v| v.ip == d)
                .and_then(|v| snap.vip_owner_name(&v.name))
                .and_then(|o| snap.port_id(o))
                .and_then(|id| snap.port(id))
                .map(|p| p.mac)
        };
        if let Some(m) = by_port.or_else(by_vip) {
            return m;
        }
    }
    snap.gateway_mac
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
    match f.proto.unwrap_or(Proto::Icmp) {
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
            let src = f
                .src
                .or(my_ip)
                .ok_or("flow: ip4.src= needed (the port has no IP)")?;
            let dst = f.dst.ok_or("flow: ip4.dst= is needed")?;
            let eth_dst = f.eth_dst.unwrap_or_else(|| next_mac(snap, p.subnet, dst));
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
}
