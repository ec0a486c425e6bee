//! The netns harness: guests in network namespaces on the real `vpcswitch` binary, over
//! each backend ([`Kind`]). A [`Net`] is the standard topology (VPC a with subnets web and
//! app, VPC b with db, VPC c with far; peerings a-b and b-c), started and torn down by the
//! test; what the scenarios ask of it (pings, iperf3, ctl, keepalived, scapy, metrics,
//! HTTP) is here too. Needs root and iproute2, iputils-ping, iperf3, keepalived, curl,
//! tcpdump and python3-scapy (`scripts/test.sh` installs them); without them a test
//! fails and says what is missing.
//!
//! Every namespace, process and file a test makes is removed when it ends (processes
//! killed by PID). Traffic stays inside the namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{must, sh};

pub fn require() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        uid.as_deref().unwrap_or(""),
        "0",
        "the netns end-to-end tests need root (network namespaces, TAP devices)"
    );
    for tool in [
        "ip",
        "ping",
        "iperf3",
        "keepalived",
        "python3",
        "curl",
        "tcpdump",
    ] {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "missing tool `{tool}`: run scripts/test.sh (it installs iproute2, iputils-ping, iperf3, keepalived, python3-scapy, curl, tcpdump)");
    }
    let scapy = Command::new("/usr/bin/python3")
        .args(["-c", "import scapy.all"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(scapy, "missing python3-scapy for /usr/bin/python3 (Debian package python3-scapy): run scripts/test.sh");
}

/// One guest.
#[derive(Clone, Debug)]
pub struct G {
    pub name: &'static str,
    pub subnet: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    pub gw: &'static str,
    pub check: bool,
}

/// A running topology: the switch and its guests.
#[derive(Debug)]
pub struct Net {
    pub tag: String,
    pub dir: PathBuf,
    pub switch: Option<Child>,
    pub procs: Vec<Child>,
    pub guests: Vec<G>,
    pub cfg_path: PathBuf,
    pub socket: PathBuf,
    /// `127.0.0.1:port` of the switch's Prometheus metrics
    pub metrics: String,
    /// namespaces other than the guests' (the "internet" on the uplink)
    pub extra_ns: Vec<String>,
    /// the guests' port backend
    pub kind: Kind,
}

/// How guests are attached: a TAP the switch creates and the test moves into the
/// guest's namespace, or a veth pair whose host end the switch opens with AF_PACKET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tap,
    AfPacket,
    /// AF_PACKET receiving through the `TPACKET_V3` ring
    AfPacketRing,
    /// veth pairs with two queues (one per worker); the guest's end has checksum
    /// offload off, as AF_XDP carries no offload metadata (docs/operations.md)
    AfXdp,
}

impl Kind {
    /// Guests on veth pairs whose host end the switch opens.
    pub fn veth(self) -> bool {
        self != Kind::Tap
    }
}

pub const VPCS: &str = r#"
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

# the LVS-DR service address, held by the director (SPEC 6.2)
[[vips]]
name = "svc"
subnet = "web"
ip = "10.0.1.200"
ports = ["lvs"]

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
    let g = |name, subnet, mac, ip, gw, check| G {
        name,
        subnet,
        mac,
        ip,
        gw,
        check,
    };
    vec![
        g(
            "web1",
            "web",
            "02:00:00:00:01:01",
            "10.0.1.11",
            "10.0.1.1",
            true,
        ),
        g(
            "web2",
            "web",
            "02:00:00:00:01:02",
            "10.0.1.12",
            "10.0.1.1",
            true,
        ),
        g(
            "client",
            "web",
            "02:00:00:00:01:03",
            "10.0.1.13",
            "10.0.1.1",
            true,
        ),
        g(
            "lvs",
            "web",
            "02:00:00:00:01:04",
            "10.0.1.14",
            "10.0.1.1",
            false,
        ),
        g(
            "app",
            "app",
            "02:00:00:00:02:01",
            "10.0.2.11",
            "10.0.2.1",
            true,
        ),
        g(
            "db",
            "db",
            "02:00:00:00:03:01",
            "10.1.1.11",
            "10.1.1.1",
            true,
        ),
        g(
            "far",
            "far",
            "02:00:00:00:04:01",
            "10.2.1.11",
            "10.2.1.1",
            true,
        ),
    ]
}

