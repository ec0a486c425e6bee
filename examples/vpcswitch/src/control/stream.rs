//! The streamed commands: `capture` (a port's frames) and `drops` (sampled dropped
//! frames), one JSON line each until done, with heartbeats while quiet.

use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use vpcswitch::runtime::observe::{Direction, PortIdentity};
use vpcswitch::wire::ipv6::NextHeader;
use vpcswitch::wire::{
    arp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, IPV6_HEADER_LEN,
};

use super::schema::{self as js, Dir};
use super::{err, ok, ok_data, send_line};
use crate::Running;

/// Sends one line of the [`js`] schema; false when the client is gone.
fn send<T: serde::Serialize>(s: &UnixStream, line: &T) -> bool {
    serde_json::to_value(line).is_ok_and(|v| send_line(s, &v))
}

/// The heartbeat line.
const HEARTBEAT: js::Heartbeat = js::Heartbeat { heartbeat: true };

/// The Unix time (µs) at which the switch's clock read 0: add a record's `ts_ns / 1000`.
/// Read once per stream, not per frame.
fn clock_base_us(running: &Running) -> u64 {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now_unix.saturating_sub(running.switch.now_ns() / 1000)
}

/// `capture PORT DIR COUNT [FILTER]`: streams the port's frames (those FILTER keeps,
/// [`vpcswitch::runtime::observe::CaptureFilter`]), one JSON line each, until COUNT
/// (0: until the client goes away). One capture per port at a time. The capture is bound
/// to the port, not its id: a reload that deletes the port ends it (the last line says
/// so in `ended`), and a port that later gets the same id is never captured by it.
pub fn capture(
    s: &UnixStream,
    running: &Running,
    port: &str,
    dir: &str,
    count: &str,
    filter: &str,
) {
    let (rx, tx) = match dir {
        "rx" => (true, false),
        "tx" => (false, true),
        "both" => (true, true),
        _ => {
            send_line(s, &err("direction must be rx, tx or both"));
            return;
        }
    };
    let Ok(count) = count.parse::<u64>() else {
        send_line(s, &err("count must be a number (0: until interrupted)"));
        return;
    };
    let filter = match vpcswitch::runtime::observe::CaptureFilter::parse(filter) {
        Ok(f) => f,
        Err(e) => {
            send_line(s, &err(&e));
            return;
        }
    };
    let shown_filter = filter.text().to_string();
    let Some(pid) = running.switch.port_identity(port) else {
        send_line(s, &err(&format!("no port named \"{port}\"")));
        return;
    };
    {
        let mut c = running.captures.lock().unwrap_or_else(|e| e.into_inner());
        if c.contains(&pid) {
            send_line(
                s,
                &err(&format!("port \"{port}\" is already being captured")),
            );
            return;
        }
        c.push(pid);
    }
    let obs = running.switch.observe();
    let release = || {
        running
            .captures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    };
    match obs.start_capture_with(pid, rx, tx, filter) {
        Ok(()) => {}
        Err(e) => {
            release();
            let why = match e {
                vpcswitch::runtime::observe::CaptureError::Gone => {
                    format!("port \"{port}\" was just deleted")
                }
                vpcswitch::runtime::observe::CaptureError::TooMany => format!(
                    "{} captures are running already (the most at once); stop one first",
                    vpcswitch::runtime::observe::MAX_CAPTURES
                ),
            };
            send_line(s, &err(&why));
            return;
        }
    }
    tracing::info!(port, direction = dir, count, filter = %shown_filter, "capture started");
    let lost0 = obs.lost();
    let base_us = clock_base_us(running);
    let mut sent = 0u64;
    let mut alive = send_line(
        s,
        &ok_data(
            format!("capturing {port} ({dir})\n"),
            &js::CaptureStart {
                snaplen_bytes: vpcswitch::runtime::observe::SNAPLEN as u32,
                port: port.to_string(),
                filter: shown_filter.clone(),
            },
        ),
    );
    let mut frames = Vec::new();
    let mut last_beat = std::time::Instant::now();
    let mut ended = None;
    while alive && (count == 0 || sent < count) {
        if running.stopping.load(Ordering::SeqCst) {
            ended = Some("the switch is stopping".to_string());
            break;
        }
        let want = if count == 0 {
            64
        } else {
            (count - sent).min(64) as usize
        };
        // checked before taking: frames recorded before the port went are still sent
        let gone = !obs.is_current(pid);
        obs.take_frames(pid, want, &mut frames);
        if frames.is_empty() && gone {
            ended = Some(format!("port \"{port}\" was deleted by a reload"));
            break;
        }
        if frames.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            if last_beat.elapsed() > Duration::from_secs(1) {
                alive = send(s, &HEARTBEAT);
                last_beat = std::time::Instant::now();
            }
            continue;
        }
        for f in frames.drain(..) {
            if alive {
                let hex: String = f.data.iter().map(|b| format!("{b:02x}")).collect();
                alive = send(
                    s,
                    &js::CaptureFrame {
                        ts_unix_us: base_us + f.ts_ns / 1000,
                        orig_len_bytes: f.orig_len as u64,
                        dir: if f.direction == Direction::Rx {
                            Dir::Rx
                        } else {
                            Dir::Tx
                        },
                        data: hex,
                    },
                );
                sent += 1;
            }
            obs.recycle(f);
        }
    }
    obs.stop_capture(pid);
    // frames still queued for this port are given back
    obs.take_frames(pid, usize::MAX, &mut frames);
    for f in frames.drain(..) {
        obs.recycle(f);
    }
    release();
    tracing::info!(
        port,
        frames = sent,
        ended = ended.as_deref(),
        "capture ended"
    );
    if alive {
        send(
            s,
            &js::StreamDone {
                done: true,
                count: sent,
                lost_frames: obs.lost() - lost0,
                ended,
            },
        );
    }
}

