//! The key layout (docs/store.md): a network as one key per object under
//! [`NETWORK`], and back.
//!
//! # Contract
//! [`network_keys`] and [`network_from_keys`] are inverse on a valid network, up to the
//! order of its lists: the store keeps objects sorted by key, so a network loaded from
//! it lists hosts, VPCs, subnets, ports... by name (routes by VPC then destination,
//! EIPs by address). Nothing in a network's meaning depends on that order.
//!
//! Values are the model's own types as JSON (the same fields as the TOML file,
//! `deny_unknown_fields`): no second schema. `[switch]` settings that name one
//! instance (`host`, `control_socket`, `metrics`) are never stored: each switch gets
//! them from its command line.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vpcswitch_model::{
    Config, Eip, Host, Peering, Port, Route, Subnet, SwitchSettings, Uplink, Vip, Vpc,
};

/// The root of everything vpcswitch keeps in etcd.
pub const ROOT: &str = "/vpcswitch/";
/// The key naming the layout's version ("1"); a later layout writes its own prefix
/// (`/vpcswitch/v2/`) and moves this key when it has migrated.
pub const VERSION_KEY: &str = "/vpcswitch/version";
/// This layout's version.
pub const VERSION: &str = "1";
/// Everything of layout version 1.
pub const V1: &str = "/vpcswitch/v1/";
/// The desired network, one key per object.
pub const NETWORK: &str = "/vpcswitch/v1/network/";
/// Written by every apply, in the same transaction: its `mod_revision` is the
/// network's revision, the one an apply compares against (compare-and-swap).
pub const APPLIED: &str = "/vpcswitch/v1/applied";
/// Hosts alive: one key per host, attached to the host's lease (SPEC 11.3).
pub const ALIVE: &str = "/vpcswitch/v1/alive/";
/// VIP owners (SPEC 11.4): one key per VIP; its `mod_revision` orders claims.
pub const VIP_OWNERS: &str = "/vpcswitch/v1/vip-owners/";

/// A network as keys (full key → JSON value), sorted.
pub type KeyMap = BTreeMap<String, String>;

/// Bytes of a name kept as they are in a key; every other byte is `%XX`.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':')
}

