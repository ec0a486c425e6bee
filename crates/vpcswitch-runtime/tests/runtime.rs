//! The runtime over in-memory ports: forwarding, counters, cross-worker VIP learning,
//! reloads under traffic (SPEC 8.1), idle.

mod common;
use common::*;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vpcswitch_core::DropReason;
use vpcswitch_model::{Config, ConfigBuilder};
use vpcswitch_runtime::{memory_backends, RuntimeError, Switch};
use vpcswitch_wire::build;

fn cfg(workers: usize) -> Config {
    ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("p3", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .build()
        .unwrap()
}

/// The addresses of a frame from port p1 to port p2 (the same subnet).
fn p1_to_p2() -> build::Ends {
    build::Ends {
        dst: mac("02:00:00:00:01:02"),
        src: mac("02:00:00:00:01:01"),
        sip: ip("10.0.1.11"),
        dip: ip("10.0.1.12"),
    }
}

fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(5), Duration::from_millis(1), what, f)
}

#[test]
fn forwards_and_counts_with_one_and_two_workers() {
    for w in [1, 2] {
        let c = cfg(w);
        let (b, g) = memory_backends(&c, 1024);
        let sw = Switch::start(&c, b).unwrap();
        for i in 0..100u16 {
            let f = build::udp(p1_to_p2(), 64, 1000 + i, 53, b"x");
            assert!(g["p1"].send(&f));
        }
        // a spoofed frame
        let f = build::udp(
            build::Ends {
                dst: mac("02:00:00:00:01:02"),
                src: mac("02:00:00:00:01:01"),
                sip: ip("10.0.1.99"),
                dip: ip("10.0.1.12"),
            },
            64,
            1,
            53,
            b"x",
        );
        g["p1"].send(&f);
        let mut got = 0;
        eventually("100 frames at p2", || {
            got += g["p2"].drain().len();
            got == 100
        });
        eventually("stats", || sw.stats().port("p1").unwrap().rx_packets == 101);
        let s = sw.stats();
        assert_eq!(s.port("p2").unwrap().tx_packets, 100);
        assert_eq!(
            s.port("p1").unwrap().dropped(DropReason::SpoofedSrcIp),
            1,
            "SPEC 2.4 per port"
        );
        assert_eq!(s.dropped(DropReason::SpoofedSrcIp), 1, "SPEC 2.4 total");
        let fw: u64 = s.workers.iter().map(|w| w.forwarded).sum();
        let dr: u64 = s.workers.iter().map(|w| w.dropped).sum();
        assert_eq!(fw + dr, s.rx_packets(), "received = forwarded + dropped");
        assert_eq!(s.workers.len(), w);
        assert_eq!(sw.stop(), 0);
    }
}

#[test]
fn spec3_1_garp_on_one_worker_steers_the_next_packet_on_another() {
    let c = cfg(2);
    let (b, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, b).unwrap();
    // p2 announces the VIP on queue 0 (worker 0)
    g["p2"].send_on(0, &build::garp(mac("02:00:00:00:01:02"), ip("10.0.1.100")));
    eventually("p2 owns v", || {
        sw.snapshot().vip_owner_name("v") == Some("p2")
    });
    // the GARP reached the other ports of the subnet (SPEC 3.3)
    eventually("garp at p1", || g["p1"].recv().is_some());
    // a client with a stale cache sends to p1's MAC on queue 1 (worker 1)
    let f = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:01"),
            src: mac("02:00:00:00:01:03"),
            sip: ip("10.0.1.13"),
            dip: ip("10.0.1.100"),
        },
        64,
        5,
        6,
        b"vip",
    );
    g["p3"].send_on(1, &f);
    let got = g["p2"]
        .recv_timeout(Duration::from_secs(5))
        .expect("steered to the owner");
    assert_eq!(&got.frame()[0..6], &mac("02:00:00:00:01:02").0);
    assert!(g["p1"].recv().is_none());
}

