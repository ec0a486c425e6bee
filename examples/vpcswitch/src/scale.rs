//! Issue 19, "scale by simulation": many switches as library objects in this one
//! process, each a [`vpcswitch::runtime::Switch`] on in-memory ports wrapped in the
//! binary's own [`Running`] and following one 3-member etcd cluster through the same
//! code as `run --etcd` ([`crate::store::attach`], [`crate::store::spawn_follow`]):
//! its own store connection (watch and lease), reloads per revision, hosts down on
//! lease expiry, VIP owners taken from the store.
//!
//! `a_small_simulated_fleet_converges` (5 hosts × 50 ports, default test run) checks
//! that it works; `measure_scale_by_simulation` (ignored; sizes from the environment)
//! measures it for docs/benchmarks.md ("Scale by simulation").

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vpcswitch::linux::Host;
use vpcswitch::model::{Config, ConfigBuilder};
use vpcswitch_store::harness::EtcdCluster;
use vpcswitch_store::Store;

use crate::running::owner_name;
use crate::{Overrides, Running};

/// Lease TTL of the simulated hosts: `VPCSWITCH_SIM_TTL` seconds, default the binary's
/// (3 s, `--lease-ttl`).
fn ttl() -> Duration {
    Duration::from_secs(env("VPCSWITCH_SIM_TTL", 3) as u64)
}

/// Longest wait for any one convergence: `VPCSWITCH_SIM_CONVERGE` seconds (60).
fn converge() -> Duration {
    Duration::from_secs(env("VPCSWITCH_SIM_CONVERGE", 60) as u64)
}

/// A generated network: `hosts` hosts (tunnel endpoints 127.42.x.y, free UDP ports),
/// `ports` ports placed round robin on them, 200 ports per /24 subnet, 10 subnets per
/// VPC, and one VIP `vip` on ports `p0` (host h0) and `p1` (host h1).
fn network(hosts: usize, ports: usize) -> Config {
    let mut b = ConfigBuilder::new().workers(1);
    for h in 0..hosts {
        // distinct loopback addresses (hosts are told apart by the tunnel's source
        // address), each with a UDP port free on it
        let ip = endpoint(h);
        let port = std::net::UdpSocket::bind((ip.as_str(), 0))
            .and_then(|s| s.local_addr())
            .expect("a free loopback UDP port")
            .port();
        b = b.host(&format!("h{h}"), &ip).tunnel_port(port);
    }
    let subnets = ports.div_ceil(200).max(1);
    for s in 0..subnets {
        let (v, i) = (s / 10, s % 10);
        if i == 0 {
            b = b
                .vpc(&format!("v{v}"), &[&format!("10.{v}.0.0/16")])
                .vni(100 + v as u32);
        }
        b = b.subnet(
            &format!("s{s}"),
            &format!("v{v}"),
            &format!("10.{v}.{i}.0/24"),
        );
    }
    for p in 0..ports {
        let s = p / 200;
        let (v, i, x) = (s / 10, s % 10, p % 200 + 10);
        b = b
            .port(
                &format!("p{p}"),
                &format!("s{s}"),
                &format!(
                    "02:01:{:02x}:{:02x}:{:02x}:{:02x}",
                    p >> 24 & 255,
                    p >> 16 & 255,
                    p >> 8 & 255,
                    p & 255
                ),
                &[&format!("10.{v}.{i}.{x}")],
            )
            .src_dst_check(false)
            .on_host(&format!("h{}", p % hosts));
    }
    b = b.vip("vip", "s0", "10.0.0.250", &["p0", "p1"]);
    b.build().expect("the generated network is valid")
}

/// A network namespace of the simulation's own (`vpcsw-scale-PID`), deleted on drop:
/// the hosts' tunnel endpoints are addresses of its loopback, and the etcd cluster and
/// every switch run in it, so nothing of the simulation reaches the machine's own
/// network.
struct SimNetns(String);

