//! Many hosts (SPEC 10): three switch hosts, each a network namespace running its own
//! `vpcswitch run --host hN` on one shared network file, on an underlay bridge; guests
//! on AF_PACKET veths (MTU 1450; one test with TAP ports instead), a Linux `vxlan` + bridge "foreign" host, a rogue
//! endpoint sending scapy-built VXLAN. See `common/hosts.rs` for the layout.
//!
//! One fleet per test; every wait is bounded. Needs root and the tools `scripts/test.sh`
//! installs (iproute2, iputils-ping, iperf3, keepalived, tcpdump, python3-scapy, curl).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::hosts::{Fleet, FleetBuilder, GUEST_MTU, ROGUE_IP, ROGUE_MAC};
use common::net::{garp, metric, row, VIP};
use common::{lock, must, sh};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// Waits until file `name` of the fleet's directory contains `what`.
fn wait_file(f: &Fleet, name: &str, what: &str, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f.read(name).contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts `tcpdump -n -l -i eth0 FILTER` in guest `g`, into `tcpdump-G.txt`; returns
/// when it listens.
fn capture(f: &mut Fleet, g: &str, filter: &str) {
    let out = format!("tcpdump-{g}.txt");
    f.spawn(g, &format!("tcpdump -n -l -i eth0 {filter}"), &out);
    assert!(
        wait_file(f, &out, "listening on", 5),
        "tcpdump in {g}: {}",
        f.read(&out)
    );
}

/// Lines tcpdump printed for packets (its banner excluded).
fn captured(f: &Fleet, g: &str) -> Vec<String> {
    f.read(&format!("tcpdump-{g}.txt"))
        .lines()
        .filter(|l| l.contains(" IP ") || l.contains(" ARP"))
        .map(String::from)
        .collect()
}

/// Waits for the generation of host `h`'s switch to pass `g0`.
fn wait_generation(f: &Fleet, h: &str, g0: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let g = f.ctl_on(h, "stats")["generation"].as_u64().unwrap_or(0);
        if g > g0 || Instant::now() > end {
            return g;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SPEC 10.1 and the binary's flags: each switch runs in its host's namespace as the
/// host `--host` names (its own control socket and metrics, one shared file), and a
/// reload, by `ctl reload` and by SIGHUP, keeps that host (without it the file, which
/// names no local host, would be refused). With the network from etcd (SPEC 11.2) the
/// reloads read the store again, and an apply of a changed network reaches every
/// switch (its store revision, a new generation), each still its own host.
fn each_switch_is_its_host_across_reloads(f: &Fleet) {
    for h in HOSTS {
        let me = f.host_row_on(h, h);
        assert_eq!(me["local"], true, "{h} is local on its own switch: {me}");
        for other in HOSTS.iter().filter(|o| **o != h) {
            assert_eq!(f.host_row_on(h, other)["local"], false, "{other} on {h}");
        }
        let m = f.scrape_on(h);
        assert!(
            metric(&m, "vpcswitch_config_generation") >= 1.0,
            "{h} serves its metrics: {m}"
        );
    }
    let g0 = f.ctl_on("h2", "stats")["generation"].as_u64().unwrap_or(0);
    // a refused reload fails ctl, and so the test, with the reason
    let r = f.ctl_on("h2", "reload");
    assert_eq!(r["generation"], g0 + 1, "ctl reload on h2: {r}");
    let g3 = f.ctl_on("h3", "stats")["generation"].as_u64().unwrap_or(0);
    must(&format!("kill -HUP {}", f.switch_pid("h3")));
    assert_eq!(
        wait_generation(f, "h3", g3),
        g3 + 1,
        "SIGHUP on h3 reloads: {}\n{}",
        f.ctl_on("h3", "stats")["last_reload_error"],
        f.log("h3")
    );
    for h in ["h2", "h3"] {
        assert_eq!(f.host_row_on(h, h)["local"], true, "{h} after reload");
    }
    if f.etcd.is_none() {
        return;
    }
    let generation = |h: &str| f.ctl_on(h, "stats")["generation"].as_u64().unwrap_or(0);
    let r0 = f.store_revision_on("h1");
    let gens: Vec<u64> = HOSTS.iter().map(|h| generation(h)).collect();
    // a change every host applies whole, without touching forwarding
    let text = f
        .network_text()
        .replacen("[switch]\n", "[switch]\nicmp_errors_per_sec = 99\n", 1);
    let r1 = f.apply_text("network-changed.toml", &text);
    assert!(r1 > r0, "a new revision: {r1} after {r0}");
    assert!(
        f.wait_revision(&HOSTS, r1, 5).is_some(),
        "every switch runs revision {r1}\n{}",
        f.logs()
    );
    for (h, g) in HOSTS.iter().zip(gens) {
        assert!(generation(h) > g, "the apply was a reload on {h}");
        assert_eq!(f.host_row_on(h, h)["local"], true, "{h} after the apply");
    }
}

/// The fleet's tunnels on `hosts` sent TCP as UDP GSO trains and joined received TCP
/// segments back into super-frames (`ctl hosts`: the offload counters), both at least
/// once: the overlay's fast path was taken, not only its frame-by-frame fallback.
fn assert_tcp_offload(f: &Fleet, hosts: &[&str]) {
    let (mut trains, mut joined) = (0, 0);
    for h in hosts {
        let t = f.ctl_on(h, "hosts")["tunnel"].clone();
        trains += t["tx_trains"].as_u64().unwrap_or(0);
        joined += t["rx_joined_segments"].as_u64().unwrap_or(0);
    }
    assert!(
        trains > 0 && joined > 0,
        "TCP across hosts took no GSO train ({trains}) or joined no segment ({joined})"
    );
}

/// SPEC 10.1, 10.2 with guests on TAP ports (the switch's own devices, as a VM's):
/// ping and TCP within a subnet, across subnets and across the a-b peering between two
/// hosts, TCP carried as GSO trains and joined back into super-frames for the TAPs.
#[test]
fn spec10_2_tap_guests_ping_and_tcp_across_hosts() {
    let _l = lock();
    tap_guests_ping_and_tcp_across_hosts(tap_fleet().start());
}

/// The same with the network from etcd (SPEC 11): every switch runs `run --etcd` and
/// makes its TAPs from the store's network.
#[test]
fn spec11_tap_guests_ping_and_tcp_across_hosts_with_the_network_from_etcd() {
    let _l = lock();
    tap_guests_ping_and_tcp_across_hosts(tap_fleet().etcd(3).start());
}

/// Two hosts, their guests on TAP ports.
fn tap_fleet() -> FleetBuilder {
    Fleet::builder()
        .host("h1", &["web1", "app", "lvs"])
        .host("h2", &["web2", "db"])
        .tap()
}

fn tap_guests_ping_and_tcp_across_hosts(mut f: Fleet) {
    assert_eq!(
        f.ping("web1", "10.0.1.12", 3),
        3,
        "h1 -> h2 within web (TAP)\n{}",
        f.logs()
    );
    assert_eq!(
        f.ping("app", "10.0.1.12", 3),
        3,
        "h1 -> h2 across subnets (TAP)"
    );
    assert_eq!(
        f.ping("app", "10.1.1.11", 3),
        3,
        "h1 -> h2 across peering a-b (TAP)"
    );
    for (from, to, ip) in [("web1", "web2", "10.0.1.12"), ("db", "app", "10.0.2.11")] {
        let g = f.iperf(from, to, ip, 2);
        eprintln!("TCP {from} -> {to} (TAP): {g:?} Gbit/s");
        assert!(
            g.is_some_and(|g| g > 0.0),
            "iperf3 {from} -> {to}: {g:?}\n{}",
            f.logs()
        );
    }
    assert_tcp_offload(&f, &["h1", "h2"]);
}

/// SPEC 10.1, 10.2, 5.3: ping and TCP between guests on different hosts within a
/// subnet, across subnets (routed at the ingress host), across the a-b and b-c
/// peerings whose VPCs live on other hosts; no transit over two peerings. At the end
/// the fleet's namespaces and switches are gone.
#[test]
fn spec10_2_ping_and_tcp_across_hosts_subnets_and_peerings_no_transit() {
    let _l = lock();
    ping_and_tcp_across_hosts(Fleet::builder().standard().start());
}

/// The same with the network from etcd (SPEC 11): the reloads read the store, an apply
/// of a changed network reaches every switch; the store's namespace and members are
/// gone at the end too.
#[test]
fn spec11_ping_and_tcp_across_hosts_subnets_and_peerings_no_transit_with_the_network_from_etcd() {
    let _l = lock();
    ping_and_tcp_across_hosts(Fleet::builder().standard().etcd(3).start());
}

fn ping_and_tcp_across_hosts(mut f: Fleet) {
    each_switch_is_its_host_across_reloads(&f);
    // (client h3, web1 h1, web2 h2, app h1, db h2, far h3)
    assert_eq!(
        f.ping("client", "10.0.1.1", 2),
        2,
        "SPEC 5.6 on h3\n{}",
        f.logs()
    );
    assert_eq!(
        f.ping("client", "10.0.1.11", 3),
        3,
        "h3 -> h1 within web\n{}",
        f.logs()
    );
    assert_eq!(f.ping("client", "10.0.1.12", 3), 3, "h3 -> h2 within web");
    assert_eq!(f.ping("web2", "10.0.1.11", 3), 3, "h2 -> h1 within web");
    assert_eq!(
        f.ping("client", "10.0.2.11", 3),
        3,
        "h3 -> h1 across subnets"
    );
    assert_eq!(f.ping("app", "10.0.1.12", 3), 3, "h1 -> h2 across subnets");
    assert_eq!(
        f.ping("client", "10.1.1.11", 3),
        3,
        "h3 -> h2 across peering a-b"
    );
    assert_eq!(
        f.ping("db", "10.0.2.11", 3),
        3,
        "h2 -> h1 across peering a-b"
    );
    assert_eq!(
        f.ping("db", "10.2.1.11", 3),
        3,
        "h2 -> h3 across peering b-c"
    );
    assert_eq!(
        f.ping("far", "10.1.1.11", 3),
        3,
        "h3 -> h2 across peering b-c"
    );
    assert_eq!(
        f.ping("web1", "10.2.1.11", 2),
        0,
        "SPEC 5.3: no transit a -> b -> c (h1 to h3)"
    );
    assert_eq!(
        f.ping("far", "10.0.1.11", 2),
        0,
        "SPEC 5.3: no transit back"
    );
    for (from, to, ip, what) in [
        ("client", "web1", "10.0.1.11", "within web, h3 -> h1"),
        ("app", "web2", "10.0.1.12", "across subnets, h1 -> h2"),
        ("db", "client", "10.0.1.13", "across peering a-b, h2 -> h3"),
    ] {
        let g = f.iperf(from, to, ip, 2);
        eprintln!("TCP {what}: {g:?} Gbit/s");
        assert!(
            g.is_some_and(|g| g > 0.0),
            "iperf3 {what}: {g:?}\n{}",
            f.logs()
        );
    }
    // every switch sent and received through its tunnels
    for h in HOSTS {
        let rows = f.ctl_on(h, "hosts")["hosts"].clone();
        let (rx, tx): (u64, u64) = rows
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["rx_packets"].as_u64().unwrap_or(0),
                    r["tx_packets"].as_u64().unwrap_or(0),
                )
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert!(rx > 0 && tx > 0, "{h}'s tunnels: {rows}");
    }
    // the TCP crossed as GSO trains and was joined back for the receiving guests
    assert_tcp_offload(&f, &HOSTS);
    // clean teardown: no namespace, no switch left
    let tag = f.tag.clone();
    let pids: Vec<u32> = HOSTS.iter().map(|h| f.switch_pid(h)).collect();
    drop(f);
    let (_, ns) = sh("ip netns list");
    assert!(!ns.contains(&tag), "namespaces left: {ns}");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "switch {pid} still runs"
        );
    }
}

