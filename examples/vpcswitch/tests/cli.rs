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

/// A network of two hosts (SPEC 10.1): the same file for both switches.
const HOSTS: &str = r#"
[[hosts]]
name = "h1"
endpoint = "192.0.2.1"

[[hosts]]
name = "h2"
endpoint = "192.0.2.2"

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
host = "h1"
backend = { type = "tap", ifname = "vsx-p1" }

[[ports]]
name = "p2"
subnet = "s"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.12"]
host = "h2"
backend = { type = "tap", ifname = "vsx-p2" }

[[ports]]
name = "p3"
subnet = "s"
mac = "02:00:00:00:01:03"
ips = ["10.0.1.13"]
host = "h2"
backend = { type = "tap", ifname = "vsx-p3" }
"#;

/// SPEC 10.1: `check --host` validates the shared file as one host runs it and says
/// which ports live there; `[switch] host` does the same, and the flag wins.
#[test]
fn check_with_host_says_where_the_ports_live() {
    let f = write("hosts.toml", HOSTS);
    let (code, out, err) = vs(&["check", "-c", &f, "--host", "h2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "valid (1 VPCs, 1 subnets, 3 ports, 0 VIPs; 2 hosts; on host h2: 2 of 3 ports)"
        ),
        "{out}"
    );
    let (code, out, _) = vs(&["check", "-c", &f]);
    assert_eq!(code, 0);
    assert!(out.contains("no local host"), "{out}");
    let own = write(
        "hosts-own.toml",
        &format!("[switch]\nhost = \"h1\"\n{HOSTS}"),
    );
    let (_, out, _) = vs(&["check", "-c", &own]);
    assert!(out.contains("on host h1: 1 of 3 ports"), "{out}");
    let (_, out, _) = vs(&["check", "-c", &own, "--host", "h2"]);
    assert!(
        out.contains("on host h2: 2 of 3 ports"),
        "the flag wins: {out}"
    );
}

