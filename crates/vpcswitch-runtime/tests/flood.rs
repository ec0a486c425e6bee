//! Hostile input at the runtime: memory stays flat under a MAC flood. A file of its
//! own, so the process's RSS is this test's alone.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vpcswitch_core::DropReason;
use vpcswitch_model::{Config, ConfigBuilder, MacAddr};
use vpcswitch_runtime::{memory_backends, Switch};
use vpcswitch_wire::build;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cfg(workers: usize) -> Config {
    ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .build()
        .unwrap()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("timed out waiting for: {what}");
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4
}

#[test]
fn a_mac_flood_leaves_tables_and_memory_flat() {
    let c = cfg(2);
    let (b, g) = memory_backends(&c, 4096);
    let sw = Switch::start(&c, b).unwrap();
    let warm = build::udp(
        mac("02:00:00:00:01:02"),
        mac("02:00:00:00:01:01"),
        ip("10.0.1.11"),
        ip("10.0.1.12"),
        64,
        1,
        2,
        b"w",
    );
    for _ in 0..1000 {
        g["p1"].send(&warm);
    }
    eventually("warm-up", || {
        sw.stats().port("p1").unwrap().rx_packets == 1000
    });
    let before = rss_kib();
    // 100 000 frames from distinct forged source MACs: the switch learns nothing from
    // them (its MAC table comes from the configuration), so nothing can grow
    let mut sent = 0u64;
    for i in 0..100_000u32 {
        let m = MacAddr([0x02, 0x99, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01]);
        let f = build::udp(
            mac("02:00:00:00:01:02"),
            m,
            ip("10.0.1.11"),
            ip("10.0.1.12"),
            64,
            1,
            2,
            b"flood",
        );
        while !g["p1"].send(&f) {
            std::thread::yield_now();
        }
        sent += 1;
    }
    eventually("flood processed", || {
        sw.stats()
            .port("p1")
            .unwrap()
            .dropped(DropReason::SpoofedSrcMac)
            == sent
    });
    let after = rss_kib();
    assert!(
        after <= before + 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // p2 still gets p1's genuine traffic
    g["p2"].drain();
    g["p1"].send(&warm);
    assert!(g["p2"].recv_timeout(Duration::from_secs(5)).is_some());
}
