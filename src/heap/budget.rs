//! The resident budget: whatever the clock and the carving say, the heap's resident memory (with
//! the mapped blocks) is kept within the most the program has held plus a slack.
//!
//! The program's own peak sets the process's peak RSS whatever the allocator does, so below the
//! budget freed pages are kept for reuse at no cost to that peak; beyond it they are overhead.
//! Every `RESIDENT_CHECK_MIN` carved (under the heap lock) and after each mapping or `mremap`
//! growth that big, the heap estimates its resident bytes and gives back the excess: the top's
//! pages from the end of what it handed out backwards first (allocations take the top last), then
//! the biggest free blocks', each from the end of its resident part (a carving takes a block's
//! start first).

use core::sync::atomic::Ordering;

use crate::block;
use crate::config::{round_up, NUM_CLASSES, PAGE, PURGE_MIN, RESIDENT_CHECK_MIN, RESIDENT_SLACK_MIN, RESIDENT_SLACK_SHARE, TRIM_KEEP, WORD};
use crate::size_class::class_of;
use crate::source::Source;

use super::bins::{link_next, Core, PURGED_END, PURGED_START, PURGE_KEEP};
use super::Heap;

/// A heap's memory at one moment (see [`Heap::footprint`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// Bytes from the source the program holds (live blocks, and blocks in thread caches).
    pub held: usize,
    /// Bytes from the source that may be resident.
    pub resident: usize,
}

