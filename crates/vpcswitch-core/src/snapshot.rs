//! The compiled, immutable form of a configuration, and the learned state beside it.
//!
//! Build, validate, freeze (OPTE's `PortBuilder`): [`Snapshot::compile`] validates,
//! resolves every name to an index and builds hash tables keyed by MAC and by
//! (VPC, IP). The runtime publishes it RCU-style; a worker uses one snapshot for a whole
//! burst, so every packet sees exactly one configuration (SPEC 8.1).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::HashMap;
use vpcswitch_model::{Config, ConfigErrors, Ipv4Cidr, MacAddr, RouteTarget as CfgTarget};
use vpcswitch_wire::MacKey;

use crate::{FlatMap, Lpm, PortId, SubnetId, VipId, VpcId};

/// "No owner" in a [`VipCell`].
pub const NO_OWNER: u32 = u32::MAX;

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
    /// SPEC 2.3 / 6.1
    pub src_dst_check: bool,
    /// true for the uplink port
    pub is_uplink: bool,
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
    /// ports in the subnet, in configuration order (flood list)
    pub ports: Box<[PortId]>,
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
}

/// One VIP.
#[derive(Debug, Clone)]
pub struct VipEntry {
    /// name
    pub name: String,
    /// its subnet
    pub subnet: SubnetId,
    /// address, host order
    pub ip: u32,
    /// bound ports
    pub ports: Box<[PortId]>,
}

/// A local address of a VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// a port's fixed IP
    Port(PortId),
    /// a VIP
    Vip(VipId),
    /// a subnet's gateway address
    Gateway(SubnetId),
}

/// Learned state of one VIP, shared by every worker (SPEC 3.1, 3.6).
#[derive(Debug)]
pub struct VipCell {
    owner: AtomicU32,
    moves: AtomicU64,
    last_move_ns: AtomicU64,
    /// the last move, on [`precise_ns`]'s clock, while no packet has been sent to the
    /// new owner since it; 0 otherwise
    pending_ns: AtomicU64,
    /// ns from the last move to the first packet sent to the new owner after it;
    /// [`NOT_MEASURED`] until one was
    first_packet_ns: AtomicU64,
    /// owner as compiled (for the post-swap reconciliation)
    compiled_owner: u32,
}

/// [`VipCell::first_packet_ns`] before any packet followed a move.
const NOT_MEASURED: u64 = u64::MAX;

/// Nanoseconds (never 0) on a process-wide monotonic clock. Read only on cold paths, a
/// VIP move and the first packet after it, where a poll loop's once-per-burst time is
/// too coarse to time the switch's own reaction (issue: failover measured at the switch).
fn precise_ns() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    (BASE
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64)
        .saturating_add(1)
}

impl VipCell {
    fn new(owner: u32, moves: u64, last: u64, first_packet: Option<u64>) -> VipCell {
        VipCell {
            owner: AtomicU32::new(owner),
            moves: AtomicU64::new(moves),
            last_move_ns: AtomicU64::new(last),
            pending_ns: AtomicU64::new(0),
            first_packet_ns: AtomicU64::new(first_packet.unwrap_or(NOT_MEASURED)),
            compiled_owner: owner,
        }
    }
    /// The current owner, if any.
    #[inline]
    pub fn owner(&self) -> Option<PortId> {
        let o = self.owner.load(Ordering::Acquire);
        (o != NO_OWNER).then_some(o)
    }
    /// How many times the owner changed.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }
    /// When the owner last changed (the runtime's clock, ns), 0 if never.
    pub fn last_move_ns(&self) -> u64 {
        self.last_move_ns.load(Ordering::Relaxed)
    }
    /// How long after the last move the first packet was sent to the new owner, in ns
    /// (the switch's own failover time: from processing the claim, usually a GARP, to
    /// forwarding the next frame for the VIP, on any worker). `None` until a packet
    /// followed a move. Survives reloads; a reload between a move and its first packet
    /// loses that one measurement.
    pub fn first_packet_ns(&self) -> Option<u64> {
        let v = self.first_packet_ns.load(Ordering::Relaxed);
        (v != NOT_MEASURED).then_some(v)
    }
    /// Makes `port` the owner; true when that is a move.
    pub fn claim(&self, port: PortId, now_ns: u64) -> bool {
        let prev = self.owner.swap(port, Ordering::AcqRel);
        if prev != port {
            self.moves.fetch_add(1, Ordering::Relaxed);
            self.last_move_ns.store(now_ns, Ordering::Relaxed);
            self.pending_ns.store(precise_ns(), Ordering::Release);
            true
        } else {
            false
        }
    }
    /// The pipeline sends a frame for the VIP to its current owner: the first such
    /// frame after a move is timed. One relaxed load of a line the owner lookup has
    /// just read, on the hot path; the rest only once per move.
    #[inline]
    pub(crate) fn sent_to_owner(&self) {
        let t = self.pending_ns.load(Ordering::Relaxed);
        if t != 0 {
            self.first_after_move(t);
        }
    }
    #[cold]
    fn first_after_move(&self, t: u64) {
        // Only one worker wins the move's measurement.
        if self
            .pending_ns
            .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let d = precise_ns().saturating_sub(t);
            self.first_packet_ns.store(d, Ordering::Relaxed);
        }
    }
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

