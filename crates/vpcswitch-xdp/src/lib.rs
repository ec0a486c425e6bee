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

pub mod sys;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sys::{Insn, Ring, RingKind, XdpDesc};
use vpcswitch_backend::sys::Region;
use vpcswitch_backend::{
    Backend, BackendError, LendShare, Lender, PacketBuf, PortQueue, RxDrops, TxResult, WorkerBufs,
    WorkerMem, BUF_SIZE, LARGE_BUF_SIZE, UMEM_FRAME, UMEM_HEADROOM,
};
use vpcswitch_tap::gone;

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

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_PASS`: what the program does with a frame of a queue without a socket.
const XDP_PASS: i32 = 2;
/// `BPF_FUNC_redirect_map`
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// The XDP program, as instructions: redirect every frame to the AF_XDP socket at its
/// receive queue's slot in the XSKMAP `map_fd`, or pass it to the kernel when the slot
/// is empty. Written by hand (the eBPF ISA, Documentation/bpf/standardization/):
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
/// r1 = map_fd ll              ; BPF_PSEUDO_MAP_FD: the loader turns it into the map
/// r3 = 2                      ; XDP_PASS when the slot is empty (Linux 5.3+)
/// call bpf_redirect_map
/// exit                        ; its result is the verdict
/// ```
pub fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    let i = |code: u8, dst: u8, src: u8, off: i16, imm: i32| Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    };
    [
        // BPF_LDX | BPF_MEM | BPF_W
        i(0x61, 2, 1, 16, 0),
        // BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD; two slots
        i(0x18, 1, 1, 0, map_fd),
        i(0, 0, 0, 0, 0),
        // BPF_ALU64 | BPF_MOV | BPF_K
        i(0xb7, 3, 0, 0, XDP_PASS),
        // BPF_JMP | BPF_CALL
        i(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // BPF_JMP | BPF_EXIT
        i(0x95, 0, 0, 0, 0),
    ]
}

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
struct Attachment {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> BackendError {
    move |source| BackendError::Io { what, source }
}

/// Receive queues of interface `ifname` (from sysfs).
pub fn rx_queues(ifname: &str) -> io::Result<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))?;
    Ok(dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32)
}

