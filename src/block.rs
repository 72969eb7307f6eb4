//! The block: the unit the core hands out, and the metadata around every user pointer.
//!
//! ```text
//!   block b (b + 8 is ALIGNMENT-aligned)                         next block
//!   |                                                            |
//!   v                                                            v
//!   +-----------+--------------------------------------+---------+-----------
//!   |  header   |  payload: the user's bytes           | footer  | header ...
//!   |  8 bytes  |  (size - 16 bytes usable)            | 8 bytes |
//!   +-----------+--------------------------------------+---------+-----------
//!               ^ user pointer p = b + 8
//!
//!   header (64 bits):  | check:16 | size:45..48 bits (a multiple of the grain) | mapped:1 | state:2 |
//!   footer (64 bits):  | check:16 | size                                        |    0     |    0    |
//! ```
//!
//! - `size` counts the whole block, header and footer included; blocks tile their segment exactly.
//! - `state` is `IN_USE` (the user owns it), `QUICK` (freed, parked in a thread cache or a quick
//!   list, not coalesced), `FREE` (coalesced, in a bin or the top) or `FENCE` (a segment's end).
//! - The footer repeats the size so that a freed neighbour can find the block's start: it is what
//!   makes coalescing with the left neighbour possible.
//! - `check` is a 16-bit keyed hash of the word's address and its low 48 bits. A header that was
//!   overwritten, a pointer into the middle of a block, or a forged block fails the check with
//!   probability 1 - 2^-16 without knowing the per-process secret. The check is linear in the low
//!   bits (`fold16`), so a state change is a single XOR of the word with a constant.
//! - Free-list links live in the payload: quick lists and thread caches use one encoded word
//!   (`encode_link`), bins use two plain words (next, prev) guarded by the heap lock.
//! - Mapped blocks (their own `mmap`) have the `mapped` bit, `size` = the mapping's length, no
//!   footer, and one more word before the header: the offset of `p` from the mapping's start.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::config::WORD;

/// State bits of a header.
pub const STATE_MASK: u64 = 0b11;
/// A segment's end marker: never freeable, never coalesced.
pub const FENCE: u64 = 0b00;
/// Handed out to the user.
pub const IN_USE: u64 = 0b01;
/// Freed, parked in a thread cache or a quick list; the heap sees it as not free.
pub const QUICK: u64 = 0b10;
/// Free and coalesced: in a bin, or the top block.
pub const FREE: u64 = 0b11;
/// The block has a mapping of its own.
pub const MAPPED: u64 = 0b100;
/// All flag bits (below the smallest grain, 8).
pub const FLAG_MASK: u64 = 0b111;

/// Bits covered by the check: everything but the check itself.
pub const LOW_MASK: u64 = (1 << 48) - 1;
/// The size field of a header or footer.
pub const SIZE_MASK: u64 = LOW_MASK & !FLAG_MASK;

/// Bytes between a block's start and its user pointer.
pub const HEADER: usize = WORD;

/// XOR that turns an `IN_USE` header into a `QUICK` one and back (state bits and their check).
pub const FLIP_IN_USE_QUICK: u64 = flip(IN_USE, QUICK);
/// XOR that turns a `QUICK` header into `FREE`.
pub const FLIP_QUICK_FREE: u64 = flip(QUICK, FREE);

const fn flip(a: u64, b: u64) -> u64 {
    let d = a ^ b;
    d | (fold16(d) << 48)
}

/// Folds the low 48 bits into 16; linear in XOR, so a change of flags is a constant XOR.
#[inline(always)]
const fn fold16(low: u64) -> u64 {
    (low ^ (low >> 16) ^ (low >> 32)) & 0xFFFF
}

/// The keyed part of the check: a 16-bit hash of the word's address.
#[inline(always)]
fn hash16(addr: usize, secret: u64) -> u64 {
    ((addr as u64) ^ secret).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48
}

/// The metadata word for `addr` holding `low` (size and flags), with its check.
#[inline(always)]
pub fn seal(addr: usize, low: u64, secret: u64) -> u64 {
    debug_assert!(low & !LOW_MASK == 0);
    low | ((hash16(addr, secret) ^ fold16(low)) << 48)
}

/// Whether `word`, read at `addr`, carries a valid check.
#[inline(always)]
pub fn is_sealed(addr: usize, word: u64, secret: u64) -> bool {
    (word >> 48) == hash16(addr, secret) ^ fold16(word & LOW_MASK)
}

