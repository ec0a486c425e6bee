//! End-to-end tests with Linux guests: each guest is a network namespace holding one of
//! the switch's TAPs; the switch is the real `vpcswitch` binary. They need root and
//! iproute2, iputils-ping, iperf3, keepalived and python3-scapy (`scripts/test.sh`
//! installs them); without them they fail and say what is missing.
//!
//! Every namespace, process and file a test makes is removed when it ends (processes
//! killed by PID). Traffic stays inside the namespaces.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The tests share two CPUs: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn require() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(uid.as_deref().unwrap_or(""), "0", "the netns end-to-end tests need root (network namespaces, TAP devices)");
    for tool in ["ip", "ping", "iperf3", "keepalived", "python3"] {
        let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "missing tool `{tool}`: run scripts/test.sh (it installs iproute2, iputils-ping, iperf3, keepalived, python3-scapy)");
    }
    let scapy = Command::new("/usr/bin/python3").args(["-c", "import scapy.all"]).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    assert!(scapy, "missing python3-scapy for /usr/bin/python3 (Debian package python3-scapy): run scripts/test.sh");
}

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs");
    let mut s = String::from_utf8_lossy(&o.stdout).to_string();
    s += &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), s)
}

fn must(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "command failed: {cmd}\n{out}");
    out
}

/// One guest.
#[derive(Clone)]
pub struct G {
    pub name: &'static str,
    pub subnet: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    pub gw: &'static str,
    pub check: bool,
}

/// A running topology: the switch and its guests.
pub struct Net {
    tag: String,
    dir: PathBuf,
    switch: Option<Child>,
    procs: Vec<Child>,
    guests: Vec<G>,
    cfg_path: PathBuf,
    socket: PathBuf,
}

const VPCS: &str = r#"
[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[vpcs]]
name = "b"
cidrs = ["10.1.0.0/16"]

[[vpcs]]
name = "c"
cidrs = ["10.2.0.0/16"]

[[subnets]]
name = "web"
vpc = "a"
cidr = "10.0.1.0/24"

[[subnets]]
name = "app"
vpc = "a"
cidr = "10.0.2.0/24"

[[subnets]]
name = "db"
vpc = "b"
cidr = "10.1.1.0/24"

[[subnets]]
name = "far"
vpc = "c"
cidr = "10.2.1.0/24"

[[vips]]
name = "vip"
subnet = "web"
ip = "10.0.1.100"
ports = ["web1", "web2"]

[[peerings]]
name = "ab"
vpcs = ["a", "b"]

[[peerings]]
name = "bc"
vpcs = ["b", "c"]

[[routes]]
vpc = "a"
destination = "10.1.0.0/16"
peering = "ab"

[[routes]]
vpc = "b"
destination = "10.0.0.0/16"
peering = "ab"

[[routes]]
vpc = "b"
destination = "10.2.0.0/16"
peering = "bc"

[[routes]]
vpc = "c"
destination = "10.1.0.0/16"
peering = "bc"

# a sends c's prefix into the a-b peering: b must not pass it on (SPEC 5.3)
[[routes]]
vpc = "a"
destination = "10.2.0.0/16"
peering = "ab"
"#;

pub fn guests() -> Vec<G> {
    let g = |name, subnet, mac, ip, gw, check| G { name, subnet, mac, ip, gw, check };
    vec![
        g("web1", "web", "02:00:00:00:01:01", "10.0.1.11", "10.0.1.1", true),
        g("web2", "web", "02:00:00:00:01:02", "10.0.1.12", "10.0.1.1", true),
        g("client", "web", "02:00:00:00:01:03", "10.0.1.13", "10.0.1.1", true),
        g("lvs", "web", "02:00:00:00:01:04", "10.0.1.14", "10.0.1.1", false),
        g("app", "app", "02:00:00:00:02:01", "10.0.2.11", "10.0.2.1", true),
        g("db", "db", "02:00:00:00:03:01", "10.1.1.11", "10.1.1.1", true),
        g("far", "far", "02:00:00:00:04:01", "10.2.1.11", "10.2.1.1", true),
    ]
}

impl Net {
    pub fn ns(&self, guest: &str) -> String {
        format!("{}-{guest}", self.tag)
    }
    fn ifname(&self, i: usize) -> String {
        format!("{}t{i}", self.tag)
    }

    pub fn config_text(&self, extra: &str) -> String {
        let mut c = format!(
            "[switch]\nworkers = 2\ncontrol_socket = \"{}\"\n{VPCS}\n",
            self.socket.display()
        );
        for (i, g) in self.guests.iter().enumerate() {
            c += &format!(
                "[[ports]]\nname = \"{}\"\nsubnet = \"{}\"\nmac = \"{}\"\nips = [\"{}\"]\nsrc_dst_check = {}\nbackend = {{ type = \"tap\", ifname = \"{}\" }}\n\n",
                g.name, g.subnet, g.mac, g.ip, g.check, self.ifname(i)
            );
        }
        c + extra
    }

