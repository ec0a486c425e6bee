//! The buffer ownership rule on real TAPs (needs root): idle queues hold none of the
//! worker's buffers, so many TAP ports on one worker cannot drain its large pool
//! (issue 15: with per-queue caches, 300 TAP ports on 2 workers left ports beyond ~32
//! per worker without receive buffers for good).
//!
//! The TAPs are made in a network namespace of this test's, by a thread that entered
//! it; no frame is sent. The namespace (and with it anything left) is removed at the end.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

use vpcswitch_backend::{Backend, Pool, QueuePools, LARGE_BUF_SIZE, LARGE_CACHE};
use vpcswitch_tap::{sys, TapBackend};

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn idle_tap_queues_hold_no_buffers_and_many_ports_share_one_large_pool() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (a namespace, TAPs)"
    );
    let ns = Ns(format!("vsb{}", std::process::id() % 100_000));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .expect("ip")
        .success());
    let nsfile = File::open(format!("/run/netns/{}", ns.0)).expect("netns");
    // one worker whose large pool is smaller than per-queue caches would take
    const PORTS: usize = 40;
    let pools = QueuePools {
        small: Pool::new(256),
        large: Pool::with_size(64, LARGE_BUF_SIZE),
    };
    let mem = [pools.mem()];
    let mut queues = std::thread::scope(|s| {
        s.spawn(|| {
            sys::enter_netns(nsfile.as_fd()).expect("setns");
            (0..PORTS)
                .map(|i| {
                    let mut b = TapBackend::new(&format!("vsbt{i}"));
                    b.queues(&mem).expect("TAP").remove(0)
                })
                .collect::<Vec<_>>()
        })
        .join()
        .expect("thread")
    });
    let mut bufs = pools.bufs();
    let mut out = Vec::new();
    for _ in 0..3 {
        for q in &mut queues {
            assert_eq!(q.rx_burst(&mut bufs, &mut out, 32), 0, "nothing was sent");
            assert!(
                q.accepts_offload(),
                "offload TAPs receive into large buffers"
            );
        }
    }
    let (_, held) = bufs.held();
    assert!(held <= LARGE_CACHE, "the worker's cache is bounded: {held}");
    assert_eq!(
        pools.large.available() + held,
        64,
        "every large buffer is in the pool or the worker's cache: {PORTS} idle TAP queues hold none"
    );
    // and the worker can still take a receive buffer for any port
    assert!(bufs.alloc_large().is_some());
}
