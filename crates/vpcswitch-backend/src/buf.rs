//! Packet buffers and pools.
//!
//! A pool makes all its buffers when it is created; a buffer carries a handle to its
//! pool, made once at creation, and goes back to the pool's free ring when dropped.
//! Recycling moves the whole [`PacketBuf`] (no reference count changes), so nothing is
//! allocated or freed per packet. A [`PoolCache`] keeps a thread-local stack in front of
//! the shared ring, so the common alloc/free pair touches no atomic.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Size of every buffer: a 1500-byte MTU frame plus room for the switch's answers.
pub const BUF_SIZE: usize = 2048;

#[derive(Debug)]
struct Shared {
    free: ArrayQueue<PacketBuf>,
}

/// A packet buffer: `BUF_SIZE` bytes, of which the first `len` are the frame.
#[derive(Debug)]
pub struct PacketBuf {
    data: Box<[u8]>,
    len: usize,
    home: Option<Arc<Shared>>,
}

impl PacketBuf {
    /// A buffer outside any pool (tests, slow paths). Allocates.
    pub fn unpooled(frame: &[u8]) -> PacketBuf {
        let mut data = vec![0u8; BUF_SIZE.max(frame.len())].into_boxed_slice();
        data[..frame.len()].copy_from_slice(frame);
        PacketBuf {
            data,
            len: frame.len(),
            home: None,
        }
    }
    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.data[..self.len]
    }
    /// The frame, mutable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
    /// The whole buffer and the frame length, for in-place rewrites that change the
    /// length (the pipeline's answers).
    #[inline]
    pub fn parts_mut(&mut self) -> (&mut [u8], &mut usize) {
        (&mut self.data, &mut self.len)
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
        self.data.len()
    }
    /// Replaces the frame with `frame` (truncated to the capacity); returns the length.
    #[inline]
    pub fn fill(&mut self, frame: &[u8]) -> usize {
        let n = frame.len().min(self.data.len());
        self.data[..n].copy_from_slice(&frame[..n]);
        self.len = n;
        n
    }
    /// Sets the frame length (clamped to the capacity), after writing into the buffer.
    #[inline]
    pub fn set_len(&mut self, n: usize) {
        self.len = n.min(self.data.len());
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let back = PacketBuf {
                data: std::mem::take(&mut self.data),
                len: 0,
                home: Some(home.clone()),
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
}

impl Pool {
    /// Makes `n` buffers now (the only allocation the pool ever does).
    pub fn new(n: usize) -> Pool {
        let shared = Arc::new(Shared {
            free: ArrayQueue::new(n.max(1)),
        });
        for _ in 0..n {
            let b = PacketBuf {
                data: vec![0u8; BUF_SIZE].into_boxed_slice(),
                len: 0,
                home: Some(shared.clone()),
            };
            let _ = shared.free.push(b);
        }
        Pool { shared, size: n }
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
        }
    }
}

/// A per-thread stack of free buffers in front of a [`Pool`]. Not shared.
#[derive(Debug)]
pub struct PoolCache {
    pool: Pool,
    stack: Vec<PacketBuf>,
    cap: usize,
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
    /// Gives a buffer back; beyond the cache's capacity it returns to the pool.
    #[inline]
    pub fn free(&mut self, b: PacketBuf) {
        if self.stack.len() < self.cap && b.home.is_some() {
            self.stack.push(b);
        }
        // else: dropped, which returns it to its own pool
    }
    /// The pool behind the cache.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
