//! The invariant check (`my_alloc_check_heap`, and after every operation in debug builds).
//!
//! 1. Each segment is tiled exactly by blocks from its first block to its right fence; every
//!    header is sealed; every `FREE` block has a sealed footer that agrees on the size; and each
//!    header's (and fence's) `prev_free` says exactly whether the block before it is `FREE`.
//! 2. No two neighbouring blocks are both `FREE` (free blocks are always coalesced).
//! 3. Every `FREE` block is either the top (the block right before the growable segment's fence)
//!    or in exactly the bin of its size's class; bins are well-formed doubly linked lists.
//! 4. Every block on a quick list is `QUICK` and of its class's size (or more by a sliver too small
//!    to split off); each chain's recorded tail and length are its own; `quick_bytes` counts the
//!    blocks' class sizes.
//! 5. Byte and block counters (free, heap, quick) match what the walk finds.

use core::sync::atomic::Ordering;

use crate::block::{self, CHECKED, FENCE, FREE, HEADER, IN_USE, MAPPED, PREV_FREE, QUICK};
use crate::config::{GRAIN, MIN_BLOCK, NUM_CLASSES, WORD};
use crate::diag::fatal_invariant;
use crate::size_class::{class_of, NUM_QUICK, QUICK_SIZE};
use crate::source::Source;

use super::bins::{link_next, link_prev};
use super::quick_list::quick_size_fits;
use super::segment::{Segment, FIRST_BLOCK};
use super::Heap;

/// What [`Heap::check`] counted while verifying the invariants.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeapReport {
    /// Segments walked.
    pub segments: usize,
    /// Blocks in use (by the user, or held by thread caches as `QUICK`).
    pub in_use_blocks: usize,
    /// `QUICK` blocks found in segments.
    pub quick_blocks: usize,
    /// `QUICK` blocks on the quick lists.
    pub listed_quick_blocks: usize,
    /// `QUICK` blocks in the inbox (sent home by other heaps' threads, not yet parked).
    pub inbox_blocks: usize,
    /// `FREE` blocks (bins and top).
    pub free_blocks: usize,
    /// Bytes in `FREE` blocks.
    pub free_bytes: usize,
    /// Bytes in all segments.
    pub heap_bytes: usize,
    /// Size of the top block (0 if none).
    pub top_bytes: usize,
}

/// Runs the invariant check when dropped, in the crate's own debug-build tests: an entry point
/// that starts with `let _check = self.check_on_exit();` has the whole heap verified after each
/// call, once the locks it took are released. Everywhere else (release builds, and the debug
/// builds of programs that depend on the crate, for which a walk of the heap per call would be
/// far too slow) it compiles to nothing.
pub(super) struct CheckOnExit<'a, S: Source>(&'a Heap<S>);

impl<S: Source> Drop for CheckOnExit<'_, S> {
    #[inline(always)]
    fn drop(&mut self) {
        if !cfg!(all(debug_assertions, test)) {
            return;
        }
        // A test that expects a diagnosis unwinds through here: its heap is broken on purpose.
        #[cfg(test)]
        if std::thread::panicking() {
            return;
        }
        if let Err(what) = self.0.check() {
            fatal_invariant(what);
        }
    }
}

impl<S: Source> Heap<S> {
    /// Calls `f` with the user pointer and header of every sealed `IN_USE` block in the heap's
    /// segments (mapped blocks are not in segments), under the heap lock; stops at the first
    /// block whose header is not sealed (the check reports that). For checking mode's scan at
    /// exit: `f` must not call into the heap.
    pub fn for_each_in_use(&self, mut f: impl FnMut(usize, u64)) {
        let core = self.lock_core();
        let mut seg = core.segments;
        // SAFETY: the heap lock is held; the walk only reads headers inside segments, and stops
        // at anything that is not a sealed block of a plausible size.
        unsafe {
            while seg != 0 {
                let s = &*(seg as *const Segment);
                let fence = seg + s.len.load(Ordering::Relaxed) - WORD;
                let mut b = seg + FIRST_BLOCK;
                while b < fence {
                    let h = block::load(b);
                    let size = block::size_of(h);
                    if !block::is_sealed(b, h, core.secret) || size < MIN_BLOCK || b + size > fence {
                        return;
                    }
                    if block::state_of(h) == IN_USE {
                        f(b + HEADER, h);
                    }
                    b += size;
                }
                seg = s.next;
            }
        }
    }

