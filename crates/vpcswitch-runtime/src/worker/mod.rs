//! One poll-mode worker: owns one queue of every port, runs bursts through the
//! pipeline, transmits per destination. No lock and no allocation per packet.
//!
//! Loop: pick up commands (attach/detach a queue) → load the snapshot once → for each
//! rx queue, `rx_burst` ≤ 32 frames and run each through `Snapshot::process` → one
//! `tx_burst` per destination port → idle decision.
//!
//! Idle (`[switch] idle`, per worker, read from the snapshot so a reload changes it):
//! `busy_poll` never sleeps; `adaptive` (the default) busy-polls while work arrives and,
//! after its linger without work ([`QUIET`] up to [`LINGER_MAX`], following the
//! traffic: see [`Idle`]), declares itself sleeping (so backends wake it on arrival) and sleep in `epoll_wait` on its epoll set:
//! every attached queue's descriptors (added on attach, removed on detach and when the
//! device goes down, so a sleep is one system call however many ports there are) and the
//! [`Waker`]'s eventfd (backends without descriptors, the control path). It sleeps at
//! most [`FD_SLEEP`], or [`MAX_SLEEP`] while a queue without descriptors is attached
//! (such a backend may not use the waker); a sleep that ends by its timeout with
//! nothing ready is followed by one look at every queue and the next sleep, not by a
//! busy spell, so an idle switch costs one pass per timeout.
//!
//! Buffers: the worker owns its caches ([`WorkerBufs`], field `cache`) and lends them
//! to each `rx_burst`/`tx_burst`; no queue keeps a buffer between calls (the ownership
//! rule in `vpcswitch_backend`), so the buffers out of the worker's pools are bounded
//! per worker, however many ports it serves.
//!
//! Quiet queues: a queue that came back empty [`QUIET_POLLS`] times in a row moves to
//! the quiet list; each pass polls every active queue and the next [`QUIET_SLICE`] quiet
//! ones (round robin), and a quiet queue that delivers is active again. With up to
//! [`QUIET_SLICE`] quiet queues nothing changes (each is still polled on every pass);
//! beyond that a pass costs the same however many ports are idle, and the first frame
//! on a long-idle port waits up to (quiet queues / [`QUIET_SLICE`]) passes. The pass
//! before sleeping polls every queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use vpcswitch_backend::sys::Epoll;
use vpcswitch_backend::{Offload, PacketBuf, PortQueue, Waker, WorkerBufs, BUF_SIZE, MAX_BURST};
use vpcswitch_core::{Ctx, DropReason, HostId, Location, NoTrace, Out, PortId, Snapshot, Verdict};
use vpcswitch_tunnel::{RxMeta, Tunnel};

use crate::observe::{Direction, DROP_SAMPLES_PER_SEC};
use crate::stats::{bump, WorkerCounters};
use crate::{Command, Shared};

mod egress;
mod idle;
mod tunnel;

use idle::Idle;
use tunnel::Dest;

/// Where a frame entered: a port here, or another host's tunnel (SPEC 10: split
/// horizon, what came from a tunnel goes to local ports only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// a port on this host
    Port(PortId),
    /// an answer the switch made for a frame from a port on this host (an ARP reply,
    /// an ICMP error, its own ARP request for an owner-less VIP): never replicated to
    /// other hosts (SPEC 10.4: ARP for known addresses never crosses a tunnel)
    Answer(PortId),
    /// the tunnel from this host
    Tunnel(HostId),
}

