//! What the end-to-end tests share: shell helpers, one test at a time, CPU time of a
//! process, the ping-gap reader, the backend matrix, and the netns harnesses ([`net`]:
//! one switch; [`hosts`]: many, SPEC 10).
//! Each test file includes it (`mod common;`); items a file does not use are allowed
//! to go unused.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod hosts;
pub mod net;

#[path = "../../src/ping_gap.rs"]
pub mod ping_gap;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// The tests share two CPUs: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the one-at-a-time lock (a test that panicked before does not poison it).
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cmd` with `sh -c`: whether it succeeded, and its stdout then stderr.
pub fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    let mut s = String::from_utf8_lossy(&o.stdout).to_string();
    s += &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), s)
}

/// [`sh`] that must succeed (the test fails with the command and its output).
pub fn must(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "command failed: {cmd}\n{out}");
    out
}

/// Starts `vpcswitch run -c CFG`, its log appended to `log` (stdout discarded).
pub fn spawn_switch(cfg: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vpcswitch")
}

/// `vpcswitch ctl -s SOCKET reload` (not `--json`): its output, whatever the status.
pub fn ctl_reload(socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["ctl", "-s"])
        .arg(socket)
        .arg("reload")
        .output()
        .expect("ctl")
}

/// CPU time (user + system, all threads) of `pid` so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // fields after the command name, which ends with the last ')'
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    let hz: f64 = must("getconf CLK_TCK").trim().parse().expect("CLK_TCK");
    ticks as f64 / hz
}

/// The backend matrix of a scenario (as OPTE's xde-tests run one scenario over each
/// backend it applies to): one `#[test]` per named backend, each running `$suite` with
/// that [`net::Kind`].
macro_rules! over_backends {
    ($suite:ident { $($test:ident: $kind:ident),+ $(,)? }) => {
        $(
            #[test]
            fn $test() {
                $suite($crate::common::net::Kind::$kind);
            }
        )+
    };
}
