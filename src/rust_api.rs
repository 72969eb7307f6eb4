//! The Rust surface: [`MyAlloc`], a `GlobalAlloc` that goes straight to the entry points the C
//! names use (no detour through `malloc`), and a small safe API over the statistics, the heap
//! check, memory return and the profile.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::fmt;

use crate::config::{ALIGNMENT, NUM_CLASSES};
use crate::diag::fatal_sized;
use crate::size_class::class_size;
use crate::stats::{print_summary, summary, MAPPED_ROW};
use crate::{checked, entry, profile};

/// The my_alloc allocator, for `#[global_allocator]`.
///
/// Every allocation of the program's Rust code then comes from my_alloc's heaps, with the same
/// thread caches, misuse diagnoses and `MY_ALLOC_*` options as the C library. Whether the C names
/// (`malloc`, `free`, …) are exported as well is the crate's `c-names` feature: without it the
/// C libraries the program links keep the C library's own heap.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;
///
/// fn main() {
///     let before = my_alloc::stats().allocations;
///     let words: Vec<String> = (0..100).map(|i| format!("word {i}")).collect();
///     assert_eq!(words[42], "word 42");
///     assert!(my_alloc::stats().allocations >= before + 100);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MyAlloc;

// SAFETY: the entry points return blocks of at least the requested size at ALIGNMENT (or at the
// requested alignment through `aligned`), owned by nobody else until freed, or null.
unsafe impl GlobalAlloc for MyAlloc {
    /// # Safety
    /// As `GlobalAlloc::alloc`: `layout` has a non-zero size.
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= ALIGNMENT {
            entry::alloc(layout.size()) as *mut u8
        } else {
            entry::aligned(layout.align(), layout.size()) as *mut u8
        }
    }

    /// The block's header is read for the misuse checks in any case and names its size class, so
    /// the layout's size saves nothing; checking mode verifies it against the block.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`: `ptr` is a live block of this allocator, allocated with
    /// `layout` (a misuse the checks see is diagnosed and aborts).
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if checked::enabled() {
            check_layout(ptr, layout, "dealloc");
        }
        entry::dealloc(ptr as *mut c_void, "dealloc")
    }

    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`: `layout` has a non-zero size.
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= ALIGNMENT {
            return entry::zalloc(1, layout.size()) as *mut u8;
        }
        let p = entry::aligned(layout.align(), layout.size()) as *mut u8;
        if !p.is_null() {
            // SAFETY: p is a fresh block of at least layout.size() bytes.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// # Safety
    /// As `GlobalAlloc::realloc`: `ptr` is a live block of this allocator, allocated with
    /// `layout`; `new_size` is not zero and, rounded up to `layout.align()`, fits in `isize`.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if checked::enabled() {
            check_layout(ptr, layout, "realloc");
        }
        if layout.align() <= ALIGNMENT {
            return entry::resize(ptr as *mut c_void, new_size, "realloc") as *mut u8;
        }
        // SAFETY: the caller passes a block of `layout` and a size valid with its alignment.
        unsafe { realloc_aligned(ptr, layout, new_size) }
    }
}

/// Checking mode: a layout larger than the block it frees or resizes is a misuse (its size is
/// what the block was allocated with, which checking mode records exactly).
#[cold]
fn check_layout(ptr: *mut u8, layout: Layout, func: &str) {
    let usable = entry::usable(ptr as *mut c_void);
    if layout.size() > usable {
        fatal_sized(func, "layout larger than the block", ptr as usize, usable);
    }
}

/// `realloc` for alignments above `ALIGNMENT`: in place when the block already holds
/// `new_size` bytes (outside checking mode, where every resize moves), else a new aligned block
/// and a copy.
///
/// # Safety
/// `ptr` is a live block allocated with `layout`; `new_size` rounded up to `layout.align()` does
/// not overflow `isize`.
#[cold]
unsafe fn realloc_aligned(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    if !checked::enabled() && new_size <= entry::usable(ptr as *mut c_void) {
        return ptr;
    }
    let q = entry::aligned(layout.align(), new_size) as *mut u8;
    if !q.is_null() {
        // SAFETY: both blocks are live, distinct, and hold at least the bytes copied.
        unsafe { core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size)) };
        entry::dealloc(ptr as *mut c_void, "realloc");
    }
    q
}

/// A snapshot of the allocator's counters, summed over every thread cache and arena of the
/// process (taken without stopping other threads: a moment's approximation while they run).
///
/// ```
/// #[global_allocator]
/// static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;
///
/// fn main() {
///     let v = vec![0u8; 1 << 20];
///     let s = my_alloc::stats();
///     assert!(s.allocations >= 1 && s.live() >= 1);
///     assert!(s.os_bytes >= v.len() as u64);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations served (every call that returned a block).
    pub allocations: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Allocations served straight from a thread cache.
    pub cache_hits: u64,
    /// Thread caches created over the process's life.
    pub thread_caches: u64,
    /// Peak bytes held by the program (thread caches included).
    pub peak_in_use: u64,
    /// Bytes parked in thread caches now.
    pub cached_bytes: u64,
    /// Bytes parked on the arenas' quick lists now.
    pub quick_bytes: u64,
    /// Bytes in the arenas' coalesced free blocks now.
    pub free_bytes: u64,
    /// Bytes obtained from the OS now.
    pub os_bytes: u64,
    /// Peak of `os_bytes`.
    pub os_peak: u64,
    /// Bytes given back to the OS over the process's life.
    pub os_returned: u64,
    /// Bytes of free blocks whose pages were given back with `madvise`, over the process's life.
    pub purged_bytes: u64,
}

