//! An immutable open-addressing hash table from `u64` keys (MAC keys, (VPC, IP) keys) to
//! small `Copy` values: the switch's exact-match tables.
//!
//! Built once per snapshot at ≤ 50% load, linear probing, a multiplicative hash: a
//! lookup is a multiply, a shift and usually one compare — about a quarter of the
//! instructions of a general-purpose map (measured with callgrind, docs/benchmarks.md).
//! The table is not exposed to guest-chosen keys at build time, and probing stays short
//! at this load whatever the lookup key, so a guest cannot make lookups slow.

/// Marks an empty slot; the one key that cannot be stored in the slots.
const EMPTY: u64 = u64::MAX;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct FlatMap<V> {
    keys: Box<[u64]>,
    vals: Box<[Option<V>]>,
    shift: u32,
    /// the value of key `u64::MAX`, which the slots cannot hold
    max_key: Option<V>,
    len: usize,
}

#[inline(always)]
fn slot(k: u64, shift: u32) -> usize {
    ((k ^ (k >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

impl<V: Copy> FlatMap<V> {
    /// Builds the table; a later duplicate key replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (u64, V)>) -> FlatMap<V> {
        let entries: Vec<(u64, V)> = entries.into_iter().collect();
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let shift = 64 - cap.trailing_zeros();
        let mut m = FlatMap {
            keys: vec![EMPTY; cap].into_boxed_slice(),
            vals: vec![None; cap].into_boxed_slice(),
            shift,
            max_key: None,
            len: 0,
        };
        for (k, v) in entries {
            m.insert(k, v);
        }
        m
    }

    fn insert(&mut self, k: u64, v: V) {
        if k == EMPTY {
            if self.max_key.replace(v).is_none() {
                self.len += 1;
            }
            return;
        }
        let mask = self.keys.len() - 1;
        let mut i = slot(k, self.shift);
        loop {
            if self.keys[i] == k {
                self.vals[i] = Some(v);
                return;
            }
            if self.keys[i] == EMPTY {
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
    pub fn get(&self, k: u64) -> Option<V> {
        if k == EMPTY {
            return self.max_key;
        }
        let mask = self.keys.len() - 1;
        let mut i = slot(k, self.shift);
        loop {
            let s = *self.keys.get(i)?;
            if s == k {
                return self.vals.get(i).copied().flatten();
            }
            if s == EMPTY {
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
            e.push((EMPTY, 99));
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
}
