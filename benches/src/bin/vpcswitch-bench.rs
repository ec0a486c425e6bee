//! `vpcswitch-bench`: one command that measures vpcswitch side by side with the Linux
//! bridge and Open vSwitch's userspace datapath on the same two-guest topology.
//!
//! ```text
//! vpcswitch-bench [--runs 5] [--secs 5] [--only a,b] [--write-docs] [--smoke]
//! vpcswitch-bench --breakdown [--runs 1] [--secs 30] [--only a,b]
//! ```
//!
//! `--breakdown` measures only the light-rate RTT (1 ping / 10 ms, `--secs` × 100
//! pings) with packet captures inside both guests, and splits each round trip into its
//! legs (switch forward, guest b's answer, switch return, ping's own stack):
//! median, p99 and the mean over the slowest 1% per leg ([`vpcswitch_benches::breakdown`]).
//!
//! For each run, and in each run for each contender in turn (so slow drifts of the
//! machine hit every contender alike), it builds two guests in network namespaces
//! (10.9.0.11 and 10.9.0.12, on veth pairs, or TAPs for the TAP contender), joins them
//! with the contender, measures, and tears everything down:
//!
//! * TCP throughput: iperf3, 1 flow and 4 flows;
//! * 64-byte UDP packets per second: `vpcswitch-udpgen` (prebuilt frames, `sendmmsg`
//!   on an AF_PACKET socket) for the run's seconds, counted at the receiving guest's
//!   interface;
//! * RTT **under load**: while the same 64-byte UDP stream, paced at 100 000 datagrams
//!   a second (`LOAD_PPS`: about half what the slowest contender forwards, so none
//!   builds a standing queue), loads the path from a to b (one run's seconds, + 1), a
//!   pings b every **1 ms** (1 000 samples per second, so the p99 rests on enough of
//!   them) at SCHED_FIFO priority, so the ping is not queued behind the generator on
//!   their shared CPU: median, p99 and the share of pings lost (the RTTs are those of
//!   the answered ones). A full-rate flood instead measured the queue in front of each
//!   switch draining (p99 ~5 ms for every contender but the bridge);
//! * the switch's **CPU when idle**: 2 s after the last traffic (the flood), over 2 s (1 s
//!   and 1 s with `--secs 1`), utime + stime of the switch's process from
//!   `/proc/PID/stat` (all its threads), % of one core; vpcswitch's process, OVS's
//!   `ovs-vswitchd`, "n/a" for the bridge (no process);
//! * RTT at a **light rate**, from that idle switch: ping every 10 ms, median and p99,
//!   and the switch's CPU meanwhile, measured the same way;
//! * VIP failover: a third guest, the client (10.9.0.10), and keepalived on the two
//!   others holding VIP 10.9.0.100 (a at priority 150, b at 100, advert_int 1 s). Once a
//!   holds it, the client pings the VIP every 10 ms and sends it a steady UDP stream
//!   (`vpcswitch-udpgen --pps 20000`, one datagram every 50 µs); a's keepalived is
//!   stopped (SIGTERM) and b takes over. Measured: the **outage** the client sees (the
//!   longest gap between ping replies, ms) and, for vpcswitch, the **switch's own
//!   failover time**: from learning b as owner (its GARP) to sending b the first frame
//!   for the VIP, read from `ctl vips` (µs; it includes up to one 50 µs stream interval,
//!   the wait for the next frame).
//!
//! **CPUs** (the machine this was made on has 2): what forwards sits on CPU 0 —
//! vpcswitch's one worker (`pin_workers`), OVS's PMD thread (`other_config:pmd-cpu-mask
//! = 0x1`) for afxdp ports, and for `ovs-netdev`, whose packet-socket ports are polled by
//! ovs-vswitchd's main thread (non-PMD ports), the whole ovs-vswitchd (`taskset -c 0`).
//! The rest of vpcswitch's and ovs-vswitchd-with-afxdp's threads are not pinned. Every
//! guest process — iperf3 client and server, `vpcswitch-udpgen`, ping, keepalived — runs
//! on CPU 1 (`taskset -c 1`), so the switch's worker is not preempted by them. The
//! bridge forwards in the kernel, in the sending guest's context, so on CPU 1 as well.
//!
//! Contenders:
//! * `bridge`: a Linux bridge in a namespace of its own;
//! * `vpcswitch-tap`, `vpcswitch-af_packet`, `vpcswitch-af_xdp`: one worker pinned to
//!   CPU 0, the default idle policy (`[switch] idle = "adaptive"`: it sleeps when no
//!   frames come); the `-busy` variants of each (`idle = "busy_poll"`: the worker never
//!   sleeps, one core at 100%, as an OVS PMD);
//! * `ovs-netdev`: Open vSwitch's userspace datapath (`datapath_type=netdev`, from
//!   Debian's openvswitch-switch), its own database and run directory under a temporary
//!   directory, no kernel module, the guests' veths as ordinary (packet-socket) ports;
//! * `ovs-afxdp`: the same with `type=afxdp` ports (`options:xdp-mode=generic`; Debian's
//!   ovs-vswitchd 3.1 is built with libxdp), one rx queue per port (OVS's default
//!   `n_rxq`, veths with one queue). The mode, measured on this 2-CPU VM (kernel 6.18,
//!   PMD on CPU 0, 64-byte UDP as below for 2 s, then 200 pings 10 ms apart, twice each):
//!   `native-with-zerocopy` fails on veth ("Operation not supported": veth has no
//!   zero-copy); `native` (OVS's XDP program in the veth driver, also what the default
//!   `best-effort` picks) forwarded 292–298 kpps with an RTT of 0.55–0.67 ms on average
//!   and up to 8 ms; `generic` 359–393 kpps and 20–41 µs. So `generic`.
//!
//! `VPCSWITCH_BENCH_XDP_MODE=skb` (or `copy`, `zerocopy`) sets vpcswitch's AF_XDP ports'
//! `mode` (default `auto`: native on veth), to compare with OVS's choice of `generic`:
//! on 2026-12-01, 1 run of 3 s each, alternating, skb 286 and 275 kpps, auto 272 and 336
//! (no clear difference, so auto stays).
//!
//! Both OVS contenders are skipped with a note when `ovs-vswitchd` is not installed.
//! Guests keep their offloads on, except behind AF_XDP (no offload metadata) and OVS
//! (its packet sockets on veth do not complete partial checksums; its afxdp ports carry
//! no offload metadata), as the table says.
//!
//! Output: a table of medians and min–max per contender and metric, ratios against the
//! bridge, and the machine, in two tables (throughput and failover; latency and CPU);
//! with `--write-docs`, written into docs/benchmarks.md (between the `vpcswitch-bench`
//! markers) with a plot of six panels, docs/bench.svg. `--smoke`: one run of 1 s per
//! contender, to show that it works (CI); in it the `-busy` variants leave out the
//! failover (the same code as their adaptive twins, and ~10 s each). Needs root. Every load is
//! bounded in time; everything it creates is removed, processes are killed by PID.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vpcswitch_benches::lab::{
    catch_signals, die, have, interrupted, is_root, machine, pings, quiet, sh, tcp, udp_kpps,
    wait_for, wait_ping, with_cpu, Args, Guest, Lab,
};
use vpcswitch_benches::{cell, median, table_head};
use vpcswitch_model::IdlePolicy;

