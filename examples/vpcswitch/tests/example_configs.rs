//! The shipped example configurations run for real (issue 21), not only pass `check`
//! (cli.rs validates every file): each one that names devices is started, unchanged but
//! for its control socket, in a network namespace of its own holding the devices its
//! header comment says to make, with guests in namespaces of their own; the test then
//! shows the feature the example is for working (guests reaching each other through the
//! backend, metrics served, workers pinned, an EIP through a configured next hop).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::net::require;
use common::{lock, must, sh};

/// One example run: the switch's namespace, the guests' namespaces, the switch process.
struct Lab {
    tag: String,
    dir: PathBuf,
    sock: PathBuf,
    spaces: Vec<String>,
    switch: Option<Child>,
}

impl Lab {
    /// Namespaces `{tag}s` (the switch) and one per guest, loopback up in each.
    fn new(name: &str, guests: &[&str]) -> Lab {
        let tag = format!("vx{}{name}", std::process::id() % 10_000);
        let dir = std::env::temp_dir().join(format!("vpcswitch-ex-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut lab = Lab {
            sock: dir.join("ctl.sock"),
            dir,
            spaces: vec![],
            switch: None,
            tag: tag.clone(),
        };
        for ns in std::iter::once("s".to_string()).chain(guests.iter().map(|g| g.to_string())) {
            let ns = format!("{tag}{ns}");
            must(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
            lab.spaces.push(ns);
        }
        lab
    }

    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.tag)
    }

    /// In the switch's namespace: `ifname`, a veth whose peer is `eth0` of guest `g`
    /// with `mac`, `ip` (CIDR) and default route via `gw`, `queues` each way.
    fn veth_guest(&self, ifname: &str, g: &str, mac: &str, ip: &str, gw: &str, queues: u32) {
        let (s, gn) = (self.ns("s"), self.ns(g));
        must(&format!(
            "ip -n {s} link add {ifname} numtxqueues {queues} numrxqueues {queues} type veth \
             peer name eth0 netns {gn} numtxqueues {queues} numrxqueues {queues} && \
             ip -n {s} link set {ifname} up && \
             ip -n {gn} link set eth0 address {mac} && ip -n {gn} addr add {ip} dev eth0 && \
             ip -n {gn} link set eth0 up"
        ));
        if !gw.is_empty() {
            must(&format!("ip -n {gn} route add default via {gw}"));
        }
    }

