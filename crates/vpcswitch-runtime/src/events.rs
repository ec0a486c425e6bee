//! Events for embedders: what changed in a running switch, pushed to subscribers
//! instead of polled ([`Switch::events`](crate::Switch::events)).
//!
//! Contract: each subscriber gets every event published after it subscribed, in order,
//! in a bounded queue of its own ([`QUEUE`] events): a subscriber that does not read
//! loses the newest events, counted by [`Events::lost`], and never slows the switch or
//! another subscriber. Events describe changes, not states: read the state itself
//! (`Switch::snapshot`, `Switch::stats`) at subscription.
//!
//! Off the hot path: a worker that moves a VIP or finds a port's device gone only rings
//! a [`Doorbell`] (an atomic add, and an unpark when the listener sleeps); the switch's
//! event thread (`vpcswitch-events`) wakes, compares the VIP cells and the ports' down
//! flags with what it saw last, and publishes one event per change. Reloads and their
//! refusals are published by the thread that reloads. The event thread sleeps between
//! rings (and looks once a second anyway), so an idle switch costs nothing here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use vpcswitch_core::{Doorbell, Snapshot};

use crate::Shared;

/// Events a subscriber's queue holds before the newest are lost.
pub const QUEUE: usize = 4096;

/// One change in a running switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// when the switch published it (wall clock, for logs; order by arrival)
    pub at: SystemTime,
    /// what happened
    pub kind: EventKind,
}

/// What happened. New kinds may be added: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A VIP's owner changed (SPEC 3.1: a claim from a bound port; 3.2: a reload that
    /// unbound or deleted the owner clears it, `to: None`). Claims that came faster than
    /// the event thread looked are folded into one event: `moves` says how many moves
    /// the VIP has made in all.
    VipMoved {
        /// the VIP's name
        vip: String,
        /// its address
        ip: IpAddr,
        /// the owner before, by port name
        from: Option<String>,
        /// the owner now
        to: Option<String>,
        /// moves so far (SPEC 3.6)
        moves: u64,
    },
    /// A port's device went away (a deleted TAP, a veth gone): its frames are dropped as
    /// `port_down` until it returns.
    PortDown {
        /// the port's name
        port: String,
    },
    /// A port that was down forwards again (its device returned, or a reload gave it a
    /// new backend).
    PortUp {
        /// the port's name
        port: String,
    },
    /// A configuration was swapped in (SPEC 8.1).
    Reloaded {
        /// the new snapshot's generation
        generation: u64,
    },
    /// A reload was refused; the running configuration stays.
    ReloadRefused {
        /// why, as [`RuntimeError`](crate::RuntimeError)'s text says it
        error: String,
    },
    /// A worker panicked and, fail-fast, the switch stopped forwarding: restart it.
    WorkerFailed {
        /// which worker and why
        reason: String,
    },
}

impl EventKind {
    /// A stable snake-case name for logs and metrics (`vip_moved`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::VipMoved { .. } => "vip_moved",
            EventKind::PortDown { .. } => "port_down",
            EventKind::PortUp { .. } => "port_up",
            EventKind::Reloaded { .. } => "reloaded",
            EventKind::ReloadRefused { .. } => "reload_refused",
            EventKind::WorkerFailed { .. } => "worker_failed",
        }
    }

    /// Every name [`EventKind::name`] gives, for pre-zeroed metrics.
    pub const NAMES: [&'static str; 6] = [
        "vip_moved",
        "port_down",
        "port_up",
        "reloaded",
        "reload_refused",
        "worker_failed",
    ];
}

/// One subscriber's queue.
#[derive(Debug, Default)]
struct Sub {
    q: Mutex<VecDeque<Event>>,
    ready: Condvar,
    lost: AtomicU64,
    closed: AtomicBool,
}

/// A subscription: the events published since it was made. Dropping it unsubscribes.
/// `Events` is an iterator that blocks for the next event and ends when the switch
/// stops.
#[derive(Debug)]
pub struct Events {
    sub: Arc<Sub>,
}

impl Events {
    /// The next event, if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.sub
            .q
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// The next event, waiting up to `timeout` for one; `None` on timeout or when the
    /// switch has stopped and nothing is queued.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        let end = Instant::now() + timeout;
        let mut q = self.sub.q.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.sub.closed.load(Ordering::Acquire) {
                return None;
            }
            q = self
                .sub
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Events lost because the queue was full ([`QUEUE`]).
    pub fn lost(&self) -> u64 {
        self.sub.lost.load(Ordering::Relaxed)
    }

    /// True once the switch has stopped: no event follows what is queued.
    pub fn closed(&self) -> bool {
        self.sub.closed.load(Ordering::Acquire)
    }
}

impl Iterator for Events {
    type Item = Event;
    /// Blocks for the next event; `None` once the switch has stopped and the queue is
    /// empty.
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.recv_timeout(Duration::from_secs(3600)) {
                return Some(e);
            }
            if self.closed() {
                return self.try_recv();
            }
        }
    }
}

/// The subscribers, and counts of what was published (metrics).
#[derive(Debug, Default)]
pub(crate) struct Hub {
    subs: Mutex<Vec<Weak<Sub>>>,
    published: [AtomicU64; EventKind::NAMES.len()],
    /// rung by workers and the control path when there may be something to publish
    pub(crate) bell: Arc<Doorbell>,
}

