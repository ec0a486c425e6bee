//! The vpcswitch configuration (SPEC 1): what a VPC operator declares.
//!
//! # Contract
//! A [`Config`] is plain data (serde, TOML). It is only ever used after
//! [`Config::validate`] accepted it; that check applies every rule of SPEC 1 and
//! reports *all* broken rules at once, each naming the object, the field and the rule.
//! A refused configuration changes nothing (SPEC 8.1: the running one stays in force).
//!
//! Three ways in: [`Config::from_toml_str`] (files), [`ConfigBuilder`] (embedders), or
//! building the structs directly and calling [`Config::validate`].

mod builder;
mod error;
mod hosts;
mod validate;

pub use builder::ConfigBuilder;
pub use error::{ConfigError, ConfigErrors};
pub use hosts::{derived_vni, Host, DEFAULT_TUNNEL_PORT, MAX_VNI};
pub use vpcswitch_wire::{IpCidr, Ipv4Cidr, Ipv6Cidr, MacAddr};

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Default limit of ports bound to one VIP (SPEC 1).
pub const DEFAULT_MAX_PORTS_PER_VIP: usize = 10;
/// Default limit of VIPs one port is bound to (SPEC 1).
pub const DEFAULT_MAX_VIPS_PER_PORT: usize = 8;
/// Default switch-wide gateway MAC (locally administered).
pub const DEFAULT_GATEWAY_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// Most worker threads a switch runs.
pub const MAX_WORKERS: usize = 64;

/// The whole configuration of one switch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Switch-wide settings.
    #[serde(default)]
    pub switch: SwitchSettings,
    /// The hosts the network spans (SPEC 10.1), each running one switch; none: one
    /// host, everything local.
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// VPCs.
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Ports (ECS vNICs).
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Virtual IPs.
    #[serde(default)]
    pub vips: Vec<Vip>,
    /// VPC peerings.
    #[serde(default)]
    pub peerings: Vec<Peering>,
    /// Explicit routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Elastic IPs (also expressible as `eip` on a VIP or a port).
    #[serde(default)]
    pub eips: Vec<Eip>,
    /// The port to the outside network (SPEC 7).
    #[serde(default)]
    pub uplink: Option<Uplink>,
}

fn default_workers() -> usize {
    1
}
fn default_gateway_mac() -> MacAddr {
    DEFAULT_GATEWAY_MAC
}
fn default_max_ports_per_vip() -> usize {
    DEFAULT_MAX_PORTS_PER_VIP
}
fn default_max_vips_per_port() -> usize {
    DEFAULT_MAX_VIPS_PER_PORT
}
fn default_true() -> bool {
    true
}
fn default_icmp_rate() -> u32 {
    100
}
fn default_arp_rate() -> u32 {
    500
}
fn default_flood_rate() -> u32 {
    5000
}

/// `[switch]`: settings of the switch itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSettings {
    /// Poll-mode worker threads (1..=64).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Pin worker i to CPU i.
    #[serde(default)]
    pub pin_workers: bool,
    /// The MAC every subnet gateway answers with.
    #[serde(default = "default_gateway_mac")]
    pub gateway_mac: MacAddr,
    /// Unix socket of the control interface (the binary's `ctl`).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Most ports one VIP may bind.
    #[serde(default = "default_max_ports_per_vip")]
    pub max_ports_per_vip: usize,
    /// Most VIPs one port may be bound to.
    #[serde(default = "default_max_vips_per_port")]
    pub max_vips_per_port: usize,
    /// ICMP errors the switch sends per port per second (SPEC 5.5).
    #[serde(default = "default_icmp_rate")]
    pub icmp_errors_per_sec: u32,
    /// ARP packets accepted from one port per second (storm protection).
    #[serde(default = "default_arp_rate")]
    pub arp_per_sec: u32,
    /// Broadcast/multicast IPv4 frames flooded from one port per second.
    #[serde(default = "default_flood_rate")]
    pub flood_per_sec: u32,
    /// `host:port` where the binary serves Prometheus metrics over HTTP (off when
    /// unset), e.g. `127.0.0.1:9477`.
    #[serde(default)]
    pub metrics: Option<String>,
    /// What a worker does when it finds no traffic: one policy for every worker, or one
    /// per worker (`idle = ["busy_poll", "adaptive"]`). See [`IdlePolicy`].
    #[serde(default)]
    pub idle: IdleSetting,
    /// The host this switch runs on, one of `[[hosts]]` (the binary's `--host` wins).
    /// Must be absent without `[[hosts]]`.
    #[serde(default)]
    pub host: Option<String>,
}

