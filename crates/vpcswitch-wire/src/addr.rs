//! Address types: MAC addresses and IPv4 CIDRs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds a MAC from the first six bytes of `b` (callers pass a checked slice).
    #[inline]
    pub fn from_slice(b: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }
    /// True for the group bit (broadcast included).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    /// True for ff:ff:ff:ff:ff:ff.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
    /// True when neither multicast nor all-zero: a MAC a port may own.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != MacAddr::ZERO
    }
    /// The MAC packed into a u64 in native byte order: a table key that costs two loads
    /// (byte order is irrelevant for exact-match tables). Not for display or ordering.
    #[inline(always)]
    pub fn key(&self) -> u64 {
        let b = self.0;
        u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            | (u64::from(u16::from_ne_bytes([b[4], b[5]])) << 32)
    }
    /// The inverse of [`MacAddr::key`] (the top 16 bits are ignored).
    #[inline(always)]
    pub fn from_key(k: u64) -> MacAddr {
        let a = (k as u32).to_ne_bytes();
        let b = ((k >> 32) as u16).to_ne_bytes();
        MacAddr([a[0], a[1], a[2], a[3], b[0], b[1]])
    }
}

/// A MAC address held as its [`MacAddr::key`]: one 64-bit scalar. The classifier hands
/// the pipeline its MACs in this form because a 6-byte array kept across a stage is
/// written and reread in pieces of different widths, which defeats the CPU's store
/// forwarding (measured: the stall was the largest single cost of the L2 path). Compare
/// it with [`MacAddr::key`] of the other side; [`MacKey::mac`] gives the bytes back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacKey(pub u64);

impl MacKey {
    /// The key of the first six bytes of `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; 6]) -> MacKey {
        MacKey(MacAddr(*b).key())
    }
    /// The address.
    #[inline(always)]
    pub fn mac(self) -> MacAddr {
        MacAddr::from_key(self.0)
    }
    /// True for the group bit (broadcast included).
    #[inline(always)]
    pub fn is_multicast(self) -> bool {
        self.mac().is_multicast()
    }
}

impl From<MacAddr> for MacKey {
    #[inline(always)]
    fn from(m: MacAddr) -> MacKey {
        MacKey(m.key())
    }
}

impl PartialEq<MacAddr> for MacKey {
    #[inline(always)]
    fn eq(&self, m: &MacAddr) -> bool {
        self.0 == m.key()
    }
}

impl fmt::Display for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.mac(), f)
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.mac(), f)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAddrError(pub String);

impl fmt::Display for ParseAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ParseAddrError {}

impl FromStr for MacAddr {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            ParseAddrError(format!(
                "'{s}' is not a MAC address (want xx:xx:xx:xx:xx:xx)"
            ))
        };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.len() != 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// An IPv4 prefix. The address is kept as given; [`Ipv4Cidr::network`] masks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Default for Ipv4Cidr {
    /// 0.0.0.0/0
    fn default() -> Self {
        Ipv4Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        }
    }
}

impl Ipv4Cidr {
    /// A prefix; `None` when `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Cidr> {
        (len <= 32).then_some(Ipv4Cidr { addr, len })
    }
    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }
    /// True for /0 (the prefix that matches everything has no bits; named for clippy).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The address as written.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    /// The netmask as a host-order integer.
    #[inline]
    pub fn mask(&self) -> u32 {
        mask(self.len)
    }
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// The broadcast address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// True when the address has no host bits set.
    pub fn is_network(&self) -> bool {
        u32::from(self.addr) & !self.mask() == 0
    }
    /// True when `ip` lies inside the prefix.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
    /// True when all of `other` lies inside `self`.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.network())
    }
    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
    /// The first host address (network + 1), the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(1))
    }
}

/// The netmask of a prefix length, host order.
#[inline]
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}
impl fmt::Debug for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddrError(format!("'{s}' is not an IPv4 CIDR (want a.b.c.d/len)"));
        let (a, l) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        let len: u8 = l.parse().map_err(|_| err())?;
        Ipv4Cidr::new(addr, len).ok_or_else(err)
    }
}

/// An IPv6 prefix (SPEC 12.1). The address is kept as given; [`Ipv6Cidr::network`]
/// masks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Cidr {
    addr: std::net::Ipv6Addr,
    len: u8,
}

