//! Segments: the regions the heap obtained from its source, and growth.
//!
//! A segment is laid out as `[descriptor][left fence][blocks...][right fence]`: the left fence is a
//! footer of size 0 and the right fence a header in state `FENCE`, so coalescing never leaves a
//! segment. The newest segment is the growable one: a region that follows it extends it (its
//! fence becomes the header of a free block over the new space); any other region starts a new
//! segment (extensions are never assumed contiguous).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::block::{self, FENCE, IN_USE, PREV_FREE};
use crate::config::{round_up, GRAIN, GROW_SHARE, GROW_STEP, PAGE, PURGE_MIN, WORD};
use crate::source::Source;

use super::bins::Core;
use super::Heap;

/// A segment's descriptor lives in its first bytes. `len` changes only under the heap lock, but
/// `validate` reads it without the lock (growth raises it after the new pages are marked;
/// trimming lowers it before they are given back).
#[repr(C)]
pub(super) struct Segment {
    /// The next older segment's descriptor (0 for the oldest).
    pub(super) next: usize,
    /// Bytes in the segment, descriptor and fences included.
    pub(super) len: AtomicUsize,
    /// Whether the segment came from the program break (so shrinking moves the break back).
    pub(super) from_brk: bool,
}

/// Bytes reserved for a segment's descriptor.
const SEGMENT_DESC: usize = 32;

/// Offset of a segment's first block: the descriptor, then the left fence (a footer of size 0),
/// placed so that the first user pointer is aligned.
pub(super) const FIRST_BLOCK: usize = round_up(SEGMENT_DESC + 2 * WORD, GRAIN) - WORD;

/// Bytes of a segment that are not blocks: descriptor, left fence, right fence.
pub(super) const SEGMENT_OVERHEAD: usize = FIRST_BLOCK + WORD;

const _: () = assert!(core::mem::size_of::<Segment>() <= SEGMENT_DESC);

impl Core {
    /// Writes the fence header at `f`.
    ///
    /// # Safety
    /// `f` is the last word of a segment the caller owns under the heap lock.
    pub(super) unsafe fn write_fence(&self, f: usize) {
        // SAFETY: f is the last word of a segment we own.
        unsafe { block::store(f, block::seal(f, FENCE, self.secret)) }
    }
}

impl<S: Source> Heap<S> {
    /// The growable segment's start and length as lock-free readers see them. A reader that
    /// races with `publish_segment` sees the old segment, an empty range, or the new one; a
    /// mix (the old start with the new length) is possible only for pointers that are not
    /// blocks of either, which are misuse anyway.
    #[inline(always)]
    pub(super) fn segment_view(&self) -> (usize, usize) {
        let lo = self.seg_lo.load(Ordering::Acquire);
        (lo, self.seg_len.load(Ordering::Acquire))
    }

    /// Makes `[start, start + len)` the growable segment for lock-free readers: the length
    /// goes to 0 first, so no reader pairs the new start with the old length.
    fn publish_segment(&self, start: usize, len: usize) {
        self.seg_len.store(0, Ordering::Release);
        self.seg_lo.store(start, Ordering::Release);
        self.seg_len.store(len, Ordering::Release);
    }

    /// `take`, falling back to consolidating the quick lists and then to growing the heap.
    ///
    /// # Safety
    /// `core` is the heap's own state, locked by the caller; the block returned is the caller's.
    pub(super) unsafe fn take_or_grow(&self, core: &mut Core, need: usize) -> Option<(usize, usize)> {
        // SAFETY: the caller holds the heap lock (core).
        unsafe {
            let mut found = core.take(need);
            if found.is_none() && self.quick_bytes.load(Ordering::Relaxed) >= need {
                self.consolidate(core);
                found = core.take(need);
            }
            if found.is_none() {
                self.grow(core, need)?;
                found = core.take(need);
            }
            let found = found?;
            if need >= PURGE_MIN {
                self.note_big_carve(core, need);
            }
            Some(found)
        }
    }

    /// Obtains at least `need` bytes of new block space from the source.
    ///
    /// # Safety
    /// As for [`Heap::take_or_grow`].
    pub(super) unsafe fn grow(&self, core: &mut Core, need: usize) -> Option<()> {
        let want = need.checked_add(SEGMENT_OVERHEAD + PAGE)?.max(core.heap_bytes / GROW_SHARE);
        let want = want.checked_add(GROW_STEP - 1)? & !(GROW_STEP - 1);
        let r = self.source.grow(want)?;
        let now = self.source.now_ms();
        core.reclaim.note_growth(now, self.decay_ms.load(Ordering::Relaxed));
        if !self.source.pages().mark(&self.source, r.start, r.len, self.tag) {
            self.source.shrink(r, r.len);
            return None;
        }
        self.note_os(r.len);
        core.heap_bytes += r.len;
        let secret = core.secret;
        // SAFETY: the region is fresh memory we own; the fences and descriptor are written before
        // any block of the region is used.
        unsafe {
            let seg = core.seg as *mut Segment;
            if core.seg != 0 && r.start == core.fence + WORD && (*seg).from_brk == r.from_brk {
                // Contiguous: the old fence becomes the header of a block spanning the new space.
                let len = (*seg).len.load(Ordering::Relaxed) + r.len;
                let b = core.fence;
                // The fence's prev_free (the top before it) carries over to the new block.
                let prev_free = block::load(b) & PREV_FREE;
                core.fence = r.start + r.len - WORD;
                core.write_fence(core.fence);
                block::write_tags(b, core.fence - b, IN_USE | prev_free, secret);
                core.release(b, core.fence - b, "malloc");
                (*seg).len.store(len, Ordering::Release);
                self.seg_len.store(len, Ordering::Release);
            } else {
                let s = r.start as *mut Segment;
                s.write(Segment { next: core.segments, len: AtomicUsize::new(r.len), from_brk: r.from_brk });
                core.segments = r.start;
                core.seg = r.start;
                // Addresses of the old segment say nothing about the new one's top.
                core.reclaim.new_segment();
                let first = r.start + FIRST_BLOCK;
                block::store(first - WORD, block::seal(first - WORD, 0, secret));
                // The old top stays a free block of its segment, now in a bin.
                let old_top = core.top;
                if old_top != 0 {
                    let size = block::size_of(core.header(old_top, "malloc"));
                    let purged = core.purged_range(old_top, size);
                    core.unlink(old_top, size);
                    core.fence = 0;
                    core.insert_range(old_top, size, purged);
                }
                core.fence = r.start + r.len - WORD;
                core.write_fence(core.fence);
                block::write_tags(first, core.fence - first, IN_USE, secret);
                core.release(first, core.fence - first, "malloc");
                self.publish_segment(r.start, r.len);
            }
        }
        Some(())
    }
}