/// SPEC 10.5, 4.3 across hosts: keepalived master web1 on h1, backup web2 on h2, the
/// client on h3 pinging the VIP every 10 ms. The master stopped (SIGTERM), then the
/// master's whole host killed (its switch by PID, its underlay link down) while the
/// client's ARP cache is pinned to the dead master's MAC: each outage stays within the
/// single-host bound (tests/failover.rs), every live host learns the new owner, and
/// the stale cache still reaches it.
#[test]
fn spec10_5_keepalived_failover_across_hosts_and_a_dead_host() {
    let _l = lock();
    keepalived_failover_across_hosts(Fleet::builder().standard().start());
}

/// The same with the network from etcd (SPEC 11): every switch runs `run --etcd`, the
/// claims are also published to the store (SPEC 11.4) and the dead host's lease
/// expires (SPEC 11.3) while the failover happens; each outage stays within the same
/// bound.
#[test]
fn spec11_keepalived_failover_across_hosts_and_a_dead_host_with_the_network_from_etcd() {
    let _l = lock();
    keepalived_failover_across_hosts(Fleet::builder().standard().etcd(3).start());
}

fn keepalived_failover_across_hosts(mut f: Fleet) {
    let k1 = f.keepalived("web1", 150);
    f.keepalived("web2", 100);
    assert!(
        f.wait_owner_on(&HOSTS, "web1", 20),
        "web1 becomes master; every host learns it\n{}\n{}",
        f.read("keepalived-web1.log"),
        f.logs()
    );
    assert_eq!(f.ping("client", VIP, 3), 3);

    // 1. graceful (SIGTERM): the backup's GARP crosses from h2 to h1 and h3
    f.probe("client", VIP, 6, "ping1.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -TERM {k1}"));
    assert!(
        f.wait_owner_on(&HOSTS, "web2", 10),
        "web2 takes over on every host\n{}",
        f.read("keepalived-web2.log")
    );
    std::thread::sleep(Duration::from_secs(5));
    f.assert_outage("ping1.txt", "failover across hosts (SIGTERM)");
    let first_us = row(&f.ctl_on("h3", "vips"), "vip")["first_packet_us"].as_f64();
    eprintln!("failover at the client's host h3: {first_us:?} µs from GARP to the first packet");
    assert!(
        first_us.is_some_and(|us| us > 0.0 && us < 50_000.0),
        "h3 sends to the new owner within 50 ms of its replicated GARP: {first_us:?}"
    );

    // 2. web1 preempts again; then its whole host dies while the client's cache is
    //    pinned to web1's MAC: only VIP steering at h3 (SPEC 4.3) reaches web2 on h2
    f.keepalived("web1", 150);
    assert!(f.wait_owner_on(&HOSTS, "web1", 20), "web1 preempts");
    must(&format!(
        "ip -n {} neigh replace {VIP} lladdr 02:00:00:00:01:01 dev eth0 nud permanent",
        f.ns("client")
    ));
    f.probe("client", VIP, 8, "ping2.txt");
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.stop_switch("h1", true), "h1's switch killed");
    f.cut_host("h1");
    assert!(
        f.wait_owner_on(&["h2", "h3"], "web2", 10),
        "web2 takes over from a dead host\n{}",
        f.logs()
    );
    std::thread::sleep(Duration::from_secs(7));
    f.assert_outage(
        "ping2.txt",
        "failover across hosts (master's host dead, stale client cache)",
    );
    let (_, neigh) = f.exec("client", &format!("ip neigh show {VIP}"));
    assert!(
        neigh.contains("02:00:00:00:01:01"),
        "the cache stayed stale: {neigh}"
    );
}

