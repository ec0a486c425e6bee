//! Runs one pipeline path in a loop, for profilers (callgrind counts instructions; this
//! VM has no PMU): `valgrind --tool=callgrind target/release/vpcswitch-profile l2 100000`.

use std::hint::black_box;

use vpcswitch_benches::{frame_array, snapshot, Scenario, FRAME_LEN};
use vpcswitch_core::{Ctx, NoTrace};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("l2", |s| s.as_str());
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let Some(s) = Scenario::ALL.into_iter().find(|s| s.name() == name) else {
        eprintln!("error: unknown scenario {name:?}; one of l2, l3, peering, vip-steer, arp, eip");
        std::process::exit(2);
    };
    let snap = snapshot(0);
    let (port, frame) = frame_array(s, 0);
    let pid = snap.port_id(port).unwrap_or(0);
    let mut buf = vec![0u8; 2048];
    let ctx = Ctx::at(1);
    let t = std::time::Instant::now();
    for _ in 0..n {
        buf[..FRAME_LEN].copy_from_slice(&frame);
        let mut len = FRAME_LEN;
        black_box(snap.process(&ctx, pid, black_box(&mut buf), &mut len, &mut NoTrace));
    }
    let el = t.elapsed();
    println!(
        "{name}: {:.1} ns/packet over {n} packets",
        el.as_nanos() as f64 / n as f64
    );
}
