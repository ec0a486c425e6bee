//! Neighbour discovery (RFC 4861), IPv6's ARP and more (SPEC 12.2 to 12.4): checked,
//! validated messages and options, and the neighbour and router advertisements the
//! switch answers with.
//!
//! # Contract
//! [`parse`] accepts a message only when RFC 4861's validity checks hold: hop limit 255
//! (it was not routed), code 0, a valid checksum, the fixed part present, no fragment
//! header (RFC 6980), every option of non-zero length and inside the message, known
//! options of their defined length, a source that is not multicast (RFC 4291 2.7), and
//! the per-message rules (sections 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1). Options are
//! checked once, by [`NdOptions::new_checked`]; iterating them afterwards cannot fail.
//! Nothing here panics or allocates.
//!
//! # Security intent
//! The switch compares the link-layer address an ND message claims with the Ethernet
//! source (SPEC 12.2) and learns VIP owners from advertisements (SPEC 12.4); a message
//! carrying two link-layer options, one checked and another used by the receiver,
//! would pass the check and poison a neighbour cache, so duplicates are refused
//! ([`Icmpv6Error::DuplicateOption`]). Each message kind is told apart ([`NdKind`]) so
//! the pipeline can drop router advertisements and redirects from ports (SPEC 12.3).

use std::net::Ipv6Addr;

use crate::ethernet::ETHERNET_HEADER_LEN;
use crate::icmpv6::{
    self, fill_checksum, min_len, Icmpv6Error, Icmpv6Packet, Ipv6Meta, TYPE_NEIGHBOR_ADVERT,
    TYPE_NEIGHBOR_SOLICIT, TYPE_REDIRECT, TYPE_ROUTER_ADVERT, TYPE_ROUTER_SOLICIT,
};
use crate::ipv6::{self, IPV6_HEADER_LEN};
use crate::MacAddr;

/// ND option types (RFC 4861 4.6, RFC 8106).
mod opt {
    pub const SOURCE_LL: u8 = 1;
    pub const TARGET_LL: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED: u8 = 4;
    pub const MTU: u8 = 5;
    pub const RDNSS: u8 = 25;
}

/// The hop limit every ND message is sent and received with.
pub const ND_HOP_LIMIT: u8 = 255;

/// The kinds of ND message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdKind {
    /// Router solicitation (133)
    RouterSolicit,
    /// Router advertisement (134)
    RouterAdvert,
    /// Neighbour solicitation (135)
    NeighborSolicit,
    /// Neighbour advertisement (136)
    NeighborAdvert,
    /// Redirect (137)
    Redirect,
}

impl NdKind {
    /// The kind of ICMPv6 type `ty`, if it is an ND type.
    pub fn from_type(ty: u8) -> Option<NdKind> {
        Some(match ty {
            TYPE_ROUTER_SOLICIT => NdKind::RouterSolicit,
            TYPE_ROUTER_ADVERT => NdKind::RouterAdvert,
            TYPE_NEIGHBOR_SOLICIT => NdKind::NeighborSolicit,
            TYPE_NEIGHBOR_ADVERT => NdKind::NeighborAdvert,
            TYPE_REDIRECT => NdKind::Redirect,
            _ => return None,
        })
    }
    /// The name, as traces show it.
    pub fn name(self) -> &'static str {
        match self {
            NdKind::RouterSolicit => "router solicitation",
            NdKind::RouterAdvert => "router advertisement",
            NdKind::NeighborSolicit => "neighbour solicitation",
            NdKind::NeighborAdvert => "neighbour advertisement",
            NdKind::Redirect => "redirect",
        }
    }
}

/// The flags of a neighbour advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NaFlags {
    /// R: the sender is a router
    pub router: bool,
    /// S: sent in answer to a solicitation
    pub solicited: bool,
    /// O: override an existing cache entry (an unsolicited NA with O set is how
    /// keepalived claims a VIP, SPEC 12.4)
    pub override_: bool,
}

impl NaFlags {
    fn from_byte(b: u8) -> NaFlags {
        NaFlags {
            router: b & 0x80 != 0,
            solicited: b & 0x40 != 0,
            override_: b & 0x20 != 0,
        }
    }
    pub(crate) fn byte(self) -> u8 {
        (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_) << 5)
    }
}

/// A prefix information option (RFC 4861 4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// prefix length (at most 128)
    pub prefix_len: u8,
    /// L: the prefix is on-link
    pub on_link: bool,
    /// A: hosts may form addresses in it (SLAAC)
    pub autonomous: bool,
    /// valid lifetime, seconds (`u32::MAX`: infinite)
    pub valid_lifetime: u32,
    /// preferred lifetime, seconds
    pub preferred_lifetime: u32,
    /// the prefix (bits after `prefix_len` are zero when emitted)
    pub prefix: Ipv6Addr,
}

/// A recursive DNS server option (RFC 8106 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rdnss<'a> {
    /// lifetime, seconds
    pub lifetime: u32,
    addrs: &'a [u8],
}

impl<'a> Rdnss<'a> {
    /// The servers (at least one).
    pub fn servers(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        self.addrs.chunks_exact(16).map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            Ipv6Addr::from(a)
        })
    }
}

