//! The Linux TAP backend: one switch port is one TAP device, one queue per worker
//! (`IFF_MULTI_QUEUE`), non-blocking.
//!
//! # Contract
//! * [`TapBackend::new`] names the device. [`Backend::queues`] opens it: a missing
//!   device is created (and disappears when the switch closes it); an existing one,
//!   made by `ip tuntap add ... mode tap [multi_queue]` or by QEMU, is attached to.
//!   With one worker a single-queue device is accepted too.
//! * Frames are plain Ethernet (`IFF_NO_PI`). Offloads (`IFF_VNET_HDR`, TSO) are not
//!   negotiated yet, so the guest segments and checksums itself.
//! * `rx_burst` reads until the device is empty or the burst is full; `tx_burst`
//!   writes every buffer: a full device queue counts as `full`, any other error (the
//!   interface is down: `EIO`) as `errors`.
//!
//! `unsafe` lives only in [`sys`].

pub mod sys;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use vpcswitch_backend::{Backend, BackendError, PacketBuf, Pool, PoolCache, PortQueue, TxResult};

/// Buffers a queue keeps at hand from its worker's pool.
pub const RX_CACHE: usize = 64;

/// A TAP device as a switch port.
#[derive(Debug)]
pub struct TapBackend {
    ifname: String,
    opened: bool,
}

impl TapBackend {
    /// The port's device; nothing is opened until the runtime asks for queues.
    pub fn new(ifname: &str) -> TapBackend {
        TapBackend {
            ifname: ifname.to_string(),
            opened: false,
        }
    }
}

impl Backend for TapBackend {
    fn describe(&self) -> String {
        format!("tap {}", self.ifname)
    }

    fn queues(&mut self, pools: &[Pool]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let n = pools.len();
        if self.opened {
            return Err(BackendError::Queues {
                name: self.ifname.clone(),
                have: 0,
                want: n,
            });
        }
        let io = |what: String, source: io::Error| BackendError::Io { what, source };
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let r = sys::open_tap(&self.ifname, true);
            let fd = match r {
                Ok((fd, _)) => fd,
                // a single-queue device made by someone else: fine for one worker
                Err(e) if n == 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::open_tap(&self.ifname, false)
                        .map_err(|e| io(format!("attach TAP {} (single queue)", self.ifname), e))?
                        .0
                }
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                        " (an existing device must be a multi_queue TAP when workers > 1)"
                    } else if e.raw_os_error() == Some(libc::EBUSY) {
                        " (the device is in use by another process)"
                    } else {
                        ""
                    };
                    return Err(io(format!("open TAP {} queue {i}{hint}", self.ifname), e));
                }
            };
            fds.push(fd);
        }
        self.opened = true;
        Ok(fds
            .into_iter()
            .zip(pools)
            .map(|(fd, pool)| {
                Box::new(TapQueue {
                    fd,
                    cache: pool.cache(RX_CACHE),
                    rx_errors: 0,
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
}

struct TapQueue {
    fd: OwnedFd,
    cache: PoolCache,
    rx_errors: u64,
}

impl PortQueue for TapQueue {
    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let fd = self.fd.as_raw_fd();
        let mut n = 0;
        while n < max {
            let Some(mut b) = self.cache.alloc() else {
                break;
            };
            let (data, len) = b.parts_mut();
            match sys::read(fd, data) {
                Ok(k) => {
                    *len = k;
                    out.push(b);
                    n += 1;
                }
                Err(e) => {
                    self.cache.free(b);
                    if e.kind() != io::ErrorKind::WouldBlock
                        && e.kind() != io::ErrorKind::Interrupted
                    {
                        self.rx_errors += 1;
                    }
                    break;
                }
            }
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut Vec<PacketBuf>) -> TxResult {
        let fd = self.fd.as_raw_fd();
        let mut r = TxResult::default();
        for b in bufs.drain(..) {
            match sys::write(fd, b.frame()) {
                Ok(_) => r.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.full += 1,
                Err(_) => r.errors += 1,
            }
            self.cache.free(b);
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}
