//! SPEC 13.1: a subnet's DHCP settings, validated whole, each error naming the subnet
//! and the field.

use vpcswitch_model::{Config, ConfigBuilder, ConfigErrors, DhcpOptions, DhcpRoute};

fn base(o: DhcpOptions) -> ConfigBuilder {
    ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .dhcp(o)
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
}

fn route(d: &str, via: &str) -> DhcpRoute {
    DhcpRoute {
        destination: d.parse().unwrap(),
        via: via.parse().unwrap(),
    }
}

fn errs(o: DhcpOptions) -> ConfigErrors {
    base(o).build().expect_err("must be refused")
}

#[test]
fn spec13_1_dhcp_options_from_toml_round_trip() {
    let toml = r#"
        [[vpcs]]
        name = "a"
        cidrs = ["10.0.0.0/16"]
        [[subnets]]
        name = "a1"
        vpc = "a"
        cidr = "10.0.1.0/24"
        dhcp = true
        [subnets.dhcp_options]
        dns_servers = ["10.0.0.2", "1.1.1.1"]
        domain = "prod.internal"
        mtu = 1450
        lease_secs = 3600
        routes = [{ destination = "10.9.0.0/16", via = "10.0.1.254" }]
        [[ports]]
        name = "p1"
        subnet = "a1"
        mac = "02:00:00:00:01:01"
        ips = ["10.0.1.11"]
    "#;
    let c = Config::from_toml_str(toml).unwrap();
    let s = &c.subnets[0];
    assert!(s.dhcp);
    assert_eq!(s.dhcp_options.dns_servers.len(), 2);
    assert_eq!(s.dhcp_options.domain.as_deref(), Some("prod.internal"));
    assert_eq!(s.dhcp_options.mtu, Some(1450));
    assert_eq!(s.dhcp_options.lease(), 3600);
    assert_eq!(
        s.dhcp_options.routes,
        vec![route("10.9.0.0/16", "10.0.1.254")]
    );
    assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    // unknown fields are refused, naming the line
    let e = Config::from_toml_str(&toml.replace("mtu = 1450", "mtuu = 1450")).unwrap_err();
    assert!(e.to_string().contains("mtuu"), "{e}");
}

#[test]
fn spec13_1_defaults_off_and_one_day_lease() {
    let c = ConfigBuilder::new()
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .build()
        .unwrap();
    assert!(!c.subnets[0].dhcp);
    assert!(!c.to_toml_string().contains("dhcp"));
    assert_eq!(DhcpOptions::default().lease(), 86_400);
}

#[test]
fn spec13_1_option_121_adds_the_default_route_via_the_gateway() {
    let c = base(DhcpOptions {
        routes: vec![
            route("10.9.0.0/16", "10.0.1.254"),
            route("10.8.1.128/25", "10.0.1.11"),
        ],
        ..Default::default()
    })
    .build()
    .unwrap();
    assert_eq!(
        c.subnets[0].dhcp_option_121(),
        vec![
            16, 10, 9, 10, 0, 1, 254, // 10.9/16 via 10.0.1.254
            25, 10, 8, 1, 128, 10, 0, 1, 11, // 10.8.1.128/25 via 10.0.1.11
            0, 10, 0, 1, 1, // default via the gateway
        ]
    );
    // a default route of the user's replaces the switch's
    let c = base(DhcpOptions {
        routes: vec![route("0.0.0.0/0", "10.0.1.254")],
        ..Default::default()
    })
    .build()
    .unwrap();
    assert_eq!(c.subnets[0].dhcp_option_121(), vec![0, 10, 0, 1, 254]);
}

#[test]
fn spec13_1_options_without_dhcp_are_refused() {
    let mut b = base(DhcpOptions::default());
    let mut c = b.clone().build().unwrap();
    c.subnets[0].dhcp = false;
    c.subnets[0].dhcp_options.mtu = Some(1400);
    let e = c.validate().unwrap_err();
    assert!(e.mentions("subnet \"a1\"", "dhcp_options"), "{e}");
    b = b.port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"]);
    b.build().unwrap();
}

#[test]
fn spec13_1_each_option_is_checked_naming_its_field() {
    let e = errs(DhcpOptions {
        dns_servers: vec!["0.0.0.0".parse().unwrap(), "224.0.0.1".parse().unwrap()],
        ..Default::default()
    });
    assert!(
        e.mentions("subnet \"a1\"", "dhcp_options.dns_servers"),
        "{e}"
    );
    assert_eq!(e.0.len(), 2, "both bad servers reported: {e}");
    let e = errs(DhcpOptions {
        dns_servers: vec!["10.0.0.2".parse().unwrap(); 9],
        ..Default::default()
    });
    assert!(e.to_string().contains("at most 8"), "{e}");
    for d in ["", "-a.b", "a..b", "a_b.c", &"x".repeat(64)] {
        let e = errs(DhcpOptions {
            domain: Some(d.into()),
            ..Default::default()
        });
        assert!(
            e.mentions("subnet \"a1\"", "dhcp_options.domain"),
            "{d}: {e}"
        );
    }
    for m in [575, 9001] {
        let e = errs(DhcpOptions {
            mtu: Some(m),
            ..Default::default()
        });
        assert!(e.mentions("subnet \"a1\"", "dhcp_options.mtu"), "{e}");
    }
    let e = errs(DhcpOptions {
        lease_secs: Some(59),
        ..Default::default()
    });
    assert!(
        e.mentions("subnet \"a1\"", "dhcp_options.lease_secs"),
        "{e}"
    );
    for (r, what) in [
        (route("10.9.0.1/16", "10.0.1.254"), "host bits"),
        (route("10.9.0.0/16", "10.0.2.254"), "inside the subnet"),
        (route("10.9.0.0/16", "10.0.1.255"), "inside the subnet"),
    ] {
        let e = errs(DhcpOptions {
            routes: vec![r],
            ..Default::default()
        });
        assert!(e.mentions("subnet \"a1\"", "dhcp_options.routes"), "{e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    let e = errs(DhcpOptions {
        routes: vec![
            route("10.9.0.0/16", "10.0.1.254"),
            route("10.9.0.0/16", "10.0.1.253"),
        ],
        ..Default::default()
    });
    assert!(e.to_string().contains("twice"), "{e}");
    // 30 /32 routes: 30 * 9 + 5 bytes > 255
    let many = (0..30)
        .map(|i| route(&format!("10.9.0.{i}/32"), "10.0.1.254"))
        .collect();
    let e = errs(DhcpOptions {
        routes: many,
        ..Default::default()
    });
    assert!(e.to_string().contains("option 121"), "{e}");
    // everything at once, each reported
    let e = errs(DhcpOptions {
        dns_servers: vec!["255.255.255.255".parse().unwrap()],
        domain: Some("bad domain".into()),
        mtu: Some(1),
        lease_secs: Some(1),
        routes: vec![route("10.9.0.0/16", "192.168.0.1")],
    });
    assert_eq!(e.0.len(), 5, "{e}");
}
