//! The tunnel on a real underlay (needs root and iproute2; the capture test needs
//! tcpdump): two network namespaces of the test's own joined by a veth pair (MTU 1500,
//! 10.213.0.0/24), our [`Tunnel`] in one and our `Tunnel` or a Linux `vxlan` device in
//! the other. Inner frames use 10.214.0.0/24 and 10.0.0.0/24; nothing leaves the
//! namespaces, which are deleted when a test ends, passed or failed.

mod common;
use common::*;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vpcswitch_backend::sys::if_index;
use vpcswitch_backend::{Pool, QueuePools, LARGE_BUF_SIZE};
use vpcswitch_packet::sys as packet;
use vpcswitch_tunnel::{interface_mtu_of, RxMeta, Tunnel, TunnelConfig, TxFrame, VXLAN_PORT};
use vpcswitch_wire::build::{self, Ends};
use vpcswitch_wire::vxlan::{self, source_port, Outer};
use vpcswitch_wire::MacAddr;

const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0xa0, 0x01]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0xb0, 0x02]);

/// A UDP frame of exactly `len` bytes (at least 60) of flow `flow` (its UDP source
/// port), its payload filled with `fill`.
fn frame(flow: u16, len: usize, fill: u8) -> Vec<u8> {
    let ends = Ends {
        dst: MAC_B,
        src: MAC_A,
        sip: Ipv4Addr::new(10, 0, 0, 1),
        dip: Ipv4Addr::new(10, 0, 0, 2),
    };
    let f = build::udp(ends, 64, 10_000 + flow, 80, &vec![fill; len - 42]);
    assert_eq!(f.len(), len);
    f
}

/// An echo request (sequence 1, identifier `ident`) from 10.214.0.1 behind our tunnel
/// to 10.214.0.2, the Linux vxlan device's address, at its MAC.
fn echo_to_vx0(ident: u16) -> Vec<u8> {
    build::icmp_echo(
        MAC_B,
        MAC_A,
        Ipv4Addr::new(10, 214, 0, 1),
        Ipv4Addr::new(10, 214, 0, 2),
        64,
        ident,
        1,
    )
}

