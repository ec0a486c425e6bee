//! The AF_XDP backend: a switch port on an existing interface (a veth whose peer is in
//! the guest's namespace, a physical NIC), one AF_XDP socket per worker.
//!
//! # Contract
//! * [`XdpBackend::queues`] opens one socket per receive queue of the interface from
//!   `queue` up, and gives worker `i` the queues `queue + i`, `queue + i + workers`, ...
//!   (it receives from all of its sockets and sends through its first), so every such
//!   queue is served and none of the guest's frames reaches the host's stack instead.
//!   There must be at least as many queues as workers (a veth made with `numrxqueues N
//!   numtxqueues N` has N); anything missing is an error naming what to change.
//! * It loads a six-instruction XDP program ([`redirect_program`]: redirect to the
//!   socket of the frame's receive queue, pass to the kernel when a queue has none) with
//!   bpf(2), no libbpf, no clang, and attaches it through a **bpf link**: the program is
//!   attached exactly as long as a descriptor of the link is open, so it is gone when the
//!   switch stops, and when it is killed (`kill -9`), with nothing to clean up.
//! * Modes: `auto` tries the driver's native XDP with zero-copy, then native copy mode,
//!   then generic (SKB) mode; `zerocopy`, `copy` (native, copy mode) and `skb` ask for one
//!   and fail if it is refused. The mode in use is in [`Backend::describe`]. A veth has
//!   native XDP but no zero-copy.
//! * **The UMEM is the worker's buffer pool.** A worker's ordinary buffers are carved
//!   from one memory region in the UMEM layout (`vpcswitch_backend::UMEM_STRIDE`), and
//!   every AF_XDP socket of that worker registers that region as its UMEM. Buffers are
//!   lent to the kernel ([`FILL_DEPTH`] per socket in the fill ring; frames to send in
//!   the tx ring) and come back through the rx and completion rings. So a received frame
//!   is handed to the pipeline in the buffer the kernel put it in, and a frame forwarded
//!   to another AF_XDP port of the same worker (all of them are: a frame is sent by the
//!   worker that received it) is sent from that same buffer: **no copy** in the switch.
//!   A frame in any other buffer (a TAP's large buffer, a heap buffer) is copied into a
//!   pool buffer first and counted ([`XdpBackend::copied`]). With a zero-copy driver
//!   the NIC reads and writes the pool directly; in copy mode (veth) the kernel copies
//!   between its socket buffers and the pool, as it must.
//! * **What a socket holds between calls** (the one exception to the ownership rule of
//!   `vpcswitch_backend`, and bounded): the buffers lent to the kernel — at most
//!   [`FILL_DEPTH`] in the fill ring, and the frames in the tx ring until the kernel
//!   completes them (at most [`RING_SIZE`]; taken back on every call). It takes them
//!   from, and gives them back to, the worker's caches lent to each call; it keeps no
//!   cache of its own. Each socket keeps at most [`FILL_DEPTH`] lent, or its fair share of
//!   the pool if less (`vpcswitch_backend::LendShare`: half the pool split among the
//!   worker's sockets, at least [`MIN_FILL`]), so however many AF_XDP ports a worker
//!   serves, each can receive and half the pool stays for frames in flight.
//! * AF_XDP carries no offload metadata: a frame whose L4 checksum the sender left to
//!   the NIC (a veth peer with `tx` checksum offload on) arrives with a wrong checksum,
//!   and segmentation super-frames do not fit a frame. Guests behind AF_XDP ports must
//!   run with `ethtool -K eth0 tx off` (docs/operations.md); AF_PACKET and TAP ports read
//!   the metadata and need nothing.
//! * **Multi-buffer frames**: the program is loaded with `BPF_F_XDP_HAS_FRAGS` and the
//!   sockets bound with `XDP_USE_SG` where the kernel and driver take them, so a guest
//!   MTU up to `MAX_FRAME - 14` works. A frame received in several descriptors
//!   (`XDP_PKT_CONTD`) is put together in one of the worker's large buffers (a copy;
//!   [`XdpBackend::reassembled`]), its pieces' buffers going back at once; one in more
//!   than [`MAX_FRAGS`] descriptors is dropped whole and counted (`take_rx_drops`,
//!   `frame_too_long` in the runtime). A frame longer than a buffer is sent as several
//!   descriptors, cut into pool buffers (a copy, counted in [`XdpBackend::copied`]).
//!   The port takes frames up to its interface's MTU + 14 (`PortQueue::max_frame`).
//! * A descriptor that is not a buffer the socket lent, or longer than it, is counted
//!   (`rx_malformed`) and dropped, never trusted.
//!
//! `unsafe` lives only in [`sys`].

mod chain;
mod error;
mod program;
mod queue;
mod socket;
pub mod sys;
mod umem;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vpcswitch_backend::sys::{if_index, interface_mtu};
use vpcswitch_backend::{
    Backend, BackendError, PortQueue, RxDrops, WorkerMem, BUF_SIZE, LARGE_BUF_SIZE,
};

pub use error::XdpError;
pub use program::redirect_program;
use program::{attach, load_program};
use queue::XskQueue;
use socket::{Target, Xsk};
use umem::UmemOf;

