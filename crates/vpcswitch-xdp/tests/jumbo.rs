//! Multi-buffer AF_XDP on real veth pairs (needs root; the guest test needs `ip`,
//! `ping`, `iperf3` and `ethtool`): frames longer than a UMEM buffer arrive in several
//! descriptors (`XDP_PKT_CONTD`), are handed over whole, and are sent as several
//! descriptors; a frame longer than [`MAX_FRAME`] is dropped and counted, never
//! truncated, and leaks no UMEM buffer.
//!
//! The raw frames use a local experimental EtherType (0x88b5) on veth pairs of this
//! test's own with no addresses; the guests are network namespaces of this test's own
//! with addresses in 10.77.0.0/24: nothing leaves them.

mod common;
use common::*;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch_backend::sys::if_index;
use vpcswitch_backend::{
    Backend, PacketBuf, Pool, PortQueue, QueuePools, WorkerBufs, LARGE_BUF_SIZE,
};
use vpcswitch_packet::sys as packet;
use vpcswitch_xdp::{XdpBackend, XdpMode, FILL_DEPTH, MAX_FRAGS, MAX_FRAME};

/// Devices, namespaces and processes of one test, removed when it ends.
#[derive(Default)]
struct Guard {
    links: Vec<String>,
    netns: Vec<String>,
    procs: Vec<Child>,
}
impl Drop for Guard {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for l in &self.links {
            sh(&format!("ip link del {l} 2>/dev/null"));
        }
        for n in &self.netns {
            sh(&format!("ip netns del {n} 2>/dev/null"));
        }
    }
}

fn pools() -> [QueuePools; 1] {
    [QueuePools {
        small: Pool::new(8192),
        // as the runtime's default: a burst of 32 long frames takes 32
        large: Pool::with_size(256, LARGE_BUF_SIZE),
    }]
}

/// A raw frame of `len` bytes with a pattern that shows any byte out of place.
fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0b, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x0a, 0x01]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14] = tag;
    for (i, b) in f[15..].iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ tag;
    }
    f
}

/// Buffers of the worker's pool that are neither free nor in its cache.
fn outside(p: &QueuePools, bufs: &WorkerBufs) -> usize {
    p.small.size() - p.small.available() - bufs.held().0
}

