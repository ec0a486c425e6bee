//! The poll-mode runtime: N worker threads forwarding between backends through the
//! pipeline, with configuration swapped while traffic flows.
//!
//! # Contract
//! * Each worker owns queue *i* of every port (backends give one queue per worker), so
//!   no queue is shared and transmit needs no lock.
//! * The configuration is a [`Snapshot`] published with `arc-swap`; a worker loads it
//!   once per poll pass, so every packet is handled entirely under one configuration
//!   (SPEC 8.1). [`Switch::reload`] validates and compiles first: a refused
//!   configuration changes nothing.
//! * VIP owners live in the snapshot's atomics, shared by all workers: a GARP seen by
//!   one worker steers the next packet on every worker (SPEC 3.1).
//! * Counters are per worker and readable at any time ([`Switch::stats`]).
//! * An idle worker sleeps in `epoll_wait` on its queues' descriptors and its waker's
//!   eventfd after a quiet period; arrivals and backends wake it (see `worker`).
//! * Buffers: each worker owns its pools and the caches in front of them, and lends the
//!   caches to its queues for each burst; no queue keeps a buffer between calls, so
//!   memory and free buffers are bounded per worker, not per port
//!   (`vpcswitch_backend`'s ownership rule).
//!
//! Lock order (control path only): `Switch::control` → nothing. Workers take no lock.

pub mod events;
pub mod harness;
pub mod metrics;
pub mod observe;
mod open;
use open::{missing_backend, open_backends};
mod reload;
mod stats;
mod tunnel;
mod worker;

pub use events::{Event, EventKind, Events};
pub use stats::{HostStats, PortStats, StatsReport, TunnelTotals, WorkerStats};
pub use worker::{MAX_SLEEP, QUIET};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use vpcswitch_backend::memory::{mem_port, MemGuest};
use vpcswitch_backend::{
    Backend, BackendError, Capabilities, DeviceCounters, DeviceStats, Pool, PortQueue, QueuePools,
    Waker, WorkerMem, LARGE_BUF_SIZE,
};
use vpcswitch_core::{PortId, Snapshot, TraceResult};
use vpcswitch_model::{BackendSpec, Config, ConfigErrors};

use stats::WorkerCounters;
use worker::Worker;

/// Why the runtime refused a start or a reload.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration breaks SPEC 1.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A port has no backend.
    #[error("port \"{0}\" has no backend: pass one for it")]
    MissingBackend(String),
    /// A backend could not be opened.
    #[error("port \"{port}\": {source}")]
    Backend {
        /// the port
        port: String,
        /// what went wrong
        source: BackendError,
    },
    /// More ports than the runtime was sized for.
    #[error("{have} port ids needed, the runtime was started with max_ports = {max}")]
    TooManyPorts {
        /// needed
        have: usize,
        /// limit
        max: usize,
    },
    /// `switch.workers` cannot change while running.
    #[error("switch.workers cannot change on reload ({running} running, {wanted} in the new configuration); restart instead")]
    WorkersChanged {
        /// running
        running: usize,
        /// requested
        wanted: usize,
    },
    /// A worker did not pick up a queue change in time.
    #[error("worker {0} did not acknowledge a port change within 2 s")]
    WorkerStuck(usize),
    /// No such port (trace).
    #[error("no port named \"{0}\"")]
    NoSuchPort(String),
    /// The switch stopped itself: a worker panicked (fail-fast policy).
    #[error("the switch has stopped: {0}")]
    Failed(String),
    /// A thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Spawn(std::io::Error),
    /// The tunnel (SPEC 10) could not be opened on this host's endpoint.
    #[error("host \"{host}\": tunnel endpoint {endpoint}: {reason}")]
    Tunnel {
        /// the local host
        host: String,
        /// its endpoint
        endpoint: std::net::SocketAddrV4,
        /// what went wrong
        reason: String,
    },
    /// More hosts than the runtime was sized for.
    #[error("{have} hosts configured, the runtime was started with max_hosts = {max}")]
    TooManyHosts {
        /// configured
        have: usize,
        /// limit
        max: usize,
    },
    /// The local host or its endpoint cannot change while running.
    #[error("the local host's tunnel endpoint cannot change on reload ({running} running, {wanted} in the new configuration); restart instead")]
    EndpointChanged {
        /// running (`none`: no tunnel)
        running: String,
        /// requested
        wanted: String,
    },
}

