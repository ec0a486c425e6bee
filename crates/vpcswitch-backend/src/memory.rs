//! The in-memory backend: lock-free rings between the switch and a guest that a test,
//! a benchmark or an embedder drives (`netdev-dummy` in OVS terms).
//!
//! [`mem_port`] gives the switch side (a [`Backend`]) and the guest side
//! ([`MemGuest`]). Frames from the guest are spread over the queues by a hash of the
//! IPv4 addresses, like RSS on a NIC, so one flow stays on one worker.
//!
//! [`GenPort`] is a traffic generator and sink for the pps harness: its queues produce
//! copies of template frames as fast as a worker asks, and count what they are sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::{
    Backend, BackendError, PacketBuf, Pool, PortQueue, TxResult, Waker, WorkerBufs, WorkerMem,
};

#[derive(Debug)]
struct Rings {
    to_switch: Vec<ArrayQueue<PacketBuf>>,
    to_guest: Vec<ArrayQueue<PacketBuf>>,
    wakers: Vec<OnceLock<Waker>>,
    guest_dropped: AtomicU64,
}

/// The switch side of an in-memory port.
#[derive(Debug)]
pub struct MemPort {
    name: String,
    rings: Arc<Rings>,
    taken: bool,
}

/// The guest side of an in-memory port. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct MemGuest {
    rings: Arc<Rings>,
    pool: Pool,
}

/// A port with `queues` queue pairs of `depth` frames each.
pub fn mem_port(name: &str, queues: usize, depth: usize) -> (MemPort, MemGuest) {
    let queues = queues.max(1);
    let rings = Arc::new(Rings {
        to_switch: (0..queues).map(|_| ArrayQueue::new(depth)).collect(),
        to_guest: (0..queues).map(|_| ArrayQueue::new(depth)).collect(),
        wakers: (0..queues).map(|_| OnceLock::new()).collect(),
        guest_dropped: AtomicU64::new(0),
    });
    (
        MemPort {
            name: name.to_string(),
            rings: rings.clone(),
            taken: false,
        },
        MemGuest {
            rings,
            pool: Pool::new(depth * queues + 64),
        },
    )
}

fn rss(frame: &[u8], n: usize) -> usize {
    if n <= 1 || frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return 0;
    }
    // symmetric: the same queue for both directions of a flow
    let a = u32::from_be_bytes([frame[26], frame[27], frame[28], frame[29]]);
    let b = u32::from_be_bytes([frame[30], frame[31], frame[32], frame[33]]);
    let h = (a ^ b).wrapping_mul(0x9e37_79b9);
    (h >> 16) as usize % n
}

impl MemGuest {
    /// Sends one frame to the switch; false (and counted) when the ring is full.
    pub fn send(&self, frame: &[u8]) -> bool {
        let q = rss(frame, self.rings.to_switch.len());
        self.send_on(q, frame)
    }
    /// Sends a frame with a virtio-net header, as a TAP or AF_PACKET device hands a
    /// guest's frame over (tests of the runtime's offload checks, SPEC 2.5): the header
    /// is untrusted, as it is from a device.
    pub fn send_offload(&self, frame: &[u8], vnet: crate::VnetHdr) -> bool {
        // a super-frame is larger than a pool buffer
        let mut b = match self.pool.alloc() {
            Some(b) if b.capacity() >= frame.len() => b,
            _ => PacketBuf::unpooled(frame),
        };
        b.fill(frame);
        b.vnet = vnet;
        self.push(rss(frame, self.rings.to_switch.len()), b)
    }

    /// Sends on a given queue.
    pub fn send_on(&self, q: usize, frame: &[u8]) -> bool {
        // the guest's pool is sized for full rings; beyond that a buffer is made
        let mut b = self
            .pool
            .alloc()
            .unwrap_or_else(|| PacketBuf::unpooled(frame));
        b.fill(frame);
        self.push(q, b)
    }

