//! The overlay in a worker (SPEC 10): tunnel packets in, through the tunnel checks and
//! the pipeline ([`Snapshot::process_tunnel`]), to this host's ports; frames for ports
//! on other hosts out through the worker's tunnel.
//!
//! Split horizon: what came from a tunnel is delivered to local ports only, never
//! encapsulated again (the pipeline already drops an output to a remote port as
//! `tunnel_transit`; [`Worker::emit`] holds to it too, so no verdict can make a loop).
//! Offload work is done before encapsulation (the tunnel carries no offload metadata:
//! super-frames are cut into segments, partial checksums completed), and a frame longer
//! than the tunnel's inner frame limit is dropped as `mtu_exceeded` on the host it was
//! for (SPEC 10.6: guests' MTU is the underlay's minus 50).

use std::net::SocketAddrV4;

use vpcswitch_core::HostId;
use vpcswitch_tunnel::RxMeta;
use vpcswitch_wire::tso::Tcp4Merge;

use super::*;
use crate::stats::WorkerCounters;

/// Where a frame goes: a port's queue on this host, or another host's tunnel endpoint.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dest {
    /// a local port
    Port(PortId),
    /// host `host` at `to`, on `vni`
    Tunnel {
        host: HostId,
        to: SocketAddrV4,
        vni: u32,
    },
}

impl Dest {
    /// Counts `n` frames for this destination dropped for `r`: on the port, or on the
    /// host's tunnel.
    #[inline]
    pub(super) fn count_drop(self, c: &WorkerCounters, r: DropReason, n: u64) {
        match self {
            Dest::Port(q) => c.drop_on(q, r, n),
            Dest::Tunnel { host, .. } => c.drop_for_host(host, r, n),
        }
    }
}

impl Worker {
    /// One receive burst of the tunnel through the tunnel checks and the pipeline;
    /// the datagrams received.
    #[inline]
    pub(super) fn poll_tunnel(
        &mut self,
        snap: &Snapshot,
        ctx: &mut Ctx,
        shared: &Shared,
        rx: &mut Vec<PacketBuf>,
    ) -> usize {
        let Some(t) = self.tunnel.as_mut() else {
            return 0;
        };
        let mut meta = std::mem::take(&mut self.tun_meta);
        meta.clear();
        let n = t.recv_bufs(&mut self.cache, rx, &mut meta, MAX_BURST);
        let c = &shared.workers[self.idx].counters;
        // every receive counter moves with one of these: publish only then, not on
        // each empty pass
        let s = t.stats();
        let mark = s.rx_calls + s.rx_errors + s.rx_no_buffer;
        if mark != self.tun_rx_mark {
            self.tun_rx_mark = mark;
            self.publish_tunnel(c);
        }
        if n == 0 {
            self.tun_meta = meta;
            return 0;
        }
        let mut out = std::mem::take(&mut self.tun_out);
        let mut out_meta = std::mem::take(&mut self.tun_out_meta);
        self.coalesce(rx, &meta, &mut out, &mut out_meta);
        for (mut buf, &(m, segs, bytes)) in out.drain(..).zip(out_meta.iter()) {
            // SPEC 10.3: only from another host's endpoint
            let Some(h) = snap.host_by_addr(*m.from.ip()) else {
                c.drop_for_host(HostId::MAX, DropReason::TunnelUnknownHost, segs);
                self.cache.free(buf);
                continue;
            };
            if let Some(hc) = c.hosts.get(h as usize) {
                bump(&hc.rx_packets, segs);
                bump(&hc.rx_bytes, bytes);
                hc.last_rx_ns.store(self.now_ns.max(1), Ordering::Relaxed);
            }
            // a joined run is a super-frame with a partial checksum, as a guest's
            ctx.csum_partial = buf.offload.needs_csum();
            ctx.gso = buf.offload.is_gso();
            let (data, len) = buf.parts_mut();
            match snap.process_tunnel(ctx, h, m.vni, data, len, &mut NoTrace) {
                Verdict::Forward(out) => {
                    bump(&c.forwarded, segs);
                    self.emit(snap, c, From::Tunnel(h), out, buf);
                }
                Verdict::Drop(r) => {
                    c.drop_for_host(h, r, segs);
                    self.cache.free(buf);
                }
                Verdict::DropAndSend(r, out) => {
                    c.drop_for_host(h, r, segs);
                    bump(&c.generated, 1);
                    buf.offload = Offload::None;
                    self.emit(snap, c, From::Tunnel(h), out, buf);
                }
            }
        }
        out_meta.clear();
        self.tun_out = out;
        self.tun_out_meta = out_meta;
        self.tun_meta = meta;
        n
    }

