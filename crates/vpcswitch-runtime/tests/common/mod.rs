//! Helpers shared by the runtime's integration tests (each test file is its own crate
//! and uses a subset).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vpcswitch_model::{Config, ConfigBuilder, MacAddr};

pub fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Waits until `f` holds, polling every `poll`, for at most `limit`; panics naming
/// `what` when it never does.
pub fn eventually_within(limit: Duration, poll: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(poll);
    }
    panic!("timed out waiting for: {what}");
}

/// Subnet a1 of VPC a (10.0.0.0/16) with p1 (10.0.1.11) and p2 (10.0.1.12), both bound
/// to VIP v (10.0.1.100).
pub fn two_ports_with_a_vip(workers: usize) -> Config {
    ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .build()
        .unwrap()
}
