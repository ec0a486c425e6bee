//! What `vpcswitch run` (and `check`) set from the command line over the configuration
//! file: the local host (`--host`, SPEC 10), and, for several switches sharing one
//! network file on one machine, the control socket and the metrics address.
//!
//! # Contract
//! Every host reads the same network file; only these differ between instances. They
//! are applied at start and again at every reload (SIGHUP, `ctl reload`), so a reload
//! never loses them: the file's `[switch] host`, `control_socket` and `metrics` are
//! overridden each time. The file itself must still be valid on its own (its
//! `[switch] host`, when set, must name one of its `[[hosts]]`).

use std::path::{Path, PathBuf};

use vpcswitch::model::Config;

/// Command-line settings that win over the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--host NAME`: the host this switch runs on, one of the file's `[[hosts]]`
    pub host: Option<String>,
    /// `--control-socket PATH`
    pub control_socket: Option<PathBuf>,
    /// `--metrics ADDR`
    pub metrics: Option<String>,
}

impl Overrides {
    /// Reads and validates the file at `path`, then applies the overrides; the error
    /// text lists every problem (an unknown `--host` names the known hosts).
    pub fn load(&self, path: &Path) -> Result<Config, String> {
        let cfg = crate::load(path)?;
        self.apply(cfg)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies the overrides to a valid configuration (validated again with them).
    pub fn apply(&self, mut cfg: Config) -> Result<Config, String> {
        if let Some(s) = &self.control_socket {
            cfg.switch.control_socket = Some(s.clone());
        }
        if let Some(m) = &self.metrics {
            cfg.switch.metrics = Some(m.clone());
        }
        let Some(host) = &self.host else {
            return Ok(cfg);
        };
        if cfg.hosts.is_empty() {
            return Err(format!(
                "--host {host}: the configuration has no [[hosts]] (without hosts every \
                 port is local: drop --host, or add [[hosts]] and place the ports)\n"
            ));
        }
        if !cfg.hosts.iter().any(|h| &h.name == host) {
            let known: Vec<&str> = cfg.hosts.iter().map(|h| h.name.as_str()).collect();
            return Err(format!(
                "--host {host}: no host named \"{host}\" in [[hosts]]; known hosts: {}\n",
                known.join(", ")
            ));
        }
        cfg.with_local_host(host)
            .map_err(|e| format!("--host {host}: {e}"))
    }
}

/// One line for `check`: where the ports live when the network spans hosts (empty
/// without `[[hosts]]`).
pub fn placement_summary(cfg: &Config) -> String {
    if cfg.hosts.is_empty() {
        return String::new();
    }
    let here = match cfg.local_host() {
        Some(h) => format!(
            "; on host {h}: {} of {} ports",
            cfg.ports.iter().filter(|p| cfg.is_local(&p.name)).count(),
            cfg.ports.len()
        ),
        None => "; no local host (set [switch] host or --host to run it)".into(),
    };
    format!("{} hosts{here}", cfg.hosts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = r#"
[[hosts]]
name = "h1"
endpoint = "192.0.2.1"

[[hosts]]
name = "h2"
endpoint = "192.0.2.2"

[[vpcs]]
name = "a"
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "s"
vpc = "a"
cidr = "10.0.1.0/24"

[[ports]]
name = "p1"
subnet = "s"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.11"]
host = "h1"

[[ports]]
name = "p2"
subnet = "s"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.12"]
host = "h2"
"#;

    fn cfg(extra_switch: &str) -> Config {
        Config::from_toml_str(&format!("[switch]\n{extra_switch}\n{NET}")).unwrap()
    }

    /// SPEC 10.1: `--host` wins over `[switch] host`; the other overrides over theirs.
    #[test]
    fn the_flags_win_over_the_file() {
        let o = Overrides {
            host: Some("h2".into()),
            control_socket: Some("/tmp/h2.sock".into()),
            metrics: Some("127.0.0.1:9999".into()),
        };
        let c = o
            .apply(cfg(
                "host = \"h1\"\ncontrol_socket = \"/x.sock\"\nmetrics = \"127.0.0.1:1\"",
            ))
            .unwrap();
        assert_eq!(c.local_host(), Some("h2"));
        assert_eq!(c.switch.control_socket, Some(PathBuf::from("/tmp/h2.sock")));
        assert_eq!(c.switch.metrics.as_deref(), Some("127.0.0.1:9999"));
        assert!(c.is_local("p2") && !c.is_local("p1"));
        // without flags the file's settings stay
        let c = Overrides::default().apply(cfg("host = \"h1\"")).unwrap();
        assert_eq!(c.local_host(), Some("h1"));
        assert_eq!(placement_summary(&c), "2 hosts; on host h1: 1 of 2 ports");
    }

    /// An unknown `--host` names itself and the known hosts; `--host` without
    /// `[[hosts]]` says there are none.
    #[test]
    fn an_unknown_host_is_refused_naming_the_known_ones() {
        let o = Overrides {
            host: Some("h9".into()),
            ..Default::default()
        };
        let e = o.apply(cfg("")).unwrap_err();
        assert!(
            e.contains("--host h9: no host named \"h9\"") && e.contains("known hosts: h1, h2"),
            "{e}"
        );
        let single =
            Config::from_toml_str("[[vpcs]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\n").unwrap();
        let e = Overrides {
            host: Some("h1".into()),
            ..Default::default()
        }
        .apply(single.clone())
        .unwrap_err();
        assert!(e.contains("has no [[hosts]]"), "{e}");
        assert_eq!(placement_summary(&single), "");
    }
}
