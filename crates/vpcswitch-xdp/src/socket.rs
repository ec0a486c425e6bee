//! One AF_XDP socket: opening and binding it on the worker's UMEM, lending buffers to
//! the kernel and taking them back, receiving.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use vpcswitch_backend::sys::interface_gone;
use vpcswitch_backend::{LendShare, Lender, PacketBuf, WorkerBufs, UMEM_FRAME, UMEM_HEADROOM};

use crate::chain::{Chain, Step};
use crate::sys::{self, Ring, RingKind, XdpDesc};
use crate::umem::UmemOf;
use crate::{XdpError, XdpMode, FILL_DEPTH, MIN_FILL, RING_SIZE};

/// Where a socket is bound and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// the interface, for messages
    pub(crate) ifname: &'a str,
    pub(crate) ifindex: u32,
    /// its receive queue
    pub(crate) queue: u32,
    /// the program is attached natively (zero-copy possible)
    pub(crate) native: bool,
    pub(crate) mode: XdpMode,
    /// try multi-buffer (`XDP_USE_SG`): the program has `BPF_F_XDP_HAS_FRAGS`
    pub(crate) sg: bool,
}

/// One AF_XDP socket, bound to one receive queue of the interface. Its UMEM is the
/// worker's buffer pool: buffers are lent to the kernel (in the fill ring, to receive
/// into; in the tx ring, to send) and kept here, by chunk, until they come back.
pub(crate) struct Xsk {
    // first: closing the socket stops the kernel using the lent buffers before they go
    // back to the pool (fields drop in order)
    pub(crate) fd: OwnedFd,
    pub(crate) fill: Ring<u64>,
    pub(crate) comp: Ring<u64>,
    pub(crate) rx: Ring<XdpDesc>,
    pub(crate) tx: Ring<XdpDesc>,
    /// our producer index on the fill ring
    pub(crate) fill_prod: u32,
    /// our consumer index on the rx ring
    pub(crate) rx_cons: u32,
    /// our producer index on the tx ring
    pub(crate) tx_prod: u32,
    /// our consumer index on the completion ring
    pub(crate) comp_cons: u32,
    /// buffers lent to the kernel to receive into
    pub(crate) rx_lent: u32,
    /// the lent buffers, by index in the pool
    pub(crate) lent: Vec<Option<PacketBuf>>,
    /// zero-copy: a chunk must not cross a page (the NIC maps pages one by one)
    pub(crate) zc: bool,
    /// this socket's place among the worker's lenders: it keeps at most its fair share
    /// of the pool (and at most [`FILL_DEPTH`]) in the fill ring
    pub(crate) lender: Lender,
    /// a multi-buffer frame being received
    pub(crate) chain: Chain,
}

/// What one read of the rx ring gave.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    /// frames handed over
    pub(crate) frames: usize,
    /// multi-buffer frames among them
    pub(crate) reassembled: u64,
    /// frames refused for their length
    pub(crate) too_long: u64,
    /// frames that found no large buffer
    pub(crate) no_buffer: u64,
    /// descriptors never trusted
    pub(crate) malformed: u64,
}

impl Xsk {
    /// Opens and binds the socket of `at.queue` on `umem`, multi-buffer (`XDP_USE_SG`)
    /// when `at.sg` and the kernel and driver take it; returns it, whether it is
    /// zero-copy and whether it is multi-buffer.
    pub(crate) fn open(
        at: &Target<'_>,
        umem: &UmemOf,
        share: &LendShare,
    ) -> Result<(Xsk, bool, bool), XdpError> {
        let ifname = || at.ifname.to_string();
        let queue = at.queue;
        let socket = |source| XdpError::Socket {
            ifname: ifname(),
            queue,
            source,
        };
        let fd = sys::xsk_socket().map_err(socket)?;
        let raw = fd.as_raw_fd();
        sys::register_umem(
            raw,
            umem.region.addr(),
            umem.region.len(),
            UMEM_FRAME as u32,
        )
        .map_err(|source| XdpError::RegisterUmem {
            ifname: ifname(),
            queue,
            source,
        })?;
        let rings = || -> io::Result<_> {
            sys::set_ring_size(raw, libc::XDP_UMEM_FILL_RING, RING_SIZE)?;
            sys::set_ring_size(raw, libc::XDP_UMEM_COMPLETION_RING, RING_SIZE)?;
            sys::set_ring_size(raw, libc::XDP_RX_RING, RING_SIZE)?;
            sys::set_ring_size(raw, libc::XDP_TX_RING, RING_SIZE)?;
            Ok((
                sys::map_ring::<u64>(raw, RingKind::Fill, RING_SIZE)?,
                sys::map_ring::<u64>(raw, RingKind::Completion, RING_SIZE)?,
                sys::map_ring::<XdpDesc>(raw, RingKind::Rx, RING_SIZE)?,
                sys::map_ring::<XdpDesc>(raw, RingKind::Tx, RING_SIZE)?,
            ))
        };
        let (fill, comp, rx, tx) = rings().map_err(socket)?;
        let bind = |flags| sys::bind(raw, at.ifindex, queue, libc::XDP_USE_NEED_WAKEUP | flags);
        // multi-buffer when it can be had (a zero-copy driver may lack it), else not
        let bind_sg = |flags| {
            if at.sg && bind(flags | libc::XDP_USE_SG).is_ok() {
                Ok(true)
            } else {
                bind(flags).map(|()| false)
            }
        };
        let bind_err = |source| XdpError::Bind {
            ifname: ifname(),
            queue,
            source,
        };
        // zero-copy needs native XDP and the driver's support; auto tries it first
        let (zc, sg) = match (at.native, at.mode) {
            (true, XdpMode::ZeroCopy) => {
                let sg = bind_sg(libc::XDP_ZEROCOPY).map_err(|source| XdpError::BindZeroCopy {
                    ifname: ifname(),
                    queue,
                    source,
                })?;
                (true, sg)
            }
            (true, XdpMode::Auto) => match bind_sg(libc::XDP_ZEROCOPY) {
                Ok(sg) => (true, sg),
                Err(_) => (false, bind_sg(libc::XDP_COPY).map_err(bind_err)?),
            },
            _ => (false, bind_sg(libc::XDP_COPY).map_err(bind_err)?),
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
    pub(crate) fn reclaim(&mut self, umem: &UmemOf, cache: &mut WorkerBufs) {
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
    pub(crate) fn refill(&mut self, umem: &UmemOf, cache: &mut WorkerBufs) {
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
    pub(crate) fn kick(&self) -> bool {
        // EAGAIN/EBUSY/ENOBUFS: the kernel sends later
        sys::kick_tx(self.fd.as_raw_fd()).map_or_else(|e| !interface_gone(&e), |()| true)
    }

    /// Sends what earlier kicks left in the tx ring (copy mode sends a bounded number
    /// per kick). False when the interface is gone.
    pub(crate) fn flush(&mut self) -> bool {
        if self.tx.consumer() != self.tx_prod && self.tx.needs_wakeup() {
            return self.kick();
        }
        true
    }

    /// Hands up to `max` received frames over: a frame in one descriptor in the buffer
    /// it was received into (no copy), a frame in several put together in a large
    /// buffer (one copy, [`Chain`]).
    pub(crate) fn receive(
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
