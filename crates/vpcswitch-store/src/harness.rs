//! Test harness (feature `harness`): a real etcd cluster for the store's tests and the
//! fleet suites (SPEC 11.5: "tests start a 3-member etcd cluster on loopback ports").
//!
//! # Contract
//! [`EtcdCluster::start`] runs `n` members of the Debian `etcd-server` binary (`etcd`,
//! found on `PATH` or in `/usr/bin`) on free loopback ports, each with its data in a
//! temporary directory and its stdout and stderr appended to its own log file there, and
//! returns once every member answers `/health` with `true` (a leader is elected and a
//! quorum read works). [`EtcdCluster::start_in`] does the same inside an existing
//! network namespace, on one of its addresses (the fleet suites: the switches run in
//! their hosts' namespaces and reach the store over the underlay).
//!
//! Members can be killed ([`EtcdCluster::kill`], SIGKILL: a crash) and restarted on the
//! same ports and data ([`EtcdCluster::restart`]). On drop every member still running is
//! killed by its PID (never by name); the directory is removed, unless the thread is
//! panicking (a failed test), when it is kept and its path printed with the logs.
//!
//! A missing `etcd` binary is a test failure naming the package, never a skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package that has the `etcd` binary.
pub const ETCD_PACKAGE: &str = "etcd-server";

/// Where the `etcd` binary is; panics naming the package when it is missing.
pub fn etcd_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the etcd binary is missing: install the Debian package `{ETCD_PACKAGE}` \
                 (scripts/deps.sh installs it: `bash scripts/test.sh` as root)"
            )
        })
}

/// A free TCP port for a member to listen on, below the kernel's ephemeral range.
///
/// A port in the ephemeral range (`net.ipv4.ip_local_port_range`) can be taken as the
/// *source* port of any outgoing connection between the moment it is picked and the
/// moment the member binds it: the other members, already started, connect out to their
/// peers (CI saw `bind: address already in use` that way). Ports below the range are
/// never handed out as source ports, so only a listener can hold one, and the pick is
/// checked against listeners of this namespace. Picks spread by PID and time so parallel
/// test processes do not race for the same numbers.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&l| l > BASE + 1_000 && l <= 65_535)
        .unwrap_or(32_768);
    let span = low - BASE;
    let seed = std::process::id().wrapping_mul(7_919).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    for _ in 0..1_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = BASE + seed.wrapping_add(n.wrapping_mul(4_099)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster. See the module docs.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    /// the network namespace the members run in (`None`: the test's own)
    netns: Option<String>,
    /// the address every member listens on
    ip: String,
    initial_cluster: String,
    token: String,
}

impl EtcdCluster {
    /// `n` members on loopback ports; returns when all are healthy (panics after 30 s
    /// with their logs).
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_in(None, "127.0.0.1", n)
    }

    /// `n` members in network namespace `netns` (an `ip netns` name; `None`: this one),
    /// listening on address `ip` of it.
    ///
    /// A member that cannot bind its ports (another process took one in between) makes
    /// the whole cluster start again on new ports, up to three times.
    pub fn start_in(netns: Option<&str>, ip: &str, n: usize) -> EtcdCluster {
        let mut attempt = 1;
        loop {
            match Self::try_start_in(netns, ip, n) {
                Ok(c) => return c,
                Err(b) if attempt < 3 && b.0.logs().contains("address already in use") => {
                    let (c, e) = *b;
                    eprintln!("etcd cluster: a port was taken ({e}); again on new ports");
                    drop(c);
                    attempt += 1;
                }
                Err(b) => panic!(
                    "etcd cluster did not become healthy: {}\n{}",
                    b.1,
                    b.0.logs()
                ),
            }
        }
    }

    fn try_start_in(
        netns: Option<&str>,
        ip: &str,
        n: usize,
    ) -> Result<EtcdCluster, Box<(EtcdCluster, String)>> {
        etcd_binary();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let token = format!("vpcswitch-etcd-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&token);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("etcd test directory");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data: dir.join(format!("m{i}.data")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{ip}:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members,
            dir,
            netns: netns.map(String::from),
            ip: ip.to_string(),
            initial_cluster,
            token,
        };
        for i in 0..n {
            c.spawn(i);
        }
        match c.wait_healthy_or_exited(Duration::from_secs(30)) {
            Ok(()) => Ok(c),
            Err(e) => {
                c.kill_all();
                Err(Box::new((c, e)))
            }
        }
    }

    /// [`EtcdCluster::wait_healthy`], but gives up at once when a member has exited (it
    /// could not bind, or its data is bad).
    fn wait_healthy_or_exited(&mut self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            let mut exited: Vec<String> = Vec::new();
            for i in 0..self.members.len() {
                if self.members[i].child.is_some() && !self.running(i) {
                    exited.push(self.members[i].name.clone());
                }
            }
            if !exited.is_empty() {
                return Err(format!("members exited while starting: {exited:?}"));
            }
            if self.wait_healthy(Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > end {
                return self.wait_healthy(Duration::ZERO);
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let bin = etcd_binary();
        let ip = self.ip.clone();
        let m = &self.members[i];
        assert!(m.child.is_none(), "member {} runs already", m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let client = format!("http://{ip}:{}", m.client_port);
        let peer = format!("http://{ip}:{}", m.peer_port);
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the command: the child's PID is etcd's
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // fast elections on loopback (defaults: 100 ms / 1000 ms)
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // a whole network in one transaction (docs/store.md, "Limits")
            .args(["--max-txn-ops", "16384", "--max-request-bytes", "33554432"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (Debian package `{ETCD_PACKAGE}`): {e}",
                bin.display()
            )
        });
        self.members[i].child = Some(child);
    }

    /// The client URLs of every member (`http://IP:PORT`), killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}:{}", self.ip, m.client_port))
            .collect()
    }

    /// [`EtcdCluster::endpoints`] joined with commas (`--etcd URL,URL,...`).
    pub fn urls(&self) -> String {
        self.endpoints().join(",")
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a cluster has members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Is member `i` running (not killed, not exited)?
    pub fn running(&mut self, i: usize) -> bool {
        self.members[i]
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills member `i` by its PID (SIGKILL: a crash) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Restarts member `i` on its ports and data (it rejoins the cluster); does not
    /// wait for health.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Restarts every killed member and waits until all are healthy.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if !self.running(i) {
                self.kill(i);
                self.spawn(i);
            }
        }
        if let Err(e) = self.wait_healthy(Duration::from_secs(30)) {
            panic!("etcd cluster did not come back: {e}\n{}", self.logs());
        }
    }

    /// Does member `i` answer `/health` with `"health":"true"`?
    pub fn healthy(&self, i: usize) -> bool {
        let url = format!("{}/health", self.endpoints()[i]);
        let body = match &self.netns {
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "curl", "-s", "--max-time", "1", &url])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default(),
            None => http_get(&self.ip, self.members[i].client_port, "/health"),
        };
        body.contains("\"health\":\"true\"")
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            let sick: Vec<&str> = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some() && !self.healthy(i))
                .map(|i| self.members[i].name.as_str())
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!("members not healthy after {timeout:?}: {sick:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                // the last lines say why; the whole file stays in the directory
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "--- etcd {} ({}):\n{}\n",
                    m.name,
                    m.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A plain HTTP/1.0 GET (loopback health checks without a client library).
fn http_get(ip: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(addr) = format!("{ip}:{port}").parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .is_err()
    {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            eprintln!(
                "etcd data and logs kept in {}\n{}",
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
