//! The many-host harness (SPEC 10): a [`Fleet`] of switch hosts on one underlay, each a
//! network namespace running its own `vpcswitch run --host NAME` on the same network
//! file, with its guests on veth pairs (AF_PACKET ports); optionally "foreign" hosts
//! (a Linux `vxlan` device and bridge holding a port of VPC a, SPEC 10.1 interop) and a
//! rogue endpoint on the underlay (spoofed VXLAN, SPEC 10.3).
//!
//! ```text
//!            underlay namespace: bridge br0, 192.0.2.0/24, MTU 1500
//!      ┌──────────────┬──────────────┬──────────────┬──────────────┬──────────┐
//!  h1 192.0.2.11   h2 .12         h3 .13         f1 .21 (vxlan)   rogue .66
//!  vpcswitch       vpcswitch      vpcswitch      br0 + vx0
//!  web1 app lvs    web2 db        client far     fg
//! ```
//!
//! The guests are [`net::guests`] (the single-host suites' topology and
//! [`net::VPCS`]) plus [`EXTRA_GUESTS`], each placed on a host; the guest side of the
//! harness (ping, iperf3, keepalived, scapy, HTTP, spawned processes) is [`Net`]'s,
//! which a fleet derefs to. Guests' MTU is the underlay's minus the encapsulation: 1450
//! (SPEC 10.6).
//!
//! Every namespace (guests, hosts, underlay, foreign, rogue) and every process (switches,
//! guest programs) is removed on drop, processes killed by PID, also when the test
//! failed. Traffic stays inside the namespaces.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vpcswitch_store::harness::EtcdCluster;

use super::net::{self, ctl_at, port_drops, row, Kind, Net, G};
use super::{must, sh};

/// The underlay's prefix (its own addresses, outside every VPC).
pub const UNDERLAY: &str = "192.0.2";
/// The underlay's MTU; guests get this minus 50 (SPEC 10.6).
pub const UNDERLAY_MTU: u32 = 1500;
pub const GUEST_MTU: u32 = UNDERLAY_MTU - 50;
/// Where each switch serves its metrics, inside its own host namespace.
pub const METRICS: &str = "127.0.0.1:9477";
/// The rogue endpoint's underlay address and MAC: no host of the network.
pub const ROGUE_IP: &str = "192.0.2.66";
pub const ROGUE_MAC: &str = "02:00:c0:00:02:42";
/// The store's namespace's underlay address (SPEC 11: the etcd members listen there,
/// the switches reach them over the underlay).
pub const STORE_IP: &str = "192.0.2.5";
pub const STORE_MAC: &str = "02:00:c0:00:02:05";

/// The standard placement: the VIP's two ports on different hosts, the client on a
/// third, each peered VPC on another host than its peer (SPEC 10.2).
pub const PLACEMENT: &[(&str, &[&str])] = &[
    ("h1", &["web1", "app", "lvs"]),
    ("h2", &["web2", "db"]),
    ("h3", &["client", "far"]),
];

/// Guests beyond [`net::guests`]: LVS-DR backends (check off, SPEC 6.2) and guests for
/// foreign hosts, all in subnet web.
pub fn extra_guests() -> Vec<G> {
    let g = |name, mac, ip, check| G {
        name,
        subnet: "web",
        mac,
        ip,
        gw: "10.0.1.1",
        check,
    };
    vec![
        g("be2", "02:00:00:00:01:22", "10.0.1.22", false),
        g("be3", "02:00:00:00:01:23", "10.0.1.23", false),
        g("fg", "02:00:00:00:01:31", "10.0.1.31", true),
        g("fg2", "02:00:00:00:01:32", "10.0.1.32", true),
    ]
}

pub const EXTRA_GUESTS: &[&str] = &["be2", "be3", "fg", "fg2"];

fn guest(name: &str) -> G {
    net::guests()
        .into_iter()
        .chain(extra_guests())
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no guest named {name} in net::guests or extra_guests"))
}