    /// Starts the switch on the standard topology and sets the guests up.
    pub fn start() -> Net {
        require();
        let tag = format!("vs{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("vpcswitch-e2e-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut net = Net {
            cfg_path: dir.join("switch.toml"),
            socket: dir.join("ctl.sock"),
            tag,
            dir,
            switch: None,
            procs: vec![],
            guests: guests(),
        };
        std::fs::write(&net.cfg_path, net.config_text("")).expect("write config");
        let log = std::fs::File::create(net.dir.join("switch.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["run", "-c"])
            .arg(&net.cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vpcswitch");
        net.switch = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !net.socket.exists() {
            assert!(Instant::now() < end, "switch did not start: {}", net.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, g) in net.guests.clone().iter().enumerate() {
            let ns = net.ns(g.name);
            let ifn = net.ifname(i);
            must(&format!("ip netns add {ns}"));
            must(&format!("ip link set {ifn} netns {ns}"));
            must(&format!(
                "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set {ifn} address {} && ip link set {ifn} name eth0 && ip addr add {}/24 dev eth0 && ip link set eth0 up && ip route add default via {}'",
                g.mac, g.ip, g.gw
            ));
        }
        net
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switch.log")).unwrap_or_default()
    }

    /// `ip netns exec` in a guest.
    pub fn exec(&self, guest: &str, cmd: &str) -> (bool, String) {
        sh(&format!("ip netns exec {} {cmd}", self.ns(guest)))
    }

    /// Starts a background process in a guest; it is killed at the end.
    pub fn spawn(&mut self, guest: &str, cmd: &str, out: &str) -> u32 {
        let f = std::fs::File::create(self.dir.join(out)).expect("out file");
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(guest), "sh", "-c", &format!("exec {cmd}")])
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn");
        let pid = c.id();
        self.procs.push(c);
        pid
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Pings: how many of `n` were answered.
    pub fn ping(&self, from: &str, to: &str, n: u32) -> u32 {
        let (_, out) = self.exec(from, &format!("ping -n -c {n} -i 0.2 -W 1 {to}"));
        out.lines()
            .find(|l| l.contains("received"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// iperf3 TCP for `secs` from `from` to `to`: Gbit/s received, if it ran.
    pub fn iperf(&mut self, from: &str, to_guest: &str, to_ip: &str, secs: u32) -> Option<f64> {
        self.spawn(to_guest, "iperf3 -s -1 -p 5201", &format!("iperf-s-{to_guest}.txt"));
        std::thread::sleep(Duration::from_millis(300));
        let (ok, out) = self.exec(from, &format!("timeout {} iperf3 -J -c {to_ip} -p 5201 -t {secs}", secs + 10));
        if !ok {
            eprintln!("iperf3 {from} -> {to_ip} failed: {out}");
            return None;
        }
        let v: Value = serde_json::from_str(&out).ok()?;
        v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9)
    }

    /// `vpcswitch ctl --json ...`
    pub fn ctl(&self, args: &str) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["ctl", "--json", "-s"])
            .arg(&self.socket)
            .args(args.split_whitespace())
            .output()
            .expect("ctl runs");
        assert!(out.status.success(), "ctl {args}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("ctl json")
    }

    /// Drops of `reason` charged to `port`.
    pub fn drops(&self, port: &str, reason: &str) -> u64 {
        let s = self.ctl("stats");
        s["ports"].as_array().into_iter().flatten().find(|p| p["name"] == port).and_then(|p| p["drops"][reason].as_u64()).unwrap_or(0)
    }

    /// Rewrites the configuration file and sends SIGHUP.
    pub fn reload_with(&self, text: &str) {
        std::fs::write(&self.cfg_path, text).expect("write config");
        let pid = self.switch.as_ref().map(|c| c.id()).expect("switch runs");
        must(&format!("kill -HUP {pid}"));
    }

    pub fn generation(&self) -> u64 {
        self.ctl("stats")["generation"].as_u64().unwrap_or(0)
    }

    /// Stops the switch with SIGTERM; true when it exits 0 within 5 s.
    pub fn stop_switch(&mut self) -> bool {
        let Some(mut c) = self.switch.take() else { return false };
        let _ = sh(&format!("kill -TERM {}", c.id()));
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_switch();
        for g in self.guests.clone() {
            let _ = sh(&format!("ip netns del {} 2>/dev/null", self.ns(g.name)));
        }
        if std::env::var_os("VPCSWITCH_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn spec4_5_ping_and_tcp_within_subnet_across_subnets_and_peering() {
    let _l = lock();
    let mut n = Net::start();
    assert_eq!(n.ping("client", "10.0.1.1", 3), 3, "SPEC 5.6 gateway answers ping\n{}", n.log());
    assert_eq!(n.ping("client", "10.0.1.11", 3), 3, "within the subnet");
    assert_eq!(n.ping("client", "10.0.2.11", 3), 3, "across subnets");
    assert_eq!(n.ping("client", "10.1.1.11", 3), 3, "across the peering");
    assert_eq!(n.ping("db", "10.2.1.11", 3), 3, "b to c across their peering");
    assert_eq!(n.ping("client", "10.2.1.11", 3), 0, "SPEC 5.3: no transit through b");
    assert_eq!(n.ping("far", "10.0.1.13", 2), 0, "SPEC 5.3: no transit back");
    let mut rates = HashMap::new();
    for (to, ip) in [("web1", "10.0.1.11"), ("app", "10.0.2.11"), ("db", "10.1.1.11")] {
        let g = n.iperf("client", to, ip, 3).unwrap_or_else(|| panic!("iperf3 to {to} failed\n{}", n.log()));
        assert!(g > 0.05, "TCP to {to}: {g} Gbit/s");
        rates.insert(to, g);
    }
    eprintln!("iperf3 Gbit/s: {rates:?}");
    // SPEC 5.5: TTL expiry answered with time exceeded from the gateway
    let (_, out) = n.exec("client", "ping -n -c 1 -t 1 -W 1 10.0.2.11");
    assert!(out.contains("Time to live exceeded") && out.contains("10.0.1.1"), "{out}");
    assert!(n.stop_switch(), "clean stop\n{}", n.log());
    let (_, links) = sh(&format!("ip -n {} link show eth0", n.ns("client")));
    assert!(links.contains("does not exist") || links.is_empty() || !links.contains("eth0:"), "TAP removed with the switch: {links}");
}