/// SPEC 10.5, 3.6 across hosts: web1 (h1) and web2 (h2) claim the VIP in turn; every
/// host follows each claim (the latest wins everywhere, each counted as a move), and
/// traffic routed from h1 goes to the latest claimer on h2.
#[test]
fn spec10_5_split_brain_across_hosts_latest_claim_wins_on_every_host() {
    let _l = lock();
    split_brain_across_hosts(Fleet::builder().standard().start());
}

/// The same with the network from etcd: every claim is also published to the store
/// (SPEC 11.4) while the next one is made; when the claims stop, the store holds the
/// latest (web2, published by h2) on every host, and the store's owners, arriving
/// after the datapath's, revert no host to an older claim.
#[test]
fn spec11_split_brain_across_hosts_latest_claim_wins_on_every_host_with_the_network_from_etcd() {
    let _l = lock();
    split_brain_across_hosts(Fleet::builder().standard().etcd(3).start());
}

fn split_brain_across_hosts(f: Fleet) {
    for g in ["web1", "web2"] {
        must(&format!("ip -n {} addr add {VIP}/24 dev eth0", f.ns(g)));
    }
    for i in 0..6 {
        let (g, mac) = if i % 2 == 0 {
            ("web1", "02:00:00:00:01:01")
        } else {
            ("web2", "02:00:00:00:01:02")
        };
        f.scapy(g, &garp(mac));
        assert!(
            f.wait_owner_on(&HOSTS, g, 3),
            "claim {i} by {g} seen on every host\n{}",
            f.logs()
        );
    }
    for h in HOSTS {
        let moves = row(&f.ctl_on(h, "vips"), "vip")["moves"]
            .as_u64()
            .unwrap_or(0);
        assert!(moves >= 6, "{h} counted every claim as a move: {moves}");
    }
    if f.etcd.is_some() {
        assert!(
            f.wait_store_owner(&HOSTS, "web2", 5),
            "the store holds the latest claim on every host\n{}",
            f.logs()
        );
        let (_, host, _) = f.store_owner_on("h1").unwrap();
        assert_eq!(host, "h2", "published by the claiming port's host");
        std::thread::sleep(Duration::from_millis(1500));
        for h in HOSTS {
            assert_eq!(
                f.vip_owner_on(h, "vip").as_deref(),
                Some("web2"),
                "nothing reverts on {h}\n{}",
                f.logs()
            );
        }
    }
    // app on h1 reaches the VIP on web2 (h2), none of it to web1
    let (w1, w2) = (f.tx_on("h1", "web1"), f.tx_on("h2", "web2"));
    assert_eq!(f.ping("app", VIP, 5), 5);
    assert!(f.tx_on("h2", "web2") >= w2 + 5, "echoes went to web2 on h2");
    assert_eq!(f.tx_on("h1", "web1"), w1, "none to web1");
}