/// `--host` naming no host is refused by `check` and by `run` (before any device is
/// touched), naming the host and the known ones; on a file without `[[hosts]]` it says
/// there are none. The file's own rules still hold under the flag.
#[test]
fn an_unknown_host_is_refused_naming_the_known_ones() {
    let f = write("hosts2.toml", HOSTS);
    for cmd in ["check", "run"] {
        let (code, _, err) = vs(&[cmd, "-c", &f, "--host", "h9"]);
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(
            err.contains("--host h9: no host named \"h9\" in [[hosts]]; known hosts: h1, h2"),
            "{cmd}: {err}"
        );
        let (code, _, err) = vs(&[cmd, "-c", &write("single.toml", GOOD), "--host", "h1"]);
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(
            err.contains("--host h1: the configuration has no [[hosts]]"),
            "{cmd}: {err}"
        );
    }
    // a port on an unknown host is the file's error, listed with the others
    let bad = HOSTS.replace(
        "host = \"h2\"\nbackend = { type = \"tap\", ifname = \"vsx-p3\" }",
        "host = \"h3\"\nbackend = { type = \"tap\", ifname = \"vsx-p3\" }",
    );
    let (code, _, err) = vs(&[
        "check",
        "-c",
        &write("hosts-bad.toml", &bad),
        "--host",
        "h1",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("port \"p3\": field `host`: no host named \"h3\""),
        "{err}"
    );
}

/// The overrides for several switches on one machine are `run` flags (`check` has no
/// use for them); `--help` lists them.
#[test]
fn run_help_lists_the_multi_host_flags() {
    let (code, out, _) = vs(&["run", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--host <NAME>",
        "--control-socket <PATH>",
        "--metrics <ADDR>",
    ] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
    let (code, _, err) = vs(&["check", "-c", "x.toml", "--metrics", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
}

/// `run --max-ports/--max-hosts`: a network needing more port slots than given is
/// refused at start, naming the option; nonsense values are refused by the parser.
#[test]
fn run_sizes_its_port_slots_and_refuses_a_network_that_does_not_fit() {
    let two = format!(
        "{GOOD}\n[[ports]]\nname = \"p2\"\nsubnet = \"s\"\nmac = \"02:00:00:00:01:02\"\nips = [\"10.0.1.12\"]\nbackend = {{ type = \"tap\", ifname = \"vsx-p2\" }}\n"
    );
    let f = write("two.toml", &two);
    let (code, _, err) = vs(&["run", "-c", &f, "--max-ports", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("2 port ids needed, the runtime was started with max_ports = 1 (set it with --max-ports)"),
        "{err}"
    );
    for bad in [
        ["--max-ports", "0"],
        ["--max-hosts", "0"],
        ["--max-ports", "x"],
    ] {
        let (code, _, err) = vs(&["run", "-c", &f, bad[0], bad[1]]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains(&format!("for '{} <N>'", bad[0])), "{err}");
    }
    let (_, out, _) = vs(&["run", "--help"]);
    assert!(
        out.contains("--max-ports <N>") && out.contains("--max-hosts <N>"),
        "{out}"
    );
}

/// `ctl` as clap subcommands: options anywhere (the same answer whether `--json` and
/// `-s` come before or after the command), `--help` per command, `list-commands`,
/// `-c FILE` to find the socket in a configuration, and clear usage errors.
#[test]
fn ctl_options_go_anywhere_and_every_command_has_help() {
    let sock = "/nonexistent/vpcswitch.sock";
    let before = vs(&["ctl", "--json", "-s", sock, "ports"]);
    let after = vs(&["ctl", "ports", "--json", "-s", sock]);
    let mixed = vs(&["ctl", "-s", sock, "ports", "--json"]);
    assert_eq!(before, after);
    assert_eq!(before, mixed);
    assert_eq!(before.0, 2);
    let v: serde_json::Value = serde_json::from_str(before.1.trim()).expect("JSON error");
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap_or("").contains(sock), "{v}");
    // -c: the socket named by the configuration
    let cfg = write(
        "ctl.toml",
        &format!("[switch]\ncontrol_socket = \"/nonexistent/from-config.sock\"\n{GOOD}"),
    );
    let (code, _, err) = vs(&["ctl", "stats", "-c", &cfg]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/from-config.sock"), "{err}");
    let (code, _, err) = vs(&["ctl", "stats", "-c", "/nonexistent/x.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/x.toml"), "{err}");
    let (code, _, err) = vs(&["ctl", "stats", "-c", &cfg, "-s", sock]);
    assert_eq!(code, 2, "-c and -s together: {err}");
    // every command: listed, with its own help
    let (code, list, _) = vs(&["ctl", "list-commands"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for c in [
        "ports",
        "vips",
        "eips",
        "neighbors",
        "routes",
        "stats",
        "hosts",
        "reload",
        "trace",
        "capture",
        "drops",
    ] {
        assert!(names.contains(&c), "{c} listed: {list}");
        let (code, help, _) = vs(&["ctl", c, "--help"]);
        assert_eq!(code, 0, "{c} --help");
        assert!(help.contains(&format!("vpcswitch ctl {c}")), "{c}: {help}");
    }
    let (_, json, _) = vs(&["ctl", "list-commands", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON list");
    assert!(v.as_array().is_some_and(|a| a
        .iter()
        .all(|c| c["name"].is_string() && c["about"].is_string())));
    // usage errors name the problem
    let (code, _, err) = vs(&["ctl", "capture", "web1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--write <FILE>"), "{err}");
    let (code, _, err) = vs(&[
        "ctl",
        "capture",
        "web1",
        "-w",
        "x.pcap",
        "--direction",
        "up",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'up'"), "{err}");
    let (code, _, err) = vs(&["ctl", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand 'bogus'"), "{err}");
}

/// Shell completions and man pages come from the same definitions.
#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = vs(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("list-commands") && out.contains("capture"),
            "{shell}"
        );
    }
    let dir = std::env::temp_dir().join(format!("vpcswitch-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out, err) = vs(&["man", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("man pages written"), "{out}");
    for page in [
        "vpcswitch.1",
        "vpcswitch-run.1",
        "vpcswitch-ctl.1",
        "vpcswitch-ctl-capture.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: roff"
        );
    }
    let (ok, rendered) = {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "command -v man >/dev/null && MANWIDTH=80 man -l {}/vpcswitch-ctl.1 2>&1",
                dir.display()
            ))
            .output()
            .expect("sh");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    if ok {
        assert!(rendered.contains("list-commands"), "{rendered}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
