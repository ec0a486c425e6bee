//! SPEC 12 with Linux guests: dual-stack namespaces behind TAPs find the gateway by
//! router solicitation, pass duplicate address detection, resolve each other and the
//! gateway by neighbour discovery, and ping over IPv6 within a subnet and across
//! subnets; a spoofed IPv6 source and a rogue router advertisement are dropped.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::net::{keepalived_conf, row, Kind, Net, VIP};
use common::{lock, must};

/// The standard topology made dual stack: vpc a gets fd00:a::/48, its subnets web and
/// app a /64 each, their ports an IPv6 address each (the IPv4-only VPCs stay so).
fn dual_stack(c: String) -> String {
    let mut c = c.replace(
        "name = \"a\"\ncidrs = [\"10.0.0.0/16\"]",
        "name = \"a\"\ncidrs = [\"10.0.0.0/16\"]\nipv6_cidrs = [\"fd00:a::/48\"]",
    );
    for (s, cidr, six) in [("web", "10.0.1.0/24", 1), ("app", "10.0.2.0/24", 2)] {
        c = c.replace(
            &format!("name = \"{s}\"\nvpc = \"a\"\ncidr = \"{cidr}\""),
            &format!(
                "name = \"{s}\"\nvpc = \"a\"\ncidr = \"{cidr}\"\nipv6_cidr = \"fd00:a:0:{six}::/64\""
            ),
        );
    }
    for (ip4, ip6) in GUESTS6.iter().map(|(_, a, b)| (a, b)) {
        c = c.replace(
            &format!("ips = [\"{ip4}\"]"),
            &format!("ips = [\"{ip4}\"]\nipv6_ips = [\"{ip6}\"]"),
        );
    }
    c
}

/// (guest, IPv4, IPv6) of the dual-stack guests.
const GUESTS6: [(&str, &str, &str); 4] = [
    ("web1", "10.0.1.11", "fd00:a:0:1::11"),
    ("web2", "10.0.1.12", "fd00:a:0:1::12"),
    ("client", "10.0.1.13", "fd00:a:0:1::13"),
    ("app", "10.0.2.11", "fd00:a:0:2::11"),
];

/// The gateway's link-local address for the default gateway MAC 02:00:00:00:00:01.
const GW_LL: &str = "fe80::ff:fe00:1";

/// The standard network made dual stack (with `extra` configuration), the guests'
/// IPv6 up: DAD done and the default route learned from the switch's RA.
fn start6(kind: Kind, extra: &str) -> Net {
    start6_with(kind, extra, &dual_stack, &GUESTS6)
}

