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
//! # Buffer ownership: the worker lends, a queue keeps nothing
//! A worker's buffers come from its two pools (ordinary and large). **The worker owns
//! the caches in front of them ([`WorkerBufs`]) and lends them to a queue for the
//! length of one `rx_burst` or `tx_burst`**; a backend is never given a pool
//! ([`Backend::queues`] gets a [`WorkerMem`], which can name the memory to a device but
//! not hand out a buffer). So:
//! * a queue takes a receive buffer from the lent caches only when it reads, and gives
//!   an unused one back at once (an empty read returns it before the call ends);
//! * transmitted and dropped buffers go back to the lent caches (bounded: the rest go
//!   home to their own pool), never to a store of the queue's;
//! * hence an idle queue holds none of the worker's buffers, and the free buffers a
//!   worker keeps out of its pools are bounded per worker ([`SMALL_CACHE`] +
//!   [`LARGE_CACHE`]), not per queue: a thousand ports cannot drain a pool. (Found
//!   with 300 TAP ports on 2 workers: per-queue caches of 64 KiB buffers took the whole
//!   large pool, and ports beyond ~32 per worker never received.)
//!
//! The one exception is a device that must hold receive buffers to receive at all, and
//! it is bounded per device queue: an AF_XDP socket lends `FILL_DEPTH` (1024) buffers of
//! the worker's pool to the kernel's fill ring, plus the frames in its tx ring until the
//! kernel completes them (vpcswitch-xdp). Frames a device has taken to send (the
//! in-memory backend's ring to the guest) are the device's until it lets them go.
//!
//! This crate knows neither the configuration nor the pipeline.

mod buf;
mod burst;
pub mod fault;
pub mod memory;
pub mod sys;

pub use buf::{
    LendShare, Lender, Offload, PacketBuf, Pool, PoolCache, VnetHdr, WorkerBufs, BUF_SIZE,
    LARGE_CACHE, SMALL_CACHE, UMEM_FRAME, UMEM_HEADROOM, UMEM_STRIDE,
};
pub use burst::read_burst;

/// Size of a buffer that holds a whole segmentation super-frame (64 KiB of IP plus the
/// Ethernet header).
pub const LARGE_BUF_SIZE: usize = 65_536 + 64;

/// One worker's buffer pools: ordinary frames, and large ones for devices that pass
/// segmentation super-frames (TAP with offloads). The runtime keeps them; backends see
/// only [`QueuePools::mem`], queues only the lent [`QueuePools::bufs`].
#[derive(Debug, Clone)]
pub struct QueuePools {
    /// [`BUF_SIZE`] buffers
    pub small: Pool,
    /// [`LARGE_BUF_SIZE`] buffers
    pub large: Pool,
}

impl QueuePools {
    /// What a backend may know of this worker's memory.
    pub fn mem(&self) -> WorkerMem {
        WorkerMem {
            umem: self.small.umem().map(|(r, s)| (r.clone(), s)),
            share: self.small.lend_share(),
        }
    }
    /// The worker's caches in front of these pools, to lend to its queues.
    pub fn bufs(&self) -> WorkerBufs {
        WorkerBufs::new(&self.small, &self.large)
    }
}

/// What a backend learns of one worker's buffer memory when it opens its queues: the
/// memory region of the worker's ordinary buffers, to register with a device (an AF_XDP
/// UMEM). It hands out no buffer: a queue gets buffers only from the [`WorkerBufs`] lent
/// to each call (see the crate docs' ownership rule).
#[derive(Debug, Clone)]
pub struct WorkerMem {
    umem: Option<(Arc<sys::Region>, usize)>,
    share: LendShare,
}

impl WorkerMem {
    /// The worker's ordinary buffers as an AF_XDP UMEM: their region and stride (see
    /// [`UMEM_STRIDE`]); `None` when the pool is on the heap.
    pub fn umem(&self) -> Option<(&Arc<sys::Region>, usize)> {
        self.umem.as_ref().map(|(r, s)| (r, *s))
    }
    /// The ordinary buffers as shared among the queues that keep some lent to a device
    /// (join it before lending, keep at most the fair share lent).
    pub fn lend_share(&self) -> &LendShare {
        &self.share
    }
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

/// Frames a device refused on receive, by why: the runtime counts them as drops of the
/// port (SPEC 2.4), so nothing a guest sends disappears without a counter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxDrops {
    /// frames longer than the port takes (an AF_XDP frame in more descriptors than
    /// `vpcswitch_xdp::MAX_FRAGS`)
    pub too_long: u64,
    /// frames that found no (large) buffer to be put together in
    pub no_buffer: u64,
    /// descriptors the device handed back that are not a buffer it was lent, or that
    /// claim more bytes than the buffer has: never trusted
    pub malformed: u64,
    /// frames the kernel dropped before the switch could read them: the socket's
    /// buffer or ring was full (AF_PACKET's `PACKET_STATISTICS`)
    pub overrun: u64,
}

