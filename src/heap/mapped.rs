//! Mapped blocks: requests at or above the mapping threshold get a mapping of their own,
//! unmapped on free; `realloc` of one uses `mremap`.
//!
//! The threshold starts at `MMAP_THRESHOLD`; freeing a mapped block raises it to that block's
//! size (up to `MMAP_THRESHOLD_MAX`, unless the program set it), so that a program cycling big
//! blocks reuses heap memory instead of faulting fresh pages in. Before mapping, a request takes
//! the start of the top if the top's pages there are still resident (handed out before, not given
//! back): they cost nothing, where a fresh mapping faults every page in.

use core::sync::atomic::Ordering;

use crate::block::{self, HEADER, IN_USE, MAPPED};
use crate::config::{round_up, ALIGNMENT, MMAP_THRESHOLD_MAX, PAGE, RESIDENT_CHECK_MIN, WORD};
use crate::diag::fatal;
use crate::size_class::block_size;
use crate::source::Source;

use super::resize::Resized;
use super::Heap;

/// The word before a mapped block's header: the user pointer's offset from the mapping's start.
pub(super) const MAPPED_PREFIX: usize = 2 * WORD;

/// Offset of the user pointer in a mapped block with the default alignment.
pub(super) const MAPPED_OFFSET: usize = round_up(MAPPED_PREFIX, ALIGNMENT);

/// Mapped blocks remembered after unmapping, to diagnose double frees of them.
pub(super) const RECENT_UNMAPPED: usize = 64;

/// Prefix bit of a mapped block: allocated in checking mode.
pub(super) const PREFIX_CHECKED: usize = 1;

impl<S: Source> Heap<S> {
    /// A block of `need` bytes from the start of the top, if its pages there were handed out
    /// before (below `top_touched`) and not given back since (outside its purged range).
    pub(super) fn alloc_resident_top(&self, need: usize) -> Option<usize> {
        self.with_core(|core| {
            let t = core.top;
            if t == 0 || t + need > core.reclaim.top_touched {
                return None;
            }
            // SAFETY: the heap lock is held; the top is a FREE block.
            unsafe {
                let size = block::size_of(block::load(t));
                if size < need {
                    return None;
                }
                let purged = core.purged_range(t, size);
                if purged.0 < t + need && purged.1 > purged.0 {
                    return None;
                }
                core.unlink(t, size);
                core.carve(t, size, need, IN_USE, purged);
                self.note_big_carve(core, need);
                Some(t)
            }
        })
    }

    /// A block with a mapping of its own, for `n` bytes at alignment `align`.
    pub(super) fn map_large(&self, n: usize, align: usize) -> Option<usize> {
        let align = align.max(ALIGNMENT);
        // Room for the offset word and the header before p, aligned. The mapping starts on a page,
        // so p - base is exactly this for alignments up to a page, and at most this beyond.
        let front = round_up(MAPPED_PREFIX, align);
        let len = n.checked_add(front)?.checked_add(PAGE - 1)? & !(PAGE - 1);
        if len >= block::SIZE_LIMIT {
            return None;
        }
        let secret = self.init_secret();
        let base = self.source.map(len)?;
        if !self.source.pages().mark(&self.source, base, len, self.tag) {
            self.source.unmap(base, len);
            return None;
        }
        let p = round_up(base + MAPPED_PREFIX, align);
        // SAFETY: the mapping is fresh and ours; both words lie inside it before p.
        unsafe {
            *((p - MAPPED_PREFIX) as *mut usize) = p - base;
            block::store(p - HEADER, block::seal(p - HEADER, len as u64 | MAPPED | IN_USE, secret));
        }
        self.note_os(len);
        self.counters.mapped_bytes.fetch_add(len, Ordering::Relaxed);
        let live = self.counters.mapped_blocks.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.mapped_peak.fetch_max(live, Ordering::Relaxed);
        self.note_held();
        if len >= RESIDENT_CHECK_MIN {
            self.with_core(|core| self.keep_resident_within_budget(core));
        }
        Some(p)
    }

    /// The mapping `(base, len)` of the mapped block at `p` with header `h`.
    pub(super) fn mapping_of(&self, p: usize, h: u64, func: &str) -> (usize, usize) {
        let len = block::size_of(h);
        // SAFETY: a validated mapped block has its offset word before the header.
        let offset = unsafe { *((p - MAPPED_PREFIX) as *const usize) } & !PREFIX_CHECKED;
        if offset < MAPPED_PREFIX || offset > len || (p - offset) & (PAGE - 1) != 0 {
            fatal(func, "corrupted header of mapped block", p);
        }
        (p - offset, len)
    }

    pub(super) fn unmap_large(&self, p: usize, h: u64) {
        let (base, len) = self.mapping_of(p, h, "free");
        let slot = self.recent_next.fetch_add(1, Ordering::Relaxed) % RECENT_UNMAPPED;
        self.recent_unmapped[slot].store(p, Ordering::Relaxed);
        // A program that frees blocks this big will likely allocate them again: serve them from
        // the heap from now on (see MMAP_THRESHOLD_MAX), unless the threshold was set for it.
        if len > self.mmap_threshold() && len <= MMAP_THRESHOLD_MAX && !self.mmap_fixed.load(Ordering::Relaxed) {
            self.mmap_threshold.fetch_max(len, Ordering::Relaxed);
        }
        self.source.pages().clear(base, len);
        self.source.unmap(base, len);
        self.counters.mapped_bytes.fetch_sub(len, Ordering::Relaxed);
        self.counters.mapped_blocks.fetch_sub(1, Ordering::Relaxed);
        self.note_os_returned(len);
    }

    /// Resizes the mapped block at `p` (header `h`) to `n` bytes with `mremap` when it can; a
    /// block shrunk well below the threshold (or that `mremap` cannot grow) must move.
    pub(super) fn resize_mapped(&self, p: usize, h: u64, n: usize) -> Resized {
        let (base, len) = self.mapping_of(p, h, "realloc");
        let offset = p - base;
        let Some(need) = block_size(n) else { return Resized::NoMemory };
        if need < self.mmap_threshold() / 2 {
            return Resized::MustMove; // shrunk well below the threshold: into the heap
        }
        let Some(new_len) = n.checked_add(offset).and_then(|l| l.checked_add(PAGE - 1)).map(|l| l & !(PAGE - 1)) else {
            return Resized::NoMemory;
        };
        if new_len >= block::SIZE_LIMIT {
            return Resized::NoMemory;
        }
        if new_len == len {
            return Resized::Done(p);
        }
        let secret = self.secret();
        if offset == MAPPED_OFFSET {
            if let Some(nb) = self.source.remap(base, len, new_len) {
                self.source.pages().clear(base, len);
                if !self.source.pages().mark(&self.source, nb, new_len, self.tag) {
                    fatal("realloc", "out of memory for the page map after moving", p);
                }
                let q = nb + offset;
                // SAFETY: the mapping moved with its contents; its header is rewritten for its new
                // address.
                unsafe { block::store(q - HEADER, block::seal(q - HEADER, new_len as u64 | MAPPED | IN_USE, secret)) };
                self.note_os_returned(len);
                self.note_os(new_len);
                self.counters.mapped_bytes.fetch_add(new_len, Ordering::Relaxed);
                self.counters.mapped_bytes.fetch_sub(len, Ordering::Relaxed);
                self.note_held();
                if new_len >= len + RESIDENT_CHECK_MIN {
                    self.with_core(|core| self.keep_resident_within_budget(core));
                }
                return Resized::Done(q);
            }
        }
        if new_len < len { Resized::Done(p) } else { Resized::MustMove }
    }
}
