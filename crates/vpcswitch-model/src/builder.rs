//! A builder for embedders: strings in, a validated [`Config`] out.
//!
//! Address strings are parsed as they are added; a bad one is recorded and reported by
//! [`ConfigBuilder::build`] together with every rule violation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::{
    BackendSpec, Config, ConfigError, ConfigErrors, DhcpOptions, Eip, Host, IpCidr, Ipv4Cidr,
    Ipv6Cidr, MacAddr, Peering, Port, Route, Subnet, Uplink, Vip, Vpc, DEFAULT_TUNNEL_PORT,
};

/// A VIP's address, either family.
fn s_ip(b: &mut ConfigBuilder, object: &str, s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| {
        b.errors.push(ConfigError::new(
            object,
            "ip",
            format!("\"{s}\" is not an IP address"),
        ));
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    })
}

/// Builds a [`Config`]; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct ConfigBuilder {
    cfg: Config,
    errors: Vec<ConfigError>,
}

impl ConfigBuilder {
    /// An empty configuration with default switch settings.
    pub fn new() -> Self {
        Self::default()
    }

    fn parse<T: FromStr + Default>(&mut self, object: &str, field: &str, s: &str) -> T {
        match s.parse() {
            Ok(v) => v,
            Err(_) => {
                self.errors.push(ConfigError::new(
                    object,
                    field,
                    format!("cannot parse \"{s}\""),
                ));
                T::default()
            }
        }
    }

    fn parse_ip(&mut self, object: &str, field: &str, s: &str) -> Ipv4Addr {
        s.parse().unwrap_or_else(|_| {
            self.errors.push(ConfigError::new(
                object,
                field,
                format!("\"{s}\" is not an IPv4 address"),
            ));
            Ipv4Addr::UNSPECIFIED
        })
    }

    fn parse_ip6(&mut self, object: &str, field: &str, s: &str) -> Ipv6Addr {
        s.parse().unwrap_or_else(|_| {
            self.errors.push(ConfigError::new(
                object,
                field,
                format!("\"{s}\" is not an IPv6 address"),
            ));
            Ipv6Addr::UNSPECIFIED
        })
    }

    fn parse_cidr6(&mut self, object: &str, field: &str, s: &str) -> Ipv6Cidr {
        s.parse()
            .unwrap_or_else(|e: vpcswitch_wire::ParseAddrError| {
                self.errors.push(ConfigError::new(object, field, e.0));
                Ipv6Cidr::default()
            })
    }

    /// `kind "name"` of the last added object, for errors.
    fn last_name(&self, kind: &str, name: Option<&str>) -> String {
        format!("{kind} \"{}\"", name.unwrap_or_default())
    }

    fn parse_cidr(&mut self, object: &str, field: &str, s: &str) -> Ipv4Cidr {
        s.parse()
            .unwrap_or_else(|e: vpcswitch_wire::ParseAddrError| {
                self.errors.push(ConfigError::new(object, field, e.0));
                Ipv4Cidr::default()
            })
    }

    /// Number of worker threads.
    pub fn workers(mut self, n: usize) -> Self {
        self.cfg.switch.workers = n;
        self
    }

    /// The gateway MAC.
    pub fn gateway_mac(mut self, mac: &str) -> Self {
        self.cfg.switch.gateway_mac = self.parse::<MacAddr>("switch", "gateway_mac", mac);
        self
    }

    /// Limits of SPEC 1 (ports per VIP, VIPs per port).
    pub fn vip_limits(mut self, ports_per_vip: usize, vips_per_port: usize) -> Self {
        self.cfg.switch.max_ports_per_vip = ports_per_vip;
        self.cfg.switch.max_vips_per_port = vips_per_port;
        self
    }

    /// A VPC with its CIDRs.
    pub fn vpc(mut self, name: &str, cidrs: &[&str]) -> Self {
        let obj = format!("vpc \"{name}\"");
        let cidrs = cidrs
            .iter()
            .map(|c| self.parse_cidr(&obj, "cidrs", c))
            .collect();
        self.cfg.vpcs.push(Vpc {
            name: name.into(),
            cidrs,
            ipv6_cidrs: vec![],
            vni: None,
        });
        self
    }

    /// Adds IPv6 CIDRs to the last added VPC (SPEC 12.1).
    pub fn ipv6_cidrs(mut self, cidrs: &[&str]) -> Self {
        let obj = self.last_name("vpc", self.cfg.vpcs.last().map(|v| v.name.as_str()));
        let cidrs: Vec<_> = cidrs
            .iter()
            .map(|c| self.parse_cidr6(&obj, "ipv6_cidrs", c))
            .collect();
        if let Some(v) = self.cfg.vpcs.last_mut() {
            v.ipv6_cidrs.extend(cidrs);
        }
        self
    }

