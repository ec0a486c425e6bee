//! Rules of many hosts (SPEC 10.1, 11.1): the hosts, where ports live, the VNIs.

use super::*;
use crate::MAX_VNI;

impl Config {
    /// `[[hosts]]`, `host` on `[switch]`, ports and the uplink, `vni` on VPCs.
    pub(super) fn validate_hosts(&self, e: &mut Errs) {
        let names = dup_names(e, "host", self.hosts.iter().map(|h| h.name.as_str()));
        let mut endpoints: HashMap<Ipv4Addr, &str> = HashMap::new();
        for h in &self.hosts {
            let obj = format!("host \"{}\"", h.name);
            let ep = h.endpoint;
            if ep.is_unspecified() || ep.is_broadcast() || ep.is_multicast() {
                e.push(
                    obj.clone(),
                    "endpoint",
                    format!("{ep} is not a unicast address"),
                );
            } else if let Some(other) = endpoints.insert(ep, &h.name) {
                e.push(
                    obj.clone(),
                    "endpoint",
                    format!(
                        "{ep} is already the endpoint of host \"{other}\": hosts need distinct \
                         addresses (a tunnel packet's sender is known by its outer source \
                         address alone; its UDP source port is a flow hash)"
                    ),
                );
            }
            if h.port == 0 {
                e.push(obj, "port", "must be a UDP port, 1..=65535".into());
            }
        }
        // where the switch and each port live
        let placed = std::iter::once(("switch".to_string(), self.switch.host.as_deref(), false))
            .chain(
                self.ports
                    .iter()
                    .map(|p| (format!("port \"{}\"", p.name), p.host.as_deref(), true)),
            )
            .chain(
                self.uplink
                    .iter()
                    .map(|u| (format!("uplink \"{}\"", u.name), u.host.as_deref(), true)),
            );
        for (obj, host, required) in placed {
            match host {
                Some(h) if self.hosts.is_empty() => e.push(
                    obj,
                    "host",
                    format!(
                        "names host \"{h}\", but no [[hosts]] are configured (without hosts \
                         everything is local: remove `host`)"
                    ),
                ),
                Some(h) if !names.contains(h) => {
                    e.push(obj, "host", format!("no host named \"{h}\""))
                }
                None if required && !self.hosts.is_empty() => e.push(
                    obj,
                    "host",
                    "with [[hosts]], every port and the uplink name the host they live on".into(),
                ),
                _ => {}
            }
        }
        // VNIs: in range, unique (derived ones never clash, see Config::vnis)
        let mut vnis: HashMap<u32, &str> = HashMap::new();
        for v in &self.vpcs {
            let Some(n) = v.vni else { continue };
            let obj = format!("vpc \"{}\"", v.name);
            if n == 0 || n > MAX_VNI {
                e.push(obj, "vni", format!("{n} is out of range: 1..={MAX_VNI}"));
            } else if let Some(other) = vnis.insert(n, &v.name) {
                e.push(
                    obj,
                    "vni",
                    format!("{n} is already the VNI of vpc \"{other}\" (VNIs are unique)"),
                );
            }
        }
    }
}
