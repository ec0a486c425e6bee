//! Multi-buffer frames on receive: the descriptors of one frame put together in one
//! large buffer.

use vpcswitch_backend::{PacketBuf, WorkerBufs};

use crate::{MAX_FRAGS, MAX_FRAME};

/// What one descriptor of a multi-buffer frame did to it.
#[derive(Debug)]
pub(crate) enum Step {
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
pub(crate) struct Chain {
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
    pub(crate) fn is_open(&self) -> bool {
        self.frags > 0
    }

    /// Adds one descriptor's bytes (`contd`: more follow).
    pub(crate) fn push(&mut self, bytes: &[u8], contd: bool, bufs: &mut WorkerBufs) -> Step {
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
    pub(crate) fn poison(&mut self, contd: bool, bufs: &mut WorkerBufs) {
        if let Some(b) = self.buf.take() {
            bufs.free(b);
        }
        self.skip = contd;
        self.frags = if contd { self.frags + 1 } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcswitch_backend::{BUF_SIZE, LARGE_BUF_SIZE};

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
}
