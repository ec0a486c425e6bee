//! What the tests share: random topologies (one host), their configuration, random
//! frames (well-formed, spoofed, misaddressed) from their ports and the uplink, and a
//! runner of one frame.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use proptest::prelude::*;
use vpcswitch_core::Verdict;
use vpcswitch_model::{
    Config, Eip, Ipv4Cidr, MacAddr, Peering, Port, Route, Subnet, Uplink, Vip, Vpc,
};
use vpcswitch_wire::arp::ArpInfo;
use vpcswitch_wire::build;

pub const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
pub const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 1]);
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

#[derive(Debug, Clone)]
pub enum Kind {
    Arp(ArpInfo),
    Udp {
        sip: Ipv4Addr,
        dip: Ipv4Addr,
        ttl: u8,
        /// UDP (source, destination) ports: DHCP's 68/67 and 67/68 among them (SPEC
        /// 2.3, 13.1)
        ports: (u16, u16),
    },
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub src: MacAddr,
    pub dst: MacAddr,
    pub kind: Kind,
}

impl Frame {
    pub fn bytes(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Arp(a) => build::arp_frame(self.dst, self.src, a),
            Kind::Udp {
                sip,
                dip,
                ttl,
                ports,
            } => build::udp(
                build::Ends {
                    dst: self.dst,
                    src: self.src,
                    sip: *sip,
                    dip: *dip,
                },
                *ttl,
                ports.0,
                ports.1,
                b"model",
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Topo {
    vpcs: usize,
    subnets: Vec<usize>,      // per VPC: 1..=2
    ports: Vec<(bool, bool)>, // per (vpc, subnet): count from len; (check, second ip)
    vip_bind: Vec<u8>,        // bitmasks of ports bound to VIP k of a subnet
    peer: Vec<(usize, usize, bool)>,
}

pub fn topo() -> impl Strategy<Value = Topo> {
    (
        1usize..=3,
        prop::collection::vec(1usize..=2, 3),
        prop::collection::vec((prop::bool::weighted(0.7), any::<bool>()), 12),
        prop::collection::vec(any::<u8>(), 12),
        prop::collection::vec((0usize..3, 0usize..3, any::<bool>()), 0..3),
    )
        .prop_map(|(vpcs, subnets, ports, vip_bind, peer)| Topo {
            vpcs,
            subnets,
            ports,
            vip_bind,
            peer,
        })
}

/// One VPC with one subnet of three ports, each with the check on and one fixed IP;
/// the subnet's VIP bound to its first two ports; no peering.
pub fn fixed_topo() -> Topo {
    Topo {
        vpcs: 1,
        subnets: vec![1, 1, 1],
        ports: vec![(true, false); 12],
        vip_bind: vec![0b011; 12],
        peer: vec![],
    }
}

pub const PORTS_PER_SUBNET: usize = 3;

pub fn pmac(v: usize, s: usize, i: usize) -> MacAddr {
    MacAddr([2, 0x10, v as u8, s as u8, i as u8, 1])
}

pub fn build_config(t: &Topo) -> Config {
    let mut c = Config::default();
    let mut k = 0;
    for v in 0..t.vpcs {
        let vn = format!("v{v}");
        c.vpcs.push(Vpc {
            name: vn.clone(),
            cidrs: vec![format!("10.{v}.0.0/16").parse().unwrap()],
            ipv6_cidrs: vec![],
            vni: None,
        });
        for s in 0..t.subnets[v] {
            let sn = format!("v{v}s{s}");
            c.subnets.push(Subnet {
                name: sn.clone(),
                vpc: vn.clone(),
                cidr: format!("10.{v}.{s}.0/24").parse().unwrap(),
                gateway: None,
                ipv6_cidr: None,
                // SPEC 13.1: the first subnet of the first VPC serves DHCP
                dhcp: v == 0 && s == 0,
                dhcp_options: Default::default(),
            });
            let mut names = vec![];
            for i in 0..PORTS_PER_SUBNET {
                let (check, second) = t.ports[(k + i) % t.ports.len()];
                let mut ips = vec![Ipv4Addr::new(10, v as u8, s as u8, 10 + i as u8)];
                if second {
                    ips.push(Ipv4Addr::new(10, v as u8, s as u8, 50 + i as u8));
                }
                let name = format!("{sn}p{i}");
                names.push(name.clone());
                c.ports.push(Port {
                    name,
                    subnet: sn.clone(),
                    mac: pmac(v, s, i),
                    ips,
                    ipv6_ips: vec![],
                    src_dst_check: check,
                    allowed_macs: if i == 2 {
                        vec![MacAddr([2, 0x10, v as u8, s as u8, i as u8, 0x99])]
                    } else {
                        vec![]
                    },
                    eip: None,
                    backend: Default::default(),
                    host: None,
                });
            }
            let mask = t.vip_bind[k % t.vip_bind.len()];
            let bound: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| n.clone())
                .collect();
            c.vips.push(Vip {
                name: format!("{sn}vip"),
                subnet: sn.clone(),
                ip: Ipv4Addr::new(10, v as u8, s as u8, 100).into(),
                ports: bound,
                eip: None,
            });
            k += PORTS_PER_SUBNET;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (a, b, both) in &t.peer {
        let (a, b) = (a % t.vpcs, b % t.vpcs);
        if a == b || !seen.insert((a.min(b), a.max(b))) {
            continue;
        }
        let name = format!("pe{a}{b}");
        c.peerings.push(Peering {
            name: name.clone(),
            vpcs: vec![format!("v{a}"), format!("v{b}")],
        });
        c.routes.push(Route {
            vpc: format!("v{a}"),
            destination: format!("10.{b}.0.0/16").parse().unwrap(),
            peering: Some(name.clone()),
            port: None,
            uplink: None,
        });
        if *both {
            c.routes.push(Route {
                vpc: format!("v{b}"),
                destination: format!("10.{a}.0.0/16").parse().unwrap(),
                peering: Some(name),
                port: None,
                uplink: None,
            });
        }
    }
    // SPEC 7: an uplink; VPC 0 routes everything else to it; EIPs for the VIP and the
    // first port of each of its subnets
    c.uplink = Some(Uplink {
        name: "uplink".into(),
        mac: UPLINK_MAC,
        next_hop: NEXT_HOP,
        next_hop_mac: None,
        backend: Default::default(),
        host: None,
    });
    c.routes.push(Route {
        vpc: "v0".into(),
        destination: "0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().into(),
        peering: None,
        port: None,
        uplink: Some(true),
    });
    for s in 0..t.subnets[0] {
        c.eips.push(Eip {
            ip: Ipv4Addr::new(203, 0, 113, 10 + s as u8),
            vip: Some(format!("v0s{s}vip")),
            port: None,
            port_ip: None,
        });
        c.eips.push(Eip {
            ip: Ipv4Addr::new(203, 0, 113, 30 + s as u8),
            vip: None,
            port: Some(format!("v0s{s}p0")),
            port_ip: None,
        });
    }
    // a next-hop route in VPC 0
    c.routes.push(Route {
        vpc: "v0".into(),
        destination: "192.168.0.0/16".parse::<Ipv4Cidr>().unwrap().into(),
        peering: None,
        port: Some("v0s0p1".into()),
        uplink: None,
    });
    c.validate()
        .unwrap_or_else(|e| panic!("generated config invalid: {e}\n{}", c.to_toml_string()));
    c
}

/// Picks from the topology's interesting addresses by index.
pub fn pick_ip(c: &Config, n: u16) -> Ipv4Addr {
    let mut all: Vec<Ipv4Addr> = c.ports.iter().flat_map(|p| p.ips.clone()).collect();
    all.extend(c.vips.iter().filter_map(|v| match v.ip {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    }));
    all.extend(c.subnets.iter().map(|s| s.gateway_ip()));
    all.extend([
        Ipv4Addr::new(10, 0, 0, 77),
        Ipv4Addr::new(10, 2, 1, 9),
        Ipv4Addr::new(192, 168, 3, 3),
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::UNSPECIFIED,
        NEXT_HOP,
        // SPEC 2.6, 7.3, 7.4: what a subnet listens to, martians
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 18),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(240, 0, 0, 1),
        Ipv4Addr::new(198, 51, 100, 7),
    ]);
    all.extend(c.subnets.iter().map(|s| s.cidr.broadcast()));
    all.extend(c.all_eips().iter().map(|x| x.ip));
    all[n as usize % all.len()]
}

pub fn pick_mac(c: &Config, n: u16) -> MacAddr {
    let mut all: Vec<MacAddr> = c.ports.iter().map(|p| p.mac).collect();
    all.extend(c.ports.iter().flat_map(|p| p.allowed_macs.clone()));
    all.extend([
        c.switch.gateway_mac,
        c.switch.gateway_mac,
        MacAddr::BROADCAST,
        MacAddr([1, 0, 0x5e, 0, 0, 18]),
        MacAddr([2, 9, 9, 9, 9, 9]),
        UPLINK_MAC,
        ROUTER_MAC,
    ]);
    all[n as usize % all.len()]
}

pub type Raw = (u16, u8, u16, u16, u16, u16, u8, bool);

/// The random draws one frame is made from ([`make_frame`]).
pub fn raw() -> impl Strategy<Value = Raw> {
    (
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        prop::bool::weighted(0.7),
    )
}

pub fn make_frame(c: &Config, r: &Raw) -> (String, Frame) {
    let (port_i, kind, a, b, d, e, ttl_sel, own_src) = *r;
    // one frame in eight arrives on the uplink, from the router
    let on_uplink = port_i % 8 == 7;
    let p = &c.ports[port_i as usize % c.ports.len()];
    let (name, own_mac) = if on_uplink {
        ("uplink".to_string(), ROUTER_MAC)
    } else {
        (p.name.clone(), p.mac)
    };
    let src = if own_src { own_mac } else { pick_mac(c, a) };
    let ttl = [1u8, 64, 2][ttl_sel as usize % 3];
    let sip = if on_uplink && own_src && a % 2 == 0 {
        NEXT_HOP
    } else if own_src && a % 3 == 0 {
        p.ips[0]
    } else {
        pick_ip(c, b)
    };
    let dip = pick_ip(c, d);
    let f = match kind % 5 {
        0 | 1 => Frame {
            src,
            dst: pick_mac(c, e),
            kind: Kind::Udp {
                sip,
                dip,
                ttl,
                // one in eight a DHCP client's ports, one in eight a server's
                ports: match (a ^ e) % 8 {
                    0 => (68, 67),
                    1 => (67, 68),
                    _ => (1000, 2000),
                },
            },
        },
        2 => Frame {
            src,
            dst: MacAddr::BROADCAST,
            kind: Kind::Arp(ArpInfo {
                op: 1,
                sha: src.into(),
                spa: sip.into(),
                tha: MacAddr::ZERO.into(),
                tpa: dip.into(),
            }),
        },
        3 => Frame {
            src,
            dst: MacAddr::BROADCAST,
            kind: Kind::Arp(ArpInfo {
                op: 1,
                sha: src.into(),
                spa: sip.into(),
                tha: MacAddr::ZERO.into(),
                tpa: sip.into(),
            }),
        },
        _ => {
            let dst = pick_mac(c, e);
            Frame {
                src,
                dst,
                kind: Kind::Arp(ArpInfo {
                    op: 2,
                    sha: (if a % 7 == 0 { pick_mac(c, e) } else { src }).into(),
                    spa: sip.into(),
                    tha: dst.into(),
                    tpa: dip.into(),
                }),
            }
        }
    };
    (name, f)
}

/// Runs `f` (the pipeline given the buffer and the frame's length) on a copy of `frame`
/// in a 2 KiB buffer: the verdict and the frame as it would leave.
pub fn run(frame: &[u8], f: impl FnOnce(&mut [u8], &mut usize) -> Verdict) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let mut len = frame.len();
    let v = f(&mut buf, &mut len);
    (v, buf[..len].to_vec())
}

/// A DHCP client message (SPEC 13.1), emitted by smoltcp, as whole frames; addresses
/// as text, 0.0.0.0 for none.
pub struct DhcpMsg {
    pub kind: smoltcp::wire::DhcpMessageType,
    pub chaddr: MacAddr,
    pub ciaddr: &'static str,
    /// option 50
    pub requested: Option<&'static str>,
    /// option 54
    pub server: Option<&'static str>,
}

impl DhcpMsg {
    /// A `kind` message from `chaddr` (also its client identifier), nothing else set.
    pub fn new(kind: smoltcp::wire::DhcpMessageType, chaddr: MacAddr) -> DhcpMsg {
        DhcpMsg {
            kind,
            chaddr,
            ciaddr: "0.0.0.0",
            requested: None,
            server: None,
        }
    }

    /// The message in a frame from `src` to `eth_dst`, `sip` to `dip`, UDP 68 to 67.
    pub fn frame(&self, eth_dst: MacAddr, src: MacAddr, sip: &str, dip: &str) -> Vec<u8> {
        use smoltcp::wire::{DhcpPacket, DhcpRepr, EthernetAddress, Ipv4Address};
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("an address");
        let repr = DhcpRepr {
            message_type: self.kind,
            transaction_id: 0xfeed_0001,
            secs: 0,
            client_hardware_address: EthernetAddress(self.chaddr.0),
            client_ip: a(self.ciaddr),
            your_ip: Ipv4Address::UNSPECIFIED,
            server_ip: Ipv4Address::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: self.requested.map(a),
            client_identifier: Some(EthernetAddress(self.chaddr.0)),
            server_identifier: self.server.map(a),
            parameter_request_list: Some(&[1, 3, 6, 15, 26, 121]),
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut d = vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut d))
            .expect("room for the message");
        build::udp(
            build::Ends {
                dst: eth_dst,
                src,
                sip: a(sip),
                dip: a(dip),
            },
            64,
            68,
            67,
            &d,
        )
    }

    /// From `chaddr`, 0.0.0.0 to 255.255.255.255 at the broadcast MAC.
    pub fn bcast(&self) -> Vec<u8> {
        self.frame(
            MacAddr::BROADCAST,
            self.chaddr,
            "0.0.0.0",
            "255.255.255.255",
        )
    }
}

/// A broadcast DHCP client message of `kind` from `src` asking for `requested`.
pub fn dhcp_client(
    kind: smoltcp::wire::DhcpMessageType,
    src: MacAddr,
    requested: Option<&'static str>,
) -> Vec<u8> {
    DhcpMsg {
        requested,
        ..DhcpMsg::new(kind, src)
    }
    .bcast()
}