#[test]
fn spec8_1_hundreds_of_reloads_under_traffic_lose_nothing_on_unchanged_ports() {
    let c = cfg(2);
    let (b, g) = memory_backends(&c, 4096);
    let sw = Switch::start(&c, b).unwrap();
    let (tx, rx) = (g["p1"].clone(), g["p2"].clone());
    const N: u32 = 20_000;
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (got_s, got_r) = (got.clone(), got.clone());
    let sender = std::thread::spawn(move || {
        let mut sent = 0u32;
        let mut i = 0u32;
        while sent < N {
            // vary addresses' low bits so both workers carry traffic
            let f = build::udp(p1_to_p2(), 64, (i % 4000) as u16, 53, &i.to_be_bytes());
            // flow control: never more in flight than the receiver's rings hold, so a
            // slow (descheduled) receiving guest cannot overflow them
            if sent - got_s.load(Ordering::Relaxed) > 1024 {
                std::thread::yield_now();
                continue;
            }
            if tx.send_on((i % 2) as usize, &f) {
                sent += 1;
                i += 1;
            } else {
                std::thread::yield_now();
            }
        }
    });
    // the receiving guest drains on its own thread
    let receiver = std::thread::spawn(move || {
        let mut received = 0u32;
        let end = Instant::now() + Duration::from_secs(60);
        while received < N && Instant::now() < end {
            let n = rx.drain().len() as u32;
            received += n;
            got_r.store(received, Ordering::Relaxed);
            if n == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        received
    });
    let mut reloads = 0;
    let mut next = c.clone();
    while !sender.is_finished() || reloads < 300 {
        // change an unrelated port each time
        next.ports[3].src_dst_check = !next.ports[3].src_dst_check;
        sw.reload(&next, vec![]).unwrap();
        reloads += 1;
        if reloads > 100_000 {
            break;
        }
    }
    sender.join().unwrap();
    let received = receiver.join().unwrap();
    assert_eq!(
        received,
        N,
        "zero packets lost across {reloads} reloads: {:?}",
        sw.stats().drops
    );
    assert!(reloads >= 300);
    assert_eq!(sw.snapshot().generation, 1 + reloads as u64);
    let s = sw.stats();
    assert!(s.drops.is_empty(), "no drops at all: {:?}", s.drops);
}

#[test]
fn spec8_1_a_refused_reload_changes_nothing() {
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let mut bad = c.clone();
    bad.ports[1].mac = bad.ports[0].mac;
    match sw.reload(&bad, vec![]) {
        Err(RuntimeError::Config(e)) => assert!(e.to_string().contains("already used"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sw.snapshot().generation, 1);
    let mut more = c.clone();
    more.switch.workers = 2;
    assert!(matches!(
        sw.reload(&more, vec![]),
        Err(RuntimeError::WorkersChanged { .. })
    ));
    // a new port without a backend
    let mut add = c.clone();
    add.ports.push(vpcswitch_model::Port {
        name: "p9".into(),
        ..c.ports[0].clone()
    });
    add.ports[4].mac = mac("02:00:00:00:01:09");
    add.ports[4].ips = vec![ip("10.0.1.19")];
    assert!(matches!(sw.reload(&add, vec![]), Err(RuntimeError::MissingBackend(n)) if n == "p9"));
    // still forwarding under generation 1
    let f = build::udp(p1_to_p2(), 64, 1, 2, b"x");
    g["p1"].send(&f);
    assert!(g["p2"].recv_timeout(Duration::from_secs(5)).is_some());
}

#[test]
fn ports_are_added_and_removed_by_reload() {
    let c = cfg(2);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let mut add = c.clone();
    let mut p9 = c.ports[0].clone();
    p9.name = "p9".into();
    p9.mac = mac("02:00:00:00:01:09");
    p9.ips = vec![ip("10.0.1.19")];
    add.ports.push(p9);
    let (port, guest9) = vpcswitch_backend::memory::mem_port("p9", 2, 64);
    sw.reload(&add, vec![("p9".into(), Box::new(port))])
        .unwrap();
    let f = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:09"),
            src: mac("02:00:00:00:01:01"),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.19"),
        },
        64,
        1,
        2,
        b"x",
    );
    g["p1"].send(&f);
    assert!(
        guest9.recv_timeout(Duration::from_secs(5)).is_some(),
        "new port reachable: {:?}",
        sw.stats()
    );
    // remove p2: traffic to it is now unknown unicast; p9 keeps working
    let mut del = add.clone();
    del.vips[0].ports = vec!["p1".into()];
    del.ports.retain(|p| p.name != "p2");
    sw.reload(&del, vec![]).unwrap();
    let f2 = build::udp(p1_to_p2(), 64, 1, 2, b"x");
    g["p1"].send(&f2);
    g["p1"].send(&f);
    assert!(guest9.recv_timeout(Duration::from_secs(5)).is_some());
    eventually("unknown unicast counted", || {
        sw.stats().dropped(DropReason::UnknownUnicast) == 1
    });
    assert!(sw.stats().port("p2").is_none());
}

#[test]
fn an_idle_worker_goes_to_sleep_and_wakes_on_traffic() {
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    eventually("worker sleeps", || sw.stats().workers[0].sleeps > 0);
    // once asleep, the loop count barely moves (it wakes at most every MAX_SLEEP)
    let f = build::udp(p1_to_p2(), 64, 1, 2, b"x");
    g["p1"].send(&f);
    assert!(
        g["p2"].recv_timeout(Duration::from_secs(5)).is_some(),
        "woken by the arrival"
    );
}

/// `[switch] idle`: a `busy_poll` worker never sleeps (and still forwards); a reload to
/// `adaptive` lets it sleep at once, and per-worker lists apply to their worker only.
#[test]
fn busy_poll_workers_never_sleep_and_a_reload_changes_the_policy() {
    use vpcswitch_model::{IdlePolicy, IdleSetting};
    let mut c = cfg(2);
    c.switch.idle = IdleSetting::PerWorker(vec![IdlePolicy::BusyPoll, IdlePolicy::Adaptive]);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    eventually("the adaptive worker sleeps", || {
        sw.stats().workers[1].sleeps > 0
    });
    let f = build::udp(p1_to_p2(), 64, 1, 2, b"x");
    g["p1"].send(&f);
    assert!(g["p2"].recv_timeout(Duration::from_secs(5)).is_some());
    // well past the longest linger: the busy-poll worker is still awake
    std::thread::sleep(Duration::from_millis(300));
    let st = sw.stats();
    assert_eq!(st.workers[0].sleeps, 0, "a busy_poll worker never sleeps");
    let loops = st.workers[0].loops;
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sw.stats().workers[0].loops > loops + 1000,
        "and keeps polling"
    );
    c.switch.idle = IdleSetting::All(IdlePolicy::Adaptive);
    sw.reload(&c, vec![]).unwrap();
    eventually("worker 0 sleeps after the reload", || {
        sw.stats().workers[0].sleeps > 0
    });
}

