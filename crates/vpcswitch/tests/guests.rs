//! Integration with real TCP/IP stacks: smoltcp guests on in-memory ports, the switch on
//! its own worker threads. Each test names the SPEC rules it exercises.

use std::net::Ipv4Addr;

use vpcswitch::core::DropReason;
use vpcswitch::model::{Config, ConfigBuilder, MacAddr};
use vpcswitch::runtime::{memory_backends, Switch};
use vpcswitch::sim::{Guest, GuestId, World};
use vpcswitch::wire::build;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

const GUESTS: &[(&str, &str, &str, &str, &str)] = &[
    // name, subnet, mac, ip, gateway
    ("web1", "a1", "02:00:00:00:01:01", "10.0.1.11", "10.0.1.1"),
    ("web2", "a1", "02:00:00:00:01:02", "10.0.1.12", "10.0.1.1"),
    ("client", "a1", "02:00:00:00:01:03", "10.0.1.13", "10.0.1.1"),
    ("app", "a2", "02:00:00:00:02:01", "10.0.2.11", "10.0.2.1"),
    ("db", "b1", "02:00:00:00:03:01", "10.1.1.11", "10.1.1.1"),
    ("far", "c1", "02:00:00:00:04:01", "10.2.1.11", "10.2.1.1"),
];

fn config(workers: usize) -> Config {
    builder(workers).build().unwrap()
}

