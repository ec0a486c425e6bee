//! The pps harness's runner, shared by `vpcswitch-pps` and `vpcswitch-bench`: the whole
//! runtime (workers, queues, pipeline, buffer recycling) on generator ports.
//!
//! Each scenario has two generator ports sending 64-byte frames at each other as fast
//! as the workers take them (a generator queue produces a burst when polled, like a
//! NIC's rx ring that is always full), so the figure is the switch's own cost per
//! packet: rx (a 64-byte copy into a pooled buffer), pipeline, tx, recycle.

use std::time::{Duration, Instant};

use vpcswitch_backend::memory::GenPort;
use vpcswitch_backend::Backend;
use vpcswitch_runtime::{Backends, Options, Switch};

use crate::{config_sized, frames, Scenario};

/// One measurement.
#[derive(Debug, Clone)]
pub struct Row {
    /// the pipeline path
    pub scenario: &'static str,
    /// worker threads
    pub workers: usize,
    /// extra (ports, routes) in the tables ((0, 0): the base topology, 7 ports)
    pub extra: (usize, usize),
    /// forwarded packets per second, millions
    pub mpps: f64,
    /// CPU time per packet over all workers, ns
    pub ns_per_packet: f64,
    /// allocations (and reallocations) per packet while measured
    pub allocs_per_packet: f64,
}

/// Runs scenario `s` on `workers` pinned workers for `secs` seconds, with `extra.0`
/// extra ports (idle sinks: the MAC and host tables grow, and every worker polls their
/// queues) and `extra.1` extra /24 routes. `allocs` reads the process's allocation
/// count (a counting global allocator in the binary).
///
/// # Errors
/// The switch does not start, or it dropped frames while measured.
pub fn run(
    s: Scenario,
    workers: usize,
    extra: (usize, usize),
    secs: f64,
    allocs: &dyn Fn() -> u64,
) -> Result<Row, String> {
    let mut cfg = config_sized(workers, extra.1, extra.0);
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
    let opts = Options {
        max_ports: Options::default().max_ports.max(extra.0 + 64),
        ..Options::default()
    };
    let sw = Switch::start_with(&cfg, backends, opts).map_err(|e| e.to_string())?;
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
    if stats.drops != drops0 {
        return Err(format!(
            "{} dropped frames while measured: {:?} (before: {:?})",
            s.name(),
            stats.drops,
            drops0
        ));
    }
    let pk = (d1 - d0).max(1) as f64;
    Ok(Row {
        scenario: s.name(),
        workers,
        extra,
        mpps: pk / el / 1e6,
        ns_per_packet: el * 1e9 * workers as f64 / pk,
        allocs_per_packet: (a1 - a0) as f64 / pk,
    })
}

/// Rewrites the part of `docs/benchmarks.md` (under the workspace root `root`) between
/// `<!-- NAME:begin -->` and `<!-- NAME:end -->` with `body`; appends `heading` and
/// the marked part when the markers are missing.
///
/// # Errors
/// The file cannot be read or written.
pub fn write_docs_section(
    root: &std::path::Path,
    name: &str,
    heading: &str,
    body: &str,
) -> Result<(), String> {
    let path = root.join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (b, e) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{b}\n{body}\n{e}");
    let new = match (text.find(&b), text.find(&e)) {
        (Some(i), Some(j)) if i < j => format!("{}{section}{}", &text[..i], &text[j + e.len()..]),
        _ => format!("{text}\n{heading}\n\n{section}\n"),
    };
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))
}
