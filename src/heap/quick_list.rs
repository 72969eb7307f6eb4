//! The quick list's data structure: one class's parked `QUICK` blocks, as a stack of chains.
//!
//! Freed small blocks wait here, uncoalesced, for reuse by their own class; thread caches refill
//! from and flush to them in whole chains. The lock around each list and the policy (refill,
//! flush, consolidation) are in `quick.rs`.

use crate::block::{self, CHECKED, HEADER};
use crate::config::{MIN_BLOCK, WORD};
use crate::diag::fatal;
use crate::size_class::QUICK_SIZE;

/// Chains a quick list keeps apart before it joins new ones to the newest.
pub(super) const QUICK_CHAINS: usize = 16;

/// A quick list: `QUICK` blocks of one class, as a stack of chains linked through encoded
/// pointers, each as a thread cache flushed it (or a single freed block). Keeping the chains apart,
/// with their tails, lets a refill take a whole one in one step: cutting a batch off one long
/// chain walks it, a dependent load per block from blocks that have often left the cache.
pub(super) struct QuickList {
    /// Chain `i < chains` runs from `heads[i]` to `tails[i]` (whose link is 0), `counts[i]`
    /// blocks; the newest is last.
    pub(super) heads: [usize; QUICK_CHAINS],
    /// See `heads`.
    pub(super) tails: [usize; QUICK_CHAINS],
    /// See `heads`.
    pub(super) counts: [usize; QUICK_CHAINS],
    /// Chains on the stack.
    pub(super) chains: usize,
    /// Blocks on all chains.
    pub(super) len: usize,
    /// Segments at the front of chain 0 (the only one joins grow) whose head blocks record
    /// where they end (see `record_segment`).
    recorded: usize,
}

impl QuickList {
    /// An empty list.
    pub(super) const fn new() -> Self {
        QuickList { heads: [0; QUICK_CHAINS], tails: [0; QUICK_CHAINS], counts: [0; QUICK_CHAINS], chains: 0, len: 0, recorded: 0 }
    }

    /// Adds the chain `head`..`tail` of `n` blocks, which the caller owned.
    ///
    /// # Safety
    /// The chain's blocks are `QUICK` blocks of this list's class; their links are the caller's.
    pub(super) unsafe fn push(&mut self, head: usize, tail: usize, n: usize, secret: u64) {
        if self.chains == QUICK_CHAINS {
            // Join the two oldest chains (the second oldest first, then the oldest), so that the
            // newest, which refills take first, stay whole. The second oldest was never joined
            // (joins only grow the oldest): it is one segment, which a refill can take off again
            // without walking it if its head block records where it ends.
            let (h1, t1) = (self.heads[1], self.tails[1]);
            // SAFETY: h1 and t1 are QUICK blocks on this list; the lock holder owns their links
            // and the payload words after them.
            let recorded = unsafe {
                *(t1 as *mut usize) = block::encode_link(t1, self.heads[0], secret);
                record_segment(h1, t1, self.counts[1], secret)
            };
            // An unrecorded segment hides the records behind it: from there on, chain 0 is walked.
            self.recorded = if recorded { self.recorded + 1 } else { 0 };
            self.heads[0] = self.heads[1];
            self.counts[0] += self.counts[1];
            self.heads.copy_within(2.., 1);
            self.tails.copy_within(2.., 1);
            self.counts.copy_within(2.., 1);
            self.chains -= 1;
        }
        // SAFETY: tail is a QUICK block the caller owned; its link is ours to set.
        unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
        let i = self.chains;
        (self.heads[i], self.tails[i], self.counts[i]) = (head, tail, n);
        self.chains += 1;
        self.len += n;
    }