/// Runtime sizing.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port id slots (counters and queue tables are sized once, at start).
    pub max_ports: usize,
    /// Buffers per worker (2 KiB each): received frames of every device queue the
    /// worker owns, flood copies and answers.
    pub pool_per_worker: usize,
    /// Large buffers (64 KiB) per worker, for devices that pass TSO super-frames.
    pub large_per_worker: usize,
    /// Host id slots (`[[hosts]]`, SPEC 10: per-host counters are sized once, at start).
    pub max_hosts: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_ports: 4096,
            pool_per_worker: 8192,
            large_per_worker: 256,
            max_hosts: 256,
        }
    }
}

pub(crate) enum Command {
    Attach(PortId, Box<dyn PortQueue>),
    Detach(PortId),
    /// Zeroes the worker's counters of a port id that a reload gives to a new port, so
    /// the next tenant's traffic figures never include the deleted port's.
    ResetCounters(PortId),
    /// No-op: its acknowledgement proves the worker finished any pass begun before.
    Sync,
}

pub(crate) struct WorkerShared {
    pub cmds: ArrayQueue<Command>,
    pub cmd_done: AtomicU64,
    pub waker: OnceLock<Waker>,
    pub counters: CachePadded<WorkerCounters>,
}

pub(crate) struct Shared {
    pub snap: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    /// why the switch stopped by itself (a worker panicked)
    pub failure: Mutex<Option<String>>,
    /// workers that panicked
    pub panicked: std::sync::atomic::AtomicUsize,
    pub workers: Vec<WorkerShared>,
    pub start: Instant,
    /// capture and drop sampling
    pub observe: observe::Observe,
    /// event subscribers ([`Switch::events`])
    pub events: events::Hub,
}

impl Shared {
    /// The state workers share, for `workers` workers and up to `max_ports` port ids.
    fn new(snap: Snapshot, workers: usize, max_ports: usize, max_hosts: usize) -> Shared {
        Shared {
            snap: ArcSwap::from_pointee(snap),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            panicked: std::sync::atomic::AtomicUsize::new(0),
            observe: observe::Observe::new(max_ports),
            events: events::Hub::default(),
            workers: (0..workers)
                .map(|_| WorkerShared {
                    cmds: ArrayQueue::new(max_ports * 2 + 16),
                    cmd_done: AtomicU64::new(0),
                    waker: OnceLock::new(),
                    counters: WorkerCounters::new(max_ports, max_hosts),
                })
                .collect(),
            start: Instant::now(),
        }
    }
}

/// A running switch. Dropping it stops the workers.
pub struct Switch {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    control: Mutex<Control>,
    max_ports: usize,
    max_hosts: usize,
    /// the tunnel's longest frame (0: no tunnel), given to every snapshot (SPEC 10.6)
    tunnel_frame_max: usize,
    /// what backends opened on reload learn of each worker's memory
    mem: Vec<WorkerMem>,
    /// the event thread ([`events`]), joined at stop
    events_thread: Option<JoinHandle<()>>,
}

struct Control {
    cmd_sent: Vec<u64>,
    backends: HashMap<String, open::PortDevice>,
    /// SPEC 11.3: hosts the control plane says are down, marked in every snapshot
    /// compiled from now on ([`Switch::set_hosts_down`])
    hosts_down: Vec<String>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("workers", &self.handles.len())
            .field("generation", &self.shared.snap.load().generation)
            .finish()
    }
}

/// Backends by port name.
pub type Backends = Vec<(String, Box<dyn Backend>)>;

/// In-memory backends for every port (and the uplink) whose backend is `memory`, with
/// one queue per worker, and the guest ends by port name.
pub fn memory_backends(cfg: &Config, depth: usize) -> (Backends, HashMap<String, MemGuest>) {
    let mut b: Backends = Vec::new();
    let mut g = HashMap::new();
    let names: Vec<&str> = cfg
        .local_port_names()
        .filter(|n| cfg.backend_of(n) == Some(&BackendSpec::Memory))
        .collect();
    for n in names {
        let (port, guest) = mem_port(n, cfg.switch.workers, depth);
        b.push((n.to_string(), Box::new(port)));
        g.insert(n.to_string(), guest);
    }
    (b, g)
}

