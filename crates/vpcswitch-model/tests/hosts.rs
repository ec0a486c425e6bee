//! SPEC 10.1, 11.1 and 1: hosts, where ports live, VNIs; every rule, all errors at once.

use vpcswitch_model::{
    derived_vni, BackendSpec, Config, ConfigBuilder, ConfigErrors, DEFAULT_TUNNEL_PORT, MAX_VNI,
};

/// Two VPCs on three hosts; the uplink on h3.
fn multi() -> ConfigBuilder {
    ConfigBuilder::new()
        .host("h1", "192.0.2.1")
        .host("h2", "192.0.2.2")
        .host("h3", "192.0.2.3")
        .tunnel_port(8472)
        .vpc("a", &["10.0.0.0/16"])
        .vpc("b", &["10.1.0.0/16"])
        .vni(42)
        .subnet("a1", "a", "10.0.1.0/24")
        .subnet("b1", "b", "10.1.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .on_host("h1")
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .on_host("h2")
        .port("r1", "b1", "02:00:00:00:03:01", &["10.1.1.11"])
        .on_host("h3")
        .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
        .uplink_on_host("h3")
        .route_via_uplink("a", "0.0.0.0/0")
        .eip_for_port("203.0.113.10", "p1")
}

fn errs(b: ConfigBuilder) -> ConfigErrors {
    b.build().expect_err("must be refused")
}

#[test]
fn spec10_1_a_network_on_many_hosts_validates_and_round_trips() {
    let c = multi().build().unwrap();
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.hosts[0].port, DEFAULT_TUNNEL_PORT);
    assert_eq!(c.hosts[2].socket_addr().to_string(), "192.0.2.3:8472");
    assert_eq!(c.host_of("p2"), Some("h2"));
    assert_eq!(c.host_of("uplink"), Some("h3"));
    // the shared file names no local host; each switch adds its own
    assert_eq!(c.local_host(), None);
    assert!(!c.is_local("p1"));
    let on3 = c.clone().with_local_host("h3").unwrap();
    assert_eq!(on3.local_host(), Some("h3"));
    assert_eq!(on3.local_port_names().collect::<Vec<_>>(), ["r1", "uplink"]);
    assert!(on3.is_local("r1") && !on3.is_local("p1"));
    let again = Config::from_toml_str(&on3.to_toml_string()).unwrap();
    assert_eq!(again, on3);
}

#[test]
fn without_hosts_everything_is_local() {
    let c = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .build()
        .unwrap();
    assert!(c.is_local("p1"));
    assert_eq!(c.local_port_names().collect::<Vec<_>>(), ["p1"]);
    assert_eq!(c.host_of("p1"), None);
}

#[test]
fn without_hosts_host_fields_are_refused() {
    let b = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .route_via_uplink("a", "0.0.0.0/0")
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .on_host("h1")
        .uplink("uplink", "02:00:00:00:ff:01", "203.0.113.1")
        .uplink_on_host("h1")
        .local_host("h1");
    let e = errs(b.clone());
    for obj in ["port \"p1\"", "uplink \"uplink\"", "switch"] {
        assert!(e.mentions(obj, "host"), "{obj}: {e}");
    }
    assert!(e.to_string().contains("no [[hosts]] are configured"), "{e}");
    // the binary's --host is refused the same way
    let c = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .build()
        .unwrap();
    let e = c.with_local_host("h1").unwrap_err();
    assert!(e.mentions("switch", "host"), "{e}");
}

#[test]
fn with_hosts_every_port_and_the_uplink_name_a_known_host() {
    // a port with no host, the uplink on an unknown host, the switch on an unknown host
    let mut c = multi().build().unwrap();
    c.ports[1].host = None;
    c.uplink.as_mut().unwrap().host = Some("h9".into());
    c.switch.host = Some("h7".into());
    let e = c.validate().unwrap_err();
    assert!(e.mentions("port \"p2\"", "host"), "{e}");
    assert!(
        e.to_string().contains("every port and the uplink name"),
        "{e}"
    );
    assert!(e.mentions("uplink \"uplink\"", "host"), "{e}");
    assert!(e.to_string().contains("no host named \"h9\""), "{e}");
    assert!(e.mentions("switch", "host"), "{e}");
    assert!(e.to_string().contains("no host named \"h7\""), "{e}");
    assert_eq!(e.0.len(), 3, "{e}");
    // --host naming no host
    let e = multi()
        .build()
        .unwrap()
        .with_local_host("nope")
        .unwrap_err();
    assert!(e.to_string().contains("no host named \"nope\""), "{e}");
    // an uplink without a host
    let mut c = multi().build().unwrap();
    c.uplink.as_mut().unwrap().host = None;
    assert!(c
        .validate()
        .unwrap_err()
        .mentions("uplink \"uplink\"", "host"));
}

