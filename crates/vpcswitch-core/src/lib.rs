//! The VPC dataplane: compiled tables and the pipeline (SPEC 2–6, 8).
//!
//! # Contract
//! [`Snapshot::compile`] turns a validated [`vpcswitch_model::Config`] into immutable
//! lookup tables. [`Snapshot::process`] runs one frame through the pipeline and returns a
//! typed [`Verdict`]; it may rewrite the frame in place (routing, ARP replies, ICMP). It
//! never panics, never allocates and never blocks, whatever the bytes.
//!
//! Learned state (VIP owners, SPEC 3.1) lives beside the tables in atomics
//! ([`VipCell`]), so a GARP processed on one worker steers the very next packet on every
//! worker, with no lock.
//!
//! This crate never sees a thread, a file descriptor or a backend: the runtime calls
//! [`Snapshot::process`] per frame of a burst and acts on the verdict.
//!
//! Many hosts (SPEC 10): every host compiles the same network, seen from itself; each
//! port is [`Location::Local`] or [`Location::Remote`]. The pipeline runs where a frame
//! enters and decides as one switch would; the runtime sends an output on another
//! host through a tunnel ([`Snapshot::vni_for`], [`Snapshot::flood_hosts`]). A frame
//! from a tunnel goes through [`Snapshot::process_tunnel`], which takes it only as
//! something the sending host's ports could have produced. The contract is in the
//! `snapshot::overlay` module docs (see [`Location`]).
//!
//! # Security intent
//! Guests are untrusted. Every frame is checked before any table is consulted with its
//! contents: the source MAC (SPEC 2.2), the source IP (2.3), ARP claims (2.3a, 3.1). A
//! guest can only claim its own addresses and the VIPs it is bound to.
//! Another host is trusted as far as its ports are (SPEC 10.3): what it sends
//! through a tunnel is checked as its ports' own frames would be.

mod flat;
mod lpm;
mod pipeline;
mod reason;
mod snapshot;
mod trace;

pub use flat::{FlatKey, FlatMap};
pub use lpm::{Lpm, LpmPrefix};
pub use pipeline::TraceResult;
pub use reason::DropReason;
pub use snapshot::{
    Addr, Budget, DhcpServer, Doorbell, HostEntry, Location, PortEntry, RouteTarget, Snapshot,
    Subnet6, SubnetEntry, UplinkEntry, VipCell, VipEntry, VpcEntry, NO_OWNER,
};
pub use trace::{NoTrace, Stage, Trace, Tracer};

/// A port's index, stable across reloads while the port's name stays.
pub type PortId = u32;
/// A subnet's index in one snapshot.
pub type SubnetId = u32;
/// A VPC's index in one snapshot.
pub type VpcId = u32;
/// A VIP's index in one snapshot.
pub type VipId = u32;
/// A host's index in one snapshot (its place in `[[hosts]]`, SPEC 10.1).
pub type HostId = u32;

/// Where a forwarded frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// one port (possibly the ingress port, for answers the switch makes)
    Port(PortId),
    /// every port of the subnet except the ingress port (SPEC 4.1, 3.3, 3.4)
    Flood(SubnetId),
    /// every port bound to the VIP except the ingress port (SPEC 3.4, 5.2)
    VipPorts(VipId),
}

/// What the pipeline decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) frame.
    Forward(Out),
    /// Drop the frame, counting the reason.
    Drop(DropReason),
    /// Drop the frame (counting the reason) and send what the switch wrote into its
    /// buffer instead: an ICMP error or an ARP request.
    DropAndSend(DropReason, Out),
}

/// Per-packet context supplied by the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    /// Monotonic time in nanoseconds (rate limits, VIP move times).
    pub now_ns: u64,
    /// The frame's TCP/UDP checksum field holds only the pseudo-header sum, for a
    /// device (or the runtime) to complete: a checksum offload such as virtio's
    /// `NEEDS_CSUM`. Address translation (SPEC 7) then updates it as such.
    pub csum_partial: bool,
    /// The frame is an offload super-frame (TSO) that the runtime cuts into segments
    /// before it leaves: its length is not the length of what is sent (SPEC 10.6).
    pub gso: bool,
}

impl Ctx {
    /// A context at time `now_ns` for a frame with a complete checksum.
    #[inline]
    pub const fn at(now_ns: u64) -> Ctx {
        Ctx {
            now_ns,
            csum_partial: false,
            gso: false,
        }
    }
}
