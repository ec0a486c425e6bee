//! Issue 15 item 7: broadcasts in a large subnet must not take a worker's whole buffer
//! pool. The flood budget counts copies (SPEC 4.1 floods, `switch.flood_per_sec`), and
//! the worker never holds more than a bounded number of queued copies in one pass, so
//! two guests broadcasting in a 256-port subnet leave the pool to everyone else.

mod common;
use common::*;

use std::time::Duration;

use vpcswitch_backend::memory::GenPort;
use vpcswitch_core::DropReason;
use vpcswitch_model::{ConfigBuilder, MacAddr};
use vpcswitch_runtime::{Backends, Switch};
use vpcswitch_wire::build;

#[test]
fn broadcasts_in_a_256_port_subnet_never_run_the_pool_dry() {
    let mut b = ConfigBuilder::new()
        .workers(1)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.0.0/23");
    let name = |i: usize| format!("p{i}");
    let port_mac = |i: usize| MacAddr([2, 0, 0, 1, (i >> 8) as u8, i as u8]);
    let addr = |i: usize| format!("10.0.{}.{}", (i + 10) / 256, (i + 10) % 256);
    for i in 0..256 {
        b = b.port(&name(i), "a1", &port_mac(i).to_string(), &[&addr(i)]);
    }
    let c = b.build().unwrap();
    // p0 and p1 broadcast as fast as the worker reads (a generator with its own
    // buffers, like a NIC); the 254 others are sinks that free what they are sent
    let mut backends: Backends = Vec::new();
    let mut sinks = Vec::new();
    for i in 0..256 {
        let frames = if i < 2 {
            vec![build::udp(
                build::Ends {
                    dst: MacAddr::BROADCAST,
                    src: port_mac(i),
                    sip: ip(&addr(i)),
                    dip: ip("10.0.1.255"),
                },
                64,
                9,
                9,
                b"broadcast",
            )]
        } else {
            Vec::new()
        };
        let (g, counters) = GenPort::new(frames, 256);
        backends.push((name(i), Box::new(g)));
        sinks.push(counters);
    }
    let t0 = std::time::Instant::now();
    let sw = Switch::start(&c, backends).unwrap();
    eventually_within(
        Duration::from_secs(20),
        Duration::from_millis(5),
        "copies delivered",
        || sinks[200].delivered() > 0,
    );
    std::thread::sleep(Duration::from_millis(300));
    let s = sw.stats();
    let limited = s.dropped(DropReason::FloodRateLimited);
    let no_buffer = s.dropped(DropReason::NoBuffer);
    let delivered: u64 = sinks[2..].iter().map(|c| c.delivered()).sum();
    drop(sw);
    let windows = t0.elapsed().as_secs() + 1;
    assert!(limited > 0, "the generators outran the flood budget");
    assert_eq!(
        no_buffer, 0,
        "the pool ran dry: {no_buffer} copies lost, {delivered} delivered"
    );
    // the budget, in copies: at most flood_per_sec (plus one frame's copies) per
    // second per sender, in every one-second window the test ran through
    let per_sender = u64::from(c.switch.flood_per_sec) + 255;
    assert!(
        delivered <= windows * 2 * per_sender,
        "{delivered} copies delivered: the budget counts frames, not copies"
    );
}
