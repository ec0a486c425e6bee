//! VIP failover (SPEC 3): keepalived moving a VIP between guests over the backends it
//! applies to, fresh and stale ARP caches; split brain (SPEC 3.6).

#[macro_use]
mod common;

use std::time::Duration;

use serde_json::Value;

use common::net::{garp, Kind, Net, VIP};
use common::{lock, must};

over_backends!(failover_suite {
    spec3_keepalived_failover_fresh_and_stale_arp_cache: Tap,
    af_packet_spec3_keepalived_failover_fresh_and_stale_arp_cache: AfPacket,
    af_xdp_spec3_keepalived_failover_fresh_and_stale_arp_cache: AfXdp,
});

fn failover_suite(kind: Kind) {
    let _l = lock();
    let mut n = Net::start_kind(kind, "");
    let k1 = n.keepalived("web1", 150);
    n.keepalived("web2", 100);
    assert!(
        n.wait_owner("web1", 20),
        "web1 becomes master and announces\n{}\n{}",
        n.read("keepalived-web1.log"),
        n.log()
    );
    assert_eq!(n.ping("client", VIP, 3), 3);

    // 1. graceful failover (SIGTERM): the client sees the GARP
    n.probe("client", VIP, 6, "ping1.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -TERM {k1}"));
    assert!(
        n.wait_owner("web2", 10),
        "web2 takes over\n{}",
        n.read("keepalived-web2.log")
    );
    std::thread::sleep(Duration::from_secs(5));
    n.assert_outage("ping1.txt", &format!("{kind:?} failover (SIGTERM)"));
    // the switch timed its own part: web2's GARP learned -> the next ping (every 10 ms)
    // sent to web2
    let first_us = n.vip_row()["first_packet_us"].as_f64();
    eprintln!("{kind:?} failover at the switch: {first_us:?} µs");
    assert!(
        first_us.is_some_and(|us| us > 0.0 && us < 50_000.0),
        "first packet to the new owner within 50 ms of its GARP (pings every 10 ms): {first_us:?}"
    );

    // 2. web1 comes back and preempts; then dies as a dead node (link down) while the
    //    client's ARP cache is pinned to web1's MAC: only VIP steering (SPEC 4.3) helps
    let k1b = n.keepalived("web1", 150);
    assert!(n.wait_owner("web1", 20), "web1 preempts");
    must(&format!(
        "ip -n {} neigh replace {VIP} lladdr 02:00:00:00:01:01 dev eth0 nud permanent",
        n.ns("client")
    ));
    n.probe("client", VIP, 8, "ping2.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("ip -n {} link set eth0 down", n.ns("web1")));
    assert!(n.wait_owner("web2", 10), "web2 takes over from a dead web1");
    std::thread::sleep(Duration::from_secs(7));
    n.assert_outage(
        "ping2.txt",
        &format!("{kind:?} failover (link down, stale client cache)"),
    );
    let (_, neigh) = n.exec("client", &format!("ip neigh show {VIP}"));
    assert!(
        neigh.contains("02:00:00:00:01:01"),
        "the cache stayed stale: {neigh}"
    );
    let _ = k1b;
    assert!(n.vip_moves() >= 3, "moves counted: {}", n.vip_moves());
}

#[test]
fn spec3_6_split_brain_latest_claimer_wins() {
    let _l = lock();
    let n = Net::start();
    for g in ["web1", "web2"] {
        must(&format!("ip -n {} addr add {VIP}/24 dev eth0", n.ns(g)));
    }
    for i in 0..10 {
        let (g, mac) = if i % 2 == 0 {
            ("web1", "02:00:00:00:01:01")
        } else {
            ("web2", "02:00:00:00:01:02")
        };
        n.scapy(g, &garp(mac));
    }
    assert_eq!(
        n.vip_owner().as_deref(),
        Some("web2"),
        "the latest claimer owns the VIP"
    );
    assert!(
        n.vip_moves() >= 10,
        "every claim by a new port is a move: {}",
        n.vip_moves()
    );
    // traffic follows the latest claimer
    assert_eq!(n.ping("app", VIP, 3), 3);
    let before = n.ctl("ports");
    let tx = |v: &Value, p: &str| {
        v.as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == p))
            .and_then(|x| x["tx_packets"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(n.ping("app", VIP, 5), 5);
    let after = n.ctl("ports");
    assert!(
        tx(&after, "web2") >= tx(&before, "web2") + 5,
        "echoes went to web2"
    );
    assert_eq!(tx(&after, "web1"), tx(&before, "web1"), "none to web1");
}