const A: &str = "10.9.0.11";
const B: &str = "10.9.0.12";
const MAC_A: &str = "02:00:00:09:00:01";
const MAC_B: &str = "02:00:00:09:00:02";
/// The failover client and the VIP the other two hold with keepalived.
const C: &str = "10.9.0.10";
const MAC_C: &str = "02:00:00:09:00:03";
const VIP: &str = "10.9.0.100";
/// The stream under which RTT is measured "under load", datagrams per second: about
/// half of what the slowest contender forwards (the bridge, ~215 kpps here), so every
/// contender keeps up and the RTT shows what the load costs a frame, not a standing
/// queue (a full-rate flood left every switch's queue full: p99s of ~5 ms).
const LOAD_PPS: u32 = 100_000;
/// The failover client's UDP stream to the VIP, datagrams per second.
const STREAM_PPS: u32 = 20_000;
/// Guests: the two measured ones and the failover client.
const GUESTS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Bridge,
    Tap,
    AfPacket,
    AfXdp,
    Ovs,
    TapBusy,
    AfPacketBusy,
    AfXdpBusy,
    OvsAfxdp,
}

/// The `xdp-mode` of the `ovs-afxdp` contender's ports: veth has no zero-copy
/// (`native-with-zerocopy` fails: "Operation not supported"), and `generic` beat
/// `native` in both packet rate and RTT (see the module docs).
const OVS_XDP_MODE: &str = "generic";

impl Contender {
    const ALL: [Contender; 9] = [
        Contender::Bridge,
        Contender::Ovs,
        Contender::OvsAfxdp,
        Contender::Tap,
        Contender::TapBusy,
        Contender::AfPacket,
        Contender::AfPacketBusy,
        Contender::AfXdp,
        Contender::AfXdpBusy,
    ];
    fn name(self) -> &'static str {
        match self {
            Contender::Bridge => "bridge",
            Contender::Tap => "vpcswitch-tap",
            Contender::AfPacket => "vpcswitch-af_packet",
            Contender::AfXdp => "vpcswitch-af_xdp",
            Contender::TapBusy => "vpcswitch-tap-busy",
            Contender::AfPacketBusy => "vpcswitch-af_packet-busy",
            Contender::AfXdpBusy => "vpcswitch-af_xdp-busy",
            Contender::Ovs => "ovs-netdev",
            Contender::OvsAfxdp => "ovs-afxdp",
        }
    }
    /// vpcswitch's backend (`type` of its ports), or `None` for the bridge and OVS.
    fn backend(self) -> Option<&'static str> {
        match self {
            Contender::Tap | Contender::TapBusy => Some("tap"),
            Contender::AfPacket | Contender::AfPacketBusy => Some("af_packet"),
            Contender::AfXdp | Contender::AfXdpBusy => Some("af_xdp"),
            Contender::Bridge | Contender::Ovs | Contender::OvsAfxdp => None,
        }
    }
    /// One of vpcswitch's backends (the switch times its own VIP failover).
    fn is_vpcswitch(self) -> bool {
        self.backend().is_some()
    }
    /// Open vSwitch (its `ovs-vswitchd` must be installed).
    fn is_ovs(self) -> bool {
        matches!(self, Contender::Ovs | Contender::OvsAfxdp)
    }
    /// `[switch] idle` of a vpcswitch contender.
    fn idle(self) -> IdlePolicy {
        if matches!(
            self,
            Contender::TapBusy | Contender::AfPacketBusy | Contender::AfXdpBusy
        ) {
            IdlePolicy::BusyPoll
        } else {
            IdlePolicy::Adaptive
        }
    }
    /// How the contender forwards and where, for the table.
    fn setup(self) -> String {
        match self {
            Contender::Bridge => "kernel, in the sender's softirq".into(),
            Contender::Ovs => "netdev datapath, packet sockets; ovs-vswitchd on CPU 0".into(),
            Contender::OvsAfxdp => {
                format!("netdev datapath, afxdp ports (xdp-mode {OVS_XDP_MODE}); PMD on CPU 0")
            }
            _ => format!("idle = {}; 1 worker on CPU 0", self.idle().name()),
        }
    }
    /// Guest checksum/TSO offload: off behind AF_XDP (no offload metadata) and OVS (its
    /// netdev datapath's packet sockets on veth do not complete partial checksums: TCP
    /// fails with them on; its afxdp ports have no offload metadata either), on
    /// elsewhere.
    fn offloads(self) -> &'static str {
        if matches!(
            self,
            Contender::AfXdp | Contender::AfXdpBusy | Contender::Ovs | Contender::OvsAfxdp
        ) {
            "off"
        } else {
            "on"
        }
    }
    /// The guests' MTU where it is not the default 1500: behind AF_XDP, with no
    /// segmentation offload, every TCP segment is one frame, so the guests (and the
    /// switch's ends of their veths) use a large MTU, carried as multi-buffer AF_XDP
    /// frames (docs/config.md, "MTU").
    fn guest_mtu(self) -> Option<u32> {
        matches!(self, Contender::AfXdp | Contender::AfXdpBusy).then_some(AF_XDP_GUEST_MTU)
    }
}