/// What a worker does when its queues are empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdlePolicy {
    /// Poll on for a while, then sleep until a queue has frames (≈ 0% CPU when idle). How
    /// long it polls adapts to the traffic: while frames keep arriving closer together
    /// than the runtime's linger bound, it stays awake between them, so a light steady
    /// flow does not pay a wake-up per frame; once they stop it sleeps.
    #[default]
    Adaptive,
    /// Never sleep: poll all the time (one core per worker at 100%), as OVS PMD threads
    /// and DPDK do, for cores dedicated to the switch. The lowest latency.
    BusyPoll,
}

impl IdlePolicy {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            IdlePolicy::Adaptive => "adaptive",
            IdlePolicy::BusyPoll => "busy_poll",
        }
    }
}

/// `[switch] idle`: one [`IdlePolicy`] for all workers, or a list with one per worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IdleSetting {
    /// The same policy on every worker.
    All(IdlePolicy),
    /// Worker *i* uses entry *i*; the list has one entry per worker.
    PerWorker(Vec<IdlePolicy>),
}

impl Default for IdleSetting {
    fn default() -> Self {
        IdleSetting::All(IdlePolicy::Adaptive)
    }
}

impl IdleSetting {
    /// Worker `w`'s policy (the default for a worker past the end of a short list, which
    /// validation refuses anyway).
    pub fn of(&self, w: usize) -> IdlePolicy {
        match self {
            IdleSetting::All(p) => *p,
            IdleSetting::PerWorker(v) => v.get(w).copied().unwrap_or_default(),
        }
    }
}

impl<'de> Deserialize<'de> for IdleSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::IntoDeserializer;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = IdleSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"adaptive\", \"busy_poll\", or a list of them, one per worker")
            }
            // each policy is read by IdlePolicy's own Deserialize, whose error names the
            // unknown value and the choices
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<IdleSetting, E> {
                IdlePolicy::deserialize(s.into_deserializer()).map(IdleSetting::All)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<IdleSetting, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = seq.next_element::<IdlePolicy>()? {
                    v.push(p);
                }
                Ok(IdleSetting::PerWorker(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            workers: default_workers(),
            pin_workers: false,
            gateway_mac: DEFAULT_GATEWAY_MAC,
            control_socket: None,
            max_ports_per_vip: DEFAULT_MAX_PORTS_PER_VIP,
            max_vips_per_port: DEFAULT_MAX_VIPS_PER_PORT,
            icmp_errors_per_sec: default_icmp_rate(),
            arp_per_sec: default_arp_rate(),
            flood_per_sec: default_flood_rate(),
            metrics: None,
            idle: IdleSetting::default(),
            host: None,
        }
    }
}

/// `[[vpcs]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    /// unique name
    pub name: String,
    /// one or more IPv4 CIDRs
    pub cidrs: Vec<Ipv4Cidr>,
    /// IPv6 CIDRs (SPEC 12.1), /64 or shorter, not overlapping; none: an IPv4-only VPC,
    /// whose ports' IPv6 frames are dropped (SPEC 9.1)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_cidrs: Vec<Ipv6Cidr>,
    /// the VXLAN network identifier of its tunnel traffic (SPEC 10.1), 1..=16777215,
    /// unique; default [`derived_vni`] of the name (see [`Config::vnis`])
    #[serde(default)]
    pub vni: Option<u32>,
}

