//! The Linux TAP backend: one switch port is one TAP device, one queue per worker
//! (`IFF_MULTI_QUEUE`), non-blocking.
//!
//! # Contract
//! * [`TapBackend::new`] names the device. [`Backend::queues`] opens it: a missing
//!   device is created (and disappears when the switch closes it); an existing one,
//!   made by `ip tuntap add ... mode tap [multi_queue]` or by QEMU, is attached to.
//!   With one worker a single-queue device is accepted too.
//! * [`TapBackend::in_netns`] puts the device in a guest's network namespace: the
//!   opening thread (a short-lived one of its own) enters the namespace, creates or
//!   attaches the device there, and leaves; the device is made persistent
//!   (`TUNSETPERSIST`), so it outlives the switch (its carrier goes down while no
//!   switch holds it; the guest's interface keeps its name, MAC and addresses) and a
//!   restarted switch attaches to the same device. [`delete_tap_in`] deletes such a
//!   device when its port is removed.
//! * Frames are plain Ethernet (`IFF_NO_PI`). With offloads on (the default), the
//!   device also carries a virtio-net header (`IFF_VNET_HDR`) and accepts checksum and
//!   TSO offload (`TUNSETOFFLOAD`): a guest's 64 KB TCP segments cross the switch
//!   whole, in large buffers, and leave through another offload TAP unchanged; the
//!   runtime completes checksums in software, and counts super-frames it cannot
//!   deliver, for destinations without offload.
//! * `rx_burst` reads until the device is empty or the burst is full; `tx_burst`
//!   writes every buffer: a full device queue counts as `full`, any other error (the
//!   interface is down: `EIO`) as `errors`.
//!
//! Buffers: a queue keeps none between calls (the ownership rule of
//! `vpcswitch_backend`). `rx_burst` takes one buffer at a time from the worker's caches
//! lent to the call (large ones with offloads, since a super-frame may come), and gives
//! it back at once when the read finds nothing; `tx_burst` gives every buffer back to
//! them. So an idle TAP holds no buffer, and a thousand TAPs on a worker need no more
//! buffers than one.
//!
//! `unsafe` lives only in [`sys`].

pub mod sys;

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use vpcswitch_backend::sys::{if_index, DeviceFd};
use vpcswitch_backend::{
    read_burst, Backend, BackendError, PacketBuf, PortQueue, TxResult, VnetHdr, WorkerBufs,
    WorkerMem,
};

/// Why a TAP port could not be opened: one variant per operation, each naming the
/// device (and namespace) and carrying the OS error.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Opening or creating queue `queue` of the device failed.
    #[error("open TAP {ifname} queue {queue}{}: {source}", open_hint(.source))]
    Open {
        /// the device
        ifname: String,
        /// which of its queues
        queue: usize,
        /// the OS error
        source: io::Error,
    },
    /// Attaching to an existing single-queue device (one worker) failed.
    #[error("attach TAP {ifname} (single queue): {source}")]
    AttachSingleQueue {
        /// the device
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Making the device of a port with `netns` persistent failed.
    #[error("make TAP {ifname} persistent: {source}")]
    Persist {
        /// the device
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Entering the guest's network namespace failed (`shown` as configured, `path` its
    /// file): it does not exist, is not a network namespace, or could not be entered.
    #[error("{}: {source}", netns_what(.shown, .path, .source))]
    EnterNetns {
        /// the namespace as configured
        shown: String,
        /// its file
        path: PathBuf,
        /// the OS error
        source: io::Error,
    },
}

fn open_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EINVAL) => " (an existing device must be a multi_queue TAP when workers > 1)",
        Some(libc::EBUSY) => " (the device is in use by another process)",
        _ => "",
    }
}