fn builder(workers: usize) -> ConfigBuilder {
    let mut b = ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .vpc("c", &["10.2.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .subnet("c1", "c", "10.2.1.0/24");
    for (n, s, m, i, _) in GUESTS {
        b = b.port(n, s, m, &[i]);
    }
    b.vip("vip", "a1", "10.0.1.100", &["web1", "web2"])
        .peering("ab", "a", "b")
        .peering("bc", "b", "c")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_peering("b", "10.2.0.0/16", "bc")
        .route_via_peering("c", "10.1.0.0/16", "bc")
        // a sends c's prefix into the a-b peering: b must not carry it on (SPEC 5.3)
        .route_via_peering("a", "10.2.0.0/16", "ab")
        .route_via_peering("c", "10.0.0.0/16", "bc")
}

struct Env {
    sw: Switch,
    world: World,
    /// one simulated world at a time: a world's clock steps every 200 µs of real time
    /// and expects the switch's workers to keep up, which parallel tests (each with
    /// its busy-polling workers, on 2 CPUs) do not let them do (seen failing in CI)
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn env(workers: usize) -> Env {
    env_with(config(workers))
}

fn env_with(cfg: Config) -> Env {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (backends, mut ports) = memory_backends(&cfg, 4096);
    let sw = Switch::start(&cfg, backends).unwrap();
    let mut world = World::new();
    for (n, _, m, i, gw) in GUESTS {
        world.add(Guest::new(
            n,
            ports.remove(*n).unwrap(),
            mac(m),
            ip(i),
            24,
            ip(gw),
        ));
    }
    if cfg.uplink.is_some() {
        // the outside network: a host that is also the uplink's next hop
        world.add(Guest::new(
            "internet",
            ports.remove("uplink").unwrap(),
            mac("02:00:00:00:ee:01"),
            ip("203.0.113.1"),
            24,
            ip("203.0.113.254"),
        ));
    }
    Env {
        sw,
        world,
        _serial: serial,
    }
}

fn id(name: &str) -> GuestId {
    GUESTS.iter().position(|g| g.0 == name).unwrap()
}

#[test]
fn spec3_4_spec5_6_arp_and_ping_to_the_gateway() {
    let mut e = env(1);
    assert_eq!(e.world.ping(id("client"), ip("10.0.1.1"), 3, 200), 3);
    // another subnet's gateway of the same VPC answers too
    assert_eq!(e.world.ping(id("client"), ip("10.0.2.1"), 2, 200), 2);
    let s = e.sw.stats();
    assert!(
        s.port("client").unwrap().tx_packets >= 5,
        "ARP reply and echo replies"
    );
}

#[test]
fn spec4_2_spec5_tcp_within_subnet_across_subnets_and_across_a_peering() {
    let mut e = env(2);
    for (server, dst) in [
        ("web1", "10.0.1.11"),
        ("app", "10.0.2.11"),
        ("db", "10.1.1.11"),
    ] {
        let h = e.world.listen(id(server), 8080);
        let got = e.world.tcp_transfer(
            id("client"),
            id(server),
            h,
            std::net::SocketAddrV4::new(ip(dst), 8080),
            200_000,
            4000,
        );
        assert_eq!(got, 200_000, "TCP client -> {server} ({dst})");
        // and back the other way
        let h2 = e.world.listen(id("client"), 9090);
        let got = e.world.tcp_transfer(
            id(server),
            id("client"),
            h2,
            std::net::SocketAddrV4::new(ip("10.0.1.13"), 9090),
            50_000,
            4000,
        );
        assert_eq!(got, 50_000, "TCP {server} -> client");
    }
    assert_eq!(
        e.world.ping(id("db"), ip("10.0.2.11"), 2, 200),
        2,
        "peer to the other subnet of a"
    );
}

#[test]
fn spec5_3_nothing_across_a_chain_of_two_peerings() {
    let mut e = env(1);
    // b reaches both
    assert_eq!(e.world.ping(id("db"), ip("10.2.1.11"), 1, 200), 1);
    assert_eq!(e.world.ping(id("db"), ip("10.0.1.13"), 1, 200), 1);
    // a -> c and c -> a do not pass through b
    assert_eq!(e.world.ping(id("client"), ip("10.2.1.11"), 2, 100), 0);
    assert_eq!(e.world.ping(id("far"), ip("10.0.1.13"), 2, 100), 0);
    let h = e.world.listen(id("far"), 8080);
    assert_eq!(
        e.world.tcp_transfer(
            id("client"),
            id("far"),
            h,
            std::net::SocketAddrV4::new(ip("10.2.1.11"), 8080),
            1000,
            200
        ),
        0
    );
    assert!(e.sw.stats().dropped(DropReason::NoSuchHost) >= 4);
}

#[test]
fn spec3_1_spec4_3_vip_failover_by_garp_with_traffic_continuing() {
    let mut e = env(2);
    let vip = ip("10.0.1.100");
    // web1 is master: takes the VIP and announces it
    e.world.guests[id("web1")].add_ip(vip);
    e.world.guests[id("web1")].send_raw(&build::garp(mac("02:00:00:00:01:01"), vip));
    assert_eq!(e.world.ping(id("client"), vip, 3, 200), 3);
    assert_eq!(
        e.world.ping(id("app"), vip, 2, 1000),
        2,
        "routed to the owner (SPEC 5.2)"
    );
    assert_eq!(e.sw.snapshot().vip_owner_name("vip"), Some("web1"));
    let h = e.world.listen(id("web1"), 80);
    assert_eq!(
        e.world.tcp_transfer(
            id("client"),
            id("web1"),
            h,
            std::net::SocketAddrV4::new(vip, 80),
            10_000,
            2000
        ),
        10_000
    );

    // failover: web1 dies (gives up the VIP), web2 takes over and announces
    e.world.guests[id("web1")].remove_ip(vip);
    e.world.guests[id("web2")].add_ip(vip);
    e.world.guests[id("web2")].send_raw(&build::garp(mac("02:00:00:00:01:02"), vip));
    // the client's ARP cache may still say web1: steering or the GARP gets it to web2
    assert_eq!(e.world.ping(id("client"), vip, 5, 1000), 5);
    assert_eq!(e.world.ping(id("app"), vip, 2, 1000), 2);
    assert_eq!(e.sw.snapshot().vip_owner_name("vip"), Some("web2"));
    let h2 = e.world.listen(id("web2"), 80);
    assert_eq!(
        e.world.tcp_transfer(
            id("client"),
            id("web2"),
            h2,
            std::net::SocketAddrV4::new(vip, 80),
            10_000,
            2000
        ),
        10_000
    );
    let snap = e.sw.snapshot();
    assert_eq!(snap.vip_cell(snap.vip_id("vip").unwrap()).moves(), 2);
}

#[test]
fn spec4_3_stale_arp_cache_is_steered_to_the_new_owner() {
    let mut e = env(1);
    let vip = ip("10.0.1.100");
    e.world.guests[id("web1")].add_ip(vip);
    e.world.guests[id("web1")].send_raw(&build::garp(mac("02:00:00:00:01:01"), vip));
    assert_eq!(e.world.ping(id("client"), vip, 1, 200), 1);
    // web2 claims the VIP by an ARP reply addressed to web1 only: the client never
    // sees it, so its cache still maps the VIP to web1's MAC
    e.world.guests[id("web1")].remove_ip(vip);
    e.world.guests[id("web2")].add_ip(vip);
    e.world.guests[id("web2")].send_raw(&build::arp_reply(
        mac("02:00:00:00:01:01"),
        ip("10.0.1.11"),
        mac("02:00:00:00:01:02"),
        vip,
    ));
    for _ in 0..5 {
        e.world.step();
    }
    assert_eq!(e.sw.snapshot().vip_owner_name("vip"), Some("web2"));
    assert_eq!(
        e.world.ping(id("client"), vip, 3, 200),
        3,
        "steered to web2"
    );
    assert!(e.sw.stats().port("web2").unwrap().tx_packets >= 3);
}

#[test]
fn spec2_spoofed_frames_are_dropped_and_the_victim_keeps_its_traffic() {
    let mut e = env(1);
    let c = id("client");
    let cm = mac("02:00:00:00:01:03");
    let w1 = mac("02:00:00:00:01:01");
    let w2 = mac("02:00:00:00:01:02");
    // another port's MAC
    e.world.guests[c].send_raw(&build::udp(
        build::Ends {
            dst: w2,
            src: w1,
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        b"x",
    ));
    // another port's IP
    e.world.guests[c].send_raw(&build::udp(
        build::Ends {
            dst: w2,
            src: cm,
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        b"x",
    ));
    // ARP reply claiming web1's IP
    e.world.guests[c].send_raw(&build::arp_reply(w2, ip("10.0.1.12"), cm, ip("10.0.1.11")));
    // GARP for a VIP the client is not bound to
    e.world.guests[c].send_raw(&build::garp(cm, ip("10.0.1.100")));
    // a frame to an unknown MAC
    e.world.guests[c].send_raw(&build::udp(
        build::Ends {
            dst: mac("02:42:00:00:00:01"),
            src: cm,
            sip: ip("10.0.1.13"),
            dip: ip("10.0.1.12"),
        },
        64,
        1,
        2,
        b"x",
    ));
    // the switch's worker threads run on their own: step until the five frames are
    // through (bounded; ten steps lost the race on a loaded machine once)
    let reasons = [
        DropReason::SpoofedSrcMac,
        DropReason::SpoofedSrcIp,
        DropReason::ArpClaimsForeignIp,
        DropReason::VipClaimNotBound,
        DropReason::UnknownUnicast,
    ];
    for _ in 0..5000 {
        e.world.step();
        let s = e.sw.stats();
        let all = s
            .port("client")
            .is_some_and(|p| reasons.iter().all(|r| p.dropped(*r) > 0));
        if all {
            break;
        }
    }
    let s = e.sw.stats();
    let p = s.port("client").unwrap();
    for r in reasons {
        assert_eq!(p.dropped(r), 1, "{r}: {:?}", p.drops);
    }
    assert_eq!(e.sw.snapshot().vip_owner_name("vip"), None);
    // the victims are unaffected
    assert_eq!(e.world.ping(id("web2"), ip("10.0.1.11"), 3, 200), 3);
    let h = e.world.listen(id("web1"), 80);
    assert_eq!(
        e.world.tcp_transfer(
            id("web2"),
            id("web1"),
            h,
            std::net::SocketAddrV4::new(ip("10.0.1.11"), 80),
            20_000,
            2000
        ),
        20_000
    );
}

/// Every guest of [`GUESTS`] plus an "internet" host on the uplink (203.0.113.1, the next
/// hop). EIPs: 203.0.113.10 for the VIP (web1/web2), 203.0.113.11 for app. The VPC
/// routes 0.0.0.0/0 to the uplink.
fn eip_env(workers: usize) -> Env {
    let cfg = builder(workers)
        .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
        .route_via_uplink("a", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "vip")
        .eip_for_port("203.0.113.11", "app")
        .build()
        .unwrap();
    env_with(cfg)
}

const INTERNET: GuestId = GUESTS.len();

#[test]
fn spec7_the_internet_reaches_a_vip_through_its_eip_across_failover() {
    let mut e = eip_env(2);
    let (vip, eip) = (ip("10.0.1.100"), ip("203.0.113.10"));
    // ping a port's EIP: ARP for the EIP answered by the uplink, NAT both ways
    assert_eq!(e.world.ping(INTERNET, ip("203.0.113.11"), 3, 400), 3);

    e.world.guests[id("web1")].add_ip(vip);
    e.world.guests[id("web1")].send_raw(&build::garp(mac("02:00:00:00:01:01"), vip));
    assert_eq!(e.world.ping(INTERNET, eip, 3, 400), 3);
    let h = e.world.listen(id("web1"), 80);
    assert_eq!(
        e.world.tcp_transfer(
            INTERNET,
            id("web1"),
            h,
            std::net::SocketAddrV4::new(eip, 80),
            100_000,
            4000
        ),
        100_000,
        "TCP to the VIP's EIP, served by web1"
    );

    // failover: web2 takes the VIP; the same EIP now reaches web2
    e.world.guests[id("web1")].remove_ip(vip);
    e.world.guests[id("web2")].add_ip(vip);
    e.world.guests[id("web2")].send_raw(&build::garp(mac("02:00:00:00:01:02"), vip));
    let h2 = e.world.listen(id("web2"), 80);
    assert_eq!(
        e.world.tcp_transfer(
            INTERNET,
            id("web2"),
            h2,
            std::net::SocketAddrV4::new(eip, 80),
            100_000,
            4000
        ),
        100_000,
        "TCP to the same EIP, now served by web2"
    );
    assert_eq!(e.world.ping(INTERNET, eip, 2, 400), 2);
    assert_eq!(e.sw.snapshot().vip_owner_name("vip"), Some("web2"));

    // a guest with an EIP reaches the outside; one without never leaves (SPEC 7.2)
    assert_eq!(e.world.ping(id("app"), ip("203.0.113.1"), 2, 400), 2);
    assert_eq!(e.world.ping(id("client"), ip("203.0.113.1"), 2, 200), 0);
    let s = e.sw.stats();
    assert!(s.dropped(DropReason::NoEip) >= 2, "client's pings: no EIP");
    assert_eq!(s.dropped(DropReason::BadIpChecksum), 0);
    // vpc b has no route out, and a's uplink is not reachable through the peering
    assert_eq!(e.world.ping(id("db"), ip("203.0.113.1"), 1, 200), 0);
}
