//! Running under systemd (deploy/systemd/vpcswitch.service): the unit file is valid, the
//! switch speaks the notification protocol (ready, reloading, watchdog, stopping) to a
//! notify socket as systemd would give it, and the unit's capabilities are exactly what
//! the backends need (each one shown needed). Needs root (TAP devices, veths) and
//! `systemd-analyze`, `setpriv` (Debian systemd, util-linux).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lock, must, repo_root, sh};

fn require_root(tools: &[&str]) {
    assert_eq!(
        must("id -u").trim(),
        "0",
        "the systemd tests need root (TAP devices, veths, capabilities)"
    );
    for t in tools {
        assert!(
            sh(&format!("command -v {t}")).0,
            "{t} is missing (Debian systemd / util-linux; scripts/deps.sh installs them)"
        );
    }
}

fn unit() -> String {
    std::fs::read_to_string(repo_root().join("deploy/systemd/vpcswitch.service"))
        .expect("deploy/systemd/vpcswitch.service")
}

/// A directory of the test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vpcsw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A switch process, killed (by PID) if the test ends before it stopped.
struct Switch(Child);

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Veth pairs of the test's own, deleted at the end.
struct Veths(Vec<String>);

impl Veths {
    fn new(names: &[(&str, &str)]) -> Veths {
        let mut v = Veths(Vec::new());
        for (a, b) in names {
            let _ = sh(&format!("ip link del {a}"));
            must(&format!("ip link add {a} type veth peer name {b}"));
            v.0.push(a.to_string());
            must(&format!("ip link set {a} up && ip link set {b} up"));
        }
        v
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = sh(&format!("ip link del {a}"));
        }
    }
}

fn config(dir: &Path, ports: &str) -> PathBuf {
    let text = format!(
        r#"
[switch]
control_socket = "{}/ctl.sock"

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "s"
vpc = "a"
cidr = "10.0.1.0/24"
{ports}"#,
        dir.display()
    );
    let p = dir.join("switch.toml");
    std::fs::write(&p, text).expect("config");
    p
}

fn port(n: u8, backend: &str) -> String {
    format!(
        "\n[[ports]]\nname = \"p{n}\"\nsubnet = \"s\"\nmac = \"02:00:00:00:01:0{n}\"\nips = [\"10.0.1.1{n}\"]\nbackend = {backend}\n"
    )
}

/// The unit passes `systemd-analyze verify` (with the switch built here as its
/// ExecStart); on systemd older than 253 the one warning allowed is that it does not
/// know `Type=notify-reload` (the unit's comment says what to use there).
#[test]
fn the_unit_file_is_valid() {
    require_root(&["systemd-analyze"]);
    let d = Dir::new("unit");
    let text = unit();
    assert!(text.contains("Type=notify-reload"), "{text}");
    assert!(text.contains("WatchdogSec="), "{text}");
    assert!(text.contains("RuntimeDirectory=vpcswitch"), "{text}");
    let local = text.replace("/usr/bin/vpcswitch", env!("CARGO_BIN_EXE_vpcswitch"));
    let p = d.0.join("vpcswitch.service");
    std::fs::write(&p, local).expect("unit");
    let (ok, out) = sh(&format!("systemd-analyze verify {} 2>&1", p.display()));
    let version: u32 = must("systemctl --version")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|l| {
            !(version < 253 && l.contains("Failed to parse service type, ignoring: notify-reload"))
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(ok && unexpected.is_empty(), "systemd {version}: {out}");
}

/// Reads notifications until one contains `want` (or `secs` pass); returns all read.
fn until(sock: &UnixDatagram, want: &str, secs: u64) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = m.contains(want);
            got.push(m);
            if done {
                return got;
            }
        }
    }
    panic!("no {want:?} within {secs} s; got {got:?}");
}