/// The LVS-DR director (SPEC 6.2) as a user-space program: it claims the service VIP
/// (GARP) and forwards each client packet unchanged to a backend's MAC, a new flow to
/// the next backend in turn.
const DIRECTOR_PY: &str = r#"
import itertools, time
lvs, svc = '02:00:00:00:01:04', '10.0.1.200'
rr = itertools.cycle(['02:00:00:00:01:22', '02:00:00:00:01:23'])
flows = {}
out = conf.L2socket(iface='eth0')
def fwd(p):
    if TCP not in p:
        return
    k = (p[IP].src, p[TCP].sport)
    if k not in flows:
        flows[k] = next(rr)
    out.send(Ether(src=lvs, dst=flows[k]) / p[IP])
t = AsyncSniffer(iface='eth0', filter='ether dst %s and dst host %s and tcp' % (lvs, svc), prn=fwd, store=False)
t.start()
time.sleep(1)
sendp(Ether(src=lvs, dst='ff:ff:ff:ff:ff:ff') / ARP(op=1, hwsrc=lvs, psrc=svc, hwdst='00:00:00:00:00:00', pdst=svc), iface='eth0')
print('ready', flush=True)
time.sleep(60)
"#;

/// SPEC 6.2 across hosts: the director (lvs, h1) and two backends (be2 on h2, be3 on
/// h3; the service address on their loopback, src/dst check off) on different hosts;
/// the client (h3) fetches from the service address over HTTP; each connection goes
/// client -> director -> backend through two tunnels, the answer straight back from the
/// backend; both backends answer.
#[test]
fn spec6_2_lvs_direct_routing_with_director_and_backends_on_different_hosts() {
    let _l = lock();
    lvs_direct_routing_across_hosts(lvs_fleet().start());
}

/// The same with the network from etcd (SPEC 11); the director's claim of svc is also
/// published through the store.
#[test]
fn spec11_lvs_direct_routing_across_hosts_with_the_network_from_etcd() {
    let _l = lock();
    lvs_direct_routing_across_hosts(lvs_fleet().etcd(3).start());
}

