//! The hosts a network spans (SPEC 10), compiled: where each port lives, each VPC's VNI,
//! the hosts a flood is replicated to, and what each host could have sent through a
//! tunnel (SPEC 10.3).
//!
//! # Contract (what the runtime relies on)
//! Every host compiles the same network; a snapshot is that network *seen from* its
//! local host ([`Snapshot::local_host`]). Each port has a [`Location`]. The pipeline
//! runs at the host where a frame enters and answers as one switch would
//! ([`Snapshot::process`]); the runtime then acts on the verdict:
//! - `Out::Port(q)`: `q` local: deliver; `q` remote: encapsulate to
//!   [`Snapshot::host`]`(h).endpoint` with [`Snapshot::vni_for`] (the VNI of `q`'s VPC;
//!   for the uplink, the ingress port's VPC's).
//! - `Out::Flood(s)`: deliver to [`Snapshot::flood_ports`] (minus the ingress port) and
//!   encapsulate one copy to each of [`Snapshot::flood_hosts`] (SPEC 10.4: head-end
//!   replication).
//! - `Out::VipPorts(v)`: [`Snapshot::vip_ports`] and [`Snapshot::vip_hosts`] alike.
//! - `DropAndSend(_, out)`: what the switch built itself stays on this host: `out` is
//!   a local port, or `VipPorts(v)` for [`Snapshot::vip_ports`] only (the switch's ARP
//!   request for an owner-less VIP, SPEC 5.2; a receiving host would not take it).
//!
//! A frame decapsulated from host `h` with VNI `n` goes through
//! [`Snapshot::process_tunnel`] (the sender by its outer source address,
//! [`Snapshot::host_by_addr`]); its verdict is never sent into a tunnel again: it names
//! only local ports, and floods go to local ports only (split horizon).
//!
//! Without `[[hosts]]` there are no hosts, every port is local and every list of hosts
//! is empty: a one-host switch does what it always did.
//!
//! All of it is made at compile time; lookups are one hash probe or a short slice, and
//! nothing allocates per packet.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use hashbrown::{HashMap, HashSet};
use vpcswitch_model::{Config, RouteTarget as CfgTarget};

use super::{PortEntry, Snapshot, SubnetEntry, VipEntry};
use crate::{FlatMap, HostId, Out, PortId, SubnetId, VipId, VpcId};

/// Where a port lives (SPEC 10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// on this switch's host (always, without `[[hosts]]`)
    Local,
    /// on another host, reached through a tunnel to it
    Remote(HostId),
}

/// One host of the network.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// name from the configuration
    pub name: String,
    /// its id (its place in `[[hosts]]`)
    pub id: HostId,
    /// its tunnel endpoint: where tunnel packets to it go, and the source address of
    /// the ones it sends
    pub endpoint: SocketAddrV4,
    /// the ports (and the uplink) that live on it
    pub ports: Box<[PortId]>,
}

/// The compiled overlay tables of one snapshot. See the module docs.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// by id
    hosts: Box<[HostEntry]>,
    /// this switch's host (`None` without `[[hosts]]`)
    local: Option<HostId>,
    /// endpoint address → host
    by_addr: FlatMap<HostId>,
    /// VNI → VPC
    vni_vpc: FlatMap<VpcId>,
    /// number of VPCs (the stride of the (host, VPC) tables)
    nvpcs: usize,
    /// SPEC 10.3 (b): ((host, VPC) pair, IPv4 source) keys, see [`pair_key`]: the
    /// sources of routed frames host H may send into VPC V — an allowed-set address
    /// (fixed IP, bound VIP) of a port on H in V or in a VPC whose routes name a
    /// peering to V
    routed_src: FlatMap<()>,
    /// SPEC 10.3 (b), 12.5: the same for IPv6 sources (fixed IPv6 addresses and bound
    /// IPv6 VIPs of such ports)
    routed_src6: HashSet<(HostId, VpcId, Ipv6Addr)>,
    /// SPEC 10.3 (b): by (host, VPC) pair: such a port has `src_dst_check` off, so any
    /// source may come from H into V
    any_src: Box<[bool]>,
    /// SPEC 10.3 (c): (host, EIP) keys: the EIPs host H may send outbound traffic from
    /// (the target is an address a port on H may send from)
    eip_src: FlatMap<()>,
    /// SPEC 11.3: by host id, down (its lease expired); see [`Snapshot::set_hosts_down`]
    down: Box<[bool]>,
    /// some host is down (the one branch a frame pays while none is)
    any_down: bool,
}

/// The host port `p` lives on (`local`: this switch's).
fn host_of(p: &PortEntry, local: Option<HostId>) -> Option<HostId> {
    match p.location {
        Location::Remote(h) => Some(h),
        Location::Local => local,
    }
}

