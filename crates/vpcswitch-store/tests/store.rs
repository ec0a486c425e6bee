//! The store against a real 3-member etcd cluster (SPEC 11.1-11.3, 11.5): apply, load,
//! compare-and-swap, dry-run, watch, leases, members killed. Needs the `etcd` binary
//! (Debian `etcd-server`, installed by scripts/deps.sh); every wait is bounded.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vpcswitch_model::Config;
use vpcswitch_store::harness::EtcdCluster;
use vpcswitch_store::{keys, Store, StoreError, Update};

const NET: &str = r#"
[[hosts]]
name = "h1"
endpoint = "192.0.2.11"

[[hosts]]
name = "h2"
endpoint = "192.0.2.12"

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "web"
vpc = "a"
cidr = "10.0.1.0/24"

[[ports]]
name = "web1"
subnet = "web"
mac = "02:00:00:00:01:0b"
ips = ["10.0.1.11"]
host = "h1"
backend = { type = "af_packet", ifname = "vweb1" }

[[ports]]
name = "web2"
subnet = "web"
mac = "02:00:00:00:01:0c"
ips = ["10.0.1.12"]
host = "h2"
backend = { type = "af_packet", ifname = "vweb2" }

[[vips]]
name = "vip"
subnet = "web"
ip = "10.0.1.100"
ports = ["web1", "web2"]
"#;

fn net() -> Config {
    Config::from_toml_str(NET).unwrap()
}

/// The network with port web3 added.
fn net_plus_web3() -> Config {
    Config::from_toml_str(&format!(
        "{NET}\n[[ports]]\nname = \"web3\"\nsubnet = \"web\"\nmac = \"02:00:00:00:01:0d\"\n\
         ips = [\"10.0.1.13\"]\nhost = \"h2\"\n"
    ))
    .unwrap()
}

fn connect(c: &EtcdCluster) -> Store {
    Store::connect(&c.endpoints()).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

/// The next update that `want` accepts, within `secs`; panics with what came instead.
fn wait_for(rx: &mpsc::Receiver<Update>, secs: u64, want: impl Fn(&Update) -> bool) -> Update {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seen = vec![];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(u) if want(&u) => return u,
            Ok(u) => seen.push(format!("{u:?}")),
            Err(_) => break,
        }
    }
    panic!(
        "no matching update within {secs} s; got instead:\n{}",
        seen.join("\n")
    );
}

fn ports(c: &Config) -> Vec<String> {
    let mut v: Vec<String> = c.ports.iter().map(|p| p.name.clone()).collect();
    v.sort();
    v
}

/// SPEC 11.1: an empty store says so; apply writes the network in one transaction and
/// load gives it back (validated, with its revision); the same network again writes
/// nothing; a dry run lists the diff and writes nothing.
#[test]
fn apply_load_dry_run_and_empty_store() {
    let c = EtcdCluster::start(3);
    let s = connect(&c);
    let e = s.load().unwrap_err();
    assert!(matches!(e, StoreError::Empty(_)), "{e}");
    assert!(e.to_string().contains("vpcswitch apply"), "{e}");

    let a = s.apply(&net(), false).unwrap();
    assert!(a.wrote && a.from == 0 && a.revision > 0, "{a:?}");
    // switch, 2 hosts, vpc, subnet, 2 ports, vip
    assert_eq!(a.changes.len(), 8, "{:?}", a.changes);
    let l = s.load().unwrap();
    assert_eq!(l.revision, a.revision);
    assert_eq!(l.generation, 1);
    assert_eq!(ports(&l.config), ["web1", "web2"]);
    assert_eq!(l.config.vips, net().vips);

    let again = s.apply(&net(), false).unwrap();
    assert!(!again.wrote && again.changes.is_empty(), "{again:?}");
    assert_eq!(s.load().unwrap().revision, a.revision);

    let dry = s.apply(&net_plus_web3(), true).unwrap();
    assert!(!dry.wrote, "{dry:?}");
    let lines: Vec<String> = dry.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("+ port \"web3\""), "{lines:?}");
    assert_eq!(s.load().unwrap().revision, a.revision, "dry run wrote");

    let b = s.apply(&net_plus_web3(), false).unwrap();
    assert!(b.wrote && b.revision > a.revision);
    let l = s.load().unwrap();
    assert_eq!((l.revision, l.generation), (b.revision, 2));
    assert_eq!(ports(&l.config), ["web1", "web2", "web3"]);
}

