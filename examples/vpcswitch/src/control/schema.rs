//! The JSON answers of `vpcswitch ctl --json`: one type per answer (and per row of a
//! table), documented field by field in `docs/ctl-json.md`.
//!
//! The contract, for scripts: field names are stable and carry their unit (`_ns`,
//! `_us`, `_ms`, `_s`, `_bytes`, `_packets`; `_unix_us` and `_unix_ms` are wall-clock
//! timestamps since the Unix epoch); a value that is absent is `null`, never `"-"` or
//! `"none"`; what used to be prose is a tagged object (`{"kind": "local", "subnet":
//! "web"}`). Within one [`SCHEMA_VERSION`], fields and `kind`s may be *added* (a reader
//! must ignore what it does not know); a field is never removed, renamed or given
//! another type or unit without a new version.
//!
//! This file depends on serde and std only: the integration tests include it (`#[path]`)
//! and read the switch's answers into these types. Under `cfg(test)` every type denies
//! unknown fields, so a field the switch sends but this file (and so the document) does
//! not have fails a test; the binary itself stays lenient (a newer switch may add
//! fields).

// the integration tests include this file and use only some of it
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

/// The version of this schema; in the control socket's envelope
/// (`{"ok", "schema_version", "text", "data"}`). Bumped only for an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Drop counts by reason name (`no_route`, `src_dst_check`...), in packets.
pub type DropsByReason = BTreeMap<String, u64>;

/// `ctl list-commands --json`: one per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct CommandRow {
    pub name: String,
    pub about: String,
}

/// Any failed command with `--json` (exit status 1 or 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct ErrorAnswer {
    /// always false
    pub ok: bool,
    pub error: String,
}

/// A port's backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Backend {
    /// the device kind as the backend reports it: `tap`, `af_packet`, `af_xdp`,
    /// `memory`, an embedder's own
    pub kind: String,
    /// the backend's own description (device, offloads, rings), for people
    pub description: String,
    /// the kernel interface, when there is one
    pub interface: Option<String>,
    /// device queues serving the port
    pub queues: usize,
    /// the interface's MTU when opened, when it has one
    pub mtu_bytes: Option<u32>,
    pub checksum_offload: bool,
    pub segmentation_offload: bool,
    pub zero_copy: bool,
    /// the device's mode, when it has modes (`native copy`, `skb`, `ring`, `netns web1`)
    pub mode: Option<String>,
    /// the kernel interface's own counters now (null for devices without: memory)
    pub device: Option<DeviceCounters>,
}

/// A kernel interface's counters (`ip -s link`), as the kernel counts them on it: a
/// TAP's `tx` is what its guest sent towards the switch (`tx_dropped`: dropped because
/// the switch's queue was full); a veth end's `rx` is what its peer sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct DeviceCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped_packets: u64,
    pub tx_dropped_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// `ctl ports`: one row per port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct PortRow {
    pub name: String,
    /// its device is gone (the port is out of the datapath until it is back)
    pub down: bool,
    /// null for a port of another host whose subnet is unknown here
    pub subnet: Option<String>,
    pub mac: String,
    /// its IPv4 fixed IPs, the primary first
    pub ips: Vec<Ipv4Addr>,
    /// its IPv6 fixed IPs (SPEC 12.1), empty for an IPv4-only port; added within
    /// version 1, so absent in an older switch's answer
    #[serde(default)]
    pub ips6: Vec<Ipv6Addr>,
    pub src_dst_check: bool,
    /// null for a port without a device on this switch (another host's)
    pub backend: Option<Backend>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `ctl vips`: one row per VIP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct VipRow {
    pub name: String,
    pub subnet: String,
    /// IPv4, or IPv6 for an IPv6 VIP (SPEC 12.1)
    pub ip: IpAddr,
    /// the ports bound to it
    pub ports: Vec<String>,
    /// the port that owns it now (learned from its ARP), null before any
    pub owner: Option<String>,
    /// owner changes since the switch started
    pub moves: u64,
    /// when the last move was learned (wall clock), null before any
    pub moved_unix_us: Option<u64>,
    /// the switch's own failover time for the last move: from processing the new
    /// owner's claim to sending it the first frame for the VIP; null until a frame
    /// followed the move
    pub first_packet_us: Option<f64>,
}

/// `ctl eips`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct EipsAnswer {
    /// null without an `[uplink]`
    pub uplink: Option<Uplink>,
    pub eips: Vec<EipRow>,
}

/// The uplink of `ctl eips`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Uplink {
    /// its port's name
    pub name: Option<String>,
    pub mac: String,
    pub next_hop: Ipv4Addr,
    /// the next hop's MAC, null until resolved
    pub next_hop_mac: Option<String>,
    /// the next hop's MAC is configured, not resolved
    pub static_next_hop: bool,
}

