//! Every rule of SPEC 1, checked at once.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::{
    BackendSpec, Config, ConfigError, ConfigErrors, IdleSetting, IpCidr, Ipv4Cidr, Ipv6Cidr,
    MacAddr, RouteTarget, MAX_WORKERS, SUBNET_IPV6_PREFIX_LEN,
};

mod backend;
mod dhcp;
mod hosts;

use backend::backend_problems;

struct Errs(Vec<ConfigError>);

impl Errs {
    fn push(&mut self, object: String, field: &str, rule: String) {
        self.0.push(ConfigError::new(object, field, rule));
    }
}

fn dup_names<'a>(
    errs: &mut Errs,
    kind: &str,
    names: impl Iterator<Item = &'a str>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for n in names {
        if n.is_empty() {
            errs.push(format!("{kind} \"\""), "name", "must not be empty".into());
        } else if !seen.insert(n) {
            errs.push(
                format!("{kind} \"{n}\""),
                "name",
                format!("duplicate {kind} name (names are unique)"),
            );
        }
    }
    seen
}

/// Network, gateway and broadcast: reserved in every subnet (SPEC 1).
fn reserved_kind(cidr: &Ipv4Cidr, gw: Ipv4Addr, ip: Ipv4Addr) -> Option<&'static str> {
    if ip == cidr.network() {
        Some("the subnet's network address")
    } else if ip == cidr.broadcast() {
        Some("the subnet's broadcast address")
    } else if ip == gw {
        Some("the subnet's gateway address")
    } else {
        None
    }
}

/// A fixed IP of port `owner` (an object and field for errors) in VPC `vpc`: unique in
/// the VPC and not a VIP's address (SPEC 1, 12.1).
fn fixed_ip<'a>(
    e: &mut Errs,
    fixed: &mut HashMap<(&'a str, IpAddr), &'a str>,
    vips_by_ip: &HashSet<(&str, IpAddr)>,
    (obj, field): (&str, &str),
    (vpc, owner): (&'a str, &'a str),
    ip: IpAddr,
) {
    if vips_by_ip.contains(&(vpc, ip)) {
        e.push(obj.into(), field, format!("{ip} is a VIP's address"));
        fixed.insert((vpc, ip), owner);
    } else if let Some(other) = fixed.insert((vpc, ip), owner) {
        e.push(
            obj.into(),
            field,
            format!("{ip} is already a fixed IP of port \"{other}\" (fixed IPs are unique)"),
        );
    }
}

/// SPEC 12.1: the IPv6 network address (`::` of the /64) and the IPv6 gateway (`::1`)
/// are reserved.
fn reserved_kind6(cidr: &Ipv6Cidr, ip: Ipv6Addr) -> Option<&'static str> {
    if ip == cidr.network() {
        Some("the subnet's IPv6 network address")
    } else if ip == cidr.first_host() {
        Some("the subnet's IPv6 gateway address")
    } else {
        None
    }
}

/// SPEC 12.1: where an IPv6 address of subnet `s` may not be: outside its `ipv6_cidr`
/// (or the subnet has none), or reserved.
fn ipv6_problem(s: &crate::Subnet, ip: Ipv6Addr) -> Option<String> {
    let Some(c) = s.ipv6_cidr else {
        return Some(format!(
            "{ip}: subnet \"{}\" has no ipv6_cidr (SPEC 12.1)",
            s.name
        ));
    };
    if !c.contains(ip) {
        Some(format!("{ip} is not inside subnet \"{}\" ({c})", s.name))
    } else {
        reserved_kind6(&c, ip).map(|what| format!("{ip} is reserved: {what}"))
    }
}

