//! Statistics: counters summed from the thread caches and the heap, printed with write(2).
//!
//! Reading takes no lock (caches are on an append-only registry and counters are atomics), so the
//! table can be printed at exit while other threads still run; its numbers are then a moment's
//! approximation.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::{self, MAPPED};
use crate::config::NUM_CLASSES;
use crate::diag::Line;
use crate::global::arenas;
use crate::size_class::{class_of, class_size, NUM_QUICK};
use crate::thread;

/// Row of the per-class counters that stands for blocks with a mapping of their own.
pub const MAPPED_ROW: usize = NUM_CLASSES;
const ROWS: usize = NUM_CLASSES + 1;

/// Allocations and frees that did not go through a thread cache, per size class (and mapped).
static UNCACHED_ALLOCS: [AtomicU64; ROWS] = [const { AtomicU64::new(0) }; ROWS];
static UNCACHED_FREES: [AtomicU64; ROWS] = [const { AtomicU64::new(0) }; ROWS];

/// The statistics row of the live block at `p` with header `h`.
fn row_of(h: u64) -> usize {
    if h & MAPPED != 0 { MAPPED_ROW } else { class_of(block::size_of(h)) }
}

/// Counts an allocation that bypassed the thread caches (slow paths only).
pub fn note_uncached_alloc(p: usize) {
    // SAFETY: p is a live block just handed out; its header precedes it.
    let h = unsafe { block::load(p - block::HEADER) };
    UNCACHED_ALLOCS[row_of(h)].fetch_add(1, Ordering::Relaxed);
}

/// Counts a free that bypassed the thread caches (slow paths only).
pub fn note_uncached_free(h: u64) {
    UNCACHED_FREES[row_of(h)].fetch_add(1, Ordering::Relaxed);
}

/// Counts a block resized in place (old header `h`, now at `q`) as a free in its old row and an
/// allocation in its new one, so that each row's allocations and frees stay about the same blocks.
pub fn note_resized(h: u64, q: usize) {
    // SAFETY: q is the live block just resized; its header precedes it.
    let row = row_of(unsafe { block::load(q - block::HEADER) });
    if row != row_of(h) {
        note_uncached_free(h);
        UNCACHED_ALLOCS[row].fetch_add(1, Ordering::Relaxed);
    }
}

/// One size class's counters.
#[derive(Default, Clone, Copy)]
pub struct ClassRow {
    /// Allocations served.
    pub requests: u64,
    /// Frees.
    pub frees: u64,
    /// Allocations served straight from a thread cache.
    pub cache_hits: u64,
    /// Highest number of blocks out of the heap at once (thread caches included).
    pub peak: u64,
}

/// A snapshot of the allocator's counters.
pub struct Summary {
    /// Per size class (and `MAPPED_ROW`).
    pub rows: [ClassRow; ROWS],
    /// Thread caches ever created.
    pub caches: u64,
    /// Bytes parked in thread caches now.
    pub cached_bytes: u64,
    /// Peak bytes held by the program (thread caches included).
    pub peak_held: u64,
    /// Bytes obtained from the OS now, at peak, and given back in total.
    pub os_now: u64,
    /// See `os_now`.
    pub os_peak: u64,
    /// See `os_now`.
    pub os_returned: u64,
    /// Bytes in the heap's coalesced free blocks (bins and top), and on its quick lists, now.
    pub free_bytes: u64,
    /// See `free_bytes`.
    pub quick_bytes: u64,
    /// Bytes of free blocks whose pages were given back with madvise, over the process's life.
    pub purged: u64,
}

impl Summary {
    /// Totals over all rows: (requests, frees, cache hits).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.rows.iter().fold((0, 0, 0), |(r, f, h), row| (r + row.requests, f + row.frees, h + row.cache_hits))
    }
}

