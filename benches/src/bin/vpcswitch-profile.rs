//! Runs one pipeline path in a loop, for profilers (callgrind counts instructions; this
//! VM has no PMU): `valgrind --tool=callgrind target/release/vpcswitch-profile l2 100000`.
//! Any pps scenario by name (`l2`, `l2_v6`, `nd`, ...) or a dual-stack twin
//! (`vip-steer_v6`); the frame is copied into the buffer each time, as a NIC writes it.

use std::hint::black_box;

use vpcswitch_benches::{dual_stack_frames, frames, snapshot, Scenario};
use vpcswitch_core::{Ctx, NoTrace};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("l2", |s| s.as_str());
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // the pps scenarios, and the dual-stack twins (`vip-steer_v6` is only there)
    let picked = Scenario::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .map(|s| frames(s)[0].clone())
        .or_else(|| {
            dual_stack_frames()
                .into_iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, p, f)| (p, f))
        });
    let Some((port, frame)) = picked else {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        eprintln!(
            "error: unknown path {name:?}; one of {} (and vip-steer_v6)",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let snap = snapshot(0);
    let pid = snap.port_id(port).unwrap_or(0);
    let mut buf = vec![0u8; 2048];
    let ctx = Ctx::at(1);
    let n_bytes = frame.len();
    let t = std::time::Instant::now();
    for _ in 0..n {
        buf[..n_bytes].copy_from_slice(&frame);
        let mut len = n_bytes;
        black_box(snap.process(&ctx, pid, black_box(&mut buf), &mut len, &mut NoTrace));
    }
    let el = t.elapsed();
    println!(
        "{name}: {:.1} ns/packet over {n} packets",
        el.as_nanos() as f64 / n as f64
    );
}
