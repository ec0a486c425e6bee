//! A subnet's DHCP settings (SPEC 13.1): what the switch's DHCP server hands out.

use super::*;
use crate::{
    option_121_len, DhcpOptions, Subnet, DHCP_MTU_RANGE, MAX_DHCP_DNS_SERVERS, MAX_OPTION_121_LEN,
    MIN_DHCP_LEASE_SECS,
};

/// A name RFC 1123 allows: dot-separated labels of letters, digits and inner hyphens,
/// each 1..=63 long, 253 in all.
fn domain_problem(d: &str) -> Option<String> {
    if d.is_empty() || d.len() > 253 {
        return Some(format!("\"{d}\" must be 1..=253 characters long"));
    }
    for label in d.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Some(format!(
                "\"{d}\" is not a domain name: label \"{label}\" must be 1..=63 letters, \
                 digits or inner hyphens"
            ));
        }
    }
    None
}

/// The rules of one subnet's `dhcp` and `dhcp_options`, reported on `obj`.
pub(super) fn validate_dhcp(e: &mut Errs, obj: &str, s: &Subnet) {
    let o: &DhcpOptions = &s.dhcp_options;
    if !s.dhcp {
        if !o.is_empty() {
            e.push(
                obj.into(),
                "dhcp_options",
                "set, but `dhcp` is off: options are what the switch's DHCP server hands \
                 out (set `dhcp = true`, or remove them)"
                    .into(),
            );
        }
        return;
    }
    let field = "dhcp_options";
    if o.dns_servers.len() > MAX_DHCP_DNS_SERVERS {
        e.push(
            obj.into(),
            &format!("{field}.dns_servers"),
            format!(
                "{} servers given: at most {MAX_DHCP_DNS_SERVERS}",
                o.dns_servers.len()
            ),
        );
    }
    for d in &o.dns_servers {
        if d.is_unspecified() || d.is_broadcast() || d.is_multicast() || d.is_loopback() {
            e.push(
                obj.into(),
                &format!("{field}.dns_servers"),
                format!("{d} is not a unicast host address"),
            );
        }
    }
    if let Some(d) = &o.domain {
        if let Some(rule) = domain_problem(d) {
            e.push(obj.into(), &format!("{field}.domain"), rule);
        }
    }
    if let Some(m) = o.mtu {
        if !DHCP_MTU_RANGE.contains(&m) {
            e.push(
                obj.into(),
                &format!("{field}.mtu"),
                format!(
                    "{m} is out of range {}..={}",
                    DHCP_MTU_RANGE.start(),
                    DHCP_MTU_RANGE.end()
                ),
            );
        }
    }
    if let Some(l) = o.lease_secs {
        if l < MIN_DHCP_LEASE_SECS {
            e.push(
                obj.into(),
                &format!("{field}.lease_secs"),
                format!("{l} s is too short: at least {MIN_DHCP_LEASE_SECS} s"),
            );
        }
    }
    let rf = format!("{field}.routes");
    let has_default = o.routes.iter().any(|r| r.destination.is_empty());
    // the default route the switch adds (0.0.0.0/0 via the gateway) counts too
    let mut bytes = if has_default { 0 } else { 5 };
    for (i, r) in o.routes.iter().enumerate() {
        let d = r.destination;
        if !d.is_network() {
            e.push(
                obj.into(),
                &rf,
                format!("{d} has host bits set (write {}/{})", d.network(), d.len()),
            );
        }
        if o.routes[..i]
            .iter()
            .any(|q| q.destination.network() == d.network() && q.destination.len() == d.len())
        {
            e.push(
                obj.into(),
                &rf,
                format!("{d} is listed twice (one next hop per destination)"),
            );
        }
        let v = r.via;
        if !s.cidr.contains(v) || v == s.cidr.network() || v == s.cidr.broadcast() {
            e.push(
                obj.into(),
                &rf,
                format!(
                    "via {v} (for {d}) must be a host address inside the subnet {}: a \
                     client reaches its next hops directly",
                    s.cidr
                ),
            );
        }
        bytes += option_121_len(&d);
    }
    if bytes > MAX_OPTION_121_LEN {
        e.push(
            obj.into(),
            &rf,
            format!(
                "{} routes take {bytes} bytes in option 121{}: at most {MAX_OPTION_121_LEN}",
                o.routes.len(),
                if has_default {
                    ""
                } else {
                    " (with the default route the switch adds)"
                }
            ),
        );
    }
}
