//! Size classes: the mapping from a block size to the segregated list that holds it.
//!
//! Classes step linearly by one grain from `MIN_BLOCK` to `LINEAR_LIMIT` bytes of payload (no
//! internal waste for small objects, which dominate real programs), then geometrically with
//! `STEPS_PER_DOUBLING` classes per power of two of payload (at most 25% waste). Geometric classes
//! are spaced on the payload, not on the block, so that a block holds a power-of-two request
//! exactly: programs ask for 1024, 4096, 65536 bytes far more often than for their neighbours, and
//! a block of 2^k bytes would leave such a request short of its metadata and push it to the next
//! class, 25% bigger. The last class, `NUM_CLASSES - 1`, takes every block too big for the others. With
//! the defaults (16-byte grain, 128 classes): 64 linear classes of 32..=1040 bytes (payloads
//! 24..=1032), then 1296, 1552, 1808, 2064, 2576, … (for requests up to 1280, 1536, 1792, 2048,
//! 2560, …: class sizes step by the metadata rounded up to the grain).
//!
//! A class is *quick* when its blocks are served by thread caches and per-class quick lists
//! without coalescing: every class whose block is at most `QUICK_LIMIT` bytes (payloads up to
//! 28 KiB by default: a 32 KiB request would take a 32 KiB + 16 block, and vectors doubling past
//! that size would leave such blocks hoarded on the quick lists). Requests in a quick
//! class are rounded up to the class size, so that any block of the class serves any request of
//! the class.

use crate::config::{round_up, BLOCK_OVERHEAD, GRAIN, LINEAR_LIMIT, MAX_REQUEST, MIN_BLOCK, NUM_CLASSES, QUICK_LIMIT, STEPS_PER_DOUBLING};

/// What a block adds to its payload, as class sizes count it: the metadata, rounded to the grain.
const CLASS_OVERHEAD: usize = round_up(BLOCK_OVERHEAD, GRAIN);
/// The largest block of the linear classes (its payload is `LINEAR_LIMIT`).
const LINEAR_TOP: usize = LINEAR_LIMIT + CLASS_OVERHEAD;
/// Number of linearly spaced classes (before the cap by `NUM_CLASSES`).
pub const LINEAR_CLASSES: usize = (LINEAR_TOP - MIN_BLOCK) / GRAIN + 1;
const LOG2_LINEAR_LIMIT: u32 = LINEAR_LIMIT.trailing_zeros();
const STEP_SHIFT: u32 = STEPS_PER_DOUBLING.trailing_zeros();
const _: () = assert!(LINEAR_LIMIT.is_power_of_two() && STEPS_PER_DOUBLING.is_power_of_two());

/// The class whose range holds a block of `size` bytes (`MIN_BLOCK <= size`, a multiple of the
/// grain). Class `c` holds sizes in `(class_size(c - 1), class_size(c)]`.
#[inline(always)]
pub const fn class_of(size: usize) -> usize {
    let raw = if size <= LINEAR_TOP {
        (size - MIN_BLOCK + GRAIN - 1) / GRAIN
    } else {
        // The payload u lies in (2^k, 2^(k+1)], split into STEPS_PER_DOUBLING steps of 2^k / STEPS.
        let u = size - CLASS_OVERHEAD;
        let k = usize::BITS - 1 - (u - 1).leading_zeros();
        let step_shift = k - STEP_SHIFT;
        let t = (u - (1 << k) + (1 << step_shift) - 1) >> step_shift; // 1..=STEPS
        LINEAR_CLASSES + STEPS_PER_DOUBLING * (k - LOG2_LINEAR_LIMIT) as usize + t - 1
    };
    if raw < NUM_CLASSES - 1 { raw } else { NUM_CLASSES - 1 }
}

/// The largest block size of class `c` (`usize::MAX` for the last, unbounded class).
pub const fn class_size(c: usize) -> usize {
    if c >= NUM_CLASSES - 1 {
        return usize::MAX;
    }
    if c < LINEAR_CLASSES {
        return MIN_BLOCK + c * GRAIN;
    }
    let g = c - LINEAR_CLASSES;
    let k = LOG2_LINEAR_LIMIT + (g / STEPS_PER_DOUBLING) as u32;
    let t = g % STEPS_PER_DOUBLING + 1;
    (1 << k) + t * (1 << (k - STEP_SHIFT)) + CLASS_OVERHEAD
}

