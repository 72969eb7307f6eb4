//! The entry points every surface shares: the C names (`api.rs`) and the Rust allocator
//! (`rust_api.rs`) are thin wrappers around these. The hot paths (`alloc`, `dealloc`) try the
//! thread cache and fall through to one cold function each.
//!
//! Semantics follow glibc: `malloc(0)` returns a unique pointer; `realloc(p, 0)` frees and
//! returns NULL; impossible sizes give NULL with `errno = ENOMEM`; `free` never changes `errno`.

use core::ffi::c_void;

use crate::block::{self, MAPPED};
use crate::config::{ALIGNMENT, PAGE};
use crate::heap::{small_block_stays, Heap, Mover, Reallocated};
use crate::os::OsSource;
use crate::os::{errno, set_errno};
use crate::size_class::{alloc_block_size, quick_bin_of_block, quick_class_of_block, quick_class_of_request};
use crate::tcache::ThreadCache;
use crate::{checked, global, guard, profile, stats, thread};

// ------------------------------------------------------------------------------------------------
// The hot paths

/// Allocates `n` bytes: a thread-cache pop when the class has a cached block.
#[inline(always)]
pub fn alloc(n: usize) -> *mut c_void {
    if let Some(c) = quick_class_of_request(n) {
        let t = thread::state();
        if !t.is_null() {
            // SAFETY: a non-null state() is this thread's own.
            let p = unsafe { (*t).cache.pop((*t).heap, (*t).secret, c) };
            if p != 0 {
                // SAFETY: as above.
                if profile::tick(unsafe { &mut (*t).sample }, n) {
                    return sampled(p, n);
                }
                return p as *mut c_void;
            }
        }
    }
    alloc_slow(n)
}

/// Every allocation that missed the hot path: NULL with `errno = ENOMEM` when the request is
/// impossible or memory is exhausted. (It returns the C result itself, so that the hot path
/// ends in a jump here, with no frame of its own.)
#[cold]
#[inline(never)]
fn alloc_slow(n: usize) -> *mut c_void {
    or_enomem(noted(alloc_slow_inner(n), n, ALIGNMENT))
}

/// The hot path's block `p` of `n` bytes ran the sampling clock down. (A jump from `alloc`.)
#[cold]
#[inline(never)]
fn sampled(p: usize, n: usize) -> *mut c_void {
    on_clock(p, n, ALIGNMENT) as *mut c_void
}

/// Counts an allocation of `n` bytes at `align` made off the hot path on the sampling clock.
#[inline]
fn noted(p: Option<usize>, n: usize, align: usize) -> Option<usize> {
    let p = p?;
    Some(if profile::sampler::count(p, n, n) { on_clock(p, n, align) } else { p })
}

/// The allocation `p` of `n` bytes at `align` ran the clock down: it is given a guarded block
/// instead, or its stack is recorded, or both, as they are due. The block the caller receives.
fn on_clock(p: usize, n: usize, align: usize) -> usize {
    let due = profile::sampler::fire();
    let mut p = p;
    if due.guard {
        if let Some(q) = guard::alloc(n, align) {
            dealloc(p as *mut c_void, "malloc");
            p = q;
        }
    }
    // A guarded block has no header to carry the profiler's mark: its stack goes unrecorded
    // (both samples seldom fall on one allocation).
    if due.stack && !guard::owns(p) {
        profile::sampler::record(p, n);
    }
    p
}

#[inline(always)]
fn alloc_slow_inner(n: usize) -> Option<usize> {
    global::ensure_initialised();
    profile::maybe_sample();
    if checked::enabled() {
        return uncached(checked::alloc(n, ALIGNMENT));
    }
    global::after_growth();
    let t = thread::state_or_create();
    if t.is_null() {
        return uncached(global::main_heap().malloc(n));
    }
    // SAFETY: this thread's own state.
    let (tc, heap) = unsafe { (&mut (*t).cache, (*t).heap) };
    if quick_class_of_request(n).is_some() {
        tc.malloc(heap, n)
    } else {
        // Bigger blocks pass the cache by (and are counted here).
        uncached(heap.malloc(n))
    }
}

