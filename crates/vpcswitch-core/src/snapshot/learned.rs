//! Learned state: what the switch finds out while forwarding, beside the compiled
//! tables, shared by every worker through atomics: VIP owners (SPEC 3.1, 3.6), the
//! outside next hop's MAC (7.2) and the per-port budgets (5.5, 7.3). A snapshot's
//! [`Learned`] is made with it ([`Learned::new`], carrying over what the previous
//! snapshot learned, SPEC 3.2) and reconciled after the swap
//! ([`Snapshot::reconcile_learned`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use vpcswitch_model::{Config, MacAddr};
use vpcswitch_wire::MacKey;

use super::{Snapshot, VipEntry};
use crate::{PortId, VipId};

/// Wakes the control threads that listen (the binary's store thread, the runtime's
/// event thread, an embedder's) when a worker changed learned state they watch: a VIP
/// moved (SPEC 3.1, 11.4: the claim is published at once, not at the next poll).
/// Ringing takes no lock and allocates nothing (a counter and each listener's
/// `Thread::unpark`, a syscall only when it sleeps), and a VIP moves only on a claim, so it
/// stays off the per-packet path. One bell per switch, carried from snapshot to snapshot.
#[derive(Debug, Default)]
pub struct Doorbell {
    rings: AtomicU64,
    listeners: [std::sync::OnceLock<std::thread::Thread>; Doorbell::LISTENERS],
}

impl Doorbell {
    /// How many threads may listen to one bell.
    pub const LISTENERS: usize = 4;

    /// Counts a ring and wakes the listeners.
    pub fn ring(&self) {
        self.rings.fetch_add(1, Ordering::Release);
        for t in self.listeners.iter().map_while(|l| l.get()) {
            t.unpark();
        }
    }
    /// How many times the bell rang: a listener compares it with what it last saw,
    /// after any wake (`std::thread::park` may return spuriously).
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::Acquire)
    }
    /// Makes the calling thread one that [`Doorbell::ring`] unparks (true also when it
    /// listens already); false when [`Doorbell::LISTENERS`] other threads listen.
    pub fn listen(&self) -> bool {
        let me = std::thread::current();
        let id = me.id();
        for l in &self.listeners {
            match l.get() {
                Some(t) if t.id() == id => return true,
                Some(_) => continue,
                None => {
                    if l.set(me.clone()).is_ok() {
                        return true;
                    }
                    // another thread took this slot meanwhile: it cannot be us
                }
            }
        }
        false
    }
}

/// "No owner" in a [`VipCell`].
pub const NO_OWNER: u32 = u32::MAX;

/// Learned state of one VIP, shared by every worker (SPEC 3.1, 3.6).
#[derive(Debug)]
pub struct VipCell {
    owner: AtomicU32,
    moves: AtomicU64,
    last_move_ns: AtomicU64,
    /// the last move, on [`precise_ns`]'s clock, while no packet has been sent to the
    /// new owner since it; 0 otherwise
    pending_ns: AtomicU64,
    /// ns from the last move to the first packet sent to the new owner after it;
    /// [`NOT_MEASURED`] until one was
    first_packet_ns: AtomicU64,
    /// owner as compiled (for the post-swap reconciliation)
    compiled_owner: u32,
}

/// [`VipCell::first_packet_ns`] before any packet followed a move.
const NOT_MEASURED: u64 = u64::MAX;

/// Nanoseconds (never 0) on a process-wide monotonic clock. Read only on cold paths, a
/// VIP move and the first packet after it, where a poll loop's once-per-burst time is
/// too coarse to time the switch's own reaction (issue: failover measured at the switch).
fn precise_ns() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    (BASE
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64)
        .saturating_add(1)
}

