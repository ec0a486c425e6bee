//! Observability of a running switch: Prometheus metrics that move with traffic,
//! capture of a port's frames in each direction, drop sampling (issue 8).

mod common;
use common::*;

use std::time::Duration;

use vpcswitch_backend::memory::mem_port;
use vpcswitch_core::DropReason;
use vpcswitch_model::{Config, ConfigBuilder};
use vpcswitch_runtime::metrics::prometheus;
use vpcswitch_runtime::observe::Direction;
use vpcswitch_runtime::{memory_backends, Switch};
use vpcswitch_wire::build;

fn cfg() -> Config {
    two_ports_with_a_vip(2)
}

fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(10), Duration::from_millis(2), what, f)
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn good() -> Vec<u8> {
    build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:02"),
            src: mac("02:00:00:00:01:01"),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        b"hello",
    )
}

fn spoofed() -> Vec<u8> {
    build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:02"),
            src: mac("02:00:00:00:01:01"),
            sip: ip("10.0.1.99"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        b"spoof",
    )
}

#[test]
fn metrics_move_with_traffic() {
    let c = cfg();
    let (b, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    let m0 = prometheus(&sw, 0);
    assert_eq!(
        value(&m0, "vpcswitch_port_rx_packets_total{port=\"p1\"}"),
        Some(0.0)
    );
    assert_eq!(value(&m0, "vpcswitch_config_generation"), Some(1.0));
    assert_eq!(value(&m0, "vpcswitch_port_up{port=\"p1\"}"), Some(1.0));
    assert!(m0.contains("# TYPE vpcswitch_worker_burst_size histogram"));
    for _ in 0..10 {
        g["p1"].send(&good());
    }
    for _ in 0..3 {
        g["p1"].send(&spoofed());
    }
    g["p2"].send(&build::garp(mac("02:00:00:00:01:02"), ip("10.0.1.100")));
    eventually("traffic counted", || {
        sw.stats().port("p1").unwrap().rx_packets == 13
    });
    let m = prometheus(&sw, 2);
    assert_eq!(
        value(&m, "vpcswitch_port_rx_packets_total{port=\"p1\"}"),
        Some(13.0)
    );
    assert_eq!(
        value(&m, "vpcswitch_port_tx_packets_total{port=\"p2\"}"),
        Some(10.0)
    );
    assert_eq!(
        value(
            &m,
            "vpcswitch_port_drops_total{port=\"p1\",reason=\"spoofed_src_ip\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&m, "vpcswitch_drops_total{reason=\"spoofed_src_ip\"}"),
        Some(3.0)
    );
    assert_eq!(
        value(&m, "vpcswitch_vip_owner{vip=\"v\",owner=\"p2\"}"),
        Some(1.0)
    );
    assert_eq!(value(&m, "vpcswitch_vip_moves_total{vip=\"v\"}"), Some(1.0));
    // a point in time, unix seconds (not "seconds since")
    let moved = value(&m, "vpcswitch_vip_last_move_timestamp_seconds{vip=\"v\"}").unwrap_or(0.0);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        moved > wall - 600.0 && moved <= wall + 1.0,
        "{moved} vs {wall}"
    );
    // every drop reason has a series from the start (zero included)
    for r in DropReason::ALL {
        assert!(
            value(
                &m,
                &format!("vpcswitch_drops_total{{reason=\"{}\"}}", r.name())
            )
            .is_some(),
            "{} pre-zeroed",
            r.name()
        );
    }
    assert_eq!(
        value(
            &m,
            &format!(
                "vpcswitch_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "vpcswitch_port_info{port=\"p1\",backend=\"memory\",interface=\"\",host=\"\",local=\"true\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "vpcswitch_config_reload_failures_total"),
        Some(2.0)
    );
    let busy: f64 = (0..2)
        .filter_map(|w| {
            value(
                &m,
                &format!("vpcswitch_worker_loops_total{{worker=\"{w}\",state=\"busy\"}}"),
            )
        })
        .sum();
    assert!(busy >= 1.0);
    let secs: f64 = (0..2)
        .flat_map(|w| ["busy", "idle"].map(move |st| (w, st)))
        .filter_map(|(w, st)| {
            value(
                &m,
                &format!("vpcswitch_worker_seconds_total{{worker=\"{w}\",state=\"{st}\"}}"),
            )
        })
        .sum();
    assert!(secs > 0.0, "worker time accounted");
    let bursts: f64 = (0..2)
        .filter_map(|w| {
            value(
                &m,
                &format!("vpcswitch_worker_burst_size_count{{worker=\"{w}\"}}"),
            )
        })
        .sum();
    assert!(bursts >= 1.0);
    // every line is a comment or `name{labels} value`
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            l.starts_with("vpcswitch_") && l.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
            "{l}"
        );
    }
}

#[test]
fn capture_sees_each_direction_and_stops() {
    let c = cfg();
    let (b, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    let p2 = sw.port_identity("p2").unwrap();
    let obs = sw.observe();
    assert!(obs.start_capture(p2, false, true));
    for _ in 0..5 {
        g["p1"].send(&good());
    }
    // p2's own sends are rx on p2, not captured
    g["p2"].send(&build::garp(mac("02:00:00:00:01:02"), ip("10.0.1.12")));
    let mut got = Vec::new();
    eventually("5 tx frames captured", || {
        obs.take_frames(p2, 100, &mut got);
        got.len() >= 5
    });
    std::thread::sleep(Duration::from_millis(50));
    obs.take_frames(p2, 100, &mut got);
    assert_eq!(got.len(), 5);
    assert!(got
        .iter()
        .all(|f| f.direction == Direction::Tx && f.data == good()));
    for f in got.drain(..) {
        obs.recycle(f);
    }
    obs.stop_capture(p2);
    g["p1"].send(&good());
    eventually("forwarded", || {
        sw.stats().port("p2").unwrap().tx_packets == 6
    });
    obs.take_frames(p2, 100, &mut got);
    assert!(got.is_empty(), "nothing captured after stop");
}

#[test]
fn drop_sampling_only_while_asked_and_rate_limited() {
    let c = cfg();
    let (b, g) = memory_backends(&c, 4096);
    let sw = Switch::start(&c, b).unwrap();
    let obs = sw.observe();
    g["p1"].send(&spoofed());
    eventually("dropped", || {
        sw.stats().dropped(DropReason::SpoofedSrcIp) == 1
    });
    let mut d = Vec::new();
    obs.take_drops(&mut d);
    assert!(d.is_empty(), "no sampling unless asked");
    obs.sample_drops_until(sw.now_ns() + 5_000_000_000);
    for _ in 0..1000 {
        while !g["p1"].send(&spoofed()) {
            std::thread::yield_now();
        }
    }
    eventually("1000 more dropped", || {
        sw.stats().dropped(DropReason::SpoofedSrcIp) == 1001
    });
    obs.take_drops(&mut d);
    assert!(!d.is_empty());
    // at most the per-worker rate, whatever the drop rate
    assert!(d.len() <= 2 * 100 * 2, "{} samples", d.len());
    assert!(d
        .iter()
        .all(|s| s.reason == DropReason::SpoofedSrcIp
            && s.head[..s.head_len] == spoofed()[..s.head_len]));
    assert!(obs.lost() > 0, "the rest counted as lost");
}

/// p1 and `second` (p2 at first, then p3: the next tenant, which takes p2's id).
fn tenants(second: &str, mac2: &str) -> Config {
    ConfigBuilder::new()
        .workers(2)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port(second, "a1", mac2, &["10.0.1.12"])
        .build()
        .unwrap()
}

fn udp(src_mac: &str, dst_mac: &str, src: &str, dst: &str, tag: &[u8]) -> Vec<u8> {
    build::udp(
        build::Ends {
            dst: mac(dst_mac),
            src: mac(src_mac),
            sip: ip(src),
            dip: ip(dst),
        },
        64,
        1,
        2,
        tag,
    )
}

fn has(frame: &[u8], tag: &[u8]) -> bool {
    frame.windows(tag.len()).any(|w| w == tag)
}

/// Issue 15 item 10 (SPEC 8.1: a reload is one configuration, then the next): a capture
/// is bound to the port it was started on. A reload that deletes p2 and adds p3, which
/// takes p2's id, ends p2's capture, and none of p3's frames (rx or tx) reach it.
/// Without the identity (epoch) checks, the capture kept running on the id and got
/// every one of p3's frames.
#[test]
fn spec8_1_a_capture_ends_with_its_port_and_never_sees_the_next_tenant() {
    let c = tenants("p2", "02:00:00:00:01:02");
    let (b, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    let obs = sw.observe();
    let old = sw.port_identity("p2").unwrap();
    assert!(obs.start_capture(old, true, true));
    g["p1"].send(&udp(
        "02:00:00:00:01:01",
        "02:00:00:00:01:02",
        "10.0.1.11",
        "10.0.1.12",
        b"to p2",
    ));
    eventually("p2 received", || g["p2"].recv().is_some());

    let next = tenants("p3", "02:00:00:00:01:03");
    let (p3, g3) = mem_port("p3", 2, 1024);
    sw.reload(&next, vec![("p3".into(), Box::new(p3))]).unwrap();
    let new = sw.port_identity("p3").unwrap();
    assert_eq!(new.port, old.port, "the test needs p3 to take p2's id");
    assert_ne!(new, old);
    assert!(!obs.is_current(old), "p2's capture has ended");
    assert!(sw.port_name(old).is_none());
    assert_eq!(sw.port_name(new).as_deref(), Some("p3"));
    // the old capture cannot come back on the new port
    assert!(!obs.start_capture(old, true, true));

    for _ in 0..10 {
        g3.send(&udp(
            "02:00:00:00:01:03",
            "02:00:00:00:01:01",
            "10.0.1.12",
            "10.0.1.11",
            b"from p3",
        ));
        g["p1"].send(&udp(
            "02:00:00:00:01:01",
            "02:00:00:00:01:03",
            "10.0.1.11",
            "10.0.1.12",
            b"to p3",
        ));
    }
    let mut delivered = 0;
    eventually("p3's traffic forwarded", || {
        delivered += g3.drain().len();
        delivered == 10 && sw.stats().port("p3").is_some_and(|p| p.rx_packets == 10)
    });
    let mut got = Vec::new();
    obs.take_frames(old, usize::MAX, &mut got);
    let tx_before = got.iter().filter(|f| f.direction == Direction::Tx).count();
    assert!(
        got.iter()
            .all(|f| !has(&f.data, b"from p3") && !has(&f.data, b"to p3")),
        "the deleted port's capture got the next tenant's frames: {} records",
        got.len()
    );
    assert_eq!(
        tx_before, 1,
        "what p2 received before the reload stays its own"
    );
    // and a capture of p3 sees p3's frames only
    assert!(obs.start_capture(new, true, false));
    g3.send(&udp(
        "02:00:00:00:01:03",
        "02:00:00:00:01:01",
        "10.0.1.12",
        "10.0.1.11",
        b"from p3",
    ));
    let mut mine = Vec::new();
    eventually("p3 captured", || {
        obs.take_frames(new, 10, &mut mine);
        !mine.is_empty()
    });
    assert!(mine.iter().all(|f| has(&f.data, b"from p3")));
}

/// Issue 15 item 10: drop samples carry the identity of the port they were charged to,
/// so a follower filtering by p2 never sees the drops of p3, the next tenant on p2's id.
#[test]
fn spec8_1_drop_samples_of_the_next_tenant_are_not_the_deleted_ports() {
    let c = tenants("p2", "02:00:00:00:01:02");
    let (b, _g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    let obs = sw.observe();
    let old = sw.port_identity("p2").unwrap();
    let next = tenants("p3", "02:00:00:00:01:03");
    let (p3, g3) = mem_port("p3", 2, 1024);
    sw.reload(&next, vec![("p3".into(), Box::new(p3))]).unwrap();
    let new = sw.port_identity("p3").unwrap();
    assert_eq!(new.port, old.port, "the test needs p3 to take p2's id");
    obs.sample_drops_until(sw.now_ns() + 5_000_000_000);
    for _ in 0..5 {
        // spoofed source: dropped on p3
        g3.send(&udp(
            "02:00:00:00:01:03",
            "02:00:00:00:01:01",
            "10.0.1.99",
            "10.0.1.11",
            b"spoof",
        ));
    }
    eventually("dropped", || {
        sw.stats().dropped(DropReason::SpoofedSrcIp) == 5
    });
    let mut d = Vec::new();
    eventually("sampled", || {
        obs.take_drops(&mut d);
        d.len() == 5
    });
    assert!(
        d.iter().all(|s| s.identity() == new && s.identity() != old),
        "p3's drops are p3's, never the deleted p2's"
    );
    assert!(d
        .iter()
        .all(|s| sw.port_name(s.identity()).as_deref() == Some("p3")));
}

/// The next tenant of a port id starts with its own counters: p3, given the id of p2
/// (deleted by the reload), shows only its own traffic, not p2's (found while binding
/// captures to identities: the counters are kept per id).
#[test]
fn the_next_tenant_of_a_port_id_starts_with_zero_counters() {
    let c = tenants("p2", "02:00:00:00:01:02");
    let (b, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    for _ in 0..5 {
        g["p1"].send(&udp(
            "02:00:00:00:01:01",
            "02:00:00:00:01:02",
            "10.0.1.11",
            "10.0.1.12",
            b"to p2",
        ));
    }
    eventually("p2 counted", || {
        sw.stats().port("p2").is_some_and(|p| p.tx_packets == 5)
    });
    let old = sw.port_identity("p2").unwrap();
    let next = tenants("p3", "02:00:00:00:01:03");
    let (p3, g3) = mem_port("p3", 2, 1024);
    sw.reload(&next, vec![("p3".into(), Box::new(p3))]).unwrap();
    assert_eq!(
        sw.port_identity("p3").unwrap().port,
        old.port,
        "p3 takes p2's id"
    );
    let s = sw.stats().port("p3").cloned().unwrap();
    assert_eq!(
        (s.rx_packets, s.tx_packets, s.tx_bytes, s.drops.len()),
        (0, 0, 0, 0),
        "p3 inherited p2's counters: {s:?}"
    );
    g["p1"].send(&udp(
        "02:00:00:00:01:01",
        "02:00:00:00:01:03",
        "10.0.1.11",
        "10.0.1.12",
        b"to p3",
    ));
    eventually("p3 got its frame", || g3.recv().is_some());
    eventually("p3's own count", || {
        sw.stats().port("p3").is_some_and(|p| p.tx_packets == 1)
    });
}