/// [`start6`] with the configuration passed through `edit` (it makes the network dual
/// stack) and the IPv6 of `guests` brought up.
fn start6_with(
    kind: Kind,
    extra: &str,
    edit: &dyn Fn(String) -> String,
    guests: &[(&str, &str, &str)],
) -> Net {
    let n = Net::start_edited(kind, extra, edit);
    for &(g, _, ip6) in guests {
        let (ok, out) = n.exec(
            g,
            &format!(
                "sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0 \
                 net.ipv6.conf.eth0.disable_ipv6=0 net.ipv6.conf.eth0.accept_ra=1 && \
                 ip -6 addr add {ip6}/64 dev eth0'"
            ),
        );
        assert!(ok, "{g}: {out}");
        if kind.veth() {
            // the switch segments TCPv4 only (SPEC 2.5): a veth guest segments its
            // IPv6 TCP itself (docs/config.md, "IPv6")
            let (ok, out) = n.exec(g, "ethtool -K eth0 tx-tcp6-segmentation off");
            assert!(ok, "{g}: {out}");
        }
    }
    // SPEC 12.3: duplicate address detection passes (the switch never answers a guest's
    // probe for its own address), and the router advertisement answering the guest's
    // solicitation makes the gateway's link-local address its default router
    let end = Instant::now() + Duration::from_secs(15);
    for &(g, _, _) in guests {
        loop {
            let (_, tentative) = n.exec(g, "ip -6 addr show dev eth0 tentative");
            let (_, dadfailed) = n.exec(g, "ip -6 addr show dev eth0 dadfailed");
            assert!(dadfailed.trim().is_empty(), "{g}: DAD failed: {dadfailed}");
            let (_, route) = n.exec(g, "ip -6 route show default");
            if tentative.trim().is_empty() && route.contains(GW_LL) {
                break;
            }
            if Instant::now() > end {
                let (_, addrs) = n.exec(g, "ip -6 addr");
                panic!(
                    "{g}: no default route via {GW_LL} from the RA, or addresses still \
                     tentative: {route} / {addrs}\n{}",
                    n.ctl("stats")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    n
}

over_backends!(dual_stack_suite {
    spec12_dual_stack_guests_ping6_within_and_across_subnets: Tap,
    af_packet_spec12_dual_stack_guests_ping6_within_and_across_subnets: AfPacket,
    af_xdp_spec12_dual_stack_guests_ping6_within_and_across_subnets: AfXdp,
});

fn dual_stack_suite(kind: Kind) {
    let _l = lock();
    let mut n = start6(kind, "");
    // SPEC 5.6, 12.5: the gateway answers, at ::1 of the subnet and at its link-local
    assert_eq!(n.ping("client", "fd00:a:0:1::1", 3), 3, "{}", n.log());
    assert_eq!(n.ping("client", &format!("{GW_LL}%eth0"), 2), 2);
    // SPEC 12.1, 4.2: within the subnet (ND answered by the switch, SPEC 12.3)
    assert_eq!(n.ping("client", "fd00:a:0:1::11", 3), 3);
    assert_eq!(n.ping("web2", "fd00:a:0:1::11", 3), 3);
    // SPEC 12.5: across subnets, routed by the gateway
    assert_eq!(n.ping("client", "fd00:a:0:2::11", 3), 3);
    assert_eq!(n.ping("app", "fd00:a:0:1::12", 3), 3);
    let (_, neigh) = n.exec("client", "ip -6 neigh show fd00:a:0:1::11");
    assert!(
        neigh.contains("02:00:00:00:01:01"),
        "the neighbour entry is web1's MAC: {neigh}"
    );
    // the IPv4 side is unchanged
    assert_eq!(n.ping("client", "10.0.2.11", 2), 2);
    // issue 20: the operator tools see the same (`ctl trace --flow`, `ctl neighbors`):
    // the echo the client just sent to app is routed to it (SPEC 12.5), an NS for the
    // gateway is answered to the client (12.3), one with a forged link-layer option
    // dropped (12.2)
    let t = n.ctl("trace client --flow icmp6,ip6.dst=fd00:a:0:2::11");
    assert_eq!(t["verdict"]["to"]["port"], "app", "{t}");
    let t = n.ctl("trace client --flow nd_ns,nd.target=fd00:a:0:1::1");
    assert_eq!(t["verdict"]["to"]["port"], "client", "{t}");
    let t = n.ctl("trace client --flow nd_ns,nd.target=fd00:a:0:1::1,nd.sll=02:00:00:00:01:01");
    assert_eq!(t["verdict"]["reason"], "nd_lladdr_mismatch", "{t}");
    let nb = n.ctl("neighbors");
    let has = |ip: &str, kind: &str| {
        nb.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["ip"] == ip && r["answers_for"]["kind"] == kind)
        })
    };
    for (ip, kind) in [
        ("fd00:a:0:1::1", "gateway"),
        (GW_LL, "gateway"),
        ("fd00:a:0:1::13", "port"),
        ("fd00:a:0:2::11", "port"),
        ("10.0.1.13", "port"),
    ] {
        assert!(has(ip, kind), "{ip} ({kind}) in neighbors: {nb}");
    }
    // TCP over IPv6, with the TAPs' checksum offload (SPEC 2.5): within the subnet and
    // routed
    for (to, ip) in [("web1", "fd00:a:0:1::11"), ("app", "fd00:a:0:2::11")] {
        let g = n.iperf("client", to, ip, 2);
        assert!(
            g.is_some_and(|g| g > 0.01),
            "TCP over IPv6 to {to}: {g:?}\n{}",
            n.ctl("stats")
        );
    }

    // SPEC 12.2: booting guests (DAD, router solicitation and MLD reports from `::`)
    // trip no spoofing counter; a source address the port does not hold is dropped
    // and counted
    let stats = n.ctl("stats");
    assert!(
        stats["drops"]["spoofed_src_ip6"].is_null(),
        "no spurious spoofing drops: {stats}"
    );
    let before = n.drops("client", "spoofed_src_ip6");
    let (ok, out) = n.exec(
        "client",
        "sh -c 'ip -6 addr add fd00:a:0:1::99/64 dev eth0 nodad && \
         ping -n -c 2 -i 0.2 -W 1 -I fd00:a:0:1::99 fd00:a:0:1::11'",
    );
    assert!(!ok, "a spoofed source must not be answered: {out}");
    assert!(
        n.drops("client", "spoofed_src_ip6") >= before + 2,
        "{}",
        n.ctl("stats")
    );
    n.exec("client", "ip -6 addr del fd00:a:0:1::99/64 dev eth0");

    // SPEC 12.3: a guest's router advertisement is dropped: web1 never learns it
    n.scapy(
        "client",
        "sendp(Ether(src='02:00:00:00:01:03', dst='33:33:00:00:00:01')/\
         IPv6(src='fe80::bad', dst='ff02::1', hlim=255)/\
         ICMPv6ND_RA(routerlifetime=1800)/\
         ICMPv6NDOptSrcLLAddr(lladdr='02:00:00:00:01:03'), iface='eth0')",
    );
    let end = Instant::now() + Duration::from_secs(3);
    while n.drops("client", "ra_from_port") < 1 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n.drops("client", "ra_from_port"), 1, "{}", n.ctl("stats"));
    let (_, routes) = n.exec("web1", "ip -6 route show default");
    assert!(!routes.contains("fe80::bad"), "{routes}");
}

