//! The switch on Linux devices (feature `linux`): what `vpcswitch run` does with a
//! configuration, for an embedder to get the same behaviour by calling it.
//!
//! * [`backends`]: the backend each port's spec opens: `tap` (created or attached, in
//!   the guest's namespace with `netns`), `af_packet` (optionally ring-mapped),
//!   `af_xdp` (with `mode = "auto"`, AF_PACKET on the same interface when AF_XDP
//!   cannot be set up, the reason logged). `memory` is refused: it has no device.
//! * [`Host`]: a running switch with reloads that open only new or changed ports (and
//!   reopen down ports), delete the persistent TAPs of removed ports, and a poll that
//!   reopens a port whose device came back.
//!
//! # Contract
//! On any error the running configuration stays in force (as [`Switch::reload`](crate::runtime::Switch::reload)); the
//! reloads and reopens of one [`Host`] run one at a time. Logs go through `tracing`
//! (a fallback, a device that came back, a removed port's deleted TAP).
//!
//! # Security intent
//! The switch opens only the devices its configuration names, in the namespace the
//! configuration names; a reload deletes a device only when the port that made it with
//! `netns` is removed and no remaining port uses that device (namespace identity, not
//! path spelling). TAPs without `netns` are created in the switch's own namespace and
//! die with it; that case is warned about, once per port.

mod fallback;
mod host;
mod tapns;

pub use host::Host;
pub use tapns::{delete_removed, device_present};

use vpcswitch_model::{BackendSpec, Config};
use vpcswitch_packet::PacketBackend;
use vpcswitch_runtime::{Backends, RuntimeError};
use vpcswitch_xdp::XdpMode;

use fallback::XdpOrPacket;

/// Why a Linux switch refused to start or reload.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A port's backend spec cannot be opened here: `memory` (it has no device), an
    /// unknown `af_xdp` mode.
    #[error("port \"{port}\": {why}")]
    Backend {
        /// the port
        port: String,
        /// why
        why: String,
    },
    /// The runtime refused the configuration or a device could not be opened.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Backends for the ports of `cfg` named in `names` (other ports are skipped, as are
/// names `cfg` does not have and ports on other hosts, SPEC 10), in the
/// configuration's order. Nothing is opened yet:
/// devices open when the runtime asks for queues.
pub fn backends(cfg: &Config, names: &[String]) -> Result<Backends, LinuxError> {
    let mut out: Backends = Vec::new();
    for name in cfg.local_port_names() {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let Some(spec) = cfg.backend_of(name) else {
            continue;
        };
        let port = name.to_string();
        match spec {
            BackendSpec::Tap {
                ifname,
                offload,
                netns,
            } => out.push((
                port,
                Box::new(tapns::tap_backend(
                    name,
                    ifname,
                    offload.unwrap_or(true),
                    netns.as_deref(),
                )),
            )),
            BackendSpec::Memory => {
                return Err(LinuxError::Backend {
                    port,
                    why: "backend type \"memory\" is for embedders and tests; the binary needs backend = { type = \"tap\", ifname = \"...\" }".into(),
                })
            }
            BackendSpec::External { kind } => {
                return Err(LinuxError::Backend {
                    port,
                    why: format!(
                        "backend type \"external\"{} is supplied by a program that embeds the switch library (Switch::start with its own Backend); the vpcswitch binary has none: use tap, af_packet or af_xdp",
                        kind.as_deref().map(|k| format!(" (kind {k})")).unwrap_or_default()
                    ),
                })
            }
            BackendSpec::AfPacket { ifname, ring } => out.push((
                port,
                Box::new(PacketBackend::with_ring(ifname, ring.unwrap_or(false))),
            )),
            BackendSpec::AfXdp {
                ifname,
                queue,
                mode,
            } => {
                let mode = XdpMode::parse(mode.as_deref())
                    .map_err(|why| LinuxError::Backend { port, why })?;
                out.push((
                    name.to_string(),
                    Box::new(XdpOrPacket::new(name, ifname, *queue, mode)),
                ))
            }
        }
    }
    Ok(out)
}

/// Names of this host's ports that are new in `new`, came to this host, or whose
/// backend spec changed since `old`: the ports a reload from `old` to `new` opens.
/// Linear in the ports of both (one map of `old`'s local ports by name).
pub fn changed_ports(old: &Config, new: &Config) -> Vec<String> {
    let was: std::collections::HashMap<&str, &vpcswitch_model::BackendSpec> =
        old.local_backends().collect();
    new.local_backends()
        .filter(|(n, b)| was.get(n) != Some(b))
        .map(|(n, _)| n.to_string())
        .collect()
}

