//! `vpcswitch demo`: the whole story in network namespaces, for someone who has never
//! seen the project. Needs root, iproute2, iputils-ping, iperf3 and keepalived (the
//! README's run command installs them).
//!
//! Topology: VPC prod (10.0.0.0/16) with subnet web (web1, web2: a VIP 10.0.1.100 held
//! by keepalived, reachable from outside through the EIP 203.0.113.10) and subnet app (a
//! client); VPC shared (10.1.0.0/16, db1) peered with prod; an "internet" namespace on
//! the uplink (203.0.113.1, the outside next hop). The switch runs in this process with its control socket, so `vpcswitch ctl`
//! works from another terminal while the demo runs. Everything is removed on exit,
//! also on Ctrl-C.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch::model::Config;

use crate::{control, Running};

const TAG: &str = "vsdemo";

struct Guest {
    name: &'static str,
    mac: &'static str,
    ip: &'static str,
    gw: &'static str,
}

const GUESTS: &[Guest] = &[
    Guest {
        name: "web1",
        mac: "02:00:00:00:01:01",
        ip: "10.0.1.11",
        gw: "10.0.1.1",
    },
    Guest {
        name: "web2",
        mac: "02:00:00:00:01:02",
        ip: "10.0.1.12",
        gw: "10.0.1.1",
    },
    Guest {
        name: "client",
        mac: "02:00:00:00:02:01",
        ip: "10.0.2.11",
        gw: "10.0.2.1",
    },
    Guest {
        name: "db1",
        mac: "02:00:00:00:03:01",
        ip: "10.1.1.11",
        gw: "10.1.1.1",
    },
];

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"[switch]
workers = 2
control_socket = "{sock}"

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
backend = {{ type = "tap", ifname = "eth0", netns = "{TAG}-web1" }}

[[ports]]
name = "web2"
subnet = "web"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.12"]
backend = {{ type = "tap", ifname = "eth0", netns = "{TAG}-web2" }}

[[ports]]
name = "client"
subnet = "app"
mac = "02:00:00:00:02:01"
ips = ["10.0.2.11"]
backend = {{ type = "tap", ifname = "eth0", netns = "{TAG}-client" }}

[[ports]]
name = "db1"
subnet = "db"
mac = "02:00:00:00:03:01"
ips = ["10.1.1.11"]
backend = {{ type = "tap", ifname = "eth0", netns = "{TAG}-db1" }}

[[vips]]
name = "web-vip"
subnet = "web"
ip = "10.0.1.100"
ports = ["web1", "web2"]
eip = "203.0.113.10"

[uplink]
name = "uplink"
mac = "02:00:00:00:ff:01"
next_hop = "203.0.113.1"
backend = {{ type = "tap", ifname = "eth0", netns = "{TAG}-internet" }}

[[routes]]
vpc = "prod"
destination = "0.0.0.0/0"
uplink = true

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
"#,
        sock = dir.join("ctl.sock").display()
    )
}

/// Everything the demo made, removed on drop.
struct Lab {
    dir: PathBuf,
    procs: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in GUESTS.iter().map(|g| g.name).chain(["internet"]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns(n)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ns(g: &str) -> String {
    format!("{TAG}-{g}")
}

fn sh(cmd: &str) -> Result<String, String> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        Ok(out)
    } else {
        Err(format!("`{cmd}` failed: {}", out.trim()))
    }
}

fn in_ns(g: &str, cmd: &str) -> Result<String, String> {
    sh(&format!("ip netns exec {} {cmd}", ns(g)))
}

fn check_tools() -> Result<(), String> {
    if sh("test \"$(id -u)\" = 0").is_err() {
        return Err("the demo needs root: it makes network namespaces and TAP devices".into());
    }
    let missing: Vec<&str> = ["ip", "ping", "iperf3", "keepalived"]
        .into_iter()
        .filter(|t| sh(&format!("command -v {t}")).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing tools: {} (Debian: apt-get install iproute2 iputils-ping iperf3 keepalived)",
            missing.join(", ")
        ));
    }
    Ok(())
}

fn say(s: &str) {
    println!("\x1b[1m{s}\x1b[0m");
}

