//! Tracing the pipeline's decisions (like `ofproto/trace` and `ovn-trace`).
//!
//! The pipeline is generic over a [`Tracer`], which answers two questions at compile
//! time, apart:
//! - [`Tracer::ON`]: are the steps recorded? With [`NoTrace`] every trace call compiles
//!   away (a constant `false`), as VPP's `do_trace` template parameter.
//! - [`Tracer::DRY_RUN`]: are side effects left out? A dry run learns nothing (VIP
//!   owners, the next hop's MAC), spends no budget and times nothing; every stage and
//!   every fast path runs as it would for real, so a trace follows the very code a
//!   packet takes. The side effects sit behind a few methods of the pipeline
//!   (`pipeline/mod.rs`, "Side effects") that check the mode once each.
//!
//! [`Trace`] records and is a dry run (`Snapshot::trace`, `vpcswitch ctl trace`).

use std::fmt;

/// Receives the pipeline's steps.
pub trait Tracer {
    /// True: the steps are recorded. False (the production path): trace code is
    /// removed at compile time.
    const ON: bool;
    /// True: learned state, budgets and timing are left as they are (what-if). False:
    /// they act.
    const DRY_RUN: bool;
    /// Records one step of a stage.
    fn step(&mut self, stage: Stage, detail: fmt::Arguments<'_>);
}

/// The production tracer: records nothing, changes what a packet changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTrace;

impl Tracer for NoTrace {
    const ON: bool = false;
    const DRY_RUN: bool = false;
    #[inline(always)]
    fn step(&mut self, _: Stage, _: fmt::Arguments<'_>) {}
}

macro_rules! stages {
    ($($(#[$m:meta])* $v:ident = $name:literal,)*) => {
        /// The stage a trace record comes from (VPP's typed trace records).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Stage { $($(#[$m])* $v,)* }

        impl Stage {
            /// The stage's stable name, as `ctl trace` shows it.
            pub const fn name(self) -> &'static str {
                match self { $(Stage::$v => $name,)* }
            }
        }
    };
}

stages! {
    /// SPEC 2.1: the classifier
    Parse = "parse",
    /// the ingress port
    Ingress = "ingress",
    /// SPEC 2.1: 802.1Q/802.1ad tags
    Vlan = "vlan",
    /// SPEC 2.2
    SrcMac = "src-mac",
    /// SPEC 2.3
    SrcIp = "src-ip",
    /// SPEC 2.3, 2.3a, 3.x, 7.1
    Arp = "arp",
    /// SPEC 3.4, 7.1: answers the switch makes to ARP
    ArpResponder = "arp-responder",
    /// SPEC 12.2–12.4: neighbour discovery from a port
    Nd = "nd",
    /// SPEC 12.3: answers the switch makes to neighbour and router solicitations
    NdResponder = "nd-responder",
    /// SPEC 3.1
    VipLearn = "vip-learn",
    /// SPEC 4.3
    VipSteer = "vip-steer",
    /// SPEC 4.x, 2.6
    L2 = "l2",
    /// SPEC 5.x, 9.1
    L3 = "l3",
    /// SPEC 5.1, 5.3
    Route = "route",
    /// SPEC 5.6
    Gateway = "gateway",
    /// SPEC 6.1
    DstCheck = "dst-check",
    /// SPEC 5.5, 7.1
    Rewrite = "rewrite",
    /// SPEC 5.5, 5.7: ICMP errors
    Icmp = "icmp",
    /// answers the switch makes instead of a dropped frame
    Answer = "answer",
    /// SPEC 13.1: the DHCP server of a subnet with DHCP on, and the rogue-server guard
    Dhcp = "dhcp",
    /// SPEC 7
    Uplink = "uplink",
    /// SPEC 7.1, 7.2
    Eip = "eip",
    /// SPEC 10.2, 10.3: a frame from a tunnel
    Tunnel = "tunnel",
    /// SPEC 10.1, 10.4: an output to another host, through a tunnel
    Encap = "encap",
    /// the final verdict
    Verdict = "verdict",
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment apply
        f.pad(self.name())
    }
}

/// A stage serializes as its name (`ctl trace --json`).
impl serde::Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A recorded trace: one line per decision. A dry run: see the module docs.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// (stage, what it decided)
    pub steps: Vec<(Stage, String)>,
}

impl Tracer for Trace {
    const ON: bool = true;
    const DRY_RUN: bool = true;
    fn step(&mut self, stage: Stage, detail: fmt::Arguments<'_>) {
        self.steps.push((stage, detail.to_string()));
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stage, d)) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {:<10} {}", i + 1, stage, d)?;
        }
        Ok(())
    }
}
