//! Fault injection: wraps any backend so its queues misbehave on a schedule — receive
//! bursts cut short or empty (EAGAIN), transmit bursts partly refused as a full ring,
//! partly failed as device errors. For tests of the runtime's accounting and
//! robustness (OVS `netdev-dummy` style); deterministic, no randomness. It allocates
//! per burst: a test tool, not for production paths.

use crate::{Backend, BackendError, PacketBuf, PortQueue, TxResult, WorkerBufs, WorkerMem};

/// What to inject, as "every n-th" periods (0: never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// every n-th `rx_burst` returns nothing (as EAGAIN would)
    pub rx_empty_every: u32,
    /// `rx_burst` returns at most this many frames (0: no cap)
    pub rx_max: usize,
    /// every n-th transmitted frame is refused as "ring full"
    pub tx_full_every: u32,
    /// every n-th transmitted frame fails with a device error
    pub tx_error_every: u32,
}

/// A backend whose queues inject [`Faults`].
#[derive(Debug)]
pub struct FaultyBackend<B> {
    inner: B,
    faults: Faults,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, faults: Faults) -> Self {
        FaultyBackend { inner, faults }
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }
    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        Ok(self
            .inner
            .queues(workers)?
            .into_iter()
            .map(|q| {
                Box::new(FaultyQueue {
                    inner: q,
                    f: self.faults,
                    rx_calls: 0,
                    tx_frames: 0,
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
}

struct FaultyQueue {
    inner: Box<dyn PortQueue>,
    f: Faults,
    rx_calls: u64,
    tx_frames: u64,
}

fn every(n: u32, k: u64) -> bool {
    n != 0 && k.is_multiple_of(u64::from(n))
}

impl PortQueue for FaultyQueue {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.rx_calls += 1;
        if every(self.f.rx_empty_every, self.rx_calls) {
            return 0;
        }
        let max = if self.f.rx_max > 0 {
            max.min(self.f.rx_max)
        } else {
            max
        };
        self.inner.rx_burst(bufs, out, max)
    }
    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let mut r = TxResult::default();
        let mut keep = Vec::with_capacity(frames.len());
        for b in frames.drain(..) {
            self.tx_frames += 1;
            if every(self.f.tx_full_every, self.tx_frames) {
                r.full += 1;
                bufs.free(b);
            } else if every(self.f.tx_error_every, self.tx_frames) {
                r.errors += 1;
                bufs.free(b);
            } else {
                keep.push(b);
            }
        }
        let inner = self.inner.tx_burst(bufs, &mut keep);
        r.sent += inner.sent;
        r.full += inner.full;
        r.errors += inner.errors;
        r
    }
    fn set_waker(&mut self, w: crate::Waker) {
        self.inner.set_waker(w);
    }
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.poll_fd()
    }
    fn poll_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        self.inner.poll_fds(out)
    }
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
    fn take_rx_drops(&mut self) -> crate::RxDrops {
        self.inner.take_rx_drops()
    }
    fn accepts_offload(&self) -> bool {
        self.inner.accepts_offload()
    }
    fn is_down(&self) -> bool {
        self.inner.is_down()
    }
}
