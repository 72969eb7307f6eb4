//! Memory return: the top trimmed back to the source, big free blocks' pages purged, on a decay
//! clock and on carving (the resident budget, the other trigger, is in `budget.rs`).
//!
//! Three ways back to the OS: the top is trimmed (`sbrk` down, or `munmap` of a mapped segment's
//! tail) once it passes the trim threshold and the decay since the last growth has passed; free
//! blocks of at least `PURGE_MIN` in the middle of the heap have their interior pages advised
//! away once they stayed free for two purge passes; mapped blocks are unmapped (`mapped.rs`).
//! A nearly empty heap gives everything back at once, unless it keeps regrowing right after
//! (a back-off, doubling up to the decay).

use core::sync::atomic::Ordering;

use crate::block;
use crate::config::{round_up, CARVE_PURGE_SHARE, GRAIN, MIN_BLOCK, NEARLY_EMPTY, NUM_CLASSES, NEARLY_EMPTY_QUIET, PAGE, PURGE_MIN, TRIM_KEEP, WORD};
use crate::size_class::class_of;
use crate::source::{Region, Source};

use super::bins::{link_next, Core, FREED_EPOCH, PURGED_END, PURGED_START, PURGE_KEEP};
use super::segment::Segment;
use super::Heap;

/// What memory return remembers between calls, behind the heap lock (a part of `Core`).
pub(super) struct Reclaim {
    /// When the heap last grew (source clock, ms): trimming waits for the decay after it.
    pub(super) last_grow_ms: u64,
    /// Purge passes so far; a big free block records the epoch it was freed in.
    pub(super) epoch: u64,
    /// When the last purge pass ran (source clock, ms).
    pub(super) last_purge_ms: u64,
    /// `free_bytes` after the last purge forced by a nearly empty heap.
    pub(super) free_at_forced_purge: usize,
    /// When a nearly empty heap last gave everything back (`NEVER` once the heap regrew), and
    /// how long after a growth the next such release must wait.
    pub(super) last_empty_release_ms: u64,
    /// See `last_empty_release_ms`.
    pub(super) empty_backoff_ms: u64,
    /// Bytes carved for big blocks since the last purge pass (see `note_big_carve`).
    pub(super) carved_big: usize,
    /// The highest address the top has started at since the last timed purge pass: no
    /// allocation reached beyond it (see `purge`).
    pub(super) top_reach: usize,
    /// `top_reach` of the interval before.
    pub(super) top_reach_prev: usize,
    /// The highest address the top has started at since the growable segment began, lowered
    /// when the top is trimmed or purged: the top's pages beyond it were never handed out since
    /// (fresh from the source, or given back already), so a purge skips them.
    pub(super) top_touched: usize,
    /// Bytes carved since the resident memory was last checked against its budget (see
    /// `Heap::note_carved`).
    pub(super) carved_unchecked: usize,
}

impl Reclaim {
    pub(super) const fn new() -> Self {
        Reclaim {
            last_grow_ms: 0,
            epoch: 0,
            last_purge_ms: 0,
            free_at_forced_purge: 0,
            last_empty_release_ms: NEVER,
            empty_backoff_ms: 0,
            carved_big: 0,
            top_reach: 0,
            top_reach_prev: 0,
            top_touched: 0,
            carved_unchecked: 0,
        }
    }

    /// The heap grew at `now`. Regrowing within the decay of giving everything back means the
    /// release was a dip in a cycle: the next one backs off (doubling, up to the decay). A release
    /// that held for a whole decay resets the back-off.
    pub(super) fn note_growth(&mut self, now: u64, decay: u64) {
        self.last_grow_ms = now;
        if self.last_empty_release_ms != NEVER {
            if now.wrapping_sub(self.last_empty_release_ms) < decay {
                self.empty_backoff_ms = (self.empty_backoff_ms * 2).max(decay / NEARLY_EMPTY_QUIET).min(decay);
            } else {
                self.empty_backoff_ms = 0;
            }
            self.last_empty_release_ms = NEVER;
        }
    }

    /// A new growable segment began: addresses of the old one say nothing about its top.
    pub(super) fn new_segment(&mut self) {
        (self.top_reach, self.top_reach_prev, self.top_touched) = (0, 0, 0);
    }

    /// The top now starts at `t`: allocations reached there.
    pub(super) fn top_started_at(&mut self, t: usize) {
        self.top_reach = self.top_reach.max(t);
        self.top_touched = self.top_touched.max(t);
    }
}