/// One checked ND option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    /// Source link-layer address (type 1).
    SourceLinkLayer(MacAddr),
    /// Target link-layer address (type 2).
    TargetLinkLayer(MacAddr),
    /// Prefix information (type 3).
    PrefixInfo(PrefixInfo),
    /// Redirected header (type 4): the quoted packet.
    RedirectedHeader(&'a [u8]),
    /// MTU (type 5).
    Mtu(u32),
    /// Recursive DNS servers (type 25).
    Rdnss(Rdnss<'a>),
    /// Any other option: its type and the bytes after type and length.
    Other {
        /// option type
        ty: u8,
        /// option data
        data: &'a [u8],
    },
}

fn mac(b: &[u8]) -> MacAddr {
    MacAddr::from_slice(b)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Decodes one whole option `o` (type, length, data; `o.len()` is the length field
/// times 8, at least 8).
fn decode(o: &[u8]) -> Result<NdOption<'_>, Icmpv6Error> {
    let (ty, units) = (o[0], o[1]);
    Ok(match ty {
        opt::SOURCE_LL | opt::TARGET_LL => {
            // Ethernet: exactly one unit (RFC 2464 8)
            if units != 1 {
                return Err(Icmpv6Error::BadOption);
            }
            if ty == opt::SOURCE_LL {
                NdOption::SourceLinkLayer(mac(&o[2..8]))
            } else {
                NdOption::TargetLinkLayer(mac(&o[2..8]))
            }
        }
        opt::PREFIX_INFO => {
            if units != 4 || o[2] > 128 {
                return Err(Icmpv6Error::BadOption);
            }
            NdOption::PrefixInfo(PrefixInfo {
                prefix_len: o[2],
                on_link: o[3] & 0x80 != 0,
                autonomous: o[3] & 0x40 != 0,
                valid_lifetime: be32(&o[4..8]),
                preferred_lifetime: be32(&o[8..12]),
                prefix: addr(&o[16..32]),
            })
        }
        opt::REDIRECTED => NdOption::RedirectedHeader(&o[8..]),
        opt::MTU => {
            if units != 1 {
                return Err(Icmpv6Error::BadOption);
            }
            NdOption::Mtu(be32(&o[4..8]))
        }
        opt::RDNSS => {
            // 8-byte header plus at least one 16-byte address (RFC 8106 5.1)
            if units < 3 || units % 2 == 0 {
                return Err(Icmpv6Error::BadOption);
            }
            NdOption::Rdnss(Rdnss {
                lifetime: be32(&o[4..8]),
                addrs: &o[8..],
            })
        }
        ty => NdOption::Other { ty, data: &o[2..] },
    })
}

/// The options of an ND message, every one checked. The link-layer address options,
/// which every message the switch sees is checked against (SPEC 12.2), are kept from
/// that check rather than searched for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOptions<'a> {
    bytes: &'a [u8],
    sll: Option<MacAddr>,
    tll: Option<MacAddr>,
}

impl<'a> NdOptions<'a> {
    /// Checks the option area `bytes` (everything after a message's fixed part):
    /// every option has a non-zero length inside `bytes`, known options decode, and no
    /// link-layer, MTU or redirected-header option appears twice.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Icmpv6Error> {
        let mut seen = 0u32;
        let mut rest = bytes;
        let (mut sll, mut tll) = (None, None);
        while !rest.is_empty() {
            let units = *rest.get(1).ok_or(Icmpv6Error::OptionOverrun)?;
            if units == 0 {
                return Err(Icmpv6Error::BadOptionLen);
            }
            let len = usize::from(units) * 8;
            let o = rest.get(..len).ok_or(Icmpv6Error::OptionOverrun)?;
            match decode(o)? {
                NdOption::SourceLinkLayer(m) => sll = Some(m),
                NdOption::TargetLinkLayer(m) => tll = Some(m),
                _ => {}
            }
            let ty = o[0];
            if matches!(
                ty,
                opt::SOURCE_LL | opt::TARGET_LL | opt::REDIRECTED | opt::MTU
            ) {
                let bit = 1u32 << ty;
                if seen & bit != 0 {
                    return Err(Icmpv6Error::DuplicateOption);
                }
                seen |= bit;
            }
            rest = &rest[len..];
        }
        Ok(NdOptions { bytes, sll, tll })
    }
    /// No options at all.
    pub fn empty() -> NdOptions<'static> {
        NdOptions {
            bytes: &[],
            sll: None,
            tll: None,
        }
    }
    /// The option bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The options, in order.
    pub fn iter(&self) -> NdOptionIter<'a> {
        NdOptionIter { rest: self.bytes }
    }
    /// The source link-layer address option, if present (at most one: checked).
    #[inline]
    pub fn source_lladdr(&self) -> Option<MacAddr> {
        self.sll
    }
    /// The target link-layer address option, if present (at most one: checked).
    #[inline]
    pub fn target_lladdr(&self) -> Option<MacAddr> {
        self.tll
    }
    /// The MTU option, if present.
    pub fn mtu(&self) -> Option<u32> {
        self.iter().find_map(|o| match o {
            NdOption::Mtu(m) => Some(m),
            _ => None,
        })
    }
}

/// Iterates [`NdOptions`]. Built only from checked bytes; should it meet anything
/// malformed anyway, it ends rather than panics.
#[derive(Debug, Clone)]
pub struct NdOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptionIter<'a> {
    type Item = NdOption<'a>;
    fn next(&mut self) -> Option<NdOption<'a>> {
        let len = usize::from(*self.rest.get(1)?) * 8;
        let o = self.rest.get(..len).filter(|o| !o.is_empty())?;
        self.rest = &self.rest[len..];
        decode(o).ok()
    }
}

/// A router advertisement's fixed fields and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterAdvert<'a> {
    /// the hop limit hosts should use (0: unspecified)
    pub cur_hop_limit: u8,
    /// M: addresses via DHCPv6
    pub managed: bool,
    /// O: other configuration via DHCPv6
    pub other: bool,
    /// seconds this router is a default router (0: not one)
    pub router_lifetime: u16,
    /// milliseconds (0: unspecified)
    pub reachable_time: u32,
    /// milliseconds (0: unspecified)
    pub retrans_timer: u32,
    /// options
    pub options: NdOptions<'a>,
}

/// A validated ND message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdMessage<'a> {
    /// Router solicitation.
    RouterSolicit {
        /// options (a source link-layer option, unless sent from `::`)
        options: NdOptions<'a>,
    },
    /// Router advertisement.
    RouterAdvert(RouterAdvert<'a>),
    /// Neighbour solicitation.
    NeighborSolicit {
        /// the address asked for (never multicast)
        target: Ipv6Addr,
        /// options
        options: NdOptions<'a>,
    },
    /// Neighbour advertisement.
    NeighborAdvert {
        /// R, S, O
        flags: NaFlags,
        /// the address advertised (never multicast)
        target: Ipv6Addr,
        /// options
        options: NdOptions<'a>,
    },
    /// Redirect.
    Redirect {
        /// the better first hop
        target: Ipv6Addr,
        /// the destination redirected (never multicast)
        dest: Ipv6Addr,
        /// options
        options: NdOptions<'a>,
    },
}