impl VipCell {
    fn new(owner: u32, moves: u64, last: u64, first_packet: Option<u64>) -> VipCell {
        VipCell {
            owner: AtomicU32::new(owner),
            moves: AtomicU64::new(moves),
            last_move_ns: AtomicU64::new(last),
            pending_ns: AtomicU64::new(0),
            first_packet_ns: AtomicU64::new(first_packet.unwrap_or(NOT_MEASURED)),
            compiled_owner: owner,
        }
    }
    /// The current owner, if any.
    #[inline]
    pub fn owner(&self) -> Option<PortId> {
        let o = self.owner.load(Ordering::Acquire);
        (o != NO_OWNER).then_some(o)
    }
    /// How many times the owner changed.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }
    /// When the owner last changed (the runtime's clock, ns), 0 if never.
    pub fn last_move_ns(&self) -> u64 {
        self.last_move_ns.load(Ordering::Relaxed)
    }
    /// How long after the last move the first packet was sent to the new owner, in ns
    /// (the switch's own failover time: from processing the claim, usually a GARP, to
    /// forwarding the next frame for the VIP, on any worker). `None` until a packet
    /// followed a move. Survives reloads; a reload between a move and its first packet
    /// loses that one measurement.
    pub fn first_packet_ns(&self) -> Option<u64> {
        let v = self.first_packet_ns.load(Ordering::Relaxed);
        (v != NOT_MEASURED).then_some(v)
    }
    /// Makes `port` the owner; true when that is a move.
    pub fn claim(&self, port: PortId, now_ns: u64) -> bool {
        let prev = self.owner.swap(port, Ordering::AcqRel);
        if prev != port {
            self.moves.fetch_add(1, Ordering::Relaxed);
            self.last_move_ns.store(now_ns, Ordering::Relaxed);
            self.pending_ns.store(precise_ns(), Ordering::Release);
            true
        } else {
            false
        }
    }
    /// The pipeline sends a frame for the VIP to its current owner: the first such
    /// frame after a move is timed. One relaxed load of a line the owner lookup has
    /// just read, on the hot path; the rest only once per move.
    #[inline]
    pub(crate) fn sent_to_owner(&self) {
        let t = self.pending_ns.load(Ordering::Relaxed);
        if t != 0 {
            self.first_after_move(t);
        }
    }
    #[cold]
    fn first_after_move(&self, t: u64) {
        // Only one worker wins the move's measurement.
        if self
            .pending_ns
            .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let d = precise_ns().saturating_sub(t);
            self.first_packet_ns.store(d, Ordering::Relaxed);
        }
    }
}

/// "Not learned yet" in the next-hop cell (no [`MacKey`] has its top bits set).
const NO_MAC: u64 = u64::MAX;

/// What a per-port budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// ICMP errors and VIP ARP probes the switch sends for the port (SPEC 5.5)
    Answers = 0,
    /// ARP packets from the port (the responder's work and GARP floods)
    Arp = 1,
    /// copies the port's floods make (broadcast/multicast IPv4 and flooded ARP: one
    /// token per receiving port, so a flood in a subnet of N ports costs N − 1)
    Flood = 2,
    /// Uplink (SPEC 7.3): ARP whose sender IP is the next hop's, from its known MAC
    /// (Ethernet source and sender MAC both the learned or configured next-hop MAC)
    NextHopArp = 3,
    /// Uplink (SPEC 7.3): ARP whose sender IP is the next hop's, from any other MAC
    /// (before the MAC is known, after the router changed, or a forger)
    NextHopArpOther = 4,
    /// Uplink (SPEC 7.3): requests for an EIP from anyone but the next hop
    EipArp = 5,
}

/// Number of [`Budget`]s.
const BUDGETS: usize = 6;

/// Per-port budgets: at most N per second each. One window per budget:
/// `second << 32 | count`, written with plain stores (several workers may race on a
/// port; the bound then holds within a small factor, which is the intent).
#[derive(Debug, Default)]
struct PortBudgets {
    windows: [AtomicU64; BUDGETS],
}