/// Counts an allocation that bypassed the thread caches.
#[inline]
fn uncached(p: Option<usize>) -> Option<usize> {
    if let Some(p) = p {
        // Guarded blocks (guard mode) have no header, and no size class to count in.
        if !guard::owns(p) {
            stats::note_uncached_alloc(p);
        }
    }
    p
}

/// The pointer, or NULL with `errno = ENOMEM`.
#[inline]
pub fn or_enomem(p: Option<usize>) -> *mut c_void {
    match p {
        Some(p) => p as *mut c_void,
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// Frees `p` on behalf of `func` (named in diagnostics): a push onto this thread's cache when the
/// block is a live block of its arena's growable segment and the bin has room. Otherwise one cold
/// function each: the arena's own blocks the push did not take (`dealloc_own`), blocks the page
/// map names (`dealloc_other`), and the rest (mapped blocks, no cache, any misuse:
/// `dealloc_slow`, which judges).
#[inline(always)]
pub fn dealloc(p: *mut c_void, func: &str) {
    // No test for null here: null fails the arena's range test (its header address wraps
    // around) and the page map's, and `dealloc_slow` returns for it.
    let p = p as usize;
    let t = thread::state();
    if !t.is_null() {
        // SAFETY: a non-null state() is this thread's own.
        let (tc, heap, secret) = unsafe { (&mut (*t).cache, (*t).heap, (*t).secret) };
        // A sampled block fails the test: its free is recorded off this path.
        if let Some(low) = heap.validate_local(p, secret) {
            if tc.push(heap, secret, quick_bin_of_block(low), p) {
                return;
            }
            return dealloc_own(p, tc, heap);
        }
        return dealloc_other(p, tc, heap, func);
    }
    dealloc_slow(p, func)
}

/// Frees a block of the thread's own arena that the push did not take (a full bin, a block of
/// no quick class): validated already, it goes through the cache's flush or to the heap.
/// (Every system call on the way keeps `errno`.)
#[cold]
#[inline(never)]
fn dealloc_own(p: usize, tc: &mut ThreadCache, heap: &'static Heap<OsSource>) {
    // SAFETY: validate_local found a live block of the heap's segment at p.
    let h = unsafe { block::load(p - block::HEADER) };
    free_cached(tc, heap, heap, p, h)
}

/// Frees a block outside the thread's arena's growable segment (another arena's, an older
/// segment's): a sealed live block of the arena the page map names goes through the cache (to
/// its outbox when it is another arena's); anything else to the slow path, which judges.
#[cold]
#[inline(never)]
fn dealloc_other(p: usize, tc: &mut ThreadCache, heap: &'static Heap<OsSource>, func: &str) {
    if let Some(owner) = global::tagged_owner(p) {
        if let Some(h) = owner.validate_tagged(p) {
            return free_cached(tc, heap, owner, p, h);
        }
    }
    dealloc_slow(p, func)
}

#[cold]
#[inline(never)]
fn dealloc_slow(p: usize, func: &str) {
    if p == 0 {
        return;
    }
    let saved = errno();
    if guard::owns(p) {
        guard::free(p, func);
        return set_errno(saved);
    }
    let heap = global::owner_of(p, func);
    let h = heap.validate(p, func);
    release(heap, p, h, func);
    set_errno(saved);
}

/// Frees the live block `p` of `heap` (header `h`, which it validated): through this thread's
/// cache when it has one, towards the block's own arena.
fn release(heap: &'static Heap<OsSource>, p: usize, h: u64, func: &str) {
    global::ensure_initialised();
    profile::maybe_sample();
    let h = profile::unsample(p, h);
    if checked::enabled() {
        stats::note_uncached_free(h);
        return checked::free(heap, p, h, func);
    }
    let t = thread::state_or_create();
    if t.is_null() {
        stats::note_uncached_free(h);
        return heap.free_validated(p, h);
    }
    // SAFETY: this thread's own state.
    unsafe { free_cached(&mut (*t).cache, (*t).heap, heap, p, h) }
}

/// Frees the live block `p` of `owner` (header `h`, which it validated) through the cache `tc` of
/// arena `heap`. The cache counts what enters its bins and outboxes; blocks of no quick class
/// pass it by, straight to their heap, and are counted here.
fn free_cached(tc: &mut ThreadCache, heap: &'static Heap<OsSource>, owner: &'static Heap<OsSource>, p: usize, h: u64) {
    let h = profile::unsample(p, h);
    if quick_class_of_block(block::size_of(h)).is_none() {
        stats::note_uncached_free(h);
    }
    tc.free_to(heap, owner, p, h)
}

/// The C surface as the place `realloc` moves blocks to and from: this thread's cache, as
/// `malloc` and `free` would use it.
struct Surface<'a> {
    func: &'a str,
}

impl Mover<OsSource> for Surface<'_> {
    fn allocate(&mut self, n: usize) -> Option<usize> {
        match alloc(n) as usize {
            0 => None,
            p => Some(p),
        }
    }
    fn release(&mut self, owner: &Heap<OsSource>, p: usize, h: u64) {
        let t = thread::state();
        if !t.is_null() && !checked::enabled() {
            if let Some(c) = quick_class_of_block(block::quick_size_of(h)) {
                // SAFETY: this thread's own state.
                let (tc, heap) = unsafe { (&mut (*t).cache, (*t).heap) };
                if core::ptr::eq(heap, owner) && tc.push(heap, heap.secret(), c, p) {
                    return;
                }
            }
        }
        // `owner` is one of the process's arenas: the block's page map tag names it.
        release(global::owner_of(p, self.func), p, h, self.func)
    }
}