/// One host of the fleet: a switch host or a foreign (Linux vxlan) one.
#[derive(Debug)]
pub struct FleetHost {
    pub name: String,
    /// its namespace
    pub ns: String,
    /// its underlay address (the tunnel endpoint) and MAC
    pub ip: String,
    pub mac: String,
    pub guests: Vec<&'static str>,
    /// a Linux vxlan + bridge host instead of a switch
    pub foreign: bool,
    /// the switch (switch hosts, while it runs)
    pub switch: Option<Child>,
    /// its control socket and log
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// What to build.
#[derive(Debug, Default)]
pub struct FleetBuilder {
    hosts: Vec<(String, Vec<&'static str>, bool)>,
    rogue: bool,
    extra: String,
    workers: usize,
    switches: bool,
    tap: bool,
    /// the lease TTL of each switch, in seconds, with `.etcd()`
    etcd: Option<u64>,
}

impl FleetBuilder {
    /// The network in a 3-member etcd cluster (SPEC 11) on the underlay, in a namespace
    /// of its own at [`STORE_IP`], written by `vpcswitch apply`; every switch runs
    /// `vpcswitch run --etcd URLS --host NAME --lease-ttl TTL` instead of reading the
    /// file.
    pub fn etcd(mut self, lease_ttl: u64) -> Self {
        self.etcd = Some(lease_ttl);
        self
    }

