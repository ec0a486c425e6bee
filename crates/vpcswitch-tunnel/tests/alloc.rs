//! Zero allocations per packet (needs root: namespaces and the raw socket): every
//! send path (`push` + `flush`, `send_burst`, `send_train` with GSO) and receive path (with GRO) (`recv_burst`,
//! `recv_bufs`) runs a thousand times under a counting allocator (`stats_alloc`, so no
//! `unsafe` here) after one warm-up pass, and the count of allocations must stay 0.
//! One test in this binary, so no other test allocates meanwhile.

mod common;
use common::*;

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vpcswitch_backend::{Pool, QueuePools, LARGE_BUF_SIZE};
use vpcswitch_tunnel::{Tunnel, TxFrame};
use vpcswitch_wire::build::{self, Ends};
use vpcswitch_wire::vxlan::source_port;
use vpcswitch_wire::MacAddr;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FRAMES: usize = 16;

/// Receives until `want` frames came (with either receive path) or the tries run out;
/// how many came. Allocates nothing: the sleep is a system call, the vectors have room.
fn receive(
    tb: &mut Tunnel,
    bufs: &mut vpcswitch_backend::WorkerBufs,
    out: &mut Vec<vpcswitch_backend::PacketBuf>,
    meta: &mut Vec<vpcswitch_tunnel::RxMeta>,
    want: usize,
    into_bufs: bool,
) -> usize {
    let mut got = 0;
    for _ in 0..2000 {
        if got >= want {
            break;
        }
        if into_bufs {
            got += tb.recv_bufs(bufs, out, meta, 32);
            while let Some(b) = out.pop() {
                bufs.free(b);
            }
            meta.clear();
        } else {
            got += tb.recv_burst().count();
        }
        if got < want {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    got
}

#[test]
fn sending_and_receiving_allocate_nothing_per_packet() {
    let u = Underlay::new("al");
    let (mut ta, mut tb) = u.open_pair();
    let (_, eb) = u.endpoints();
    let pools = QueuePools {
        small: Pool::new(512),
        large: Pool::with_size(64, LARGE_BUF_SIZE),
    };
    let mut bufs = pools.bufs();
    let (mut out, mut meta) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let frames: Vec<Vec<u8>> = (0..FRAMES as u16)
        .map(|i| {
            let ends = Ends {
                dst: MacAddr([2, 0, 0, 0, 0, 2]),
                src: MacAddr([2, 0, 0, 0, 0, 1]),
                sip: std::net::Ipv4Addr::new(10, 0, 0, 1),
                dip: std::net::Ipv4Addr::new(10, 0, 0, 2),
            };
            build::udp(ends, 64, 30_000 + i, 80, &[7u8; 100])
        })
        .collect();
    let mut pass = |ta: &mut Tunnel, tb: &mut Tunnel, round: usize| -> usize {
        let mut got = 0;
        if round % 3 == 2 {
            // one flow's train: every frame the same length, as a super-frame's segments
            let first = &frames[0];
            let sport = ta.source_port(first);
            ta.send_train(eb, 42, sport, FRAMES, first.len(), |_, out| {
                out.get_mut(..first.len())?.copy_from_slice(first);
                Some(first.len())
            });
        } else if round.is_multiple_of(2) {
            for f in &frames {
                ta.push(eb, 42, source_port(f), f);
            }
            ta.flush();
        } else {
            ta.send_burst(frames.iter().map(|f| TxFrame {
                dst: eb,
                vni: 42,
                src_port: source_port(f),
                frame: f,
            }));
        }
        got += receive(tb, &mut bufs, &mut out, &mut meta, FRAMES, round % 4 < 2);
        got
    };
    // warm up: first-use paths of the kernel and the buffer caches
    for r in 0..4 {
        assert_eq!(pass(&mut ta, &mut tb, r), FRAMES, "warm-up pass {r}");
    }
    let region = Region::new(GLOBAL);
    let mut got = 0;
    for r in 0..1000 {
        got += pass(&mut ta, &mut tb, r);
    }
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "{change:?}"
    );
    // the passes did move the frames (a lost datagram is possible on a busy machine,
    // so not all of them are demanded)
    assert!(got > 900 * FRAMES, "only {got} frames received");
    let (s, r) = (ta.stats(), tb.stats());
    assert_eq!(s.tx_dropped(), 0, "{s:?}");
    assert_eq!(r.rx_dropped(), 0, "{r:?}");
}