/// Frames of several sizes and VNIs cross whole, each from the UDP source port of its
/// flow, through both send paths (copied `push` + `flush`, zero-copy `send_burst`) and
/// both receive paths (the tunnel's buffers, the worker's packet buffers).
#[test]
fn frames_of_several_sizes_and_vnis_round_trip() {
    let u = Underlay::new("rt");
    let (mut ta, mut tb) = u.open_pair();
    let (_, eb) = u.endpoints();
    assert_eq!(tb.local(), eb);

    // the underlay as the kernel routes it: guests get 1500 - 50
    assert_eq!(
        u.in_ns(&u.a, || ta.underlay_mtu(u.ip_b))
            .expect("route MTU"),
        1500
    );
    assert_eq!(
        u.in_ns(&u.a, || interface_mtu_of(u.ip_a))
            .expect("endpoint MTU"),
        (u.veth_a.clone(), 1500)
    );
    let biggest = vxlan::max_inner_frame(1500);
    assert_eq!(biggest, 1464);

    // push + flush
    let sent: Vec<(u32, Vec<u8>)> = [
        (1, 60),
        (42, 64),
        (4096, 128),
        (vxlan::VNI_MAX, 512),
        (7, 1000),
        (65_536, 1400),
        (99, biggest),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (vni, len))| (vni, frame(i as u16, len, i as u8)))
    .collect();
    for (vni, f) in &sent {
        assert!(ta.push(eb, *vni, source_port(f), f));
    }
    assert_eq!(ta.pending(), sent.len());
    assert_eq!(ta.flush(), sent.len(), "{:?}", ta.stats());
    let mut got = recv_n(&mut tb, sent.len());
    let mut want: Vec<Got> = sent
        .iter()
        .map(|(vni, f)| Got {
            from: SocketAddrV4::new(u.ip_a, source_port(f)),
            vni: *vni,
            frame: f.clone(),
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let s = ta.stats();
    assert_eq!((s.tx_packets, s.tx_dropped()), (sent.len() as u64, 0));
    let total: usize = sent.iter().map(|(_, f)| f.len()).sum();
    assert_eq!(s.tx_bytes, total as u64);
    assert_eq!(s.tx_calls, 1, "one sendmmsg for the batch");
    let r = tb.stats();
    assert_eq!(
        (r.rx_packets, r.rx_bytes, r.rx_dropped()),
        (7, total as u64, 0)
    );

    // send_burst (no copy), 32 flows in one call, and the same flows again with other
    // payloads: the source port differs between flows and is stable per flow
    let flows: Vec<Vec<u8>> = (0..32).map(|i| frame(100 + i, 80, 0x11)).collect();
    let again: Vec<Vec<u8>> = (0..32).map(|i| frame(100 + i, 300, 0x22)).collect();
    for batch in [&flows, &again] {
        let n = ta.send_burst(batch.iter().map(|f| TxFrame {
            dst: eb,
            vni: 5000,
            src_port: source_port(f),
            frame: f,
        }));
        assert_eq!(n, 32, "{:?}", ta.stats());
    }
    let got = recv_n(&mut tb, 64);
    assert_eq!(got.len(), 64);
    let port_of = |f: &[u8]| {
        got.iter()
            .find(|g| g.frame == f)
            .map(|g| g.from.port())
            .expect("frame received")
    };
    let mut ports = Vec::new();
    for (f, g) in flows.iter().zip(&again) {
        let p = port_of(f);
        assert_eq!(p, port_of(g), "one flow, one source port");
        assert!(p >= vxlan::SRC_PORT_MIN);
        ports.push(p);
    }
    ports.sort_unstable();
    ports.dedup();
    assert!(
        ports.len() >= 28,
        "32 flows used only {} ports",
        ports.len()
    );
    assert!(got.iter().all(|g| g.vni == 5000 && *g.from.ip() == u.ip_a));

    // straight into the worker's packet buffers
    let pools = QueuePools {
        small: Pool::new(256),
        large: Pool::with_size(16, LARGE_BUF_SIZE),
    };
    let mut bufs = pools.bufs();
    let small: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(200 + i, 200 + usize::from(i), 0x33))
        .collect();
    // b reopened with frames that fit an ordinary buffer (closed first: two sockets on
    // the port would share its datagrams)
    let cfg_b = TunnelConfig::with_mtu(u.ip_b, VXLAN_PORT, 1500);
    assert_eq!(cfg_b.max_frame, 1464);
    drop(tb);
    let mut tb = u
        .in_ns(&u.b, || Tunnel::open(cfg_b))
        .expect("tunnel in b again");
    for f in &small {
        assert!(ta.push(eb, 77, source_port(f), f));
    }
    assert_eq!(ta.flush(), 5);
    let (mut out, mut meta) = (Vec::with_capacity(32), Vec::with_capacity(32));
    let end = Instant::now() + Duration::from_secs(5);
    while out.len() < 5 && Instant::now() < end {
        tb.recv_bufs(&mut bufs, &mut out, &mut meta, 32);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(out.len(), 5);
    let mut pairs: Vec<(Vec<u8>, RxMeta)> = out
        .iter()
        .map(|b| b.frame().to_vec())
        .zip(meta.iter().copied())
        .collect();
    pairs.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = small.clone();
    want.sort();
    for ((f, m), w) in pairs.iter().zip(&want) {
        assert_eq!(f, w);
        assert_eq!(
            *m,
            RxMeta {
                from: SocketAddrV4::new(u.ip_a, source_port(w)),
                vni: 77
            }
        );
    }
    assert!(out
        .iter()
        .all(|b| b.capacity() == vpcswitch_backend::BUF_SIZE));
    // nothing left behind: every buffer is in out, the pool or the worker's cache
    drop(out);
    assert_eq!(
        pools.small.available() + bufs.held().0,
        pools.small.size(),
        "recv_bufs gave back the buffers nothing arrived in"
    );
}

/// Frames of one flow: `count` frames of `len` bytes, the last of `last` bytes, each
/// payload byte its index.
fn train_frames(flow: u16, count: usize, len: usize, last: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| frame(flow, if i + 1 == count { last } else { len }, i as u8))
        .collect()
}

