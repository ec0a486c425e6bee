//! An immutable open-addressing hash table from small plain keys (`u64`: MAC keys and
//! (VPC, IPv4) keys; `(u32, u128)`: (VPC, IPv6) keys) to small `Copy` values: the
//! switch's exact-match tables, one code path for both address families.
//!
//! Built once per snapshot at ≤ 50% load, linear probing, a multiplicative hash: a
//! lookup is a multiply, a shift and usually one compare — about a quarter of the
//! instructions of a general-purpose map (measured with callgrind, docs/benchmarks.md).
//! The table is not exposed to guest-chosen keys at build time, and probing stays short
//! at this load whatever the lookup key, so a guest cannot make lookups slow.

/// A key of a [`FlatMap`]: a plain value with one reserved pattern for empty slots and
/// a cheap mix of its bits into 64 (the table multiplies that by a constant and keeps
/// the top bits).
pub trait FlatKey: Copy + Eq {
    /// Marks an empty slot; the one key that cannot be stored in the slots (the table
    /// keeps its value aside).
    const EMPTY: Self;
    /// The key's bits folded into 64, before the table's multiplicative hash.
    fn fold(self) -> u64;
}

impl FlatKey for u64 {
    const EMPTY: u64 = u64::MAX;
    #[inline(always)]
    fn fold(self) -> u64 {
        self ^ (self >> 31)
    }
}

/// An IPv6 address in a VPC: the key of the IPv6 host table (SPEC 12).
impl FlatKey for (u32, u128) {
    const EMPTY: (u32, u128) = (u32::MAX, u128::MAX);
    #[inline(always)]
    fn fold(self) -> u64 {
        let (vpc, ip) = self;
        // the interface identifier (low half) varies most; the prefix and the VPC
        // are rotated in so that equal identifiers in different subnets spread
        let x = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(29) ^ u64::from(vpc).rotate_left(47);
        x ^ (x >> 31)
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct FlatMap<V, K = u64> {
    keys: Box<[K]>,
    vals: Box<[Option<V>]>,
    shift: u32,
    /// the value of key [`FlatKey::EMPTY`], which the slots cannot hold
    empty_key: Option<V>,
    len: usize,
}

#[inline(always)]
fn slot(folded: u64, shift: u32) -> usize {
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

impl<V: Copy, K: FlatKey> FlatMap<V, K> {
    /// Builds the table; a later duplicate key replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (K, V)>) -> FlatMap<V, K> {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let shift = 64 - cap.trailing_zeros();
        let mut m = FlatMap {
            keys: vec![K::EMPTY; cap].into_boxed_slice(),
            vals: vec![None; cap].into_boxed_slice(),
            shift,
            empty_key: None,
            len: 0,
        };
        for (k, v) in entries {
            m.insert(k, v);
        }
        m
    }

    fn insert(&mut self, k: K, v: V) {
        if k == K::EMPTY {
            if self.empty_key.replace(v).is_none() {
                self.len += 1;
            }
            return;
        }
        let mask = self.keys.len() - 1;
        let mut i = slot(k.fold(), self.shift);
        loop {
            if self.keys[i] == k {
                self.vals[i] = Some(v);
                return;
            }
            if self.keys[i] == K::EMPTY {
                self.keys[i] = k;
                self.vals[i] = Some(v);
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of `k`.
    #[inline(always)]
    pub fn get(&self, k: K) -> Option<V> {
        if k == K::EMPTY {
            return self.empty_key;
        }
        let mask = self.keys.len() - 1;
        let mut i = slot(k.fold(), self.shift);
        loop {
            let s = *self.keys.get(i)?;
            if s == k {
                return self.vals.get(i).copied().flatten();
            }
            if s == K::EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map() {
        let mut x = 7u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [0usize, 1, 5, 100, 5000] {
            let mut e: Vec<(u64, u32)> = (0..n)
                .map(|i| (next() & 0xffff_ffff_ffff, i as u32))
                .collect();
            e.push((u64::EMPTY, 99));
            e.push((0, 7));
            let m = FlatMap::new(e.clone());
            let h: HashMap<u64, u32> = e.iter().copied().collect();
            assert_eq!(m.len(), h.len());
            for (k, v) in &h {
                assert_eq!(m.get(*k), Some(*v));
            }
            for _ in 0..1000 {
                let k = next();
                assert_eq!(m.get(k), h.get(&k).copied());
            }
        }
    }

    #[test]
    fn ipv6_keys_agree_with_a_hash_map() {
        let mut x = 11u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prefix = 0xfd00_0000_0000_0001u128 << 64;
        let mut e: Vec<((u32, u128), u16)> = (0..3000u32)
            .map(|i| ((i % 3, prefix | u128::from(next() & 0xffff)), i as u16))
            .collect();
        e.push((<(u32, u128)>::EMPTY, 7));
        e.push(((0, 0), 8));
        let m = FlatMap::new(e.clone());
        let h: HashMap<(u32, u128), u16> = e.iter().copied().collect();
        assert_eq!(m.len(), h.len());
        for (k, v) in &h {
            assert_eq!(m.get(*k), Some(*v));
        }
        for _ in 0..1000 {
            let k = (next() as u32 % 4, prefix | u128::from(next() & 0xffff));
            assert_eq!(m.get(k), h.get(&k).copied());
        }
    }
}