#[test]
fn trace_through_the_runtime() {
    let c = cfg(1);
    let (b, _g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let t = sw
        .trace(
            "p1",
            &build::arp_request(mac("02:00:00:00:01:01"), ip("10.0.1.11"), ip("10.0.1.1")),
        )
        .unwrap();
    assert!(t.trace.to_string().contains("answered by the switch"));
    assert!(matches!(
        sw.trace("nope", &[]),
        Err(RuntimeError::NoSuchPort(_))
    ));
}

#[test]
fn offload_work_is_done_or_refused_for_ports_without_offload() {
    use vpcswitch_backend::VnetHdr;
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    // a UDP frame whose checksum was left partial: the field holds only the
    // pseudo-header sum, as a guest with checksum offload hands it over
    let good = build::udp(p1_to_p2(), 64, 7, 9, b"partial");
    let mut partial = good.clone();
    let mut pseudo: u32 = 0x0a00 + 0x010b + 0x0a00 + 0x010c + 17 + 15; // addresses, proto, UDP length
    while pseudo > 0xffff {
        pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    }
    partial[40..42].copy_from_slice(&(pseudo as u16).to_be_bytes());
    let csum = |start: u16, offset: u16| VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: start,
        csum_offset: offset,
        ..VnetHdr::default()
    };
    // with Ethernet padding after the IP packet: summed only up to the IP length
    let mut padded = partial.clone();
    padded.extend_from_slice(&[0xee; 9]);
    assert!(g["p1"].send_offload(&padded, csum(34, 6)));
    let got = g["p2"]
        .recv_timeout(Duration::from_secs(5))
        .expect("delivered");
    assert_eq!(
        &got.frame()[..good.len()],
        &good[..],
        "checksum completed in software"
    );
    // SPEC 2.5: a UDP super-frame is refused at ingress, counted on the sender
    let gso = VnetHdr {
        gso_type: 3,
        gso_size: 1448,
        hdr_len: 42,
        ..csum(34, 6)
    };
    assert!(g["p1"].send_offload(&good, gso));
    eventually("gso drop", || {
        sw.stats()
            .port("p1")
            .is_some_and(|p| p.dropped(DropReason::GsoUnsupported) == 1)
    });
    // a TCP super-frame is segmented in software (TSO) for the in-memory port
    let mut tcp = vec![0u8; 20];
    tcp[4..8].copy_from_slice(&7u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    tcp.extend((0..5000).map(|i| (i % 251) as u8));
    let sup = build::ipv4(
        mac("02:00:00:00:01:02"),
        mac("02:00:00:00:01:01"),
        ip("10.0.1.11"),
        ip("10.0.1.12"),
        64,
        6,
        &tcp,
    );
    let tso = VnetHdr {
        gso_type: 1,
        gso_size: 1448,
        hdr_len: 54,
        ..csum(34, 16)
    };
    assert!(g["p1"].send_offload(&sup, tso));
    let mut payload = Vec::new();
    for _ in 0..4 {
        let seg = g["p2"]
            .recv_timeout(Duration::from_secs(5))
            .expect("segment");
        assert!(seg.len() <= 14 + 20 + 20 + 1448);
        payload.extend_from_slice(&seg.frame()[54..]);
    }
    assert_eq!(
        payload,
        (0..5000).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        "4 segments carry the payload in order"
    );
    assert_eq!(
        sw.stats().workers.iter().map(|w| w.segments).sum::<u64>(),
        4,
        "segments counted"
    );
    // SPEC 2.5: offsets that are not the L4 checksum field, or past the frame
    assert!(g["p1"].send_offload(&good, csum(58, 16)));
    assert!(g["p1"].send_offload(&good, csum(34, 16)));
    assert!(g["p1"].send_offload(&good, csum(4000, 0)));
    eventually("bad offload drops", || {
        sw.stats()
            .port("p1")
            .is_some_and(|p| p.dropped(DropReason::BadOffloadCsum) == 3)
    });
    assert!(g["p2"].recv().is_none());
}

/// SPEC 2.5: a guest cannot make the switch rewrite its frame after the checks by
/// choosing where a checksum offload writes. An ARP reply for the sender's own address
/// whose "checksum" would land on its sender IP (turning it into the gateway's), and a
/// UDP packet whose "checksum" would land on its source address: both refused before
/// the pipeline, counted, and nothing reaches the victim (a port without offload, for
/// which the switch completes checksums itself).
#[test]
fn spec2_5_a_guest_chosen_checksum_offset_cannot_rewrite_a_checked_frame() {
    use vpcswitch_backend::VnetHdr;
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    // the ones-complement word that makes the sum over `f[start..]` complement to
    // `want` when put at `pad` (an even distance from `start`)
    fn forge(f: &mut [u8], start: usize, pad: usize, want: u16) {
        let fold = |mut x: u32| {
            while x > 0xffff {
                x = (x & 0xffff) + (x >> 16);
            }
            x as u16
        };
        f[pad..pad + 2].copy_from_slice(&[0, 0]);
        let s = fold(f[start..].chunks(2).fold(0u32, |a, w| {
            a + u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))
        }));
        // s + p must fold to !want: p = !want - s, in ones-complement arithmetic
        let p = fold(u32::from(!want) + u32::from(!s));
        f[pad..pad + 2].copy_from_slice(&p.to_be_bytes());
    }
    let hdr = |start: u16, offset: u16| VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: start,
        csum_offset: offset,
        ..VnetHdr::default()
    };
    // ARP reply p1 -> p2 for p1's own 10.0.1.11; the sender IP's low half is at 30..32
    let mut arp = vec![0u8; 60];
    arp[..6].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
    arp[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    arp[22..28].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    arp[28..32].copy_from_slice(&[10, 0, 1, 11]);
    arp[32..38].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
    arp[38..42].copy_from_slice(&[10, 0, 1, 12]);
    // padding chosen so the "checksum" written at 30 is the gateway's low half
    forge(&mut arp, 26, 44, 0x0101);
    // the attack is real: completing "the checksum" as the header asks writes
    // 10.0.1.1 over the sender IP (what the switch did before SPEC 2.5)
    let complement = !vpcswitch_wire::checksum::fold(vpcswitch_wire::checksum::sum(0, &arp[26..]));
    assert_eq!(complement, 0x0101);
    // a UDP packet from p1's own address whose source's low half is at 28..30
    let mut udp = build::udp(p1_to_p2(), 64, 7, 9, b"payload!");
    udp.extend_from_slice(&[0; 10]);
    let n = udp.len();
    forge(&mut udp, 26, n - 2, 0x0163); // 10.0.1.99
    assert!(g["p1"].send_offload(&arp, hdr(26, 4)));
    assert!(g["p1"].send_offload(&udp, hdr(26, 2)));
    eventually("both refused", || {
        sw.stats()
            .port("p1")
            .is_some_and(|p| p.dropped(DropReason::BadOffloadCsum) == 2)
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(g["p2"].recv().is_none(), "nothing reaches the victim");
    assert_eq!(sw.stats().port("p2").unwrap().tx_packets, 0);
}

/// SPEC 2.5: frames the switch builds itself (here an ICMP time exceeded made from a
/// TCP packet with a checksum offload) carry no offload state: the answer arrives
/// intact, with a valid ICMP checksum, on a port without offload.
#[test]
fn spec2_5_frames_the_switch_builds_carry_no_offload() {
    use vpcswitch_backend::VnetHdr;
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let gw = sw.snapshot().gateway_mac;
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp.extend_from_slice(&[7; 40]);
    // TTL 1, routed (to the gateway MAC): the switch answers time exceeded
    let f = build::ipv4(
        gw,
        mac("02:00:00:00:01:01"),
        ip("10.0.1.11"),
        ip("10.0.2.11"),
        1,
        6,
        &tcp,
    );
    let h = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    assert!(g["p1"].send_offload(&f, h));
    let got = g["p1"]
        .recv_timeout(Duration::from_secs(5))
        .expect("time exceeded");
    let icmp = &got.frame()[34..];
    assert_eq!(icmp[0], 11, "time exceeded");
    assert_eq!(
        vpcswitch_wire::checksum::checksum(icmp),
        0,
        "ICMP checksum valid: nothing was written into the answer"
    );
    assert_eq!(&icmp[8..28], &f[14..34], "the quoted header is intact");
}

/// SPEC 2.5: the work one super-frame can cause is bounded: an absurdly small
/// segment size is refused at ingress instead of becoming hundreds of segments on the
/// worker every port shares.
#[test]
fn spec2_5_segmentation_work_is_bounded() {
    use vpcswitch_backend::VnetHdr;
    let c = cfg(1);
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp.extend((0..60_000).map(|i| i as u8));
    let sup = build::ipv4(
        mac("02:00:00:00:01:02"),
        mac("02:00:00:00:01:01"),
        ip("10.0.1.11"),
        ip("10.0.1.12"),
        64,
        6,
        &tcp,
    );
    let h = |mss: u16| VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: 1,
        gso_size: mss,
        hdr_len: 54,
        csum_start: 34,
        csum_offset: 16,
    };
    assert!(g["p1"].send_offload(&sup, h(88)));
    assert!(g["p1"].send_offload(&sup, h(9000)));
    eventually("refused", || {
        sw.stats().port("p1").is_some_and(|p| {
            p.dropped(DropReason::GsoTooManySegments) == 1
                && p.dropped(DropReason::BadOffloadGso) == 1
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(g["p2"].recv().is_none());
    assert_eq!(sw.stats().workers[0].segments, 0);
}

/// A device whose queue panics on its `n`th poll (fault injection).
struct PanicAfter(usize);
struct PanicQueue(usize);
impl vpcswitch_backend::PortQueue for PanicQueue {
    fn rx_burst(
        &mut self,
        _: &mut vpcswitch_backend::WorkerBufs,
        _: &mut Vec<vpcswitch_backend::PacketBuf>,
        _: usize,
    ) -> usize {
        self.0 = self.0.saturating_sub(1);
        assert!(self.0 > 0, "injected fault in rx_burst");
        0
    }
    fn tx_burst(
        &mut self,
        _: &mut vpcswitch_backend::WorkerBufs,
        b: &mut Vec<vpcswitch_backend::PacketBuf>,
    ) -> vpcswitch_backend::TxResult {
        let n = b.len();
        b.clear();
        vpcswitch_backend::TxResult {
            sent: n,
            ..Default::default()
        }
    }
}
impl vpcswitch_backend::Backend for PanicAfter {
    fn describe(&self) -> String {
        "panics".into()
    }
    fn queues(
        &mut self,
        workers: &[vpcswitch_backend::WorkerMem],
    ) -> Result<Vec<Box<dyn vpcswitch_backend::PortQueue>>, vpcswitch_backend::BackendError> {
        // only worker 0's queue fails
        Ok((0..workers.len())
            .map(|i| {
                Box::new(PanicQueue(if i == 0 { self.0 } else { usize::MAX }))
                    as Box<dyn vpcswitch_backend::PortQueue>
            })
            .collect())
    }
}

#[test]
fn a_worker_panic_stops_the_switch_and_says_why() {
    let c = cfg(2);
    let (mut b, g) = memory_backends(&c, 64);
    b.retain(|(n, _)| n != "q1");
    // (within the worker's first busy spell: an idle worker polls a queue without
    // descriptors only every MAX_SLEEP)
    b.push(("q1".into(), Box::new(PanicAfter(1_000))));
    let sw = Switch::start(&c, b).unwrap();
    eventually("failure reported", || sw.health().is_err());
    let why = sw.health().unwrap_err();
    assert!(why.contains("worker 0 panicked: injected fault"), "{why}");
    // fail fast: no worker keeps forwarding
    std::thread::sleep(Duration::from_millis(50));
    let f = build::udp(p1_to_p2(), 64, 1, 2, b"x");
    for q in 0..2 {
        g["p1"].send_on(q, &f);
    }
    assert!(
        g["p2"].recv_timeout(Duration::from_millis(300)).is_none(),
        "nothing forwarded after the failure"
    );
    assert!(matches!(
        sw.reload(&c, vec![]),
        Err(RuntimeError::Failed(_))
    ));
    assert_eq!(sw.stop(), 1, "one worker panicked");
}

#[test]
fn injected_device_faults_are_counted_and_nothing_else_is_lost() {
    use vpcswitch_backend::fault::{Faults, FaultyBackend};
    use vpcswitch_backend::memory::mem_port;
    let c = cfg(1);
    let (mut b, mut g) = memory_backends(&c, 4096);
    // p1 receives in short and empty bursts; p2's device refuses every 7th frame as
    // full and fails every 11th
    b.retain(|(n, _)| n != "p1" && n != "p2");
    let (p1, g1) = mem_port("p1", 1, 4096);
    let (p2, g2) = mem_port("p2", 1, 4096);
    b.push((
        "p1".into(),
        Box::new(FaultyBackend::new(
            p1,
            Faults {
                rx_empty_every: 3,
                rx_max: 5,
                ..Faults::default()
            },
        )),
    ));
    b.push((
        "p2".into(),
        Box::new(FaultyBackend::new(
            p2,
            Faults {
                tx_full_every: 7,
                tx_error_every: 11,
                ..Faults::default()
            },
        )),
    ));
    g.insert("p1".into(), g1);
    g.insert("p2".into(), g2);
    let sw = Switch::start(&c, b).unwrap();
    const N: u64 = 3000;
    let mut received = 0u64;
    for i in 0..N {
        let f = build::udp(p1_to_p2(), 64, i as u16, 53, b"x");
        while !g["p1"].send(&f) {
            received += g["p2"].drain().len() as u64;
        }
    }
    eventually("all processed", || {
        sw.stats().port("p1").unwrap().rx_packets == N
    });
    eventually("all delivered or counted", || {
        received += g["p2"].drain().len() as u64;
        let p = sw.stats().port("p2").cloned().unwrap();
        received + p.dropped(DropReason::TxFull) + p.dropped(DropReason::TxError) == N
    });
    let p = sw.stats().port("p2").cloned().unwrap();
    assert!(p.dropped(DropReason::TxFull) >= N / 7 - 1, "{p:?}");
    assert!(p.dropped(DropReason::TxError) > 0, "{p:?}");
    assert_eq!(
        p.tx_packets, received,
        "tx counts only what the device took"
    );
    assert!(
        sw.stats().workers[0].burst_hist[6..]
            .iter()
            .all(|&n| n == 0),
        "rx bursts capped at 5"
    );
    assert_eq!(sw.stop(), 0);
}

/// Many idle ports (more than a pass polls of the quiet list): while one port is busy,
/// every idle port's frame still gets through (none is starved by the quiet-queue
/// round robin), and once all is idle and the worker sleeps, a frame on a quiet port
/// wakes it.
#[test]
fn quiet_ports_beyond_a_pass_slice_are_still_served_and_wake_a_sleeping_worker() {
    const IDLE: usize = 300;
    let mut b = ConfigBuilder::new()
        .workers(1)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.0.0/16")
        .port("busy", "a1", "02:00:00:00:00:0a", &["10.0.0.11"])
        .port("sink", "a1", "02:00:00:00:00:0b", &["10.0.0.12"])
        .port("other", "a1", "02:00:00:00:00:0c", &["10.0.0.13"]);
    let idle_mac = |i: usize| format!("02:00:00:01:{:02x}:{:02x}", i >> 8, i & 0xff);
    let idle_ip = |i: usize| std::net::Ipv4Addr::from(0x0a00_0100u32 + 10 + i as u32);
    for i in 0..IDLE {
        b = b.port(
            &format!("i{i}"),
            "a1",
            &idle_mac(i),
            &[&idle_ip(i).to_string()],
        );
    }
    let c = b.build().unwrap();
    let (backends, g) = memory_backends(&c, 1024);
    let sw = Switch::start(&c, backends).unwrap();
    let to_sink = |from_mac: &str, from_ip: std::net::Ipv4Addr, id: u16| {
        build::udp(
            build::Ends {
                dst: mac("02:00:00:00:00:0b"),
                src: mac(from_mac),
                sip: from_ip,
                dip: ip("10.0.0.12"),
            },
            64,
            id,
            53,
            b"x",
        )
    };
    // let every idle port's queue go quiet
    std::thread::sleep(Duration::from_millis(100));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let (tx, stop) = (g["busy"].clone(), stop.clone());
        // to a third port nobody drains (its ring overflows: counted drops), so the
        // sink sees only the idle ports' frames
        let f = build::udp(
            build::Ends {
                dst: mac("02:00:00:00:00:0c"),
                src: mac("02:00:00:00:00:0a"),
                sip: ip("10.0.0.11"),
                dip: ip("10.0.0.13"),
            },
            64,
            1,
            53,
            b"x",
        );
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if !tx.send(&f) {
                    std::thread::yield_now();
                }
            }
        })
    };
    eventually("the busy port is busy", || {
        sw.stats().port("busy").unwrap().rx_packets > 10_000
    });
    // one frame from each idle port, while the busy port keeps the worker busy
    for i in 0..IDLE {
        assert!(g[&format!("i{i}")].send(&to_sink(&idle_mac(i), idle_ip(i), 1000 + i as u16)));
    }
    let mut seen = std::collections::HashSet::new();
    eventually_within(
        Duration::from_secs(10),
        Duration::from_millis(1),
        "every idle port's frame",
        || {
            for f in g["sink"].drain() {
                let src_port = u16::from_be_bytes([f.frame()[34], f.frame()[35]]);
                if src_port >= 1000 {
                    seen.insert(src_port);
                }
            }
            seen.len() == IDLE
        },
    );
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    // all idle now: the worker sleeps; a frame on a quiet port wakes it
    let sleeps = sw.stats().workers[0].sleeps;
    eventually("worker sleeps again", || {
        sw.stats().workers[0].sleeps > sleeps
    });
    g["sink"].drain();
    assert!(g["i150"].send(&to_sink(&idle_mac(150), idle_ip(150), 7)));
    let mut woke = false;
    let end = Instant::now() + Duration::from_secs(5);
    while !woke && Instant::now() < end {
        if let Some(f) = g["sink"].recv_timeout(Duration::from_millis(100)) {
            woke = u16::from_be_bytes([f.frame()[34], f.frame()[35]]) == 7;
        }
    }
    assert!(woke, "a frame on a quiet port wakes the sleeping worker");
    assert_eq!(sw.stats().port("i150").unwrap().rx_packets, 2);
    sw.stop();
}

/// SPEC 11.3: hosts marked down take effect with the next reload: frames from a local
/// port to a port on that host are dropped and counted as `host_down` (on the sending
/// port); the mark lasts across later reloads until cleared, and a reload without it
/// brings the host back (frames go into the tunnel again).
#[test]
fn spec11_3_hosts_marked_down_drop_their_ports_until_cleared() {
    // h1 (this switch) and h2 on loopback endpoints; the tunnel's port is free
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[switch]\nhost = \"h1\"\n\
         [[hosts]]\nname = \"h1\"\nendpoint = \"127.0.0.1\"\nport = {port}\n\
         [[hosts]]\nname = \"h2\"\nendpoint = \"127.0.0.2\"\nport = {port}\n\
         [[vpcs]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\n\
         [[subnets]]\nname = \"a1\"\nvpc = \"a\"\ncidr = \"10.0.1.0/24\"\n\
         [[ports]]\nname = \"p1\"\nsubnet = \"a1\"\nmac = \"02:00:00:00:01:01\"\nips = [\"10.0.1.11\"]\nhost = \"h1\"\n\
         [[ports]]\nname = \"p2\"\nsubnet = \"a1\"\nmac = \"02:00:00:00:01:02\"\nips = [\"10.0.1.12\"]\nhost = \"h2\"\n"
    );
    let c = Config::from_toml_str(&text).unwrap();
    let (b, g) = memory_backends(&c, 64);
    let sw = Switch::start(&c, b).unwrap();
    let frame = build::udp(
        build::Ends {
            dst: mac("02:00:00:00:01:02"),
            src: mac("02:00:00:00:01:01"),
            sip: ip("10.0.1.11"),
            dip: ip("10.0.1.12"),
        },
        64,
        1000,
        2000,
        b"to h2",
    );
    let host_down = |sw: &Switch| {
        sw.stats()
            .port("p1")
            .map_or(0, |p| p.dropped(DropReason::HostDown))
    };
    let sent = |sw: &Switch| sw.stats().tunnel.tx_packets;
    assert!(g["p1"].send(&frame));
    eventually_within(
        Duration::from_secs(5),
        Duration::from_millis(5),
        "sent to h2",
        || sent(&sw) == 1,
    );
    sw.set_hosts_down(vec!["h2".into()]);
    assert!(sw.hosts_down().is_empty(), "only with the next reload");
    sw.reload(&c, vec![]).unwrap();
    assert_eq!(sw.hosts_down(), ["h2"]);
    for _ in 0..3 {
        assert!(g["p1"].send(&frame));
    }
    eventually_within(
        Duration::from_secs(5),
        Duration::from_millis(5),
        "3 host_down",
        || host_down(&sw) == 3,
    );
    // still down after another reload
    sw.reload(&c, vec![]).unwrap();
    assert_eq!(sw.hosts_down(), ["h2"]);
    sw.set_hosts_down(vec![]);
    sw.reload(&c, vec![]).unwrap();
    assert!(sw.hosts_down().is_empty());
    assert!(g["p1"].send(&frame));
    eventually_within(
        Duration::from_secs(5),
        Duration::from_millis(5),
        "sent again",
        || sent(&sw) == 2,
    );
    assert_eq!(host_down(&sw), 3);
    sw.stop();
}