impl RxDrops {
    /// True when nothing was refused.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.too_long == 0 && self.malformed == 0 && self.no_buffer == 0 && self.overrun == 0
    }
}

/// Errors a backend reports when it is opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device could not be opened or configured: the backend's own error, with one
    /// variant per operation that can fail, naming what it was done to and carrying
    /// the OS error (`vpcswitch_tap::TapError`, `vpcswitch_packet::PacketError`,
    /// `vpcswitch_xdp::XdpError`). Shown as it is; found again with `downcast_ref`.
    #[error(transparent)]
    Device(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Opening the device panicked (the runtime opens devices on threads of its own).
    #[error("opening the device panicked")]
    Panicked,
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

impl BackendError {
    /// A backend's own error, as [`BackendError::Device`].
    pub fn device(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError::Device(Box::new(e))
    }
    /// [`Backend::queues`] called again on device `name`, for `want` queues: a device
    /// is split once.
    pub fn opened_twice(name: &str, want: usize) -> BackendError {
        BackendError::Queues {
            name: name.to_string(),
            have: 0,
            want,
        }
    }
}

/// One worker's queue on one port.
///
/// Both bursts borrow the worker's buffer caches for the call (`bufs`); a queue keeps
/// none of the worker's buffers between calls (the crate docs' ownership rule).
pub trait PortQueue: Send {
    /// Appends up to `max` received frames to `out`, in buffers taken from `bufs`;
    /// returns how many. A buffer it took and did not fill goes back to `bufs` before
    /// it returns.
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize;
    /// Sends every buffer in `frames` (leaving it empty); the buffers it is done with
    /// (sent by copy, refused, dropped) go back to `bufs`.
    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult;
    /// Registers the waker to call when frames arrive while the worker sleeps.
    fn set_waker(&mut self, _waker: Waker) {}
    /// A descriptor that becomes readable when frames arrive, for workers that sleep
    /// in `epoll_wait(2)` (devices); `None` for backends that use the [`Waker`]. The
    /// worker adds it to its epoll set when the queue is attached and removes it when
    /// the queue is detached or reports [`PortQueue::is_down`], so it must stay the
    /// same for the queue's life.
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
    /// The longest frame (Ethernet header included, no offload work left) the device
    /// delivers: an AF_XDP or AF_PACKET port's interface MTU + 14 (and what AF_XDP can
    /// carry at all). The runtime drops a longer frame for this port with the reason
    /// `mtu_exceeded` before `tx_burst`; segmentation super-frames are cut first for a
    /// device that does not take offload, and a device that takes them is given them
    /// whole. By default no limit: a TAP takes whatever fits its 64 KiB frames.
    fn max_frame(&self) -> usize {
        usize::MAX
    }
    /// Frames the device refused on receive since the last call (and forgets them).
    fn take_rx_drops(&mut self) -> RxDrops {
        RxDrops::default()
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
    /// Splits the device into one queue per worker (`workers.len()` workers); queue
    /// `i` takes its receive buffers from worker `i`'s caches, lent to each call, so
    /// memory grows with the number of workers, not of ports. Called once.
    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError>;
    /// What the device is and can do, asked once after [`Backend::queues`] (some of it,
    /// an AF_XDP mode, is known only once the device is open). By default: the first
    /// word of [`Backend::describe`] as the kind, nothing else known.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: self
                .describe()
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_string(),
            ..Capabilities::default()
        }
    }
    /// The device's own (kernel-side) counters, asked once after [`Backend::queues`]
    /// and read on the control path (`ctl`, metrics) for the port's life: frames the
    /// kernel dropped before the switch saw them (a TAP whose queue to the switch was
    /// full, a full AF_PACKET or AF_XDP ring) show up nowhere else. `None` (the default)
    /// for devices that have none (memory ports).
    fn device_stats(&self) -> Option<Box<dyn DeviceStats>> {
        None
    }
}