/// sd_notify(3) as systemd sees it: READY=1 once the control socket answers,
/// RELOADING=1 with MONOTONIC_USEC then READY=1 around a SIGHUP reload (what
/// Type=notify-reload waits for), WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 at
/// SIGTERM, exit 0.
#[test]
fn it_notifies_ready_reloading_watchdog_and_stopping() {
    require_root(&[]);
    let _l = lock();
    let d = Dir::new("notify");
    let cfg = config(&d.0, &port(1, "{ type = \"tap\", ifname = \"vsn-t1\" }"));
    let nsock = d.0.join("notify.sock");
    let sock = UnixDatagram::bind(&nsock).expect("notify socket");
    let log = std::fs::File::create(d.0.join("switch.log")).expect("log");
    let mut sw = Switch(
        Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["run", "-c"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &nsock)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start"),
    );
    let ready = until(&sock, "READY=1", 20);
    let r = ready.last().expect("ready");
    assert!(r.contains("STATUS=forwarding: 1 ports here"), "{r}");
    // ready means the control socket answers
    let (ok, out) = sh(&format!(
        "{} ctl -s {}/ctl.sock stats",
        env!("CARGO_BIN_EXE_vpcswitch"),
        d.0.display()
    ));
    assert!(ok, "ctl after READY=1: {out}");
    // the watchdog: at half of 400 ms, so several within 2 s
    let t0 = Instant::now();
    let mut pings = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        pings += until(&sock, "WATCHDOG=1", 5)
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count();
    }
    assert!(pings >= 4, "{pings} watchdog pings in 2 s");
    // a reload: RELOADING=1 with the monotonic time, then READY=1
    must(&format!("kill -HUP {}", sw.0.id()));
    let got = until(&sock, "RELOADING=1", 10);
    let m = got.last().expect("reloading");
    let us: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(us > 0, "{m}");
    let got = until(&sock, "READY=1", 10);
    assert!(
        got.last().is_some_and(|m| m.contains("generation 2")),
        "{got:?}"
    );
    // stop
    must(&format!("kill -TERM {}", sw.0.id()));
    until(&sock, "STOPPING=1", 10);
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = sw.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < end, "the switch did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// The capabilities of the unit's AmbientCapabilities= line.
fn unit_caps() -> Vec<String> {
    let text = unit();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in the unit");
    let caps: Vec<String> = line.split_whitespace().map(String::from).collect();
    let bounding = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    assert_eq!(
        bounding.split_whitespace().collect::<Vec<_>>(),
        caps,
        "the bounding set is the ambient set"
    );
    caps
}

/// Runs the switch on `cfg` with exactly `caps` (as root's uid, so only capabilities
/// decide, not file ownership) until its control socket answers or it exits; returns
/// whether it started and its log.
fn start_with_caps(dir: &Path, cfg: &Path, caps: &[String]) -> (bool, String) {
    let set = if caps.is_empty() {
        "-all".to_string()
    } else {
        format!(
            "-all,{}",
            caps.iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let log = dir.join("caps.log");
    let mut sw = Switch(
        Command::new("setpriv")
            .args([
                &format!("--inh-caps={set}"),
                &format!("--ambient-caps={set}"),
                &format!("--bounding-set={set}"),
            ])
            .arg(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["run", "-c"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("setpriv"),
    );
    let sock = dir.join("ctl.sock");
    let end = Instant::now() + Duration::from_secs(20);
    let started = loop {
        if sw.0.try_wait().expect("wait").is_some() {
            break false;
        }
        let (ok, out) = sh(&format!(
            "{} ctl -s {} stats",
            env!("CARGO_BIN_EXE_vpcswitch"),
            sock.display()
        ));
        if ok && out.contains("p3") {
            break true;
        }
        assert!(Instant::now() < end, "neither started nor failed");
        std::thread::sleep(Duration::from_millis(100));
    };
    if started {
        let _ = sh(&format!("kill -TERM {}", sw.0.id()));
        let end = Instant::now() + Duration::from_secs(15);
        while sw.0.try_wait().expect("wait").is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(sw);
    let _ = std::fs::remove_file(&sock);
    (started, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The unit's capabilities are enough for every backend (TAP, AF_PACKET, AF_XDP) and
/// each one is needed: without it the switch refuses to start, naming the port.
#[test]
fn the_units_capabilities_are_exactly_what_the_backends_need() {
    require_root(&["setpriv"]);
    let _l = lock();
    let d = Dir::new("caps");
    let _v = Veths::new(&[("vsc-a", "vsc-b"), ("vsc-c", "vsc-d")]);
    let ports = port(1, "{ type = \"tap\", ifname = \"vsc-t1\" }")
        + &port(2, "{ type = \"af_packet\", ifname = \"vsc-a\" }")
        + &port(
            3,
            "{ type = \"af_xdp\", ifname = \"vsc-c\", mode = \"skb\" }",
        );
    let cfg = config(&d.0, &ports);
    let caps = unit_caps();
    let (ok, log) = start_with_caps(&d.0, &cfg, &caps);
    assert!(ok, "with {caps:?}: {log}");
    let memlock_unlimited = must("sh -c 'ulimit -l'").trim() == "unlimited";
    for drop_one in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop_one).cloned().collect();
        if drop_one == "CAP_IPC_LOCK" && memlock_unlimited {
            // with no memlock limit the UMEM needs no capability: nothing to show here
            continue;
        }
        let (ok, log) = start_with_caps(&d.0, &cfg, &fewer);
        assert!(!ok, "started without {drop_one}: {log}");
        let port = match drop_one.as_str() {
            "CAP_NET_ADMIN" => "port \"p1\"",
            "CAP_NET_RAW" => "port \"p2\"",
            _ => "port \"p3\"",
        };
        assert!(
            log.contains("cannot start") && log.contains(port),
            "without {drop_one}: {log}"
        );
    }
}
