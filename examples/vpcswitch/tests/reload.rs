//! Configuration reload under traffic (SPEC 8.1).

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::net::Net;
use common::{ctl_reload, lock, sh};

#[test]
fn spec8_1_reload_under_traffic_loses_nothing() {
    let _l = lock();
    let mut n = Net::start();
    n.spawn("app", "iperf3 -s -1 -p 5202", "iperf-s.txt");
    std::thread::sleep(Duration::from_millis(300));
    let pid = n.spawn(
        "client",
        "iperf3 -J -c 10.0.2.11 -p 5202 -t 4",
        "iperf-c.txt",
    );
    let base = n.config_text("");
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        // an unrelated change: the director's check flips
        let text = if i % 2 == 0 {
            base.replace("src_dst_check = false", "src_dst_check = true")
        } else {
            base.clone()
        };
        n.reload_with(&text);
    }
    let end = Instant::now() + Duration::from_secs(15);
    while sh(&format!("kill -0 {pid}")).0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: Value = serde_json::from_str(&n.read("iperf-c.txt")).unwrap_or(Value::Null);
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(bps > 1e7, "iperf3 finished: {}", n.read("iperf-c.txt"));
    assert!(
        n.generation() >= 5,
        "reloads applied: generation {}",
        n.generation()
    );
    let stats = n.ctl("stats");
    for p in ["client", "app"] {
        let drops = &stats["ports"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == p))
            .cloned()
            .unwrap_or(Value::Null)["drops"];
        let non_ipv6: u64 = drops
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| *k != "ipv6")
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(non_ipv6, 0, "{p} drops: {drops}");
    }
    eprintln!(
        "iperf3 under reloads: {:.2} Gbit/s, retransmits {}",
        bps / 1e9,
        v["end"]["sum_sent"]["retransmits"]
    );
    // an invalid configuration on reload is refused, shown by ctl and logged; the old one stays
    let g = n.generation();
    std::fs::write(
        &n.cfg_path,
        base.replace("ips = [\"10.0.1.12\"]", "ips = [\"10.0.9.12\"]"),
    )
    .expect("write");
    let out = ctl_reload(&n.socket);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reload refused") && err.contains("port \"web2\": field `ips`"),
        "{err}"
    );
    assert_eq!(n.generation(), g, "the running configuration stays");
    let last = n.ctl("stats")["last_reload_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("10.0.9.12 is not inside subnet"), "{last}");
    assert!(n.log().contains("reload refused"), "logged");
    assert_eq!(
        n.ping("client", "10.0.1.12", 2),
        2,
        "still forwarding under the old configuration"
    );
}
