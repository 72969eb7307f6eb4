//! Bins and the top: the coalesced free blocks (state `FREE`), behind the heap lock.
//!
//! A free block sits in the bin of its size's class (a doubly linked list through its first two
//! payload words, with a bitmap of non-empty bins), or is the top: the free block that ends at
//! the growable segment's fence. Freeing coalesces with both neighbours through the boundary
//! tags (`release`); allocating takes a best fit and splits the rest off (`take`, `carve`).
//! Big free blocks also carry, after their links, what memory return needs to know about them
//! (the epoch they were freed in, and which of their pages were given back).

use crate::block::{self, FREE, HEADER, PREV_FREE};
use crate::config::{MIN_BLOCK, NUM_CLASSES, PURGE_MIN, WORD};
use crate::diag::fatal;
use crate::size_class::{class_of, QUICK_MAX_BLOCK};

use super::reclaim::Reclaim;

/// A big free block's bookkeeping, after its header and links: the purge epoch it was freed in,
/// and the range of its pages already given back (`[start, end)`, absolute; empty if start >=
/// end), so that a purge advises only what is new.
pub(super) const FREED_EPOCH: usize = HEADER + 2 * WORD;

/// See `FREED_EPOCH`.
pub(super) const PURGED_START: usize = FREED_EPOCH + WORD;

/// See `FREED_EPOCH`.
pub(super) const PURGED_END: usize = PURGED_START + WORD;

/// Bytes at a free block's start that purging keeps (header, links, bookkeeping).
pub(super) const PURGE_KEEP: usize = PURGED_END + WORD;

/// No pages purged.
pub(super) const NOT_PURGED: (usize, usize) = (0, 0);

/// Blocks scanned in the request's own bin before moving to a bigger bin.
const BIN_SCAN_LIMIT: usize = 16;

/// Words of the bitmap of non-empty bins.
pub(super) const BITMAP_WORDS: usize = NUM_CLASSES.div_ceil(64);

/// The part of the heap behind the heap lock.
pub(super) struct Core {
    /// The heap's secret, copied here when the lock is first taken (see `Heap::lock_core`).
    pub(super) secret: u64,
    /// First block of each bin (0: empty); links are the payload's first two words.
    pub(super) bins: [usize; NUM_CLASSES],
    /// Bit `c` set when bin `c` is not empty.
    pub(super) bitmap: [u64; BITMAP_WORDS],
    /// The free block ending at `fence`, or 0.
    pub(super) top: usize,
    /// Right fence of the growable segment (the newest one), or 0 before the first growth.
    pub(super) fence: usize,
    /// Descriptor of the growable segment.
    pub(super) seg: usize,
    /// All segments, newest first.
    pub(super) segments: usize,
    /// Bytes in bins and the top.
    pub(super) free_bytes: usize,
    /// Number of FREE blocks (bins and top).
    pub(super) free_blocks: usize,
    /// Bytes in all segments.
    pub(super) heap_bytes: usize,
    /// What memory return remembers between calls (see `reclaim.rs`).
    pub(super) reclaim: Reclaim,
}

// The bins' links live in FREE blocks' payloads and are only touched under the heap lock.

/// The next block on `b`'s bin.
///
/// # Safety
/// `b` is a `FREE` block on a bin, and the caller holds the heap lock.
#[inline]
pub(super) unsafe fn link_next(b: usize) -> usize {
    // SAFETY: b is a FREE block of at least MIN_BLOCK bytes; its payload holds the links.
    unsafe { *((b + HEADER) as *const usize) }
}

/// The previous block on `b`'s bin (0 for the first).
///
/// # Safety
/// As for [`link_next`].
#[inline]
pub(super) unsafe fn link_prev(b: usize) -> usize {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER + WORD) as *const usize) }
}

/// Sets `b`'s next link.
///
/// # Safety
/// `b` is a `FREE` block the caller owns under the heap lock.
#[inline]
unsafe fn set_next(b: usize, v: usize) {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER) as *mut usize) = v }
}

/// Sets `b`'s previous link.
///
/// # Safety
/// As for [`set_next`].
#[inline]
unsafe fn set_prev(b: usize, v: usize) {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER + WORD) as *mut usize) = v }
}

impl Core {
    pub(super) const fn new() -> Self {
        Core {
            secret: 0,
            bins: [0; NUM_CLASSES],
            bitmap: [0; BITMAP_WORDS],
            top: 0,
            fence: 0,
            seg: 0,
            segments: 0,
            free_bytes: 0,
            free_blocks: 0,
            heap_bytes: 0,
            reclaim: Reclaim::new(),
        }
    }

    /// The header of block `b`, aborting (naming `func`) if its check fails.
    ///
    /// # Safety
    /// `b` is the address of a block header (or fence) inside one of the heap's segments.
    #[inline]
    pub(super) unsafe fn header(&self, b: usize, func: &str) -> u64 {
        // SAFETY: the caller passes the address of a block header inside a segment.
        let h = unsafe { block::load(b) };
        if !block::is_sealed(b, h, self.secret) {
            fatal(func, "corrupted block header at", b + HEADER);
        }
        h
    }