/// The size field of a header or footer word.
#[inline(always)]
pub const fn size_of(word: u64) -> usize {
    (word & SIZE_MASK) as usize
}

/// The state field of a header word.
#[inline(always)]
pub const fn state_of(word: u64) -> u64 {
    word & STATE_MASK
}

/// The metadata word at `addr`, which must be 8-aligned and readable.
///
/// # Safety
/// `addr` must point into memory the heap owns (a segment or a mapping).
#[inline(always)]
pub unsafe fn word_at<'a>(addr: usize) -> &'a AtomicU64 {
    // SAFETY: the caller guarantees `addr` is an aligned, live word of heap memory. Headers are
    // accessed atomically because a thread owning a block flips its state while the heap-lock
    // holder may read it as a neighbour.
    unsafe { AtomicU64::from_ptr(addr as *mut u64) }
}

/// Reads the metadata word at `addr`.
///
/// # Safety
/// As for [`word_at`].
#[inline(always)]
pub unsafe fn load(addr: usize) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { word_at(addr) }.load(Ordering::Relaxed)
}

/// Writes the metadata word at `addr`.
///
/// # Safety
/// As for [`word_at`], and the caller owns the block the word belongs to.
#[inline(always)]
pub unsafe fn store(addr: usize, w: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { word_at(addr) }.store(w, Ordering::Relaxed)
}

/// Writes a block's header and footer for `size` bytes in `state`.
///
/// # Safety
/// The caller owns `[b, b + size)`, which lies inside a segment.
#[inline]
pub unsafe fn write_tags(b: usize, size: usize, state: u64, secret: u64) {
    // SAFETY: the caller owns the whole block, so both words are its own.
    unsafe {
        store(b, seal(b, size as u64 | state, secret));
        let f = b + size - WORD;
        store(f, seal(f, size as u64, secret));
    }
}

/// Encodes a quick-list link stored at `slot`: the next user pointer, hidden by the slot's address
/// and the secret so that a stray or malicious write cannot steer the allocator to a chosen
/// address (it decodes to garbage, which the range check rejects).
#[inline(always)]
pub fn encode_link(slot: usize, next: usize, secret: u64) -> usize {
    next ^ (slot >> 12) ^ secret as usize
}

/// Inverse of [`encode_link`].
#[inline(always)]
pub fn decode_link(slot: usize, word: usize, secret: u64) -> usize {
    word ^ (slot >> 12) ^ secret as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: u64 = 0x1234_5678_9abc_def1;

    #[test]
    fn seal_round_trips_and_detects_changes() {
        let b = 0x7f00_0000_1008usize;
        let w = seal(b, 4096 | IN_USE, SECRET);
        assert!(is_sealed(b, w, SECRET));
        assert_eq!(size_of(w), 4096);
        assert_eq!(state_of(w), IN_USE);
        // Another address, another secret, or any single flipped low bit breaks the seal.
        assert!(!is_sealed(b + 16, w, SECRET));
        assert!(!is_sealed(b, w, SECRET ^ 1));
        for bit in 0..48 {
            assert!(!is_sealed(b, w ^ (1 << bit), SECRET), "bit {bit}");
        }
    }

    #[test]
    fn state_flips_keep_the_seal() {
        let b = 0x5555_0000_0008usize;
        let w = seal(b, 48 | IN_USE, SECRET);
        let q = w ^ FLIP_IN_USE_QUICK;
        assert!(is_sealed(b, q, SECRET));
        assert_eq!(state_of(q), QUICK);
        assert_eq!(q, seal(b, 48 | QUICK, SECRET));
        let f = q ^ FLIP_QUICK_FREE;
        assert_eq!(f, seal(b, 48 | FREE, SECRET));
        assert_eq!(q ^ FLIP_IN_USE_QUICK, w);
    }

    #[test]
    fn links_round_trip() {
        let slot = 0x7f12_3456_7890usize;
        let next = 0x7f12_3456_7000usize;
        let e = encode_link(slot, next, SECRET);
        assert_ne!(e, next);
        assert_eq!(decode_link(slot, e, SECRET), next);
        assert_ne!(decode_link(slot + 4096, e, SECRET), next);
    }

    #[test]
    fn random_words_rarely_pass() {
        // A block pointer into the middle of user data reads an arbitrary word as its header.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut passed = 0;
        for i in 0..200_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if is_sealed(0x1000 + i * 16, x, SECRET) {
                passed += 1;
            }
        }
        assert!(passed < 20, "{passed} random words passed the check");
    }
}