/// The standard fleet with the LVS backends be2 on h2 and be3 on h3.
fn lvs_fleet() -> FleetBuilder {
    Fleet::builder()
        .standard()
        .with_guests("h2", &["be2"])
        .with_guests("h3", &["be3"])
}

fn lvs_direct_routing_across_hosts(mut f: Fleet) {
    for be in ["be2", "be3"] {
        must(&format!(
            "ip netns exec {} sh -c 'ip addr add 10.0.1.200/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0'",
            f.ns(be)
        ));
        f.http_server(be);
    }
    let script = f.file("director.py");
    std::fs::write(
        &script,
        format!("from scapy.all import *\nconf.verb = 0\n{DIRECTOR_PY}"),
    )
    .expect("script");
    f.spawn(
        "lvs",
        &format!("/usr/bin/python3 -u {}", script.display()),
        "director.txt",
    );
    assert!(
        wait_file(&f, "director.txt", "ready", 15),
        "director: {}",
        f.read("director.txt")
    );
    let end = Instant::now() + Duration::from_secs(5);
    while !HOSTS
        .iter()
        .all(|h| f.vip_owner_on(h, "svc").as_deref() == Some("lvs"))
    {
        assert!(
            Instant::now() < end,
            "every host learns the director owns svc\n{}",
            f.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut seen = vec![];
    for i in 0..4 {
        let body = f.http_get("client", "10.0.1.200");
        assert!(
            matches!(body.as_deref(), Some("be2") | Some("be3")),
            "request {i} through the director: {body:?}\n{}\n{}",
            f.read("director.txt"),
            f.logs()
        );
        seen.push(body.unwrap_or_default());
    }
    assert!(
        seen.iter().any(|b| b == "be2") && seen.iter().any(|b| b == "be3"),
        "both backends answered: {seen:?}"
    );
    // the answers came straight from the backends: nothing from them went to the
    // director
    assert_eq!(f.drops_on("h2", "be2", "dst_check"), 0);
}

/// SPEC 10.3: VXLAN from a rogue endpoint on the underlay (scapy), each packet one way a
/// host could be lied to: an unknown sender address; a known host's address (spoofed)
/// with a VNI that is no VPC's; an inner source that is a port of another host; a VIP
/// claim (GARP) for a port not on the sending host, and one from a port there that is
/// not bound; a "routed" frame from an address the sending host's ports cannot send
/// from; one routed to a port of another VPC; one to be passed on to a third host
/// (transit); one to the gateway MAC (the sender routes its own ports' traffic); one
/// with a source IP its port may not use (SPEC 2.3 holds through a tunnel). Each is
/// dropped with its reason where it arrives (ctl stats and metrics), nothing reaches a
/// guest (captures in the targets, delivery counters), no VIP owner is learned; a
/// legitimate packet afterwards is captured, so the captures worked.
#[test]
fn spec10_3_spoofed_tunnel_packets_are_dropped_with_their_reason() {
    let _l = lock();
    spoofed_tunnel_packets_are_dropped(Fleet::builder().standard().rogue().start());
}

/// The same with the network from etcd (SPEC 11): the hosts a switch trusts, and how
/// far, come from the store; the refused claims are not published either.
#[test]
fn spec11_spoofed_tunnel_packets_are_dropped_with_the_network_from_etcd() {
    let _l = lock();
    spoofed_tunnel_packets_are_dropped(Fleet::builder().standard().rogue().etcd(3).start());
}

fn spoofed_tunnel_packets_are_dropped(mut f: Fleet) {
    assert_eq!(
        f.ping("client", "10.0.1.11", 2),
        2,
        "the fleet forwards\n{}",
        f.logs()
    );
    for g in ["client", "web1", "app", "far"] {
        capture(&mut f, g, "udp port 7777");
    }
    let reasons = [
        ("h1", "tunnel_unknown_host"),
        ("h1", "tunnel_unknown_vni"),
        ("h3", "tunnel_source"),
        ("h2", "tunnel_source"),
        ("h2", "vip_claim_not_bound"),
        ("h3", "tunnel_src_ip"),
        ("h3", "tunnel_dst"),
        ("h3", "tunnel_transit"),
        ("h3", "tunnel_to_gateway"),
        ("h3", "spoofed_src_ip"),
    ];
    let before: Vec<u64> = reasons
        .iter()
        .map(|(h, r)| f.total_drops_on(h, r))
        .collect();
    let delivered = f.delivered();
    let (h1, h2, h3) = (f.host("h1"), f.host("h2"), f.host("h3"));
    let vni_a = f.vni("a");
    let unknown_vni = (1..)
        .find(|v| !f.vnis.iter().any(|x| x.1 == *v))
        .unwrap_or(1);
    let gw = &f.gateway_mac;
    let (web1, web2, client, far) = (
        "02:00:00:00:01:01",
        "02:00:00:00:01:02",
        "02:00:00:00:01:03",
        "02:00:00:00:04:01",
    );
    let script = format!(
        "def vx(to_mac, to_ip, src_ip, vni, inner):\n\
         \x20   sendp(Ether(src='{ROGUE_MAC}', dst=to_mac) / IP(src=src_ip, dst=to_ip) / UDP(sport=50001, dport=4789) / VXLAN(vni=vni, flags=0x08) / inner, iface=iface)\n\
         def udp(src, dst, sip, dip):\n\
         \x20   return Ether(src=src, dst=dst) / IP(src=sip, dst=dip) / UDP(sport=7777, dport=7777) / Raw(b'spoof')\n\
         def garp(mac):\n\
         \x20   return Ether(src=mac, dst='ff:ff:ff:ff:ff:ff') / ARP(op=1, hwsrc=mac, psrc='{VIP}', hwdst='00:00:00:00:00:00', pdst='{VIP}')\n\
         h1, h2, h3 = ('{}', '{}'), ('{}', '{}'), ('{}', '{}')\n\
         # unknown sender (the rogue's own address)\n\
         vx(*h1, '{ROGUE_IP}', {vni_a}, udp('{web2}', '{web1}', '10.0.1.12', '10.0.1.11'))\n\
         # h2's address, a VNI that is no VPC's\n\
         vx(*h1, h2[1], {unknown_vni}, udp('{web2}', '{web1}', '10.0.1.12', '10.0.1.11'))\n\
         # h2's address, inner source web1 (on h1)\n\
         vx(*h3, h2[1], {vni_a}, udp('{web1}', '{client}', '10.0.1.11', '10.0.1.13'))\n\
         # a VIP claim from h3 for web1 (on h1), and from client (on h3, not bound)\n\
         vx(*h2, h3[1], {vni_a}, garp('{web1}'))\n\
         vx(*h2, h3[1], {vni_a}, garp('{client}'))\n\
         # routed by h2 from app's address (app lives on h1)\n\
         vx(*h3, h2[1], {vni_a}, udp('{gw}', '{client}', '10.0.2.11', '10.0.1.13'))\n\
         # routed by h2 with a's VNI to far (vpc c)\n\
         vx(*h3, h2[1], {vni_a}, udp('{gw}', '{far}', '10.0.1.12', '10.2.1.11'))\n\
         # from web2 (on h2) to web1 (on h1) through h3: transit\n\
         vx(*h3, h2[1], {vni_a}, udp('{web2}', '{web1}', '10.0.1.12', '10.0.1.11'))\n\
         # from web2 to the gateway: h2 routes its own ports' traffic\n\
         vx(*h3, h2[1], {vni_a}, udp('{web2}', '{gw}', '10.0.1.12', '10.0.2.11'))\n\
         # from web2 with web1's address (web2 has the check on)\n\
         vx(*h3, h2[1], {vni_a}, udp('{web2}', '{client}', '10.0.1.11', '10.0.1.13'))\n",
        h1.mac, h1.ip, h2.mac, h2.ip, h3.mac, h3.ip
    );
    f.scapy_rogue(&script);
    std::thread::sleep(Duration::from_millis(500));
    let mut wrong = vec![];
    for (i, (h, r)) in reasons.iter().enumerate() {
        // tunnel_source twice on different hosts; each reason once per host
        let got = f.total_drops_on(h, r) - before[i];
        eprintln!("{h}: {r} +{got}");
        if got != 1 {
            wrong.push(format!("{h}: {r} +{got} (want +1)"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{wrong:?}\n{}\n{}\n{}",
        f.ctl_on("h1", "hosts"),
        f.ctl_on("h3", "hosts"),
        f.logs()
    );
    // charged to the host the packet claimed to come from, where there is one
    assert_eq!(
        f.host_row_on("h1", "h2")["drops"]["tunnel_unknown_vni"],
        1,
        "{}",
        f.ctl_on("h1", "hosts")
    );
    assert!(
        metric(
            &f.scrape_on("h3"),
            "vpcswitch_drops_total{reason=\"tunnel_transit\"}"
        ) >= 1.0,
        "metrics count it"
    );
    assert_eq!(f.delivered(), delivered, "no spoofed frame reached a guest");
    for h in HOSTS {
        assert_eq!(f.vip_owner_on(h, "vip"), None, "no owner learned on {h}");
        if f.etcd.is_some() {
            assert_eq!(f.store_owner_on(h), None, "no owner in the store ({h})");
        }
    }
    // a legitimate packet, web2 (h2) to client (h3), is captured: the captures work
    f.exec(
        "web2",
        "/usr/bin/python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 7777)); s.sendto(b'hello', ('10.0.1.13', 7777))\"",
    );
    assert!(
        wait_file(
            &f,
            "tcpdump-client.txt",
            "10.0.1.12.7777 > 10.0.1.13.7777",
            3
        ),
        "the client's capture sees web2's packet: {}",
        f.read("tcpdump-client.txt")
    );
    for g in ["client", "web1", "app", "far"] {
        let spoofs: Vec<String> = captured(&f, g)
            .into_iter()
            .filter(|l| !l.contains("10.0.1.12.7777 > 10.0.1.13.7777"))
            .collect();
        assert!(
            spoofs.is_empty(),
            "{g} received spoofed packets: {spoofs:?}"
        );
    }
}

/// SPEC 10.1 interop: a foreign host (Linux `vxlan` device on VPC a's VNI + bridge,
/// programmed as a controller would: static fdb, ARP proxy) holds guest fg in subnet
/// web. It exchanges ping (full 1450-byte frames with DF too) and TCP with web1 on h1
/// and web2 on h2; an underlay capture read back with `tcpdump -r` decodes VXLAN with
/// the VNI and the inner packets.
#[test]
fn spec10_1_linux_vxlan_foreign_host_interoperates() {
    let _l = lock();
    linux_vxlan_foreign_host_interoperates(
        Fleet::builder().standard().foreign("f1", &["fg"]).start(),
    );
}

/// The same with the network from etcd (SPEC 11): the foreign host holds no lease (it
/// runs no switch) and, never seen alive, is never marked down (SPEC 11.3), although
/// the test outlasts the switches' lease TTL.
#[test]
fn spec11_linux_vxlan_foreign_host_interoperates_with_the_network_from_etcd() {
    let _l = lock();
    linux_vxlan_foreign_host_interoperates(
        Fleet::builder()
            .standard()
            .foreign("f1", &["fg"])
            .etcd(3)
            .start(),
    );
}

fn linux_vxlan_foreign_host_interoperates(mut f: Fleet) {
    let t0 = Instant::now();
    let vni = f.vni("a");
    f.spawn_underlay(
        &format!(
            "tcpdump -n -i br0 -w {} -c 40 udp port 4789",
            f.file("underlay.pcap").display()
        ),
        "tcpdump-underlay.txt",
    );
    assert!(
        wait_file(&f, "tcpdump-underlay.txt", "listening on", 5),
        "{}",
        f.read("tcpdump-underlay.txt")
    );
    assert_eq!(
        f.ping("fg", "10.0.1.11", 3),
        3,
        "foreign -> h1\n{}",
        f.logs()
    );
    assert_eq!(f.ping("fg", "10.0.1.12", 3), 3, "foreign -> h2");
    assert_eq!(f.ping("web1", "10.0.1.31", 3), 3, "h1 -> foreign");
    assert_eq!(f.ping("client", "10.0.1.31", 3), 3, "h3 -> foreign");
    let full = GUEST_MTU - 28;
    for (from, to) in [("fg", "10.0.1.11"), ("web2", "10.0.1.31")] {
        let (ok, out) = f.exec(
            from,
            &format!("ping -n -c 2 -i 0.2 -W 1 -M do -s {full} {to}"),
        );
        assert!(ok, "{full}-byte echo with DF {from} -> {to}: {out}");
    }
    for (from, to, ip) in [("fg", "web1", "10.0.1.11"), ("web2", "fg", "10.0.1.31")] {
        let g = f.iperf(from, to, ip, 2);
        eprintln!("TCP {from} -> {to} (Linux vxlan <-> vpcswitch): {g:?} Gbit/s");
        assert!(
            g.is_some_and(|g| g > 0.0),
            "iperf3 {from} -> {to}: {g:?}\n{}",
            f.logs()
        );
    }
    let rx = f.host_row_on("h1", "f1")["rx_packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        rx > 0,
        "h1 counts what f1 sent: {}",
        f.ctl_on("h1", "hosts")
    );
    // the capture, decoded
    let end = Instant::now() + Duration::from_secs(5);
    let decoded = loop {
        let (_, out) = sh(&format!(
            "tcpdump -n -r {}",
            f.file("underlay.pcap").display()
        ));
        if out.contains("10.0.1.31 > 10.0.1.11: ICMP echo request") || Instant::now() > end {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        decoded.contains(&format!("VXLAN, flags [I] (0x08), vni {vni}")),
        "tcpdump decodes VXLAN with VNI {vni}: {decoded}"
    );
    assert!(
        decoded.contains("10.0.1.31 > 10.0.1.11: ICMP echo request")
            && decoded.contains("10.0.1.11 > 10.0.1.31: ICMP echo reply"),
        "and the inner packets, both ways: {decoded}"
    );
    if f.etcd.is_some() {
        assert!(
            t0.elapsed() > Duration::from_secs(f.lease_ttl),
            "the test outlasted the lease TTL ({:?})",
            t0.elapsed()
        );
        for h in HOSTS {
            let st = &f.ctl_on(h, "stats")["store"];
            assert_eq!(st["hosts_down"], serde_json::json!([]), "{h}: {st}");
            assert_eq!(f.host_row_on(h, "f1")["down"], false, "f1 on {h}");
        }
        assert_eq!(f.ping("fg", "10.0.1.12", 2), 2, "foreign -> h2 at the end");
    }
}

/// The harness itself, without any switch: the underlay connects the hosts; two
/// foreign hosts' guests reach each other over Linux VXLAN as the interop test sets it
/// up (static fdb, ARP proxy); the rogue endpoint's scapy VXLAN arrives at a host and
/// tcpdump decodes it; and every namespace is gone after the drop.
#[test]
fn harness_underlay_linux_vxlan_and_rogue_endpoint_work_and_clean_up() {
    let _l = lock();
    let mut f = Fleet::builder()
        .standard()
        .foreign("f1", &["fg"])
        .foreign("f2", &["fg2"])
        .rogue()
        .without_switches()
        .start();
    for (a, b) in [("h1", "h2"), ("h2", "h3"), ("h3", "f1")] {
        let ip = f.host(b).ip.clone();
        let (ok, out) = f.on_host(a, &format!("ping -n -c 2 -i 0.2 -W 1 {ip}"));
        assert!(ok, "underlay {a} -> {b}: {out}");
    }
    assert_eq!(f.ping("fg", "10.0.1.32", 3), 3, "f1 -> f2 over Linux VXLAN");
    let (ok, out) = f.exec("fg2", "ping -n -c 2 -i 0.2 -W 1 -M do -s 1422 10.0.1.31");
    assert!(ok, "full-size frames over Linux VXLAN: {out}");
    let vni = f.vni("a");
    let h1 = f.host("h1");
    let (mac, ip) = (h1.mac.clone(), h1.ip.clone());
    let pcap = f.file("h1.pcap");
    let out_name = "tcpdump-h1.txt";
    f.spawn_on_host(
        "h1",
        &format!("tcpdump -n -i ul0 -c 1 -w {} udp port 4789", pcap.display()),
        out_name,
    );
    assert!(
        wait_file(&f, out_name, "listening on", 5),
        "{}",
        f.read(out_name)
    );
    f.scapy_rogue(&format!(
        "sendp(Ether(src='{ROGUE_MAC}', dst='{mac}') / IP(src='192.0.2.12', dst='{ip}') / UDP(sport=50001, dport=4789) / VXLAN(vni={vni}, flags=0x08) / Ether(src='02:00:00:00:01:01', dst='02:00:00:00:01:03') / IP(src='10.0.1.11', dst='10.0.1.13') / UDP(sport=7777, dport=7777), iface=iface)"
    ));
    let end = Instant::now() + Duration::from_secs(5);
    let decoded = loop {
        let (_, out) = sh(&format!("tcpdump -n -r {}", pcap.display()));
        if out.contains("VXLAN") || Instant::now() > end {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        decoded.contains(&format!(
            "192.0.2.12.50001 > {ip}.4789: VXLAN, flags [I] (0x08), vni {vni}"
        )) && decoded.contains("10.0.1.11.7777 > 10.0.1.13.7777"),
        "the rogue's spoofed VXLAN reaches h1: {decoded}"
    );
    let tag = f.tag.clone();
    let dir = f.dir.clone();
    drop(f);
    let (_, ns) = sh("ip netns list");
    assert!(!ns.contains(&tag), "namespaces left: {ns}");
    assert!(!dir.exists() || std::env::var_os("VPCSWITCH_KEEP_E2E").is_some());
}

/// SPEC 10.6: the guests' MTU (1450) fits the tunnel: a full-size packet with DF set
/// crosses; a guest's TCP super-frames (TSO on its veth) are cut into segments before
/// encapsulation; a guest whose MTU says 1500 and sends 1500 bytes with DF set is told
/// "fragmentation needed" with MTU 1450.
#[test]
fn spec10_6_guest_mtu_fits_the_tunnel_and_bigger_is_told_frag_needed() {
    let _l = lock();
    guest_mtu_fits_the_tunnel(Fleet::builder().standard().start());
}

/// The same with the network from etcd (SPEC 11).
#[test]
fn spec11_guest_mtu_fits_the_tunnel_and_bigger_is_told_frag_needed_with_the_network_from_etcd() {
    let _l = lock();
    guest_mtu_fits_the_tunnel(Fleet::builder().standard().etcd(3).start());
}

fn guest_mtu_fits_the_tunnel(mut f: Fleet) {
    let segments = |f: &Fleet| -> u64 {
        f.ctl_on("h3", "stats")["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["gso_segments"].as_u64())
            .sum()
    };
    let s0 = segments(&f);
    let g = f.iperf("client", "web1", "10.0.1.11", 1);
    assert!(
        g.is_some_and(|g| g > 0.0),
        "TCP h3 -> h1: {g:?}\n{}",
        f.logs()
    );
    assert!(
        segments(&f) > s0,
        "h3 cut the client's super-frames before encapsulation: {}",
        f.ctl_on("h3", "stats")["workers"]
    );
    // a full-size packet; then 1500 bytes from a guest whose MTU is set too large
    let full = GUEST_MTU - 28;
    let (ok, out) = f.exec(
        "client",
        &format!("ping -n -c 2 -i 0.2 -W 1 -M do -s {full} 10.0.1.11"),
    );
    assert!(ok, "{full}-byte echo with DF across hosts: {out}");
    must(&format!("ip -n {} link set eth0 mtu 1500", f.ns("client")));
    let (_, out) = f.exec("client", "ping -n -c 2 -i 0.3 -W 1 -M do -s 1472 10.0.1.11");
    must(&format!(
        "ip -n {} link set eth0 mtu {GUEST_MTU}",
        f.ns("client")
    ));
    assert!(
        out.contains(&format!("mtu = {GUEST_MTU}")),
        "SPEC 10.6: fragmentation needed, MTU {GUEST_MTU}: {out}\nh3's drops: {}",
        f.ctl_on("h3", "stats")["drops"]
    );
}