    /// The range of a FREE block's pages already given back (empty for small blocks). Read it
    /// before the block is changed.
    ///
    /// # Safety
    /// `b` is a `FREE` block of `size` bytes that the caller owns under the heap lock.
    pub(super) unsafe fn purged_range(&self, b: usize, size: usize) -> (usize, usize) {
        if size < PURGE_MIN {
            return NOT_PURGED;
        }
        // SAFETY: a FREE block this big holds its bookkeeping after its links.
        unsafe { (*((b + PURGED_START) as *const usize), *((b + PURGED_END) as *const usize)) }
    }

    /// Makes `[b, b + size)` a free block and puts it where it belongs: the top if it ends at the
    /// growable segment's fence, otherwise its bin. `purged` is the range of its pages already
    /// given back (clipped to the block; `NOT_PURGED` for none).
    ///
    /// # Safety
    /// The caller owns `[b, b + size)` inside a segment under the heap lock, and neither
    /// neighbour of it is `FREE`.
    pub(super) unsafe fn insert_range(&mut self, b: usize, size: usize, purged: (usize, usize)) {
        // SAFETY: the caller owns [b, b + size); the header after it (a block's or the fence's)
        // is a heap word, and its prev_free is ours to set under the heap lock.
        unsafe {
            block::write_tags(b, size, FREE, self.secret);
            block::set_prev_free(b + size, true);
        }
        self.free_bytes += size;
        self.free_blocks += 1;
        if size >= PURGE_MIN {
            // SAFETY: a block this big has room for its bookkeeping after its two links.
            unsafe {
                *((b + FREED_EPOCH) as *mut u64) = self.reclaim.epoch;
                *((b + PURGED_START) as *mut usize) = purged.0.max(b + PURGE_KEEP);
                *((b + PURGED_END) as *mut usize) = purged.1.min(b + size - WORD);
            }
        }
        if b + size == self.fence {
            self.top = b;
            self.reclaim.top_started_at(b);
            return;
        }
        let c = class_of(size);
        let head = self.bins[c];
        // SAFETY: b is now FREE and ours; head is FREE or 0.
        unsafe {
            set_next(b, head);
            set_prev(b, 0);
            if head != 0 {
                set_prev(head, b);
            }
        }
        self.bins[c] = b;
        self.bitmap[c / 64] |= 1 << (c % 64);
    }

    /// Takes a free block out of its bin (or out of the top).
    ///
    /// # Safety
    /// `b` is a `FREE` block of `size` bytes on a bin or the top, under the heap lock.
    pub(super) unsafe fn unlink(&mut self, b: usize, size: usize) {
        self.free_bytes -= size;
        self.free_blocks -= 1;
        if b == self.top {
            self.top = 0;
            return;
        }
        let c = class_of(size);
        // SAFETY: b is a FREE block in bin c; its neighbours in the list are FREE blocks too.
        unsafe {
            let (next, prev) = (link_next(b), link_prev(b));
            if (next != 0 && link_prev(next) != b) || (prev != 0 && link_next(prev) != b) || (prev == 0 && self.bins[c] != b) {
                fatal("free", "corrupted free list at", b + HEADER);
            }
            if prev == 0 {
                self.bins[c] = next;
            } else {
                set_next(prev, next);
            }
            if next != 0 {
                set_prev(next, prev);
            }
        }
        if self.bins[c] == 0 {
            self.bitmap[c / 64] &= !(1 << (c % 64));
        }
    }

    /// Frees a block the caller owns, coalescing it with free neighbours.
    ///
    /// # Safety
    /// The caller owns the block `[b, b + size)` inside a segment (its header says so) and holds
    /// the heap lock.
    pub(super) unsafe fn release(&mut self, mut b: usize, mut size: usize, func: &str) {
        let secret = self.secret;
        // SAFETY: b is a block inside a segment, so its header, the word before it when the block
        // before is FREE (that block's footer) and the header after it (a block or the right
        // fence) are heap words.
        unsafe {
            // The merged block keeps the larger purged range of its free neighbours.
            let mut purged = NOT_PURGED;
            if block::load(b) & PREV_FREE != 0 {
                let f = block::load(b - WORD);
                if !block::is_sealed(b - WORD, f, secret) {
                    fatal(func, "corrupted boundary tag before", b + HEADER);
                }
                let left_size = block::size_of(f);
                if left_size == 0 {
                    fatal(func, "corrupted boundary tag before", b + HEADER);
                }
                let l = b - left_size;
                let lh = self.header(l, func);
                if block::size_of(lh) != left_size || block::state_of(lh) != FREE {
                    fatal(func, "boundary tag disagrees with header at", l + HEADER);
                }
                purged = self.purged_range(l, left_size);
                self.unlink(l, left_size);
                // The absorbed header stays behind as stale bytes: mark it FREE so that a
                // second free of this pointer is still recognised as a double free.
                block::store(b, block::seal(b, size as u64 | FREE, secret));
                b = l;
                size += left_size;
            }
            let r = b + size;
            let rh = self.header(r, func);
            if block::state_of(rh) == FREE {
                let right_size = block::size_of(rh);
                let right_purged = self.purged_range(r, right_size);
                if right_purged.1.saturating_sub(right_purged.0) > purged.1.saturating_sub(purged.0) {
                    purged = right_purged;
                }
                self.unlink(r, right_size);
                size += right_size;
            }
            self.insert_range(b, size, purged);
        }
    }