impl Config {
    /// `[switch]`: the switch's own settings.
    fn validate_switch(&self, e: &mut Errs) {
        let sw = &self.switch;
        if sw.workers == 0 || sw.workers > MAX_WORKERS {
            e.push(
                "switch".into(),
                "workers",
                format!("must be 1..={MAX_WORKERS}, got {}", sw.workers),
            );
        }
        if let IdleSetting::PerWorker(v) = &sw.idle {
            if v.len() != sw.workers {
                e.push(
                    "switch".into(),
                    "idle",
                    format!(
                        "a list needs one policy per worker: {} given for {} worker(s)",
                        v.len(),
                        sw.workers
                    ),
                );
            }
        }
        if !sw.gateway_mac.is_unicast() {
            e.push(
                "switch".into(),
                "gateway_mac",
                format!("{} is not a unicast MAC", sw.gateway_mac),
            );
        }
        if sw.max_ports_per_vip == 0 {
            e.push(
                "switch".into(),
                "max_ports_per_vip",
                "must be at least 1".into(),
            );
        }
        if sw.max_vips_per_port == 0 {
            e.push(
                "switch".into(),
                "max_vips_per_port",
                "must be at least 1".into(),
            );
        }
        if let Some(m) = &sw.metrics {
            if m.parse::<std::net::SocketAddr>().is_err() {
                e.push(
                    "switch".into(),
                    "metrics",
                    format!("\"{m}\" is not an address:port such as \"127.0.0.1:9477\""),
                );
            }
        }
    }

    /// Checks every rule of SPEC 1. `Ok` means the configuration may be compiled.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut e = Errs(Vec::new());
        let sw = &self.switch;
        self.validate_switch(&mut e);
        self.validate_hosts(&mut e);

        // VPCs
        let vpc_names = dup_names(&mut e, "vpc", self.vpcs.iter().map(|v| v.name.as_str()));
        let vpcs: HashMap<&str, &crate::Vpc> =
            self.vpcs.iter().map(|v| (v.name.as_str(), v)).collect();
        for v in &self.vpcs {
            let obj = format!("vpc \"{}\"", v.name);
            if v.cidrs.is_empty() {
                e.push(obj.clone(), "cidrs", "needs at least one CIDR".into());
            }
            for (i, c) in v.cidrs.iter().enumerate() {
                if !c.is_network() {
                    e.push(
                        obj.clone(),
                        "cidrs",
                        format!("{c} has host bits set (write {}/{})", c.network(), c.len()),
                    );
                }
                for d in &v.cidrs[..i] {
                    if c.overlaps(d) {
                        e.push(obj.clone(), "cidrs", format!("{c} overlaps {d}"));
                    }
                }
            }
            for (i, c) in v.ipv6_cidrs.iter().enumerate() {
                if !c.is_network() {
                    e.push(
                        obj.clone(),
                        "ipv6_cidrs",
                        format!("{c} has host bits set (write {}/{})", c.network(), c.len()),
                    );
                }
                if c.len() > SUBNET_IPV6_PREFIX_LEN {
                    e.push(
                        obj.clone(),
                        "ipv6_cidrs",
                        format!("{c} is longer than /64: it could hold no subnet (SPEC 12.1)"),
                    );
                }
                for d in &v.ipv6_cidrs[..i] {
                    if c.overlaps(d) {
                        e.push(obj.clone(), "ipv6_cidrs", format!("{c} overlaps {d}"));
                    }
                }
            }
        }

