//! Frames the kernel drops before the switch reads them are counted, not lost silently
//! (needs root: a veth pair). A packet socket that is not polled fills up; the frames
//! beyond its buffer are the kernel's drops, which `take_rx_drops` reports as
//! `overrun` (the runtime's `rx_overrun`): every frame sent is either received or
//! counted. The buffer holds far more than the default socket's three 64 KiB
//! super-frames.

use std::process::Command;
use std::time::Duration;

use vpcswitch_backend::{Backend, Pool, QueuePools, LARGE_BUF_SIZE};
use vpcswitch_packet::PacketBackend;

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

/// The veth pair, deleted when dropped (also when the test fails).
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        sh(&format!("ip link del {}a 2>/dev/null", self.0));
    }
}

#[test]
fn frames_the_kernel_drops_for_a_full_socket_are_counted() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (it makes a veth pair): run the suite as root"
    );
    let v = Veth(format!("vso{}", std::process::id() % 100_000));
    assert!(
        sh(&format!(
            "ip link add {0}a type veth peer name {0}b && sysctl -qw net.ipv6.conf.{0}a.disable_ipv6=1 net.ipv6.conf.{0}b.disable_ipv6=1 && ip link set {0}a up && ip link set {0}b up",
            v.0
        )),
        "cannot make veth {}a/{}b (iproute2?)",
        v.0,
        v.0
    );
    let pools = QueuePools {
        small: Pool::new(8192),
        large: Pool::with_size(16, LARGE_BUF_SIZE),
    };
    let mem = [pools.mem()];
    let mut bufs = pools.bufs();
    let mut rx = PacketBackend::new(&format!("{}a", v.0));
    let mut tx = PacketBackend::new(&format!("{}b", v.0));
    let mut rq = rx.queues(&mem).expect("packet socket on a").remove(0);
    let mut tq = tx.queues(&mem).expect("packet socket on b").remove(0);
    // a stale count (the interface's own traffic since open) is read first
    std::thread::sleep(Duration::from_millis(150));
    let _ = rq.take_rx_drops();
    let frame: Vec<u8> = [0x02, 0, 0, 0, 0, 0xa, 0x02, 0, 0, 0, 0, 0xb, 0x88, 0xb5]
        .into_iter()
        .chain(std::iter::repeat_n(7u8, 1400))
        .collect();
    let mut sent = 0;
    let mut batch = Vec::with_capacity(64);
    // ~10 MiB of socket memory (1400-byte frames cost ~2.3 KiB each): more than the
    // socket's 4 MiB
    for _ in 0..80 {
        for _ in 0..64 {
            let mut b = bufs.alloc().expect("buffer");
            b.fill(&frame);
            batch.push(b);
        }
        sent += tq.tx_burst(&mut bufs, &mut batch).sent;
    }
    assert!(sent > 3000, "the kernel took only {sent} frames");
    std::thread::sleep(Duration::from_millis(150));
    let overrun = rq.take_rx_drops().overrun;
    let mut got = 0;
    let mut out = Vec::with_capacity(64);
    loop {
        // only this test's frames (nothing else should come: IPv6 is off)
        if rq.rx_burst(&mut bufs, &mut out, 64) == 0 {
            break;
        }
        for b in out.drain(..) {
            got += usize::from(b.frame() == frame.as_slice());
            bufs.free(b);
        }
    }
    assert!(
        overrun > 0,
        "{sent} sent, {got} received, none counted as dropped"
    );
    assert!(
        got > 1000,
        "the socket's buffer held only {got} frames (4 MiB asked)"
    );
    assert_eq!(
        got as u64 + overrun,
        sent as u64,
        "every frame is received or counted"
    );
}