impl Hub {
    pub(crate) fn subscribe(&self) -> Events {
        let sub = Arc::new(Sub::default());
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.strong_count() > 0);
        subs.push(Arc::downgrade(&sub));
        Events { sub }
    }

    /// Queues `kind` for every subscriber.
    pub(crate) fn publish(&self, kind: EventKind) {
        if let Some(i) = EventKind::NAMES.iter().position(|n| *n == kind.name()) {
            self.published[i].fetch_add(1, Ordering::Relaxed);
        }
        let ev = Event {
            at: SystemTime::now(),
            kind,
        };
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter().filter_map(Weak::upgrade) {
            let mut q = s.q.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= QUEUE {
                s.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            q.push_back(ev.clone());
            drop(q);
            s.ready.notify_all();
        }
    }

    /// Ends every subscription (the switch stopped).
    pub(crate) fn close(&self) {
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter().filter_map(Weak::upgrade) {
            s.closed.store(true, Ordering::Release);
            let _g = s.q.lock().unwrap_or_else(|e| e.into_inner());
            s.ready.notify_all();
        }
    }

    /// Events published so far, by [`EventKind::NAMES`].
    pub(crate) fn published(&self) -> [u64; EventKind::NAMES.len()] {
        std::array::from_fn(|i| self.published[i].load(Ordering::Relaxed))
    }
}

/// What the event thread saw last.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    vips: HashMap<String, (Option<String>, u64)>,
    down: HashSet<String>,
    failed: bool,
}

impl Seen {
    /// The state now, which is not news: taken before the switch is handed to its user,
    /// so every change after `Switch::start` returns is an event.
    pub(crate) fn now(shared: &Shared) -> Seen {
        let mut seen = Seen::default();
        let snap = shared.snap.load_full();
        seen.look(shared, &snap, true);
        seen
    }

    /// Compares `snap` and the ports' down flags with what was seen, publishes the
    /// differences (unless `quiet`: the state at start is not news), remembers the
    /// new state.
    fn look(&mut self, shared: &Shared, snap: &Snapshot, quiet: bool) {
        let hub = &shared.events;
        let mut vips = HashMap::with_capacity(snap.vips.len());
        for (i, v) in snap.vips.iter().enumerate() {
            let cell = snap.vip_cell(i as u32);
            let owner = cell
                .owner()
                .and_then(|o| snap.port(o))
                .map(|p| p.name.clone());
            let moves = cell.moves();
            let prev = self.vips.remove(&v.name);
            let changed = match &prev {
                Some((o, m)) => *o != owner || *m != moves,
                None => owner.is_some(),
            };
            if changed && !quiet {
                hub.publish(EventKind::VipMoved {
                    vip: v.name.clone(),
                    ip: v.addr(),
                    from: prev.and_then(|p| p.0),
                    to: owner.clone(),
                    moves,
                });
            }
            vips.insert(v.name.clone(), (owner, moves));
        }
        self.vips = vips;
        let mut down = HashSet::new();
        for p in snap.ports.iter().flatten() {
            let is_down = shared.workers.iter().any(|w| {
                w.counters
                    .ports
                    .get(p.id as usize)
                    .is_some_and(|c| c.down.load(Ordering::Relaxed))
            });
            if is_down {
                down.insert(p.name.clone());
            }
        }
        if !quiet {
            let mut went: Vec<&String> = down.difference(&self.down).collect();
            went.sort();
            for p in went {
                hub.publish(EventKind::PortDown { port: p.clone() });
            }
            // a port that was deleted is not "up"
            let mut back: Vec<&String> = self
                .down
                .difference(&down)
                .filter(|n| snap.port_id(n).is_some())
                .collect();
            back.sort();
            for p in back {
                hub.publish(EventKind::PortUp { port: p.clone() });
            }
        }
        self.down = down;
        if !self.failed {
            let failure = shared
                .failure
                .lock()
                .map(|f| f.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            if let Some(reason) = failure {
                self.failed = true;
                hub.publish(EventKind::WorkerFailed { reason });
            }
        }
    }
}

/// The event thread: listens to the VIP bell and the hub's bell, looks at every ring
/// (and once a second), from `seen` on, until the switch stops.
pub(crate) fn run(shared: Arc<Shared>, mut seen: Seen) {
    let vip_bell = shared.snap.load().vip_bell().clone();
    // false only when four other threads listen to the VIP bell already: then the
    // once-a-second look still finds the move, only later
    let _ = vip_bell.listen();
    let _ = shared.events.bell.listen();
    // a change between `seen` and listening: look once at once
    let mut rung = (u64::MAX, u64::MAX);
    let mut last = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            // a worker that failed stopped the switch: say so before closing
            let snap = shared.snap.load_full();
            seen.look(&shared, &snap, false);
            break;
        }
        let now = (vip_bell.rings(), shared.events.bell.rings());
        if now != rung || last.elapsed() >= Duration::from_secs(1) {
            rung = now;
            last = Instant::now();
            let snap = shared.snap.load_full();
            seen.look(&shared, &snap, false);
        }
        std::thread::park_timeout(Duration::from_secs(1));
    }
    shared.events.close();
}