// ------------------------------------------------------------------------------------------------
// Shared bodies

pub fn zalloc(nmemb: usize, size: usize) -> *mut c_void {
    let Some(total) = nmemb.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    let p = alloc(total);
    // A guarded block has fresh pages (and no header).
    if !p.is_null() && !guard::owns(p as usize) {
        // SAFETY: p is a live block of at least `total` bytes; its header precedes it.
        let fresh_mapping = unsafe { block::load(p as usize - block::HEADER) } & MAPPED != 0;
        if !fresh_mapping {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0, total) };
        }
    }
    p
}

pub fn resize(p: *mut c_void, n: usize, func: &str) -> *mut c_void {
    if p.is_null() {
        return alloc(n);
    }
    if n == 0 {
        dealloc(p, func);
        return core::ptr::null_mut();
    }
    if let Some(q) = resize_cached(p as usize, n) {
        return q;
    }
    let p = p as usize;
    if guard::owns(p) {
        return resize_guarded(p, n, func);
    }
    let heap = global::owner_of(p, func);
    let h = heap.validate(p, func);
    if checked::enabled() {
        let h = profile::unsample(p, h);
        // A resize is never moved to a guarded block: only its stack may be sampled.
        let q = checked::realloc(heap, p, h, n, func);
        if let Some(q) = q {
            profile::sampler::note_growth(q, n, n);
        }
        return or_enomem(q);
    }
    let saved = errno();
    let old_usable = heap.usable_of(p, h);
    // A sampled block keeps its mark into the core: if it moves, its free is recorded when the
    // old block is released (`Surface::release`); if it stays, the profile follows it.
    match heap.realloc(p, h, n, &mut Surface { func }) {
        Some(Reallocated::InPlace(q)) => {
            profile::note_resized(p, h, q, n, old_usable);
            stats::note_resized(h, q);
            // A shrink that found no smaller block keeps its own, and leaves errno alone.
            set_errno(saved);
            q as *mut c_void
        }
        Some(Reallocated::Moved(q)) => q as *mut c_void,
        None => or_enomem(None),
    }
}

/// `realloc` of a guarded block: always to a new block (guarded again only if the clock says so),
/// so that a stale pointer to the old one faults.
fn resize_guarded(p: usize, n: usize, func: &str) -> *mut c_void {
    let old = guard::usable(p, func);
    let saved = errno();
    let q = alloc(n);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; the old one holds `old` bytes.
    unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n)) };
    guard::free(p, func);
    set_errno(saved);
    q
}

