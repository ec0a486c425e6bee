//! Drop reasons: every drop has one, and each has a counter (SPEC 2.4).

macro_rules! reasons {
    ($($(#[$m:meta])* $v:ident = $name:literal,)*) => {
        /// Why a frame was dropped. `name()` is the counter's stable name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$m])* $v,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();
            /// The counter name (snake case, stable).
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
            /// Index into counter arrays.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

reasons! {
    /// SPEC 2.1: shorter than the header it claims.
    Truncated = "truncated",
    /// SPEC 2.1: IP version is not 4.
    BadIpVersion = "bad_ip_version",
    /// SPEC 2.1: IPv4 IHL out of range.
    BadIpHeaderLen = "bad_ip_header_len",
    /// SPEC 2.1: IPv4 total length out of range.
    BadIpTotalLen = "bad_ip_total_len",
    /// L3 path: IPv4 header checksum wrong.
    BadIpChecksum = "bad_ip_checksum",
    /// SPEC 2.1: ARP that is not Ethernet/IPv4.
    MalformedArp = "malformed_arp",
    /// ARP opcode other than request/reply.
    ArpUnsupportedOp = "arp_unsupported_op",
    /// SPEC 2.1: 802.1Q/802.1ad tag on an access port.
    VlanTagged = "vlan_tagged",
    /// SPEC 9.1: IPv6 from a port of a subnet without an IPv6 prefix (SPEC 12.1), or
    /// on the uplink (14.1).
    Ipv6 = "ipv6",
    /// Neither IPv4 nor ARP.
    UnsupportedEthertype = "unsupported_ethertype",
    /// Ingress on a port the configuration no longer has.
    UnknownPort = "unknown_port",
    /// SPEC 2.2: Ethernet source is not the port's MAC or an allowed extra MAC.
    SpoofedSrcMac = "spoofed_src_mac",
    /// SPEC 2.3: IPv4 source outside the port's allowed set.
    SpoofedSrcIp = "spoofed_src_ip",
    /// SPEC 2.3: ARP sender MAC differs from the Ethernet source.
    ArpSenderMacMismatch = "arp_sender_mac_mismatch",
    /// SPEC 2.3: ARP sender IP outside the port's allowed set.
    SpoofedArpSenderIp = "spoofed_arp_sender_ip",
    /// SPEC 2.3a: ARP claims another port's fixed IP or a gateway IP.
    ArpClaimsForeignIp = "arp_claims_foreign_ip",
    /// SPEC 2.3a, 3.1: ARP claims a VIP the port is not bound to.
    VipClaimNotBound = "vip_claim_not_bound",
    /// The port sent more ARP than `switch.arp_per_sec`.
    ArpRateLimited = "arp_rate_limited",
    /// The port's floods (broadcast/multicast IPv4, flooded ARP) would make more copies
    /// than `switch.flood_per_sec` allows (the budget counts copies, one per receiving
    /// port).
    FloodRateLimited = "flood_rate_limited",
    /// SPEC 2.6: a broadcast or multicast Ethernet frame whose IPv4 destination is not
    /// one the whole subnet listens to (the limited broadcast, a multicast group, the
    /// subnet's broadcast address): it would bypass the destination check (6.1).
    FloodToUnicastIp = "flood_to_unicast_ip",
    /// SPEC 3.4: ARP request for an address outside the port's subnet.
    ArpTargetOutsideSubnet = "arp_target_outside_subnet",
    /// SPEC 4.2: unicast to a MAC that is not a port of the subnet.
    UnknownUnicast = "unknown_unicast",
    /// Unicast to the sender's own MAC.
    Hairpin = "hairpin",
    /// SPEC 5.5, 12.5: TTL (IPv6: hop limit) 0 or 1 on a routed packet.
    TtlExceeded = "ttl_exceeded",
    /// SPEC 5.7: no route.
    NoRoute = "no_route",
    /// SPEC 5.2: a local address no port or VIP holds.
    NoSuchHost = "no_such_host",
    /// SPEC 5.2: a VIP with no owner yet.
    VipNoOwner = "vip_no_owner",
    /// Non-echo traffic to a gateway address.
    ToGateway = "to_gateway",
    /// SPEC 6.1: destination not in the egress port's allowed set.
    DstCheck = "dst_check",
    /// SPEC 7.2: routed to the uplink from an address that has no EIP.
    NoEip = "no_eip",
    /// SPEC 7.2: the outside next hop's MAC is not known yet; the switch ARPs for it.
    NextHopUnresolved = "next_hop_unresolved",
    /// SPEC 7.1: on the uplink, IPv4 not sent to the uplink's MAC or not to an EIP.
    UplinkNotForEip = "uplink_not_for_eip",
    /// SPEC 7.3: on the uplink, an IPv4 source inside a VPC CIDR, an EIP, or not a
    /// global unicast address (0/8, 127/8, 169.254/16, 224/4, 240/4).
    UplinkBogusSrc = "uplink_bogus_src",
    /// SPEC 7.4: routed to the uplink toward a destination that is not a global
    /// unicast address (0/8, 127/8, 169.254/16, 224/4, 240/4) or is inside a VPC CIDR.
    UplinkBogusDst = "uplink_bogus_dst",
    /// SPEC 7.1: ARP on the uplink the switch consumed (next-hop learning) or that is
    /// not a request for an EIP.
    UplinkArp = "uplink_arp",
    /// SPEC 10.3: a tunnel packet from an address that is no other host's endpoint.
    TunnelUnknownHost = "tunnel_unknown_host",
    /// SPEC 10.3: a tunnel packet whose VNI is no VPC's.
    TunnelUnknownVni = "tunnel_unknown_vni",
    /// SPEC 10.3: a frame from a tunnel whose Ethernet source is none the sending host
    /// could have produced: not a MAC of a port of the VNI's VPC living on that host,
    /// not the gateway MAC (a frame it routed, IPv4 or IPv6), not the uplink's MAC (with
    /// the uplink on this host).
    TunnelSource = "tunnel_source",
    /// SPEC 10.3: a routed frame from a tunnel whose IPv4 (IPv6) source the sending host's
    /// ports could not have sent into the VPC (nor, from the uplink's host, an outside
    /// address to an EIP's target); outbound traffic from an EIP whose target is no
    /// address of a port on the sending host.
    TunnelSrcIp = "tunnel_src_ip",
    /// SPEC 10.3: a routed frame from a tunnel to a port of another VPC than the VNI's,
    /// or to a port with `src_dst_check` off whose destination address neither is the
    /// port's nor routes to it.
    TunnelDst = "tunnel_dst",
    /// SPEC 10.2, 10.3: a frame from a tunnel whose output is a port on another host:
    /// never sent into a tunnel again (no transit, no reflection).
    TunnelTransit = "tunnel_transit",
    /// SPEC 10.2: a frame from a tunnel, from a port's MAC, sent to the gateway MAC:
    /// the port's own host routes what it sends.
    TunnelToGateway = "tunnel_to_gateway",
    /// SPEC 11.3: to a port on a host the control plane says is down (its lease
    /// expired: the host died, or lost the store for longer than its TTL).
    HostDown = "host_down",
    /// Runtime: the destination port has no queue on this worker (being added/removed).
    PortDown = "port_down",
    /// Runtime: the destination's transmit queue was full.
    TxFull = "tx_full",
    /// Runtime: no free buffer for a flood copy, or (AF_XDP) no large buffer to put a
    /// multi-buffer frame together in.
    NoBuffer = "no_buffer",
    /// Runtime: frames the kernel dropped before the switch read them, its socket
    /// buffer or ring full (the guest sent faster than the worker polled; AF_PACKET).
    RxOverrun = "rx_overrun",
    /// Runtime: the backend reported an error on transmit.
    TxError = "tx_error",
    /// SPEC 2.5: a device's offload header asks for segmentation other than TCPv4
    /// (UDP, IPv6), which the switch does not take.
    GsoUnsupported = "gso_unsupported",
    /// Runtime: offload work left on a frame that the switch could not complete for a
    /// port without offload (the frame no longer fits its checked form; not expected).
    BadOffload = "bad_offload",
    /// SPEC 2.5: a device's offload header with unknown flags or a header length past
    /// the frame.
    BadOffloadHeader = "bad_offload_header",
    /// SPEC 2.5: "checksum needed" not at the L4 checksum field of an unfragmented
    /// IPv4 TCP or UDP packet (a guest choosing where the switch would write).
    BadOffloadCsum = "bad_offload_csum",
    /// SPEC 2.5: a TCPv4 super-frame whose segment size or layout does not match it.
    BadOffloadGso = "bad_offload_gso",
    /// SPEC 2.5: a super-frame that would make more segments than the switch cuts one
    /// frame into (`vpcswitch_wire::offload::MAX_GSO_SEGMENTS`).
    GsoTooManySegments = "gso_too_many_segments",
    /// Runtime: a device refused a received frame as longer than the port takes (an
    /// AF_XDP frame in more than `vpcswitch_xdp::MAX_FRAGS` descriptors, 32 KiB).
    /// Never truncated.
    FrameTooLong = "frame_too_long",
    /// Runtime: a device handed back a descriptor that is not a buffer the switch lent
    /// it, or that claims more bytes than the buffer has (never trusted).
    RxMalformed = "rx_malformed",
    /// Egress: the frame is longer than the destination port's device takes (an
    /// AF_XDP or AF_PACKET port: its interface's MTU + 14). The switch neither
    /// fragments nor answers ICMP "fragmentation needed" on one host (docs/config.md,
    /// "MTU").
    MtuExceeded = "mtu_exceeded",
    /// SPEC 13.1: a DHCP client message (UDP 68 to 67) from a port of a subnet with
    /// DHCP on, consumed by the switch's DHCP server: answered in its place (OFFER, ACK,
    /// NAK), or not (RELEASE, DECLINE, a REQUEST for another server, a malformed one,
    /// over the port's answer budget). Never delivered to another guest.
    DhcpClient = "dhcp_client",
    /// SPEC 13.1: UDP from source port 67 (a DHCP server's or relay's) from a port of a
    /// subnet with DHCP on: only the switch serves DHCP there.
    RogueDhcpServer = "rogue_dhcp_server",
    /// SPEC 2.1, 12: an IPv6 packet that does not parse (fixed header, payload length,
    /// extension-header chain, a multicast source, a truncated upper-layer header).
    MalformedIpv6 = "malformed_ipv6",
    /// SPEC 12.2: a neighbour discovery message that fails RFC 4861's validity checks
    /// (hop limit 255, code, checksum, length, options), or arrives in a fragment.
    MalformedNd = "malformed_nd",
    /// SPEC 12.2: IPv6 source outside the port's allowed set (its fixed IPv6
    /// addresses, bound IPv6 VIPs, fe80::/64), or `::` other than for duplicate
    /// address detection (a neighbour solicitation to a solicited-node group).
    SpoofedSrcIp6 = "spoofed_src_ip6",
    /// SPEC 12.2: a neighbour discovery message whose source or target link-layer
    /// address option differs from the Ethernet source.
    NdLladdrMismatch = "nd_lladdr_mismatch",
    /// SPEC 12.2, 2.3a: a neighbour solicitation or advertisement that claims another
    /// port's fixed IPv6 address or a gateway address (`::1` of a subnet, or the
    /// gateway's link-local address).
    NdClaimsForeignIp = "nd_claims_foreign_ip",
    /// SPEC 12.2, 2.3a, 12.4: a neighbour advertisement or solicitation that claims an
    /// IPv6 VIP the port is not bound to.
    Vip6ClaimNotBound = "vip6_claim_not_bound",
    /// SPEC 12.2: a neighbour advertisement whose target (the address it claims) is
    /// not in the port's allowed set.
    SpoofedNdTarget = "spoofed_nd_target",
    /// SPEC 12.3: a neighbour solicitation for an address outside the port's subnet
    /// (neither in its /64 nor link-local).
    NdTargetOutsideSubnet = "nd_target_outside_subnet",
    /// SPEC 12.3: a router advertisement from a port: the gateway is the subnet's only
    /// router.
    RaFromPort = "ra_from_port",
    /// SPEC 12.3: an ICMPv6 redirect from a port.
    RedirectFromPort = "redirect_from_port",
    /// SPEC 12.3: a router solicitation, answered by the switch with a router
    /// advertisement in its place when the answer budget allows.
    RouterSolicit = "router_solicit",
}

impl From<vpcswitch_wire::offload::OffloadError> for DropReason {
    fn from(e: vpcswitch_wire::offload::OffloadError) -> DropReason {
        use vpcswitch_wire::offload::OffloadError as E;
        match e {
            E::BadHeader => DropReason::BadOffloadHeader,
            E::BadChecksumRequest => DropReason::BadOffloadCsum,
            E::GsoUnsupported => DropReason::GsoUnsupported,
            E::BadSegmentation => DropReason::BadOffloadGso,
            E::TooManySegments => DropReason::GsoTooManySegments,
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_are_unique_and_indexed() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