/// The MTU of the guests behind vpcswitch's AF_XDP ports (see `Contender::guest_mtu`).
const AF_XDP_GUEST_MTU: u32 = 32000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Metric {
    Tcp1,
    Tcp4,
    UdpKpps,
    RttMedian,
    RttP99,
    LoadRttMedian,
    LoadRttP99,
    LoadPingLoss,
    CpuPing,
    CpuIdle,
    FailoverSwitchUs,
    FailoverOutageMs,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 flow, Gbit/s",
            Metric::Tcp4 => "TCP 4 flows, Gbit/s",
            Metric::UdpKpps => "64-byte UDP, kpps",
            Metric::RttMedian => "RTT median, µs (1 ping / 10 ms)",
            Metric::RttP99 => "RTT p99, µs (1 ping / 10 ms)",
            Metric::LoadRttMedian => "RTT median under load, µs",
            Metric::LoadRttP99 => "RTT p99 under load, µs",
            Metric::LoadPingLoss => "pings lost under load, %",
            Metric::CpuPing => "switch CPU, light ping, % of a core",
            Metric::CpuIdle => "switch CPU, idle, % of a core",
            Metric::FailoverSwitchUs => "VIP failover at the switch, µs",
            Metric::FailoverOutageMs => "keepalived failover outage, ms",
        }
    }
    /// Whether contender `c` has this metric at all ("n/a" in the table otherwise): the
    /// bridge has no switch process, only vpcswitch times its own failover.
    fn applies(self, c: Contender) -> bool {
        match self {
            Metric::FailoverSwitchUs => c.is_vpcswitch(),
            Metric::CpuPing | Metric::CpuIdle => c != Contender::Bridge,
            _ => true,
        }
    }
}

/// Everything one contender's topology made, removed on drop (by its [`Lab`]).
#[derive(Debug)]
struct Topo {
    tag: String,
    lab: Lab,
    /// The switch's process (vpcswitch, or ovs-vswitchd), whose CPU use is measured.
    switch_pid: Option<u32>,
}