        // Subnets
        dup_names(
            &mut e,
            "subnet",
            self.subnets.iter().map(|s| s.name.as_str()),
        );
        let subnets: HashMap<&str, &crate::Subnet> =
            self.subnets.iter().map(|s| (s.name.as_str(), s)).collect();
        for (i, s) in self.subnets.iter().enumerate() {
            let obj = format!("subnet \"{}\"", s.name);
            match vpcs.get(s.vpc.as_str()) {
                None => e.push(obj.clone(), "vpc", format!("no VPC named \"{}\"", s.vpc)),
                Some(v) => {
                    if !v.cidrs.iter().any(|c| c.covers(&s.cidr)) {
                        e.push(
                            obj.clone(),
                            "cidr",
                            format!("{} is not inside any CIDR of VPC \"{}\"", s.cidr, v.name),
                        );
                    }
                }
            }
            if !s.cidr.is_network() {
                e.push(obj.clone(), "cidr", format!("{} has host bits set", s.cidr));
            }
            if s.cidr.len() > 29 {
                e.push(
                    obj.clone(),
                    "cidr",
                    format!("{} is too small: a subnet needs at least a /29", s.cidr),
                );
            }
            for o in &self.subnets[..i] {
                if o.vpc == s.vpc && o.cidr.overlaps(&s.cidr) {
                    e.push(
                        obj.clone(),
                        "cidr",
                        format!(
                            "{} overlaps subnet \"{}\" ({}) of the same VPC",
                            s.cidr, o.name, o.cidr
                        ),
                    );
                }
            }
            if let Some(gw) = s.gateway {
                if !s.cidr.contains(gw) || gw == s.cidr.network() || gw == s.cidr.broadcast() {
                    e.push(
                        obj.clone(),
                        "gateway",
                        format!("{gw} must be a host address inside {}", s.cidr),
                    );
                }
            }
            if let Some(c6) = s.ipv6_cidr {
                if let Some(v) = vpcs.get(s.vpc.as_str()) {
                    if !v.ipv6_cidrs.iter().any(|c| c.covers(&c6)) {
                        e.push(
                            obj.clone(),
                            "ipv6_cidr",
                            format!(
                                "{c6} is not inside any ipv6_cidrs of VPC \"{}\" (SPEC 12.1)",
                                v.name
                            ),
                        );
                    }
                }
                if c6.len() != SUBNET_IPV6_PREFIX_LEN || !c6.is_network() {
                    e.push(
                        obj.clone(),
                        "ipv6_cidr",
                        format!("{c6} must be a /64 with no host bits set (SPEC 12.1)"),
                    );
                }
                for o in &self.subnets[..i] {
                    if let Some(oc) = o.ipv6_cidr.filter(|oc| o.vpc == s.vpc && oc.overlaps(&c6)) {
                        e.push(
                            obj.clone(),
                            "ipv6_cidr",
                            format!("{c6} overlaps subnet \"{}\" ({oc}) of the same VPC", o.name),
                        );
                    }
                }
            }
            dhcp::validate_dhcp(&mut e, &obj, s);
        }

