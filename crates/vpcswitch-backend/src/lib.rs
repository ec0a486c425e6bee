//! Backends: where frames come from and go to.
//!
//! # Contract
//! A [`Backend`] is one switch port's device (a TAP, an AF_XDP socket, in-memory rings).
//! It hands out one [`PortQueue`] per worker; a queue is owned by exactly one worker
//! thread, so its methods take `&mut self` and need no lock.
//!
//! Ownership of buffers is explicit (OVS `netdev_send`, ixy.rs `rx_batch`):
//! `rx_burst` appends buffers the caller now owns; `tx_burst` takes every buffer in the
//! vector, whatever happens (sent, ring full, error), and reports what became of them.
//!
//! This crate knows neither the configuration nor the pipeline.

mod buf;
pub mod fault;
pub mod memory;
pub mod sys;

pub use buf::{
    Offload, PacketBuf, Pool, PoolCache, VnetHdr, BUF_SIZE, UMEM_FRAME, UMEM_HEADROOM, UMEM_STRIDE,
};

/// Size of a buffer that holds a whole segmentation super-frame (64 KiB of IP plus the
/// Ethernet header).
pub const LARGE_BUF_SIZE: usize = 65_536 + 64;

/// The buffers one worker hands to its queues: ordinary frames, and large ones for
/// devices that pass segmentation super-frames (TAP with offloads).
#[derive(Debug, Clone)]
pub struct QueuePools {
    /// [`BUF_SIZE`] buffers
    pub small: Pool,
    /// [`LARGE_BUF_SIZE`] buffers
    pub large: Pool,
}

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

/// Most frames a queue returns from one `rx_burst`.
pub const MAX_BURST: usize = 32;

/// What a `tx_burst` did with the buffers it took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxResult {
    /// handed to the device
    pub sent: usize,
    /// dropped: the device's ring was full
    pub full: usize,
    /// dropped: the device reported an error
    pub errors: usize,
}

/// Errors a backend reports when it is opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device could not be opened or configured.
    #[error("{what}: {source}")]
    Io {
        /// what was being done
        what: String,
        /// the OS error
        source: std::io::Error,
    },
    /// The backend cannot give the requested number of queues.
    #[error("backend {name} has {have} queue(s), {want} requested")]
    Queues {
        /// backend name
        name: String,
        /// queues it has
        have: usize,
        /// queues requested
        want: usize,
    },
}

/// One worker's queue on one port.
pub trait PortQueue: Send {
    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize;
    /// Sends every buffer in `bufs` (leaving it empty).
    fn tx_burst(&mut self, bufs: &mut Vec<PacketBuf>) -> TxResult;
    /// Registers the waker to call when frames arrive while the worker sleeps.
    fn set_waker(&mut self, _waker: Waker) {}
    /// A descriptor that becomes readable when frames arrive, for workers that sleep
    /// in `poll(2)` (devices); `None` for backends that use the [`Waker`].
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Appends every descriptor the worker should wait on: a queue that serves several
    /// device queues (AF_XDP, one socket per NIC queue) has several. By default
    /// [`PortQueue::poll_fd`].
    fn poll_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        out.extend(self.poll_fd());
    }
    /// True when the device takes frames with an [`Offload`] still to do (segmentation
    /// super-frames, partial checksums); otherwise the runtime completes checksums in
    /// software and drops super-frames (counted) before `tx_burst`.
    fn accepts_offload(&self) -> bool {
        false
    }
    /// True once the device is gone (a deleted TAP): the queue neither receives nor
    /// sends any more, and the runtime reports the port down until it is reattached
    /// (a reload opens a new device for it).
    fn is_down(&self) -> bool {
        false
    }
}

/// A port's device.
pub trait Backend: Send {
    /// A short description for logs (`memory`, `tap vs-web1`).
    fn describe(&self) -> String;
    /// Splits the device into one queue per worker (`pools.len()` workers); queue `i`
    /// takes its receive buffers from `pools[i]`, the worker's pool, so memory grows with
    /// the number of workers, not of ports. Called once.
    fn queues(&mut self, pools: &[QueuePools]) -> Result<Vec<Box<dyn PortQueue>>, BackendError>;
}

/// Wakes a sleeping worker (SPEC-free plumbing for adaptive idle).
#[derive(Debug, Clone)]
pub struct Waker {
    inner: Arc<WakerInner>,
}

#[derive(Debug)]
struct WakerInner {
    thread: Thread,
    sleeping: AtomicBool,
}

impl Waker {
    /// A waker for `thread`.
    pub fn new(thread: Thread) -> Waker {
        Waker {
            inner: Arc::new(WakerInner {
                thread,
                sleeping: AtomicBool::new(false),
            }),
        }
    }
    /// Called by the worker before it parks.
    pub fn set_sleeping(&self, s: bool) {
        self.inner.sleeping.store(s, Ordering::SeqCst);
    }
    /// Wakes the worker if it sleeps. Cheap when it does not.
    #[inline]
    pub fn wake(&self) {
        if self.inner.sleeping.load(Ordering::SeqCst) {
            self.inner.sleeping.store(false, Ordering::SeqCst);
            self.inner.thread.unpark();
        }
    }
}