impl Topo {
    fn ns(&self, g: &str) -> String {
        format!("{}-{g}", self.tag)
    }
    fn exec(&self, g: &str, cmd: &str) -> Result<String, String> {
        self.guest(g).exec(cmd)
    }
    /// Guest `g` (a, b or c) for the measurements: its programs on CPU 1.
    fn guest(&self, g: &str) -> Guest {
        let (mac, ip) = match g {
            "a" => (MAC_A, A),
            "b" => (MAC_B, B),
            _ => (MAC_C, C),
        };
        Guest {
            ns: self.ns(g),
            ip,
            mac,
            cpus: "1",
        }
    }
    fn guest_addr(&self, g: &str, ifn: &str, offloads: &str) -> Result<(), String> {
        let Guest { mac, ip, .. } = self.guest(g);
        self.exec(g, &format!("sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set lo up; ip link set {ifn} address {mac}; ip link set {ifn} name eth0; ip addr add {ip}/24 dev eth0; ip link set eth0 up'"))?;
        let _ = self.exec(
            g,
            &format!("ethtool -K eth0 tx {offloads} tso {offloads} gso {offloads}"),
        );
        Ok(())
    }
    /// Starts `cmd` (split on spaces, no shell) in guest `g`, its stdout and stderr into
    /// `out` in the run's directory; killed by PID when the topology goes.
    fn spawn(&mut self, g: &str, cmd: &str, out: &str) -> Result<u32, String> {
        let ns = self.ns(g);
        self.lab.spawn(&ns, cmd, out)
    }
    /// Waits up to `secs` for the process `pid` started by [`Topo::spawn`] to end.
    fn wait(&mut self, pid: u32, secs: u64) -> Result<(), String> {
        self.lab.wait(pid, secs)
    }
    fn read(&self, f: &str) -> String {
        self.lab.read(f)
    }
    /// keepalived (VRRP only, foreground) holding VIP at `prio` in guest `g`.
    fn keepalived(&mut self, g: &str, prio: u32) -> Result<u32, String> {
        let conf = self.lab.dir.join(format!("keepalived-{g}.conf"));
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id bench-{g}\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n  script_user root\n}}\n\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  \
                 virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let d = self.lab.dir.display().to_string();
        self.spawn(
            g,
            &format!("taskset -c 1 keepalived --dont-fork --log-console --vrrp --use-file {} --pid {d}/{g}-main.pid --vrrp_pid {d}/{g}-vrrp.pid --checkers_pid {d}/{g}-checkers.pid", conf.display()),
            &format!("keepalived-{g}.log"),
        )
    }
    /// Waits up to `secs` for guest `g` to hold the VIP.
    fn wait_vip(&self, g: &str, secs: u64) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(secs);
        while !self
            .exec(g, "ip -4 -o addr show dev eth0")
            .is_ok_and(|a| a.contains(&format!("inet {VIP}/")))
        {
            if Instant::now() > end {
                return Err(format!(
                    "{g} did not take the VIP in {secs} s: {}",
                    self.read(&format!("keepalived-{g}.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
    /// The switch's `ctl vips` row of the VIP (vpcswitch contenders only).
    fn vip_row(&self, bin: &Path) -> Result<serde_json::Value, String> {
        let out = sh(&format!(
            "{} ctl --json -s {}/ctl.sock vips",
            bin.display(),
            self.lab.dir.display()
        ))?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        v.as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == "vip"))
            .cloned()
            .ok_or_else(|| format!("ctl vips has no vip: {out}"))
    }
}

/// One worker (pinned to CPU 0) with idle policy `idle`; ports a, b, c with the backend
/// `backend(guest)`; VIP `vip` on a and b.
fn switch_config(dir: &Path, idle: &str, backend: impl Fn(&str) -> String) -> String {
    let mut cfg = format!(
        "[switch]\nworkers = 1\npin_workers = true\nidle = \"{idle}\"\ncontrol_socket = \"{}/ctl.sock\"\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.9.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.9.0.0/24\"\n",
        dir.display()
    );
    for (g, mac, ip) in [("a", MAC_A, A), ("b", MAC_B, B), ("c", MAC_C, C)] {
        cfg += &format!(
            "[[ports]]\nname = \"{g}\"\nsubnet = \"s\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\nbackend = {}\n",
            backend(g)
        );
    }
    cfg + &format!(
        "[[vips]]\nname = \"vip\"\nsubnet = \"s\"\nip = \"{VIP}\"\nports = [\"a\", \"b\"]\n"
    )
}

fn start_switch(t: &mut Topo, bin: &Path, cfg: &str) -> Result<(), String> {
    let path = t.lab.dir.join("switch.toml");
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(t.lab.dir.join("switch.log")).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    t.switch_pid = Some(child.id());
    t.lab.procs.push(child);
    wait_for(&t.lab.dir.join("ctl.sock").display().to_string())
        .map_err(|e| format!("vpcswitch did not start ({e}): {}", t.read("switch.log")))
}

/// Builds the two guests joined by contender `c`.
fn build(c: Contender, run: usize, bin: &Path) -> Result<Topo, String> {
    let tag = format!("vb{}{run}{}", std::process::id() % 10_000, c as u8);
    let dir = std::env::temp_dir().join(format!("vpcswitch-bench-{tag}"));
    let mut t = Topo {
        tag: tag.clone(),
        lab: Lab::new(dir)?,
        switch_pid: None,
    };
    for g in GUESTS {
        let ns = t.ns(g);
        t.lab.add_netns(&ns)?;
    }
    let off = c.offloads();
    let veths = |t: &mut Topo, queues: u32| -> Result<(), String> {
        for g in GUESTS {
            let host = format!("{tag}{g}");
            sh(&format!("ip link add {host} numtxqueues {queues} numrxqueues {queues} type veth peer name {tag}p{g} numtxqueues {queues} numrxqueues {queues}"))?;
            t.lab.links.push(host.clone());
            sh(&format!("ip link set {tag}p{g} netns {}", t.ns(g)))?;
            t.guest_addr(g, &format!("{tag}p{g}"), off)?;
        }
        Ok(())
    };
    match c {
        Contender::Bridge => {
            veths(&mut t, 1)?;
            let br = t.ns("br");
            t.lab.add_netns(&br)?;
            sh(&format!(
                "ip -n {br} link add br0 type bridge && ip -n {br} link set br0 up"
            ))?;
            for g in GUESTS {
                sh(&format!(
                    "ip link set {tag}{g} netns {br} && ip -n {br} link set {tag}{g} master br0 up"
                ))?;
            }
        }
        Contender::AfPacket | Contender::AfXdp | Contender::AfPacketBusy | Contender::AfXdpBusy => {
            veths(&mut t, 1)?;
            for g in GUESTS {
                sh(&format!("ip link set {tag}{g} up"))?;
                if let Some(mtu) = c.guest_mtu() {
                    sh(&format!("ip link set {tag}{g} mtu {mtu}"))?;
                    t.exec(g, &format!("ip link set eth0 mtu {mtu}"))?;
                }
            }
            let ty = c.backend().unwrap_or_default();
            // VPCSWITCH_BENCH_XDP_MODE: the AF_XDP ports' `mode` (default: auto)
            let mode = std::env::var("VPCSWITCH_BENCH_XDP_MODE")
                .ok()
                .filter(|_| ty == "af_xdp")
                .map(|m| format!(", mode = \"{m}\""))
                .unwrap_or_default();
            let cfg = switch_config(&t.lab.dir, c.idle().name(), |g| {
                format!("{{ type = \"{ty}\", ifname = \"{tag}{g}\"{mode} }}")
            });
            start_switch(&mut t, bin, &cfg)?;
        }
        Contender::Tap | Contender::TapBusy => {
            let cfg = switch_config(&t.lab.dir, c.idle().name(), |g| {
                format!("{{ type = \"tap\", ifname = \"{tag}{g}\" }}")
            });
            start_switch(&mut t, bin, &cfg)?;
            for g in GUESTS {
                sh(&format!("ip link set {tag}{g} netns {}", t.ns(g)))?;
                t.guest_addr(g, &format!("{tag}{g}"), off)?;
            }
        }
        Contender::Ovs | Contender::OvsAfxdp => {
            veths(&mut t, 1)?;
            let d = t.lab.dir.display().to_string();
            let env = format!("OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d}");
            sh(&format!(
                "ovsdb-tool create {d}/conf.db /usr/share/openvswitch/vswitch.ovsschema"
            ))?;
            t.lab.daemon(&format!("env {env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --unixctl={d}/ovsdb.ctl --log-file={d}/ovsdb.log"))?;
            wait_for(&format!("{d}/db.sock"))?;
            let vsctl = format!("ovs-vsctl --db=unix:{d}/db.sock --no-wait");
            sh(&format!("{vsctl} init"))?;
            // Where it forwards: on CPU 0, as vpcswitch's worker. The netdev datapath
            // polls packet-socket ports in ovs-vswitchd's main thread (non-PMD ports), so
            // the whole process is pinned; afxdp ports are polled by a PMD thread, pinned
            // by pmd-cpu-mask, and the rest of the process is left unpinned like
            // vpcswitch's own main thread.
            let pin = if c == Contender::OvsAfxdp {
                sh(&format!(
                    "{vsctl} set Open_vSwitch . other_config:pmd-cpu-mask=0x1"
                ))?;
                ""
            } else {
                "taskset -c 0 "
            };
            t.switch_pid = Some(t.lab.daemon(&format!("{pin}env {env} ovs-vswitchd unix:{d}/db.sock --unixctl={d}/vswitchd.ctl --log-file={d}/vswitchd.log"))?);
            wait_for(&format!("{d}/vswitchd.ctl"))?;
            let vsctl = format!("ovs-vsctl --db=unix:{d}/db.sock --timeout=10");
            // the bridge's own port is a TAP in this namespace: a name of this run's,
            // deleted with the rest
            t.lab.links.push(format!("{tag}br"));
            sh(&format!(
                "{vsctl} add-br {tag}br -- set bridge {tag}br datapath_type=netdev"
            ))?;
            for g in GUESTS {
                let port = format!("{tag}{g}");
                let afxdp = if c == Contender::OvsAfxdp {
                    format!(" -- set interface {port} type=afxdp options:xdp-mode={OVS_XDP_MODE}")
                } else {
                    String::new()
                };
                sh(&format!(
                    "ip link set {port} up && {vsctl} add-port {tag}br {port}{afxdp}"
                ))?;
            }
        }
    }
    // both directions answer before anything is measured
    wait_ping(&t.guest("a"), &t.guest("b"), 10)
        .map_err(|e| format!("{}: guests cannot ping each other: {e}", c.name()))?;
    Ok(t)
}

/// Pings every millisecond for `secs` while a 64-byte UDP stream like `udp`'s, paced
/// at [`LOAD_PPS`] (from a to b, on CPU 1), loads the same path: (median µs, p99 µs, %
/// lost).
fn loaded_rtt(t: &mut Topo, secs: u64, gen: &Path) -> Result<(f64, f64, f64), String> {
    let stream = t.spawn(
        "a",
        &format!(
            "taskset -c 1 {} {B}:9 --secs {} --pps {LOAD_PPS} --raw eth0 --src-ip {A} --dst-mac {MAC_B}",
            gen.display(),
            secs + 1
        ),
        "load-stream.txt",
    )?;
    // the stream runs before the first ping and after the last
    std::thread::sleep(Duration::from_millis(300));
    let r = pings(&t.guest("a"), &t.guest("b"), 1, secs * 1000, true);
    t.wait(stream, 5)?;
    r
}

#[path = "../../../examples/vpcswitch/src/ping_gap.rs"]
mod ping_gap;
use ping_gap::ping_gap_ms;

/// keepalived failover from a to b (see the module docs): (the switch's own failover
/// time in µs for vpcswitch contenders, the client's outage in ms).
fn failover(
    t: &mut Topo,
    c: Contender,
    bin: &Path,
    gen: &Path,
) -> Result<(Option<f64>, f64), String> {
    let ka = t.keepalived("a", 150)?;
    t.keepalived("b", 100)?;
    t.wait_vip("a", 20)?;
    let switch = c.is_vpcswitch();
    let moves0 = if switch {
        // the switch learned a (its GARP) before the client's traffic starts
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let r = t.vip_row(bin)?;
            if r["owner"] == "a" {
                break r["moves"].as_u64().unwrap_or(0);
            }
            if Instant::now() > end {
                return Err(format!(
                    "the switch did not learn a as the VIP's owner: {r}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        0
    };
    t.exec("c", &format!("ping -n -c 1 -W 2 {VIP}"))
        .map_err(|e| format!("client cannot reach the VIP on a: {e}"))?;
    // Every process of the failover runs on CPU 1, so the switch's worker (pinned to
    // CPU 0) is not preempted by them; nothing is started while it happens.
    t.spawn(
        "c",
        &format!("taskset -c 1 ping -n -D -i 0.01 -w 5 {VIP}"),
        "failover-ping.txt",
    )?;
    t.spawn(
        "c",
        &format!(
            "taskset -c 1 {} {VIP}:9 --pps {STREAM_PPS} --secs 5",
            gen.display()
        ),
        "failover-stream.txt",
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    sh(&format!("kill -TERM {ka}"))?;
    // the ping and the stream end by themselves 5 s after their start
    std::thread::sleep(Duration::from_millis(3800));
    t.wait_vip("b", 1)?;
    let (gap, replies) = ping_gap_ms(&t.read("failover-ping.txt"));
    if replies < 200 {
        return Err(format!(
            "only {replies} ping replies from the VIP: {}",
            t.read("failover-ping.txt")
        ));
    }
    let at_switch = if switch {
        let r = t.vip_row(bin)?;
        let moves = r["moves"].as_u64().unwrap_or(0);
        if r["owner"] != "b" || moves <= moves0 {
            return Err(format!("the switch did not move the VIP to b: {r}"));
        }
        Some(
            r["first_packet_us"]
                .as_f64()
                .ok_or_else(|| format!("no frame reached b after the move: {r}"))?,
        )
    } else {
        None
    };
    Ok((at_switch, gap))
}

/// The idle CPU is measured this long after the last traffic, over this long (s).
const IDLE_SECS: u64 = 2;

type Results = BTreeMap<(Contender, Metric), Vec<f64>>;

fn measure(
    c: Contender,
    run: usize,
    secs: u64,
    smoke: bool,
    bin: &Path,
    gen: &Path,
    r: &mut Results,
) -> Result<(), String> {
    let mut t = build(c, run, bin)?;
    let mut put = |m: Metric, v: f64| r.entry((c, m)).or_default().push(v);
    let (a, b) = (t.guest("a"), t.guest("b"));
    put(Metric::Tcp1, tcp(&t.lab.dir, &b, &a, 1, secs)?);
    put(Metric::Tcp4, tcp(&t.lab.dir, &b, &a, 4, secs)?);
    put(Metric::UdpKpps, udp_kpps(&a, &b, secs, gen)?);
    let (p50, p99, lost) = loaded_rtt(&mut t, secs, gen)?;
    put(Metric::LoadRttMedian, p50);
    put(Metric::LoadRttP99, p99);
    put(Metric::LoadPingLoss, lost);
    // idle: IDLE_SETTLE after the last traffic, over IDLE_WINDOW (both at most --secs)
    let quiet = Duration::from_secs(secs.min(IDLE_SECS));
    std::thread::sleep(quiet);
    let ((), idle) = with_cpu(t.switch_pid.as_slice(), || {
        std::thread::sleep(quiet);
        Ok(())
    })?;
    if let Some(cpu) = idle {
        put(Metric::CpuIdle, cpu);
    }
    // a light rate from an idle switch
    let ((p50, p99, _), cpu) = with_cpu(t.switch_pid.as_slice(), || {
        pings(&a, &b, 10, secs * 100, false)
    })?;
    put(Metric::RttMedian, p50);
    put(Metric::RttP99, p99);
    if let Some(cpu) = cpu {
        put(Metric::CpuPing, cpu);
    }
    if smoke && smoke_skips(c, Metric::FailoverOutageMs) {
        // the failover path is the adaptive contender's code; smoke stays short
        return Ok(());
    }
    let (at_switch, outage) = failover(&mut t, c, bin, gen)?;
    if let Some(us) = at_switch {
        put(Metric::FailoverSwitchUs, us);
    }
    put(Metric::FailoverOutageMs, outage);
    Ok(())
}

/// `--breakdown`: the light-rate RTT of contender `c` split into its legs, from
/// captures in both guests (see [`vpcswitch_benches::breakdown`]): a table.
fn breakdown(c: Contender, run: usize, secs: u64, bin: &Path) -> Result<String, String> {
    let mut t = build(c, run, bin)?;
    let mut caps = Vec::new();
    for g in ["a", "b"] {
        let file = t.lab.dir.join(format!("{g}.pcap"));
        let log = format!("tcpdump-{g}.txt");
        let pid = t.spawn(
            g,
            &format!(
                "taskset -c 1 tcpdump -i eth0 -n -B 8192 --time-stamp-precision nano -w {} icmp",
                file.display()
            ),
            &log,
        )?;
        let end = Instant::now() + Duration::from_secs(10);
        while !t.read(&log).contains("listening on") {
            if Instant::now() > end {
                return Err(format!("tcpdump in {g} did not start: {}", t.read(&log)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        caps.push((pid, file));
    }
    // from an idle switch, as the light-rate row of the table
    std::thread::sleep(Duration::from_secs(2));
    let ping = t.exec(
        "a",
        &format!("taskset -c 1 ping -n -i 0.01 -c {} -W 1 {B}", secs * 100),
    )?;
    let mut text = Vec::new();
    for (pid, file) in &caps {
        quiet(&format!("kill -INT {pid}"));
        t.wait(*pid, 10)?;
        text.push(sh(&format!(
            "tcpdump -n -tt --nano -r {} 2>/dev/null",
            file.display()
        ))?);
    }
    let legs = vpcswitch_benches::breakdown::legs(&text[0], &text[1], &ping);
    if legs.len() < 100 {
        return Err(format!("only {} echoes captured on both sides", legs.len()));
    }
    let mut out = format!(
        "{} echoes\n| leg | median µs | p99 µs | mean of the slowest 1% µs |\n| --- | --- | --- | --- |\n",
        legs.len()
    );
    for s in vpcswitch_benches::breakdown::summary(&legs) {
        out += &format!(
            "| {} | {:.1} | {:.1} | {:.1} |\n",
            s.leg, s.median, s.p99, s.slowest_mean
        );
    }
    Ok(out)
}

/// Whether `--smoke` leaves measurement `m` of contender `c` out (see [`measure`]).
fn smoke_skips(c: Contender, m: Metric) -> bool {
    c.idle() == IdlePolicy::BusyPoll
        && matches!(m, Metric::FailoverSwitchUs | Metric::FailoverOutageMs)
}

fn table(r: &Results, contenders: &[Contender], runs: usize, secs: u64, smoke: bool) -> String {
    let mut s = format!(
        "{runs} run(s) of {secs} s per measurement, contenders alternating within each run; {}.\nMedian (min–max); ratio: median against the bridge's (for RTT, lower is better).\n",
        machine()
    );
    let part = |s: &mut String, metrics: &[Metric], setup: bool| {
        let mut cols = vec!["contender"];
        if setup {
            cols.extend(["setup", "guest offloads"]);
        }
        cols.extend(metrics.iter().map(|m| m.label()));
        *s += &table_head(&cols);
        for c in contenders {
            *s += &format!("| {} |", c.name());
            if setup {
                let mtu = c
                    .guest_mtu()
                    .map(|m| format!(", MTU {m}"))
                    .unwrap_or_default();
                *s += &format!(" {} | {}{mtu} |", c.setup(), c.offloads());
            }
            for &m in metrics {
                match r.get(&(*c, m)) {
                    Some(v) if !v.is_empty() => {
                        let base = r
                            .get(&(Contender::Bridge, m))
                            .filter(|_| m.applies(Contender::Bridge))
                            .filter(|_| m != Metric::LoadPingLoss)
                            .map(Vec::as_slice);
                        let p = match m {
                            Metric::Tcp1 | Metric::Tcp4 => 2,
                            Metric::FailoverSwitchUs
                            | Metric::LoadPingLoss
                            | Metric::CpuPing
                            | Metric::CpuIdle => 1,
                            _ => 0,
                        };
                        *s += &format!(" {} |", cell(v, base, p));
                    }
                    _ if !m.applies(*c) => *s += " n/a |",
                    _ if smoke && smoke_skips(*c, m) => *s += " not run (smoke) |",
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
            Metric::FailoverSwitchUs,
            Metric::FailoverOutageMs,
        ],
        true,
    );
    part(
        &mut s,
        &[
            Metric::RttMedian,
            Metric::RttP99,
            Metric::LoadRttMedian,
            Metric::LoadRttP99,
            Metric::LoadPingLoss,
            Metric::CpuPing,
            Metric::CpuIdle,
        ],
        false,
    );
    s
}

/// Six panels of medians per contender: UDP kpps, TCP 1 flow, failover outage; RTT at a
/// light rate and under load (median in front of p99), the switch's CPU (idle in front
/// of during the light-rate ping).
fn plot(r: &Results, contenders: &[Contender], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let root = SVGBackend::new(path, (1500, 820)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((2, 3));
    for (panel, (front, back, title)) in panels.iter().zip([
        (
            Metric::UdpKpps,
            None,
            "64-byte UDP, kpps (higher is better)",
        ),
        (Metric::Tcp1, None, "TCP 1 flow, Gbit/s (higher is better)"),
        (
            Metric::FailoverOutageMs,
            None,
            "keepalived failover outage, ms (lower is better)",
        ),
        (
            Metric::RttMedian,
            Some(Metric::RttP99),
            "RTT, 1 ping / 10 ms, µs: median, p99 (light)",
        ),
        (
            Metric::LoadRttMedian,
            Some(Metric::LoadRttP99),
            "RTT under a UDP flood, µs: median, p99 (light)",
        ),
        (
            Metric::CpuIdle,
            Some(Metric::CpuPing),
            "switch CPU, % of a core: idle, light ping (light)",
        ),
    ]) {
        let med = |m: Metric| -> Vec<f64> {
            contenders
                .iter()
                .map(|c| r.get(&(*c, m)).map(|v| median(v)).unwrap_or(0.0))
                .collect()
        };
        let (vals, behind) = (med(front), back.map(med));
        let top = vals
            .iter()
            .chain(behind.iter().flatten())
            .cloned()
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.15;
        // one segment per contender, so each name sits under the middle of its bar
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(100)
            .y_label_area_size(50)
            .build_cartesian_2d((0..contenders.len()).into_segmented(), 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(contenders.len() + 1)
            .x_label_formatter(&|_| String::new())
            .draw()
            .map_err(|e| e.to_string())?;
        // the names, read downwards from under the middle of each bar (the mesh centres
        // rotated labels on the axis, so they are drawn here)
        let style = TextStyle::from(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, c) in contenders.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(i), 0.0));
            root.draw(&Text::new(
                c.name().trim_start_matches("vpcswitch-"),
                (x, y + 6),
                style.clone(),
            ))
            .map_err(|e| e.to_string())?;
        }
        let color = |i: usize| {
            if contenders[i] == Contender::Bridge {
                BLUE
            } else {
                RED
            }
        };
        let bar = |i: usize, v: f64, style: ShapeStyle, side: u32| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v),
                ],
                style,
            );
            bar.set_margin(0, 0, side, side);
            bar
        };
        if let Some(behind) = &behind {
            chart
                .draw_series(
                    behind
                        .iter()
                        .enumerate()
                        .map(|(i, v)| bar(i, *v, color(i).mix(0.25).filled(), 6)),
                )
                .map_err(|e| e.to_string())?;
        }
        let side = if behind.is_some() { 12 } else { 6 };
        chart
            .draw_series(
                vals.iter()
                    .enumerate()
                    .map(|(i, v)| bar(i, *v, color(i).mix(0.6).filled(), side)),
            )
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn write_docs(root: &Path, body: &str) -> Result<(), String> {
    vpcswitch_benches::pps::write_docs_section(
        root,
        "vpcswitch-bench",
        "## Side by side: `vpcswitch-bench`\n\nMade by `cargo run --release -p vpcswitch-benches --bin vpcswitch-bench -- --write-docs` (as root).",
        &format!("{body}\n![vpcswitch-bench](bench.svg)"),
    )
}

const USAGE: &str =
    "usage: vpcswitch-bench [--runs N] [--secs S] [--only NAME,...] [--write-docs] [--smoke]
       vpcswitch-bench --breakdown [--runs N] [--secs S] [--only NAME,...]
needs root; contenders: ";

fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        let names: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
        println!("{USAGE}{}", names.join(", "));
        return;
    }
    let args = Args::parse(
        &["--smoke", "--write-docs", "--breakdown"],
        &["--runs", "--secs", "--only"],
    );
    let (flag, value) = (|f: &str| args.flag(f), |f: &str| args.value(f));
    let smoke = flag("--smoke");
    let (runs, secs) = if smoke {
        args.runs_secs(1, 1)
    } else {
        args.runs_secs(5, 5)
    };
    let mut contenders = args.only(&Contender::ALL, Contender::name);
    if !is_root() {
        die("needs root (network namespaces, veth, TAP, AF_XDP)");
    }
    for tool in [
        "ip",
        "iperf3",
        "ping",
        "ethtool",
        "taskset",
        "chrt",
        "keepalived",
    ] {
        if !have(tool) {
            die(&format!(
                "missing {tool}: apt-get install iproute2 iperf3 iputils-ping ethtool util-linux keepalived"
            ));
        }
    }
    if contenders.iter().any(|c| c.is_ovs()) && !have("ovs-vswitchd") {
        eprintln!("note: ovs-vswitchd not installed (apt-get install openvswitch-switch): the ovs-netdev and ovs-afxdp contenders are left out");
        contenders.retain(|c| !c.is_ovs());
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
    if flag("--breakdown") {
        let secs = value("--secs").map_or(30, |_| secs);
        let runs = value("--runs").map_or(1, |_| runs);
        for run in 1..=runs {
            for c in &contenders {
                match breakdown(*c, run, secs, &bin) {
                    Ok(text) => println!("{} (run {run}/{runs}):\n{text}", c.name()),
                    Err(e) => die(&format!("{}: {e}", c.name())),
                }
            }
        }
        return;
    }
    // SIGINT/SIGTERM end the harness after the measurement under way, cleaned up
    catch_signals().unwrap_or_else(|e| die(&e));
    let mut results = Results::new();
    let mut failures = Vec::new();
    for run in 1..=runs {
        for c in &contenders {
            if interrupted() {
                break;
            }
            eprintln!("run {run}/{runs}: {}", c.name());
            if let Err(e) = measure(*c, run, secs, smoke, &bin, &gen, &mut results) {
                eprintln!("  {}: {e}", c.name());
                failures.push(format!("{} (run {run}): {e}", c.name()));
            }
        }
    }
    let body = table(&results, &contenders, runs, secs, smoke);
    println!("{body}");
    if interrupted() {
        die("interrupted (what it built is removed); nothing written");
    }
    if flag("--write-docs") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Err(e) = plot(&results, &contenders, &root.join("docs/bench.svg"))
            .and_then(|()| write_docs(&root, &body))
        {
            die(&format!("writing docs: {e}"));
        }
        println!("written: docs/benchmarks.md, docs/bench.svg");
    }
    if !failures.is_empty() {
        eprintln!("failed measurements:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: [Metric; 12] = [
        Metric::Tcp1,
        Metric::Tcp4,
        Metric::UdpKpps,
        Metric::RttMedian,
        Metric::RttP99,
        Metric::LoadRttMedian,
        Metric::LoadRttP99,
        Metric::LoadPingLoss,
        Metric::CpuPing,
        Metric::CpuIdle,
        Metric::FailoverSwitchUs,
        Metric::FailoverOutageMs,
    ];

    /// Every contender's applicable metrics, distinct values.
    fn results() -> Results {
        let mut r = Results::new();
        for (i, c) in Contender::ALL.into_iter().enumerate() {
            for (j, m) in METRICS.into_iter().enumerate() {
                if m.applies(c) {
                    r.insert((c, m), vec![(10 * i + j + 1) as f64]);
                }
            }
        }
        r
    }

    #[test]
    fn table_has_every_contender_and_column() {
        let t = table(&results(), &Contender::ALL, 1, 1, false);
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
        for m in METRICS {
            assert!(t.contains(m.label()), "no column {}:\n{t}", m.label());
        }
        assert!(!t.contains("failed"), "{t}");
        // the bridge has no process and no failover time of its own
        let bridge = t.lines().find(|l| l.starts_with("| bridge |")).unwrap();
        assert!(bridge.contains("n/a"), "{bridge}");
        assert!(t.contains(&format!("xdp-mode {OVS_XDP_MODE}")), "{t}");
    }

    #[test]
    fn smoke_table_marks_what_smoke_leaves_out() {
        let mut r = results();
        r.retain(|(c, m), _| !smoke_skips(*c, *m));
        let t = table(&r, &Contender::ALL, 1, 1, true);
        assert_eq!(t.matches("not run (smoke)").count(), 3 * 2, "{t}");
        assert!(!t.contains("failed"), "{t}");
        let t = table(&r, &Contender::ALL, 1, 1, false);
        assert_eq!(t.matches("failed").count(), 3 * 2, "{t}");
    }

    #[test]
    fn plot_names_every_contender() {
        let path = std::env::temp_dir().join(format!("bench-plot-{}.svg", std::process::id()));
        plot(&results(), &Contender::ALL, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        for c in Contender::ALL {
            let label = c.name().trim_start_matches("vpcswitch-");
            // the SVG backend writes each text on a line of its own
            assert!(svg.contains(&format!("\n{label}\n")), "no label {label}");
        }
    }
}
