//! What an operator sees: metrics, capture, drop sampling, JSON logs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::net::metric;
use common::net::{require, Net};
use common::{deploy_metric_names, exposed_families, lock, must, require_promtool, sh};

#[test]
fn observability_metrics_capture_and_drop_sampling() {
    let _l = lock();
    let mut n = Net::start();
    // metrics move with traffic
    let m0 = n.scrape();
    let rx0 = metric(&m0, "vpcswitch_port_rx_packets_total{port=\"client\"}");
    assert!(rx0 >= 0.0, "series present:\n{m0}");
    assert_eq!(metric(&m0, "vpcswitch_config_generation"), 1.0);
    assert_eq!(n.ping("client", "10.0.1.11", 5), 5);
    let m1 = n.scrape();
    let rx1 = metric(&m1, "vpcswitch_port_rx_packets_total{port=\"client\"}");
    assert!(rx1 >= rx0 + 5.0, "rx {rx0} -> {rx1}");
    assert!(metric(&m1, "vpcswitch_port_tx_packets_total{port=\"web1\"}") >= 5.0);
    assert!(m1.contains("vpcswitch_worker_burst_size_bucket{worker=\"0\",le=\"1\"}"));
    // ctl: options anywhere give the same answer; -c finds the socket in the config
    let ctl = |args: &str| must(&format!("{} ctl {args}", env!("CARGO_BIN_EXE_vpcswitch")));
    let s = n.socket.display();
    let a: Value = serde_json::from_str(&ctl(&format!("--json -s {s} routes"))).expect("json");
    let b: Value = serde_json::from_str(&ctl(&format!("routes -s {s} --json"))).expect("json");
    assert_eq!(a, b);
    let c: Value =
        serde_json::from_str(&ctl(&format!("routes --json -c {}", n.cfg_path.display())))
            .expect("json");
    assert_eq!(a, c);

    // a refused reload is counted
    n.reload_with("this is not toml");
    let end = Instant::now() + Duration::from_secs(5);
    while metric(&n.scrape(), "vpcswitch_config_reload_failures_total") < 1.0 {
        assert!(Instant::now() < end, "reload failure not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, notfound) = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' http://{}/nope",
        n.metrics
    ));
    assert_eq!(notfound.trim(), "404");

    // Prometheus' own linter accepts the page (naming, types, units)
    require_promtool();
    let page = n.file("metrics.txt");
    std::fs::write(&page, n.scrape()).expect("write scrape");
    let lint = must(&format!("promtool check metrics < {}", page.display()));
    assert!(lint.trim().is_empty(), "promtool check metrics: {lint}");
    // process metrics, build info, port info and the last reload (refused above)
    let m = n.scrape();
    for series in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "vpcswitch_config_last_reload_success_timestamp_seconds",
    ] {
        assert!(metric(&m, series) > 0.0, "{series}:\n{m}");
    }
    assert_eq!(metric(&m, "vpcswitch_config_last_reload_successful"), 0.0);
    assert!(
        m.lines().any(
            |l| l.starts_with("vpcswitch_port_info{port=\"web1\",backend=") && l.ends_with(" 1")
        ),
        "port info:\n{m}"
    );
    // every metric the shipped rules and dashboard read exists (the overlay's and the
    // store's are checked by the store suite, which runs them)
    let have = exposed_families(&m);
    for (name, files) in deploy_metric_names() {
        let elsewhere = ["vpcswitch_store_", "vpcswitch_host_", "vpcswitch_tunnel_"]
            .iter()
            .any(|p| name.starts_with(p));
        assert!(
            elsewhere || have.contains(&name),
            "{name} ({files:?}) is not exposed"
        );
    }

    // capture to a file, read by tcpdump
    let pcap = n.file("web1.pcap");
    let cap = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} capture web1 --direction both --count 4 -w {}",
            n.ctl_cmd(),
            pcap.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl capture");
    n.procs.push(cap);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(n.ping("client", "10.0.1.11", 3), 3);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let c = n.procs.last_mut().expect("capture");
        if let Ok(Some(st)) = c.try_wait() {
            assert!(st.success(), "ctl capture failed");
            break;
        }
        assert!(Instant::now() < end, "capture did not end after 4 frames");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out) = sh(&format!("tcpdump -n -r {} 2>&1", pcap.display()));
    assert!(ok, "tcpdump reads the file: {out}");
    let echo = out.lines().filter(|l| l.contains("ICMP echo")).count();
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(" IP ") || l.contains("ARP"))
            .count(),
        4,
        "{out}"
    );
    assert!(echo >= 2, "echo request and reply captured: {out}");
    // pcapng: the port's name and each frame's direction are in the file
    let frames =
        common::pcapng::read(&std::fs::read(&pcap).expect("capture file")).expect("a pcapng file");
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| f.interface == "web1"), "{frames:?}");
    let (into, out_of) = (
        common::pcapng::Dir::Outbound, // sent to web1: the requests
        common::pcapng::Dir::Inbound,  // received from web1: the replies
    );
    let icmp_type = |f: &common::pcapng::Read| f.data.get(34).copied();
    assert!(
        frames
            .iter()
            .any(|f| f.dir == Some(into) && icmp_type(f) == Some(8)),
        "an echo request sent to web1, outbound: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.dir == Some(out_of) && icmp_type(f) == Some(0)),
        "an echo reply from web1, inbound: {frames:?}"
    );

    // two captures at once, one filtered: each gets its own frames, in order, and the
    // filter keeps only what it names
    let a = n.file("a.pcapng");
    let b = n.file("b.pcapng");
    for (port, file, extra) in [
        ("web1", &a, "--direction tx --count 3"),
        (
            "client",
            &b,
            "--direction rx --count 3 --filter 'icmp and dst host 10.0.1.11'",
        ),
    ] {
        let c = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} capture {port} {extra} -w {}",
                n.ctl_cmd(),
                file.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctl capture");
        n.procs.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(n.ping("client", "10.0.1.11", 3), 3);
    assert_eq!(n.ping("client", "10.0.1.12", 3), 3);
    let end = Instant::now() + Duration::from_secs(10);
    for i in [n.procs.len() - 2, n.procs.len() - 1] {
        loop {
            if let Ok(Some(st)) = n.procs[i].try_wait() {
                assert!(st.success(), "ctl capture failed");
                break;
            }
            assert!(Instant::now() < end, "a capture did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let fa = common::pcapng::read(&std::fs::read(&a).expect("a")).expect("pcapng a");
    let fb = common::pcapng::read(&std::fs::read(&b).expect("b")).expect("pcapng b");
    assert_eq!((fa.len(), fb.len()), (3, 3), "{fa:?}\n{fb:?}");
    assert!(fa
        .iter()
        .all(|f| f.interface == "web1" && f.dir == Some(into)));
    assert!(
        fa.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
        "in order: {fa:?}"
    );
    assert!(fb.iter().all(|f| f.interface == "client"
        && f.dir == Some(out_of)
        && icmp_type(f) == Some(8)
        && f.data.get(30..34) == Some(&[10, 0, 1, 11][..])));
    // the captured frames traced again, from the file: each goes to web1
    let out = must(&format!(
        "{} trace client --pcap {} --json",
        n.ctl_cmd(),
        b.display()
    ));
    let traced: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("one JSON answer per frame");
    assert_eq!(traced.len(), 3, "{out}");
    assert!(
        traced.iter().all(|t| t["verdict"]["to"]["port"] == "web1"),
        "{out}"
    );
    let one = must(&format!(
        "{} trace client --pcap {} --frame 2",
        n.ctl_cmd(),
        b.display()
    ));
    assert!(
        one.contains("== frame 2") && !one.contains("== frame 1"),
        "{one}"
    );
    let (ok, msg) = sh(&format!(
        "{} trace client --pcap {} --frame 9",
        n.ctl_cmd(),
        b.display()
    ));
    assert!(!ok && msg.contains("has 3 frames, no frame 9"), "{msg}");
    // and by its fields, as the client's guest would send it
    let t: Value = serde_json::from_str(&must(&format!(
        "{} --json trace client --flow 'tcp ip4.dst=10.0.1.12 tcp.dst=80'",
        n.ctl_cmd()
    )))
    .expect("json");
    assert!(
        t["verdict"]["to"]["port"] == "web2" && t["description"] == "forward to port web2",
        "{t}"
    );
    // a filter that is not one is refused before anything starts, naming the word
    let (ok, msg) = sh(&format!(
        "{} capture web1 --filter 'tcp prot 80' -w /dev/null",
        n.ctl_cmd()
    ));
    assert!(!ok && msg.contains("unknown word \"prot\""), "{msg}");
    // streamed to stdout, piped into tcpdump
    let ping = n.spawn("client", "ping -n -c 20 -i 0.1 10.0.1.12", "ping-cap.txt");
    let (ok, out) = sh(&format!(
        "timeout 10 sh -c '{} capture web2 --direction rx --count 4 -w - | tcpdump -n -r - 2>&1'",
        n.ctl_cmd()
    ));
    let _ = ping;
    let frames = out
        .lines()
        .filter(|l| l.contains(" IP ") || l.contains("ARP"))
        .count();
    let replies = out
        .lines()
        .filter(|l| l.contains("ICMP echo reply"))
        .count();
    assert!(ok && frames == 4 && replies >= 2, "{out}");

    // drop sampling: the client sends from an address that is not its own
    must(&format!(
        "ip -n {} addr add 10.0.1.77/24 dev eth0",
        n.ns("client")
    ));
    n.spawn(
        "client",
        "ping -n -c 30 -i 0.1 -I 10.0.1.77 10.0.1.11",
        "ping-spoof.txt",
    );
    let (ok, out) = sh(&format!("timeout 10 {} drops --secs 2", n.ctl_cmd()));
    assert!(ok, "{out}");
    assert!(
        out.lines().any(|l| l.contains("client")
            && l.contains("spoofed_src_ip")
            && l.contains("10.0.1.77 > 10.0.1.11")),
        "{out}"
    );
}

#[test]
fn logs_are_json_lines_one_per_event() {
    let _l = lock();
    require();
    let dir = std::env::temp_dir().join(format!("vpcswitch-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let sock = dir.join("ctl.sock");
    let ifn = format!("vj{}", std::process::id() % 100_000);
    let cfg = format!(
        "[switch]\ncontrol_socket = \"{}\"\n[[vpcs]]\nname = \"v\"\ncidrs = [\"10.5.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.5.1.0/24\"\n[[ports]]\nname = \"p\"\nsubnet = \"s\"\nmac = \"02:00:00:00:05:01\"\nips = [\"10.5.1.11\"]\nbackend = {{ type = \"tap\", ifname = \"{ifn}\" }}\n",
        sock.display()
    );
    let path = dir.join("switch.toml");
    std::fs::write(&path, &cfg).expect("config");
    let log = dir.join("log.jsonl");
    let mut sw = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["run", "--log-format", "json", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start");
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    // a refused reload, then a good one, then stop
    std::fs::write(&path, "not toml").expect("bad");
    let _ = sh(&format!("kill -HUP {}", sw.id()));
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&path, &cfg).expect("good");
    let _ = sh(&format!("kill -HUP {}", sw.id()));
    std::thread::sleep(Duration::from_millis(500));
    let _ = sh(&format!("kill -TERM {}", sw.id()));
    let st = sw.wait().expect("exit");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(st.success(), "clean exit\n{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let msgs: Vec<String> = lines
        .iter()
        .map(|v| v["fields"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "switch started",
        "reload refused; the running configuration stays",
        "configuration reloaded",
    ] {
        assert!(msgs.iter().any(|m| m == want), "{want:?} logged: {msgs:?}");
    }
    assert!(lines
        .iter()
        .all(|v| v["level"].is_string() && v["timestamp"].is_string()));
    assert!(
        lines.len() < 20,
        "one line per event, nothing per packet: {msgs:?}"
    );
}

/// The shipped alert rules (deploy/prometheus) are valid and their unit tests pass:
/// each alert fires on the series a switch exposes, a first burst of drops included.
#[test]
fn the_shipped_alert_rules_are_valid_and_fire_as_tested() {
    require_promtool();
    let dir = common::repo_root().join("deploy/prometheus");
    let out = must(&format!(
        "cd {} && promtool check rules vpcswitch.rules.yml && promtool test rules vpcswitch.rules.test.yml",
        dir.display()
    ));
    assert!(out.contains("SUCCESS"), "{out}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("deploy/grafana/vpcswitch.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{}", panels.len());
    for p in panels {
        let t = p["targets"].as_array().expect("targets");
        assert!(
            !t.is_empty()
                && t.iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "panel {} has no query",
            p["title"]
        );
    }
}

/// `vpcswitch ctl --json ARGS` against socket `s`, read as the schema type `T` (which
/// refuses any field docs/ctl-json.md does not have).
fn ctl_as<T: serde::de::DeserializeOwned>(s: &std::path::Path, args: &[&str]) -> T {
    let out = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["ctl", "--json", "-s"])
        .arg(s)
        .args(args)
        .output()
        .expect("ctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ctl {args:?}: {e}:\n{text}"))
}

/// Now, on the wall clock, in µs.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Issue 21: every `ctl --json` answer of a running switch (TAP ports, an uplink and an
/// EIP, a VIP claimed by a GARP, SPEC 3.1) reads back as its documented type
/// (docs/ctl-json.md; unknown fields refused), targets are tagged objects, absent
/// values are null, and timestamps are in the unit their name says.
#[test]
fn issue21_every_ctl_json_answer_is_the_documented_schema() {
    use common::net::{garp, EIP, EIP_EXTRA};
    use common::schema::*;
    use std::net::Ipv4Addr;
    let _l = lock();
    let mut n = Net::start_with(EIP_EXTRA);
    let s = n.socket.clone();
    let before_us = unix_us();
    // nobody owns the VIP yet: null, not "-"
    let vips: Vec<VipRow> = ctl_as(&s, &["vips"]);
    let vip = vips.iter().find(|v| v.name == "vip").expect("vip row");
    assert_eq!((vip.owner.as_deref(), vip.moved_unix_us), (None, None));
    assert_eq!(vip.first_packet_us, None);
    let nb: Vec<NeighborRow> = ctl_as(&s, &["neighbors"]);
    let at = nb.iter().find(|x| x.ip == Ipv4Addr::new(10, 0, 1, 100));
    assert_eq!(at.map(|x| x.mac.clone()), Some(None), "{nb:?}");
    // web2 claims it (SPEC 3.1), and traffic flows
    n.scapy("web2", &garp("02:00:00:00:01:02"));
    assert!(n.wait_owner("web2", 5), "web2 owns the VIP after its GARP");
    // to the VIP: forwarded to web2 (which does not hold the address, so no replies)
    n.ping("client", "10.0.1.100", 1);
    assert_eq!(n.ping("client", "10.0.1.12", 2), 2);

    let ports: Vec<PortRow> = ctl_as(&s, &["ports"]);
    let client = ports.iter().find(|p| p.name == "client").expect("client");
    assert_eq!(client.subnet.as_deref(), Some("web"));
    assert_eq!(client.ips, vec![Ipv4Addr::new(10, 0, 1, 13)]);
    assert_eq!(
        client.backend.as_ref().map(|b| b.kind.as_str()),
        Some("tap")
    );
    assert!(
        client.rx_packets >= 2 && client.rx_bytes >= 2 * 98,
        "{client:?}"
    );

    let vips: Vec<VipRow> = ctl_as(&s, &["vips"]);
    let vip = vips.iter().find(|v| v.name == "vip").expect("vip row");
    assert_eq!(vip.owner.as_deref(), Some("web2"));
    assert_eq!(
        (vip.subnet.as_str(), vip.ip),
        ("web", Ipv4Addr::new(10, 0, 1, 100).into())
    );
    assert!(vip.moves >= 1);
    // µs since the epoch: within this test, not seconds or ms
    let moved = vip.moved_unix_us.expect("a move time");
    assert!(
        (before_us..=unix_us()).contains(&moved),
        "moved_unix_us {moved} not between {before_us} and now"
    );
    assert!(
        vip.first_packet_us.is_some_and(|us| us > 0.0 && us < 1e6),
        "{vip:?}"
    );

    let e: EipsAnswer = ctl_as(&s, &["eips"]);
    let up = e.uplink.expect("an uplink");
    assert_eq!(up.next_hop, Ipv4Addr::new(203, 0, 113, 1));
    assert_eq!(e.eips.len(), 1);
    let x = &e.eips[0];
    assert_eq!(x.eip.to_string(), EIP);
    assert_eq!(x.target, Some(EipTarget::Vip { vip: "vip".into() }));
    assert_eq!(x.private_ip, Some(Ipv4Addr::new(10, 0, 1, 100)));
    assert_eq!(x.owner_port.as_deref(), Some("web2"));

    let nb: Vec<NeighborRow> = ctl_as(&s, &["neighbors"]);
    let find = |ip: [u8; 4]| nb.iter().find(|x| x.ip == Ipv4Addr::from(ip)).expect("row");
    assert_eq!(
        find([10, 0, 1, 100]).answers_for,
        NeighborOf::Vip {
            vip: "vip".into(),
            owner: Some("web2".into())
        }
    );
    assert_eq!(
        find([10, 0, 1, 100]).mac.as_deref(),
        Some("02:00:00:00:01:02")
    );
    assert_eq!(
        find([10, 0, 1, 1]).answers_for,
        NeighborOf::Gateway {
            subnet: "web".into()
        }
    );
    assert_eq!(
        find([10, 0, 1, 13]).answers_for,
        NeighborOf::Port {
            port: "client".into()
        }
    );

    let routes: Vec<RouteRow> = ctl_as(&s, &["routes"]);
    let target = |vpc: &str, dst: &str| {
        routes
            .iter()
            .find(|r| r.vpc == vpc && r.destination == dst)
            .map(|r| r.target.clone())
    };
    assert_eq!(
        target("a", "10.0.1.0/24"),
        Some(RouteTarget::Local {
            subnet: "web".into()
        })
    );
    assert_eq!(
        target("a", "10.1.0.0/16"),
        Some(RouteTarget::Peering {
            peering: "ab".into()
        })
    );
    assert_eq!(target("a", "0.0.0.0/0"), Some(RouteTarget::Uplink));

    let st: StatsAnswer = ctl_as(&s, &["stats"]);
    assert_eq!((st.generation, st.last_reload_error.as_deref()), (1, None));
    assert_eq!(st.workers.len(), 2);
    assert!(st.workers.iter().map(|w| w.forwarded_packets).sum::<u64>() >= 4);
    assert!(st.workers.iter().all(|w| w.busy_ns + w.idle_ns > 0));
    assert!(st.store.is_none(), "the network is a file's");

    let h: HostsAnswer = ctl_as(&s, &["hosts"]);
    assert!(h.hosts.is_empty());
    assert_eq!(h.tunnel.rx_datagrams, 0);

    let t: TraceAnswer = ctl_as(
        &s,
        &["trace", "client", "--flow", "icmp ip4.dst=10.0.1.100"],
    );
    assert_eq!(
        t.verdict,
        TraceVerdict::Forward {
            to: TraceOut::Port {
                port: Some("web2".into()),
                host: None
            }
        },
        "{t:?}"
    );
    assert!(t.steps.iter().any(|x| x.stage == "verdict"), "{t:?}");
    let t: TraceAnswer = ctl_as(
        &s,
        &[
            "trace",
            "client",
            "--flow",
            "udp nw_src=10.0.1.99 nw_dst=10.0.1.12",
        ],
    );
    assert_eq!(
        t.verdict,
        TraceVerdict::Drop {
            reason: "spoofed_src_ip".into()
        }
    );

    // drops: spoofed frames sampled while the stream runs; every line is a stream line
    let drops = Command::new(env!("CARGO_BIN_EXE_vpcswitch"))
        .args(["ctl", "--json", "drops", "--secs", "5", "-s"])
        .arg(&s)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctl drops");
    std::thread::sleep(Duration::from_millis(800));
    n.scapy(
        "client",
        "sendp(Ether(src='02:00:00:00:01:03', dst='02:00:00:00:01:01')/IP(src='10.0.1.77', dst='10.0.1.11')/ICMP(), iface='eth0', count=3)",
    );
    let out = drops.wait_with_output().expect("ctl drops ends");
    let lines: Vec<StreamLine> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let sampled: Vec<&DropSample> = lines
        .iter()
        .filter_map(|l| match l {
            StreamLine::Drop(d) => Some(d),
            _ => None,
        })
        .collect();
    let d = sampled
        .iter()
        .find(|d| d.reason == "spoofed_src_ip")
        .unwrap_or_else(|| panic!("a spoofed frame sampled: {lines:?}"));
    assert_eq!(d.port.as_deref(), Some("client"));
    assert!(d.orig_len_bytes >= 42 && d.head.len() as u64 <= 2 * d.orig_len_bytes);
    assert!((before_us..=unix_us()).contains(&d.ts_unix_us), "{d:?}");
    assert!(
        matches!(lines.last(), Some(StreamLine::Done(x)) if x.count == sampled.len() as u64 && x.ended.is_none()),
        "{lines:?}"
    );

    // the capture stream, as the control socket sends it
    {
        use std::io::{BufRead, BufReader, Write};
        let mut c = std::os::unix::net::UnixStream::connect(&s).expect("connect");
        c.write_all(b"{\"cmd\": [\"capture\", \"client\", \"rx\", \"2\"]}\n")
            .expect("request");
        let mut lines = BufReader::new(c).lines();
        let first: serde_json::Value =
            serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
        assert_eq!(first["schema_version"], SCHEMA_VERSION, "{first}");
        let start: CaptureStart = serde_json::from_value(first["data"].clone()).expect("schema");
        assert_eq!(start.port, "client");
        assert!(start.snaplen_bytes >= 128);
        assert_eq!(n.ping("client", "10.0.1.11", 2), 2);
        let rest: Vec<StreamLine> = lines
            .map(|l| serde_json::from_str(&l.expect("read")).expect("a stream line"))
            .collect();
        let frames: Vec<&CaptureFrame> = rest
            .iter()
            .filter_map(|l| match l {
                StreamLine::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 2, "{rest:?}");
        assert!(frames
            .iter()
            .all(|f| f.dir == Dir::Rx && f.orig_len_bytes >= 42));
        assert!(frames
            .iter()
            .all(|f| (before_us..=unix_us()).contains(&f.ts_unix_us)));
        assert!(
            matches!(rest.last(), Some(StreamLine::Done(d)) if d.count == 2 && d.lost_frames == 0),
            "{rest:?}"
        );
    }

    // reload, list-commands, and an error, all typed
    let r: ReloadAnswer = ctl_as(&s, &["reload"]);
    assert_eq!(r.generation, 2);
    let e: ErrorAnswer = ctl_as(&s, &["trace", "nope", "--flow", "icmp ip4.dst=10.0.1.12"]);
    assert!(!e.ok && e.error.contains("no port named"), "{e:?}");
    let list: Vec<CommandRow> = ctl_as(&s, &["list-commands"]);
    let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
    // every command is covered above (capture through the socket: ctl writes a file)
    for c in [
        "ports",
        "vips",
        "eips",
        "neighbors",
        "routes",
        "stats",
        "hosts",
        "reload",
        "trace",
        "capture",
        "drops",
        "list-commands",
    ] {
        assert!(names.contains(&c), "{c} listed: {names:?}");
    }
    assert_eq!(
        names.len(),
        12,
        "a new command needs its schema and this test: {names:?}"
    );
    assert!(n.stop_switch());
}
