//! Packet capture and drop sampling, read by an operator while traffic flows.
//!
//! Contract with the workers (the hot path): when nothing is being watched, a worker
//! pays one relaxed load of a shared flag per packet on the paths it watches, nothing
//! else. When a capture or drop sampling is on, a worker copies the frame into a buffer
//! taken from a preallocated pool and hands it over through a lock-free queue; when
//! the pool or the queue is exhausted the record is lost and counted (`lost`), never
//! waited for. Drop samples are also limited per worker to [`DROP_SAMPLES_PER_SEC`], so
//! sampling cannot slow forwarding whatever the drop rate.
//!
//! Consumers (the control socket) drain the queues and give the buffers back.
//!
//! Identity: a port id is reused when a reload deletes a port and adds another (the next
//! tenant). Captures and drop samples are therefore bound to a [`PortIdentity`], the id
//! and the id's *epoch*, which [`crate::Switch::reload`] bumps whenever it takes an id
//! from a port (after the port's queues are detached, before the next port's are
//! attached). Every record carries the epoch read when it was made, a capture only ever
//! records frames of the identity it was started for, and a capture whose port is
//! deleted sees [`Observe::is_current`] turn false: it has ended. Each id's capture bits
//! and epoch share one atomic word, so the bits a worker sees and the epoch it tags a
//! record with always belong together.

//!
//! Each capture has a queue of its own (up to [`MAX_CAPTURES`] at once), so two
//! captures never take or reorder each other's frames, and an optional
//! [`CaptureFilter`] the worker applies before copying a frame.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use vpcswitch_core::{DropReason, PortId};

mod filter;
pub use filter::CaptureFilter;

/// Captures that may run at once (each holds a queue).
pub const MAX_CAPTURES: usize = 8;

/// Bytes kept of each captured frame (longer frames are truncated; the record keeps
/// the original length, as pcap's snaplen does).
pub const SNAPLEN: usize = 2048;
/// Bytes kept of each sampled dropped frame.
pub const DROP_HEAD: usize = 128;
/// Drop samples one worker takes per second at most.
pub const DROP_SAMPLES_PER_SEC: u32 = 100;
/// Capture buffers in the pool (and records in flight).
const CAPTURE_BUFFERS: usize = 1024;
/// Drop samples in flight.
const DROP_QUEUE: usize = 1024;

/// Which way a captured frame was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// received from the port's guest
    Rx = 1,
    /// sent to the port's guest
    Tx = 2,
}

/// A port for the whole of its life: its id, and the id's epoch (bumped whenever the id
/// is given to another port). Two ports that ever had the same id have different
/// identities. Resolve a name with [`crate::Switch::port_identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortIdentity {
    /// the port id
    pub port: PortId,
    /// the id's epoch while this port holds it
    pub epoch: u64,
}

/// A slot word: bits 0–1 the [`Direction`]s being captured, bits 2–7 the capture's
/// queue index + 1 (0: none), from bit 8 the epoch. The control bits are set and
/// cleared together.
const EPOCH_SHIFT: u32 = 8;
const DIR_BITS: u64 = (1 << EPOCH_SHIFT) - 1;
const QUEUE_SHIFT: u32 = 2;
const _: () = assert!(MAX_CAPTURES < (1 << (EPOCH_SHIFT - QUEUE_SHIFT)));

/// Why a capture could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// the port no longer holds its id (a reload deleted it)
    Gone,
    /// [`MAX_CAPTURES`] captures are running
    TooMany,
}

/// One capture's queue and filter.
struct CaptureQueue {
    frames: ArrayQueue<CapturedFrame>,
    filter: ArcSwap<CaptureFilter>,
}

/// Which capture holds each queue: its port identity, and whether it was stopped (the
/// queue is freed once its last frames are taken).
type Owners = Vec<Option<(PortIdentity, bool)>>;

/// One captured frame.
#[derive(Debug)]
pub struct CapturedFrame {
    /// the port
    pub port: PortId,
    /// the port id's epoch when the frame was recorded (see [`PortIdentity`])
    pub epoch: u64,
    /// rx or tx
    pub direction: Direction,
    /// time since the switch started (ns)
    pub ts_ns: u64,
    /// the frame's length on the wire
    pub orig_len: usize,
    /// the first [`SNAPLEN`] bytes
    pub data: Vec<u8>,
}

