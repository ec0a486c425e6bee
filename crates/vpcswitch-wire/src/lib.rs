//! Zero-copy, checked views of the frames a vSwitch sees, and the VXLAN encapsulation
//! of the overlay ([`vxlan`]).
//!
//! # Contract
//! Every view is built with `new_checked` over untrusted bytes: it validates every
//! length the accessors rely on, so no accessor can index out of bounds afterwards and
//! nothing in this crate panics on any input. Failure is a typed error ([`WireError`];
//! for IPv6, [`Ipv6Error`] and [`icmpv6::Icmpv6Error`]) that the pipeline turns into a
//! drop reason (SPEC 2.1).
//!
//! The hot path uses the fixed-offset views here ([`EthernetFrame`], [`Ipv4Packet`],
//! [`classify`]); ARP and ICMP messages the switch *answers* with are parsed and emitted
//! through `smoltcp::wire` ([`arp`], [`icmp`], [`dhcp`]), which is not on the forwarding
//! path. IPv6 ([`ipv6`], [`icmpv6`], [`nd`], [`classify_ipv6`]) has its own views: see
//! [`ipv6`] for why not smoltcp's, which check them in the tests.
//!
//! Field offsets live in private `field` modules, as in smoltcp.

mod addr;
pub mod arp;
pub mod build;
pub mod checksum;
mod classify;
pub mod dhcp;
mod ethernet;
pub mod icmp;
pub mod icmpv6;
mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod nat;
pub mod nd;
pub mod offload;
pub mod tso;
pub mod vxlan;

pub use addr::{IpCidr, Ipv4Cidr, Ipv6Cidr, MacAddr, MacKey, ParseAddrError};
pub use classify::{classify, classify_ipv6, Classified, Classified6, V6Upper, L3};
pub use ethernet::{EtherType, EthernetFrame, ETHERNET_HEADER_LEN};
pub use ipv4::{IpProtocol, Ipv4Packet, IPV4_MIN_HEADER_LEN};
pub use ipv6::{Ipv6Chain, Ipv6Error, Ipv6Packet, IPV6_HEADER_LEN};

/// Why bytes could not be viewed as the header asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the fixed header.
    Truncated,
    /// IPv4 version field is not 4.
    BadVersion,
    /// IPv4 IHL below 5 or beyond the buffer.
    BadHeaderLen,
    /// IPv4 total length smaller than the header or larger than the buffer.
    BadTotalLen,
    /// ARP hardware/protocol types or lengths are not Ethernet/IPv4.
    BadArp,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            WireError::Truncated => "truncated header",
            WireError::BadVersion => "bad IP version",
            WireError::BadHeaderLen => "bad IPv4 header length",
            WireError::BadTotalLen => "bad IPv4 total length",
            WireError::BadArp => "ARP is not Ethernet/IPv4",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}
