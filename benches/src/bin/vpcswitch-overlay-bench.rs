//! `vpcswitch-overlay-bench`: guests on two hosts joined by vpcswitch's overlay (one
//! switch per host, VXLAN between them) side by side with the same guests joined by
//! Linux `vxlan` devices and bridges (issue 18, "Benchmarks").
//!
//! ```text
//! vpcswitch-overlay-bench [--runs 3] [--secs 3] [--only a,b] [--write-docs] [--smoke] [--verbose]
//!                         [--guests host|other|any]
//! ```
//!
//! For each run, and in each run for each contender in turn (in reverse order on even
//! runs, so neither goes first every time and slow drifts of the machine hit both alike),
//! it builds this in network namespaces, measures, and tears it all down:
//!
//! ```text
//!   underlay: bridge br0 (no STP), MTU 1500, 192.0.2.0/24
//!      ├── host h1: ul0 192.0.2.1 ── guests a 10.9.0.11 and c 10.9.0.13
//!      └── host h2: ul0 192.0.2.2 ── guest  b 10.9.0.12
//! ```
//!
//! Each guest has `eth0` (MTU 1450: the underlay's 1500 minus VXLAN's 50, SPEC 10.6;
//! offloads on, as veth and TAP give them), one subnet 10.9.0.0/24, VNI 100. Contenders:
//!
//! * `linux-vxlan`: in each host a Linux bridge with the guests' host-side veths (MTU
//!   1450) and a `vxlan` device (`id 100 local <ul0> dstport 4789 nolearning dev ul0`),
//!   a static fdb: the other host as flood destination (all-zero MAC: ARP, broadcast) and
//!   each guest of the other host by MAC;
//! * `vpcswitch-af_packet`: one `vpcswitch run` per host namespace, on the same network
//!   file but for its `[switch] host` (a file per host, as `vpcswitch run` has no `--host`
//!   flag on this branch), one worker (`pin_workers`, `idle = "adaptive"`), the guests'
//!   host-side veths (MTU 1500, the switch's end) as `af_packet` ports;
//! * `vpcswitch-tap`: the same with `tap` ports created by the switch inside the guests'
//!   namespaces (`netns`), named `eth0` there.
//!
//! **CPUs** (the machine this was made on has 2): each host gets one. Host h1's switch
//! and h1's guests' programs run on CPU 0 (`taskset -c 0`; the switch's worker is pinned
//! inside that by `pin_workers`), host h2's switch and b's programs on CPU 1: like two
//! one-CPU hosts, where a guest and its host's switch share the host's CPU. Linux's
//! bridge and vxlan work in softirq wherever the packet is sent from, that is mostly on
//! the sender's CPU (veth hands a frame to the next namespace on the same CPU), so for
//! a → b Linux forwards on CPU 0 all the way to b's socket, and b's iperf3 reads on CPU 1.
//!
//! Measured, a → b across the hosts unless said otherwise:
//!
//! * TCP throughput: iperf3, 1 flow and 4 flows (b the server), and with 1 flow the
//!   sender's retransmissions, the mean size of the packets h1 puts on the underlay
//!   (`ul0`'s tx bytes / tx packets: whether 64 KB offload super-packets cross the
//!   underlay whole, or as MTU-sized packets) and the machine's CPU;
//! * 64-byte UDP packets per second: `vpcswitch-udpgen --raw` (prebuilt frames,
//!   `sendmmsg` on an AF_PACKET socket in a) for the run's seconds, counted at b's `eth0`,
//!   and the machine's CPU meanwhile;
//! * the switches' CPU when idle (2 s after the last traffic, over 2 s; 1 s and 1 s with
//!   `--secs 1`): both switch processes together, % of one core (n/a for Linux: no
//!   process);
//! * RTT at a light rate, 1 ping / 10 ms (`--secs` × 100 pings), median and p99: from a
//!   to b (across the hosts, right after the idle window), then from a to c (on the same
//!   host); the **extra latency of the cross-host hop** is the difference of the two
//!   medians, per run; the switches' and the machine's CPU during the a → b pings.
//!
//! The machine's CPU is busy time of every CPU from `/proc/stat` (user, system, irq,
//! softirq), % of one core (200 = both CPUs of this VM): it counts whatever else runs,
//! so it means something only on a quiet machine. Ratios are vpcswitch's median over
//! linux-vxlan's. Targets (issue 18): TCP ≥ 0.7× the Linux overlay, pps ≥ 1.5×; the table
//! says whether each is met. Speed is reported, never asserted: a run fails only when a
//! measurement could not be made (no connectivity, a tool failed).
//!
//! `--smoke`: one run of 1 s per contender, to show that it works (CI). `--write-docs`:
//! the table into docs/benchmarks.md between the `vpcswitch-overlay-bench` markers.
//! `--verbose`: after each contender's run, what the hosts' kernels, the guests' `eth0`
//! and the switches (`ctl hosts`) counted (all measurements together), to see where
//! packets were lost.
//! Needs root. Every load is bounded in time; everything it creates (namespaces and the
//! links in them, processes by PID, its directory) is removed when a contender's
//! measurement ends, also when it fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vpcswitch_benches::lab::{
    catch_signals, check_interrupted, cpu_secs, die, gbps, have, interrupted, iperf3, is_root,
    json_f64, link_counter, machine, pings, sh, udp_kpps, wait_ping, with_cpu, with_machine_cpu,
    Args, Guest, Lab,
};
use vpcswitch_benches::{cell, median, table_head};

