//! Packet buffers and pools.
//!
//! A pool makes all its buffers when it is created; a buffer carries a handle to its
//! pool, made once at creation, and goes back to the pool's free ring when dropped.
//! Recycling moves the whole [`PacketBuf`] (no reference count changes), so nothing is
//! allocated or freed per packet. A [`PoolCache`] keeps a thread-local stack in front of
//! the shared ring, so the common alloc/free pair touches no atomic.

use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sys::{Region, RegionBuf};
pub use vpcswitch_wire::offload::{Offload, VnetHdr};

/// Size of every buffer: a 1500-byte MTU frame plus room for the switch's answers.
pub const BUF_SIZE: usize = 2048;

// a segment cut from a super-frame (bounded at ingress, SPEC 2.5) fits an ordinary buffer
const _: () = assert!(vpcswitch_wire::offload::MAX_SEGMENT_FRAME <= BUF_SIZE);

#[derive(Debug)]
struct Shared {
    free: ArrayQueue<PacketBuf>,
    /// queues that keep buffers of this pool lent to a device for good (AF_XDP fill
    /// rings): see [`LendShare`]
    lenders: AtomicUsize,
}

/// A pool's buffers shared among the queues that keep some lent to a device for as long
/// as they are open (an AF_XDP socket's fill ring: the kernel receives into them). Each
/// such queue [`LendShare::join`]s and keeps at most [`LendShare::fair_share`] lent, so
/// however many there are, none is left without buffers to receive into and half of
/// the pool stays for frames in flight. It hands out no buffer itself.
#[derive(Debug, Clone)]
pub struct LendShare {
    shared: Arc<Shared>,
    size: usize,
}

impl LendShare {
    /// Counts one more lender until the returned guard is dropped.
    pub fn join(&self) -> Lender {
        self.shared.lenders.fetch_add(1, Ordering::Relaxed);
        Lender(self.clone())
    }
    /// Buffers one lender may keep lent now: half the pool, split evenly among the
    /// lenders.
    #[inline]
    pub fn fair_share(&self) -> usize {
        self.size / 2 / self.shared.lenders.load(Ordering::Relaxed).max(1)
    }
}

/// One lender of a [`LendShare`]; leaves it when dropped.
#[derive(Debug)]
pub struct Lender(LendShare);

impl Lender {
    /// See [`LendShare::fair_share`].
    #[inline]
    pub fn fair_share(&self) -> usize {
        self.0.fair_share()
    }
}

impl Drop for Lender {
    fn drop(&mut self) {
        self.0.shared.lenders.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a buffer's bytes live: in its pool's [`Region`] (pooled buffers), or on the
/// heap (unpooled ones, and pools whose region could not be mapped).
#[derive(Debug)]
enum Mem {
    Heap(Box<[u8]>),
    Region(RegionBuf),
}

impl Default for Mem {
    fn default() -> Mem {
        Mem::Heap(Box::default())
    }
}

impl Mem {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Mem::Heap(b) => b,
            Mem::Region(r) => r.as_slice(),
        }
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Mem::Heap(b) => b,
            Mem::Region(r) => r.as_mut_slice(),
        }
    }
}

/// Layout of a pool of ordinary buffers in its region, made to be an AF_XDP UMEM in
/// unaligned-chunk mode: buffer `i` starts at `i * UMEM_STRIDE + UMEM_HEADROOM`, and its
/// UMEM chunk ([`UMEM_FRAME`] bytes) starts `UMEM_HEADROOM` (the kernel's
/// `XDP_PACKET_HEADROOM`) before it, so a frame the kernel receives into the chunk lands
/// at the buffer's first byte. The stride is an odd number of cache lines, so the
/// buffers' first bytes spread over every cache set instead of all landing in one (a
/// 4 KiB stride cost the pps harness a quarter of its rate).
pub const UMEM_STRIDE: usize = 37 * 64;
/// Offset of a buffer from the start of its UMEM chunk.
pub const UMEM_HEADROOM: usize = 256;
/// Bytes of a UMEM chunk: the headroom and the buffer.
pub const UMEM_FRAME: usize = UMEM_HEADROOM + BUF_SIZE;

