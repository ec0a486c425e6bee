//! SPEC 12.1: the IPv6 side of the objects, and its validation rules (each error naming
//! the object, the field and the rule, as SPEC 1 asks).

use std::net::Ipv6Addr;

use vpcswitch_model::{gateway_link_local, Config, ConfigBuilder, MacAddr};

fn base() -> ConfigBuilder {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .ipv6_cidrs(&["fd00:a::/48"])
        .vpc("b", &["10.1.0.0/16"])
        .ipv6_cidrs(&["fd00:b::/48"])
        .subnet("a1", "a", "10.0.1.0/24")
        .ipv6_cidr("fd00:a:0:1::/64")
        .subnet("a2", "a", "10.0.2.0/24")
        .ipv6_cidr("fd00:a:0:2::/64")
        .subnet("a4", "a", "10.0.4.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .ipv6_ips(&["fd00:a:0:1::11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .ipv6_ips(&["fd00:a:0:1::12"])
        .port("q1", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
        .port("w1", "a4", "02:00:00:00:04:01", &["10.0.4.11"])
        .vip("v", "a1", "10.0.1.100", &["p1", "p2"])
        .vip("v6", "a1", "fd00:a:0:1::100", &["p1", "p2"])
}

fn errs(b: ConfigBuilder) -> vpcswitch_model::ConfigErrors {
    b.build().expect_err("must be refused")
}

#[test]
fn spec12_1_a_dual_stack_topology_builds_and_round_trips() {
    let c = base().build().unwrap();
    let again = Config::from_toml_str(&c.to_toml_string()).unwrap();
    assert_eq!(again, c);
    let s = c.subnets.iter().find(|s| s.name == "a1").unwrap();
    assert_eq!(
        s.gateway_ipv6(),
        Some("fd00:a:0:1::1".parse::<Ipv6Addr>().unwrap())
    );
    // a subnet without ipv6_cidr has no IPv6 gateway
    assert_eq!(c.subnets[2].gateway_ipv6(), None);
    // the link-local gateway: EUI-64 of the gateway MAC 02:00:00:00:00:01
    assert_eq!(
        gateway_link_local(MacAddr([2, 0, 0, 0, 0, 1])),
        "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn spec12_1_toml_fields() {
    let c = Config::from_toml_str(
        r#"
        [[vpcs]]
        name = "a"
        cidrs = ["10.0.0.0/16"]
        ipv6_cidrs = ["fd00:a::/48"]
        [[subnets]]
        name = "s"
        vpc = "a"
        cidr = "10.0.1.0/24"
        ipv6_cidr = "fd00:a:0:1::/64"
        [[ports]]
        name = "p"
        subnet = "s"
        mac = "02:00:00:00:01:01"
        ips = ["10.0.1.11"]
        ipv6_ips = ["fd00:a:0:1::11"]
        [[vips]]
        name = "v"
        subnet = "s"
        ip = "fd00:a:0:1::100"
        ports = ["p"]
        "#,
    )
    .unwrap();
    assert_eq!(c.ports[0].ipv6_ips.len(), 1);
    assert!(c.vips[0].ip.is_ipv6());
    assert_eq!(c.vips[0].ipv4(), None);
}

#[test]
fn spec12_1_vpc_ipv6_cidrs_rules() {
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .ipv6_cidrs(&["fd00:c::1/48"]),
    );
    assert!(e.mentions("vpc \"c\"", "ipv6_cidrs"), "{e}");
    assert!(e.to_string().contains("host bits"), "{e}");
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .ipv6_cidrs(&["fd00:c::/80"]),
    );
    assert!(e.to_string().contains("longer than /64"), "{e}");
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .ipv6_cidrs(&["fd00:c::/48", "fd00:c:0:1::/64"]),
    );
    assert!(e.to_string().contains("overlaps"), "{e}");
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .ipv6_cidrs(&["not-a-cidr"]),
    );
    assert!(e.mentions("vpc \"c\"", "ipv6_cidrs"), "{e}");
}

#[test]
fn spec12_1_subnet_ipv6_cidr_is_a_64_inside_the_vpc_without_overlap() {
    for (cidr, what) in [
        ("fd00:b:0:9::/64", "not inside any ipv6_cidrs"),
        ("fd00:a:0:9::/56", "must be a /64"),
        ("fd00:a:0:9::5/64", "must be a /64 with no host bits"),
        ("fd00:a:0:1::/64", "overlaps subnet \"a1\""),
    ] {
        let e = errs(base().subnet("x", "a", "10.0.9.0/24").ipv6_cidr(cidr));
        assert!(e.mentions("subnet \"x\"", "ipv6_cidr"), "{cidr}: {e}");
        assert!(e.to_string().contains(what), "{cidr}: {e}");
    }
    // a VPC without IPv6 CIDRs has no IPv6 subnet
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .subnet("c1", "c", "10.2.1.0/24")
            .ipv6_cidr("fd00:c:0:1::/64"),
    );
    assert!(e.mentions("subnet \"c1\"", "ipv6_cidr"), "{e}");
    // the same /64 in two VPCs is fine (no peering)
    base()
        .subnet("b1", "b", "10.1.1.0/24")
        .ipv6_cidr("fd00:b:0:1::/64")
        .build()
        .unwrap();
}

