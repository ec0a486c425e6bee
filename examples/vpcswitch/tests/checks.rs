//! What a guest may send (SPEC 2, 6.2): spoofed sources dropped and counted over every
//! backend, hostile offload headers, and the src/dst check an LVS-DR backend needs off.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::net::{Kind, Net, VIP};
use common::{lock, must};

over_backends!(spoof_suite {
    spec2_spoofing_from_a_guest_is_dropped_and_counted: Tap,
    af_packet_spec2_spoofing_from_a_guest_is_dropped_and_counted: AfPacket,
    af_packet_ring_spec2_spoofing_from_a_guest_is_dropped_and_counted: AfPacketRing,
    af_xdp_spec2_spoofing_from_a_guest_is_dropped_and_counted: AfXdp,
});

fn spoof_suite(kind: Kind) {
    let _l = lock();
    let n = Net::start_kind(kind, "");
    assert_eq!(n.ping("web2", "10.0.1.11", 2), 2);
    let c = "02:00:00:00:01:03";
    n.scapy(
        "client",
        &format!(
            "i = 'eth0'\n\
             sendp(Ether(src='02:00:00:00:01:01', dst='02:00:00:00:01:02')/IP(src='10.0.1.11', dst='10.0.1.12')/UDP(dport=9), iface=i)\n\
             sendp(Ether(src='{c}', dst='02:00:00:00:01:02')/IP(src='10.0.1.11', dst='10.0.1.12')/UDP(dport=9), iface=i)\n\
             sendp(Ether(src='{c}', dst='02:00:00:00:01:02')/ARP(op=2, hwsrc='{c}', psrc='10.0.1.11', hwdst='02:00:00:00:01:02', pdst='10.0.1.12'), iface=i)\n\
             sendp(Ether(src='{c}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{c}', psrc='{VIP}', pdst='{VIP}'), iface=i)\n\
             sendp(Ether(src='{c}', dst='02:42:00:00:00:01')/IP(src='10.0.1.13', dst='10.0.1.12')/UDP(dport=9), iface=i)\n"
        ),
    );
    std::thread::sleep(Duration::from_millis(200));
    for reason in [
        "spoofed_src_mac",
        "spoofed_src_ip",
        "arp_claims_foreign_ip",
        "vip_claim_not_bound",
        "unknown_unicast",
    ] {
        assert_eq!(n.drops("client", reason), 1, "{reason}: {}", n.ctl("stats"));
    }
    assert_eq!(n.vip_owner(), None);
    // SPEC 2.1: VLAN-tagged frames, sent raw (a receiving veth moves the tag out of the
    // frame into metadata: the AF_PACKET backend must put it back to see it)
    let script = n.file("vlan.py");
    std::fs::write(&script, VLAN_PY).expect("script");
    let (ok, out) = n.exec("client", &format!("/usr/bin/python3 {}", script.display()));
    assert!(ok, "{out}");
    let end = Instant::now() + Duration::from_secs(3);
    while n.drops("client", "vlan_tagged") < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        n.drops("client", "vlan_tagged"),
        3,
        "tagged frames dropped: {}",
        n.ctl("stats")
    );
    // the victims are unaffected
    assert_eq!(n.ping("web2", "10.0.1.11", 3), 3);
    assert_eq!(n.ping("app", "10.0.1.12", 3), 3);
}