const VIP6: &str = "fd00:a:0:1::100";

/// The IPv6 VIP `vip6`, bound to web1 and web2 (as the IPv4 VIP `vip`).
const VIP6_EXTRA: &str = "[[vips]]\nname = \"vip6\"\nsubnet = \"web\"\nip = \"fd00:a:0:1::100\"\nports = [\"web1\", \"web2\"]\n";

/// Guest `g` takes [`VIP6`] as a Linux host does without keepalived: the address added,
/// and the unsolicited NA its kernel sends once DAD passed (`ndisc_notify`).
fn hold_vip6(n: &Net, g: &str) {
    let (ok, out) = n.exec(
        g,
        &format!(
            "sh -c 'sysctl -qw net.ipv6.conf.eth0.ndisc_notify=1 && \
             ip -6 addr add {VIP6}/64 dev eth0'"
        ),
    );
    assert!(ok, "{g}: {out}");
}

/// SPEC 12.4: an IPv6 VIP moves with the unsolicited neighbour advertisement a guest's
/// kernel sends when the address is added and has passed DAD (`ndisc_notify`; as
/// keepalived's own NA on failover), delivered to the subnet (3.3): a client's
/// neighbour cache follows it.
#[test]
fn spec12_4_an_ipv6_vip_follows_unsolicited_neighbour_advertisements() {
    let _l = lock();
    let n = start6(Kind::Tap, VIP6_EXTRA);
    let owner = || {
        row(&n.ctl("vips"), "vip6")["owner"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let hold = |g: &str| hold_vip6(&n, g);
    let wait_owner = |who: &str| {
        let end = Instant::now() + Duration::from_secs(8);
        while owner() != who && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(owner(), who, "{}", n.ctl("vips"));
    };
    hold("web1");
    wait_owner("web1");
    assert_eq!(n.ping("client", VIP6, 3), 3, "to the VIP on web1");
    // failover: web1 lets go, web2 takes it
    n.exec("web1", &format!("ip -6 addr del {VIP6}/64 dev eth0"));
    hold("web2");
    wait_owner("web2");
    let (_, neigh) = n.exec("client", &format!("ip -6 neigh show {VIP6}"));
    assert_eq!(
        n.ping("client", VIP6, 3),
        3,
        "to the VIP on web2 (cache: {neigh})"
    );
    // routed from the other subnet too
    assert_eq!(n.ping("app", VIP6, 3), 3);
    // web2 answered: the echo replies came from it
    let (_, addrs) = n.exec("web2", "ip -6 addr show dev eth0");
    assert!(addrs.contains(VIP6), "{addrs}");
}

/// keepalived's configuration for a guest of the IPv6 VIP: an `vrrp_instance` whose
/// virtual address is [`VIP6`], which keepalived runs as VRRPv3 by itself (adverts to
/// ff02::12 from the guest's link-local address; `vrrp_version` and `native_ipv6` are
/// not needed) and announces, on becoming master, by unsolicited neighbour
/// advertisements (SPEC 12.4). With `v4`, the IPv4 VIP's VRRPv2 instance of
/// [`keepalived_conf`] too, both in one sync group so that they move together.
fn keepalived6_conf(name: &str, prio: u32, v4: bool) -> String {
    let six = format!(
        "vrrp_instance VI_6 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 61\n  \
         priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP6}/64 dev eth0\n  }}\n}}\n"
    );
    let c = keepalived_conf(name, prio);
    if v4 {
        c + &six + "vrrp_sync_group G {\n  group {\n    VI_1\n    VI_6\n  }\n}\n"
    } else {
        // its global_defs, without the IPv4 instance
        let globals = c.find("vrrp_instance").map_or(c.as_str(), |i| &c[..i]);
        globals.to_string() + &six
    }
}

over_backends!(keepalived6_suite {
    spec12_4_keepalived_ipv6_vip_failover_fresh_and_stale_neighbour_cache: Tap,
    af_packet_spec12_4_keepalived_ipv6_vip_failover_fresh_and_stale_neighbour_cache: AfPacket,
});

/// SPEC 12.4, 4.3: real keepalived moves an IPv6 VIP between two dual-stack guests; the
/// switch learns the new owner from its unsolicited NA, and a client pinging the VIP
/// (same subnet and routed) sees a bounded outage, also with a neighbour cache pinned
/// to the old owner's MAC (steered to the new owner).
fn keepalived6_suite(kind: Kind) {
    let _l = lock();
    let mut n = start6(kind, VIP6_EXTRA);
    let k1 = n.keepalived_with("web1", &keepalived6_conf("web1", 150, false));
    n.keepalived_with("web2", &keepalived6_conf("web2", 100, false));
    assert!(
        n.wait_owner_of("vip6", "web1", 20),
        "web1 becomes master and announces the IPv6 VIP\n{}\n{}",
        n.read("keepalived-web1.log"),
        n.ctl("stats")
    );
    assert_eq!(n.ping("client", VIP6, 3), 3, "to the VIP on web1");
    assert_eq!(n.ping("app", VIP6, 3), 3, "routed to the VIP on web1");

    // 1. graceful failover (SIGTERM): web2's unsolicited NA moves the VIP
    n.probe("client", VIP6, 6, "ping6-1.txt");
    n.probe("app", VIP6, 6, "ping6-1-app.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -TERM {k1}"));
    assert!(
        n.wait_owner_of("vip6", "web2", 10),
        "web2 takes over\n{}\n{}",
        n.read("keepalived-web2.log"),
        n.ctl("stats")
    );
    std::thread::sleep(Duration::from_secs(5));
    n.assert_outage("ping6-1.txt", &format!("{kind:?} IPv6 failover (SIGTERM)"));
    n.assert_outage(
        "ping6-1-app.txt",
        &format!("{kind:?} IPv6 failover (SIGTERM), routed"),
    );
    let first_us = row(&n.ctl("vips"), "vip6")["first_packet_us"].as_f64();
    eprintln!("{kind:?} IPv6 failover at the switch: {first_us:?} µs");
    assert!(
        first_us.is_some_and(|us| us > 0.0 && us < 50_000.0),
        "first packet to the new owner within 50 ms of its NA (pings every 10 ms): {first_us:?}"
    );
    let (_, neigh) = n.exec("client", &format!("ip -6 neigh show {VIP6}"));
    assert!(
        neigh.contains("02:00:00:00:01:02"),
        "the client's cache follows: {neigh}"
    );

    // 2. web1 comes back and preempts; then fails over again while the client's
    //    neighbour cache is pinned to web1's MAC: only VIP steering (4.3) helps
    let k1b = n.keepalived_with("web1", &keepalived6_conf("web1", 150, false));
    assert!(
        n.wait_owner_of("vip6", "web1", 20),
        "web1 preempts\n{}",
        n.read("keepalived-web1.log")
    );
    must(&format!(
        "ip -n {} -6 neigh replace {VIP6} lladdr 02:00:00:00:01:01 dev eth0 nud permanent",
        n.ns("client")
    ));
    n.probe("client", VIP6, 6, "ping6-2.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -TERM {k1b}"));
    assert!(n.wait_owner_of("vip6", "web2", 10), "web2 takes over again");
    std::thread::sleep(Duration::from_secs(5));
    n.assert_outage(
        "ping6-2.txt",
        &format!("{kind:?} IPv6 failover (SIGTERM, stale client cache)"),
    );
    let (_, neigh) = n.exec("client", &format!("ip -6 neigh show {VIP6}"));
    assert!(
        neigh.contains("02:00:00:00:01:01"),
        "the cache stayed stale: {neigh}"
    );
    // web1 let the VIP go: the replies came from web2
    let (_, addrs) = n.exec("web1", "ip -6 addr show dev eth0");
    assert!(!addrs.contains(VIP6), "{addrs}");
    assert!(
        n.moves_of("vip6") >= 3,
        "moves counted: {}",
        n.moves_of("vip6")
    );
}

