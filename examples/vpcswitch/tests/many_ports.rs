//! A thousand TAP ports on two workers (needs root): every port answers, and the idle
//! switch then costs almost nothing (issue 15: buffer ownership that cannot strand; an
//! idle switch with many ports must cost little).
//!
//! The switch (the real binary) runs in one network namespace of this test's and makes
//! its 1 000 TAPs there; the test is every guest at once, through one raw AF_PACKET
//! socket bound to each TAP in that namespace (`vpcswitch_packet::sys`), not 1 000
//! namespaces. Each guest ARPs for its gateway (the switch's ARP responder, SPEC 3.4),
//! pings the gateway (SPEC 5.6) and one peer in another subnet of its VPC (routed,
//! SPEC 5), and answers the pings its own peer sends it. Then, traffic over, the switch
//! must use ≤ 2% of a core and ≤ 128 MiB resident (DESIGN's budget).
//!
//! Everything it makes (the namespace, the switch process, the files) is removed when
//! it ends; the switch is killed by PID. Traffic stays inside the namespace.

mod common;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_seconds, must, sh};

use vpcswitch_backend::sys::if_index;
use vpcswitch_packet::sys as packet;
use vpcswitch_tap::sys as tap;

const PORTS: usize = 1000;
const SUBNETS: usize = 4;
const PER_SUBNET: usize = PORTS / SUBNETS;

/// Guest `i`: its subnet, MAC and IP.
fn mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0x5a, (i >> 8) as u8, i as u8]
}
fn ip(i: usize) -> [u8; 4] {
    [10, 50, (i / PER_SUBNET) as u8, (2 + i % PER_SUBNET) as u8]
}
fn gw(i: usize) -> [u8; 4] {
    [10, 50, (i / PER_SUBNET) as u8, 1]
}
/// The peer guest `i` pings: the same place in the next subnet (routed).
fn peer(i: usize) -> usize {
    (i + PER_SUBNET) % PORTS
}
fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn csum(b: &[u8]) -> u16 {
    let mut acc: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn arp_request(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac(i));
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac(i));
    f[28..32].copy_from_slice(&ip(i));
    f[38..42].copy_from_slice(&gw(i));
    f
}

/// An ICMP echo (`kind` 8) or echo reply (0) from guest `i` to `dst` through `gw_mac`.
fn icmp(i: usize, gw_mac: [u8; 6], dst: [u8; 4], kind: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 16];
    f[..6].copy_from_slice(&gw_mac);
    f[6..12].copy_from_slice(&mac(i));
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ipl = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ipl.to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[22] = 64;
    f[23] = 1;
    f[26..30].copy_from_slice(&ip(i));
    f[30..34].copy_from_slice(&dst);
    let c = csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34] = kind;
    f[38..40].copy_from_slice(&id.to_be_bytes());
    f[40..42].copy_from_slice(&seq.to_be_bytes());
    for (k, b) in f[42..].iter_mut().enumerate() {
        *b = k as u8;
    }
    let c = csum(&f[34..]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

/// The namespace, the switch in it, and the files; all removed on drop.
struct Env {
    ns: String,
    dir: PathBuf,
    switch: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.switch.take() {
            let _ = sh(&format!("kill -TERM {}", c.id()));
            let end = Instant::now() + Duration::from_secs(10);
            while !matches!(c.try_wait(), Ok(Some(_))) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&format!("ip netns del {} 2>/dev/null", self.ns));
        if std::env::var_os("VPCSWITCH_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// CPU time so far of each thread of `pid` (name, ns; from `schedstat`).
fn thread_cpu(pid: u32) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut v: Vec<(String, u64)> = dir
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
                .unwrap_or(0);
            (
                format!("{}/{}", name.trim(), e.file_name().to_string_lossy()),
                ns,
            )
        })
        .collect();
    v.sort();
    v
}

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = st
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// Sends one frame (with an empty virtio-net header) on a guest's socket.
fn send(fd: &OwnedFd, frame: &[u8]) {
    let hdr = [0u8; 10];
    let _ = packet::send_batch(fd.as_raw_fd(), std::iter::once((&hdr[..], frame)));
}