impl SimNetns {
    fn new(hosts: usize) -> SimNetns {
        let ns = SimNetns(format!("vpcsw-scale-{}", std::process::id()));
        let ip = |args: &str| {
            let out = std::process::Command::new("ip")
                .args(args.split_whitespace())
                .output()
                .unwrap_or_else(|e| {
                    panic!("ip {args}: {e} (the simulation needs iproute2 and root)")
                });
            assert!(
                out.status.success(),
                "ip {args}: {} (the simulation needs root)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&format!("netns add {}", ns.0));
        ip(&format!("-n {} link set lo up", ns.0));
        let batch = std::env::temp_dir().join(format!("{}.batch", ns.0));
        let lines: String = (0..hosts)
            .map(|h| format!("addr add {}/32 dev lo\n", endpoint(h)))
            .collect();
        std::fs::write(&batch, lines).expect("batch file");
        ip(&format!("-n {} -batch {}", ns.0, batch.display()));
        let _ = std::fs::remove_file(&batch);
        ns
    }

    /// Runs `f` on a thread in the namespace (threads it starts, and processes it
    /// spawns, are there too).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsFd;
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("netns file");
        std::thread::scope(|s| {
            s.spawn(|| {
                vpcswitch_tap::sys::enter_netns(file.as_fd()).expect("setns");
                f()
            })
            .join()
        })
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for SimNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Host `h`'s tunnel endpoint address (on the namespace's loopback).
fn endpoint(h: usize) -> String {
    format!("127.42.{}.{}", h / 250, h % 250 + 1)
}

/// One simulated host: the binary's [`Running`] on memory ports, following the store.
struct SimHost {
    name: String,
    running: Arc<Running>,
    follow: Option<JoinHandle<()>>,
}

impl SimHost {
    /// Starts host `name` as `run --etcd --host NAME` does, on memory backends.
    fn start(endpoints: &[String], name: &str) -> SimHost {
        let store = Store::connect(endpoints).expect("connect");
        let stored = store.load().expect("load");
        let overrides = Overrides {
            host: Some(name.into()),
            ..Default::default()
        };
        let cfg = overrides
            .apply(stored.config.clone())
            .expect("for this host");
        let (b, _guests) = vpcswitch::runtime::memory_backends(&cfg, 64);
        // the binary's Switch::start sizes for 4096 port slots and 256 hosts, and every
        // port of the network takes a slot on every host (remote ones too): beyond
        // that it refuses the network (TooManyPorts; docs/benchmarks.md), so the
        // simulation sizes the slots to the network and keeps the other defaults
        let opts = vpcswitch::runtime::Options {
            max_ports: cfg.ports.len().max(4096),
            max_hosts: cfg.hosts.len().max(256),
            ..Default::default()
        };
        let sw = vpcswitch::runtime::Switch::start_with(&cfg, b, opts).expect("switch starts");
        let running = Running::new(Host::new(sw), PathBuf::new()).with_overrides(overrides);
        let (running, rx) = crate::store::attach(running, store, &stored, ttl()).expect("attach");
        let running = Arc::new(running);
        let follow = crate::store::spawn_follow(&running, rx).expect("follow thread");
        SimHost {
            name: name.into(),
            running,
            follow: Some(follow),
        }
    }

    fn revision(&self) -> i64 {
        self.link().state.lock().unwrap().revision
    }

    fn apply_us(&self) -> u64 {
        self.link().state.lock().unwrap().apply_us
    }

    fn link(&self) -> &crate::running::StoreLink {
        self.running.store.as_ref().expect("a store link")
    }

    fn vip_owner(&self) -> Option<String> {
        let snap = self.running.switch.snapshot();
        owner_name(&snap, snap.vip_cell(0))
    }

    /// Stops following (the switch, its store thread and its lease go when the last
    /// reference does: the lease then expires after its TTL).
    fn stop(mut self) {
        self.running.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.follow.take() {
            t.join().expect("follow thread");
        }
        drop(self.running);
    }
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

/// Sum over the cluster's members of the metric `name` (every label set).
fn etcd_metric(endpoints: &[String], name: &str) -> f64 {
    let mut sum = 0.0;
    for e in endpoints {
        let addr = e.trim_start_matches("http://");
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let mut body = String::new();
        let _ = c.read_to_string(&mut body);
        for l in body.lines() {
            let Some(rest) = l.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                sum += v;
            }
        }
    }
    sum
}

/// The etcd counters the simulation reports.
const LOAD: [&str; 4] = [
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_mvcc_put_total",
];

fn load(endpoints: &[String]) -> [f64; 4] {
    LOAD.map(|n| etcd_metric(endpoints, n))
}

/// Median and p99 of `v` (sorted here), in ms.
fn pct(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99))
}