        // Ports
        dup_names(&mut e, "port", self.ports.iter().map(|p| p.name.as_str()));
        let ports: HashMap<&str, &crate::Port> =
            self.ports.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut macs: HashMap<MacAddr, String> = HashMap::new();
        macs.insert(sw.gateway_mac, "the switch gateway_mac".into());
        if let Some(u) = &self.uplink {
            macs.insert(u.mac, format!("uplink \"{}\"", u.name));
        }
        // fixed IPs per VPC
        let mut fixed: HashMap<(&str, IpAddr), &str> = HashMap::new();
        let vips_by_ip: HashSet<(&str, IpAddr)> = self
            .vips
            .iter()
            .filter_map(|v| {
                subnets
                    .get(v.subnet.as_str())
                    .map(|s| (s.vpc.as_str(), v.ip))
            })
            .collect();
        // a device is its name in its namespace on its host: TAPs in different guests'
        // namespaces, and ports on different hosts, may share a name
        let mut ifnames: HashMap<(Option<&str>, Option<PathBuf>, &str), String> = HashMap::new();
        let backends = self
            .ports
            .iter()
            .map(|p| {
                (
                    format!("port \"{}\"", p.name),
                    &p.backend,
                    p.host.as_deref(),
                )
            })
            .chain(self.uplink.iter().map(|u| {
                (
                    format!("uplink \"{}\"", u.name),
                    &u.backend,
                    u.host.as_deref(),
                )
            }));
        for (obj, b, host) in backends {
            for rule in backend_problems(b) {
                e.push(obj.clone(), "backend", rule);
            }
            if let Some(ifn) = b.ifname() {
                let key = (host, b.netns().map(crate::netns_path), ifn);
                if let Some(other) = ifnames.get(&key) {
                    let place = match b.netns() {
                        Some(ns) => format!(" in network namespace {ns}"),
                        None => String::new(),
                    };
                    e.push(
                        obj.clone(),
                        "backend",
                        format!("interface {ifn}{place} is already the backend of {other}"),
                    );
                } else {
                    ifnames.insert(key, obj.clone());
                }
            }
        }
        for p in &self.ports {
            let obj = format!("port \"{}\"", p.name);
            let mut own_macs = vec![p.mac];
            own_macs.extend(p.allowed_macs.iter().copied());
            for (k, m) in own_macs.iter().enumerate() {
                let field = if k == 0 { "mac" } else { "allowed_macs" };
                if !m.is_unicast() {
                    e.push(obj.clone(), field, format!("{m} is not a unicast MAC"));
                    continue;
                }
                if let Some(owner) = macs.get(m) {
                    e.push(
                        obj.clone(),
                        field,
                        format!("{m} is already used by {owner} (MACs are unique in the switch)"),
                    );
                } else {
                    macs.insert(*m, obj.clone());
                }
            }
            let Some(s) = subnets.get(p.subnet.as_str()) else {
                e.push(
                    obj.clone(),
                    "subnet",
                    format!("no subnet named \"{}\"", p.subnet),
                );
                continue;
            };
            if p.ips.is_empty() {
                e.push(obj.clone(), "ips", "needs at least one fixed IP".into());
            }
            let gw = s.gateway_ip();
            for ip in &p.ips {
                if !s.cidr.contains(*ip) {
                    e.push(
                        obj.clone(),
                        "ips",
                        format!("{ip} is not inside subnet \"{}\" ({})", s.name, s.cidr),
                    );
                } else if let Some(what) = reserved_kind(&s.cidr, gw, *ip) {
                    e.push(obj.clone(), "ips", format!("{ip} is reserved: {what}"));
                } else {
                    fixed_ip(
                        &mut e,
                        &mut fixed,
                        &vips_by_ip,
                        (&obj, "ips"),
                        (&s.vpc, &p.name),
                        IpAddr::V4(*ip),
                    );
                }
            }
            for ip in &p.ipv6_ips {
                if let Some(problem) = ipv6_problem(s, *ip) {
                    e.push(obj.clone(), "ipv6_ips", problem);
                } else {
                    fixed_ip(
                        &mut e,
                        &mut fixed,
                        &vips_by_ip,
                        (&obj, "ipv6_ips"),
                        (&s.vpc, &p.name),
                        IpAddr::V6(*ip),
                    );
                }
            }
        }

