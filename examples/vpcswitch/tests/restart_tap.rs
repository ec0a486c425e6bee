//! Issue 22, TAP ports that outlive the process: a TAP port with `netns` is made inside
//! the guest's network namespace and made persistent, so SIGTERM or `kill -9` and a
//! restart of the switch keep the guest's interface (name, MAC, addresses) and its
//! traffic resumes; a missing namespace is a clear error and a non-zero exit; a TAP
//! without `netns` that the switch must create in its own namespace is warned about.
//!
//! Needs root, iproute2 and iputils-ping. Every namespace, device, process and file a
//! test makes is removed when it ends (processes killed by PID).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::ping_gap::ping_gap_ms;
use common::{lock, must, sh, spawn_switch};

fn require() {
    let (_, uid) = sh("id -u");
    assert_eq!(
        uid.trim(),
        "0",
        "these tests need root (network namespaces, TAP devices)"
    );
    for tool in ["ip", "ping", "iperf3"] {
        assert!(
            sh(&format!("command -v {tool}")).0,
            "missing tool `{tool}`: run scripts/test.sh (it installs iproute2, iputils-ping, iperf3)"
        );
    }
}

/// Two guests `a` and `b` in namespaces of their own, and the switch binary.
struct Lab {
    tag: String,
    dir: PathBuf,
    switch: Option<Child>,
    procs: Vec<Child>,
    namespaces: Vec<String>,
}

const GUESTS: [(&str, &str, &str); 2] = [
    ("a", "02:00:00:22:00:01", "10.22.0.11"),
    ("b", "02:00:00:22:00:02", "10.22.0.12"),
];

