//! The C surface: the malloc family, glibc's `__libc_*` aliases, the original my_alloc names, and
//! the library's own extras. Every function here is thin: the hot paths (`alloc`, `dealloc`) try
//! the thread cache and fall through to one cold function each.
//!
//! Semantics follow glibc: `malloc(0)` returns a unique pointer; `realloc(p, 0)` frees and
//! returns NULL; impossible sizes give NULL with `errno = ENOMEM`; `free` never changes `errno`.

use core::ffi::{c_int, c_void};

use crate::block::{self, MAPPED};
use crate::config::{ALIGNMENT, PAGE};
use crate::heap::{Heap, Mover, Reallocated, Usage};
use crate::os::OsSource;
use crate::os::{errno, set_errno};
use crate::size_class::{quick_class_of_block, quick_class_of_request};
use crate::tcache::ThreadCache;
use crate::{checked, global, profile, stats, thread};

// ------------------------------------------------------------------------------------------------
// The hot paths

/// Allocates `n` bytes: a thread-cache pop when the class has a cached block.
#[inline(always)]
fn alloc(n: usize) -> *mut c_void {
    if let Some(c) = quick_class_of_request(n) {
        let t = thread::state();
        if !t.is_null() {
            // SAFETY: a non-null state() is this thread's own.
            let p = unsafe { (*t).cache.pop((*t).heap, c) };
            if p != 0 {
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
    or_enomem(alloc_slow_inner(n))
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
    unsafe { (*t).cache.malloc((*t).heap, n) }
}

/// Counts an allocation that bypassed the thread caches.
#[inline]
fn uncached(p: Option<usize>) -> Option<usize> {
    if let Some(p) = p {
        stats::note_uncached_alloc(p);
    }
    p
}

/// The pointer, or NULL with `errno = ENOMEM`.
#[inline]
fn or_enomem(p: Option<usize>) -> *mut c_void {
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
fn dealloc(p: *mut c_void, func: &str) {
    // No test for null here: null fails the arena's range test (its header address wraps
    // around) and the page map's, and `dealloc_slow` returns for it.
    let p = p as usize;
    let t = thread::state();
    if !t.is_null() {
        // SAFETY: a non-null state() is this thread's own.
        let (tc, heap) = unsafe { (&mut (*t).cache, (*t).heap) };
        if let Some(h) = heap.validate_local(p) {
            if let Some(c) = quick_class_of_block(block::size_of(h)) {
                if tc.push(heap, c, p, h) {
                    return;
                }
            }
            return dealloc_own(p, h, tc, heap);
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
fn dealloc_own(p: usize, h: u64, tc: &mut ThreadCache, heap: &'static Heap<OsSource>) {
    tc.free(heap, p, h)
}

/// Frees a block outside the thread's arena's growable segment (another arena's, an older
/// segment's): a sealed live block of the arena the page map names goes through the cache (to
/// its outbox when it is another arena's); anything else to the slow path, which judges.
#[cold]
#[inline(never)]
fn dealloc_other(p: usize, tc: &mut ThreadCache, heap: &'static Heap<OsSource>, func: &str) {
    if let Some(owner) = global::tagged_owner(p) {
        if let Some(h) = owner.validate_tagged(p) {
            return tc.free_to(heap, owner, p, h);
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
    unsafe { (*t).cache.free_to((*t).heap, heap, p, h) }
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
            if let Some(c) = quick_class_of_block(block::size_of(h)) {
                // SAFETY: this thread's own state.
                let (tc, heap) = unsafe { (&mut (*t).cache, (*t).heap) };
                if core::ptr::eq(heap, owner) && tc.push(heap, c, p, h) {
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

fn zalloc(nmemb: usize, size: usize) -> *mut c_void {
    let Some(total) = nmemb.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    let p = alloc(total);
    if !p.is_null() {
        // SAFETY: p is a live block of at least `total` bytes; its header precedes it.
        let fresh_mapping = unsafe { block::load(p as usize - block::HEADER) } & MAPPED != 0;
        if !fresh_mapping {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0, total) };
        }
    }
    p
}

fn resize(p: *mut c_void, n: usize, func: &str) -> *mut c_void {
    if p.is_null() {
        return alloc(n);
    }
    if n == 0 {
        dealloc(p, func);
        return core::ptr::null_mut();
    }
    let p = p as usize;
    let heap = global::owner_of(p, func);
    let h = heap.validate(p, func);
    if checked::enabled() {
        return or_enomem(checked::realloc(heap, p, h, n, func));
    }
    let saved = errno();
    match heap.realloc(p, h, n, &mut Surface { func }) {
        Some(Reallocated::InPlace(q)) => {
            stats::note_resized(h, q);
            // A shrink that found no smaller block keeps its own, and leaves errno alone.
            set_errno(saved);
            q as *mut c_void
        }
        Some(Reallocated::Moved(q)) => q as *mut c_void,
        None => or_enomem(None),
    }
}

/// This thread's arena (the main heap for threads without one).
fn my_heap() -> &'static Heap<OsSource> {
    let t = thread::state_or_create();
    // SAFETY: this thread's own state.
    if t.is_null() { global::main_heap() } else { unsafe { (*t).heap } }
}

fn aligned(align: usize, n: usize) -> *mut c_void {
    global::ensure_initialised();
    if checked::enabled() {
        return or_enomem(uncached(checked::alloc(n, align)));
    }
    or_enomem(uncached(my_heap().memalign(align, n)))
}

fn memalign_impl(align: usize, n: usize) -> *mut c_void {
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

fn pvalloc_impl(n: usize) -> *mut c_void {
    let Some(rounded) = n.checked_add(PAGE - 1) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    aligned(PAGE, rounded & !(PAGE - 1))
}

fn reallocarray_impl(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(total) => resize(p, total, "reallocarray"),
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

fn usable(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    let p = p as usize;
    let heap = global::owner_of(p, "malloc_usable_size");
    let h = heap.validate(p, "malloc_usable_size");
    if checked::enabled() { checked::usable(heap, p, h) } else { heap.usable_of(p, h) }
}

// ------------------------------------------------------------------------------------------------
// The malloc family

/// Allocates `n` bytes, aligned to `ALIGNMENT`.
#[no_mangle]
pub extern "C" fn malloc(n: usize) -> *mut c_void {
    alloc(n)
}

/// Frees a block from this allocator (NULL is ignored).
#[no_mangle]
pub extern "C" fn free(p: *mut c_void) {
    dealloc(p, "free")
}

/// Allocates `nmemb * size` zeroed bytes; NULL with ENOMEM if the product overflows.
#[no_mangle]
pub extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
    zalloc(nmemb, size)
}

/// Resizes a block, keeping its contents.
#[no_mangle]
pub extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    resize(p, n, "realloc")
}

/// `realloc(p, nmemb * size)` with overflow checking.
#[no_mangle]
pub extern "C" fn reallocarray(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    reallocarray_impl(p, nmemb, size)
}

/// POSIX aligned allocation: EINVAL unless `align` is a power of two multiple of the pointer size.
///
/// # Safety
/// `memptr` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, n: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = if align <= ALIGNMENT { alloc(n) } else { aligned(align, n) };
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer slot.
    unsafe { *memptr = p };
    0
}

/// C11 aligned allocation: NULL with EINVAL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    memalign_impl(align, n)
}

/// Obsolete aligned allocation (glibc semantics: non-powers of two are rounded up).
#[no_mangle]
pub extern "C" fn memalign(align: usize, n: usize) -> *mut c_void {
    memalign_impl(align, n)
}

/// Page-aligned allocation.
#[no_mangle]
pub extern "C" fn valloc(n: usize) -> *mut c_void {
    aligned(PAGE, n)
}

/// Page-aligned allocation of whole pages.
#[no_mangle]
pub extern "C" fn pvalloc(n: usize) -> *mut c_void {
    pvalloc_impl(n)
}

/// Bytes usable in the block at `p` (at least what was asked for); 0 for NULL.
#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    usable(p)
}

/// C23 free with the allocation's size: aborts if `size` exceeds the block.
#[no_mangle]
pub extern "C" fn free_sized(p: *mut c_void, size: usize) {
    if !p.is_null() && size > usable(p) {
        crate::diag::fatal("free_sized", "size larger than the block", p as usize);
    }
    dealloc(p, "free_sized")
}

/// C23 free with the allocation's alignment and size: aborts if they do not match the block.
#[no_mangle]
pub extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    if !p.is_null() {
        if align == 0 || (p as usize) % align != 0 || size > usable(p) {
            crate::diag::fatal("free_aligned_sized", "alignment or size does not match the block", p as usize);
        }
    }
    dealloc(p, "free_aligned_sized")
}

/// Old name of `free`.
#[no_mangle]
pub extern "C" fn cfree(p: *mut c_void) {
    dealloc(p, "cfree")
}

/// Gives free memory back to the OS, keeping `pad` bytes at the top of the heap. Returns 1 if
/// any memory was released.
#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
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
    released as c_int
}

/// glibc's `struct mallinfo2`, filled with this allocator's numbers.
#[repr(C)]
pub struct MallInfo2 {
    /// Bytes obtained from the OS for the heap (mapped blocks excluded).
    pub arena: usize,
    /// Free blocks in the coalescing heap.
    pub ordblks: usize,
    /// Blocks parked on the quick lists (glibc: fastbin blocks).
    pub smblks: usize,
    /// Blocks with a mapping of their own.
    pub hblks: usize,
    /// Bytes in blocks with a mapping of their own.
    pub hblkhd: usize,
    /// Always 0 (as in glibc).
    pub usmblks: usize,
    /// Bytes parked on the quick lists.
    pub fsmblks: usize,
    /// Bytes of the heap in use (by the program and its thread caches).
    pub uordblks: usize,
    /// Bytes free in the heap (coalesced and quick).
    pub fordblks: usize,
    /// Bytes at the top of the heap that malloc_trim could give back.
    pub keepcost: usize,
}

fn mall_info() -> MallInfo2 {
    let u = global::arenas().iter().map(|a| a.usage()).fold(Usage::default(), |s, u| s.add(&u));
    MallInfo2 {
        arena: u.heap_bytes,
        ordblks: u.free_blocks,
        smblks: u.quick_blocks,
        hblks: u.mapped_blocks,
        hblkhd: u.mapped_bytes,
        usmblks: 0,
        fsmblks: u.quick_bytes,
        uordblks: u.heap_bytes - u.free_bytes - u.quick_bytes.min(u.heap_bytes - u.free_bytes),
        fordblks: u.free_bytes + u.quick_bytes,
        keepcost: u.top_bytes,
    }
}

/// Heap statistics in glibc's `struct mallinfo2` layout.
#[no_mangle]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    mall_info()
}

/// glibc's older `struct mallinfo` (int fields; values saturate at INT_MAX).
#[repr(C)]
pub struct MallInfo {
    /// See [`MallInfo2`]; each field saturates at `INT_MAX`.
    pub fields: [c_int; 10],
}

/// Heap statistics in the older `struct mallinfo` layout (deprecated in glibc).
#[no_mangle]
pub extern "C" fn mallinfo() -> MallInfo {
    let m = mall_info();
    let v = [m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks, m.fordblks, m.keepcost];
    MallInfo { fields: v.map(|x| x.min(c_int::MAX as usize) as c_int) }
}

/// Prints the allocator's statistics on standard error.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    let saved = errno();
    stats::print_summary(2);
    set_errno(saved);
}

// ------------------------------------------------------------------------------------------------
// glibc's internal names, which some programs and libraries call directly

/// Alias of `malloc`.
#[no_mangle]
pub extern "C" fn __libc_malloc(n: usize) -> *mut c_void {
    alloc(n)
}
/// Alias of `free`.
#[no_mangle]
pub extern "C" fn __libc_free(p: *mut c_void) {
    dealloc(p, "free")
}
/// Alias of `calloc`.
#[no_mangle]
pub extern "C" fn __libc_calloc(nmemb: usize, size: usize) -> *mut c_void {
    zalloc(nmemb, size)
}
/// Alias of `realloc`.
#[no_mangle]
pub extern "C" fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    resize(p, n, "realloc")
}
/// Alias of `memalign`.
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, n: usize) -> *mut c_void {
    memalign_impl(align, n)
}
/// Alias of `valloc`.
#[no_mangle]
pub extern "C" fn __libc_valloc(n: usize) -> *mut c_void {
    aligned(PAGE, n)
}
/// Alias of `pvalloc`.
#[no_mangle]
pub extern "C" fn __libc_pvalloc(n: usize) -> *mut c_void {
    pvalloc_impl(n)
}