impl<'a> NdMessage<'a> {
    /// The message kind.
    pub fn kind(&self) -> NdKind {
        match self {
            NdMessage::RouterSolicit { .. } => NdKind::RouterSolicit,
            NdMessage::RouterAdvert(_) => NdKind::RouterAdvert,
            NdMessage::NeighborSolicit { .. } => NdKind::NeighborSolicit,
            NdMessage::NeighborAdvert { .. } => NdKind::NeighborAdvert,
            NdMessage::Redirect { .. } => NdKind::Redirect,
        }
    }
    /// The options.
    pub fn options(&self) -> NdOptions<'a> {
        match self {
            NdMessage::RouterSolicit { options }
            | NdMessage::NeighborSolicit { options, .. }
            | NdMessage::NeighborAdvert { options, .. }
            | NdMessage::Redirect { options, .. } => *options,
            NdMessage::RouterAdvert(ra) => ra.options,
        }
    }
    /// Every link-layer address the message claims for its sender: the source option
    /// of any message, and the target option of a neighbour advertisement (whose
    /// target is the sender's own address). SPEC 12.2 requires each to equal the
    /// Ethernet source. A redirect's target option names another node and is not
    /// included.
    pub fn claimed_lladdrs(&self) -> [Option<MacAddr>; 2] {
        let o = self.options();
        let t = match self {
            NdMessage::NeighborAdvert { .. } => o.target_lladdr(),
            _ => None,
        };
        [o.source_lladdr(), t]
    }
}

/// Parses and validates the ND message `m` (from the ICMPv6 header to the end of the
/// IPv6 packet) sent as `meta` says. See the module docs for the checks.
pub fn parse<'a>(meta: &Ipv6Meta, m: &'a [u8]) -> Result<NdMessage<'a>, Icmpv6Error> {
    let p = Icmpv6Packet::new_checked(m)?;
    let ty = p.msg_type();
    let kind = NdKind::from_type(ty).ok_or(Icmpv6Error::NotNd)?;
    if meta.fragmented {
        return Err(Icmpv6Error::FragmentedNd);
    }
    if meta.hop_limit != ND_HOP_LIMIT {
        return Err(Icmpv6Error::BadHopLimit);
    }
    if p.code() != 0 {
        return Err(Icmpv6Error::BadCode);
    }
    if !p.verify_checksum(&meta.src, &meta.dst) {
        return Err(Icmpv6Error::BadChecksum);
    }
    if ipv6::is_multicast(&meta.src) {
        return Err(Icmpv6Error::BadSource);
    }
    let options = NdOptions::new_checked(&m[min_len(ty)..])?;
    let unspecified = ipv6::is_unspecified(&meta.src);
    let msg = match kind {
        NdKind::RouterSolicit => {
            if unspecified && options.source_lladdr().is_some() {
                return Err(Icmpv6Error::BadUnspecifiedSource);
            }
            NdMessage::RouterSolicit { options }
        }
        NdKind::RouterAdvert => {
            if !ipv6::is_link_local(&meta.src) {
                return Err(Icmpv6Error::BadSource);
            }
            NdMessage::RouterAdvert(RouterAdvert {
                cur_hop_limit: m[4],
                managed: m[5] & 0x80 != 0,
                other: m[5] & 0x40 != 0,
                router_lifetime: u16::from_be_bytes([m[6], m[7]]),
                reachable_time: be32(&m[8..12]),
                retrans_timer: be32(&m[12..16]),
                options,
            })
        }
        NdKind::NeighborSolicit => {
            let target = addr(&m[8..24]);
            if ipv6::is_multicast(&target) {
                return Err(Icmpv6Error::BadTarget);
            }
            if unspecified
                && (!ipv6::is_solicited_node(&meta.dst) || options.source_lladdr().is_some())
            {
                return Err(Icmpv6Error::BadUnspecifiedSource);
            }
            NdMessage::NeighborSolicit { target, options }
        }
        NdKind::NeighborAdvert => {
            let target = addr(&m[8..24]);
            let flags = NaFlags::from_byte(m[4]);
            if ipv6::is_multicast(&target) {
                return Err(Icmpv6Error::BadTarget);
            }
            if flags.solicited && ipv6::is_multicast(&meta.dst) {
                return Err(Icmpv6Error::BadSolicitedFlag);
            }
            NdMessage::NeighborAdvert {
                flags,
                target,
                options,
            }
        }
        NdKind::Redirect => {
            if !ipv6::is_link_local(&meta.src) {
                return Err(Icmpv6Error::BadSource);
            }
            let (target, dest) = (addr(&m[8..24]), addr(&m[24..40]));
            if ipv6::is_multicast(&dest) {
                return Err(Icmpv6Error::BadTarget);
            }
            NdMessage::Redirect {
                target,
                dest,
                options,
            }
        }
    };
    Ok(msg)
}

/// Length of a neighbour advertisement frame with a target link-layer option.
pub const NA_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 24 + 8;

/// A neighbour advertisement to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaParams {
    /// Ethernet destination
    pub eth_dst: MacAddr,
    /// Ethernet source
    pub eth_src: MacAddr,
    /// IPv6 source
    pub src: Ipv6Addr,
    /// IPv6 destination
    pub dst: Ipv6Addr,
    /// R, S, O
    pub flags: NaFlags,
    /// the address advertised
    pub target: Ipv6Addr,
    /// its link-layer address, written as a target link-layer option
    pub target_mac: Option<MacAddr>,
}

/// Writes a whole neighbour advertisement frame (hop limit 255, checksum filled) into
/// `buf` and returns its length ([`NA_FRAME_LEN`], 8 less without an option); 0, with
/// nothing written, when `buf` is too short.
pub fn emit_na(buf: &mut [u8], p: &NaParams) -> usize {
    let icmp_len = 24 + if p.target_mac.is_some() { 8 } else { 0 };
    let total = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp_len;
    if buf.len() < total {
        return 0;
    }
    icmpv6::write_eth_ipv6(
        buf,
        p.eth_dst,
        p.eth_src,
        (p.src, p.dst),
        ND_HOP_LIMIT,
        icmp_len,
    );
    let m = &mut buf[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..total];
    m[..8].copy_from_slice(&[TYPE_NEIGHBOR_ADVERT, 0, 0, 0, p.flags.byte(), 0, 0, 0]);
    m[8..24].copy_from_slice(&p.target.octets());
    if let Some(mac) = p.target_mac {
        m[24] = opt::TARGET_LL;
        m[25] = 1;
        m[26..32].copy_from_slice(&mac.0);
    }
    fill_checksum(m, &p.src, &p.dst);
    total
}