/// `[[subnets]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// unique name in the switch
    pub name: String,
    /// the VPC's name
    pub vpc: String,
    /// inside one of the VPC's CIDRs
    pub cidr: Ipv4Cidr,
    /// default: the first host address
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// the subnet's IPv6 prefix (SPEC 12.1): a /64 inside one of its VPC's
    /// `ipv6_cidrs`; its gateway is `::1` of the prefix, and the link-local address
    /// derived from the gateway MAC (see [`Subnet::gateway_ipv6`])
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cidr: Option<Ipv6Cidr>,
    /// SPEC 13: the switch answers DHCPv4 for the subnet's ports, each with its primary
    /// fixed IP (default off: no DHCP, and DHCP from ports is switched as any traffic)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
    /// what the switch's DHCP server hands out besides the address, mask and router;
    /// set only with `dhcp = true`
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub dhcp_options: DhcpOptions,
}

/// Default DHCP lease time, in seconds (one day).
pub const DEFAULT_DHCP_LEASE_SECS: u32 = 86_400;
/// Shortest DHCP lease time accepted, in seconds.
pub const MIN_DHCP_LEASE_SECS: u32 = 60;
/// Most DNS servers a subnet's DHCP hands out.
pub const MAX_DHCP_DNS_SERVERS: usize = 8;
/// The MTU range a subnet's DHCP may hand out (option 26): the IPv4 minimum datagram
/// every host must take, up to a jumbo frame.
pub const DHCP_MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;

/// `[subnets.dhcp_options]`: what the switch's DHCP server hands out (SPEC 13.1),
/// besides the port's address, the subnet mask and the gateway as router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpOptions {
    /// DNS servers (option 6), at most [`MAX_DHCP_DNS_SERVERS`]; none: no option 6
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<Ipv4Addr>,
    /// the DNS domain (option 15), a host name such as `prod.internal`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// the interface MTU (option 26), in [`DHCP_MTU_RANGE`]; none: no option 26
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// the lease time in seconds (option 51), at least [`MIN_DHCP_LEASE_SECS`];
    /// `4294967295` is an infinite lease; default [`DEFAULT_DHCP_LEASE_SECS`]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u32>,
    /// classless static routes (option 121, RFC 3442). A client that gets option 121
    /// ignores the router option, so the switch adds the default route via the
    /// gateway unless one of these is `0.0.0.0/0`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<DhcpRoute>,
}

impl DhcpOptions {
    /// Nothing set (every field at its default).
    pub fn is_empty(&self) -> bool {
        *self == DhcpOptions::default()
    }
    /// The lease time, defaulted.
    pub fn lease(&self) -> u32 {
        self.lease_secs.unwrap_or(DEFAULT_DHCP_LEASE_SECS)
    }
}

/// Longest option 121 the switch sends: one DHCP option (RFC 3442 allows splitting a
/// longer one over several; the switch does not).
pub const MAX_OPTION_121_LEN: usize = 255;

/// The bytes one classless route takes in option 121 (RFC 3442: the prefix length, the
/// significant octets of the destination, the router).
pub fn option_121_len(destination: &Ipv4Cidr) -> usize {
    1 + usize::from(destination.len()).div_ceil(8) + 4
}

impl Subnet {
    /// The data of DHCP option 121 (RFC 3442) the subnet hands out: its
    /// `dhcp_options.routes`, then the default route via the gateway unless one of
    /// them is a default route (a client that takes option 121 ignores option 3, the
    /// router). Validation keeps it within [`MAX_OPTION_121_LEN`]; empty when DHCP is
    /// off.
    pub fn dhcp_option_121(&self) -> Vec<u8> {
        let mut v = Vec::new();
        if !self.dhcp {
            return v;
        }
        let gw = self.gateway_ip();
        let default = DhcpRoute {
            destination: Ipv4Cidr::default(),
            via: gw,
        };
        let routes = &self.dhcp_options.routes;
        let extra = (!routes.iter().any(|r| r.destination.is_empty())).then_some(&default);
        for r in routes.iter().chain(extra) {
            let d = r.destination;
            let n = usize::from(d.len()).div_ceil(8);
            v.push(d.len());
            v.extend_from_slice(&d.network().octets()[..n]);
            v.extend_from_slice(&r.via.octets());
        }
        v
    }
}