/// Says what went wrong entering namespace `shown` (file `path`).
fn netns_what(shown: &str, path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        if shown.starts_with('/') {
            format!("network namespace {shown} not found (the process that held it may have ended): fix or remove netns")
        } else {
            format!(
                "network namespace {shown} not found ({}): create it with ip netns add {shown}, or remove netns",
                path.display()
            )
        }
    } else if e.raw_os_error() == Some(libc::EINVAL) {
        format!("{} is not a network namespace", path.display())
    } else {
        format!("enter network namespace {shown} ({})", path.display())
    }
}

impl From<TapError> for BackendError {
    fn from(e: TapError) -> BackendError {
        BackendError::device(e)
    }
}

/// A TAP device as a switch port.
#[derive(Debug)]
pub struct TapBackend {
    ifname: String,
    offload: bool,
    opened: bool,
    /// the guest's network namespace: as configured (for messages), and its file
    netns: Option<(String, PathBuf)>,
    /// the device's kernel counters and MTU (a netlink socket made in its namespace),
    /// once opened; `None` if they cannot be read
    link: Option<std::sync::Arc<vpcswitch_backend::sys::LinkStats>>,
    /// queues opened
    queues: usize,
}

impl TapBackend {
    /// The port's device; nothing is opened until the runtime asks for queues.
    pub fn new(ifname: &str) -> TapBackend {
        TapBackend::with_offload(ifname, true)
    }

    /// As [`TapBackend::new`], choosing whether to negotiate offloads.
    pub fn with_offload(ifname: &str, offload: bool) -> TapBackend {
        TapBackend {
            ifname: ifname.to_string(),
            offload,
            opened: false,
            netns: None,
            link: None,
            queues: 0,
        }
    }

    /// The device lives in the network namespace at `path` (`shown` names it in
    /// messages, e.g. the configured `web1` for `/var/run/netns/web1`): it is created or
    /// attached inside that namespace, and made persistent, so it outlives the switch
    /// and a restarted switch attaches to the same device.
    pub fn in_netns(mut self, shown: &str, path: impl Into<PathBuf>) -> TapBackend {
        self.netns = Some((shown.to_string(), path.into()));
        self
    }

    /// Opens `n` queues (at least one) on the device in the calling thread's namespace,
    /// making it persistent when it belongs to a guest's namespace, and the netlink
    /// socket its counters are read with (bound to that namespace).
    fn open_queues(
        &self,
        n: usize,
    ) -> Result<(Vec<OwnedFd>, Option<vpcswitch_backend::sys::LinkStats>), TapError> {
        let ifname = || self.ifname.clone();
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let r = sys::open_tap(&self.ifname, true, self.offload);
            let fd = match r {
                Ok((fd, _)) => fd,
                // a single-queue device made by someone else: fine for one worker
                Err(e) if n == 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::open_tap(&self.ifname, false, self.offload)
                        .map_err(|source| TapError::AttachSingleQueue {
                            ifname: ifname(),
                            source,
                        })?
                        .0
                }
                Err(source) => {
                    return Err(TapError::Open {
                        ifname: ifname(),
                        queue: i,
                        source,
                    })
                }
            };
            if i == 0 && self.netns.is_some() {
                sys::set_persist(fd.as_fd(), true).map_err(|source| TapError::Persist {
                    ifname: ifname(),
                    source,
                })?;
            }
            fds.push(fd);
        }
        let link = vpcswitch_backend::sys::LinkStats::open(&self.ifname).ok();
        Ok((fds, link))
    }
}

/// Runs `f` inside the network namespace at `path` on a short-lived thread of its own
/// (`sys::in_netns`: in, `f`, back out): the namespace change can never leak to the
/// caller's thread, even if moving back failed.
fn on_netns_thread<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("vpcswitch-netns".into())
            .spawn_scoped(s, || sys::in_netns(path, f))?
            .join()
            .map_err(|_| io::Error::other("the thread entering the namespace panicked"))?
    })
}

