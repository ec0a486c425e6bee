//! Longest-prefix match for VPC route tables (SPEC 5.1, and 12.5 for IPv6).
//!
//! VPC tables are usually small (a few subnets, peerings, a default route): up to
//! [`LINEAR_MAX`] prefixes are scanned linearly from the longest, which beats hashing.
//! Larger tables use one hash map per prefix length present, longest first, so a lookup
//! costs at most one probe per distinct length (≤ 33; ≤ 129 for IPv6).

use std::hash::Hash;
use std::ops::BitAnd;

use hashbrown::HashMap;
use vpcswitch_wire::{Ipv4Cidr, Ipv6Cidr};

/// Tables up to this size are scanned linearly.
pub const LINEAR_MAX: usize = 16;

/// A prefix an [`Lpm`] can hold: IPv4 (SPEC 5.1) or IPv6 (SPEC 12.5), with its address
/// as a plain integer.
pub trait LpmPrefix: Copy {
    /// The address as an integer (host order).
    type Addr: Copy + Eq + Hash + BitAnd<Output = Self::Addr>;
    /// (network, mask, length): the prefix with its host bits cleared.
    fn parts(&self) -> (Self::Addr, Self::Addr, u8);
}

impl LpmPrefix for Ipv4Cidr {
    type Addr = u32;
    fn parts(&self) -> (u32, u32, u8) {
        (u32::from(self.network()), self.mask(), self.len())
    }
}

impl LpmPrefix for Ipv6Cidr {
    type Addr = u128;
    fn parts(&self) -> (u128, u128, u8) {
        (u128::from(self.network()), self.mask(), self.len())
    }
}

/// A prefix as (network, mask, length).
type Parts<P> = (<P as LpmPrefix>::Addr, <P as LpmPrefix>::Addr, u8);

/// The prefixes of one length: (length, mask, network → value).
type OneLength<P, T> = (
    u8,
    <P as LpmPrefix>::Addr,
    HashMap<<P as LpmPrefix>::Addr, T>,
);

/// An immutable LPM table over IPv4 prefixes (the default) or IPv6 ones.
#[derive(Debug, Clone)]
pub struct Lpm<T, P: LpmPrefix = Ipv4Cidr> {
    /// (network, mask, value), longest prefix first.
    linear: Vec<(P::Addr, P::Addr, T)>,
    /// (length, mask, map), longest first; used when `linear` is empty.
    by_len: Vec<OneLength<P, T>>,
}

impl<T: Copy, P: LpmPrefix> Lpm<T, P> {
    /// Builds the table. A later duplicate of the same prefix replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (P, T)>) -> Lpm<T, P> {
        // ((network, mask, length), value)
        let mut all: Vec<(Parts<P>, T)> = Vec::new();
        for (c, v) in entries {
            let c = c.parts();
            if let Some(slot) = all.iter_mut().find(|(d, _)| d.0 == c.0 && d.2 == c.2) {
                slot.1 = v;
            } else {
                all.push((c, v));
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.0 .2));
        if all.len() <= LINEAR_MAX {
            Lpm {
                linear: all
                    .into_iter()
                    .map(|((net, mask, _), v)| (net, mask, v))
                    .collect(),
                by_len: Vec::new(),
            }
        } else {
            let mut by_len: Vec<OneLength<P, T>> = Vec::new();
            for ((net, mask, len), v) in all {
                if by_len.last().map(|l| l.0) != Some(len) {
                    by_len.push((len, mask, HashMap::new()));
                }
                if let Some(l) = by_len.last_mut() {
                    l.2.insert(net, v);
                }
            }
            Lpm {
                linear: Vec::new(),
                by_len,
            }
        }
    }

    /// The value of the longest prefix containing `ip` (host order).
    #[inline]
    pub fn lookup(&self, ip: P::Addr) -> Option<T> {
        for &(net, mask, v) in &self.linear {
            if ip & mask == net {
                return Some(v);
            }
        }
        for (_, mask, m) in &self.by_len {
            if let Some(v) = m.get(&(ip & *mask)) {
                return Some(*v);
            }
        }
        None
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.linear.len() + self.by_len.iter().map(|l| l.2.len()).sum::<usize>()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_wins_small_and_large() {
        for extra in [0usize, 100] {
            let mut e = vec![
                (c("0.0.0.0/0"), 0),
                (c("10.0.0.0/8"), 8),
                (c("10.1.0.0/16"), 16),
                (c("10.1.2.0/24"), 24),
                (c("10.1.2.3/32"), 32),
            ];
            for i in 0..extra {
                e.push((
                    Ipv4Cidr::new(
                        std::net::Ipv4Addr::from(0xc000_0000u32 + ((i as u32) << 8)),
                        24,
                    )
                    .unwrap(),
                    1000 + i,
                ));
            }
            let t = Lpm::new(e);
            assert_eq!(t.lookup(ip("10.1.2.3")), Some(32));
            assert_eq!(t.lookup(ip("10.1.2.4")), Some(24));
            assert_eq!(t.lookup(ip("10.1.3.4")), Some(16));
            assert_eq!(t.lookup(ip("10.2.0.1")), Some(8));
            assert_eq!(t.lookup(ip("11.0.0.1")), Some(0));
            if extra > 0 {
                assert_eq!(t.lookup(ip("192.0.5.9")), Some(1005));
            }
        }
        let t: Lpm<u8> = Lpm::new(vec![(c("10.0.0.0/8"), 1)]);
        assert_eq!(t.lookup(ip("11.0.0.1")), None);
    }

    #[test]
    fn ipv6_longest_wins_small_and_large() {
        let c6 = |s: &str| s.parse::<Ipv6Cidr>().unwrap();
        let ip6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        for extra in [0u128, 100] {
            let mut e = vec![
                (c6("::/0"), 0),
                (c6("fd00::/8"), 8),
                (c6("fd00:1::/32"), 32),
                (c6("fd00:1:0:2::/64"), 64),
                (c6("fd00:1:0:2::5/128"), 128),
            ];
            for i in 0..extra {
                let net = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64));
                e.push((Ipv6Cidr::new(net, 64).unwrap(), 1000 + i as u32));
            }
            let t: Lpm<u32, Ipv6Cidr> = Lpm::new(e);
            assert_eq!(t.lookup(ip6("fd00:1:0:2::5")), Some(128));
            assert_eq!(t.lookup(ip6("fd00:1:0:2::6")), Some(64));
            assert_eq!(t.lookup(ip6("fd00:1:0:3::6")), Some(32));
            assert_eq!(t.lookup(ip6("fd00:2::1")), Some(8));
            assert_eq!(t.lookup(ip6("2001:db9::1")), Some(0));
            if extra > 0 {
                assert_eq!(t.lookup(ip6("2001:db8:0:5::9")), Some(1005));
            }
        }
    }
}
