//! Hostile input at the runtime: memory stays flat under a MAC flood, an ARP storm, a
//! broadcast storm and a VIP claim storm, and the other guest keeps its traffic. One
//! test in a file of its own, so the process's RSS is this test's alone.

mod common;
use common::*;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vpcswitch_core::DropReason;
use vpcswitch_model::{Config, MacAddr};
use vpcswitch_runtime::{memory_backends, Switch};
use vpcswitch_wire::build;

fn cfg(workers: usize) -> Config {
    two_ports_with_a_vip(workers)
}

fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(20), Duration::from_millis(1), what, f)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4
}

/// Sends `n` frames made by `f` from port `p` (waiting when its ring is full) and waits
/// until the switch has received them all.
fn storm(
    sw: &Switch,
    g: &std::collections::HashMap<String, vpcswitch_backend::memory::MemGuest>,
    p: &str,
    n: u32,
    f: impl Fn(u32) -> Vec<u8>,
) {
    let rx0 = sw.stats().port(p).unwrap().rx_packets;
    for i in 0..n {
        let fr = f(i);
        while !g[p].send(&fr) {
            std::thread::yield_now();
        }
        if i % 4096 == 0 {
            for q in g.keys() {
                g[q].drain();
            }
        }
    }
    eventually("storm received", || {
        sw.stats().port(p).unwrap().rx_packets == rx0 + u64::from(n)
    });
    for q in g.keys() {
        g[q].drain();
    }
}

/// One storm after the other, RSS measured before and after each (SPEC-silent bound:
/// at most 1 MiB of growth per storm, which is noise for this process).
#[test]
fn storms_leave_tables_and_memory_flat_and_the_other_guest_keeps_its_traffic() {
    let c = cfg(2);
    let (b, g) = memory_backends(&c, 4096);
    let sw = Switch::start(&c, b).unwrap();
    let warm = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:02"),
            src: mac("02:00:00:00:01:01"),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
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
            build::Ends {
                dst: mac("02:00:00:00:01:02"),
                src: m,
                sip: ip("10.0.1.11"),
                dip: ip("10.0.1.12"),
            },
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

    // p2 asks for p1's address: answered from p2's own ARP budget, whatever p1 does
    let p2_answered = || {
        g["p2"].drain();
        let req = build::arp_request(mac("02:00:00:00:01:02"), ip("10.0.1.12"), ip("10.0.1.11"));
        g["p2"].send(&req);
        g["p2"].recv_timeout(Duration::from_secs(5)).is_some()
    };

    // ARP storm from p1: requests for every address of the subnet, far above the budget
    let before = rss_kib();
    let t0 = Instant::now();
    storm(&sw, &g, "p1", 100_000, |i| {
        build::arp_request(
            mac("02:00:00:00:01:01"),
            ip("10.0.1.11"),
            Ipv4Addr::new(10, 0, 1, 2 + (i % 250) as u8),
        )
    });
    let secs = t0.elapsed().as_secs_f64().ceil() as u64 + 1;
    let s = sw.stats();
    let limited = s.port("p1").unwrap().dropped(DropReason::ArpRateLimited);
    let passed = 100_000 - limited;
    // the bound: arp_per_sec per second per worker window (see docs/security.md)
    let bound = u64::from(c.switch.arp_per_sec) * secs * c.switch.workers as u64;
    assert!(
        limited > 0 && passed <= bound,
        "{passed} ARP passed in {secs} s (bound {bound})"
    );
    let after = rss_kib();
    assert!(
        after <= before + 1024,
        "ARP storm: RSS {before} -> {after} KiB"
    );
    assert!(p2_answered(), "p2's ARP is still answered after p1's storm");

    // broadcast storm from p1
    let before = rss_kib();
    storm(&sw, &g, "p1", 100_000, |_| {
        build::udp(
            build::Ends {
                dst: MacAddr::BROADCAST,
                src: mac("02:00:00:00:01:01"),
                sip: ip("10.0.1.11"),
                dip: ip("10.0.1.255"),
            },
            64,
            1,
            2,
            b"storm",
        )
    });
    let s = sw.stats();
    assert!(s.port("p1").unwrap().dropped(DropReason::FloodRateLimited) > 0);
    let after = rss_kib();
    assert!(
        after <= before + 1024,
        "broadcast storm: RSS {before} -> {after} KiB"
    );
    g["p2"].drain();
    g["p1"].send(&warm);
    assert!(
        g["p2"].recv_timeout(Duration::from_secs(5)).is_some(),
        "unicast still flows after the broadcast storm"
    );

    // VIP claim storm between the two bound ports, in fresh budget windows: each
    // claim is an ARP, so moves are bounded by the two ports' ARP budgets
    std::thread::sleep(Duration::from_millis(1100));
    let before = rss_kib();
    let t0 = Instant::now();
    let moves0 = sw.snapshot().vip_cell(0).moves();
    let rx = |sw: &Switch| {
        let s = sw.stats();
        s.port("p1").unwrap().rx_packets + s.port("p2").unwrap().rx_packets
    };
    let rx0 = rx(&sw);
    for i in 0..20_000u32 {
        let (p, m) = if i % 2 == 0 {
            ("p1", "02:00:00:00:01:01")
        } else {
            ("p2", "02:00:00:00:01:02")
        };
        let f = build::garp(mac(m), ip("10.0.1.100"));
        while !g[p].send(&f) {
            std::thread::yield_now();
        }
        if i % 2048 == 0 {
            g["p1"].drain();
            g["p2"].drain();
        }
    }
    eventually("claims received", || rx(&sw) == rx0 + 20_000);
    let moves = sw.snapshot().vip_cell(0).moves() - moves0;
    let secs = t0.elapsed().as_secs_f64().ceil() as u64 + 1;
    let bound = 2 * u64::from(c.switch.arp_per_sec) * secs * c.switch.workers as u64;
    // claims are processed a burst per port at a time, so moves come in runs
    assert!(
        moves >= 2 && moves <= bound,
        "{moves} moves (bound {bound})"
    );
    let after = rss_kib();
    assert!(
        after <= before + 1024,
        "claim storm: RSS {before} -> {after} KiB"
    );
    eprintln!("storms: ARP {passed} of 100000 passed; VIP moved {moves} times in the claim storm");
}