/// Time without traffic before an adaptive worker sleeps, at the least (its linger).
pub const QUIET: Duration = Duration::from_millis(2);
/// The longest an adaptive worker stays awake without traffic (its linger's bound): a
/// flow whose frames come less than half this apart keeps its worker polling between
/// them; a sparser one is served from sleep. Well under DESIGN's second ("≈ 0% CPU
/// when no traffic has flowed for a second").
pub const LINGER_MAX: Duration = Duration::from_millis(50);
/// Longest sleep while a queue without descriptors is attached (a backend without
/// wake-up support is polled at least this often).
pub const MAX_SLEEP: Duration = Duration::from_millis(10);
/// Longest sleep in `epoll_wait` when every queue has descriptors (housekeeping: an
/// AF_XDP tx ring's leftovers, the idle checks of ring and AF_XDP sockets, which count
/// polls); arrivals and the waker end it at once. Each timeout costs one look at every
/// queue (about 1 µs a queue: 0.5 ms for 500 TAPs), so this sets the idle cost: 1 000
/// TAPs on 2 workers measured 1.3% of a core at 100 ms and 0.67% at 500 ms
/// (tests/many_ports.rs, docs/benchmarks.md).
pub const FD_SLEEP: Duration = Duration::from_millis(500);
/// The shortest frame limit a port can have: Linux's smallest MTU (68, IPv4's minimum)
/// + the Ethernet header. No frame up to this long is checked against its port's limit.
const MIN_MAX_FRAME: usize = 68 + 14;
/// Sleep steps when no epoll set could be made (then descriptors cannot wake it).
const FALLBACK_SLEEP: Duration = Duration::from_millis(2);
/// The epoll token of the waker's eventfd (queues' descriptors carry their port id).
const WAKER_TOKEN: u64 = u64::MAX;
/// The epoll token of the tunnel's socket.
const TUNNEL_TOKEN: u64 = u64::MAX - 1;

/// How a port's queue is watched while the worker sleeps.
#[derive(Debug, Default)]
pub(crate) enum Watch {
    /// no queue, or a queue that is down
    #[default]
    Off,
    /// these descriptors are in the epoll set
    Fds(Vec<std::os::fd::RawFd>),
    /// no descriptor (or it could not be added): the sleep is bounded by [`MAX_SLEEP`]
    NoFd,
}
/// Empty polls in a row after which a queue counts as quiet.
pub const QUIET_POLLS: u32 = 64;
/// Quiet queues polled per pass.
pub const QUIET_SLICE: usize = 64;

/// Threads that close a stopping worker's queues.
const CLOSERS: usize = 32;

/// Closes queues on up to [`CLOSERS`] threads at once. Closing a packet socket, an XDP
/// socket or a TAP queue waits for an RCU grace period in the kernel
/// (`synchronize_net`, 10–30 ms here); one after another, 14 AF_PACKET sockets took
/// 210 ms to close, which a restart adds to the guests' outage. Concurrent closes share
/// grace periods.
fn close_in_parallel(queues: Vec<Option<Box<dyn PortQueue>>>) {
    let mut open: Vec<Box<dyn PortQueue>> = queues.into_iter().flatten().collect();
    if open.len() <= 1 {
        return;
    }
    let per = open.len().div_ceil(CLOSERS);
    std::thread::scope(|s| {
        while !open.is_empty() {
            let batch: Vec<_> = open.drain(..per.min(open.len())).collect();
            // a thread that cannot be made leaves its batch to be closed here
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || drop(batch));
            drop(spawned);
        }
    });
}

pub(crate) struct Worker {
    pub idx: usize,
    pub shared: Arc<Shared>,
    pub queues: Vec<Option<Box<dyn PortQueue>>>,
    /// per port id: empty polls in a row (quiet from [`QUIET_POLLS`] on)
    pub empty_polls: Vec<u32>,
    /// ports with a queue here, polled on every pass (with `quiet`: every rx port)
    pub active: Vec<PortId>,
    /// ports with a queue here, polled [`QUIET_SLICE`] at a time, from `quiet_next`
    pub quiet: Vec<PortId>,
    pub quiet_next: usize,
    pub pending: Vec<Vec<PacketBuf>>,
    /// per port id: the longest frame its queue takes (`PortQueue::max_frame`, read
    /// when it is attached; `usize::MAX` without a queue)
    pub max_frame: Vec<usize>,
    pub dirty: Vec<PortId>,
    pub rxbuf: Vec<PacketBuf>,
    /// the worker's buffer caches, lent to every queue call
    pub cache: WorkerBufs,
    pub waker: Option<Waker>,
    /// the set the worker sleeps on (made when the thread starts)
    pub epoll: Option<Epoll>,
    /// per port id: how its queue is watched
    pub watch: Vec<Watch>,
    /// queues attached with [`Watch::NoFd`]
    pub no_fd: usize,
    /// the clock at the start of the current pass (ns since the switch started)
    pub now_ns: u64,
    /// drop samples taken: (second, count), for the per-worker sample rate
    pub drop_samples: (u64, u32),
    /// this worker's tunnel to the other hosts (SPEC 10; `None` without `[[hosts]]`)
    pub tunnel: Option<Tunnel>,
    /// the senders and VNIs of a tunnel receive burst
    pub tun_meta: Vec<RxMeta>,
    /// a tunnel burst after coalescing, and per frame its sender, VNI, segments and
    /// bytes on the wire; the segments of the run being joined
    pub tun_out: Vec<PacketBuf>,
    pub tun_out_meta: Vec<(RxMeta, u64, u64)>,
    pub tun_run: Vec<PacketBuf>,
    /// the tunnel's receive calls, errors and buffer shortages at the last publish of
    /// its counters
    pub tun_rx_mark: u64,
}