/// The guests: (name, host, address, MAC).
const GUESTS: [(&str, usize, &str, &str); 3] = [
    ("a", 1, "10.9.0.11", "02:00:00:09:00:01"),
    ("b", 2, "10.9.0.12", "02:00:00:09:00:02"),
    ("c", 1, "10.9.0.13", "02:00:00:09:00:03"),
];
/// The VPC's VNI (both contenders).
const VNI: u32 = 100;
/// Underlay MTU, and the guests' (minus VXLAN's 50 bytes).
const UNDERLAY_MTU: u32 = 1500;
const GUEST_MTU: u32 = UNDERLAY_MTU - 50;
/// The CPU (`taskset -c`) of host `h` (1 or 2): its switch and its guests' programs.
fn host_cpu(h: usize) -> &'static str {
    if h == 1 {
        "0"
    } else {
        "1"
    }
}
/// Where the guests' programs run (`--guests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// on their host's CPU, with its switch (the default: one CPU per host)
    Host,
    /// on the other host's CPU
    Other,
    /// on both CPUs, wherever the scheduler puts them
    Any,
}

impl Placement {
    const ALL: [Placement; 3] = [Placement::Host, Placement::Other, Placement::Any];
    fn name(self) -> &'static str {
        match self {
            Placement::Host => "host",
            Placement::Other => "other",
            Placement::Any => "any",
        }
    }
    /// The `taskset -c` list of the programs of a guest on host `h`.
    fn cpus(self, h: usize) -> &'static str {
        match self {
            Placement::Host => host_cpu(h),
            Placement::Other => host_cpu(3 - h),
            Placement::Any => "0,1",
        }
    }
    /// For the table.
    fn describe(self) -> &'static str {
        match self {
            Placement::Host => {
                "each guest's programs on its host's CPU (a and c on CPU 0, b on CPU 1)"
            }
            Placement::Other => {
                "each guest's programs on the other host's CPU (a and c on CPU 1, b on CPU 0)"
            }
            Placement::Any => "the guests' programs on both CPUs, where the scheduler puts them",
        }
    }
}

/// Host `h`'s underlay address, the tunnel endpoint.
fn host_ip(h: usize) -> String {
    format!("192.0.2.{h}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    LinuxVxlan,
    AfPacket,
    Tap,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::LinuxVxlan, Contender::AfPacket, Contender::Tap];
    fn name(self) -> &'static str {
        match self {
            Contender::LinuxVxlan => "linux-vxlan",
            Contender::AfPacket => "vpcswitch-af_packet",
            Contender::Tap => "vpcswitch-tap",
        }
    }
    fn is_vpcswitch(self) -> bool {
        self != Contender::LinuxVxlan
    }
    /// How it forwards and where, for the table.
    fn setup(self) -> &'static str {
        match self {
            Contender::LinuxVxlan => "bridge + vxlan per host, kernel (sender's softirq)",
            Contender::AfPacket => "1 worker per host, adaptive; h1 on CPU 0, h2 on CPU 1",
            Contender::Tap => "1 worker per host, adaptive; h1 on CPU 0, h2 on CPU 1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Metric {
    Tcp1,
    Tcp4,
    UdpKpps,
    Retrans1,
    UnderlayBytes,
    CpuTcp1,
    CpuUdp,
    RttCrossMedian,
    RttCrossP99,
    RttLocalMedian,
    RttLocalP99,
    ExtraHop,
    CpuPingSwitch,
    CpuPingMachine,
    CpuIdleSwitch,
}

