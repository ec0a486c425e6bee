//! One worker's share of an AF_XDP port: its sockets, as a `PortQueue`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vpcswitch_backend::sys::interface_gone;
use vpcswitch_backend::{PacketBuf, PortQueue, RxDrops, TxResult, WorkerBufs, BUF_SIZE};

use crate::socket::Xsk;
use crate::sys::{self, XdpDesc};
use crate::umem::UmemOf;
use crate::Attachment;

/// One worker's share of the interface: the sockets of the receive queues it serves
/// (queue `first + i`, `first + i + workers`, ...). It receives from all of them and
/// sends through the first.
pub(crate) struct XskQueue {
    pub(crate) socks: Vec<Xsk>,
    /// the socket `rx_burst` starts with, rotating so none starves
    pub(crate) next: usize,
    /// polls that found nothing since the socket's state was last asked
    pub(crate) idle: u32,
    pub(crate) umem: UmemOf,
    /// frames refused on receive, until the runtime takes the counts
    pub(crate) drops: RxDrops,
    /// frames refused on transmit (longer than the port takes; the runtime drops them
    /// first, counted as `mtu_exceeded`, so only direct callers reach this)
    pub(crate) tx_invalid: u64,
    /// frames sent that had to be copied into the pool first (from another worker's
    /// pool or a large buffer, a multi-buffer frame cut into UMEM buffers); the rest
    /// crossed without a copy
    pub(crate) copied: Arc<AtomicU64>,
    /// frames received in several descriptors and put together (one copy each)
    pub(crate) reassembled: Arc<AtomicU64>,
    /// the longest frame the port sends (the interface's MTU + 14, at most MAX_FRAME)
    pub(crate) max_frame: usize,
    /// the UMEM buffers of a multi-buffer frame being sent (at most MAX_FRAGS; made
    /// once, so cutting a frame allocates nothing)
    pub(crate) split: Vec<PacketBuf>,
    pub(crate) down: bool,
    pub(crate) _attachment: Arc<Attachment>,
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
                    self.down |= interface_gone(&e);
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