/// Deletes TAP `ifname` in the network namespace at `netns` if it is there: it is made
/// non-persistent, and goes when the last descriptor on it closes (at once, or when a
/// switch still holding it lets go). `Ok(false)`: no such device there. For a port with
/// `netns` that was removed from the configuration: its persistent device must not
/// stay behind.
pub fn delete_tap_in(ifname: &str, netns: &Path) -> io::Result<bool> {
    on_netns_thread(netns, || {
        if if_index(ifname).is_err() {
            return Ok(false);
        }
        let fd = match sys::open_tap(ifname, true, false) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                sys::open_tap(ifname, false, false)?.0
            }
            r => r?.0,
        };
        sys::set_persist(fd.as_fd(), false)?;
        Ok(true)
    })?
}

/// True when interface `ifname` exists in the network namespace at `netns`.
pub fn exists_in(ifname: &str, netns: &Path) -> io::Result<bool> {
    on_netns_thread(netns, || if_index(ifname).is_ok())
}

impl Backend for TapBackend {
    fn describe(&self) -> String {
        format!(
            "tap {}{}{}",
            self.ifname,
            match &self.netns {
                Some((ns, _)) => format!(" netns {ns}"),
                None => String::new(),
            },
            if self.offload { " +offload" } else { "" }
        )
    }

    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let n = workers.len();
        if self.opened {
            return Err(BackendError::opened_twice(&self.ifname, n));
        }
        let (fds, link) = match &self.netns {
            None => self.open_queues(n)?,
            Some((shown, path)) => {
                let me = &*self;
                on_netns_thread(path, || me.open_queues(n)).map_err(|source| {
                    TapError::EnterNetns {
                        shown: shown.clone(),
                        path: path.clone(),
                        source,
                    }
                })??
            }
        };
        self.opened = true;
        self.link = link.map(std::sync::Arc::new);
        self.queues = fds.len();
        Ok(fds
            .into_iter()
            .map(|fd| {
                Box::new(TapQueue {
                    dev: DeviceFd::new(fd),
                    offload: self.offload,
                }) as Box<dyn PortQueue>
            })
            .collect())
    }

    fn capabilities(&self) -> vpcswitch_backend::Capabilities {
        let mut c = vpcswitch_backend::Capabilities::new("tap", self.queues);
        c.interface = Some(self.ifname.clone());
        c.mtu = self.link.as_ref().and_then(|l| l.read().ok()?.mtu);
        c.checksum_offload = self.offload;
        c.segmentation_offload = self.offload;
        c.mode = self.netns.as_ref().map(|(ns, _)| format!("netns {ns}"));
        c
    }

    fn device_stats(&self) -> Option<Box<dyn vpcswitch_backend::DeviceStats>> {
        self.link
            .clone()
            .map(|l| Box::new(l) as Box<dyn vpcswitch_backend::DeviceStats>)
    }
}

struct TapQueue {
    dev: DeviceFd,
    /// a virtio-net header on every frame: receive into large buffers (a super-frame
    /// may come)
    offload: bool,
}

impl PortQueue for TapQueue {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.dev.is_down() {
            return 0;
        }
        let fd = self.dev.raw();
        let offload = self.offload;
        let (n, err) = read_burst(bufs, out, max, offload, |hdr, data| {
            if offload {
                sys::readv2(fd, hdr, data).map(|k| k.saturating_sub(VnetHdr::WIRE_LEN))
            } else {
                sys::read(fd, data)
            }
        });
        if let Some(e) = err {
            self.dev.note(&e);
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let fd = self.dev.raw();
        let mut r = TxResult::default();
        for b in frames.drain(..) {
            let w = if self.offload {
                sys::writev2(fd, &b.offload.vnet_hdr(b.frame()).to_wire(), b.frame())
            } else {
                sys::write(fd, b.frame())
            };
            match w {
                Ok(_) => r.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.full += 1,
                Err(e) => {
                    self.dev.note(&e);
                    r.errors += 1
                }
            }
            bufs.free(b);
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.dev.poll_fd()
    }

    fn is_down(&self) -> bool {
        self.dev.is_down()
    }

    fn accepts_offload(&self) -> bool {
        self.offload
    }
}