/// The learned state of one snapshot. See the module docs.
#[derive(Debug)]
pub(crate) struct Learned {
    /// the next hop's MAC as a [`MacKey`], learned by ARP on the uplink (or
    /// static); `NO_MAC` until then
    next_hop_mac: AtomicU64,
    /// by VIP id
    vip_cells: Box<[VipCell]>,
    /// by port id
    budgets: Box<[PortBudgets]>,
    /// per-second limits, indexed by [`Budget`]
    limits: [u32; BUDGETS],
    /// rung when a VIP moves; the previous snapshot's
    vip_bell: std::sync::Arc<Doorbell>,
}

impl Learned {
    /// The learned state of a snapshot of `cfg` with `vips` and `nports` port ids:
    /// what `prev` learned is carried over where it still holds (VIP owners still
    /// bound, SPEC 3.2; the next hop's MAC while the next hop is the same), budgets
    /// start full.
    pub(super) fn new(
        cfg: &Config,
        prev: Option<&Snapshot>,
        vips: &[VipEntry],
        nports: usize,
    ) -> Learned {
        // the next hop's MAC: configured, or carried over while the next hop is the same
        let next_hop_mac = match (&cfg.uplink, prev) {
            (Some(u), _) if u.next_hop_mac.is_some() => u.next_hop_mac.map_or(NO_MAC, |m| m.key()),
            (Some(u), Some(p)) => p.carried_next_hop(u32::from(u.next_hop)),
            _ => NO_MAC,
        };
        // learned owners carried over by name (SPEC 3.2)
        let vip_cells = vips
            .iter()
            .map(
                |v| match prev.and_then(|p| p.carry_vip(&v.name, &v.ports)) {
                    Some((owner, moves, last, first)) => VipCell::new(owner, moves, last, first),
                    None => VipCell::new(NO_OWNER, 0, 0, None),
                },
            )
            .collect();
        let sw = &cfg.switch;
        Learned {
            vip_bell: prev.map_or_else(Default::default, |p| p.learned.vip_bell.clone()),
            next_hop_mac: AtomicU64::new(next_hop_mac),
            vip_cells,
            budgets: (0..nports).map(|_| PortBudgets::default()).collect(),
            // the uplink's three per-purpose ARP budgets (SPEC 7.3) are each
            // `arp_per_sec`, beside the uplink's general ARP budget
            limits: [
                sw.icmp_errors_per_sec,
                sw.arp_per_sec,
                sw.flood_per_sec,
                sw.arp_per_sec,
                sw.arp_per_sec,
                sw.arp_per_sec,
            ],
        }
    }
}

impl Snapshot {
    /// (owner id in the new numbering, moves, last move, failover time) of this
    /// snapshot's VIP `name`, if its owner is bound in the new configuration.
    fn carry_vip(&self, name: &str, new_bound: &[PortId]) -> Option<(u32, u64, u64, Option<u64>)> {
        let vi = self.vips.iter().position(|v| v.name == name)?;
        let cell = &self.learned.vip_cells[vi];
        // Port ids are stable by name, so the same id names the same port.
        let owner = cell
            .owner()
            .filter(|o| new_bound.contains(o))
            .unwrap_or(NO_OWNER);
        Some((
            owner,
            cell.moves(),
            cell.last_move_ns(),
            cell.first_packet_ns(),
        ))
    }

