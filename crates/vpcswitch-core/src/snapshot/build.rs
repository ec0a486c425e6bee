//! Build, validate, freeze (OPTE's `PortBuilder`): [`Snapshot::compile`] as small named
//! steps over a validated configuration whose names are resolved once ([`Names`]).

use hashbrown::HashMap;
use vpcswitch_model::{
    Config, ConfigError, ConfigErrors, IpCidr, Ipv4Cidr, Ipv6Cidr, Peering,
    RouteTarget as CfgTarget,
};

use super::learned::Learned;
use super::overlay::{Location, Overlay, OverlayInput};
use super::{
    addr_key, Addr, DhcpServer, PortEntry, RouteTarget, Snapshot, Subnet6, SubnetEntry,
    UplinkEntry, VipEntry, VpcEntry,
};
use crate::{FlatMap, HostId, Lpm, PortId, SubnetId, VipId, VpcId};
use std::net::{IpAddr, Ipv6Addr};

impl Snapshot {
    /// Validates `cfg` and compiles it. With `prev` (the running snapshot), port ids
    /// are kept by name and learned VIP owners are carried over where the owner is
    /// still bound (SPEC 3.2); the generation is `prev.generation + 1`.
    ///
    /// With `[[hosts]]`, the snapshot is the network seen from the local host
    /// (`[switch] host`, see [`Config::with_local_host`]), which must be named.
    pub fn compile(cfg: &Config, prev: Option<&Snapshot>) -> Result<Snapshot, ConfigErrors> {
        cfg.validate()?;
        if !cfg.hosts.is_empty() && cfg.local_host().is_none() {
            return Err(ConfigErrors(vec![ConfigError::new(
                "switch",
                "host",
                "with [[hosts]], the switch must know which host it runs on: set \
                 [switch] host or pass --host",
            )]));
        }
        let names = Names::new(cfg, prev);
        let nports = names.port_slots();
        let mut subnets = names.subnets();
        let mut vips = names.vips();
        let ports = names.ports(&mut subnets, &vips, nports);
        let vnis = cfg.vnis();
        let vpcs = names.route_tables(&subnets, &vnis);
        let eips = names.eips(&subnets);
        let uplink = names.uplink(ports.uplink, &eips.0);
        let mut addrs = gateway_and_vip_addrs(&subnets, &vips);
        addrs.extend(ports.addrs);
        let addrs6 = addrs6(&subnets, &vips, &ports.ports);
        let overlay = Overlay::build(
            &OverlayInput {
                cfg,
                local: names.local,
                ports: &ports.ports,
                vpcs: &names.vpcs,
                vnis: &vnis,
                eips: &eips.0,
            },
            &mut subnets,
            &mut vips,
        );
        Ok(Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            config: cfg.clone(),
            gateway_mac: cfg.switch.gateway_mac,
            learned: Learned::new(cfg, prev, &vips, nports),
            vpc_cidrs: vpc_cidrs(cfg),
            ports: ports.ports,
            subnets,
            vpcs,
            vips,
            uplink,
            eip_in: FlatMap::new(eips.0),
            eip_out: FlatMap::new(eips.1),
            port_by_name: names.ports,
            mac_table: FlatMap::new(ports.macs),
            addrs: FlatMap::new(addrs),
            addrs6,
            gateway_ll: vpcswitch_model::gateway_link_local(cfg.switch.gateway_mac),
            overlay,
            tunnel_frame_max: 0,
        })
    }
}

/// The names of a validated configuration resolved to ids: what every step looks up.
struct Names<'c> {
    cfg: &'c Config,
    /// stable port ids: kept by name from the previous snapshot, new names take the
    /// lowest free id
    ports: HashMap<String, PortId>,
    vpcs: HashMap<&'c str, VpcId>,
    subnets: HashMap<&'c str, SubnetId>,
    peerings: HashMap<&'c str, &'c Peering>,
    /// hosts by name (empty without `[[hosts]]`)
    hosts: HashMap<&'c str, HostId>,
    /// this switch's host
    local: Option<HostId>,
}

/// The port tables, made in one pass over the configured ports.
struct Ports {
    /// by id, holes where ids are free
    ports: Vec<Option<PortEntry>>,
    /// (MAC key, port): primary and allowed extra MACs
    macs: Vec<(u64, PortId)>,
    /// ((VPC, fixed IP) key, address)
    addrs: Vec<(u64, Addr)>,
    /// the uplink's id
    uplink: Option<PortId>,
}

