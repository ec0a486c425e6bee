//! `vpcswitch-wake`: what it costs to wake a sleeping worker, the part of a light-rate
//! round trip that idle policy decides (docs/architecture.md, "Where the time goes").
//!
//! ```text
//! vpcswitch-wake [--n 500] [--gap-us 10000]
//! ```
//!
//! A "worker" thread on CPU 0 waits for an eventfd, a "sender" on CPU 1 signals it
//! every `--gap-us` and stamps the time; the worker reads the clock as soon as it sees
//! the signal. Three ways to wait, as the worker's idle policies do:
//!
//! * `epoll`: asleep in `epoll_wait` on the eventfd (a sleeping adaptive worker: the
//!   frame's descriptor or the waker's eventfd ends the sleep);
//! * `spin-syscall`: polling the eventfd with non-blocking `read(2)`s (an awake worker
//!   polling a TAP or AF_PACKET queue: one system call per queue per pass);
//! * `spin`: watching the stamp in memory (an awake worker polling an AF_XDP ring or
//!   the in-memory backend: no system call).
//!
//! Prints the median, p90 and p99 latency of each, in µs. No root needed; bounded by
//! `--n` × `--gap-us` per way (5 s each by default).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch_backend::sys::{Epoll, EventFd};
use vpcswitch_benches::quantile;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Epoll,
    SpinSyscall,
    Spin,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Epoll => "epoll",
            Way::SpinSyscall => "spin-syscall",
            Way::Spin => "spin",
        }
    }
}

fn pin(cpu: usize) {
    if let Some(c) = core_affinity::get_core_ids().and_then(|ids| ids.get(cpu).copied()) {
        core_affinity::set_for_current(c);
    }
}

/// Latencies (ns) of `n` wake-ups `gap` apart, the worker waiting `way`.
fn measure(way: Way, n: usize, gap: Duration) -> Vec<u64> {
    let efd = Arc::new(EventFd::new().expect("eventfd"));
    let stamp = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let worker = {
        let (efd, stamp, done) = (efd.clone(), stamp.clone(), done.clone());
        std::thread::spawn(move || {
            pin(0);
            let ep = Epoll::new().expect("epoll");
            ep.add(efd.raw(), 1).expect("epoll add");
            let mut out = Vec::with_capacity(n);
            let mut seen = 0u64;
            // a wake-up the worker was too slow to see apart is missed, not waited for
            while out.len() < n && !done.load(Ordering::Acquire) {
                let s = match way {
                    Way::Epoll => {
                        if ep.wait(100).unwrap_or(0) == 0 {
                            continue;
                        }
                        stamp.load(Ordering::Acquire)
                    }
                    Way::SpinSyscall => {
                        // a readable eventfd is what an arrival on a queue looks like
                        if ep.wait(0).unwrap_or(0) == 0 {
                            std::hint::spin_loop();
                            continue;
                        }
                        stamp.load(Ordering::Acquire)
                    }
                    Way::Spin => {
                        let s = stamp.load(Ordering::Acquire);
                        if s == seen {
                            std::hint::spin_loop();
                            continue;
                        }
                        s
                    }
                };
                let now = start.elapsed().as_nanos() as u64;
                efd.drain();
                if s != seen {
                    seen = s;
                    out.push(now.saturating_sub(s));
                }
            }
            out
        })
    };
    pin(1);
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..n {
        std::thread::sleep(gap);
        stamp.store(start.elapsed().as_nanos() as u64, Ordering::Release);
        if way != Way::Spin {
            efd.signal();
        }
    }
    std::thread::sleep(Duration::from_millis(5));
    done.store(true, Ordering::Release);
    if way != Way::Spin {
        efd.signal();
    }
    worker.join().expect("worker")
}

/// The `p` quantile of sorted latencies (µs).
fn pct(v: &[f64], p: f64) -> f64 {
    quantile(v, p).unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |f: &str, d: u64| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse().unwrap_or_else(|_| {
                    eprintln!("vpcswitch-wake: {f} needs a number");
                    std::process::exit(2)
                })
            })
            .unwrap_or(d)
    };
    let n = value("--n", 500).max(10) as usize;
    let gap = Duration::from_micros(value("--gap-us", 10_000).clamp(10, 1_000_000));
    println!(
        "{n} wake-ups {} µs apart, worker on CPU 0, sender on CPU 1; latency in µs",
        gap.as_micros()
    );
    println!("| worker waits | median | p90 | p99 |\n| --- | --- | --- | --- |");
    for way in [Way::Epoll, Way::SpinSyscall, Way::Spin] {
        let mut v: Vec<f64> = measure(way, n, gap)
            .into_iter()
            .map(|ns| ns as f64 / 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            way.name(),
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99)
        );
    }
}
