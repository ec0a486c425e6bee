//! Issue 22, "stop is total" and the logs: the binary on a configuration without ports
//! (no root, no devices). docs/operations.md, "Stopping and exit codes" and "Logs", is
//! the contract checked here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vpcswitch");

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vpcswitch-stop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn config(sock: &Path, extra: &str) -> String {
    format!(
        r#"
[switch]
control_socket = "{}"
{extra}

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "s"
vpc = "a"
cidr = "10.0.1.0/24"
"#,
        sock.display()
    )
}

/// A switch running `d/switch.toml`, its stderr in `d/stderr.log` (a file, not a
/// terminal), started once its control socket is ready.
struct Sw {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Sw {
    fn start(tag: &str) -> Sw {
        Sw::start_with(tag, "", &[])
    }

    /// With `extra` lines in `[switch]` and `args` after `run -c FILE`.
    fn start_with(tag: &str, extra: &str, args: &[&str]) -> Sw {
        let dir = dir(tag);
        let sock = dir.join("ctl.sock");
        std::fs::write(dir.join("switch.toml"), config(&sock, extra)).expect("config");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("log");
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(dir.join("switch.toml"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("runs");
        let sw = Sw { child, dir, sock };
        let t0 = Instant::now();
        while !sw.log().contains("control socket ready") {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "not started: {}",
                sw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit status and how long the exit took (killed after `limit`).
    fn terminate(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        self.signal("-TERM");
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return (st.code(), t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new(BIN)
            .arg("ctl")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("ctl runs");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for Sw {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const STOP_LIMIT: Duration = Duration::from_secs(3);

/// Issue 22: the control socket file removed while the switch runs; SIGTERM still ends
/// it, at once and with status 0. Before the fix the stop path woke the accept thread by
/// connecting to that path, which no longer led to it: the process never exited.
#[test]
fn sigterm_ends_the_switch_when_its_control_socket_file_was_removed() {
    let mut sw = Sw::start("removed");
    std::fs::remove_file(&sw.sock).expect("remove the socket file");
    let (code, took) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0), "after {took:?}; log:\n{}", sw.log());
    assert!(took < STOP_LIMIT, "{took:?}");
}

/// Issue 22: the socket file replaced (by a plain file, and by another listening
/// socket) while the switch runs: SIGTERM still ends it within the bound, with status 0,
/// and the file now at that path, not the switch's, is left alone.
#[test]
fn sigterm_ends_the_switch_when_its_control_socket_file_was_replaced() {
    // a plain file
    let mut sw = Sw::start("replaced-file");
    std::fs::remove_file(&sw.sock).expect("remove");
    std::fs::write(&sw.sock, "someone else's").expect("replace");
    let (code, took) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0), "after {took:?}; log:\n{}", sw.log());
    assert_eq!(
        std::fs::read_to_string(&sw.sock).ok().as_deref(),
        Some("someone else's"),
        "the replacement was removed"
    );
    // another listening socket, which accepts (and is never connected to by the stop)
    let mut sw = Sw::start("replaced-socket");
    std::fs::remove_file(&sw.sock).expect("remove");
    let other = std::os::unix::net::UnixListener::bind(&sw.sock).expect("bind");
    other.set_nonblocking(true).expect("nonblocking");
    let (code, took) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0), "after {took:?}; log:\n{}", sw.log());
    assert!(sw.sock.exists(), "the other socket's file was removed");
    assert!(
        other.accept().is_err(),
        "the stop path connected to the other socket"
    );
}

/// Issue 22: a clean SIGTERM with no client connected logs no warning (before the fix:
/// `WARN control connections still open at stop`, every time, because the monitor
/// thread kept the switch), logs `stopped`, exits 0 and removes its socket file.
#[test]
fn a_clean_sigterm_logs_no_warning_and_exits_0() {
    let mut sw = Sw::start("clean");
    // a client that came and went
    let (code, _, _) = sw.ctl(&["stats"]);
    assert_eq!(code, 0);
    let (code, took) = sw.terminate(STOP_LIMIT);
    let log = sw.log();
    assert_eq!(code, Some(0), "after {took:?}; log:\n{log}");
    assert!(!log.contains("still open"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!sw.sock.exists(), "socket file left behind");
}

/// Issue 22: with the metrics server on and a client following `ctl drops` (a stream
/// that never ends by itself), SIGTERM still ends the switch within the bound, with
/// status 0 and no warning: the stream ends saying why, the metrics thread is woken.
/// Before the fix the stream and the metrics server kept the switch: "connections still
/// open at stop" was logged.
#[test]
fn sigterm_ends_streams_and_the_metrics_server() {
    let mut sw = Sw::start_with("streams", "metrics = \"127.0.0.1:0\"", &[]);
    let follow = Command::new(BIN)
        .arg("ctl")
        .arg("-s")
        .arg(&sw.sock)
        .args(["drops", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl runs");
    std::thread::sleep(Duration::from_millis(500));
    let (code, took) = sw.terminate(STOP_LIMIT);
    let log = sw.log();
    assert_eq!(code, Some(0), "after {took:?}; log:\n{log}");
    assert!(log.contains("metrics served"), "{log}");
    assert!(!log.contains("still open"), "{log}");
    let out = follow.wait_with_output().expect("ctl ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the switch is stopping"), "{err}");
}

/// Issue 22 / docs/operations.md "Logs": stderr that is not a terminal gets no ANSI
/// colour codes (before: ESC sequences around every level and field), and each event is
/// one line: a refused reload (SPEC 8.1: the running configuration stays), whose error
/// lists several problems, logs exactly one line (before: one line per problem).
#[test]
fn logs_to_a_file_have_no_colour_and_one_line_per_event() {
    let mut sw = Sw::start("logs");
    let cfg = sw.dir.join("switch.toml");
    let mut text = std::fs::read_to_string(&cfg).expect("read");
    text += "\n[[vips]]\nname = \"v\"\nsubnet = \"nowhere\"\nip = \"10.0.1.50\"\n";
    text += "\n[[vips]]\nname = \"w\"\nsubnet = \"elsewhere\"\nip = \"10.0.1.51\"\n";
    std::fs::write(&cfg, text).expect("write");
    sw.signal("-HUP");
    let t0 = Instant::now();
    while !sw.log().contains("reload refused") {
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", sw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0));
    let log = sw.log();
    assert!(
        !log.contains('\x1b'),
        "ESC in a log written to a file:\n{log:?}"
    );
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains("nowhere") && refused[0].contains("elsewhere"),
        "both problems on the one line: {}",
        refused[0]
    );
    // every line is an event: it starts with its timestamp
    for l in log.lines() {
        assert!(
            l.len() > 20 && l.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "a line that is not an event: {l:?}\n{log}"
        );
    }
}

/// Issue 22: `ctl --json` prints JSON on every outcome: a refused reload prints
/// `{"ok": false, "error": ...}` and exits 1 (before: the plain-text refusal on
/// stderr, nothing on stdout); a switch that cannot be reached, exit 2, also JSON.
#[test]
fn ctl_json_prints_json_on_a_refused_reload_and_other_failures() {
    let mut sw = Sw::start("json");
    let cfg = sw.dir.join("switch.toml");
    let text = std::fs::read_to_string(&cfg).expect("read")
        + "\n[[vips]]\nname = \"v\"\nsubnet = \"nowhere\"\nip = \"10.0.1.50\"\n";
    std::fs::write(&cfg, text).expect("write");
    let (code, out, _) = sw.ctl(&["--json", "reload"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("nowhere")),
        "{v}"
    );
    // an unknown command and a bad usage: JSON too (exit 2: ctl could not ask)
    let (code, out, _) = sw.ctl(&["--json", "frobnicate"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("frobnicate")),
        "{v}"
    );
    let (code, out, _) = sw.ctl(&["--json", "capture"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false, "{v}");
    // success is the data, as before
    let (code, out, _) = sw.ctl(&["--json", "stats"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(v.get("generation").is_some(), "{v}");
    let (code, _) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0));
    // no switch at all
    let (code, out, _) = sw.ctl(&["--json", "stats"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{v}"
    );
}

/// Issue 22: `--log-color always` colours a log going to a file (for `less -R`), `never`
/// keeps a terminal's log plain; `auto` (the default) is checked above.
#[test]
fn log_color_option_overrides_the_terminal_check() {
    let mut sw = Sw::start_with("color", "", &["--log-color", "always"]);
    let (code, _) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0));
    assert!(sw.log().contains('\x1b'), "{:?}", sw.log());
    let mut sw = Sw::start_with("nocolor", "", &["--log-color", "never"]);
    let (code, _) = sw.terminate(STOP_LIMIT);
    assert_eq!(code, Some(0));
    assert!(!sw.log().contains('\x1b'), "{:?}", sw.log());
}