#[test]
fn hosts_have_unique_names_and_distinct_unicast_endpoints() {
    let e = errs(multi().host("h1", "192.0.2.9"));
    assert!(e.mentions("host \"h1\"", "name"), "{e}");
    // the same address with another port is still refused: the sender of a tunnel
    // packet is known by its source address only
    let e = errs(multi().host("h4", "192.0.2.2").tunnel_port(4790));
    assert!(e.mentions("host \"h4\"", "endpoint"), "{e}");
    assert!(
        e.to_string()
            .contains("already the endpoint of host \"h2\""),
        "{e}"
    );
    for bad in ["0.0.0.0", "255.255.255.255", "239.1.1.1"] {
        let e = errs(multi().host("h4", bad));
        assert!(e.mentions("host \"h4\"", "endpoint"), "{bad}: {e}");
        assert!(
            e.to_string().contains("not a unicast address"),
            "{bad}: {e}"
        );
    }
    let e = errs(multi().host("h4", "192.0.2.4").tunnel_port(0));
    assert!(e.mentions("host \"h4\"", "port"), "{e}");
    let e = errs(multi().host("", "192.0.2.4"));
    assert!(e.to_string().contains("must not be empty"), "{e}");
    // loopback endpoints are fine (several switches on one machine)
    multi().host("h4", "127.0.0.4").build().unwrap();
}

#[test]
fn vnis_are_in_range_and_unique() {
    for bad in [0, MAX_VNI + 1] {
        let e = errs(multi().vpc("c", &["10.2.0.0/16"]).vni(bad));
        assert!(e.mentions("vpc \"c\"", "vni"), "{bad}: {e}");
        assert!(e.to_string().contains("out of range"), "{bad}: {e}");
    }
    let e = errs(multi().vpc("c", &["10.2.0.0/16"]).vni(42));
    assert!(e.mentions("vpc \"c\"", "vni"), "{e}");
    assert!(
        e.to_string().contains("already the VNI of vpc \"b\""),
        "{e}"
    );
    multi()
        .vpc("c", &["10.2.0.0/16"])
        .vni(MAX_VNI)
        .build()
        .unwrap();
}

#[test]
fn derived_vnis_are_stable_deterministic_and_step_aside() {
    let c = multi().build().unwrap();
    let v = c.vnis();
    assert_eq!(v[1], 42, "explicit");
    assert_eq!(v[0], derived_vni("a"), "derived from the name");
    assert!((1..=MAX_VNI).contains(&v[0]));
    // independent of the order of the VPCs and of other VPCs
    let mut r = c.clone();
    r.vpcs.reverse();
    assert_eq!(r.vnis()[1], v[0]);
    let more = multi().vpc("zz", &["10.9.0.0/16"]).build().unwrap();
    assert_eq!(more.vnis()[0], v[0]);
    // an explicit VNI that takes a's derived one moves a, to the next one
    let taken = multi()
        .vpc("c", &["10.2.0.0/16"])
        .vni(derived_vni("a"))
        .build()
        .unwrap();
    let t = taken.vnis();
    assert_eq!(t[2], derived_vni("a"));
    assert_eq!(t[0], derived_vni("a") % MAX_VNI + 1);
    // every VNI distinct, across many derived ones
    let mut b = ConfigBuilder::new();
    for i in 0..200 {
        b = b.vpc(&format!("vpc-{i}"), &[&format!("10.{i}.0.0/16")]);
    }
    let many = b.build().unwrap().vnis();
    let mut d = many.clone();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), many.len());
}

#[test]
fn interface_names_are_unique_per_host() {
    let tap = |n: &str| BackendSpec::Tap {
        ifname: n.into(),
        offload: None,
        netns: None,
    };
    // tap0 on h1 and on h2: two devices
    let mut c = multi().build().unwrap();
    c.ports[0].backend = tap("tap0");
    c.ports[1].backend = tap("tap0");
    c.validate().unwrap();
    // twice on one host: refused
    c.ports[1].host = Some("h1".into());
    let e = c.validate().unwrap_err();
    assert!(
        e.to_string()
            .contains("interface tap0 is already the backend"),
        "{e}"
    );
}

#[test]
fn every_host_error_is_listed_at_once() {
    let mut c = multi()
        .host("h1", "0.0.0.0")
        .vpc("c", &["10.2.0.0/16"])
        .vni(0)
        .build_unchecked();
    c.ports[0].host = Some("ghost".into());
    let e = c.validate().unwrap_err();
    assert!(e.mentions("host \"h1\"", "name"), "{e}");
    assert!(e.mentions("host \"h1\"", "endpoint"), "{e}");
    assert!(e.mentions("vpc \"c\"", "vni"), "{e}");
    assert!(e.mentions("port \"p1\"", "host"), "{e}");
}

#[test]
fn toml_hosts_and_placement() {
    let text = r#"
[switch]
host = "h2"

[[hosts]]
name = "h1"
endpoint = "192.0.2.1"

[[hosts]]
name = "h2"
endpoint = "192.0.2.2"
port = 4790

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]
vni = 7

[[subnets]]
name = "a1"
vpc = "a"
cidr = "10.0.1.0/24"

[[ports]]
name = "p1"
subnet = "a1"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]
host = "h1"
"#;
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.hosts[0].port, 4789);
    assert_eq!(c.hosts[1].port, 4790);
    assert_eq!(c.vnis(), [7]);
    assert_eq!(c.local_host(), Some("h2"));
    assert!(!c.is_local("p1"));
    // --host wins over [switch] host
    assert!(c.clone().with_local_host("h1").unwrap().is_local("p1"));
    let e =
        Config::from_toml_str(&text.replace("port = 4790", "port = 4790\nzone = 1")).unwrap_err();
    assert!(e.to_string().contains("zone"), "{e}");
}