/// What a port's device is and can do ([`Backend::capabilities`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// the backend kind: `tap`, `af_packet`, `af_xdp`, `memory`, or an embedder's own
    pub kind: String,
    /// the kernel interface, when there is one
    pub interface: Option<String>,
    /// device queues serving the port (at least one per worker)
    pub queues: usize,
    /// the interface's MTU when opened, when it has one
    pub mtu: Option<u32>,
    /// the longest frame the device delivers ([`PortQueue::max_frame`]), when limited
    pub max_frame: Option<usize>,
    /// checksum offload both ways (the virtio-net header: TAP, AF_PACKET)
    pub checksum_offload: bool,
    /// segmentation offload (TSO super-frames) both ways
    pub segmentation_offload: bool,
    /// frames move without a copy (AF_XDP zero-copy)
    pub zero_copy: bool,
    /// the mode the device runs in, when it has modes (`native copy`, `skb`, `ring`)
    pub mode: Option<String>,
}

impl Capabilities {
    /// Capabilities of kind `kind` with `queues` queues, the rest unknown or off.
    pub fn new(kind: &str, queues: usize) -> Capabilities {
        Capabilities {
            kind: kind.to_string(),
            queues,
            ..Capabilities::default()
        }
    }
}

/// A device's kernel-side counters since it was created (`struct rtnl_link_stats64`:
/// the interface's own view, as `ip -s link` shows it). For a TAP, the kernel's `tx`
/// is towards the switch: `tx_dropped` counts frames the guest sent that the kernel
/// dropped because the switch's queue was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// packets the interface received
    pub rx_packets: u64,
    /// packets it sent
    pub tx_packets: u64,
    /// bytes received
    pub rx_bytes: u64,
    /// bytes sent
    pub tx_bytes: u64,
    /// receive errors
    pub rx_errors: u64,
    /// transmit errors
    pub tx_errors: u64,
    /// received packets dropped (no buffer, full ring)
    pub rx_dropped: u64,
    /// packets dropped on transmit (full queue)
    pub tx_dropped: u64,
}

/// Reads a device's counters ([`Backend::device_stats`]), on the control path.
pub trait DeviceStats: Send + Sync + std::fmt::Debug {
    /// The counters now; `None` when they cannot be read (the device is gone).
    fn read(&self) -> Option<DeviceCounters>;
}

impl<T: DeviceStats + ?Sized> DeviceStats for Arc<T> {
    fn read(&self) -> Option<DeviceCounters> {
        (**self).read()
    }
}

/// [`DeviceStats`] of a kernel interface, through netlink ([`sys::LinkStats`]).
impl DeviceStats for sys::LinkStats {
    fn read(&self) -> Option<DeviceCounters> {
        sys::LinkStats::read(self).ok().map(|i| i.counters)
    }
}

/// Wakes a sleeping worker (SPEC-free plumbing for adaptive idle): unparks its thread
/// and signals its eventfd, which is in the worker's epoll set, so a worker asleep in
/// `epoll_wait` on its devices' descriptors wakes as well as a parked one.
#[derive(Debug, Clone)]
pub struct Waker {
    inner: Arc<WakerInner>,
}

#[derive(Debug)]
struct WakerInner {
    thread: Thread,
    sleeping: AtomicBool,
    /// `None` when no eventfd could be made: the worker then sleeps in short steps
    event: Option<sys::EventFd>,
}

impl Waker {
    /// A waker for `thread`.
    pub fn new(thread: Thread) -> Waker {
        Waker {
            inner: Arc::new(WakerInner {
                thread,
                sleeping: AtomicBool::new(false),
                event: sys::EventFd::new().ok(),
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
            if let Some(e) = &self.inner.event {
                e.signal();
            }
            self.inner.thread.unpark();
        }
    }
    /// The eventfd [`Waker::wake`] signals, for the worker's epoll set.
    pub fn event_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.event.as_ref().map(sys::EventFd::raw)
    }
    /// Resets the eventfd after a wake-up (the worker, once awake).
    pub fn clear(&self) {
        if let Some(e) = &self.inner.event {
            e.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A worker asleep in `epoll_wait` on its set is woken by [`Waker::wake`] (through
    /// the eventfd), not only by its devices: backends without descriptors and the
    /// control path reach it however long it sleeps.
    #[test]
    fn the_waker_ends_an_epoll_sleep() {
        let ep = sys::Epoll::new().expect("epoll");
        let w = Waker::new(std::thread::current());
        ep.add(w.event_fd().expect("eventfd"), u64::MAX)
            .expect("add");
        // not sleeping: a wake is a no-op and leaves nothing ready
        w.wake();
        assert_eq!(ep.wait(0).expect("wait"), 0);
        w.set_sleeping(true);
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w2.wake();
        });
        let t0 = Instant::now();
        assert_eq!(ep.wait(10_000).expect("wait"), 1, "woken");
        assert!(t0.elapsed() < Duration::from_secs(5));
        w.clear();
        assert_eq!(ep.wait(0).expect("wait"), 0, "cleared");
        t.join().expect("thread");
    }
}