impl<S: Source> Heap<S> {
    /// Bytes of the heap known not to be resident: the pages of big free blocks given back, and
    /// the top's beyond `top_touched` (never handed out since they came from the source, or
    /// given back) or in its purged range. Free blocks too small to be purged count as resident.
    pub(super) fn nonresident(&self, core: &Core) -> usize {
        let mut n = 0;
        for c in class_of(PURGE_MIN)..NUM_CLASSES {
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock.
                unsafe {
                    let (start, end) = core.purged_range(b, block::size_of(block::load(b)));
                    n += end.saturating_sub(start);
                    b = link_next(b);
                }
            }
        }
        if core.top != 0 {
            let t = core.top;
            // SAFETY: the top is a FREE block we own under the heap lock.
            let (end, (start, purged_end)) = unsafe {
                let size = block::size_of(block::load(t));
                (t + size, core.purged_range(t, size))
            };
            let touched = core.reclaim.top_touched.clamp(t, end);
            n += end - touched + purged_end.min(touched).saturating_sub(start);
        }
        n
    }

    /// Counts `bytes` carved out of the free lists (which may bring pages in), checking the
    /// resident memory against its budget each `RESIDENT_CHECK_MIN` of them.
    #[inline]
    pub(super) fn note_carved(&self, core: &mut Core, bytes: usize) {
        core.reclaim.carved_unchecked += bytes;
        if core.reclaim.carved_unchecked >= RESIDENT_CHECK_MIN {
            core.reclaim.carved_unchecked = 0;
            self.keep_resident_within_budget(core);
        }
    }

    /// Keeps the heap's resident memory, with the mapped blocks, within the most the program has
    /// held plus a slack (see `RESIDENT_SLACK_SHARE`): beyond that, gives back the excess, from
    /// the top's pages beyond `TRIM_KEEP` first, then from the big free blocks, the biggest
    /// first. Called under the heap lock every `RESIDENT_CHECK_MIN` carved, and after a big
    /// mapping or `mremap` growth.
    pub(super) fn keep_resident_within_budget(&self, core: &mut Core) {
        let c = &self.counters;
        let os = c.os_bytes.load(Ordering::Relaxed);
        let held = os.saturating_sub(core.free_bytes).saturating_sub(self.quick_bytes.load(Ordering::Relaxed));
        let peak = c.held_peak.load(Ordering::Relaxed).max(held);
        let budget = peak.saturating_add(peak / RESIDENT_SLACK_SHARE).saturating_add(RESIDENT_SLACK_MIN);
        if os <= budget {
            return; // within budget even if every page were resident: no walk
        }
        let resident = os.saturating_sub(self.nonresident(core));
        let Some(excess) = resident.checked_sub(budget).filter(|&e| e > 0) else { return };
        self.give_back_resident(core, excess);
    }

    /// Gives back about `excess` resident bytes of free memory: the top's pages beyond
    /// `TRIM_KEEP` first, from the end of what it handed out backwards, then the big free
    /// blocks', the biggest first. Returns the bytes given back.
    fn give_back_resident(&self, core: &mut Core, mut excess: usize) -> usize {
        let mut purged = 0;
        // The top first: allocations take it last, and from its start. Its pages from the end of
        // what it handed out backwards, but `TRIM_KEEP`.
        if core.top != 0 {
            let t = core.top;
            // SAFETY: the top is a FREE block we own under the heap lock.
            let size = block::size_of(unsafe { block::load(t) });
            let to = round_up(core.reclaim.top_touched, PAGE).min((t + size - WORD) & !(PAGE - 1));
            let from = round_up(t + TRIM_KEEP, PAGE).max(to.saturating_sub(round_up(excess, PAGE)));
            if from < to {
                self.source.purge(from, to - from);
                // Pages from `from` on were given back, as if never handed out.
                core.reclaim.top_touched = core.reclaim.top_touched.min(from);
                purged += to - from;
                excess = excess.saturating_sub(to - from);
            }
        }
        'bins: for c in (class_of(PURGE_MIN)..NUM_CLASSES).rev() {
            if excess == 0 {
                break;
            }
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock; their links
                // stay in the part kept.
                let got = unsafe { self.purge_tail(core, b, excess) };
                purged += got;
                excess = excess.saturating_sub(got);
                if excess == 0 {
                    break 'bins;
                }
                // SAFETY: as above.
                b = unsafe { link_next(b) };
            }
        }
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// The heap's share of the process's memory, for a process-wide budget: `None` when its lock
    /// is busy (the caller does not wait).
    pub fn footprint(&self) -> Option<Footprint> {
        let core = self.core.try_lock()?;
        let os = self.counters.os_bytes.load(Ordering::Relaxed);
        let parked = self.quick_bytes.load(Ordering::Relaxed) + self.inbox_bytes();
        Some(Footprint {
            held: os.saturating_sub(core.free_bytes).saturating_sub(parked),
            resident: os.saturating_sub(self.nonresident(&core)),
        })
    }

    /// Gives back up to about `want` resident bytes the heap holds free, for a process-wide
    /// budget: what came home from other threads and what is parked by class joins the free
    /// lists first, so that it can go. Returns the bytes given back (0 when the lock is busy).
    pub fn release_resident(&self, want: usize) -> usize {
        let _check = self.check_on_exit();
        self.drain_inbox();
        let Some(mut core) = self.core.try_lock() else { return 0 };
        // SAFETY: under the heap lock, holding no quick-list lock.
        unsafe { self.consolidate(&mut core) };
        let before = core.heap_bytes;
        self.trim_top(&mut core, TRIM_KEEP);
        let trimmed = before - core.heap_bytes;
        let got = trimmed + self.give_back_resident(&mut core, want.saturating_sub(trimmed));
        self.counters.free_bytes.store(core.free_bytes, Ordering::Relaxed);
        got
    }

    /// Gives back about `want` bytes of the free block `b`'s pages, from the end of what is still
    /// resident backwards: a carving takes a block's start first, so that part stays. Falls back
    /// to the whole block when what was given back before lies in its middle. Returns the bytes
    /// purged.
    ///
    /// # Safety
    /// `b` is a `FREE` block the caller owns under the heap lock (`core`).
    pub(super) unsafe fn purge_tail(&self, core: &mut Core, b: usize, want: usize) -> usize {
        // SAFETY: the caller owns the FREE block b under the heap lock; only whole pages between
        // its bookkeeping and its footer are given back.
        unsafe {
            let size = block::size_of(block::load(b));
            if size < PURGE_MIN {
                return 0;
            }
            let start = round_up(b + PURGE_KEEP, PAGE);
            let end = (b + size - WORD) & !(PAGE - 1);
            let (done_start, done_end) = core.purged_range(b, size);
            // The resident part's end: the block's, or where a purged suffix begins.
            let (upto, keep_end) = if done_start >= done_end {
                (end, end)
            } else if done_end >= end {
                (round_up(done_start, PAGE).min(end), done_end)
            } else {
                return self.purge_block(core, b, PURGE_KEEP, usize::MAX, true);
            };
            let from = upto.saturating_sub(round_up(want, PAGE)).max(start);
            if from >= upto {
                return 0;
            }
            self.source.purge(from, upto - from);
            *((b + PURGED_START) as *mut usize) = from;
            *((b + PURGED_END) as *mut usize) = keep_end;
            upto - from
        }
    }
}