impl Net {
    pub fn ns(&self, guest: &str) -> String {
        format!("{}-{guest}", self.tag)
    }
    pub fn ifname(&self, i: usize) -> String {
        format!("{}t{i}", self.tag)
    }

    pub fn config_text(&self, extra: &str) -> String {
        let mut c = format!(
            "[switch]\nworkers = 2\ncontrol_socket = \"{}\"\nmetrics = \"{}\"\n{VPCS}\n",
            self.socket.display(),
            self.metrics
        );
        for (i, g) in self.guests.iter().enumerate() {
            c += &format!(
                "[[ports]]\nname = \"{}\"\nsubnet = \"{}\"\nmac = \"{}\"\nips = [\"{}\"]\nsrc_dst_check = {}\nbackend = {{ type = \"{}\", ifname = \"{}\"{} }}\n\n",
                g.name, g.subnet, g.mac, g.ip, g.check,
                match self.kind { Kind::Tap => "tap", Kind::AfPacket | Kind::AfPacketRing => "af_packet", Kind::AfXdp => "af_xdp" },
                self.ifname(i),
                if self.kind == Kind::AfPacketRing { ", ring = true" } else { "" }
            );
        }
        c + extra
    }

    /// Starts the switch on the standard topology and sets the guests up.
    pub fn start() -> Net {
        Net::start_with("")
    }

    /// [`Net::start`] with `extra` appended to the configuration (`@TAG@` in it becomes
    /// this run's tag). With an `[uplink]` whose TAP is `@TAG@up`, an "internet"
    /// namespace holds that TAP as 203.0.113.1/24 (MAC 02:00:00:00:ee:01).
    pub fn start_with(extra: &str) -> Net {
        Net::start_kind(Kind::Tap, extra)
    }

    /// [`Net::start_with`] with the guests attached as `kind`.
    pub fn start_kind(kind: Kind, extra: &str) -> Net {
        Net::start_edited(kind, extra, &|c| c)
    }

    /// [`Net::start_kind`] with the configuration text passed through `edit` first.
    pub fn start_edited(kind: Kind, extra: &str, edit: &dyn Fn(String) -> String) -> Net {
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
            extra_ns: vec![],
            kind,
            metrics: {
                // a free loopback port for this run
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
                l.local_addr().expect("addr").to_string()
            },
        };
        let extra = extra.replace("@TAG@", &net.tag);
        std::fs::write(&net.cfg_path, edit(net.config_text(&extra))).expect("write config");
        if kind.veth() {
            // veth pairs first: the switch attaches to the host ends
            for (i, g) in net.guests.clone().iter().enumerate() {
                let (host, peer) = (net.ifname(i), format!("{}p{i}", net.tag));
                let ns = net.ns(g.name);
                must(&format!("ip netns add {ns}"));
                if kind == Kind::AfXdp {
                    must(&format!("ip link add {host} numrxqueues 2 numtxqueues 2 type veth peer name {peer} numrxqueues 2 numtxqueues 2"));
                } else {
                    must(&format!("ip link add {host} type veth peer name {peer}"));
                }
                // (the host's own IPv6 chatter on the host end must not reach the
                // switch: the sockets ignore outgoing frames, fanout included)
                must(&format!("ip link set {host} up"));
                must(&format!("ip link set {peer} netns {ns}"));
                must(&format!(
                    "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set {peer} address {} && ip link set {peer} name eth0 && ip addr add {}/24 dev eth0 && ip link set eth0 up && ip route add default via {}'",
                    g.mac, g.ip, g.gw
                ));
                if kind == Kind::AfXdp {
                    must(&format!("ip netns exec {ns} ethtool -K eth0 tx off"));
                }
            }
        }
        net.spawn_switch();
        let end = Instant::now() + Duration::from_secs(10);
        while !net.socket.exists() {
            assert!(Instant::now() < end, "switch did not start: {}", net.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, g) in net.guests.clone().iter().enumerate() {
            if kind.veth() {
                break;
            }
            let ns = net.ns(g.name);
            let ifn = net.ifname(i);
            must(&format!("ip netns add {ns}"));
            must(&format!("ip link set {ifn} netns {ns}"));
            must(&format!(
                "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set {ifn} address {} && ip link set {ifn} name eth0 && ip addr add {}/24 dev eth0 && ip link set eth0 up && ip route add default via {}'",
                g.mac, g.ip, g.gw
            ));
        }
        if extra.contains("[uplink]") {
            let ns = net.ns("internet");
            let ifn = format!("{}up", net.tag);
            must(&format!("ip netns add {ns}"));
            net.extra_ns.push(ns.clone());
            must(&format!("ip link set {ifn} netns {ns}"));
            must(&format!(
                "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set {ifn} address 02:00:00:00:ee:01 && ip link set {ifn} name eth0 && ip addr add 203.0.113.1/24 dev eth0 && ip link set eth0 up'"
            ));
        }
        net
    }

