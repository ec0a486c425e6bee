//! TAPs in another network namespace (issue 22, ports that outlive the process; needs
//! root): `sys::in_netns` always returns the calling thread to its own namespace, also
//! when the inner call fails or the namespace is missing; a [`TapBackend::in_netns`]
//! device is made there, not in the caller's namespace, stays after its queues close
//! (persistent), is attached to again, and [`vpcswitch_tap::delete_tap_in`] deletes it.
//! The namespace (and anything left in it) is removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use vpcswitch_backend::{Backend, Pool, QueuePools, LARGE_BUF_SIZE};
use vpcswitch_tap::{delete_tap_in, exists_in, sys, TapBackend};

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn own_ns() -> PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").expect("own namespace")
}

#[test]
fn in_netns_always_returns_and_a_netns_tap_is_persistent_there() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (a namespace, TAPs)"
    );
    let ns = Ns(format!("vsn{}", std::process::id() % 100_000));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .expect("ip")
        .success());
    let path = Path::new("/var/run/netns").join(&ns.0);
    let me = own_ns();

    // missing namespace: NotFound, still at home
    let e = sys::in_netns(Path::new("/var/run/netns/vs-no-such-ns"), || ()).expect_err("missing");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(own_ns(), me);
    // a failing inner call: back home all the same
    let inner = sys::in_netns(&path, || {
        let there = own_ns();
        Err::<(), _>(there)
    })
    .expect("entered and left");
    assert_ne!(
        inner.expect_err("inner error"),
        me,
        "it ran in the other namespace"
    );
    assert_eq!(own_ns(), me, "and the thread came back");

    // a TAP in that namespace: made there, persistent, attached again, deleted
    let ifn = format!("vsnt{}", std::process::id() % 100_000);
    let pools = QueuePools {
        small: Pool::new(64),
        large: Pool::with_size(8, LARGE_BUF_SIZE),
    };
    let mem = [pools.mem(), pools.mem()];
    let mut b = TapBackend::new(&ifn).in_netns(&ns.0, &path);
    assert!(b.describe().contains(&format!("netns {}", ns.0)));
    let q = b.queues(&mem).expect("TAP in the namespace");
    assert_eq!(q.len(), 2);
    assert_eq!(own_ns(), me, "the caller's thread never moved");
    assert!(
        exists_in(&ifn, &path).expect("look"),
        "made in the namespace"
    );
    assert!(
        vpcswitch_backend::sys::if_index(&ifn).is_err(),
        "not in the caller's namespace"
    );
    drop(q);
    assert!(
        exists_in(&ifn, &path).expect("look"),
        "persistent: stays after close"
    );
    let mut again = TapBackend::new(&ifn).in_netns(&ns.0, &path);
    let q = again.queues(&mem).expect("attached again");
    // deleting while a holder has it: gone when the holder lets go
    assert!(delete_tap_in(&ifn, &path).expect("delete"));
    assert!(exists_in(&ifn, &path).expect("look"), "held still");
    drop(q);
    assert!(!exists_in(&ifn, &path).expect("look"), "deleted");
    assert!(!delete_tap_in(&ifn, &path).expect("nothing to delete"));

    // a missing namespace through the backend: a clear error
    let mut none = TapBackend::new(&ifn).in_netns("vs-no-such-ns", "/var/run/netns/vs-no-such-ns");
    let e = none.queues(&mem).err().expect("refused").to_string();
    assert!(
        e.contains("network namespace vs-no-such-ns not found (/var/run/netns/vs-no-such-ns): create it with ip netns add vs-no-such-ns, or remove netns"),
        "{e}"
    );
    assert!(
        vpcswitch_backend::sys::if_index(&ifn).is_err(),
        "no stand-in in the caller's namespace"
    );
}
