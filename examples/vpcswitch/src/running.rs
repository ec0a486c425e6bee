//! The running switch as the binary holds it: the library's [`Host`] (Linux devices,
//! reloads, reopening), where its network comes from (the file it was started from, or
//! the store, SPEC 11), what `ctl` and the metrics show about reloads, and the
//! learned-state changes it logs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use vpcswitch::core::{Snapshot, VipCell};
use vpcswitch::linux::{one_line, Host};
use vpcswitch::model::Config;
use vpcswitch::runtime::observe::PortIdentity;
use vpcswitch_store::{Store, Stored};

use crate::Overrides;

/// The store a switch started with `run --etcd` follows, and what it knows of it.
#[derive(Debug)]
pub struct StoreLink {
    /// the connection (its thread watches and keeps the lease alive)
    pub store: Store,
    /// what was read from it
    pub state: Mutex<StoreState>,
    /// this switch's lease TTL: also how long a host whose lease expired stays up here
    /// after the last tunnel packet heard from it (SPEC 11.5)
    pub lease_ttl: std::time::Duration,
    /// wakes the store thread ([`crate::store::follow`]): rung by the watch after each
    /// update and at stop
    pub wake: std::sync::Arc<vpcswitch::core::Doorbell>,
}

/// What a switch knows of its store (`ctl stats`).
#[derive(Debug, Default, Clone)]
pub struct StoreState {
    /// the network revision running (0: none yet)
    pub revision: i64,
    /// its generation (applies so far)
    pub generation: u64,
    /// when the watch was last in sync with the store
    pub last_sync: Option<SystemTime>,
    /// the store revision of that sync
    pub synced_revision: i64,
    /// why the store is not reachable now (`None`: it is)
    pub lost: Option<String>,
    /// when the running revision was swapped in (every worker on it), unix µs
    pub applied_unix_us: u64,
    /// how long applying it took here (validate, compile, swap, grace period), µs
    pub apply_us: u64,
    /// when the apply that wrote it was sent, on the applier's clock (unix µs, 0
    /// unknown): `applied_unix_us` minus this is the store → applied lag
    pub written_unix_us: u64,
    /// hosts whose lease is alive now
    pub alive: BTreeSet<String>,
    /// hosts seen alive since this switch started (a host never seen alive is not
    /// marked down: a foreign host, a host not started yet)
    pub ever_alive: BTreeSet<String>,
    /// SPEC 11.4: the VIP owners the store holds, by VIP
    pub vip_owners: std::collections::BTreeMap<String, vpcswitch_store::VipOwner>,
    /// per VIP, its cell's move count when the store's owner was last taken in: a cell
    /// that moved since learned a newer owner in the datapath, which the store's
    /// (older) one must not override
    pub vip_marks: std::collections::HashMap<String, u64>,
    /// per VIP, the claim this switch last published (port, the cell's move count)
    /// and when
    pub published: std::collections::HashMap<String, (String, u64, std::time::Instant)>,
    /// per VIP, the last claim published: the port and when the datapath learned it
    /// (unix µs, from the cell's move time)
    pub claims: std::collections::BTreeMap<String, (String, u64)>,
    /// per VIP, the store revision of its owner last received and when (unix µs)
    pub vip_seen: std::collections::BTreeMap<String, (i64, u64)>,
    /// SPEC 11.3: per host down here, when its ports went down (the reload that drops
    /// them swapped in, every worker on it), unix µs
    pub down_since: std::collections::BTreeMap<String, u64>,
    /// SPEC 11.3: per host whose lease is gone, when the watch said so here, unix µs
    pub lease_gone: std::collections::BTreeMap<String, u64>,
}

impl StoreState {
    /// From the apply's commit (the applier's clock) to the running revision swapped in
    /// here (this host's clock; both NTP-synchronised in a fleet): the watch's lag plus
    /// the reload. `None` until a revision was applied here with a known write time.
    pub fn lag_us(&self) -> Option<u64> {
        (self.written_unix_us != 0 && self.applied_unix_us != 0)
            .then(|| self.applied_unix_us.saturating_sub(self.written_unix_us))
    }
}

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
    /// the last reload's outcome (true at start) and when the configuration last
    /// loaded successfully, at start or by a reload (unix ms): metrics
    pub last_reload: Mutex<(bool, SystemTime)>,
    /// ports being captured (one capture per port at a time)
    pub captures: Mutex<Vec<PortIdentity>>,
    /// set when the switch stops: capture and drop streams end, the monitor returns
    pub stopping: AtomicBool,
    /// the store, when the network comes from one (`run --etcd`) instead of `path`
    pub store: Option<StoreLink>,
}

