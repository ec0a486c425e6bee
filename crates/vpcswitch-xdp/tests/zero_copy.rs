//! AF_XDP on real veth pairs (needs root): a frame received on one AF_XDP port and sent
//! out of another of the same worker crosses in the buffer it was received into (the
//! worker's pool is every socket's UMEM), and arrives intact.
//!
//! The frames are raw Ethernet with a local experimental EtherType (0x88b5) on two veth
//! pairs of this test's own, with no addresses: nothing leaves them.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use vpcswitch_backend::sys::if_index;
use vpcswitch_backend::{Backend, PacketBuf, Pool, QueuePools, LARGE_BUF_SIZE};
use vpcswitch_packet::sys as packet;
use vpcswitch_xdp::{XdpBackend, XdpMode, FILL_DEPTH};

struct Veths(Vec<String>);
impl Drop for Veths {
    fn drop(&mut self) {
        for v in &self.0 {
            sh(&format!("ip link del {v} 2>/dev/null"));
        }
    }
}

fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0b, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x0a, 0x01]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = tag ^ i as u8;
    }
    f
}

#[test]
fn a_frame_crosses_between_two_af_xdp_ports_without_a_copy() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (veth pairs, AF_XDP, bpf)"
    );
    for mode in [XdpMode::Auto, XdpMode::Skb] {
        let t = format!("zc{}", std::process::id() % 100_000);
        let (a0, a1, b0, b1) = (
            format!("{t}a0"),
            format!("{t}a1"),
            format!("{t}b0"),
            format!("{t}b1"),
        );
        let _v = Veths(vec![a0.clone(), b0.clone()]);
        for (x, y) in [(&a0, &a1), (&b0, &b1)] {
            assert!(sh(&format!(
                "ip link add {x} type veth peer name {y} && ip link set {x} up && ip link set {y} up"
            )));
        }
        // one worker: both ports share its pool
        let pools = [QueuePools {
            small: Pool::new(4096),
            large: Pool::with_size(8, LARGE_BUF_SIZE),
        }];
        let mut pa = XdpBackend::new(&a0, 0, mode);
        let mut pb = XdpBackend::new(&b0, 0, mode);
        let mem: Vec<_> = pools.iter().map(QueuePools::mem).collect();
        // the worker's caches, lent to every call
        let mut bufs = pools[0].bufs();
        let mut qa = pa.queues(&mem).expect("AF_XDP on a0").remove(0);
        let mut qb = pb.queues(&mem).expect("AF_XDP on b0").remove(0);
        let send = packet::open_packet(if_index(&a1).expect("a1"), None).expect("packet a1");
        let recv = packet::open_packet(if_index(&b1).expect("b1"), None).expect("packet b1");
        let f = frame(7);
        let hdr = [0u8; 10];
        // the kernel may need a moment to set the XDP path up: resend until seen
        let mut got: Vec<PacketBuf> = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while got.is_empty() && Instant::now() < end {
            let _ = packet::send_batch(
                std::os::fd::AsRawFd::as_raw_fd(&send),
                std::iter::once((&hdr[..], &f[..])),
            );
            std::thread::sleep(Duration::from_millis(20));
            qa.rx_burst(&mut bufs, &mut got, 32);
        }
        assert!(!got.is_empty(), "{mode:?}: nothing received on {a0}");
        let b = got.remove(0);
        assert_eq!(b.frame(), &f[..], "{mode:?}: received intact");
        let (region, at) = b.region_offset().expect("received into a pool buffer");
        let (pool_region, _) = pools[0].small.umem().expect("the pool is a UMEM");
        assert!(
            std::sync::Arc::ptr_eq(region, pool_region),
            "{mode:?}: received straight into the worker's pool (no copy on receive)"
        );
        let sent = qb.tx_burst(&mut bufs, &mut vec![b]);
        assert_eq!(sent.sent, 1, "{mode:?}: {sent:?}");
        assert_eq!(pb.copied(), 0, "{mode:?}: sent without a copy");
        // and it arrives, intact, on the far side of b
        let mut h = [0u8; 10];
        let mut body = vec![0u8; 2048];
        let mut arrived = None;
        let end = Instant::now() + Duration::from_secs(5);
        while arrived.is_none() && Instant::now() < end {
            qb.rx_burst(&mut bufs, &mut Vec::new(), 32); // completions, kicks
            match packet::recv_packet(std::os::fd::AsRawFd::as_raw_fd(&recv), &mut h, &mut body) {
                Ok((n, _)) if n >= 10 && body[12..14] == [0x88, 0xb5] => {
                    arrived = Some(body[..n - 10].to_vec())
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(
            arrived.as_deref(),
            Some(&f[..]),
            "{mode:?}: arrived on {b1}"
        );
        assert_eq!(
            (at - vpcswitch_backend::UMEM_HEADROOM) % vpcswitch_backend::UMEM_STRIDE,
            0,
            "the UMEM layout: a buffer's first byte"
        );
        // a frame from outside the pool (a heap buffer) is copied, and counted
        let r = qb.tx_burst(&mut bufs, &mut vec![PacketBuf::unpooled(&frame(8))]);
        assert_eq!(
            (r.sent, pb.copied()),
            (1, 1),
            "{mode:?}: the copy path is counted"
        );
        // The per-socket bound (the ownership rule's one exception): once the kernel has
        // completed what was sent, each socket holds at most its fill ring's FILL_DEPTH
        // buffers (at least FILL_DEPTH - 31: it refills in batches of 32, and a frame
        // the host's stack sends on the veth meanwhile takes one), and everything else
        // is in the pool or the worker's cache.
        got.clear();
        let size = pools[0].small.size();
        let outside = |bufs: &vpcswitch_backend::WorkerBufs| {
            size - pools[0].small.available() - bufs.held().0
        };
        let (lo, hi) = (2 * (FILL_DEPTH as usize - 31), 2 * FILL_DEPTH as usize);
        let end = Instant::now() + Duration::from_secs(5);
        while !(lo..=hi).contains(&outside(&bufs)) && Instant::now() < end {
            qa.rx_burst(&mut bufs, &mut Vec::new(), 32);
            qb.rx_burst(&mut bufs, &mut Vec::new(), 32);
            std::thread::sleep(Duration::from_millis(5));
        }
        let held = outside(&bufs);
        assert!(
            (lo..=hi).contains(&held),
            "{mode:?}: two idle sockets hold their fill rings' buffers, no more: {held} not in {lo}..={hi}"
        );
    }
}