    /// A switch host running `guests`.
    pub fn host(mut self, name: &str, guests: &[&'static str]) -> Self {
        self.hosts.push((name.into(), guests.to_vec(), false));
        self
    }

    /// The three hosts of [`PLACEMENT`].
    pub fn standard(self) -> Self {
        PLACEMENT.iter().fold(self, |b, (h, g)| b.host(h, g))
    }

    /// Adds `guests` to switch host `name` (LVS backends...).
    pub fn with_guests(mut self, name: &str, guests: &[&'static str]) -> Self {
        let h = self
            .hosts
            .iter_mut()
            .find(|h| h.0 == name)
            .expect("a host of the builder");
        h.1.extend_from_slice(guests);
        self
    }

    /// A foreign host: a Linux bridge with a `vxlan` device on VPC a's VNI holding
    /// `guests` (in VPC a), placed in the network file as a host of its own.
    pub fn foreign(mut self, name: &str, guests: &[&'static str]) -> Self {
        self.hosts.push((name.into(), guests.to_vec(), true));
        self
    }

    /// A rogue namespace on the underlay at [`ROGUE_IP`], known to no switch.
    pub fn rogue(mut self) -> Self {
        self.rogue = true;
        self
    }

    /// Appended to the network file.
    pub fn extra(mut self, text: &str) -> Self {
        self.extra += text;
        self
    }

    /// Workers per switch (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Guests on `tap` ports instead of AF_PACKET veths: each switch makes its guests'
    /// TAP devices in its host namespace, and the fleet moves them into the guests'
    /// namespaces once it runs (a switch that stops takes its TAPs with it: for tests
    /// that keep the switches running).
    pub fn tap(mut self) -> Self {
        self.tap = true;
        self
    }

    /// Builds everything but starts no switch ([`Fleet::start_switch`] does): for the
    /// harness's own checks.
    pub fn without_switches(mut self) -> Self {
        self.switches = false;
        self
    }

    pub fn start(self) -> Fleet {
        Fleet::start(self)
    }
}

/// A running fleet. Derefs to the [`Net`] of its guests (ping, iperf3, keepalived,
/// scapy, HTTP, spawn: all by guest name); per-host switch helpers are its own.
#[derive(Debug)]
pub struct Fleet {
    pub net: Net,
    pub hosts: Vec<FleetHost>,
    /// the underlay's namespace (bridge `br0`)
    pub underlay: String,
    /// the rogue endpoint's namespace, if built
    pub rogue: Option<String>,
    /// every VPC's VNI, from the network file
    pub vnis: Vec<(String, u32)>,
    /// the gateway MAC of every subnet on every host (one distributed router)
    pub gateway_mac: String,
    /// the store (`.etcd()`) and its namespace
    pub etcd: Option<EtcdCluster>,
    pub store_ns: Option<String>,
    /// the switches' lease TTL with the store, in seconds
    pub lease_ttl: u64,
}

impl Deref for Fleet {
    type Target = Net;
    fn deref(&self) -> &Net {
        &self.net
    }
}

impl DerefMut for Fleet {
    fn deref_mut(&mut self) -> &mut Net {
        &mut self.net
    }
}

fn require_tools() {
    net::require();
    for tool in ["bridge", "ip"] {
        let (ok, _) = sh(&format!("command -v {tool}"));
        assert!(
            ok,
            "missing tool `{tool}` (Debian package iproute2): run scripts/test.sh"
        );
    }
}

impl Fleet {
    pub fn builder() -> FleetBuilder {
        FleetBuilder {
            workers: 2,
            switches: true,
            ..Default::default()
        }
    }

    fn start(b: FleetBuilder) -> Fleet {
        require_tools();
        let tag = format!("vo{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("vpcswitch-fleet-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let guests: Vec<G> = b
            .hosts
            .iter()
            .flat_map(|h| h.1.iter().map(|g| guest(g)))
            .collect();
        let mut f = Fleet {
            net: Net {
                cfg_path: dir.join("network.toml"),
                // no single switch: a Net method that needs one fails loudly
                socket: dir.join("no-single-switch.sock"),
                metrics: "0.0.0.0:0".into(),
                tag: tag.clone(),
                dir: dir.clone(),
                switch: None,
                procs: vec![],
                guests,
                extra_ns: vec![],
                kind: if b.tap { Kind::Tap } else { Kind::AfPacket },
            },
            hosts: vec![],
            underlay: format!("{tag}-ul"),
            rogue: None,
            vnis: vec![],
            gateway_mac: String::new(),
            etcd: None,
            store_ns: None,
            lease_ttl: b.etcd.unwrap_or(3),
        };
        // from here on, whatever fails is cleaned up by Drop
        let (mut sw, mut fo) = (10u8, 20u8);
        for (name, g, foreign) in &b.hosts {
            let n = if *foreign {
                fo += 1;
                fo
            } else {
                sw += 1;
                sw
            };
            f.hosts.push(FleetHost {
                name: name.clone(),
                ns: format!("{tag}-hv-{name}"),
                ip: format!("{UNDERLAY}.{n}"),
                mac: format!("02:00:c0:00:02:{n:02x}"),
                guests: g.clone(),
                foreign: *foreign,
                switch: None,
                socket: dir.join(format!("{name}.sock")),
                log: dir.join(format!("{name}.log")),
            });
        }
        let text = f.config_text(b.workers, &b.extra);
        std::fs::write(&f.net.cfg_path, &text).expect("write network file");
        let cfg = vpcswitch::model::Config::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("the fleet's network file is valid: {e}\n{text}"));
        f.vnis = cfg
            .vpcs
            .iter()
            .map(|v| v.name.clone())
            .zip(cfg.vnis())
            .collect();
        f.gateway_mac = cfg.switch.gateway_mac.to_string();
        f.build_underlay();
        for i in 0..f.hosts.len() {
            f.build_host(i);
        }
        if b.rogue {
            let ns = format!("{tag}-rogue");
            f.rogue = Some(ns.clone());
            f.underlay_link(&ns, "rogue", ROGUE_IP, ROGUE_MAC);
        }
        if b.etcd.is_some() {
            let ns = format!("{tag}-store");
            f.underlay_link(&ns, "store", STORE_IP, STORE_MAC);
            f.store_ns = Some(ns.clone());
            f.etcd = Some(EtcdCluster::start_in(Some(&ns), STORE_IP, 3));
            let path = f.net.cfg_path.clone();
            let (ok, out) = f.apply(&path, false);
            assert!(ok, "vpcswitch apply of the fleet's network: {out}");
        }
        if b.switches {
            for h in f.switch_hosts() {
                f.start_switch(&h);
                if b.tap {
                    f.attach_taps(&h);
                }
            }
        }
        f
    }

    /// The network file: [`net::VPCS`], the hosts, every guest's port on its host.
    fn config_text(&self, workers: usize, extra: &str) -> String {
        let mut c = format!("[switch]\nworkers = {workers}\n");
        for h in &self.hosts {
            c += &format!(
                "\n[[hosts]]\nname = \"{}\"\nendpoint = \"{}\"\n",
                h.name, h.ip
            );
        }
        c += net::VPCS;
        for h in &self.hosts {
            for g in h.guests.iter().map(|g| guest(g)) {
                c += &format!(
                    "\n[[ports]]\nname = \"{}\"\nsubnet = \"{}\"\nmac = \"{}\"\nips = [\"{}\"]\nsrc_dst_check = {}\nhost = \"{}\"\n",
                    g.name, g.subnet, g.mac, g.ip, g.check, h.name
                );
                if !h.foreign {
                    let ty = if self.net.kind == Kind::Tap {
                        "tap"
                    } else {
                        "af_packet"
                    };
                    c += &format!(
                        "backend = {{ type = \"{ty}\", ifname = \"{}\" }}\n",
                        host_ifname(g.name)
                    );
                }
            }
        }
        c + extra
    }

    /// The underlay: a namespace with a bridge (no STP, no multicast snooping).
    fn build_underlay(&mut self) {
        let u = &self.underlay;
        must(&format!("ip netns add {u}"));
        self.net.extra_ns.push(u.clone());
        must(&format!(
            "ip netns exec {u} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link add br0 type bridge stp_state 0 mcast_snooping 0 && ip link set br0 up'"
        ));
    }

    /// Namespace `ns` with `ul0` (address `ip`/24, MAC `mac`, MTU 1500) on the underlay
    /// bridge, through the underlay's port `u{name}`.
    fn underlay_link(&mut self, ns: &str, name: &str, ip: &str, mac: &str) {
        let u = &self.underlay;
        must(&format!("ip netns add {ns}"));
        self.net.extra_ns.push(ns.to_string());
        must(&format!(
            "ip link add u{name} netns {u} mtu {UNDERLAY_MTU} type veth peer name ul0 netns {ns} mtu {UNDERLAY_MTU}"
        ));
        must(&format!("ip -n {u} link set u{name} master br0 up"));
        must(&format!(
            "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set ul0 address {mac} && ip addr add {ip}/24 dev ul0 && ip link set ul0 up'"
        ));
    }

    /// A host: its underlay link, its guests on veth pairs (MTU 1450); a foreign host's
    /// Linux bridge and vxlan device too.
    fn build_host(&mut self, i: usize) {
        let (name, ns, ip, mac) = {
            let h = &self.hosts[i];
            (h.name.clone(), h.ns.clone(), h.ip.clone(), h.mac.clone())
        };
        self.underlay_link(&ns, &name, &ip, &mac);
        let foreign = self.hosts[i].foreign;
        if foreign {
            // `ethtool -K ul0 tx off`: the kernel completes the inner checksums of what
            // the vxlan device sends, as a NIC would; on a veth with checksum offload on,
            // a guest's TCP leaves with its inner checksum unfilled (CHECKSUM_PARTIAL),
            // which a receiver's UDP socket hands over as it is (there is no metadata
            // to say so, unlike AF_PACKET's virtio-net header) and the receiving guest
            // then drops
            let vni = self.vni("a");
            must(&format!(
                "ip netns exec {ns} sh -c 'ethtool -K ul0 tx off >/dev/null && \
                 ip link add br0 type bridge stp_state 0 mcast_snooping 0 && \
                 ip link add vx0 type vxlan id {vni} local {ip} dstport 4789 nolearning proxy dev ul0 && \
                 ip link set vx0 master br0 && ip link set vx0 up && ip link set br0 up'"
            ));
        }
        for g in self.hosts[i].guests.iter().map(|g| guest(g)) {
            if self.net.kind == Kind::Tap && !foreign {
                // the switch makes the TAP: attached once it runs
                break;
            }
            let gns = self.net.ns(g.name);
            let hif = host_ifname(g.name);
            must(&format!("ip netns add {gns}"));
            // the switch's end takes up to the underlay's MTU, so that a guest whose MTU is
            // set too large reaches the switch (and gets "fragmentation needed", SPEC
            // 10.6) instead of being cut by the veth; a Linux bridge's ports match vx0's
            let host_mtu = if foreign { GUEST_MTU } else { UNDERLAY_MTU };
            must(&format!(
                "ip link add {hif} netns {ns} mtu {host_mtu} type veth peer name eth0 netns {gns} mtu {GUEST_MTU}"
            ));
            let master = if foreign { " master br0" } else { "" };
            must(&format!("ip -n {ns} link set {hif}{master} up"));
            must(&format!(
                "ip netns exec {gns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set eth0 address {} && ip addr add {}/24 dev eth0 && ip link set eth0 up && ip route add default via {}'",
                g.mac, g.ip, g.gw
            ));
            if foreign {
                assert_eq!(
                    guest_vpc(&g),
                    "a",
                    "a foreign host bridges VPC a only: {} is in {}",
                    g.name,
                    g.subnet
                );
            }
        }
        if foreign {
            self.program_foreign(i);
        }
    }

    /// What a controller would program into a foreign host's Linux vxlan device: every
    /// other host as a flood destination (broadcast, multicast, unknown unicast), each
    /// port of VPC a elsewhere by MAC to its host (static fdb), and its address in the
    /// device's neighbour table, which `proxy` answers ARP from (the ingress host answers
    /// ARP, SPEC 10.4: no ARP request crosses the tunnel).
    fn program_foreign(&self, i: usize) {
        let me = &self.hosts[i];
        let mut cmds = vec![];
        for h in self.hosts.iter().filter(|h| h.name != me.name) {
            cmds.push(format!(
                "bridge fdb append 00:00:00:00:00:00 dev vx0 dst {} self permanent",
                h.ip
            ));
            for g in h
                .guests
                .iter()
                .map(|g| guest(g))
                .filter(|g| guest_vpc(g) == "a")
            {
                cmds.push(format!(
                    "bridge fdb add {} dev vx0 dst {} self permanent",
                    g.mac, h.ip
                ));
                cmds.push(format!(
                    "ip neigh add {} lladdr {} dev vx0 nud permanent",
                    g.ip, g.mac
                ));
            }
        }
        must(&format!(
            "ip netns exec {} sh -c '{}'",
            me.ns,
            cmds.join(" && ")
        ));
    }

    /// Moves switch host `name`'s guest TAPs (made by its switch) into the guests'
    /// namespaces and sets each guest up there (MTU 1450, SPEC 10.6).
    fn attach_taps(&mut self, name: &str) {
        let h = self.host(name);
        let ns = h.ns.clone();
        for g in h.guests.clone().iter().map(|g| guest(g)) {
            let gns = self.net.ns(g.name);
            let hif = host_ifname(g.name);
            must(&format!("ip netns add {gns}"));
            must(&format!("ip -n {ns} link set {hif} netns {gns}"));
            must(&format!(
                "ip netns exec {gns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link set lo up && ip link set {hif} name eth0 && ip link set eth0 address {} mtu {GUEST_MTU} && ip addr add {}/24 dev eth0 && ip link set eth0 up && ip route add default via {}'",
                g.mac, g.ip, g.gw
            ));
        }
    }

    /// Names of the switch hosts.
    pub fn switch_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !h.foreign)
            .map(|h| h.name.clone())
            .collect()
    }

    pub fn host(&self, name: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the fleet"))
    }

    fn host_mut(&mut self, name: &str) -> &mut FleetHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the fleet"))
    }

