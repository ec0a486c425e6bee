//! Frame parsing on arbitrary bytes: classify, ARP, IPv4 views, ICMP helpers, TSO
//! layout. No input may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpcswitch_wire::{arp, classify, icmp, tso::Tcp4Layout, Ipv4Packet, L3};

fuzz_target!(|data: &[u8]| {
    let _ = arp::parse(data.get(14..).unwrap_or(&[]));
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (p.verify_checksum(), p.payload().len(), p.is_fragment());
    }
    if let Ok(c) = classify(data) {
        if let L3::Ipv4 { .. } = c.l3 {
            let _ = icmp::is_echo_request(data);
            let mut buf = vec![0u8; data.len() + 128];
            buf[..data.len()].copy_from_slice(data);
            let _ = icmp::error_in_place(
                &mut buf,
                data.len(),
                c.src.mac(),
                std::net::Ipv4Addr::LOCALHOST,
                11,
                0,
            );
        }
    }
    if let Some(l) = Tcp4Layout::parse(data, 1 + data.first().copied().unwrap_or(0) as usize) {
        let mut out = vec![0u8; 2048];
        for i in 0..l.count().min(64) {
            let _ = l.write_segment(data, i, &mut out);
        }
    }
});