/// One EIP of `ctl eips`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct EipRow {
    pub eip: Ipv4Addr,
    /// null when it names neither a VIP nor a port (not a valid configuration)
    pub target: Option<EipTarget>,
    /// the private address it translates to, null when unknown
    pub private_ip: Option<Ipv4Addr>,
    /// the port that answers for it now (a VIP's owner), null when none does
    pub owner_port: Option<String>,
}

/// What an EIP points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub enum EipTarget {
    /// a VIP: the EIP follows its owner
    Vip { vip: String },
    /// a port
    Port { port: String },
}

/// `ctl neighbors`: one row per address the switch answers ARP or neighbour
/// solicitations for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct NeighborRow {
    pub vpc: String,
    /// IPv4, or IPv6 (SPEC 12.3: a dual-stack subnet's gateway, its link-local
    /// address, ports' IPv6 fixed IPs, IPv6 VIPs)
    pub ip: IpAddr,
    /// the MAC the switch answers with; null for a VIP without an owner (no answer)
    pub mac: Option<String>,
    pub answers_for: NeighborOf,
}

/// Whose address a neighbor entry is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub enum NeighborOf {
    /// a subnet's gateway (the switch itself)
    Gateway { subnet: String },
    /// a port's fixed address
    Port { port: String },
    /// a VIP, answered with its owner's MAC
    Vip { vip: String, owner: Option<String> },
}

/// `ctl routes`: the local subnets (a dual-stack subnet twice: its IPv4 CIDR, then its
/// IPv6 prefix), then the configured routes of both families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct RouteRow {
    pub vpc: String,
    /// a CIDR, `10.0.1.0/24` or `fd00:a:0:1::/64` (SPEC 12.5)
    pub destination: String,
    pub target: RouteTarget,
}

/// Where a route sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub enum RouteTarget {
    /// a subnet of the VPC (the implicit route)
    Local { subnet: String },
    /// a peering, by name
    Peering { peering: String },
    /// a next-hop port
    Port { port: String },
    /// the uplink
    Uplink,
}

/// `ctl stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct StatsAnswer {
    /// configuration generation (1 at start, one more per reload)
    pub generation: u64,
    /// the last refused reload's error, null when the last reload succeeded
    pub last_reload_error: Option<String>,
    pub ports: Vec<PortStatsRow>,
    /// every drop, all ports, hosts and workers
    pub drops: DropsByReason,
    pub workers: Vec<WorkerRow>,
    /// null unless the network comes from the store (`run --etcd`)
    pub store: Option<StoreView>,
}

/// One port of `ctl stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct PortStatsRow {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropsByReason,
}

/// One worker of `ctl stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct WorkerRow {
    pub forwarded_packets: u64,
    pub dropped_packets: u64,
    /// answers the switch made in place of a dropped frame (ICMP errors, ARP requests)
    pub generated_packets: u64,
    /// segments cut from TCP super-frames in software
    pub gso_segments: u64,
    pub loops: u64,
    pub busy_loops: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub sleeps: u64,
    /// `burst_hist[n]`: receive bursts of n frames
    pub burst_hist: Vec<u64>,
}

/// The store's part of `ctl stats` (SPEC 11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct StoreView {
    pub endpoints: String,
    /// the network revision running, null before the first
    pub revision: Option<i64>,
    pub generation: u64,
    /// the store revision of the last sync, null before the first
    pub synced_revision: Option<i64>,
    pub last_sync_unix_ms: Option<u64>,
    /// when the running revision was swapped in here
    pub applied_unix_us: Option<u64>,
    /// when its apply was sent (the applier's clock), null when unknown
    pub written_unix_us: Option<u64>,
    /// `applied_unix_us - written_unix_us`
    pub lag_us: Option<u64>,
    pub local_host: Option<String>,
    pub lease: Lease,
    /// why the store is unreachable now, null while it is reachable
    pub lost: Option<String>,
    /// hosts whose lease is alive
    pub alive: Vec<String>,
    /// hosts whose ports are down here (SPEC 11.3)
    pub hosts_down: Vec<String>,
    /// per host down here, when its ports went down
    pub down_since_unix_us: BTreeMap<String, u64>,
    /// per host whose lease is gone, when the watch said so
    pub lease_gone_unix_us: BTreeMap<String, u64>,
    /// per VIP, the owner the store holds (SPEC 11.4)
    pub vip_owners: BTreeMap<String, StoreVipOwner>,
    /// per VIP, the last claim this switch published
    pub claims: BTreeMap<String, Claim>,
    pub vip_publications: u64,
    pub lease_grants: u64,
    pub lease_renewals: u64,
    pub errors: u64,
}

