//! The pps harness: the whole runtime (workers, queues, pipeline, buffer recycling) on
//! generator ports, per scenario, with 1 and 2 workers, and with growing tables. A
//! counting allocator shows the allocations made while traffic flows.
//!
//! ```text
//! cargo run --release -p vpcswitch-benches --bin vpcswitch-pps -- [--secs N] [--smoke] [--scaling] [--write-docs]
//! ```
//!
//! * default: every scenario at 1 and 2 workers on the base topology (7 ports);
//! * `--scaling`: also every scenario at 1 and 2 workers with 10, 1 000 and 100 000
//!   extra routes, and with as many extra ports (idle sinks in the tables, whose
//!   queues every worker polls);
//! * `--runs N`: the scaling cells N times each (median and min–max), runs alternating;
//! * `--write-docs`: writes the tables into docs/benchmarks.md (between the
//!   `vpcswitch-pps` markers) with the machine and the command;
//! * `--smoke`: 0.2 s per run, and the scaling only up to 1 000.
//!
//! See [`vpcswitch_benches::pps`] for what a run measures. Exits non-zero when a run
//! fails (frames dropped while measured) or the hot path allocates.

use std::alloc::System;
use std::fmt::Write as _;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use vpcswitch_benches::pps::{run, write_docs_section, Row};
use vpcswitch_benches::{median_min_max as stat, Scenario};

/// Counts every allocation in the process (the `stats_alloc` crate, so no `unsafe`
/// lives here).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocs() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

