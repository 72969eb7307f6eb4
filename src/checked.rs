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
//! Thread caches are off in this mode (so every call comes here), `realloc` always moves (so a
//! stale pointer to the old block is caught when it is freed), and `malloc_usable_size` reports
//! the requested size (so code that writes up to it does not trip the canary).

use crate::block::{self, LOW_MASK, MAPPED};
use crate::config::{ALIGNMENT, WORD};
use crate::diag::{fatal, fatal_detail};
use crate::global::HEAP;
use crate::options;

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

/// Allocates `n` bytes at `align` with a trailer; `None` when memory is exhausted.
pub fn alloc(n: usize, align: usize) -> Option<usize> {
    let total = n.checked_add(TRAILER)?;
    let p = if align > ALIGNMENT { HEAP.memalign(align, total)? } else { HEAP.malloc(total)? };
    let h = HEAP.validate(p, "malloc");
    if h & MAPPED == 0 && HEAP.is_checked(p, h) {
        verify_fill(p, h);
    }
    arm(p, h, n);
    Some(p)
}

/// Verifies the trailer of the live block at `p` (header `h`) and frees it, filling it first.
pub fn free(p: usize, h: u64, func: &str) {
    if HEAP.is_checked(p, h) {
        verify_trailer(p, h, func);
    }
    if h & MAPPED == 0 {
        let usable = HEAP.usable_of(p, h);
        // SAFETY: the caller owns the block; everything after its link word is payload.
        unsafe { core::ptr::write_bytes((p + WORD) as *mut u8, FREED, usable - WORD) };
        HEAP.set_checked(p, h, true);
    }
    HEAP.free_validated(p, h);
}

/// Moves the live block at `p` to a new block of `n > 0` bytes (always: a stale pointer to the
/// old one is then caught when it is used with free). `None` when memory is exhausted.
pub fn realloc(p: usize, h: u64, n: usize, func: &str) -> Option<usize> {
    let old = if HEAP.is_checked(p, h) { verify_trailer(p, h, func) } else { HEAP.usable_of(p, h) };
    let q = alloc(n, ALIGNMENT)?;
    // SAFETY: both blocks are live and distinct; `old` bytes are the caller's at p.
    unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n)) };
    free(p, h, func);
    Some(q)
}

/// The requested size of the live block at `p` (its usable size if it has no trailer).
pub fn usable(p: usize, h: u64) -> usize {
    if HEAP.is_checked(p, h) { verify_trailer(p, h, "malloc_usable_size") } else { HEAP.usable_of(p, h) }
}

fn arm(p: usize, h: u64, n: usize) {
    let t = p + HEAP.usable_of(p, h) - TRAILER;
    // SAFETY: the block is ours and at least n + TRAILER bytes long.
    unsafe {
        core::ptr::write_bytes((p + n) as *mut u8, CANARY, t - (p + n));
        block::store(t, block::seal(t, n as u64, HEAP.secret()));
    }
    HEAP.set_checked(p, h, true);
}

/// Checks the trailer and canary of the block at `p`; returns the requested size.
fn verify_trailer(p: usize, h: u64, func: &str) -> usize {
    let t = p + HEAP.usable_of(p, h) - TRAILER;
    // SAFETY: the trailer word lies inside the live block.
    let w = unsafe { block::load(t) };
    let n = (w & LOW_MASK) as usize;
    if !block::is_sealed(t, w, HEAP.secret()) || p + n > t {
        fatal(func, "heap buffer overflow: the size trailer after the block was overwritten, block", p);
    }
    // SAFETY: [p + n, t) lies inside the block.
    let canary = unsafe { core::slice::from_raw_parts((p + n) as *const u8, t - (p + n)) };
    if let Some(at) = canary.iter().position(|&b| b != CANARY) {
        fatal_detail(func, "heap buffer overflow past the end of", p, "bytes requested, written at offset", n as u64, (n + at) as u64);
    }
    n
}

fn verify_fill(p: usize, h: u64) {
    let usable = HEAP.usable_of(p, h);
    // SAFETY: the block is ours; after its link word it was filled when freed.
    let body = unsafe { core::slice::from_raw_parts((p + WORD) as *const u8, usable - WORD) };
    if let Some(at) = body.iter().position(|&b| b != FREED) {
        fatal_detail("malloc", "write after free into the block at", p, "bytes usable, written at offset", usable as u64, (WORD + at) as u64);
    }
}