fn ping_summary(g: &str, dst: &str, n: u32) -> String {
    match in_ns(g, &format!("ping -n -c {n} -i 0.2 -W 1 {dst}")) {
        Ok(out) | Err(out) => out
            .lines()
            .filter(|l| l.contains("packets transmitted") || l.starts_with("rtt"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Runs the demo; `stop` is set by Ctrl-C.
pub fn run(stop: Arc<AtomicBool>) -> ExitCode {
    match demo(&stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn interrupted(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::SeqCst) {
        Err("interrupted; cleaning up".into())
    } else {
        Ok(())
    }
}

fn demo(stop: &AtomicBool) -> Result<(), String> {
    check_tools()?;
    // leftovers of an interrupted earlier run
    for n in GUESTS.iter().map(|g| g.name).chain(["internet"]) {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns(n)])
            .stderr(Stdio::null())
            .status();
    }
    let dir = std::env::temp_dir().join(format!("{TAG}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut lab = Lab {
        dir: dir.clone(),
        procs: vec![],
    };
    let cfg_path = dir.join("switch.toml");
    std::fs::write(&cfg_path, config(&dir)).map_err(|e| e.to_string())?;
    let cfg: Config = crate::load(&cfg_path)?;

    say(
        "== 1. the switch: 2 workers, 4 TAP ports and an uplink, VPC prod (web, app) peered with VPC shared (db)",
    );
    // the guests' namespaces first: the switch makes each port's TAP inside its guest's
    // namespace (`netns`), as eth0, persistent across restarts of the switch
    for n in GUESTS.iter().map(|g| g.name).chain(["internet"]) {
        sh(&format!("ip netns add {}", ns(n)))?;
    }
    let switch = vpcswitch::linux::Host::start(&cfg).map_err(|e| e.to_string())?;
    let running = Arc::new(Running::new(switch, cfg_path.clone()));
    let sock = dir.join("ctl.sock");
    let ctl_stop = Arc::new(crate::listen::Stopper::new().map_err(|e| e.to_string())?);
    let server =
        control::serve(&sock, running.clone(), ctl_stop.clone()).map_err(|e| e.to_string())?;
    println!(
        "   control socket: {}  (try: vpcswitch ctl -s {} vips)",
        sock.display(),
        sock.display()
    );

    say("== 2. guests: one network namespace per port, each holding its TAP as eth0");
    for g in GUESTS {
        in_ns(g.name, &format!(
            "sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set lo up && ip link set eth0 address {mac} && ip addr add {ip}/24 dev eth0 && ip link set eth0 up && ip route add default via {gw}'",
            mac = g.mac, ip = g.ip, gw = g.gw
        ))?;
        println!("   {:<7} {} {}/24 via {}", g.name, g.mac, g.ip, g.gw);
    }
    // the outside network on the uplink: a router at 203.0.113.1 (the next hop)
    in_ns("internet",
        "sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set lo up && ip link set eth0 address 02:00:00:00:ee:01 && ip addr add 203.0.113.1/24 dev eth0 && ip link set eth0 up'"
    )?;
    println!(
        "   internet 02:00:00:00:ee:01 203.0.113.1/24 on the uplink (EIP 203.0.113.10 -> VIP)"
    );
    interrupted(stop)?;

    say("== 3. traffic");
    println!(
        "   client -> its gateway 10.0.2.1:   {}",
        ping_summary("client", "10.0.2.1", 3)
    );
    println!(
        "   client -> web1 (other subnet):    {}",
        ping_summary("client", "10.0.1.11", 3)
    );
    println!(
        "   client -> db1 (peered VPC):       {}",
        ping_summary("client", "10.1.1.11", 3)
    );
    let srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns("db1"),
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5201",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    lab.procs.push(srv);
    std::thread::sleep(Duration::from_millis(300));
    let out = in_ns("client", "iperf3 -c 10.1.1.11 -p 5201 -t 2").unwrap_or_else(|e| e);
    if let Some(l) = out.lines().find(|l| l.contains("receiver")) {
        println!(
            "   TCP client -> db1, iperf3 2 s:    {}",
            l.split_whitespace()
                .skip(4)
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    interrupted(stop)?;

    say("== 4. keepalived on web1 (priority 150) and web2 (100) share the VIP 10.0.1.100");
    let mut kpid = 0;
    for (g, prio) in [("web1", 150), ("web2", 100)] {
        let conf = dir.join(format!("keepalived-{g}.conf"));
        std::fs::write(&conf, format!(
            "global_defs {{\n  router_id {g}\n  vrrp_garp_master_delay 1\n  script_user root\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    10.0.1.100/24 dev eth0\n  }}\n}}\n"
        )).map_err(|e| e.to_string())?;
        let p = |s: &str| dir.join(format!("{g}-{s}.pid")).display().to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns(g),
                "keepalived",
                "--dont-fork",
                "--vrrp",
                "--use-file",
            ])
            .arg(&conf)
            .args([
                "--pid",
                &p("main"),
                "--vrrp_pid",
                &p("vrrp"),
                "--checkers_pid",
                &p("checkers"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("keepalived: {e}"))?;
        if g == "web1" {
            kpid = child.id();
        }
        lab.procs.push(child);
    }
    let owner = |r: &Running| {
        r.switch
            .snapshot()
            .vip_owner_name("web-vip")
            .map(String::from)
    };
    let t0 = Instant::now();
    while owner(&running).as_deref() != Some("web1") && t0.elapsed() < Duration::from_secs(20) {
        interrupted(stop)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "   web1 announced itself by gratuitous ARP after {:.1} s: owner = {}",
        t0.elapsed().as_secs_f64(),
        owner(&running).as_deref().unwrap_or("none")
    );
    println!(
        "   client -> VIP:                     {}",
        ping_summary("client", "10.0.1.100", 3)
    );
    println!(
        "   internet -> EIP 203.0.113.10:      {}",
        ping_summary("internet", "203.0.113.10", 3)
    );

    say("== 5. failover: stop web1's keepalived while the client pings the VIP and the internet pings its EIP, every 10 ms");
    let eip_ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns("internet"),
            "ping",
            "-n",
            "-D",
            "-i",
            "0.01",
            "-w",
            "6",
            "203.0.113.10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns("client"),
            "ping",
            "-n",
            "-D",
            "-i",
            "0.01",
            "-w",
            "6",
            "10.0.1.100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = sh(&format!("kill -TERM {kpid}"));
    let t1 = Instant::now();
    while owner(&running).as_deref() != Some("web2") && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "   the switch moved the VIP to {} {:.0} ms after web1 stopped",
        owner(&running).as_deref().unwrap_or("nobody"),
        t1.elapsed().as_secs_f64() * 1000.0
    );
    for (who, child) in [("client (VIP)", ping), ("internet (EIP)", eip_ping)] {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let (gap, replies) = crate::ping_gap::ping_gap_ms(&String::from_utf8_lossy(&out.stdout));
        println!(
            "   {who:<15} saw {replies} replies; longest gap {gap:.0} ms (keepalived's own switch-over time)"
        );
    }

    say("== 6. what the switch saw (vpcswitch ctl vips / stats)");
    let snap = running.switch.snapshot();
    if let Some(v) = snap.vip_id("web-vip") {
        let cell = snap.vip_cell(v);
        println!(
            "   web-vip: owner {}, moves {}; the switch sent the new owner its first frame {} after its GARP\n            (the switch's own part; with pings every 10 ms it is mostly the wait for the next one)",
            snap.vip_owner_name("web-vip").unwrap_or("none"),
            cell.moves(),
            cell.first_packet_ns()
                .map_or("-".into(), |ns| format!("{:.1} µs", ns as f64 / 1e3))
        );
    }
    for p in running.switch.stats().ports {
        let d: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "   {:<7} rx {:>8} tx {:>8}  drops: {}",
            p.name,
            p.rx_packets,
            p.tx_packets,
            if d.is_empty() {
                "-".into()
            } else {
                d.join(" ")
            }
        );
    }

    say("== 7. cleaning up");
    ctl_stop.stop();
    server.finish();
    drop(lab);
    if let Ok(r) = Arc::try_unwrap(running) {
        r.switch.into_switch().stop();
    }
    println!("   namespaces, TAPs, keepalived and iperf3 removed");
    Ok(())
}
