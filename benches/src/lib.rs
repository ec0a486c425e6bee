//! Shared scenarios for the criterion benches and the pps harness: one topology and,
//! per pipeline path, a pair of frames (one from each side) that exercise it.

use std::net::Ipv4Addr;

pub mod breakdown;
pub mod lab;
pub mod pps;

/// (median, min, max) of repeated measurements; `None` for none. The median of an even
/// count is the upper middle value.
pub fn median_min_max(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.get(s.len() / 2)?, *s.first()?, *s.last()?))
}

/// The median of `v` ([`median_min_max`]); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    median_min_max(v).map_or(0.0, |m| m.0)
}

/// A table cell of repeated measurements `v`: "median (min–max)" with `p` decimals, and
/// ", R×" (the median against `base`'s median) when `base` has values.
pub fn cell(v: &[f64], base: Option<&[f64]>, p: usize) -> String {
    let (med, lo, hi) = median_min_max(v).unwrap_or_default();
    let ratio = base
        .filter(|b| !b.is_empty())
        .map(|b| format!(", {:.2}×", med / median(b)))
        .unwrap_or_default();
    format!("{med:.p$} ({lo:.p$}–{hi:.p$}){ratio}")
}

/// The head of a Markdown table with `columns`, after an empty line.
pub fn table_head(columns: &[&str]) -> String {
    format!(
        "\n| {} |\n|{}\n",
        columns.join(" | "),
        " --- |".repeat(columns.len())
    )
}

/// The `p` quantile (0..=1) of sorted values, nearest rank; `None` for none.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * p).round() as usize).copied()
}

use vpcswitch_core::Snapshot;
use vpcswitch_model::{Config, ConfigBuilder, MacAddr};
use vpcswitch_wire::build;

/// The gateway MAC of the topology.
pub const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// The uplink's MAC.
pub const UPLINK: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xf0]);
/// The outside next hop's MAC.
pub const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xf1]);

/// A pipeline path to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// L2 inside a subnet, with source and destination checks.
    L2,
    /// L3 between two subnets of a VPC.
    L3,
    /// L3 across a VPC peering.
    Peering,
    /// Unicast to a non-owner bound to a VIP, steered to the owner.
    VipSteer,
    /// ARP requests answered by the switch.
    Arp,
    /// EIP 1:1 NAT (SPEC 7): from the uplink to the VIP's EIP (resolved to its owner),
    /// and from the owner out through the uplink with the EIP as source.
    Eip,
    /// IPv6 L2 inside a subnet, with source and destination checks (SPEC 12).
    L2v6,
    /// IPv6 L3 between two subnets of a VPC (SPEC 12.5).
    L3v6,
    /// Neighbour solicitations answered by the switch (SPEC 12.3); 86-byte frames.
    Nd,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 9] = [
        Scenario::L2,
        Scenario::L3,
        Scenario::Peering,
        Scenario::VipSteer,
        Scenario::Arp,
        Scenario::Eip,
        Scenario::L2v6,
        Scenario::L3v6,
        Scenario::Nd,
    ];
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::L2 => "l2",
            Scenario::L3 => "l3",
            Scenario::Peering => "peering",
            Scenario::VipSteer => "vip-steer",
            Scenario::Arp => "arp",
            Scenario::Eip => "eip",
            Scenario::L2v6 => "l2_v6",
            Scenario::L3v6 => "l3_v6",
            Scenario::Nd => "nd",
        }
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
}
fn mac(s: &str) -> MacAddr {
    s.parse().unwrap_or_default()
}

