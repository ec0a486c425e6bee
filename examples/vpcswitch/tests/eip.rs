//! Elastic IPs (SPEC 7): the internet reaches a keepalived VIP through its EIP across a
//! failover.

mod common;

use std::time::Duration;

use common::net::Net;
use common::net::{EIP, EIP_EXTRA};
use common::{lock, must};

#[test]
fn spec7_internet_reaches_a_keepalived_vip_through_its_eip_across_failover() {
    let _l = lock();
    let mut n = Net::start_with(EIP_EXTRA);
    let k1 = n.keepalived("web1", 150);
    n.keepalived("web2", 100);
    assert!(
        n.wait_owner("web1", 20),
        "web1 becomes master\n{}",
        n.read("keepalived-web1.log")
    );
    n.http_server("web1");
    n.http_server("web2");
    // HTTP and TCP (iperf3) from the internet to the EIP, served by the master
    assert!(
        n.http_get_eventually("internet", EIP, "web1", 10),
        "HTTP via the EIP to web1: {:?}\n{}",
        n.http_get("internet", EIP),
        n.log()
    );
    let gbps = n.iperf("internet", "web1", EIP, 2);
    eprintln!("iperf3 internet -> EIP (web1): {gbps:?} Gbit/s");
    assert!(gbps.is_some_and(|g| g > 0.01), "iperf3 through the EIP");

    // kill the master while the internet pings the EIP
    n.probe("internet", EIP, 7, "ping-eip.txt");
    std::thread::sleep(Duration::from_secs(2));
    must(&format!("kill -KILL {k1}"));
    assert!(
        n.wait_owner("web2", 10),
        "web2 takes over\n{}",
        n.read("keepalived-web2.log")
    );
    assert!(
        n.http_get_eventually("internet", EIP, "web2", 10),
        "the same EIP answers from the backup: {:?}",
        n.http_get("internet", EIP)
    );
    std::thread::sleep(Duration::from_secs(5));
    // SIGKILL leaves web1 holding the VIP address; web2 takes it after 3 missed adverts
    n.assert_outage("ping-eip.txt", "EIP failover (master killed)");
    let gbps = n.iperf("internet", "web2", EIP, 2);
    eprintln!("iperf3 internet -> EIP (web2): {gbps:?} Gbit/s");
    assert!(
        gbps.is_some_and(|g| g > 0.01),
        "iperf3 through the EIP after failover"
    );

    assert!(
        n.log().contains("vip owner changed"),
        "VIP moves are logged"
    );
    // ctl eips: the EIP now points at web2, the next hop was learned
    let e = n.ctl("eips");
    assert_eq!(e["eips"][0]["eip"], EIP, "{e}");
    assert_eq!(e["eips"][0]["owner_port"], "web2", "{e}");
    assert_eq!(
        e["eips"][0]["target"],
        serde_json::json!({"kind": "vip", "vip": "vip"}),
        "{e}"
    );
    assert_eq!(e["uplink"]["next_hop_mac"], "02:00:00:00:ee:01", "{e}");

    // SPEC 7.2: a private address without an EIP never leaves
    assert_eq!(n.ping("client", "203.0.113.1", 2), 0);
    assert!(n.drops("client", "no_eip") >= 2, "no_eip counted");
    // the internet cannot reach private addresses
    must(&format!(
        "ip -n {} route add 10.0.0.0/16 via 203.0.113.10",
        n.ns("internet")
    ));
    assert_eq!(n.ping("internet", "10.0.1.13", 2), 0);
    assert!(n.drops("uplink", "uplink_not_for_eip") >= 2);
}