#[test]
fn spec12_1_port_ipv6_ips_inside_the_64_unique_not_reserved() {
    for (ip, what) in [
        ("fd00:a:0:2::5", "not inside"),
        ("fd00:a:0:1::", "IPv6 network address"),
        ("fd00:a:0:1::1", "IPv6 gateway address"),
        ("fd00:a:0:1::11", "already a fixed IP of port \"p1\""),
        ("fd00:a:0:1::100", "VIP"),
    ] {
        let e = errs(
            base()
                .port("x", "a1", "02:00:00:00:09:09", &["10.0.1.99"])
                .ipv6_ips(&[ip]),
        );
        assert!(e.mentions("port \"x\"", "ipv6_ips"), "{ip}: {e}");
        assert!(e.to_string().contains(what), "{ip}: {e}");
    }
    // a subnet without ipv6_cidr takes no IPv6 address
    let e = errs(
        base()
            .port("x", "a4", "02:00:00:00:09:09", &["10.0.4.99"])
            .ipv6_ips(&["fd00:a:0:4::5"]),
    );
    assert!(e.to_string().contains("has no ipv6_cidr"), "{e}");
    let e = errs(
        base()
            .port("x", "a1", "02:00:00:00:09:09", &["10.0.1.99"])
            .ipv6_ips(&["10.0.1.5"]),
    );
    assert!(e.mentions("port \"x\"", "ipv6_ips"), "{e}");
}

#[test]
fn spec12_1_ipv6_vips_inside_the_64_unique_and_without_eip() {
    for (ip, what) in [
        ("fd00:a:0:2::5", "not inside"),
        ("fd00:a:0:1::1", "IPv6 gateway address"),
        ("fd00:a:0:1::11", "fixed IP of port \"p1\""),
        ("fd00:a:0:1::100", "already the address of vip \"v6\""),
    ] {
        let e = errs(base().vip("x", "a1", ip, &["p1"]));
        assert!(e.mentions("vip \"x\"", "ip"), "{ip}: {e}");
        assert!(e.to_string().contains(what), "{ip}: {e}");
    }
    let e = errs(base().vip("x", "a4", "fd00:a:0:4::5", &["w1"]));
    assert!(e.to_string().contains("has no ipv6_cidr"), "{e}");
    // SPEC 12.5, 14.1: EIPs stay IPv4
    let e = errs(
        base()
            .uplink("up", "02:00:00:00:ff:01", "192.0.2.1")
            .route_via_uplink("a", "0.0.0.0/0")
            .eip_for_vip("198.51.100.5", "v6"),
    );
    assert!(e.mentions("eip 198.51.100.5", "vip"), "{e}");
    assert!(e.to_string().contains("EIPs stay IPv4"), "{e}");
}

#[test]
fn spec1_vip_limits_count_both_families() {
    // p1 is bound to v and v6 already: a limit of 2 VIPs per port is full
    let e = errs(
        base()
            .vip_limits(10, 2)
            .vip("w", "a1", "fd00:a:0:1::101", &["p1"]),
    );
    assert!(e.mentions("port \"p1\"", "vips"), "{e}");
    base().vip_limits(10, 2).build().unwrap();
}

#[test]
fn spec12_1_peered_vpcs_ipv6_cidrs_must_not_overlap() {
    let e = errs(
        base()
            .vpc("c", &["10.2.0.0/16"])
            .ipv6_cidrs(&["fd00:a:1::/48", "fd00:a::/32"])
            .peering("ac", "a", "c"),
    );
    assert!(e.mentions("peering \"ac\"", "vpcs"), "{e}");
    assert!(e.to_string().contains("fd00:a::/48"), "{e}");
}

#[test]
fn spec12_5_ipv6_routes_peerings_and_ports_not_the_uplink_nor_shadowing() {
    base()
        .peering("ab", "a", "b")
        .route_via_peering("a", "fd00:b::/48", "ab")
        .route_via_port("a", "fd00:99::/32", "p1")
        .build()
        .unwrap();
    let e = errs(base().route_via_port("a", "fd00:a:0:1:8000::/65", "p1"));
    assert!(
        e.to_string()
            .contains("would shadow the local route of subnet \"a1\""),
        "{e}"
    );
    let e = errs(base().route_via_port("a", "fd00:99::1/32", "p1"));
    assert!(e.to_string().contains("host bits"), "{e}");
    let e = errs(
        base()
            .uplink("up", "02:00:00:00:ff:01", "192.0.2.1")
            .route_via_uplink("a", "::/0"),
    );
    assert!(e.to_string().contains("SPEC 12.5, 14.1"), "{e}");
    let e = errs(base().route_via_port("a", "nonsense", "p1"));
    assert!(e.to_string().contains("IPv4 or IPv6 CIDR"), "{e}");
}