/// An error text listing several problems (one per line, maybe as "- " items) as one
/// log line: its lines joined with "; " (after a line ending in ':' with a space),
/// blank lines dropped.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for l in text
        .lines()
        .map(|l| l.trim().trim_start_matches("- "))
        .filter(|l| !l.is_empty())
    {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_ports: &str) -> Config {
        let text = format!(
            "[[vpcs]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\n\n[[subnets]]\nname = \"a1\"\nvpc = \"a\"\ncidr = \"10.0.1.0/24\"\n{toml_ports}"
        );
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn port(name: &str, n: u8, backend: &str) -> String {
        format!("\n[[ports]]\nname = \"{name}\"\nsubnet = \"a1\"\nmac = \"02:00:00:00:01:{n:02x}\"\nips = [\"10.0.1.{n}\"]\nbackend = {backend}\n")
    }

    /// The factory makes one backend per named port, in the configuration's order, of
    /// the kind the spec says (nothing is opened: no device or privilege needed).
    #[test]
    fn backends_follow_the_spec_of_each_named_port() {
        let c = cfg(&[
            port("t", 11, "{ type = \"tap\", ifname = \"vt0\" }"),
            port(
                "p",
                12,
                "{ type = \"af_packet\", ifname = \"vp0\", ring = true }",
            ),
            port(
                "x",
                13,
                "{ type = \"af_xdp\", ifname = \"vx0\", mode = \"copy\" }",
            ),
        ]
        .concat());
        let all: Vec<String> = ["x", "t", "p", "nosuch"].map(String::from).to_vec();
        let b = backends(&c, &all).unwrap();
        let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t", "p", "x"]);
        let shown: Vec<String> = b.iter().map(|(_, b)| b.describe()).collect();
        assert!(shown[0].starts_with("tap vt0"), "{shown:?}");
        assert!(shown[1].starts_with("af_packet vp0"), "{shown:?}");
        assert!(shown[1].contains("+ring"), "{shown:?}");
        assert!(shown[2].starts_with("af_xdp vx0"), "{shown:?}");
        let some = backends(&c, &["p".to_string()]).unwrap();
        assert_eq!(some.len(), 1);
    }

    /// `memory` ports and unknown AF_XDP modes are refused with the port named.
    #[test]
    fn memory_ports_and_bad_xdp_modes_are_refused() {
        let m = cfg(&port("p1", 11, "{ type = \"memory\" }"));
        let e = backends(&m, &["p1".into()]).err().unwrap().to_string();
        assert!(e.starts_with("port \"p1\": backend type \"memory\""), "{e}");
        // validation refuses it first; the factory refuses it all the same
        let mut x = cfg(&port("x", 13, "{ type = \"af_xdp\", ifname = \"vx0\" }"));
        x.ports[0].backend = BackendSpec::AfXdp {
            ifname: "vx0".into(),
            queue: 0,
            mode: Some("fast".into()),
        };
        let e = backends(&x, &["x".into()]).err().unwrap().to_string();
        assert!(e.starts_with("port \"x\": af_xdp mode \"fast\""), "{e}");
    }

    /// A reload opens new ports and ports whose backend changed, nothing else.
    #[test]
    fn changed_ports_are_the_new_and_the_changed() {
        let old = cfg(&[
            port("same", 11, "{ type = \"tap\", ifname = \"v1\" }"),
            port("moved", 12, "{ type = \"tap\", ifname = \"v2\" }"),
            port("gone", 13, "{ type = \"tap\", ifname = \"v3\" }"),
        ]
        .concat());
        let new = cfg(&[
            port("same", 11, "{ type = \"tap\", ifname = \"v1\" }"),
            port("moved", 12, "{ type = \"af_packet\", ifname = \"v2\" }"),
            port("new", 14, "{ type = \"tap\", ifname = \"v4\" }"),
        ]
        .concat());
        assert_eq!(changed_ports(&old, &new), ["moved", "new"]);
        assert!(changed_ports(&new, &new).is_empty());
    }

    /// docs/operations.md "Logs": an error listing several problems is one line.
    #[test]
    fn one_line_joins_the_problems() {
        assert_eq!(
            one_line("f: 2 error(s):\n  - port \"a\": x\n  - vip \"b\": y\n"),
            "f: 2 error(s): port \"a\": x; vip \"b\": y"
        );
    }
}