/// The interface's MTU (sysfs).
fn mtu(ifname: &str) -> io::Result<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))?
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// Loads the program, with multi-buffer support (`BPF_F_XDP_HAS_FRAGS`) when the
/// kernel takes it; returns it and whether it has it.
fn load_program(map: RawFd) -> Result<(OwnedFd, bool), BackendError> {
    let insns = redirect_program(map);
    let license: &CStr = c"GPL";
    let frags = sys::BPF_F_XDP_HAS_FRAGS;
    if let Ok(p) = sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", frags, &mut []) {
        return Ok((p, true));
    }
    match sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", 0, &mut []) {
        Ok(p) => Ok((p, false)),
        Err(e) => {
            // again with the verifier's log, for the message
            let mut log = vec![0u8; 4096];
            let _ = sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", 0, &mut log);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end])
                .trim()
                .replace('\n', "; ");
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (needs CAP_BPF and CAP_NET_ADMIN)"
            } else {
                ""
            };
            Err(BackendError::Io {
                what: format!("load the XDP program{hint}; verifier: {text}"),
                source: e,
            })
        }
    }
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
            return Err(BackendError::Queues {
                name: self.ifname.clone(),
                have: 0,
                want: n as usize,
            });
        }
        let ifname = self.ifname.clone();
        let ifindex = vpcswitch_tap::sys::if_index(&ifname).map_err(io_err(format!(
            "find interface {ifname} (AF_XDP attaches to an existing interface)"
        )))?;
        let have = rx_queues(&ifname).map_err(io_err(format!("count the queues of {ifname}")))?;
        if self.queue.checked_add(n).is_none_or(|last| last > have) {
            return Err(BackendError::Io {
                what: format!(
                    "af_xdp on {ifname}: {n} worker(s) need at least {n} receive queues from queue {} but it has {have} in all (a veth: ip link add ... numrxqueues {n} numtxqueues {n} type veth ...; a NIC: ethtool -L {ifname} combined {n})",
                    self.queue
                ),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        let map = sys::xskmap_create(have, "vpcswitch_xsks")
            .map_err(io_err(format!("create the XSKMAP for {ifname}")))?;
        let (prog, frags) = load_program(map.as_raw_fd())?;
        let mtu = mtu(&ifname).map_err(io_err(format!("read the MTU of {ifname}")))?;
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
                return Err(BackendError::Io {
                    what: format!("af_xdp on {ifname}: worker {i}'s buffer pool is not in one memory region, so it cannot be a UMEM"),
                    source: io::Error::from(io::ErrorKind::Unsupported),
                });
            };
            let umem = UmemOf {
                region: region.clone(),
                stride,
            };
            let mut socks = Vec::new();
            for q in (self.queue + i as u32..have).step_by(n as usize) {
                let (x, zc, x_sg) = Xsk::open(
                    ifindex,
                    q,
                    native,
                    self.mode,
                    frags,
                    &umem,
                    mem.lend_share(),
                )
                .map_err(io_err(format!(
                    "open the AF_XDP socket for {ifname} queue {q}"
                )))?;
                zerocopy &= zc;
                sg &= x_sg;
                sys::xskmap_set(shared._map.as_raw_fd(), q, x.fd.as_raw_fd()).map_err(io_err(
                    format!("add the {ifname} queue {q} socket to the XSKMAP"),
                ))?;
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
        let queues = made
            .into_iter()
            .map(|mut q| {
                q.max_frame = max_frame;
                Box::new(q) as Box<dyn PortQueue>
            })
            .collect();
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
}

/// Attaches the program in the mode asked for; returns the link and whether it is native.
fn attach(
    prog: RawFd,
    ifindex: u32,
    ifname: &str,
    mode: XdpMode,
) -> Result<(OwnedFd, bool), BackendError> {
    let busy = |e: &io::Error| {
        if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST) {
            format!(" (another XDP program is attached: `ip link set dev {ifname} xdp off` if it is stale)")
        } else {
            String::new()
        }
    };
    let native = sys::xdp_link_create(prog, ifindex, XDP_FLAGS_DRV_MODE);
    match (mode, native) {
        (XdpMode::Skb, _) => {}
        (_, Ok(l)) => return Ok((l, true)),
        (XdpMode::Auto, Err(_)) => {}
        (_, Err(e)) => {
            let b = busy(&e);
            return Err(BackendError::Io {
                what: format!("attach XDP in native (driver) mode to {ifname}{b}; mode \"skb\" works on any interface"),
                source: e,
            });
        }
    }
    sys::xdp_link_create(prog, ifindex, XDP_FLAGS_SKB_MODE)
        .map(|l| (l, false))
        .map_err(|e| {
            let b = busy(&e);
            BackendError::Io {
                what: format!("attach XDP in generic (skb) mode to {ifname}{b}"),
                source: e,
            }
        })
}

/// One AF_XDP socket, bound to one receive queue of the interface. Its UMEM is the
/// worker's buffer pool: buffers are lent to the kernel (in the fill ring, to receive
/// into; in the tx ring, to send) and kept here, by chunk, until they come back.
struct Xsk {
    // first: closing the socket stops the kernel using the lent buffers before they go
    // back to the pool (fields drop in order)
    fd: OwnedFd,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    /// our producer index on the fill ring
    fill_prod: u32,
    /// our consumer index on the rx ring
    rx_cons: u32,
    /// our producer index on the tx ring
    tx_prod: u32,
    /// our consumer index on the completion ring
    comp_cons: u32,
    /// buffers lent to the kernel to receive into
    rx_lent: u32,
    /// the lent buffers, by index in the pool
    lent: Vec<Option<PacketBuf>>,
    /// zero-copy: a chunk must not cross a page (the NIC maps pages one by one)
    zc: bool,
    /// this socket's place among the worker's lenders: it keeps at most its fair share
    /// of the pool (and at most [`FILL_DEPTH`]) in the fill ring
    lender: Lender,
    /// a multi-buffer frame being received
    chain: Chain,
}

/// What one descriptor of a multi-buffer frame did to it.
#[derive(Debug)]
enum Step {
    /// nothing to hand over yet (or the rest of a frame already refused)
    Nothing,
    /// the frame is whole
    Frame(PacketBuf),
    /// the frame is refused as too long; the rest of its descriptors are skipped
    TooLong,
    /// no large buffer to put the frame together in; the rest of its descriptors are
    /// skipped
    NoBuffer,
}

/// A frame arriving in several descriptors (`XDP_PKT_CONTD` on all but its last), put
/// together in one large buffer as its pieces come. Each piece's UMEM buffer goes back
/// at once, so whatever the descriptors say (a chain that never ends, more pieces than
/// [`MAX_FRAGS`]), an open chain holds one large buffer and no UMEM chunk.
#[derive(Debug, Default)]
struct Chain {
    /// the frame so far (`None`: no chain open, or it is being skipped)
    buf: Option<PacketBuf>,
    /// descriptors of the open chain so far
    frags: usize,
    /// the open chain was refused: its descriptors are skipped up to its last
    skip: bool,
}

impl Chain {
    /// True while a frame's first descriptors have come and not its last.
    #[inline]
    fn is_open(&self) -> bool {
        self.frags > 0
    }

    /// Adds one descriptor's bytes (`contd`: more follow).
    fn push(&mut self, bytes: &[u8], contd: bool, bufs: &mut WorkerBufs) -> Step {
        self.frags += 1;
        let mut step = Step::Nothing;
        if !self.skip {
            if self.buf.is_none() {
                match bufs.alloc_large() {
                    Some(mut b) if b.capacity() >= MAX_FRAME => {
                        b.set_len(0);
                        self.buf = Some(b);
                    }
                    other => {
                        if let Some(b) = other {
                            bufs.free(b);
                        }
                        self.skip = true;
                        step = Step::NoBuffer;
                    }
                }
            }
            if let Some(b) = &mut self.buf {
                let (data, len) = b.parts_mut();
                let end = *len + bytes.len();
                if self.frags > MAX_FRAGS || end > MAX_FRAME.min(data.len()) {
                    self.skip = true;
                } else {
                    data[*len..end].copy_from_slice(bytes);
                    *len = end;
                }
            }
            if self.skip {
                if matches!(step, Step::Nothing) {
                    step = Step::TooLong;
                }
                if let Some(b) = self.buf.take() {
                    bufs.free(b);
                }
            }
        }
        if !contd {
            self.frags = 0;
            if !std::mem::take(&mut self.skip) {
                if let Some(mut b) = self.buf.take() {
                    // AF_XDP carries no offload metadata
                    b.offload = Default::default();
                    b.vnet = Default::default();
                    return Step::Frame(b);
                }
            }
        }
        step
    }

    /// A descriptor that cannot be read (not a lent buffer, a length past it) in or at
    /// the start of a chain: the chain is refused (counted once, as malformed, by the
    /// caller) and skipped to its end.
    fn poison(&mut self, contd: bool, bufs: &mut WorkerBufs) {
        if let Some(b) = self.buf.take() {
            bufs.free(b);
        }
        self.skip = contd;
        self.frags = if contd { self.frags + 1 } else { 0 };
    }
}

/// What one read of the rx ring gave.
#[derive(Debug, Default, Clone, Copy)]
struct Received {
    /// frames handed over
    frames: usize,
    /// multi-buffer frames among them
    reassembled: u64,
    /// frames refused for their length
    too_long: u64,
    /// frames that found no large buffer
    no_buffer: u64,
    /// descriptors never trusted
    malformed: u64,
}

/// The worker's pool as a UMEM: its region and the stride of its buffers (the layout
/// of `vpcswitch_backend::UMEM_STRIDE`: buffer `i`'s data at `i * stride + UMEM_HEADROOM`,
/// its chunk `UMEM_HEADROOM` before).
#[derive(Debug, Clone)]
struct UmemOf {
    region: Arc<Region>,
    stride: usize,
}

impl UmemOf {
    /// The index of a buffer of this UMEM, and the address of its data.
    #[inline]
    fn chunk_of(&self, b: &PacketBuf) -> Option<(usize, u64)> {
        let (r, off) = b.region_offset()?;
        // another region's buffer (a TAP's large buffer, another pool) may sit at any
        // offset: only this region's offsets are known to start past the headroom
        if !Arc::ptr_eq(r, &self.region) {
            return None;
        }
        Some((off.checked_sub(UMEM_HEADROOM)? / self.stride, off as u64))
    }
    /// The buffer index of a data address the kernel gave back (an unaligned-mode
    /// descriptor: base in the low 48 bits, offset above), if it is exactly a buffer's
    /// first byte.
    #[inline]
    fn index_of(&self, addr: u64) -> Option<usize> {
        let data = (addr & ((1 << 48) - 1)) + (addr >> 48);
        let rel = usize::try_from(data).ok()?.checked_sub(UMEM_HEADROOM)?;
        rel.is_multiple_of(self.stride).then_some(rel / self.stride)
    }
}

/// One worker's share of the interface: the sockets of the receive queues it serves
/// (queue `first + i`, `first + i + workers`, ...). It receives from all of them and
/// sends through the first.
struct XskQueue {
    socks: Vec<Xsk>,
    /// the socket `rx_burst` starts with, rotating so none starves
    next: usize,
    /// polls that found nothing since the socket's state was last asked
    idle: u32,
    umem: UmemOf,
    /// frames refused on receive, until the runtime takes the counts
    drops: RxDrops,
    /// frames refused on transmit (longer than the port takes; the runtime drops them
    /// first, counted as `mtu_exceeded`, so only direct callers reach this)
    tx_invalid: u64,
    /// frames sent that had to be copied into the pool first (from another worker's
    /// pool or a large buffer, a multi-buffer frame cut into UMEM buffers); the rest
    /// crossed without a copy
    copied: Arc<AtomicU64>,
    /// frames received in several descriptors and put together (one copy each)
    reassembled: Arc<AtomicU64>,
    /// the longest frame the port sends (the interface's MTU + 14, at most MAX_FRAME)
    max_frame: usize,
    /// the UMEM buffers of a multi-buffer frame being sent (at most MAX_FRAGS; made
    /// once, so cutting a frame allocates nothing)
    split: Vec<PacketBuf>,
    down: bool,
    _attachment: Arc<Attachment>,
}

impl std::fmt::Debug for XskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskQueue")
            .field("sockets", &self.socks.len())
            .field("drops", &self.drops)
            .field("tx_invalid", &self.tx_invalid)
            .field("copied", &self.copied)
            .field("max_frame", &self.max_frame)
            .field("down", &self.down)
            .finish()
    }
}