    /// Joins runs of consecutive TCP segments of one flow from one sender and VNI in
    /// `rx` (as another host cut them from a super-frame) back into super-frames
    /// ([`Tcp4Merge`]'s rules: only sound segments join), so a guest that takes
    /// segmentation offload gets one frame where the sender's guest sent one; every
    /// other frame passes as it is. `out` gets the frames, `out_meta` their sender,
    /// VNI, segments and bytes; `rx` is left empty. No allocation: large buffers from
    /// the worker's cache, and when none is free the run passes unjoined.
    fn coalesce(
        &mut self,
        rx: &mut Vec<PacketBuf>,
        meta: &[RxMeta],
        out: &mut Vec<PacketBuf>,
        out_meta: &mut Vec<(RxMeta, u64, u64)>,
    ) {
        let mut run = std::mem::take(&mut self.tun_run);
        let mut merge: Option<Tcp4Merge> = None;
        // whether the run's first frame was looked at: only once a second frame from
        // the same sender could join it, so a lone segment costs no checksum pass
        let mut tried = false;
        let mut run_meta = None;
        for (b, m) in rx.drain(..).zip(meta.iter()) {
            if let Some(first) = run.first() {
                if run_meta == Some(*m) {
                    if !tried {
                        merge = Tcp4Merge::start(first.frame());
                        tried = true;
                    }
                    if let Some(mg) = merge.as_mut() {
                        if mg.join(first.frame(), b.frame()) {
                            run.push(b);
                            continue;
                        }
                    }
                }
            }
            if let Some(rm) = run_meta {
                self.end_run(&mut run, merge.take(), rm, out, out_meta);
            }
            tried = false;
            run_meta = Some(*m);
            run.push(b);
        }
        if let Some(rm) = run_meta {
            self.end_run(&mut run, merge, rm, out, out_meta);
        }
        self.tun_run = run;
    }

    /// Moves a run to `out`: joined into one super-frame when it has two segments or
    /// more and a large buffer is free, else frame by frame.
    fn end_run(
        &mut self,
        run: &mut Vec<PacketBuf>,
        merge: Option<Tcp4Merge>,
        m: RxMeta,
        out: &mut Vec<PacketBuf>,
        out_meta: &mut Vec<(RxMeta, u64, u64)>,
    ) {
        let bytes: u64 = run.iter().map(|b| b.len() as u64).sum();
        if let (Some(mg), true) = (merge, run.len() > 1) {
            if let Some(mut big) = self.cache.alloc_large() {
                let (d, len) = big.parts_mut();
                if let Some(k) = mg.write(run.iter().map(|b| b.frame()), d) {
                    *len = k;
                    big.offload = Offload::Tso {
                        mss: mg.mss(),
                        ecn: false,
                    };
                    big.vnet = Default::default();
                    out.push(big);
                    out_meta.push((m, run.len() as u64, bytes));
                    bump(&self.counters().tunnel.rx_joined, run.len() as u64);
                    for b in run.drain(..) {
                        self.cache.free(b);
                    }
                    return;
                }
                self.cache.free(big);
            }
        }
        for b in run.drain(..) {
            out_meta.push((m, 1, b.len() as u64));
            out.push(b);
        }
    }

    /// Where `q` is: its queue here, or its host's tunnel (with the VNI for a frame to
    /// `out` that entered on `in_port`). `None`: a remote port with no host entry.
    #[inline]
    pub(super) fn dest(snap: &Snapshot, q: PortId, out: Out, in_port: PortId) -> Option<Dest> {
        match snap.location(q) {
            Some(Location::Remote(h)) => Self::host_dest(snap, h, snap.vni_for(out, in_port)?),
            _ => Some(Dest::Port(q)),
        }
    }

    /// Host `h`'s tunnel, on `vni`.
    #[inline]
    pub(super) fn host_dest(snap: &Snapshot, h: HostId, vni: u32) -> Option<Dest> {
        Some(Dest::Tunnel {
            host: h,
            to: snap.host(h)?.endpoint,
            vni,
        })
    }

