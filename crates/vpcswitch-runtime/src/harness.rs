//! A worker driven by hand, on the calling thread: a frame goes in on a port with any
//! virtio-net header, runs through exactly the code a worker thread runs (the ingress
//! offload check, the pipeline, `emit`/`enqueue`: checksum completion, software
//! segmentation, flood copies) and comes out per destination port as each device would
//! get it. For fuzzing the worker path (`fuzz/fuzz_targets/worker.rs`) and for tests;
//! it allocates per frame and is not meant to forward traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vpcswitch_backend::{
    Offload, PacketBuf, Pool, PortQueue, QueuePools, TxResult, VnetHdr, WorkerBufs, LARGE_BUF_SIZE,
};
use vpcswitch_core::{PortId, Snapshot};
use vpcswitch_model::Config;

use crate::worker::Worker;
use crate::{RuntimeError, Shared};

/// One frame as a port's device received it from the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// the destination port
    pub port: PortId,
    /// the frame's bytes
    pub frame: Vec<u8>,
    /// the offload work left on it, as the worker handed it to the device
    pub offload: Offload,
    /// the virtio-net header a device that takes offload would be given (derived from
    /// the frame, as the TAP and AF_PACKET backends do); all zero for the others
    pub vnet: VnetHdr,
}

type Outbox = Arc<Mutex<Vec<Delivered>>>;
type Inbox = Arc<Mutex<Vec<PacketBuf>>>;

/// A port's queue in the harness: frames put in its inbox are received; frames sent to
/// it are recorded.
struct HarnessQueue {
    port: PortId,
    inbox: Inbox,
    out: Outbox,
    offload: bool,
    max_frame: usize,
}

impl PortQueue for HarnessQueue {
    fn rx_burst(&mut self, _: &mut WorkerBufs, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let Ok(mut q) = self.inbox.lock() else {
            return 0;
        };
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        n
    }

    fn tx_burst(&mut self, bufs: &mut WorkerBufs, frames: &mut Vec<PacketBuf>) -> TxResult {
        let n = frames.len();
        if let Ok(mut o) = self.out.lock() {
            for b in frames.iter() {
                o.push(Delivered {
                    port: self.port,
                    frame: b.frame().to_vec(),
                    offload: b.offload,
                    vnet: if self.offload {
                        b.offload.vnet_hdr(b.frame())
                    } else {
                        VnetHdr::default()
                    },
                });
            }
        }
        for b in frames.drain(..) {
            bufs.free(b);
        }
        TxResult {
            sent: n,
            ..TxResult::default()
        }
    }

    fn accepts_offload(&self) -> bool {
        self.offload
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }
}

/// One worker and a queue on every port of a configuration, driven by [`Self::send`].
pub struct WorkerHarness {
    worker: Worker,
    shared: Arc<Shared>,
    inboxes: HashMap<PortId, Inbox>,
    out: Outbox,
    large: Pool,
}

impl std::fmt::Debug for WorkerHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHarness")
            .field("ports", &self.inboxes.len())
            .finish()
    }
}

impl WorkerHarness {
    /// A worker with a queue on every port (and the uplink) of `cfg`, whatever backend
    /// the configuration names; `takes_offload(port)` says which queues accept offload
    /// work (as a TAP with offload does) rather than having the worker complete it.
    pub fn new(cfg: &Config, takes_offload: impl Fn(&str) -> bool) -> Result<Self, RuntimeError> {
        WorkerHarness::with_max_frame(cfg, takes_offload, |_| usize::MAX)
    }

