//! Internet checksum (RFC 1071) and incremental updates (RFC 1624).

use std::net::Ipv6Addr;

/// Adds `data` as big-endian 16-bit words to a 32-bit accumulator. The result is a
/// partial ones-complement sum for [`fold`] (folded to 16 bits when `data` holds 8
/// bytes or more; chaining further calls is fine either way).
///
/// Eight bytes per step, with the end-around carry (RFC 1071 2.(B): the sum can be
/// taken in any wider word and folded), then the tail two bytes at a time.
#[inline]
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    let (words, tail) = data.as_chunks::<8>();
    let mut acc = if words.is_empty() {
        acc
    } else {
        let mut wide = u64::from(acc);
        for w in words {
            let (s, carry) = wide.overflowing_add(u64::from_be_bytes(*w));
            wide = s + u64::from(carry);
        }
        u32::from(fold64(wide))
    };
    let (pairs, odd) = tail.as_chunks::<2>();
    for p in pairs {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes(*p)));
    }
    if let [b] = odd {
        acc = acc.wrapping_add(u32::from(*b) << 8);
    }
    acc
}

/// Adds `data` (of even length) as big-endian words, four bytes at a time: the fast
/// path for IPv4 headers. Equal to [`sum`] after [`fold64`].
#[inline]
pub fn sum_fast(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let r = chunks.remainder();
    if r.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([r[0], r[1]])) << 16;
    }
    acc
}

/// Folds a 64-bit accumulator of 32-bit words (from [`sum_fast`]) to 16 bits.
#[inline]
pub fn fold64(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let mut a = (acc & 0xffff) + (acc >> 16);
    a = (a & 0xffff) + (a >> 16);
    a = (a & 0xffff) + (a >> 16);
    a as u16
}

/// Folds a 32-bit accumulator into the ones-complement 16-bit sum.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The unfolded sum of the IPv6 pseudo-header (RFC 8200 8.1): both addresses, the
/// upper-layer length `len` and the next header `next`. Add the upper-layer bytes with
/// [`sum`], then fold and complement.
#[inline]
pub fn pseudo_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next: u8, len: u32) -> u32 {
    // the two addresses as four 64-bit words, with the end-around carry
    let (s, d) = (u128::from(*src), u128::from(*dst));
    let mut wide = 0u64;
    for w in [s as u64, (s >> 64) as u64, d as u64, (d >> 64) as u64] {
        let (x, carry) = wide.overflowing_add(w);
        wide = x + u64::from(carry);
    }
    u32::from(fold64(wide)) + (len >> 16) + (len & 0xffff) + u32::from(next)
}

/// RFC 1624 eqn. 3: the new checksum when one 16-bit word changes from `old` to `new`.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// RFC 1624 for a 32-bit field (an IPv4 address) changing from `old` to `new`.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum is 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn fast_sum_matches_the_plain_one() {
        let mut x = 0x1234_5678u32;
        for len in (0..64).step_by(2) {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert_eq!(fold64(sum_fast(&d)), fold(sum(0, &d)), "len {len}");
        }
        assert_eq!(fold64(sum_fast(&[0xff; 60])), 0xffff);
    }

    /// RFC 1071 the slow way: 16-bit words, odd byte padded, carries folded at the end.
    fn reference(acc: u32, d: &[u8]) -> u16 {
        let mut a = u64::from(acc);
        for c in d.chunks(2) {
            a += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while a > 0xffff {
            a = (a & 0xffff) + (a >> 16);
        }
        a as u16
    }

    #[test]
    fn wide_sum_matches_the_word_by_word_one() {
        let mut x = 0x9e37_79b9u32;
        let mut byte = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        };
        for len in 0..200 {
            for acc in [0u32, 1, 0xffff, 0x1_fffe, 0x2_0000] {
                let d: Vec<u8> = (0..len).map(|_| byte()).collect();
                assert_eq!(
                    fold(sum(acc, &d)),
                    reference(acc, &d),
                    "len {len} acc {acc}"
                );
            }
            let ones = vec![0xffu8; len];
            assert_eq!(fold(sum(0, &ones)), reference(0, &ones), "ones, len {len}");
        }
        // chained, as the pseudo-header sums are
        let d: Vec<u8> = (0..77).map(|_| byte()).collect();
        assert_eq!(fold(sum(sum(0, &d[..16]), &d[16..])), reference(0, &d));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut d = [
            0x45u8, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 1, 5, 10, 0, 2, 9,
        ];
        let c = checksum(&d);
        d[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&d), 0);
        // TTL 64 -> 63
        let old = u16::from_be_bytes([d[8], d[9]]);
        d[8] = 63;
        let new = u16::from_be_bytes([d[8], d[9]]);
        let inc = update16(c, old, new);
        d[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(&d));
        // source address change
        d[10..12].copy_from_slice(&inc.to_be_bytes());
        let old_src = u32::from_be_bytes([d[12], d[13], d[14], d[15]]);
        let new_src = 0xc633_6401u32;
        d[12..16].copy_from_slice(&new_src.to_be_bytes());
        let inc2 = update32(inc, old_src, new_src);
        d[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc2, checksum(&d));
    }
}
