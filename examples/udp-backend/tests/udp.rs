//! The example embedder's own backend, run as a user would: two ports whose guests are
//! UDP sockets (as QEMU's `-netdev dgram`), frames switched between them by the library
//! (SPEC 4.2), a spoofed one dropped and counted (SPEC 2.3), a VIP claim seen as an
//! event (SPEC 3.1), and a port the configuration does not have refused by name.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use vpcswitch_wire::build;

const CONFIG: &str = r#"
[[vpcs]]
name = "v"
cidrs = ["10.9.0.0/16"]

[[subnets]]
name = "s"
vpc = "v"
cidr = "10.9.1.0/24"

[[ports]]
name = "vm1"
subnet = "s"
mac = "02:00:00:00:09:01"
ips = ["10.9.1.11"]
backend = { type = "external", kind = "udp" }

[[ports]]
name = "vm2"
subnet = "s"
mac = "02:00:00:00:09:02"
ips = ["10.9.1.12"]
backend = { type = "external", kind = "udp" }

[[vips]]
name = "vip"
subnet = "s"
ip = "10.9.1.100"
ports = ["vm1", "vm2"]
"#;

fn mac(s: &str) -> vpcswitch_wire::MacAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn frames_cross_the_switch_between_two_udp_ports() {
    let dir = std::env::temp_dir().join(format!("vpcswitch-udp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("net.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    // the two "VMs": UDP sockets on loopback
    let vm1 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let vm2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    vm2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcswitch-udp-example"))
        .arg(&cfg)
        .args([
            "--port",
            &format!("vm1=127.0.0.1:0,{}", vm1.local_addr().unwrap()),
        ])
        .args([
            "--port",
            &format!("vm2=127.0.0.1:0,{}", vm2.local_addr().unwrap()),
        ])
        .args(["--seconds", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut listens = std::collections::HashMap::new();
    let mut lines = vec![];
    loop {
        let mut l = String::new();
        if out.read_line(&mut l).unwrap() == 0 {
            break;
        }
        if let Some(rest) = l.trim().strip_prefix("port ") {
            if let Some((name, addr)) = rest.split_once(" listens on ") {
                listens.insert(name.to_string(), addr.to_string());
            }
        }
        let started = l.starts_with("switch started");
        lines.push(l);
        if started {
            break;
        }
    }
    assert_eq!(listens.len(), 2, "{lines:?}");
    let to_switch = |vm: &UdpSocket, port: &str, frame: &[u8]| {
        vm.send_to(frame, &listens[port]).unwrap();
    };
    // vm1 -> vm2, plain L2 in the subnet
    let f = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:09:02"),
            src: mac("02:00:00:00:09:01"),
            sip: ip("10.9.1.11"),
            dip: ip("10.9.1.12"),
        },
        64,
        4000,
        53,
        b"hello over udp",
    );
    to_switch(&vm1, "vm1", &f);
    let mut buf = [0u8; 2048];
    let n = vm2
        .recv(&mut buf)
        .expect("vm2 gets vm1's frame through the switch");
    assert_eq!(&buf[..n], &f[..], "delivered unchanged");
    // a spoofed source: dropped (SPEC 2.3)
    let spoofed = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:09:02"),
            src: mac("02:00:00:00:09:01"),
            sip: ip("10.9.1.99"),
            dip: ip("10.9.1.12"),
        },
        64,
        4000,
        53,
        b"x",
    );
    to_switch(&vm1, "vm1", &spoofed);
    // vm2 claims the VIP (a gratuitous ARP): an event; vm1 hears the GARP (SPEC 3.3)
    to_switch(
        &vm2,
        "vm2",
        &build::garp(mac("02:00:00:00:09:02"), ip("10.9.1.100")),
    );
    vm1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = vm1.recv(&mut buf).expect("vm1 hears vm2's GARP");
    assert_eq!(&buf[6..12], &[2, 0, 0, 0, 9, 2], "from vm2's MAC");
    vm2.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        vm2.recv(&mut buf).is_err(),
        "the spoofed frame never arrives"
    );
    let _ = n;
    let status = child.wait().unwrap();
    let mut rest = String::new();
    for l in out.lines() {
        rest += &l.unwrap();
        rest.push('\n');
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{rest}{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("port vm1: udp device, 1 queue(s)")),
        "capabilities: {lines:?}"
    );
    assert!(
        rest.contains("event: vip vip moved from - to vm2 (moves 1)"),
        "{rest}"
    );
    assert!(rest.contains("stats vm1: rx 2 tx 1"), "{rest}");
    assert!(rest.contains("spoofed_src_ip=1"), "{rest}");
    assert!(rest.contains("stats vm2: rx 1 tx 1"), "{rest}");
}

#[test]
fn a_port_the_configuration_does_not_have_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("vpcswitch-udp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("net.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vpcswitch-udp-example"))
        .arg(&cfg)
        .args(["--port", "vm1=127.0.0.1:0,127.0.0.1:9"])
        .args(["--port", "vm2=127.0.0.1:0,127.0.0.1:9"])
        .args(["--port", "vm3=127.0.0.1:0,127.0.0.1:9"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--port vm3: the configuration has no such port"),
        "{err}"
    );
}
