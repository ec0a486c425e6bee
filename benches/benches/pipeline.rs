//! ns per packet for parsing and for each pipeline path (bursts of 32, 64-byte frames).
//! Each iteration first copies the frame into each of the burst's 32 buffers (a fixed
//! 64-byte copy, as a NIC's DMA or a backend's rx would have written it), so rewriting
//! paths start from the same frame every time, then runs the burst through the
//! pipeline, as a worker does. (Copying each frame just before processing it, as
//! this bench did until session 5, makes every packet wait for its own copy's stores:
//! a cost no backend has, since rx fills the whole burst first.)
//!
//! `cargo bench -p vpcswitch-benches --bench pipeline`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smoltcp::wire::{EthernetFrame, Ipv4Packet};
use vpcswitch_benches::{frame_array, frames, snapshot_sized, Scenario, FRAME_LEN};
use vpcswitch_core::{Ctx, NoTrace};

const BURST: usize = 32;

fn parse(c: &mut Criterion) {
    let f = frames(Scenario::L3)[0].1.clone();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("vpcswitch_classify", |b| {
        b.iter(|| black_box(vpcswitch_wire::classify(black_box(&f))).is_ok())
    });
    g.bench_function("smoltcp_new_checked", |b| {
        b.iter(|| {
            let e = EthernetFrame::new_checked(black_box(&f[..])).ok()?;
            let p = Ipv4Packet::new_checked(e.payload()).ok()?;
            Some(black_box((
                p.src_addr(),
                p.dst_addr(),
                p.next_header(),
                p.hop_limit(),
            )))
        })
    });
    g.finish();
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));
    for (label, routes, ports) in [
        ("", 0usize, 0usize),
        ("_1k_routes", 1_000, 0),
        ("_100k_routes", 100_000, 0),
        ("_1k_ports", 0, 1_000),
        ("_100k_ports", 0, 100_000),
    ] {
        let snap = snapshot_sized(routes, ports);
        for (s, dir) in Scenario::ALL
            .into_iter()
            .map(|s| (s, 0))
            .chain([(Scenario::Eip, 1)])
        {
            // routes matter to L3; ports (MAC and host tables) to L2 and L3; the IPv6
            // paths are measured beside their IPv4 twins in `dual_stack`
            if matches!(s, Scenario::L2v6 | Scenario::L3v6 | Scenario::Nd)
                || (routes > 0 && s != Scenario::L3)
                || (ports > 0 && !matches!(s, Scenario::L2 | Scenario::L3))
            {
                continue;
            }
            let (port, frame) = frame_array(s, dir);
            let pid = snap.port_id(port).unwrap_or(0);
            let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; 2048]).collect();
            let ctx = Ctx::at(1);
            let dir_label = match (s, dir) {
                (Scenario::Eip, 0) => "_in",
                (Scenario::Eip, _) => "_out",
                _ => "",
            };
            g.bench_function(format!("{}{dir_label}{label}", s.name()), |b| {
                b.iter(|| {
                    // the burst arrives (as a backend's rx fills the buffers), then the
                    // worker runs it through the pipeline
                    for buf in bufs.iter_mut() {
                        buf[..FRAME_LEN].copy_from_slice(&frame);
                    }
                    for buf in bufs.iter_mut() {
                        let mut len = FRAME_LEN;
                        black_box(snap.process(&ctx, pid, buf, &mut len, &mut NoTrace));
                    }
                })
            });
        }
    }
    g.finish();
}

/// IPv6 paths beside their IPv4 twins, through the same loop (issue 20: "IPv6 within
/// 20% of IPv4 per packet"): each frame copied into the burst's buffers at its own
/// length, then the burst through the pipeline.
fn dual_stack(c: &mut Criterion) {
    let snap = vpcswitch_benches::snapshot(0);
    let ctx = Ctx::at(1);
    let mut g = c.benchmark_group("dual_stack");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, port, frame) in vpcswitch_benches::dual_stack_frames() {
        let pid = snap.port_id(port).unwrap_or(0);
        let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; 2048]).collect();
        let n = frame.len();
        // the path must be the one named: forwarded or answered, never dropped
        {
            let mut b = frame.clone();
            b.resize(2048, 0);
            let mut len = n;
            let v = snap.process(&ctx, pid, &mut b, &mut len, &mut NoTrace);
            assert!(!format!("{v:?}").contains("Drop"), "{name}: {v:?}");
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    buf[..n].copy_from_slice(&frame);
                }
                for buf in bufs.iter_mut() {
                    let mut len = n;
                    black_box(snap.process(&ctx, pid, buf, &mut len, &mut NoTrace));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, paths, dual_stack);
criterion_main!(benches);
