//! Memory mappings: [`Mmap`] (anonymous, or a device's shared ring), and the buffer
//! [`Region`] a pool is carved from.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// One memory mapping, unmapped on drop: anonymous memory ([`Mmap::anonymous`]) or a
/// ring a socket shares with the kernel ([`Mmap::shared`]). It hands out only its
/// address and length; reading and writing through them is up to the owner's `sys`
/// module, which knows what the bytes are.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone (a shared ring's kernel side is reached
// only through the owner's atomics); moving it to another thread is sound. Not `Sync`:
// owners that hand out access through `&self` decide that for themselves.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes (rounded up to whole pages) of private, zeroed memory; with
    /// `populate`, every page is there from the start (nothing grows under load).
    pub fn anonymous(len: usize, populate: bool) -> io::Result<Mmap> {
        let len = len.max(1).div_ceil(4096) * 4096;
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
        Mmap::map(len, flags, -1, 0)
    }

    /// Maps `len` bytes of descriptor `fd` at `offset`, shared with the kernel and
    /// populated: a packet socket's receive ring, an AF_XDP socket's rings.
    pub fn shared(fd: RawFd, len: usize, offset: u64) -> io::Result<Mmap> {
        Mmap::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, fd, offset)
    }

    fn map(len: usize, flags: libc::c_int, fd: RawFd, offset: u64) -> io::Result<Mmap> {
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: a fresh mapping placed by the kernel (null hint): no existing memory is
        // affected; a bad descriptor or length is an error. The result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mmap { ptr, len })
    }

    /// The first byte.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its size in bytes (never 0: the kernel refuses an empty mapping).
    #[inline]
    pub fn size(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once, here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// One anonymous memory mapping that a pool's buffers are carved from, so that the
/// whole pool can be registered with the kernel as an AF_XDP UMEM and a buffer named
/// by its offset in it. Unmapped when the last buffer and the pool are gone.
#[derive(Debug)]
pub struct Region {
    map: Mmap,
    split: std::sync::atomic::AtomicBool,
}

// SAFETY: the mapping is plain memory; `Region` itself only hands out its address and
// length, and the disjoint slices of `split` (once), each owned by one `RegionBuf`.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes (rounded up to whole pages), zeroed; with `populate`, every page
    /// is there from the start (nothing grows under load).
    pub fn new(len: usize, populate: bool) -> io::Result<Region> {
        Ok(Region {
            map: Mmap::anonymous(len, populate)?,
            split: std::sync::atomic::AtomicBool::new(false),
        })
    }
    /// Start address (for `XDP_UMEM_REG`).
    pub fn addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.size()
    }
    /// True for an empty region (never: at least a page).
    pub fn is_empty(&self) -> bool {
        self.map.size() == 0
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
        let fits = offset + cap <= stride && n.checked_mul(stride)? <= self.len();
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
        unsafe { std::slice::from_raw_parts(self.region.map.as_ptr().add(self.off), self.cap) }
    }
    /// The bytes, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.region.map.as_ptr().add(self.off), self.cap) }
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