impl Worker {
    /// Worker `idx` of `shared`, with no queue yet, lending `cache` to its queues.
    pub fn new(idx: usize, shared: Arc<Shared>, max_ports: usize, cache: WorkerBufs) -> Worker {
        Worker {
            idx,
            shared,
            queues: (0..max_ports).map(|_| None).collect(),
            empty_polls: vec![0; max_ports],
            active: Vec::new(),
            quiet: Vec::new(),
            quiet_next: 0,
            pending: (0..max_ports).map(|_| Vec::new()).collect(),
            max_frame: vec![usize::MAX; max_ports],
            dirty: Vec::with_capacity(max_ports),
            rxbuf: Vec::with_capacity(MAX_BURST),
            cache,
            waker: None,
            epoll: None,
            watch: (0..max_ports).map(|_| Watch::Off).collect(),
            no_fd: 0,
            now_ns: 0,
            drop_samples: (0, 0),
            tunnel: None,
            tun_meta: Vec::with_capacity(MAX_BURST),
            tun_out: Vec::with_capacity(MAX_BURST),
            tun_out_meta: Vec::with_capacity(MAX_BURST),
            tun_run: Vec::with_capacity(MAX_BURST),
            tun_rx_mark: 0,
        }
    }

    /// Gives port `pid` its queue before the thread starts (later: `Command::Attach`).
    pub fn attach_at_start(&mut self, pid: PortId, q: Box<dyn PortQueue>) {
        let i = pid as usize;
        if i < self.queues.len() {
            // pre-size the tx batch so pushing never allocates
            self.pending[i].reserve(4 * MAX_BURST);
            self.max_frame[i] = q.max_frame();
            self.queues[i] = Some(q);
            self.active.push(pid);
        }
    }

    fn counters(&self) -> &WorkerCounters {
        &self.shared.workers[self.idx].counters
    }