impl Default for Ipv6Cidr {
    /// ::/0
    fn default() -> Self {
        Ipv6Cidr {
            addr: std::net::Ipv6Addr::UNSPECIFIED,
            len: 0,
        }
    }
}

/// The netmask of an IPv6 prefix length.
#[inline]
pub fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl Ipv6Cidr {
    /// A prefix; `None` when `len > 128`.
    pub fn new(addr: std::net::Ipv6Addr, len: u8) -> Option<Ipv6Cidr> {
        (len <= 128).then_some(Ipv6Cidr { addr, len })
    }
    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }
    /// True for ::/0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The address as written.
    pub fn addr(&self) -> std::net::Ipv6Addr {
        self.addr
    }
    /// The netmask.
    #[inline]
    pub fn mask(&self) -> u128 {
        mask6(self.len)
    }
    /// The network address (the prefix with no host bits).
    pub fn network(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }
    /// True when the address has no host bits set.
    pub fn is_network(&self) -> bool {
        u128::from(self.addr) & !self.mask() == 0
    }
    /// True when `ip` lies inside the prefix.
    #[inline]
    pub fn contains(&self, ip: std::net::Ipv6Addr) -> bool {
        (u128::from(ip) ^ u128::from(self.addr)) & self.mask() == 0
    }
    /// True when all of `other` lies inside `self`.
    pub fn covers(&self, other: &Ipv6Cidr) -> bool {
        other.len >= self.len && self.contains(other.network())
    }
    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv6Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
    /// The first address after the network's (`::1` of the prefix): a subnet's IPv6
    /// gateway (SPEC 12.1).
    pub fn first_host(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(u128::from(self.network()).wrapping_add(1))
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}
impl fmt::Debug for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddrError(format!("'{s}' is not an IPv6 CIDR (want x:x::/len)"));
        let (a, l) = s.split_once('/').ok_or_else(err)?;
        let addr: std::net::Ipv6Addr = a.parse().map_err(|_| err())?;
        let len: u8 = l.parse().map_err(|_| err())?;
        Ipv6Cidr::new(addr, len).ok_or_else(err)
    }
}

/// A prefix of either family: a route's destination (SPEC 1, 12.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpCidr {
    /// IPv4
    V4(Ipv4Cidr),
    /// IPv6
    V6(Ipv6Cidr),
}

impl Default for IpCidr {
    /// 0.0.0.0/0
    fn default() -> Self {
        IpCidr::V4(Ipv4Cidr::default())
    }
}

impl From<Ipv4Cidr> for IpCidr {
    fn from(c: Ipv4Cidr) -> IpCidr {
        IpCidr::V4(c)
    }
}

impl From<Ipv6Cidr> for IpCidr {
    fn from(c: Ipv6Cidr) -> IpCidr {
        IpCidr::V6(c)
    }
}