/// SPEC 11.1: two appliers that read the same revision cannot interleave: the second
/// transaction compares the revision it read, fails, and writes nothing.
#[test]
fn a_second_apply_from_a_stale_revision_is_refused_whole() {
    let c = EtcdCluster::start(3);
    let s = connect(&c);
    let r0 = s.apply(&net(), false).unwrap().revision;
    // applier 1 read r0 and writes first
    let r1 = s.apply_expecting(&net_plus_web3(), r0).unwrap().revision;
    assert!(r1 > r0);
    // applier 2 also read r0: refused, nothing of it written
    let mut other = net();
    other.ports.retain(|p| p.name != "web2");
    other.vips[0].ports.retain(|p| p != "web2");
    let e = s.apply_expecting(&other, r0).unwrap_err();
    assert_eq!(e, StoreError::Conflict { seen: r0 });
    let l = s.load().unwrap();
    assert_eq!(l.revision, r1);
    assert_eq!(ports(&l.config), ["web1", "web2", "web3"]);
}

/// SPEC 11.1: a store holding a network that is not valid (written around `apply`)
/// is refused with every error, naming its revision; an unknown key too.
#[test]
fn an_invalid_network_in_the_store_is_refused_with_its_errors() {
    let c = EtcdCluster::start(3);
    let s = connect(&c);
    s.apply(&net(), false).unwrap();
    // a port on a subnet that does not exist, with a MAC taken
    s.put_raw(
        &format!("{}ports/bad", keys::NETWORK),
        r#"{"name":"bad","subnet":"nope","mac":"02:00:00:00:01:0b","ips":["10.0.1.50"],"host":"h1"}"#,
    )
    .unwrap();
    // the network changes only with an apply: touch the marker as an apply would
    s.put_raw(keys::APPLIED, r#"{"generation":9,"objects":9}"#)
        .unwrap();
    let e = s.load().unwrap_err().to_string();
    assert!(e.contains("invalid network (revision"), "{e}");
    assert!(e.contains("port \"bad\": field `subnet`"), "{e}");
    assert!(e.contains("mac"), "every error is listed: {e}");
    s.put_raw(&format!("{}widgets/x", keys::NETWORK), "{}")
        .unwrap();
    let e = s.load().unwrap_err().to_string();
    assert!(
        e.contains("unknown key /vpcswitch/v1/network/widgets/x"),
        "{e}"
    );
}

/// A store nobody answers at is an error naming the endpoints, within a bounded time.
#[test]
fn an_unreachable_store_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let e = Store::connect(std::slice::from_ref(&url)).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(
        matches!(&e, StoreError::Unreachable { endpoints, .. } if *endpoints == url),
        "{e}"
    );
    assert!(e.to_string().contains("unreachable"), "{e}");
}

/// SPEC 11.2, 11.5: the watch sends the network at once and every applied change in
/// order; with one member of three killed nothing changes (applies and the watch go
/// on); with all killed the watch reports the loss and keeps what it knows; once they
/// are back it resynchronises, without reverting anything.
#[test]
fn the_watch_follows_applies_and_survives_members_going_away() {
    let mut c = EtcdCluster::start(3);
    let s = connect(&c);
    let r0 = s.apply(&net(), false).unwrap().revision;
    let (tx, rx) = mpsc::channel();
    s.watch(tx).unwrap();
    let first = wait_for(&rx, 5, |u| matches!(u, Update::Network(_)));
    let Update::Network(n) = first else {
        unreachable!()
    };
    assert_eq!(n.revision, r0);

    let r1 = s.apply(&net_plus_web3(), false).unwrap().revision;
    let Update::Network(n) = wait_for(&rx, 5, |u| matches!(u, Update::Network(_))) else {
        unreachable!()
    };
    assert_eq!(n.revision, r1);
    assert_eq!(ports(&n.config), ["web1", "web2", "web3"]);

    // one member down: nothing changes
    c.kill(0);
    let r2 = s.apply(&net(), false).unwrap().revision;
    let Update::Network(n) = wait_for(&rx, 10, |u| matches!(u, Update::Network(_))) else {
        unreachable!()
    };
    assert_eq!(n.revision, r2);
    assert_eq!(ports(&n.config), ["web1", "web2"]);

    // all down: the loss is reported, no network is withdrawn
    c.kill_all();
    wait_for(&rx, 15, |u| matches!(u, Update::Lost(_)));
    // back: in sync again, at the last revision, nothing reverted or resent
    c.restart_all();
    let synced = wait_for(&rx, 20, |u| {
        matches!(u, Update::Synced(_) | Update::Network(_))
    });
    assert!(matches!(synced, Update::Synced(r) if r >= r2), "{synced:?}");
    let l = s.load().unwrap();
    assert_eq!(l.revision, r2);
    let r3 = s.apply(&net_plus_web3(), false).unwrap().revision;
    let Update::Network(n) = wait_for(&rx, 10, |u| matches!(u, Update::Network(_))) else {
        unreachable!()
    };
    assert_eq!(n.revision, r3);
}

