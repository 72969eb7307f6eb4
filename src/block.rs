//! The block: the unit the core hands out, and the metadata around every user pointer.
//!
//! ```text
//!   block b (b + 8 is ALIGNMENT-aligned)                              next block
//!   |                                                                 |
//!   v                                                                 v
//!   +-----------+-----------------------------------------------------+-----------
//!   |  header   |  payload: the user's bytes (size - 8 usable)        | header ...
//!   |  8 bytes  |                                                     |
//!   +-----------+-----------------------------------------------------+-----------
//!               ^ user pointer p = b + 8
//!
//!   a FREE block also has a footer, in its last word (payload while the block is in use):
//!   +-----------+------------------------------------------+----------+
//!   |  header   |  next, prev links, (big blocks: purge     |  footer  |
//!   |           |  bookkeeping), then unused bytes          |  8 bytes |
//!   +-----------+------------------------------------------+----------+
//!
//!   header (64 bits): | check:16 | state:2 | checked:1 | sampled:1 | size:41 (bits 3..43) | 0 | mapped:1 | prev_free:1 |
//!   footer (64 bits): | check:16 | 0       | 0         | 0         | size                 | 0 | 0        | 0           |
//! ```
//!
//! - `size` counts the whole block, header included; blocks tile their segment exactly.
//! - `state` is `IN_USE` (the user owns it), `QUICK` (freed, parked in a thread cache or a quick
//!   list, not coalesced), `FREE` (coalesced, in a bin or the top) or `FENCE` (a segment's end).
//! - Only `FREE` blocks have a footer (the size again), so that a block being freed can find the
//!   start of a free left neighbour and coalesce with it. An in-use block lends that word to its
//!   user: 8 bytes of metadata per block, as glibc. `prev_free` in the next header says whether
//!   the footer before it is valid (the block before is `FREE`).
//! - Who writes what: the header's high half (state, `checked`, check) belongs to the block's
//!   owner, who flips `IN_USE` and `QUICK` without a lock (a thread cache); `prev_free`, in the
//!   low half, is written only under the heap lock, for any block, since it describes the
//!   neighbour. The halves are separate 32-bit words so that neither writer can undo the other's
//!   write, and the check does not cover `prev_free`.
//! - `check` is a 16-bit keyed hash of the word's address and of its size and `mapped` bit (one
//!   multiplication by the per-process secret, which is odd). A header that was overwritten, a
//!   pointer into the middle of a block, or a forged block fails the check with probability
//!   1 - 2^-16 without knowing the secret. The check leaves out the flags of the high half (state,
//!   `checked`, `sampled`), so that a state change is a single XOR of the high half; an overwrite
//!   that reaches them from the block before has rewritten the low half first, and a write from
//!   the block itself backwards has rewritten the check. The free hot path compares the whole
//!   high half with the one a plain live block must have (`live_high_half`): check, state and
//!   flags in one comparison.
//! - `checked` marks a block allocated in checking mode.
//! - `sampled` marks a live block whose allocation the profiler recorded (its free is recorded
//!   too). It is set and cleared only while the block is `IN_USE`, by its owner, in the high half.
//! - Free-list links live in the payload: quick lists and thread caches use one encoded word
//!   (`encode_link`), bins use two plain words (next, prev) guarded by the heap lock.
//! - Mapped blocks (their own `mmap`) have the `mapped` bit, `size` = the mapping's length, and
//!   one more word before the header: the offset of `p` from the mapping's start.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::config::WORD;

const _: () = assert!(cfg!(target_endian = "little"), "the header's halves assume little-endian words");

/// Where the state lives in a header.
const STATE_SHIFT: u32 = 46;
/// State bits of a header.
pub const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
/// A segment's end marker: never freeable, never coalesced.
pub const FENCE: u64 = 0b00 << STATE_SHIFT;
/// Handed out to the user.
pub const IN_USE: u64 = 0b01 << STATE_SHIFT;
/// Freed, parked in a thread cache or a quick list; the heap sees it as not free.
pub const QUICK: u64 = 0b10 << STATE_SHIFT;
/// Free and coalesced: in a bin, or the top block.
pub const FREE: u64 = 0b11 << STATE_SHIFT;
/// The block was allocated in checking mode (kept while it is `QUICK`).
pub const CHECKED: u64 = 1 << 45;
/// The profiler recorded this live block's allocation (see `profile`).
pub const SAMPLED: u64 = 1 << 44;
/// The block has a mapping of its own.
pub const MAPPED: u64 = 0b10;
/// The block before this one is `FREE`: the word before this header is its footer. Not covered
/// by the check; written under the heap lock only.
pub const PREV_FREE: u64 = 0b01;
/// Flag bits below the size (the smallest grain is 8).
pub const FLAG_MASK: u64 = 0b111;