impl IpCidr {
    /// The IPv4 prefix, if it is one.
    pub fn v4(&self) -> Option<Ipv4Cidr> {
        match self {
            IpCidr::V4(c) => Some(*c),
            IpCidr::V6(_) => None,
        }
    }
    /// The IPv6 prefix, if it is one.
    pub fn v6(&self) -> Option<Ipv6Cidr> {
        match self {
            IpCidr::V6(c) => Some(*c),
            IpCidr::V4(_) => None,
        }
    }
    /// The prefix length.
    pub fn len(&self) -> u8 {
        match self {
            IpCidr::V4(c) => c.len(),
            IpCidr::V6(c) => c.len(),
        }
    }
    /// True for a /0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True when the address has no host bits set.
    pub fn is_network(&self) -> bool {
        match self {
            IpCidr::V4(c) => c.is_network(),
            IpCidr::V6(c) => c.is_network(),
        }
    }
    /// The same prefix with its host bits cleared.
    pub fn masked(&self) -> IpCidr {
        match self {
            IpCidr::V4(c) => Ipv4Cidr::new(c.network(), c.len()).map_or(*self, IpCidr::V4),
            IpCidr::V6(c) => Ipv6Cidr::new(c.network(), c.len()).map_or(*self, IpCidr::V6),
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpCidr::V4(c) => fmt::Display::fmt(c, f),
            IpCidr::V6(c) => fmt::Display::fmt(c, f),
        }
    }
}
impl fmt::Debug for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpCidr {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(c) = s.parse::<Ipv4Cidr>() {
            return Ok(IpCidr::V4(c));
        }
        s.parse::<Ipv6Cidr>().map(IpCidr::V6).map_err(|_| {
            ParseAddrError(format!(
                "'{s}' is not an IPv4 or IPv6 CIDR (want a.b.c.d/len or x:x::/len)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_key_round_trips_and_compares_like_the_bytes() {
        let macs = [
            MacAddr([2, 0, 10, 255, 0, 1]),
            MacAddr([1, 0, 0x5e, 0, 0, 0x12]),
            MacAddr::BROADCAST,
            MacAddr::ZERO,
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        ];
        for a in macs {
            let k = MacKey::from_bytes(&a.0);
            assert_eq!(k, MacKey::from(a));
            assert_eq!(k.mac(), a);
            assert_eq!(MacAddr::from_key(a.key()), a);
            assert_eq!(k.is_multicast(), a.is_multicast(), "{a}");
            assert_eq!(k.to_string(), a.to_string());
            assert_eq!(format!("{k:?}"), a.to_string());
            for b in macs {
                assert_eq!(k == b, a == b, "{a} vs {b}");
            }
        }
        // the unused top bits of a key do not leak into the address
        assert_eq!(MacAddr::from_key(u64::MAX), MacAddr::BROADCAST);
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 10, 255, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert!(m.is_unicast());
        assert!("02:00:0a:ff:00".parse::<MacAddr>().is_err());
        assert!("02:00:0a:ff:00:01:02".parse::<MacAddr>().is_err());
        assert!("zz:00:0a:ff:00:01".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::ZERO.is_unicast());
    }

    #[test]
    fn cidr_math() {
        let c: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert!(c.contains("10.0.1.77".parse().unwrap()));
        assert!(!c.contains("10.0.2.1".parse().unwrap()));
        assert_eq!(c.broadcast(), "10.0.1.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.first_host(), "10.0.1.1".parse::<Ipv4Addr>().unwrap());
        let v: Ipv4Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(v.covers(&c) && !c.covers(&v) && c.overlaps(&v));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn ipv6_cidr_contains_covers_and_first_host() {
        let c: Ipv6Cidr = "fd00:1::/48".parse().unwrap();
        let s: Ipv6Cidr = "fd00:1:0:2::/64".parse().unwrap();
        assert!(c.covers(&s) && !s.covers(&c) && c.overlaps(&s));
        assert!(s.contains("fd00:1:0:2::99".parse().unwrap()));
        assert!(!s.contains("fd00:1:0:3::1".parse().unwrap()));
        assert_eq!(
            s.first_host(),
            "fd00:1:0:2::1".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert!(s.is_network());
        assert!(!"fd00::1/64".parse::<Ipv6Cidr>().unwrap().is_network());
        assert!("fd00::/129".parse::<Ipv6Cidr>().is_err());
        assert!("10.0.0.0/8".parse::<Ipv6Cidr>().is_err());
        assert_eq!(s.to_string(), "fd00:1:0:2::/64");
    }

    #[test]
    fn ip_cidr_parses_either_family() {
        let a: IpCidr = "10.0.0.0/8".parse().unwrap();
        let b: IpCidr = "fd00:b::/48".parse().unwrap();
        assert_eq!(a.v4(), Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(b.v6(), Some("fd00:b::/48".parse().unwrap()));
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("10.0.0.0/8".into(), "fd00:b::/48".into())
        );
        assert!("nonsense".parse::<IpCidr>().is_err());
        let m: IpCidr = "fd00:b::1/48".parse().unwrap();
        assert!(!m.is_network() && m.masked() == b && m.len() == 48);
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{IpCidr, Ipv4Cidr, Ipv6Cidr, MacAddr};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    macro_rules! via_str {
        ($t:ty) => {
            impl Serialize for $t {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_str(self)
                }
            }
            impl<'de> Deserialize<'de> for $t {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(D::Error::custom)
                }
            }
        };
    }
    via_str!(MacAddr);
    via_str!(Ipv4Cidr);
    via_str!(Ipv6Cidr);
    via_str!(IpCidr);
}