/// What the pipeline saw of a neighbour solicitation it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenNs {
    /// the Ethernet source (checked against any source link-layer option, SPEC 12.2)
    pub eth_src: MacAddr,
    /// the IPv6 source (`::` for duplicate address detection)
    pub src: Ipv6Addr,
    /// the address asked for
    pub target: Ipv6Addr,
}

/// Writes the advertisement answering `ns` (SPEC 12.3, RFC 4861 7.2.4): `ns.target` is
/// at `target_mac`, from the target address itself, R set when the target is the
/// gateway (`router`), O set (the switch knows the truth, as its ARP answers, SPEC 3.4).
/// To a solicitor: unicast with S set, to its Ethernet source. To duplicate address
/// detection (source `::`): to all nodes, S clear. Returns the length or 0 as
/// [`emit_na`].
pub fn emit_na_reply(buf: &mut [u8], ns: &SeenNs, target_mac: MacAddr, router: bool) -> usize {
    let dad = ipv6::is_unspecified(&ns.src);
    let (eth_dst, dst) = if dad {
        (ipv6::multicast_mac(&ipv6::ALL_NODES), ipv6::ALL_NODES)
    } else {
        (ns.eth_src, ns.src)
    };
    emit_na(
        buf,
        &NaParams {
            eth_dst,
            eth_src: target_mac,
            src: ns.target,
            dst,
            flags: NaFlags {
                router,
                solicited: !dad,
                override_: true,
            },
            target: ns.target,
            target_mac: Some(target_mac),
        },
    )
}

/// Length of a neighbour solicitation frame with a source link-layer option.
pub const NS_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 24 + 8;