/// The key of `(host, vpc, ip)` in [`Overlay::routed_src`].
#[inline]
fn pair_key(nvpcs: usize, host: HostId, vpc: VpcId, ip: u32) -> u64 {
    let pair = u64::from(host) * nvpcs as u64 + u64::from(vpc);
    (pair << 32) | u64::from(ip)
}

/// What compiling the overlay needs from the rest of the snapshot.
pub(super) struct OverlayInput<'a> {
    pub cfg: &'a Config,
    pub local: Option<HostId>,
    pub ports: &'a [Option<PortEntry>],
    pub vpcs: &'a HashMap<&'a str, VpcId>,
    /// per VPC, the VNI
    pub vnis: &'a [u32],
    /// every EIP: (public, (VPC, private))
    pub eips: &'a [(u64, (VpcId, u32))],
}

impl Overlay {
    /// The overlay tables; fills in the subnets' and VIPs' local ports and hosts.
    pub(super) fn build(
        i: &OverlayInput<'_>,
        subnets: &mut [SubnetEntry],
        vips: &mut [VipEntry],
    ) -> Overlay {
        let ports: Vec<&PortEntry> = i.ports.iter().flatten().collect();
        let hosts: Box<[HostEntry]> = i
            .cfg
            .hosts
            .iter()
            .enumerate()
            .map(|(h, c)| HostEntry {
                name: c.name.clone(),
                id: h as HostId,
                endpoint: c.socket_addr(),
                ports: ports
                    .iter()
                    .filter(|p| host_of(p, i.local) == Some(h as HostId))
                    .map(|p| p.id)
                    .collect(),
            })
            .collect();
        let nvpcs = i.vnis.len();
        // the VPCs whose routes name a peering to each VPC (SPEC 5.3: a peering carries
        // traffic only where a route of the sending VPC names it)
        let mut reaches: Vec<Vec<VpcId>> = (0..nvpcs).map(|v| vec![v as VpcId]).collect();
        for r in &i.cfg.routes {
            let Some(CfgTarget::Peering(pn)) = r.target() else {
                continue;
            };
            let Some(pe) = i.cfg.peerings.iter().find(|p| p.name == pn) else {
                continue;
            };
            let from = i.vpcs.get(r.vpc.as_str()).copied();
            let to = pe.vpcs.iter().find(|v| **v != r.vpc);
            if let (Some(from), Some(to)) = (from, to.and_then(|v| i.vpcs.get(v.as_str()))) {
                if !reaches[from as usize].contains(to) {
                    reaches[from as usize].push(*to);
                }
            }
        }
        let (mut routed_src, mut any_src) = (Vec::new(), vec![false; hosts.len() * nvpcs]);
        let mut routed_src6 = HashSet::new();
        for p in ports.iter().filter(|p| !p.is_uplink) {
            let (Some(h), Some(into)) = (host_of(p, i.local), reaches.get(p.vpc as usize)) else {
                continue;
            };
            for &v in into {
                if !p.src_dst_check {
                    if let Some(a) = any_src.get_mut(h as usize * nvpcs + v as usize) {
                        *a = true;
                    }
                }
                routed_src.extend(p.allowed.iter().map(|&ip| (pair_key(nvpcs, h, v, ip), ())));
                routed_src6.extend(p.allowed6.iter().map(|&ip| (h, v, ip)));
            }
        }
        // SPEC 7.2 from another host: the uplink's host takes outbound traffic from an
        // EIP only from a host with a port that may send from the EIP's target
        let mut eip_src = Vec::new();
        for &(public, (vpc, private)) in i.eips {
            for p in ports.iter().filter(|p| !p.is_uplink && p.vpc == vpc) {
                if let (Some(h), true) = (
                    host_of(p, i.local),
                    !p.src_dst_check || p.allows_ip(private),
                ) {
                    eip_src.push(((u64::from(h) << 32) | public, ()));
                }
            }
        }
        Self::fill_fanout(i, &ports, &reaches, subnets, vips);
        let nhosts = hosts.len();
        Overlay {
            by_addr: FlatMap::new(
                hosts
                    .iter()
                    .map(|h| (u64::from(u32::from(*h.endpoint.ip())), h.id)),
            ),
            vni_vpc: FlatMap::new(
                i.vnis
                    .iter()
                    .enumerate()
                    .map(|(v, &n)| (u64::from(n), v as VpcId)),
            ),
            hosts,
            local: i.local,
            nvpcs,
            routed_src: FlatMap::new(routed_src),
            routed_src6,
            any_src: any_src.into_boxed_slice(),
            eip_src: FlatMap::new(eip_src),
            down: vec![false; nhosts].into_boxed_slice(),
            any_down: false,
        }
    }

