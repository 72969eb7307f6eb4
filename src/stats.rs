//! Statistics: counters summed from the thread caches and the heap, printed with write(2).
//!
//! Reading takes no lock (caches are on an append-only registry and counters are atomics), so a
//! summary can be printed at exit while other threads still run.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::diag::Line;
use crate::global::HEAP;
use crate::tcache;

/// Allocations that did not go through a thread cache (large sizes, no cache).
pub static UNCACHED_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Frees that did not go through a thread cache.
pub static UNCACHED_FREES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the allocator's counters.
#[derive(Default)]
pub struct Summary {
    /// Blocks handed out.
    pub allocations: u64,
    /// Blocks taken back.
    pub frees: u64,
    /// Allocations served straight from a thread cache.
    pub cache_hits: u64,
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
    /// Large blocks with their own mapping, now.
    pub mapped_blocks: u64,
    /// Bytes in the heap's coalesced free blocks (bins and top), and on its quick lists, now.
    pub free_bytes: u64,
    /// See `free_bytes`.
    pub quick_bytes: u64,
    /// Bytes of free blocks whose pages were given back with madvise, over the process's life.
    pub purged: u64,
}

/// Sums the counters.
pub fn summary() -> Summary {
    let mut s = Summary {
        allocations: UNCACHED_ALLOCS.load(Ordering::Relaxed),
        frees: UNCACHED_FREES.load(Ordering::Relaxed),
        ..Summary::default()
    };
    tcache::for_each_cache(|tc| {
        for bin in &tc.bins {
            let pops = bin.pops.load(Ordering::Relaxed);
            s.allocations += pops;
            s.cache_hits += pops.saturating_sub(bin.refills.load(Ordering::Relaxed));
            s.frees += bin.pushes();
        }
        s.cached_bytes += tc.cached_bytes() as u64;
        s.caches += 1;
    });
    let c = &HEAP.counters;
    s.peak_held = c.held_peak.load(Ordering::Relaxed) as u64;
    s.os_now = c.os_bytes.load(Ordering::Relaxed) as u64;
    s.os_peak = c.os_peak.load(Ordering::Relaxed) as u64;
    s.os_returned = c.os_returned.load(Ordering::Relaxed) as u64;
    s.mapped_blocks = c.mapped_blocks.load(Ordering::Relaxed) as u64;
    s.free_bytes = c.free_bytes.load(Ordering::Relaxed) as u64;
    s.quick_bytes = HEAP.quick_bytes() as u64;
    s.purged = c.purged.load(Ordering::Relaxed) as u64;
    s
}

/// Prints the summary on file descriptor `fd`.
pub fn print_summary(fd: i32) {
    let s = summary();
    let mut l = Line::new();
    l.str("my_alloc: ").dec(s.allocations).str(" allocations, ").dec(s.frees).str(" frees, ");
    l.dec(s.cache_hits).str(" served from ").dec(s.caches).str(" thread caches");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("my_alloc: peak in use ").bytes(s.peak_held).str(" (thread caches included); now cached ").bytes(s.cached_bytes);
    l.str(", on quick lists ").bytes(s.quick_bytes).str(", free in the heap ").bytes(s.free_bytes);
    l.write_to(fd);
    let mut l = Line::new();
    l.str("my_alloc: from the OS: now ").bytes(s.os_now).str(", peak ").bytes(s.os_peak);
    l.str(", returned ").bytes(s.os_returned).str(", purged ").bytes(s.purged);
    l.str(", ").dec(s.mapped_blocks).str(" mapped blocks");
    l.write_to(fd);
}
