//! Many hosts (SPEC 10, 11.1): the hosts a network spans, where each port lives, and
//! each VPC's VNI.
//!
//! # Contract
//! Every switch instance reads the same network: all hosts, all ports (with the host
//! each lives on), one VNI per VPC. What differs between instances is only the local
//! host, `[switch] host` or the binary's `--host` ([`Config::with_local_host`]).
//! Without `[[hosts]]` everything is local, as on one host, and no `host` field may be
//! set.
//!
//! A VPC's VNI is its `vni` when set, else derived from its name ([`derived_vni`]), so
//! it does not change when VPCs are added, removed or reordered, and every instance
//! reading the same file derives the same one. Two derived VNIs that collide (or one
//! that an explicit `vni` already takes) are moved apart deterministically
//! ([`Config::vnis`]). A VPC that a foreign VXLAN device (Linux `vxlan`) must reach
//! should set `vni` explicitly.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigErrors};

/// The UDP port of VXLAN (RFC 7348, IANA): a host's tunnel port unless set.
pub const DEFAULT_TUNNEL_PORT: u16 = 4789;
/// The largest VNI (24 bits); VNI 0 is not used.
pub const MAX_VNI: u32 = 0x00ff_ffff;

fn default_tunnel_port() -> u16 {
    DEFAULT_TUNNEL_PORT
}

/// `[[hosts]]`: one host of the network, running one switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// unique name, named by ports' and the uplink's `host`
    pub name: String,
    /// the IPv4 address its tunnel endpoint binds to and sends from: unique among
    /// hosts (a tunnel packet's sender is known by its outer source address alone)
    pub endpoint: Ipv4Addr,
    /// the UDP port its tunnel endpoint listens on (default 4789)
    #[serde(default = "default_tunnel_port")]
    pub port: u16,
}

impl Host {
    /// The tunnel endpoint, address and UDP port.
    pub fn socket_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.endpoint, self.port)
    }
}

/// The VNI a VPC named `name` gets when it sets none: the 32-bit FNV-1a hash of the
/// name's bytes, folded into 1..=[`MAX_VNI`] (`1 + hash % MAX_VNI`), unless
/// [`Config::vnis`] has to move it off a VNI already taken.
pub fn derived_vni(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    1 + h % MAX_VNI
}

impl Config {
    /// Every VPC's VNI, in `vpcs` order: its `vni`, or else [`derived_vni`] of its
    /// name; a derived VNI already taken (by an explicit one, or by a derived one of a
    /// VPC whose name sorts first) moves to the next free one (wrapping from
    /// [`MAX_VNI`] to 1). Explicit VNIs are returned as set (validation refuses those
    /// out of range or used twice).
    pub fn vnis(&self) -> Vec<u32> {
        let mut used: HashSet<u32> = self.vpcs.iter().filter_map(|v| v.vni).collect();
        let mut out: Vec<u32> = self.vpcs.iter().map(|v| v.vni.unwrap_or(0)).collect();
        let mut derived: Vec<usize> = (0..self.vpcs.len())
            .filter(|&i| self.vpcs[i].vni.is_none())
            .collect();
        derived.sort_by(|&a, &b| self.vpcs[a].name.cmp(&self.vpcs[b].name).then(a.cmp(&b)));
        for i in derived {
            let mut v = derived_vni(&self.vpcs[i].name);
            // fewer VPCs than VNIs: a free one is always found
            for _ in 0..MAX_VNI {
                if used.insert(v) {
                    break;
                }
                v = v % MAX_VNI + 1;
            }
            out[i] = v;
        }
        out
    }

    /// The local host's name (`[switch] host`), if any.
    pub fn local_host(&self) -> Option<&str> {
        self.switch.host.as_deref()
    }

    /// The same configuration, run on host `name` (the binary's `--host`, which wins
    /// over `[switch] host`), validated: refused when `name` is no `[[hosts]]` entry,
    /// or when the configuration is refused for any other rule.
    pub fn with_local_host(mut self, name: &str) -> Result<Config, ConfigErrors> {
        self.switch.host = Some(name.to_string());
        self.validate()?;
        Ok(self)
    }

    /// The host port (or uplink) `name` lives on; `None` without `[[hosts]]` (or for
    /// an unknown name).
    pub fn host_of(&self, name: &str) -> Option<&str> {
        self.ports
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.host.as_deref())
            .or_else(|| {
                self.uplink
                    .as_ref()
                    .filter(|u| u.name == name)
                    .map(|u| u.host.as_deref())
            })
            .flatten()
    }

    /// Does port (or uplink) `name` live on this switch's host? Always, without
    /// `[[hosts]]`.
    pub fn is_local(&self, name: &str) -> bool {
        self.hosts.is_empty()
            || (self.host_of(name).is_some() && self.host_of(name) == self.local_host())
    }

    /// Names of the ports (and the uplink) on this switch's host: the ones whose
    /// backends it opens.
    /// One pass over the ports (no lookup by name per port).
    pub fn local_port_names(&self) -> impl Iterator<Item = &str> {
        self.local_backends().map(|(n, _)| n)
    }

    /// The ports (and the uplink) on this switch's host with their backends, in one
    /// pass (what a reload compares, linear in the ports).
    pub fn local_backends(&self) -> impl Iterator<Item = (&str, &crate::BackendSpec)> {
        let all = self.hosts.is_empty();
        let here = self.local_host();
        let on_here = move |h: &Option<String>| all || (h.is_some() && h.as_deref() == here);
        self.ports
            .iter()
            .filter(move |p| on_here(&p.host))
            .map(|p| (p.name.as_str(), &p.backend))
            .chain(
                self.uplink
                    .as_ref()
                    .filter(move |u| on_here(&u.host))
                    .map(|u| (u.name.as_str(), &u.backend)),
            )
    }
}
