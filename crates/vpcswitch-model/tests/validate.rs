//! SPEC 1: every validation rule, and that all errors are reported at once.

use vpcswitch_model::{Config, ConfigBuilder};

fn base() -> ConfigBuilder {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("a2", "a", "10.0.2.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .peering("ab", "a", "b")
        .route_via_peering("a", "10.1.0.0/16", "ab")
        .route_via_peering("b", "10.0.0.0/16", "ab")
}

#[test]
fn a_valid_topology_builds() {
    let c = base().build().unwrap();
    assert_eq!(c.ports.len(), 4);
    // round trip through TOML
    let again = Config::from_toml_str(&c.to_toml_string()).unwrap();
    assert_eq!(again, c);
}

fn errs(b: ConfigBuilder) -> vpcswitch_model::ConfigErrors {
    b.build().expect_err("must be refused")
}

#[test]
fn spec1_duplicate_names_and_macs() {
    let e = errs(base().port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.13"]));
    assert!(e.mentions("port \"p1\"", "name"), "{e}");
    assert!(e.mentions("port \"p1\"", "mac"), "{e}");
    let e = errs(base().port("x", "a1", "02:00:00:00:00:01", &["10.0.1.14"]));
    assert!(e.to_string().contains("gateway_mac"), "{e}");
}

#[test]
fn spec1_fixed_ips_inside_subnet_unique_not_reserved() {
    for (ip, what) in [
        ("10.0.2.5", "not inside"),
        ("10.0.1.0", "network address"),
        ("10.0.1.1", "gateway address"),
        ("10.0.1.255", "broadcast address"),
        ("10.0.1.11", "already a fixed IP"),
        ("10.0.1.100", "VIP"),
    ] {
        let e = errs(base().port("x", "a1", "02:00:00:00:09:09", &[ip]));
        assert!(e.mentions("port \"x\"", "ips"), "{ip}: {e}");
        assert!(e.to_string().contains(what), "{ip}: {e}");
    }
}

#[test]
fn spec1_subnet_rules() {
    let e = errs(base().subnet("bad", "a", "10.2.0.0/24"));
    assert!(e.mentions("subnet \"bad\"", "cidr"), "{e}");
    let e = errs(base().subnet("ov", "a", "10.0.1.128/25"));
    assert!(e.to_string().contains("overlaps subnet \"a1\""), "{e}");
    let e = errs(base().subnet("g", "a", "10.0.9.0/24").gateway("10.0.8.1"));
    assert!(e.mentions("subnet \"g\"", "gateway"), "{e}");
    let e = errs(base().subnet("nv", "nope", "10.0.9.0/24"));
    assert!(e.mentions("subnet \"nv\"", "vpc"), "{e}");
    // custom gateway is honoured and reserved
    let c = base()
        .subnet("g", "a", "10.0.9.0/24")
        .gateway("10.0.9.254")
        .build()
        .unwrap();
    assert_eq!(c.subnets[3].gateway_ip().to_string(), "10.0.9.254");
    let e = errs(
        base()
            .subnet("g", "a", "10.0.9.0/24")
            .gateway("10.0.9.254")
            .port("x", "g", "02:00:00:00:09:09", &["10.0.9.254"]),
    );
    assert!(e.to_string().contains("gateway"), "{e}");
}

#[test]
fn spec1_vip_limits_are_enforced_and_configurable() {
    let mut b = base();
    let mut names = vec![];
    for i in 0..11 {
        let n = format!("m{i}");
        b = b.port(
            &n,
            "a1",
            &format!("02:00:00:00:05:{i:02x}"),
            &[&format!("10.0.1.{}", 50 + i)],
        );
        names.push(n);
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let e = errs(b.clone().vip("big", "a1", "10.0.1.200", &refs));
    assert!(e.to_string().contains("at most 10"), "{e}");
    b.clone()
        .vip("ten", "a1", "10.0.1.200", &refs[..10])
        .build()
        .unwrap();
    b.clone()
        .vip_limits(11, 8)
        .vip("big", "a1", "10.0.1.200", &refs)
        .build()
        .unwrap();
    // a port on 9 VIPs
    let mut b2 = base();
    for i in 0..9 {
        b2 = b2.vip(
            &format!("w{i}"),
            "a1",
            &format!("10.0.1.{}", 150 + i),
            &["p1"],
        );
    }
    let e = errs(b2.clone());
    assert!(e.mentions("port \"p1\"", "vips"), "{e}");
    b2.vip_limits(10, 10).build().unwrap();
}

#[test]
fn spec1_vip_rules() {
    let e = errs(base().vip("x", "a1", "10.0.1.11", &["p1"]));
    assert!(e.to_string().contains("fixed IP of port \"p1\""), "{e}");
    let e = errs(base().vip("x", "a1", "10.0.1.120", &["q1"]));
    assert!(e.to_string().contains("not the VIP's subnet"), "{e}");
    let e = errs(base().vip("x", "a1", "10.0.1.120", &["ghost"]));
    assert!(e.to_string().contains("no port named \"ghost\""), "{e}");
    let e = errs(base().vip("x", "a1", "10.0.1.100", &[]));
    assert!(e.to_string().contains("already the address of vip"), "{e}");
}

#[test]
fn spec1_peering_and_route_rules() {
    let e = errs(base().vpc("c", &["10.1.128.0/17"]).peering("bc", "b", "c"));
    assert!(e.to_string().contains("overlap"), "{e}");
    let e = errs(base().route_via_peering("b", "10.9.0.0/16", "nope"));
    assert!(e.to_string().contains("no peering named"), "{e}");
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .peering("bc", "b", "c")
            .route_via_peering("a", "10.2.0.0/16", "bc"),
    );
    assert!(e.to_string().contains("does not join VPC \"a\""), "{e}");
    let e = errs(base().route_via_port("a", "0.0.0.0/0", "r1"));
    assert!(e.to_string().contains("not in VPC \"a\""), "{e}");
    let e = errs(base().route_via_port("a", "10.0.1.0/25", "p1"));
    assert!(e.to_string().contains("shadow"), "{e}");
    let e = errs(base().route_via_uplink("a", "0.0.0.0/0"));
    assert!(e.to_string().contains("no [uplink]"), "{e}");
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let e = errs(
        base()
            .port("x", "a1", "nonsense", &["10.0.1.0"])
            .vip("y", "nowhere", "10.0.1.7", &[])
            .peering("self", "a", "a"),
    );
    assert!(e.0.len() >= 4, "{e}");
    assert!(e.mentions("port \"x\"", "mac"));
    assert!(e.mentions("port \"x\"", "ips"));
    assert!(e.mentions("vip \"y\"", "subnet"));
    assert!(e.mentions("peering \"self\"", "vpcs"));
}

#[test]
fn toml_contract_and_errors() {
    let ok = r#"
[switch]
workers = 2
gateway_mac = "02:00:00:00:00:fe"
control_socket = "/run/vpcswitch.sock"

[[vpcs]]
name = "prod"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "web"
vpc = "prod"
cidr = "10.0.1.0/24"

[[ports]]
name = "web1"
subnet = "web"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]
backend = { type = "tap", ifname = "vs-web1" }

[[ports]]
name = "lvs1"
subnet = "web"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.12"]
src_dst_check = false
allowed_macs = ["02:00:00:00:01:99"]
backend = { type = "tap", ifname = "vs-lvs1" }

[[vips]]
name = "web-vip"
subnet = "web"
ip = "10.0.1.100"
ports = ["web1", "lvs1"]
"#;
    let c = Config::from_toml_str(ok).unwrap();
    assert_eq!(c.switch.workers, 2);
    assert!(!c.ports[1].src_dst_check);
    assert!(c.ports[0].src_dst_check);
    let bad = ok.replace(
        "ips = [\"10.0.1.11\"]",
        "ips = [\"10.0.1.11\"]\ncolour = \"red\"",
    );
    let e = Config::from_toml_str(&bad).unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    assert!(e.to_string().contains("line"), "{e}");
    let bad = ok.replace("02:00:00:00:01:01", "02:00:00:00:01");
    let e = Config::from_toml_str(&bad).unwrap_err();
    assert!(e.to_string().contains("not a MAC"), "{e}");
}

#[test]
fn spec1_eip_and_uplink_rules() {
    let up = || {
        base()
            .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
            .route_via_uplink("a", "0.0.0.0/0")
    };
    let ok = up()
        .eip_for_vip("203.0.113.10", "v")
        .eip_for_port("203.0.113.11", "q1")
        .build()
        .unwrap();
    assert_eq!(ok.all_eips().len(), 2);
    let again = Config::from_toml_str(&ok.to_toml_string()).unwrap();
    assert_eq!(again, ok);

    // an EIP needs an uplink
    let e = errs(base().eip_for_vip("203.0.113.10", "v"));
    assert!(e.to_string().contains("needs an [uplink]"), "{e}");
    // one EIP per target, EIPs unique, outside every VPC
    let e = errs(
        up().eip_for_vip("203.0.113.10", "v")
            .eip_for_vip("203.0.113.12", "v"),
    );
    assert!(e.to_string().contains("one EIP per target"), "{e}");
    let e = errs(
        up().eip_for_vip("203.0.113.10", "v")
            .eip_for_port("203.0.113.10", "p1"),
    );
    assert!(e.to_string().contains("duplicate EIP"), "{e}");
    let e = errs(up().eip_for_port("10.0.9.9", "p1"));
    assert!(e.to_string().contains("outside every VPC CIDR"), "{e}");
    let e = errs(up().eip_for_vip("203.0.113.10", "nope"));
    assert!(e.mentions("eip 203.0.113.10", "vip"), "{e}");
    // the target's VPC must route to the uplink
    let e = errs(up().eip_for_port("203.0.113.13", "r1"));
    assert!(e.to_string().contains("no route to the uplink"), "{e}");
    // the uplink itself
    let e = errs(
        base()
            .uplink("p1", "ff:ff:ff:ff:ff:ff", "10.0.5.5")
            .route_via_uplink("a", "0.0.0.0/0"),
    );
    assert!(e.mentions("uplink \"p1\"", "mac"), "{e}");
    assert!(e.mentions("uplink \"p1\"", "name"), "{e}");
    assert!(e.mentions("uplink \"p1\"", "next_hop"), "{e}");
    let e = errs(
        base()
            .uplink("u", "02:00:00:00:ff:01", "203.0.113.10")
            .route_via_uplink("a", "0.0.0.0/0")
            .eip_for_vip("203.0.113.10", "v"),
    );
    assert!(e.to_string().contains("also an EIP"), "{e}");
    let e = errs(base().uplink("u", "02:00:00:00:ff:01", "not-an-ip"));
    assert!(e.mentions("uplink \"u\"", "next_hop"), "{e}");
}

#[test]
fn switch_metrics_address_is_checked() {
    let mut c = base().build().unwrap();
    c.switch.metrics = Some("127.0.0.1:9477".into());
    assert!(c.validate().is_ok());
    c.switch.metrics = Some("localhost-ish".into());
    let e = c.validate().unwrap_err();
    assert!(e.mentions("switch", "metrics"), "{e}");
}

#[test]
fn backends_name_real_interfaces_once_and_known_af_xdp_modes() {
    use vpcswitch_model::BackendSpec;
    let tap = |n: &str| BackendSpec::Tap {
        ifname: n.into(),
        offload: None,
        netns: None,
    };
    let e = errs(
        base()
            .backend(tap("this-name-is-far-too-long"))
            .port("x", "a1", "02:00:00:00:01:09", &["10.0.1.19"])
            .backend(BackendSpec::AfXdp {
                ifname: "veth1".into(),
                queue: 0,
                mode: Some("fast".into()),
            })
            .port("y", "a1", "02:00:00:00:01:0a", &["10.0.1.20"])
            .backend(BackendSpec::AfPacket {
                ifname: "veth1".into(),
                ring: None,
            }),
    );
    assert!(e.mentions("port \"r1\"", "backend"), "too long: {e}");
    assert!(e.to_string().contains("af_xdp mode \"fast\""), "{e}");
    assert!(
        e.to_string()
            .contains("interface veth1 is already the backend of port \"x\""),
        "{e}"
    );
    // the same, well formed, is accepted
    base()
        .port("x", "a1", "02:00:00:00:01:09", &["10.0.1.19"])
        .backend(BackendSpec::AfXdp {
            ifname: "veth1".into(),
            queue: 0,
            mode: Some("skb".into()),
        })
        .build()
        .expect("valid");
}

/// A TAP port's `netns` (issue 22, ports that outlive the process): a name under
/// /var/run/netns or an absolute path; the same interface name may serve two ports in
/// two namespaces, not twice in one (a name and its path are the same namespace).
#[test]
fn tap_netns_is_a_name_or_an_absolute_path_and_keys_the_interface() {
    use vpcswitch_model::BackendSpec;
    let tap = |n: &str, ns: Option<&str>| BackendSpec::Tap {
        ifname: n.into(),
        offload: None,
        netns: ns.map(String::from),
    };
    let long_name = "n".repeat(256);
    let long_path = format!("/{}", "p".repeat(4095));
    for (ns, what) in [
        ("", "netns is empty"),
        ("a/b", "neither a name"),
        ("./web1", "neither a name"),
        ("..", "not a namespace name"),
        ("a\0b", "contains NUL"),
        (long_name.as_str(), "longer than 255"),
        (long_path.as_str(), "longer than 4095"),
    ] {
        let e = errs(base().backend(tap("vs-r1", Some(ns))));
        assert!(e.mentions("port \"r1\"", "backend"), "{ns:?}: {e}");
        assert!(e.to_string().contains(what), "{ns:?}: {e}");
    }
    // good names and paths; one interface name in two namespaces
    let ok = base()
        .backend(tap("eth0", Some("web1")))
        .port("x", "a1", "02:00:00:00:01:09", &["10.0.1.19"])
        .backend(tap("eth0", Some("/proc/1/ns/net")))
        .port("y", "a1", "02:00:00:00:01:0a", &["10.0.1.20"])
        .backend(tap("eth0", None))
        .build()
        .expect("valid");
    assert_eq!(ok.backend_of("r1").and_then(|b| b.netns()), Some("web1"));
    assert_eq!(
        vpcswitch_model::netns_path("web1"),
        std::path::PathBuf::from("/var/run/netns/web1")
    );
    // the same device twice: by name and by path
    let e = errs(
        base()
            .backend(tap("eth0", Some("web1")))
            .port("x", "a1", "02:00:00:00:01:09", &["10.0.1.19"])
            .backend(tap("eth0", Some("/var/run/netns/web1"))),
    );
    assert!(
        e.to_string().contains(
            "interface eth0 in network namespace /var/run/netns/web1 is already the backend of port \"r1\""
        ),
        "{e}"
    );
    // TOML: the field, unknown fields still refused, and the round trip
    let text = |b: &str| {
        format!(
            "[[vpcs]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"a\"\ncidr = \"10.0.1.0/24\"\n\
             [[ports]]\nname = \"web1\"\nsubnet = \"s\"\nmac = \"02:00:00:00:01:01\"\nips = [\"10.0.1.11\"]\nbackend = {b}\n"
        )
    };
    let c = Config::from_toml_str(&text(
        r#"{ type = "tap", ifname = "vs-web1", netns = "web1" }"#,
    ))
    .expect("valid");
    assert_eq!(c.ports[0].backend.netns(), Some("web1"));
    assert_eq!(
        Config::from_toml_str(&c.to_toml_string()).expect("again"),
        c
    );
    let e = Config::from_toml_str(&text(r#"{ type = "tap", ifname = "vs-web1", netns = "" }"#))
        .expect_err("empty netns");
    assert!(e.mentions("port \"web1\"", "backend"), "{e}");
    // netns is a TAP field only
    Config::from_toml_str(&text(
        r#"{ type = "af_packet", ifname = "veth1", netns = "web1" }"#,
    ))
    .expect_err("af_packet has no netns");
}

#[test]
fn switch_idle_policy_one_for_all_or_one_per_worker() {
    use vpcswitch_model::{IdlePolicy, IdleSetting};
    let head = "[[vpcs]]\nname = \"v\"\ncidrs = [\"10.0.0.0/16\"]\n";
    let c = Config::from_toml_str(head).unwrap();
    assert_eq!(c.switch.idle.of(0), IdlePolicy::Adaptive, "the default");
    let c = Config::from_toml_str(&format!("[switch]\nidle = \"busy_poll\"\n{head}")).unwrap();
    assert_eq!(c.switch.idle, IdleSetting::All(IdlePolicy::BusyPoll));
    let c = Config::from_toml_str(&format!(
        "[switch]\nworkers = 2\nidle = [\"busy_poll\", \"adaptive\"]\n{head}"
    ))
    .unwrap();
    assert_eq!(c.switch.idle.of(0), IdlePolicy::BusyPoll);
    assert_eq!(c.switch.idle.of(1), IdlePolicy::Adaptive);
    // round trip through TOML
    assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    // a misspelt policy names itself and the choices, with the line
    let e = Config::from_toml_str(&format!("[switch]\nidle = \"busy\"\n{head}")).unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("`busy`") && t.contains("busy_poll") && t.contains("line 2"),
        "{t}"
    );
    // a list must have one entry per worker
    let e = Config::from_toml_str(&format!(
        "[switch]\nworkers = 3\nidle = [\"busy_poll\", \"adaptive\"]\n{head}"
    ))
    .unwrap_err();
    assert!(e.mentions("switch", "idle"), "{e}");
    assert!(e.to_string().contains("2 given for 3 worker"), "{e}");
}

/// An embedder's device (`type = "external"`): parsed, its optional kind label checked
/// (it reaches metrics labels and `ctl`), no interface of its own.
#[test]
fn external_backends_parse_and_their_kind_is_checked() {
    use vpcswitch_model::BackendSpec;
    let text = |kind: &str| {
        format!(
            "[[vpcs]]\nname = \"v\"\ncidrs = [\"10.0.0.0/16\"]\n[[subnets]]\nname = \"s\"\nvpc = \"v\"\ncidr = \"10.0.1.0/24\"\n[[ports]]\nname = \"p\"\nsubnet = \"s\"\nmac = \"02:00:00:00:01:01\"\nips = [\"10.0.1.11\"]\nbackend = {{ type = \"external\"{kind} }}\n"
        )
    };
    let c = vpcswitch_model::Config::from_toml_str(&text("")).expect("no kind");
    assert_eq!(
        c.backend_of("p"),
        Some(&BackendSpec::External { kind: None })
    );
    assert_eq!(c.backend_of("p").and_then(BackendSpec::ifname), None);
    let c =
        vpcswitch_model::Config::from_toml_str(&text(", kind = \"vhost_user\"")).expect("a kind");
    assert_eq!(
        c.backend_of("p"),
        Some(&BackendSpec::External {
            kind: Some("vhost_user".into())
        })
    );
    for bad in ["", "Vhost", "a\"b", "x".repeat(33).as_str()] {
        let e = vpcswitch_model::Config::from_toml_str(&text(&format!(", kind = {bad:?}")))
            .expect_err(bad);
        assert!(e.to_string().contains("external kind"), "{bad:?}: {e}");
    }
    let e = vpcswitch_model::Config::from_toml_str(&text(", ifname = \"x\""))
        .expect_err("unknown field");
    assert!(e.to_string().contains("ifname"), "{e}");
}