/// One classless static route a subnet's DHCP hands out (option 121).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpRoute {
    /// destination prefix (no host bits)
    pub destination: Ipv4Cidr,
    /// the next hop: a host address inside the subnet (a port's fixed IP, a VIP, the
    /// gateway)
    pub via: Ipv4Addr,
}

impl Subnet {
    /// The gateway address, defaulted.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.gateway.unwrap_or_else(|| self.cidr.first_host())
    }
    /// The IPv6 gateway address (SPEC 12.1): `::1` of the subnet's /64 (reserved, as
    /// the network address `::` of the prefix is). Besides it the gateway answers at
    /// the link-local address of the gateway MAC ([`gateway_link_local`]).
    pub fn gateway_ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6_cidr.map(|c| c.first_host())
    }
}

/// The link-local address of the gateway (SPEC 12.1, 12.3): the modified EUI-64
/// address of `gateway_mac` in fe80::/64, the source of the switch's router
/// advertisements.
pub fn gateway_link_local(gateway_mac: MacAddr) -> Ipv6Addr {
    vpcswitch_wire::ipv6::link_local_from_mac(gateway_mac)
}

/// The prefix length of every subnet's IPv6 prefix (SPEC 12.1; SLAAC needs /64).
pub const SUBNET_IPV6_PREFIX_LEN: u8 = 64;

/// How a port reaches its guest. The model only carries it; the runtime and the
/// binary make the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendSpec {
    /// In-memory rings (tests, benchmarks, embedders driving frames themselves).
    #[default]
    Memory,
    /// A Linux TAP device.
    Tap {
        /// interface name
        ifname: String,
        /// negotiate checksum/TSO offloads with the device (default true)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offload: Option<bool>,
        /// the guest's network namespace: a name under [`NETNS_RUN_DIR`] (as
        /// `ip netns add` makes) or an absolute path (`/proc/PID/ns/net`). The switch
        /// then creates or attaches the TAP inside that namespace and makes it
        /// persistent: it outlives the switch (restarts, crashes) and a restarted switch
        /// attaches to it again. Unset: the TAP is in the switch's own namespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<String>,
    },
    /// AF_XDP on an existing interface.
    AfXdp {
        /// interface name
        ifname: String,
        /// first queue id
        #[serde(default)]
        queue: u32,
        /// "auto", "zerocopy", "copy", "skb"
        #[serde(default)]
        mode: Option<String>,
    },
    /// AF_PACKET on an existing interface.
    AfPacket {
        /// interface name
        ifname: String,
        /// receive through a `TPACKET_V3` mmapped ring (default false): more packets per
        /// second, but a block is handed over only when full or after the kernel's
        /// retire timer (1 ms, jiffy-bound), so at low rates frames wait milliseconds
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring: Option<bool>,
    },
    /// A device the embedding program supplies: it passes its own
    /// `vpcswitch_backend::Backend` for the port to `Switch::start`/`Switch::reload`
    /// (vhost-user, a DPDK ring, a hypervisor's queue...). The switch opens and polls it
    /// like any other; a port whose backend is missing refuses the start. The
    /// `vpcswitch` binary has no external backends and refuses them.
    External {
        /// a label for the device kind, shown in `ctl` and metrics (`vhost_user`):
        /// 1 to 32 bytes of lowercase letters, digits, `_` and `-`; default `external`
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
}