    /// The host guest `g` lives on.
    pub fn host_of(&self, g: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.guests.contains(&g))
            .unwrap_or_else(|| panic!("guest {g} is on no host"))
    }

    /// VPC `vpc`'s VNI, as every switch derives it from the file.
    pub fn vni(&self, vpc: &str) -> u32 {
        self.vnis
            .iter()
            .find(|v| v.0 == vpc)
            .map(|v| v.1)
            .unwrap_or_else(|| panic!("no vpc {vpc}"))
    }

    /// Starts host `name`'s switch inside its namespace, `vpcswitch run -c FILE --host
    /// NAME --control-socket ... --metrics ...`; returns when its control socket answers.
    pub fn start_switch(&mut self, name: &str) {
        let h = self.host(name);
        assert!(!h.foreign, "{name} is a foreign host");
        let _ = std::fs::remove_file(&h.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&h.log)
            .expect("log");
        // `ip netns exec` execs the command: the child's PID is the switch's
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &h.ns,
            env!("CARGO_BIN_EXE_vpcswitch"),
            "run",
        ]);
        match &self.etcd {
            Some(e) => cmd
                .args(["--etcd", &e.urls(), "--lease-ttl"])
                .arg(self.lease_ttl.to_string()),
            None => cmd.arg("-c").arg(&self.net.cfg_path),
        };
        let child = cmd
            .args(["--host", name, "--control-socket"])
            .arg(&h.socket)
            .args(["--metrics", METRICS])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vpcswitch");
        let socket = h.socket.clone();
        self.host_mut(name).switch = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
                .args(["ctl", "-s"])
                .arg(&socket)
                .arg("stats")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            let exited = self
                .host_mut(name)
                .switch
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < end,
                "switch {name} did not start ({exited:?}):\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `vpcswitch apply -f FILE --etcd URLS [--dry-run]`, run in the store's namespace
    /// (fleets built with `.etcd()`): whether it succeeded, and its stdout then stderr.
    pub fn apply(&self, file: &std::path::Path, dry_run: bool) -> (bool, String) {
        let (Some(ns), Some(e)) = (&self.store_ns, &self.etcd) else {
            panic!("apply needs a fleet built with .etcd()");
        };
        sh(&format!(
            "ip netns exec {ns} {} apply -f {} --etcd {}{}",
            env!("CARGO_BIN_EXE_vpcswitch"),
            file.display(),
            e.urls(),
            if dry_run { " --dry-run" } else { "" }
        ))
    }

