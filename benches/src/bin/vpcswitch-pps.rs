//! The pps harness: the whole runtime (workers, queues, pipeline, buffer recycling) on
//! generator ports, per scenario, with 1 and 2 workers. A counting allocator shows the
//! allocations made while traffic flows.
//!
//! `cargo run --release -p vpcswitch-benches --bin vpcswitch-pps -- [--secs N] [--smoke]`
//!
//! Each scenario has two generator ports sending 64-byte frames at each other as fast
//! as the workers take them (a generator queue produces a burst when polled, like a
//! NIC's rx ring that is always full), so the figure is the switch's own cost per
//! packet: rx (a 64-byte copy into a pooled buffer), pipeline, tx, recycle.

use std::alloc::System;
use std::time::{Duration, Instant};

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use vpcswitch_backend::memory::GenPort;
use vpcswitch_backend::Backend;
use vpcswitch_benches::{config, frames, Scenario};
use vpcswitch_runtime::{Backends, Switch};

/// Counts every allocation in the process (the `stats_alloc` crate, so no `unsafe`
/// lives here).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocs() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

struct Row {
    scenario: &'static str,
    workers: usize,
    mpps: f64,
    ns_per_packet: f64,
    allocs_per_packet: f64,
}

fn run(s: Scenario, workers: usize, secs: f64) -> Row {
    let mut cfg = config(workers, 0);
    cfg.switch.pin_workers = true;
    let fr = frames(s);
    let mut backends: Backends = Vec::new();
    let mut counters = Vec::new();
    let mut names: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
    names.extend(cfg.uplink.as_ref().map(|u| u.name.as_str()));
    for n in names {
        let mine: Vec<Vec<u8>> = fr
            .iter()
            .filter(|(p, _)| *p == n)
            .map(|(_, f)| f.clone())
            .collect();
        let (g, c) = GenPort::new(mine, 1024);
        backends.push((n.to_string(), Box::new(g) as Box<dyn Backend>));
        counters.push(c);
    }
    let sw = Switch::start(&cfg, backends).unwrap_or_else(|e| panic!("{e}"));
    sw.snapshot().set_vip_owner("vip", "v2", 1);
    // warm-up
    std::thread::sleep(Duration::from_millis(200));
    // frames sent before the VIP's owner was set may be dropped: only the measured
    // window must be drop-free
    let drops0 = sw.stats().drops;
    let d0: u64 = counters.iter().map(|c| c.delivered()).sum();
    let a0 = allocs();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let d1: u64 = counters.iter().map(|c| c.delivered()).sum();
    let a1 = allocs();
    let el = t0.elapsed().as_secs_f64();
    let stats = sw.stats();
    sw.stop();
    let pk = (d1 - d0).max(1) as f64;
    assert!(
        stats.drops == drops0,
        "{} dropped frames while measured: {:?} (before: {:?})",
        s.name(),
        stats.drops,
        drops0
    );
    Row {
        scenario: s.name(),
        workers,
        mpps: pk / el / 1e6,
        ns_per_packet: el * 1e9 * workers as f64 / pk,
        allocs_per_packet: (a1 - a0) as f64 / pk,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut secs = if smoke { 0.2 } else { 3.0 };
    if let Some(i) = args.iter().position(|a| a == "--secs") {
        match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => secs = v,
            None => {
                eprintln!("error: --secs needs a number of seconds");
                std::process::exit(2);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("vpcswitch pps harness: 64-byte frames, bursts of 32, {secs} s per run, {cores} CPUs");
    println!(
        "{:<10} {:>7} {:>9} {:>12} {:>13}",
        "scenario", "workers", "Mpps", "ns/packet", "allocs/pkt"
    );
    let mut rows = Vec::new();
    for s in Scenario::ALL {
        for w in [1usize, 2] {
            let r = run(s, w, secs);
            println!(
                "{:<10} {:>7} {:>9.2} {:>12.1} {:>13.6}",
                r.scenario, r.workers, r.mpps, r.ns_per_packet, r.allocs_per_packet
            );
            rows.push(r);
        }
    }
    println!("\nscaling, 2 workers / 1 worker:");
    for s in Scenario::ALL {
        let one = rows
            .iter()
            .find(|r| r.scenario == s.name() && r.workers == 1);
        let two = rows
            .iter()
            .find(|r| r.scenario == s.name() && r.workers == 2);
        if let (Some(a), Some(b)) = (one, two) {
            println!("  {:<10} {:.2}x", s.name(), b.mpps / a.mpps);
        }
    }
    let worst = rows.iter().map(|r| r.allocs_per_packet).fold(0.0, f64::max);
    println!("\nallocations per packet (worst run): {worst:.6}");
    if worst > 0.001 {
        eprintln!("error: the hot path allocates");
        std::process::exit(1);
    }
}
