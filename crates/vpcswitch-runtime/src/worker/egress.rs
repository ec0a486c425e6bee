//! The egress side of a worker: refused and dropped frames (counted, sampled), verdicts
//! turned into pending frames per destination, segmentation of offload super-frames, and
//! one `tx_burst` per destination port.

use super::*;

impl Worker {
    /// Counts the frames a device refused on receive (SPEC 2.4: no drop without a
    /// reason).
    #[cold]
    pub(super) fn count_refused(c: &WorkerCounters, pid: PortId, d: vpcswitch_backend::RxDrops) {
        bump(
            &c.dropped,
            d.too_long + d.malformed + d.no_buffer + d.overrun,
        );
        if d.too_long > 0 {
            c.drop_on(pid, DropReason::FrameTooLong, d.too_long);
        }
        if d.malformed > 0 {
            c.drop_on(pid, DropReason::RxMalformed, d.malformed);
        }
        if d.no_buffer > 0 {
            c.drop_on(pid, DropReason::NoBuffer, d.no_buffer);
        }
        if d.overrun > 0 {
            c.drop_on(pid, DropReason::RxOverrun, d.overrun);
        }
    }

    /// Drops a received frame for `r`: counted on its port, sampled within the rate.
    #[inline]
    pub(super) fn drop_rx(
        &mut self,
        c: &WorkerCounters,
        pid: PortId,
        r: DropReason,
        buf: PacketBuf,
    ) {
        bump(&c.dropped, 1);
        c.drop_on(pid, r, 1);
        if self.shared.observe.sampling_drops(self.now_ns) {
            self.sample_drop(pid, r, &buf);
        }
        self.cache.free(buf);
    }

    /// Sends a frame the pipeline passed (or built) to `out`: one port, or a copy to
    /// each port of a flood or a VIP's ports here and, for a frame that entered on a
    /// port, one copy to each other host with such ports (SPEC 10.4: head-end
    /// replication). What came from a tunnel goes to local ports only.
    #[inline]
    pub(super) fn emit(
        &mut self,
        snap: &Snapshot,
        c: &WorkerCounters,
        from: From,
        out: Out,
        buf: PacketBuf,
    ) {
        let in_port = match from {
            From::Port(p) | From::Answer(p) => p,
            From::Tunnel(_) => PortId::MAX,
        };
        let (list, hosts): (&[PortId], &[HostId]) = match out {
            Out::Port(q) => {
                return match (from, Self::dest(snap, q, out, in_port)) {
                    (From::Port(_) | From::Answer(_), Some(d))
                    | (From::Tunnel(_), Some(d @ Dest::Port(_))) => self.deliver(c, d, buf),
                    // SPEC 10.2: never back into a tunnel (the pipeline says so first)
                    (From::Tunnel(h), Some(Dest::Tunnel { .. })) => {
                        c.drop_for_host(h, DropReason::TunnelTransit, 1);
                        self.cache.free(buf);
                    }
                    (_, None) => {
                        c.drop_on(q, DropReason::PortDown, 1);
                        self.cache.free(buf);
                    }
                };
            }
            Out::Flood(s) => (snap.flood_ports(s), snap.flood_hosts(s)),
            Out::VipPorts(v) => (snap.vip_ports(v), snap.vip_hosts(v)),
        };
        let hosts = if matches!(from, From::Port(_)) {
            hosts
        } else {
            &[][..]
        };
        // the same VNI for every host (the subnet's or the VIP's VPC)
        let vni = if hosts.is_empty() {
            None
        } else {
            snap.vni_for(out, in_port)
        };
        let dests = list
            .iter()
            .filter(|&&q| q != in_port)
            .map(|&q| Some(Dest::Port(q)))
            .chain(
                hosts
                    .iter()
                    .map(|&h| vni.and_then(|v| Self::host_dest(snap, h, v))),
            );
        for d in dests {
            let Some(d) = d else {
                continue;
            };
            // a jumbo frame (multi-buffer AF_XDP, a TAP guest's large MTU) is copied
            // into a large buffer
            let copy = if buf.len() > BUF_SIZE {
                self.cache.alloc_large()
            } else {
                self.cache.alloc()
            };
            match copy {
                Some(mut copy) if copy.capacity() >= buf.len() => {
                    copy.fill(buf.frame());
                    copy.offload = buf.offload;
                    self.deliver(c, d, copy);
                }
                Some(copy) => {
                    self.cache.free(copy);
                    d.count_drop(c, DropReason::NoBuffer, 1);
                }
                None => d.count_drop(c, DropReason::NoBuffer, 1),
            }
        }
        self.cache.free(buf);
        // A flood queues one copy per port, and a port's queue is flushed on its own
        // only at 4 × MAX_BURST: a few broadcasts in a large subnet would hold the
        // worker's whole pool until the end of the pass (`no_buffer` for everyone).
        // Bound what floods may hold: past FLOOD_HELD queued frames, send them now.
        const FLOOD_HELD: usize = 16 * MAX_BURST;
        let held: usize = self
            .dirty
            .iter()
            .map(|&q| self.pending.get(q as usize).map_or(0, Vec::len))
            .sum();
        if held >= FLOOD_HELD {
            self.flush(c);
        }
    }