/// The metadata bits (everything but the check).
pub const LOW_MASK: u64 = (1 << 48) - 1;
/// The bits the check covers: size and `mapped`.
const SEALED_MASK: u64 = LOW_MASK & !PREV_FREE & !(STATE_MASK | CHECKED | SAMPLED);
/// Where the covered bits go in the hashed word, above the address's.
const SEALED_SHIFT: u32 = 16;
/// The size field of a header or footer.
pub const SIZE_MASK: u64 = (SAMPLED - 1) & !FLAG_MASK;
/// Blocks and mappings are smaller than this (16 TiB).
pub const SIZE_LIMIT: usize = SAMPLED as usize;

/// Bytes between a block's start and its user pointer.
pub const HEADER: usize = WORD;

/// XOR that turns an `IN_USE` header into a `QUICK` one and back (state bits and their check).
pub const FLIP_IN_USE_QUICK: u64 = flip(IN_USE, QUICK);
/// XOR that turns a `QUICK` header into `FREE`.
pub const FLIP_QUICK_FREE: u64 = flip(QUICK, FREE);
/// XOR that sets or clears the `checked` mark.
pub const FLIP_CHECKED: u64 = flip(0, CHECKED);
/// XOR that sets or clears the `sampled` mark.
pub const FLIP_SAMPLED: u64 = flip(0, SAMPLED);

const fn flip(a: u64, b: u64) -> u64 {
    a ^ b
}
// Every flip stays in the high half, which the block's owner writes, and outside the check.
const _: () = assert!(
    FLIP_IN_USE_QUICK as u32 == 0 && FLIP_QUICK_FREE as u32 == 0 && FLIP_CHECKED as u32 == 0 && FLIP_SAMPLED as u32 == 0
);
const _: () = assert!((FLIP_IN_USE_QUICK | FLIP_QUICK_FREE | FLIP_CHECKED | FLIP_SAMPLED) & (SEALED_MASK | (0xFFFF << 48)) == 0);

/// The check of the word at `addr` holding `low`: the top 16 bits of the address and the covered
/// bits, multiplied by the (odd) secret.
#[inline(always)]
fn check16(addr: usize, low: u64, secret: u64) -> u64 {
    debug_assert!(secret & 1 == 1 || secret == 0);
    ((addr as u64) ^ ((low & SEALED_MASK) << SEALED_SHIFT)).wrapping_mul(secret) >> 48
}

/// A secret the checks can use: odd (0 stays 0, "not drawn yet").
pub const fn usable_secret(s: u64) -> u64 {
    if s == 0 { 0 } else { s | 1 }
}

/// The metadata word for `addr` holding `low` (size and flags), with its check.
#[inline(always)]
pub fn seal(addr: usize, low: u64, secret: u64) -> u64 {
    debug_assert!(low & !LOW_MASK == 0);
    low | (check16(addr, low, secret) << 48)
}

/// Whether `word`, read at `addr`, carries a valid check.
#[inline(always)]
pub fn is_sealed(addr: usize, word: u64, secret: u64) -> bool {
    (word >> 48) == check16(addr, word, secret)
}

/// The high half of the header at `addr` whose low half is `lo` if the block is sealed, `IN_USE`
/// and plain (neither `checked` nor `sampled`, under 4 GiB): the free hot path compares it with
/// the header's high half, one test for the check, the state and the flags.
#[inline(always)]
pub fn live_high_half(addr: usize, lo: u32, secret: u64) -> u32 {
    ((check16(addr, lo as u64, secret) << 16) | (IN_USE >> 32)) as u32
}

/// The size field of a header or footer word.
#[inline(always)]
pub const fn size_of(word: u64) -> usize {
    (word & SIZE_MASK) as usize
}

/// The size field of a header, or a size no quick class has when the block is `sampled`: the
/// free and realloc fast paths test the class anyway, so sampled blocks leave them for free.
#[inline(always)]
pub const fn quick_size_of(word: u64) -> usize {
    (word & (SIZE_MASK | SAMPLED)) as usize
}

/// The state field of a header word.
#[inline(always)]
pub const fn state_of(word: u64) -> u64 {
    word & STATE_MASK
}

/// The two halves of the metadata word at `addr`: (low, high).
///
/// # Safety
/// `addr` must be an 8-aligned word of memory the heap owns (a segment or a mapping).
#[inline(always)]
unsafe fn halves<'a>(addr: usize) -> (&'a AtomicU32, &'a AtomicU32) {
    // SAFETY: the caller guarantees an aligned, live word; each half is an aligned u32. Headers
    // are accessed atomically because a thread owning a block flips its high half while the
    // heap-lock holder reads it as a neighbour or sets `prev_free` in its low half.
    unsafe { (AtomicU32::from_ptr(addr as *mut u32), AtomicU32::from_ptr((addr + 4) as *mut u32)) }
}

/// Starts loading the memory at `addr` (a block's user pointer, say) into the cache, for a walk
/// of a free list whose blocks have left it: a hint that never faults, whatever the address.
#[inline(always)]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Reads the two halves of the metadata word at `addr`: (low, high).
///
/// # Safety
/// As for `halves`.
#[inline(always)]
pub unsafe fn load_halves(addr: usize) -> (u32, u32) {
    // SAFETY: forwarded from the caller.
    let (lo, hi) = unsafe { halves(addr) };
    (lo.load(Ordering::Relaxed), hi.load(Ordering::Relaxed))
}