/// SPEC 12.4, 3.1: one keepalived per guest carrying an IPv4 and an IPv6 VIP (a VRRPv2
/// and a VRRPv3 instance in a sync group): on failover both move, each learned from
/// its own announcement (GARP, unsolicited NA), and both are reachable after, within
/// the subnet and routed.
#[test]
fn spec12_4_keepalived_dual_stack_vips_fail_over_together() {
    let _l = lock();
    let mut n = start6(Kind::Tap, VIP6_EXTRA);
    let k1 = n.keepalived_with("web1", &keepalived6_conf("web1", 150, true));
    n.keepalived_with("web2", &keepalived6_conf("web2", 100, true));
    for vip in ["vip", "vip6"] {
        assert!(
            n.wait_owner_of(vip, "web1", 20),
            "web1 becomes master of {vip}\n{}\n{}",
            n.read("keepalived-web1.log"),
            n.ctl("vips")
        );
    }
    assert_eq!(n.ping("client", VIP, 3), 3);
    assert_eq!(n.ping("client", VIP6, 3), 3);
    n.probe("client", VIP, 6, "ping4.txt");
    n.probe("client", VIP6, 6, "ping6.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -TERM {k1}"));
    for vip in ["vip", "vip6"] {
        assert!(
            n.wait_owner_of(vip, "web2", 10),
            "web2 takes {vip} over\n{}\n{}",
            n.read("keepalived-web2.log"),
            n.ctl("vips")
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    n.assert_outage("ping4.txt", "dual-stack failover: the IPv4 VIP");
    n.assert_outage("ping6.txt", "dual-stack failover: the IPv6 VIP");
    for (from, to) in [
        ("client", VIP),
        ("client", VIP6),
        ("app", VIP),
        ("app", VIP6),
    ] {
        assert_eq!(n.ping(from, to, 3), 3, "{from} to {to} on web2");
    }
    let (_, addrs) = n.exec("web2", "ip addr show dev eth0");
    assert!(
        addrs.contains(VIP) && addrs.contains(VIP6),
        "web2 holds both: {addrs}"
    );
    for vip in ["vip", "vip6"] {
        assert!(n.moves_of(vip) >= 2, "{vip}: {}", n.ctl("vips"));
    }
}

/// SPEC 12.2, 2.3a, 12.4: neighbour discovery spoofed from a guest (the client, not
/// bound to the VIP) is dropped and counted with its reason, and the victims'
/// neighbour caches and the VIP's owner stay as they were: a link-layer option that is
/// not the Ethernet source (NA and NS), an unsolicited NA for an IPv6 VIP the port is
/// not bound to, an NA claiming another port's fixed IPv6 address.
#[test]
fn spec12_2_spoofed_nd_is_dropped_with_its_reason_victims_unaffected() {
    let _l = lock();
    let n = start6(Kind::Tap, VIP6_EXTRA);
    const WEB1: &str = "02:00:00:00:01:01";
    const CLIENT: &str = "02:00:00:00:01:03";
    hold_vip6(&n, "web1");
    assert!(n.wait_owner_of("vip6", "web1", 8), "{}", n.ctl("vips"));
    // web2 (the victim) caches web1, the VIP and the client
    for to in ["fd00:a:0:1::11", VIP6, "fd00:a:0:1::13"] {
        assert_eq!(n.ping("web2", to, 2), 2, "web2 to {to}");
    }
    let moves = n.moves_of("vip6");
    let na = |target: &str, lladdr: &str| {
        format!(
            "sendp(Ether(src='{CLIENT}', dst='33:33:00:00:00:01')/\
             IPv6(src='fd00:a:0:1::13', dst='ff02::1', hlim=255)/\
             ICMPv6ND_NA(tgt='{target}', R=0, S=0, O=1)/\
             ICMPv6NDOptDstLLAddr(lladdr='{lladdr}'), iface='eth0')"
        )
    };
    let ns_web1_lladdr = format!(
        "sendp(Ether(src='{CLIENT}', dst='33:33:ff:00:00:11')/\
         IPv6(src='fd00:a:0:1::13', dst='ff02::1:ff00:11', hlim=255)/\
         ICMPv6ND_NS(tgt='fd00:a:0:1::11')/\
         ICMPv6NDOptSrcLLAddr(lladdr='{WEB1}'), iface='eth0')"
    );
    let attacks = [
        // its own address at web1's MAC
        ("nd_lladdr_mismatch", na("fd00:a:0:1::13", WEB1)),
        ("nd_lladdr_mismatch", ns_web1_lladdr),
        // the VIP at its own MAC
        ("vip6_claim_not_bound", na(VIP6, CLIENT)),
        // web1's fixed address at its own MAC
        ("nd_claims_foreign_ip", na("fd00:a:0:1::11", CLIENT)),
    ];
    for (reason, pkt) in attacks {
        let before = n.drops("client", reason);
        n.scapy("client", &pkt);
        let end = Instant::now() + Duration::from_secs(3);
        while n.drops("client", reason) <= before && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            n.drops("client", reason),
            before + 1,
            "{reason}: {pkt}\n{}",
            n.ctl("stats")
        );
    }
    // the victims: the VIP's owner did not change, web2's cache was not poisoned, and
    // its traffic flows
    assert_eq!(n.owner_of("vip6").as_deref(), Some("web1"));
    assert_eq!(n.moves_of("vip6"), moves, "no move: {}", n.ctl("vips"));
    for (ip, mac) in [
        ("fd00:a:0:1::11", WEB1),
        (VIP6, WEB1),
        ("fd00:a:0:1::13", CLIENT),
    ] {
        let (_, neigh) = n.exec("web2", &format!("ip -6 neigh show {ip}"));
        assert!(neigh.contains(mac), "web2's entry for {ip}: {neigh}");
    }
    for to in ["fd00:a:0:1::11", VIP6] {
        assert_eq!(n.ping("web2", to, 3), 3, "web2 to {to}");
        assert_eq!(n.ping("app", to, 3), 3, "app to {to}");
    }
    let (_, neigh) = n.exec("client", &format!("ip -6 neigh show {VIP6}"));
    assert!(!neigh.contains(CLIENT), "{neigh}");
}

