//! The whole pipeline on arbitrary frames from every port of a fixed topology with
//! VIPs, peerings, a next hop, check-off ports, an uplink with EIPs, a subnet with DHCP,
//! dual-stack subnets with an IPv6 VIP and an IPv6 route (SPEC 12): no panic, and every frame gets a
//! verdict whose outputs name configured ports (nothing unaccounted for).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, Snapshot, Verdict};
use vpcswitch_model::{ConfigBuilder, DhcpOptions, DhcpRoute};

fn snapshot() -> Snapshot {
    let cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["fd00:a::/48"])
        .vpc("b", &["10.1.0.0/16"])
        .ipv6_cidrs(&["fd00:b::/48"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("fd00:a:0:1::/64")
        .subnet("a2", "a", "10.0.2.0/24")
        .ipv6_cidr("fd00:a:0:2::/64")
        .subnet("b1", "b", "10.1.1.0/24")
        .ipv6_cidr("fd00:b:0:1::/64")
        // SPEC 13.1: b1's ports are served by the switch's DHCP server
        .dhcp(DhcpOptions {
            dns_servers: vec![[10, 1, 0, 2].into()],
            domain: Some("b.internal".into()),
            mtu: Some(1400),
            lease_secs: None,
            routes: vec![DhcpRoute {
                destination: "10.9.0.0/16".parse().unwrap(),
                via: [10, 1, 1, 254].into(),
            }],
        })
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .ipv6_ips(&["fd00:a:0:1::11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .ipv6_ips(&["fd00:a:0:1::12"])
        .port("lvs", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .src_dst_check(false)
        .allowed_mac("02:00:00:00:01:33")
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .ipv6_ips(&["fd00:a:0:2::11"])
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .ipv6_ips(&["fd00:b:0:1::11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .vip("v6", "a1", "fd00:a:0:1::100", &["p1", "p2"])
        .route_via_peering("a", "fd00:b::/48", "ab")
        .route_via_peering("b", "fd00:a::/48", "ab")
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_port("a", "192.168.0.0/16", "lvs")
        .uplink("up", "02:00:00:00:ff:01", "203.0.113.1")
        .route_via_uplink("a", "0.0.0.0/0")
        .route_via_uplink("b", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "v")
        .eip_for_port("203.0.113.11", "r1")
        .build()
        .expect("valid topology");
    Snapshot::compile(&cfg, None).expect("compiles")
}

fuzz_target!(|data: &[u8]| {
    thread_local! { static SNAP: Snapshot = snapshot(); }
    SNAP.with(|s| {
        // first byte: ingress port and time; the rest: the frame
        let Some((&sel, frame)) = data.split_first() else {
            return;
        };
        let port = u32::from(sel) % 7; // one past the last id: an unknown port
        let now = u64::from(sel) * 1_000_000;
        // the trace first: it must not change state, and must agree with process
        let traced = s.trace(now, port, frame).verdict;
        let mut buf = vec![0u8; 2048.max(frame.len() + 128)];
        buf[..frame.len()].copy_from_slice(frame);
        let mut len = frame.len();
        let ctx = Ctx {
            now_ns: now,
            csum_partial: sel & 0x80 != 0,
            gso: false,
        };
        let v = s.process(&ctx, port, &mut buf, &mut len, &mut NoTrace);
        assert!(len <= buf.len());
        let check = |o: Out| match o {
            Out::Port(p) => assert!(s.port(p).is_some()),
            Out::Flood(x) => assert!((x as usize) < s.subnets.len()),
            Out::VipPorts(x) => assert!((x as usize) < s.vips.len()),
        };
        match v {
            Verdict::Forward(o) | Verdict::DropAndSend(_, o) => check(o),
            Verdict::Drop(_) => {}
        }
        match (v, traced) {
            // budgets (answers, ARP, floods) are spent by process only
            (Verdict::Drop(r), Verdict::DropAndSend(t, _)) => assert_eq!(r, t),
            (Verdict::Drop(DropReason::ArpRateLimited | DropReason::FloodRateLimited), _) => {}
            (a, b) => assert_eq!(a, b, "trace and process disagree"),
        }
    });
});