/// SPEC 2.5: the virtio-net header a guest's kernel hands over is guest input. From the
/// client's namespace, frames on a raw `PACKET_VNET_HDR` socket whose checksum offload
/// would make the switch write over the checked addresses (an ARP reply turning its
/// sender IP into the gateway's, a UDP packet turning its source into web1's), toward
/// web2, a TAP without offload (for which the switch completes checksums itself); and a
/// real TCP stream with MSS 88 (`iperf3 -M 88`), whose super-frames would each cost
/// hundreds of segments. Each is dropped with its reason; web2 receives nothing of it
/// and its neighbour entry for the gateway keeps the gateway's MAC. (Headers the
/// guest's kernel refuses to send, such as a header length or checksum start past the
/// frame, are covered by the runtime and unit tests.)
#[test]
fn spec2_5_hostile_offload_headers_from_a_guest_are_dropped() {
    let _l = lock();
    let mut n = Net::start_edited(Kind::Tap, "", &|c| {
        // web2 (port 1) takes no offload
        let tag = format!("vs{}", std::process::id() % 100_000);
        c.replace(
            &format!("ifname = \"{tag}t1\" }}"),
            &format!("ifname = \"{tag}t1\", offload = false }}"),
        )
    });
    assert_eq!(n.ping("web2", "10.0.1.1", 2), 2, "web2 learns the gateway");
    assert_eq!(n.ping("client", "10.0.1.12", 2), 2);
    let gw_mac = |n: &Net| n.exec("web2", "ip neigh show 10.0.1.1").1;
    let before = gw_mac(&n);
    assert!(
        before.contains("lladdr") && !before.contains("02:00:00:00:01:03"),
        "web2's gateway entry: {before}"
    );
    // a reply may update an entry only after its lock time (1 s)
    std::thread::sleep(Duration::from_millis(1200));
    let web2_tx = |n: &Net| {
        n.ctl("stats")["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "web2")
            .and_then(|p| p["tx_packets"].as_u64())
            .unwrap_or(0)
    };
    let tx0 = web2_tx(&n);
    let script = n.file("vnet.py");
    std::fs::write(&script, VNET_PY).expect("script");
    let (ok, out) = n.exec("client", &format!("/usr/bin/python3 {}", script.display()));
    assert!(ok, "{out}");
    let end = Instant::now() + Duration::from_secs(3);
    while n.drops("client", "bad_offload_csum") < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        n.drops("client", "bad_offload_csum"),
        2,
        "both forged checksum requests dropped: {}",
        n.ctl("stats")
    );
    assert_eq!(web2_tx(&n), tx0, "web2 received nothing of them");
    let after = gw_mac(&n);
    assert!(
        !after.contains("02:00:00:00:01:03"),
        "web2's gateway entry was not poisoned: {after}"
    );
    // a real guest TCP stream with the smallest MSS Linux allows: its super-frames are
    // refused, not cut into hundreds of segments on the shared worker
    n.spawn("web2", "iperf3 -s -1 -p 5202", "iperf-mss.txt");
    std::thread::sleep(Duration::from_millis(300));
    let _ = n.exec("client", "timeout 8 iperf3 -c 10.0.1.12 -p 5202 -M 88 -t 2");
    let too_many = n.drops("client", "gso_too_many_segments");
    assert!(
        too_many > 0,
        "MSS-88 super-frames dropped with their reason: {}",
        n.ctl("stats")
    );
    let segs: u64 = n.ctl("stats")["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["gso_segments"].as_u64())
        .sum();
    eprintln!("mss 88: {too_many} super-frames refused, {segs} segments cut in software");
    // the victims are unaffected
    assert_eq!(n.ping("web2", "10.0.1.11", 3), 3);
    assert_eq!(n.ping("client", "10.0.1.12", 3), 3);
}

/// Two frames from the client (02:00:00:00:01:03, 10.0.1.13) to web2 on a raw socket
/// with `PACKET_VNET_HDR`, each with a checksum request whose start and offset land on
/// an address, and Ethernet padding chosen so that completing "the checksum" there
/// writes a chosen value: 10.0.1.1 as the ARP sender, 10.0.1.11 as the UDP source.
const VNET_PY: &str = r#"
import socket, struct
SOL_PACKET, PACKET_VNET_HDR = 263, 15
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
s.bind(("eth0", 0))
me, web2 = bytes.fromhex("020000000103"), bytes.fromhex("020000000102")

def fold(x):
    while x > 0xffff:
        x = (x & 0xffff) + (x >> 16)
    return x

def forge(f, start, pad, want):
    f[pad:pad + 2] = bytes(2)
    s = fold(sum(int.from_bytes(bytes(f[i:i + 2]).ljust(2, bytes(1)), "big") for i in range(start, len(f), 2)))
    f[pad:pad + 2] = fold((~want & 0xffff) + (~s & 0xffff)).to_bytes(2, "big")

def vnet(start, off):
    return struct.pack("<BBHHHH", 1, 0, 0, 0, start, off)

arp = bytearray(web2 + me + bytes([8, 6]) + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + me + bytes([10, 0, 1, 13]) + web2 + bytes([10, 0, 1, 12]) + bytes(18))
forge(arp, 26, 44, 0x0101)
s.send(vnet(26, 4) + bytes(arp))

ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 36, 0, 0, 64, 17, 0, bytes([10, 0, 1, 13]), bytes([10, 0, 1, 12])))
c = fold(sum(int.from_bytes(ip[i:i + 2], "big") for i in range(0, 20, 2)))
ip[10:12] = (~c & 0xffff).to_bytes(2, "big")
udp = bytearray(web2 + me + bytes([8, 0]) + ip + struct.pack("!HHHH", 9, 9, 16, 0) + b"payload!" + bytes(12))
forge(udp, 26, len(udp) - 2, 0x010b)
s.send(vnet(26, 2) + bytes(udp))
"#;

