//! The 64-bit key hash of the shared tables. Every process that reads a region must compute the
//! same hash for the same key, so it is fixed here, beside the region, with a fixed seed (never
//! a per-process random one).

/// FNV-1a 64 of `key`, finalised with murmur3's `fmix64`; never 0 (0 marks an empty slot in the
/// tables that use it).
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    nonzero(fmix64(h))
}

/// murmur3's 64-bit finaliser: a bijection that spreads every input bit over the whole word.
#[inline]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `h`, or 1 if `h` is 0.
#[inline]
pub const fn nonzero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}