        // VIPs
        dup_names(&mut e, "vip", self.vips.iter().map(|v| v.name.as_str()));
        let mut vip_ips: HashMap<(&str, IpAddr), &str> = HashMap::new();
        let mut per_port: HashMap<&str, usize> = HashMap::new();
        for v in &self.vips {
            let obj = format!("vip \"{}\"", v.name);
            let Some(s) = subnets.get(v.subnet.as_str()) else {
                e.push(
                    obj.clone(),
                    "subnet",
                    format!("no subnet named \"{}\"", v.subnet),
                );
                continue;
            };
            let problem = match v.ip {
                IpAddr::V4(ip) if !s.cidr.contains(ip) => Some(format!(
                    "{ip} is not inside subnet \"{}\" ({})",
                    s.name, s.cidr
                )),
                IpAddr::V4(ip) => reserved_kind(&s.cidr, s.gateway_ip(), ip)
                    .map(|what| format!("{ip} is reserved: {what}")),
                IpAddr::V6(ip) => ipv6_problem(s, ip),
            };
            if let Some(problem) = problem {
                e.push(obj.clone(), "ip", problem);
            } else if let Some(p) = fixed.get(&(s.vpc.as_str(), v.ip)) {
                e.push(
                    obj.clone(),
                    "ip",
                    format!("{} is a fixed IP of port \"{p}\"", v.ip),
                );
            }
            if let Some(other) = vip_ips.insert((s.vpc.as_str(), v.ip), &v.name) {
                e.push(
                    obj.clone(),
                    "ip",
                    format!("{} is already the address of vip \"{other}\"", v.ip),
                );
            }
            if v.ports.len() > sw.max_ports_per_vip {
                e.push(
                    obj.clone(),
                    "ports",
                    format!(
                        "{} ports bound, at most {} allowed (switch.max_ports_per_vip)",
                        v.ports.len(),
                        sw.max_ports_per_vip
                    ),
                );
            }
            let mut seen = HashSet::new();
            for pn in &v.ports {
                if !seen.insert(pn.as_str()) {
                    e.push(
                        obj.clone(),
                        "ports",
                        format!("port \"{pn}\" is listed twice"),
                    );
                    continue;
                }
                match ports.get(pn.as_str()) {
                    None => e.push(obj.clone(), "ports", format!("no port named \"{pn}\"")),
                    Some(p) if p.subnet != v.subnet => e.push(
                        obj.clone(),
                        "ports",
                        format!(
                            "port \"{pn}\" is in subnet \"{}\", not the VIP's subnet \"{}\"",
                            p.subnet, v.subnet
                        ),
                    ),
                    Some(_) => *per_port.entry(pn.as_str()).or_default() += 1,
                }
            }
        }
        let mut over: Vec<_> = per_port
            .into_iter()
            .filter(|(_, n)| *n > sw.max_vips_per_port)
            .collect();
        over.sort();
        for (p, n) in over {
            e.push(
                format!("port \"{p}\""),
                "vips",
                format!(
                    "bound to {n} VIPs, at most {} allowed (switch.max_vips_per_port)",
                    sw.max_vips_per_port
                ),
            );
        }