/// (guest, IPv4, IPv6) of the peered VPCs' guests made dual stack.
const PEERED6: [(&str, &str, &str); 2] = [
    ("db", "10.1.1.11", "fd00:b:0:1::11"),
    ("far", "10.2.1.11", "fd00:c:0:1::11"),
];

/// [`dual_stack`] with VPCs b (fd00:b::/48, db fd00:b:0:1::/64) and c (fd00:c::/48,
/// far fd00:c:0:1::/64) dual stack too.
fn peered_dual_stack(c: String) -> String {
    let mut c = dual_stack(c);
    for (vpc, cidr, six) in [
        ("b", "10.1.0.0/16", "fd00:b::/48"),
        ("c", "10.2.0.0/16", "fd00:c::/48"),
    ] {
        c = c.replace(
            &format!("name = \"{vpc}\"\ncidrs = [\"{cidr}\"]"),
            &format!("name = \"{vpc}\"\ncidrs = [\"{cidr}\"]\nipv6_cidrs = [\"{six}\"]"),
        );
    }
    for (s, vpc, cidr, six) in [
        ("db", "b", "10.1.1.0/24", "fd00:b:0:1::/64"),
        ("far", "c", "10.2.1.0/24", "fd00:c:0:1::/64"),
    ] {
        c = c.replace(
            &format!("name = \"{s}\"\nvpc = \"{vpc}\"\ncidr = \"{cidr}\""),
            &format!("name = \"{s}\"\nvpc = \"{vpc}\"\ncidr = \"{cidr}\"\nipv6_cidr = \"{six}\""),
        );
    }
    for (_, ip4, ip6) in PEERED6 {
        c = c.replace(
            &format!("ips = [\"{ip4}\"]"),
            &format!("ips = [\"{ip4}\"]\nipv6_ips = [\"{ip6}\"]"),
        );
    }
    c
}