impl Running {
    /// The switch wrapped for the binary: nothing reloaded or logged yet.
    pub fn new(switch: Host, path: PathBuf) -> Running {
        Running {
            switch,
            path,
            overrides: Overrides::default(),
            last_error: Mutex::new(None),
            reload_failures: AtomicU64::new(0),
            last_reload: Mutex::new((true, SystemTime::now())),
            captures: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            store: None,
        }
    }

    /// The same, reloading with `overrides` applied over the file (`run --host`, ...).
    pub fn with_overrides(mut self, overrides: Overrides) -> Running {
        self.overrides = overrides;
        self
    }

    /// Logs the switch's events ([`vpcswitch::runtime::Switch::events`]) as they come,
    /// on a thread of its own, until the switch stops: a VIP moving to another port
    /// (one line per event, with the move count), a port going down or coming back, a
    /// worker failure (which also stops the process: SIGTERM to itself, exit status 3).
    /// Pushed by the switch, not polled.
    pub fn log_events(self: &std::sync::Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let events = self.switch.events();
        // not a strong reference: the stop path waits to hold the switch alone
        let running = std::sync::Arc::downgrade(self);
        std::thread::Builder::new()
            .name("vpcswitch-log".into())
            .spawn(move || loop {
                match events.recv_timeout(std::time::Duration::from_millis(250)) {
                    Some(ev) => match running.upgrade() {
                        Some(r) => log_event(&r, &ev.kind),
                        None => return,
                    },
                    None if events.closed() || running.strong_count() == 0 => return,
                    None => {}
                }
            })
    }

    /// The same, following `store` (`run --etcd`): reloads read the store, not a file.
    pub fn with_store(
        mut self,
        store: Store,
        started: &Stored,
        lease_ttl: std::time::Duration,
        wake: std::sync::Arc<vpcswitch::core::Doorbell>,
    ) -> Running {
        let state = StoreState {
            revision: started.revision,
            generation: started.generation,
            last_sync: Some(SystemTime::now()),
            ..Default::default()
        };
        self.store = Some(StoreLink {
            store,
            state: Mutex::new(state),
            lease_ttl,
            wake,
        });
        self
    }

    /// Re-reads the network, from the file or (`run --etcd`) the store, applies the
    /// command line's overrides over it (the local host stays the one `run --host`
    /// named) and applies it ([`Host::apply`]); on error the running configuration
    /// stays, the error is logged, counted and kept for `ctl stats`.
    pub fn reload(&self) -> Result<u64, String> {
        if let Some(link) = &self.store {
            return match link.store.load() {
                Ok(s) => self.apply_stored(&s),
                Err(e) => self.outcome(Err(e.to_string()), "store"),
            };
        }
        let r = self
            .overrides
            .load(&self.path)
            .and_then(|new| self.switch.apply(&new).map_err(|e| e.to_string()));
        self.outcome(r, &self.path.display().to_string())
    }

    /// SPEC 11.2: applies a network read from the store, as a reload: the overrides over
    /// it, validated whole for this host, swapped in by [`Host::apply`]; a refusal keeps
    /// the running one (logged, counted, shown by `ctl stats`).
    pub fn apply_stored(&self, s: &Stored) -> Result<u64, String> {
        let t0 = std::time::Instant::now();
        let r = self
            .overrides
            .apply(s.config.clone())
            .map_err(|e| format!("store revision {}: {e}", s.revision))
            .and_then(|new| {
                self.switch
                    .apply(&new)
                    .map_err(|e| format!("store revision {}: {e}", s.revision))
            });
        if r.is_ok() {
            if let Some(link) = &self.store {
                let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
                // the same revision again (ctl reload, SIGHUP) keeps its first
                // application time: the lag is the revision's, not the reload's
                if st.revision != s.revision {
                    st.applied_unix_us = unix_us(SystemTime::now());
                    st.written_unix_us = s.written_unix_us;
                }
                st.revision = s.revision;
                st.generation = s.generation;
                st.apply_us = t0.elapsed().as_micros() as u64;
            }
        }
        self.outcome(r, &format!("store revision {}", s.revision))
    }