    /// See [`CheckOnExit`].
    #[inline(always)]
    pub(super) fn check_on_exit(&self) -> CheckOnExit<'_, S> {
        CheckOnExit(self)
    }

    /// Verifies every invariant of the heap (see the module's documentation) and counts what it
    /// saw. Takes every lock; blocks held by thread caches count as `QUICK` blocks in segments.
    pub fn check(&self) -> Result<HeapReport, &'static str> {
        let core = self.lock_core();
        let quick: [_; NUM_QUICK] = ::core::array::from_fn(|c| self.quick[c].lock());
        let secret = core.secret;
        let mut rep = HeapReport::default();
        let mut seg = core.segments;
        let mut quick_bytes_in_segments = 0;
        // SAFETY: every lock is held; the walk only reads memory inside segments.
        unsafe {
            while seg != 0 {
                rep.segments += 1;
                let s = &*(seg as *const Segment);
                let len = s.len.load(Ordering::Relaxed);
                rep.heap_bytes += len;
                let first = seg + FIRST_BLOCK;
                let fence = seg + len - WORD;
                if block::load(first - WORD) != block::seal(first - WORD, 0, secret) {
                    return Err("left fence damaged");
                }
                if block::load(fence) & !PREV_FREE != block::seal(fence, FENCE, secret) {
                    return Err("right fence damaged");
                }
                let mut b = first;
                let mut prev_free = false;
                while b < fence {
                    let h = block::load(b);
                    if !block::is_sealed(b, h, secret) {
                        return Err("header check failed");
                    }
                    if (h & PREV_FREE != 0) != prev_free {
                        return Err("prev_free disagrees with the block before");
                    }
                    let size = block::size_of(h);
                    if size < MIN_BLOCK || size % GRAIN != 0 || b + size > fence {
                        return Err("block size out of range");
                    }
                    if block::state_of(h) == FREE {
                        let f = b + size - WORD;
                        if block::load(f) != block::seal(f, size as u64, secret) {
                            return Err("footer does not match header");
                        }
                        if h & CHECKED != 0 {
                            return Err("checking-mode mark on a free block");
                        }
                    }
                    match block::state_of(h) {
                        FREE => {
                            if prev_free {
                                return Err("two neighbouring free blocks");
                            }
                            rep.free_blocks += 1;
                            rep.free_bytes += size;
                            if b == core.top {
                                if b + size != core.fence {
                                    return Err("top is not at the fence");
                                }
                                rep.top_bytes = size;
                            }
                        }
                        QUICK => {
                            rep.quick_blocks += 1;
                            quick_bytes_in_segments += size;
                        }
                        IN_USE => rep.in_use_blocks += 1,
                        _ => return Err("fence inside a segment"),
                    }
                    if h & MAPPED != 0 {
                        return Err("mapped flag on a heap block");
                    }
                    prev_free = block::state_of(h) == FREE;
                    b += size;
                }
                if b != fence {
                    return Err("blocks do not tile the segment");
                }
                if (block::load(fence) & PREV_FREE != 0) != prev_free {
                    return Err("the fence's prev_free disagrees with the last block");
                }
                seg = s.next;
            }
            // Bins: well-formed lists of FREE blocks of the right class.
            let mut listed = 0;
            for c in 0..NUM_CLASSES {
                let nonempty = core.bitmap[c / 64] & (1 << (c % 64)) != 0;
                if nonempty != (core.bins[c] != 0) {
                    return Err("bitmap disagrees with bins");
                }
                let mut b = core.bins[c];
                let mut prev = 0;
                while b != 0 {
                    if self.source.pages().owner(b) != self.tag {
                        return Err("bin entry outside the heap");
                    }
                    let h = block::load(b);
                    if !block::is_sealed(b, h, secret) || block::state_of(h) != FREE {
                        return Err("bin entry is not a free block");
                    }
                    if class_of(block::size_of(h)) != c {
                        return Err("block in the wrong bin");
                    }
                    if link_prev(b) != prev {
                        return Err("bin back link broken");
                    }
                    if b == core.top {
                        return Err("top on a bin");
                    }
                    listed += 1;
                    if listed > rep.free_blocks {
                        return Err("bin lists longer than the free blocks (cycle?)");
                    }
                    prev = b;
                    b = link_next(b);
                }
            }
            if listed + (core.top != 0) as usize != rep.free_blocks {
                return Err("free blocks missing from the bins");
            }
            if rep.free_bytes != core.free_bytes {
                return Err("free byte count is off");
            }
            if rep.free_blocks != core.free_blocks {
                return Err("free block count is off");
            }
            if rep.heap_bytes != core.heap_bytes {
                return Err("heap byte count is off");
            }
            // Quick lists.
            // quick_bytes counts class sizes (a slivered block counts as its class).
            let (mut listed_bytes, mut listed_class_bytes) = (0, 0);
            for (c, q) in quick.iter().enumerate() {
                let mut n = 0;
                for i in 0..q.chains {
                    let mut p = q.heads[i];
                    let mut in_chain = 0;
                    let mut last = 0;
                    while p != 0 {
                        let b = p - HEADER;
                        if self.source.pages().owner(b) != self.tag {
                            return Err("quick entry outside the heap");
                        }
                        let h = block::load(b);
                        if !block::is_sealed(b, h, secret) || block::state_of(h) != QUICK {
                            return Err("quick entry is not a quick block");
                        }
                        if !quick_size_fits(block::size_of(h), c) {
                            return Err("quick entry of the wrong class");
                        }
                        listed_bytes += block::size_of(h);
                        listed_class_bytes += QUICK_SIZE[c] as usize;
                        n += 1;
                        if n > rep.quick_blocks {
                            return Err("quick list longer than the quick blocks (cycle?)");
                        }
                        in_chain += 1;
                        last = p;
                        p = block::decode_link(p, *(p as *const usize), secret);
                    }
                    if in_chain != q.counts[i] || last != q.tails[i] {
                        return Err("quick list chain count or tail is off");
                    }
                }
                if n != q.len {
                    return Err("quick list length is off");
                }
                rep.listed_quick_blocks += n;
            }
            if listed_class_bytes != self.quick_bytes.load(Ordering::Relaxed) {
                return Err("quick byte count is off");
            }
            rep.inbox_blocks = self.check_inbox(rep.quick_blocks)?;
            if rep.listed_quick_blocks + rep.inbox_blocks > rep.quick_blocks || listed_bytes > quick_bytes_in_segments {
                return Err("quick lists hold blocks the segments do not");
            }
        }
        Ok(rep)
    }
}
