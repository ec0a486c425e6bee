//! ARP and broadcast storms from a guest leave the others their traffic.

mod common;

use std::time::Duration;

use common::lock;
use common::net::Net;

/// A raw-socket flood from inside a guest: `kind` "arp" (requests for every address of
/// 10.0.1.0/24) or "bcast" (UDP to ff:ff:ff:ff:ff:ff), for `secs` seconds; prints the
/// number sent.
const FLOOD_PY: &str = r#"
import socket, struct, sys, time
kind, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = bytes.fromhex("020000000103")
frames = []
for i in range(2, 252):
    if kind == "arp":
        frames.append(b"\xff" * 6 + src + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                      + src + bytes([10, 0, 1, 13]) + b"\x00" * 6 + bytes([10, 0, 1, i]))
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 1, 13]), bytes([10, 0, 1, 255]))
        frames.append(b"\xff" * 6 + src + b"\x08\x00" + ip + struct.pack("!HHHH", 9, 9, 8, 0))
n, end = 0, time.time() + secs
while time.time() < end:
    for f in frames:
        try:
            s.send(f)
            n += 1
        except OSError:
            pass
print(n)
"#;

#[test]
fn arp_and_broadcast_storms_from_a_tap_guest_leave_the_others_their_traffic() {
    let _l = lock();
    let mut n = Net::start();
    let script = n.file("flood.py");
    std::fs::write(&script, FLOOD_PY).expect("script");
    for (kind, reason) in [("arp", "arp_rate_limited"), ("bcast", "flood_rate_limited")] {
        let pid = n.spawn(
            "client",
            &format!("/usr/bin/python3 {} {kind} 4", script.display()),
            &format!("flood-{kind}.txt"),
        );
        std::thread::sleep(Duration::from_millis(500));
        // meanwhile: web1 <-> web2, across subnets, and the gateway all answer
        let a = n.ping("web1", "10.0.1.12", 10);
        let b = n.ping("app", "10.0.1.11", 5);
        std::thread::sleep(Duration::from_secs(4));
        let _ = pid;
        let sent: u64 = n
            .read(&format!("flood-{kind}.txt"))
            .trim()
            .parse()
            .unwrap_or(0);
        let limited = n.drops("client", reason);
        // the storming guest itself is still served once its storm is over (a storm
        // of dropped frames once drained the TAP receive pool and wedged the port)
        let own = n.ping("client", "10.0.1.11", 2);
        eprintln!("{kind} storm: {sent} frames sent by client, {limited} dropped as {reason}; web1->web2 {a}/10, app->web1 {b}/5");
        assert!(sent > 10_000, "the storm ran: {sent}");
        assert!(limited > 0, "{reason} counted");
        assert_eq!(
            (a, b),
            (10, 5),
            "the others keep their traffic during the {kind} storm"
        );
        assert_eq!(
            own, 2,
            "the client's port still works after its {kind} storm"
        );
    }
    // the switch is fine afterwards
    assert_eq!(n.ping("client", "10.0.1.11", 2), 2);
}
