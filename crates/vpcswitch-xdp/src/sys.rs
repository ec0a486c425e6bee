//! AF_XDP sockets, their mmapped rings and UMEM, and the three bpf(2) commands the
//! backend needs (map create/update, program load, link create). The only `unsafe` in
//! this crate: everything here hands out bounds-checked slices and plain values.
//!
//! Every call goes through `vpcswitch_backend::sys::cvt`, which turns `-1` into the
//! `errno` as an `io::Error`; the rings are `vpcswitch_backend::sys::Mmap`s.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use vpcswitch_backend::sys::{cvt, cvt_size, Mmap};

/// One descriptor of an rx or tx ring (`struct xdp_desc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpDesc {
    /// offset of the frame in the UMEM
    pub addr: u64,
    /// frame length
    pub len: u32,
    /// `XDP_PKT_CONTD`: the frame goes on in the next descriptor (multi-buffer)
    pub options: u32,
}

/// A ring shared with the kernel: the producer and consumer indices, the flags word and
/// `size` descriptors of type `T` (`u64` addresses for fill/completion, [`XdpDesc`] for
/// rx/tx). Indices run freely and are masked on access, so every access is in bounds.
#[derive(Debug)]
pub struct Ring<T: Copy> {
    map: Mmap,
    prod: usize,
    cons: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    fn atomic(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is one of the kernel's offsets for this ring, checked in `map_ring`
        // to lie inside the mapping and be 4-aligned; the word is shared with the kernel,
        // which only ever accesses it atomically, as we do.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU32>() }
    }
    /// The producer index (acquire: descriptors before it are visible).
    #[inline]
    pub fn producer(&self) -> u32 {
        self.atomic(self.prod).load(Ordering::Acquire)
    }
    /// The consumer index (acquire).
    #[inline]
    pub fn consumer(&self) -> u32 {
        self.atomic(self.cons).load(Ordering::Acquire)
    }
    /// Publishes the producer index (release: descriptors written before it are seen).
    #[inline]
    pub fn set_producer(&self, v: u32) {
        self.atomic(self.prod).store(v, Ordering::Release)
    }
    /// Publishes the consumer index (release).
    #[inline]
    pub fn set_consumer(&self, v: u32) {
        self.atomic(self.cons).store(v, Ordering::Release)
    }
    /// True when the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.atomic(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
    /// Number of descriptors.
    pub fn size(&self) -> u32 {
        self.mask + 1
    }
    /// The descriptor at index `i` (masked).
    #[inline]
    pub fn read(&self, i: u32) -> T {
        let at = self.desc + (i & self.mask) as usize * std::mem::size_of::<T>();
        // SAFETY: `map_ring` checked that `size` descriptors fit after `desc`; `i & mask`
        // is below `size`. Volatile: the kernel writes the slot (before publishing it).
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(at).cast::<T>()) }
    }
    /// Writes the descriptor at index `i` (masked).
    #[inline]
    pub fn write(&self, i: u32, v: T) {
        let at = self.desc + (i & self.mask) as usize * std::mem::size_of::<T>();
        // SAFETY: as in `read`; the slot is ours until the producer index passes it.
        unsafe { std::ptr::write_volatile(self.map.as_ptr().add(at).cast::<T>(), v) }
    }
}

/// Opens an AF_XDP socket.
pub fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain constants; the result is checked.
    let raw = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live `T` of `size_of::<T>()` bytes for the whole call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Registers `len` bytes at `addr` as the socket's UMEM (`XDP_UMEM_REG`), with chunks
/// of `chunk` bytes at any address (`XDP_UMEM_UNALIGNED_CHUNK_FLAG`). The memory is a
/// worker's buffer pool (`vpcswitch_backend::Pool::umem`); the kernel pins its pages
/// while the socket lives.
pub fn register_umem(fd: RawFd, addr: u64, len: usize, chunk: u32) -> io::Result<()> {
    let reg = libc::xdp_umem_reg {
        addr,
        len: len as u64,
        chunk_size: chunk,
        headroom: 0,
        flags: libc::XDP_UMEM_UNALIGNED_CHUNK_FLAG,
        tx_metadata_len: 0,
    };
    setsockopt(fd, libc::XDP_UMEM_REG, &reg)
}

/// Sets the size of one of the four rings (`XDP_RX_RING`, `XDP_UMEM_FILL_RING`, ...).
pub fn set_ring_size(fd: RawFd, ring: libc::c_int, entries: u32) -> io::Result<()> {
    setsockopt(fd, ring, &entries)
}

/// Which ring to map.
#[derive(Debug, Clone, Copy)]
pub enum RingKind {
    /// frames given to the kernel to receive into
    Fill,
    /// frames the kernel has sent
    Completion,
    /// received frames
    Rx,
    /// frames to send
    Tx,
}