/// Three 802.1Q-tagged frames (VLAN 7: a broadcast ARP request, a unicast UDP to web1,
/// a double-tagged one) from the client's own MAC, on a raw socket.
const VLAN_PY: &str = r#"
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
me = bytes.fromhex("020000000103")
web1 = bytes.fromhex("020000000101")
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + bytes([10, 0, 1, 13]) + b"\x00" * 6 + bytes([10, 0, 1, 11])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 1, 13]), bytes([10, 0, 1, 11]))
udp = struct.pack("!HHHH", 9, 9, 8, 0)
tag = lambda t, vid: struct.pack("!HH", t, vid)
s.send(b"\xff" * 6 + me + tag(0x8100, 7) + b"\x08\x06" + arp)
s.send(web1 + me + tag(0x8100, 7) + b"\x08\x00" + ip + udp)
s.send(web1 + me + tag(0x88a8, 7) + tag(0x8100, 8) + b"\x08\x00" + ip + udp)
"#;

#[test]
fn spec6_2_lvs_direct_routing_needs_the_check_off() {
    let _l = lock();
    let n = Net::start();
    // web1 is an LVS-DR backend: the service address on its loopback, no ARP for it
    must(&format!(
        "ip netns exec {} sh -c 'ip addr add 10.0.1.200/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0'",
        n.ns("web1")
    ));
    assert_eq!(
        n.ping("client", "10.0.1.14", 1),
        1,
        "client knows the director"
    );
    // the director forwards the client's echo request unchanged to web1's MAC
    let send = "sendp(Ether(src='02:00:00:00:01:04', dst='02:00:00:00:01:01')/IP(src='10.0.1.13', dst='10.0.1.200')/ICMP(id=77, seq=1), iface='eth0')";
    n.scapy("lvs", send);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        n.drops("lvs", "dst_check"),
        1,
        "SPEC 6.1: web1 has the check on"
    );
    // turn web1's check off (SPEC 6.2) by reload; the reply from the VIP reaches the client
    let text = n.config_text("").replace(
        "name = \"web1\"\nsubnet = \"web\"\nmac = \"02:00:00:00:01:01\"\nips = [\"10.0.1.11\"]\nsrc_dst_check = true",
        "name = \"web1\"\nsubnet = \"web\"\nmac = \"02:00:00:00:01:01\"\nips = [\"10.0.1.11\"]\nsrc_dst_check = false",
    );
    assert_ne!(text, n.config_text(""), "config rewritten");
    let g0 = n.generation();
    n.reload_with(&text);
    let end = Instant::now() + Duration::from_secs(5);
    while n.generation() == g0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(n.generation(), g0 + 1, "reloaded\n{}", n.log());
    let mut nn = n;
    nn.spawn(
        "client",
        "timeout 5 tcpdump -n -l -c 1 -i eth0 icmp and src host 10.0.1.200",
        "tcpdump.txt",
    );
    std::thread::sleep(Duration::from_millis(800));
    nn.scapy("lvs", send);
    let end = Instant::now() + Duration::from_secs(5);
    while !nn.read("tcpdump.txt").contains("echo reply") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        nn.read("tcpdump.txt")
            .contains("10.0.1.200 > 10.0.1.13: ICMP echo reply"),
        "{}",
        nn.read("tcpdump.txt")
    );
    assert_eq!(nn.drops("lvs", "dst_check"), 1, "no new drop");
}