const fn count_quick() -> usize {
    let mut c = 0;
    while c < NUM_CLASSES - 1 && class_size(c) <= QUICK_LIMIT {
        c += 1;
    }
    c
}

/// Number of quick classes: classes `0..NUM_QUICK` are cached per thread and kept on quick lists.
pub const NUM_QUICK: usize = count_quick();
const _: () = assert!(NUM_QUICK > 0);

/// Block size of the largest quick class.
pub const QUICK_MAX_BLOCK: usize = class_size(NUM_QUICK - 1);

/// Largest request that lands in a quick class.
pub const QUICK_MAX_REQUEST: usize = QUICK_MAX_BLOCK - BLOCK_OVERHEAD;

/// Block sizes of the quick classes, for the hot paths (a load instead of arithmetic).
pub static QUICK_SIZE: [u32; NUM_QUICK] = {
    let mut t = [0u32; NUM_QUICK];
    let mut c = 0;
    while c < NUM_QUICK {
        t[c] = class_size(c) as u32;
        c += 1;
    }
    t
};

/// The block size needed for a request of `n` bytes, before any class rounding, or `None` if the
/// request is impossible (beyond `MAX_REQUEST`).
#[inline(always)]
pub const fn block_size(n: usize) -> Option<usize> {
    if n > MAX_REQUEST {
        return None;
    }
    let s = (n + BLOCK_OVERHEAD + GRAIN - 1) & !(GRAIN - 1);
    Some(if s < MIN_BLOCK { MIN_BLOCK } else { s })
}

/// Entries of the lookup tables: one per grain of block size up to the largest quick block.
const TABLE_LEN: usize = QUICK_MAX_BLOCK / GRAIN + 1;
/// Table entry meaning "no quick class": `NUM_QUICK`, which a thread cache's extra, always full
/// bin answers, so that the free hot path needs no test of its own for it.
const NONE: u8 = NUM_QUICK as u8;
const _: () = assert!(NUM_QUICK < u8::MAX as usize);

/// For a block size in grains: the smallest quick class that holds it.
static COVERING_CLASS: [u8; TABLE_LEN] = {
    let mut t = [NONE; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        // Requests smaller than the smallest block get the smallest block: filled in, so that
        // the hot path needs no clamp.
        t[i] = class_of(if i * GRAIN < MIN_BLOCK { MIN_BLOCK } else { i * GRAIN }) as u8;
        i += 1;
    }
    t
};

/// For a block size in grains: the quick class whose size it is exactly, or NONE.
static EXACT_CLASS: [u8; TABLE_LEN] = {
    let mut t = [NONE; TABLE_LEN];
    let mut c = 0;
    while c < NUM_QUICK {
        t[class_size(c) / GRAIN] = c as u8;
        c += 1;
    }
    t
};

/// The quick class serving a request of `n` bytes, if there is one: the hot path's only size
/// computation (an add, a shift and a table load).
#[inline(always)]
pub fn quick_class_of_request(n: usize) -> Option<usize> {
    if n > QUICK_MAX_REQUEST {
        return None;
    }
    let c = COVERING_CLASS[(n + BLOCK_OVERHEAD + GRAIN - 1) / GRAIN];
    Some(c as usize)
}

/// The quick class of a block of exactly `size` bytes, if `size` is a quick class's block size.
/// Blocks of other sizes (split remainders, aligned blocks) are never cached.
#[inline(always)]
pub fn quick_class_of_block(size: usize) -> Option<usize> {
    if size > QUICK_MAX_BLOCK {
        return None;
    }
    let c = EXACT_CLASS[size / GRAIN];
    if c == NONE { None } else { Some(c as usize) }
}

