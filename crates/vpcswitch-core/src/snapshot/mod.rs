//! The compiled, immutable form of a configuration, and the learned state beside it.
//!
//! Build, validate, freeze (OPTE's `PortBuilder`): [`Snapshot::compile`] validates,
//! resolves every name to an index and builds hash tables keyed by MAC and by
//! (VPC, IP). The runtime publishes it RCU-style; a worker uses one snapshot for a whole
//! burst, so every packet sees exactly one configuration (SPEC 8.1).
//!
//! - this file: the compiled tables and their lookups;
//! - `build`: [`Snapshot::compile`], as small named steps;
//! - `learned`: the learned state beside the tables (VIP owners, the next hop's MAC,
//!   budgets), shared by every worker through atomics;
//! - `overlay`: the hosts a network spans (SPEC 10): where each port lives, VNIs, whom
//!   floods are replicated to, and what each host could have sent through a tunnel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use vpcswitch_model::{Config, Ipv4Cidr, Ipv6Cidr, MacAddr};
use vpcswitch_wire::MacKey;

use crate::{FlatMap, HostId, Lpm, PortId, SubnetId, VipId, VpcId};

mod build;
mod learned;
mod overlay;

use learned::Learned;
pub use learned::{Budget, Doorbell, VipCell, NO_OWNER};
use overlay::Overlay;
pub use overlay::{HostEntry, Location};

/// One port (an ECS vNIC, or the uplink).
#[derive(Debug, Clone)]
pub struct PortEntry {
    /// name from the configuration
    pub name: String,
    /// stable id
    pub id: PortId,
    /// its subnet (the uplink has none: `u32::MAX`)
    pub subnet: SubnetId,
    /// its VPC
    pub vpc: VpcId,
    /// primary MAC
    pub mac: MacAddr,
    /// extra source MACs it may use (SPEC 2.2)
    pub allowed_macs: Box<[MacAddr]>,
    /// fixed IPs, host order, primary first
    pub ips: Box<[u32]>,
    /// the allowed set of SPEC 2.3: fixed IPs then bound VIPs' IPs
    pub allowed: Box<[u32]>,
    /// VIPs bound to it
    pub vips: Box<[VipId]>,
    /// fixed IPv6 addresses (SPEC 12.1)
    pub ips6: Box<[Ipv6Addr]>,
    /// the IPv6 allowed set of SPEC 12.2 (fixed IPv6 addresses, then bound IPv6 VIPs'
    /// addresses); link-local addresses are allowed besides, see
    /// [`PortEntry::allows_ip6`]
    pub allowed6: Box<[Ipv6Addr]>,
    /// SPEC 2.3 / 6.1
    pub src_dst_check: bool,
    /// true for the uplink port
    pub is_uplink: bool,
    /// its subnet has DHCP on (SPEC 13.1): the switch's server answers its DHCP client
    /// packets and drops DHCP server packets from it
    pub dhcp: bool,
    /// the host it lives on (SPEC 10.1)
    pub location: Location,
}

impl PortEntry {
    /// SPEC 2.2: may the port send from `mac`?
    #[inline]
    pub fn owns_mac(&self, mac: MacKey) -> bool {
        mac == self.mac || self.allowed_macs.iter().any(|m| mac == *m)
    }
    /// SPEC 2.3: is `ip` in the allowed set?
    #[inline]
    pub fn allows_ip(&self, ip: u32) -> bool {
        // a handful of addresses: a plain scan, no vector prologue
        for &a in self.allowed.iter() {
            if a == ip {
                return true;
            }
        }
        false
    }
    /// SPEC 12.2, 6.1: is `ip` in the IPv6 allowed set: a fixed IPv6 address, a bound
    /// IPv6 VIP, or a link-local address (fe80::/64)?
    #[inline]
    pub fn allows_ip6(&self, ip: &Ipv6Addr) -> bool {
        vpcswitch_wire::ipv6::is_link_local(ip) || self.allowed6.contains(ip)
    }
}

/// A subnet's IPv6 side (SPEC 12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    /// its /64
    pub cidr: Ipv6Cidr,
    /// the gateway, `::1` of the /64
    pub gateway: Ipv6Addr,
}

/// One subnet.
#[derive(Debug, Clone)]
pub struct SubnetEntry {
    /// name
    pub name: String,
    /// its VPC
    pub vpc: VpcId,
    /// its prefix
    pub cidr: Ipv4Cidr,
    /// gateway address, host order
    pub gateway: u32,
    /// its IPv6 prefix and gateway (SPEC 12.1); `None`: IPv6 from its ports is dropped
    /// (SPEC 9.1)
    pub ipv6: Option<Subnet6>,
    /// ports in the subnet on every host, in configuration order
    pub ports: Box<[PortId]>,
    /// the ports of `ports` on this host: where a flood is delivered here (SPEC 4.1)
    pub local_ports: Box<[PortId]>,
    /// the other hosts a flood from this host is replicated to, once each (SPEC 10.4,
    /// 10.5): see [`Snapshot::flood_hosts`]
    pub hosts: Box<[HostId]>,
    /// what its DHCP server hands out (SPEC 13.1); `None`: DHCP off
    pub dhcp: Option<Box<DhcpServer>>,
}