/// Descriptors in each of a socket's four rings.
pub const RING_SIZE: u32 = 2048;
/// Buffers each socket lends the kernel to receive into.
pub const FILL_DEPTH: u32 = 1024;
/// The fewest buffers a socket keeps in its fill ring, however many share the pool.
pub const MIN_FILL: u32 = 16;
/// Most descriptors one frame may take (multi-buffer AF_XDP, `XDP_USE_SG`). The
/// kernel's copy-mode transmit builds a frame as one linear part and up to
/// `MAX_SKB_FRAGS` (17) - 1 more pieces before it refuses the frame (`EOVERFLOW`);
/// 16 stays inside that, and a received frame in more descriptors is dropped and
/// counted (`frame_too_long`).
pub const MAX_FRAGS: usize = 16;
/// The longest frame an AF_XDP port receives or sends: [`MAX_FRAGS`] buffers of
/// [`BUF_SIZE`] bytes (32 KiB). A guest MTU up to `MAX_FRAME - 14` works behind it.
pub const MAX_FRAME: usize = MAX_FRAGS * BUF_SIZE;
const _: () = assert!(MAX_FRAME <= LARGE_BUF_SIZE);

/// How the program is attached and the sockets bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// native zero-copy, else native copy, else generic
    Auto,
    /// native XDP, zero-copy sockets (the driver must support it)
    ZeroCopy,
    /// native XDP, copy-mode sockets
    Copy,
    /// generic (SKB) XDP, copy-mode sockets: any interface
    Skb,
}

impl XdpMode {
    /// The configuration's name for a mode (`None`: auto).
    pub fn parse(s: Option<&str>) -> Result<XdpMode, String> {
        match s.unwrap_or("auto") {
            "auto" => Ok(XdpMode::Auto),
            "zerocopy" => Ok(XdpMode::ZeroCopy),
            "copy" => Ok(XdpMode::Copy),
            "skb" => Ok(XdpMode::Skb),
            m => Err(format!(
                "af_xdp mode \"{m}\" is not one of \"auto\", \"zerocopy\", \"copy\", \"skb\""
            )),
        }
    }
}

/// An existing interface as a switch port, through AF_XDP sockets.
#[derive(Debug)]
pub struct XdpBackend {
    ifname: String,
    queue: u32,
    mode: XdpMode,
    /// what was attached, once opened
    attached: Option<String>,
    /// frames its queues had to copy into a UMEM buffer before sending
    copies: Arc<AtomicU64>,
    /// frames received in several descriptors, put together in one buffer (a copy)
    reassembled: Arc<AtomicU64>,
    /// the longest frame the port sends, once opened
    max_frame: usize,
    /// what was opened: sockets, the interface's MTU, zero-copy, the mode's words
    opened: Option<(usize, u32, bool, String)>,
    /// the interface's kernel counters, once opened (`None` if unreadable)
    link: Option<Arc<vpcswitch_backend::sys::LinkStats>>,
}

impl XdpBackend {
    /// The port's interface, its first queue and the mode; nothing is opened until the
    /// runtime asks for queues.
    pub fn new(ifname: &str, queue: u32, mode: XdpMode) -> XdpBackend {
        XdpBackend {
            ifname: ifname.to_string(),
            queue,
            mode,
            attached: None,
            copies: Arc::default(),
            reassembled: Arc::default(),
            max_frame: 0,
            opened: None,
            link: None,
        }
    }

    /// Frames sent through this port that had to be copied into the worker's pool
    /// first (they came from a heap buffer, a large buffer or another worker's pool).
    /// Frames received on another AF_XDP port of the same worker are not copied.
    pub fn copied(&self) -> u64 {
        self.copies.load(Ordering::Relaxed)
    }

    /// Frames received in several descriptors (multi-buffer), each copied once into a
    /// large buffer to be handed to the pipeline whole.
    pub fn reassembled(&self) -> u64 {
        self.reassembled.load(Ordering::Relaxed)
    }

    /// The longest frame the port sends (its interface's MTU + 14, at most
    /// [`MAX_FRAME`]; [`BUF_SIZE`] without multi-buffer support); 0 before it is opened.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

/// The program, its map and the link that keeps it attached; shared by the interface's
/// queues, so it detaches when the last of them is dropped (or the process dies).
#[derive(Debug)]
pub(crate) struct Attachment {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
}

/// Receive queues of interface `ifname` (from sysfs).
pub fn rx_queues(ifname: &str) -> io::Result<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))?;
    Ok(dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32)
}