impl Metric {
    /// Every metric (the tests check the table has each).
    #[cfg(test)]
    const ALL: [Metric; 15] = [
        Metric::Tcp1,
        Metric::Tcp4,
        Metric::UdpKpps,
        Metric::Retrans1,
        Metric::UnderlayBytes,
        Metric::CpuTcp1,
        Metric::CpuUdp,
        Metric::RttCrossMedian,
        Metric::RttCrossP99,
        Metric::RttLocalMedian,
        Metric::RttLocalP99,
        Metric::ExtraHop,
        Metric::CpuPingSwitch,
        Metric::CpuPingMachine,
        Metric::CpuIdleSwitch,
    ];
    fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 flow, Gbit/s",
            Metric::Tcp4 => "TCP 4 flows, Gbit/s",
            Metric::UdpKpps => "64-byte UDP, kpps",
            Metric::Retrans1 => "TCP 1 flow, retransmissions",
            Metric::UnderlayBytes => "TCP 1 flow, mean underlay packet, bytes",
            Metric::CpuTcp1 => "machine CPU, TCP 1 flow, % of a core",
            Metric::CpuUdp => "machine CPU, 64-byte UDP, % of a core",
            Metric::RttCrossMedian => "RTT across hosts, median µs",
            Metric::RttCrossP99 => "RTT across hosts, p99 µs",
            Metric::RttLocalMedian => "RTT same host, median µs",
            Metric::RttLocalP99 => "RTT same host, p99 µs",
            Metric::ExtraHop => "extra RTT of the cross-host hop, µs (medians)",
            Metric::CpuPingSwitch => "switches' CPU, light ping, % of a core",
            Metric::CpuPingMachine => "machine CPU, light ping, % of a core",
            Metric::CpuIdleSwitch => "switches' CPU, idle, % of a core",
        }
    }
    /// Decimals in the table.
    fn precision(self) -> usize {
        match self {
            Metric::Tcp1 | Metric::Tcp4 => 2,
            Metric::CpuPingSwitch | Metric::CpuIdleSwitch | Metric::CpuPingMachine => 1,
            _ => 0,
        }
    }
    /// Whether contender `c` has it ("n/a" otherwise): Linux has no switch process.
    fn applies(self, c: Contender) -> bool {
        !matches!(self, Metric::CpuPingSwitch | Metric::CpuIdleSwitch) || c.is_vpcswitch()
    }
    /// Whether a ratio against linux-vxlan says something (not for counts and sizes).
    fn ratio(self) -> bool {
        !matches!(self, Metric::Retrans1 | Metric::UnderlayBytes)
            && self.applies(Contender::LinuxVxlan)
    }
}

type Results = BTreeMap<(Contender, Metric), Vec<f64>>;

/// One contender's two hosts, removed on drop (by its [`Lab`]).
#[derive(Debug)]
struct Topo {
    tag: String,
    lab: Lab,
    /// the switches' processes (vpcswitch contenders), h1's first
    switches: Vec<u32>,
    placement: Placement,
}

impl Topo {
    fn ns(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }
    fn host_ns(&self, h: usize) -> String {
        self.ns(&format!("h{h}"))
    }
    fn guest(&self, g: &str) -> Guest {
        let (name, h, ip, mac) = GUESTS.into_iter().find(|x| x.0 == g).unwrap_or(GUESTS[0]);
        Guest {
            ns: self.ns(name),
            ip,
            mac,
            cpus: self.placement.cpus(h),
        }
    }
    /// Runs shell command `cmd` in namespace `ns`.
    fn on(&self, ns: &str, cmd: &str) -> Result<String, String> {
        sh(&format!("ip netns exec {ns} sh -c '{cmd}'"))
    }
    /// Guest `g`'s `eth0`, already in its namespace: MAC, address, MTU, up.
    fn guest_addr(&self, g: &str) -> Result<(), String> {
        let Guest { ns, ip, mac, .. } = self.guest(g);
        self.on(
            &ns,
            &format!("ip link set eth0 address {mac} mtu {GUEST_MTU} && ip addr add {ip}/24 dev eth0 && ip link set eth0 up"),
        )
        .map(drop)
    }
}

/// A namespace as every one here starts: no IPv6 (no router solicitations or DAD in the
/// measurements), loopback up.
fn new_ns(lab: &mut Lab, ns: &str) -> Result<(), String> {
    lab.add_netns(ns)?;
    sh(&format!(
        "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && sysctl -qw net.ipv6.conf.default.disable_ipv6=1 && ip link set lo up'"
    ))
    .map(drop)
}

/// The network file of the vpcswitch contenders, as host `h` reads it: only `[switch]
/// host` and the control socket differ between the hosts. `backend(guest)` gives each
/// port's backend.
fn network_file(dir: &Path, h: usize, backend: &dyn Fn(&str) -> String) -> String {
    let mut c = format!(
        "[switch]\nworkers = 1\npin_workers = true\nidle = \"adaptive\"\nhost = \"h{h}\"\ncontrol_socket = \"{}/h{h}.sock\"\n",
        dir.display()
    );
    for n in [1, 2] {
        c += &format!(
            "\n[[hosts]]\nname = \"h{n}\"\nendpoint = \"{}\"\n",
            host_ip(n)
        );
    }
    c += &format!(
        "\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.9.0.0/16\"]\nvni = {VNI}\n\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.9.0.0/24\"\n"
    );
    for (g, gh, ip, mac) in GUESTS {
        c += &format!(
            "\n[[ports]]\nname = \"{g}\"\nsubnet = \"s\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\nhost = \"h{gh}\"\nbackend = {}\n",
            backend(g)
        );
    }
    c
}