impl Stats {
    /// Blocks allocated and not freed yet.
    pub fn live(&self) -> u64 {
        self.allocations.saturating_sub(self.frees)
    }
}

/// The allocator's counters now.
pub fn stats() -> Stats {
    let s = summary();
    let (allocations, frees, cache_hits) = s.totals();
    Stats {
        allocations,
        frees,
        cache_hits,
        thread_caches: s.caches,
        peak_in_use: s.peak_held,
        cached_bytes: s.cached_bytes,
        quick_bytes: s.quick_bytes,
        free_bytes: s.free_bytes,
        os_bytes: s.os_now,
        os_peak: s.os_peak,
        os_returned: s.os_returned,
        purged_bytes: s.purged,
    }
}

/// One size class's counters (see [`for_each_class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// The class's block size in bytes; `None` for blocks with a mapping of their own, and for
    /// the last class, which holds every heap block above the one before it.
    pub block_size: Option<usize>,
    /// Allocations served.
    pub requests: u64,
    /// Blocks live now.
    pub live: u64,
    /// Highest number of blocks of the class out of the heap at once.
    pub peak: u64,
    /// Allocations served straight from a thread cache.
    pub cache_hits: u64,
}

/// Calls `f` with the counters of each size class that has been used, smallest first, then
/// blocks with a mapping of their own. (A visitor rather than a collection: the statistics never
/// allocate.)
///
/// ```
/// #[global_allocator]
/// static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;
///
/// fn main() {
///     let boxes: Vec<Box<[u8; 48]>> = (0..64).map(|_| Box::new([0; 48])).collect();
///     let mut live_48 = 0;
///     my_alloc::for_each_class(|c| {
///         if c.block_size.is_some_and(|s| s >= 48 && s <= 64) {
///             live_48 += c.live;
///         }
///     });
///     assert!(live_48 >= boxes.len() as u64);
/// }
/// ```
pub fn for_each_class(mut f: impl FnMut(ClassStats)) {
    let s = summary();
    for (i, row) in s.rows.iter().enumerate() {
        if row.requests == 0 && row.frees == 0 {
            continue;
        }
        let block_size = if i == MAPPED_ROW || i == NUM_CLASSES - 1 { None } else { Some(class_size(i)) };
        f(ClassStats {
            block_size,
            requests: row.requests,
            live: row.requests.saturating_sub(row.frees),
            peak: row.peak,
            cache_hits: row.cache_hits,
        })
    }
}

/// Prints the statistics table on standard error (what `malloc_stats()` and `MY_ALLOC_STATS=1`
/// print).
pub fn print_stats() {
    print_summary(2)
}

/// What [`check_heap`] found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapError {
    what: &'static str,
}

impl HeapError {
    /// The broken invariant, in a few words.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "my_alloc: heap check failed: {}", self.what)
    }
}

/// Verifies every invariant of every heap (block tiling, boundary tags, free lists, quick lists),
/// as `my_alloc_check_heap()` does. It takes each arena's locks in turn, so it costs a walk of
/// the heap: for tests and debugging, not for a hot loop.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;
///
/// fn main() {
///     let v: Vec<Vec<u64>> = (0..1000).map(|i| vec![i; (i % 37) as usize]).collect();
///     drop(v);
///     my_alloc::check_heap().expect("the heap is sound");
/// }
/// ```
pub fn check_heap() -> Result<(), HeapError> {
    entry::check_heap().map_err(|what| HeapError { what })
}

/// Gives free memory back to the OS (this thread's cache first), keeping `pad` bytes at the top of
/// each heap, as `malloc_trim(pad)` does. Returns whether any memory was released.
pub fn trim(pad: usize) -> bool {
    entry::trim(pad)
}

/// Writes a sample of the heap profile now, when the program runs with `MY_ALLOC_PROFILE=FILE`
/// (samples are otherwise taken on the allocator's slow paths, at most one per 10 ms). Returns
/// whether profiling is on.
pub fn profile_sample() -> bool {
    profile::sample_now()
}

/// Writes a snapshot of the heap profile's call stacks now: the sampled allocations live at this
/// moment (`my_alloc report --leaks --snapshot N` shows the N-th). Returns whether the program is
/// being profiled with call stacks (`MY_ALLOC_PROFILE=FILE`, `MY_ALLOC_PROFILE_RATE` not 0).
pub fn profile_snapshot() -> bool {
    profile::snapshot()
}
