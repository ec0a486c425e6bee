//! Longest-prefix match for VPC route tables (SPEC 5.1).
//!
//! VPC tables are usually small (a few subnets, peerings, a default route): up to
//! [`LINEAR_MAX`] prefixes are scanned linearly from the longest, which beats hashing.
//! Larger tables use one hash map per prefix length present, longest first, so a lookup
//! costs at most one probe per distinct length (≤ 33).

use hashbrown::HashMap;
use vpcswitch_wire::Ipv4Cidr;

/// Tables up to this size are scanned linearly.
pub const LINEAR_MAX: usize = 16;

/// An immutable LPM table.
#[derive(Debug, Clone)]
pub struct Lpm<T> {
    /// (network, mask, value), longest prefix first.
    linear: Vec<(u32, u32, T)>,
    /// (length, mask, map), longest first; used when `linear` is empty.
    by_len: Vec<(u8, u32, HashMap<u32, T>)>,
}

impl<T: Copy> Lpm<T> {
    /// Builds the table. A later duplicate of the same prefix replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (Ipv4Cidr, T)>) -> Lpm<T> {
        let mut all: Vec<(Ipv4Cidr, T)> = Vec::new();
        for (c, v) in entries {
            let c = Ipv4Cidr::new(c.network(), c.len()).unwrap_or(c);
            if let Some(slot) = all.iter_mut().find(|(d, _)| *d == c) {
                slot.1 = v;
            } else {
                all.push((c, v));
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        if all.len() <= LINEAR_MAX {
            Lpm {
                linear: all
                    .into_iter()
                    .map(|(c, v)| (u32::from(c.network()), c.mask(), v))
                    .collect(),
                by_len: Vec::new(),
            }
        } else {
            let mut by_len: Vec<(u8, u32, HashMap<u32, T>)> = Vec::new();
            for (c, v) in all {
                if by_len.last().map(|l| l.0) != Some(c.len()) {
                    by_len.push((c.len(), c.mask(), HashMap::new()));
                }
                if let Some(l) = by_len.last_mut() {
                    l.2.insert(u32::from(c.network()), v);
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
    pub fn lookup(&self, ip: u32) -> Option<T> {
        for (net, mask, v) in &self.linear {
            if ip & mask == *net {
                return Some(*v);
            }
        }
        for (_, mask, m) in &self.by_len {
            if let Some(v) = m.get(&(ip & mask)) {
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
}
