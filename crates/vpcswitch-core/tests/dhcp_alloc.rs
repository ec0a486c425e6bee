//! SPEC 13.1 on the no-allocation rule: the DHCP stage answers DISCOVER and REQUEST,
//! NAKs, consumes what it ignores and drops a rogue server's packet a thousand times
//! under a counting allocator (`stats_alloc`, so no `unsafe` here) after a warm-up
//! pass, and the count of allocations must stay 0. One test in this binary, so no other
//! test allocates meanwhile.

use std::alloc::System;

use smoltcp::wire::DhcpMessageType;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vpcswitch_core::{Ctx, DropReason, NoTrace, Snapshot, Verdict};
use vpcswitch_model::{ConfigBuilder, DhcpOptions, DhcpRoute, MacAddr};
use vpcswitch_wire::build;

mod common;
use common::dhcp_client;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const P1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);

#[test]
fn spec13_1_the_dhcp_stage_allocates_nothing_per_packet() {
    let mut cfg = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .dhcp(DhcpOptions {
            dns_servers: vec![[10, 0, 0, 2].into(), [10, 0, 0, 3].into()],
            domain: Some("a.internal".into()),
            mtu: Some(1450),
            lease_secs: Some(3600),
            routes: vec![DhcpRoute {
                destination: "10.9.0.0/16".parse().unwrap(),
                via: [10, 0, 1, 254].into(),
            }],
        })
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .build()
        .unwrap();
    // a budget no loop here spends
    cfg.switch.icmp_errors_per_sec = u32::MAX;
    let s = Snapshot::compile(&cfg, None).unwrap();
    let (p1, p2) = (s.port_id("p1").unwrap(), s.port_id("p2").unwrap());
    let rogue = build::udp(
        build::Ends {
            dst: P1,
            src: MacAddr([2, 0, 0, 0, 1, 2]),
            sip: [10, 0, 1, 12].into(),
            dip: [10, 0, 1, 11].into(),
        },
        64,
        67,
        68,
        &[0u8; 300],
    );
    let frames: Vec<(u32, Vec<u8>)> = vec![
        (p1, dhcp_client(DhcpMessageType::Discover, P1, None)),
        (
            p1,
            dhcp_client(DhcpMessageType::Request, P1, Some("10.0.1.11")),
        ),
        (
            p1,
            dhcp_client(DhcpMessageType::Request, P1, Some("10.0.1.99")),
        ),
        (p1, dhcp_client(DhcpMessageType::Release, P1, None)),
        (p2, rogue),
    ];
    let mut buf = vec![0u8; 2048];
    let mut run = |now: u64| {
        let mut answered = 0;
        for (port, f) in &frames {
            buf[..f.len()].copy_from_slice(f);
            let mut len = f.len();
            match s.process(&Ctx::at(now), *port, &mut buf, &mut len, &mut NoTrace) {
                Verdict::DropAndSend(DropReason::DhcpClient, _) => answered += 1,
                Verdict::Drop(DropReason::DhcpClient | DropReason::RogueDhcpServer) => {}
                v => panic!("unexpected {v:?}"),
            }
        }
        answered
    };
    assert_eq!(run(1), 3, "OFFER, ACK, NAK");
    let reg = Region::new(GLOBAL);
    let mut answered = 0;
    for i in 0..1000 {
        answered += run(2 + i);
    }
    let stats = reg.change();
    assert_eq!(answered, 3000);
    assert_eq!(
        stats.allocations + stats.reallocations,
        0,
        "the DHCP stage allocated: {stats:?}"
    );
}