    pub fn run(mut self) {
        // One waker per worker: the one queues attached at start already hold.
        let waker = self
            .waker
            .clone()
            .unwrap_or_else(|| Waker::new(std::thread::current()));
        let _ = self.shared.workers[self.idx].waker.set(waker.clone());
        self.waker = Some(waker.clone());
        self.epoll = Epoll::new().ok();
        if let (Some(ep), Some(fd)) = (&self.epoll, waker.event_fd()) {
            if ep.add(fd, WAKER_TOKEN).is_err() {
                self.epoll = None;
            }
        }
        for pid in 0..self.queues.len() {
            if self.queues[pid].is_some() {
                self.watch(pid);
            }
        }
        // the tunnel's socket wakes a sleeping worker like a queue's descriptor; one
        // that cannot be watched bounds the sleep as a queue without descriptors does
        if let Some(t) = &self.tunnel {
            let watched = self
                .epoll
                .as_ref()
                .is_some_and(|ep| ep.add(t.poll_fd(), TUNNEL_TOKEN).is_ok());
            if !watched {
                self.no_fd += 1;
            }
        }
        let mut idle_loops = 0u32;
        let mut idle = Idle::new();
        // the previous pass: its start (the switch clock) and whether it found frames;
        // the time to this pass's start is charged to busy or idle accordingly
        let mut prev: Option<(u64, bool)> = None;
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.commands();
            let snap = self.shared.snap.load();
            let n = self.poll_once(&snap, false);
            let c = self.counters();
            bump(&c.loops, 1);
            if let Some((t, busy)) = prev {
                let d = self.now_ns.saturating_sub(t);
                bump(if busy { &c.busy_ns } else { &c.idle_ns }, d);
            }
            prev = Some((self.now_ns, n > 0));
            if n > 0 {
                drop(snap);
                bump(&c.busy_loops, 1);
                idle_loops = 0;
                idle.frames(self.now_ns);
                continue;
            }
            idle_loops = idle_loops.saturating_add(1);
            // the decision is taken every 256 idle passes (a clock read), after 1024
            if idle_loops < 1024 || !idle_loops.is_multiple_of(256) {
                drop(snap);
                std::hint::spin_loop();
                continue;
            }
            let policy = snap.config.switch.idle.of(self.idx);
            drop(snap);
            if !idle.may_sleep(policy, self.now_ns) {
                std::hint::spin_loop();
                continue;
            }
            // Sleep: say so first, then look once more, so an arrival is never missed.
            // A sleep that times out with nothing ready: look once more, sleep again.
            loop {
                waker.set_sleeping(true);
                let snap = self.shared.snap.load();
                let n = self.poll_once(&snap, true);
                drop(snap);
                let mut timed_out = false;
                if n == 0
                    && !self.shared.stop.load(Ordering::Relaxed)
                    && self.shared.workers[self.idx].cmds.is_empty()
                {
                    bump(&self.counters().sleeps, 1);
                    idle.slept();
                    timed_out = !self.sleep(&waker);
                }
                waker.set_sleeping(false);
                if n > 0 {
                    idle_loops = 0;
                    idle.frames(self.now_ns);
                }
                if !timed_out {
                    break;
                }
            }
        }
        // Stopping: frames still pending are dropped and counted.
        for pid in std::mem::take(&mut self.dirty) {
            let n = self.pending[pid as usize].len() as u64;
            self.pending[pid as usize].clear();
            self.counters().drop_on(pid, DropReason::PortDown, n);
        }
        close_in_parallel(std::mem::take(&mut self.queues));
    }

    /// Applies queued attach/detach commands.
    fn commands(&mut self) {
        // the common case first: no command, and no shared reference count touched
        if self.shared.workers[self.idx].cmds.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let me = &shared.workers[self.idx];
        while let Some(cmd) = me.cmds.pop() {
            match cmd {
                Command::Attach(pid, mut q) => {
                    if let Some(w) = &self.waker {
                        q.set_waker(w.clone());
                    }
                    let i = pid as usize;
                    if i < self.queues.len() {
                        if self.queues[i].is_none() {
                            self.active.push(pid);
                        }
                        self.unwatch(i);
                        self.max_frame[i] = q.max_frame();
                        self.queues[i] = Some(q);
                        self.watch(i);
                        if let Some(pc) = me.counters.ports.get(i) {
                            pc.down.store(false, Ordering::Relaxed);
                        }
                    }
                }
                Command::Detach(pid) => {
                    let i = pid as usize;
                    if i < self.queues.len() {
                        self.unwatch(i);
                        self.queues[i] = None;
                        self.max_frame[i] = usize::MAX;
                        self.active.retain(|&p| p != pid);
                        self.quiet.retain(|&p| p != pid);
                        self.empty_polls[i] = 0;
                        let n = self.pending[i].len() as u64;
                        if n > 0 {
                            self.pending[i].clear();
                            me.counters.drop_on(pid, DropReason::PortDown, n);
                        }
                        self.dirty.retain(|&p| p != pid);
                    }
                }
                Command::ResetCounters(pid) => {
                    if let Some(pc) = me.counters.ports.get(pid as usize) {
                        pc.reset();
                    }
                }
                Command::Sync => {}
            }
            me.cmd_done.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One pass over the rx queues (every one when `all`, else the active ones and a
    /// slice of the quiet ones, see the module docs); returns the frames received.
    #[inline]
    pub(crate) fn poll_once(&mut self, snap: &Snapshot, all: bool) -> usize {
        let mut ctx = Ctx::at(self.shared.start.elapsed().as_nanos() as u64);
        self.now_ns = ctx.now_ns;
        // one reference-count bump per pass, so the counters can be borrowed while
        // `self` is mutated below
        let shared = self.shared.clone();
        let c = &shared.workers[self.idx].counters;
        let mut total = 0;
        let mut rx = std::mem::take(&mut self.rxbuf);
        let mut i = 0;
        while i < self.active.len() {
            let pid = self.active[i];
            let n = self.poll_queue(snap, &mut ctx, &shared, &mut rx, pid);
            total += n;
            if n == 0 && self.empty_polls[pid as usize] >= QUIET_POLLS {
                self.active.swap_remove(i);
                self.quiet.push(pid);
            } else {
                i += 1;
            }
        }
        // Quiet queues: all of them from the first (the look before sleeping must miss
        // none), else the next QUIET_SLICE from the cursor. A queue that delivers is
        // swapped out for the list's last, which the same position then polls.
        let (mut j, mut left) = if all {
            (0, self.quiet.len())
        } else {
            (self.quiet_next, self.quiet.len().min(QUIET_SLICE))
        };
        while left > 0 {
            if j >= self.quiet.len() {
                j = 0;
            }
            let pid = self.quiet[j];
            let n = self.poll_queue(snap, &mut ctx, &shared, &mut rx, pid);
            total += n;
            left -= 1;
            if n > 0 {
                self.quiet.swap_remove(j);
                self.active.push(pid);
            } else {
                j += 1;
            }
        }
        if !all {
            self.quiet_next = j;
        }
        if self.tunnel.is_some() {
            total += self.poll_tunnel(snap, &mut ctx, &shared, &mut rx);
        }
        self.rxbuf = rx;
        if !self.dirty.is_empty() {
            self.flush(c);
        }
        self.flush_tunnel(c);
        total
    }

    /// One rx burst of port `pid`'s queue through the pipeline; the frames received.
    #[inline]
    fn poll_queue(
        &mut self,
        snap: &Snapshot,
        ctx: &mut Ctx,
        shared: &Shared,
        rx: &mut Vec<PacketBuf>,
        pid: PortId,
    ) -> usize {
        let c = &shared.workers[self.idx].counters;
        let Some(q) = self.queues[pid as usize].as_mut() else {
            return 0;
        };
        let n = q.rx_burst(&mut self.cache, rx, MAX_BURST);
        // frames the device refused, counted once it is drained (a partial burst): a
        // queue that keeps delivering full bursts keeps its counts until then, and
        // the pps path pays nothing per burst
        if n < MAX_BURST {
            let refused = q.take_rx_drops();
            if !refused.is_empty() {
                Self::count_refused(c, pid, refused);
            }
        }
        if n == 0 {
            let e = &mut self.empty_polls[pid as usize];
            *e = e.saturating_add(1);
            if q.is_down() {
                // the first time only: the event thread publishes PortDown
                if let Some(pc) = c.ports.get(pid as usize) {
                    if !pc.down.swap(true, Ordering::Relaxed) {
                        shared.events.bell.ring();
                    }
                }
                if matches!(self.watch[pid as usize], Watch::Fds(_)) {
                    self.unwatch(pid as usize);
                }
            }
            return 0;
        }
        self.empty_polls[pid as usize] = 0;
        bump(&c.burst_hist[n.min(MAX_BURST)], 1);
        let pc = c.ports.get(pid as usize);
        let obs = &shared.observe;
        for mut buf in rx.drain(..) {
            if let Some(pc) = pc {
                bump(&pc.rx_packets, 1);
                bump(&pc.rx_bytes, buf.len() as u64);
            }
            if obs.capturing(pid, Direction::Rx) {
                obs.record(pid, Direction::Rx, ctx.now_ns, buf.frame());
            }
            // SPEC 2.5: the device's offload header is guest input, checked before the
            // frame is, into the trusted form that is all the rest of the path sees
            buf.offload = match Offload::check(&buf.vnet, buf.frame()) {
                Ok(o) => o,
                Err(e) => {
                    self.drop_rx(c, pid, DropReason::from(e), buf);
                    continue;
                }
            };
            ctx.csum_partial = buf.offload.needs_csum();
            ctx.gso = buf.offload.is_gso();
            let (data, len) = buf.parts_mut();
            match snap.process(ctx, pid, data, len, &mut NoTrace) {
                Verdict::Forward(out) => {
                    bump(&c.forwarded, 1);
                    self.emit(snap, c, From::Port(pid), out, buf);
                }
                Verdict::Drop(r) => self.drop_rx(c, pid, r, buf),
                Verdict::DropAndSend(r, out) => {
                    bump(&c.dropped, 1);
                    bump(&c.generated, 1);
                    c.drop_on(pid, r, 1);
                    // the switch built this frame: it carries no offload work (SPEC 2.5)
                    buf.offload = Offload::None;
                    self.emit(snap, c, From::Answer(pid), out, buf);
                }
            }
        }
        n
    }
}
