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
        traced
            .iter()
            .all(|t| t["verdict"].as_str().is_some_and(|v| v.contains("web1"))),
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
        t["verdict"].as_str().is_some_and(|v| v.contains("web2")),
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