/// What a purge pass gives back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PurgePass {
    /// Counted by carving (`note_big_carve`): big holes free for two passes.
    Carving,
    /// Counted by the clock (half the decay): those holes, and the top's pages beyond what
    /// allocations reached in the last two timed passes (but `TRIM_KEEP`): below the trim
    /// threshold, the top would otherwise stay resident however long the program idles.
    Timed,
    /// Every hole, at once (`malloc_trim`, a nearly empty heap: both trim the top themselves).
    Forced,
}

/// No such moment (yet).
const NEVER: u64 = u64::MAX;

impl<S: Source> Heap<S> {
    /// After memory came back to the heap: trims the top and purges big free blocks when their
    /// decay has passed (at once for the top when the heap is nearly empty).
    pub(super) fn maybe_release(&self, core: &mut Core) {
        let now = self.source.now_ms();
        let decay = self.decay_ms.load(Ordering::Relaxed);
        let held = core.heap_bytes - core.free_bytes;
        let in_use = held - self.quick_bytes.load(Ordering::Relaxed).min(held);
        // Nearly empty, and not a dip between the cycles of a program that keeps regrowing its
        // heap: each time the heap regrows soon after such a release, the next one waits longer
        // after the last growth (see `grow`).
        let nearly_empty = in_use < core.heap_bytes / NEARLY_EMPTY
            && now.wrapping_sub(core.reclaim.last_grow_ms) >= core.reclaim.empty_backoff_ms;
        if core.top != 0 {
            // SAFETY: the top is a FREE block in the growable segment.
            let top_size = block::size_of(unsafe { block::load(core.top) });
            if nearly_empty {
                // Nothing worth keeping for the next growth either.
                if self.trim_top(core, 0) {
                    core.reclaim.last_empty_release_ms = now;
                }
            } else if top_size > self.trim_threshold.load(Ordering::Relaxed).max(2 * self.mmap_threshold())
                && now.wrapping_sub(core.reclaim.last_grow_ms) >= decay
            {
                self.trim_top(core, TRIM_KEEP);
            }
        }
        // The mark follows free_bytes down (allocation, trimming), so it measures what was freed
        // since the last forced purge.
        core.reclaim.free_at_forced_purge = core.reclaim.free_at_forced_purge.min(core.free_bytes);
        if nearly_empty && core.free_bytes >= core.reclaim.free_at_forced_purge + PURGE_MIN {
            // Free blocks the top could not absorb (a few live blocks sit above them) go too,
            // each time another PURGE_MIN has been freed (a purge advises only new pages).
            self.purge(core, now, PurgePass::Forced);
            core.reclaim.free_at_forced_purge = core.free_bytes;
        } else if now.wrapping_sub(core.reclaim.last_purge_ms) >= decay / 2 {
            self.purge(core, now, PurgePass::Timed);
        }
    }

    /// Counts `need` bytes carved for a big block (from a hole, the top or a growth). Each time
    /// the count reaches 1/CARVE_PURGE_SHARE of the heap, a purge pass runs, as if a purge
    /// interval had passed: a hole that stayed free while the program carved that much twice
    /// elsewhere is not being reused, and its pages pin memory while the program touches others.
    pub(super) fn note_big_carve(&self, core: &mut Core, need: usize) {
        core.reclaim.carved_big += need;
        if core.reclaim.carved_big >= (core.heap_bytes / CARVE_PURGE_SHARE).max(PURGE_MIN) {
            core.reclaim.carved_big = 0;
            let now = self.source.now_ms();
            self.purge(core, now, PurgePass::Carving);
        }
    }