    /// Starts the switch binary on this run's configuration (its log appended to
    /// `switch.log`).
    pub fn spawn_switch(&mut self) {
        self.switch = Some(super::spawn_switch(
            &self.cfg_path,
            &self.dir.join("switch.log"),
        ));
    }

    /// Stops the switch (SIGTERM, or SIGKILL when `kill9`) and starts it again on the
    /// same configuration at once, as an upgrade or a supervisor would; returns when the
    /// new one answers on its control socket.
    pub fn restart_switch(&mut self, kill9: bool) {
        if kill9 {
            if let Some(mut c) = self.switch.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        } else {
            assert!(
                self.stop_switch(),
                "SIGTERM: the switch exits 0\n{}",
                self.log()
            );
        }
        self.spawn_switch();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
                .args(["ctl", "-s"])
                .arg(&self.socket)
                .arg("stats")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < end,
                "switch did not restart: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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
        self.spawn_in(&self.ns(guest), cmd, out)
    }

    /// Starts a background process in namespace `ns`, its output into file `out`; it
    /// is killed at the end. Returns its PID (`ip netns exec` and `sh -c exec` keep it).
    pub fn spawn_in(&mut self, ns: &str, cmd: &str, out: &str) -> u32 {
        let f = std::fs::File::create(self.dir.join(out)).expect("out file");
        let c = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("exec {cmd}")])
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
        self.spawn(
            to_guest,
            "iperf3 -s -1 -p 5201",
            &format!("iperf-s-{to_guest}.txt"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let (ok, out) = self.exec(
            from,
            &format!(
                "timeout {} iperf3 -J -c {to_ip} -p 5201 -t {secs}",
                secs + 10
            ),
        );
        if !ok {
            eprintln!("iperf3 {from} -> {to_ip} failed: {out}");
            return None;
        }
        let v: Value = serde_json::from_str(&out).ok()?;
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e9)
    }

    /// `vpcswitch ctl --json ...`
    pub fn ctl(&self, args: &str) -> Value {
        ctl_at(&self.socket, args)
    }

    /// Drops of `reason` charged to `port`.
    pub fn drops(&self, port: &str, reason: &str) -> u64 {
        port_drops(&self.ctl("stats"), port, reason)
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
        self.switch.take().is_some_and(terminate)
    }
}

