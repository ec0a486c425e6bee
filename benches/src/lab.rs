//! The network-namespace lab of the side-by-side harnesses (`vpcswitch-bench`,
//! `vpcswitch-overlay-bench`): shell helpers, a [`Lab`] that removes what it made
//! (processes by PID, namespaces, links, its directory) when dropped, and the
//! measurements both make between two guests: TCP with iperf3 ([`tcp`]), 64-byte UDP
//! packets per second with `vpcswitch-udpgen` ([`udp_kpps`]), ping RTTs ([`pings`]) and
//! the CPU time of processes ([`cpu_secs`], [`with_cpu`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::quantile;

/// Prints `msg` after the program's name and exits with status 2.
pub fn die(msg: &str) -> ! {
    let prog = std::env::args()
        .next()
        .and_then(|p| {
            Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    eprintln!("{prog}: {msg}");
    std::process::exit(2)
}

/// Set by SIGINT or SIGTERM once [`catch_signals`] ran.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// From now on SIGINT and SIGTERM do not kill the harness at once: they set a flag
/// ([`interrupted`]) that the harness checks between measurements, so that what it
/// built is removed (its [`Lab`]s are dropped) before it exits.
///
/// # Errors
/// The handlers cannot be installed.
pub fn catch_signals() -> Result<(), String> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM came (see [`catch_signals`]).
pub fn interrupted() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// `Err("interrupted")` once SIGINT or SIGTERM came, for `?` between measurements.
///
/// # Errors
/// A signal came.
pub fn check_interrupted() -> Result<(), String> {
    if interrupted() {
        Err("interrupted (SIGINT or SIGTERM)".into())
    } else {
        Ok(())
    }
}

/// The command line of a harness: flags and `--name value` options.
#[derive(Debug, Clone)]
pub struct Args(Vec<String>);

impl Args {
    /// This process's arguments; [`die`]s on one that is neither in `flags` nor in
    /// `valued` (options followed by a value).
    pub fn parse(flags: &[&str], valued: &[&str]) -> Args {
        Args::from(std::env::args().skip(1).collect(), flags, valued).unwrap_or_else(|e| die(&e))
    }

    /// [`Args::parse`] of `args`.
    ///
    /// # Errors
    /// An unknown argument, or an option without its value.
    pub fn from(args: Vec<String>, flags: &[&str], valued: &[&str]) -> Result<Args, String> {
        let mut i = 0;
        while let Some(a) = args.get(i) {
            if valued.contains(&a.as_str()) {
                if args.get(i + 1).is_none() {
                    return Err(format!("{a} needs a value"));
                }
                i += 2;
                continue;
            }
            if !flags.contains(&a.as_str()) {
                return Err(format!("unknown argument {a:?} (--help for usage)"));
            }
            i += 1;
        }
        Ok(Args(args))
    }

    /// Whether flag `f` is given.
    pub fn flag(&self, f: &str) -> bool {
        self.0.iter().any(|a| a == f)
    }

    /// The value of option `f`, if given.
    pub fn value(&self, f: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == f)?;
        self.0.get(i + 1).cloned()
    }

    /// `--runs` (at least 1) and `--secs` (1..=60), `runs` and `secs` when not given;
    /// [`die`]s on others.
    pub fn runs_secs(&self, runs: usize, secs: u64) -> (usize, u64) {
        let runs: usize = self
            .value("--runs")
            .map_or(Some(runs), |v| v.parse().ok())
            .unwrap_or_else(|| die("--runs: a number"));
        let secs: u64 = self
            .value("--secs")
            .map_or(Some(secs), |v| v.parse().ok())
            .unwrap_or_else(|| die("--secs: a number"));
        if runs == 0 || !(1..=60).contains(&secs) {
            die("--runs must be at least 1 and --secs 1..60");
        }
        (runs, secs)
    }

    /// The contenders named by `--only` (comma-separated), or all of `all`; [`die`]s on
    /// a name that is none of them.
    pub fn only<T: Copy>(&self, all: &[T], name: impl Fn(T) -> &'static str) -> Vec<T> {
        match self.value("--only") {
            Some(list) => list
                .split(',')
                .map(|n| {
                    all.iter()
                        .copied()
                        .find(|c| name(*c) == n)
                        .unwrap_or_else(|| die(&format!("no contender {n}")))
                })
                .collect(),
            None => all.to_vec(),
        }
    }
}

/// Runs a shell command; its stdout, or an error with its stderr.
///
/// # Errors
/// The command cannot be started or exits with a failure.
pub fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a shell command, ignoring its output and its outcome (cleanup).
pub fn quiet(cmd: &str) {
    let _ = sh(&format!("{cmd} >/dev/null 2>&1"));
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    sh(&format!("command -v {tool}")).is_ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    sh("id -u").is_ok_and(|u| u.trim() == "0")
}

/// Waits up to 10 s for `path` to exist.
///
/// # Errors
/// It did not appear in time.
pub fn wait_for(path: &str) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    while !Path::new(path).exists() {
        if Instant::now() > end {
            return Err(format!("{path} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The number at `path` in JSON `text`.
pub fn json_f64(text: &str, path: &[&str]) -> Option<f64> {
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    for p in path {
        v = v.get(*p)?.clone();
    }
    v.as_f64()
}

/// CPU time used so far by process `pid` (all its threads, user and system), seconds.
///
/// # Errors
/// `/proc/PID/stat` cannot be read or parsed.
pub fn cpu_secs(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // the fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(user), Some(system)) = (tick(11), tick(12)) else {
        return Err(format!("/proc/{pid}/stat: no utime/stime: {stat}"));
    };
    Ok((user + system) as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    sh("getconf CLK_TCK")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What `f` returns and the CPU the processes `pids` used meanwhile, together, % of one
/// core (`None` for no process).
///
/// # Errors
/// `f` failed, or a process's CPU time cannot be read.
pub fn with_cpu<T>(
    pids: &[u32],
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Option<f64>), String> {
    let total = || -> Result<f64, String> { pids.iter().map(|p| cpu_secs(*p)).sum() };
    let before = total()?;
    let start = Instant::now();
    let r = f()?;
    let el = start.elapsed().as_secs_f64();
    let after = total()?;
    Ok((
        r,
        (!pids.is_empty()).then(|| 100.0 * (after - before) / el.max(1e-3)),
    ))
}

/// Busy CPU time of the whole machine so far (every CPU: user, nice, system, irq and
/// softirq from `/proc/stat`; idle, iowait and steal left out), seconds.
///
/// # Errors
/// `/proc/stat` cannot be read or parsed.
pub fn machine_busy_secs() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    busy_ticks(&stat)
        .map(|t| t as f64 / clock_ticks())
        .ok_or_else(|| "/proc/stat: no cpu line".to_string())
}

/// The busy ticks of `/proc/stat`'s first (`cpu`) line: user, nice, system, irq,
/// softirq.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?)
}

/// What `f` returns and the machine's busy CPU meanwhile ([`machine_busy_secs`]), % of
/// one core (up to 100 × CPUs).
///
/// # Errors
/// `f` failed, or `/proc/stat` cannot be read.
pub fn with_machine_cpu<T>(f: impl FnOnce() -> Result<T, String>) -> Result<(T, f64), String> {
    let before = machine_busy_secs()?;
    let start = Instant::now();
    let r = f()?;
    let el = start.elapsed().as_secs_f64();
    let after = machine_busy_secs()?;
    Ok((r, 100.0 * (after - before) / el.max(1e-3)))
}

/// The machine, for the tables: CPUs, their model, the kernel.
pub fn machine() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
        .unwrap_or_default()
        .trim()
        .to_string();
    let kernel = sh("uname -r").unwrap_or_default().trim().to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} CPUs ({cpu}), Linux {kernel}")
}

/// Everything a measurement made, removed on drop: processes (killed by PID: SIGTERM,
/// then SIGKILL after 3 s), network namespaces, links of the root namespace, and its
/// directory.
#[derive(Debug)]
pub struct Lab {
    /// scratch directory: configuration files, logs, program outputs
    pub dir: PathBuf,
    /// processes to kill
    pub procs: Vec<Child>,
    /// links of the root namespace to delete
    pub links: Vec<String>,
    /// namespaces to delete
    pub netns: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            quiet(&format!("kill {}", p.id()));
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = p.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
        for n in &self.netns {
            quiet(&format!("ip netns del {n}"));
        }
        for l in &self.links {
            quiet(&format!("ip link del {l}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// A lab with a fresh directory `dir` (emptied if it exists).
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn new(dir: PathBuf) -> Result<Lab, String> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Lab {
            dir,
            procs: vec![],
            links: vec![],
            netns: vec![],
        })
    }

    /// Creates network namespace `ns`, deleted with the lab.
    ///
    /// # Errors
    /// `ip netns add` failed.
    pub fn add_netns(&mut self, ns: &str) -> Result<(), String> {
        sh(&format!("ip netns add {ns}"))?;
        self.netns.push(ns.to_string());
        Ok(())
    }

    /// Starts `cmd` (split on spaces, no shell) in namespace `ns`, its stdout and stderr
    /// into `out` in the lab's directory; killed by PID with the lab.
    ///
    /// # Errors
    /// The output file or the process cannot be made.
    pub fn spawn(&mut self, ns: &str, cmd: &str, out: &str) -> Result<u32, String> {
        let f = std::fs::File::create(self.dir.join(out)).map_err(|e| e.to_string())?;
        let err = f.try_clone().map_err(|e| e.to_string())?;
        // `ip netns exec` execs the command: the child's PID is the command's
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd.split_whitespace())
            .stdout(f)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{cmd}: {e}"))?;
        let pid = child.id();
        self.procs.push(child);
        Ok(pid)
    }

    /// Starts `cmd` (split on spaces, no shell) in this namespace, output discarded;
    /// killed by PID with the lab.
    ///
    /// # Errors
    /// The process cannot be started.
    pub fn daemon(&mut self, cmd: &str) -> Result<u32, String> {
        let mut words = cmd.split_whitespace();
        let child = Command::new(words.next().unwrap_or("true"))
            .args(words)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{cmd}: {e}"))?;
        let pid = child.id();
        self.procs.push(child);
        Ok(pid)
    }

    /// Waits up to `secs` for the process `pid` started by the lab to end.
    ///
    /// # Errors
    /// No such process of the lab's, or it still runs after `secs`.
    pub fn wait(&mut self, pid: u32, secs: u64) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(secs);
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.id() == pid)
            .ok_or_else(|| format!("no process {pid}"))?;
        while !matches!(p.try_wait(), Ok(Some(_))) {
            if Instant::now() > end {
                return Err(format!("process {pid} did not end in {secs} s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the process `pid` started by the lab has ended.
    pub fn ended(&mut self, pid: u32) -> bool {
        self.procs
            .iter_mut()
            .find(|p| p.id() == pid)
            .is_none_or(|p| matches!(p.try_wait(), Ok(Some(_))))
    }

    /// The text of file `f` in the lab's directory ("" when missing).
    pub fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
    }
}

/// A guest of a measurement: its namespace, address, MAC (of `eth0`) and the CPUs its
/// programs run on (`taskset -c`).
#[derive(Debug, Clone)]
pub struct Guest {
    /// network namespace
    pub ns: String,
    /// IPv4 address of its `eth0`
    pub ip: &'static str,
    /// MAC of its `eth0`
    pub mac: &'static str,
    /// `taskset -c` list of its programs
    pub cpus: &'static str,
}

impl Guest {
    /// Runs shell command `cmd` in the guest's namespace: its stdout.
    ///
    /// # Errors
    /// It failed.
    pub fn exec(&self, cmd: &str) -> Result<String, String> {
        sh(&format!("ip netns exec {} {cmd}", self.ns))
    }

    /// A counter of `eth0`'s `/sys/class/net/eth0/statistics/`.
    ///
    /// # Errors
    /// It cannot be read.
    pub fn counter(&self, name: &str) -> Result<u64, String> {
        link_counter(&self.ns, "eth0", name)
    }
}

/// Counter `name` of `/sys/class/net/IFNAME/statistics/` in namespace `ns`.
///
/// # Errors
/// It cannot be read.
pub fn link_counter(ns: &str, ifname: &str, name: &str) -> Result<u64, String> {
    sh(&format!(
        "ip netns exec {ns} cat /sys/class/net/{ifname}/statistics/{name}"
    ))?
    .trim()
    .parse()
    .map_err(|e| format!("{ns} {ifname} {name}: {e}"))
}

/// TCP throughput from `client` to `server` with iperf3, `flows` parallel flows for
/// `secs` (server on port 5301, its pid file in `dir`): Gbit/s received.
///
/// # Errors
/// iperf3 failed or gave no result.
pub fn tcp(
    dir: &Path,
    server: &Guest,
    client: &Guest,
    flows: u32,
    secs: u64,
) -> Result<f64, String> {
    let out = iperf3(dir, server, client, flows, secs)?;
    gbps(&out)
}

/// [`tcp`]'s iperf3 run: the client's JSON report.
///
/// # Errors
/// iperf3 failed.
pub fn iperf3(
    dir: &Path,
    server: &Guest,
    client: &Guest,
    flows: u32,
    secs: u64,
) -> Result<String, String> {
    let pid = dir.join("iperf.pid");
    server.exec(&format!(
        "taskset -c {} iperf3 -s -D -1 -p 5301 --pidfile {}",
        server.cpus,
        pid.display()
    ))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = client.exec(&format!(
        "timeout {} taskset -c {} iperf3 -J -c {} -p 5301 -P {flows} -t {secs}",
        secs + 10,
        client.cpus,
        server.ip
    ));
    if let Ok(p) = std::fs::read_to_string(&pid) {
        quiet(&format!("kill {}", p.trim()));
    }
    out
}

/// The received throughput of an iperf3 JSON report, Gbit/s.
///
/// # Errors
/// The report has none.
pub fn gbps(report: &str) -> Result<f64, String> {
    json_f64(report, &["end", "sum_received", "bits_per_second"])
        .map(|b| b / 1e9)
        .ok_or_else(|| "iperf3 gave no result".to_string())
}

/// 64-byte UDP frames from `src` to `dst` (port 9) for `secs`: `gen`
/// (`vpcswitch-udpgen`) writes prebuilt frames to `src`'s `eth0` with `sendmmsg` on an
/// AF_PACKET socket; counted at `dst`'s `eth0` (`rx_packets`): thousands per second.
///
/// # Errors
/// The generator or a counter failed.
pub fn udp_kpps(src: &Guest, dst: &Guest, secs: u64, gen: &Path) -> Result<f64, String> {
    let before = dst.counter("rx_packets")?;
    let start = Instant::now();
    src.exec(&format!(
        "taskset -c {} {} {}:9 --secs {secs} --raw eth0 --src-ip {} --dst-mac {}",
        src.cpus,
        gen.display(),
        dst.ip,
        src.ip,
        dst.mac
    ))?;
    let el = start.elapsed().as_secs_f64();
    let after = dst.counter("rx_packets")?;
    Ok(after.saturating_sub(before) as f64 / el / 1e3)
}

/// RTT from `src` to `dst`: `count` pings `interval_ms` apart on `src`'s CPUs (with
/// `realtime`, at SCHED_FIFO priority, so a generator on the same CPU does not delay
/// it): (median µs, p99 µs, % lost).
///
/// # Errors
/// ping failed, or no reply came.
pub fn pings(
    src: &Guest,
    dst: &Guest,
    interval_ms: u32,
    count: u64,
    realtime: bool,
) -> Result<(f64, f64, f64), String> {
    let rt = if realtime { "chrt -f 50 " } else { "" };
    let interval = f64::from(interval_ms) / 1000.0;
    let out = src.exec(&format!(
        "taskset -c {} {rt}ping -n -i {interval} -c {count} -W 1 {}",
        src.cpus, dst.ip
    ))?;
    let mut v = ping_rtts_us(&out);
    if v.is_empty() {
        return Err("no ping replies".into());
    }
    let lost = 100.0 * (1.0 - v.len() as f64 / count as f64);
    v.sort_by(f64::total_cmp);
    let q = |p: f64| quantile(&v, p).unwrap_or_default();
    Ok((q(0.5), q(0.99), lost.max(0.0)))
}

/// The RTTs of ping's output (its `time=` fields), µs.
pub fn ping_rtts_us(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok())
        .map(|ms: f64| ms * 1000.0)
        .collect()
}

/// Waits up to `secs` until `src` gets an answer to one ping of `dst`.
///
/// # Errors
/// None came.
pub fn wait_ping(src: &Guest, dst: &Guest, secs: u64) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(secs);
    while src.exec(&format!("ping -c 1 -W 1 {}", dst.ip)).is_err() {
        if Instant::now() > end {
            return Err(format!("{} cannot ping {} ({secs} s)", src.ip, dst.ip));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_know_their_flags_and_values() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let a = Args::from(
            v("--smoke --runs 2 --only x,y"),
            &["--smoke"],
            &["--runs", "--only"],
        )
        .unwrap();
        assert!(a.flag("--smoke") && !a.flag("--runs2"));
        assert_eq!(a.value("--runs").as_deref(), Some("2"));
        assert_eq!(a.value("--secs"), None);
        assert_eq!(a.runs_secs(5, 7), (2, 7));
        assert_eq!(
            a.only(&[1u8, 2, 3], |c| ["", "x", "y", "z"][c as usize]),
            vec![1, 2]
        );
        assert!(Args::from(v("--bogus"), &["--smoke"], &[]).is_err());
        assert!(Args::from(v("--runs"), &[], &["--runs"]).is_err());
    }

    #[test]
    fn cpu_secs_reads_this_process() {
        // this test's own process has used some CPU, and it only grows
        let a = cpu_secs(std::process::id()).unwrap();
        let end = Instant::now() + Duration::from_millis(50);
        while Instant::now() < end {}
        let b = cpu_secs(std::process::id()).unwrap();
        assert!(b >= a && b > 0.0, "{a} {b}");
    }

    #[test]
    fn with_cpu_sums_processes_and_is_none_for_none() {
        let me = std::process::id();
        let spin = || {
            let end = Instant::now() + Duration::from_millis(100);
            while Instant::now() < end {}
            Ok(())
        };
        let ((), none) = with_cpu(&[], spin).unwrap();
        assert_eq!(none, None);
        // this process counted twice: about twice the spinning thread's share
        let ((), two) = with_cpu(&[me, me], spin).unwrap();
        assert!(two.is_some_and(|c| c > 0.0), "{two:?}");
        assert!(with_cpu(&[u32::MAX], spin).is_err());
    }

    #[test]
    fn busy_ticks_leaves_out_idle_iowait_and_steal() {
        let stat = "cpu  10 1 20 1000 50 3 4 70 0 0\ncpu0 5 0 10 500 25 1 2 35 0 0\n";
        assert_eq!(busy_ticks(stat), Some(10 + 1 + 20 + 3 + 4));
        assert_eq!(busy_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(busy_ticks("cpu  1 2 x 4 5 6 7\n"), None);
        assert!(machine_busy_secs().unwrap() > 0.0);
    }

    #[test]
    fn ping_rtts_read_the_replies_only() {
        let out = "PING 10.9.0.12 (10.9.0.12) 56(84) bytes of data.\n\
                   64 bytes from 10.9.0.12: icmp_seq=1 ttl=64 time=0.052 ms\n\
                   64 bytes from 10.9.0.12: icmp_seq=2 ttl=64 time=1.50 ms\n\
                   --- 10.9.0.12 ping statistics ---\n\
                   rtt min/avg/max/mdev = 0.052/0.776/1.500/0.724 ms\n";
        assert_eq!(ping_rtts_us(out), vec![52.0, 1500.0]);
    }
}