/// The bin of a block whose header's low half is `lo` (its size and flags): its quick class if the
/// size is exactly a quick class's, else `NUM_QUICK`, the bin that takes nothing. The free hot
/// path's lookup (a compare, a shift and a table load).
#[inline(always)]
pub fn quick_bin_of_block(lo: u32) -> usize {
    // The flags below the grain fall out of the index; sizes are multiples of the grain.
    let lo = lo as usize;
    if lo > QUICK_MAX_BLOCK | (GRAIN - 1) {
        return NUM_QUICK;
    }
    EXACT_CLASS[lo / GRAIN] as usize
}

/// The size a block for `n` bytes is given: the class size for quick classes, otherwise the exact
/// grain-rounded size. `None` for impossible requests.
#[inline]
pub fn alloc_block_size(n: usize) -> Option<usize> {
    match quick_class_of_request(n) {
        Some(c) => Some(QUICK_SIZE[c] as usize),
        None => block_size(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_and_cover_every_size() {
        for c in 1..NUM_CLASSES - 1 {
            assert!(class_size(c) > class_size(c - 1), "class {c}");
            assert_eq!(class_size(c) % GRAIN, 0, "class {c} size not grain-aligned");
        }
        // Every grain-multiple size maps to the class whose range holds it.
        let mut s = MIN_BLOCK;
        while s < 1 << 28 {
            let c = class_of(s);
            assert!(s <= class_size(c), "size {s} above its class {c}");
            if c > 0 {
                assert!(s > class_size(c - 1), "size {s} fits a lower class than {c}");
            }
            s += if s < 1 << 16 { GRAIN } else { s / 64 / GRAIN * GRAIN };
        }
        assert_eq!(class_of(usize::MAX / 2), NUM_CLASSES - 1);
    }

    #[test]
    fn geometric_waste_is_bounded() {
        for c in LINEAR_CLASSES..NUM_CLASSES - 1 {
            let (lo, hi) = (class_size(c - 1), class_size(c));
            // The worst request in the class is one grain above the previous class.
            let waste = (hi - (lo + GRAIN)) as f64 / (lo + GRAIN) as f64;
            assert!(waste <= 0.25, "class {c}: {lo}..{hi} wastes {waste}");
        }
    }

    #[test]
    fn block_mapping_matches_the_slow_formula() {
        let mut s = MIN_BLOCK;
        while s <= QUICK_MAX_BLOCK + 4096 {
            let slow = Some(class_of(s)).filter(|&c| c < NUM_QUICK && class_size(c) == s);
            assert_eq!(quick_class_of_block(s), slow, "block {s}");
            for flags in [0, 1, 2, 3] {
                assert_eq!(quick_bin_of_block((s | flags) as u32), slow.unwrap_or(NUM_QUICK), "block {s} | {flags}");
            }
            s += GRAIN;
        }
    }

    #[test]
    fn request_mapping_matches_the_slow_formula() {
        for n in 0..=QUICK_MAX_REQUEST + 4096 {
            let slow = block_size(n).map(class_of).filter(|&c| c < NUM_QUICK);
            assert_eq!(quick_class_of_request(n), slow, "request {n}");
            if let Some(c) = slow {
                assert!(QUICK_SIZE[c] as usize - BLOCK_OVERHEAD >= n);
                assert_eq!(quick_class_of_block(QUICK_SIZE[c] as usize), Some(c));
            }
        }
        assert_eq!(block_size(MAX_REQUEST + 1), None);
        assert_eq!(block_size(0), Some(MIN_BLOCK));
    }

    #[test]
    fn power_of_two_requests_fit_their_class_exactly() {
        let mut n = 64;
        while n <= QUICK_MAX_REQUEST {
            let c = quick_class_of_request(n).unwrap();
            assert_eq!(QUICK_SIZE[c] as usize, block_size(n).unwrap(), "request {n}");
            n *= 2;
        }
    }

    #[test]
    fn default_layout_is_as_documented() {
        if GRAIN == 16 && NUM_CLASSES == 128 {
            assert_eq!(LINEAR_CLASSES, 64);
            assert_eq!(class_size(0), 32);
            assert_eq!(class_size(63), 1040);
            assert_eq!(class_size(64), 1296);
            assert_eq!(class_size(67), 2064);
            assert_eq!(QUICK_MAX_BLOCK, 28 * 1024 + 16);
            assert_eq!(NUM_QUICK, 64 + 19);
        }
    }
}