/// SPEC 11.3: a host registered with a lease is alive for every watcher; when its
/// switch goes away (no more keep-alives) it is gone after the TTL; back when it
/// registers again.
#[test]
fn a_lease_keeps_a_host_alive_and_its_expiry_is_seen() {
    let c = EtcdCluster::start(3);
    let watcher = connect(&c);
    let (tx, rx) = mpsc::channel();
    watcher.watch(tx).unwrap();
    let none = BTreeSet::new();
    wait_for(&rx, 5, |u| matches!(u, Update::Alive(a) if *a == none));
    let h1 = connect(&c);
    h1.register_host("h1", Duration::from_secs(1)).unwrap();
    let one: BTreeSet<String> = ["h1".to_string()].into();
    wait_for(&rx, 5, |u| matches!(u, Update::Alive(a) if *a == one));
    // kept alive well past the TTL
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        h1.stats
            .lease_renewals
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    let stray: Vec<Update> = rx.try_iter().collect();
    assert!(
        !stray
            .iter()
            .any(|u| matches!(u, Update::Alive(a) if a.is_empty())),
        "h1 lost its lease while alive: {stray:?}"
    );
    let t0 = Instant::now();
    drop(h1);
    wait_for(&rx, 10, |u| matches!(u, Update::Alive(a) if a.is_empty()));
    // expired after about the TTL (etcd's granularity is coarse: a wide bound)
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    let h1 = connect(&c);
    h1.register_host("h1", Duration::from_secs(1)).unwrap();
    wait_for(&rx, 5, |u| matches!(u, Update::Alive(a) if *a == one));
}

/// SPEC 11.3, a clean stop: `leave` revokes the host's lease, so watchers see the host
/// gone at once, long before its TTL; the lease is not granted again afterwards; and a
/// watch wakes whoever waits on it (`watch_waking`) with each update.
#[test]
fn a_host_that_leaves_is_gone_at_once_not_after_its_ttl() {
    let c = EtcdCluster::start(3);
    let watcher = connect(&c);
    let (tx, rx) = mpsc::channel();
    let woken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    watcher
        .watch_waking(tx, {
            let woken = woken.clone();
            move || {
                woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .unwrap();
    let h1 = connect(&c);
    h1.register_host("h1", Duration::from_secs(30)).unwrap();
    let one: BTreeSet<String> = ["h1".to_string()].into();
    wait_for(&rx, 5, |u| matches!(u, Update::Alive(a) if *a == one));
    assert!(
        woken.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the watch woke its listener for each update"
    );
    let t0 = Instant::now();
    h1.leave(Duration::from_secs(1)).expect("lease revoked");
    wait_for(&rx, 10, |u| matches!(u, Update::Alive(a) if a.is_empty()));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "gone at once, not after the 30 s TTL: {:?}",
        t0.elapsed()
    );
    // no new registration follows (the keep-alive loop ended)
    std::thread::sleep(Duration::from_secs(2));
    let later: Vec<Update> = rx.try_iter().collect();
    assert!(
        !later
            .iter()
            .any(|u| matches!(u, Update::Alive(a) if !a.is_empty())),
        "h1 came back after leaving: {later:?}"
    );
    // leaving twice, or without a registration, is nothing
    h1.leave(Duration::from_secs(1)).unwrap();
    connect(&c).leave(Duration::from_secs(1)).unwrap();
}

/// SPEC 11.4: a published VIP owner reaches every watcher with the store revision that
/// set it; a later claim has a higher revision (the store's order, not a clock); a
/// watcher started later gets the latest owner at once.
#[test]
fn vip_owners_are_published_and_ordered_by_the_store() {
    let c = EtcdCluster::start(3);
    let (a, b) = (connect(&c), connect(&c));
    let (tx, rx) = mpsc::channel();
    b.watch(tx).unwrap();
    let owner = |u: &Update, port: &str| match u {
        Update::VipOwners(m) => m.get("vip").is_some_and(|o| o.port == port),
        _ => false,
    };
    a.publish_vip_owner("vip", "web1", "h1").unwrap();
    let Update::VipOwners(m) = wait_for(&rx, 5, |u| owner(u, "web1")) else {
        unreachable!()
    };
    let first = m["vip"].clone();
    assert_eq!((first.host.as_str(), first.revision > 0), ("h1", true));
    b.publish_vip_owner("vip", "web2", "h2").unwrap();
    let Update::VipOwners(m) = wait_for(&rx, 5, |u| owner(u, "web2")) else {
        unreachable!()
    };
    assert!(m["vip"].revision > first.revision, "{m:?}");
    let (tx, rx2) = mpsc::channel();
    let late = connect(&c);
    late.watch(tx).unwrap();
    wait_for(&rx2, 5, |u| owner(u, "web2"));
    assert!(
        a.stats
            .vip_publications
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    );
}