/// Sends `frames` as one train of `seg_len`-byte segments from `t`'s source port of
/// their flow.
fn send_frames(
    t: &mut Tunnel,
    to: SocketAddrV4,
    vni: u32,
    frames: &[Vec<u8>],
    seg_len: usize,
) -> vpcswitch_tunnel::Train {
    let sport = t.source_port(&frames[0]);
    t.send_train(to, vni, sport, frames.len(), seg_len, |i, out| {
        let f = &frames[i];
        out.get_mut(..f.len())?.copy_from_slice(f);
        Some(f.len())
    })
}

/// UDP GSO and GRO (SPEC 10.1, the underlay): a train of 50 frames of one flow leaves
/// as two `sendmsg`s (at most 64 KiB each), crosses the veth whole, is read coalesced
/// (GRO) and split again: every frame arrives once, in order, from the flow's source
/// port (one of the tunnel's send sockets, in 49152..=65535), through both receive
/// paths. A frame shorter than the segment size in the middle ends its train early,
/// a frame the caller leaves out is skipped, and without GSO the same train goes
/// frame by frame.
#[test]
fn gso_trains_cross_whole_and_are_split_again_in_order() {
    let u = Underlay::new("gso");
    let (mut ta, mut tb) = u.open_pair();
    let (ea, eb) = u.endpoints();
    let seg = vxlan::max_inner_frame(1500);
    let frames = train_frames(1, 50, seg, 700);
    let sport = ta.source_port(&frames[0]);
    assert!(sport >= vxlan::SRC_PORT_MIN, "{sport}");
    let t = send_frames(&mut ta, eb, 4242, &frames, seg);
    assert_eq!(
        (t.sent, t.refused, t.skipped),
        (50, 0, 0),
        "{:?}",
        ta.stats()
    );
    let total: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(t.bytes, total as u64);
    let s = ta.stats();
    assert_eq!(
        (s.tx_trains, s.tx_packets, s.tx_bytes),
        (2, 50, total as u64),
        "{s:?}"
    );
    let got = recv_n(&mut tb, 50);
    assert_eq!(got.len(), 50, "{:?}", tb.stats());
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(
            (&g.frame, g.vni, g.from),
            (f, 4242, SocketAddrV4::new(u.ip_a, sport)),
            "in order, whole"
        );
    }
    let r = tb.stats();
    assert!(r.rx_coalesced >= 1, "the trains were read coalesced: {r:?}");
    assert_eq!((r.rx_packets, r.rx_dropped()), (50, 0), "{r:?}");

    // into packet buffers, with a short frame in the middle and one left out
    let pools = QueuePools {
        small: Pool::new(256),
        large: Pool::with_size(16, LARGE_BUF_SIZE),
    };
    let mut bufs = pools.bufs();
    let cfg_b = TunnelConfig::with_mtu(u.ip_b, VXLAN_PORT, 1500);
    drop(tb);
    let mut tb = u
        .in_ns(&u.b, || Tunnel::open(cfg_b))
        .expect("tunnel in b again");
    let mut frames = train_frames(2, 20, seg, seg);
    frames[7] = frame(2, 300, 7);
    let sport = ta.source_port(&frames[0]);
    let t = ta.send_train(eb, 5, sport, 20, seg, |i, out| {
        if i == 12 {
            return None;
        }
        let f = &frames[i];
        out.get_mut(..f.len())?.copy_from_slice(f);
        Some(f.len())
    });
    assert_eq!((t.sent, t.skipped), (19, 1), "{:?}", ta.stats());
    assert_eq!(ta.stats().tx_trains, 4, "the short frame ended a train");
    let (mut out, mut meta) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let end = Instant::now() + Duration::from_secs(5);
    while out.len() < 19 && Instant::now() < end {
        // small calls: a coalesced read is split over several
        tb.recv_bufs(&mut bufs, &mut out, &mut meta, 4);
        std::thread::sleep(Duration::from_millis(2));
    }
    let want: Vec<&Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 12)
        .map(|(_, f)| f)
        .collect();
    let got: Vec<Vec<u8>> = out.iter().map(|b| b.frame().to_vec()).collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    assert!(meta.iter().all(|m| *m
        == RxMeta {
            from: SocketAddrV4::new(u.ip_a, sport),
            vni: 5
        }));
    drop(out);

    // without GSO: frame by frame, through the raw socket, same order
    let mut cfg = TunnelConfig::with_mtu(u.ip_a, 0, 1500);
    cfg.gso = false;
    let mut tc = u
        .in_ns(&u.a, || Tunnel::open(cfg))
        .expect("tunnel without gso");
    assert_ne!(tc.local(), ea);
    let frames = train_frames(3, 10, seg, 100);
    let t = send_frames(&mut tc, eb, 6, &frames, seg);
    assert_eq!(t.sent, 10);
    tc.flush();
    assert_eq!(tc.stats().tx_trains, 0);
    let (mut out, mut meta) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let end = Instant::now() + Duration::from_secs(5);
    while out.len() < 10 && Instant::now() < end {
        tb.recv_bufs(&mut bufs, &mut out, &mut meta, 32);
        std::thread::sleep(Duration::from_millis(2));
    }
    let got: Vec<Vec<u8>> = out.iter().map(|b| b.frame().to_vec()).collect();
    assert_eq!(got, frames);
}

