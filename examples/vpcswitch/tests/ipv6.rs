//! SPEC 12 with Linux guests: dual-stack namespaces behind TAPs find the gateway by
//! router solicitation, pass duplicate address detection, resolve each other and the
//! gateway by neighbour discovery, and ping over IPv6 within a subnet and across
//! subnets; a spoofed IPv6 source and a rogue router advertisement are dropped.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::lock;
use common::net::{row, Kind, Net};

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
    let n = Net::start_edited(kind, extra, &dual_stack);
    for (g, _, ip6) in GUESTS6 {
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
    for (g, _, _) in GUESTS6 {
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

/// SPEC 12.4: an IPv6 VIP moves with the unsolicited neighbour advertisement a guest's
/// kernel sends when the address is added and has passed DAD (`ndisc_notify`; as
/// keepalived's own NA on failover), delivered to the subnet (3.3): a client's
/// neighbour cache follows it.
#[test]
fn spec12_4_an_ipv6_vip_follows_unsolicited_neighbour_advertisements() {
    let _l = lock();
    let n = start6(Kind::Tap, &format!(
        "[[vips]]\nname = \"vip6\"\nsubnet = \"web\"\nip = \"{VIP6}\"\nports = [\"web1\", \"web2\"]\n"
    ));
    let owner = || {
        row(&n.ctl("vips"), "vip6")["owner"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let hold = |g: &str| {
        let (ok, out) = n.exec(
            g,
            &format!(
                "sh -c 'sysctl -qw net.ipv6.conf.eth0.ndisc_notify=1 && \
                 ip -6 addr add {VIP6}/64 dev eth0'"
            ),
        );
        assert!(ok, "{g}: {out}");
    };
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
