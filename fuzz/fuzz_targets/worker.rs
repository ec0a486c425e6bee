//! The worker path, end to end: an arbitrary virtio-net header and frame received on
//! any port of a fixed topology (VIPs, a peering, a next-hop port, a check-off port, an
//! uplink with EIPs; some destinations take offload, some do not) go through the
//! ingress offload check, the pipeline and `enqueue` (checksum completion, software
//! segmentation, headers derived for offload devices) of a real worker.
//!
//! Oracle — the delivered-frame invariant (SPEC 2, 2.5, 7.3): everything a port
//! receives could have been sent by its sender under SPEC 2. A frame with the sender's
//! MAC carries a source IP (or ARP sender IP) in the sender's allowed set (when its
//! check is on) and never claims another's address (2.3a); a routed frame (the gateway
//! MAC) carries the sender's address, its EIP, or is the switch's own answer from a
//! gateway address; from the uplink only outside addresses come in. A port without
//! offload receives no offload work; a port with offload receives a header that passes
//! the ingress check itself.
#![no_main]
use std::collections::HashSet;
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use vpcswitch_model::{Config, ConfigBuilder};
use vpcswitch_runtime::harness::{Delivered, WorkerHarness};
use vpcswitch_wire::offload::{Offload, VnetHdr};

fn config() -> Config {
    ConfigBuilder::new()
        .workers(1)
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("lvs", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
        .src_dst_check(false)
        .allowed_mac("02:00:00:00:01:33")
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
        .route_via_port("a", "192.168.0.0/16", "lvs")
        .uplink("up", "02:00:00:00:ff:01", "203.0.113.1")
        .route_via_uplink("a", "0.0.0.0/0")
        .route_via_uplink("b", "0.0.0.0/0")
        .eip_for_vip("203.0.113.10", "v")
        .eip_for_port("203.0.113.11", "r1")
        .build()
        .expect("valid topology")
}

/// Ports that take offload (as TAPs with offload on do); the rest do not.
const OFFLOAD: &[&str] = &["p2", "r1", "lvs"];
const PORTS: &[&str] = &["p1", "p2", "lvs", "q1", "r1", "up"];

struct World {
    h: WorkerHarness,
    ids: Vec<u32>,
    gateways: HashSet<u32>,
    fixed: Vec<(u32, u32)>,
    vips: Vec<(u32, Vec<u32>)>,
    vpc_cidrs: Vec<(u32, u32)>,
    eips: Vec<(u32, u32)>,
}

fn v4(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().expect("address"))
}

fn world() -> World {
    let cfg = config();
    let h = WorkerHarness::new(&cfg, |p| OFFLOAD.contains(&p)).expect("harness");
    let id = |n: &str| h.port_id(n).expect("port");
    let ids = PORTS.iter().map(|n| id(n)).collect();
    let gateways = ["10.0.1.1", "10.0.2.1", "10.1.1.1"].map(v4).into();
    let fixed = [
        ("p1", "10.0.1.11"),
        ("p2", "10.0.1.12"),
        ("lvs", "10.0.1.13"),
        ("q1", "10.0.2.11"),
        ("r1", "10.1.1.11"),
    ]
    .iter()
    .map(|(p, a)| (id(p), v4(a)))
    .collect();
    let vips = vec![(v4("10.0.1.100"), vec![id("p1"), id("p2")])];
    let vpc_cidrs = vec![(v4("10.0.0.0"), 16), (v4("10.1.0.0"), 16)];
    let eips = vec![
        (v4("203.0.113.10"), v4("10.0.1.100")),
        (v4("203.0.113.11"), v4("10.1.1.11")),
    ];
    World {
        h,
        ids,
        gateways,
        fixed,
        vips,
        vpc_cidrs,
        eips,
    }
}