/// A one-line decode of the start of a frame (it may be cut short: an IPv4 header is
/// read when its first 20 bytes are there, an IPv6 one when its 40 are, whatever their
/// length fields say), through the wire views.
fn decode(b: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(b) else {
        return format!("{} bytes", b.len());
    };
    let payload = eth.payload();
    let l3 = match eth.ethertype() {
        EtherType::IPV4 if payload.len() >= vpcswitch::wire::IPV4_MIN_HEADER_LEN => {
            // the fixed fields only: present in any 20 bytes
            let ip = Ipv4Packet::new_unchecked(payload);
            let proto = match ip.protocol() {
                IpProtocol::ICMP => "icmp".to_string(),
                IpProtocol::TCP => "tcp".to_string(),
                IpProtocol::UDP => "udp".to_string(),
                p => format!("proto {p}"),
            };
            format!("IPv4 {} > {} {proto} ttl {}", ip.src(), ip.dst(), ip.ttl())
        }
        EtherType::ARP if payload.len() >= arp::ARP_LEN => match arp::parse(payload) {
            Ok(a) => {
                let op = match a.op {
                    arp::OP_REQUEST => "request",
                    arp::OP_REPLY => "reply",
                    _ => "op?",
                };
                format!(
                    "ARP {op} {} > {}",
                    Ipv4Addr::from(a.spa),
                    Ipv4Addr::from(a.tpa)
                )
            }
            Err(e) => format!("ARP ({e})"),
        },
        EtherType::VLAN | EtherType::QINQ => "802.1Q/802.1ad tagged".into(),
        EtherType::IPV6 if payload.len() >= IPV6_HEADER_LEN => {
            // the fixed header only: present in any 40 bytes (the head may be cut short
            // of what its payload length says, so not `new_checked`)
            let ip = Ipv6Packet::new_unchecked(payload);
            let next = match ip.next_header() {
                NextHeader::ICMPV6 => "icmp6".to_string(),
                NextHeader::TCP => "tcp".to_string(),
                NextHeader::UDP => "udp".to_string(),
                n => format!("next header {n}"),
            };
            format!(
                "IPv6 {} > {} {next} hlim {}",
                ip.src(),
                ip.dst(),
                ip.hop_limit()
            )
        }
        other => format!("ethertype {other:#06x}"),
    };
    format!("{} > {} {l3}", eth.src(), eth.dst())
}