/// What is not a VXLAN datagram with an inner frame is counted by why and never
/// returned; a frame the kernel refuses (longer than the route's MTU, no route) is
/// counted by errno and the frames after it in the batch still go.
#[test]
fn malformed_datagrams_and_refused_sends_are_counted() {
    let u = Underlay::new("bad");
    let (mut ta, mut tb) = u.open_pair();
    let (_, eb) = u.endpoints();

    // from an ordinary UDP socket in a: I flag clear, too short, a header and no frame
    let junk: [&[u8]; 3] = [
        &[
            0x00, 1, 2, 3, 0, 0, 42, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
        ],
        &[0x08, 0, 0],
        &[0x08, 0, 0, 0, 0, 0, 42, 0],
    ];
    u.in_ns(&u.a, || {
        let s = UdpSocket::bind(SocketAddrV4::new(u.ip_a, 0)).expect("udp");
        for j in junk {
            s.send_to(j, eb).expect("send junk");
        }
    });
    // then a good one: when it is in, the junk (sent before, same path) was seen
    let good = frame(1, 64, 1);
    assert!(ta.push(eb, 9, source_port(&good), &good));
    assert_eq!(ta.flush(), 1);
    let got = recv_until(&mut tb, |g| g.frame == good);
    assert_eq!(got.len(), 1, "only the good datagram is returned: {got:?}");
    let r = tb.stats();
    assert_eq!(
        (r.rx_not_vxlan, r.rx_short, r.rx_packets),
        (1, 2, 1),
        "{r:?}"
    );

    // a frame one byte past the MTU: EMSGSIZE from the kernel, counted; the one after
    // it in the same batch is sent
    let big = frame(2, vxlan::max_inner_frame(1500) + 1, 2);
    let after = frame(3, 64, 3);
    assert!(ta.push(eb, 9, source_port(&big), &big), "fits max_frame");
    assert!(ta.push(eb, 9, source_port(&after), &after));
    // no route from a to 10.99.0.0/16: unreachable
    let nowhere = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), VXLAN_PORT);
    assert!(ta.push(nowhere, 9, 50_000, &after));
    assert_eq!(ta.flush(), 1);
    let s = ta.stats();
    assert_eq!((s.tx_msgsize, s.tx_unreachable), (1, 1), "{s:?}");
    assert_eq!(s.tx_last_errno, libc::ENETUNREACH);
    let got = recv_until(&mut tb, |g| g.frame == after);
    assert!(got.iter().any(|g| g.frame == after));
    assert!(got.iter().all(|g| g.frame != big));

    // refused before the kernel: longer than max_frame, a VNI beyond 24 bits
    let huge = vec![0u8; ta.config().max_frame + 1];
    assert!(!ta.push(eb, 9, 50_000, &huge));
    assert!(!ta.push(eb, 1 << 24, 50_000, &after));
    let s = ta.stats();
    assert_eq!((s.tx_too_big, s.tx_bad_vni, ta.pending()), (1, 1, 0));
}