/// This switch's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Lease {
    /// null while none is held
    pub id: Option<i64>,
    pub ttl_s: u64,
    /// last granted or renewed, null never
    pub renewed_unix_ms: Option<u64>,
}

/// A VIP owner as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct StoreVipOwner {
    pub port: String,
    pub host: String,
    /// the store revision that set it
    pub revision: i64,
    /// when this switch received it, null when not known for this revision
    pub seen_unix_us: Option<u64>,
}

/// A claim this switch published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Claim {
    pub port: String,
    /// when the datapath learned the owner
    pub claimed_unix_us: u64,
}

/// `ctl hosts` (SPEC 10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct HostsAnswer {
    pub hosts: Vec<HostRow>,
    pub tunnel: Tunnel,
}

/// One host of `ctl hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct HostRow {
    pub name: String,
    /// its tunnel endpoint, `192.0.2.1:4789`
    pub endpoint: SocketAddrV4,
    /// this switch's own host
    pub local: bool,
    /// its lease expired: its ports are down here (SPEC 11.3)
    pub down: bool,
    /// ports (and the uplink) that live on it
    pub port_count: u64,
    /// a tunnel packet from it arrived lately; null for the local host
    pub reachable: Option<bool>,
    /// when the last tunnel packet from it arrived, null never
    pub last_rx_unix_ms: Option<u64>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropsByReason,
}

/// The tunnel sockets' totals of `ctl hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Tunnel {
    pub rx_datagrams: u64,
    pub rx_malformed_datagrams: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    /// UDP GSO trains sent
    pub tx_trains: u64,
    pub rx_coalesced_reads: u64,
    pub rx_joined_segments: u64,
}

/// `ctl trace` (hex, `--flow` or `--pcap`, one per frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct TraceAnswer {
    pub verdict: TraceVerdict,
    /// the verdict in words
    pub description: String,
    pub steps: Vec<TraceStep>,
    /// the frame traced, hex
    pub frame: String,
    /// the frame as it would leave (rewritten), hex
    pub output: String,
}

/// What the pipeline decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub enum TraceVerdict {
    Forward {
        to: TraceOut,
    },
    Drop {
        reason: String,
    },
    /// dropped, and the switch sends its own answer (ICMP error, ARP request) instead
    DropAndSend {
        reason: String,
        to: TraceOut,
    },
}

/// Where a traced frame goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub enum TraceOut {
    /// one port; `host` is the host it lives on when that is another one
    Port {
        port: Option<String>,
        host: Option<String>,
    },
    /// every port of a subnet (but the ingress)
    Flood { subnet: Option<String> },
    /// every port bound to a VIP (but the ingress)
    VipPorts { vip: Option<String> },
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct TraceStep {
    /// the pipeline stage (`vlan`, `src-mac`, `l2`, `route`, `verdict`...)
    pub stage: String,
    /// what it decided, for people
    pub detail: String,
}

/// `ctl reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct ReloadAnswer {
    pub generation: u64,
}

/// The first line of a `capture` stream (the `data` of its envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct CaptureStart {
    pub snaplen_bytes: u32,
    pub port: String,
    pub filter: String,
}

/// Which way a captured frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// received from the port's device
    Rx,
    /// sent to it
    Tx,
}

/// A captured frame (a line of a `capture` stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct CaptureFrame {
    pub ts_unix_us: u64,
    /// the frame's length on the wire (`data` may be cut at the snap length)
    pub orig_len_bytes: u64,
    pub dir: Dir,
    /// the frame, hex
    pub data: String,
}

/// A dropped frame (a line of `drops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct DropSample {
    pub ts_unix_us: u64,
    /// the port it was charged to, null once that port is deleted
    pub port: Option<String>,
    pub reason: String,
    pub orig_len_bytes: u64,
    /// the head of the frame decoded, for people
    pub decode: String,
    /// the head of the frame (up to 128 bytes), hex
    pub head: String,
}

/// A stream's keep-alive while nothing happens (about once a second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct Heartbeat {
    /// always true
    pub heartbeat: bool,
}

/// The last line of a `capture` or `drops` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub struct StreamDone {
    /// always true
    pub done: bool,
    /// frames (capture) or samples (drops) sent
    pub count: u64,
    /// capture: frames the capture ring had no room for; 0 for drops
    pub lost_frames: u64,
    /// why it ended early (the port was deleted, the switch stops), null when it ran
    /// its course
    pub ended: Option<String>,
}

/// A line of a `capture` or `drops` stream after the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamLine {
    Heartbeat(Heartbeat),
    Done(StreamDone),
    Frame(CaptureFrame),
    Drop(DropSample),
}