/// One sampled dropped frame.
#[derive(Debug, Clone)]
pub struct DropSample {
    /// the ingress port
    pub port: PortId,
    /// the port id's epoch when the drop was sampled (see [`PortIdentity`])
    pub epoch: u64,
    /// why it was dropped
    pub reason: DropReason,
    /// time since the switch started (ns)
    pub ts_ns: u64,
    /// the frame's length
    pub len: usize,
    /// its first bytes (`head_len` of them)
    pub head: [u8; DROP_HEAD],
    /// valid bytes in `head`
    pub head_len: usize,
}

impl DropSample {
    /// The port the drop was charged to, for the whole of its life.
    pub fn identity(&self) -> PortIdentity {
        PortIdentity {
            port: self.port,
            epoch: self.epoch,
        }
    }
}

impl CapturedFrame {
    /// The port the frame was captured on, for the whole of its life.
    pub fn identity(&self) -> PortIdentity {
        PortIdentity {
            port: self.port,
            epoch: self.epoch,
        }
    }
}

/// See the module docs.
pub struct Observe {
    /// per port id: epoch << [`EPOCH_SHIFT`] | `Direction` bits being captured
    slots: Box<[AtomicU64]>,
    /// ids with a capture on (the one word the hot path reads; exact, kept by the
    /// compare-and-swap that changes a slot's bits from or to zero)
    capturing: AtomicU32,
    free: ArrayQueue<Vec<u8>>,
    /// one per running capture (index in the slot word)
    queues: Box<[CaptureQueue]>,
    /// control side only (start, take, stop): never touched by a worker
    owners: Mutex<Owners>,
    /// drop sampling is on while the switch's clock is below this (ns), 0: off
    drops_until: AtomicU64,
    drops: ArrayQueue<DropSample>,
    /// records lost (pool empty, queue full, over the per-worker rate)
    lost: AtomicU64,
}

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("capturing", &self.capturing.load(Ordering::Relaxed))
            .field("lost", &self.lost.load(Ordering::Relaxed))
            .finish()
    }
}

impl Observe {
    pub(crate) fn new(max_ports: usize) -> Observe {
        let free = ArrayQueue::new(CAPTURE_BUFFERS);
        for _ in 0..CAPTURE_BUFFERS {
            let _ = free.push(Vec::with_capacity(SNAPLEN));
        }
        Observe {
            slots: (0..max_ports).map(|_| AtomicU64::new(0)).collect(),
            capturing: AtomicU32::new(0),
            free,
            queues: (0..MAX_CAPTURES)
                .map(|_| CaptureQueue {
                    frames: ArrayQueue::new(CAPTURE_BUFFERS),
                    filter: ArcSwap::from_pointee(CaptureFilter::default()),
                })
                .collect(),
            owners: Mutex::new(vec![None; MAX_CAPTURES]),
            drops_until: AtomicU64::new(0),
            drops: ArrayQueue::new(DROP_QUEUE),
            lost: AtomicU64::new(0),
        }
    }

    /// Hot path: is `port` being captured in `dir`?
    #[inline]
    pub(crate) fn capturing(&self, port: PortId, dir: Direction) -> bool {
        self.capturing.load(Ordering::Relaxed) != 0
            && self
                .slots
                .get(port as usize)
                .is_some_and(|c| c.load(Ordering::Relaxed) & dir as u64 != 0)
    }