/// A packet buffer: `BUF_SIZE` bytes, of which the first `len` are the frame.
#[derive(Debug)]
pub struct PacketBuf {
    data: Mem,
    len: usize,
    home: Option<Arc<Shared>>,
    /// Offload work left on the frame, in trusted form: set only by the runtime's
    /// ingress check of [`PacketBuf::vnet`] (SPEC 2.5), or by code that built the
    /// frame; a device that takes offload gets a header derived from it and the frame.
    pub offload: Offload,
    /// The virtio-net header the device handed over with the frame, as it came:
    /// untrusted guest input. Backends set it on receive and nothing else reads it but
    /// the runtime's ingress check, which turns it into [`PacketBuf::offload`].
    pub vnet: VnetHdr,
}

impl PacketBuf {
    /// A buffer outside any pool (tests, slow paths). Allocates.
    pub fn unpooled(frame: &[u8]) -> PacketBuf {
        let mut data = vec![0u8; BUF_SIZE.max(frame.len())].into_boxed_slice();
        data[..frame.len()].copy_from_slice(frame);
        PacketBuf {
            data: Mem::Heap(data),
            len: frame.len(),
            home: None,
            offload: Offload::None,
            vnet: VnetHdr::default(),
        }
    }
    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.data.bytes()[..self.len]
    }
    /// The frame, mutable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data.bytes_mut()[..self.len]
    }
    /// The whole buffer and the frame length, for in-place rewrites that change the
    /// length (the pipeline's answers).
    #[inline]
    pub fn parts_mut(&mut self) -> (&mut [u8], &mut usize) {
        (self.data.bytes_mut(), &mut self.len)
    }
    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for a zero-length frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.data.bytes().len()
    }
    /// The region the buffer is in and its offset there (its AF_XDP descriptor
    /// address when the region is a UMEM); `None` for a heap buffer.
    #[inline]
    pub fn region_offset(&self) -> Option<(&Arc<Region>, usize)> {
        match &self.data {
            Mem::Region(r) => Some((r.region(), r.offset())),
            Mem::Heap(_) => None,
        }
    }
    /// Replaces the frame with `frame` (truncated to the capacity); returns the length.
    #[inline]
    pub fn fill(&mut self, frame: &[u8]) -> usize {
        let data = self.data.bytes_mut();
        let n = frame.len().min(data.len());
        data[..n].copy_from_slice(&frame[..n]);
        self.len = n;
        self.offload = Offload::None;
        self.vnet = VnetHdr::default();
        n
    }
    /// Sets the frame length (clamped to the capacity), after writing into the buffer.
    #[inline]
    pub fn set_len(&mut self, n: usize) {
        self.len = n.min(self.capacity());
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let back = PacketBuf {
                data: std::mem::take(&mut self.data),
                len: 0,
                home: Some(home.clone()),
                offload: Offload::None,
                vnet: VnetHdr::default(),
            };
            // The ring has room for every buffer of the pool, so this never fails for a
            // buffer of this pool; if it did, the buffer is freed.
            let _ = home.free.push(back);
        }
    }
}

/// A fixed set of buffers. Cloning shares the same buffers.
#[derive(Debug, Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    size: usize,
    /// bytes per buffer
    buf_len: usize,
    /// the region, and its buffers' stride, when it can be a UMEM
    umem: Option<(Arc<Region>, usize)>,
}

impl Pool {
    /// Makes `n` buffers of [`BUF_SIZE`] bytes now (the only allocation the pool does).
    pub fn new(n: usize) -> Pool {
        Pool::with_size(n, BUF_SIZE)
    }

