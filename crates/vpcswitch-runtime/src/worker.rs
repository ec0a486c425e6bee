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
use vpcswitch_core::{Ctx, DropReason, NoTrace, Out, PortId, Snapshot, Verdict};
use vpcswitch_model::IdlePolicy;

use crate::observe::{Direction, DROP_SAMPLES_PER_SEC};
use crate::stats::{bump, WorkerCounters};
use crate::{Command, Shared};

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

/// The adaptive idle policy's state: how long to keep polling after the last frame.
///
/// A worker that sleeps pays a wake-up on the next frame (the scheduler, and in a VM
/// the halted vCPU's exit: ~20 µs and a long tail here, docs/architecture.md "Where
/// the time goes"). Polling on costs a core. So the linger follows the traffic: when a
/// sleep ends with frames that came `gap` after the previous ones, and `gap` is under
/// half of [`LINGER_MAX`], the next linger is `2 × gap` (so a steady flow of a frame
/// every `gap` keeps the worker awake, without a wake-up per frame); a larger gap (a
/// sparse flow, which polling would not serve any better per core spent) brings it back
/// to [`QUIET`]. With no traffic, a worker sleeps [`LINGER_MAX`] at the latest after
/// its last frame.
#[derive(Debug)]
struct Idle {
    /// the switch clock at the last pass that found frames
    last_frames_ns: u64,
    /// time without frames before sleeping
    linger_ns: u64,
    /// a sleep happened since the last frames
    slept: bool,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            last_frames_ns: 0,
            linger_ns: QUIET.as_nanos() as u64,
            slept: false,
        }
    }

    /// A pass at `now_ns` found frames.
    #[inline]
    fn frames(&mut self, now_ns: u64) {
        if self.slept {
            self.slept = false;
            let gap = now_ns.saturating_sub(self.last_frames_ns);
            let max = LINGER_MAX.as_nanos() as u64;
            self.linger_ns = if gap < max / 2 {
                (2 * gap).max(QUIET.as_nanos() as u64)
            } else {
                QUIET.as_nanos() as u64
            };
        }
        self.last_frames_ns = now_ns;
    }

    /// The worker goes to sleep.
    fn slept(&mut self) {
        self.slept = true;
    }

    /// Whether a worker whose queues are empty at `now_ns` may sleep under `policy`.
    fn may_sleep(&self, policy: IdlePolicy, now_ns: u64) -> bool {
        match policy {
            IdlePolicy::BusyPoll => false,
            IdlePolicy::Adaptive => now_ns.saturating_sub(self.last_frames_ns) >= self.linger_ns,
        }
    }
}

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

    /// Sleeps until traffic may have arrived: in `epoll_wait` on the worker's set (the
    /// queues' descriptors and the waker's eventfd), for at most [`FD_SLEEP`], or
    /// [`MAX_SLEEP`] while a queue without descriptors is attached. False when the
    /// sleep ran out with nothing ready.
    fn sleep(&mut self, waker: &Waker) -> bool {
        let bound = if self.no_fd > 0 || waker.event_fd().is_none() {
            MAX_SLEEP
        } else {
            FD_SLEEP
        };
        let Some(ep) = &self.epoll else {
            // no epoll set: descriptors cannot wake us, so sleep in short steps
            let has_fds = self.watch.iter().any(|w| matches!(w, Watch::Fds(_)));
            std::thread::park_timeout(if has_fds { FALLBACK_SLEEP } else { MAX_SLEEP });
            return true;
        };
        match ep.wait(bound.as_millis() as i32) {
            Ok(0) => false,
            Ok(_) => {
                waker.clear();
                true
            }
            Err(_) => {
                std::thread::park_timeout(FALLBACK_SLEEP);
                true
            }
        }
    }

    /// Adds port `pid`'s queue to the sleep set (its descriptors, or [`Watch::NoFd`]).
    fn watch(&mut self, pid: usize) {
        self.unwatch(pid);
        let Some(q) = self.queues.get(pid).and_then(Option::as_ref) else {
            return;
        };
        let mut fds = Vec::new();
        q.poll_fds(&mut fds);
        let added = match &self.epoll {
            Some(ep) if !fds.is_empty() => {
                let mut ok = true;
                for (k, &fd) in fds.iter().enumerate() {
                    if ep.add(fd, pid as u64).is_err() {
                        for &f in &fds[..k] {
                            let _ = ep.remove(f);
                        }
                        ok = false;
                        break;
                    }
                }
                ok
            }
            _ => false,
        };
        self.watch[pid] = if added {
            Watch::Fds(fds)
        } else {
            self.no_fd += 1;
            Watch::NoFd
        };
    }

    /// Takes port `pid`'s queue out of the sleep set (before the queue is dropped, or
    /// when its device is down: a deleted device's descriptor is always "ready").
    #[cold]
    fn unwatch(&mut self, pid: usize) {
        match self.watch.get_mut(pid).map(std::mem::take) {
            Some(Watch::Fds(fds)) => {
                if let Some(ep) = &self.epoll {
                    for fd in fds {
                        let _ = ep.remove(fd);
                    }
                }
            }
            Some(Watch::NoFd) => self.no_fd = self.no_fd.saturating_sub(1),
            Some(Watch::Off) | None => {}
        }
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
        self.rxbuf = rx;
        if !self.dirty.is_empty() {
            self.flush(c);
        }
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
                if let Some(pc) = c.ports.get(pid as usize) {
                    pc.down.store(true, Ordering::Relaxed);
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
            let (data, len) = buf.parts_mut();
            match snap.process(ctx, pid, data, len, &mut NoTrace) {
                Verdict::Forward(out) => {
                    bump(&c.forwarded, 1);
                    self.emit(snap, c, pid, out, buf);
                }
                Verdict::Drop(r) => self.drop_rx(c, pid, r, buf),
                Verdict::DropAndSend(r, out) => {
                    bump(&c.dropped, 1);
                    bump(&c.generated, 1);
                    c.drop_on(pid, r, 1);
                    // the switch built this frame: it carries no offload work (SPEC 2.5)
                    buf.offload = Offload::None;
                    self.emit(snap, c, pid, out, buf);
                }
            }
        }
        n
    }

    /// Counts the frames a device refused on receive (SPEC 2.4: no drop without a
    /// reason).
    #[cold]
    fn count_refused(c: &WorkerCounters, pid: PortId, d: vpcswitch_backend::RxDrops) {
        bump(&c.dropped, d.too_long + d.malformed + d.no_buffer);
        if d.too_long > 0 {
            c.drop_on(pid, DropReason::FrameTooLong, d.too_long);
        }
        if d.malformed > 0 {
            c.drop_on(pid, DropReason::RxMalformed, d.malformed);
        }
        if d.no_buffer > 0 {
            c.drop_on(pid, DropReason::NoBuffer, d.no_buffer);
        }
    }

    /// Drops a received frame for `r`: counted on its port, sampled within the rate.
    #[inline]
    fn drop_rx(&mut self, c: &WorkerCounters, pid: PortId, r: DropReason, buf: PacketBuf) {
        bump(&c.dropped, 1);
        c.drop_on(pid, r, 1);
        if self.shared.observe.sampling_drops(self.now_ns) {
            self.sample_drop(pid, r, &buf);
        }
        self.cache.free(buf);
    }

    #[inline]
    fn emit(
        &mut self,
        snap: &Snapshot,
        c: &WorkerCounters,
        in_port: PortId,
        out: Out,
        buf: PacketBuf,
    ) {
        let list: &[PortId] = match out {
            Out::Port(q) => return self.enqueue(c, q, buf),
            Out::Flood(s) => snap.subnets.get(s as usize).map_or(&[], |s| &s.ports),
            Out::VipPorts(v) => snap.vips.get(v as usize).map_or(&[], |v| &v.ports),
        };
        for &q in list {
            if q == in_port {
                continue;
            }
            // a jumbo frame (multi-buffer AF_XDP, a TAP guest's large MTU) is copied
            // into a large buffer
            let copy = if buf.len() > BUF_SIZE {
                self.cache.alloc_large()
            } else {
                self.cache.alloc()
            };
            match copy {
                Some(mut copy) if copy.capacity() >= buf.len() => {
                    copy.fill(buf.frame());
                    copy.offload = buf.offload;
                    self.enqueue(c, q, copy);
                }
                _ => c.drop_on(q, DropReason::NoBuffer, 1),
            }
        }
        self.cache.free(buf);
        // A flood queues one copy per port, and a port's queue is flushed on its own
        // only at 4 × MAX_BURST: a few broadcasts in a large subnet would hold the
        // worker's whole pool until the end of the pass (`no_buffer` for everyone).
        // Bound what floods may hold: past FLOOD_HELD queued frames, send them now.
        const FLOOD_HELD: usize = 16 * MAX_BURST;
        let held: usize = self
            .dirty
            .iter()
            .map(|&q| self.pending.get(q as usize).map_or(0, Vec::len))
            .sum();
        if held >= FLOOD_HELD {
            self.flush(c);
        }
    }

    /// Hands a dropped frame to drop sampling, within the per-worker rate.
    #[cold]
    fn sample_drop(&mut self, port: PortId, r: DropReason, buf: &PacketBuf) {
        let obs = &self.shared.observe;
        let sec = self.now_ns / 1_000_000_000;
        if self.drop_samples.0 != sec {
            self.drop_samples = (sec, 0);
        }
        if self.drop_samples.1 >= DROP_SAMPLES_PER_SEC {
            obs.count_lost();
            return;
        }
        self.drop_samples.1 += 1;
        obs.sample_drop(port, r, self.now_ns, buf.frame());
    }

    #[inline]
    fn enqueue(&mut self, c: &WorkerCounters, q: PortId, mut buf: PacketBuf) {
        let i = q as usize;
        let Some(queue) = self.queues.get(i).and_then(Option::as_ref) else {
            c.drop_on(q, DropReason::PortDown, 1);
            self.cache.free(buf);
            return;
        };
        // Offload work a destination cannot take is done here: segmentation, or the
        // checksum, at the place the frame's own headers give (SPEC 2.5).
        if buf.offload != Offload::None && !queue.accepts_offload() {
            if buf.offload.is_gso() {
                self.segment(c, q, buf);
                return;
            }
            let mut o = buf.offload;
            if !o.finish_checksum(buf.frame_mut()) {
                c.drop_on(q, DropReason::BadOffload, 1);
                self.cache.free(buf);
                return;
            }
            buf.offload = o;
        }
        // longer than the destination's device takes (its MTU): dropped, counted; a
        // super-frame for a device that takes offload is its to cut
        // (the constant first: a frame no interface can refuse costs no load)
        if buf.len() > MIN_MAX_FRAME && buf.len() > self.max_frame[i] && !buf.offload.is_gso() {
            c.drop_on(q, DropReason::MtuExceeded, 1);
            self.cache.free(buf);
            return;
        }
        let obs = &self.shared.observe;
        if obs.capturing(q, Direction::Tx) {
            obs.record(q, Direction::Tx, self.now_ns, buf.frame());
        }
        let p = &mut self.pending[i];
        if p.is_empty() {
            self.dirty.push(q);
        }
        p.push(buf);
        if p.len() >= 4 * MAX_BURST {
            self.flush(c);
        }
    }

    /// Software TSO: cuts a TCPv4 super-frame into segments of its checked size (small
    /// buffers, full checksums) for a port without offload; at most
    /// `MAX_GSO_SEGMENTS`, as checked at ingress (SPEC 2.5), and counted.
    #[cold]
    fn segment(&mut self, c: &WorkerCounters, q: PortId, buf: PacketBuf) {
        let Some(l) = buf.offload.segments(buf.frame()) else {
            c.drop_on(q, DropReason::BadOffload, 1);
            self.cache.free(buf);
            return;
        };
        bump(&c.segments, l.count() as u64);
        for i in 0..l.count() {
            let Some(mut seg) = self.cache.alloc() else {
                c.drop_on(q, DropReason::NoBuffer, 1);
                continue;
            };
            let (data, len) = seg.parts_mut();
            match l.write_segment(buf.frame(), i, data) {
                Some(n) => {
                    *len = n;
                    seg.offload = Offload::None;
                    self.enqueue(c, q, seg);
                }
                None => {
                    c.drop_on(q, DropReason::BadOffload, 1);
                    self.cache.free(seg);
                }
            }
        }
        self.cache.free(buf);
    }

    fn flush(&mut self, c: &WorkerCounters) {
        for k in 0..self.dirty.len() {
            let pid = self.dirty[k];
            let i = pid as usize;
            let bufs = &mut self.pending[i];
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            let n = bufs.len();
            let Some(q) = self.queues[i].as_mut() else {
                bufs.clear();
                c.drop_on(pid, DropReason::PortDown, n as u64);
                continue;
            };
            let r = q.tx_burst(&mut self.cache, bufs);
            bufs.clear();
            if let Some(pc) = c.ports.get(i) {
                bump(&pc.tx_packets, r.sent as u64);
                if r.full == 0 && r.errors == 0 {
                    bump(&pc.tx_bytes, bytes);
                } else {
                    // bytes of the frames that were sent are not tracked one by one on
                    // this rare path: charge the average
                    bump(&pc.tx_bytes, bytes * r.sent as u64 / n.max(1) as u64);
                }
            }
            if r.full > 0 {
                c.drop_on(pid, DropReason::TxFull, r.full as u64);
            }
            if r.errors > 0 {
                c.drop_on(pid, DropReason::TxError, r.errors as u64);
            }
        }
        self.dirty.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn busy_poll_never_sleeps() {
        let idle = Idle::new();
        assert!(!idle.may_sleep(IdlePolicy::BusyPoll, 3_600_000 * MS));
    }

    #[test]
    fn adaptive_lingers_quiet_then_follows_a_steady_flow_and_forgets_it() {
        let q = QUIET.as_nanos() as u64;
        let mut idle = Idle::new();
        idle.frames(1000 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1000 * MS + q - 1));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 1000 * MS + q));
        // it slept; a frame 10 ms after the last: stay awake 20 ms from now on
        idle.slept();
        idle.frames(1010 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1029 * MS));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 1030 * MS));
        // frames while awake do not change the linger (the flow is served)
        idle.frames(1020 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1039 * MS));
        // a sparse flow (a frame a second) brings it back to QUIET
        idle.slept();
        idle.frames(2020 * MS);
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 2020 * MS + q));
        // a gap just under half the bound gives the bound, never more
        let max = LINGER_MAX.as_nanos() as u64;
        idle.slept();
        idle.frames(2020 * MS + max / 2 - 1);
        let t = 2020 * MS + max / 2 - 1;
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, t + max - 3));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, t + max));
    }
}