    /// Finds and unlinks a free block of at least `need` bytes (not growing the heap).
    ///
    /// For requests beyond the quick classes: the best fit among the first `BIN_SCAN_LIMIT` blocks
    /// of the request's own bin, else of the nearest non-empty bigger bin, lower addresses winning
    /// ties: the tightest fit leaves the biggest holes whole for the requests that need them, and
    /// favouring low addresses keeps the heap's live part dense and its top free, where it can be
    /// trimmed. Smaller requests take the first fit in the same order.
    ///
    /// # Safety
    /// The caller holds the heap lock; the block returned is then the caller's.
    pub(super) unsafe fn take(&mut self, need: usize) -> Option<(usize, usize)> {
        let c = class_of(need);
        // SAFETY: bins hold FREE blocks inside segments.
        if let Some(found) = unsafe { self.best_in_bin(c, need) } {
            return Some(found);
        }
        if let Some(bc) = self.next_nonempty(c + 1) {
            // SAFETY: as above; every block of a bigger bin fits.
            if let Some(found) = unsafe { self.best_in_bin(bc, need) } {
                return Some(found);
            }
        }
        if self.top != 0 {
            let t = self.top;
            // SAFETY: the top is a FREE block.
            let size = block::size_of(unsafe { self.header(t, "malloc") });
            if size >= need {
                // SAFETY: as above.
                unsafe { self.unlink(t, size) };
                // The caller hands out [t, t + need) (and the top's sliver with it if the rest
                // is too small to be a block; otherwise the rest is the new top).
                self.reclaim.top_touched = self.reclaim.top_touched.max(t + need);
                return Some((t, size));
            }
        }
        None
    }

    /// The best fit for `need` among the first blocks of bin `c`, unlinked.
    ///
    /// # Safety
    /// As for [`Core::take`].
    unsafe fn best_in_bin(&mut self, c: usize, need: usize) -> Option<(usize, usize)> {
        let mut b = self.bins[c];
        let (mut best, mut best_size) = (0, usize::MAX);
        let mut scanned = 0;
        while b != 0 && (scanned < BIN_SCAN_LIMIT || (c == NUM_CLASSES - 1 && best == 0)) {
            // SAFETY: blocks on a bin are FREE blocks inside segments.
            let size = block::size_of(unsafe { self.header(b, "malloc") });
            if size >= need && (size < best_size || (size == best_size && b < best)) {
                (best, best_size) = (b, size);
                // Small requests (refills of quick classes) take the first fit: searching
                // further costs more than it saves, and their remainders go back to the bins
                // anyway.
                if size == need || need <= QUICK_MAX_BLOCK {
                    break;
                }
            }
            // SAFETY: as above.
            b = unsafe { link_next(b) };
            scanned += 1;
        }
        if best == 0 {
            return None;
        }
        // SAFETY: best is in bin c.
        unsafe { self.unlink(best, best_size) };
        Some((best, best_size))
    }

    /// The first non-empty bin at or after `from`.
    fn next_nonempty(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        if w >= BITMAP_WORDS {
            return None;
        }
        let mut bits = self.bitmap[w] & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            if w >= BITMAP_WORDS {
                return None;
            }
            bits = self.bitmap[w];
        }
    }

    /// Gives the first `need` bytes of the unlinked free block `(b, size)` the state `state`,
    /// returning the rest to the free lists. `need` is a valid block size <= `size`. Returns the
    /// size the block got (`size` itself when the rest is too small to be a block).
    ///
    /// # Safety
    /// The caller owns the unlinked block `[b, b + size)` under the heap lock.
    pub(super) unsafe fn carve(&mut self, b: usize, size: usize, need: usize, state: u64, purged: (usize, usize)) -> usize {
        let rest = size - need;
        // SAFETY: the caller owns [b, b + size), whose header is valid; the header after it is a
        // heap word.
        unsafe {
            // What lies before b does not change (a block grown in place may follow a FREE one).
            let state = state | (block::load(b) & PREV_FREE);
            if rest >= MIN_BLOCK {
                block::write_tags(b, need, state, self.secret);
                // The rest's right neighbour was the free block's neighbour: never FREE. It keeps
                // what was purged of its pages.
                self.insert_range(b + need, rest, purged);
                need
            } else {
                block::write_tags(b, size, state, self.secret);
                block::set_prev_free(b + size, false);
                size
            }
        }
    }
}
