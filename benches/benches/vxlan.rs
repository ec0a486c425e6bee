//! ns per packet for VXLAN (bursts of 32, 64-byte inner frames).
//!
//! * `vxlan/encap`: what the send path does per frame before the kernel: the UDP
//!   source port from the flow hash and the 36 outer header bytes (IPv4 with its
//!   checksum, UDP, VXLAN) written into a header slot (`Tunnel::send_burst`: the frame
//!   itself is not copied).
//! * `vxlan/source_port`, `vxlan/emit`: the two parts of `encap` apart.
//! * `vxlan/encap_copy`: the same plus copying the frame behind its headers into a
//!   send slot (`Tunnel::push`).
//! * `vxlan/decap`: the receive path's check of a datagram: the VXLAN header and the
//!   inner frame's Ethernet header.
//! * `loopback/*` (root: a raw socket): a burst of 32 sent from one `Tunnel` to another
//!   over the loopback device and received again, per packet: the whole kernel path
//!   of the underlay on one core (both ends on the same thread, so the two sides'
//!   costs add). `raw_sendmmsg` is the `Tunnel`'s own send (raw IPv4 socket, headers
//!   written by the switch); `udp_sendmmsg` sends the same VXLAN payloads on an
//!   ordinary UDP socket (the kernel writes IPv4 and UDP), for the comparison in
//!   docs/architecture.md. Without root they are left out, and say so.
//!
//! `cargo bench -p vpcswitch-benches --bench vxlan`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vpcswitch_backend::sys::SendBatch;
use vpcswitch_benches::{frame_array, Scenario, FRAME_LEN};
use vpcswitch_tunnel::{Tunnel, TunnelConfig, TxFrame};
use vpcswitch_wire::vxlan::{self, Outer, OUTER_HEADER_LEN, VXLAN_HEADER_LEN};

const BURST: usize = 32;

/// 32 frames of 32 flows (the L3 scenario's frame with its UDP source port varied).
fn burst() -> Vec<[u8; FRAME_LEN]> {
    let (_, f) = frame_array(Scenario::L3, 0);
    (0..BURST)
        .map(|i| {
            let mut g = f;
            g[34..36].copy_from_slice(&(20_000 + i as u16).to_be_bytes());
            g
        })
        .collect()
}

fn wire(c: &mut Criterion) {
    let frames = burst();
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(BURST as u64));
    let outer = Outer {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(192, 0, 2, 2),
        src_port: 0,
        dst_port: vxlan::VXLAN_PORT,
        vni: 42,
    };
    let mut hdrs = [[0u8; OUTER_HEADER_LEN]; BURST];
    g.bench_function("encap", |b| {
        b.iter(|| {
            for (i, (f, h)) in frames.iter().zip(hdrs.iter_mut()).enumerate() {
                let o = Outer {
                    src_port: vxlan::source_port(f),
                    ..outer
                };
                let _ = o.emit(i as u16 + 1, f.len(), h);
            }
            black_box(&hdrs);
        })
    });
    // the two parts of encap apart
    g.bench_function("source_port", |b| {
        b.iter(|| {
            let mut acc = 0u16;
            for f in &frames {
                acc ^= vxlan::source_port(black_box(f));
            }
            black_box(acc)
        })
    });
    g.bench_function("emit", |b| {
        b.iter(|| {
            for (i, (f, h)) in frames.iter().zip(hdrs.iter_mut()).enumerate() {
                let _ = black_box(outer).emit(i as u16 + 1, f.len(), h);
            }
            black_box(&hdrs);
        })
    });
    let slot = OUTER_HEADER_LEN + 1500;
    let mut slots = vec![0u8; slot * BURST];
    g.bench_function("encap_copy", |b| {
        b.iter(|| {
            for (i, (f, s)) in frames.iter().zip(slots.chunks_exact_mut(slot)).enumerate() {
                let o = Outer {
                    src_port: vxlan::source_port(f),
                    ..outer
                };
                let (h, body) = s.split_at_mut(OUTER_HEADER_LEN);
                if let Ok(h) = <&mut [u8; OUTER_HEADER_LEN]>::try_from(h) {
                    let _ = o.emit(i as u16 + 1, f.len(), h);
                }
                body[..f.len()].copy_from_slice(f);
            }
            black_box(&slots);
        })
    });
    // received datagrams: a VXLAN header and the frame
    let datagrams: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut d = vec![0u8; VXLAN_HEADER_LEN];
            let _ = vxlan::emit_header(42, (&mut d[..]).try_into().expect("8 bytes"));
            d.extend_from_slice(f);
            d
        })
        .collect();
    g.bench_function("decap", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for d in &datagrams {
                if let Ok((vni, inner)) = vxlan::decap(black_box(d)) {
                    if inner.len() >= 14 {
                        acc = acc.wrapping_add(vni ^ u32::from(inner[13]));
                    }
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Receives until `want` more datagrams arrived at `rx` (or nothing came for a long
/// while: a loss must not hang the bench); how many came.
fn drain(rx: &mut Tunnel, want: usize) -> usize {
    let mut got = 0;
    let mut idle = 0;
    while got < want && idle < 100_000 {
        let n = rx.recv_burst().count();
        got += n;
        idle = if n == 0 { idle + 1 } else { 0 };
    }
    got
}

fn loopback(c: &mut Criterion) {
    if !is_root() {
        eprintln!("loopback/*: left out, the raw IPv4 send socket needs root (CAP_NET_RAW)");
        return;
    }
    let lo = Ipv4Addr::LOCALHOST;
    // ports the kernel chooses: nothing else on the machine is in the way
    let open = || Tunnel::open(TunnelConfig::with_mtu(lo, 0, 1550)).expect("tunnel on loopback");
    let (mut tx, mut rx) = (open(), open());
    let dst = rx.local();
    let frames = burst();
    let mut g = c.benchmark_group("loopback");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("raw_sendmmsg", |b| {
        b.iter(|| {
            let sent = tx.send_burst(frames.iter().map(|f| TxFrame {
                dst,
                vni: 42,
                src_port: vxlan::source_port(f),
                frame: f,
            }));
            black_box(drain(&mut rx, sent))
        })
    });
    let udp = UdpSocket::bind(SocketAddrV4::new(lo, 0)).expect("udp");
    udp.set_nonblocking(true).expect("nonblocking");
    let mut vx = [0u8; VXLAN_HEADER_LEN];
    vxlan::emit_header(42, &mut vx).expect("vni");
    g.bench_function("udp_sendmmsg", |b| {
        b.iter(|| {
            let mut batch = SendBatch::new();
            for f in &frames {
                batch.push(Some(dst), &vx, f);
            }
            let sent = batch.send(udp.as_raw_fd()).unwrap_or(0);
            black_box(drain(&mut rx, sent))
        })
    });
    g.finish();
    let (s, r) = (tx.stats(), rx.stats());
    eprintln!(
        "loopback: sent {} (dropped {}), received {} (dropped {}) in {} recvmmsg calls",
        s.tx_packets,
        s.tx_dropped(),
        r.rx_packets,
        r.rx_dropped(),
        r.rx_calls
    );
}

criterion_group!(benches, wire, loopback);
criterion_main!(benches);
