//! Counters: per worker, cache-padded, single writer (plain load+store, no locked
//! read-modify-write); aggregated when read, so reading never stalls a worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use vpcswitch_backend::MAX_BURST;
use vpcswitch_core::DropReason;

/// Adds on a counter only this thread writes.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[inline(always)]
fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One port's counters on one worker.
#[derive(Debug)]
pub(crate) struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// the worker's queue of this port reports its device gone
    pub down: std::sync::atomic::AtomicBool,
}

impl PortCounters {
    /// Zeroes every counter (by the worker that writes them: see `Command::ResetCounters`).
    pub fn reset(&self) {
        for c in [
            &self.rx_packets,
            &self.rx_bytes,
            &self.tx_packets,
            &self.tx_bytes,
        ]
        .into_iter()
        .chain(self.drops.iter())
        {
            c.store(0, Ordering::Relaxed);
        }
        self.down.store(false, Ordering::Relaxed);
    }
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// One remote host's tunnel counters on one worker (SPEC 10).
#[derive(Debug)]
pub(crate) struct HostCounters {
    /// inner frames received from the host (decapsulated, before the checks)
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// inner frames sent to the host (encapsulated and taken by the kernel's queue)
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// frames from the host that the checks dropped (SPEC 10.3), by reason
    pub drops: [AtomicU64; DropReason::COUNT],
    /// when the last tunnel packet from the host arrived (the switch clock, ns; 0: never)
    pub last_rx_ns: AtomicU64,
}

impl Default for HostCounters {
    fn default() -> Self {
        HostCounters {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            last_rx_ns: AtomicU64::new(0),
        }
    }
}

/// One worker's tunnel socket totals, published after each tunnel call (the tunnel's
/// own counters belong to the worker's thread).
#[derive(Debug, Default)]
pub(crate) struct TunnelCounters {
    pub rx_datagrams: AtomicU64,
    /// datagrams that were not VXLAN with an inner Ethernet frame, or too long
    pub rx_malformed: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_packets: AtomicU64,
    /// packets the kernel refused (no route, no buffer space, too long, other errors)
    pub tx_errors: AtomicU64,
    /// GSO trains sent (each one `sendmsg` of many packets)
    pub tx_trains: AtomicU64,
    /// reads of datagrams the kernel coalesced (GRO)
    pub rx_coalesced: AtomicU64,
    /// received TCP segments joined back into super-frames
    pub rx_joined: AtomicU64,
}

/// One worker's counters.
#[derive(Debug)]
pub(crate) struct WorkerCounters {
    pub ports: Box<[PortCounters]>,
    /// by host id (SPEC 10)
    pub hosts: Box<[HostCounters]>,
    pub tunnel: TunnelCounters,
    /// drops not attributable to a configured port
    pub orphan_drops: [AtomicU64; DropReason::COUNT],
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub generated: AtomicU64,
    /// segments cut from super-frames in software
    pub segments: AtomicU64,
    pub loops: AtomicU64,
    pub busy_loops: AtomicU64,
    /// time (ns) spent in passes that found frames, and in the others (sleep included)
    pub busy_ns: AtomicU64,
    pub idle_ns: AtomicU64,
    pub sleeps: AtomicU64,
    pub burst_hist: [AtomicU64; MAX_BURST + 1],
}

impl WorkerCounters {
    pub fn new(ports: usize, hosts: usize) -> CachePadded<WorkerCounters> {
        CachePadded::new(WorkerCounters {
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            hosts: (0..hosts).map(|_| HostCounters::default()).collect(),
            tunnel: TunnelCounters::default(),
            orphan_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            busy_loops: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            burst_hist: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// Counts `n` frames from or for host `h`'s tunnel dropped for `r` (on the host,
    /// and in the totals; an unknown host's in the totals only).
    #[inline]
    pub fn drop_for_host(&self, h: u32, r: DropReason, n: u64) {
        bump(&self.dropped, n);
        match self.hosts.get(h as usize) {
            Some(c) => bump(&c.drops[r.index()], n),
            None => bump(&self.orphan_drops[r.index()], n),
        }
    }

    #[inline]
    pub fn drop_on(&self, port: u32, r: DropReason, n: u64) {
        match self.ports.get(port as usize) {
            Some(p) => bump(&p.drops[r.index()], n),
            None => bump(&self.orphan_drops[r.index()], n),
        }
    }
}

/// One port's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// port name
    pub name: String,
    /// frames received from the port
    pub rx_packets: u64,
    /// bytes received
    pub rx_bytes: u64,
    /// frames sent to the port
    pub tx_packets: u64,
    /// bytes sent
    pub tx_bytes: u64,
    /// drops charged to this port, by reason (non-zero only)
    pub drops: Vec<(DropReason, u64)>,
    /// the port's device is gone (a deleted TAP); a reload reopens it
    pub down: bool,
}

impl PortStats {
    /// Drops of one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.iter().find(|d| d.0 == r).map_or(0, |d| d.1)
    }
}

/// One worker's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// frames whose verdict was forward
    pub forwarded: u64,
    /// frames whose verdict was drop (pipeline drops; tx drops are per port)
    pub dropped: u64,
    /// answers the switch made in place of a dropped frame (ICMP errors, ARP requests)
    pub generated: u64,
    /// segments cut from TCP super-frames in software, for ports without offload (at
    /// most `vpcswitch_wire::offload::MAX_GSO_SEGMENTS` per super-frame, SPEC 2.5)
    pub segments: u64,
    /// poll loops
    pub loops: u64,
    /// loops that found work
    pub busy_loops: u64,
    /// nanoseconds spent in passes that found frames
    pub busy_ns: u64,
    /// nanoseconds spent in passes that found none, sleeping included
    pub idle_ns: u64,
    /// times the worker went to sleep
    pub sleeps: u64,
    /// `burst_hist[n]`: rx bursts of n frames
    pub burst_hist: Vec<u64>,
}

/// One remote host's tunnel totals (SPEC 10), over every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStats {
    /// host name
    pub name: String,
    /// its tunnel endpoint
    pub endpoint: std::net::SocketAddrV4,
    /// inner frames received from it
    pub rx_packets: u64,
    /// their bytes
    pub rx_bytes: u64,
    /// inner frames sent to it
    pub tx_packets: u64,
    /// their bytes
    pub tx_bytes: u64,
    /// frames from it dropped by the tunnel checks (SPEC 10.3) or the pipeline, by reason
    pub drops: Vec<(DropReason, u64)>,
    /// the switch clock (ns, as [`crate::Switch::now_ns`]) of the last tunnel packet from
    /// it; `None`: never
    pub last_rx_ns: Option<u64>,
}