    /// Makes `n` buffers of `size` bytes now, carved from one memory region (for
    /// buffers of at most [`BUF_SIZE`], in the UMEM layout of [`UMEM_STRIDE`]); on the
    /// heap if the region cannot be mapped.
    pub fn with_size(n: usize, size: usize) -> Pool {
        let shared = Arc::new(Shared {
            free: ArrayQueue::new(n.max(1)),
            lenders: AtomicUsize::new(0),
        });
        let (stride, offset) = if size <= BUF_SIZE {
            (UMEM_STRIDE, UMEM_HEADROOM)
        } else {
            (size.div_ceil(64) * 64, 0)
        };
        let region = n
            .checked_mul(stride)
            // ordinary buffers are all touched from the start (they cycle through the
            // whole pool); 64 KiB ones only as far as super-frames fill them
            .and_then(|len| Region::new(len, offset == UMEM_HEADROOM).ok())
            .map(Arc::new);
        let mut carved = region
            .as_ref()
            .and_then(|r| r.split(n, stride, offset, size))
            .unwrap_or_default()
            .into_iter();
        for _ in 0..n {
            let data = match carved.next() {
                Some(r) => Mem::Region(r),
                None => Mem::Heap(vec![0u8; size].into_boxed_slice()),
            };
            let b = PacketBuf {
                data,
                len: 0,
                home: Some(shared.clone()),
                offload: Offload::None,
                vnet: VnetHdr::default(),
            };
            let _ = shared.free.push(b);
        }
        Pool {
            shared,
            size: n,
            buf_len: size,
            umem: region
                .filter(|_| offset == UMEM_HEADROOM)
                .map(|r| (r, stride)),
        }
    }
    /// The pool's memory as an AF_XDP UMEM: the region and the stride of its buffers
    /// (see [`UMEM_STRIDE`]). `None` for large-buffer pools and pools on the heap.
    pub fn umem(&self) -> Option<(&Arc<Region>, usize)> {
        self.umem.as_ref().map(|(r, s)| (r, *s))
    }
    /// The pool as shared among queues that keep buffers lent to a device.
    pub fn lend_share(&self) -> LendShare {
        LendShare {
            shared: self.shared.clone(),
            size: self.size,
        }
    }
    /// A free buffer, or `None` when all are in use.
    #[inline]
    pub fn alloc(&self) -> Option<PacketBuf> {
        self.shared.free.pop()
    }
    /// Free buffers right now.
    pub fn available(&self) -> usize {
        self.shared.free.len()
    }
    /// Buffers the pool made.
    pub fn size(&self) -> usize {
        self.size
    }
    /// A thread-local cache in front of this pool.
    pub fn cache(&self, cap: usize) -> PoolCache {
        PoolCache {
            pool: self.clone(),
            stack: Vec::with_capacity(cap),
            cap,
            buf_len: self.buf_len,
        }
    }
}

/// A per-thread stack of free buffers in front of a [`Pool`]. Not shared.
#[derive(Debug)]
pub struct PoolCache {
    pool: Pool,
    stack: Vec<PacketBuf>,
    cap: usize,
    /// bytes per buffer of this cache's pool
    buf_len: usize,
}

impl PoolCache {
    /// A free buffer; refills half the cache from the pool when empty.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        if let Some(b) = self.stack.pop() {
            return Some(b);
        }
        for _ in 0..self.cap / 2 {
            match self.pool.alloc() {
                Some(b) => self.stack.push(b),
                None => break,
            }
        }
        self.stack.pop()
    }
    /// Gives a buffer back: kept in the cache when it is pooled, of this cache's size
    /// class, and there is room; otherwise it goes home to its own pool.
    ///
    /// Buffers of the same size circulate between caches (a frame received on one
    /// queue's buffer is reused by the queue it was sent to, with no trip through a
    /// shared pool queue: about 30 ns per packet in the pps harness); a cache holds at
    /// most `cap` of them, so a pool lends out at most the caches' capacities. A buffer
    /// of another size — a TAP's large receive buffer dropped by a worker — must not
    /// settle in a small cache: the large pool would run dry and that port's receive
    /// would stall (found by the TAP storm test).
    #[inline]
    pub fn free(&mut self, b: PacketBuf) {
        if b.home.is_some() && b.capacity() == self.buf_len && self.stack.len() < self.cap {
            self.stack.push(b);
        }
        // else: dropped, which returns it to its own pool
    }
    /// The pool behind the cache.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
    /// Buffers the cache holds now (at most its capacity).
    pub fn held(&self) -> usize {
        self.stack.len()
    }
    /// Bytes per buffer of this cache's pool.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }
}

/// Free buffers a worker keeps at hand in front of its small pool.
pub const SMALL_CACHE: usize = 256;
/// Free large buffers a worker keeps at hand in front of its large pool.
pub const LARGE_CACHE: usize = 16;