impl Switch {
    /// Starts a switch with default [`Options`].
    pub fn start(cfg: &Config, backends: Backends) -> Result<Switch, RuntimeError> {
        Switch::start_with(cfg, backends, Options::default())
    }

    /// Validates and compiles `cfg`, opens one queue per worker on every backend and
    /// starts `cfg.switch.workers` threads (pinned to CPUs 0.. when `pin_workers`).
    pub fn start_with(
        cfg: &Config,
        backends: Backends,
        opts: Options,
    ) -> Result<Switch, RuntimeError> {
        let mut snap = Snapshot::compile(cfg, None)?;
        let max_ports = opts.max_ports.max(1);
        if snap.port_slots() > max_ports {
            return Err(RuntimeError::TooManyPorts {
                have: snap.port_slots(),
                max: max_ports,
            });
        }
        if snap.hosts().len() > opts.max_hosts {
            return Err(RuntimeError::TooManyHosts {
                have: snap.hosts().len(),
                max: opts.max_hosts,
            });
        }
        let n = cfg.switch.workers;
        // SPEC 10: one tunnel per worker on this host's endpoint (before any device is
        // opened: a wrong endpoint is reported first, and nothing is left behind)
        let mut tunnels = tunnel::open_all(&snap, n)?;
        let tunnel_frame_max = tunnels
            .iter()
            .flatten()
            .next()
            .map_or(0, |t| t.config().max_frame);
        snap.set_tunnel_frame_max(tunnel_frame_max);
        let mut per_worker: Vec<Vec<(PortId, Box<dyn PortQueue>)>> =
            (0..n).map(|_| Vec::new()).collect();
        let mut descs = HashMap::new();
        // one buffer pool per worker, shared by its queues of every port
        let pools: Vec<QueuePools> = (0..n)
            .map(|_| QueuePools {
                small: Pool::new(opts.pool_per_worker),
                large: Pool::with_size(opts.large_per_worker, LARGE_BUF_SIZE),
            })
            .collect();
        let mem: Vec<WorkerMem> = pools.iter().map(QueuePools::mem).collect();
        let attach = open_backends(&snap, backends, &mem, &mut descs)?;
        for (pid, qs) in attach {
            for (w, q) in qs.into_iter().enumerate() {
                per_worker[w].push((pid, q));
            }
        }
        if let Some(missing) = missing_backend(&snap, &descs) {
            return Err(RuntimeError::MissingBackend(missing));
        }
        let shared = Arc::new(Shared::new(snap, n, max_ports, opts.max_hosts));
        let cores = if cfg.switch.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut handles = Vec::new();
        for (w, queues) in per_worker.into_iter().enumerate() {
            let mut worker = Worker::new(w, shared.clone(), max_ports, pools[w].bufs());
            worker.tunnel = tunnels.get_mut(w).and_then(Option::take);
            for (pid, q) in queues {
                worker.attach_at_start(pid, q);
            }
            let core = cores.get(w % cores.len().max(1)).copied();
            let h = std::thread::Builder::new()
                .name(format!("vpcswitch-w{w}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let mut worker = worker;
                    // queues attached before the thread had a waker get it now
                    let waker = Waker::new(std::thread::current());
                    for q in worker.queues.iter_mut().flatten() {
                        q.set_waker(waker.clone());
                    }
                    worker.waker = Some(waker);
                    let shared = worker.shared.clone();
                    // Fail fast: a panicking worker stops the whole switch, so nothing
                    // keeps forwarding with a dead worker (its queues would go silent);
                    // `Switch::health` says why, and a supervisor restarts the process.
                    if let Err(p) =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()))
                    {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        shared.panicked.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut f) = shared.failure.lock() {
                            f.get_or_insert(format!("worker {w} panicked: {msg}"));
                        }
                        shared.stop.store(true, Ordering::SeqCst);
                        for ws in &shared.workers {
                            if let Some(k) = ws.waker.get() {
                                k.wake();
                            }
                        }
                        // the event thread publishes WorkerFailed
                        shared.events.bell.ring();
                    }
                })
                .map_err(RuntimeError::Spawn)?;
            handles.push(h);
        }
        let events_thread = {
            let shared = shared.clone();
            let seen = events::Seen::now(&shared);
            std::thread::Builder::new()
                .name("vpcswitch-events".into())
                .spawn(move || events::run(shared, seen))
                .map_err(RuntimeError::Spawn)?
        };
        Ok(Switch {
            shared,
            handles,
            control: Mutex::new(Control {
                cmd_sent: vec![0; n],
                backends: descs,
                hosts_down: Vec::new(),
            }),
            max_ports,
            max_hosts: opts.max_hosts,
            tunnel_frame_max,
            mem,
            events_thread: Some(events_thread),
        })
    }

    /// `Err` with the reason once the switch has stopped by itself: a worker panicked,
    /// and by the fail-fast policy every worker then stopped. Embedders and the binary
    /// poll this and restart (the binary exits with status 3).
    pub fn health(&self) -> Result<(), String> {
        match self.shared.failure.lock() {
            Ok(f) => f.clone().map_or(Ok(()), Err),
            Err(_) => Err("failure state poisoned".into()),
        }
    }

    /// Ports whose device is gone (a deleted TAP). Reloading with a new backend for
    /// them (the binary does this on every reload) brings them back.
    pub fn down_ports(&self) -> Vec<String> {
        self.stats()
            .ports
            .into_iter()
            .filter(|p| p.down)
            .map(|p| p.name)
            .collect()
    }

    /// Subscribes to the switch's events ([`events`]): VIP moves, ports down and up,
    /// reloads and refusals, a worker failure; every one published from now on, in
    /// order, until the switch stops (the iterator then ends). Any number of
    /// subscribers; each has its own bounded queue, so a slow one loses only its own
    /// events ([`Events::lost`]).
    pub fn events(&self) -> Events {
        self.shared.events.subscribe()
    }

    /// Events published so far, by kind ([`EventKind::NAMES`]), subscribers or not.
    pub fn events_published(&self) -> Vec<(&'static str, u64)> {
        EventKind::NAMES
            .into_iter()
            .zip(self.shared.events.published())
            .collect()
    }

    /// Publishes [`EventKind::ReloadRefused`] for a reload that failed in a layer above
    /// the runtime (opening a device in the Linux host) before [`Switch::reload`] ran;
    /// `reload`'s own refusals are published by it.
    pub fn publish_reload_refused(&self, error: &str) {
        self.shared.events.publish(EventKind::ReloadRefused {
            error: error.to_string(),
        });
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.handles.len()
    }

    /// SPEC 11.3: the hosts to treat as down (their lease expired), by name, in every
    /// snapshot compiled from now on: the next [`Switch::reload`] marks them
    /// ([`Snapshot::set_hosts_down`]), so the workers see it with the snapshot swap, no
    /// lock on their path. Reload (with the running configuration) for it to take effect.
    pub fn set_hosts_down(&self, names: Vec<String>) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hosts_down = names;
    }

    /// The hosts marked down in the running snapshot, by name.
    pub fn hosts_down(&self) -> Vec<String> {
        let s = self.snapshot();
        s.hosts()
            .iter()
            .filter(|h| s.host_down(h.id))
            .map(|h| h.name.clone())
            .collect()
    }

    /// The running snapshot (tables, learned VIP owners).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snap.load_full()
    }

    /// Every counter, aggregated over the workers.
    pub fn stats(&self) -> StatsReport {
        let snap = self.snapshot();
        let workers: Vec<&WorkerCounters> =
            self.shared.workers.iter().map(|w| &*w.counters).collect();
        let names: Vec<(u32, String)> = snap
            .ports
            .iter()
            .flatten()
            .map(|p| (p.id, p.name.clone()))
            .collect();
        let hosts: Vec<(u32, String, std::net::SocketAddrV4)> = snap
            .hosts()
            .iter()
            .filter(|h| Some(h.id) != snap.local_host())
            .map(|h| (h.id, h.name.clone(), h.endpoint))
            .collect();
        stats::report(&workers, &names, &hosts)
    }

    /// When the last tunnel packet from host `h` arrived, on [`Switch::now_ns`]'s clock
    /// (`None`: never): a few relaxed loads, for a control plane that polls it (SPEC
    /// 11.3 and 11.5: a host still heard on the underlay is alive).
    pub fn host_last_rx_ns(&self, h: vpcswitch_core::HostId) -> Option<u64> {
        self.shared
            .workers
            .iter()
            .filter_map(|w| w.counters.hosts.get(h as usize))
            .map(|c| c.last_rx_ns.load(Ordering::Relaxed))
            .max()
            .filter(|&t| t > 0)
    }

    /// Traces a frame as if received on `port`, changing nothing.
    pub fn trace(&self, port: &str, frame: &[u8]) -> Result<TraceResult, RuntimeError> {
        let snap = self.snapshot();
        let id = snap
            .port_id(port)
            .ok_or_else(|| RuntimeError::NoSuchPort(port.into()))?;
        Ok(snap.trace(self.now_ns(), id, frame))
    }

    /// The runtime's clock (ns since start), the one VIP move times use.
    pub fn now_ns(&self) -> u64 {
        self.shared.start.elapsed().as_nanos() as u64
    }

    /// Packet capture and drop sampling ([`observe`]): start, stop and read them while
    /// the switch runs. Timestamps are on [`Switch::now_ns`]'s clock.
    pub fn observe(&self) -> &observe::Observe {
        &self.shared.observe
    }

    /// The identity of the port named `name` now ([`observe::PortIdentity`]): bind a
    /// capture or a drop-sample filter to it, and it follows that port only, ending when
    /// a reload deletes it. Resolved under the reload lock, so the id and its epoch
    /// belong to the same port.
    pub fn port_identity(&self, name: &str) -> Option<observe::PortIdentity> {
        let _ctl = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.snapshot().port_id(name)?;
        self.shared.observe.identity(id)
    }

    /// The name of the port `who` if it still exists (`None` once a reload deleted it).
    pub fn port_name(&self, who: observe::PortIdentity) -> Option<String> {
        // the snapshot first: an id is retired before its next holder enters a
        // snapshot, so a current epoch never names a later port
        let snap = self.snapshot();
        let name = snap.port(who.port).map(|p| p.name.clone());
        if self.shared.observe.is_current(who) {
            name
        } else {
            None
        }
    }

    /// Backend description per port name.
    pub fn backends(&self) -> HashMap<String, String> {
        self.control
            .lock()
            .map(|c| {
                c.backends
                    .iter()
                    .map(|(n, d)| (n.clone(), d.desc.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What each port's device is and can do ([`Backend::capabilities`]: kind, queues,
    /// MTU, offloads, mode), by port name, as it was when the device was opened.
    pub fn capabilities(&self) -> HashMap<String, Capabilities> {
        self.control
            .lock()
            .map(|c| {
                c.backends
                    .iter()
                    .map(|(n, d)| (n.clone(), d.caps.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Each port's device counters as the kernel keeps them ([`Backend::device_stats`]:
    /// frames the kernel dropped before the switch could read them show up here and
    /// nowhere else), read now, one system call per port, off the control lock. Ports
    /// whose device has no counters (memory) or cannot be read are left out.
    pub fn device_counters(&self) -> Vec<(String, DeviceCounters)> {
        let readers: Vec<(String, Arc<dyn DeviceStats>)> = self
            .control
            .lock()
            .map(|c| {
                c.backends
                    .iter()
                    .filter_map(|(n, d)| Some((n.clone(), d.stats.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<(String, DeviceCounters)> = readers
            .into_iter()
            .filter_map(|(n, r)| Some((n, r.read()?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Stops and joins every worker. Returns the number of workers that had panicked.
    pub fn stop(mut self) -> usize {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> usize {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in &self.shared.workers {
            if let Some(k) = w.waker.get() {
                k.wake();
            }
        }
        let mut panicked = 0;
        for h in self.handles.drain(..) {
            h.thread().unpark();
            if h.join().is_err() {
                panicked += 1;
            }
        }
        if let Some(h) = self.events_thread.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        panicked + self.shared.panicked.load(Ordering::SeqCst)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
