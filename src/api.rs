//! The C surface: the malloc family, glibc's `__libc_*` aliases, the original my_alloc names, and
//! the library's own extras, each a thin wrapper around `entry.rs`. Compiled with the `c-names`
//! feature (the shared and static libraries have it): without it, a Rust program's C libraries
//! keep the C library's heap and only its Rust allocations come here.

use core::ffi::{c_int, c_void};

use crate::config::{ALIGNMENT, PAGE};
use crate::entry::{aligned, alloc, dealloc, memalign_impl, pvalloc_impl, reallocarray_impl, resize, usable, zalloc};
use crate::heap::Usage;
use crate::os::{errno, set_errno};
use crate::diag::{fatal, Line};
use crate::{entry, global, stats};

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
        fatal("free_sized", "size larger than the block", p as usize);
    }
    dealloc(p, "free_sized")
}

/// C23 free with the allocation's alignment and size: aborts if they do not match the block.
#[no_mangle]
pub extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    if !p.is_null() {
        if align == 0 || (p as usize) % align != 0 || size > usable(p) {
            fatal("free_aligned_sized", "alignment or size does not match the block", p as usize);
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
    entry::trim(pad) as c_int
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
    match entry::check_heap() {
        Ok(()) => 0,
        Err(what) => {
            let mut l = Line::new();
            l.str("my_alloc: heap check failed: ").str(what);
            l.write_to(2);
            -1
        }
    }
}

/// Writes a snapshot of the heap profile now, when the program runs with `MY_ALLOC_PROFILE=FILE`:
/// the sampled allocations live at this moment, which `my_alloc report --leaks --snapshot N`
/// shows. Safe to call from a signal handler. Returns 0, or -1 when the program is not being
/// profiled with call stacks.
#[no_mangle]
pub extern "C" fn my_alloc_profile_snapshot() -> c_int {
    if crate::profile::snapshot() { 0 } else { -1 }
}
