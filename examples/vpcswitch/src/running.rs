//! The running switch as the binary holds it: the library's [`Host`] (Linux devices,
//! reloads, reopening), the file it was started from, what `ctl` and the metrics show
//! about reloads, and the learned-state changes it logs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use vpcswitch::core::{Snapshot, VipCell};
use vpcswitch::linux::{one_line, Host};
use vpcswitch::runtime::observe::PortIdentity;

use crate::Overrides;

/// The running switch and the file it was started from.
#[derive(Debug)]
pub struct Running {
    /// the switch on its devices
    pub switch: Host,
    /// its configuration file
    pub path: PathBuf,
    /// what the command line sets over the file, at start and at every reload
    pub overrides: Overrides,
    /// the last reload error, shown by `ctl`
    pub last_error: Mutex<Option<String>>,
    /// reloads refused so far (metrics)
    pub reload_failures: AtomicU64,
    /// what [`Running::log_changes`] saw last
    pub seen: Mutex<Seen>,
    /// ports being captured (one capture per port at a time)
    pub captures: Mutex<Vec<PortIdentity>>,
    /// set when the switch stops: capture and drop streams end, the monitor returns
    pub stopping: AtomicBool,
}

/// Learned state last logged: VIP owners and moves, ports down.
#[derive(Debug, Default)]
pub struct Seen {
    vips: std::collections::HashMap<String, (Option<String>, u64)>,
    down: Vec<String>,
}

impl Running {
    /// The switch wrapped for the binary: nothing reloaded or logged yet.
    pub fn new(switch: Host, path: PathBuf) -> Running {
        let r = Running {
            switch,
            path,
            overrides: Overrides::default(),
            last_error: Mutex::new(None),
            reload_failures: AtomicU64::new(0),
            seen: Mutex::new(Seen::default()),
            captures: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        };
        // what the switch starts with is not news
        r.log_changes_quietly(true);
        r
    }

    /// The same, reloading with `overrides` applied over the file (`run --host`, ...).
    pub fn with_overrides(mut self, overrides: Overrides) -> Running {
        self.overrides = overrides;
        self
    }

    /// Logs what changed in the dataplane's learned state since the last call: a VIP
    /// moving to another port (one line per move seen, with the count), a port going
    /// down or coming back. Polled (about 5 times a second), so nothing is logged per
    /// packet and a VIP flapping faster than that logs once per poll with its count.
    pub fn log_changes(&self) {
        self.log_changes_quietly(false);
    }

    fn log_changes_quietly(&self, quiet: bool) {
        let snap = self.switch.snapshot();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (i, v) in snap.vips.iter().enumerate() {
            let cell = snap.vip_cell(i as u32);
            let owner = owner_name(&snap, cell);
            let moves = cell.moves();
            let prev = seen.vips.insert(v.name.clone(), (owner.clone(), moves));
            let changed = prev
                .as_ref()
                .is_none_or(|(o, m)| *o != owner || *m != moves);
            if changed && !quiet && (prev.is_some() || owner.is_some()) {
                tracing::info!(
                    vip = %v.name,
                    ip = %std::net::Ipv4Addr::from(v.ip),
                    from = prev.and_then(|p| p.0).as_deref().unwrap_or("-"),
                    to = owner.as_deref().unwrap_or("-"),
                    moves,
                    "vip owner changed"
                );
            }
        }
        let down = self.switch.down_ports();
        if !quiet {
            for p in down.iter().filter(|p| !seen.down.contains(p)) {
                tracing::warn!(port = %p, "port down: its device went away");
            }
            for p in seen.down.iter().filter(|p| !down.contains(p)) {
                tracing::info!(port = %p, "port up");
            }
        }
        seen.down = down;
    }

    /// Re-reads the file, applies the command line's overrides over it (the local host
    /// stays the one `run --host` named) and applies it ([`Host::apply`]); on error the
    /// running configuration stays, the error is logged, counted and kept for `ctl stats`.
    pub fn reload(&self) -> Result<u64, String> {
        let r = self
            .overrides
            .load(&self.path)
            .and_then(|new| self.switch.apply(&new).map_err(|e| e.to_string()));
        match &r {
            Ok(g) => {
                tracing::info!(generation = g, file = %self.path.display(), "configuration reloaded");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %one_line(e), "reload refused; the running configuration stays");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
            }
        }
        r
    }
}

/// The name of the port a VIP cell says owns the VIP, if any.
pub fn owner_name(snap: &Snapshot, cell: &VipCell) -> Option<String> {
    cell.owner()
        .and_then(|o| snap.port(o))
        .map(|p| p.name.clone())
}