impl Lab {
    fn new(prefix: &str) -> Lab {
        require();
        let tag = format!("{prefix}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("vpcswitch-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Lab {
            tag,
            dir,
            switch: None,
            procs: vec![],
            namespaces: vec![],
        }
    }

    fn ns(&self, g: &str) -> String {
        format!("{}-{g}", self.tag)
    }

    /// The guest's TAP (named after the run, so a leftover in the host is easy to see).
    fn ifn(&self, g: &str) -> String {
        format!("{}{g}", self.tag)
    }

    fn add_ns(&mut self, g: &str) {
        let ns = self.ns(g);
        must(&format!("ip netns add {ns}"));
        self.namespaces.push(ns);
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    fn cfg_path(&self) -> PathBuf {
        self.dir.join("switch.toml")
    }

    /// The configuration: the guests' TAP ports, each in its namespace (`netns` is
    /// given as a name for `a` and as a path for `b`), or as `port` gives them.
    fn config(&self, port: &dyn Fn(&str) -> String) -> String {
        let mut c = format!(
            "[switch]\nworkers = 2\ncontrol_socket = \"{}\"\n\
             [[vpcs]]\nname = \"v\"\ncidrs = [\"10.22.0.0/16\"]\n\
             [[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.22.0.0/24\"\n",
            self.socket().display()
        );
        for (g, mac, ip) in GUESTS {
            let b = port(g);
            if b.is_empty() {
                continue;
            }
            c += &format!(
                "[[ports]]\nname = \"{g}\"\nsubnet = \"s\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\nbackend = {b}\n"
            );
        }
        c
    }

    fn netns_ports(&self) -> String {
        self.config(&|g| {
            let ns = if g == "a" {
                self.ns(g)
            } else {
                format!("/var/run/netns/{}", self.ns(g))
            };
            format!(
                "{{ type = \"tap\", ifname = \"{}\", netns = \"{ns}\" }}",
                self.ifn(g)
            )
        })
    }

    /// Starts the switch on `cfg`; waits for its control socket.
    fn start(&mut self, cfg: &str) {
        std::fs::write(self.cfg_path(), cfg).expect("config");
        let _ = std::fs::remove_file(self.socket());
        self.switch = Some(spawn_switch(&self.cfg_path(), &self.dir.join("switch.log")));
        let end = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < end, "switch did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the switch with `signal` (by PID) and waits for it to exit.
    fn stop(&mut self, signal: &str) {
        let Some(mut c) = self.switch.take() else {
            return;
        };
        must(&format!("kill -{signal} {}", c.id()));
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                panic!("the switch did not stop within 5 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The switch's log, without colour codes.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(self.dir.join("switch.log")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut esc = false;
        for ch in raw.chars() {
            match (esc, ch) {
                (false, '\x1b') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }

    /// Starts a background command in guest `g` (killed at the end), output to `out`.
    fn spawn(&mut self, g: &str, cmd: &str, out: &str) {
        let f = std::fs::File::create(self.dir.join(out)).expect("out file");
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(g), "sh", "-c"])
            .arg(format!("exec {cmd}"))
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn");
        self.procs.push(c);
    }

    /// Waits for the last background command to end.
    fn wait_last(&mut self) {
        if let Some(c) = self.procs.last_mut() {
            let _ = c.wait();
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Replies to `n` pings from `a` to `b`.
    fn ping(&self, n: u32) -> u32 {
        let (_, out) = sh(&format!(
            "ip netns exec {} ping -n -c {n} -i 0.1 -W 1 {}",
            self.ns("a"),
            GUESTS[1].2
        ));
        out.lines()
            .find(|l| l.contains("received"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The guest's interface as `ip` shows it: index, name, MAC and IPv4 address.
    fn guest_if(&self, g: &str) -> Option<(String, String)> {
        let (ok, link) = sh(&format!(
            "ip -n {} -o link show {}",
            self.ns(g),
            self.ifn(g)
        ));
        if !ok {
            return None;
        }
        let (_, addr) = sh(&format!(
            "ip -n {} -o -4 addr show dev {}",
            self.ns(g),
            self.ifn(g)
        ));
        // "7: vs1a: <...> ... link/ether 02:..:01 brd ..."
        let idx = link.split(':').next().unwrap_or("").trim().to_string();
        let mac = link
            .split("link/ether ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("");
        let ip = addr
            .split("inet ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("");
        Some((format!("{idx} {mac} {ip}"), link))
    }

    /// Configures the guests' interfaces (made by the switch in their namespaces).
    fn guests_up(&self) {
        for (g, mac, ip) in GUESTS {
            must(&format!(
                "ip netns exec {} sh -c 'ip link set lo up && ip link set {ifn} address {mac} && ip addr add {ip}/24 dev {ifn} && ip link set {ifn} up'",
                self.ns(g),
                ifn = self.ifn(g)
            ));
        }
    }

    /// Interfaces of this run left in the switch's (the host's) namespace.
    fn host_leftovers(&self) -> String {
        let (_, out) = sh("ip -o link show");
        out.lines()
            .filter(|l| l.contains(&self.tag))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.switch.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
        for (g, _, _) in GUESTS {
            let _ = sh(&format!("ip link del {} 2>/dev/null", self.ifn(g)));
        }
        if std::env::var_os("VPCSWITCH_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Issue 22: SIGTERM and `kill -9`, each followed by an immediate restart with the same
/// configuration: the guests' TAPs (made by the switch inside their namespaces) stay
/// with their index, MAC and address, and pings every 10 ms resume; the gap is
/// measured. A reload that removes a port deletes its TAP; deleting the namespaces
/// deletes the rest, and nothing was ever left in the switch's namespace.
#[test]
fn tap_with_netns_survives_sigterm_and_kill_9_and_restart() {
    let _l = lock();
    let mut lab = Lab::new("vr");
    lab.add_ns("a");
    lab.add_ns("b");
    let cfg = lab.netns_ports();
    lab.start(&cfg);
    lab.guests_up();
    assert_eq!(lab.ping(3), 3, "pings before any restart\n{}", lab.log());
    assert_eq!(
        lab.host_leftovers(),
        "",
        "the TAPs are made in the guests' namespaces"
    );
    let before: Vec<String> = ["a", "b"]
        .iter()
        .map(|g| lab.guest_if(g).expect("guest interface").0)
        .collect();

    // a TCP flow across both restarts: it must survive them
    lab.spawn("b", "iperf3 -s -1 -p 5201", "iperf-s.txt");
    std::thread::sleep(Duration::from_millis(300));
    lab.spawn(
        "a",
        &format!("iperf3 -J -c {} -p 5201 -t 12 -b 200M", GUESTS[1].2),
        "iperf.txt",
    );
    for signal in ["TERM", "KILL"] {
        let out = format!("ping-{signal}.txt");
        lab.spawn(
            "a",
            &format!("ping -n -D -i 0.01 -w 5 {}", GUESTS[1].2),
            &out,
        );
        std::thread::sleep(Duration::from_millis(1500));
        lab.stop(signal);
        // the devices outlived the process: same index, MAC and address; no carrier
        for (k, g) in ["a", "b"].iter().enumerate() {
            let (now, link) = lab.guest_if(g).unwrap_or_else(|| {
                panic!(
                    "after SIG{signal} guest {g}'s interface is gone\n{}",
                    lab.log()
                )
            });
            assert_eq!(now, before[k], "after SIG{signal}: {link}");
            assert!(link.contains("NO-CARRIER"), "no switch holds it: {link}");
        }
        let t = Instant::now();
        lab.start(&cfg);
        let startup = t.elapsed().as_millis();
        lab.wait_last();
        let (gap, replies) = ping_gap_ms(&lab.read(&out));
        eprintln!("TAP with netns, SIG{signal} + restart: {replies} replies, longest gap {gap:.0} ms (of which {startup} ms from exit to the new switch's control socket)");
        assert!(
            replies > 200,
            "pings resumed\n{}\n{}",
            lab.read(&out),
            lab.log()
        );
        // typically 30-110 ms (the aim is 250 ms); the switch runs at the test's
        // priority, and on a loaded machine (a CI run, a `nice` test) outliers of over a
        // second were seen: the bound is for "traffic resumed", the print for the gap
        assert!(gap < 2500.0, "gap {gap:.0} ms\n{}", lab.log());
        for (k, g) in ["a", "b"].iter().enumerate() {
            let (now, link) = lab.guest_if(g).expect("guest interface");
            assert_eq!(now, before[k], "after the restart: {link}");
            assert!(!link.contains("NO-CARRIER"), "carrier back: {link}");
        }
        assert_eq!(lab.ping(3), 3, "after SIG{signal} + restart\n{}", lab.log());
        assert_eq!(
            lab.host_leftovers(),
            "",
            "no stand-in in the switch's namespace"
        );
    }
    // the TCP flow outlived both restarts
    std::thread::sleep(Duration::from_secs(4));
    let iperf = lab.read("iperf.txt");
    let v: serde_json::Value = serde_json::from_str(&iperf).unwrap_or_default();
    assert!(
        v["error"].is_null() && v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 0,
        "the TCP connection survives both restarts: {iperf}"
    );
    assert!(
        !lab.log()
            .contains("does not exist in the switch's network namespace"),
        "{}",
        lab.log()
    );

    // a reload that removes port b deletes its TAP (a removed port leaves nothing)
    let only_a = lab.config(&|g| {
        if g == "a" {
            format!(
                "{{ type = \"tap\", ifname = \"{}\", netns = \"{}\" }}",
                lab.ifn(g),
                lab.ns(g)
            )
        } else {
            String::new()
        }
    });
    std::fs::write(lab.cfg_path(), only_a).expect("config");
    let pid = lab.switch.as_ref().map(|c| c.id()).expect("running");
    must(&format!("kill -HUP {pid}"));
    let end = Instant::now() + Duration::from_secs(5);
    while lab.guest_if("b").is_some() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lab.guest_if("b").is_none(),
        "a removed port's TAP is deleted\n{}",
        lab.log()
    );
    assert!(lab.guest_if("a").is_some(), "the kept port's stays");

    // a stopped switch leaves its TAPs; deleting the namespaces deletes them
    lab.stop("TERM");
    assert!(
        lab.guest_if("a").is_some(),
        "a stopped switch leaves the TAP"
    );
    for ns in std::mem::take(&mut lab.namespaces) {
        must(&format!("ip netns del {ns}"));
    }
    assert_eq!(
        lab.host_leftovers(),
        "",
        "nothing left in the host namespace"
    );
}

/// Issue 22: a TAP port naming a namespace that does not exist: a clear error naming the
/// port, the namespace and its file, the exit status non-zero, and no stand-in device.
#[test]
fn tap_with_a_missing_netns_is_a_clear_error_and_a_failed_start() {
    let _l = lock();
    let lab = Lab::new("vm");
    let cfg = lab.config(&|g| {
        format!(
            "{{ type = \"tap\", ifname = \"{}\", netns = \"{}\" }}",
            lab.ifn(g),
            lab.ns(g)
        )
    });
    std::fs::write(lab.cfg_path(), cfg).expect("config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["run", "-c"])
        .arg(lab.cfg_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vpcswitch");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(s)) = c.try_wait() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let status = status.unwrap_or_else(|| panic!("the switch started anyway\n{err}"));
    assert!(!status.success(), "non-zero exit: {status:?}\n{err}");
    let want = format!(
        "port \"a\": network namespace {ns} not found (/var/run/netns/{ns}): create it with ip netns add {ns}, or remove netns",
        ns = lab.ns("a")
    );
    assert!(err.contains(&want), "want {want:?} in\n{err}");
    assert_eq!(lab.host_leftovers(), "", "no stand-in TAP in the host");
}

/// Issue 22: a TAP without `netns` that the switch has to create in its own namespace
/// (first start; or a restart after its guest end was moved away) is created as
/// documented, but said loudly: one WARN per port, naming the fix.
#[test]
fn tap_without_netns_created_by_the_switch_is_warned_once() {
    let _l = lock();
    let mut lab = Lab::new("vw");
    let cfg = lab.config(&|g| format!("{{ type = \"tap\", ifname = \"{}\" }}", lab.ifn(g)));
    lab.start(&cfg);
    // a reload reopening nothing new, then a stop
    let pid = lab.switch.as_ref().map(|c| c.id()).expect("running");
    must(&format!("kill -HUP {pid}"));
    std::thread::sleep(Duration::from_millis(300));
    lab.stop("TERM");
    let log = lab.log();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("needs netns"))
        .collect();
    assert_eq!(warns.len(), 2, "one WARN per port:\n{log}");
    for (g, _, _) in GUESTS {
        assert!(
            warns.iter().any(|l| l.contains(&format!("port={g} "))),
            "port {g}:\n{log}"
        );
    }
    // not persistent: gone with the switch
    assert_eq!(
        lab.host_leftovers(),
        "",
        "TAPs made without netns go with the switch"
    );
}