#[test]
fn thousand_tap_ports_on_two_workers_all_answer_and_the_idle_switch_costs_little() {
    let uid = must("id -u");
    assert_eq!(uid.trim(), "0", "this test needs root (a namespace, TAPs)");
    let nofile: u64 = must("ulimit -n").trim().parse().unwrap_or(0);
    assert!(
        nofile >= 4 * PORTS as u64,
        "open-file limit {nofile}: the switch needs two descriptors per TAP and the test one (ulimit -n 8192)"
    );
    let t0 = Instant::now();
    let tag = format!("vsm{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("vpcswitch-many-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut env = Env {
        ns: tag.clone(),
        dir: dir.clone(),
        switch: None,
    };
    must(&format!("ip netns add {}", env.ns));
    // no IPv6 chatter from the TAPs (DAD, MLD, router solicitations): the only traffic
    // is the test's
    must(&format!(
        "ip netns exec {} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && ip link set lo up'",
        env.ns
    ));
    let ifname = |i: usize| format!("{tag}t{i}");
    let socket = dir.join("ctl.sock");
    let mut cfg = format!(
        "[switch]\nworkers = 2\ncontrol_socket = \"{}\"\n\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.50.0.0/16\"]\n\n",
        socket.display()
    );
    for s in 0..SUBNETS {
        cfg += &format!("[[subnets]]\nname = \"s{s}\"\nvpc = \"v\"\ncidr = \"10.50.{s}.0/24\"\n\n");
    }
    for i in 0..PORTS {
        let m = mac(i);
        cfg += &format!(
            "[[ports]]\nname = \"p{i}\"\nsubnet = \"s{}\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\nips = [\"{}\"]\nbackend = {{ type = \"tap\", ifname = \"{}\" }}\n\n",
            i / PER_SUBNET, m[0], m[1], m[2], m[3], m[4], m[5], dotted(ip(i)), ifname(i)
        );
    }
    let cfg_path = dir.join("switch.toml");
    std::fs::write(&cfg_path, cfg).expect("write config");
    let log = File::create(dir.join("switch.log")).expect("log");
    // `ip netns exec` execs the switch: the child's PID is the switch's
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &env.ns,
            env!("CARGO_BIN_EXE_vpcswitch"),
            "run",
            "-c",
        ])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vpcswitch");
    let pid = child.id();
    env.switch = Some(child);
    let started = Instant::now();
    let end = started + Duration::from_secs(60);
    while !socket.exists() {
        let log = std::fs::read_to_string(dir.join("switch.log")).unwrap_or_default();
        let exited = env
            .switch
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
        assert!(
            Instant::now() < end && !exited,
            "switch did not start: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "vpcswitch",
        "the measured process is the switch"
    );
    eprintln!(
        "switch up with {PORTS} TAPs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let batch = dir.join("up.batch");
    std::fs::write(
        &batch,
        (0..PORTS)
            .map(|i| format!("link set {} up\n", ifname(i)))
            .collect::<String>(),
    )
    .expect("batch");
    must(&format!("ip -n {} -batch {}", env.ns, batch.display()));

    // One raw socket per TAP, opened by a thread that entered the namespace (the
    // sockets stay there; the test's other threads do not move).
    let nsfile = File::open(format!("/run/netns/{}", env.ns)).expect("netns file");
    let socks: Vec<OwnedFd> = std::thread::scope(|s| {
        s.spawn(|| {
            tap::enter_netns(nsfile.as_fd()).expect("setns");
            (0..PORTS)
                .map(|i| {
                    let idx = if_index(&ifname(i)).expect("TAP in the namespace");
                    packet::open_packet(idx, None).expect("packet socket")
                })
                .collect()
        })
        .join()
        .expect("socket thread")
    });

    // Traffic: ARP for the gateway, then a ping to it and to the peer, answering the
    // peers' pings; missing answers are asked again every 2 s until the deadline.
    let mut gw_mac: Vec<Option<[u8; 6]>> = vec![None; PORTS];
    let mut gw_ok = vec![false; PORTS];
    let mut peer_ok = vec![false; PORTS];
    let mut last_sent: Vec<Option<Instant>> = vec![None; PORTS];
    let mut h = [0u8; 10];
    let mut body = vec![0u8; 65_600];
    let traffic = Instant::now();
    let deadline = traffic + Duration::from_secs(40);
    loop {
        let now = Instant::now();
        for i in 0..PORTS {
            let due = last_sent[i].is_none_or(|t| now.duration_since(t) > Duration::from_secs(2));
            if !due || (gw_ok[i] && peer_ok[i]) {
                continue;
            }
            last_sent[i] = Some(now);
            match gw_mac[i] {
                None => send(&socks[i], &arp_request(i)),
                Some(m) => {
                    if !gw_ok[i] {
                        send(&socks[i], &icmp(i, m, gw(i), 8, i as u16, 1));
                    }
                    if !peer_ok[i] {
                        send(&socks[i], &icmp(i, m, ip(peer(i)), 8, i as u16, 2));
                    }
                }
            }
        }
        let mut got = 0;
        for j in 0..PORTS {
            while let Ok((n, _)) = packet::recv_packet(socks[j].as_raw_fd(), &mut h, &mut body) {
                got += 1;
                let f = &body[..n.saturating_sub(10)];
                if f.len() < 42 || f[..6] != mac(j) {
                    continue;
                }
                match [f[12], f[13]] {
                    // ARP reply from the gateway
                    [0x08, 0x06] if f[20..22] == [0, 2] && f[28..32] == gw(j) => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(&f[22..28]);
                        if gw_mac[j].is_none() {
                            gw_mac[j] = Some(m);
                            last_sent[j] = None;
                        }
                    }
                    [0x08, 0x00] if f[23] == 1 && f.len() >= 42 && f[30..34] == ip(j) => {
                        let id = u16::from_be_bytes([f[38], f[39]]);
                        let seq = u16::from_be_bytes([f[40], f[41]]);
                        let mut src = [0u8; 4];
                        src.copy_from_slice(&f[26..30]);
                        match f[34] {
                            0 if id as usize == j && seq == 1 && src == gw(j) => gw_ok[j] = true,
                            0 if id as usize == j && seq == 2 && src == ip(peer(j)) => {
                                peer_ok[j] = true
                            }
                            // the peer's ping: answer it through the gateway
                            8 => {
                                if let Some(m) = gw_mac[j] {
                                    send(&socks[j], &icmp(j, m, src, 0, id, seq));
                                }
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        let done = gw_ok.iter().zip(&peer_ok).all(|(a, b)| *a && *b);
        if done || Instant::now() > deadline {
            break;
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let traffic_s = traffic.elapsed().as_secs_f64();
    let arp_n = gw_mac.iter().filter(|m| m.is_some()).count();
    let gw_n = gw_ok.iter().filter(|x| **x).count();
    let peer_n = peer_ok.iter().filter(|x| **x).count();
    let first_silent = (0..PORTS).find(|&i| !(gw_ok[i] && peer_ok[i]));

    // Idle: from 1.5 s after the last packet, over 3 s.
    std::thread::sleep(Duration::from_millis(1500));
    let (c0, w0, t0s) = (cpu_seconds(pid), Instant::now(), thread_cpu(pid));
    std::thread::sleep(Duration::from_secs(3));
    let (c1, w1, t1s) = (cpu_seconds(pid), Instant::now(), thread_cpu(pid));
    let per_thread: Vec<String> = t1s
        .iter()
        .filter_map(|(n, b)| {
            let a = t0s.iter().find(|(m, _)| m == n)?.1;
            let ms = (b - a) as f64 / 1e6;
            (ms >= 0.5).then(|| format!("{n} {ms:.1} ms"))
        })
        .collect();
    eprintln!("idle CPU by thread over 3 s: {}", per_thread.join(", "));
    let idle_pct = 100.0 * (c1 - c0) / w1.duration_since(w0).as_secs_f64();
    let rss = rss_mib(pid);
    let stats = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["ctl", "--json", "-s"])
        .arg(&socket)
        .arg("stats")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let drops = serde_json::from_str::<serde_json::Value>(&stats)
        .map(|v| v["drops"].to_string())
        .unwrap_or_default();
    eprintln!(
        "{PORTS} TAP ports, 2 workers: gateway ARP answered {arp_n}/{PORTS}, gateway ping {gw_n}/{PORTS}, peer ping {peer_n}/{PORTS} in {traffic_s:.1} s (first port without both answers: {first_silent:?}); idle CPU {idle_pct:.2}% of a core over 3 s; RSS {rss:.1} MiB; drops {drops}; whole test {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        (arp_n, gw_n, peer_n),
        (PORTS, PORTS, PORTS),
        "every guest gets its gateway's ARP reply and both pings answered (first without: {first_silent:?})"
    );
    assert!(
        idle_pct <= 2.0,
        "the idle switch uses {idle_pct:.2}% of a core (at most 2%)"
    );
    assert!(
        rss <= 128.0,
        "the switch's RSS is {rss:.1} MiB (at most 128)"
    );
}
