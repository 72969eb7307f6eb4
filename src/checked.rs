//! Checking mode (`MY_ALLOC_CHECK=1`): catches what the always-on checks cannot see, at the cost
//! of speed.
//!
//! - Writes past the end of a block: every block carries a trailer after the requested size —
//!   canary bytes, then the requested size sealed with the block's address — verified when the
//!   block is freed or reallocated.
//! - Writes into a freed block: a freed block is filled with `FREED` (all but its link word) and
//!   marked; when a marked block is handed out again, the fill must be intact.
//! - Writes before the start of a block land in its header, which the default checks verify.
//!
//! - In guard mode (`MY_ALLOC_CHECK=guard`) requests up to `MY_ALLOC_GUARD_MAX` get guarded
//!   blocks (`guard`) instead, while the pool has slots; the rest are checked as above.
//!
//! Thread caches are off in this mode (so every call comes here), `realloc` always moves (so a
//! stale pointer to the old block is caught when it is freed), and `malloc_usable_size` reports
//! the requested size (so code that writes up to it does not trip the canary).

use crate::block::{self, LOW_MASK, MAPPED};
use crate::config::{ALIGNMENT, WORD};
use crate::diag::{fatal, fatal_detail};
use crate::global::main_heap;
use crate::heap::Heap;
use crate::os::OsSource;
use crate::{guard, options};

/// Bytes every block gets beyond the request: the sealed size word.
const TRAILER: usize = WORD;
/// Filled between the requested size and the trailer.
const CANARY: u8 = 0xCA;
/// Filled into freed blocks.
const FREED: u8 = 0xDF;

/// Whether checking mode is on.
#[inline]
pub fn enabled() -> bool {
    options::CHECK.load(core::sync::atomic::Ordering::Relaxed)
}

/// Allocates `n` bytes at `align` with a trailer (in guard mode, a guarded block when it fits
/// and the pool has a slot); `None` when memory is exhausted.
pub fn alloc(n: usize, align: usize) -> Option<usize> {
    if guard::all() {
        if let Some(p) = guard::alloc(n, align) {
            return Some(p);
        }
    }
    let heap = main_heap();
    let total = n.checked_add(TRAILER)?;
    let p = if align > ALIGNMENT { heap.memalign(align, total)? } else { heap.malloc(total)? };
    let h = heap.validate(p, "malloc");
    if h & MAPPED == 0 && heap.is_checked(p, h) {
        verify_fill(heap, p, h);
    }
    arm(heap, p, h, n);
    Some(p)
}

/// Verifies the trailer of the live block at `p` (header `h`) and frees it, filling it first.
pub fn free(heap: &Heap<OsSource>, p: usize, h: u64, func: &str) {
    if heap.is_checked(p, h) {
        verify_trailer(heap, p, h, func);
    }
    if h & MAPPED == 0 {
        let usable = heap.usable_of(p, h);
        // SAFETY: the caller owns the block; everything after its link word is payload.
        unsafe { core::ptr::write_bytes((p + WORD) as *mut u8, FREED, usable - WORD) };
        heap.set_checked(p, h, true);
    }
    heap.free_validated(p, h);
}

/// Moves the live block at `p` to a new block of `n > 0` bytes (always: a stale pointer to the
/// old one is then caught when it is used with free). `None` when memory is exhausted.
pub fn realloc(heap: &Heap<OsSource>, p: usize, h: u64, n: usize, func: &str) -> Option<usize> {
    let old = if heap.is_checked(p, h) { verify_trailer(heap, p, h, func) } else { heap.usable_of(p, h) };
    let q = alloc(n, ALIGNMENT)?;
    // SAFETY: both blocks are live and distinct; `old` bytes are the caller's at p.
    unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n)) };
    free(heap, p, h, func);
    Some(q)
}

/// The requested size of the live block at `p` (its usable size if it has no trailer).
pub fn usable(heap: &Heap<OsSource>, p: usize, h: u64) -> usize {
    if heap.is_checked(p, h) { verify_trailer(heap, p, h, "malloc_usable_size") } else { heap.usable_of(p, h) }
}

fn arm(heap: &Heap<OsSource>, p: usize, h: u64, n: usize) {
    let t = p + heap.usable_of(p, h) - TRAILER;
    // SAFETY: the block is ours and at least n + TRAILER bytes long.
    unsafe {
        core::ptr::write_bytes((p + n) as *mut u8, CANARY, t - (p + n));
        block::store(t, block::seal(t, n as u64, heap.secret()));
    }
    heap.set_checked(p, h, true);
}

/// Checks the trailer and canary of the block at `p`; returns the requested size.
fn verify_trailer(heap: &Heap<OsSource>, p: usize, h: u64, func: &str) -> usize {
    let t = p + heap.usable_of(p, h) - TRAILER;
    // SAFETY: the trailer word lies inside the live block.
    let w = unsafe { block::load(t) };
    let n = (w & LOW_MASK) as usize;
    if !block::is_sealed(t, w, heap.secret()) || p + n > t {
        fatal(func, "heap buffer overflow: the size trailer after the block was overwritten, block", p);
    }
    // SAFETY: [p + n, t) lies inside the block.
    let canary = unsafe { core::slice::from_raw_parts((p + n) as *const u8, t - (p + n)) };
    if let Some(at) = canary.iter().position(|&b| b != CANARY) {
        fatal_detail(func, "heap buffer overflow past the end of", p, "bytes requested, written at offset", n as u64, (n + at) as u64);
    }
    n
}

fn verify_fill(heap: &Heap<OsSource>, p: usize, h: u64) {
    let usable = heap.usable_of(p, h);
    // SAFETY: the block is ours; after its link word it was filled when freed.
    let body = unsafe { core::slice::from_raw_parts((p + WORD) as *const u8, usable - WORD) };
    if let Some(at) = body.iter().position(|&b| b != FREED) {
        fatal_detail("malloc", "write after free into the block at", p, "bytes usable, written at offset", usable as u64, (WORD + at) as u64);
    }
}