impl Xsk {
    /// Opens and binds the socket on `umem`, multi-buffer (`XDP_USE_SG`) when `sg` and
    /// the kernel and driver take it; returns it, whether it is zero-copy and whether
    /// it is multi-buffer.
    fn open(
        ifindex: u32,
        queue: u32,
        native: bool,
        mode: XdpMode,
        sg: bool,
        umem: &UmemOf,
        share: &LendShare,
    ) -> io::Result<(Xsk, bool, bool)> {
        let fd = sys::xsk_socket()?;
        let raw = fd.as_raw_fd();
        sys::register_umem(
            raw,
            umem.region.addr(),
            umem.region.len(),
            UMEM_FRAME as u32,
        )
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ENOMEM)
                || e.raw_os_error() == Some(libc::EPERM)
            {
                " (pinning the worker's buffer pool needs CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("register the UMEM: {e}{hint}"))
        })?;
        sys::set_ring_size(raw, libc::XDP_UMEM_FILL_RING, RING_SIZE)?;
        sys::set_ring_size(raw, libc::XDP_UMEM_COMPLETION_RING, RING_SIZE)?;
        sys::set_ring_size(raw, libc::XDP_RX_RING, RING_SIZE)?;
        sys::set_ring_size(raw, libc::XDP_TX_RING, RING_SIZE)?;
        let fill = sys::map_ring::<u64>(raw, RingKind::Fill, RING_SIZE)?;
        let comp = sys::map_ring::<u64>(raw, RingKind::Completion, RING_SIZE)?;
        let rx = sys::map_ring::<XdpDesc>(raw, RingKind::Rx, RING_SIZE)?;
        let tx = sys::map_ring::<XdpDesc>(raw, RingKind::Tx, RING_SIZE)?;
        let bind = |flags| sys::bind(raw, ifindex, queue, libc::XDP_USE_NEED_WAKEUP | flags);
        // multi-buffer when it can be had (a zero-copy driver may lack it), else not
        let bind_sg = |flags| {
            if sg && bind(flags | libc::XDP_USE_SG).is_ok() {
                Ok(true)
            } else {
                bind(flags).map(|()| false)
            }
        };
        // zero-copy needs native XDP and the driver's support; auto tries it first
        let (zc, sg) = match (native, mode) {
            (true, XdpMode::ZeroCopy) => {
                let sg = bind_sg(libc::XDP_ZEROCOPY).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("bind in zero-copy mode: {e} (the driver has no AF_XDP zero-copy, a veth never has; use mode \"copy\" or \"auto\")"),
                    )
                })?;
                (true, sg)
            }
            (true, XdpMode::Auto) => match bind_sg(libc::XDP_ZEROCOPY) {
                Ok(sg) => (true, sg),
                Err(_) => (false, bind_sg(libc::XDP_COPY)?),
            },
            _ => (false, bind_sg(libc::XDP_COPY)?),
        };
        let chunks = umem.region.len() / umem.stride;
        Ok((
            Xsk {
                fd,
                fill,
                comp,
                rx,
                tx,
                fill_prod: 0,
                rx_cons: 0,
                tx_prod: 0,
                comp_cons: 0,
                rx_lent: 0,
                lent: (0..chunks).map(|_| None).collect(),
                zc,
                lender: share.join(),
                chain: Chain::default(),
            },
            zc,
            sg,
        ))
    }
    /// Takes back the buffers the kernel has sent.
    fn reclaim(&mut self, umem: &UmemOf, cache: &mut WorkerBufs) {
        let prod = self.comp.producer();
        let n = prod.wrapping_sub(self.comp_cons);
        if n == 0 {
            return;
        }
        for k in 0..n {
            let addr = self.comp.read(self.comp_cons.wrapping_add(k));
            let slot = umem.index_of(addr).and_then(|i| self.lent.get_mut(i));
            if let Some(b) = slot.and_then(Option::take) {
                cache.free(b);
            }
        }
        self.comp_cons = prod;
        self.comp.set_consumer(prod);
    }

    /// Lends pool buffers to the kernel until [`FILL_DEPTH`] (or the socket's fair share
    /// of the pool, if smaller: many sockets on one worker) wait to be received into.
    fn refill(&mut self, umem: &UmemOf, cache: &mut WorkerBufs) {
        let depth = FILL_DEPTH.min(self.lender.fair_share().max(MIN_FILL as usize) as u32);
        let want = depth.saturating_sub(self.rx_lent);
        if want < 32.min(depth / 2) || want == 0 {
            return;
        }
        let mut k = 0;
        // bounded: a buffer of another pool is sent home, not lent
        for _ in 0..want * 2 {
            if k == want {
                break;
            }
            let Some(b) = cache.alloc() else {
                break;
            };
            let Some((i, data)) = umem.chunk_of(&b) else {
                drop(b);
                continue;
            };
            // the chunk starts the kernel's headroom before the buffer
            let chunk = data - UMEM_HEADROOM as u64;
            if self.zc && chunk % 4096 + UMEM_FRAME as u64 > 4096 {
                cache.free(b);
                continue;
            }
            match self.lent.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some(b);
                    self.fill.write(self.fill_prod.wrapping_add(k), chunk);
                    k += 1;
                }
                _ => cache.free(b),
            }
        }
        if k > 0 {
            self.fill_prod = self.fill_prod.wrapping_add(k);
            self.fill.set_producer(self.fill_prod);
            self.rx_lent += k;
            if self.fill.needs_wakeup() {
                let _ = sys::kick_rx(self.fd.as_raw_fd());
            }
        }
    }

    /// Asks the kernel to send; false when the interface is gone.
    fn kick(&self) -> bool {
        // EAGAIN/EBUSY/ENOBUFS: the kernel sends later
        sys::kick_tx(self.fd.as_raw_fd()).map_or_else(|e| !gone(&e), |()| true)
    }

    /// Sends what earlier kicks left in the tx ring (copy mode sends a bounded number
    /// per kick). False when the interface is gone.
    fn flush(&mut self) -> bool {
        if self.tx.consumer() != self.tx_prod && self.tx.needs_wakeup() {
            return self.kick();
        }
        true
    }

    /// Hands up to `max` received frames over: a frame in one descriptor in the buffer
    /// it was received into (no copy), a frame in several put together in a large
    /// buffer (one copy, [`Chain`]).
    fn receive(
        &mut self,
        umem: &UmemOf,
        cache: &mut WorkerBufs,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> Received {
        let avail = self.rx.producer().wrapping_sub(self.rx_cons);
        let mut r = Received::default();
        // up to `max` frames, however many descriptors they take (a burst of 32 jumbo
        // frames is 160 descriptors: reading only 32 let the rings fill and the kernel
        // drop)
        let mut take = 0;
        while take < avail && r.frames < max {
            let d = self.rx.read(self.rx_cons.wrapping_add(take));
            take += 1;
            let contd = d.options & libc::XDP_PKT_CONTD != 0;
            let slot = umem.index_of(d.addr).and_then(|i| self.lent.get_mut(i));
            let Some(mut b) = slot.and_then(Option::take) else {
                // not the first byte of a buffer we lent: never trusted
                r.malformed += 1;
                self.chain.poison(contd, cache);
                continue;
            };
            self.rx_lent = self.rx_lent.saturating_sub(1);
            if (d.len as usize) > b.capacity() {
                // a driver that put the frame elsewhere in the chunk: refused, counted
                r.malformed += 1;
                self.chain.poison(contd, cache);
                cache.free(b);
                continue;
            }
            b.set_len(d.len as usize);
            if !contd && !self.chain.is_open() {
                // AF_XDP carries no offload metadata: nothing a previous user of the
                // buffer left may reach the ingress check
                b.offload = Default::default();
                b.vnet = Default::default();
                out.push(b);
                r.frames += 1;
                continue;
            }
            // a piece of a multi-buffer frame: copied into the frame, its buffer back
            let step = self.chain.push(b.frame(), contd, cache);
            cache.free(b);
            match step {
                Step::Nothing => {}
                Step::Frame(f) => {
                    out.push(f);
                    r.frames += 1;
                    r.reassembled += 1;
                }
                Step::TooLong => r.too_long += 1,
                Step::NoBuffer => r.no_buffer += 1,
            }
        }
        if take > 0 {
            self.rx_cons = self.rx_cons.wrapping_add(take);
            self.rx.set_consumer(self.rx_cons);
        }
        r
    }
}

