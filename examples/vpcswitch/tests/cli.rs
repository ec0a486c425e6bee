//! The binary's `check`, `ctl` and `run` error paths (no root needed).

use std::process::Command;

fn vs(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(args)
        .output()
        .expect("runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn write(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vpcswitch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

const GOOD: &str = r#"
[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "s"
vpc = "a"
cidr = "10.0.1.0/24"

[[ports]]
name = "p1"
subnet = "s"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]
backend = { type = "tap", ifname = "vsx-p1" }
"#;

#[test]
fn check_accepts_a_valid_file() {
    let (code, out, _) = vs(&["check", "-c", &write("good.toml", GOOD)]);
    assert_eq!(code, 0);
    assert!(
        out.contains("valid (1 VPCs, 1 subnets, 1 ports, 0 VIPs)"),
        "{out}"
    );
}

#[test]
fn check_lists_every_error_with_object_field_and_rule() {
    let bad = GOOD.replace("10.0.1.11", "10.0.2.11")
        + "\n[[vips]]\nname = \"v\"\nsubnet = \"nowhere\"\nip = \"10.0.1.50\"\n";
    let (code, _, err) = vs(&["check", "-c", &write("bad.toml", &bad)]);
    assert_eq!(code, 1);
    assert!(err.contains("2 error(s)"), "{err}");
    assert!(
        err.contains("port \"p1\": field `ips`: 10.0.2.11 is not inside subnet"),
        "{err}"
    );
    assert!(
        err.contains("vip \"v\": field `subnet`: no subnet named \"nowhere\""),
        "{err}"
    );
    let (code, _, err) = vs(&["check", "-c", "/nonexistent/switch.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read /nonexistent/switch.toml"),
        "{err}"
    );
    let (code, _, err) = vs(&["check", "-c", &write("syntax.toml", "[[vpcs]\nname=")]);
    assert_eq!(code, 1);
    assert!(err.contains("TOML") && err.contains("line"), "{err}");
}

#[test]
fn run_refuses_backends_it_cannot_open_with_a_clear_error() {
    let mem = GOOD.replace("backend = { type = \"tap\", ifname = \"vsx-p1\" }", "");
    let (code, _, err) = vs(&["run", "-c", &write("mem.toml", &mem)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("port \"p1\": backend type \"memory\" is for embedders"),
        "{err}"
    );
    // af_xdp: a mode that is not one is a configuration error naming it
    let bad = GOOD.replace("type = \"tap\"", "type = \"af_xdp\", mode = \"fast\"");
    let (code, _, err) = vs(&["run", "-c", &write("xdp-bad.toml", &bad)]);
    assert_eq!(code, 1);
    assert!(err.contains("af_xdp mode \"fast\" is not one of"), "{err}");
    // a fixed mode on a missing interface: refused at start, saying which
    let xdp = GOOD.replace("type = \"tap\"", "type = \"af_xdp\", mode = \"copy\"");
    let (code, _, err) = vs(&["run", "-c", &write("xdp.toml", &xdp)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("find interface vsx-p1 (AF_XDP attaches"),
        "{err}"
    );
    assert!(!err.contains("falls back"), "{err}");
    // auto falls back to AF_PACKET, which needs the interface too
    let auto = GOOD.replace("type = \"tap\"", "type = \"af_xdp\"");
    let (code, _, err) = vs(&["run", "-c", &write("xdp-auto.toml", &auto)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("falls back to AF_PACKET"), "{err}");
    assert!(err.contains("find interface vsx-p1"), "{err}");
}

#[test]
fn ctl_without_a_switch_says_so() {
    let (code, _, err) = vs(&["ctl", "-s", "/nonexistent/vpcswitch.sock", "stats"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot connect to /nonexistent/vpcswitch.sock"),
        "{err}"
    );
}

#[test]
fn the_shipped_example_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("examples/configs") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let (code, out, err) = vs(&["check", "-c", &p.display().to_string()]);
            assert_eq!(code, 0, "{}: {out}{err}", p.display());
            n += 1;
        }
    }
    assert!(n >= 2);
}