/// Waits until `done` holds for every host in `hosts`; the time it took, or a panic
/// naming what did not converge.
fn until_all(hosts: &[SimHost], what: &str, done: impl Fn(&SimHost) -> bool) -> Duration {
    let t0 = Instant::now();
    let mut next = 0;
    loop {
        while next < hosts.len() && done(&hosts[next]) {
            next += 1;
        }
        if next == hosts.len() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < converge(),
            "{what}: host {} not converged after {:?}",
            hosts[next].name,
            converge()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What one run measured.
#[derive(Debug)]
struct Figures {
    apply_ms: (f64, f64),
    apply_call_ms: (f64, f64),
    apply_us_per_host: (f64, f64),
    vip_ms: (f64, f64),
    lease_ms: Vec<f64>,
    rss_per_host: f64,
    start_s: f64,
    first_apply_s: f64,
    per_apply: [f64; 4],
    idle_per_s: [f64; 4],
    db_bytes: f64,
    keys: usize,
    read_bytes: f64,
}

/// Runs the simulation: `hosts` × `ports`, `trials` applies and VIP moves, `kills`
/// hosts killed one after the other.
fn simulate(hosts: usize, ports: usize, trials: usize, kills: usize) -> Figures {
    let cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoints();
    let admin = Store::connect(&endpoints).expect("connect");
    let mut cfg = network(hosts, ports);
    let t0 = Instant::now();
    admin.apply(&cfg, false).expect("first apply");
    let first_apply_s = t0.elapsed().as_secs_f64();
    let keys = cfg.hosts.len() + cfg.vpcs.len() + cfg.subnets.len() + cfg.ports.len() + 4;

    let rss0 = rss();
    let t0 = Instant::now();
    let mut sim: Vec<SimHost> = (0..hosts)
        .map(|h| SimHost::start(&endpoints, &format!("h{h}")))
        .collect();
    let start_s = t0.elapsed().as_secs_f64();
    // every host registered and seen alive by every other
    until_all(&sim, "leases", |h| {
        h.link().state.lock().unwrap().alive.len() == hosts
    });
    let rss_per_host = rss().saturating_sub(rss0) as f64 / hosts as f64;

    // the etcd load of an idle fleet (leases), to subtract
    let (l0, i0) = (load(&endpoints), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (l1, idle) = (load(&endpoints), i0.elapsed().as_secs_f64());
    let idle_per_s: [f64; 4] = std::array::from_fn(|i| (l1[i] - l0[i]) / idle);

    // the bytes of one whole read of the network (what every apply reads first)
    let r0 = load(&endpoints);
    admin.load().expect("load");
    let read_bytes = load(&endpoints)[1] - r0[1];

    // (1) apply -> applied on every host: one port's src_dst_check flipped
    let (mut every, mut per_host, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    let (l0, t_load) = (load(&endpoints), Instant::now());
    for t in 0..trials {
        let p = &mut cfg.ports[t % ports];
        p.src_dst_check = !p.src_dst_check;
        let t0 = Instant::now();
        let a = admin.apply(&cfg, false).expect("apply");
        assert!(a.wrote && a.changes.len() == 1, "{a:?}");
        let rev = a.revision;
        calls.push(t0.elapsed().as_secs_f64() * 1e3);
        until_all(&sim, "apply", |h| h.revision() >= rev);
        every.push(t0.elapsed().as_secs_f64() * 1e3);
        eprintln!("apply trial {t}: {:.1} ms", every[t]);
        per_host.extend(sim.iter().map(|h| h.apply_us() as f64));
    }
    let l1 = load(&endpoints);
    let span = t_load.elapsed().as_secs_f64();
    let per_apply: [f64; 4] =
        std::array::from_fn(|i| ((l1[i] - l0[i]) - idle_per_s[i] * span) / trials as f64);
    let apply_ms = pct(&mut every);
    println!("  (apply -> applied every host, ms, by trial: {every:.1?})");
    let apply_call_ms = pct(&mut calls);
    let apply_us_per_host = pct(&mut per_host);

    // (2) a VIP owner published by one host -> every host steers to it
    let mut vip = Vec::new();
    for t in 0..trials {
        let (port, host) = if t % 2 == 0 { ("p0", 0) } else { ("p1", 1) };
        let t0 = Instant::now();
        sim[host]
            .link()
            .store
            .publish_vip_owner("vip", port, &sim[host].name)
            .expect("publish");
        let stuck = Instant::now() + Duration::from_secs(10);
        while let Some(h) = sim.iter().find(|h| h.vip_owner().as_deref() != Some(port)) {
            if Instant::now() > stuck {
                let st = h.link().state.lock().unwrap();
                panic!(
                    "vip trial {t}: {port} published by {}; {} still has owner {:?}; its store \
                     view {:?}, marks {:?}, alive {}, hosts down {:?}",
                    sim[host].name,
                    h.name,
                    h.vip_owner(),
                    st.vip_owners,
                    st.vip_marks,
                    st.alive.len(),
                    h.running.switch.hosts_down()
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        vip.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let vip_ms = pct(&mut vip);

    // (3) lease expiry: the last host stops; from the moment its key is gone from the
    // store (seen by the admin's watch) to its ports down on every other host
    let (tx, rx) = std::sync::mpsc::channel();
    admin.watch(tx).expect("admin watch");
    let mut lease_ms = Vec::new();
    for _ in 0..kills.min(hosts.saturating_sub(2)) {
        let victim = sim.pop().expect("a host");
        let name = victim.name.clone();
        victim.stop();
        let gone = Instant::now() + converge();
        let t0 = loop {
            match rx.recv_timeout(gone.saturating_duration_since(Instant::now())) {
                Ok(vpcswitch_store::Update::Alive(a)) if !a.contains(&name) => {
                    break Instant::now()
                }
                Ok(_) => {}
                Err(e) => panic!("lease of {name} never expired: {e}"),
            }
        };
        until_all(&sim, "host down", |h| {
            h.running.switch.hosts_down().contains(&name)
        });
        lease_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    // leases granted again after one was lost (a storm: keep-alives late under load)
    let regrants: u64 = sim
        .iter()
        .map(|h| {
            h.link()
                .store
                .stats
                .lease_grants
                .load(Ordering::Relaxed)
                .saturating_sub(1)
        })
        .sum();
    let reloads: u64 = sim
        .iter()
        .map(|h| h.running.switch.snapshot().generation)
        .sum();
    println!("  leases re-granted (sum over hosts): {regrants}; reloads so far (sum of generations): {reloads}");
    let db_bytes = etcd_metric(&endpoints, "etcd_mvcc_db_total_size_in_bytes") / 3.0;
    for h in sim {
        h.stop();
    }
    drop(admin);
    drop(cluster);
    Figures {
        apply_ms,
        apply_call_ms,
        apply_us_per_host,
        vip_ms,
        lease_ms,
        rss_per_host,
        start_s,
        first_apply_s,
        per_apply,
        idle_per_s,
        db_bytes,
        keys,
        read_bytes,
    }
}

fn report(hosts: usize, ports: usize, trials: usize, f: &Figures) {
    println!(
        "scale by simulation: {hosts} hosts x {ports} ports ({} keys), {trials} trials",
        f.keys
    );
    println!(
        "  first apply of the whole network: {:.2} s; {hosts} hosts started in {:.1} s",
        f.first_apply_s, f.start_s
    );
    println!(
        "  apply -> applied on every host: median {:.2} ms, p99 {:.2} ms",
        f.apply_ms.0, f.apply_ms.1
    );
    println!(
        "  of which the apply call (read whole, diff, CAS txn): median {:.2} ms, p99 {:.2} ms",
        f.apply_call_ms.0, f.apply_call_ms.1
    );
    println!(
        "  one host's reload (apply_us): median {:.0} us, p99 {:.0} us",
        f.apply_us_per_host.0, f.apply_us_per_host.1
    );
    println!(
        "  vip owner published -> every host steers: median {:.2} ms, p99 {:.2} ms",
        f.vip_ms.0, f.vip_ms.1
    );
    println!(
        "  lease gone -> ports down on every other host: {:?} ms",
        f.lease_ms
            .iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!(
        "  RSS per simulated host: {:.0} KiB",
        f.rss_per_host / 1024.0
    );
    for (i, n) in LOAD.iter().enumerate() {
        println!(
            "  {n}: per apply {:.0} (idle fleet: {:.0}/s)",
            f.per_apply[i], f.idle_per_s[i]
        );
    }
    println!(
        "  one whole read of the network (each apply's first step): {:.0} bytes sent",
        f.read_bytes
    );
    println!(
        "  etcd db size (mean of members): {:.0} KiB",
        f.db_bytes / 1024.0
    );
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Issue 19: a small fleet of simulated hosts on one etcd cluster converges: every
/// apply reaches every host, a VIP owner published by one host is taken by all, and a
/// host whose lease expires has its ports down on all the others.
#[test]
fn a_small_simulated_fleet_converges() {
    let f = SimNetns::new(5).run(|| simulate(5, 50, 6, 1));
    report(5, 50, 6, &f);
    assert_eq!(f.lease_ms.len(), 1);
    // wide bounds: these only say that it converged, not how fast
    assert!(f.apply_ms.1 < 30_000.0 && f.vip_ms.1 < 30_000.0, "{f:?}");
    // the watch delivered the applies' events to every host
    assert!(f.per_apply[2] >= 5.0, "{f:?}");
}

/// docs/benchmarks.md "Scale by simulation": `VPCSWITCH_SIM_HOSTS` (100) hosts,
/// `VPCSWITCH_SIM_PORTS` (10 000) ports, `VPCSWITCH_TRIALS` (60) trials,
/// `VPCSWITCH_SIM_KILLS` (5) lease expiries.
#[test]
#[ignore = "measurement: minutes; run with --release --ignored --nocapture"]
fn measure_scale_by_simulation() {
    let hosts = env("VPCSWITCH_SIM_HOSTS", 100);
    let ports = env("VPCSWITCH_SIM_PORTS", 10_000);
    let trials = env("VPCSWITCH_TRIALS", 60);
    let kills = env("VPCSWITCH_SIM_KILLS", 5);
    let f = SimNetns::new(hosts).run(|| simulate(hosts, ports, trials, kills));
    report(hosts, ports, trials, &f);
}

/// Where one host's reload of the whole network goes, at `ports` ports on `hosts`
/// hosts (no store, one thread): the command line's overrides (validation whole), the
/// snapshot compiled against the running one, the ports to open, and the RSS the
/// compiled snapshot holds. Median of `runs`, ms.
fn reload_cost(hosts: usize, ports: usize, runs: usize) -> [f64; 5] {
    let cfg = network(hosts, ports);
    let overrides = Overrides {
        host: Some("h0".into()),
        ..Default::default()
    };
    let local = overrides.apply(cfg.clone()).expect("for h0");
    let prev = vpcswitch::core::Snapshot::compile(&local, None).expect("compiles");
    let mut t = [const { Vec::new() }; 4];
    for _ in 0..runs {
        let t0 = Instant::now();
        let c = overrides.apply(cfg.clone()).expect("for h0");
        t[0].push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        c.validate().expect("valid");
        t[1].push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let s = vpcswitch::core::Snapshot::compile(&c, Some(&prev)).expect("compiles");
        t[2].push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let n = vpcswitch::linux::changed_ports(&local, &c);
        t[3].push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(n.is_empty() && s.port_id("p0").is_some());
    }
    let r0 = rss();
    let held: Vec<_> = (0..4)
        .map(|_| vpcswitch::core::Snapshot::compile(&local, Some(&prev)).expect("compiles"))
        .collect();
    let per_snapshot = rss().saturating_sub(r0) as f64 / held.len() as f64;
    drop(held);
    [
        pct(&mut t[0]).0,
        pct(&mut t[1]).0,
        pct(&mut t[2]).0,
        pct(&mut t[3]).0,
        per_snapshot,
    ]
}

/// docs/benchmarks.md "Scale by simulation": one host's reload cost by network size
/// (no store, no switch: validation, compile, ports to open; RSS of one snapshot).
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn measure_reload_cost_by_network_size() {
    for ports in [500, 1000, 2000, 4000, 10_000] {
        let [o, v, c, p, m] = reload_cost(100, ports, 5);
        println!(
            "{ports} ports, 100 hosts: overrides+validate {o:.1} ms (validate alone {v:.1} ms), \
             compile {c:.1} ms, changed_ports {p:.1} ms; one snapshot {:.0} KiB",
            m / 1024.0
        );
    }
}