impl XskQueue {
    /// Queues a frame longer than one buffer on socket 0's tx ring as several
    /// descriptors (`XDP_PKT_CONTD` on all but the last), copied into UMEM buffers:
    /// all of them or none. `queued` and `room`: the ring's state in this burst.
    fn queue_multi(
        &mut self,
        bufs: &mut WorkerBufs,
        b: PacketBuf,
        queued: &mut u32,
        room: u32,
        r: &mut TxResult,
    ) {
        let len = b.len();
        let pieces = len.div_ceil(BUF_SIZE);
        if *queued as usize + pieces > room as usize {
            r.full += 1;
            bufs.free(b);
            return;
        }
        self.split.clear();
        for piece in b.frame().chunks(BUF_SIZE) {
            let Some(mut nb) = bufs.alloc() else {
                break;
            };
            nb.fill(piece);
            self.split.push(nb);
        }
        bufs.free(b);
        let s = &mut self.socks[0];
        // every piece in a UMEM buffer that is not lent already, or the frame is not sent
        let ok = self.split.len() == pieces
            && self.split.iter().all(|p| {
                self.umem
                    .chunk_of(p)
                    .is_some_and(|(c, _)| matches!(s.lent.get(c), Some(None)))
            });
        if !ok {
            r.full += 1;
            for p in self.split.drain(..) {
                bufs.free(p);
            }
            return;
        }
        let last = pieces - 1;
        for (k, p) in self.split.drain(..).enumerate() {
            let Some((c, addr)) = self.umem.chunk_of(&p) else {
                continue; // checked above
            };
            let plen = p.len() as u32;
            if let Some(slot) = s.lent.get_mut(c) {
                *slot = Some(p);
            }
            s.tx.write(
                s.tx_prod.wrapping_add(*queued),
                XdpDesc {
                    addr,
                    len: plen,
                    options: if k < last { libc::XDP_PKT_CONTD } else { 0 },
                },
            );
            *queued += 1;
        }
        self.copied.fetch_add(1, Ordering::Relaxed);
        r.sent += 1;
    }
}

