//! AF_XDP modes: the XDP program is gone after a stop and after kill -9; mode "auto"
//! falls back to AF_PACKET.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::net::require;
use common::net::xdp_prog;
use common::{lock, must, sh};

#[test]
fn af_xdp_modes_the_program_is_gone_after_stop_and_kill_9_and_auto_falls_back() {
    let _l = lock();
    require();
    let tag = format!("vx{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("vpcswitch-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // two queues, one per worker; and a one-queue veth that AF_XDP cannot serve
    must(&format!(
        "ip link add {tag}a numrxqueues 2 numtxqueues 2 type veth peer name {tag}b numrxqueues 2 numtxqueues 2"
    ));
    must(&format!("ip link add {tag}c type veth peer name {tag}d"));
    let sock = dir.join("ctl.sock");
    let cfg = |ifn: &str, mode: &str| {
        format!(
            "[switch]\nworkers = 2\ncontrol_socket = \"{}\"\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.5.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.5.1.0/24\"\n[[ports]]\nname = \"p\"\nsubnet = \"s\"\nmac = \"02:00:00:00:05:01\"\nips = [\"10.5.1.11\"]\nbackend = {{ type = \"af_xdp\", ifname = \"{ifn}\", mode = \"{mode}\" }}\n",
            sock.display()
        )
    };
    let path = dir.join("switch.toml");
    let run = |ifn: &str, mode: &str| {
        let _ = std::fs::remove_file(&sock);
        std::fs::write(&path, cfg(ifn, mode)).expect("config");
        let c = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    };
    let backend = || {
        let out = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
            .args(["ctl", "--json", "-s"])
            .arg(&sock)
            .arg("ports")
            .output()
            .expect("ctl");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v[0]["backend"]["description"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let a = format!("{tag}a");
    let mut seen = vec![];
    // a veth has no zero-copy: refused at start, with the reason
    let out = run(&a, "zerocopy").wait_with_output().expect("exit");
    let zc_err = String::from_utf8_lossy(&out.stderr).to_string();
    seen.push(("zerocopy exit", format!("{:?}", out.status.code())));
    // generic mode, stopped gracefully
    let sw = run(&a, "skb");
    let skb_backend = backend();
    let skb_prog = xdp_prog(&a);
    let _ = sh(&format!("kill -TERM {}", sw.id()));
    let _ = sw.wait_with_output();
    let after_stop = xdp_prog(&a);
    // auto on a veth: native copy mode; then killed
    let mut sw = run(&a, "auto");
    let auto_backend = backend();
    let auto_prog = xdp_prog(&a);
    let _ = sh(&format!("kill -KILL {}", sw.id()));
    let _ = sw.wait();
    let after_kill = xdp_prog(&a);
    // auto where AF_XDP cannot work (one queue, two workers): AF_PACKET, and why
    let c = format!("{tag}c");
    let sw = run(&c, "auto");
    let fb_backend = backend();
    let _ = sh(&format!("kill -TERM {}", sw.id()));
    let fb_log = String::from_utf8_lossy(&sw.wait_with_output().expect("exit").stderr).to_string();
    let _ = sh(&format!("ip link del {tag}a"));
    let _ = sh(&format!("ip link del {tag}c"));
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(out.status.code(), Some(2), "zerocopy refused: {zc_err}");
    assert!(zc_err.contains("zero-copy"), "{zc_err}");
    assert_eq!(
        skb_backend,
        format!("af_xdp {a} skb copy multi-buffer q0-1")
    );
    assert!(
        skb_prog.contains("xdpgeneric") && skb_prog.contains("vpcswitch_xsk"),
        "{skb_prog}"
    );
    assert_eq!(after_stop, "", "program detached after a stop");
    assert_eq!(
        auto_backend,
        format!("af_xdp {a} native copy multi-buffer q0-1")
    );
    assert!(auto_prog.contains("vpcswitch_xsk"), "{auto_prog}");
    assert_eq!(after_kill, "", "program detached after kill -9");
    assert_eq!(fb_backend, format!("af_packet {c} +offload"));
    assert!(
        fb_log.contains("falls back to AF_PACKET") && fb_log.contains("receive queues"),
        "{fb_log}"
    );
}