/// A subnet's DHCP options, encoded once at compile time and borrowed by every answer
/// (SPEC 13.1): no allocation per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpServer {
    /// the subnet mask, host order
    pub mask: u32,
    /// lease time, seconds
    pub lease_secs: u32,
    /// option 6's data
    pub dns: Box<[u8]>,
    /// option 15's data
    pub domain: Box<[u8]>,
    /// option 26
    pub mtu: Option<u16>,
    /// option 121's data (RFC 3442, with the default route via the gateway)
    pub routes: Box<[u8]>,
}

impl DhcpServer {
    /// The subnet's DHCP server, if `s` has DHCP on.
    pub fn of(s: &vpcswitch_model::Subnet) -> Option<DhcpServer> {
        if !s.dhcp {
            return None;
        }
        let o = &s.dhcp_options;
        Some(DhcpServer {
            mask: s.cidr.mask(),
            lease_secs: o.lease(),
            dns: o.dns_servers.iter().flat_map(|d| d.octets()).collect(),
            domain: o.domain.as_deref().unwrap_or("").as_bytes().into(),
            mtu: o.mtu,
            routes: s.dhcp_option_121().into_boxed_slice(),
        })
    }

    /// The lease of a port of the subnet whose gateway (the router) is `router`.
    pub fn lease(&self, router: u32) -> vpcswitch_wire::dhcp::Lease<'_> {
        vpcswitch_wire::dhcp::Lease {
            mask: self.mask,
            router,
            lease_secs: self.lease_secs,
            dns: &self.dns,
            domain: &self.domain,
            mtu: self.mtu,
            routes: &self.routes,
        }
    }
}

/// What a route points at, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// a subnet of this VPC (the implicit local route)
    Local(SubnetId),
    /// continue in the peer VPC, among its local subnets only (SPEC 5.3)
    Peering(VpcId),
    /// a next-hop port (SPEC 5.4)
    Port(PortId),
    /// the uplink (SPEC 7)
    Uplink,
}

/// One VPC.
#[derive(Debug, Clone)]
pub struct VpcEntry {
    /// name
    pub name: String,
    /// its route table, local routes included
    pub routes: Lpm<RouteTarget>,
    /// its IPv6 route table (SPEC 12.5), its subnets' /64s included as local routes
    pub routes6: Lpm<RouteTarget, Ipv6Cidr>,
    /// the VNI of its tunnel traffic (SPEC 10.1)
    pub vni: u32,
}

/// One VIP.
#[derive(Debug, Clone)]
pub struct VipEntry {
    /// name
    pub name: String,
    /// its subnet
    pub subnet: SubnetId,
    /// IPv4 address, host order (0 for an IPv6 VIP: see `ip6`)
    pub ip: u32,
    /// the address of an IPv6 VIP (SPEC 12.1); `None` for an IPv4 VIP
    pub ip6: Option<Ipv6Addr>,
    /// bound ports on every host
    pub ports: Box<[PortId]>,
    /// the bound ports on this host
    pub local_ports: Box<[PortId]>,
    /// the other hosts with bound ports (SPEC 3.4: ARP for the VIP while it has no
    /// owner goes to them)
    pub hosts: Box<[HostId]>,
}

impl VpcEntry {
    /// SPEC 12.5: the longest IPv6 route to `dst`.
    pub fn route6(&self, dst: &Ipv6Addr) -> Option<RouteTarget> {
        self.routes6.lookup(u128::from(*dst))
    }
}

impl VipEntry {
    /// The VIP's address, either family.
    pub fn addr(&self) -> IpAddr {
        match self.ip6 {
            Some(a) => IpAddr::V6(a),
            None => IpAddr::V4(Ipv4Addr::from(self.ip)),
        }
    }
}

/// A local address of a VPC (an address in one of its subnets: "local" as in the
/// implicit local routes, whatever host the port lives on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// a port's fixed IP
    Port(PortId),
    /// a VIP
    Vip(VipId),
    /// a subnet's gateway address
    Gateway(SubnetId),
}

/// The uplink (SPEC 7), compiled.
#[derive(Debug, Clone)]
pub struct UplinkEntry {
    /// its port id
    pub port: PortId,
    /// its MAC (the answer to ARP for an EIP, the source of outbound frames)
    pub mac: MacAddr,
    /// the outside next hop, host order
    pub next_hop: u32,
    /// sender IP of the switch's ARP requests for the next hop: the lowest EIP (an
    /// address of the outside network the switch answers for), 0 without EIPs
    pub arp_src: u32,
    /// the next hop's MAC is configured, not learned
    pub static_next_hop: bool,
}