    /// [`WorkerHarness::new`] with the longest frame each port's device takes
    /// (`PortQueue::max_frame`: an AF_XDP or AF_PACKET port's MTU + 14).
    pub fn with_max_frame(
        cfg: &Config,
        takes_offload: impl Fn(&str) -> bool,
        max_frame: impl Fn(&str) -> usize,
    ) -> Result<Self, RuntimeError> {
        let snap = Snapshot::compile(cfg, None)?;
        let max_ports = snap.port_slots().max(1);
        let names: Vec<(PortId, String)> = snap
            .ports
            .iter()
            .flatten()
            .map(|p| (p.id, p.name.clone()))
            .collect();
        let shared = Arc::new(Shared::new(snap, 1, max_ports, 0));
        let pools = QueuePools {
            small: Pool::new(1024),
            large: Pool::with_size(8, LARGE_BUF_SIZE),
        };
        let mut worker = Worker::new(0, shared.clone(), max_ports, pools.bufs());
        let out: Outbox = Arc::default();
        let mut inboxes = HashMap::new();
        for (pid, name) in names {
            let inbox: Inbox = Arc::default();
            inboxes.insert(pid, inbox.clone());
            worker.attach_at_start(
                pid,
                Box::new(HarnessQueue {
                    port: pid,
                    inbox,
                    out: out.clone(),
                    offload: takes_offload(&name),
                    max_frame: max_frame(&name),
                }),
            );
        }
        Ok(WorkerHarness {
            worker,
            shared,
            inboxes,
            out,
            large: pools.large,
        })
    }