/// Sums the counters.
pub fn summary() -> Summary {
    let mut s = Summary {
        rows: [ClassRow::default(); ROWS],
        caches: 0,
        cached_bytes: 0,
        peak_held: 0,
        os_now: 0,
        os_peak: 0,
        os_returned: 0,
        free_bytes: 0,
        quick_bytes: 0,
        purged: 0,
    };
    for (i, row) in s.rows.iter_mut().enumerate() {
        row.requests = UNCACHED_ALLOCS[i].load(Ordering::Relaxed);
        row.frees = UNCACHED_FREES[i].load(Ordering::Relaxed);
    }
    thread::for_each_cache(|tc| {
        for (c, bin) in tc.bins.iter().enumerate().take(NUM_QUICK) {
            let pops = bin.pops.load(Ordering::Relaxed);
            let row = &mut s.rows[c];
            row.requests += pops;
            row.cache_hits += pops.saturating_sub(tc.stats[c].refills.load(Ordering::Relaxed));
            row.frees += tc.pushes(c) + tc.stats[c].remote.load(Ordering::Relaxed);
        }
        s.cached_bytes += tc.cached_bytes() as u64;
        s.caches += 1;
    });
    // Each arena's counters; the peaks add up arenas' peaks, which may have come at different
    // moments (exact for a program with one arena, an upper bound otherwise).
    let load = |a: &core::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
    for heap in arenas() {
        let c = &heap.counters;
        for (i, row) in s.rows.iter_mut().enumerate().take(NUM_CLASSES) {
            row.peak += load(&c.class_peak[i]);
            // A cache counted a widened block's allocation in the class it was carved for; the
            // block is freed in the class it is: count both in the latter.
            row.requests = (row.requests + load(&c.class_widened_to[i])).saturating_sub(load(&c.class_widened_from[i]));
        }
        s.rows[MAPPED_ROW].peak += load(&c.mapped_peak);
        s.peak_held += load(&c.held_peak);
        s.os_now += load(&c.os_bytes);
        s.os_peak += load(&c.os_peak);
        s.os_returned += load(&c.os_returned);
        s.free_bytes += load(&c.free_bytes);
        s.quick_bytes += heap.quick_bytes() as u64;
        s.purged += load(&c.purged);
    }
    s
}

/// Prints the per-class table and the totals on file descriptor `fd`.
pub fn print_summary(fd: i32) {
    let s = summary();
    let mut l = Line::new();
    l.str("my_alloc: size class     requests         live         peak   cache hits");
    l.write_to(fd);
    for (i, row) in s.rows.iter().enumerate() {
        if row.requests == 0 && row.frees == 0 {
            continue;
        }
        let mut l = Line::new();
        l.str("my_alloc: ");
        if i == MAPPED_ROW {
            l.pad_to(10).str("mapped");
        } else if i == NUM_CLASSES - 1 {
            l.str(">").bytes(class_size(i - 1) as u64);
        } else {
            l.bytes(class_size(i) as u64);
        }
        let cols: [(usize, u64); 4] = [(31, row.requests), (44, row.requests.saturating_sub(row.frees)), (57, row.peak), (70, row.cache_hits)];
        for (col, v) in cols {
            let mut n = Line::new();
            n.dec(v);
            l.pad_to(col - n.as_bytes().len()).dec(v);
        }
        l.write_to(fd);
    }
    let (requests, frees, hits) = s.totals();
    let mut l = Line::new();
    l.str("my_alloc: ").dec(requests).str(" allocations, ").dec(frees).str(" frees, ");
    l.dec(hits).str(" served from ").dec(s.caches).str(" thread caches");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("my_alloc: peak in use ").bytes(s.peak_held).str(" (thread caches included); now cached ").bytes(s.cached_bytes);
    l.str(", on quick lists ").bytes(s.quick_bytes).str(", free in the heap ").bytes(s.free_bytes);
    l.write_to(fd);
    let mut l = Line::new();
    l.str("my_alloc: from the OS: now ").bytes(s.os_now).str(", peak ").bytes(s.os_peak);
    l.str(", returned ").bytes(s.os_returned).str(", purged ").bytes(s.purged);
    l.write_to(fd);
}