/// EIPs both ways: (public, (VPC, private)) and ((VPC, private) key, public).
type Eips = (Vec<(u64, (VpcId, u32))>, Vec<(u64, u32)>);

impl<'c> Names<'c> {
    fn new(cfg: &'c Config, prev: Option<&Snapshot>) -> Names<'c> {
        let hosts = index(cfg.hosts.iter().map(|h| h.name.as_str()));
        Names {
            local: cfg.local_host().and_then(|h| hosts.get(h).copied()),
            hosts,
            cfg,
            ports: port_ids(cfg, prev),
            vpcs: index(cfg.vpcs.iter().map(|v| v.name.as_str())),
            subnets: index(cfg.subnets.iter().map(|s| s.name.as_str())),
            peerings: cfg.peerings.iter().map(|p| (p.name.as_str(), p)).collect(),
        }
    }

    /// Number of port id slots (the largest id + 1).
    fn port_slots(&self) -> usize {
        self.ports
            .values()
            .map(|&i| i as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Subnets by id, their flood lists still empty ([`Self::ports`] fills them).
    fn subnets(&self) -> Vec<SubnetEntry> {
        self.cfg
            .subnets
            .iter()
            .map(|s| SubnetEntry {
                name: s.name.clone(),
                vpc: self.vpcs[s.vpc.as_str()],
                cidr: Ipv4Cidr::new(s.cidr.network(), s.cidr.len()).unwrap_or(s.cidr),
                gateway: u32::from(s.gateway_ip()),
                ipv6: s.ipv6_cidr.map(|cidr| Subnet6 {
                    cidr,
                    gateway: cidr.first_host(),
                }),
                ports: Box::new([]),
                local_ports: Box::new([]),
                hosts: Box::new([]),
                dhcp: DhcpServer::of(s).map(Box::new),
            })
            .collect()
    }

    fn vips(&self) -> Vec<VipEntry> {
        self.cfg
            .vips
            .iter()
            .map(|v| VipEntry {
                name: v.name.clone(),
                subnet: self.subnets[v.subnet.as_str()],
                ip: match v.ip {
                    IpAddr::V4(a) => u32::from(a),
                    IpAddr::V6(_) => 0,
                },
                ip6: match v.ip {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                },
                ports: v.ports.iter().map(|p| self.ports[p.as_str()]).collect(),
                local_ports: Box::new([]),
                hosts: Box::new([]),
            })
            .collect()
    }

    /// Every port and the uplink; each subnet's flood list, in configuration order.
    fn ports(&self, subnets: &mut [SubnetEntry], vips: &[VipEntry], nports: usize) -> Ports {
        let mut ports: Vec<Option<PortEntry>> = vec![None; nports];
        let mut flood: Vec<Vec<PortId>> = vec![Vec::new(); subnets.len()];
        let (mut macs, mut addrs) = (Vec::new(), Vec::new());
        for p in &self.cfg.ports {
            let id = self.ports[p.name.as_str()];
            let subnet = self.subnets[p.subnet.as_str()];
            let vpc = subnets[subnet as usize].vpc;
            let ips: Box<[u32]> = p.ips.iter().map(|&i| u32::from(i)).collect();
            let bound: Vec<VipId> = (0..vips.len() as VipId)
                .filter(|&v| vips[v as usize].ports.contains(&id))
                .collect();
            let mut allowed: Vec<u32> = ips.to_vec();
            allowed.extend(
                bound
                    .iter()
                    .map(|&v| &vips[v as usize])
                    .filter(|v| v.ip6.is_none())
                    .map(|v| v.ip),
            );
            let ips6: Box<[_]> = p.ipv6_ips.clone().into_boxed_slice();
            let mut allowed6 = ips6.to_vec();
            allowed6.extend(bound.iter().filter_map(|&v| vips[v as usize].ip6));
            addrs.extend(ips.iter().map(|ip| (addr_key(vpc, *ip), Addr::Port(id))));
            macs.push((p.mac.key(), id));
            macs.extend(p.allowed_macs.iter().map(|m| (m.key(), id)));
            flood[subnet as usize].push(id);
            ports[id as usize] = Some(PortEntry {
                name: p.name.clone(),
                id,
                subnet,
                vpc,
                mac: p.mac,
                allowed_macs: p.allowed_macs.clone().into_boxed_slice(),
                ips,
                allowed: allowed.into_boxed_slice(),
                vips: bound.into_boxed_slice(),
                ips6,
                allowed6: allowed6.into_boxed_slice(),
                src_dst_check: p.src_dst_check,
                is_uplink: false,
                dhcp: subnets[subnet as usize].dhcp.is_some(),
                location: self.location(p.host.as_deref()),
            });
        }
        let uplink = self.cfg.uplink.as_ref().map(|u| {
            let id = self.ports[u.name.as_str()];
            ports[id as usize] = Some(PortEntry {
                name: u.name.clone(),
                id,
                subnet: u32::MAX,
                vpc: u32::MAX,
                mac: u.mac,
                allowed_macs: Box::new([]),
                ips: Box::new([]),
                allowed: Box::new([]),
                vips: Box::new([]),
                ips6: Box::new([]),
                allowed6: Box::new([]),
                src_dst_check: false,
                is_uplink: true,
                dhcp: false,
                location: self.location(u.host.as_deref()),
            });
            id
        });
        for (s, f) in subnets.iter_mut().zip(flood) {
            s.ports = f.into_boxed_slice();
        }
        Ports {
            ports,
            macs,
            addrs,
            uplink,
        }
    }

    /// Where a port on host `host` lives, seen from this switch's host.
    fn location(&self, host: Option<&str>) -> Location {
        match host.and_then(|h| self.hosts.get(h)) {
            Some(&h) if Some(h) != self.local => Location::Remote(h),
            _ => Location::Local,
        }
    }

    /// Each VPC's route table (its routes, then its subnets' local routes) and VNI.
    fn route_tables(&self, subnets: &[SubnetEntry], vnis: &[u32]) -> Vec<VpcEntry> {
        self.cfg
            .vpcs
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                let mut entries: Vec<(Ipv4Cidr, RouteTarget)> = Vec::new();
                let mut routes6: Vec<(Ipv6Cidr, RouteTarget)> = Vec::new();
                for r in self.cfg.routes.iter().filter(|r| r.vpc == v.name) {
                    let t = self.route_target(&v.name, r.target());
                    match r.destination {
                        IpCidr::V4(d) => entries.push((d, t)),
                        IpCidr::V6(d) => routes6.push((d, t)),
                    }
                }
                // local routes last so they win ties (validation refuses shadowing anyway)
                for (si, s) in subnets.iter().enumerate() {
                    if s.vpc == vi as VpcId {
                        entries.push((s.cidr, RouteTarget::Local(si as SubnetId)));
                        if let Some(v6) = s.ipv6 {
                            routes6.push((v6.cidr, RouteTarget::Local(si as SubnetId)));
                        }
                    }
                }
                VpcEntry {
                    name: v.name.clone(),
                    routes: Lpm::new(entries),
                    routes6: Lpm::new(routes6),
                    vni: vnis.get(vi).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// A route of VPC `vpc` to `t`, resolved (a peering to the other VPC).
    fn route_target(&self, vpc: &str, t: Option<CfgTarget<'_>>) -> RouteTarget {
        match t {
            Some(CfgTarget::Peering(p)) => {
                let pe = self.peerings[p];
                let other = if pe.vpcs[0] == vpc {
                    &pe.vpcs[1]
                } else {
                    &pe.vpcs[0]
                };
                RouteTarget::Peering(self.vpcs[other.as_str()])
            }
            Some(CfgTarget::Port(p)) => RouteTarget::Port(self.ports[p]),
            Some(CfgTarget::Uplink) | None => RouteTarget::Uplink,
        }
    }

    /// SPEC 7: EIPs both ways; both resolve through the host table.
    fn eips(&self, subnets: &[SubnetEntry]) -> Eips {
        let (mut eip_in, mut eip_out) = (Vec::new(), Vec::new());
        for x in self.cfg.all_eips() {
            if let Some((subnet, private)) = self.cfg.eip_target(&x) {
                let vpc = self
                    .subnets
                    .get(subnet)
                    .map_or(0, |&s| subnets[s as usize].vpc);
                let (public, private) = (u32::from(x.ip), u32::from(private));
                eip_in.push((u64::from(public), (vpc, private)));
                eip_out.push((addr_key(vpc, private), public));
            }
        }
        (eip_in, eip_out)
    }

    /// SPEC 7: the uplink, with port id `port`; its ARP sender is the lowest EIP.
    fn uplink(&self, port: Option<PortId>, eip_in: &[(u64, (VpcId, u32))]) -> Option<UplinkEntry> {
        let (u, port) = self.cfg.uplink.as_ref().zip(port)?;
        Some(UplinkEntry {
            port,
            mac: u.mac,
            next_hop: u32::from(u.next_hop),
            arp_src: eip_in.iter().map(|&(k, _)| k as u32).min().unwrap_or(0),
            static_next_hop: u.next_hop_mac.is_some(),
        })
    }
}

/// Stable port ids: kept by name from `prev`, new names take the lowest free id.
fn port_ids(cfg: &Config, prev: Option<&Snapshot>) -> HashMap<String, PortId> {
    let mut names: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
    if let Some(u) = &cfg.uplink {
        names.push(u.name.as_str());
    }
    let mut ids: HashMap<String, PortId> = HashMap::new();
    let mut used = vec![false; names.len() + prev.map_or(0, |p| p.ports.len())];
    if let Some(p) = prev {
        for n in &names {
            if let Some(&id) = p.port_by_name.get(*n) {
                ids.insert(n.to_string(), id);
                used[id as usize] = true;
            }
        }
    }
    let mut next = 0usize;
    for n in &names {
        if !ids.contains_key(*n) {
            while used[next] {
                next += 1;
            }
            used[next] = true;
            ids.insert(n.to_string(), next as PortId);
        }
    }
    ids
}

/// Names to their position.
fn index<'c>(names: impl Iterator<Item = &'c str>) -> HashMap<&'c str, u32> {
    names.enumerate().map(|(i, n)| (n, i as u32)).collect()
}

/// The host table's gateways and VIPs (the ports' fixed IPs follow).
fn gateway_and_vip_addrs(subnets: &[SubnetEntry], vips: &[VipEntry]) -> Vec<(u64, Addr)> {
    let gateways = subnets
        .iter()
        .enumerate()
        .map(|(s, sub)| (addr_key(sub.vpc, sub.gateway), Addr::Gateway(s as SubnetId)));
    let vips = vips
        .iter()
        .enumerate()
        .filter(|(_, v)| v.ip6.is_none())
        .map(|(vi, v)| {
            (
                addr_key(subnets[v.subnet as usize].vpc, v.ip),
                Addr::Vip(vi as VipId),
            )
        });
    gateways.chain(vips).collect()
}

/// SPEC 12: the IPv6 host table: subnets' IPv6 gateways, IPv6 VIPs, ports' fixed
/// IPv6 addresses.
fn addrs6(
    subnets: &[SubnetEntry],
    vips: &[VipEntry],
    ports: &[Option<PortEntry>],
) -> FlatMap<Addr, (VpcId, u128)> {
    let key = |vpc: VpcId, a: Ipv6Addr| (vpc, u128::from(a));
    let gateways = subnets.iter().enumerate().filter_map(|(s, sub)| {
        sub.ipv6
            .map(|v6| (key(sub.vpc, v6.gateway), Addr::Gateway(s as SubnetId)))
    });
    let vips = vips.iter().enumerate().filter_map(|(vi, v)| {
        v.ip6.map(|a| {
            (
                key(subnets[v.subnet as usize].vpc, a),
                Addr::Vip(vi as VipId),
            )
        })
    });
    let ports = ports.iter().flatten().flat_map(move |p| {
        p.ips6
            .iter()
            .map(move |a| (key(p.vpc, *a), Addr::Port(p.id)))
    });
    FlatMap::new(gateways.chain(vips).chain(ports))
}

/// Every VPC CIDR → its VPC (SPEC 7.3, 7.4: private addresses on the uplink).
fn vpc_cidrs(cfg: &Config) -> Lpm<VpcId> {
    Lpm::new(
        cfg.vpcs
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.cidrs.iter().map(move |c| (*c, i as VpcId))),
    )
}