/// "Not learned yet" in the next-hop cell (no [`MacKey`] has its top bits set).
const NO_MAC: u64 = u64::MAX;

/// What a per-port budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// ICMP errors and VIP ARP probes the switch sends for the port (SPEC 5.5)
    Answers = 0,
    /// ARP packets from the port (the responder's work and GARP floods)
    Arp = 1,
    /// copies the port's floods make (broadcast/multicast IPv4 and flooded ARP: one
    /// token per receiving port, so a flood in a subnet of N ports costs N − 1)
    Flood = 2,
    /// Uplink (SPEC 7.3): ARP whose sender IP is the next hop's, from its known MAC
    /// (Ethernet source and sender MAC both the learned or configured next-hop MAC)
    NextHopArp = 3,
    /// Uplink (SPEC 7.3): ARP whose sender IP is the next hop's, from any other MAC
    /// (before the MAC is known, after the router changed, or a forger)
    NextHopArpOther = 4,
    /// Uplink (SPEC 7.3): requests for an EIP from anyone but the next hop
    EipArp = 5,
}

/// Number of [`Budget`]s.
const BUDGETS: usize = 6;

/// Per-port budgets: at most N per second each. One window per budget:
/// `second << 32 | count`, written with plain stores (several workers may race on a
/// port; the bound then holds within a small factor, which is the intent).
#[derive(Debug, Default)]
struct PortBudgets {
    windows: [AtomicU64; BUDGETS],
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
    /// the next hop's MAC as a [`MacKey`], learned by ARP on the uplink (or
    /// static); `NO_MAC` until then. Shared by every worker.
    next_hop_mac: AtomicU64,
    /// EIP (public, host order) → (VPC, private address)
    eip_in: FlatMap<(VpcId, u32)>,
    /// (VPC, private address) → EIP
    eip_out: FlatMap<u32>,
    vip_cells: Box<[VipCell]>,
    budgets: Box<[PortBudgets]>,
    /// per-second limits, indexed by [`Budget`]
    limits: [u32; BUDGETS],
    /// every VPC CIDR → its VPC (SPEC 7.3, 7.4: private addresses on the uplink)
    vpc_cidrs: Lpm<VpcId>,
    port_by_name: HashMap<String, PortId>,
    /// keyed by [`MacAddr::key`]
    mac_table: FlatMap<PortId>,
    hosts: FlatMap<Host>,
}

#[inline]
fn host_key(vpc: VpcId, ip: u32) -> u64 {
    (u64::from(vpc) << 32) | u64::from(ip)
}