/// Ports: a (a1, 10.0.1.11), b (a1, 10.0.1.12), c (a2, 10.0.2.11), d (vpc x, 10.1.1.11),
/// a, b and c dual stack (VPC a has 2001:db8:a::/48, a1 and a2 a /64 each: a is
/// 2001:db8:a:1::11, b ::12 of a1, c 2001:db8:a:2::11; v1/v2 ::21/::22 of a1, bound to
/// the IPv6 VIP 2001:db8:a:1::100, owned by v2 too),
/// v1/v2 (a1) bound to VIP 10.0.1.100, owned by v2, whose EIP is 203.0.113.10 on the
/// uplink `up` (next hop 198.51.100.1 at a static MAC, VPC a routes 0.0.0.0/0 to it).
/// `workers` workers; `extra_routes` additional /24 routes in VPC a (table-size scaling).
pub fn config(workers: usize, extra_routes: usize) -> Config {
    config_sized(workers, extra_routes, 0)
}

/// [`config`] with `extra_ports` more ports (table-size scaling: the MAC and host
/// tables grow), in a VPC of their own (10.64.0.0/14), MACs 02:10:..; no traffic
/// touches them.
pub fn config_sized(workers: usize, extra_routes: usize, extra_ports: usize) -> Config {
    let mut b = ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["2001:db8:a::/48"])
        .vpc("x", &["10.1.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("2001:db8:a:1::/64")
        .subnet("a2", "a", "10.0.2.0/24")
        .ipv6_cidr("2001:db8:a:2::/64")
        .subnet("x1", "x", "10.1.1.0/24")
        .port("a", "a1", "02:00:00:00:00:0a", &["10.0.1.11"])
        .ipv6_ips(&["2001:db8:a:1::11"])
        .port("b", "a1", "02:00:00:00:00:0b", &["10.0.1.12"])
        .ipv6_ips(&["2001:db8:a:1::12"])
        .port("c", "a2", "02:00:00:00:00:0c", &["10.0.2.11"])
        .ipv6_ips(&["2001:db8:a:2::11"])
        .port("d", "x1", "02:00:00:00:00:0d", &["10.1.1.11"])
        .port("v1", "a1", "02:00:00:00:00:e1", &["10.0.1.21"])
        .ipv6_ips(&["2001:db8:a:1::21"])
        .port("v2", "a1", "02:00:00:00:00:e2", &["10.0.1.22"])
        .ipv6_ips(&["2001:db8:a:1::22"])
        .vip("vip", "a1", "10.0.1.100", &["v1", "v2"])
        .vip("vip6", "a1", "2001:db8:a:1::100", &["v1", "v2"])
        .peering("ax", "a", "x")
        .route_via_peering("a", "10.1.0.0/16", "ax")
        .route_via_peering("x", "10.0.0.0/16", "ax")
        .uplink("up", "02:00:00:00:00:f0", "198.51.100.1")
        .route_via_uplink("a", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "vip");
    for i in 0..extra_routes {
        let n = 0x4000_0000u32 + ((i as u32) << 8);
        b = b.route_via_port("a", &format!("{}/24", Ipv4Addr::from(n)), "c");
    }
    if extra_ports > 0 {
        b = b
            .vpc("big", &["10.64.0.0/14"])
            .subnet("big1", "big", "10.64.0.0/14");
        for i in 0..extra_ports as u32 {
            let ip = Ipv4Addr::from(0x0a40_0000u32 + 10 + i);
            let m = format!(
                "02:10:{:02x}:{:02x}:{:02x}:{:02x}",
                i >> 24,
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            );
            b = b.port(&format!("x{i}"), "big1", &m, &[&ip.to_string()]);
        }
    }
    let mut c = b.build().unwrap_or_default();
    if let Some(u) = c.uplink.as_mut() {
        u.next_hop_mac = Some(ROUTER);
    }
    // the benchmarks measure the paths, not the storm limiters
    c.switch.arp_per_sec = u32::MAX;
    c.switch.flood_per_sec = u32::MAX;
    c.switch.icmp_errors_per_sec = u32::MAX;
    c
}

/// A compiled topology with the VIP owned by v2.
pub fn snapshot(extra_routes: usize) -> Snapshot {
    snapshot_sized(extra_routes, 0)
}

/// [`snapshot`] of [`config_sized`].
pub fn snapshot_sized(extra_routes: usize, extra_ports: usize) -> Snapshot {
    let s = Snapshot::compile(&config_sized(1, extra_routes, extra_ports), None)
        .unwrap_or_else(|e| panic!("{e}"));
    s.set_vip_owner("vip", "v2", 1);
    s.set_vip_owner("vip6", "v2", 1);
    s
}

/// Length of every benchmark frame.
pub const FRAME_LEN: usize = 64;

/// (ingress port, frame) for each direction of a scenario: 64-byte frames (ARP padded
/// from 60 to 64 bytes, as on a wire with FCS stripped), but for [`Scenario::Nd`]'s
/// 86-byte solicitations (never cut).
pub fn frames(s: Scenario) -> [(&'static str, Vec<u8>); 2] {
    let [(a, mut fa), (b, mut fb)] = frames_unpadded(s);
    fa.resize(fa.len().max(FRAME_LEN), 0);
    fb.resize(fb.len().max(FRAME_LEN), 0);
    [(a, fa), (b, fb)]
}

/// One frame of a scenario as a fixed-size array, for benches that copy it into a
/// buffer per packet (a constant-size copy, like a NIC's DMA, not a `memcpy` call).
pub fn frame_array(s: Scenario, direction: usize) -> (&'static str, [u8; FRAME_LEN]) {
    let (p, f) = frames(s)[direction % 2].clone();
    assert!(
        f.len() == FRAME_LEN,
        "scenario {} has {}-byte frames, not {FRAME_LEN}: use frames()",
        s.name(),
        f.len()
    );
    let mut a = [0u8; FRAME_LEN];
    a.copy_from_slice(&f[..FRAME_LEN]);
    (p, a)
}

fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED)
}