/// The tunnel sockets' totals over every worker (SPEC 10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelTotals {
    /// datagrams received on the tunnel port
    pub rx_datagrams: u64,
    /// datagrams that were not VXLAN with an inner Ethernet frame, or too long
    pub rx_malformed: u64,
    /// receive errors
    pub rx_errors: u64,
    /// packets sent
    pub tx_packets: u64,
    /// packets the kernel refused
    pub tx_errors: u64,
    /// UDP GSO trains sent (each one `sendmsg` of many packets)
    pub tx_trains: u64,
    /// receive reads that brought datagrams the kernel coalesced (UDP GRO)
    pub rx_coalesced: u64,
    /// received TCP segments joined back into super-frames for the guests
    pub rx_joined: u64,
}

/// A consistent-enough read of every counter (each counter is exact; they are read
/// one after another while workers run).
#[derive(Debug, Clone, Default)]
pub struct StatsReport {
    /// per configured port
    pub ports: Vec<PortStats>,
    /// per worker
    pub workers: Vec<WorkerStats>,
    /// every drop reason, all ports, hosts and workers
    pub drops: Vec<(DropReason, u64)>,
    /// per remote host (empty without `[[hosts]]`)
    pub hosts: Vec<HostStats>,
    /// the tunnel sockets
    pub tunnel: TunnelTotals,
}

impl StatsReport {
    /// The port named `name`.
    pub fn port(&self, name: &str) -> Option<&PortStats> {
        self.ports.iter().find(|p| p.name == name)
    }
    /// Total drops of one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.iter().find(|d| d.0 == r).map_or(0, |d| d.1)
    }
    /// Frames received on all ports.
    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }
}