/// Maps one of the socket's rings, of `entries` descriptors of type `T`.
pub fn map_ring<T: Copy>(fd: RawFd, kind: RingKind, entries: u32) -> io::Result<Ring<T>> {
    let mut off: libc::xdp_mmap_offsets = libc::xdp_mmap_offsets {
        rx: zero_off(),
        tx: zero_off(),
        fr: zero_off(),
        cr: zero_off(),
    };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off` is a live, writable `xdp_mmap_offsets` and `len` its size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(io::Error::other(
            "kernel too old: XDP_MMAP_OFFSETS has no ring flags (need Linux 5.4+)",
        ));
    }
    let (o, pgoff) = match kind {
        RingKind::Fill => (off.fr, libc::XDP_UMEM_PGOFF_FILL_RING),
        RingKind::Completion => (off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING),
        RingKind::Rx => (off.rx, libc::XDP_PGOFF_RX_RING as u64),
        RingKind::Tx => (off.tx, libc::XDP_PGOFF_TX_RING as u64),
    };
    if !entries.is_power_of_two() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ring size must be a power of two",
        ));
    }
    let bytes = o.desc as usize + entries as usize * std::mem::size_of::<T>();
    let map = Mmap::shared(fd, bytes, pgoff)?;
    for w in [o.producer, o.consumer, o.flags] {
        if w as usize + 4 > o.desc as usize || !w.is_multiple_of(4) {
            return Err(io::Error::other("unexpected AF_XDP ring layout"));
        }
    }
    if !(o.desc as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(io::Error::other("unexpected AF_XDP descriptor alignment"));
    }
    Ok(Ring {
        map,
        prod: o.producer as usize,
        cons: o.consumer as usize,
        flags: o.flags as usize,
        desc: o.desc as usize,
        mask: entries - 1,
        _t: std::marker::PhantomData,
    })
}

fn zero_off() -> libc::xdp_ring_offset {
    libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    }
}

/// Binds the socket to queue `queue` of interface `ifindex` (`XDP_COPY`,
/// `XDP_ZEROCOPY`, `XDP_USE_NEED_WAKEUP` in `flags`).
pub fn bind(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `sa` is a live `sockaddr_xdp` and the length is its size.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Asks the kernel to send what the tx ring holds (copy mode sends only then).
pub fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer is the documented AF_XDP kick.
    let r = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    cvt_size(r).map(drop)
}

/// Wakes the driver to refill from the fill ring (`XDP_RING_NEED_WAKEUP` on it).
pub fn kick_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length receive with a null buffer is the documented AF_XDP wakeup.
    let r = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    cvt_size(r).map(drop)
}

/// The socket's drop counters (`XDP_STATISTICS`).
pub fn statistics(fd: RawFd) -> io::Result<libc::xdp_statistics> {
    let mut s = libc::xdp_statistics {
        rx_dropped: 0,
        rx_invalid_descs: 0,
        tx_invalid_descs: 0,
        rx_ring_full: 0,
        rx_fill_ring_empty_descs: 0,
        tx_ring_empty_descs: 0,
    };
    let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: `s` is a live, writable `xdp_statistics` and `len` its size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut s as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    })?;
    Ok(s)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// opcode
    pub code: u8,
    /// destination register (low nibble), source register (high nibble)
    pub regs: u8,
    /// offset
    pub off: i16,
    /// immediate
    pub imm: i32,
}

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP
const BPF_XDP: u32 = 37;

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a live `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, with
    // every byte initialised (padding fields are explicit zeros), and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    cvt_size(r as isize).map(|fd| fd as libc::c_int)
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) (close-on-exec) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// Creates an XSKMAP of `entries` slots (queue id → AF_XDP socket).
pub fn xskmap_create(entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut a = MapCreate {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: obj_name(name),
    };
    bpf(BPF_MAP_CREATE, &mut a).map(owned)
}

#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Puts socket `xsk` at slot `key` of the XSKMAP `map`.
pub fn xskmap_set(map: RawFd, key: u32, xsk: RawFd) -> io::Result<()> {
    let value: u32 = xsk as u32;
    let mut a = MapUpdate {
        map_fd: map as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_F_XDP_HAS_FRAGS`: the program handles frames in several buffers (multi-buffer
/// XDP, Linux 5.18+); needed to receive frames longer than a page, and a veth with such a
/// program lets its peer's MTU go past a page.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// Loads an XDP program (`prog_flags`: 0 or [`BPF_F_XDP_HAS_FRAGS`]). On failure the
/// verifier's log is in `log` (NUL-terminated).
pub fn prog_load_xdp(
    insns: &[Insn],
    license: &CStr,
    name: &str,
    prog_flags: u32,
    log: &mut [u8],
) -> io::Result<OwnedFd> {
    let mut a = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: if log.is_empty() { 0 } else { 1 },
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        kern_version: 0,
        prog_flags,
        prog_name: obj_name(name),
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    bpf(BPF_PROG_LOAD, &mut a).map(owned)
}

#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches the XDP program to interface `ifindex` through a link: the program stays
/// attached exactly as long as the returned descriptor is open, so it detaches when the
/// switch stops or dies. `flags`: `XDP_FLAGS_SKB_MODE` (2) or `XDP_FLAGS_DRV_MODE` (4).
pub fn xdp_link_create(prog: RawFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = LinkCreate {
        prog_fd: prog as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    bpf(BPF_LINK_CREATE, &mut a).map(owned)
}

fn obj_name(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, c) in n
        .iter_mut()
        .zip(
            s.bytes()
                .filter(|c| c.is_ascii_alphanumeric() || *c == b'_'),
        )
        .take(15)
    {
        *d = c;
    }
    n
}
