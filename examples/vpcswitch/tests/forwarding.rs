//! Forwarding (SPEC 4, 5) over every backend: ping and TCP within a subnet, across
//! subnets and a peering, no transit, TTL expiry, every ctl query.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::net::{Kind, Net};
use common::{lock, sh};

over_backends!(basic_suite {
    spec4_5_ping_and_tcp_within_subnet_across_subnets_and_peering: Tap,
    af_packet_spec4_5_ping_and_tcp_within_subnet_across_subnets_and_peering: AfPacket,
    af_packet_ring_spec4_5_ping_and_tcp_within_subnet_across_subnets_and_peering: AfPacketRing,
    af_xdp_spec4_5_ping_and_tcp_within_subnet_across_subnets_and_peering: AfXdp,
});

/// Ping and TCP within a subnet, across subnets and a peering, no transit, TTL expiry,
/// every ctl query: the same for each backend.
fn basic_suite(kind: Kind) {
    let _l = lock();
    let mut n = Net::start_kind(kind, "");
    // AF_PACKET receives through mmapped rings exactly when asked to (a ring costs
    // latency: it must not be on by default)
    if matches!(kind, Kind::AfPacket | Kind::AfPacketRing) {
        let pid = n.switch.as_ref().map(Child::id).unwrap_or(0);
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let rings = maps.lines().filter(|l| l.contains("socket:[")).count();
        assert_eq!(
            rings > 0,
            kind == Kind::AfPacketRing,
            "{kind:?}: {rings} socket mappings"
        );
    }
    assert_eq!(
        n.ping("client", "10.0.1.1", 3),
        3,
        "SPEC 5.6 gateway answers ping\n{}",
        n.log()
    );
    assert_eq!(n.ping("client", "10.0.1.11", 3), 3, "within the subnet");
    assert_eq!(n.ping("client", "10.0.2.11", 3), 3, "across subnets");
    assert_eq!(n.ping("client", "10.1.1.11", 3), 3, "across the peering");
    assert_eq!(
        n.ping("db", "10.2.1.11", 3),
        3,
        "b to c across their peering"
    );
    assert_eq!(
        n.ping("client", "10.2.1.11", 3),
        0,
        "SPEC 5.3: no transit through b"
    );
    assert_eq!(
        n.ping("far", "10.0.1.13", 2),
        0,
        "SPEC 5.3: no transit back"
    );
    let mut rates = HashMap::new();
    for (to, ip) in [
        ("web1", "10.0.1.11"),
        ("app", "10.0.2.11"),
        ("db", "10.1.1.11"),
    ] {
        let g = n
            .iperf("client", to, ip, 3)
            .unwrap_or_else(|| panic!("iperf3 to {to} failed\n{}", n.log()));
        assert!(g > 0.05, "TCP to {to}: {g} Gbit/s");
        rates.insert(to, g);
    }
    eprintln!("{kind:?}: iperf3 Gbit/s: {rates:?}");
    // offloads (TAP vnet header, AF_PACKET PACKET_VNET_HDR): the client's TCP segments
    // crossed as super-frames (> 1514 bytes)
    let ports = n.ctl("ports");
    let client = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "client"))
        .cloned()
        .unwrap_or(Value::Null);
    let avg = client["rx_bytes"].as_f64().unwrap_or(0.0)
        / client["rx_packets"].as_f64().unwrap_or(1.0).max(1.0);
    if kind == Kind::AfXdp {
        // AF_XDP has no offload metadata: plain frames only (the guest has tx off)
        assert!(avg <= 1514.0, "AF_XDP frames fit a UMEM frame: {client}");
    } else {
        assert!(
            avg > 1514.0,
            "average frame from the client {avg:.0} bytes: no TSO super-frames\n{client}"
        );
    }
    // SPEC 5.5: TTL expiry answered with time exceeded from the gateway
    let (_, out) = n.exec("client", "ping -n -c 1 -t 1 -W 1 10.0.2.11");
    assert!(
        out.contains("Time to live exceeded") && out.contains("10.0.1.1"),
        "{out}"
    );
    // the control interface: every query, text and JSON
    let ports = n.ctl("ports");
    assert_eq!(ports.as_array().map(|a| a.len()), Some(7), "{ports}");
    assert!(n
        .ctl("vips")
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v["name"] == "vip" && v["owner"].is_null())));
    assert!(n.ctl("neighbors").as_array().is_some_and(|a| a
        .iter()
        .any(|x| x["ip"] == "10.0.1.1" && x["mac"] == "02:00:00:00:00:01")));
    assert!(n
        .ctl("routes")
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["destination"] == "10.1.0.0/16"
            && x["target"] == serde_json::json!({"kind": "peering", "peering": "ab"}))));
    let arp =
        "ffffffffffff020000000103080600010800060400010200000001030a00010d0000000000000a000101";
    let t = n.ctl(&format!("trace client {arp}"));
    assert!(
        t["description"]
            .as_str()
            .is_some_and(|v| v.contains("forward to port client")),
        "{t}"
    );
    let (ok, text) = sh(&format!(
        "{} ctl -s {} stats",
        env!("CARGO_BIN_EXE_vpcswitch"),
        n.socket.display()
    ));
    assert!(
        ok && text.contains("DROP REASON") && text.contains("generation 1"),
        "{text}"
    );
    // garbage, oversized and bad requests get an error, and the switch lives on
    for req in [
        "not json\n".to_string(),
        "{\"cmd\": [\"nope\"]}\n".to_string(),
        "x".repeat(70_000),
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
        use std::io::{Read, Write};
        let _ = s.write_all(req.as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(resp.contains("\"ok\":false"), "{resp}");
    }
    // a silent client does not hold others up, and concurrent queries all succeed
    let _silent = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let sock = n.socket.clone();
            std::thread::spawn(move || {
                Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
                    .args(["ctl", "--json", "-s"])
                    .arg(&sock)
                    .arg("stats")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            })
        })
        .collect();
    assert!(
        handles.into_iter().all(|h| h.join().unwrap_or(false)),
        "concurrent queries"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "not serialised behind the silent client: {:?}",
        t0.elapsed()
    );
    assert_eq!(n.ping("client", "10.0.1.1", 1), 1, "still forwarding");
    assert!(n.stop_switch(), "clean stop\n{}", n.log());
    let (_, links) = sh(&format!("ip -n {} link show eth0", n.ns("client")));
    assert!(
        links.contains("does not exist") || links.is_empty() || !links.contains("eth0:"),
        "TAP removed with the switch: {links}"
    );
}