/// INTEROP (SPEC 10.1): a Linux `vxlan` device on VNI 42 in namespace b and our tunnel
/// in a. Our encapsulated frame comes out of the device whole; the device's own frames
/// (the kernel's echo reply to it, a datagram a socket in b sends) arrive in our
/// `recv_burst` on VNI 42.
#[test]
fn a_linux_vxlan_device_speaks_with_our_tunnel() {
    let u = Underlay::new("lx");
    let b = &u.b;
    must(&format!(
        "ip -n {b} link add vx0 type vxlan id 42 remote {} local {} dev {} dstport 4789 nolearning",
        u.ip_a, u.ip_b, u.veth_b
    ));
    must(&format!("ip -n {b} link set vx0 address {MAC_B}"));
    must(&format!("ip -n {b} addr add 10.214.0.2/24 dev vx0"));
    must(&format!("ip -n {b} link set vx0 up"));
    must(&format!(
        "ip -n {b} neigh replace 10.214.0.1 lladdr {MAC_A} dev vx0 nud permanent"
    ));
    assert_eq!(
        must(&format!("ip -n {b} -o link show vx0 | grep -o 'mtu [0-9]*'")).trim(),
        "mtu 1450",
        "on a lower device, Linux gives the vxlan device its MTU minus 50 (vxlan::OVERHEAD), as we give guests"
    );
    let mut ta = u
        .in_ns(&u.a, || Tunnel::open(TunnelConfig::new(u.ip_a, VXLAN_PORT)))
        .expect("our tunnel in namespace a");
    let (_, eb) = u.endpoints();
    let cap = u
        .in_ns(b, || packet::open_packet(if_index("vx0")?, None))
        .expect("packet socket on vx0");

    // ours -> vx0: an echo request from 10.214.0.1 (behind our tunnel) to vx0's address
    let ping = echo_to_vx0(0x1234);
    assert!(ta.push(eb, 42, source_port(&ping), &ping));
    assert_eq!(ta.flush(), 1, "{:?}", ta.stats());
    let mut seen = None;
    let end = Instant::now() + Duration::from_secs(5);
    let (mut hdr, mut body) = ([0u8; 10], vec![0u8; 2048]);
    while seen.is_none() && Instant::now() < end {
        match packet::recv_packet(cap.as_raw_fd(), &mut hdr, &mut body) {
            Ok((n, _)) if n >= 10 && body[..n - 10] == ping[..] => seen = Some(n - 10),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(
        seen,
        Some(ping.len()),
        "our frame did not come out of vx0 whole"
    );

    // the kernel in b answers through vx0: the reply arrives on VNI 42
    let is_reply = |g: &Got| {
        g.frame.len() >= 42
            && g.frame[..6] == MAC_A.0
            && g.frame[6..12] == MAC_B.0
            && g.frame[23] == 1
            && g.frame[34] == 0
            && g.frame[38..42] == [0x12, 0x34, 0, 1]
    };
    let got = recv_until(&mut ta, is_reply);
    let reply = got
        .iter()
        .find(|&g| is_reply(g))
        .expect("the echo reply from vx0 arrives in recv_burst");
    assert_eq!((reply.vni, *reply.from.ip()), (42, u.ip_b));

    // a GSO train (ours -> vx0): the kernel's vxlan socket takes it and every frame
    // comes out of vx0 whole, in order
    let seg = vxlan::max_inner_frame(1500);
    let train: Vec<Vec<u8>> = (0..30u8)
        .map(|i| {
            let mut f = echo_to_vx0(0x4000 + u16::from(i));
            f.resize(seg, i);
            f
        })
        .collect();
    let t = send_frames(&mut ta, eb, 42, &train, seg);
    assert_eq!(t.sent, 30, "{:?}", ta.stats());
    let mut out_of_vx0 = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while out_of_vx0.len() < 30 && Instant::now() < end {
        match packet::recv_packet(cap.as_raw_fd(), &mut hdr, &mut body) {
            Ok((n, _)) if n >= 10 && train.iter().any(|f| body[..n - 10] == f[..]) => {
                out_of_vx0.push(body[..n - 10].to_vec())
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert_eq!(
        out_of_vx0, train,
        "the train did not come out of vx0 whole and in order"
    );

    // a datagram a socket in b sends through vx0
    u.in_ns(b, || {
        let s = UdpSocket::bind("10.214.0.2:0").expect("udp on vx0's address");
        s.send_to(b"from linux", "10.214.0.1:9").expect("send");
    });
    let is_ours = |g: &Got| g.frame.ends_with(b"from linux");
    let got = recv_until(&mut ta, is_ours);
    let g = got
        .iter()
        .find(|&g| is_ours(g))
        .expect("the datagram from vx0");
    assert_eq!(g.vni, 42);
    assert_eq!(&g.frame[..12], &[MAC_A.0, MAC_B.0].concat()[..]);
    assert_eq!(&g.frame[26..34], &[10, 214, 0, 2, 10, 214, 0, 1]);
}

/// tcpdump decodes our packets as VXLAN with the right VNI, the outer header as we
/// promise it (DF, TTL 64, no UDP checksum, a good IPv4 checksum, the flow's source
/// port), and the inner frame.
#[test]
fn tcpdump_decodes_our_packets() {
    require_tool("tcpdump", "tcpdump");
    let mut u = Underlay::new("td");
    let mut ta = u
        .in_ns(&u.a, || Tunnel::open(TunnelConfig::new(u.ip_a, VXLAN_PORT)))
        .expect("our tunnel in namespace a");
    let (_, eb) = u.endpoints();
    let file = std::env::temp_dir().join(format!("vtun-td-{}.pcap", std::process::id()));
    u.files.push(file.clone());
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            u.b.as_str(),
            "tcpdump",
            "-Z",
            "root",
            "-U",
            "-nn",
            "-c",
            "2",
        ])
        .args(["-i", u.veth_b.as_str(), "-w"])
        .arg(&file)
        .args(["udp", "dst", "port", "4789"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let stderr = child.stderr.take().expect("stderr");
    u.procs.push(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(10);
    let mut listening = false;
    while !listening && Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            listening = l.contains("listening on");
        }
    }
    assert!(listening, "tcpdump did not start listening");

    let ping = echo_to_vx0(7);
    let udp = frame(9, 100, 0x44);
    assert!(ta.push(eb, 42, source_port(&ping), &ping));
    assert!(ta.push(eb, 0xab_cdef, source_port(&udp), &udp));
    assert_eq!(ta.flush(), 2);
    let end = Instant::now() + Duration::from_secs(10);
    let child = u.procs.last_mut().expect("tcpdump");
    while child.try_wait().expect("wait").is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().expect("wait").is_some(),
        "tcpdump did not see both packets"
    );
    let text = must(&format!(
        "tcpdump -r {} -nn -vv 2>/dev/null",
        file.display()
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert!(!text.contains("bad cksum"), "{text}");
    for (vni, f) in [(42u32, &ping), (0xab_cdef, &udp)] {
        let head = format!(
            "{}.{} > {}.4789: [no cksum] VXLAN, flags [I] (0x08), vni {vni}",
            u.ip_a,
            source_port(f),
            u.ip_b
        );
        let i = lines
            .iter()
            .position(|l| l.contains(&head))
            .unwrap_or_else(|| panic!("no line with {head:?} in\n{text}"));
        assert!(
            i > 0 && lines[i - 1].contains("ttl 64") && lines[i - 1].contains("flags [DF]"),
            "outer IPv4 line of vni {vni}: {text}"
        );
    }
    assert!(
        text.contains("10.214.0.1 > 10.214.0.2: ICMP echo request, id 7, seq 1"),
        "{text}"
    );
    assert!(
        text.contains("10.0.0.1.10009 > 10.0.0.2.80: [udp sum ok] UDP, length 58"),
        "{text}"
    );

    // and the bytes on the wire are what Outer::parse reads back (pcap: a 24-byte file
    // header, then per packet a 16-byte header whose third word is the captured length)
    let pcap = std::fs::read(&file).expect("pcap");
    assert_eq!(pcap.get(..4), Some(&0xa1b2_c3d4u32.to_le_bytes()[..]));
    let mut off = 24;
    let mut seen = Vec::new();
    while let Some(h) = pcap.get(off..off + 16) {
        let n = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let pkt = pcap
            .get(off + 16..off + 16 + n)
            .expect("whole packet in the file");
        let (outer, info, inner) = Outer::parse(&pkt[14..]).expect("our packet parses");
        assert!(
            info.dont_fragment && info.ip_checksum_ok && info.ttl == 64,
            "{info:?}"
        );
        assert_eq!(info.udp_checksum, 0);
        assert_eq!(
            (outer.src, outer.dst, outer.dst_port),
            (u.ip_a, u.ip_b, 4789)
        );
        assert_eq!(outer.src_port, source_port(inner));
        seen.push((outer.vni, inner.to_vec()));
        off += 16 + n;
    }
    assert_eq!(seen, vec![(42, ping), (0xab_cdef, udp)]);
}