/// Starts host `h`'s switch in its namespace on its CPU; returns when its control socket
/// is there.
fn start_switch(t: &mut Topo, bin: &Path, h: usize, cfg: &str) -> Result<(), String> {
    let path = t.lab.dir.join(format!("h{h}.toml"));
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(t.lab.dir.join(format!("h{h}.log"))).map_err(|e| e.to_string())?;
    // taskset and `ip netns exec` exec what follows: the child's PID is the switch's
    let child = Command::new("taskset")
        .args(["-c", host_cpu(h), "ip", "netns", "exec", &t.host_ns(h)])
        .arg(bin)
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let pid = child.id();
    t.lab.procs.push(child);
    t.switches.push(pid);
    let sock = t.lab.dir.join(format!("h{h}.sock"));
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if t.lab.ended(pid) || Instant::now() > end {
            return Err(format!(
                "switch h{h} did not start: {}",
                t.lab.read(&format!("h{h}.log"))
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Builds the underlay, the two hosts and the guests joined by contender `c`.
fn build(c: Contender, run: usize, placement: Placement, bin: &Path) -> Result<Topo, String> {
    let tag = format!("ob{}{run}{}", std::process::id() % 10_000, c as u8);
    let dir = std::env::temp_dir().join(format!("vpcswitch-overlay-bench-{tag}"));
    let mut t = Topo {
        tag,
        lab: Lab::new(dir)?,
        switches: vec![],
        placement,
    };
    let ul = t.ns("ul");
    new_ns(&mut t.lab, &ul)?;
    sh(&format!(
        "ip -n {ul} link add br0 type bridge stp_state 0 mcast_snooping 0 && ip -n {ul} link set br0 up"
    ))?;
    for h in [1, 2] {
        let ns = t.host_ns(h);
        new_ns(&mut t.lab, &ns)?;
        sh(&format!(
            "ip link add u{h} netns {ul} mtu {UNDERLAY_MTU} type veth peer name ul0 netns {ns} mtu {UNDERLAY_MTU}"
        ))?;
        sh(&format!("ip -n {ul} link set u{h} master br0 up"))?;
        t.on(
            &ns,
            &format!(
                "ip addr add {}/24 dev ul0 && ip link set ul0 up",
                host_ip(h)
            ),
        )?;
    }
    for (g, _, _, _) in GUESTS {
        let ns = t.ns(g);
        new_ns(&mut t.lab, &ns)?;
    }
    match c {
        Contender::LinuxVxlan | Contender::AfPacket => {
            // host-side veth v<guest> (Linux: a bridge port, the vxlan device's MTU;
            // vpcswitch: the switch's end, the underlay's, as the netns suites)
            let host_mtu = if c == Contender::LinuxVxlan {
                GUEST_MTU
            } else {
                UNDERLAY_MTU
            };
            for (g, h, _, _) in GUESTS {
                sh(&format!(
                    "ip link add v{g} netns {} mtu {host_mtu} type veth peer name eth0 netns {} mtu {GUEST_MTU}",
                    t.host_ns(h),
                    t.ns(g)
                ))?;
                t.guest_addr(g)?;
            }
        }
        Contender::Tap => {}
    }
    match c {
        Contender::LinuxVxlan => {
            for h in [1, 2] {
                let other = 3 - h;
                let mut cmds = vec![
                    "ip link add br0 type bridge stp_state 0 mcast_snooping 0".to_string(),
                    format!(
                        "ip link add vx0 type vxlan id {VNI} local {} dstport 4789 nolearning dev ul0",
                        host_ip(h)
                    ),
                    "ip link set vx0 master br0 up".into(),
                    format!(
                        "bridge fdb append 00:00:00:00:00:00 dev vx0 dst {} self permanent",
                        host_ip(other)
                    ),
                ];
                for (g, gh, _, mac) in GUESTS {
                    if gh == h {
                        cmds.push(format!("ip link set v{g} master br0 up"));
                    } else {
                        cmds.push(format!(
                            "bridge fdb add {mac} dev vx0 dst {} self permanent",
                            host_ip(other)
                        ));
                    }
                }
                cmds.push("ip link set br0 up".into());
                t.on(&t.host_ns(h), &cmds.join(" && "))?;
            }
        }
        Contender::AfPacket => {
            for (g, h, _, _) in GUESTS {
                t.on(&t.host_ns(h), &format!("ip link set v{g} up"))?;
            }
            for h in [1, 2] {
                let cfg = network_file(&t.lab.dir, h, &|g| {
                    format!("{{ type = \"af_packet\", ifname = \"v{g}\" }}")
                });
                start_switch(&mut t, bin, h, &cfg)?;
            }
        }
        Contender::Tap => {
            let tag = t.tag.clone();
            for h in [1, 2] {
                let cfg = network_file(&t.lab.dir, h, &|g| {
                    format!("{{ type = \"tap\", ifname = \"eth0\", netns = \"{tag}-{g}\" }}")
                });
                start_switch(&mut t, bin, h, &cfg)?;
            }
            for (g, _, _, _) in GUESTS {
                t.guest_addr(g)?;
            }
        }
    }
    let (a, b, cg) = (t.guest("a"), t.guest("b"), t.guest("c"));
    wait_ping(&a, &b, 10)
        .and_then(|()| wait_ping(&a, &cg, 10))
        .map_err(|e| format!("{}: {e}{}", c.name(), switch_logs(&t)))?;
    Ok(t)
}

/// The switches' logs, for an error message ("" for Linux).
fn switch_logs(t: &Topo) -> String {
    (1..=t.switches.len())
        .map(|h| format!("\n--- switch h{h}:\n{}", t.lab.read(&format!("h{h}.log"))))
        .collect()
}

/// The drops each switch counted (`ctl stats`), by reason, for the log: "" when none.
fn switch_drops(t: &Topo, bin: &Path) -> String {
    let mut out = String::new();
    for h in 1..=t.switches.len() {
        let stats = sh(&format!(
            "{} ctl --json -s {}/h{h}.sock stats",
            bin.display(),
            t.lab.dir.display()
        ));
        let v: serde_json::Value = match stats.map(|s| serde_json::from_str(&s)) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                out += &format!(" h{h}: ctl stats is not JSON: {e};");
                continue;
            }
            Err(e) => {
                out += &format!(" h{h}: {e};");
                continue;
            }
        };
        let drops: Vec<String> = v["drops"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if !drops.is_empty() {
            out += &format!(" h{h}: {};", drops.join(", "));
        }
    }
    out
}

/// `--verbose`: what each host's kernel and switch counted, for a contender's log: the
/// UDP and IP counters of each host namespace (`nstat`), each switch's CPU time, its
/// packet and UDP sockets' memory and drops (`ss`), its `ctl hosts` (tunnel packets per
/// host, tunnel errors), and each guest's `eth0` counters.
fn counters(t: &Topo, bin: &Path) -> String {
    let mut out = String::new();
    for h in [1, 2] {
        let ns = t.host_ns(h);
        out += &format!(
            "  h{h} kernel: {}\n",
            sh(&format!("ip netns exec {ns} nstat -az UdpInDatagrams UdpRcvbufErrors UdpInErrors UdpSndbufErrors IpOutDiscards IpOutRequests"))
                .unwrap_or_else(|e| e)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(pid) = t.switches.get(h - 1) {
            out += &format!(
                "  h{h} switch: {:.2} s of CPU so far\n",
                cpu_secs(*pid).unwrap_or(f64::NAN)
            );
            // the switch's packet and UDP sockets: receive buffer and drops (skmem's d)
            out += &format!(
                "  h{h} sockets: {}\n",
                sh(&format!("ip netns exec {ns} ss -0 -u -a -m -n"))
                    .unwrap_or_else(|e| e)
                    .lines()
                    .filter(|l| l.contains("skmem"))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            out += &sh(&format!(
                "{} ctl -s {}/h{h}.sock hosts",
                bin.display(),
                t.lab.dir.display()
            ))
            .unwrap_or_else(|e| e);
        }
    }
    for (g, _, _, _) in GUESTS {
        let guest = t.guest(g);
        let c = |n: &str| guest.counter(n).unwrap_or(u64::MAX);
        out += &format!(
            "  {g} eth0: rx {} tx {} rx_dropped {} tx_dropped {}\n",
            c("rx_packets"),
            c("tx_packets"),
            c("rx_dropped"),
            c("tx_dropped")
        );
    }
    out
}

/// The idle CPU is measured this long after the last traffic, over this long (s).
const IDLE_SECS: u64 = 2;

/// How [`measure`] runs.
#[derive(Debug, Clone, Copy)]
struct Opts<'a> {
    secs: u64,
    placement: Placement,
    verbose: bool,
    bin: &'a Path,
    gen: &'a Path,
}

fn measure(c: Contender, run: usize, o: Opts, r: &mut Results) -> Result<(), String> {
    let Opts {
        secs,
        placement,
        verbose,
        bin,
        gen,
    } = o;
    let t = build(c, run, placement, bin)?;
    let (a, b, cg) = (t.guest("a"), t.guest("b"), t.guest("c"));
    // after each phase: the counters (--verbose), and a stop when a signal came
    let phase = |name: &str| {
        if verbose {
            eprint!(
                "  after {name} (counters since the start):\n{}",
                counters(&t, bin)
            );
        }
        check_interrupted()
    };
    check_interrupted()?;
    let mut put = |m: Metric, v: f64| r.entry((c, m)).or_default().push(v);
    let h1 = t.host_ns(1);
    let ul = |n: &str| link_counter(&h1, "ul0", n);
    let (p0, b0) = (ul("tx_packets")?, ul("tx_bytes")?);
    let (report, cpu) = with_machine_cpu(|| iperf3(&t.lab.dir, &b, &a, 1, secs))?;
    let (p1, b1) = (ul("tx_packets")?, ul("tx_bytes")?);
    put(Metric::Tcp1, gbps(&report)?);
    put(Metric::CpuTcp1, cpu);
    if let Some(n) = json_f64(&report, &["end", "sum_sent", "retransmits"]) {
        put(Metric::Retrans1, n);
    }
    put(
        Metric::UnderlayBytes,
        (b1 - b0) as f64 / (p1 - p0).max(1) as f64,
    );
    phase("TCP 1 flow")?;
    put(Metric::Tcp4, gbps(&iperf3(&t.lab.dir, &b, &a, 4, secs)?)?);
    let (kpps, cpu) = with_machine_cpu(|| udp_kpps(&a, &b, secs, gen))?;
    put(Metric::UdpKpps, kpps);
    put(Metric::CpuUdp, cpu);
    phase("TCP 4 flows and 64-byte UDP")?;
    // idle: a quiet while after the last traffic, then over as long (both at most --secs)
    let quiet = Duration::from_secs(secs.min(IDLE_SECS));
    std::thread::sleep(quiet);
    let ((), idle) = with_cpu(&t.switches, || {
        std::thread::sleep(quiet);
        Ok(())
    })?;
    if let Some(cpu) = idle {
        put(Metric::CpuIdleSwitch, cpu);
    }
    // a light rate from idle switches, across the hosts, then on one host
    let (((x50, x99, _), machine_cpu), switch_cpu) = with_cpu(&t.switches, || {
        with_machine_cpu(|| pings(&a, &b, 10, secs * 100, false))
    })?;
    put(Metric::RttCrossMedian, x50);
    put(Metric::RttCrossP99, x99);
    put(Metric::CpuPingMachine, machine_cpu);
    if let Some(cpu) = switch_cpu {
        put(Metric::CpuPingSwitch, cpu);
    }
    let (l50, l99, _) = pings(&a, &cg, 10, secs * 100, false)?;
    put(Metric::RttLocalMedian, l50);
    put(Metric::RttLocalP99, l99);
    put(Metric::ExtraHop, x50 - l50);
    let drops = switch_drops(&t, bin);
    if !drops.is_empty() {
        eprintln!("  {} drops counted by the switches:{drops}", c.name());
    }
    phase("the pings")?;
    Ok(())
}

/// Whether contender `c`'s median of `m` against linux-vxlan's meets the issue's target:
/// `Some((ratio, target, met))` for TCP and pps.
fn target(r: &Results, c: Contender, m: Metric) -> Option<(f64, f64, bool)> {
    let goal = match m {
        Metric::Tcp1 | Metric::Tcp4 => 0.7,
        Metric::UdpKpps => 1.5,
        _ => return None,
    };
    let v = r.get(&(c, m)).filter(|v| !v.is_empty())?;
    let base = r
        .get(&(Contender::LinuxVxlan, m))
        .filter(|v| !v.is_empty())?;
    let ratio = median(v) / median(base);
    Some((ratio, goal, ratio >= goal))
}

fn table(
    r: &Results,
    contenders: &[Contender],
    runs: usize,
    secs: u64,
    placement: Placement,
    before: f64,
) -> String {
    let mut s = format!(
        "{runs} run(s) of {secs} s per measurement, contenders alternating within each run (reversed on even runs); {}; {} (`--guests {}`); the machine was {before:.0}% busy (of a core) in the 2 s before the first run, which the machine CPU columns include.\nMedian (min–max); ratio: median against linux-vxlan's (for RTT and CPU, lower is better). a → b crosses the hosts, a → c stays on h1.\n",
        machine(),
        placement.describe(),
        placement.name()
    );
    let part = |s: &mut String, metrics: &[Metric], setup: bool| {
        let mut cols = vec!["contender"];
        if setup {
            cols.extend(["setup"]);
        }
        cols.extend(metrics.iter().map(|m| m.label()));
        *s += &table_head(&cols);
        for c in contenders {
            *s += &format!("| {} |", c.name());
            if setup {
                *s += &format!(" {} |", c.setup());
            }
            for &m in metrics {
                match r.get(&(*c, m)) {
                    Some(v) if !v.is_empty() => {
                        let base = r
                            .get(&(Contender::LinuxVxlan, m))
                            .filter(|_| m.ratio() && *c != Contender::LinuxVxlan)
                            .map(Vec::as_slice);
                        *s += &format!(" {} |", cell(v, base, m.precision()));
                    }
                    _ if !m.applies(*c) => *s += " n/a |",
                    _ => *s += " failed |",
                }
            }
            *s += "\n";
        }
    };
    part(
        &mut s,
        &[
            Metric::Tcp1,
            Metric::Tcp4,
            Metric::UdpKpps,
            Metric::Retrans1,
            Metric::UnderlayBytes,
            Metric::CpuTcp1,
            Metric::CpuUdp,
        ],
        true,
    );
    part(
        &mut s,
        &[
            Metric::RttCrossMedian,
            Metric::RttCrossP99,
            Metric::RttLocalMedian,
            Metric::RttLocalP99,
            Metric::ExtraHop,
            Metric::CpuPingSwitch,
            Metric::CpuPingMachine,
            Metric::CpuIdleSwitch,
        ],
        false,
    );
    let mut targets = vec![];
    for c in contenders.iter().filter(|c| c.is_vpcswitch()) {
        for m in [Metric::Tcp1, Metric::Tcp4, Metric::UdpKpps] {
            if let Some((ratio, goal, met)) = target(r, *c, m) {
                targets.push(format!(
                    "{} {}: {ratio:.2}× (target ≥ {goal}×: {})",
                    c.name(),
                    m.label(),
                    if met { "met" } else { "missed" }
                ));
            }
        }
    }
    if !targets.is_empty() {
        s += &format!("\nTargets (issue 18): {}.\n", targets.join("; "));
    }
    s
}

const USAGE: &str =
    "usage: vpcswitch-overlay-bench [--runs N] [--secs S] [--only NAME,...] [--write-docs] [--smoke] [--verbose]
       [--guests host|other|any]
needs root; contenders: ";

fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        let names: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
        println!("{USAGE}{}", names.join(", "));
        return;
    }
    let args = Args::parse(
        &["--smoke", "--write-docs", "--verbose"],
        &["--runs", "--secs", "--only", "--guests"],
    );
    let (flag, value) = (|f: &str| args.flag(f), |f: &str| args.value(f));
    let (runs, secs) = if flag("--smoke") {
        args.runs_secs(1, 1)
    } else {
        args.runs_secs(3, 3)
    };
    let contenders = args.only(&Contender::ALL, Contender::name);
    if !is_root() {
        die("needs root (network namespaces, veth, TAP, VXLAN)");
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("bridge", "iproute2"),
        ("iperf3", "iperf3"),
        ("ping", "iputils-ping"),
        ("taskset", "util-linux"),
    ] {
        if !have(tool) {
            die(&format!("missing {tool}: apt-get install {pkg}"));
        }
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        die("needs 2 CPUs (one per host: see --help and the module docs)");
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&e.to_string()));
    let dir = exe.parent().unwrap_or(Path::new("."));
    let (bin, gen) = (dir.join("vpcswitch"), dir.join("vpcswitch-udpgen"));
    for p in [&bin, &gen] {
        if !p.exists() {
            die(&format!(
                "{} not built: cargo build --release -p vpcswitch-cli -p vpcswitch-benches",
                p.display()
            ));
        }
    }
    let placement = value("--guests").map_or(Placement::Host, |v| {
        Placement::ALL
            .into_iter()
            .find(|p| p.name() == v)
            .unwrap_or_else(|| die("--guests: host, other or any"))
    });
    let opts = Opts {
        secs,
        placement,
        verbose: flag("--verbose"),
        bin: &bin,
        gen: &gen,
    };
    catch_signals().unwrap_or_else(|e| die(&e));
    // how busy the machine is without us (other users, a spinner at idle priority)
    let ((), before) = with_machine_cpu(|| {
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    })
    .unwrap_or_else(|e| die(&e));
    if before > 20.0 {
        eprintln!("note: the machine is {before:.0}% busy (of a core) before the runs: not quiet; the figures will show it");
    }
    let mut results = Results::new();
    let mut failures = Vec::new();
    for run in 1..=runs {
        let mut order = contenders.clone();
        if run % 2 == 0 {
            order.reverse();
        }
        for c in order {
            if interrupted() {
                break;
            }
            eprintln!("run {run}/{runs}: {}", c.name());
            if let Err(e) = measure(c, run, opts, &mut results) {
                eprintln!("  {}: {e}", c.name());
                failures.push(format!("{} (run {run}): {e}", c.name()));
            }
        }
    }
    let body = table(&results, &contenders, runs, secs, placement, before);
    println!("{body}");
    if interrupted() {
        die("interrupted (what it built is removed); nothing written");
    }
    if flag("--write-docs") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Err(e) = vpcswitch_benches::pps::write_docs_section(
            &root,
            "vpcswitch-overlay-bench",
            "## Overlay: two hosts",
            &body,
        ) {
            die(&format!("writing docs: {e}"));
        }
        println!("written: docs/benchmarks.md");
    }
    if !failures.is_empty() {
        eprintln!("failed measurements:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every contender's applicable metrics; linux-vxlan's values 10, vpcswitch's 5 (TCP
    /// at half, pps at half: both targets missed), except pps of the TAP contender at 20
    /// (met).
    fn results() -> Results {
        let mut r = Results::new();
        for c in Contender::ALL {
            for m in Metric::ALL {
                if m.applies(c) {
                    let v = match (c, m) {
                        (Contender::LinuxVxlan, _) => 10.0,
                        (Contender::Tap, Metric::UdpKpps) => 20.0,
                        _ => 5.0,
                    };
                    r.insert((c, m), vec![v]);
                }
            }
        }
        r
    }

    #[test]
    fn table_has_every_contender_column_and_target() {
        let t = table(&results(), &Contender::ALL, 1, 1, Placement::Host, 0.0);
        for c in Contender::ALL {
            assert_eq!(
                t.lines()
                    .filter(|l| l.starts_with(&format!("| {} |", c.name())))
                    .count(),
                2,
                "{} has a row in each table:\n{t}",
                c.name()
            );
        }
        for m in Metric::ALL {
            assert!(t.contains(m.label()), "no column {}:\n{t}", m.label());
        }
        assert!(!t.contains("failed"), "{t}");
        let linux = t
            .lines()
            .find(|l| l.starts_with("| linux-vxlan |"))
            .unwrap();
        assert!(!linux.contains('×'), "no ratio against itself: {linux}");
        let linux2 = t
            .lines()
            .filter(|l| l.starts_with("| linux-vxlan |"))
            .nth(1)
            .unwrap();
        assert_eq!(linux2.matches("n/a").count(), 2, "{linux2}");
        // counts and sizes get no ratio; throughput does
        let af = t
            .lines()
            .find(|l| l.starts_with("| vpcswitch-af_packet |"))
            .unwrap();
        assert_eq!(af.matches("0.50×").count(), 5, "{af}");
        assert!(
            t.contains("vpcswitch-af_packet 64-byte UDP, kpps: 0.50× (target ≥ 1.5×: missed)"),
            "{t}"
        );
        assert!(
            t.contains("vpcswitch-tap 64-byte UDP, kpps: 2.00× (target ≥ 1.5×: met)"),
            "{t}"
        );
        assert!(
            t.contains("vpcswitch-tap TCP 1 flow, Gbit/s: 0.50× (target ≥ 0.7×: missed)"),
            "{t}"
        );
    }

    #[test]
    fn missing_values_fail_and_linux_alone_has_no_targets() {
        let mut r = results();
        r.remove(&(Contender::AfPacket, Metric::Tcp4));
        let t = table(&r, &Contender::ALL, 1, 1, Placement::Host, 0.0);
        assert_eq!(t.matches("failed").count(), 1, "{t}");
        assert!(!t.contains("vpcswitch-af_packet TCP 4 flows"), "{t}");
        let t = table(&r, &[Contender::LinuxVxlan], 1, 1, Placement::Any, 0.0);
        assert!(!t.contains("Targets"), "{t}");
    }

    #[test]
    fn network_file_is_valid_and_differs_only_in_the_host() {
        let dir = Path::new("/tmp/x");
        let backend = |g: &str| format!("{{ type = \"af_packet\", ifname = \"v{g}\" }}");
        let (f1, f2) = (
            network_file(dir, 1, &backend),
            network_file(dir, 2, &backend),
        );
        for (h, f) in [(1, &f1), (2, &f2)] {
            let cfg = vpcswitch_model::Config::from_toml_str(f)
                .unwrap_or_else(|e| panic!("h{h}'s file is valid: {e}\n{f}"));
            assert_eq!(cfg.switch.host.as_deref(), Some(format!("h{h}").as_str()));
            assert_eq!(cfg.vnis(), vec![VNI]);
            assert_eq!(cfg.ports.len(), GUESTS.len());
        }
        let differ: Vec<(&str, &str)> =
            f1.lines().zip(f2.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(differ.len(), 2, "{differ:?}");
    }
}
