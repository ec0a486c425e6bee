//! A UDP load generator for the veth benchmarks (`benches/veth-pps.sh`): sends
//! datagrams of `--len` payload bytes (18: a 64-byte Ethernet frame with its FCS) from a
//! connected UDP socket, 64 per `sendmmsg(2)`, for `--secs` seconds, then prints what it
//! sent. Always bounded in time; a full socket queue is retried, not counted.
//!
//! With `--raw IFACE --src-ip IP --dst-mac MAC` it writes whole Ethernet frames to the
//! guest's interface through an AF_PACKET socket (qdisc bypassed) instead, so the
//! sender's own UDP/IP stack is not what limits the rate (the source MAC is the
//! interface's).
//!
//! With `--pps N` it paces datagrams evenly at N per second instead of sending as fast
//! as it can (one per `sendmmsg`, waiting by spinning for the last 200 µs): a steady
//! stream whose interval bounds how late a switch can see "the next packet" (the VIP
//! failover timing of `vpcswitch-bench`).
//!
//!   vpcswitch-udpgen 10.9.0.12:9 [--secs 5] [--len 18] [--pps N] [--raw eth0 --src-ip 10.9.0.11 --dst-mac 02:..]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use std::time::{Duration, Instant};
use vpcswitch_wire::MacAddr;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dst: Option<SocketAddr> = None;
    let mut secs = 5.0f64;
    let mut len = 18usize;
    let mut pps: Option<f64> = None;
    let (mut raw, mut src_ip, mut dst_mac) =
        (None::<String>, None::<std::net::Ipv4Addr>, None::<MacAddr>);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--secs" => {
                secs = val("--secs")
                    .parse()
                    .unwrap_or_else(|_| die("--secs: a number"))
            }
            "--len" => {
                len = val("--len")
                    .parse()
                    .unwrap_or_else(|_| die("--len: a number"))
            }
            "--pps" => {
                pps = Some(
                    val("--pps")
                        .parse()
                        .ok()
                        .filter(|p: &f64| (1.0..=1e6).contains(p))
                        .unwrap_or_else(|| die("--pps: a rate of 1..1000000 per second")),
                )
            }
            "--raw" => raw = Some(val("--raw")),
            "--src-ip" => {
                src_ip = Some(
                    val("--src-ip")
                        .parse()
                        .unwrap_or_else(|_| die("--src-ip: an IPv4 address")),
                )
            }
            "--dst-mac" => {
                dst_mac = Some(
                    val("--dst-mac")
                        .parse()
                        .unwrap_or_else(|_| die("--dst-mac: a MAC")),
                )
            }
            s => {
                dst = Some(
                    s.parse()
                        .unwrap_or_else(|_| die(&format!("{s}: not IP:PORT"))),
                )
            }
        }
    }
    let dst =
        dst.unwrap_or_else(|| die("usage: vpcswitch-udpgen IP:PORT [--secs N] [--len BYTES]"));
    if !(0.1..=600.0).contains(&secs) || len > 1472 {
        die("--secs must be 0.1..600 and --len at most 1472");
    }
    let payload = vec![0x5au8; len];
    let vnet = [0u8; 10];
    let (sock, hdr, msg): (OwnedFd, &[u8], Vec<u8>) = match raw {
        None => {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
            s.connect(dst)
                .unwrap_or_else(|e| die(&format!("connect {dst}: {e}")));
            (s.into(), &[], payload)
        }
        Some(ifn) => {
            let (Some(sip), Some(dmac), SocketAddr::V4(d)) = (src_ip, dst_mac, dst) else {
                die("--raw needs --src-ip, --dst-mac and an IPv4 destination")
            };
            let smac: MacAddr = std::fs::read_to_string(format!("/sys/class/net/{ifn}/address"))
                .ok()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or_else(|| die(&format!("no interface {ifn}")));
            let idx = vpcswitch_backend::sys::if_index(&ifn)
                .unwrap_or_else(|e| die(&format!("{ifn}: {e}")));
            let fd = vpcswitch_packet::sys::open_packet(idx, None)
                .unwrap_or_else(|e| die(&format!("AF_PACKET socket on {ifn}: {e}")));
            let frame = vpcswitch_wire::build::udp(
                vpcswitch_wire::build::Ends {
                    dst: dmac,
                    src: smac,
                    sip,
                    dip: *d.ip(),
                },
                64,
                40000,
                d.port(),
                &payload,
            );
            (fd, &vnet[..], frame)
        }
    };
    let fd = sock.as_raw_fd();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    if let Some(pps) = pps {
        let gap = Duration::from_secs_f64(1.0 / pps);
        let mut next = start;
        while next < end {
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                if next - now > Duration::from_micros(200) {
                    std::thread::sleep(next - now - Duration::from_micros(200));
                } else {
                    std::hint::spin_loop();
                }
            }
            match vpcswitch_packet::sys::send_batch(fd, std::iter::once((hdr, &msg[..]))) {
                Ok(k) => sent += k as u64,
                Err(_) => errors += 1,
            }
            next += gap;
        }
    } else {
        while Instant::now() < end {
            for _ in 0..16 {
                let msgs = std::iter::repeat_n((hdr, &msg[..]), vpcswitch_packet::sys::BATCH_MAX);
                match vpcswitch_packet::sys::send_batch(fd, msgs) {
                    Ok(k) => sent += k as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::yield_now()
                    }
                    // ECONNREFUSED from an ICMP port unreachable, ENOBUFS: keep going
                    Err(_) => errors += 1,
                }
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} in {t:.2} s: {:.0} pps ({errors} send errors)",
        sent as f64 / t
    );
}

fn die(msg: &str) -> ! {
    eprintln!("vpcswitch-udpgen: {msg}");
    std::process::exit(2)
}