    /// Each subnet's and VIP's local ports and the other hosts their floods go to.
    fn fill_fanout(
        i: &OverlayInput<'_>,
        ports: &[&PortEntry],
        reaches: &[Vec<VpcId>],
        subnets: &mut [SubnetEntry],
        vips: &mut [VipEntry],
    ) {
        let local = |id: &PortId| {
            i.ports
                .get(*id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.location == Location::Local)
        };
        for (si, s) in subnets.iter_mut().enumerate() {
            let si = si as SubnetId;
            s.local_ports = s.ports.iter().copied().filter(local).collect();
            let own_vips = || vips.iter().filter(|v| v.subnet == si);
            let has_vips = own_vips().next().is_some();
            let eip_vip = i
                .eips
                .iter()
                .any(|&(_, (vpc, ip))| vpc == s.vpc && own_vips().any(|v| v.ip == ip));
            // SPEC 10.5: a subnet with VIPs also replicates to every host that may send
            // to them (ports of its VPC or of a VPC routing to it through a peering;
            // the uplink when one of them has an EIP), so that each learns an owner
            // from the announcement
            let vpc = s.vpc;
            s.hosts = remote_hosts(ports.iter().copied().filter(|p| {
                if p.is_uplink {
                    has_vips && eip_vip
                } else {
                    p.subnet == si
                        || (has_vips
                            && reaches
                                .get(p.vpc as usize)
                                .is_some_and(|r| r.contains(&vpc)))
                }
            }));
        }
        for v in vips.iter_mut() {
            v.local_ports = v.ports.iter().copied().filter(local).collect();
            v.hosts = remote_hosts(
                v.ports
                    .iter()
                    .filter_map(|id| i.ports.get(*id as usize).and_then(Option::as_ref)),
            );
        }
    }
}

/// The hosts other than this one that `ports` live on, each once, by id.
fn remote_hosts<'a>(ports: impl Iterator<Item = &'a PortEntry>) -> Box<[HostId]> {
    let mut hs: Vec<HostId> = ports
        .filter_map(|p| match p.location {
            Location::Remote(h) => Some(h),
            Location::Local => None,
        })
        .collect();
    hs.sort_unstable();
    hs.dedup();
    hs.into_boxed_slice()
}

/// The overlay's lookups. See the module docs for how the runtime uses them.
impl Snapshot {
    /// Every host of the network, by id (empty without `[[hosts]]`).
    pub fn hosts(&self) -> &[HostEntry] {
        &self.overlay.hosts
    }
    /// Host `h`.
    #[inline]
    pub fn host(&self, h: HostId) -> Option<&HostEntry> {
        self.overlay.hosts.get(h as usize)
    }
    /// The host named `name`.
    pub fn host_id(&self, name: &str) -> Option<HostId> {
        self.overlay
            .hosts
            .iter()
            .position(|h| h.name == name)
            .map(|h| h as HostId)
    }
    /// This switch's host (`None` without `[[hosts]]`).
    #[inline]
    pub fn local_host(&self) -> Option<HostId> {
        self.overlay.local
    }
    /// The host whose tunnel endpoint address is `addr` (the outer source of a tunnel
    /// packet; SPEC 10.3: nothing is accepted from any other address). Never the local
    /// host.
    #[inline]
    pub fn host_by_addr(&self, addr: Ipv4Addr) -> Option<HostId> {
        self.overlay
            .by_addr
            .get(u64::from(u32::from(addr)))
            .filter(|&h| Some(h) != self.overlay.local)
    }
    /// Where port `p` lives.
    #[inline]
    pub fn location(&self, p: PortId) -> Option<Location> {
        self.port(p).map(|p| p.location)
    }
    /// The VPC whose VNI is `vni`.
    #[inline]
    pub fn vpc_by_vni(&self, vni: u32) -> Option<VpcId> {
        self.overlay.vni_vpc.get(u64::from(vni))
    }
    /// The VNI a frame for `out`, which entered on `in_port`, is encapsulated with:
    /// the VNI of the VPC of the destination port, subnet or VIP; for the uplink (an
    /// EIP's outbound traffic, SPEC 7.2, to the host that holds it), the VNI of the
    /// ingress port's VPC.
    #[inline]
    pub fn vni_for(&self, out: Out, in_port: PortId) -> Option<u32> {
        let vpc = match out {
            Out::Port(q) => {
                let q = self.port(q)?;
                if q.is_uplink {
                    self.port(in_port)?.vpc
                } else {
                    q.vpc
                }
            }
            Out::Flood(s) => self.subnets.get(s as usize)?.vpc,
            Out::VipPorts(v) => {
                self.subnets
                    .get(self.vips.get(v as usize)?.subnet as usize)?
                    .vpc
            }
        };
        self.vpcs.get(vpc as usize).map(|v| v.vni)
    }
    /// The ports of subnet `s` on this host: where its floods are delivered here.
    #[inline]
    pub fn flood_ports(&self, s: SubnetId) -> &[PortId] {
        self.subnets.get(s as usize).map_or(&[], |s| &s.local_ports)
    }
    /// The other hosts a flood of subnet `s` that entered here is replicated to, once
    /// each (SPEC 10.4): every host with a port in `s`, and, when `s` has VIPs, every
    /// host that may send to them — a port in its VPC or in a VPC whose routes name a
    /// peering to it, the uplink's host when one of them has an EIP — so that each
    /// learns the owner from a replicated announcement (SPEC 10.5). A flood that came
    /// through a tunnel is never replicated again.
    #[inline]
    pub fn flood_hosts(&self, s: SubnetId) -> &[HostId] {
        self.subnets.get(s as usize).map_or(&[], |s| &s.hosts)
    }
    /// The ports bound to VIP `v` on this host.
    #[inline]
    pub fn vip_ports(&self, v: VipId) -> &[PortId] {
        self.vips.get(v as usize).map_or(&[], |v| &v.local_ports)
    }
    /// The other hosts with ports bound to VIP `v` (SPEC 3.4: a port's ARP request for
    /// the VIP while it has no owner goes to them).
    #[inline]
    pub fn vip_hosts(&self, v: VipId) -> &[HostId] {
        self.vips.get(v as usize).map_or(&[], |v| &v.hosts)
    }
    /// The uplink's location, if there is an uplink.
    #[inline]
    pub fn uplink_location(&self) -> Option<Location> {
        self.uplink.as_ref().and_then(|u| self.location(u.port))
    }