/// `drops SECS [PORT]`: samples dropped frames for SECS seconds (0: until the client
/// goes away), one JSON line each, of every port or of PORT only. Sampling is on only
/// while someone reads it, and at most `DROP_SAMPLES_PER_SEC` per worker. Samples carry
/// the port's identity: each is named after the port it was charged to (`?` once that
/// port is deleted), and a PORT filter follows that port only, ending when a reload
/// deletes it (never showing the drops of a port that later gets its id).
pub fn drops(s: &UnixStream, running: &Running, secs: &str, port: Option<&str>) {
    let Ok(secs) = secs.parse::<u64>() else {
        send_line(s, &err("seconds must be a number (0: follow)"));
        return;
    };
    let only: Option<PortIdentity> = match port {
        None => None,
        Some(p) => match running.switch.port_identity(p) {
            Some(who) => Some(who),
            None => {
                send_line(s, &err(&format!("no port named \"{p}\"")));
                return;
            }
        },
    };
    let obs = running.switch.observe();
    let end = (secs > 0).then(|| std::time::Instant::now() + Duration::from_secs(secs));
    let mut alive = send_line(s, &ok("sampling drops\n".into(), json!({})));
    let mut sent = 0u64;
    let base_us = clock_base_us(running);
    let mut got = Vec::new();
    let mut last_beat = std::time::Instant::now();
    let mut ended = None;
    while alive && end.is_none_or(|e| std::time::Instant::now() < e) {
        if running.stopping.load(Ordering::SeqCst) {
            ended = Some("the switch is stopping".to_string());
            break;
        }
        obs.sample_drops_until(running.switch.now_ns() + 2_000_000_000);
        // checked before taking: drops sampled before the port went are still sent
        let gone = only.filter(|w| !obs.is_current(*w));
        obs.take_drops(&mut got);
        for d in got.drain(..) {
            if only.is_some_and(|w| w != d.identity()) {
                continue;
            }
            let head = &d.head[..d.head_len];
            alive = alive
                && send(
                    s,
                    &js::DropSample {
                        ts_unix_us: base_us + d.ts_ns / 1000,
                        port: running.switch.port_name(d.identity()),
                        reason: d.reason.name().to_string(),
                        orig_len_bytes: d.len as u64,
                        decode: decode(head),
                        head: head.iter().map(|b| format!("{b:02x}")).collect(),
                    },
                );
            sent += 1;
        }
        if last_beat.elapsed() > Duration::from_secs(1) {
            alive = alive && send(s, &HEARTBEAT);
            last_beat = std::time::Instant::now();
        }
        if gone.is_some() {
            ended = port.map(|p| format!("port \"{p}\" was deleted by a reload"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive {
        send(
            s,
            &js::StreamDone {
                done: true,
                count: sent,
                lost_frames: 0,
                ended,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    fn hex(s: &str) -> Vec<u8> {
        super::super::unhex(s).unwrap()
    }

    /// `ctl drops` decodes the head of a frame, cut short or not, without panicking.
    #[test]
    fn decode_names_what_the_head_of_a_frame_holds() {
        let eth = "ffffffffffff 020000000103";
        let arp = hex(&format!(
            "{eth} 0806 0001 0800 06 04 0001 020000000103 0a00010d 000000000000 0a00010b"
        ));
        assert_eq!(
            decode(&arp),
            "02:00:00:00:01:03 > ff:ff:ff:ff:ff:ff ARP request 10.0.1.13 > 10.0.1.11"
        );
        let ip = hex(&format!(
            "{eth} 0800 4500 0054 0000 4000 4001 0000 0a00010d 0a00014d 0800"
        ));
        assert_eq!(
            decode(&ip),
            "02:00:00:00:01:03 > ff:ff:ff:ff:ff:ff IPv4 10.0.1.13 > 10.0.1.77 icmp ttl 64"
        );
        // the IPv4 header cut short: the EtherType alone
        assert!(decode(&ip[..30]).ends_with("ethertype 0x0800"));
        assert_eq!(decode(&ip[..10]), "10 bytes");
        assert!(decode(&hex(&format!("{eth} 8100 0001"))).ends_with("802.1Q/802.1ad tagged"));
        // Issue 20, SPEC 12: IPv6 as IPv4, its addresses, next header and hop limit,
        // from the fixed header even when the head is cut short of its payload length
        let ip6 = hex(&format!(
            "{eth} 86dd 60000000 0040 3a 40 fd00000a000000010000000000000011 \
             fd00000a000000020000000000000011 8000"
        ));
        assert_eq!(
            decode(&ip6),
            "02:00:00:00:01:03 > ff:ff:ff:ff:ff:ff IPv6 fd00:a:0:1::11 > fd00:a:0:2::11 \
             icmp6 hlim 64"
        );
        let mut udp6 = ip6.clone();
        udp6[20] = 17;
        assert!(
            decode(&udp6).contains("fd00:a:0:2::11 udp hlim 64"),
            "{}",
            decode(&udp6)
        );
        udp6[20] = 50;
        assert!(
            decode(&udp6).ends_with("next header 50 hlim 64"),
            "{}",
            decode(&udp6)
        );
        // the IPv6 header cut short: the EtherType alone
        assert!(
            decode(&ip6[..50]).ends_with("ethertype 0x86dd"),
            "{}",
            decode(&ip6[..50])
        );
        // an ARP that is not Ethernet/IPv4
        let bad = hex(&format!(
            "{eth} 0806 0006 0800 06 04 0001 020000000103 0a00010d 000000000000 0a00010b"
        ));
        assert!(decode(&bad).contains("ARP ("), "{}", decode(&bad));
    }
}