    /// Records a frame being captured (after [`Self::capturing`] said yes). The slot is
    /// read again: the record is tagged with the epoch of the capture it is for, and
    /// nothing is recorded if that capture stopped or its port was retired meanwhile.
    pub(crate) fn record(&self, port: PortId, dir: Direction, ts_ns: u64, frame: &[u8]) {
        let Some(word) = self
            .slots
            .get(port as usize)
            .map(|w| w.load(Ordering::Acquire))
        else {
            return;
        };
        if word & dir as u64 == 0 {
            return;
        }
        let Some(q) = ((word & DIR_BITS) >> QUEUE_SHIFT)
            .checked_sub(1)
            .and_then(|i| self.queues.get(i as usize))
        else {
            return;
        };
        if !q.filter.load().matches(frame) {
            return;
        }
        let Some(mut data) = self.free.pop() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(SNAPLEN)]);
        let rec = CapturedFrame {
            port,
            epoch: word >> EPOCH_SHIFT,
            direction: dir,
            ts_ns,
            orig_len: frame.len(),
            data,
        };
        if let Err(rec) = q.frames.push(rec) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            let _ = self.free.push(rec.data);
        }
    }

    /// Hot path: is drop sampling on at `now_ns`?
    #[inline]
    pub(crate) fn sampling_drops(&self, now_ns: u64) -> bool {
        now_ns < self.drops_until.load(Ordering::Relaxed)
    }

    /// Records a dropped frame (after [`Self::sampling_drops`] said yes and the
    /// worker's own rate allowed it).
    pub(crate) fn sample_drop(&self, port: PortId, reason: DropReason, ts_ns: u64, f: &[u8]) {
        let n = f.len().min(DROP_HEAD);
        let mut head = [0u8; DROP_HEAD];
        head[..n].copy_from_slice(&f[..n]);
        let s = DropSample {
            port,
            epoch: self.epoch(port),
            reason,
            ts_ns,
            len: f.len(),
            head,
            head_len: n,
        };
        if self.drops.push(s).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_lost(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn epoch(&self, port: PortId) -> u64 {
        self.slots
            .get(port as usize)
            .map_or(0, |w| w.load(Ordering::Acquire) >> EPOCH_SHIFT)
    }

    /// The identity of whichever port holds id `port` now (`None` past the ids the
    /// switch was sized for). To bind a port *name*, use [`crate::Switch::port_identity`],
    /// which cannot race with a reload.
    pub fn identity(&self, port: PortId) -> Option<PortIdentity> {
        self.slots.get(port as usize).map(|w| PortIdentity {
            port,
            epoch: w.load(Ordering::Acquire) >> EPOCH_SHIFT,
        })
    }

    /// Does `who` still hold its id? False once a reload deleted the port: its capture
    /// has ended, and nothing more is recorded for it.
    pub fn is_current(&self, who: PortIdentity) -> bool {
        self.identity(who.port) == Some(who)
    }

    /// Changes the bits of `who`'s slot with `f`, if `who` still holds it; keeps the
    /// count of capturing slots exact. False if `who` no longer holds the id.
    fn update_bits(&self, who: PortIdentity, f: impl Fn(u64) -> u64) -> bool {
        let Some(slot) = self.slots.get(who.port as usize) else {
            return false;
        };
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            if cur >> EPOCH_SHIFT != who.epoch {
                return false;
            }
            let new = (cur & !DIR_BITS) | (f(cur & DIR_BITS) & DIR_BITS);
            match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.count_change(cur & DIR_BITS, new & DIR_BITS);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    fn count_change(&self, old_bits: u64, new_bits: u64) {
        match (old_bits != 0, new_bits != 0) {
            (false, true) => {
                self.capturing.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.capturing.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Starts capturing `who` in the given directions, keeping every frame; other
    /// captures keep running. False (nothing started) if `who` no longer holds its id
    /// or [`MAX_CAPTURES`] are running. See [`Self::start_capture_with`].
    pub fn start_capture(&self, who: PortIdentity, rx: bool, tx: bool) -> bool {
        self.start_capture_with(who, rx, tx, CaptureFilter::default())
            .is_ok()
    }

    /// Starts capturing `who` in the given directions, keeping the frames `filter`
    /// matches, in a queue of its own; a capture of `who` already running is changed.
    pub fn start_capture_with(
        &self,
        who: PortIdentity,
        rx: bool,
        tx: bool,
        filter: CaptureFilter,
    ) -> Result<(), CaptureError> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let (idx, fresh) = match owners.iter().position(|o| *o == Some((who, false))) {
            Some(i) => (i, false),
            None => {
                if !self.is_current(who) {
                    return Err(CaptureError::Gone);
                }
                let i = owners
                    .iter()
                    .position(Option::is_none)
                    .ok_or(CaptureError::TooMany)?;
                // whatever a previous holder left (a late worker's frame)
                self.drain(i);
                (i, true)
            }
        };
        self.queues[idx].filter.store(Arc::new(filter));
        let bits = ((rx as u64) * Direction::Rx as u64)
            | ((tx as u64) * Direction::Tx as u64)
            | ((idx as u64 + 1) << QUEUE_SHIFT);
        if self.update_bits(who, |_| bits) {
            owners[idx] = Some((who, false));
            Ok(())
        } else {
            // a queue this call took is given back; a running capture's stays (its
            // frames are still to be taken)
            if fresh {
                owners[idx] = None;
            }
            Err(CaptureError::Gone)
        }
    }

    /// Stops capturing `who` (its slot's bits are left alone if the id went to another
    /// port since). Frames already queued stay for [`Self::take_frames`]; the queue is
    /// freed once they are taken.
    pub fn stop_capture(&self, who: PortIdentity) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        self.update_bits(who, |_| 0);
        for i in 0..owners.len() {
            if owners[i].is_some_and(|(w, _)| w == who) {
                owners[i] = Some((who, true));
                if self.queues[i].frames.is_empty() {
                    owners[i] = None;
                }
            }
        }
    }

    /// Gives back every frame waiting in queue `i`.
    fn drain(&self, i: usize) {
        while let Some(f) = self.queues[i].frames.pop() {
            let _ = self.free.push(f.data);
        }
    }

    /// The port holding `port` is gone (a reload deleted it, and its queues are
    /// detached): its capture stops, and the id's next holder gets a new epoch. Called
    /// by the reload, under its lock, before the id is given to another port.
    pub(crate) fn retire(&self, port: PortId) {
        let Some(slot) = self.slots.get(port as usize) else {
            return;
        };
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let new = ((cur >> EPOCH_SHIFT) + 1) << EPOCH_SHIFT;
            match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.count_change(cur & DIR_BITS, 0);
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Takes the captured frames of `who` waiting now (at most `max`), in the order they
    /// were recorded, from its own queue: other captures' frames are never touched.
    /// Give each frame's buffer back with [`Self::recycle`]. After
    /// [`Self::stop_capture`], the call that finds the queue empty frees it.
    pub fn take_frames(&self, who: PortIdentity, max: usize, out: &mut Vec<CapturedFrame>) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = owners.iter().position(|o| o.is_some_and(|(w, _)| w == who)) else {
            return;
        };
        let q = &self.queues[i];
        let mut n = 0;
        while n < max {
            let Some(f) = q.frames.pop() else { break };
            if f.identity() == who {
                out.push(f);
                n += 1;
            } else {
                // a worker that read the slot before this queue changed hands
                let _ = self.free.push(f.data);
            }
        }
        if owners[i].is_some_and(|(_, stopped)| stopped) && q.frames.is_empty() {
            owners[i] = None;
        }
    }

    /// Gives a captured frame's buffer back to the pool.
    pub fn recycle(&self, f: CapturedFrame) {
        let _ = self.free.push(f.data);
    }

    /// Turns drop sampling on until `until_ns` on the switch's clock (a follower renews
    /// it while it reads, so sampling stops by itself when it goes away).
    pub fn sample_drops_until(&self, until_ns: u64) {
        self.drops_until.fetch_max(until_ns, Ordering::Relaxed);
    }

    /// Takes the drop samples waiting now.
    pub fn take_drops(&self, out: &mut Vec<DropSample>) {
        while let Some(d) = self.drops.pop() {
            out.push(d);
        }
    }

    /// Records lost so far (pool empty, queue full, over the per-worker sample rate).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(o: &Observe, port: PortId) -> PortIdentity {
        o.identity(port).unwrap()
    }

    #[test]
    fn capture_records_only_what_is_asked_and_recycles() {
        let o = Observe::new(4);
        assert!(!o.capturing(1, Direction::Rx));
        assert!(o.start_capture(who(&o, 1), true, false));
        assert!(o.capturing(1, Direction::Rx));
        assert!(!o.capturing(1, Direction::Tx));
        assert!(!o.capturing(2, Direction::Rx));
        assert!(
            !o.capturing(99, Direction::Rx),
            "unknown ports are not captured"
        );
        assert!(o.identity(99).is_none());
        o.record(1, Direction::Rx, 5, &[7u8; 3000]);
        // not asked for: the worker's check says no, and record itself refuses too
        o.record(2, Direction::Rx, 6, &[8u8; 60]);
        let mut v = Vec::new();
        o.take_frames(who(&o, 1), 10, &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].orig_len, v[0].data.len()), (3000, SNAPLEN));
        o.recycle(v.pop().unwrap());
        o.take_frames(who(&o, 2), 10, &mut v);
        assert!(v.is_empty(), "port 2 was not being captured");
        o.stop_capture(who(&o, 1));
        assert!(!o.capturing(1, Direction::Rx));
        assert_eq!(o.capturing.load(Ordering::Relaxed), 0);
    }

    /// SPEC 8.1 / issue 15 item 10: a capture follows a port's identity, not its id.
    #[test]
    fn a_retired_id_ends_its_capture_and_the_next_holder_is_not_captured() {
        let o = Observe::new(4);
        let a = who(&o, 1);
        assert!(o.start_capture(a, true, true));
        o.record(1, Direction::Rx, 1, &[1u8; 60]);
        o.retire(1);
        assert!(!o.is_current(a), "the capture has ended");
        assert!(!o.capturing(1, Direction::Rx), "and stopped");
        assert_eq!(o.capturing.load(Ordering::Relaxed), 0);
        let b = who(&o, 1);
        assert_ne!(a, b);
        // a worker that checked before the retire records nothing after it
        o.record(1, Direction::Rx, 2, &[2u8; 60]);
        // the old capture cannot be restarted on the new holder
        assert!(!o.start_capture(a, true, true));
        assert!(o.start_capture(b, true, false));
        o.record(1, Direction::Rx, 3, &[3u8; 60]);
        // the old consumer's stop does not stop the new capture
        o.stop_capture(a);
        assert!(o.capturing(1, Direction::Rx));
        let mut v = Vec::new();
        o.take_frames(a, 10, &mut v);
        assert_eq!(v.len(), 1, "only the frame recorded before the retire");
        assert_eq!(v[0].data[0], 1);
        v.clear();
        o.take_frames(b, 10, &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].data[0], 3);
        // drop samples carry the identity of the holder at the time
        o.sample_drop(1, DropReason::Hairpin, 4, &[4u8; 60]);
        let mut d = Vec::new();
        o.take_drops(&mut d);
        assert_eq!(d[0].identity(), b);
    }

    /// Two captures each get their own frames, in the order recorded, whichever
    /// drains first (they used to share a queue: taking one's frames re-queued the
    /// other's behind later ones); a filter keeps only what it matches; at most
    /// MAX_CAPTURES run at once.
    #[test]
    fn captures_have_their_own_queues_order_and_filters() {
        let o = Observe::new(MAX_CAPTURES + 2);
        let (a, b) = (who(&o, 0), who(&o, 1));
        assert!(o.start_capture(a, true, true));
        let only_arp = CaptureFilter::parse("arp").unwrap();
        assert_eq!(o.start_capture_with(b, true, true, only_arp), Ok(()));
        let arp = vpcswitch_wire::build::garp(
            vpcswitch_model::MacAddr([2, 0, 0, 0, 0, 1]),
            "10.0.0.1".parse().unwrap(),
        );
        let mut not_arp = arp.clone();
        not_arp[12..14].copy_from_slice(&[0x08, 0x00]);
        for i in 0..6u8 {
            let mut f = if i % 2 == 0 {
                arp.clone()
            } else {
                not_arp.clone()
            };
            f[20] = i;
            o.record(0, Direction::Rx, u64::from(i), &f);
            o.record(1, Direction::Tx, u64::from(i), &f);
        }
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        // b drains first, a little at a time: a's order is untouched
        o.take_frames(b, 1, &mut vb);
        o.take_frames(b, 10, &mut vb);
        o.take_frames(a, 10, &mut va);
        let order = |v: &[CapturedFrame]| v.iter().map(|f| f.data[20]).collect::<Vec<_>>();
        assert_eq!(order(&va), [0, 1, 2, 3, 4, 5]);
        assert_eq!(order(&vb), [0, 2, 4], "only ARP");
        assert!(vb.iter().all(|f| f.direction == Direction::Tx));
        // the limit, and the queue freed by stop + take
        let mut more = Vec::new();
        for p in 2..MAX_CAPTURES as u32 {
            assert!(o.start_capture(who(&o, p), true, false));
            more.push(who(&o, p));
        }
        let last = who(&o, MAX_CAPTURES as u32);
        assert_eq!(
            o.start_capture_with(last, true, true, CaptureFilter::default()),
            Err(CaptureError::TooMany)
        );
        o.stop_capture(a);
        assert_eq!(
            o.start_capture_with(last, true, true, CaptureFilter::default()),
            Ok(()),
            "a's queue was empty: freed at stop"
        );
        o.record(1, Direction::Tx, 9, &arp);
        o.stop_capture(b);
        assert!(
            !o.start_capture(who(&o, MAX_CAPTURES as u32 + 1), true, false),
            "b's queue still holds a frame: not free yet"
        );
        let mut vb = Vec::new();
        o.take_frames(b, 10, &mut vb);
        assert_eq!(vb.len(), 1);
        assert!(o.start_capture(who(&o, MAX_CAPTURES as u32 + 1), true, false));
    }

    #[test]
    fn a_full_pool_loses_and_counts_never_blocks() {
        let o = Observe::new(1);
        assert!(o.start_capture(who(&o, 0), true, true));
        for _ in 0..CAPTURE_BUFFERS + 10 {
            o.record(0, Direction::Tx, 1, &[0u8; 64]);
        }
        assert_eq!(o.lost(), 10);
        for _ in 0..DROP_QUEUE + 3 {
            o.sample_drop(0, DropReason::Hairpin, 1, &[1u8; 300]);
        }
        assert_eq!(o.lost(), 13);
        let mut d = Vec::new();
        o.take_drops(&mut d);
        assert_eq!(d.len(), DROP_QUEUE);
        assert_eq!((d[0].len, d[0].head_len), (300, DROP_HEAD));
        assert!(!o.sampling_drops(5));
        o.sample_drops_until(10);
        assert!(o.sampling_drops(5) && !o.sampling_drops(10));
    }
}
