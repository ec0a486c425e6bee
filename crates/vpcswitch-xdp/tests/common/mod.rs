//! What the AF_XDP root tests share.
#![allow(dead_code)]

use std::process::Command;

/// Runs a shell command; whether it succeeded.
pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fails the test, saying why, unless it runs as root.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (veth pairs, network namespaces, AF_XDP, bpf)"
    );
}