/// `realloc` of a block of a quick class from this thread's arena, without the core: it stays when
/// it still fits (the core's rule, `small_block_stays`), else it moves through the cache (pop,
/// copy, push), which is what the core would do with it. `None` for anything else, and when the
/// new block cannot be had, so that the general path decides (and diagnoses).
#[inline]
fn resize_cached(p: usize, n: usize) -> Option<*mut c_void> {
    let t = thread::state();
    if t.is_null() || checked::enabled() {
        return None;
    }
    // SAFETY: a non-null state() is this thread's own.
    let heap = unsafe { (*t).heap };
    // Sampled blocks fail the test and take the general path, which records their free.
    let low = heap.validate_local(p, heap.secret())?;
    let size = block::size_of(low as u64);
    let c = quick_class_of_block(size)?;
    // A block that stays is no new allocation for the profiler's clock: counting its whole size
    // again at every step of a growing string would sample such strings far too often.
    if small_block_stays(size, alloc_block_size(n)?) {
        return Some(p as *mut c_void);
    }
    let saved = errno();
    let q = alloc(n);
    if q.is_null() {
        set_errno(saved);
        return None;
    }
    // SAFETY: both blocks are live and distinct; the old one holds `usable_of` bytes. The cache
    // is taken anew: `alloc` used it.
    let tc = unsafe {
        core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, heap.usable_of(p, low as u64).min(n));
        &mut (*t).cache
    };
    if !tc.push(heap, heap.secret(), c, p) {
        dealloc_own(p, tc, heap);
    }
    Some(q)
}

/// This thread's arena (the main heap for threads without one).
fn my_heap() -> &'static Heap<OsSource> {
    let t = thread::state_or_create();
    // SAFETY: this thread's own state.
    if t.is_null() { global::main_heap() } else { unsafe { (*t).heap } }
}

pub fn aligned(align: usize, n: usize) -> *mut c_void {
    global::ensure_initialised();
    if checked::enabled() {
        return or_enomem(noted(uncached(checked::alloc(n, align)), n, align));
    }
    or_enomem(noted(uncached(my_heap().memalign(align, n)), n, align))
}

pub fn memalign_impl(align: usize, n: usize) -> *mut c_void {
    if align <= ALIGNMENT {
        return alloc(n);
    }
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    // glibc rounds an alignment that is not a power of two up to the next one.
    aligned(align.next_power_of_two(), n)
}

pub fn pvalloc_impl(n: usize) -> *mut c_void {
    let Some(rounded) = n.checked_add(PAGE - 1) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    aligned(PAGE, rounded & !(PAGE - 1))
}

pub fn reallocarray_impl(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(total) => resize(p, total, "reallocarray"),
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

pub fn usable(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    let p = p as usize;
    if guard::owns(p) {
        return guard::usable(p, "malloc_usable_size");
    }
    let heap = global::owner_of(p, "malloc_usable_size");
    let h = heap.validate(p, "malloc_usable_size");
    if checked::enabled() { checked::usable(heap, p, h) } else { heap.usable_of(p, h) }
}

/// Gives free memory back to the OS, keeping `pad` bytes at the top of each heap (this thread's
/// cache is emptied first). Returns whether any memory was released.
pub fn trim(pad: usize) -> bool {
    let saved = errno();
    let t = thread::state();
    if !t.is_null() {
        // SAFETY: this thread's own state.
        unsafe { (*t).cache.flush_everything((*t).heap) };
    }
    let mut released = false;
    for a in global::arenas() {
        released |= a.trim(pad);
    }
    set_errno(saved);
    released
}

/// Verifies every invariant of every arena (block tiling, boundary tags, free lists): what is
/// wrong, if anything.
pub fn check_heap() -> Result<(), &'static str> {
    global::arenas().iter().try_for_each(|a| a.check().map(|_| ()))
}