impl Backend for XdpBackend {
    fn describe(&self) -> String {
        match &self.attached {
            Some(how) => format!("af_xdp {} {how}", self.ifname),
            None => format!("af_xdp {}", self.ifname),
        }
    }

    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        let n = workers.len() as u32;
        if self.attached.is_some() {
            return Err(BackendError::opened_twice(&self.ifname, n as usize));
        }
        let ifname = self.ifname.clone();
        let ifindex = if_index(&ifname).map_err(|source| XdpError::FindInterface {
            ifname: ifname.clone(),
            source,
        })?;
        let have = rx_queues(&ifname).map_err(|source| XdpError::CountQueues {
            ifname: ifname.clone(),
            source,
        })?;
        if self.queue.checked_add(n).is_none_or(|last| last > have) {
            return Err(XdpError::TooFewQueues {
                ifname,
                workers: n,
                first: self.queue,
                have,
            }
            .into());
        }
        let map =
            sys::xskmap_create(have, "vpcswitch_xsks").map_err(|source| XdpError::CreateMap {
                ifname: ifname.clone(),
                source,
            })?;
        let (prog, frags) = load_program(map.as_raw_fd())?;
        let mtu = interface_mtu(&ifname).map_err(|source| XdpError::ReadMtu {
            ifname: ifname.clone(),
            source,
        })?;
        let (link, native) = attach(prog.as_raw_fd(), ifindex, &ifname, self.mode)?;
        let shared = Arc::new(Attachment {
            _link: link,
            _prog: prog,
            _map: map,
        });
        // worker i serves queues first + i, first + i + n, ...: every queue from `first`
        // up has a socket, so no frame is passed to the kernel behind the switch's back
        let mut made: Vec<XskQueue> = Vec::with_capacity(n as usize);
        let mut zerocopy = true;
        let mut sg = frags;
        for (i, mem) in workers.iter().enumerate() {
            let Some((region, stride)) = mem.umem() else {
                return Err(XdpError::NotUmem { ifname, worker: i }.into());
            };
            let umem = UmemOf {
                region: region.clone(),
                stride,
            };
            let mut socks = Vec::new();
            for q in (self.queue + i as u32..have).step_by(n as usize) {
                let at = Target {
                    ifname: &ifname,
                    ifindex,
                    queue: q,
                    native,
                    mode: self.mode,
                    sg: frags,
                };
                let (x, zc, x_sg) = Xsk::open(&at, &umem, mem.lend_share())?;
                zerocopy &= zc;
                sg &= x_sg;
                sys::xskmap_set(shared._map.as_raw_fd(), q, x.fd.as_raw_fd()).map_err(
                    |source| XdpError::AddToMap {
                        ifname: ifname.clone(),
                        queue: q,
                        source,
                    },
                )?;
                socks.push(x);
            }
            made.push(XskQueue {
                socks,
                next: 0,
                idle: 0,
                umem,
                drops: RxDrops::default(),
                tx_invalid: 0,
                copied: self.copies.clone(),
                reassembled: self.reassembled.clone(),
                max_frame: 0,
                split: Vec::with_capacity(MAX_FRAGS),
                down: false,
                _attachment: shared.clone(),
            });
        }
        // a frame the interface's MTU does not allow would be dropped by the kernel
        // without a trace (a veth checks its peer's MTU): refuse it here, counted
        let max_frame = if sg { MAX_FRAME } else { BUF_SIZE }.min(mtu.saturating_add(14));
        self.max_frame = max_frame;
        let queues: Vec<Box<dyn PortQueue>> = made
            .into_iter()
            .map(|mut q| {
                q.max_frame = max_frame;
                Box::new(q) as Box<dyn PortQueue>
            })
            .collect();
        self.opened = Some((
            queues.len(),
            mtu as u32,
            zerocopy,
            format!(
                "{} {}",
                if native { "native" } else { "skb" },
                if zerocopy { "zerocopy" } else { "copy" }
            ),
        ));
        self.link = vpcswitch_backend::sys::LinkStats::open(&self.ifname)
            .ok()
            .map(Arc::new);
        self.attached = Some(format!(
            "{} {}{} q{}{}",
            if native { "native" } else { "skb" },
            if zerocopy { "zerocopy" } else { "copy" },
            if sg { " multi-buffer" } else { "" },
            self.queue,
            if have - self.queue > 1 {
                format!("-{}", have - 1)
            } else {
                String::new()
            }
        ));
        Ok(queues)
    }

    fn capabilities(&self) -> vpcswitch_backend::Capabilities {
        let mut c = vpcswitch_backend::Capabilities::new("af_xdp", 0);
        c.interface = Some(self.ifname.clone());
        if let Some((queues, mtu, zc, mode)) = &self.opened {
            c.queues = *queues;
            c.mtu = Some(*mtu);
            c.max_frame = Some(self.max_frame);
            c.zero_copy = *zc;
            c.mode = Some(mode.clone());
        }
        // no offload metadata on AF_XDP: guests must turn checksum offload off
        c
    }

    fn device_stats(&self) -> Option<Box<dyn vpcswitch_backend::DeviceStats>> {
        self.link
            .clone()
            .map(|l| Box::new(l) as Box<dyn vpcswitch_backend::DeviceStats>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_unknown_ones_are_named() {
        assert_eq!(XdpMode::parse(None), Ok(XdpMode::Auto));
        assert_eq!(XdpMode::parse(Some("skb")), Ok(XdpMode::Skb));
        let e = XdpMode::parse(Some("fast")).unwrap_err();
        assert!(e.contains("\"fast\""), "{e}");
    }
}