    /// The compiled configuration.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snap.load_full()
    }

    /// The id of the port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.shared.snap.load().port_id(name)
    }

    /// Receives `frame` with the device header `vnet` on `port`, runs one worker pass
    /// and returns every frame the ports' devices were given, in order.
    pub fn send(&mut self, port: PortId, vnet: VnetHdr, frame: &[u8]) -> Vec<Delivered> {
        let mut b = match self.large.alloc() {
            Some(b) if b.capacity() >= frame.len() => b,
            _ => PacketBuf::unpooled(frame),
        };
        b.fill(frame);
        b.vnet = vnet;
        if let Some(Ok(mut q)) = self.inboxes.get(&port).map(|i| i.lock()) {
            q.push(b);
        }
        let snap = self.shared.snap.load_full();
        self.worker.poll_once(&snap, true);
        self.out
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    /// Drops of `reason` counted on `port` so far.
    pub fn dropped(&self, port: PortId, reason: vpcswitch_core::DropReason) -> u64 {
        self.shared.workers[0]
            .counters
            .ports
            .get(port as usize)
            .map_or(0, |p| {
                p.drops[reason.index()].load(std::sync::atomic::Ordering::Relaxed)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcswitch_model::ConfigBuilder;
    use vpcswitch_wire::{build, MacAddr};

    /// The harness runs the real worker path: a frame is delivered, a forged
    /// checksum request is refused with its reason (SPEC 2.5).
    #[test]
    fn frames_go_through_the_worker_path() {
        let cfg = ConfigBuilder::new()
            .vpc("a", &["10.0.0.0/16"])
            .subnet("a1", "a", "10.0.1.0/24")
            .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
            .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
            .build()
            .expect("config");
        let mut h = WorkerHarness::new(&cfg, |_| false).expect("harness");
        let (p1, p2) = (h.port_id("p1").expect("p1"), h.port_id("p2").expect("p2"));
        let f = build::udp(
            build::Ends {
                dst: MacAddr([2, 0, 0, 0, 1, 2]),
                src: MacAddr([2, 0, 0, 0, 1, 1]),
                sip: "10.0.1.11".parse().expect("ip"),
                dip: "10.0.1.12".parse().expect("ip"),
            },
            64,
            1,
            2,
            b"x",
        );
        let out = h.send(p1, VnetHdr::default(), &f);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].port, p2);
        assert_eq!(out[0].frame, f);
        let bad = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: 26,
            csum_offset: 2,
            ..VnetHdr::default()
        };
        assert!(h.send(p1, bad, &f).is_empty());
        assert_eq!(h.dropped(p1, vpcswitch_core::DropReason::BadOffloadCsum), 1);
    }

    /// A frame longer than the destination's device takes (its MTU) is dropped and
    /// counted as `mtu_exceeded` on that port, switched or routed; no fragment, no ICMP
    /// (docs/config.md, "MTU"). A frame that fits goes, jumbo floods are copied whole.
    #[test]
    fn a_frame_too_long_for_its_destination_is_dropped_with_its_reason() {
        use vpcswitch_core::DropReason;
        let cfg = ConfigBuilder::new()
            .vpc("a", &["10.0.0.0/16"])
            .subnet("a1", "a", "10.0.1.0/24")
            .subnet("a2", "a", "10.0.2.0/24")
            .port("jumbo", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
            .port("small", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
            .port("jumbo2", "a1", "02:00:00:00:01:03", &["10.0.1.13"])
            .port("far", "a2", "02:00:00:00:02:01", &["10.0.2.11"])
            .build()
            .expect("config");
        // "small" and "far" have a 1500-byte MTU; the others 9000
        let mut h = WorkerHarness::with_max_frame(
            &cfg,
            |_| false,
            |p| if p.starts_with("jumbo") { 9014 } else { 1514 },
        )
        .expect("harness");
        let id = |h: &WorkerHarness, p: &str| h.port_id(p).expect("port");
        let (j, s, j2, far) = (
            id(&h, "jumbo"),
            id(&h, "small"),
            id(&h, "jumbo2"),
            id(&h, "far"),
        );
        let mac = |last: u8, sub: u8| MacAddr([2, 0, 0, 0, sub, last]);
        let udp = |dst: MacAddr, dip: &str, len: usize| {
            build::udp(
                build::Ends {
                    dst,
                    src: mac(1, 1),
                    sip: "10.0.1.11".parse().expect("ip"),
                    dip: dip.parse().expect("ip"),
                },
                64,
                1,
                2,
                &vec![0x5a; len - 42],
            )
        };
        // 9014 bytes to a 9000-MTU port: delivered whole
        let f = udp(mac(3, 1), "10.0.1.13", 9014);
        let out = h.send(j, VnetHdr::default(), &f);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].port, &out[0].frame), (j2, &f));
        // 1514 to the 1500-MTU port: delivered; 1515 and 9014: dropped, counted there
        assert_eq!(
            h.send(j, VnetHdr::default(), &udp(mac(2, 1), "10.0.1.12", 1514))
                .len(),
            1
        );
        assert!(h
            .send(j, VnetHdr::default(), &udp(mac(2, 1), "10.0.1.12", 1515))
            .is_empty());
        assert!(h
            .send(j, VnetHdr::default(), &udp(mac(2, 1), "10.0.1.12", 9014))
            .is_empty());
        assert_eq!(h.dropped(s, DropReason::MtuExceeded), 2);
        // routed to the far subnet: the same
        let gw = h.snapshot().gateway_mac;
        assert!(h
            .send(j, VnetHdr::default(), &udp(gw, "10.0.2.11", 4000))
            .is_empty());
        assert_eq!(h.dropped(far, DropReason::MtuExceeded), 1);
        let out = h.send(j, VnetHdr::default(), &udp(gw, "10.0.2.11", 1514));
        assert_eq!(out.len(), 1, "a routed frame that fits goes");
        // a jumbo broadcast: copied whole to the port that takes it, dropped for the
        // one that does not
        let bcast = build::udp(
            build::Ends {
                dst: MacAddr([0xff; 6]),
                src: mac(1, 1),
                sip: "10.0.1.11".parse().expect("ip"),
                dip: "255.255.255.255".parse().expect("ip"),
            },
            64,
            1,
            2,
            &vec![0x5a; 8000],
        );
        let out = h.send(j, VnetHdr::default(), &bcast);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].port, &out[0].frame), (j2, &bcast));
        assert_eq!(h.dropped(s, DropReason::MtuExceeded), 3);
        assert_eq!(h.dropped(s, DropReason::NoBuffer), 0);
    }
}
