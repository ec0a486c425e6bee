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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crossbeam_queue::ArrayQueue;
use vpcswitch_core::{DropReason, PortId};

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

/// One captured frame.
#[derive(Debug)]
pub struct CapturedFrame {
    /// the port
    pub port: PortId,
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

/// See the module docs.
pub struct Observe {
    /// per port id: `Direction` bits being captured
    capture: Box<[AtomicU8]>,
    /// any capture on (the one flag the hot path reads)
    capture_on: AtomicBool,
    free: ArrayQueue<Vec<u8>>,
    frames: ArrayQueue<CapturedFrame>,
    /// drop sampling is on while the switch's clock is below this (ns), 0: off
    drops_until: AtomicU64,
    drops: ArrayQueue<DropSample>,
    /// records lost (pool empty, queue full, over the per-worker rate)
    lost: AtomicU64,
}

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("capture_on", &self.capture_on.load(Ordering::Relaxed))
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
            capture: (0..max_ports).map(|_| AtomicU8::new(0)).collect(),
            capture_on: AtomicBool::new(false),
            free,
            frames: ArrayQueue::new(CAPTURE_BUFFERS),
            drops_until: AtomicU64::new(0),
            drops: ArrayQueue::new(DROP_QUEUE),
            lost: AtomicU64::new(0),
        }
    }

    /// Hot path: is `port` being captured in `dir`?
    #[inline]
    pub(crate) fn capturing(&self, port: PortId, dir: Direction) -> bool {
        self.capture_on.load(Ordering::Relaxed)
            && self
                .capture
                .get(port as usize)
                .is_some_and(|c| c.load(Ordering::Relaxed) & dir as u8 != 0)
    }

    /// Records a frame being captured (after [`Self::capturing`] said yes).
    pub(crate) fn record(&self, port: PortId, dir: Direction, ts_ns: u64, frame: &[u8]) {
        let Some(mut data) = self.free.pop() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(SNAPLEN)]);
        let rec = CapturedFrame {
            port,
            direction: dir,
            ts_ns,
            orig_len: frame.len(),
            data,
        };
        if let Err(rec) = self.frames.push(rec) {
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

    /// Starts capturing `port` in the given directions (bits of [`Direction`]); other
    /// captures keep running.
    pub fn start_capture(&self, port: PortId, rx: bool, tx: bool) {
        let bits = ((rx as u8) * Direction::Rx as u8) | ((tx as u8) * Direction::Tx as u8);
        if let Some(c) = self.capture.get(port as usize) {
            c.fetch_or(bits, Ordering::Relaxed);
            self.capture_on.store(true, Ordering::Release);
        }
    }

    /// Stops capturing `port`.
    pub fn stop_capture(&self, port: PortId) {
        if let Some(c) = self.capture.get(port as usize) {
            c.store(0, Ordering::Relaxed);
        }
        let any = self.capture.iter().any(|c| c.load(Ordering::Relaxed) != 0);
        self.capture_on.store(any, Ordering::Release);
    }

    /// Takes the captured frames of `port` waiting now (at most `max`); frames of other
    /// ports stay queued. Give each frame's buffer back with [`Self::recycle`].
    pub fn take_frames(&self, port: PortId, max: usize, out: &mut Vec<CapturedFrame>) {
        let mut others = Vec::new();
        while out.len() < max {
            let Some(f) = self.frames.pop() else { break };
            if f.port == port {
                out.push(f);
            } else {
                others.push(f);
            }
        }
        for f in others {
            if let Err(f) = self.frames.push(f) {
                let _ = self.free.push(f.data);
            }
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

    #[test]
    fn capture_records_only_what_is_asked_and_recycles() {
        let o = Observe::new(4);
        assert!(!o.capturing(1, Direction::Rx));
        o.start_capture(1, true, false);
        assert!(o.capturing(1, Direction::Rx));
        assert!(!o.capturing(1, Direction::Tx));
        assert!(!o.capturing(2, Direction::Rx));
        assert!(
            !o.capturing(99, Direction::Rx),
            "unknown ports are not captured"
        );
        o.record(1, Direction::Rx, 5, &[7u8; 3000]);
        o.record(2, Direction::Rx, 6, &[8u8; 60]);
        let mut v = Vec::new();
        o.take_frames(1, 10, &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].orig_len, v[0].data.len()), (3000, SNAPLEN));
        o.recycle(v.pop().unwrap());
        o.take_frames(2, 10, &mut v);
        assert_eq!(v.len(), 1, "another port's frame stayed queued");
        o.stop_capture(1);
        assert!(!o.capturing(1, Direction::Rx));
    }

    #[test]
    fn a_full_pool_loses_and_counts_never_blocks() {
        let o = Observe::new(1);
        o.start_capture(0, true, true);
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