    /// The network file as the fleet wrote it.
    pub fn network_text(&self) -> String {
        std::fs::read_to_string(&self.net.cfg_path).expect("the fleet's network file")
    }

    /// The store's network revision host `name`'s switch runs (0 without a store).
    pub fn store_revision_on(&self, name: &str) -> i64 {
        self.ctl_on(name, "stats")["store"]["revision"]
            .as_i64()
            .unwrap_or(0)
    }

    /// Waits until every switch in `hosts` runs store revision `rev` or later; the time
    /// it took.
    pub fn wait_revision(&self, hosts: &[&str], rev: i64, secs: u64) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            if hosts.iter().all(|h| self.store_revision_on(h) >= rev) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Writes `text` as file `name` of the fleet's directory and applies it to the
    /// store (fleets built with `.etcd()`); the new network revision. The test fails
    /// when the apply is refused or changes nothing.
    pub fn apply_text(&self, name: &str, text: &str) -> i64 {
        let path = self.file(name);
        std::fs::write(&path, text).expect("write network file");
        let (ok, out) = self.apply(&path, false);
        assert!(ok && out.contains("applied:"), "apply of {name}: {out}");
        applied_revision(&out)
    }

    /// The owner of VIP "vip" host `on` has from the store (port, host, revision), if
    /// any (SPEC 11.4).
    pub fn store_owner_on(&self, on: &str) -> Option<(String, String, i64)> {
        let o = &self.ctl_on(on, "stats")["store"]["vip_owners"]["vip"];
        Some((
            o["port"].as_str()?.to_string(),
            o["host"].as_str()?.to_string(),
            o["revision"].as_i64()?,
        ))
    }