/// Host `id`'s totals over `workers`; its drops are added to `totals`.
fn host_report(
    workers: &[&WorkerCounters],
    (id, name, endpoint): &(u32, String, std::net::SocketAddrV4),
    totals: &mut [u64; DropReason::COUNT],
) -> HostStats {
    let mut h = HostStats {
        name: name.clone(),
        endpoint: *endpoint,
        rx_packets: 0,
        rx_bytes: 0,
        tx_packets: 0,
        tx_bytes: 0,
        drops: Vec::new(),
        last_rx_ns: None,
    };
    let mut d = [0u64; DropReason::COUNT];
    for w in workers {
        let Some(c) = w.hosts.get(*id as usize) else {
            continue;
        };
        h.rx_packets += get(&c.rx_packets);
        h.rx_bytes += get(&c.rx_bytes);
        h.tx_packets += get(&c.tx_packets);
        h.tx_bytes += get(&c.tx_bytes);
        let last = get(&c.last_rx_ns);
        if last > 0 {
            h.last_rx_ns = Some(h.last_rx_ns.map_or(last, |l| l.max(last)));
        }
        for (i, c) in c.drops.iter().enumerate() {
            d[i] += get(c);
        }
    }
    for (i, n) in d.iter().enumerate() {
        if *n > 0 {
            h.drops.push((DropReason::ALL[i], *n));
            totals[i] += n;
        }
    }
    h
}

pub(crate) fn report(
    workers: &[&WorkerCounters],
    names: &[(u32, String)],
    hosts: &[(u32, String, std::net::SocketAddrV4)],
) -> StatsReport {
    let mut ports = Vec::new();
    let mut totals = [0u64; DropReason::COUNT];
    for (id, name) in names {
        let mut s = PortStats {
            name: name.clone(),
            ..PortStats::default()
        };
        let mut d = [0u64; DropReason::COUNT];
        for w in workers {
            if let Some(p) = w.ports.get(*id as usize) {
                s.rx_packets += get(&p.rx_packets);
                s.rx_bytes += get(&p.rx_bytes);
                s.tx_packets += get(&p.tx_packets);
                s.tx_bytes += get(&p.tx_bytes);
                s.down |= p.down.load(Ordering::Relaxed);
                for (i, c) in p.drops.iter().enumerate() {
                    d[i] += get(c);
                }
            }
        }
        for (i, n) in d.iter().enumerate() {
            if *n > 0 {
                s.drops.push((DropReason::ALL[i], *n));
                totals[i] += n;
            }
        }
        ports.push(s);
    }
    let hosts = hosts
        .iter()
        .map(|h| host_report(workers, h, &mut totals))
        .collect();
    let mut tunnel = TunnelTotals::default();
    for w in workers {
        for (i, c) in w.orphan_drops.iter().enumerate() {
            totals[i] += get(c);
        }
        let t = &w.tunnel;
        tunnel.rx_datagrams += get(&t.rx_datagrams);
        tunnel.rx_malformed += get(&t.rx_malformed);
        tunnel.rx_errors += get(&t.rx_errors);
        tunnel.tx_packets += get(&t.tx_packets);
        tunnel.tx_errors += get(&t.tx_errors);
        tunnel.tx_trains += get(&t.tx_trains);
        tunnel.rx_coalesced += get(&t.rx_coalesced);
        tunnel.rx_joined += get(&t.rx_joined);
    }
    let wstats = workers
        .iter()
        .map(|w| WorkerStats {
            forwarded: get(&w.forwarded),
            dropped: get(&w.dropped),
            generated: get(&w.generated),
            segments: get(&w.segments),
            loops: get(&w.loops),
            busy_loops: get(&w.busy_loops),
            busy_ns: get(&w.busy_ns),
            idle_ns: get(&w.idle_ns),
            sleeps: get(&w.sleeps),
            burst_hist: w.burst_hist.iter().map(get).collect(),
        })
        .collect();
    StatsReport {
        ports,
        workers: wstats,
        drops: DropReason::ALL
            .iter()
            .zip(totals)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
            .collect(),
        hosts,
        tunnel,
    }
}