fn die(msg: &str) -> ! {
    eprintln!("vpcswitch-pps: {msg}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    for a in &args {
        if a.starts_with("--")
            && !["--secs", "--runs", "--smoke", "--scaling", "--write-docs"].contains(&a.as_str())
        {
            die(&format!(
                "unknown option {a} (--secs N, --runs N, --smoke, --scaling, --write-docs)"
            ));
        }
    }
    let smoke = flag("--smoke");
    let scaling = flag("--scaling");
    // `flag N`: its value, `default` when absent, the error `what` when not in `range`
    fn num<T: std::str::FromStr + PartialOrd>(
        args: &[String],
        flag: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> T {
        match args.iter().position(|a| a == flag) {
            None => default,
            Some(i) => match args.get(i + 1).and_then(|v| v.parse::<T>().ok()) {
                Some(v) if range.contains(&v) => v,
                _ => die(&format!("{flag} needs {what}")),
            },
        }
    }
    let secs: f64 = num(
        &args,
        "--secs",
        if smoke { 0.2 } else { 3.0 },
        0.05..=60.0,
        "a number of seconds, 0.05..60",
    );
    let runs: usize = num(&args, "--runs", 1, 1..=20, "a number of runs, 1..20");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let head = format!(
        "vpcswitch pps harness: 64-byte frames, bursts of 32, {secs} s per run, {cores} CPUs"
    );
    println!("{head}");
    let mut failed = Vec::new();
    let mut measure = |s: Scenario, w: usize, extra: (usize, usize)| -> Option<Row> {
        match run(s, w, extra, secs, &allocs) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed.push(e);
                None
            }
        }
    };
    let mut base = Vec::new();
    let mut text = format!(
        "{:<10} {:>7} {:>9} {:>12} {:>13}\n",
        "scenario", "workers", "Mpps", "ns/packet", "allocs/pkt"
    );
    print!("{text}");
    for s in Scenario::ALL {
        for w in [1usize, 2] {
            if let Some(r) = measure(s, w, (0, 0)) {
                let line = format!(
                    "{:<10} {:>7} {:>9.2} {:>12.1} {:>13.6}\n",
                    r.scenario, r.workers, r.mpps, r.ns_per_packet, r.allocs_per_packet
                );
                print!("{line}");
                text += &line;
                base.push(r);
            }
        }
    }
    let _ = writeln!(text, "\nscaling, 2 workers / 1 worker:");
    for s in Scenario::ALL {
        let one = base
            .iter()
            .find(|r| r.scenario == s.name() && r.workers == 1);
        let two = base
            .iter()
            .find(|r| r.scenario == s.name() && r.workers == 2);
        if let (Some(a), Some(b)) = (one, two) {
            let _ = writeln!(text, "  {:<10} {:.2}x", s.name(), b.mpps / a.mpps);
        }
    }
    println!("{}", &text[text.find("\nscaling").unwrap_or(0)..]);
    let mut rows = base.clone();
    let mut table_text = String::new();
    if scaling {
        let sizes: &[usize] = if smoke {
            &[10, 1_000]
        } else {
            &[10, 1_000, 100_000]
        };
        let _ = write!(table_text, "| scenario | workers |");
        let kinds = [("routes", false), ("ports", true)];
        for (k, _) in kinds {
            for n in sizes {
                let _ = write!(table_text, " +{n} {k} |");
            }
        }
        let _ = write!(table_text, "\n| --- | --- |");
        for _ in 0..sizes.len() * kinds.len() {
            table_text += " --- |";
        }
        table_text += "\n";
        println!("table-size scaling (extra routes; extra idle ports), {runs} run(s):");
        // runs outermost, so a slow spell of the machine hits every cell alike
        let mut cells: std::collections::BTreeMap<(usize, usize, bool, usize), Vec<Row>> =
            std::collections::BTreeMap::new();
        for run_no in 1..=runs {
            for (si, s) in Scenario::ALL.into_iter().enumerate() {
                for w in [1usize, 2] {
                    for (k, ports) in kinds {
                        for &n in sizes {
                            let extra = if ports { (n, 0) } else { (0, n) };
                            if let Some(r) = measure(s, w, extra) {
                                println!(
                                    "  run {run_no}: {:<10} {w} workers, +{n:>6} {k:<6}: {:>6.2} Mpps {:>8.1} ns/packet",
                                    s.name(),
                                    r.mpps,
                                    r.ns_per_packet
                                );
                                cells.entry((si, w, ports, n)).or_default().push(r);
                            }
                        }
                    }
                }
            }
        }
        for (si, s) in Scenario::ALL.into_iter().enumerate() {
            for w in [1usize, 2] {
                let _ = write!(table_text, "| {} | {w} |", s.name());
                for (_, ports) in kinds {
                    for &n in sizes {
                        match cells.get(&(si, w, ports, n)) {
                            Some(v) if v.len() == runs => {
                                let m: Vec<f64> = v.iter().map(|r| r.mpps).collect();
                                let ns: Vec<f64> = v.iter().map(|r| r.ns_per_packet).collect();
                                let ((med, lo, hi), (ns, _, _)) =
                                    (stat(&m).unwrap_or_default(), stat(&ns).unwrap_or_default());
                                if runs > 1 {
                                    let _ = write!(
                                        table_text,
                                        " {med:.2} ({lo:.2}–{hi:.2}), {ns:.1} |"
                                    );
                                } else {
                                    let _ = write!(table_text, " {med:.2}, {ns:.1} |");
                                }
                                rows.extend(v.iter().cloned());
                            }
                            _ => table_text += " failed |",
                        }
                    }
                }
                table_text += "\n";
            }
        }
    }
    let worst = rows.iter().map(|r| r.allocs_per_packet).fold(0.0, f64::max);
    println!("\nallocations per packet (worst run): {worst:.6}");
    if flag("--write-docs") {
        let cmd = format!(
            "cargo run --release -p vpcswitch-benches --bin vpcswitch-pps -- --secs {secs}{}{}{} --write-docs",
            if smoke { " --smoke" } else { "" },
            if scaling { " --scaling" } else { "" },
            if runs > 1 { format!(" --runs {runs}") } else { String::new() }
        );
        let mut body = format!("Made by `{cmd}`. {head}.\n\n```text\n{text}```\n");
        if scaling {
            let _ = write!(
                body,
                "\nTable-size scaling, {runs} run(s) per cell (runs alternating over all cells): Mpps as the median (min–max), then the median ns/packet. The same runs with N extra /24 routes in the VPC of the traffic, and with N extra ports (idle sinks in a VPC of their own: the MAC and host tables grow, and every worker polls their queues). Worst allocations per packet over all runs: {worst:.6}.\n\n{table_text}"
            );
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Err(e) = write_docs_section(
            &root,
            "vpcswitch-pps",
            "## The pps harness (`vpcswitch-pps`)",
            &body,
        ) {
            die(&format!("writing docs: {e}"));
        }
        println!("written: docs/benchmarks.md");
    }
    if !failed.is_empty() {
        die(&format!("{} run(s) failed", failed.len()));
    }
    if worst > 0.001 {
        die("the hot path allocates");
    }
}