    /// Takes the newest chain whole if it has at most `whole` blocks; else, when the chain was
    /// joined and its first segment has at most `whole` blocks, that segment; else its first `max`
    /// blocks (`max` >= 1). Returns the chain taken (last link 0), or `None` when the list is
    /// empty. `quick_block(p)` says whether `p` is a sealed `QUICK` block of this list's class.
    pub(super) fn take(
        &mut self,
        max: usize,
        whole: usize,
        heap_next: impl Fn(usize) -> usize,
        quick_block: impl Fn(usize) -> bool,
        secret: u64,
    ) -> Option<(usize, usize, usize)> {
        if self.chains == 0 {
            return None;
        }
        let top = self.chains - 1;
        let (head, n) = (self.heads[top], self.counts[top]);
        if n <= whole.max(max) {
            // The tail's link must still end the chain: a use-after-free write there would
            // otherwise send the taker to an address of the writer's choosing.
            let tail = self.tails[top];
            if heap_next(tail) != 0 {
                fatal("malloc", "corrupted free list (use after free?) in block", tail);
            }
            self.chains -= 1;
            self.len -= n;
            if top == 0 {
                self.recorded = 0;
            }
            return Some((head, tail, n));
        }
        if top == 0 && self.recorded > 0 {
            // Chain 0 was joined: its first segment ends where its head block says.
            // SAFETY: head is a QUICK block on this list, ours under the lock.
            let (tail, k) = unsafe { recorded_segment(head, secret) };
            if k <= whole.max(max) {
                if k == 0 || k >= n || !quick_block(tail) {
                    fatal("malloc", "corrupted free list (use after free?) in block", head);
                }
                let next = heap_next(tail);
                if next == 0 {
                    fatal("malloc", "corrupted free list (chain shorter than its count) in block", tail);
                }
                // SAFETY: tail is a QUICK block now taken off the list; its link is ours to set.
                unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
                self.heads[0] = next;
                self.counts[0] -= k;
                self.len -= k;
                self.recorded -= 1;
                return Some((head, tail, k));
            }
        }
        if top == 0 {
            // The cut below splits the first segment: its record is lost, and so are those
            // behind it.
            self.recorded = 0;
        }
        let mut tail = head;
        for _ in 1..max {
            tail = heap_next(tail);
        }
        let next = heap_next(tail);
        if next == 0 {
            fatal("malloc", "corrupted free list (chain shorter than its count) in block", tail);
        }
        // SAFETY: tail is a QUICK block now taken off the list; its link is ours to set.
        unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
        self.heads[top] = next;
        self.counts[top] -= max;
        self.len -= max;
        Some((head, tail, max))
    }

    /// Takes every chain: the list is empty afterwards.
    pub(super) fn take_all(&mut self) -> ([usize; QUICK_CHAINS], usize) {
        let taken = (self.heads, self.chains);
        self.chains = 0;
        self.len = 0;
        self.recorded = 0;
        taken
    }
}

/// Records, in the head block of a segment about to be joined to an older chain, the segment's
/// tail and length, in the two payload words after the link (every block has them: a minimum
/// block holds three words), encoded as links are; returns whether it did. Blocks that checking
/// mode filled when they were freed are left as they are (their fill is verified when they are
/// handed out again): such a segment is walked when it is cut.
///
/// # Safety
/// `head` and `tail` are the first and last `QUICK` blocks of a segment of `n` blocks that the
/// caller owns.
unsafe fn record_segment(head: usize, tail: usize, n: usize, secret: u64) -> bool {
    // SAFETY: head is a QUICK block (its header is readable, its payload ours).
    unsafe {
        if block::load(head - HEADER) & CHECKED != 0 {
            return false;
        }
        let words = head as *mut usize;
        *words.add(1) = block::encode_link(head + WORD, tail, secret);
        *words.add(2) = block::encode_link(head + 2 * WORD, n | SEGMENT_MARK, secret);
    }
    true
}

/// The tail and length `record_segment` wrote into `head`'s block.
///
/// # Safety
/// `head` is a `QUICK` block the caller owns, the head of a recorded segment.
unsafe fn recorded_segment(head: usize, secret: u64) -> (usize, usize) {
    // SAFETY: head is a QUICK block whose payload the caller owns.
    let (tail, n) = unsafe {
        let words = head as *const usize;
        (block::decode_link(head + WORD, *words.add(1), secret), block::decode_link(head + 2 * WORD, *words.add(2), secret))
    };
    // Without the mark, the words are not a record (a use-after-free write changed them): abort
    // rather than cut the chain anywhere.
    if n & !SEGMENT_LEN_MASK != SEGMENT_MARK {
        fatal("malloc", "corrupted free list (use after free?) in block", head);
    }
    (tail, n & SEGMENT_LEN_MASK)
}

// A segment's record needs the link and two more payload words in every quick block.
const _: () = assert!(MIN_BLOCK - HEADER >= 3 * WORD);

/// High bits of a recorded segment length, so that a decoded record is recognised as one.
const SEGMENT_MARK: usize = 0x5e6 << 48;

/// The length's bits in a recorded segment length.
const SEGMENT_LEN_MASK: usize = (1 << 48) - 1;

/// Whether a block of `size` bytes may sit on quick class `c`'s lists: its class size, or more by
/// a sliver too small to have been split off when it was carved.
pub(super) fn quick_size_fits(size: usize, c: usize) -> bool {
    let class = QUICK_SIZE[c] as usize;
    size >= class && size - class < MIN_BLOCK
}
