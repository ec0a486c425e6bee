//! Control server tests, and the switch and clients they share with metrics_http.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn cfg(second: &str, mac2: &str) -> vpcswitch::model::Config {
    vpcswitch::model::ConfigBuilder::new()
        .workers(1)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port(second, "a1", mac2, &["10.0.1.12"])
        .build()
        .unwrap()
}

/// A switch on memory backends, wrapped as the binary wraps it.
pub(crate) fn running() -> Arc<Running> {
    let c = cfg("p2", "02:00:00:00:01:02");
    let (b, _g) = vpcswitch::runtime::memory_backends(&c, 64);
    let sw = vpcswitch::runtime::Switch::start(&c, b).unwrap();
    Arc::new(Running::new(
        vpcswitch::linux::Host::new(sw),
        PathBuf::from("/nonexistent/vpcswitch.toml"),
    ))
}

pub(crate) fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vpcswitch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sends `req` one byte per second on `s` (until the server closes), and reads what
/// the server answers; returns when it closes the connection: (after how long, the
/// answer).
pub(crate) fn dribble<S>(s: S, req: &'static [u8]) -> (Duration, String)
where
    S: Send + Sync + 'static,
    for<'a> &'a S: Read + Write,
{
    let start = Instant::now();
    let s = Arc::new(s);
    let w = s.clone();
    let writer = std::thread::spawn(move || {
        for b in req {
            if (&*w).write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let mut r = &*s;
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let took = start.elapsed();
    let _ = writer.join();
    (took, String::from_utf8_lossy(&answer).into_owned())
}

/// Issue 15 item 11: a client pacing its request one byte a second (each read well
/// within any per-read timeout) is closed at the whole-request deadline, and other
/// clients are served meanwhile. Before the fix the 2 s timeout was per read: the
/// connection stayed open for the whole dribble (12 s here) and then some.
#[test]
fn a_dribbling_control_client_is_cut_at_the_deadline_and_others_are_served() {
    let dir = tmpdir("ctl-dribble");
    let path = dir.join("ctl.sock");
    let stop = Arc::new(Stopper::new().unwrap());
    let h = serve(&path, running(), stop.clone()).unwrap();
    let slow = UnixStream::connect(&path).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t = std::thread::spawn(move || dribble(slow, b"{\"cmd\": [\"stats\"]}  \n"));
    std::thread::sleep(Duration::from_millis(1500));
    // another client, while the slow one is still sending
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    c.write_all(b"{\"cmd\": [\"stats\"]}\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.contains("\"ok\":true"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    let (took, answer) = t.join().unwrap();
    assert!(
        took >= deadline::REQUEST - Duration::from_millis(100)
            && took < deadline::REQUEST + Duration::from_millis(1500),
        "closed after {took:?}"
    );
    assert!(answer.contains("not complete within"), "{answer}");
    stop.stop();
    h.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15 item 11: the control socket is never reachable by group or others, not
/// even for an instant. A thread stats the path as fast as it can while the socket is
/// bound, 600 times over; before the fix (bind, then chmod) it saw the default mode
/// (0755 under the usual umask) in the window between the two. The window is closed
/// by construction: the file is created under a 0o177 umask, so the first mode it
/// ever has is 0600, which is all this test can check from outside.
#[test]
fn the_control_socket_is_never_group_or_world_accessible() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tmpdir("ctl-mode");
    for i in 0..600 {
        let path = dir.join(format!("ctl{i}.sock"));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let go = Arc::new(AtomicBool::new(true));
        let (p, s, g) = (path.clone(), seen.clone(), go.clone());
        let watcher = std::thread::spawn(move || {
            while g.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&p) {
                    if m.file_type().is_socket() {
                        s.lock().unwrap().push(m.permissions().mode() & 0o777);
                    }
                }
            }
        });
        std::thread::sleep(Duration::from_millis(2));
        let l = bind_private(&path).unwrap();
        let t0 = Instant::now();
        while seen.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(2) {
            std::thread::yield_now();
        }
        go.store(false, Ordering::Relaxed);
        watcher.join().unwrap();
        drop(l);
        let modes = seen.lock().unwrap().clone();
        assert!(!modes.is_empty());
        assert!(
            modes.iter().all(|m| m & 0o077 == 0),
            "round {i}: modes seen {:?}",
            modes.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15 item 10 over the control protocol: a capture streaming from p2 ends when
/// a reload deletes p2 and gives its id to p3; the last line says why.
#[test]
fn a_capture_stream_ends_when_its_port_is_deleted() {
    let dir = tmpdir("ctl-capture");
    let path = dir.join("ctl.sock");
    let r = running();
    let stop = Arc::new(Stopper::new().unwrap());
    let h = serve(&path, r.clone(), stop.clone()).unwrap();
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"{\"cmd\": [\"capture\", \"p2\", \"both\", \"0\"]}\n")
        .unwrap();
    let mut lines = BufReader::new(c.try_clone().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    let next = cfg("p3", "02:00:00:00:01:03");
    let (b, _g) = vpcswitch::runtime::memory_backends(&next, 64);
    let b = b.into_iter().filter(|(n, _)| n == "p3").collect();
    r.switch.reload(&next, b).unwrap();
    let old = r.switch.snapshot();
    assert_eq!(old.port_id("p3"), Some(1), "p3 takes p2's id");
    let t0 = Instant::now();
    // heartbeats come every second: without the fix the stream never ends
    let last = lines
        .map_while(Result::ok)
        .take_while(|_| t0.elapsed() < Duration::from_secs(5))
        .find(|l| l.contains("\"done\""))
        .expect("the capture stream did not end");
    assert!(last.contains("p2") && last.contains("deleted"), "{last}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(r.captures.lock().unwrap().is_empty());
    stop.stop();
    h.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// pcapng as `ctl capture` writes it reads back with its interface and directions;
/// classic pcap reads too (`ctl trace --pcap`).
mod pcapng_files {
    use super::super::pcapng::*;

    #[test]
    fn a_capture_reads_back_with_interface_and_direction() {
        let mut f = section_header("test");
        f.extend(interface(
            "web1",
            "vpcswitch port web1",
            2048,
            "arp or icmp",
        ));
        f.extend(packet(
            0,
            1_700_000_000_123_456,
            &[1, 2, 3],
            60,
            Dir::Inbound,
        ));
        f.extend(packet(
            0,
            1_700_000_000_123_999,
            &[4; 64],
            64,
            Dir::Outbound,
        ));
        assert_eq!(f.len() % 4, 0);
        let r = read(&f).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Read {
                interface: "web1".into(),
                dir: Some(Dir::Inbound),
                ts_us: 1_700_000_000_123_456,
                data: vec![1, 2, 3],
            }
        );
        assert_eq!((r[1].dir, r[1].data.len()), (Some(Dir::Outbound), 64));
        assert!(read(&f[..f.len() - 2]).is_err(), "truncated");
        assert_eq!(read_any(&f).unwrap().len(), 2);
        // classic pcap, as `--format pcap` writes it
        let mut p = Vec::new();
        p.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&4u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&2048u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        let d = vec![9u8; 42];
        p.extend_from_slice(&5u32.to_le_bytes());
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&(d.len() as u32).to_le_bytes());
        p.extend_from_slice(&(d.len() as u32).to_le_bytes());
        p.extend_from_slice(&d);
        let r = read_any(&p).unwrap();
        assert_eq!((r.len(), r[0].ts_us, r[0].data.len()), (1, 5_000_007, 42));
        assert!(read_any(b"nope").is_err());
    }
}

/// `trace-flow`: a frame described by its fields is built as the port's guest would
/// send it (its MAC and IP, the destination's MAC) and traced; the answer shows it.
#[test]
fn a_flow_expression_is_traced_as_the_port_would_send_it() {
    let r = running();
    let ask = |words: &[&str]| dispatch(&json!({ "cmd": words }), &r);
    // to a neighbour in the subnet: its MAC, forwarded to it
    let v = ask(&["trace-flow", "p1", "icmp ip4.dst=10.0.1.12"]);
    assert_eq!(v["ok"], true, "{v}");
    let t: schema::TraceAnswer = serde_json::from_value(v["data"].clone()).expect("schema");
    let frame = unhex(&t.frame).unwrap();
    assert_eq!(&frame[0..6], &[2, 0, 0, 0, 1, 2], "dst: p2's MAC");
    assert_eq!(&frame[6..12], &[2, 0, 0, 0, 1, 1], "src: p1's MAC");
    assert_eq!(&frame[26..30], &[10, 0, 1, 11], "src: p1's IP");
    let to_p2 = schema::TraceVerdict::Forward {
        to: schema::TraceOut::Port {
            port: Some("p2".into()),
            host: None,
        },
    };
    assert_eq!(t.verdict, to_p2, "{v}");
    assert!(t.description.contains("p2"), "{v}");
    // the same as the hex trace of that frame
    let same = ask(&["trace", "p1", &t.frame]);
    assert_eq!(same["data"], v["data"]);
    // a spoofed source is dropped with its reason
    let v = ask(&[
        "trace-flow",
        "p1",
        "udp nw_src=10.0.1.99 nw_dst=10.0.1.12 udp.dst=53",
    ]);
    let t: schema::TraceAnswer = serde_json::from_value(v["data"].clone()).expect("schema");
    assert_eq!(
        t.verdict,
        schema::TraceVerdict::Drop {
            reason: "spoofed_src_ip".into()
        },
        "{v}"
    );
    // ARP for a neighbour: answered by the switch
    let v = ask(&["trace-flow", "p1", "arp arp.tpa=10.0.1.12"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("frame ffffffffffff"),
        "{v}"
    );
    // errors name the problem
    let v = ask(&["trace-flow", "p1", "arp"]);
    assert!(
        v["text"].as_str().unwrap().contains("arp.tpa= is needed"),
        "{v}"
    );
    let v = ask(&["trace-flow", "nope", "icmp ip4.dst=10.0.1.12"]);
    assert!(v["text"].as_str().unwrap().contains("no port named"), "{v}");
}

/// Issue 20: a dual-stack switch on memory backends (and its guests): vpc a
/// (10.0.0.0/16, fd00:a::/48) with a1 (10.0.1.0/24, fd00:a:0:1::/64: p1 with an IPv6
/// fixed IP, p2 without), a3 (IPv4 only: w1), VIPs v6 (IPv6) and v4 on p1 and p2; vpc b
/// (10.1.0.0/16, fd00:b::/48, no subnet here) peered as ab, with a route of each family
/// to it, and an IPv6 route to p1 (SPEC 12.5).
pub(crate) fn dual_stack_running() -> (
    Arc<Running>,
    std::collections::HashMap<String, vpcswitch::backend::memory::MemGuest>,
) {
    let c = vpcswitch::model::ConfigBuilder::new()
        .workers(1)
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["fd00:a::/48"])
        .vpc("b", &["10.1.0.0/16"])
        .ipv6_cidrs(&["fd00:b::/48"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("fd00:a:0:1::/64")
        .subnet("a3", "a", "10.0.3.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .ipv6_ips(&["fd00:a:0:1::11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("w1", "a3", "02:00:00:00:03:01", &["10.0.3.11"])
        .vip("v6", "a1", "fd00:a:0:1::1:100", &["p1", "p2"])
        .vip("v4", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("a", "fd00:b::/48", "ab")
        .route_via_port("a", "fd00:99:0:1234::/64", "p1")
        .build()
        .unwrap();
    let (b, g) = vpcswitch::runtime::memory_backends(&c, 64);
    let sw = vpcswitch::runtime::Switch::start(&c, b).unwrap();
    let r = Running::new(
        vpcswitch::linux::Host::new(sw),
        PathBuf::from("/nonexistent/vpcswitch.toml"),
    );
    (Arc::new(r), g)
}

/// Issue 20, SPEC 12.3: `neighbors` lists what the switch answers neighbour
/// solicitations for besides ARP: a dual-stack subnet's gateway IPv6 and link-local
/// addresses, ports' IPv6 fixed IPs, IPv6 VIPs; an IPv4-only subnet has none.
#[test]
fn neighbors_list_both_families() {
    let (r, _g) = dual_stack_running();
    let gw_mac = r.switch.snapshot().gateway_mac.to_string();
    let ll = r.switch.snapshot().gateway_ll.to_string();
    let v = dispatch(&json!({ "cmd": ["neighbors"] }), &r);
    assert_eq!(v["ok"], true, "{v}");
    let n: Vec<schema::NeighborRow> = serde_json::from_value(v["data"].clone()).unwrap();
    let got: Vec<(String, Option<String>, String)> = n
        .iter()
        .map(|n| {
            let of = match &n.answers_for {
                schema::NeighborOf::Gateway { subnet } => format!("gateway {subnet}"),
                schema::NeighborOf::Port { port } => format!("port {port}"),
                schema::NeighborOf::Vip { vip, owner } => format!("vip {vip} {owner:?}"),
            };
            (n.ip.to_string(), n.mac.clone(), of)
        })
        .collect();
    let gw = |ip: &str, s: &str| (ip.to_string(), Some(gw_mac.clone()), format!("gateway {s}"));
    let port =
        |ip: &str, mac: &str, p: &str| (ip.to_string(), Some(mac.to_string()), format!("port {p}"));
    let want = vec![
        gw("10.0.1.1", "a1"),
        gw("fd00:a:0:1::1", "a1"),
        gw(&ll, "a1"),
        port("10.0.1.11", "02:00:00:00:01:01", "p1"),
        port("fd00:a:0:1::11", "02:00:00:00:01:01", "p1"),
        port("10.0.1.12", "02:00:00:00:01:02", "p2"),
        ("fd00:a:0:1::1:100".into(), None, "vip v6 None".into()),
        ("10.0.1.100".into(), None, "vip v4 None".into()),
        gw("10.0.3.1", "a3"),
        port("10.0.3.11", "02:00:00:00:03:01", "w1"),
    ];
    assert_eq!(got, want);
    // the same string form as before for IPv4; IPv6 as text
    assert_eq!(v["data"][0]["ip"], "10.0.1.1");
    assert_eq!(v["data"][1]["ip"], "fd00:a:0:1::1");
    // the text table keeps its columns for the longest address
    let text = v["text"].as_str().unwrap();
    let col = text.lines().next().unwrap().find("MAC");
    for line in text.lines().skip(1) {
        let mac = line.find("02:00:00").or_else(|| line.find("(no owner)"));
        assert_eq!(mac, col, "{text}");
    }
}

/// Where the column headed `head` starts in a text table, and that every row has a
/// value starting there (after a space): the table keeps its columns whatever the
/// addresses' lengths.
fn column_holds(text: &str, head: &str) -> usize {
    let col = text.lines().next().unwrap().find(head).unwrap();
    for line in text.lines().skip(1) {
        let (before, at) = line.split_at(col);
        assert!(
            before.ends_with(' ') && !at.starts_with(' '),
            "{head} column misaligned:\n{text}"
        );
    }
    col
}

/// Issue 20, SPEC 12.1: `ports` shows a port's IPv6 fixed IPs as its IPv4 ones: JSON
/// `ips6` (empty for an IPv4-only port, `ips` unchanged), and in the text table after
/// the IPv4 ones, the columns kept.
#[test]
fn ports_show_ipv6_fixed_ips() {
    let (r, _g) = dual_stack_running();
    let v = dispatch(&json!({ "cmd": ["ports"] }), &r);
    assert_eq!(v["ok"], true, "{v}");
    let rows: Vec<schema::PortRow> = serde_json::from_value(v["data"].clone()).unwrap();
    let got: Vec<(&str, Vec<String>, Vec<String>)> = rows
        .iter()
        .map(|p| {
            let s4 = p.ips.iter().map(|i| i.to_string()).collect();
            let s6 = p.ips6.iter().map(|i| i.to_string()).collect();
            (p.name.as_str(), s4, s6)
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            ("p1", s(&["10.0.1.11"]), s(&["fd00:a:0:1::11"])),
            ("p2", s(&["10.0.1.12"]), vec![]),
            ("w1", s(&["10.0.3.11"]), vec![]),
        ]
    );
    // the JSON form: an array of RFC 5952 strings, `[]` when none
    assert_eq!(v["data"][0]["ips6"], json!(["fd00:a:0:1::11"]));
    assert_eq!(v["data"][1]["ips6"], json!([]));
    let text = v["text"].as_str().unwrap();
    let p1 = text.lines().find(|l| l.starts_with("p1 ")).unwrap();
    assert!(p1.contains(" 10.0.1.11,fd00:a:0:1::11 "), "{text}");
    let p2 = text.lines().find(|l| l.starts_with("p2 ")).unwrap();
    assert!(p2.contains(" 10.0.1.12 ") && !p2.contains("fd00"), "{text}");
    for head in ["IPS", "CHECK", "BACKEND"] {
        column_holds(text, head);
    }
}

/// Issue 20, SPEC 12.5: `routes` lists a dual-stack subnet's IPv6 prefix as a local
/// route after its IPv4 one, and the configured IPv6 routes (peering, next-hop port)
/// with the IPv4 ones, from the configuration running; the text keeps its columns.
#[test]
fn routes_list_both_families() {
    let (r, _g) = dual_stack_running();
    let v = dispatch(&json!({ "cmd": ["routes"] }), &r);
    assert_eq!(v["ok"], true, "{v}");
    let rows: Vec<schema::RouteRow> = serde_json::from_value(v["data"].clone()).unwrap();
    let got: Vec<(&str, &str, String)> = rows
        .iter()
        .map(|x| {
            let t = match &x.target {
                schema::RouteTarget::Local { subnet } => format!("local {subnet}"),
                schema::RouteTarget::Peering { peering } => format!("peering {peering}"),
                schema::RouteTarget::Port { port } => format!("port {port}"),
                schema::RouteTarget::Uplink => "uplink".into(),
            };
            (x.vpc.as_str(), x.destination.as_str(), t)
        })
        .collect();
    let want: Vec<(&str, &str, String)> = vec![
        ("a", "10.0.1.0/24", "local a1".into()),
        ("a", "fd00:a:0:1::/64", "local a1".into()),
        ("a", "10.0.3.0/24", "local a3".into()),
        ("a", "10.1.0.0/16", "peering ab".into()),
        ("a", "fd00:b::/48", "peering ab".into()),
        ("a", "fd00:99:0:1234::/64", "port p1".into()),
    ];
    assert_eq!(got, want);
    let text = v["text"].as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("fd00:a:0:1::/64") && l.ends_with("local subnet a1")),
        "{text}"
    );
    column_holds(text, "TARGET");
}

/// Issue 20, SPEC 12.4: `vips` shows an IPv6 VIP's owner once a bound port claims it by
/// an unsolicited neighbour advertisement (as keepalived does), as for an IPv4 VIP; the
/// text keeps its columns with the IPv6 address.
#[test]
fn vips_show_an_ipv6_vip_and_its_owner() {
    let (r, g) = dual_stack_running();
    let vip6: std::net::Ipv6Addr = "fd00:a:0:1::1:100".parse().unwrap();
    let p2 = vpcswitch::model::MacAddr([2, 0, 0, 0, 1, 2]);
    assert!(g["p2"].send(&vpcswitch::wire::build::unsolicited_na(p2, vip6)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let v = dispatch(&json!({ "cmd": ["vips"] }), &r);
        assert_eq!(v["ok"], true, "{v}");
        let rows: Vec<schema::VipRow> = serde_json::from_value(v["data"].clone()).unwrap();
        if rows[0].owner.is_some() || Instant::now() > deadline {
            let text = v["text"].as_str().unwrap().to_string();
            break (rows, text);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (rows, text) = rows;
    assert_eq!(rows[0].name, "v6");
    assert_eq!(rows[0].ip, std::net::IpAddr::V6(vip6));
    assert_eq!(rows[0].owner.as_deref(), Some("p2"), "{text}");
    assert_eq!(rows[0].moves, 1);
    assert_eq!(
        (rows[1].name.as_str(), rows[1].owner.as_deref()),
        ("v4", None)
    );
    let line = text.lines().find(|l| l.starts_with("v6 ")).unwrap();
    assert!(
        line.contains(" fd00:a:0:1::1:100 ") && line.contains(" p2 "),
        "{text}"
    );
    for head in ["PORTS", "OWNER"] {
        column_holds(&text, head);
    }
}

/// Issue 21: every answer of the control socket is its [`schema`] type, whose fields
/// `cfg(test)` denies any other of (so a field sent but not in the schema fails), in the
/// envelope with the schema's version; absent values are null, not "-".
#[test]
fn every_answer_reads_back_as_its_schema_type() {
    fn data<T: serde::de::DeserializeOwned>(r: &Running, words: &[&str]) -> T {
        let v = dispatch(&json!({ "cmd": words }), r);
        assert_eq!(v["ok"], true, "{words:?}: {v}");
        assert_eq!(v["schema_version"], schema::SCHEMA_VERSION, "{v}");
        serde_json::from_value(v["data"].clone()).unwrap_or_else(|e| panic!("{words:?}: {e}: {v}"))
    }
    let r = running();
    let ports: Vec<schema::PortRow> = data(&r, &["ports"]);
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].subnet.as_deref(), Some("a1"));
    assert_eq!(ports[0].ips, vec![std::net::Ipv4Addr::new(10, 0, 1, 11)]);
    let be = ports[0].backend.as_ref().expect("a memory backend");
    assert_eq!(be.kind, "memory", "{be:?}");
    let vips: Vec<schema::VipRow> = data(&r, &["vips"]);
    assert!(vips.is_empty());
    let eips: schema::EipsAnswer = data(&r, &["eips"]);
    assert!(eips.uplink.is_none() && eips.eips.is_empty());
    let n: Vec<schema::NeighborRow> = data(&r, &["neighbors"]);
    assert_eq!(
        n[0].answers_for,
        schema::NeighborOf::Gateway {
            subnet: "a1".into()
        }
    );
    assert_eq!(
        n[1].answers_for,
        schema::NeighborOf::Port { port: "p1".into() }
    );
    let routes: Vec<schema::RouteRow> = data(&r, &["routes"]);
    assert_eq!(
        routes[0].target,
        schema::RouteTarget::Local {
            subnet: "a1".into()
        }
    );
    let st: schema::StatsAnswer = data(&r, &["stats"]);
    assert_eq!((st.generation, st.last_reload_error), (1, None));
    assert!(st.store.is_none() && !st.workers.is_empty());
    let h: schema::HostsAnswer = data(&r, &["hosts"]);
    assert!(h.hosts.is_empty());
}

/// Issue 21: `docs/ctl-json.md` names every field and every `kind` of the schema: a
/// field added (or renamed) in [`schema`] without its documentation fails here; and
/// one answer of each type, every field set, is `docs/ctl-json.example.json`, so any
/// change of a name or a type shows as a change of that committed file (rewrite it
/// with `VPCSWITCH_BLESS=1` when the change is meant, and say so in ctl-json.md).
#[test]
fn every_schema_field_is_documented() {
    use schema::*;
    let doc = include_str!("../../../../docs/ctl-json.md");
    let port = || TraceOut::Port {
        port: Some("p".into()),
        host: Some("h".into()),
    };
    let drops: DropsByReason = [("no_route".to_string(), 1)].into();
    let m = |k: &str| k.to_string();
    // one value of every type, every option set and every variant present
    let samples: Vec<serde_json::Value> = vec![
        json!(CommandRow {
            name: m("ports"),
            about: m("")
        }),
        json!(ErrorAnswer {
            ok: false,
            error: m("")
        }),
        json!(PortRow {
            name: m("p"),
            down: false,
            subnet: Some(m("s")),
            mac: m("02:00:00:00:01:01"),
            ips: vec![],
            ips6: vec![],
            src_dst_check: true,
            backend: Some(Backend {
                kind: m("tap"),
                description: m("tap"),
                interface: Some(m("vs-p")),
                queues: 1,
                mtu_bytes: Some(1500),
                checksum_offload: true,
                segmentation_offload: true,
                zero_copy: false,
                mode: None,
                device: Some(DeviceCounters {
                    rx_packets: 0,
                    tx_packets: 0,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    rx_dropped_packets: 0,
                    tx_dropped_packets: 0,
                    rx_errors: 0,
                    tx_errors: 0,
                }),
            }),
            rx_packets: 0,
            tx_packets: 0,
            rx_bytes: 0,
            tx_bytes: 0,
        }),
        json!(VipRow {
            name: m("v"),
            subnet: m("s"),
            ip: [10, 0, 0, 1].into(),
            ports: vec![],
            owner: Some(m("p")),
            moves: 1,
            moved_unix_us: Some(1),
            first_packet_us: Some(1.5),
        }),
        json!(EipsAnswer {
            uplink: Some(Uplink {
                name: Some(m("u")),
                mac: m("02:00:00:00:01:01"),
                next_hop: [10, 0, 0, 1].into(),
                next_hop_mac: Some(m("02:00:00:00:01:01")),
                static_next_hop: false,
            }),
            eips: vec![
                EipRow {
                    eip: [10, 0, 0, 1].into(),
                    target: Some(EipTarget::Vip { vip: m("v") }),
                    private_ip: Some([10, 0, 0, 2].into()),
                    owner_port: Some(m("p")),
                },
                EipRow {
                    eip: [10, 0, 0, 1].into(),
                    target: Some(EipTarget::Port { port: m("p") }),
                    private_ip: None,
                    owner_port: None,
                },
            ],
        }),
        json!([
            NeighborOf::Gateway { subnet: m("s") },
            NeighborOf::Port { port: m("p") },
            NeighborOf::Vip {
                vip: m("v"),
                owner: Some(m("p"))
            },
        ]
        .map(|of| NeighborRow {
            vpc: m("a"),
            ip: match of {
                NeighborOf::Port { .. } => "fd00::1".parse().unwrap(),
                _ => [10, 0, 0, 1].into(),
            },
            mac: Some(m("02:00:00:00:01:01")),
            answers_for: of,
        })),
        json!([
            RouteTarget::Local { subnet: m("s") },
            RouteTarget::Peering { peering: m("ab") },
            RouteTarget::Port { port: m("p") },
            RouteTarget::Uplink,
        ]
        .map(|t| RouteRow {
            vpc: m("a"),
            destination: m("d"),
            target: t
        })),
        json!(StatsAnswer {
            generation: 1,
            last_reload_error: Some(m("e")),
            ports: vec![PortStatsRow {
                name: m("p"),
                rx_packets: 0,
                rx_bytes: 0,
                tx_packets: 0,
                tx_bytes: 0,
                drops: drops.clone(),
            }],
            drops: drops.clone(),
            workers: vec![WorkerRow {
                forwarded_packets: 0,
                dropped_packets: 0,
                generated_packets: 0,
                gso_segments: 0,
                loops: 0,
                busy_loops: 0,
                busy_ns: 0,
                idle_ns: 0,
                sleeps: 0,
                burst_hist: vec![],
            }],
            store: Some(StoreView {
                endpoints: m("e"),
                revision: Some(1),
                generation: 1,
                synced_revision: Some(1),
                last_sync_unix_ms: Some(1),
                applied_unix_us: Some(1),
                written_unix_us: Some(1),
                lag_us: Some(1),
                local_host: Some(m("h")),
                lease: Lease {
                    id: Some(1),
                    ttl_s: 3,
                    renewed_unix_ms: Some(1)
                },
                lost: Some(m("l")),
                alive: vec![],
                hosts_down: vec![],
                down_since_unix_us: [(m("h"), 1)].into(),
                lease_gone_unix_us: [(m("h"), 1)].into(),
                vip_owners: [(
                    m("v"),
                    StoreVipOwner {
                        port: m("p"),
                        host: m("h"),
                        revision: 1,
                        seen_unix_us: Some(1)
                    },
                )]
                .into(),
                claims: [(
                    m("v"),
                    Claim {
                        port: m("p"),
                        claimed_unix_us: 1
                    }
                )]
                .into(),
                vip_publications: 0,
                lease_grants: 0,
                lease_renewals: 0,
                errors: 0,
            }),
        }),
        json!(HostsAnswer {
            hosts: vec![HostRow {
                name: m("h"),
                endpoint: "192.0.2.1:4789".parse().unwrap(),
                local: false,
                down: false,
                port_count: 1,
                reachable: Some(true),
                last_rx_unix_ms: Some(1),
                rx_packets: 0,
                rx_bytes: 0,
                tx_packets: 0,
                tx_bytes: 0,
                drops: drops.clone(),
            }],
            tunnel: Tunnel {
                rx_datagrams: 0,
                rx_malformed_datagrams: 0,
                rx_errors: 0,
                tx_packets: 0,
                tx_errors: 0,
                tx_trains: 0,
                rx_coalesced_reads: 0,
                rx_joined_segments: 0,
            },
        }),
        json!([
            TraceVerdict::Forward { to: port() },
            TraceVerdict::Forward {
                to: TraceOut::Flood {
                    subnet: Some(m("s"))
                }
            },
            TraceVerdict::Forward {
                to: TraceOut::VipPorts { vip: Some(m("v")) }
            },
            TraceVerdict::Drop { reason: m("r") },
            TraceVerdict::DropAndSend {
                reason: m("r"),
                to: port()
            },
        ]
        .map(|verdict| TraceAnswer {
            verdict,
            description: m("d"),
            steps: vec![TraceStep {
                stage: m("s"),
                detail: m("d")
            }],
            frame: m("00"),
            output: m("00"),
        })),
        json!(ReloadAnswer { generation: 1 }),
        json!(CaptureStart {
            snaplen_bytes: 1,
            port: m("p"),
            filter: m("")
        }),
        json!([
            StreamLine::Heartbeat(Heartbeat { heartbeat: true }),
            StreamLine::Done(StreamDone {
                done: true,
                count: 1,
                lost_frames: 0,
                ended: Some(m("e"))
            }),
            StreamLine::Frame(CaptureFrame {
                ts_unix_us: 1,
                orig_len_bytes: 1,
                dir: Dir::Rx,
                data: m("00")
            }),
            StreamLine::Drop(DropSample {
                ts_unix_us: 1,
                port: Some(m("p")),
                reason: m("r"),
                orig_len_bytes: 1,
                decode: m("d"),
                head: m("00"),
            }),
        ]),
    ];
    let labels = [
        "list-commands",
        "error",
        "ports",
        "vips",
        "eips",
        "neighbors",
        "routes",
        "stats",
        "hosts",
        "trace",
        "reload",
        "capture",
        "stream lines",
    ];
    assert_eq!(labels.len(), samples.len());
    let all_answers: serde_json::Map<String, Value> = labels
        .iter()
        .map(|l| l.to_string())
        .zip(samples.iter().cloned())
        .collect();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/ctl-json.example.json"
    );
    let now = serde_json::to_string_pretty(&all_answers).unwrap() + "\n";
    if std::env::var_os("VPCSWITCH_BLESS").is_some() {
        std::fs::write(golden, &now).unwrap();
    }
    let committed = std::fs::read_to_string(golden).unwrap_or_default();
    assert!(
        committed == now,
        "the schema changed: {golden} differs from what the schema types make now \
         (VPCSWITCH_BLESS=1 rewrites it):\n{now}"
    );
    // maps keyed by names (drops by reason, per host, per VIP): their keys are data
    const KEYED: [&str; 5] = [
        "drops",
        "down_since_unix_us",
        "lease_gone_unix_us",
        "vip_owners",
        "claims",
    ];
    fn names(v: &serde_json::Value, keyed: bool, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    if !keyed {
                        out.insert(k.clone());
                    }
                    if k == "kind" {
                        out.extend(x.as_str().map(|x| format!("\"kind\": \"{x}\"")));
                    }
                    names(x, !keyed && KEYED.contains(&k.as_str()), out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| names(x, false, out)),
            _ => {}
        }
    }
    let mut all = std::collections::BTreeSet::new();
    for s in &samples {
        names(s, false, &mut all);
    }
    // a field as `name`; a kind as "kind": "name"
    let missing: Vec<&String> = all
        .iter()
        .filter(|n| !doc.contains(&format!("`{n}`")) && !n.starts_with("\"kind"))
        .chain(
            all.iter()
                .filter(|n| n.starts_with("\"kind") && !doc.contains(n.as_str())),
        )
        .collect();
    assert!(missing.is_empty(), "not in docs/ctl-json.md: {missing:?}");
    assert!(doc.contains(&format!("schema_version` is {}", SCHEMA_VERSION)));
}