    /// Hands a dropped frame to drop sampling, within the per-worker rate.
    #[cold]
    pub(super) fn sample_drop(&mut self, port: PortId, r: DropReason, buf: &PacketBuf) {
        let obs = &self.shared.observe;
        let sec = self.now_ns / 1_000_000_000;
        if self.drop_samples.0 != sec {
            self.drop_samples = (sec, 0);
        }
        if self.drop_samples.1 >= DROP_SAMPLES_PER_SEC {
            obs.count_lost();
            return;
        }
        self.drop_samples.1 += 1;
        obs.sample_drop(port, r, self.now_ns, buf.frame());
    }

    #[inline]
    pub(super) fn enqueue(&mut self, c: &WorkerCounters, q: PortId, mut buf: PacketBuf) {
        let i = q as usize;
        let Some(queue) = self.queues.get(i).and_then(Option::as_ref) else {
            c.drop_on(q, DropReason::PortDown, 1);
            self.cache.free(buf);
            return;
        };
        // Offload work a destination cannot take is done here (SPEC 2.5).
        if buf.offload != Offload::None && !queue.accepts_offload() {
            let Some(done) = self.offload_work(c, Dest::Port(q), buf) else {
                return;
            };
            buf = done;
        }
        // longer than the destination's device takes (its MTU): dropped, counted; a
        // super-frame for a device that takes offload is its to cut
        // (the constant first: a frame no interface can refuse costs no load)
        if buf.len() > MIN_MAX_FRAME && buf.len() > self.max_frame[i] && !buf.offload.is_gso() {
            c.drop_on(q, DropReason::MtuExceeded, 1);
            self.cache.free(buf);
            return;
        }
        let obs = &self.shared.observe;
        if obs.capturing(q, Direction::Tx) {
            obs.record(q, Direction::Tx, self.now_ns, buf.frame());
        }
        let p = &mut self.pending[i];
        if p.is_empty() {
            self.dirty.push(q);
        }
        p.push(buf);
        if p.len() >= 4 * MAX_BURST {
            self.flush(c);
        }
    }

    /// Offload work for `d`, which takes none: a super-frame is cut into segments sent
    /// on to `d`, a partial checksum is completed at the place the frame's own headers
    /// give. The frame back when it is ready to go as it is; `None` when it was
    /// segmented, or dropped (counted) because its checksum cannot be completed.
    pub(super) fn offload_work(
        &mut self,
        c: &WorkerCounters,
        d: Dest,
        mut buf: PacketBuf,
    ) -> Option<PacketBuf> {
        if buf.offload == Offload::None {
            return Some(buf);
        }
        if buf.offload.is_gso() {
            self.segment(c, d, buf);
            return None;
        }
        let mut o = buf.offload;
        if !o.finish_checksum(buf.frame_mut()) {
            d.count_drop(c, DropReason::BadOffload, 1);
            self.cache.free(buf);
            return None;
        }
        buf.offload = o;
        Some(buf)
    }

    /// Software TSO: cuts a TCPv4 super-frame into segments of its checked size (small
    /// buffers, full checksums) for a port without offload or a tunnel; at most
    /// `MAX_GSO_SEGMENTS`, as checked at ingress (SPEC 2.5), and counted.
    #[cold]
    pub(super) fn segment(&mut self, c: &WorkerCounters, d: Dest, buf: PacketBuf) {
        let drop = |r: DropReason| d.count_drop(c, r, 1);
        let Some(l) = buf.offload.segments(buf.frame()) else {
            drop(DropReason::BadOffload);
            self.cache.free(buf);
            return;
        };
        bump(&c.segments, l.count() as u64);
        if self.encap_train(c, d, &buf, &l) {
            self.cache.free(buf);
            return;
        }
        for i in 0..l.count() {
            let Some(mut seg) = self.cache.alloc() else {
                drop(DropReason::NoBuffer);
                continue;
            };
            let (data, len) = seg.parts_mut();
            match l.write_segment(buf.frame(), i, data) {
                Some(n) => {
                    *len = n;
                    seg.offload = Offload::None;
                    self.deliver(c, d, seg);
                }
                None => {
                    drop(DropReason::BadOffload);
                    self.cache.free(seg);
                }
            }
        }
        self.cache.free(buf);
    }

    pub(super) fn flush(&mut self, c: &WorkerCounters) {
        for k in 0..self.dirty.len() {
            let pid = self.dirty[k];
            let i = pid as usize;
            let bufs = &mut self.pending[i];
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            let n = bufs.len();
            let Some(q) = self.queues[i].as_mut() else {
                bufs.clear();
                c.drop_on(pid, DropReason::PortDown, n as u64);
                continue;
            };
            let r = q.tx_burst(&mut self.cache, bufs);
            bufs.clear();
            if let Some(pc) = c.ports.get(i) {
                bump(&pc.tx_packets, r.sent as u64);
                if r.full == 0 && r.errors == 0 {
                    bump(&pc.tx_bytes, bytes);
                } else {
                    // bytes of the frames that were sent are not tracked one by one on
                    // this rare path: charge the average
                    bump(&pc.tx_bytes, bytes * r.sent as u64 / n.max(1) as u64);
                }
            }
            if r.full > 0 {
                c.drop_on(pid, DropReason::TxFull, r.full as u64);
            }
            if r.errors > 0 {
                c.drop_on(pid, DropReason::TxError, r.errors as u64);
            }
        }
        self.dirty.clear();
    }
}
