//! SPEC 13.1 with real clients: a netns guest with no address runs busybox `udhcpc`
//! (Debian `busybox-static`) against the switch's DHCP server and gets its primary
//! fixed IP, the router, DNS, domain, MTU and a classless route; then pings another
//! guest and one across subnets, and renews by unicast to the gateway. A rogue DHCP
//! server guest (scapy sending OFFERs and ACKs, broadcast and unicast) is silenced:
//! the client never sees its packets, and `rogue_dhcp_server` counts them. No DHCP client
//! packet reaches another guest.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::net::{Kind, Net};
use common::{lock, must, sh};

/// The udhcpc event script (shared with the VM test).
pub const UDHCPC_SCRIPT: &str = include_str!("common/udhcpc.sh");

/// Subnet web with DHCP on: DNS, domain, MTU, a short lease, a classless route.
fn with_dhcp(c: String) -> String {
    let web = "name = \"web\"\nvpc = \"a\"\ncidr = \"10.0.1.0/24\"\n";
    assert!(c.contains(web), "the standard topology has subnet web");
    c.replace(
        web,
        &format!(
            "{web}dhcp = true\ndhcp_options = {{ dns_servers = [\"10.0.0.2\", \"10.0.0.3\"], \
             domain = \"web.internal\", mtu = 1400, lease_secs = 600, \
             routes = [{{ destination = \"10.9.0.0/16\", via = \"10.0.1.14\" }}] }}\n"
        ),
    )
}