    /// Waits until every host in `hosts` has `port` as the store's owner of "vip".
    pub fn wait_store_owner(&self, hosts: &[&str], port: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if hosts
                .iter()
                .all(|h| self.store_owner_on(h).is_some_and(|o| o.0 == port))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until every switch in `hosts` sees every switch host's lease alive (SPEC
    /// 11.3: `ctl stats` store.alive) and none of them down.
    pub fn wait_all_alive(&self, hosts: &[&str], secs: u64) -> bool {
        let all = self.switch_hosts();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let ok = hosts.iter().all(|h| {
                let st = &self.ctl_on(h, "stats")["store"];
                let alive: Vec<&str> = st["alive"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                all.iter().all(|a| alive.contains(&a.as_str()))
                    && st["hosts_down"].as_array().is_some_and(|d| d.is_empty())
            });
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Host `name`'s switch log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(&self.host(name).log).unwrap_or_default()
    }

    /// Every switch's log, for failure messages.
    pub fn logs(&self) -> String {
        self.switch_hosts()
            .iter()
            .map(|h| format!("--- {h}\n{}", self.log(h)))
            .collect()
    }

    /// The PID of host `name`'s switch.
    pub fn switch_pid(&self, name: &str) -> u32 {
        self.host(name)
            .switch
            .as_ref()
            .map(|c| c.id())
            .unwrap_or_else(|| panic!("switch {name} is not running"))
    }

    /// Stops host `name`'s switch: SIGTERM (true when it exits 0 within 5 s), or
    /// SIGKILL when `kill9` (a crash: true).
    pub fn stop_switch(&mut self, name: &str, kill9: bool) -> bool {
        let Some(mut c) = self.host_mut(name).switch.take() else {
            return false;
        };
        if !kill9 {
            return net::terminate(c);
        }
        let _ = c.kill();
        let _ = c.wait();
        true
    }

    /// `ip netns exec` in host `name`'s namespace.
    pub fn on_host(&self, name: &str, cmd: &str) -> (bool, String) {
        sh(&format!("ip netns exec {} {cmd}", self.host(name).ns))
    }

    /// `vpcswitch ctl --json ARGS` on host `name`'s switch.
    pub fn ctl_on(&self, name: &str, args: &str) -> Value {
        ctl_at(&self.host(name).socket, args)
    }

    /// Host `name`'s metrics (scraped inside its namespace).
    pub fn scrape_on(&self, name: &str) -> String {
        let (ok, out) = self.on_host(
            name,
            &format!("curl -sf --max-time 3 http://{METRICS}/metrics"),
        );
        assert!(ok, "scrape of {name} failed: {out}");
        out
    }

    /// Drops of `reason` charged to `port` on host `name`.
    pub fn drops_on(&self, name: &str, port: &str, reason: &str) -> u64 {
        port_drops(&self.ctl_on(name, "stats"), port, reason)
    }

    /// Host `name`'s total drops of `reason` (ports, tunnels, unattributed).
    pub fn total_drops_on(&self, name: &str, reason: &str) -> u64 {
        self.ctl_on(name, "stats")["drops"][reason]
            .as_u64()
            .unwrap_or(0)
    }

    /// `ctl hosts` on host `name`: the row of host `of`.
    pub fn host_row_on(&self, name: &str, of: &str) -> Value {
        row(&self.ctl_on(name, "hosts")["hosts"], of)
    }

    /// Frames host `name`'s switch sent to port `port` (`ctl ports`' tx_packets).
    pub fn tx_on(&self, name: &str, port: &str) -> u64 {
        row(&self.ctl_on(name, "stats")["ports"], port)["tx_packets"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Frames delivered to every local port of every running switch (tx_packets summed).
    pub fn delivered(&self) -> u64 {
        self.hosts
            .iter()
            .filter(|h| h.switch.is_some())
            .map(|h| h.guests.iter().map(|g| self.tx_on(&h.name, g)).sum::<u64>())
            .sum()
    }

    /// The owner of VIP `vip` as host `name`'s switch sees it.
    pub fn vip_owner_on(&self, name: &str, vip: &str) -> Option<String> {
        row(&self.ctl_on(name, "vips"), vip)["owner"]
            .as_str()
            .map(String::from)
    }

    /// Waits until every switch in `hosts` sees `who` owning VIP "vip".
    pub fn wait_owner_on(&self, hosts: &[&str], who: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if hosts
                .iter()
                .all(|h| self.vip_owner_on(h, "vip").as_deref() == Some(who))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs a scapy snippet in the rogue namespace (`iface` is its underlay link).
    pub fn scapy_rogue(&self, code: &str) {
        let ns = self.rogue.as_ref().expect("a fleet built with .rogue()");
        let path = self.file("scapy-rogue.py");
        std::fs::write(
            &path,
            format!("from scapy.all import *\nconf.verb = 0\niface = 'ul0'\n{code}\n"),
        )
        .expect("script");
        let (ok, out) = sh(&format!(
            "ip netns exec {ns} /usr/bin/python3 {}",
            path.display()
        ));
        assert!(ok, "scapy in the rogue namespace failed: {out}");
    }

    /// Starts a background process in the underlay's namespace (a capture on `br0`); it
    /// is killed at the end.
    pub fn spawn_underlay(&mut self, cmd: &str, out: &str) -> u32 {
        let ns = self.underlay.clone();
        self.net.spawn_in(&ns, cmd, out)
    }

    /// Starts a background process in host `name`'s namespace; killed at the end.
    pub fn spawn_on_host(&mut self, name: &str, cmd: &str, out: &str) -> u32 {
        let ns = self.host(name).ns.clone();
        self.net.spawn_in(&ns, cmd, out)
    }

    /// Takes host `name` off the underlay (its link down): a dead host, as far as the
    /// others can tell.
    pub fn cut_host(&self, name: &str) {
        must(&format!("ip -n {} link set u{name} down", self.underlay));
    }
}

/// The revision `vpcswitch apply` printed ("applied: revision A -> B").
pub fn applied_revision(out: &str) -> i64 {
    out.lines()
        .filter(|l| l.starts_with("applied:"))
        .find_map(|l| l.split("-> ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in apply's output: {out}"))
}

/// The switch-side name of a guest's veth (in its host's namespace).
pub fn host_ifname(guest: &str) -> String {
    format!("v{guest}")
}

/// The VPC of a guest's subnet, in [`net::VPCS`].
pub fn guest_vpc(g: &G) -> &'static str {
    match g.subnet {
        "web" | "app" => "a",
        "db" => "b",
        "far" => "c",
        s => panic!("subnet {s} is not in net::VPCS"),
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // guest programs first (keepalived, iperf3, captures), by PID
        for c in &mut self.net.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.net.procs.clear();
        for h in self.switch_hosts() {
            let _ = self.stop_switch(&h, false);
        }
        // the store's members, by PID (its namespace goes with the others)
        self.etcd.take();
        // the hosts', underlay's and rogue's namespaces are in net.extra_ns, the guests'
        // in net.guests: Net's drop deletes them (and the directory)
    }
}