    /// Call once the new snapshot is published: re-applies owners that `prev` learned
    /// between compile and swap (a GARP processed under the old snapshot), unless this
    /// snapshot learned a newer owner meanwhile. Closes the reload race of SPEC 3.2.
    pub fn reconcile_learned(&self, prev: &Snapshot) {
        if let Some(u) = &self.uplink {
            let old = prev.carried_next_hop(u.next_hop);
            if old != NO_MAC && !u.static_next_hop {
                let _ = self.learned.next_hop_mac.compare_exchange(
                    NO_MAC,
                    old,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        for (vi, v) in self.vips.iter().enumerate() {
            let cell = &self.learned.vip_cells[vi];
            let Some((owner, moves, last, _)) = prev.carry_vip(&v.name, &v.ports) else {
                continue;
            };
            if owner != cell.compiled_owner
                && cell
                    .owner
                    .compare_exchange(
                        cell.compiled_owner,
                        owner,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                cell.moves.fetch_max(moves, Ordering::Relaxed);
                cell.last_move_ns.fetch_max(last, Ordering::Relaxed);
            }
        }
    }

    /// The learned next-hop MAC (as a `MacKey`) if this snapshot's next hop is `next_hop`.
    fn carried_next_hop(&self, next_hop: u32) -> u64 {
        match &self.uplink {
            Some(u) if u.next_hop == next_hop => self.learned.next_hop_mac.load(Ordering::Acquire),
            _ => NO_MAC,
        }
    }

    /// Is `mac` the next hop's known (learned or configured) MAC? False while none is
    /// known.
    #[inline]
    pub(crate) fn is_next_hop_mac(&self, mac: MacKey) -> bool {
        let m = self.learned.next_hop_mac.load(Ordering::Acquire);
        m != NO_MAC && m == mac.0
    }

    /// The outside next hop's MAC, once learned (SPEC 7.2).
    #[inline]
    pub fn next_hop_mac(&self) -> Option<MacAddr> {
        let m = self.learned.next_hop_mac.load(Ordering::Acquire);
        (m != NO_MAC).then(|| MacAddr::from_key(m))
    }

    /// Records the next hop's MAC, learned from its ARP on the uplink; true when it
    /// changed. A configured (static) MAC is never replaced.
    pub(crate) fn learn_next_hop(&self, mac: MacKey) -> bool {
        if self.uplink.as_ref().is_none_or(|u| u.static_next_hop) {
            return false;
        }
        self.learned.next_hop_mac.swap(mac.0, Ordering::AcqRel) != mac.0
    }

    /// Learned state of VIP `v`.
    #[inline]
    pub fn vip_cell(&self, v: VipId) -> &VipCell {
        &self.learned.vip_cells[v as usize]
    }
    /// Sets a VIP's owner by hand (embedders, tests); refuses ports not bound to it.
    pub fn set_vip_owner(&self, vip: &str, port: &str, now_ns: u64) -> bool {
        let (Some(v), Some(p)) = (self.vip_id(vip), self.port_id(port)) else {
            return false;
        };
        if !self.vips[v as usize].ports.contains(&p) {
            return false;
        }
        if self.vip_cell(v).claim(p, now_ns) {
            self.learned.vip_bell.ring();
        }
        true
    }
    /// The bell rung whenever a VIP's owner changes (a claim in the datapath or
    /// [`Snapshot::set_vip_owner`]); the same for every snapshot of a switch.
    pub fn vip_bell(&self) -> &std::sync::Arc<Doorbell> {
        &self.learned.vip_bell
    }
    /// Takes `n` tokens of `budget` for `port`: granted while the window is not yet
    /// spent (so one grant may overshoot the limit by up to `n − 1`, and a frame
    /// whose `n` alone exceeds the limit still passes once per second); `n = 0`
    /// always passes and spends nothing. Never blocks.
    pub(crate) fn take_n(&self, port: PortId, budget: Budget, now_ns: u64, n: u32) -> bool {
        if n == 0 {
            return true;
        }
        let Some(b) = self.learned.budgets.get(port as usize) else {
            return false;
        };
        let window = &b.windows[budget as usize];
        let limit = self.learned.limits[budget as usize];
        let sec = (now_ns / 1_000_000_000) & 0xffff_ffff;
        let w = window.load(Ordering::Relaxed);
        let (wsec, count) = (w >> 32, (w & 0xffff_ffff) as u32);
        if wsec != sec {
            window.store((sec << 32) | u64::from(n), Ordering::Relaxed);
            limit > 0
        } else if count < limit {
            let c = count.saturating_add(n);
            window.store((sec << 32) | u64::from(c), Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}