    /// Sets the IPv6 prefix (a /64) of the last added subnet (SPEC 12.1).
    pub fn ipv6_cidr(mut self, cidr: &str) -> Self {
        let obj = self.last_name("subnet", self.cfg.subnets.last().map(|s| s.name.as_str()));
        let c = self.parse_cidr6(&obj, "ipv6_cidr", cidr);
        if let Some(s) = self.cfg.subnets.last_mut() {
            s.ipv6_cidr = Some(c);
        }
        self
    }

    /// Adds fixed IPv6 addresses to the last added port (SPEC 12.1).
    pub fn ipv6_ips(mut self, ips: &[&str]) -> Self {
        let obj = self.last_name("port", self.cfg.ports.last().map(|p| p.name.as_str()));
        let ips: Vec<_> = ips
            .iter()
            .map(|i| self.parse_ip6(&obj, "ipv6_ips", i))
            .collect();
        if let Some(p) = self.cfg.ports.last_mut() {
            p.ipv6_ips.extend(ips);
        }
        self
    }

    /// Sets the VNI of the last added VPC (SPEC 10.1).
    pub fn vni(mut self, vni: u32) -> Self {
        if let Some(v) = self.cfg.vpcs.last_mut() {
            v.vni = Some(vni);
        }
        self
    }

    /// A host of the network with its tunnel endpoint address (UDP port 4789).
    pub fn host(mut self, name: &str, endpoint: &str) -> Self {
        let endpoint = self.parse_ip(&format!("host \"{name}\""), "endpoint", endpoint);
        self.cfg.hosts.push(Host {
            name: name.into(),
            endpoint,
            port: DEFAULT_TUNNEL_PORT,
        });
        self
    }

    /// Sets the tunnel UDP port of the last added host.
    pub fn tunnel_port(mut self, port: u16) -> Self {
        if let Some(h) = self.cfg.hosts.last_mut() {
            h.port = port;
        }
        self
    }

    /// The host this switch runs on (`[switch] host`).
    pub fn local_host(mut self, name: &str) -> Self {
        self.cfg.switch.host = Some(name.into());
        self
    }

    /// Places the last added port on host `name`.
    pub fn on_host(mut self, name: &str) -> Self {
        if let Some(p) = self.cfg.ports.last_mut() {
            p.host = Some(name.into());
        }
        self
    }

    /// Places the uplink on host `name`.
    pub fn uplink_on_host(mut self, name: &str) -> Self {
        if let Some(u) = self.cfg.uplink.as_mut() {
            u.host = Some(name.into());
        }
        self
    }

    /// A subnet with the default gateway (first host address).
    pub fn subnet(mut self, name: &str, vpc: &str, cidr: &str) -> Self {
        let cidr = self.parse_cidr(&format!("subnet \"{name}\""), "cidr", cidr);
        self.cfg.subnets.push(Subnet {
            name: name.into(),
            vpc: vpc.into(),
            cidr,
            gateway: None,
            ipv6_cidr: None,
            dhcp: false,
            dhcp_options: DhcpOptions::default(),
        });
        self
    }

    /// Turns DHCP on in the last added subnet (SPEC 13), handing out `options`.
    pub fn dhcp(mut self, options: DhcpOptions) -> Self {
        if let Some(s) = self.cfg.subnets.last_mut() {
            s.dhcp = true;
            s.dhcp_options = options;
        }
        self
    }

    /// Sets the gateway of the last added subnet.
    pub fn gateway(mut self, ip: &str) -> Self {
        let obj = self
            .cfg
            .subnets
            .last()
            .map(|s| format!("subnet \"{}\"", s.name))
            .unwrap_or_default();
        let ip = self.parse_ip(&obj, "gateway", ip);
        if let Some(s) = self.cfg.subnets.last_mut() {
            s.gateway = Some(ip);
        }
        self
    }

    /// A port on the in-memory backend with `src_dst_check` on.
    pub fn port(mut self, name: &str, subnet: &str, mac: &str, ips: &[&str]) -> Self {
        let obj = format!("port \"{name}\"");
        let mac = self.parse::<MacAddr>(&obj, "mac", mac);
        let ips = ips.iter().map(|i| self.parse_ip(&obj, "ips", i)).collect();
        self.cfg.ports.push(Port {
            name: name.into(),
            subnet: subnet.into(),
            mac,
            ips,
            ipv6_ips: vec![],
            src_dst_check: true,
            allowed_macs: vec![],
            eip: None,
            backend: BackendSpec::Memory,
            host: None,
        });
        self
    }

    /// Sets `src_dst_check` of the last added port.
    pub fn src_dst_check(mut self, on: bool) -> Self {
        if let Some(p) = self.cfg.ports.last_mut() {
            p.src_dst_check = on;
        }
        self
    }

