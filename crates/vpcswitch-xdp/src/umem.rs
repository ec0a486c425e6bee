//! The worker's buffer pool as a UMEM: buffer ↔ descriptor address.

use std::sync::Arc;

use vpcswitch_backend::sys::Region;
use vpcswitch_backend::{PacketBuf, UMEM_HEADROOM};

/// The worker's pool as a UMEM: its region and the stride of its buffers (the layout
/// of `vpcswitch_backend::UMEM_STRIDE`: buffer `i`'s data at `i * stride + UMEM_HEADROOM`,
/// its chunk `UMEM_HEADROOM` before).
#[derive(Debug, Clone)]
pub(crate) struct UmemOf {
    pub(crate) region: Arc<Region>,
    pub(crate) stride: usize,
}

impl UmemOf {
    /// The index of a buffer of this UMEM, and the address of its data.
    #[inline]
    pub(crate) fn chunk_of(&self, b: &PacketBuf) -> Option<(usize, u64)> {
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
    pub(crate) fn index_of(&self, addr: u64) -> Option<usize> {
        let data = (addr & ((1 << 48) - 1)) + (addr >> 48);
        let rel = usize::try_from(data).ok()?.checked_sub(UMEM_HEADROOM)?;
        rel.is_multiple_of(self.stride).then_some(rel / self.stride)
    }
}