    /// Sends `buf` to `d`: a local port's queue ([`Worker::enqueue`]) or the tunnel.
    #[inline]
    pub(super) fn deliver(&mut self, c: &WorkerCounters, d: Dest, buf: PacketBuf) {
        match d {
            Dest::Port(q) => self.enqueue(c, q, buf),
            Dest::Tunnel { host, to, vni } => self.encap(c, host, to, vni, buf),
        }
    }

    /// Encapsulates `buf` to host `host` at `to` on `vni` (SPEC 10.1), after the offload
    /// work the tunnel cannot carry.
    pub(super) fn encap(
        &mut self,
        c: &WorkerCounters,
        host: HostId,
        to: SocketAddrV4,
        vni: u32,
        buf: PacketBuf,
    ) {
        let Some(buf) = self.offload_work(c, Dest::Tunnel { host, to, vni }, buf) else {
            return;
        };
        let Some(t) = self.tunnel.as_mut() else {
            // hosts in the configuration but no tunnel here: cannot happen (the
            // tunnels are opened with the switch), counted if it does
            c.drop_for_host(host, DropReason::PortDown, 1);
            self.cache.free(buf);
            return;
        };
        if buf.len() > t.config().max_frame {
            c.drop_for_host(host, DropReason::MtuExceeded, 1);
            self.cache.free(buf);
            return;
        }
        let sport = t.source_port(buf.frame());
        if t.push(to, vni, sport, buf.frame()) {
            if let Some(hc) = c.hosts.get(host as usize) {
                bump(&hc.tx_packets, 1);
                bump(&hc.tx_bytes, buf.len() as u64);
            }
        } else {
            c.drop_for_host(host, DropReason::TxError, 1);
        }
        self.cache.free(buf);
    }

    /// Sends the segments of TCP super-frame `buf` (layout `l`) to host `host` as
    /// tunnel trains (UDP GSO: the kernel cuts each train of up to 64 KiB into
    /// datagrams), each segment written straight into the train: no packet buffer
    /// per segment. False, with `buf` untouched, when there is no tunnel to do it.
    pub(super) fn encap_train(
        &mut self,
        c: &WorkerCounters,
        d: Dest,
        buf: &PacketBuf,
        l: &vpcswitch_wire::tso::Tcp4Layout,
    ) -> bool {
        let (Dest::Tunnel { host, to, vni }, Some(t)) = (d, self.tunnel.as_mut()) else {
            return false;
        };
        let count = l.count();
        let seg_len = l.segment_len(0);
        if seg_len > t.config().max_frame {
            c.drop_for_host(host, DropReason::MtuExceeded, count as u64);
            return true;
        }
        let frame = buf.frame();
        let sport = t.source_port(frame);
        let r = t.send_train(to, vni, sport, count, seg_len, |i, out| {
            l.write_segment(frame, i, out)
        });
        if let Some(hc) = c.hosts.get(host as usize) {
            bump(&hc.tx_packets, r.sent as u64);
            bump(&hc.tx_bytes, r.bytes);
        }
        if r.skipped > 0 {
            c.drop_for_host(host, DropReason::BadOffload, r.skipped as u64);
        }
        if r.refused > 0 {
            c.drop_for_host(host, DropReason::TxError, r.refused as u64);
        }
        true
    }

    /// Sends what the tunnel holds (end of a pass) and publishes its counters.
    #[inline]
    pub(super) fn flush_tunnel(&mut self, c: &WorkerCounters) {
        if let Some(t) = self.tunnel.as_mut() {
            if t.pending() > 0 {
                t.flush();
                self.publish_tunnel(c);
            }
        }
    }

    /// Copies the tunnel's socket totals into the shared counters.
    #[inline]
    fn publish_tunnel(&self, c: &WorkerCounters) {
        let Some(t) = self.tunnel.as_ref() else {
            return;
        };
        let s = t.stats();
        let tc = &c.tunnel;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&tc.rx_datagrams, s.rx_packets + s.rx_dropped());
        set(&tc.rx_malformed, s.rx_dropped());
        set(&tc.rx_errors, s.rx_errors + s.rx_no_buffer);
        set(&tc.tx_packets, s.tx_packets);
        set(&tc.tx_errors, s.tx_dropped());
        set(&tc.tx_trains, s.tx_trains);
        set(&tc.rx_coalesced, s.rx_coalesced);
    }
}