/// SPEC 7.3/7.4: why an address is not global unicast, if it is not.
fn martian(a: u32) -> Option<&'static str> {
    match a >> 24 {
        0 => Some("0/8"),
        127 => Some("loopback"),
        224..=239 => Some("multicast"),
        240..=255 => Some("reserved or broadcast"),
        169 if a >> 16 & 0xff == 254 => Some("link-local"),
        _ => None,
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl World {
    fn in_vpc(&self, a: u32) -> bool {
        self.vpc_cidrs
            .iter()
            .any(|&(net, len)| a >> (32 - len) == net >> (32 - len))
    }
    /// SPEC 2.3a: addresses of the sender's VPC that no port may claim in ARP but its
    /// own (another VPC's addresses mean nothing on this segment).
    fn foreign_for(&self, p: u32, a: u32) -> bool {
        let same_vpc = self.fixed.iter().any(|&(q, ip)| {
            q == p
                && self.vpc_cidrs.iter().any(|&(net, len)| {
                    ip >> (32 - len) == net >> (32 - len) && a >> (32 - len) == net >> (32 - len)
                })
        });
        same_vpc
            && (self.gateways.contains(&a)
                || self.fixed.iter().any(|&(q, ip)| q != p && ip == a)
                || self
                    .vips
                    .iter()
                    .any(|(ip, bound)| *ip == a && !bound.contains(&p)))
    }

    /// The delivered-frame invariant for one frame `d` received by `d.port`, sent by
    /// `from`.
    fn check(&self, from: u32, d: &Delivered) {
        let snap = self.h.snapshot();
        let sender = snap.port(from).expect("sender");
        let f = &d.frame[..];
        assert!(f.len() >= 14, "runt delivered: {f:02x?}");
        // SPEC 2.5: offload state only where the device takes it, and valid there
        if OFFLOAD.contains(&snap.port(d.port).expect("port").name.as_str()) {
            assert_eq!(
                Offload::check(&d.vnet, f),
                Ok(d.offload),
                "a device header that does not pass the ingress check: {:?} {f:02x?}",
                d.vnet
            );
        } else {
            assert_eq!(
                d.offload,
                Offload::None,
                "offload work left for a port without offload"
            );
            assert_eq!(d.vnet, VnetHdr::default());
        }
        if d.port == from {
            // the switch's answers to the sender itself (ARP replies, ICMP errors,
            // echo replies): truthful by construction, not the sender's frame
            return;
        }
        let src_mac: [u8; 6] = f[6..12].try_into().expect("6 bytes");
        let gateway = src_mac == snap.gateway_mac.0;
        let own = sender.owns_mac(vpcswitch_wire::MacKey::from_bytes(&src_mac));
        let et = u16::from_be_bytes([f[12], f[13]]);
        if sender.is_uplink {
            // SPEC 7.1/7.3: only translated traffic from outside addresses comes in
            assert!(gateway, "uplink frame not routed: {f:02x?}");
            assert_eq!(et, 0x0800, "only IPv4 comes in from the uplink");
            let src = be32(&f[26..30]);
            assert!(!self.in_vpc(src), "a VPC source from the outside: {f:02x?}");
            assert!(
                martian(src).is_none(),
                "SPEC 7.3: a martian source {src:#x}"
            );
            assert!(
                !self.eips.iter().any(|e| e.0 == src),
                "an EIP source from the outside"
            );
            return;
        }
        let dest = snap.port(d.port).expect("destination");
        if dest.is_uplink {
            // SPEC 7.2/7.4: out through the uplink only from its MAC, with an EIP of the
            // sender's as the source, to a global address; or the switch's ARP for the
            // next hop, from an EIP
            assert_eq!(
                src_mac, dest.mac.0,
                "uplink frame from another MAC: {f:02x?}"
            );
            if et == 0x0806 && f.len() >= 42 {
                let spa = be32(&f[28..32]);
                assert!(
                    self.eips.iter().any(|e| e.0 == spa),
                    "next-hop ARP from {spa:#x}"
                );
                return;
            }
            assert_eq!(et, 0x0800, "only IPv4 leaves through the uplink: {f:02x?}");
            let (src, dst) = (be32(&f[26..30]), be32(&f[30..34]));
            assert!(
                self.eips
                    .iter()
                    .any(|&(e, a)| e == src && sender.allows_ip(a)),
                "SPEC 7.2: source {src:#x} is not an EIP of {}",
                sender.name
            );
            assert!(
                !self.in_vpc(dst) && martian(dst).is_none(),
                "SPEC 7.4: to {dst:#x}"
            );
            return;
        }
        assert!(
            own || gateway,
            "delivered with a MAC that is neither the sender's nor the gateway's: {f:02x?}"
        );
        match et {
            0x0806 if f.len() >= 42 => {
                let (sha, spa) = (&f[22..28], be32(&f[28..32]));
                if gateway {
                    // the switch's own VIP probe, from a gateway address
                    assert!(self.gateways.contains(&spa), "switch ARP from {spa:#x}");
                    return;
                }
                if sender.src_dst_check {
                    assert_eq!(sha, &f[6..12], "SPEC 2.3: ARP sender MAC");
                    assert!(
                        spa == 0 || sender.allows_ip(spa),
                        "SPEC 2.3: ARP sender IP {spa:#x} from {}",
                        sender.name
                    );
                }
                assert!(
                    !self.foreign_for(from, spa),
                    "SPEC 2.3a: {} claims {spa:#x}",
                    sender.name
                );
            }
            0x0800 if f.len() >= 34 => {
                let src = be32(&f[26..30]);
                if gateway && f[23] == 1 && self.gateways.contains(&src) {
                    return; // an ICMP answer of the switch's
                }
                if sender.src_dst_check || gateway {
                    let eip_of_own = self
                        .eips
                        .iter()
                        .any(|&(e, a)| e == src && sender.allows_ip(a));
                    let routed_from_check_off = gateway && !sender.src_dst_check;
                    assert!(
                        sender.allows_ip(src)
                            || eip_of_own
                            || routed_from_check_off
                            || (src == 0 && !gateway),
                        "SPEC 2.3: source {src:#x} from {} to port {}",
                        sender.name,
                        d.port
                    );
                }
            }
            _ => panic!("delivered a frame of EtherType {et:#06x}: {f:02x?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! { static W: std::cell::RefCell<World> = std::cell::RefCell::new(world()); }
    // first byte: ingress port; next ten: the virtio-net header; the rest: the frame
    if data.len() < 11 {
        return;
    }
    let sel = usize::from(data[0]);
    let vnet = VnetHdr::from_wire(data[1..11].try_into().expect("10 bytes"));
    let frame = &data[11..];
    W.with(|w| {
        let mut w = w.borrow_mut();
        let from = w.ids[sel % w.ids.len()];
        let out = w.h.send(from, vnet, frame);
        for d in &out {
            w.check(from, d);
        }
    });
});
