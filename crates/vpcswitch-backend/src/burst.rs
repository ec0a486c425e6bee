//! The receive loop a descriptor-per-frame device shares (a TAP, an AF_PACKET socket):
//! one buffer from the lent caches per read, the virtio-net header beside the frame.

use std::io;

use crate::{PacketBuf, VnetHdr, WorkerBufs};

/// Reads frames with `read` until it finds none, fails, or `max` are in `out`; returns
/// how many it read and the error that stopped it, if it was one (`WouldBlock` and
/// `Interrupted` are not: the device is just empty).
///
/// `read(hdr, data)` reads one frame's virtio-net header into `hdr` (left zero when the
/// device has none) and its bytes into `data`, returning the frame's length. Each read
/// takes a buffer from `bufs` (a large one when `large`: a segmentation super-frame may
/// come) and gives it back at once when nothing was read, so an idle device holds none.
#[inline]
pub fn read_burst(
    bufs: &mut WorkerBufs,
    out: &mut Vec<PacketBuf>,
    max: usize,
    large: bool,
    mut read: impl FnMut(&mut [u8; VnetHdr::WIRE_LEN], &mut [u8]) -> io::Result<usize>,
) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < max {
        let b = if large {
            bufs.alloc_large()
        } else {
            bufs.alloc()
        };
        let Some(mut b) = b else {
            break;
        };
        let mut hdr = [0u8; VnetHdr::WIRE_LEN];
        let (data, len) = b.parts_mut();
        match read(&mut hdr, data) {
            Ok(k) => {
                *len = k;
                b.vnet = VnetHdr::from_wire(&hdr);
                out.push(b);
                n += 1;
            }
            Err(e) => {
                // nothing read: the buffer goes back to the worker now
                bufs.free(b);
                let empty = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                );
                return (n, (!empty).then_some(e));
            }
        }
    }
    (n, None)
}
