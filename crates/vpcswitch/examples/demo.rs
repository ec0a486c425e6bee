//! The demo topology on in-memory ports with simulated guests (smoltcp TCP/IP stacks):
//! two subnets, a VIP held by two guests, a peered VPC, a client. It shows pings and
//! TCP through the switch, a VIP failover by gratuitous ARP, spoofed frames dropped,
//! a trace, and the counters.
//!
//! `cargo run --release -p vpcswitch --example demo`

use std::net::Ipv4Addr;
use std::time::Instant;

use vpcswitch::model::{Config, MacAddr};
use vpcswitch::runtime::{memory_backends, Switch};
use vpcswitch::sim::{Guest, World};
use vpcswitch::wire::build;

const CONFIG: &str = r#"
[switch]
workers = 2

[[vpcs]]
name = "prod"
cidrs = ["10.0.0.0/16"]

[[vpcs]]
name = "shared"
cidrs = ["10.1.0.0/16"]

[[subnets]]
name = "web"
vpc = "prod"
cidr = "10.0.1.0/24"

[[subnets]]
name = "app"
vpc = "prod"
cidr = "10.0.2.0/24"

[[subnets]]
name = "db"
vpc = "shared"
cidr = "10.1.1.0/24"

[[ports]]
name = "web1"
subnet = "web"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]

[[ports]]
name = "web2"
subnet = "web"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.12"]

[[ports]]
name = "client"
subnet = "app"
mac = "02:00:00:00:02:01"
ips = ["10.0.2.11"]

[[ports]]
name = "db1"
subnet = "db"
mac = "02:00:00:00:03:01"
ips = ["10.1.1.11"]

[[vips]]
name = "web-vip"
subnet = "web"
ip = "10.0.1.100"
ports = ["web1", "web2"]

[[peerings]]
name = "prod-shared"
vpcs = ["prod", "shared"]

[[routes]]
vpc = "prod"
destination = "10.1.0.0/16"
peering = "prod-shared"

[[routes]]
vpc = "shared"
destination = "10.0.0.0/16"
peering = "prod-shared"
"#;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}
fn mac(s: &str) -> MacAddr {
    s.parse().expect("mac")
}

fn main() {
    let cfg = match Config::from_toml_str(CONFIG) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let (backends, mut ports) = memory_backends(&cfg, 4096);
    let sw = Switch::start(&cfg, backends).expect("switch starts");
    println!(
        "vpcswitch demo: {} workers, generation {}",
        sw.workers(),
        sw.snapshot().generation
    );
    let mut w = World::new();
    let mut guest = |n: &str, m: &str, i: &str, gw: &str| {
        let port = ports.remove(n).expect("port");
        w.add(Guest::new(n, port, mac(m), ip(i), 24, ip(gw)))
    };
    let web1 = guest("web1", "02:00:00:00:01:01", "10.0.1.11", "10.0.1.1");
    let web2 = guest("web2", "02:00:00:00:01:02", "10.0.1.12", "10.0.1.1");
    let client = guest("client", "02:00:00:00:02:01", "10.0.2.11", "10.0.2.1");
    let db = guest("db1", "02:00:00:00:03:01", "10.1.1.11", "10.1.1.1");
    let vip = ip("10.0.1.100");

    let show = |what: &str, ok: bool| println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
    println!("\n== reachability");
    show(
        "client pings its gateway 10.0.2.1",
        w.ping(client, ip("10.0.2.1"), 3, 1000) == 3,
    );
    show(
        "client pings web1 across subnets",
        w.ping(client, ip("10.0.1.11"), 3, 1000) == 3,
    );
    show(
        "client pings db1 across the peering",
        w.ping(client, ip("10.1.1.11"), 3, 1000) == 3,
    );
    let h = w.listen(db, 5432);
    let t = Instant::now();
    let n = w.tcp_transfer(
        client,
        db,
        h,
        std::net::SocketAddrV4::new(ip("10.1.1.11"), 5432),
        500_000,
        20_000,
    );
    show(
        &format!("TCP client -> db1: {n} bytes in {:?}", t.elapsed()),
        n == 500_000,
    );

    println!("\n== VIP {vip}: web1 is master (keepalived would send this GARP)");
    w.guests[web1].add_ip(vip);
    w.guests[web1].send_raw(&build::garp(mac("02:00:00:00:01:01"), vip));
    show("client pings the VIP", w.ping(client, vip, 3, 1000) == 3);
    println!("  owner: {:?}", sw.snapshot().vip_owner_name("web-vip"));

    println!("\n== web1 fails; web2 takes over and announces");
    let t = Instant::now();
    w.guests[web1].remove_ip(vip);
    w.guests[web2].add_ip(vip);
    w.guests[web2].send_raw(&build::garp(mac("02:00:00:00:01:02"), vip));
    let ok = w.ping(client, vip, 3, 1000) == 3;
    show(
        &format!(
            "client pings the VIP again ({:?} to 3 replies)",
            t.elapsed()
        ),
        ok,
    );
    let snap = sw.snapshot();
    let cell = snap.vip_cell(snap.vip_id("web-vip").expect("vip"));
    println!(
        "  owner: {:?}, moves: {}",
        snap.vip_owner_name("web-vip"),
        cell.moves()
    );

    println!("\n== a hostile guest");
    w.guests[client].send_raw(&build::garp(mac("02:00:00:00:02:01"), vip));
    w.guests[client].send_raw(&build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:01"),
            src: mac("02:00:00:00:02:01"),
            sip: ip("10.0.1.12"),
            dip: ip("10.0.1.11"),
        },
        64,
        1,
        2,
        b"spoof",
    ));
    for _ in 0..20 {
        w.step();
    }
    show(
        "VIP owner unchanged by a claim from an unbound port",
        sw.snapshot().vip_owner_name("web-vip") == Some("web2"),
    );

    println!("\n== trace: a GARP for the VIP from the client");
    let t = sw
        .trace("client", &build::garp(mac("02:00:00:00:02:01"), vip))
        .expect("port");
    print!("{}", t.trace);

    println!("\n== counters");
    let s = sw.stats();
    for p in &s.ports {
        println!(
            "  {:<7} rx {:>6} tx {:>6}  drops {:?}",
            p.name,
            p.rx_packets,
            p.tx_packets,
            p.drops
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
        );
    }
    for (i, wk) in s.workers.iter().enumerate() {
        println!(
            "  worker {i}: forwarded {} dropped {} sleeps {}",
            wk.forwarded, wk.dropped, wk.sleeps
        );
    }
    sw.stop();
    println!("\nstopped cleanly");
}