    /// Adds an allowed extra MAC to the last added port.
    pub fn allowed_mac(mut self, mac: &str) -> Self {
        let obj = self
            .cfg
            .ports
            .last()
            .map(|p| format!("port \"{}\"", p.name))
            .unwrap_or_default();
        let m = self.parse::<MacAddr>(&obj, "allowed_macs", mac);
        if let Some(p) = self.cfg.ports.last_mut() {
            p.allowed_macs.push(m);
        }
        self
    }

    /// Sets the backend of the last added port.
    pub fn backend(mut self, spec: BackendSpec) -> Self {
        if let Some(p) = self.cfg.ports.last_mut() {
            p.backend = spec;
        }
        self
    }

    /// A VIP bound to `ports`; `ip` is IPv4 or IPv6 (SPEC 12.1).
    pub fn vip(mut self, name: &str, subnet: &str, ip: &str, ports: &[&str]) -> Self {
        let ip = s_ip(&mut self, &format!("vip \"{name}\""), ip);
        self.cfg.vips.push(Vip {
            name: name.into(),
            subnet: subnet.into(),
            ip,
            ports: ports.iter().map(|p| p.to_string()).collect(),
            eip: None,
        });
        self
    }

    /// A peering of two VPCs.
    pub fn peering(mut self, name: &str, a: &str, b: &str) -> Self {
        self.cfg.peerings.push(Peering {
            name: name.into(),
            vpcs: vec![a.into(), b.into()],
        });
        self
    }

    fn route(
        mut self,
        vpc: &str,
        dest: &str,
        peering: Option<&str>,
        port: Option<&str>,
        uplink: bool,
    ) -> Self {
        let destination = dest
            .parse()
            .unwrap_or_else(|e: vpcswitch_wire::ParseAddrError| {
                self.errors.push(ConfigError::new(
                    format!("route to {dest} in vpc \"{vpc}\""),
                    "destination",
                    e.0,
                ));
                IpCidr::default()
            });
        self.cfg.routes.push(Route {
            vpc: vpc.into(),
            destination,
            peering: peering.map(Into::into),
            port: port.map(Into::into),
            uplink: uplink.then_some(true),
        });
        self
    }

    /// A route through a peering.
    pub fn route_via_peering(self, vpc: &str, dest: &str, peering: &str) -> Self {
        self.route(vpc, dest, Some(peering), None, false)
    }

    /// A route to a next-hop port.
    pub fn route_via_port(self, vpc: &str, dest: &str, port: &str) -> Self {
        self.route(vpc, dest, None, Some(port), false)
    }

    /// A route to the uplink.
    pub fn route_via_uplink(self, vpc: &str, dest: &str) -> Self {
        self.route(vpc, dest, None, None, true)
    }

    /// The uplink (SPEC 7): its port name, MAC and the outside next hop.
    pub fn uplink(mut self, name: &str, mac: &str, next_hop: &str) -> Self {
        let obj = format!("uplink \"{name}\"");
        let mac = self.parse(&obj, "mac", mac);
        let next_hop = self.parse_ip(&obj, "next_hop", next_hop);
        self.cfg.uplink = Some(Uplink {
            name: name.into(),
            mac,
            next_hop,
            next_hop_mac: None,
            backend: BackendSpec::default(),
            host: None,
        });
        self
    }

    /// Sets the backend of the uplink.
    pub fn uplink_backend(mut self, spec: BackendSpec) -> Self {
        if let Some(u) = self.cfg.uplink.as_mut() {
            u.backend = spec;
        }
        self
    }

    /// An EIP for the VIP named `vip`.
    pub fn eip_for_vip(mut self, ip: &str, vip: &str) -> Self {
        let ip = self.parse_ip(&format!("eip {ip}"), "ip", ip);
        self.cfg.eips.push(Eip {
            ip,
            vip: Some(vip.into()),
            port: None,
            port_ip: None,
        });
        self
    }

    /// An EIP for the primary fixed IP of the port named `port`.
    pub fn eip_for_port(mut self, ip: &str, port: &str) -> Self {
        let ip = self.parse_ip(&format!("eip {ip}"), "ip", ip);
        self.cfg.eips.push(Eip {
            ip,
            vip: None,
            port: Some(port.into()),
            port_ip: None,
        });
        self
    }

    /// The configuration, if every address parsed and every rule holds.
    pub fn build(self) -> Result<Config, ConfigErrors> {
        let mut errors = self.errors;
        if let Err(ConfigErrors(v)) = self.cfg.validate() {
            errors.extend(v);
        }
        if errors.is_empty() {
            Ok(self.cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The configuration without validation (for tests of the validator itself).
    pub fn build_unchecked(self) -> Config {
        self.cfg
    }
}