/// A name made safe for one path segment of a key (`/` and `%` and anything outside
/// `[A-Za-z0-9._:-]` percent-encoded), so no name can reach another object's key.
pub fn encode(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for b in name.bytes() {
        if plain(b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The inverse of [`encode`]; `None` for a segment [`encode`] could not have made.
pub fn decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = seg.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else if plain(b[i]) {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The kinds of objects, their key segment and the words `check` uses for them.
const KINDS: &[(&str, &str)] = &[
    ("switch", "switch"),
    ("uplink", "uplink"),
    ("hosts", "host"),
    ("vpcs", "vpc"),
    ("subnets", "subnet"),
    ("ports", "port"),
    ("vips", "vip"),
    ("peerings", "peering"),
    ("routes", "route"),
    ("eips", "eip"),
];

/// `kind "name"` for a key under [`NETWORK`] (what a diff line says).
pub fn describe(key: &str) -> String {
    let rest = key.strip_prefix(NETWORK).unwrap_or(key);
    let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
    let word = KINDS.iter().find(|k| k.0 == kind).map_or(kind, |k| k.1);
    if name.is_empty() {
        return format!("[{word}]");
    }
    let name: Vec<String> = name
        .split('/')
        .map(|s| decode(s).unwrap_or_else(|| s.to_string()))
        .collect();
    format!("{word} \"{}\"", name.join(" "))
}

fn json<T: Serialize>(v: &T) -> String {
    // the model's types serialize without failure (no maps with non-string keys)
    serde_json::to_string(v).unwrap_or_default()
}

/// Why keys could not be made from a network, or a network from keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Two objects would share one key (validation refuses such networks first).
    #[error("{0}: two objects with the same key")]
    Duplicate(String),
    /// A key under the network prefix that this layout does not know.
    #[error("unknown key {0} (written by another version of vpcswitch?)")]
    UnknownKey(String),
    /// A value that is not the JSON of its object.
    #[error("{key}: {why}")]
    BadValue {
        /// the key
        key: String,
        /// the parser's message
        why: String,
    },
}

/// The keys of network `cfg` (see the module docs).
pub fn network_keys(cfg: &Config) -> Result<KeyMap, LayoutError> {
    let mut m = KeyMap::new();
    let mut put = |k: String, v: String| -> Result<(), LayoutError> {
        match m.insert(k.clone(), v) {
            None => Ok(()),
            Some(_) => Err(LayoutError::Duplicate(describe(&k))),
        }
    };
    let mut sw = cfg.switch.clone();
    sw.host = None;
    sw.control_socket = None;
    sw.metrics = None;
    put(format!("{NETWORK}switch"), json(&sw))?;
    if let Some(u) = &cfg.uplink {
        put(format!("{NETWORK}uplink"), json(u))?;
    }
    for h in &cfg.hosts {
        put(format!("{NETWORK}hosts/{}", encode(&h.name)), json(h))?;
    }
    for v in &cfg.vpcs {
        put(format!("{NETWORK}vpcs/{}", encode(&v.name)), json(v))?;
    }
    for s in &cfg.subnets {
        put(format!("{NETWORK}subnets/{}", encode(&s.name)), json(s))?;
    }
    for p in &cfg.ports {
        put(format!("{NETWORK}ports/{}", encode(&p.name)), json(p))?;
    }
    for v in &cfg.vips {
        put(format!("{NETWORK}vips/{}", encode(&v.name)), json(v))?;
    }
    for p in &cfg.peerings {
        put(format!("{NETWORK}peerings/{}", encode(&p.name)), json(p))?;
    }
    for r in &cfg.routes {
        let k = format!(
            "{NETWORK}routes/{}/{}",
            encode(&r.vpc),
            encode(&r.destination.to_string())
        );
        put(k, json(r))?;
    }
    for x in &cfg.eips {
        put(
            format!("{NETWORK}eips/{}", encode(&x.ip.to_string())),
            json(x),
        )?;
    }
    Ok(m)
}

fn parse<T: DeserializeOwned>(key: &str, v: &str) -> Result<T, LayoutError> {
    serde_json::from_str(v).map_err(|e| LayoutError::BadValue {
        key: key.to_string(),
        why: e.to_string(),
    })
}

/// The network the keys under [`NETWORK`] hold (other keys are ignored). It is *not*
/// validated: the caller validates it whole, as it would a file. Without a `switch`
/// key the defaults apply; a `switch` key's `host`, `control_socket` and `metrics`
/// (which no apply writes) are dropped.
pub fn network_from_keys(keys: &KeyMap) -> Result<Config, LayoutError> {
    let mut c = Config::default();
    for (k, v) in keys.range(NETWORK.to_string()..) {
        let Some(rest) = k.strip_prefix(NETWORK) else {
            break;
        };
        let kind = rest.split_once('/').map_or(rest, |x| x.0);
        match (kind, rest.contains('/')) {
            ("switch", false) => {
                c.switch = parse::<SwitchSettings>(k, v)?;
                // each switch's own, from its command line: never from the store
                c.switch.host = None;
                c.switch.control_socket = None;
                c.switch.metrics = None;
            }
            ("uplink", false) => c.uplink = Some(parse::<Uplink>(k, v)?),
            ("hosts", true) => c.hosts.push(parse::<Host>(k, v)?),
            ("vpcs", true) => c.vpcs.push(parse::<Vpc>(k, v)?),
            ("subnets", true) => c.subnets.push(parse::<Subnet>(k, v)?),
            ("ports", true) => c.ports.push(parse::<Port>(k, v)?),
            ("vips", true) => c.vips.push(parse::<Vip>(k, v)?),
            ("peerings", true) => c.peerings.push(parse::<Peering>(k, v)?),
            ("routes", true) => c.routes.push(parse::<Route>(k, v)?),
            ("eips", true) => c.eips.push(parse::<Eip>(k, v)?),
            _ => return Err(LayoutError::UnknownKey(k.clone())),
        }
    }
    Ok(c)
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// a new object: its key and value
    Add(String, String),
    /// a changed object: its key, the old and the new value
    Change(String, String, String),
    /// a removed object: its key
    Remove(String),
}

impl Change {
    /// The key it is about.
    pub fn key(&self) -> &str {
        match self {
            Change::Add(k, _) | Change::Change(k, _, _) | Change::Remove(k) => k,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add(k, v) => write!(f, "+ {}: {v}", describe(k)),
            Change::Change(k, old, new) => write!(f, "~ {}: {old} -> {new}", describe(k)),
            Change::Remove(k) => write!(f, "- {}", describe(k)),
        }
    }
}

/// What turns `old` into `new`, in key order: removals, additions and changes.
pub fn diff(old: &KeyMap, new: &KeyMap) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => out.push(Change::Add(k.clone(), v.clone())),
            Some(o) if o != v => out.push(Change::Change(k.clone(), o.clone(), v.clone())),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(Change::Remove(k.clone()));
    }
    out.sort_by(|a, b| a.key().cmp(b.key()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = r#"
[switch]
workers = 2
host = "h1"
control_socket = "/run/x.sock"

[[hosts]]
name = "h1"
endpoint = "192.0.2.1"

[[hosts]]
name = "h2"
endpoint = "192.0.2.2"

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[vpcs]]
name = "b"
cidrs = ["10.1.0.0/16"]

[[subnets]]
name = "s"
vpc = "a"
cidr = "10.0.1.0/24"

[[subnets]]
name = "t"
vpc = "b"
cidr = "10.1.1.0/24"

[[ports]]
name = "web/1"
subnet = "s"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]
host = "h1"
backend = { type = "af_packet", ifname = "vweb1" }

[[ports]]
name = "db"
subnet = "t"
mac = "02:00:00:00:01:02"
ips = ["10.1.1.12"]
host = "h2"

[[vips]]
name = "vip"
subnet = "s"
ip = "10.0.1.100"
ports = ["web/1"]

[[peerings]]
name = "ab"
vpcs = ["a", "b"]

[[routes]]
vpc = "a"
destination = "10.1.0.0/16"
peering = "ab"

[[routes]]
vpc = "b"
destination = "10.0.0.0/16"
peering = "ab"
"#;

    fn net() -> Config {
        Config::from_toml_str(NET).unwrap()
    }

    /// docs/store.md: one key per object, names encoded, instance settings not stored.
    #[test]
    fn every_object_has_its_key() {
        let k = network_keys(&net()).unwrap();
        let names: Vec<&str> = k.keys().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "/vpcswitch/v1/network/hosts/h1",
                "/vpcswitch/v1/network/hosts/h2",
                "/vpcswitch/v1/network/peerings/ab",
                "/vpcswitch/v1/network/ports/db",
                "/vpcswitch/v1/network/ports/web%2F1",
                "/vpcswitch/v1/network/routes/a/10.1.0.0%2F16",
                "/vpcswitch/v1/network/routes/b/10.0.0.0%2F16",
                "/vpcswitch/v1/network/subnets/s",
                "/vpcswitch/v1/network/subnets/t",
                "/vpcswitch/v1/network/switch",
                "/vpcswitch/v1/network/vips/vip",
                "/vpcswitch/v1/network/vpcs/a",
                "/vpcswitch/v1/network/vpcs/b",
            ]
        );
        // written around apply: the instance settings are not taken
        let mut k2 = k.clone();
        k2.insert(
            format!("{NETWORK}switch"),
            r#"{"workers":2,"host":"h2","control_socket":"/etc/x","metrics":"0.0.0.0:1"}"#.into(),
        );
        let c = network_from_keys(&k2).unwrap();
        assert_eq!(c.switch.workers, 2);
        assert!(c.switch.host.is_none() && c.switch.control_socket.is_none());
        assert!(c.switch.metrics.is_none());
        let sw = &k["/vpcswitch/v1/network/switch"];
        assert!(
            !sw.contains("x.sock") && sw.contains("\"workers\":2"),
            "{sw}"
        );
        assert!(!sw.contains("h1"), "the local host is not stored: {sw}");
    }

    /// The keys give back the network (sorted by name), valid as it was.
    #[test]
    fn keys_round_trip_to_the_same_network() {
        let c = net();
        let back = network_from_keys(&network_keys(&c).unwrap()).unwrap();
        back.validate().unwrap();
        assert_eq!(back.switch.host, None);
        assert_eq!(back.switch.workers, 2);
        let names = |c: &Config| {
            let mut v: Vec<String> = c.ports.iter().map(|p| p.name.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&back), names(&c));
        let p = |c: &Config| c.ports.iter().find(|p| p.name == "web/1").cloned().unwrap();
        assert_eq!(p(&back), p(&c));
        assert_eq!(back.routes.len(), 2);
        assert_eq!(back.vips, c.vips);
        // the same keys again: nothing to change
        assert!(diff(&network_keys(&back).unwrap(), &network_keys(&c).unwrap()).is_empty());
    }

    /// SPEC 12: a dual-stack network (IPv6 CIDRs, addresses, an IPv6 VIP, an IPv6
    /// route) is stored and read back unchanged.
    #[test]
    fn a_dual_stack_network_round_trips() {
        let c = vpcswitch_model::ConfigBuilder::new()
            .vpc("a", &["10.0.0.0/16"])
            .ipv6_cidrs(&["fd00:a::/48"])
            .subnet("s", "a", "10.0.1.0/24")
            .ipv6_cidr("fd00:a:0:1::/64")
            .port("p", "s", "02:00:00:00:01:01", &["10.0.1.11"])
            .ipv6_ips(&["fd00:a:0:1::11"])
            .vip("v6", "s", "fd00:a:0:1::100", &["p"])
            .route_via_port("a", "fd00:99::/32", "p")
            .build()
            .unwrap();
        let k = network_keys(&c).unwrap();
        assert!(
            k.keys().any(|k| k.ends_with("routes/a/fd00:99::%2F32")),
            "{k:?}"
        );
        let back = network_from_keys(&k).unwrap();
        assert_eq!(
            (
                &back.vpcs,
                &back.subnets,
                &back.ports,
                &back.vips,
                &back.routes
            ),
            (&c.vpcs, &c.subnets, &c.ports, &c.vips, &c.routes)
        );
    }

    /// A key the layout does not know, or a value that is not its object, is an error
    /// naming the key (never silently dropped).
    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let mut k = network_keys(&net()).unwrap();
        k.insert(format!("{NETWORK}widgets/x"), "{}".into());
        assert_eq!(
            network_from_keys(&k).unwrap_err(),
            LayoutError::UnknownKey(format!("{NETWORK}widgets/x"))
        );
        let mut k = network_keys(&net()).unwrap();
        k.insert(format!("{NETWORK}ports/db"), "{\"name\":\"db\"}".into());
        let e = network_from_keys(&k).unwrap_err();
        assert!(
            matches!(&e, LayoutError::BadValue { key, .. } if key.ends_with("ports/db")),
            "{e}"
        );
    }

    /// Names cannot escape their segment: `/` and `%` are encoded, decoding inverts.
    #[test]
    fn names_are_encoded_into_one_segment() {
        for n in ["web/1", "a%2Fb", "..", "x y", "ünï", "10.0.0.0/8"] {
            let e = encode(n);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(decode(&e).as_deref(), Some(n));
        }
        assert_eq!(decode("a/b"), None);
        assert_eq!(decode("%G1"), None);
        assert_eq!(
            describe(&format!("{NETWORK}ports/web%2F1")),
            "port \"web/1\""
        );
        assert_eq!(describe(&format!("{NETWORK}switch")), "[switch]");
    }

    /// The diff names what is added, changed and removed, in key order.
    #[test]
    fn diff_lists_additions_changes_and_removals() {
        let a = network_keys(&net()).unwrap();
        let mut c = net();
        c.ports.retain(|p| p.name != "db");
        c.vips[0].ip = "10.0.1.101".parse().unwrap();
        c.vpcs[0].cidrs.push("10.2.0.0/16".parse().unwrap());
        let b = network_keys(&c).unwrap();
        let d = diff(&a, &b);
        let lines: Vec<String> = d.iter().map(|c| c.to_string()).collect();
        assert_eq!(d.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("- port \"db\""), "{lines:?}");
        assert!(lines[1].starts_with("~ vip \"vip\""), "{lines:?}");
        assert!(lines[2].starts_with("~ vpc \"a\""), "{lines:?}");
        assert!(diff(&a, &a).is_empty());
    }
}