    /// Gives back the pages of free blocks that have not been reused (see `PurgePass`). Returns
    /// the bytes purged.
    pub(super) fn purge(&self, core: &mut Core, now: u64, pass: PurgePass) -> usize {
        let force = pass == PurgePass::Forced;
        let mut purged = 0;
        for c in class_of(PURGE_MIN)..NUM_CLASSES {
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock; their links
                // stay in the part kept.
                unsafe {
                    let aged = force || *((b + FREED_EPOCH) as *const u64) + 2 <= core.reclaim.epoch;
                    purged += self.purge_block(core, b, PURGE_KEEP, usize::MAX, aged);
                    b = link_next(b);
                }
            }
        }
        if core.top != 0 && pass == PurgePass::Timed {
            let t = core.top;
            // Keep TRIM_KEEP beyond the deepest start of the top over the last two intervals:
            // what lies further was not allocated for that long.
            let reach = core.reclaim.top_reach.max(core.reclaim.top_reach_prev).max(t);
            let from = reach - t + TRIM_KEEP;
            // SAFETY: the top is a FREE block we own under the heap lock.
            purged += unsafe { self.purge_block(core, t, from, core.reclaim.top_touched, true) };
            core.reclaim.top_touched = core.reclaim.top_touched.min(round_up(t + from, PAGE));
            core.reclaim.top_reach_prev = core.reclaim.top_reach;
            core.reclaim.top_reach = t;
        }
        core.reclaim.epoch += 1;
        core.reclaim.last_purge_ms = now;
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Gives back, in place, the pages of the top beyond `keep` bytes past its start: for a
    /// forced trim, when the top could not go back to the source (another user of the program
    /// break, the C library's own malloc in a Rust program, has moved the break past it).
    /// Returns the bytes purged.
    pub(super) fn purge_top(&self, core: &mut Core, keep: usize) -> usize {
        let t = core.top;
        if t == 0 {
            return 0;
        }
        let keep = keep.max(PURGE_KEEP);
        // SAFETY: the top is a FREE block we own under the heap lock.
        if keep >= block::size_of(unsafe { block::load(t) }) {
            return 0; // `pad` covers the whole top (it may be any number)
        }
        // SAFETY: as above.
        let purged = unsafe { self.purge_block(core, t, keep, core.reclaim.top_touched, true) };
        core.reclaim.top_touched = core.reclaim.top_touched.min(round_up(t + keep, PAGE));
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Gives back the pages of the free block `b` from `keep` bytes past its start to its footer
    /// (or to `limit`, beyond which it was never touched), if it is `aged` and big enough.
    /// Returns the bytes purged.
    ///
    /// # Safety
    /// `b` is a `FREE` block the caller owns under the heap lock (`core`).
    pub(super) unsafe fn purge_block(&self, core: &mut Core, b: usize, keep: usize, limit: usize, aged: bool) -> usize {
        // SAFETY: the caller owns the FREE block b; its bookkeeping follows its links, and only
        // whole pages between `keep` and the footer are given back.
        unsafe {
            let size = block::size_of(block::load(b));
            if !aged || size < PURGE_MIN || size <= keep {
                return 0;
            }
            let start = round_up(b + keep, PAGE);
            let end = ((b + size - WORD) & !(PAGE - 1)).min(limit.saturating_add(PAGE - 1) & !(PAGE - 1));
            if end <= start {
                return 0;
            }
            // Only what is not given back already: around the recorded range, whole pages of it
            // (a range clipped to a block's bounds, then merged into a bigger block, may end
            // mid-page: that page is not given back yet).
            let (done_start, done_end) = core.purged_range(b, size);
            let ds = round_up(done_start.clamp(start, end), PAGE);
            let de = done_end.clamp(start, end) & !(PAGE - 1);
            let pieces = if ds < de { [(start, ds), (de, end)] } else { [(start, end), (end, end)] };
            let mut purged = 0;
            for (from, to) in pieces {
                if to > from {
                    self.source.purge(from, to - from);
                    purged += to - from;
                }
            }
            *((b + PURGED_START) as *mut usize) = start;
            *((b + PURGED_END) as *mut usize) = end;
            purged
        }
    }

    /// Gives the top block's bytes beyond `keep` back to the source. Returns whether it did.
    pub(super) fn trim_top(&self, core: &mut Core, keep: usize) -> bool {
        if core.top == 0 {
            return false;
        }
        let t = core.top;
        // SAFETY: the top is a FREE block; seg is the growable segment's descriptor.
        let excess = unsafe {
            let size = block::size_of(block::load(t));
            // Any pad is valid (malloc_trim(SIZE_MAX) trims nothing): compare before rounding.
            if keep >= size {
                return false;
            }
            let keep = round_up(keep.max(MIN_BLOCK), GRAIN);
            if keep >= size || size - keep < PAGE {
                return false;
            }
            let excess = (size - keep) & !(PAGE - 1);
            // Read before the tail goes: the bookkeeping may lie in the pages given back.
            let purged = core.purged_range(t, size);
            let seg = core.seg as *mut Segment;
            let len = (*seg).len.load(Ordering::Relaxed);
            let region = Region { start: core.seg, len, from_brk: (*seg).from_brk };
            (*seg).len.store(len - excess, Ordering::Release);
            self.seg_len.store(len - excess, Ordering::Release);
            if !self.source.shrink(region, excess) {
                (*seg).len.store(len, Ordering::Release);
                self.seg_len.store(len, Ordering::Release);
                return false;
            }
            core.fence -= excess;
            core.write_fence(core.fence);
            core.unlink(t, size);
            core.insert_range(t, size - excess, purged);
            core.heap_bytes -= excess;
            core.reclaim.top_touched = core.reclaim.top_touched.min(core.fence);
            self.source.pages().clear(core.fence + WORD, excess);
            excess
        };
        self.note_os_returned(excess);
        true
    }
}