/// Writes a whole multicast neighbour solicitation for `target` from `(src_mac, src)`
/// (a source link-layer option of `src_mac`, to the target's solicited-node group, hop
/// limit 255): how the switch asks who holds an owner-less VIP (SPEC 5.2, 12.5).
/// Returns [`NS_FRAME_LEN`], or 0 with nothing written when `buf` is too short.
pub fn emit_ns(buf: &mut [u8], src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> usize {
    if buf.len() < NS_FRAME_LEN {
        return 0;
    }
    let dst = ipv6::solicited_node(&target);
    icmpv6::write_eth_ipv6(
        buf,
        ipv6::multicast_mac(&dst),
        src_mac,
        (src, dst),
        ND_HOP_LIMIT,
        32,
    );
    let m = &mut buf[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..NS_FRAME_LEN];
    m[..8].copy_from_slice(&[TYPE_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
    m[8..24].copy_from_slice(&target.octets());
    m[24] = opt::SOURCE_LL;
    m[25] = 1;
    m[26..32].copy_from_slice(&src_mac.0);
    fill_checksum(m, &src, &dst);
    NS_FRAME_LEN
}

/// A router advertisement to write (SPEC 12.3: the gateway is the subnet's router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaParams {
    /// Ethernet destination (33:33:00:00:00:01 for all nodes)
    pub eth_dst: MacAddr,
    /// the router's MAC: Ethernet source and source link-layer option
    pub router_mac: MacAddr,
    /// IPv6 source: must be link-local (RFC 4861 6.1.2 refuses any other), e.g.
    /// [`ipv6::link_local_from_mac`] of `router_mac`
    pub src: Ipv6Addr,
    /// IPv6 destination ([`ipv6::ALL_NODES`], or a soliciting host)
    pub dst: Ipv6Addr,
    /// the hop limit hosts should use
    pub cur_hop_limit: u8,
    /// M flag
    pub managed: bool,
    /// O flag
    pub other: bool,
    /// default-router lifetime, seconds
    pub router_lifetime: u16,
    /// reachable time, ms (0: unspecified)
    pub reachable_time: u32,
    /// retransmission timer, ms (0: unspecified)
    pub retrans_timer: u32,
    /// the subnet's prefix
    pub prefix: Option<PrefixInfo>,
    /// the link MTU
    pub mtu: Option<u32>,
}

/// Length of the frame [`emit_ra`] writes for `p`.
pub fn ra_len(p: &RaParams) -> usize {
    ETHERNET_HEADER_LEN
        + IPV6_HEADER_LEN
        + 16
        + 8
        + if p.prefix.is_some() { 32 } else { 0 }
        + if p.mtu.is_some() { 8 } else { 0 }
}

/// Writes a whole router advertisement frame: the fixed fields, a source link-layer
/// option, then the MTU and prefix information options when given (the prefix masked
/// to its length, RFC 4861 4.6.2). Returns [`ra_len`], or 0 with nothing written when
/// `buf` is too short or the source is not link-local (hosts would drop it, RFC 4861
/// 6.1.2).
pub fn emit_ra(buf: &mut [u8], p: &RaParams) -> usize {
    let total = ra_len(p);
    if buf.len() < total || !ipv6::is_link_local(&p.src) {
        return 0;
    }
    let icmp_len = total - ETHERNET_HEADER_LEN - IPV6_HEADER_LEN;
    icmpv6::write_eth_ipv6(
        buf,
        p.eth_dst,
        p.router_mac,
        (p.src, p.dst),
        ND_HOP_LIMIT,
        icmp_len,
    );
    let m = &mut buf[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..total];
    m[..4].copy_from_slice(&[TYPE_ROUTER_ADVERT, 0, 0, 0]);
    m[4] = p.cur_hop_limit;
    m[5] = (u8::from(p.managed) << 7) | (u8::from(p.other) << 6);
    m[6..8].copy_from_slice(&p.router_lifetime.to_be_bytes());
    m[8..12].copy_from_slice(&p.reachable_time.to_be_bytes());
    m[12..16].copy_from_slice(&p.retrans_timer.to_be_bytes());
    m[16..18].copy_from_slice(&[opt::SOURCE_LL, 1]);
    m[18..24].copy_from_slice(&p.router_mac.0);
    let mut off = 24;
    if let Some(mtu) = p.mtu {
        m[off..off + 4].copy_from_slice(&[opt::MTU, 1, 0, 0]);
        m[off + 4..off + 8].copy_from_slice(&mtu.to_be_bytes());
        off += 8;
    }
    if let Some(pi) = p.prefix {
        let len = pi.prefix_len.min(128);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        let prefix = u128::from(pi.prefix) & mask;
        let o = &mut m[off..off + 32];
        o[0] = opt::PREFIX_INFO;
        o[1] = 4;
        o[2] = len;
        o[3] = (u8::from(pi.on_link) << 7) | (u8::from(pi.autonomous) << 6);
        o[4..8].copy_from_slice(&pi.valid_lifetime.to_be_bytes());
        o[8..12].copy_from_slice(&pi.preferred_lifetime.to_be_bytes());
        o[12..16].copy_from_slice(&[0; 4]);
        o[16..32].copy_from_slice(&prefix.to_be_bytes());
    }
    fill_checksum(m, &p.src, &p.dst);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_ns_is_the_builders_and_parses_back() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let (src, target): (Ipv6Addr, Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "fd00::100".parse().unwrap());
        let mut buf = [0u8; 128];
        assert_eq!(emit_ns(&mut buf[..NS_FRAME_LEN - 1], mac, src, target), 0);
        let n = emit_ns(&mut buf, mac, src, target);
        assert_eq!(&buf[..n], &build::neighbor_solicit(mac, src, target)[..]);
        let ip = Ipv6Packet::new_checked(&buf[ETHERNET_HEADER_LEN..n]).unwrap();
        let meta = Ipv6Meta::of(&ip, &ip.walk().unwrap());
        match parse(&meta, ip.payload()).unwrap() {
            NdMessage::NeighborSolicit { target: t, options } => {
                assert_eq!((t, options.source_lladdr()), (target, Some(mac)));
            }
            other => panic!("{other:?}"),
        }
    }
    use crate::build;
    use crate::ipv6::Ipv6Packet;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, Icmpv6Packet as SIcmp, Icmpv6Repr, NdiscNeighborFlags, NdiscRepr,
        NdiscRouterFlags, RawHardwareAddress,
    };

    const GUEST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 5);
    const GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);
    const GMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 5]);
    const GWMAC: MacAddr = MacAddr([2, 0xfe, 0, 0, 0, 1]);

    fn icmp_of(frame: &[u8]) -> (Ipv6Meta, Vec<u8>) {
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let chain = ip.walk().unwrap();
        let m = Ipv6Meta::of(&ip, &chain);
        (m, ip.packet()[chain.offset..].to_vec())
    }

    fn smol(meta: &Ipv6Meta, m: &[u8]) -> NdiscRepr<'static> {
        let s = SIcmp::new_checked(m).unwrap();
        match Icmpv6Repr::parse(&meta.src, &meta.dst, &s, &ChecksumCapabilities::default()) {
            Ok(Icmpv6Repr::Ndisc(n)) => match n {
                // copy out what the tests compare (no borrowed parts in these kinds)
                NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr,
                } => NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr,
                },
                NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr,
                } => NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr,
                },
                NdiscRepr::RouterAdvert {
                    hop_limit,
                    flags,
                    router_lifetime,
                    reachable_time,
                    retrans_time,
                    lladdr,
                    mtu,
                    prefix_info,
                } => NdiscRepr::RouterAdvert {
                    hop_limit,
                    flags,
                    router_lifetime,
                    reachable_time,
                    retrans_time,
                    lladdr,
                    mtu,
                    prefix_info,
                },
                NdiscRepr::RouterSolicit { lladdr } => NdiscRepr::RouterSolicit { lladdr },
                other => panic!("{other:?}"),
            },
            other => panic!("smoltcp: {other:?}"),
        }
    }

    fn raw(m: MacAddr) -> RawHardwareAddress {
        RawHardwareAddress::from(EthernetAddress(m.0))
    }

    /// SPEC 12.3: a guest's NS for the gateway parses, and the reply is a solicited NA
    /// with R and O set, carrying the gateway MAC, that smoltcp reads back.
    #[test]
    fn ns_answered_with_a_solicited_na() {
        let f = build::neighbor_solicit(GMAC, GUEST, GW);
        let (meta, m) = icmp_of(&f);
        assert_eq!(meta.dst, ipv6::solicited_node(&GW));
        assert_eq!(&f[0..6], &ipv6::solicited_node_mac(&GW).0);
        let ns = parse(&meta, &m).unwrap();
        assert_eq!(ns.kind(), NdKind::NeighborSolicit);
        let NdMessage::NeighborSolicit { target, options } = ns else {
            panic!()
        };
        assert_eq!(target, GW);
        assert_eq!(options.source_lladdr(), Some(GMAC));
        assert_eq!(ns.claimed_lladdrs(), [Some(GMAC), None]);
        assert_eq!(
            smol(&meta, &m),
            NdiscRepr::NeighborSolicit {
                target_addr: GW,
                lladdr: Some(raw(GMAC))
            }
        );
        let mut buf = [0u8; 128];
        let seen = SeenNs {
            eth_src: GMAC,
            src: GUEST,
            target,
        };
        let n = emit_na_reply(&mut buf, &seen, GWMAC, true);
        assert_eq!(n, NA_FRAME_LEN);
        assert_eq!((&buf[0..6], &buf[6..12]), (&GMAC.0[..], &GWMAC.0[..]));
        let (meta, m) = icmp_of(&buf[..n]);
        assert_eq!((meta.src, meta.dst, meta.hop_limit), (GW, GUEST, 255));
        let na = parse(&meta, &m).unwrap();
        assert_eq!(
            na,
            NdMessage::NeighborAdvert {
                flags: NaFlags {
                    router: true,
                    solicited: true,
                    override_: true
                },
                target: GW,
                options: NdOptions::new_checked(&m[24..]).unwrap(),
            }
        );
        assert_eq!(na.claimed_lladdrs(), [None, Some(GWMAC)]);
        assert_eq!(
            smol(&meta, &m),
            NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::ROUTER
                    | NdiscNeighborFlags::SOLICITED
                    | NdiscNeighborFlags::OVERRIDE,
                target_addr: GW,
                lladdr: Some(raw(GWMAC))
            }
        );
        // too small a buffer: nothing
        let mut small = [0u8; NA_FRAME_LEN - 1];
        assert_eq!(emit_na_reply(&mut small, &seen, GWMAC, true), 0);
        assert_eq!(small, [0u8; NA_FRAME_LEN - 1]);
    }

    /// SPEC 12.3: duplicate address detection from `::` is answered to all nodes with S
    /// clear (RFC 4861 7.2.4).
    #[test]
    fn dad_is_answered_to_all_nodes() {
        let f = build::dad_probe(GMAC, GUEST);
        let (meta, m) = icmp_of(&f);
        let NdMessage::NeighborSolicit { target, options } = parse(&meta, &m).unwrap() else {
            panic!()
        };
        assert_eq!((target, options.source_lladdr()), (GUEST, None));
        let mut buf = [0u8; 128];
        let seen = SeenNs {
            eth_src: GMAC,
            src: meta.src,
            target,
        };
        let other = MacAddr([2, 0, 0, 0, 0, 7]);
        let n = emit_na_reply(&mut buf, &seen, other, false);
        assert_eq!(&buf[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let (meta, m) = icmp_of(&buf[..n]);
        assert_eq!(meta.dst, ipv6::ALL_NODES);
        let NdMessage::NeighborAdvert { flags, .. } = parse(&meta, &m).unwrap() else {
            panic!()
        };
        assert_eq!(
            flags,
            NaFlags {
                router: false,
                solicited: false,
                override_: true
            }
        );
    }

    /// SPEC 12.4: keepalived's unsolicited NA (to all nodes, O set) parses with its
    /// target and link-layer address.
    #[test]
    fn unsolicited_na_claims() {
        let f = build::unsolicited_na(GMAC, GUEST);
        let (meta, m) = icmp_of(&f);
        let msg = parse(&meta, &m).unwrap();
        let NdMessage::NeighborAdvert { flags, target, .. } = msg else {
            panic!()
        };
        assert!(flags.override_ && !flags.solicited && !flags.router);
        assert_eq!(target, GUEST);
        assert_eq!(msg.claimed_lladdrs(), [None, Some(GMAC)]);
    }

    fn ra_params() -> RaParams {
        RaParams {
            eth_dst: ipv6::multicast_mac(&ipv6::ALL_NODES),
            router_mac: GWMAC,
            src: ipv6::link_local_from_mac(GWMAC),
            dst: ipv6::ALL_NODES,
            cur_hop_limit: 64,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            prefix: Some(PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
                // host bits set: the emitter masks them
                prefix: "fd00:0:0:1::77".parse().unwrap(),
            }),
            mtu: Some(1450),
        }
    }

    /// SPEC 12.3: the gateway's router advertisement, read back by this crate and by
    /// smoltcp.
    #[test]
    fn router_advertisement_round_trips() {
        let p = ra_params();
        let mut buf = [0u8; 256];
        let n = emit_ra(&mut buf, &p);
        assert_eq!(n, ra_len(&p));
        assert_eq!(n, 14 + 40 + 16 + 8 + 8 + 32);
        let (meta, m) = icmp_of(&buf[..n]);
        let msg = parse(&meta, &m).unwrap();
        let NdMessage::RouterAdvert(ra) = msg else {
            panic!()
        };
        assert_eq!(
            (
                ra.cur_hop_limit,
                ra.managed,
                ra.other,
                ra.router_lifetime,
                ra.reachable_time
            ),
            (64, false, true, 1800, 0)
        );
        assert_eq!(ra.options.source_lladdr(), Some(GWMAC));
        assert_eq!(ra.options.mtu(), Some(1450));
        let prefixes: Vec<_> = ra
            .options
            .iter()
            .filter_map(|o| match o {
                NdOption::PrefixInfo(pi) => Some(pi),
                _ => None,
            })
            .collect();
        assert_eq!(prefixes.len(), 1);
        assert_eq!(
            prefixes[0].prefix,
            "fd00:0:0:1::".parse::<Ipv6Addr>().unwrap()
        );
        assert!(prefixes[0].on_link && prefixes[0].autonomous);
        assert_eq!(prefixes[0].prefix_len, 64);
        match smol(&meta, &m) {
            NdiscRepr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                lladdr,
                mtu,
                prefix_info,
                ..
            } => {
                assert_eq!(hop_limit, 64);
                assert_eq!(flags, NdiscRouterFlags::OTHER);
                assert_eq!(router_lifetime.secs(), 1800);
                assert_eq!(lladdr, Some(raw(GWMAC)));
                assert_eq!(mtu, Some(1450));
                let pi = prefix_info.unwrap();
                assert_eq!(pi.prefix_len, 64);
                assert_eq!(pi.prefix, "fd00:0:0:1::".parse::<Ipv6Addr>().unwrap());
                assert_eq!(pi.valid_lifetime.secs(), 86400);
                assert_eq!(pi.preferred_lifetime.secs(), 14400);
            }
            other => panic!("{other:?}"),
        }
        let mut small = vec![0u8; n - 1];
        assert_eq!(emit_ra(&mut small, &p), 0);
        assert_eq!(small, vec![0u8; n - 1]);
        // cut at every length, checksum fixed up: only the option boundaries parse
        for len in 0..m.len() {
            let mut cut = m[..len].to_vec();
            if len >= 4 {
                fill_checksum(&mut cut, &meta.src, &meta.dst);
            }
            let want = match len {
                0..16 => Err(Icmpv6Error::Truncated),
                16 | 24 | 32 => Ok(NdKind::RouterAdvert),
                _ => Err(Icmpv6Error::OptionOverrun),
            };
            assert_eq!(parse(&meta, &cut).map(|x| x.kind()), want, "len {len}");
        }
        // from a global address: refused (RFC 4861 6.1.2)
        assert_eq!(emit_ra(&mut buf, &RaParams { src: GW, ..p }), 0);
        // without prefix and MTU: only the source link-layer option
        let bare = RaParams {
            prefix: None,
            mtu: None,
            ..p
        };
        let n = emit_ra(&mut buf, &bare);
        assert_eq!(n, 14 + 40 + 24);
        let (meta, m) = icmp_of(&buf[..n]);
        assert_eq!(parse(&meta, &m).unwrap().options().iter().count(), 1);
    }

    /// A valid message built from parts, for the refusal tests below.
    fn msg(ty: u8, fixed: &[u8], options: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, 0, 0, 0];
        m.extend_from_slice(fixed);
        m.extend_from_slice(options);
        m
    }

    fn signed(meta: &Ipv6Meta, mut m: Vec<u8>) -> Vec<u8> {
        fill_checksum(&mut m, &meta.src, &meta.dst);
        m
    }

    fn ns_fixed(target: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0; 4];
        f.extend_from_slice(&target.octets());
        f
    }

    const SLLA: [u8; 8] = [1, 1, 2, 0, 0, 0, 0, 5];

    fn guest_meta(dst: Ipv6Addr) -> Ipv6Meta {
        Ipv6Meta {
            src: GUEST,
            dst,
            hop_limit: 255,
            fragmented: false,
        }
    }

    /// SPEC 12.2, RFC 4861 7.1.1: every malformation is refused with its own error.
    #[test]
    fn malformed_nd_is_refused() {
        let meta = guest_meta(ipv6::solicited_node(&GW));
        let good = signed(&meta, msg(135, &ns_fixed(GW), &SLLA));
        assert!(parse(&meta, &good).is_ok());
        // truncated at every length
        for n in 0..good.len() {
            assert!(parse(&meta, &good[..n]).is_err(), "len {n}");
        }
        for n in 0..24 {
            assert_eq!(parse(&meta, &good[..n]), Err(Icmpv6Error::Truncated));
        }
        // routed, fragmented, coded, bad checksum
        let mut m = meta;
        m.hop_limit = 254;
        assert_eq!(parse(&m, &good), Err(Icmpv6Error::BadHopLimit));
        let mut m = meta;
        m.fragmented = true;
        assert_eq!(parse(&m, &good), Err(Icmpv6Error::FragmentedNd));
        let mut b = good.clone();
        b[1] = 1;
        assert_eq!(parse(&meta, &signed(&meta, b)), Err(Icmpv6Error::BadCode));
        let mut b = good.clone();
        b[30] ^= 1;
        assert_eq!(parse(&meta, &b), Err(Icmpv6Error::BadChecksum));
        // options: length 0, overrun, wrong length for the type, duplicates
        // what parses: (option count, source link-layer address)
        let bad = |opts: &[u8]| {
            let m = signed(&meta, msg(135, &ns_fixed(GW), opts));
            parse(&meta, &m).map(|n| (n.options().iter().count(), n.options().source_lladdr()))
        };
        assert_eq!(
            bad(&[1, 0, 0, 0, 0, 0, 0, 0]),
            Err(Icmpv6Error::BadOptionLen)
        );
        assert_eq!(
            bad(&[1, 2, 0, 0, 0, 0, 0, 0]),
            Err(Icmpv6Error::OptionOverrun)
        );
        assert_eq!(bad(&[1]), Err(Icmpv6Error::OptionOverrun));
        let mut two = SLLA.to_vec();
        two.extend_from_slice(&[0; 8]);
        two[1] = 2;
        assert_eq!(bad(&two), Err(Icmpv6Error::BadOption));
        let mut dup = SLLA.to_vec();
        dup.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 6]);
        assert_eq!(bad(&dup), Err(Icmpv6Error::DuplicateOption));
        assert_eq!(
            bad(&[5, 2, 0, 0, 0, 0, 5, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Icmpv6Error::BadOption)
        );
        let mut pi = vec![3, 4, 129];
        pi.resize(32, 0);
        assert_eq!(bad(&pi), Err(Icmpv6Error::BadOption));
        let mut rdnss = vec![25, 2];
        rdnss.resize(16, 0);
        assert_eq!(bad(&rdnss), Err(Icmpv6Error::BadOption));
        // unknown options are kept and skipped
        let mut unk = vec![200, 1, 9, 9, 9, 9, 9, 9];
        unk.extend_from_slice(&SLLA);
        assert_eq!(bad(&unk), Ok((2, Some(GMAC))));
        // a multicast target
        assert_eq!(
            parse(
                &meta,
                &signed(&meta, msg(135, &ns_fixed(ipv6::ALL_NODES), &SLLA))
            ),
            Err(Icmpv6Error::BadTarget)
        );
        // from a multicast source (the fuzzer's find: the NA answering it would go
        // to a multicast address with S set)
        let mc = Ipv6Meta {
            src: "fffd:1b:a000:1::".parse().unwrap(),
            ..meta
        };
        assert_eq!(
            parse(&mc, &signed(&mc, msg(135, &ns_fixed(GW), &SLLA))),
            Err(Icmpv6Error::BadSource)
        );
        // not ND at all
        let echo = signed(&meta, msg(128, &[0; 4], &[]));
        assert_eq!(parse(&meta, &echo), Err(Icmpv6Error::NotNd));
    }

    /// RFC 4861 7.1.1 / 6.1.1 / 7.1.2 / 6.1.2 / 8.1: the rules on sources and
    /// destinations.
    #[test]
    fn source_and_destination_rules() {
        // DAD (from ::) with a link-layer option, or not to a solicited-node group
        let dad = Ipv6Meta {
            src: Ipv6Addr::UNSPECIFIED,
            ..guest_meta(ipv6::solicited_node(&GUEST))
        };
        let ok = signed(&dad, msg(135, &ns_fixed(GUEST), &[]));
        assert!(parse(&dad, &ok).is_ok());
        assert_eq!(
            parse(&dad, &signed(&dad, msg(135, &ns_fixed(GUEST), &SLLA))),
            Err(Icmpv6Error::BadUnspecifiedSource)
        );
        let to_all = Ipv6Meta {
            dst: ipv6::ALL_NODES,
            ..dad
        };
        assert_eq!(
            parse(&to_all, &signed(&to_all, msg(135, &ns_fixed(GUEST), &[]))),
            Err(Icmpv6Error::BadUnspecifiedSource)
        );
        // RS from :: with a link-layer option
        let rs = Ipv6Meta {
            dst: ipv6::ALL_ROUTERS,
            ..dad
        };
        assert!(parse(&rs, &signed(&rs, msg(133, &[0; 4], &[]))).is_ok());
        assert_eq!(
            parse(&rs, &signed(&rs, msg(133, &[0; 4], &SLLA))),
            Err(Icmpv6Error::BadUnspecifiedSource)
        );
        // a solicited NA to all nodes
        let na = guest_meta(ipv6::ALL_NODES);
        let mut fixed = ns_fixed(GUEST);
        fixed[0] = 0x40;
        assert_eq!(
            parse(&na, &signed(&na, msg(136, &fixed, &[]))),
            Err(Icmpv6Error::BadSolicitedFlag)
        );
        fixed[0] = 0x20;
        assert!(parse(&na, &signed(&na, msg(136, &fixed, &[]))).is_ok());
        // RA and redirect from a global address (SPEC 12.3 drops them from ports anyway)
        let ra = guest_meta(ipv6::ALL_NODES);
        assert_eq!(
            parse(
                &ra,
                &signed(&ra, msg(134, &[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]))
            ),
            Err(Icmpv6Error::BadSource)
        );
        let ll = Ipv6Meta {
            src: "fe80::5".parse().unwrap(),
            ..ra
        };
        let ra_bytes = signed(
            &ll,
            msg(134, &[64, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]),
        );
        let NdMessage::RouterAdvert(r) = parse(&ll, &ra_bytes).unwrap() else {
            panic!()
        };
        assert!(r.managed && r.other && r.router_lifetime == 0);
        let mut redirect = ns_fixed(GW);
        redirect.extend_from_slice(&GUEST.octets());
        assert_eq!(
            parse(&ra, &signed(&ra, msg(137, &redirect, &[]))),
            Err(Icmpv6Error::BadSource)
        );
        let rd = signed(&ll, msg(137, &redirect, &[]));
        assert_eq!(parse(&ll, &rd).unwrap().kind(), NdKind::Redirect);
        let mut mc = ns_fixed(GW);
        mc.extend_from_slice(&ipv6::ALL_NODES.octets());
        assert_eq!(
            parse(&ll, &signed(&ll, msg(137, &mc, &[]))),
            Err(Icmpv6Error::BadTarget)
        );
    }

    #[test]
    fn option_iterator_reads_every_kind() {
        let mut o = SLLA.to_vec();
        o.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 9]);
        o.extend_from_slice(&[5, 1, 0, 0, 0, 0, 5, 0xdc]);
        let mut rd = vec![25, 5, 0, 0, 0, 0, 0x0e, 0x10];
        rd.extend_from_slice(&GW.octets());
        rd.extend_from_slice(&GUEST.octets());
        o.extend_from_slice(&rd);
        let mut rh = vec![4, 2, 0, 0, 0, 0, 0, 0];
        rh.extend_from_slice(&[0xaa; 8]);
        o.extend_from_slice(&rh);
        let opts = NdOptions::new_checked(&o).unwrap();
        let v: Vec<_> = opts.iter().collect();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0], NdOption::SourceLinkLayer(GMAC));
        assert_eq!(v[1], NdOption::TargetLinkLayer(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(v[2], NdOption::Mtu(1500));
        let NdOption::Rdnss(r) = v[3] else { panic!() };
        assert_eq!(r.lifetime, 3600);
        assert_eq!(r.servers().collect::<Vec<_>>(), vec![GW, GUEST]);
        assert_eq!(v[4], NdOption::RedirectedHeader(&[0xaa; 8]));
        assert_eq!(NdOptions::empty().iter().count(), 0);
    }

    proptest! {
        /// Nothing panics, whatever the message; what parses is valid ND with a valid
        /// checksum and options that iterate to the end.
        #[test]
        fn arbitrary_nd_never_panics(body in proptest::collection::vec(any::<u8>(), 0..120),
                                     ty in 133u8..=137,
                                     src_ll in any::<bool>()) {
            let src = if src_ll { "fe80::1".parse().unwrap() } else { GUEST };
            let meta = Ipv6Meta { src, ..guest_meta(GW) };
            let mut m = vec![ty, 0, 0, 0];
            m.extend_from_slice(&body);
            fill_checksum(&mut m, &meta.src, &meta.dst);
            if let Ok(msg) = parse(&meta, &m) {
                prop_assert_eq!(msg.kind(), NdKind::from_type(ty).unwrap());
                let o = msg.options();
                let total: usize = o.iter().count();
                prop_assert!(total <= o.bytes().len() / 8);
                let _ = msg.claimed_lladdrs();
            }
        }

        /// Arbitrary option areas: checked ones iterate over exactly their bytes.
        #[test]
        fn arbitrary_options(o in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(opts) = NdOptions::new_checked(&o) {
                let mut n = 0;
                let mut it = opts.iter();
                while it.next().is_some() { n += 1; }
                prop_assert!(it.rest.is_empty(), "iteration consumed every option");
                prop_assert!(n <= o.len() / 8);
            }
        }

        /// Emit → parse round trip for any NA and RA fields.
        #[test]
        fn emitted_nd_parses_back(r in any::<bool>(), s in any::<bool>(), o in any::<bool>(),
                                  t in any::<[u8; 16]>(), mac in any::<[u8; 6]>(),
                                  lifetime in any::<u16>(), plen in 0u8..=128, mtu in any::<Option<u32>>()) {
            let target = Ipv6Addr::from(t);
            prop_assume!(!ipv6::is_multicast(&target));
            let mut buf = [0u8; 200];
            let flags = NaFlags { router: r, solicited: s, override_: o };
            let n = emit_na(&mut buf, &NaParams {
                eth_dst: GMAC, eth_src: MacAddr(mac), src: target, dst: GUEST,
                flags, target, target_mac: Some(MacAddr(mac)),
            });
            let (meta, m) = icmp_of(&buf[..n]);
            let got = parse(&meta, &m).unwrap();
            prop_assert_eq!(got.kind(), NdKind::NeighborAdvert);
            prop_assert_eq!(got.claimed_lladdrs(), [None, Some(MacAddr(mac))]);
            let NdMessage::NeighborAdvert { flags: f2, target: t2, .. } = got else { unreachable!() };
            prop_assert_eq!((f2, t2), (flags, target));
            let mut p = ra_params();
            p.router_lifetime = lifetime;
            p.mtu = mtu;
            p.prefix = p.prefix.map(|x| PrefixInfo { prefix_len: plen, prefix: target, ..x });
            let n = emit_ra(&mut buf, &p);
            let (meta, m) = icmp_of(&buf[..n]);
            let NdMessage::RouterAdvert(ra) = parse(&meta, &m).unwrap() else { unreachable!() };
            prop_assert_eq!(ra.router_lifetime, lifetime);
            prop_assert_eq!(ra.options.mtu(), mtu);
            let pi = ra.options.iter().find_map(|o| match o { NdOption::PrefixInfo(p) => Some(p), _ => None }).unwrap();
            prop_assert_eq!(pi.prefix_len, plen);
            let host_bits = if plen == 128 { 0 } else { u128::MAX >> plen };
            prop_assert_eq!(u128::from(pi.prefix) & host_bits, 0);
        }
    }
}
