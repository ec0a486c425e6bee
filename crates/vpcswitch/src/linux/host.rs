//! A running switch on Linux devices: reloads that open what changed, reopening devices
//! that came back.

use std::ops::Deref;
use std::sync::Mutex;

use vpcswitch_model::Config;
use vpcswitch_runtime::{Options, Switch};

use super::{backends, changed_ports, one_line, tapns, LinuxError};

/// A [`Switch`] whose ports are Linux devices opened by [`super::backends`], with what
/// keeping it running takes: [`Host::apply`] (a reload) and
/// [`Host::reopen_returned`] (a device that went away and came back). Dereferences to
/// the [`Switch`] for everything else (snapshot, stats, trace, capture).
///
/// Reloads and reopens run one at a time: each reads the running configuration,
/// applies a new one and may delete the devices of removed ports, so two at once could
/// re-add a port the other removed.
#[derive(Debug)]
pub struct Host {
    switch: Switch,
    /// held for the whole of a reload or a reopen
    reloading: Mutex<()>,
    /// down ports whose device came back but could not be reopened (logged once)
    reopen_failed: Mutex<Vec<String>>,
}

impl Host {
    /// Opens a backend for every port of `cfg` on this host (all of them without
    /// `[[hosts]]`) and starts the switch. A spec that
    /// cannot be opened here is [`LinuxError::Backend`] (nothing started); a device
    /// that cannot be opened, or a refused configuration, [`LinuxError::Runtime`].
    pub fn start(cfg: &Config) -> Result<Host, LinuxError> {
        Host::start_with(cfg, Options::default())
    }

    /// [`Host::start`] with the runtime's sizing `opts` (port and host slots, buffer
    /// pools: fixed for the switch's life).
    pub fn start_with(cfg: &Config, opts: Options) -> Result<Host, LinuxError> {
        let all: Vec<String> = cfg.local_port_names().map(String::from).collect();
        let b = backends(cfg, &all)?;
        Ok(Host::new(Switch::start_with(cfg, b, opts)?))
    }

    /// Takes over a switch started otherwise (other options, backends of its own);
    /// later reloads open Linux devices for new or changed ports.
    pub fn new(switch: Switch) -> Host {
        Host {
            switch,
            reloading: Mutex::new(()),
            reopen_failed: Mutex::new(Vec::new()),
        }
    }

    /// The switch (to stop it: [`Switch::stop`] takes it whole).
    pub fn into_switch(self) -> Switch {
        self.switch
    }

    /// Reloads to `new`: opens backends for ports that are new or whose backend spec
    /// changed ([`changed_ports`]) and for ports whose device is gone (reopened: a
    /// reload is how an operator brings back a port whose device was recreated), swaps
    /// the configuration in, then deletes the persistent TAPs (`netns`) of removed
    /// ports ([`tapns::delete_removed`]). Returns the new generation; on error nothing
    /// changed.
    pub fn apply(&self, new: &Config) -> Result<u64, LinuxError> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.switch.snapshot().config.clone();
        let mut names = changed_ports(&old, new);
        for d in self.switch.down_ports() {
            if !names.contains(&d) {
                tracing::info!(port = %d, "reopening the port's device");
                names.push(d);
            }
        }
        // the runtime publishes its own refusals; this one comes before it runs
        let b = backends(new, &names).inspect_err(|e| {
            self.switch.publish_reload_refused(&e.to_string());
        })?;
        let g = self.switch.reload(new, b)?;
        tapns::delete_removed(&old, new);
        Ok(g)
    }

    /// Reopens down ports whose device exists again where the port looks for it
    /// ([`tapns::device_present`]: recreated by the operator or the hypervisor), with
    /// the running configuration. A port whose device is still missing stays down until
    /// it returns or until a reload (which creates it). Meant to be called about once a
    /// second; a port that came back but cannot be reopened is logged once and retried
    /// on every call. Returns the generation when ports were reopened.
    pub fn reopen_returned(&self) -> Option<u64> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let down = self.switch.down_ports();
        let mut failed = self.reopen_failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|n| down.contains(n));
        if down.is_empty() {
            return None;
        }
        let cfg = self.switch.snapshot().config.clone();
        let back: Vec<String> = down
            .into_iter()
            .filter(|n| tapns::device_present(&cfg, n))
            .collect();
        if back.is_empty() {
            return None;
        }
        let r = backends(&cfg, &back)
            .and_then(|b| self.switch.reload(&cfg, b).map_err(LinuxError::from));
        match r {
            Ok(g) => {
                failed.clear();
                tracing::info!(ports = ?back, generation = g, "device returned: port reopened, up again");
                Some(g)
            }
            Err(e) => {
                if back.iter().any(|n| !failed.contains(n)) {
                    tracing::warn!(ports = ?back, error = %one_line(&e.to_string()), "device returned but cannot be reopened; the port stays down (retrying)");
                    *failed = back;
                }
                None
            }
        }
    }
}

impl Deref for Host {
    type Target = Switch;

    fn deref(&self) -> &Switch {
        &self.switch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcswitch_model::ConfigBuilder;

    fn cfg(ports: &[&str]) -> Config {
        let mut b = ConfigBuilder::new()
            .workers(1)
            .vpc("a", &["10.0.0.0/16"])
            .subnet("a1", "a", "10.0.1.0/24");
        for (i, p) in ports.iter().enumerate() {
            let n = 11 + i;
            b = b.port(
                p,
                "a1",
                &format!("02:00:00:00:01:{n:02x}"),
                &[&format!("10.0.1.{n}")],
            );
        }
        b.build().unwrap()
    }

    /// A host over a switch on memory ports (no device needed).
    fn host(ports: &[&str]) -> Host {
        let c = cfg(ports);
        let (b, _guests) = vpcswitch_runtime::memory_backends(&c, 64);
        Host::new(Switch::start(&c, b).unwrap())
    }

    /// A reload that opens nothing new applies (the generation moves on); one whose new
    /// port cannot be opened here is refused and the running configuration stays.
    #[test]
    fn apply_opens_only_what_changed_and_a_refusal_changes_nothing() {
        let h = host(&["p1", "p2"]);
        let g0 = h.snapshot().generation;
        let g1 = h.apply(&cfg(&["p1", "p2"])).unwrap();
        assert!(g1 > g0);
        let e = h.apply(&cfg(&["p1", "p2", "p3"])).unwrap_err();
        assert!(
            matches!(&e, LinuxError::Backend { port, .. } if port == "p3"),
            "{e}"
        );
        let s = h.snapshot();
        assert_eq!(s.generation, g1);
        assert!(s.port_id("p3").is_none());
        // removing a port needs no backend either
        assert!(h.apply(&cfg(&["p1"])).unwrap() > g1);
        assert!(h.snapshot().port_id("p2").is_none());
        h.into_switch().stop();
    }

    /// With every port up there is nothing to reopen.
    #[test]
    fn reopen_returned_with_nothing_down_does_nothing() {
        let h = host(&["p1"]);
        let g0 = h.snapshot().generation;
        assert_eq!(h.reopen_returned(), None);
        assert_eq!(h.snapshot().generation, g0);
        h.into_switch().stop();
    }
}