    /// SPEC 10.3 (b): may host `h` send a routed frame from `src` into VPC `vpc`? An
    /// address a port on `h` may send from, in `vpc` or in a VPC whose routes name a
    /// peering to it; any address when such a port has `src_dst_check` off.
    #[inline]
    pub(crate) fn host_may_route_from(&self, h: HostId, vpc: VpcId, src: u32) -> bool {
        let o = &self.overlay;
        let pair = h as usize * o.nvpcs + vpc as usize;
        o.any_src.get(pair).copied().unwrap_or(false)
            || o.routed_src.get(pair_key(o.nvpcs, h, vpc, src)).is_some()
    }

    /// SPEC 10.3 (b), 12.5: [`Snapshot::host_may_route_from`] for an IPv6 source.
    pub(crate) fn host_may_route_from6(&self, h: HostId, vpc: VpcId, src: &Ipv6Addr) -> bool {
        let o = &self.overlay;
        let pair = h as usize * o.nvpcs + vpc as usize;
        o.any_src.get(pair).copied().unwrap_or(false) || o.routed_src6.contains(&(h, vpc, *src))
    }

    /// SPEC 11.3: marks the hosts named in `names` down (the local host and unknown
    /// names are ignored), before the snapshot is published: frames to their ports are
    /// dropped as [`crate::DropReason::HostDown`] by [`Snapshot::process`], and floods
    /// and VIP requests are no longer replicated to them. Returns the names marked. A
    /// host comes back with the next snapshot compiled without it in `names`.
    pub fn set_hosts_down(&mut self, names: &[String]) -> Vec<String> {
        let mut marked = Vec::new();
        for n in names {
            let Some(h) = self.host_id(n) else { continue };
            if Some(h) == self.overlay.local {
                continue;
            }
            if let Some(d) = self.overlay.down.get_mut(h as usize) {
                *d = true;
                marked.push(n.clone());
            }
        }
        self.overlay.any_down = !marked.is_empty();
        if self.overlay.any_down {
            let down = self.overlay.down.clone();
            let up = |h: &HostId| !down.get(*h as usize).copied().unwrap_or(false);
            for s in &mut self.subnets {
                s.hosts = s.hosts.iter().copied().filter(up).collect();
            }
            for v in &mut self.vips {
                v.hosts = v.hosts.iter().copied().filter(up).collect();
            }
        }
        marked
    }

    /// SPEC 11.3: is host `h` down?
    #[inline]
    pub fn host_down(&self, h: HostId) -> bool {
        self.overlay.any_down && self.overlay.down.get(h as usize).copied().unwrap_or(false)
    }

    /// SPEC 11.3: is port `q` on a host that is down? (false for local ports)
    #[inline]
    pub(crate) fn on_down_host(&self, q: PortId) -> Option<HostId> {
        if !self.overlay.any_down {
            return None;
        }
        match self.location(q) {
            Some(Location::Remote(h)) if self.host_down(h) => Some(h),
            _ => None,
        }
    }

    /// SPEC 10.3 (c): may host `h` send outbound traffic from EIP `eip`?
    #[inline]
    pub(crate) fn host_may_send_from_eip(&self, h: HostId, eip: u32) -> bool {
        self.overlay
            .eip_src
            .get((u64::from(h) << 32) | u64::from(eip))
            .is_some()
    }
}
