//! Soak: mixed traffic (L2, L3, ARP, broadcast, spoofed frames) for
//! `VPCSWITCH_SOAK_SECS` seconds (default 60, the CI run; 600 for the opt-in soak in the
//! README), a VIP failover by GARP every 10 s and a reload every 5 s. No panic, memory
//! flat, and the counters add up: received = forwarded + dropped.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch_model::{ConfigBuilder, MacAddr};
use vpcswitch_runtime::{memory_backends, Switch};
use vpcswitch_wire::build;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
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
fn soak_mixed_traffic_with_failovers_and_reloads() {
    let secs: u64 = std::env::var("VPCSWITCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let cfg = ConfigBuilder::new()
        .workers(2)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .port("web1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("web2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("client", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .vip("vip", "a1", "10.0.1.100", &["web1", "web2"])
        .build()
        .unwrap();
    let (b, g) = memory_backends(&cfg, 4096);
    let sw = Switch::start(&cfg, b).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let gw = mac("02:00:00:00:00:01");
    // the client: L3 to the VIP and to web1, ARP for its gateway, broadcasts, spoofs
    let client = {
        let (g, stop) = (g["client"].clone(), stop.clone());
        let cm = mac("02:00:00:00:02:01");
        std::thread::spawn(move || {
            let frames = [
                build::udp(
                    build::Ends {
                        dst: gw,
                        src: cm,
                        sip: ip("10.0.2.11"),
                        dip: ip("10.0.1.100"),
                    },
                    64,
                    1,
                    2,
                    b"to the vip",
                ),
                build::udp(
                    build::Ends {
                        dst: gw,
                        src: cm,
                        sip: ip("10.0.2.11"),
                        dip: ip("10.0.1.11"),
                    },
                    64,
                    3,
                    4,
                    b"to web1",
                ),
                build::arp_request(cm, ip("10.0.2.11"), ip("10.0.2.1")),
                build::udp(
                    build::Ends {
                        dst: MacAddr::BROADCAST,
                        src: cm,
                        sip: ip("10.0.2.11"),
                        dip: ip("10.0.2.255"),
                    },
                    64,
                    5,
                    6,
                    b"bcast",
                ),
                build::udp(
                    build::Ends {
                        dst: gw,
                        src: cm,
                        sip: ip("10.0.2.99"),
                        dip: ip("10.0.1.11"),
                    },
                    64,
                    7,
                    8,
                    b"spoofed",
                ),
                build::icmp_echo(gw, cm, ip("10.0.2.11"), ip("10.0.2.1"), 64, 1, 1),
            ];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if !g.send(&frames[i % frames.len()]) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                g.drain();
                i += 1;
                if i.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        })
    };
    // the web servers answer nothing but drain what they get
    let sinks: Vec<_> = ["web1", "web2"]
        .iter()
        .map(|n| {
            let (g, stop) = (g[*n].clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if g.drain().is_empty() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut rss_start = 0;
    let (mut failovers, mut reloads) = (0u64, 0u64);
    let mut next = cfg.clone();
    let mut t = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        t += 1;
        if t == 2 {
            rss_start = rss_kib();
        }
        if t.is_multiple_of(10) || t == 1 {
            let (who, m) = if failovers % 2 == 0 {
                ("web1", "02:00:00:00:01:01")
            } else {
                ("web2", "02:00:00:00:01:02")
            };
            assert!(
                g[who].send(&build::garp(mac(m), ip("10.0.1.100"))),
                "GARP queued"
            );
            failovers += 1;
        }
        if t.is_multiple_of(5) {
            next.ports[2].src_dst_check = !next.ports[2].src_dst_check;
            sw.reload(&next, vec![]).expect("reload");
            reloads += 1;
        }
        sw.health().expect("no worker panicked");
    }
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    for s in sinks {
        s.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let s = sw.stats();
    let rx = s.rx_packets();
    let fw: u64 = s.workers.iter().map(|w| w.forwarded).sum();
    let dr: u64 = s.workers.iter().map(|w| w.dropped).sum();
    assert_eq!(fw + dr, rx, "received {rx} = forwarded {fw} + dropped {dr}");
    assert!(rx > secs * 1000, "traffic flowed: {rx} frames");
    let snap = sw.snapshot();
    assert_eq!(
        snap.vip_cell(snap.vip_id("vip").unwrap()).moves(),
        failovers,
        "every failover is a move"
    );
    assert_eq!(snap.generation, 1 + reloads);
    let rss_end = rss_kib();
    assert!(
        rss_end <= rss_start + rss_start / 20 + 2048,
        "memory flat: {rss_start} KiB -> {rss_end} KiB"
    );
    eprintln!(
        "soak {secs} s: {rx} frames, {failovers} failovers, {reloads} reloads, RSS {rss_start} -> {rss_end} KiB, drops {:?}",
        s.drops
    );
    assert_eq!(sw.stop(), 0);
}