    fn push(&self, q: usize, b: PacketBuf) -> bool {
        let q = q % self.rings.to_switch.len();
        match self.rings.to_switch[q].push(b) {
            Ok(()) => {
                if let Some(w) = self.rings.wakers[q].get() {
                    w.wake();
                }
                true
            }
            Err(_) => {
                self.rings.guest_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
    /// One frame from the switch, if any is waiting.
    pub fn recv(&self) -> Option<PacketBuf> {
        self.rings.to_guest.iter().find_map(|r| r.pop())
    }
    /// Waits up to `t` for a frame.
    pub fn recv_timeout(&self, t: Duration) -> Option<PacketBuf> {
        let end = Instant::now() + t;
        loop {
            if let Some(b) = self.recv() {
                return Some(b);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    /// Everything waiting now.
    pub fn drain(&self) -> Vec<PacketBuf> {
        std::iter::from_fn(|| self.recv()).collect()
    }
    /// Frames the guest could not send because a ring was full.
    pub fn send_failures(&self) -> u64 {
        self.rings.guest_dropped.load(Ordering::Relaxed)
    }
}

impl Backend for MemPort {
    fn describe(&self) -> String {
        format!("memory {}", self.name)
    }
    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        // frames come from the guest's own pool; the workers' buffers are not needed
        let n = workers.len();
        let have = self.rings.to_switch.len();
        if n != have || self.taken {
            return Err(BackendError::Queues {
                name: self.name.clone(),
                have: if self.taken { 0 } else { have },
                want: n,
            });
        }
        self.taken = true;
        Ok((0..n)
            .map(|q| {
                Box::new(MemQueue {
                    rings: self.rings.clone(),
                    q,
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
    fn capabilities(&self) -> crate::Capabilities {
        // buffers move by pointer; offload work is done by the runtime before tx
        let mut c = crate::Capabilities::new("memory", self.rings.to_switch.len());
        c.zero_copy = true;
        c
    }
}

struct MemQueue {
    rings: Arc<Rings>,
    q: usize,
}

impl PortQueue for MemQueue {
    #[inline]
    fn rx_burst(&mut self, _: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let r = &self.rings.to_switch[self.q];
        let mut n = 0;
        while n < max {
            match r.pop() {
                Some(b) => {
                    out.push(b);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
    #[inline]
    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        // the ring to the guest is this device's: a frame in it is the guest's until it
        // takes it (at most `depth` per queue), a refused one goes back at once
        let r = &self.rings.to_guest[self.q];
        let mut res = TxResult::default();
        for b in frames.drain(..) {
            match r.push(b) {
                Ok(()) => res.sent += 1,
                Err(b) => {
                    bufs.free(b);
                    res.full += 1
                }
            }
        }
        res
    }
    fn set_waker(&mut self, waker: Waker) {
        let _ = self.rings.wakers[self.q].set(waker);
    }
}

/// A generator and sink port for the pps harness. See the module docs.
#[derive(Debug)]
pub struct GenPort {
    frames: Arc<Vec<Vec<u8>>>,
    delivered: Arc<AtomicU64>,
    generated: Arc<AtomicU64>,
}

/// Counters of a [`GenPort`], readable while it runs.
#[derive(Debug, Clone)]
pub struct GenCounters {
    delivered: Arc<AtomicU64>,
    generated: Arc<AtomicU64>,
}

impl GenCounters {
    /// Frames the switch sent to this port.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Frames this port generated.
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }
}

impl GenPort {
    /// A port that sends `frames` round-robin, forever. An empty list makes a sink.
    /// `_pool_per_queue` is ignored (it was the size of a pool of its own per queue;
    /// frames are now generated in the worker's buffers, as a NIC receives into them).
    pub fn new(frames: Vec<Vec<u8>>, _pool_per_queue: usize) -> (GenPort, GenCounters) {
        let delivered = Arc::new(AtomicU64::new(0));
        let generated = Arc::new(AtomicU64::new(0));
        (
            GenPort {
                frames: Arc::new(frames),
                delivered: delivered.clone(),
                generated: generated.clone(),
            },
            GenCounters {
                delivered,
                generated,
            },
        )
    }
}

impl Backend for GenPort {
    fn describe(&self) -> String {
        "generator".into()
    }
    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        // a generator stands for a NIC receiving into its worker's buffers (a DPDK
        // port's mempool): it takes them from the caches lent to each burst, and frames
        // sent to it go back there, so a buffer circulates in the worker's cache with no
        // trip through a pool; a sink allocates nothing, and many sinks stay cheap (the
        // harness's table-size scaling)
        Ok(workers
            .iter()
            .map(|_| {
                Box::new(GenQueue {
                    frames: self.frames.clone(),
                    next: 0,
                    delivered: self.delivered.clone(),
                    generated: self.generated.clone(),
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
}

struct GenQueue {
    frames: Arc<Vec<Vec<u8>>>,
    next: usize,
    delivered: Arc<AtomicU64>,
    generated: Arc<AtomicU64>,
}

impl PortQueue for GenQueue {
    #[inline]
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.frames.is_empty() {
            return 0;
        }
        let mut n = 0;
        while n < max {
            let Some(mut b) = bufs.alloc() else {
                break;
            };
            b.fill(&self.frames[self.next]);
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
            }
            out.push(b);
            n += 1;
        }
        self.generated.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
    #[inline]
    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let n = frames.len();
        for b in frames.drain(..) {
            bufs.free(b);
        }
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        TxResult {
            sent: n,
            ..TxResult::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueuePools;

    fn qp(n: usize) -> QueuePools {
        QueuePools {
            small: Pool::new(n),
            large: Pool::new(1),
        }
    }

    #[test]
    fn frames_cross_the_rings_both_ways() {
        let (mut port, guest) = mem_port("p", 2, 8);
        let pools = [qp(4), qp(4)];
        let mem: Vec<WorkerMem> = pools.iter().map(QueuePools::mem).collect();
        let mut bufs = pools[0].bufs();
        let mut qs = port.queues(&mem).unwrap();
        assert!(port.queues(&mem).is_err(), "queues are handed out once");
        assert!(guest.send_on(1, &[1, 2, 3]));
        let mut v = Vec::new();
        assert_eq!(qs[0].rx_burst(&mut bufs, &mut v, 32), 0);
        assert_eq!(qs[1].rx_burst(&mut bufs, &mut v, 32), 1);
        assert_eq!(v[0].frame(), &[1, 2, 3]);
        let r = qs[0].tx_burst(&mut bufs, &mut v);
        assert_eq!(r.sent, 1);
        assert!(v.is_empty());
        assert_eq!(guest.recv().unwrap().frame(), &[1, 2, 3]);
        // a full ring drops and says so
        let mut many: Vec<PacketBuf> = (0..10).map(|_| PacketBuf::unpooled(&[9])).collect();
        let r = qs[0].tx_burst(&mut bufs, &mut many);
        assert_eq!((r.sent, r.full), (8, 2));
    }

    #[test]
    fn generator_recycles_without_growing() {
        let (mut g, c) = GenPort::new(vec![vec![0xaa; 64]], 64);
        let pools = qp(64);
        let mut bufs = pools.bufs();
        let mut qs = g.queues(&[pools.mem()]).unwrap();
        let mut v = Vec::new();
        for _ in 0..1000 {
            qs[0].rx_burst(&mut bufs, &mut v, 32);
            qs[0].tx_burst(&mut bufs, &mut v);
        }
        assert_eq!(c.generated(), 32_000);
        assert_eq!(c.delivered(), 32_000);
        drop(bufs);
        assert_eq!(pools.small.available(), 64, "every buffer is back");
    }
}