impl Snapshot {
    /// Validates `cfg` and compiles it. With `prev` (the running snapshot), port ids
    /// are kept by name and learned VIP owners are carried over where the owner is
    /// still bound (SPEC 3.2); the generation is `prev.generation + 1`.
    pub fn compile(cfg: &Config, prev: Option<&Snapshot>) -> Result<Snapshot, ConfigErrors> {
        cfg.validate()?;

        // Stable port ids: keep by name, new names take the lowest free id.
        let mut names: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
        if let Some(u) = &cfg.uplink {
            names.push(u.name.as_str());
        }
        let mut port_by_name: HashMap<String, PortId> = HashMap::new();
        let mut used = vec![false; names.len() + prev.map_or(0, |p| p.ports.len())];
        if let Some(p) = prev {
            for n in &names {
                if let Some(&id) = p.port_by_name.get(*n) {
                    port_by_name.insert(n.to_string(), id);
                    used[id as usize] = true;
                }
            }
        }
        let mut next = 0usize;
        for n in &names {
            if !port_by_name.contains_key(*n) {
                while used[next] {
                    next += 1;
                }
                used[next] = true;
                port_by_name.insert(n.to_string(), next as PortId);
            }
        }
        let nports = port_by_name
            .values()
            .map(|&i| i as usize + 1)
            .max()
            .unwrap_or(0);

        let vpc_idx: HashMap<&str, VpcId> = cfg
            .vpcs
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), i as VpcId))
            .collect();
        let subnet_idx: HashMap<&str, SubnetId> = cfg
            .subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i as SubnetId))
            .collect();
        let peering_idx: HashMap<&str, &vpcswitch_model::Peering> =
            cfg.peerings.iter().map(|p| (p.name.as_str(), p)).collect();

        let mut subnets: Vec<SubnetEntry> = cfg
            .subnets
            .iter()
            .map(|s| SubnetEntry {
                name: s.name.clone(),
                vpc: vpc_idx[s.vpc.as_str()],
                cidr: Ipv4Cidr::new(s.cidr.network(), s.cidr.len()).unwrap_or(s.cidr),
                gateway: u32::from(s.gateway_ip()),
                ports: Box::new([]),
            })
            .collect();

        let vips: Vec<VipEntry> = cfg
            .vips
            .iter()
            .map(|v| VipEntry {
                name: v.name.clone(),
                subnet: subnet_idx[v.subnet.as_str()],
                ip: u32::from(v.ip),
                ports: v.ports.iter().map(|p| port_by_name[p.as_str()]).collect(),
            })
            .collect();

        let mut ports: Vec<Option<PortEntry>> = vec![None; nports];
        let mut flood: Vec<Vec<PortId>> = vec![Vec::new(); subnets.len()];
        let mut mac_table: Vec<(u64, PortId)> = Vec::new();
        let mut hosts: Vec<(u64, Host)> = Vec::new();
        for (s, sub) in subnets.iter().enumerate() {
            hosts.push((host_key(sub.vpc, sub.gateway), Host::Gateway(s as SubnetId)));
        }
        for (vi, v) in vips.iter().enumerate() {
            hosts.push((
                host_key(subnets[v.subnet as usize].vpc, v.ip),
                Host::Vip(vi as VipId),
            ));
        }
        for p in &cfg.ports {
            let id = port_by_name[p.name.as_str()];
            let subnet = subnet_idx[p.subnet.as_str()];
            let vpc = subnets[subnet as usize].vpc;
            let ips: Box<[u32]> = p.ips.iter().map(|&i| u32::from(i)).collect();
            let bound: Vec<VipId> = (0..vips.len() as VipId)
                .filter(|&v| vips[v as usize].ports.contains(&id))
                .collect();
            let mut allowed: Vec<u32> = ips.to_vec();
            allowed.extend(bound.iter().map(|&v| vips[v as usize].ip));
            for ip in ips.iter() {
                hosts.push((host_key(vpc, *ip), Host::Port(id)));
            }
            mac_table.push((p.mac.key(), id));
            for m in &p.allowed_macs {
                mac_table.push((m.key(), id));
            }
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
                src_dst_check: p.src_dst_check,
                is_uplink: false,
            });
        }
        let uplink_id = cfg.uplink.as_ref().map(|u| {
            let id = port_by_name[u.name.as_str()];
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
                src_dst_check: false,
                is_uplink: true,
            });
            id
        });
        for (s, f) in subnets.iter_mut().zip(flood) {
            s.ports = f.into_boxed_slice();
        }

        let vpcs: Vec<VpcEntry> = cfg
            .vpcs
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                let mut entries: Vec<(Ipv4Cidr, RouteTarget)> = Vec::new();
                for r in cfg.routes.iter().filter(|r| r.vpc == v.name) {
                    let t = match r.target() {
                        Some(CfgTarget::Peering(p)) => {
                            let pe = peering_idx[p];
                            let other = if pe.vpcs[0] == v.name {
                                &pe.vpcs[1]
                            } else {
                                &pe.vpcs[0]
                            };
                            RouteTarget::Peering(vpc_idx[other.as_str()])
                        }
                        Some(CfgTarget::Port(p)) => RouteTarget::Port(port_by_name[p]),
                        Some(CfgTarget::Uplink) | None => RouteTarget::Uplink,
                    };
                    entries.push((r.destination, t));
                }
                // local routes last so they win ties (validation refuses shadowing anyway)
                for (si, s) in subnets.iter().enumerate() {
                    if s.vpc == vi as VpcId {
                        entries.push((s.cidr, RouteTarget::Local(si as SubnetId)));
                    }
                }
                VpcEntry {
                    name: v.name.clone(),
                    routes: Lpm::new(entries),
                }
            })
            .collect();

        // EIPs (SPEC 7): both directions resolve through the host table.
        let mut eip_in: Vec<(u64, (VpcId, u32))> = Vec::new();
        let mut eip_out: Vec<(u64, u32)> = Vec::new();
        for x in cfg.all_eips() {
            if let Some((subnet, private)) = cfg.eip_target(&x) {
                let vpc = subnet_idx
                    .get(subnet)
                    .map_or(0, |&s| subnets[s as usize].vpc);
                let (public, private) = (u32::from(x.ip), u32::from(private));
                eip_in.push((u64::from(public), (vpc, private)));
                eip_out.push((host_key(vpc, private), public));
            }
        }
        let uplink = cfg
            .uplink
            .as_ref()
            .zip(uplink_id)
            .map(|(u, port)| UplinkEntry {
                port,
                mac: u.mac,
                next_hop: u32::from(u.next_hop),
                arp_src: eip_in.iter().map(|&(k, _)| k as u32).min().unwrap_or(0),
                static_next_hop: u.next_hop_mac.is_some(),
            });
        // the next hop's MAC: configured, or carried over while the next hop is the same
        let next_hop_mac = match (&cfg.uplink, prev) {
            (Some(u), _) if u.next_hop_mac.is_some() => u.next_hop_mac.map_or(NO_MAC, |m| m.key()),
            (Some(u), Some(p)) => p.carried_next_hop(u32::from(u.next_hop)),
            _ => NO_MAC,
        };

        // Learned owners carried over by name (SPEC 3.2).
        let vip_cells: Box<[VipCell]> = vips
            .iter()
            .map(|v| {
                let carried = prev.and_then(|p| p.carry_vip(&v.name, &v.ports));
                match carried {
                    Some((owner, moves, last, first)) => VipCell::new(owner, moves, last, first),
                    None => VipCell::new(NO_OWNER, 0, 0, None),
                }
            })
            .collect();

        Ok(Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            config: cfg.clone(),
            gateway_mac: cfg.switch.gateway_mac,
            budgets: (0..nports).map(|_| PortBudgets::default()).collect(),
            // the uplink's three per-purpose ARP budgets (SPEC 7.3) are each
            // `arp_per_sec`, beside the uplink's general ARP budget
            limits: [
                cfg.switch.icmp_errors_per_sec,
                cfg.switch.arp_per_sec,
                cfg.switch.flood_per_sec,
                cfg.switch.arp_per_sec,
                cfg.switch.arp_per_sec,
                cfg.switch.arp_per_sec,
            ],
            vpc_cidrs: Lpm::new(
                cfg.vpcs
                    .iter()
                    .enumerate()
                    .flat_map(|(i, v)| v.cidrs.iter().map(move |c| (*c, i as VpcId))),
            ),
            ports,
            subnets,
            vpcs,
            vips,
            uplink,
            next_hop_mac: AtomicU64::new(next_hop_mac),
            eip_in: FlatMap::new(eip_in),
            eip_out: FlatMap::new(eip_out),
            vip_cells,
            port_by_name,
            mac_table: FlatMap::new(mac_table),
            hosts: FlatMap::new(hosts),
        })
    }

    /// (owner id in the new numbering, moves, last move, failover time) of this
    /// snapshot's VIP `name`, if its owner is bound in the new configuration.
    fn carry_vip(&self, name: &str, new_bound: &[PortId]) -> Option<(u32, u64, u64, Option<u64>)> {
        let vi = self.vips.iter().position(|v| v.name == name)?;
        let cell = &self.vip_cells[vi];
        // Port ids are stable by name, so the same id names the same port.
        let owner = cell
            .owner()
            .filter(|o| new_bound.contains(o))
            .unwrap_or(NO_OWNER);
        Some((
            owner,
            cell.moves(),
            cell.last_move_ns(),
            cell.first_packet_ns(),
        ))
    }

    /// Call once the new snapshot is published: re-applies owners that `prev` learned
    /// between compile and swap (a GARP processed under the old snapshot), unless this
    /// snapshot learned a newer owner meanwhile. Closes the reload race of SPEC 3.2.
    pub fn reconcile_learned(&self, prev: &Snapshot) {
        if let Some(u) = &self.uplink {
            let old = prev.carried_next_hop(u.next_hop);
            if old != NO_MAC && !u.static_next_hop {
                let _ = self.next_hop_mac.compare_exchange(
                    NO_MAC,
                    old,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        for (vi, v) in self.vips.iter().enumerate() {
            let cell = &self.vip_cells[vi];
            let Some((owner, moves, last, _)) = prev.carry_vip(&v.name, &v.ports) else {
                continue;
            };
            if owner != cell.compiled_owner
                && cell
                    .owner
                    .compare_exchange(
                        cell.compiled_owner,
                        owner,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                cell.moves.fetch_max(moves, Ordering::Relaxed);
                cell.last_move_ns.fetch_max(last, Ordering::Relaxed);
            }
        }
    }

    /// The learned next-hop MAC (as a `MacKey`) if this snapshot's next hop is `next_hop`.
    fn carried_next_hop(&self, next_hop: u32) -> u64 {
        match &self.uplink {
            Some(u) if u.next_hop == next_hop => self.next_hop_mac.load(Ordering::Acquire),
            _ => NO_MAC,
        }
    }

    /// The VPC whose CIDRs hold `ip` (SPEC 7.3, 7.4: such an address is private and
    /// never seen on, or sent to, the outside network).
    #[inline]
    pub fn vpc_of_addr(&self, ip: u32) -> Option<VpcId> {
        self.vpc_cidrs.lookup(ip)
    }

    /// Is `mac` the next hop's known (learned or configured) MAC? False while none is
    /// known.
    #[inline]
    pub(crate) fn is_next_hop_mac(&self, mac: MacKey) -> bool {
        let m = self.next_hop_mac.load(Ordering::Acquire);
        m != NO_MAC && m == mac.0
    }

    /// The outside next hop's MAC, once learned (SPEC 7.2).
    #[inline]
    pub fn next_hop_mac(&self) -> Option<MacAddr> {
        let m = self.next_hop_mac.load(Ordering::Acquire);
        (m != NO_MAC).then(|| MacAddr::from_key(m))
    }

    /// Records the next hop's MAC, learned from its ARP on the uplink; true when it
    /// changed. A configured (static) MAC is never replaced.
    pub(crate) fn learn_next_hop(&self, mac: MacKey) -> bool {
        if self.uplink.as_ref().is_none_or(|u| u.static_next_hop) {
            return false;
        }
        self.next_hop_mac.swap(mac.0, Ordering::AcqRel) != mac.0
    }

    /// SPEC 7.1: the (VPC, private address) behind EIP `public`.
    #[inline]
    pub fn eip_target(&self, public: u32) -> Option<(VpcId, u32)> {
        self.eip_in.get(u64::from(public))
    }

    /// SPEC 7.2: the EIP of private address `ip` in VPC `vpc`.
    #[inline]
    pub fn eip_of(&self, vpc: VpcId, ip: u32) -> Option<u32> {
        self.eip_out.get(host_key(vpc, ip))
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
    pub fn host(&self, vpc: VpcId, ip: u32) -> Option<Host> {
        self.hosts.get(host_key(vpc, ip))
    }
    /// Learned state of VIP `v`.
    #[inline]
    pub fn vip_cell(&self, v: VipId) -> &VipCell {
        &self.vip_cells[v as usize]
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
    /// Sets a VIP's owner by hand (embedders, tests); refuses ports not bound to it.
    pub fn set_vip_owner(&self, vip: &str, port: &str, now_ns: u64) -> bool {
        let (Some(v), Some(p)) = (self.vip_id(vip), self.port_id(port)) else {
            return false;
        };
        if !self.vips[v as usize].ports.contains(&p) {
            return false;
        }
        self.vip_cell(v).claim(p, now_ns);
        true
    }
    /// The gateway address of subnet `s`.
    pub fn gateway_ip(&self, s: SubnetId) -> Ipv4Addr {
        Ipv4Addr::from(self.subnets[s as usize].gateway)
    }

    /// Takes `n` tokens of `budget` for `port`: granted while the window is not yet
    /// spent (so one grant may overshoot the limit by up to `n − 1`, and a frame
    /// whose `n` alone exceeds the limit still passes once per second); `n = 0`
    /// always passes and spends nothing. Never blocks.
    pub(crate) fn take_n(&self, port: PortId, budget: Budget, now_ns: u64, n: u32) -> bool {
        if n == 0 {
            return true;
        }
        let Some(b) = self.budgets.get(port as usize) else {
            return false;
        };
        let window = &b.windows[budget as usize];
        let limit = self.limits[budget as usize];
        let sec = (now_ns / 1_000_000_000) & 0xffff_ffff;
        let w = window.load(Ordering::Relaxed);
        let (wsec, count) = (w >> 32, (w & 0xffff_ffff) as u32);
        if wsec != sec {
            window.store((sec << 32) | u64::from(n), Ordering::Relaxed);
            limit > 0
        } else if count < limit {
            let c = count.saturating_add(n);
            window.store((sec << 32) | u64::from(c), Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}