/// A worker's buffer caches — ordinary and large buffers — that it **lends** to a
/// queue for the length of one `rx_burst` or `tx_burst` (see the crate docs' ownership
/// rule). They are the only place a queue can take one of the worker's buffers from,
/// and where it gives back the ones it did not use; so the free buffers a worker's
/// queues can hold between calls are bounded by the worker's two caches
/// ([`SMALL_CACHE`] + [`LARGE_CACHE`]), whatever the number of ports.
#[derive(Debug)]
pub struct WorkerBufs {
    small: PoolCache,
    large: PoolCache,
}

impl WorkerBufs {
    /// Caches of [`SMALL_CACHE`] and [`LARGE_CACHE`] buffers in front of `small` and
    /// `large`.
    pub fn new(small: &Pool, large: &Pool) -> WorkerBufs {
        WorkerBufs {
            small: small.cache(SMALL_CACHE),
            large: large.cache(LARGE_CACHE),
        }
    }
    /// An ordinary ([`BUF_SIZE`]) buffer.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.small.alloc()
    }
    /// A large buffer (a segmentation super-frame fits).
    #[inline]
    pub fn alloc_large(&mut self) -> Option<PacketBuf> {
        self.large.alloc()
    }
    /// Gives a buffer back: to the cache of its size class while there is room, else to
    /// its own pool (see [`PoolCache::free`]).
    #[inline]
    pub fn free(&mut self, b: PacketBuf) {
        if b.capacity() == self.large.buf_len && self.large.buf_len != self.small.buf_len {
            self.large.free(b);
        } else {
            self.small.free(b);
        }
    }
    /// Buffers held by the two caches now (ordinary, large).
    pub fn held(&self) -> (usize, usize) {
        (self.small.held(), self.large.held())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer freed into another pool's cache goes back to its own pool (found by the
    /// TAP storm test: large receive buffers dropped by a worker drained the TAP pool).
    #[test]
    fn a_cache_sends_foreign_buffers_home() {
        let small = Pool::new(4);
        let large = Pool::with_size(2, 4096);
        let mut sc = small.cache(8);
        let mut lc = large.cache(8);
        for _ in 0..100 {
            let b = lc.alloc().expect("the large pool never runs dry");
            sc.free(b);
        }
        assert_eq!(large.available() + lc.stack.len(), 2);
        let b = sc.alloc().expect("small");
        assert_eq!(b.capacity(), BUF_SIZE);
        sc.free(b);
        // same size class: kept where it was freed, home when the cache is full
        let other = Pool::new(2);
        let mut oc = other.cache(1);
        let (x, y) = (sc.alloc().unwrap(), sc.alloc().unwrap());
        oc.free(x);
        oc.free(y);
        assert_eq!(oc.stack.len(), 1);
        assert_eq!(
            small.available() + sc.stack.len(),
            3,
            "the second went home"
        );
    }

    #[test]
    fn buffers_return_to_their_pool_on_drop() {
        let p = Pool::new(4);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_eq!(p.available(), 2);
        drop(a);
        assert_eq!(p.available(), 3);
        let mut c = p.cache(2);
        let x = c.alloc().unwrap();
        c.free(x);
        c.free(b);
        drop(c);
        assert_eq!(p.available(), 4);
        let mut all: Vec<_> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert!(p.alloc().is_none(), "exhausted pool says so");
        all[0].fill(&[1, 2, 3]);
        assert_eq!(all[0].frame(), &[1, 2, 3]);
        all.clear();
        assert_eq!(p.available(), 4);
    }
}

#[cfg(test)]
mod lend_share_tests {
    use super::*;

    #[test]
    fn lenders_split_half_the_pool_and_leave_when_dropped() {
        let pool = Pool::new(1000);
        let share = pool.lend_share();
        assert_eq!(share.fair_share(), 500, "no lender yet: half the pool");
        let a = share.join();
        assert_eq!(a.fair_share(), 500);
        let lenders: Vec<Lender> = (0..9).map(|_| share.join()).collect();
        assert_eq!(a.fair_share(), 50, "ten lenders share half of 1000");
        drop(lenders);
        assert_eq!(a.fair_share(), 500, "the others left");
    }
}