/// IPv6 routes over the peerings a-b and b-c (as the IPv4 ones), and c's prefix sent
/// by a into a-b, which b must not pass on (SPEC 5.3).
const PEERING6_ROUTES: &str = r#"
[[routes]]
vpc = "a"
destination = "fd00:b::/48"
peering = "ab"

[[routes]]
vpc = "b"
destination = "fd00:a::/48"
peering = "ab"

[[routes]]
vpc = "b"
destination = "fd00:c::/48"
peering = "bc"

[[routes]]
vpc = "c"
destination = "fd00:b::/48"
peering = "bc"

[[routes]]
vpc = "a"
destination = "fd00:c::/48"
peering = "ab"
"#;

/// SPEC 12.5, 5.3: IPv6 routed across VPC peerings both ways, and not through one.
#[test]
fn spec12_5_ping6_across_a_peering_not_through_it() {
    let _l = lock();
    let guests: Vec<_> = GUESTS6.iter().chain(PEERED6.iter()).copied().collect();
    let n = start6_with(Kind::Tap, PEERING6_ROUTES, &peered_dual_stack, &guests);
    assert_eq!(n.ping("client", "fd00:b:0:1::11", 3), 3, "a to b");
    assert_eq!(
        n.ping("app", "fd00:b:0:1::11", 3),
        3,
        "a's other subnet to b"
    );
    assert_eq!(n.ping("db", "fd00:a:0:1::13", 3), 3, "b to a");
    assert_eq!(n.ping("db", "fd00:c:0:1::11", 3), 3, "b to c");
    assert_eq!(n.ping("far", "fd00:b:0:1::11", 3), 3, "c to b");
    // the echo crossed one router: the hop limit went down by one
    let (_, out) = n.exec("client", "ping -n -c 1 -W 1 fd00:b:0:1::11");
    assert!(out.contains("ttl=63"), "{out}");
    // SPEC 5.3: b does not pass a's traffic on to c, nor c's back
    assert_eq!(
        n.ping("client", "fd00:c:0:1::11", 3),
        0,
        "no transit through b"
    );
    assert_eq!(n.ping("far", "fd00:a:0:1::13", 2), 0, "no transit back");
    // the IPv4 side is unchanged
    assert_eq!(n.ping("client", "10.1.1.11", 2), 2);
}
