//! Device lifecycle: attaching to an existing TAP and leaving it at stop, a deleted
//! device taking its port down, a reload or the device's return bringing it back (TAP
//! and AF_XDP).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::net::xdp_prog;
use common::net::{guests, require, Kind, Net};
use common::{ctl_reload, lock, must, sh};

#[test]
fn tap_attach_to_an_existing_device_and_leave_it_on_stop() {
    let _l = lock();
    require();
    let tag = format!("vt{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("vpcswitch-attach-{tag}"));
    std::fs::create_dir_all(&dir).expect("dir");
    // devices made beforehand, as QEMU or an operator would: one multi-queue with a
    // virtio-net header, one plain single-queue
    let a = format!("{tag}a");
    let b = format!("{tag}b");
    must(&format!(
        "ip tuntap add dev {a} mode tap multi_queue vnet_hdr"
    ));
    must(&format!("ip tuntap add dev {b} mode tap"));
    let cfg = format!(
        "[switch]\nworkers = 1\ncontrol_socket = \"{}/ctl.sock\"\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.7.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.7.0.0/24\"\n\
         [[ports]]\nname = \"a\"\nsubnet = \"s\"\nmac = \"02:00:00:07:00:01\"\nips = [\"10.7.0.11\"]\nbackend = {{ type = \"tap\", ifname = \"{a}\" }}\n\
         [[ports]]\nname = \"b\"\nsubnet = \"s\"\nmac = \"02:00:00:07:00:02\"\nips = [\"10.7.0.12\"]\nbackend = {{ type = \"tap\", ifname = \"{b}\", offload = false }}\n",
        dir.display()
    );
    let path = dir.join("sw.toml");
    std::fs::write(&path, cfg).expect("config");
    let mut sw = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["run", "-c"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let end = Instant::now() + Duration::from_secs(10);
    while !dir.join("ctl.sock").exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cleanup = |sw: &mut Child| {
        let _ = sh(&format!("kill -TERM {}", sw.id()));
        let _ = sw.wait();
        for n in ["a", "b"] {
            let _ = sh(&format!("ip netns del {tag}-{n} 2>/dev/null"));
        }
        let _ = sh(&format!(
            "ip link del {a} 2>/dev/null; ip link del {b} 2>/dev/null"
        ));
        let _ = std::fs::remove_dir_all(&dir);
    };
    let result = std::panic::catch_unwind(|| {
        assert!(dir.join("ctl.sock").exists(), "switch did not start");
        for (n, dev, mac, ip) in [
            ("a", &a, "02:00:00:07:00:01", "10.7.0.11"),
            ("b", &b, "02:00:00:07:00:02", "10.7.0.12"),
        ] {
            must(&format!("ip netns add {tag}-{n}"));
            must(&format!("ip link set {dev} netns {tag}-{n}"));
            must(&format!("ip -n {tag}-{n} link set {dev} address {mac}"));
            must(&format!("ip -n {tag}-{n} addr add {ip}/24 dev {dev}"));
            must(&format!("ip -n {tag}-{n} link set {dev} up"));
        }
        let (_, out) = sh(&format!(
            "ip netns exec {tag}-a ping -n -c 3 -i 0.2 -W 1 10.7.0.12"
        ));
        assert!(out.contains("3 received"), "{out}");
        // TCP from the offload port to the plain one: super-frames are segmented in software
        let mut srv = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{tag}-b"),
                "iperf3",
                "-s",
                "-1",
                "-p",
                "5203",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        std::thread::sleep(Duration::from_millis(300));
        let (ok, out) = sh(&format!(
            "ip netns exec {tag}-a timeout 15 iperf3 -c 10.7.0.12 -p 5203 -t 2"
        ));
        let _ = srv.kill();
        let _ = srv.wait();
        assert!(ok && out.contains("receiver"), "{out}");
    });
    let pid = sw.id();
    let _ = sh(&format!("kill -TERM {pid}"));
    let _ = sw.wait();
    // devices the switch did not create outlive it
    let (_, links) = sh(&format!("ip -n {tag}-a link show {a}"));
    let survived = links.contains(&a);
    cleanup(&mut sw);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(
        survived,
        "an attached TAP stays after the switch stops: {links}"
    );
}

/// web2 answers; then its interface disappears under the switch, and traffic toward it
/// makes the switch notice: the port is down within `within`.
fn web2_deleted_and_down(n: &Net, within: Duration) {
    assert_eq!(n.ping("client", "10.0.1.12", 2), 2);
    must(&format!("ip -n {} link del eth0", n.ns("web2")));
    let end = Instant::now() + within;
    while !n.port_down("web2") && Instant::now() < end {
        let _ = n.exec("client", "ping -n -c 1 -W 0.2 10.0.1.12");
    }
    assert!(
        n.port_down("web2"),
        "web2 reported down: {}",
        n.ctl("ports")
    );
}

/// The host-side name of web2's device (`{tag}t{index}`), and the same with `p` (a
/// veth's guest end before it is renamed).
fn web2_if(n: &Net, kind: char) -> String {
    let i = guests().iter().position(|g| g.name == "web2").unwrap();
    format!("{}{kind}{i}", n.tag)
}

/// Gives the device `ifn`, now in web2's namespace, web2's name, MAC, address and
/// route back (and runs `extra` there after).
fn readdress_web2(n: &Net, ifn: &str, extra: &str) {
    must(&format!(
        "ip netns exec {} sh -c 'ip link set {ifn} address 02:00:00:00:01:02 && ip link set {ifn} name eth0 && ip addr add 10.0.1.12/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.1.1{extra}'",
        n.ns("web2")
    ));
}

/// Waits up to `within` for web2 to be up again.
fn wait_web2_up(n: &Net, within: Duration) {
    let end = Instant::now() + within;
    while n.port_down("web2") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deleted_tap_goes_down_the_rest_keeps_forwarding_and_a_reload_brings_it_back() {
    let _l = lock();
    let n = Net::start();
    web2_deleted_and_down(&n, Duration::from_secs(5));
    assert_eq!(
        n.ping("client", "10.0.1.11", 3),
        3,
        "the others keep forwarding"
    );
    // a reload reopens the device; the operator hands it to the guest again
    let g0 = n.generation();
    let out = ctl_reload(&n.socket);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(n.generation(), g0 + 1);
    let ifn = web2_if(&n, 't');
    must(&format!("ip link set {ifn} netns {}", n.ns("web2")));
    readdress_web2(&n, &ifn, "");
    assert!(!n.port_down("web2"), "up again: {}", n.ctl("ports"));
    assert_eq!(
        n.ping("client", "10.0.1.12", 3),
        3,
        "web2 reachable again\n{}",
        n.log()
    );
}

#[test]
fn a_deleted_tap_comes_back_by_itself_when_its_interface_returns() {
    let _l = lock();
    let n = Net::start();
    web2_deleted_and_down(&n, Duration::from_secs(5));
    // it stays down while the interface is missing
    std::thread::sleep(Duration::from_millis(1500));
    assert!(n.port_down("web2"), "still down without a device");
    let g0 = n.generation();
    // the hypervisor recreates the interface (multi-queue, vnet header: 2 workers,
    // offloads on); no reload is asked for
    let ifn = web2_if(&n, 't');
    must(&format!(
        "ip tuntap add dev {ifn} mode tap multi_queue vnet_hdr"
    ));
    wait_web2_up(&n, Duration::from_secs(5));
    let up = !n.port_down("web2");
    let moved = sh(&format!("ip link set {ifn} netns {}", n.ns("web2"))).0;
    if !moved {
        let _ = sh(&format!("ip link del {ifn}"));
    }
    assert!(
        up,
        "web2 up again by itself: {}\n{}",
        n.ctl("ports"),
        n.log()
    );
    assert!(moved, "TAP moved into the guest");
    assert!(n.generation() > g0, "reopened through a configuration swap");
    assert!(n.log().contains("device returned"), "logged: {}", n.log());
    readdress_web2(&n, &ifn, "");
    assert_eq!(
        n.ping("client", "10.0.1.12", 3),
        3,
        "web2 reachable again\n{}",
        n.log()
    );
}

#[test]
fn af_xdp_a_deleted_veth_goes_down_and_comes_back_with_its_program() {
    let _l = lock();
    let n = Net::start_kind(Kind::AfXdp, "");
    let host = web2_if(&n, 't');
    assert!(
        xdp_prog(&host).contains("vpcswitch_xsk"),
        "attached at start"
    );
    // deleting the guest's end deletes the pair, and with it the program's link
    web2_deleted_and_down(&n, Duration::from_secs(10));
    assert_eq!(n.ping("client", "10.0.1.11", 2), 2, "web1 unaffected");
    let g0 = n.generation();
    // the veth comes back (two queues, one per worker); no reload is asked for
    let peer = web2_if(&n, 'p');
    must(&format!(
        "ip link add {host} numrxqueues 2 numtxqueues 2 type veth peer name {peer} numrxqueues 2 numtxqueues 2 && ip link set {host} up && ip link set {peer} netns {}",
        n.ns("web2")
    ));
    readdress_web2(&n, &peer, " && ethtool -K eth0 tx off >/dev/null");
    wait_web2_up(&n, Duration::from_secs(10));
    assert!(
        !n.port_down("web2"),
        "web2 up again: {}\n{}",
        n.ctl("ports"),
        n.log()
    );
    assert!(n.generation() > g0, "reopened through a configuration swap");
    assert!(
        xdp_prog(&host).contains("vpcswitch_xsk"),
        "the program is attached to the new interface"
    );
    assert_eq!(
        n.ping("client", "10.0.1.12", 3),
        3,
        "web2 reachable again over AF_XDP\n{}",
        n.log()
    );
}