/// A compiled configuration. See the module docs.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one per successful reload.
    pub generation: u64,
    /// The configuration it was compiled from.
    pub config: Config,
    /// The gateway MAC of every subnet.
    pub gateway_mac: MacAddr,
    /// Ports by id (holes where ids are free).
    pub ports: Vec<Option<PortEntry>>,
    /// Subnets by id.
    pub subnets: Vec<SubnetEntry>,
    /// VPCs by id.
    pub vpcs: Vec<VpcEntry>,
    /// VIPs by id.
    pub vips: Vec<VipEntry>,
    /// The uplink, if configured.
    pub uplink: Option<UplinkEntry>,
    /// EIP (public, host order) → (VPC, private address)
    eip_in: FlatMap<(VpcId, u32)>,
    /// (VPC, private address) → EIP
    eip_out: FlatMap<u32>,
    /// VIP owners, the next hop's MAC, budgets
    learned: Learned,
    /// every VPC CIDR → its VPC (SPEC 7.3, 7.4: private addresses on the uplink)
    vpc_cidrs: Lpm<VpcId>,
    port_by_name: HashMap<String, PortId>,
    /// keyed by [`MacAddr::key`]
    mac_table: FlatMap<PortId>,
    addrs: FlatMap<Addr>,
    /// (VPC, IPv6 address) → what holds it (SPEC 12): ports' fixed IPv6 addresses,
    /// IPv6 VIPs, subnets' IPv6 gateways
    addrs6: FlatMap<Addr, (VpcId, u128)>,
    /// the link-local address of the gateway MAC (SPEC 12.1, 12.3)
    pub gateway_ll: Ipv6Addr,
    /// the hosts, and what each may send through a tunnel
    overlay: Overlay,
    /// the longest frame (Ethernet header included) the tunnel carries; 0: not set
    /// (no tunnel, or a snapshot not run by a runtime). See
    /// [`Snapshot::set_tunnel_frame_max`].
    tunnel_frame_max: usize,
}

#[inline]
fn addr_key(vpc: VpcId, ip: u32) -> u64 {
    (u64::from(vpc) << 32) | u64::from(ip)
}

impl Snapshot {
    /// SPEC 10.6: the longest frame (Ethernet header included) the tunnel to other
    /// hosts carries, as the runtime found it (the underlay's MTU minus the 50 bytes of
    /// encapsulation, plus the inner Ethernet header). A frame for a port on another
    /// host longer than this is answered with ICMP "fragmentation needed" when it is
    /// IPv4 with DF set, and dropped (`mtu_exceeded`) otherwise. Set before the
    /// snapshot is published; 0 leaves frames unchecked here.
    pub fn set_tunnel_frame_max(&mut self, n: usize) {
        self.tunnel_frame_max = n;
    }

    /// See [`Snapshot::set_tunnel_frame_max`].
    #[inline(always)]
    pub fn tunnel_frame_max(&self) -> usize {
        self.tunnel_frame_max
    }

    /// The VPC whose CIDRs hold `ip` (SPEC 7.3, 7.4: such an address is private and
    /// never seen on, or sent to, the outside network).
    #[inline]
    pub fn vpc_of_addr(&self, ip: u32) -> Option<VpcId> {
        self.vpc_cidrs.lookup(ip)
    }

    /// SPEC 7.1: the (VPC, private address) behind EIP `public`.
    #[inline]
    pub fn eip_target(&self, public: u32) -> Option<(VpcId, u32)> {
        self.eip_in.get(u64::from(public))
    }

    /// SPEC 7.2: the EIP of private address `ip` in VPC `vpc`.
    #[inline]
    pub fn eip_of(&self, vpc: VpcId, ip: u32) -> Option<u32> {
        self.eip_out.get(addr_key(vpc, ip))
    }

    /// The port with id `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }
    /// The id of the port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.port_by_name.get(name).copied()
    }
    /// Number of port id slots (the largest id + 1).
    pub fn port_slots(&self) -> usize {
        self.ports.len()
    }
    /// The port owning `mac` (primary or allowed extra MAC).
    #[inline]
    pub fn port_by_mac(&self, mac: MacKey) -> Option<PortId> {
        self.mac_table.get(mac.0)
    }
    /// The local address `ip` of VPC `vpc`.
    #[inline]
    pub fn addr(&self, vpc: VpcId, ip: u32) -> Option<Addr> {
        self.addrs.get(addr_key(vpc, ip))
    }
    /// The local IPv6 address `ip` of VPC `vpc` (SPEC 12).
    #[inline]
    pub fn addr6(&self, vpc: VpcId, ip: &Ipv6Addr) -> Option<Addr> {
        self.addrs6.get((vpc, u128::from(*ip)))
    }
    /// The VIP named `name`.
    pub fn vip_id(&self, name: &str) -> Option<VipId> {
        self.vips
            .iter()
            .position(|v| v.name == name)
            .map(|i| i as VipId)
    }
    /// Owner of VIP `name` (by port name), for tests and `ctl`.
    pub fn vip_owner_name(&self, name: &str) -> Option<&str> {
        let v = self.vip_id(name)?;
        let o = self.vip_cell(v).owner()?;
        self.port(o).map(|p| p.name.as_str())
    }
    /// The gateway address of subnet `s`.
    pub fn gateway_ip(&self, s: SubnetId) -> Ipv4Addr {
        Ipv4Addr::from(self.subnets[s as usize].gateway)
    }
}