impl PortQueue for XskQueue {
    fn rx_burst(&mut self, bufs: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.down {
            return 0;
        }
        let k = self.socks.len();
        let mut n = 0;
        for j in 0..k {
            let s = &mut self.socks[(self.next + j) % k];
            s.reclaim(&self.umem, bufs);
            if !s.flush() {
                self.down = true;
                return n;
            }
            if n < max {
                let got = s.receive(&self.umem, bufs, out, max - n);
                self.drops.too_long += got.too_long;
                self.drops.malformed += got.malformed;
                self.drops.no_buffer += got.no_buffer;
                if got.reassembled > 0 {
                    self.reassembled
                        .fetch_add(got.reassembled, Ordering::Relaxed);
                }
                n += got.frames;
            }
            s.refill(&self.umem, bufs);
        }
        self.next = (self.next + 1) % k;
        if n == 0 {
            // nothing in the rings tells that the interface went away: ask the socket
            // now and then (a receive call returns ENXIO/ENETDOWN once it is unbound)
            self.idle += 1;
            if self.idle >= 4096 {
                self.idle = 0;
                if let Err(e) = sys::kick_rx(self.socks[0].fd.as_raw_fd()) {
                    self.down |= gone(&e);
                }
            }
        } else {
            self.idle = 0;
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let mut r = TxResult::default();
        if self.down {
            r.errors = frames.len();
            for b in frames.drain(..) {
                bufs.free(b);
            }
            return r;
        }
        self.socks[0].reclaim(&self.umem, bufs);
        let room = {
            let s = &self.socks[0];
            s.tx.size() - s.tx_prod.wrapping_sub(s.tx.consumer())
        };
        let mut queued = 0u32;
        for b in frames.drain(..) {
            let len = b.len();
            if len > self.max_frame || b.offload.is_gso() {
                self.tx_invalid += 1;
                r.errors += 1;
                bufs.free(b);
                continue;
            }
            if len > BUF_SIZE {
                self.queue_multi(bufs, b, &mut queued, room, &mut r);
                continue;
            }
            if queued == room {
                r.full += 1;
                bufs.free(b);
                continue;
            }
            // a buffer of this worker's pool goes as it is; any other is copied into one
            let (b, chunk, addr) = match self.umem.chunk_of(&b) {
                Some((c, a)) => (b, c, a),
                None => {
                    let Some(mut nb) = bufs.alloc() else {
                        r.full += 1;
                        bufs.free(b);
                        continue;
                    };
                    nb.fill(b.frame());
                    bufs.free(b);
                    self.copied.fetch_add(1, Ordering::Relaxed);
                    match self.umem.chunk_of(&nb) {
                        Some((c, a)) => (nb, c, a),
                        None => {
                            r.errors += 1;
                            drop(nb);
                            continue;
                        }
                    }
                }
            };
            let s = &mut self.socks[0];
            match s.lent.get_mut(chunk) {
                Some(slot @ None) => {
                    *slot = Some(b);
                    s.tx.write(
                        s.tx_prod.wrapping_add(queued),
                        XdpDesc {
                            addr,
                            len: len as u32,
                            options: 0,
                        },
                    );
                    queued += 1;
                    r.sent += 1;
                }
                _ => {
                    r.errors += 1;
                    bufs.free(b);
                }
            }
        }
        if queued > 0 {
            let s = &mut self.socks[0];
            s.tx_prod = s.tx_prod.wrapping_add(queued);
            s.tx.set_producer(s.tx_prod);
            // Only when the kernel asks (`XDP_USE_NEED_WAKEUP`; a zero-copy driver
            // that is polling does not). Copy mode sends at most 32 descriptors a kick
            // (the kernel's TX_BATCH_SIZE): a burst of long frames (five descriptors
            // each at MTU 9000) needs several, or it waits for the next poll. Bounded;
            // a single-buffer burst of up to 32 frames takes one kick, as before.
            for _ in 0..=queued / 32 {
                if !s.tx.needs_wakeup() || s.tx.consumer() == s.tx_prod {
                    break;
                }
                if !s.kick() {
                    self.down = true;
                    break;
                }
            }
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        (!self.down).then(|| self.socks[0].fd.as_raw_fd())
    }

    fn poll_fds(&self, out: &mut Vec<RawFd>) {
        if !self.down {
            out.extend(self.socks.iter().map(|x| x.fd.as_raw_fd()));
        }
    }

    fn is_down(&self) -> bool {
        self.down
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn take_rx_drops(&mut self) -> RxDrops {
        std::mem::take(&mut self.drops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_six_instructions_ending_in_exit() {
        let p = redirect_program(7);
        assert_eq!(p.len(), 6);
        assert_eq!(p[1].imm, 7, "the map descriptor is the ld_imm64 immediate");
        assert_eq!(p[1].regs, 0x11, "dst r1, src BPF_PSEUDO_MAP_FD");
        assert_eq!(p[5].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    fn worker() -> vpcswitch_backend::QueuePools {
        vpcswitch_backend::QueuePools {
            small: vpcswitch_backend::Pool::new(64),
            large: vpcswitch_backend::Pool::with_size(2, LARGE_BUF_SIZE),
        }
    }

    /// A frame in several descriptors is put together whole, in order.
    #[test]
    fn a_chain_of_descriptors_becomes_one_frame() {
        let pools = worker();
        let mut bufs = pools.bufs();
        let mut c = Chain::default();
        let frame: Vec<u8> = (0..9014u32).map(|i| (i * 7 % 251) as u8).collect();
        let pieces: Vec<&[u8]> = frame.chunks(BUF_SIZE).collect();
        let last = pieces.len() - 1;
        let mut got = None;
        for (k, p) in pieces.iter().enumerate() {
            match c.push(p, k < last, &mut bufs) {
                Step::Nothing => assert!(k < last, "nothing at the last piece"),
                Step::Frame(f) => got = Some(f),
                Step::TooLong | Step::NoBuffer => panic!("9014 bytes fit"),
            }
        }
        let f = got.expect("whole at the last piece");
        assert_eq!(f.frame(), &frame[..]);
        assert!(!c.is_open());
    }

    /// The hostile view: a chain of XDP_PKT_CONTD descriptors that never ends, or one
    /// longer than MAX_FRAGS, is refused once (counted), holds no more than the one
    /// large buffer while it lasts (each piece's buffer goes back at once), and the
    /// frame after it is received normally.
    #[test]
    fn an_endless_or_too_long_chain_is_refused_once_and_holds_nothing() {
        let pools = worker();
        let mut bufs = pools.bufs();
        let mut c = Chain::default();
        let piece = [0xabu8; BUF_SIZE];
        let mut refused = 0;
        for k in 0..100_000 {
            match c.push(&piece, true, &mut bufs) {
                Step::Nothing => {}
                Step::TooLong => {
                    refused += 1;
                    assert_eq!(k, MAX_FRAGS, "refused at the first piece too many");
                }
                Step::Frame(_) | Step::NoBuffer => panic!("not a frame, a large buffer is free"),
            }
            // the large buffer is back as soon as the chain is refused
            let (_, large_held) = bufs.held();
            let out = pools.large.size() - pools.large.available() - large_held;
            assert!(out <= 1, "at most the one large buffer is out: {out}");
        }
        assert_eq!(refused, 1);
        // its end: nothing handed over, and the chain is closed
        assert!(matches!(c.push(&piece, false, &mut bufs), Step::Nothing));
        assert!(!c.is_open());
        let (_, large_held) = bufs.held();
        assert_eq!(pools.large.available() + large_held, pools.large.size());
        // exactly MAX_FRAGS full pieces: MAX_FRAME bytes, accepted
        for k in 0..MAX_FRAGS {
            let step = c.push(&piece, k + 1 < MAX_FRAGS, &mut bufs);
            if k + 1 == MAX_FRAGS {
                let Step::Frame(f) = step else {
                    panic!("MAX_FRAME bytes in MAX_FRAGS pieces fit: {step:?}");
                };
                assert_eq!(f.len(), MAX_FRAME);
            }
        }
    }

    /// A descriptor the switch never lent, inside a chain: the chain is dropped (its
    /// large buffer back) and skipped to its end; the next frame is whole.
    #[test]
    fn a_bad_descriptor_poisons_its_chain() {
        let pools = worker();
        let mut bufs = pools.bufs();
        let mut c = Chain::default();
        assert!(matches!(c.push(&[1; 100], true, &mut bufs), Step::Nothing));
        c.poison(true, &mut bufs);
        assert!(matches!(c.push(&[2; 100], false, &mut bufs), Step::Nothing));
        assert!(!c.is_open());
        assert!(matches!(c.push(&[3; 100], true, &mut bufs), Step::Nothing));
        let Step::Frame(f) = c.push(&[4; 10], false, &mut bufs) else {
            panic!("the next frame is received");
        };
        assert_eq!(f.len(), 110);
        assert_eq!(&f.frame()[..100], &[3; 100][..]);
    }

    #[test]
    fn modes_parse_and_unknown_ones_are_named() {
        assert_eq!(XdpMode::parse(None), Ok(XdpMode::Auto));
        assert_eq!(XdpMode::parse(Some("skb")), Ok(XdpMode::Skb));
        let e = XdpMode::parse(Some("fast")).unwrap_err();
        assert!(e.contains("\"fast\""), "{e}");
    }
}