/// Stops a switch process with SIGTERM; true when it exits 0 within 5 s (else it is
/// killed).
pub fn terminate(mut c: Child) -> bool {
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
        for ns in self.extra_ns.clone() {
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
        if self.kind.veth() {
            // deleting a namespace deletes its veth end and so the pair; a pair that
            // never got there is deleted here
            for i in 0..self.guests.len() {
                let _ = sh(&format!("ip link del {} 2>/dev/null", self.ifname(i)));
            }
        }
        if std::env::var_os("VPCSWITCH_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub const VIP: &str = "10.0.1.100";

pub fn keepalived_conf(name: &str, prio: u32) -> String {
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n  script_user root\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  \
         virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n"
    )
}

impl Net {
    /// Starts keepalived (VRRP only, in the foreground) in a guest with
    /// [`keepalived_conf`]; returns its PID.
    pub fn keepalived(&mut self, guest: &str, prio: u32) -> u32 {
        self.keepalived_with(guest, &keepalived_conf(guest, prio))
    }

    /// [`Net::keepalived`] with the configuration `text`.
    pub fn keepalived_with(&mut self, guest: &str, text: &str) -> u32 {
        let conf = self.file(&format!("keepalived-{guest}.conf"));
        std::fs::write(&conf, text).expect("conf");
        let pid = |s: &str| self.file(&format!("{guest}-{s}.pid")).display().to_string();
        let cmd = format!(
            "keepalived --dont-fork --log-console --vrrp --use-file {} --pid {} --vrrp_pid {} --checkers_pid {}",
            conf.display(),
            pid("main"),
            pid("vrrp"),
            pid("checkers")
        );
        self.spawn(guest, &cmd, &format!("keepalived-{guest}.log"))
    }

    /// `ctl vips`'s row of VIP "vip" (null if it has none).
    pub fn vip_row(&self) -> Value {
        row(&self.ctl("vips"), "vip")
    }

    pub fn vip_owner(&self) -> Option<String> {
        self.owner_of("vip")
    }

    pub fn vip_moves(&self) -> u64 {
        self.moves_of("vip")
    }

    pub fn wait_owner(&self, who: &str, secs: u64) -> bool {
        self.wait_owner_of("vip", who, secs)
    }

    /// The owner of VIP `vip` (by name), if it has one.
    pub fn owner_of(&self, vip: &str) -> Option<String> {
        row(&self.ctl("vips"), vip)["owner"]
            .as_str()
            .map(String::from)
    }

    /// The moves counted for VIP `vip` (by name).
    pub fn moves_of(&self, vip: &str) -> u64 {
        row(&self.ctl("vips"), vip)["moves"].as_u64().unwrap_or(0)
    }

    /// Whether `who` owns VIP `vip` within `secs` seconds.
    pub fn wait_owner_of(&self, vip: &str, who: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if self.owner_of(vip).as_deref() == Some(who) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs a scapy snippet in a guest (Debian's python3 with python3-scapy).
    pub fn scapy(&self, guest: &str, code: &str) {
        let path = self.file(&format!("scapy-{guest}.py"));
        std::fs::write(
            &path,
            format!("from scapy.all import *\nconf.verb = 0\n{code}\n"),
        )
        .expect("script");
        let (ok, out) = self.exec(guest, &format!("/usr/bin/python3 {}", path.display()));
        assert!(ok, "scapy in {guest} failed: {out}");
    }
}

/// A scapy line sending a gratuitous ARP request for [`VIP`] from `mac` on eth0: a VIP
/// claim (SPEC 3.1).
pub fn garp(mac: &str) -> String {
    format!("sendp(Ether(src='{mac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{mac}', psrc='{VIP}', hwdst='00:00:00:00:00:00', pdst='{VIP}'), iface='eth0')")
}

impl Net {
    /// Starts the outage probe: `ping -D -i 0.01 -w SECS TO` in guest `from`, into
    /// `file` (measured as the gap in ms between replies, see [`super::ping_gap`]).
    pub fn probe(&mut self, from: &str, to: &str, secs: u32, file: &str) {
        self.spawn(from, &format!("ping -n -D -i 0.01 -w {secs} {to}"), file);
    }

    /// The probe in `file`, ended: prints its longest gap as `what`, asserts that it had
    /// replies (more than 100) and that the gap is within [`KEEPALIVED_BOUND_MS`];
    /// returns the gap in ms.
    pub fn assert_outage(&self, file: &str, what: &str) -> f64 {
        let (gap, replies) = super::ping_gap::ping_gap_ms(&self.read(file));
        eprintln!("{what}: {replies} replies, longest gap {gap:.0} ms");
        assert!(replies > 100, "{what}: {}", self.read(file));
        assert!(
            gap <= KEEPALIVED_BOUND_MS,
            "{what}: outage {gap:.0} ms > {KEEPALIVED_BOUND_MS:.0} ms"
        );
        gap
    }
}

/// keepalived's detection time with advert_int 1 s: 3 adverts plus the skew
/// ((256 - priority) / 256 s for the backup at priority 100), plus the 100 ms allowance
/// of the issue.
pub const KEEPALIVED_BOUND_MS: f64 = 3000.0 + (256.0 - 100.0) / 256.0 * 1000.0 + 100.0;

impl Net {
    /// `ctl ports` says `port` is down.
    pub fn port_down(&self, port: &str) -> bool {
        row(&self.ctl("ports"), port)["down"] == true
    }

    pub fn scrape(&self) -> String {
        let (ok, out) = sh(&format!(
            "curl -sf --max-time 3 http://{}/metrics",
            self.metrics
        ));
        assert!(ok, "scrape failed: {out}");
        out
    }

    pub fn ctl_cmd(&self) -> String {
        format!(
            "{} ctl -s {}",
            env!("CARGO_BIN_EXE_vpcswitch"),
            self.socket.display()
        )
    }
}

/// `vpcswitch ctl --json -s SOCKET ARGS`: the answer (the test fails when ctl does).
pub fn ctl_at(socket: &Path, args: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["ctl", "--json", "-s"])
        .arg(socket)
        .args(args.split_whitespace())
        .output()
        .expect("ctl runs");
    // with --json a failure is JSON on stdout
    assert!(
        out.status.success(),
        "ctl -s {} {args}: {}{}",
        socket.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ctl json")
}

/// The row named `name` of a `ctl --json` table (`ports`, `vips`, `hosts`'s
/// `hosts`...), or null.
pub fn row(table: &Value, name: &str) -> Value {
    table
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Drops of `reason` charged to `port` in a `ctl --json stats` answer.
pub fn port_drops(stats: &Value, port: &str, reason: &str) -> u64 {
    row(&stats["ports"], port)["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// The uplink and an EIP for the VIP (SPEC 7), for [`Net::start_with`]. The uplink's
/// TAP has offloads off while the guests' have them on, so both NAT forms are checked
/// by a real kernel: inbound, full checksums translated and verified by the guest;
/// outbound, the guest's partial (offload) checksums translated, then completed by the
/// switch and verified by the internet host.
pub const EIP_EXTRA: &str = r#"
[uplink]
name = "uplink"
mac = "02:00:00:00:ff:01"
next_hop = "203.0.113.1"
backend = { type = "tap", ifname = "@TAG@up", offload = false }

[[routes]]
vpc = "a"
destination = "0.0.0.0/0"
uplink = true

[[eips]]
ip = "203.0.113.10"
vip = "vip"
"#;

pub const EIP: &str = "203.0.113.10";

impl Net {
    /// An HTTP server in `guest` on port 8000 whose page is the guest's name.
    pub fn http_server(&mut self, guest: &str) {
        let root = self.file(&format!("www-{guest}"));
        std::fs::create_dir_all(&root).expect("www dir");
        std::fs::write(root.join("index.html"), guest).expect("index");
        self.spawn(
            guest,
            &format!(
                "/usr/bin/python3 -m http.server 8000 --bind 0.0.0.0 --directory {}",
                root.display()
            ),
            &format!("http-{guest}.log"),
        );
    }

    /// GET http://`ip`:8000/ from `from`: the body, if it answered within 3 s.
    pub fn http_get(&self, from: &str, ip: &str) -> Option<String> {
        let (ok, out) = self.exec(
            from,
            &format!(
                "/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{ip}:8000/', timeout=3).read().decode())\""
            ),
        );
        ok.then(|| out.trim().to_string())
    }

    pub fn http_get_eventually(&self, from: &str, ip: &str, want: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if self.http_get(from, ip).as_deref() == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

/// Whether interface `ifn` has an XDP program attached, and which.
pub fn xdp_prog(ifn: &str) -> String {
    let (_, out) = sh(&format!("ip -d link show dev {ifn}"));
    out.lines()
        .filter(|l| l.contains("prog/xdp") || l.contains(" xdp"))
        .collect::<Vec<_>>()
        .join("\n")
}