#[test]
fn long_frames_cross_as_several_descriptors_and_too_long_ones_are_counted() {
    require_root();
    let t = format!("jb{}", std::process::id() % 100_000);
    let (a0, a1, b0, b1) = (
        format!("{t}a0"),
        format!("{t}a1"),
        format!("{t}b0"),
        format!("{t}b1"),
    );
    let mut g = Guard::default();
    for (x, y) in [(&a0, &a1), (&b0, &b1)] {
        assert!(sh(&format!(
            "ip link add {x} type veth peer name {y} && ip link set {x} mtu 40000 up && ip link set {y} mtu 40000 up"
        )));
        g.links.push(x.clone());
    }
    let pools = pools();
    let mem: Vec<_> = pools.iter().map(QueuePools::mem).collect();
    let mut bufs = pools[0].bufs();
    let mut pa = XdpBackend::new(&a0, 0, XdpMode::Auto);
    let mut pb = XdpBackend::new(&b0, 0, XdpMode::Auto);
    let mut qa = pa.queues(&mem).expect("AF_XDP on a0").remove(0);
    let mut qb = pb.queues(&mem).expect("AF_XDP on b0").remove(0);
    assert!(
        pa.describe().contains("multi-buffer"),
        "this kernel (6.18) takes XDP_USE_SG: {}",
        pa.describe()
    );
    assert_eq!(
        pb.max_frame(),
        MAX_FRAME,
        "MTU 40000 is past what AF_XDP carries"
    );
    let send = packet::open_packet(if_index(&a1).expect("a1"), None).expect("packet a1");
    let recv = packet::open_packet(if_index(&b1).expect("b1"), None).expect("packet b1");
    let hdr = [0u8; 10];
    let push = |f: &[u8]| {
        packet::send_batch(
            std::os::fd::AsRawFd::as_raw_fd(&send),
            std::iter::once((&hdr[..], f)),
        )
        .expect("send on a1");
    };

    // 1. in: a frame in one descriptor, one in five, one in exactly MAX_FRAGS, and one
    // in MAX_FRAGS + 2 (refused, counted)
    let sizes = [1000, 9014, MAX_FRAME, MAX_FRAME + 3000];
    let mut got: Vec<PacketBuf> = Vec::new();
    // the kernel may need a moment to set the XDP path up: resend the first until seen
    let end = Instant::now() + Duration::from_secs(5);
    while got.is_empty() && Instant::now() < end {
        push(&frame(sizes[0], 0));
        std::thread::sleep(Duration::from_millis(20));
        qa.rx_burst(&mut bufs, &mut got, 32);
    }
    assert!(!got.is_empty(), "nothing received on {a0}");
    got.clear();
    for (k, &n) in sizes.iter().enumerate() {
        push(&frame(n, k as u8 + 1));
    }
    let mut refused = vpcswitch_backend::RxDrops::default();
    let end = Instant::now() + Duration::from_secs(5);
    // ours only (the host may send IPv6 solicitations on a1; a late first frame)
    let ours =
        |b: &PacketBuf| b.len() > 14 && b.frame()[12..14] == [0x88, 0xb5] && b.frame()[14] != 0;
    while got.len() < 3 && Instant::now() < end {
        qa.rx_burst(&mut bufs, &mut got, 32);
        got.retain(ours);
        let d = qa.take_rx_drops();
        refused.too_long += d.too_long;
        refused.malformed += d.malformed;
        std::thread::sleep(Duration::from_millis(5));
    }
    // the refused one may be read after the last accepted one
    for _ in 0..20 {
        qa.rx_burst(&mut bufs, &mut got, 32);
        got.retain(ours);
        refused.too_long += qa.take_rx_drops().too_long;
    }
    let got_sizes: Vec<usize> = got.iter().map(PacketBuf::len).collect();
    assert_eq!(
        got_sizes,
        [1000, 9014, MAX_FRAME],
        "whole, in order, none cut"
    );
    for (k, b) in got.iter().enumerate() {
        assert_eq!(
            b.frame(),
            &frame(sizes[k], k as u8 + 1)[..],
            "frame {k} intact"
        );
    }
    assert_eq!(
        refused.too_long,
        1,
        "the frame in {} descriptors is dropped and counted",
        (MAX_FRAME + 3000).div_ceil(2048)
    );
    assert_eq!(
        pa.reassembled(),
        2,
        "two frames came in several descriptors"
    );
    const _: () = assert!(MAX_FRAGS == 16);

    // 2. out: the same frames sent on b0 as several descriptors arrive whole on b1
    let copied_before = pb.copied();
    let r = qb.tx_burst(&mut bufs, &mut got);
    assert_eq!((r.sent, r.full, r.errors), (3, 0, 0), "{r:?}");
    assert_eq!(
        pb.copied() - copied_before,
        2,
        "the two long frames were cut into UMEM buffers (a copy each)"
    );
    let mut arrived: Vec<Vec<u8>> = Vec::new();
    let mut h = [0u8; 10];
    let mut body = vec![0u8; 65_536];
    let end = Instant::now() + Duration::from_secs(5);
    while arrived.len() < 3 && Instant::now() < end {
        qb.rx_burst(&mut bufs, &mut Vec::new(), 32); // completions, kicks
        match packet::recv_packet(std::os::fd::AsRawFd::as_raw_fd(&recv), &mut h, &mut body) {
            Ok((n, _)) if n >= 24 && body[12..14] == [0x88, 0xb5] && body[14] != 0 => {
                arrived.push(body[..n - 10].to_vec())
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let arrived_sizes: Vec<usize> = arrived.iter().map(Vec::len).collect();
    assert_eq!(arrived_sizes, [1000, 9014, MAX_FRAME], "arrived on {b1}");
    for (k, f) in arrived.iter().enumerate() {
        assert_eq!(f, &frame(sizes[k], k as u8 + 1), "frame {k} arrived intact");
    }
    // a frame longer than the port takes is refused by the queue itself, not cut
    let r = qb.tx_burst(
        &mut bufs,
        &mut vec![PacketBuf::unpooled(&frame(MAX_FRAME + 1, 9))],
    );
    assert_eq!((r.sent, r.errors), (0, 1), "{r:?}");

    // 3. nothing leaked: once the kernel has completed what was sent, the two sockets
    // hold their fill rings' buffers and no more (see zero_copy.rs for the bounds)
    let (lo, hi) = (2 * (FILL_DEPTH as usize - 31), 2 * FILL_DEPTH as usize);
    let end = Instant::now() + Duration::from_secs(5);
    while !(lo..=hi).contains(&outside(&pools[0], &bufs)) && Instant::now() < end {
        qa.rx_burst(&mut bufs, &mut Vec::new(), 32);
        qb.rx_burst(&mut bufs, &mut Vec::new(), 32);
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = outside(&pools[0], &bufs);
    assert!(
        (lo..=hi).contains(&held),
        "the refused frame's buffers went back: {held} out, not in {lo}..={hi}"
    );
    let large_out = pools[0].large.size() - pools[0].large.available() - bufs.held().1;
    assert_eq!(large_out, 0, "no large buffer kept");
}

/// Forwards frames between two queues both ways until `stop` (bounded by `limit`):
/// the switch's data path without the pipeline.
fn wire(
    mut qa: Box<dyn PortQueue>,
    mut qb: Box<dyn PortQueue>,
    mut bufs: WorkerBufs,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        let mut v = Vec::with_capacity(64);
        let (mut refused, mut errors) = (0, 0);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let mut n = 0;
            for dir in 0..2 {
                let (rx, tx) = if dir == 0 {
                    (&mut qa, &mut qb)
                } else {
                    (&mut qb, &mut qa)
                };
                n += rx.rx_burst(&mut bufs, &mut v, 32);
                let d = rx.take_rx_drops();
                refused += d.too_long + d.no_buffer + d.malformed;
                if !v.is_empty() {
                    // a full tx ring under TCP is allowed (the sender retransmits)
                    errors += tx.tx_burst(&mut bufs, &mut v).errors as u64;
                }
            }
            if n == 0 {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        (refused, errors)
    })
}

#[test]
fn guests_with_a_9000_mtu_ping_with_8000_bytes_and_run_tcp_through_af_xdp() {
    require_root();
    for tool in ["ip", "ping", "iperf3", "ethtool"] {
        assert!(
            sh(&format!("command -v {tool} >/dev/null")),
            "this test needs {tool}: apt-get install iproute2 iputils-ping iperf3 ethtool"
        );
    }
    let t = format!("jg{}", std::process::id() % 100_000);
    let mut g = Guard::default();
    let mtu = 9000;
    for (k, x) in ["a", "b"].iter().enumerate() {
        let (host, ns) = (format!("{t}{x}"), format!("{t}-{x}"));
        assert!(sh(&format!("ip netns add {ns}")));
        g.netns.push(ns.clone());
        assert!(sh(&format!(
            "ip link add {host} mtu {mtu} type veth peer name {host}p mtu {mtu} && ip link set {host}p netns {ns} && ip link set {host} up"
        )));
        g.links.push(host.clone());
        // offloads off: AF_XDP carries no checksum-offload metadata
        assert!(sh(&format!(
            "ip netns exec {ns} sh -c 'ip link set lo up; ip link set {host}p address 02:00:00:00:77:0{k} name eth0 && ip addr add 10.77.0.{}/24 dev eth0 && ip link set eth0 up && ethtool -K eth0 tx off tso off gso off >/dev/null'",
            k + 1
        )));
    }
    let pools = pools();
    let mem: Vec<_> = pools.iter().map(QueuePools::mem).collect();
    let mut pa = XdpBackend::new(&format!("{t}a"), 0, XdpMode::Auto);
    let mut pb = XdpBackend::new(&format!("{t}b"), 0, XdpMode::Auto);
    let qa = pa.queues(&mem).expect("AF_XDP on a").remove(0);
    let qb = pb.queues(&mem).expect("AF_XDP on b").remove(0);
    assert_eq!(
        pa.max_frame(),
        mtu + 14,
        "the interface's MTU bounds the frame"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = wire(
        qa,
        qb,
        pools[0].bufs(),
        stop.clone(),
        Duration::from_secs(60),
    );
    let ns = |x: &str| format!("{t}-{x}");
    // ping with DF: 8028-byte IP packets, 8042-byte frames in five descriptors
    let ping = Command::new("ip")
        .args(["netns", "exec", &ns("a")])
        .args([
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000", "-M", "do",
        ])
        .arg("10.77.0.2")
        .output()
        .expect("ping");
    let ping_out = String::from_utf8_lossy(&ping.stdout).to_string();
    // TCP for two seconds, full-size segments of 8960 bytes
    let server = Command::new("ip")
        .args(["netns", "exec", &ns("b")])
        .args(["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    g.procs.push(server);
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &ns("a")])
        .args(["iperf3", "-c", "10.77.0.2", "-p", "5201", "-t", "2", "-J"])
        .output()
        .expect("iperf3 -c");
    let iperf = String::from_utf8_lossy(&client.stdout).to_string();
    stop.store(true, Ordering::Relaxed);
    let (refused, errors) = w.join().expect("wire thread");

    assert!(
        ping.status.success() && ping_out.contains("3 received"),
        "ping -s 8000 -M do through AF_XDP: {ping_out}"
    );
    assert!(client.status.success(), "iperf3: {iperf}");
    // the receiver's byte count, from the JSON summary
    let received = iperf
        .split("\"sum_received\"")
        .nth(1)
        .and_then(|s| s.split("\"bytes\":").nth(1))
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(received > 1e6, "TCP carried {received} bytes: {iperf}");
    assert!(
        pa.reassembled() > 100 && pb.copied() > 100,
        "the segments crossed as multi-buffer frames: {} put together, {} cut",
        pa.reassembled(),
        pb.copied()
    );
    assert_eq!((refused, errors), (0, 0), "no frame refused, no send error");
}