        // Peerings
        dup_names(
            &mut e,
            "peering",
            self.peerings.iter().map(|p| p.name.as_str()),
        );
        let mut pairs = HashSet::new();
        for p in &self.peerings {
            let obj = format!("peering \"{}\"", p.name);
            if p.vpcs.len() != 2 {
                e.push(
                    obj,
                    "vpcs",
                    format!("needs exactly two VPCs, got {}", p.vpcs.len()),
                );
                continue;
            }
            if p.vpcs[0] == p.vpcs[1] {
                e.push(obj, "vpcs", "a VPC cannot peer with itself".into());
                continue;
            }
            let mut ok = true;
            for n in &p.vpcs {
                if !vpc_names.contains(n.as_str()) {
                    e.push(obj.clone(), "vpcs", format!("no VPC named \"{n}\""));
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let (a, b) = (vpcs[p.vpcs[0].as_str()], vpcs[p.vpcs[1].as_str()]);
            for ca in &a.cidrs {
                for cb in &b.cidrs {
                    if ca.overlaps(cb) {
                        e.push(
                            obj.clone(),
                            "vpcs",
                            format!(
                                "VPC \"{}\" ({ca}) and VPC \"{}\" ({cb}) overlap",
                                a.name, b.name
                            ),
                        );
                    }
                }
            }
            for ca in &a.ipv6_cidrs {
                for cb in b.ipv6_cidrs.iter().filter(|cb| ca.overlaps(cb)) {
                    e.push(
                        obj.clone(),
                        "vpcs",
                        format!(
                            "VPC \"{}\" ({ca}) and VPC \"{}\" ({cb}) overlap",
                            a.name, b.name
                        ),
                    );
                }
            }
            let mut key = [p.vpcs[0].as_str(), p.vpcs[1].as_str()];
            key.sort();
            if !pairs.insert(key) {
                e.push(
                    obj,
                    "vpcs",
                    format!("VPCs \"{}\" and \"{}\" are already peered", key[0], key[1]),
                );
            }
        }
        let peerings: HashMap<&str, &crate::Peering> =
            self.peerings.iter().map(|p| (p.name.as_str(), p)).collect();

        // Routes
        let mut dests = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let obj = format!("route #{} ({} in vpc \"{}\")", i + 1, r.destination, r.vpc);
            if !vpc_names.contains(r.vpc.as_str()) {
                e.push(obj.clone(), "vpc", format!("no VPC named \"{}\"", r.vpc));
            }
            if !r.destination.is_network() {
                e.push(
                    obj.clone(),
                    "destination",
                    format!("{} has host bits set", r.destination),
                );
            }
            if !dests.insert((r.vpc.as_str(), r.destination.masked())) {
                e.push(
                    obj.clone(),
                    "destination",
                    "duplicate route for this destination".into(),
                );
            }
            for s in self.subnets.iter().filter(|s| s.vpc == r.vpc) {
                let shadowed = match r.destination {
                    IpCidr::V4(d) => s.cidr.covers(&d).then(|| s.cidr.to_string()),
                    IpCidr::V6(d) => s.ipv6_cidr.filter(|c| c.covers(&d)).map(|c| c.to_string()),
                };
                if let Some(local) = shadowed {
                    e.push(
                        obj.clone(),
                        "destination",
                        format!(
                            "would shadow the local route of subnet \"{}\" ({local}); local routes cannot be overridden",
                            s.name
                        ),
                    );
                }
            }
            if r.destination.v6().is_some() && r.target() == Some(RouteTarget::Uplink) {
                e.push(
                    obj.clone(),
                    "uplink",
                    "IPv6 does not go over the uplink (SPEC 12.5, 14.1)".into(),
                );
            }
            match r.target() {
                None => e.push(
                    obj.clone(),
                    "target",
                    "set exactly one of `peering`, `port`, `uplink = true`".into(),
                ),
                Some(RouteTarget::Peering(pn)) => match peerings.get(pn) {
                    None => e.push(obj.clone(), "peering", format!("no peering named \"{pn}\"")),
                    Some(p) if !p.vpcs.contains(&r.vpc) => e.push(
                        obj.clone(),
                        "peering",
                        format!("peering \"{pn}\" does not join VPC \"{}\"", r.vpc),
                    ),
                    _ => {}
                },
                Some(RouteTarget::Port(pn)) => match ports.get(pn) {
                    None => e.push(obj.clone(), "port", format!("no port named \"{pn}\"")),
                    Some(p) => {
                        let vpc = subnets.get(p.subnet.as_str()).map(|s| s.vpc.as_str());
                        if vpc.is_some() && vpc != Some(r.vpc.as_str()) {
                            e.push(
                                obj.clone(),
                                "port",
                                format!("port \"{pn}\" is not in VPC \"{}\"", r.vpc),
                            );
                        }
                    }
                },
                Some(RouteTarget::Uplink) => {
                    if self.uplink.is_none() {
                        e.push(obj.clone(), "uplink", "no [uplink] is configured".into());
                    }
                }
            }
        }

        // EIPs
        let mut eip_ips = HashSet::new();
        let mut eip_targets = HashSet::new();
        let vip_names: HashMap<&str, &crate::Vip> =
            self.vips.iter().map(|v| (v.name.as_str(), v)).collect();
        for x in self.all_eips() {
            let obj = format!("eip {}", x.ip);
            if self.uplink.is_none() {
                e.push(obj.clone(), "ip", "an EIP needs an [uplink]".into());
            }
            if !eip_ips.insert(x.ip) {
                e.push(obj.clone(), "ip", "duplicate EIP".into());
            }
            if self
                .vpcs
                .iter()
                .flat_map(|v| &v.cidrs)
                .any(|c| c.contains(x.ip))
            {
                e.push(
                    obj.clone(),
                    "ip",
                    "an EIP must lie outside every VPC CIDR".into(),
                );
            }
            let target = match (&x.vip, &x.port) {
                (Some(v), None) => {
                    match vip_names.get(v.as_str()) {
                        None => e.push(obj.clone(), "vip", format!("no VIP named \"{v}\"")),
                        Some(w) if w.ip.is_ipv6() => e.push(
                            obj.clone(),
                            "vip",
                            format!(
                                "vip \"{v}\" has an IPv6 address: EIPs stay IPv4 (SPEC 12.5, 14.1)"
                            ),
                        ),
                        Some(_) => {}
                    }
                    format!("vip:{v}")
                }
                (None, Some(pn)) => {
                    match ports.get(pn.as_str()) {
                        None => e.push(obj.clone(), "port", format!("no port named \"{pn}\"")),
                        Some(p) => {
                            if let Some(ip) = x.port_ip {
                                if !p.ips.contains(&ip) {
                                    e.push(
                                        obj.clone(),
                                        "port_ip",
                                        format!("{ip} is not a fixed IP of port \"{pn}\""),
                                    );
                                }
                            }
                        }
                    }
                    let ip = x
                        .port_ip
                        .or_else(|| ports.get(pn.as_str()).and_then(|p| p.ips.first().copied()));
                    format!("port:{pn}:{ip:?}")
                }
                _ => {
                    e.push(
                        obj.clone(),
                        "target",
                        "set exactly one of `vip` or `port`".into(),
                    );
                    continue;
                }
            };
            // the target's VPC must route somewhere to the uplink, or replies never leave
            let vpc = self.eip_target(&x).and_then(|(sn, _)| {
                self.subnets
                    .iter()
                    .find(|s| s.name == sn)
                    .map(|s| s.vpc.as_str())
            });
            if let Some(vpc) = vpc {
                let routed = self
                    .routes
                    .iter()
                    .any(|r| r.vpc == vpc && r.target() == Some(RouteTarget::Uplink));
                if self.uplink.is_some() && !routed {
                    e.push(
                        obj.clone(),
                        "target",
                        format!(
                            "vpc \"{vpc}\" has no route to the uplink (add [[routes]] with \
                             uplink = true, e.g. destination = \"0.0.0.0/0\"): replies could \
                             never leave"
                        ),
                    );
                }
            }
            if !eip_targets.insert(target) {
                e.push(
                    obj.clone(),
                    "target",
                    "this target already has an EIP (one EIP per target)".into(),
                );
            }
        }

        if let Some(u) = &self.uplink {
            let obj = format!("uplink \"{}\"", u.name);
            if !u.mac.is_unicast() {
                e.push(
                    obj.clone(),
                    "mac",
                    format!("{} is not a unicast MAC", u.mac),
                );
            }
            if ports.contains_key(u.name.as_str()) {
                e.push(obj.clone(), "name", "a port has the same name".into());
            }
            let nh = u.next_hop;
            if nh.is_unspecified() || nh.is_broadcast() || nh.is_multicast() {
                e.push(
                    obj.clone(),
                    "next_hop",
                    format!("{nh} is not a unicast address"),
                );
            }
            if self
                .vpcs
                .iter()
                .flat_map(|v| &v.cidrs)
                .any(|c| c.contains(nh))
            {
                e.push(
                    obj.clone(),
                    "next_hop",
                    format!("{nh} is inside a VPC CIDR; the next hop is on the outside network"),
                );
            }
            if self.all_eips().iter().any(|x| x.ip == nh) {
                e.push(obj.clone(), "next_hop", format!("{nh} is also an EIP"));
            }
            if let Some(m) = u.next_hop_mac {
                if !m.is_unicast() {
                    e.push(obj, "next_hop_mac", format!("{m} is not a unicast MAC"));
                }
            }
        }

        if e.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(e.0))
        }
    }
}