    /// Logs, counts and keeps the outcome of a reload from `from`.
    fn outcome(&self, r: Result<u64, String>, from: &str) -> Result<u64, String> {
        match &r {
            Ok(g) => {
                tracing::info!(generation = g, from, "configuration reloaded");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) =
                    (true, SystemTime::now());
            }
            Err(e) => {
                tracing::error!(error = %one_line(e), "reload refused; the running configuration stays");
                self.refused(e.clone());
            }
        }
        r
    }

    /// A refused configuration (the running one stays): counted, kept for `ctl stats`
    /// and the metrics (the caller logs it).
    pub fn refused(&self, e: String) {
        self.last_reload.lock().unwrap_or_else(|e| e.into_inner()).0 = false;
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    /// SPEC 11.3: the hosts whose lease is alive are `alive` (the store's watch says
    /// so); see [`Running::update_hosts_down`]. Returns the hosts now down.
    pub fn set_alive(&self, alive: &BTreeSet<String>) -> Vec<String> {
        let Some(link) = &self.store else {
            return vec![];
        };
        {
            let at = unix_us(SystemTime::now());
            let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
            st.ever_alive.extend(alive.iter().cloned());
            let gone: Vec<String> = st.alive.difference(alive).cloned().collect();
            st.lease_gone.retain(|h, _| !alive.contains(h));
            for h in gone {
                st.lease_gone.insert(h, at);
            }
            st.alive = alive.clone();
        }
        self.update_hosts_down()
    }

    /// SPEC 11.3, 11.5: a host of the running network is down here when it was seen
    /// alive since start, its lease is gone, and no tunnel packet came from it for the
    /// lease's TTL (a host cut from the store but still talking on the underlay keeps
    /// its ports up; a host never seen alive, such as a Linux vxlan host, is never
    /// marked). When the set changed, its ports are dropped (`host_down`) or back, by
    /// a reload of the running network ([`vpcswitch::runtime::Switch::set_hosts_down`]).
    /// Called at every liveness change and polled (a host that falls silent). Returns
    /// the hosts now down.
    pub fn update_hosts_down(&self) -> Vec<String> {
        let Some(link) = &self.store else {
            return vec![];
        };
        let (alive, ever) = {
            let st = link.state.lock().unwrap_or_else(|e| e.into_inner());
            (st.alive.clone(), st.ever_alive.clone())
        };
        let snap = self.switch.snapshot();
        let now = self.switch.now_ns();
        let ttl = link.lease_ttl.as_nanos() as u64;
        let down: Vec<String> = snap
            .hosts()
            .iter()
            .filter(|h| Some(h.id) != snap.local_host())
            .filter(|h| ever.contains(&h.name) && !alive.contains(&h.name))
            .filter(|h| {
                self.switch
                    .host_last_rx_ns(h.id)
                    .is_none_or(|t| now.saturating_sub(t) >= ttl)
            })
            .map(|h| h.name.clone())
            .collect();
        let was = self.switch.hosts_down();
        if down == was {
            return down;
        }
        for h in down.iter().filter(|h| !was.contains(h)) {
            tracing::warn!(host = %h, "host down: its lease expired and it is silent on the underlay; its ports are dropped (host_down)");
        }
        for h in was.iter().filter(|h| !down.contains(h)) {
            tracing::info!(host = %h, "host back: its lease is alive again, or it is heard on the underlay");
        }
        self.switch.set_hosts_down(down.clone());
        let cfg: Config = snap.config.clone();
        let _ = self.outcome(
            self.switch.apply(&cfg).map_err(|e| e.to_string()),
            "host leases",
        );
        let at = unix_us(SystemTime::now());
        let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
        st.down_since.retain(|h, _| down.contains(h));
        for h in &down {
            st.down_since.entry(h.clone()).or_insert(at);
        }
        down
    }
}

/// `t` in microseconds since the Unix epoch (0 before it).
pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The name of the port a VIP cell says owns the VIP, if any.
pub fn owner_name(snap: &Snapshot, cell: &VipCell) -> Option<String> {
    cell.owner()
        .and_then(|o| snap.port(o))
        .map(|p| p.name.clone())
}

/// One log line for an event (the formats docs/operations.md shows).
fn log_event(running: &Running, kind: &vpcswitch::runtime::EventKind) {
    use vpcswitch::runtime::EventKind;
    match kind {
        EventKind::VipMoved {
            vip,
            ip,
            from,
            to,
            moves,
        } => tracing::info!(
            vip = %vip,
            ip = %ip,
            from = from.as_deref().unwrap_or("-"),
            to = to.as_deref().unwrap_or("-"),
            moves,
            "vip owner changed"
        ),
        EventKind::PortDown { port } => {
            tracing::warn!(port = %port, "port down: its device went away")
        }
        EventKind::PortUp { port } => tracing::info!(port = %port, "port up"),
        EventKind::Reloaded { generation } => {
            tracing::debug!(generation, "configuration swapped in")
        }
        EventKind::ReloadRefused { error } => {
            tracing::debug!(error = %error, "reload refused")
        }
        EventKind::WorkerFailed { reason } => {
            if !running.stopping.load(Ordering::SeqCst) {
                tracing::error!(reason = %one_line(reason), "the switch stopped itself; exiting with status 3");
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
            }
        }
        _ => tracing::debug!(event = kind.name(), "event"),
    }
}