/// Reads the metadata word at `addr`.
///
/// # Safety
/// As for `halves`.
#[inline(always)]
pub unsafe fn load(addr: usize) -> u64 {
    // SAFETY: forwarded from the caller.
    let (lo, hi) = unsafe { halves(addr) };
    lo.load(Ordering::Relaxed) as u64 | (hi.load(Ordering::Relaxed) as u64) << 32
}

/// Writes the metadata word at `addr`.
///
/// # Safety
/// As for `halves`, and the caller owns both halves: the block is its own and, when the word
/// is a header, the caller holds the heap lock or no other block can border it yet.
#[inline(always)]
pub unsafe fn store(addr: usize, w: u64) {
    // SAFETY: forwarded from the caller.
    let (lo, hi) = unsafe { halves(addr) };
    lo.store(w as u32, Ordering::Relaxed);
    hi.store((w >> 32) as u32, Ordering::Relaxed);
}

/// Applies one of the `FLIP_*` constants to the header at `addr`: the owner's state change,
/// confined to the high half.
///
/// # Safety
/// As for `halves`, and the caller owns the block.
#[inline(always)]
pub unsafe fn flip_state(addr: usize, x: u64) {
    debug_assert!(x as u32 == 0);
    // SAFETY: forwarded from the caller.
    let (_, hi) = unsafe { halves(addr) };
    hi.store(hi.load(Ordering::Relaxed) ^ (x >> 32) as u32, Ordering::Relaxed);
}

/// Sets or clears `prev_free` in the header at `addr` (a block's or a fence's).
///
/// # Safety
/// As for `halves`, and the caller holds the heap lock.
#[inline(always)]
pub unsafe fn set_prev_free(addr: usize, on: bool) {
    // SAFETY: forwarded from the caller.
    let (lo, _) = unsafe { halves(addr) };
    let w = lo.load(Ordering::Relaxed);
    let bit = PREV_FREE as u32;
    lo.store(if on { w | bit } else { w & !bit }, Ordering::Relaxed);
}

/// Writes a block's header for `size` bytes in `state` (which may carry `PREV_FREE`), and its
/// footer if the block is `FREE`.
///
/// # Safety
/// The caller owns `[b, b + size)`, which lies inside a segment, and holds the heap lock (or the
/// block is not reachable by anyone else yet).
#[inline]
pub unsafe fn write_tags(b: usize, size: usize, state: u64, secret: u64) {
    // SAFETY: the caller owns the whole block, so both words are its own.
    unsafe {
        store(b, seal(b, size as u64 | state, secret));
        if state & STATE_MASK == FREE {
            let f = b + size - WORD;
            store(f, seal(f, size as u64, secret));
        }
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
        assert!(!is_sealed(b, w, SECRET ^ 2));
        for bit in 1..44 {
            assert!(!is_sealed(b, w ^ (1 << bit), SECRET), "bit {bit}");
        }
        // The check of a plain live block is what the hot path expects in the high half.
        assert_eq!((w >> 32) as u32, live_high_half(b, w as u32, SECRET));
        assert_ne!((w >> 32) as u32, live_high_half(b + 16, w as u32, SECRET));
        let q = w ^ FLIP_IN_USE_QUICK;
        assert_ne!((q >> 32) as u32, live_high_half(b, q as u32, SECRET));
        // prev_free describes the neighbour and is written by another party: not covered.
        assert!(is_sealed(b, w | PREV_FREE, SECRET));
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
        let c = w ^ FLIP_CHECKED;
        assert_eq!(c, seal(b, 48 | IN_USE | CHECKED, SECRET));
        let s = w ^ FLIP_SAMPLED;
        assert_eq!(s, seal(b, 48 | IN_USE | SAMPLED, SECRET));
        assert_eq!(size_of(s), 48);
        assert!(quick_size_of(s) >= SIZE_LIMIT);
        assert_eq!(quick_size_of(w), 48);
    }

    #[test]
    fn owner_and_lock_holder_write_different_halves() {
        let mut word = [seal(0, 0, SECRET); 1];
        let b = word.as_mut_ptr() as usize;
        // SAFETY: a word of our own.
        unsafe {
            store(b, seal(b, 4096 | IN_USE, SECRET));
            set_prev_free(b, true);
            flip_state(b, FLIP_IN_USE_QUICK);
            let h = load(b);
            assert!(is_sealed(b, h, SECRET));
            assert_eq!(state_of(h), QUICK);
            assert_eq!(h & PREV_FREE, PREV_FREE);
            assert_eq!(size_of(h), 4096);
            set_prev_free(b, false);
            assert_eq!(load(b), seal(b, 4096 | QUICK, SECRET));
        }
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
