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

#[path = "../../src/control/pcapng.rs"]
pub mod pcapng;

/// The `ctl --json` answers' types (docs/ctl-json.md); unknown fields are refused here.
#[path = "../../src/control/schema.rs"]
pub mod schema;

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

/// The repository's root (the workspace), where `deploy/` lives.
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails the test, naming what is missing, when `promtool` (Debian `prometheus`,
/// installed by scripts/deps.sh) is not on the PATH.
pub fn require_promtool() {
    assert!(
        sh("command -v promtool").0,
        "promtool is missing (Debian package prometheus; scripts/deps.sh installs it)"
    );
}

/// The metric names (`vpcswitch_*`, `process_*`) the shipped alert rules and Grafana
/// dashboard (deploy/) read, each with the files that use it.
pub fn deploy_metric_names() -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in [
        "deploy/prometheus/vpcswitch.rules.yml",
        "deploy/grafana/vpcswitch.json",
    ] {
        let text = std::fs::read_to_string(repo_root().join(f))
            .unwrap_or_else(|e| panic!("cannot read {f}: {e}"));
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let starts = b[i..].starts_with(b"vpcswitch_") || b[i..].starts_with(b"process_");
            let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            if starts && boundary {
                let end = text[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(text.len(), |e| i + e);
                let entry = out.entry(text[i..end].to_string()).or_default();
                if !entry.iter().any(|x| x == f) {
                    entry.push(f.to_string());
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The metric families a scrape exposes (its `# TYPE` lines; a histogram's
/// `_bucket`/`_sum`/`_count` series count as its family too).
pub fn exposed_families(scrape: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for l in scrape.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                out.insert(name.to_string());
                if kind == "histogram" {
                    for s in ["_bucket", "_sum", "_count"] {
                        out.insert(format!("{name}{s}"));
                    }
                }
            }
        }
    }
    out
}