    /// Starts the example unchanged, in the switch's namespace, with the lab's control
    /// socket; waits for the socket.
    fn run(&mut self, example: &str) {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs")
            .join(example);
        let log = std::fs::File::create(self.dir.join("switch.log")).expect("log");
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns("s")])
            .arg(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["run", "-c"])
            .arg(&cfg)
            .arg("--control-socket")
            .arg(&self.sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vpcswitch");
        self.switch = Some(c);
        let end = Instant::now() + Duration::from_secs(15);
        while !self.sock.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.sock.exists(),
            "{example} did not start: {}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switch.log")).unwrap_or_default()
    }

    fn ctl(&self, cmd: &str) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["ctl", "--json", "-s"])
            .arg(&self.sock)
            .arg(cmd)
            .output()
            .expect("ctl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The `backend` column of port `name` in `ctl ports`.
    fn backend(&self, name: &str) -> String {
        let ports = self.ctl("ports");
        ports
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .map(|p| {
                p["backend"]["description"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// `ping -c n` from guest `g` to `ip`: replies received.
    fn ping(&self, g: &str, ip: &str, n: u32) -> u32 {
        let (_, out) = sh(&format!(
            "ip netns exec {} ping -c {n} -i 0.2 -W 1 {ip}",
            self.ns(g)
        ));
        out.lines()
            .find_map(|l| {
                l.split(", ")
                    .find(|f| f.ends_with(" received"))
                    .and_then(|f| f.split(' ').next())
                    .and_then(|x| x.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.switch.take() {
            // `ip netns exec` execs the switch: this is the switch's own PID
            let _ = sh(&format!("kill -TERM {}", c.id()));
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.spaces {
            let _ = sh(&format!("ip netns del {ns}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// examples/configs/af-packet.toml: two guests on veths in two subnets reach each other
/// through AF_PACKET sockets (one of them on a TPACKET_V3 ring), routed by the gateway
/// (SPEC 5).
#[test]
fn example_af_packet_routes_between_two_veth_guests() {
    let _l = lock();
    require();
    let mut lab = Lab::new("p", &["app1", "db1"]);
    lab.veth_guest(
        "vs-app1",
        "app1",
        "02:00:00:01:01:11",
        "10.1.1.11/24",
        "10.1.1.1",
        1,
    );
    lab.veth_guest(
        "vs-db1",
        "db1",
        "02:00:00:01:02:11",
        "10.1.2.11/24",
        "10.1.2.1",
        1,
    );
    lab.run("af-packet.toml");
    let got = lab.ping("app1", "10.1.2.11", 5);
    let (b1, b2) = (lab.backend("app1"), lab.backend("db1"));
    // the device as opened (Backend::capabilities) and the kernel's own counters of
    // the interface (netlink), in `ctl ports --json`
    let ports = lab.ctl("ports");
    let app1 = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "app1"))
        .map(|p| p["backend"].clone())
        .unwrap_or_default();
    assert!(got >= 4, "app1 -> db1: {got}/5 replies\n{}", lab.log());
    assert_eq!(app1["kind"], "af_packet", "{app1}");
    assert_eq!(app1["queues"], 2, "one socket per worker: {app1}");
    assert_eq!(app1["mtu_bytes"], 1500, "{app1}");
    assert_eq!(app1["mode"], "recvmsg", "{app1}");
    assert_eq!(app1["checksum_offload"], true, "{app1}");
    assert!(
        app1["device"]["rx_packets"].as_u64().unwrap_or(0) >= 5,
        "the kernel counted app1's pings on vs-app1: {app1}"
    );
    assert!(b1.starts_with("af_packet vs-app1"), "{b1}");
    assert!(
        b2.starts_with("af_packet vs-db1") && b2.contains("ring"),
        "{b2}"
    );
}

/// examples/configs/af-xdp.toml: two guests on two-queue veths reach each other through
/// AF_XDP sockets, one port in the automatic (native) mode, one in the generic mode.
#[test]
fn example_af_xdp_switches_between_two_veth_guests() {
    let _l = lock();
    require();
    let mut lab = Lab::new("x", &["app1", "app2"]);
    for (ifn, g, mac, ip) in [
        ("vs-app1", "app1", "02:00:00:01:01:11", "10.1.1.11/24"),
        ("vs-app2", "app2", "02:00:00:01:01:12", "10.1.1.12/24"),
    ] {
        lab.veth_guest(ifn, g, mac, ip, "", 2);
        // as the example says: AF_XDP carries no checksum offload metadata
        must(&format!(
            "ip netns exec {} ethtool -K eth0 tx off",
            lab.ns(g)
        ));
    }
    lab.run("af-xdp.toml");
    let got = lab.ping("app1", "10.1.1.12", 5);
    let (b1, b2) = (lab.backend("app1"), lab.backend("app2"));
    assert!(got >= 4, "app1 -> app2: {got}/5 replies\n{}", lab.log());
    assert!(b1.starts_with("af_xdp vs-app1 native"), "{b1}");
    assert!(b2.starts_with("af_xdp vs-app2 skb"), "{b2}");
}

/// examples/configs/metrics-pinning.toml: Prometheus metrics on 127.0.0.1:9477 (in the
/// switch's namespace) and worker i pinned to CPU i.
#[test]
fn example_metrics_pinning_serves_metrics_and_pins_workers() {
    let _l = lock();
    require();
    let ncpu: usize = must("nproc").trim().parse().expect("nproc");
    assert!(
        ncpu >= 2,
        "the example pins two workers: needs 2 CPUs, this machine has {ncpu}"
    );
    let mut lab = Lab::new("m", &[]);
    lab.run("metrics-pinning.toml");
    let (ok, scrape) = sh(&format!(
        "ip netns exec {} curl -s --max-time 5 http://127.0.0.1:9477/metrics",
        lab.ns("s")
    ));
    let pid = lab.switch.as_ref().expect("switch").id();
    let mut pinned = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let t = t.expect("task").path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        if let Some(w) = comm.trim().strip_prefix("vpcswitch-w") {
            let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or("")
                .trim()
                .to_string();
            pinned.push((w.to_string(), cpus));
        }
    }
    pinned.sort();
    assert!(ok, "metrics not served: {scrape}\n{}", lab.log());
    assert!(
        scrape.contains("vpcswitch_port_info{") && scrape.contains("port=\"app2\""),
        "{scrape}"
    );
    assert!(
        scrape.contains("vpcswitch_port_device_queues{port=\"app1\"} 2"),
        "one TAP queue per worker: {scrape}"
    );
    assert!(
        scrape.contains("vpcswitch_port_device_info{port=\"app1\",kind=\"tap\",mode=\"\",checksum_offload=\"true\",segmentation_offload=\"true\",zero_copy=\"false\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("vpcswitch_port_device_dropped_total{port=\"app1\",direction=\"tx\"} "),
        "the kernel's drop counters of the TAP: {scrape}"
    );
    assert_eq!(
        pinned,
        vec![("0".into(), "0".into()), ("1".into(), "1".into())],
        "worker threads and their CPUs"
    );
}

/// examples/configs/static-next-hop.toml: a guest reaches the outside through its EIP
/// (SPEC 7) with the next hop's MAC taken from the configuration: the outside router
/// never hears an ARP request for its own address.
#[test]
fn example_static_next_hop_reaches_the_outside_without_arp_for_the_router() {
    let _l = lock();
    require();
    let mut lab = Lab::new("n", &["app1", "out"]);
    // the outside router: 203.0.113.1 at the configured next_hop_mac
    lab.veth_guest(
        "vs-uplink",
        "out",
        "02:00:00:00:fe:01",
        "203.0.113.1/24",
        "",
        1,
    );
    let arp_log = lab.dir.join("arp.txt");
    let tcpdump = Command::new("ip")
        .args(["netns", "exec", &lab.ns("out")])
        .args(["tcpdump", "-l", "-n", "-i", "eth0", "arp"])
        .stdout(std::fs::File::create(&arp_log).expect("arp log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(500));
    lab.run("static-next-hop.toml");
    // the switch made vs-app1 in its namespace (no `netns` in the example): move the
    // guest's end into the guest's namespace
    let (s, g) = (lab.ns("s"), lab.ns("app1"));
    must(&format!(
        "ip -n {s} link set vs-app1 netns {g} && ip -n {g} link set vs-app1 address 02:00:00:01:01:11 && \
         ip -n {g} addr add 10.1.1.11/24 dev vs-app1 && ip -n {g} link set vs-app1 up && \
         ip -n {g} route add default via 10.1.1.1"
    ));
    let got = lab.ping("app1", "203.0.113.1", 5);
    let eips = lab.ctl("eips");
    std::thread::sleep(Duration::from_millis(300));
    let _ = sh(&format!("kill -TERM {}", tcpdump.id()));
    let mut tcpdump = tcpdump;
    let _ = tcpdump.wait();
    let arp = std::fs::read_to_string(&arp_log).unwrap_or_default();
    assert!(got >= 4, "app1 -> outside: {got}/5 replies\n{}", lab.log());
    assert!(
        !arp.lines()
            .any(|l| l.contains("Request who-has 203.0.113.1 ")),
        "the switch ARPed for a next hop whose MAC it was given:\n{arp}"
    );
    assert!(
        eips.to_string().contains("02:00:00:00:fe:01"),
        "ctl eips shows the configured next hop MAC: {eips}"
    );
}