impl BackendSpec {
    /// The interface a device backend opens (`None` for memory).
    pub fn ifname(&self) -> Option<&str> {
        match self {
            BackendSpec::Memory | BackendSpec::External { .. } => None,
            BackendSpec::Tap { ifname, .. }
            | BackendSpec::AfXdp { ifname, .. }
            | BackendSpec::AfPacket { ifname, .. } => Some(ifname.as_str()),
        }
    }
}

/// Where `ip netns add NAME` puts its namespaces: a TAP's `netns` that is a name (no
/// `/`) means `NETNS_RUN_DIR/NAME`.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// The file of a TAP's `netns`: a name is looked up under [`NETNS_RUN_DIR`], an absolute
/// path is taken as it is.
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.starts_with('/') {
        PathBuf::from(netns)
    } else {
        std::path::Path::new(NETNS_RUN_DIR).join(netns)
    }
}

impl BackendSpec {
    /// The network namespace a TAP backend names, if any.
    pub fn netns(&self) -> Option<&str> {
        match self {
            BackendSpec::Tap { netns, .. } => netns.as_deref(),
            _ => None,
        }
    }
}

/// `[[ports]]`: an ECS vNIC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// unique name
    pub name: String,
    /// the subnet's name
    pub subnet: String,
    /// unique in the switch
    pub mac: MacAddr,
    /// fixed IPs; the first is primary
    pub ips: Vec<Ipv4Addr>,
    /// fixed IPv6 addresses (SPEC 12.1), inside the subnet's `ipv6_cidr`; the
    /// link-local addresses (fe80::/64) are allowed besides them and need no entry
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_ips: Vec<Ipv6Addr>,
    /// SPEC 2.3 / 6.1 (default on)
    #[serde(default = "default_true")]
    pub src_dst_check: bool,
    /// extra source MACs the guest may use (SPEC 2.2)
    #[serde(default)]
    pub allowed_macs: Vec<MacAddr>,
    /// optional EIP for the primary IP (SPEC 7)
    #[serde(default)]
    pub eip: Option<Ipv4Addr>,
    /// the host it lives on, one of `[[hosts]]` (required with hosts, absent without)
    #[serde(default)]
    pub host: Option<String>,
    /// backend binding
    #[serde(default)]
    pub backend: BackendSpec,
}

/// `[[vips]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// unique name
    pub name: String,
    /// the subnet's name
    pub subnet: String,
    /// the shared address: IPv4 inside the subnet's CIDR, or IPv6 inside its
    /// `ipv6_cidr` (SPEC 12.1; such a VIP takes no EIP, SPEC 12.5)
    pub ip: IpAddr,
    /// names of the bound ports
    #[serde(default)]
    pub ports: Vec<String>,
    /// optional EIP (SPEC 7)
    #[serde(default)]
    pub eip: Option<Ipv4Addr>,
}

impl Vip {
    /// The address when it is IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// `[[peerings]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peering {
    /// unique name
    pub name: String,
    /// exactly two VPC names
    pub vpcs: Vec<String>,
}

/// `[[routes]]`: exactly one of `peering`, `port`, `uplink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// the VPC whose table holds the route
    pub vpc: String,
    /// destination prefix: IPv4, or IPv6 (SPEC 12.5; not to the uplink, SPEC 14.1)
    pub destination: IpCidr,
    /// a peering name
    #[serde(default)]
    pub peering: Option<String>,
    /// a next-hop port name
    #[serde(default)]
    pub port: Option<String>,
    /// `true`: the uplink
    #[serde(default)]
    pub uplink: Option<bool>,
}

/// What a route points at, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget<'a> {
    /// a peering
    Peering(&'a str),
    /// a next-hop port
    Port(&'a str),
    /// the uplink
    Uplink,
}

impl Route {
    /// The route's single target; `None` unless exactly one is set.
    pub fn target(&self) -> Option<RouteTarget<'_>> {
        match (&self.peering, &self.port, self.uplink) {
            (Some(p), None, None | Some(false)) => Some(RouteTarget::Peering(p)),
            (None, Some(p), None | Some(false)) => Some(RouteTarget::Port(p)),
            (None, None, Some(true)) => Some(RouteTarget::Uplink),
            _ => None,
        }
    }
}