/// Waits up to `secs` for `f` to hold.
fn wait(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn require_busybox() {
    let (ok, _) = sh("busybox udhcpc --help");
    assert!(
        ok,
        "missing busybox with udhcpc (Debian package busybox-static): run scripts/test.sh"
    );
}

#[test]
fn spec13_1_udhcpc_gets_the_ports_address_and_options_rogue_server_silenced() {
    let _l = lock();
    let mut n = Net::start_edited(Kind::Tap, "", &with_dhcp);
    require_busybox();
    let script = n.file("udhcpc.sh");
    std::fs::write(&script, UDHCPC_SCRIPT).expect("script");
    must(&format!("chmod +x {}", script.display()));
    let lease = n.file("lease.txt");
    // "client" (port 10.0.1.13) starts with no address and no route
    must(&format!(
        "ip netns exec {} sh -c 'ip -4 addr flush dev eth0 && ip route flush dev eth0'",
        n.ns("client")
    ));
    let (_, a) = n.exec("client", "ip -4 -o addr show dev eth0");
    assert!(!a.contains("inet "), "no static address: {a}");

    // web1 watches for any DHCP it should never see; web2 is a rogue DHCP server
    // answering for everyone (scapy: OFFER and ACK of 10.0.1.77, router 10.0.1.66,
    // broadcast and unicast to the client's MAC), from its own address and MAC
    let watch = n.spawn(
        "web1",
        "timeout 25 tcpdump -l -n -i eth0 -c 50 'udp port 67 or udp port 68'",
        "web1-dhcp.txt",
    );
    let rogue = n.file("rogue.py");
    std::fs::write(
        &rogue,
        "from scapy.all import *\nconf.verb = 0\nimport time\n\
         def reply(t, dst_mac, dst_ip):\n\
         \x20   return (Ether(src='02:00:00:00:01:02', dst=dst_mac)/IP(src='10.0.1.12', dst=dst_ip)/UDP(sport=67, dport=68)/\n\
         \x20           BOOTP(op=2, yiaddr='10.0.1.77', siaddr='10.0.1.12', chaddr=bytes.fromhex('020000000103')+b'\\0'*10)/\n\
         \x20           DHCP(options=[('message-type', t), ('server_id', '10.0.1.12'), ('subnet_mask', '255.255.255.0'), ('router', '10.0.1.66'), ('lease_time', 600), 'end']))\n\
         end = time.time() + 12\n\
         while time.time() < end:\n\
         \x20   for t in ('offer', 'ack'):\n\
         \x20       sendp(reply(t, 'ff:ff:ff:ff:ff:ff', '255.255.255.255'), iface='eth0')\n\
         \x20       sendp(reply(t, '02:00:00:00:01:03', '10.0.1.77'), iface='eth0')\n\
         \x20   time.sleep(0.1)\n",
    )
    .expect("rogue script");
    n.spawn(
        "web2",
        &format!("/usr/bin/python3 {}", rogue.display()),
        "rogue.txt",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let before = n.drops("web2", "rogue_dhcp_server");
    assert!(
        before > 0,
        "the rogue's replies are dropped and counted (rogue_dhcp_server on web2): {}\n{}",
        n.ctl("stats"),
        n.read("rogue.txt")
    );

    // the client: busybox udhcpc in the foreground (renewable with SIGUSR1)
    let client = n.spawn(
        "client",
        &format!(
            "env LEASE_FILE={} busybox udhcpc -f -i eth0 -t 10 -T 1 -A 1 -s {} -O mtu -O staticroutes -O domain",
            lease.display(),
            script.display()
        ),
        "udhcpc.txt",
    );
    let bound = wait(20, || n.read("lease.txt").contains("DHCP bound"));
    let got = n.read("lease.txt");
    assert!(
        bound,
        "udhcpc got no lease:\n{got}\nudhcpc: {}\n{}",
        n.read("udhcpc.txt"),
        n.log()
    );
    eprintln!("lease: {got}");
    for want in [
        "ip=10.0.1.13 ",
        "mask=24 ",
        "router=10.0.1.1 ",
        "dns=10.0.0.2 10.0.0.3 ",
        "domain=web.internal ",
        "mtu=1400 ",
        "staticroutes=10.9.0.0/16 10.0.1.14 0.0.0.0/0 10.0.1.1 ",
        "lease=600 ",
        "serverid=10.0.1.1",
    ] {
        assert!(got.contains(want), "lease lacks `{want}`: {got}");
    }
    assert!(
        !got.contains("10.0.1.77"),
        "the rogue's offer was taken: {got}"
    );
    // the kernel has what the lease said
    let (_, addr) = n.exec("client", "ip -4 -o addr show dev eth0");
    assert!(addr.contains("10.0.1.13/24"), "{addr}");
    let (_, link) = n.exec("client", "ip -o link show dev eth0");
    assert!(link.contains("mtu 1400"), "{link}");
    let (_, routes) = n.exec("client", "ip -4 route show");
    assert!(routes.contains("default via 10.0.1.1"), "{routes}");
    assert!(routes.contains("10.9.0.0/16 via 10.0.1.14"), "{routes}");
    // and it works: the subnet, across subnets (the default route from option 121)
    assert_eq!(n.ping("client", "10.0.1.11", 3), 3, "{}", n.log());
    assert_eq!(n.ping("client", "10.0.2.11", 3), 3, "across subnets");

    // renewal: unicast from the leased address to the server (the gateway)
    must(&format!("kill -USR1 {client}"));
    assert!(
        wait(10, || n.read("lease.txt").contains("DHCP renew")),
        "no renewal:\n{}\n{}",
        n.read("lease.txt"),
        n.read("udhcpc.txt")
    );
    assert!(n.read("lease.txt").contains("DHCP renew ip=10.0.1.13 "));

    // the rogue was silenced all along, and no guest saw any DHCP
    std::thread::sleep(Duration::from_secs(1));
    let after = n.drops("web2", "rogue_dhcp_server");
    assert!(after > before, "rogue_dhcp_server {before} -> {after}");
    let consumed = n.drops("client", "dhcp_client");
    assert!(
        consumed >= 3,
        "DISCOVER, REQUEST, renewal REQUEST consumed: {consumed}"
    );
    must(&format!("kill -INT {watch}"));
    std::thread::sleep(Duration::from_millis(300));
    let seen = n.read("web1-dhcp.txt");
    let cap = seen.lines().filter(|l| l.contains(" IP ")).count();
    assert_eq!(cap, 0, "web1 saw DHCP packets:\n{seen}");
    eprintln!(
        "rogue_dhcp_server on web2: {after}; dhcp_client on client: {consumed}; web1 capture: {}",
        seen.lines().last().unwrap_or("")
    );
}
