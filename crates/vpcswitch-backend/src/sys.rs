//! Waiting for device readiness (epoll, eventfd) and buffer memory: the only `unsafe`
//! in this crate.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Most readiness events one [`Epoll::wait`] reports (the rest stay pending: level
/// triggered, the next wait reports them).
pub const EPOLL_EVENTS: usize = 64;

/// An epoll set: the descriptors a sleeping worker waits on, kept up to date as queues
/// come and go (so a sleep costs one system call, however many ports there are).
/// Level-triggered, readable (`EPOLLIN`) interest; errors and hang-ups always wake.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// An empty set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain flags; the result is checked.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a live epoll_event for the call (ignored by EPOLL_CTL_DEL); a
        // bad or closed `fd` is reported as an error, not undefined behaviour.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Adds `fd` (readable interest), tagged with `token`. Adding it twice is `EEXIST`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token)
    }

    /// Removes `fd` (`ENOENT` when it is not in the set; a closed descriptor has left
    /// the set by itself).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    /// Waits until a descriptor of the set is ready or `timeout_ms` passes; returns
    /// the number of ready descriptors (0 on timeout). `EINTR` counts as a timeout.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<usize> {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
        // SAFETY: `ev` is a valid array of EPOLL_EVENTS events for the whole call.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                ev.as_mut_ptr(),
                EPOLL_EVENTS as libc::c_int,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }
}

/// An `eventfd(2)` counter: written by [`crate::Waker::wake`] to end a worker's sleep
/// in its [`Epoll`] set.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A non-blocking counter at zero.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain flags; the result is checked.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Makes the descriptor readable (wakes whoever waits on it).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, live for the call. A full counter
        // (EAGAIN) is already readable, which is all a signal needs.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter (the descriptor is no longer readable).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`, live for the call; EAGAIN when zero.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// The descriptor, to add to an [`Epoll`] set.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sets the process's file mode creation mask to `mask` and returns the previous one
/// (`umask(2)`). The mask is process-wide: while it is set, a file any thread creates
/// gets at most the mask's permissions. Set a mask that only removes more bits (e.g.
/// 0o177 around creating a private socket) and restore it right after: other threads
/// can then only create files more private than they asked for, never less.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask(2) takes an integer by value, cannot fail and touches no memory.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    old as u32
}

/// One anonymous memory mapping that a pool's buffers are carved from, so that the
/// whole pool can be registered with the kernel as an AF_XDP UMEM and a buffer named
/// by its offset in it. Unmapped when the last buffer and the pool are gone.
#[derive(Debug)]
pub struct Region {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    split: std::sync::atomic::AtomicBool,
}

// SAFETY: the mapping is plain memory; `Region` itself only hands out its address and
// length, and the disjoint slices of `split` (once), each owned by one `RegionBuf`.
unsafe impl Send for Region {}
// SAFETY: as above: no method gives shared access to the bytes.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes (rounded up to whole pages), zeroed; with `populate`, every page
    /// is there from the start (nothing grows under load).
    pub fn new(len: usize, populate: bool) -> io::Result<Region> {
        let len = len.max(1).div_ceil(4096) * 4096;
        // SAFETY: a fresh private anonymous mapping chosen by the kernel; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | if populate { libc::MAP_POPULATE } else { 0 },
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Region {
            ptr,
            len,
            split: std::sync::atomic::AtomicBool::new(false),
        })
    }
    /// Start address (for `XDP_UMEM_REG`).
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty region (never: at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Cuts the region into `n` buffers of `cap` bytes, buffer `i` at `i * stride +
    /// offset`. Only the first call cuts (later ones return nothing), so no two buffers
    /// ever share a byte; `None` when the layout does not fit.
    pub fn split(
        self: &std::sync::Arc<Self>,
        n: usize,
        stride: usize,
        offset: usize,
        cap: usize,
    ) -> Option<Vec<RegionBuf>> {
        let fits = offset + cap <= stride && n.checked_mul(stride)? <= self.len;
        if !fits {
            return None;
        }
        if self.split.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Some(Vec::new());
        }
        Some(
            (0..n)
                .map(|i| RegionBuf {
                    region: self.clone(),
                    off: i * stride + offset,
                    cap,
                })
                .collect(),
        )
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`, unmapped once; no `RegionBuf` is
        // left (each holds an `Arc` of the region).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A buffer's bytes inside a [`Region`]: `cap` bytes at offset `off`, owned by this
/// value alone.
#[derive(Debug)]
pub struct RegionBuf {
    region: std::sync::Arc<Region>,
    off: usize,
    cap: usize,
}

impl RegionBuf {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `split` proved off..off+cap lies in the mapping and gave these bytes to
        // this value only; the `Arc` keeps the mapping alive.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().add(self.off), self.cap) }
    }
    /// The bytes, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr().add(self.off), self.cap) }
    }
    /// Offset in the region (an AF_XDP descriptor's address).
    #[inline]
    pub fn offset(&self) -> usize {
        self.off
    }
    /// The region it is in.
    #[inline]
    pub fn region(&self) -> &std::sync::Arc<Region> {
        &self.region
    }
}