/// `[[eips]]`: a public address NATed 1:1 to a VIP or a port's fixed IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip {
    /// the public address
    pub ip: Ipv4Addr,
    /// target: a VIP name
    #[serde(default)]
    pub vip: Option<String>,
    /// target: a port name
    #[serde(default)]
    pub port: Option<String>,
    /// with `port`: which fixed IP (default the primary)
    #[serde(default)]
    pub port_ip: Option<Ipv4Addr>,
}

/// `[uplink]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// port name of the uplink (unique among ports)
    #[serde(default = "default_uplink_name")]
    pub name: String,
    /// the uplink's MAC
    pub mac: MacAddr,
    /// the outside next hop (its MAC is learned by ARP on the uplink)
    pub next_hop: Ipv4Addr,
    /// the next hop's MAC, if it must not be learned (a static neighbour)
    #[serde(default)]
    pub next_hop_mac: Option<MacAddr>,
    /// the host it lives on, one of `[[hosts]]` (required with hosts, absent without)
    #[serde(default)]
    pub host: Option<String>,
    /// backend binding
    #[serde(default)]
    pub backend: BackendSpec,
}

fn default_uplink_name() -> String {
    "uplink".to_string()
}

impl Config {
    /// Parses TOML and validates it. Syntax and type errors come back as one error
    /// naming the place; rule violations come back all together.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigErrors> {
        let cfg: Config = toml::from_str(s).map_err(|e| {
            let place = e
                .span()
                .map(|r| {
                    let line = s[..r.start.min(s.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "file".into());
            ConfigErrors(vec![ConfigError::new(
                "TOML",
                place,
                e.message().trim().to_string(),
            )])
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serializes to TOML.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Names of every port and of the uplink (the switch ports a backend serves).
    pub fn port_names(&self) -> impl Iterator<Item = &str> {
        self.ports
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.uplink.as_ref().map(|u| u.name.as_str()))
    }

    /// The backend of port (or uplink) `name`.
    pub fn backend_of(&self, name: &str) -> Option<&BackendSpec> {
        self.ports
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.backend)
            .or_else(|| {
                self.uplink
                    .as_ref()
                    .filter(|u| u.name == name)
                    .map(|u| &u.backend)
            })
    }

    /// The target of EIP `x`: (the subnet name, the private address) — a VIP's address
    /// or the port's `port_ip` (default its primary IP). `None` when it names nothing.
    pub fn eip_target(&self, x: &Eip) -> Option<(&str, Ipv4Addr)> {
        match (&x.vip, &x.port) {
            (Some(v), None) => self
                .vips
                .iter()
                .find(|w| w.name == *v)
                .and_then(|w| match w.ip {
                    IpAddr::V4(ip) => Some((w.subnet.as_str(), ip)),
                    IpAddr::V6(_) => None,
                }),
            (None, Some(pn)) => self.ports.iter().find(|p| p.name == *pn).and_then(|p| {
                Some((
                    p.subnet.as_str(),
                    x.port_ip.or_else(|| p.ips.first().copied())?,
                ))
            }),
            _ => None,
        }
    }

    /// Every EIP with its target, from `[[eips]]` and from `eip` on VIPs and ports.
    pub fn all_eips(&self) -> Vec<Eip> {
        let mut v = self.eips.clone();
        for vip in &self.vips {
            if let Some(ip) = vip.eip {
                v.push(Eip {
                    ip,
                    vip: Some(vip.name.clone()),
                    port: None,
                    port_ip: None,
                });
            }
        }
        for p in &self.ports {
            if let Some(ip) = p.eip {
                v.push(Eip {
                    ip,
                    vip: None,
                    port: Some(p.name.clone()),
                    port_ip: None,
                });
            }
        }
        v
    }
}