/// A 64-byte IPv6 UDP frame (IPv6's 20 extra header bytes come out of the payload).
fn u6(dst: MacAddr, src: &str, sip: &str, dip: &str) -> Vec<u8> {
    build::udp6(
        build::Ends6 {
            dst,
            src: mac(src),
            sip: v6(sip),
            dip: v6(dip),
        },
        64,
        1024,
        4789,
        &[0u8; 2],
    )
}

fn frames_unpadded(s: Scenario) -> [(&'static str, Vec<u8>); 2] {
    let u = |dst: MacAddr, src: &str, sip: &str, dip: &str| {
        build::udp(
            build::Ends {
                dst,
                src: mac(src),
                sip: ip(sip),
                dip: ip(dip),
            },
            64,
            1024,
            4789,
            &[0u8; 22],
        )
    };
    match s {
        Scenario::L2 => [
            (
                "a",
                u(
                    mac("02:00:00:00:00:0b"),
                    "02:00:00:00:00:0a",
                    "10.0.1.11",
                    "10.0.1.12",
                ),
            ),
            (
                "b",
                u(
                    mac("02:00:00:00:00:0a"),
                    "02:00:00:00:00:0b",
                    "10.0.1.12",
                    "10.0.1.11",
                ),
            ),
        ],
        Scenario::L3 => [
            ("a", u(GW, "02:00:00:00:00:0a", "10.0.1.11", "10.0.2.11")),
            ("c", u(GW, "02:00:00:00:00:0c", "10.0.2.11", "10.0.1.11")),
        ],
        Scenario::Peering => [
            ("a", u(GW, "02:00:00:00:00:0a", "10.0.1.11", "10.1.1.11")),
            ("d", u(GW, "02:00:00:00:00:0d", "10.1.1.11", "10.0.1.11")),
        ],
        Scenario::VipSteer => [
            (
                "a",
                u(
                    mac("02:00:00:00:00:e1"),
                    "02:00:00:00:00:0a",
                    "10.0.1.11",
                    "10.0.1.100",
                ),
            ),
            (
                "v2",
                u(
                    mac("02:00:00:00:00:0a"),
                    "02:00:00:00:00:e2",
                    "10.0.1.100",
                    "10.0.1.11",
                ),
            ),
        ],
        Scenario::Eip => [
            (
                "up",
                u(UPLINK, "02:00:00:00:00:f1", "198.51.100.7", "203.0.113.10"),
            ),
            (
                "v2",
                u(GW, "02:00:00:00:00:e2", "10.0.1.100", "198.51.100.7"),
            ),
        ],
        Scenario::L2v6 => [
            (
                "a",
                u6(
                    mac("02:00:00:00:00:0b"),
                    "02:00:00:00:00:0a",
                    "2001:db8:a:1::11",
                    "2001:db8:a:1::12",
                ),
            ),
            (
                "b",
                u6(
                    mac("02:00:00:00:00:0a"),
                    "02:00:00:00:00:0b",
                    "2001:db8:a:1::12",
                    "2001:db8:a:1::11",
                ),
            ),
        ],
        Scenario::L3v6 => [
            (
                "a",
                u6(
                    GW,
                    "02:00:00:00:00:0a",
                    "2001:db8:a:1::11",
                    "2001:db8:a:2::11",
                ),
            ),
            (
                "c",
                u6(
                    GW,
                    "02:00:00:00:00:0c",
                    "2001:db8:a:2::11",
                    "2001:db8:a:1::11",
                ),
            ),
        ],
        Scenario::Nd => [
            (
                "a",
                build::neighbor_solicit(
                    mac("02:00:00:00:00:0a"),
                    v6("2001:db8:a:1::11"),
                    v6("2001:db8:a:1::12"),
                ),
            ),
            (
                "b",
                build::neighbor_solicit(
                    mac("02:00:00:00:00:0b"),
                    v6("2001:db8:a:1::12"),
                    v6("2001:db8:a:1::11"),
                ),
            ),
        ],
        Scenario::Arp => [
            (
                "a",
                build::arp_request(mac("02:00:00:00:00:0a"), ip("10.0.1.11"), ip("10.0.1.12")),
            ),
            (
                "b",
                build::arp_request(mac("02:00:00:00:00:0b"), ip("10.0.1.12"), ip("10.0.1.11")),
            ),
        ],
    }
}

/// The paths of [`snapshot`] (its VPC a is dual stack) whose IPv4 and IPv6 twins are
/// compared (issue 20: "IPv6 within 20% of IPv4"), each as (name, ingress port, frame):
/// `l2`/`l2_v6`, `l3`/`l3_v6`, `vip-steer`/`vip-steer_v6`, `arp`/`nd` (the switch
/// answering a request for a port's address). UDP frames are 64 bytes in both families;
/// the neighbour solicitation is 86 bytes (its link-layer option included).
pub fn dual_stack_frames() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let first = |name: &'static str, s: Scenario| {
        let [(port, f), _] = frames(s);
        (name, port, f)
    };
    vec![
        first("l2", Scenario::L2),
        first("l2_v6", Scenario::L2v6),
        first("l3", Scenario::L3),
        first("l3_v6", Scenario::L3v6),
        first("vip-steer", Scenario::VipSteer),
        (
            "vip-steer_v6",
            "a",
            u6(
                mac("02:00:00:00:00:e1"),
                "02:00:00:00:00:0a",
                "2001:db8:a:1::11",
                "2001:db8:a:1::100",
            ),
        ),
        first("arp", Scenario::Arp),
        first("nd", Scenario::Nd),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_gives_median_range_and_ratio() {
        assert_eq!(cell(&[3.0, 1.0, 2.0], None, 1), "2.0 (1.0–3.0)");
        assert_eq!(
            cell(&[3.0, 1.0, 2.0], Some(&[4.0, 8.0]), 0),
            "2 (1–3), 0.25×"
        );
        // no base values: no ratio
        assert_eq!(cell(&[5.0], Some(&[]), 2), "5.00 (5.00–5.00)");
        assert_eq!(median(&[]), 0.0);
        assert_eq!(table_head(&["a", "b c"]), "\n| a | b c |\n| --- | --- |\n");
    }
}
