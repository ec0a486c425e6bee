//! What the tunnel's root tests share: two network namespaces of the test's own joined
//! by a veth pair (the underlay), run-in-a-namespace, and waiting for datagrams.
//! Everything a test makes is removed when its [`Underlay`] is dropped, also when the
//! test fails (processes killed by PID, then the namespaces deleted, which deletes
//! their devices). Traffic stays inside the namespaces.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vpcswitch_backend::sys::Epoll;
use vpcswitch_tunnel::{Tunnel, TunnelConfig, VXLAN_PORT};

/// Runs a shell command; whether it succeeded.
pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a shell command that must succeed: the test fails with the command and its
/// output otherwise.
pub fn must(cmd: &str) -> String {
    let o = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh runs");
    let mut s = String::from_utf8_lossy(&o.stdout).to_string();
    s += &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "command failed: {cmd}\n{s}");
    s
}

/// Fails the test, saying why, unless it runs as root with `ip` (iproute2) at hand.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, veth pairs, a raw IPv4 socket)"
    );
    require_tool("ip", "iproute2");
}

/// Fails the test unless `tool` is on the PATH, naming the Debian package that has it.
pub fn require_tool(tool: &str, package: &str) {
    assert!(
        sh(&format!("command -v {tool} >/dev/null 2>&1")),
        "this test needs {tool} (Debian package {package}; scripts/deps.sh installs it)"
    );
}

/// Two namespaces `a` and `b` joined by veth `veth_a` (in `a`, `ip_a`/24) and `veth_b`
/// (in `b`, `ip_b`/24), MTU 1500, both up with their loopbacks.
pub struct Underlay {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
    pub procs: Vec<Child>,
    pub files: Vec<PathBuf>,
}

impl Underlay {
    /// Makes the namespaces and the pair; `tag` (a few letters) keeps the names of
    /// concurrent tests apart.
    pub fn new(tag: &str) -> Underlay {
        require_root();
        let id = std::process::id() % 100_000;
        let u = Underlay {
            a: format!("vtun-{tag}-a-{id}"),
            b: format!("vtun-{tag}-b-{id}"),
            veth_a: format!("vt{tag}a{id}"),
            veth_b: format!("vt{tag}b{id}"),
            ip_a: Ipv4Addr::new(10, 213, 0, 1),
            ip_b: Ipv4Addr::new(10, 213, 0, 2),
            procs: Vec::new(),
            files: Vec::new(),
        };
        // left over by a killed run of the same pid: gone first
        sh(&format!("ip netns del {} 2>/dev/null", u.a));
        sh(&format!("ip netns del {} 2>/dev/null", u.b));
        must(&format!("ip netns add {}", u.a));
        must(&format!("ip netns add {}", u.b));
        must(&format!(
            "ip link add {} netns {} mtu 1500 type veth peer name {} netns {} mtu 1500",
            u.veth_a, u.a, u.veth_b, u.b
        ));
        for (ns, dev, ip) in [(&u.a, &u.veth_a, u.ip_a), (&u.b, &u.veth_b, u.ip_b)] {
            must(&format!("ip -n {ns} addr add {ip}/24 dev {dev}"));
            must(&format!("ip -n {ns} link set {dev} up"));
            must(&format!("ip -n {ns} link set lo up"));
        }
        u
    }

    /// The namespace's file, for `setns`.
    pub fn path(ns: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{ns}"))
    }

    /// Runs `f` on a thread of its own inside namespace `ns` (sockets it opens belong
    /// there for their life) and returns what it returned.
    pub fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = Self::path(ns);
        std::thread::scope(|s| {
            s.spawn(|| vpcswitch_tap::sys::in_netns(&path, f).expect("enter the namespace"))
                .join()
                .expect("thread in the namespace")
        })
    }

    /// Our tunnel in `a` and in `b`, each on its endpoint and the VXLAN port.
    pub fn open_pair(&self) -> (Tunnel, Tunnel) {
        let ta = self
            .in_ns(&self.a, || {
                Tunnel::open(TunnelConfig::new(self.ip_a, VXLAN_PORT))
            })
            .expect("our tunnel in namespace a");
        let tb = self
            .in_ns(&self.b, || {
                Tunnel::open(TunnelConfig::new(self.ip_b, VXLAN_PORT))
            })
            .expect("our tunnel in namespace b");
        (ta, tb)
    }

    /// `a`'s and `b`'s endpoints on the VXLAN port.
    pub fn endpoints(&self) -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(self.ip_a, VXLAN_PORT),
            SocketAddrV4::new(self.ip_b, VXLAN_PORT),
        )
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        sh(&format!("ip netns del {} 2>/dev/null", self.a));
        sh(&format!("ip netns del {} 2>/dev/null", self.b));
    }
}

/// One datagram as a test keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Got {
    pub from: SocketAddrV4,
    pub vni: u32,
    pub frame: Vec<u8>,
}

/// Receives until `want` datagrams came or 5 s passed, sleeping on the tunnel's
/// descriptor in an epoll set between bursts (so it also shows the descriptor becomes
/// readable).
pub fn recv_n(t: &mut Tunnel, want: usize) -> Vec<Got> {
    let ep = Epoll::new().expect("epoll");
    ep.add(t.poll_fd(), 1).expect("add the tunnel's descriptor");
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < end {
        got.extend(t.recv_burst().map(|d| Got {
            from: d.from,
            vni: d.vni,
            frame: d.frame.to_vec(),
        }));
        if got.len() < want {
            ep.wait(100).expect("epoll_wait");
        }
    }
    got
}

/// Receives until `pred` holds for a datagram or 5 s passed; every datagram seen.
pub fn recv_until(t: &mut Tunnel, mut pred: impl FnMut(&Got) -> bool) -> Vec<Got> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < end {
        let before = got.len();
        got.extend(recv_n(t, 1));
        if got[before..].iter().any(&mut pred) {
            break;
        }
    }
    got
}