// ------------------------------------------------------------------------------------------------
// The original my_alloc names (same semantics as their libc twins) and the library's extras

/// `malloc` under the original name.
#[no_mangle]
pub extern "C" fn my_alloc(size: usize) -> *mut c_void {
    alloc(size)
}

/// `free` under the original name.
#[no_mangle]
pub extern "C" fn freee(ptr: *mut c_void) {
    dealloc(ptr, "freee")
}

/// `calloc` under the original name.
#[no_mangle]
pub extern "C" fn call_oc(nmemb: usize, size: usize) -> *mut c_void {
    zalloc(nmemb, size)
}

/// `realloc` under the original name.
#[no_mangle]
pub extern "C" fn reall_oc(ptr: *mut c_void, size: usize) -> *mut c_void {
    resize(ptr, size, "reall_oc")
}

/// Verifies every invariant of the heap (block tiling, boundary tags, free lists). Returns 0 if
/// the heap is sound; otherwise prints what is wrong on standard error and returns -1.
#[no_mangle]
pub extern "C" fn my_alloc_check_heap() -> c_int {
    match global::arenas().iter().try_for_each(|a| a.check().map(|_| ())) {
        Ok(()) => 0,
        Err(what) => {
            let mut l = crate::diag::Line::new();
            l.str("my_alloc: heap check failed: ").str(what);
            l.write_to(2);
            -1
        }
    }
}
