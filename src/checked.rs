//! Checking mode (`MY_ALLOC_CHECK=1`): catches what the always-on checks cannot see, at the cost
//! of speed.
//!
//! - Writes past the end of a block: every block carries a trailer after the requested size —
//!   canary bytes, then the requested size sealed with the block's address — verified when the
//!   block is freed or reallocated.
//! - Writes into a freed block: a freed block is filled with `FREED` (all but its link word),
//!   marked, and held back from reuse in a quarantine (the last `CHECK_QUARANTINE_BLOCKS` freed,
//!   up to `CHECK_QUARANTINE_BYTES`), so that a stale pointer keeps pointing at freed memory for a
//!   while; the fill is verified when the block leaves the quarantine, when a marked block is
//!   handed out again, and for every block still in quarantine at exit. A free or `realloc` of a
//!   block in quarantine is a double free.
//! - Overflows of blocks that are never freed: at exit every live block's canary and trailer are
//!   verified too.
//! - Writes before the start of a block land in its header, which the default checks verify.
//!
//! - In guard mode (`MY_ALLOC_CHECK=guard`) requests up to `MY_ALLOC_GUARD_MAX` get guarded
//!   blocks (`guard`) instead, while the pool has slots; the rest are checked as above.
//!
//! Thread caches are off in this mode (so every call comes here), `realloc` always moves (so a
//! stale pointer to the old block is caught when it is freed), and `malloc_usable_size` reports
//! the requested size (so code that writes up to it does not trip the canary).

use crate::block::{self, CHECKED, LOW_MASK, MAPPED};
use crate::config::{ALIGNMENT, CHECK_QUARANTINE_BLOCKS, CHECK_QUARANTINE_BYTES, WORD};
use crate::diag::{fatal, fatal_detail};
use crate::sync::Lock;
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
/// A word of that fill.
const FREED_WORD: u64 = u64::from_ne_bytes([FREED; 8]);

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

/// Freed blocks held back from reuse, oldest first: a ring of (block, header, usable bytes).
struct Quarantine {
    ring: [(usize, u64, usize); CHECK_QUARANTINE_BLOCKS],
    front: usize,
    len: usize,
    bytes: usize,
}

static QUARANTINE: Lock<Quarantine> = Lock::new(Quarantine { ring: [(0, 0, 0); CHECK_QUARANTINE_BLOCKS], front: 0, len: 0, bytes: 0 });

impl Quarantine {
    fn holds(&self, p: usize) -> bool {
        (0..self.len).any(|k| self.ring[(self.front + k) % CHECK_QUARANTINE_BLOCKS].0 == p)
    }
}

/// Diagnoses a free or `realloc` (`func`) of a block that is in quarantine: freed already.
fn reject_if_quarantined(p: usize, func: &str) {
    if QUARANTINE.lock().holds(p) {
        fatal(func, "double free of (the block is in the quarantine of freed blocks)", p);
    }
}

/// Verifies the trailer of the live block at `p` (header `h`) and frees it: filled, into the
/// quarantine, and the oldest block there on to the heap once the quarantine is full.
pub fn free(heap: &'static Heap<OsSource>, p: usize, h: u64, func: &str) {
    reject_if_quarantined(p, func);
    if heap.is_checked(p, h) {
        verify_trailer(heap, p, h, func);
    }
    if h & MAPPED != 0 {
        return heap.free_validated(p, h);
    }
    let usable = heap.usable_of(p, h);
    // SAFETY: the caller owns the block; everything after its link word is payload.
    unsafe { core::ptr::write_bytes((p + WORD) as *mut u8, FREED, usable - WORD) };
    heap.set_checked(p, h, true);
    let mut q = QUARANTINE.lock();
    if q.len == CHECK_QUARANTINE_BLOCKS {
        release_oldest(&mut q, func);
    }
    let back = (q.front + q.len) % CHECK_QUARANTINE_BLOCKS;
    q.ring[back] = (p, h, usable);
    q.len += 1;
    q.bytes += usable;
    while q.bytes > CHECK_QUARANTINE_BYTES && q.len > 1 {
        release_oldest(&mut q, func);
    }
}

/// Frees the oldest block of the quarantine to its heap, its fill verified first.
fn release_oldest(q: &mut Quarantine, func: &str) {
    let (p, h, usable) = q.ring[q.front];
    q.front = (q.front + 1) % CHECK_QUARANTINE_BLOCKS;
    q.len -= 1;
    q.bytes -= usable;
    verify_fill_of(p, usable, func);
    // Checking mode's blocks are all the main heap's (thread caches are off).
    main_heap().free_validated(p, h);
}

/// Takes the quarantine's lock for `fork` (it is taken before a heap's, never after).
pub fn lock_for_fork() {
    QUARANTINE.lock_for_fork();
}

/// Releases the lock `lock_for_fork` took.
///
/// # Safety
/// Only after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: the caller's contract.
    unsafe { QUARANTINE.unlock_after_fork() };
}

/// At exit: verifies the fill of every block still in quarantine and the canary and trailer of
/// every live checked block of the main heap, so that a write after free, or an overflow of a
/// block never freed, is still reported (and aborts).
pub fn scan_at_exit() {
    let q = QUARANTINE.lock();
    for k in 0..q.len {
        let (p, _, usable) = q.ring[(q.front + k) % CHECK_QUARANTINE_BLOCKS];
        verify_fill_of(p, usable, "exit");
    }
    let heap = main_heap();
    heap.for_each_in_use(|p, h| {
        // Quarantined blocks are in use for the heap, filled (their trailer too): verified above.
        // SAFETY: p is a block in use of at least a word past its link word.
        let filled = h & CHECKED != 0 && unsafe { block::load(p + heap.usable_of(p, h) - TRAILER) } == FREED_WORD;
        if h & CHECKED != 0 && !filled {
            verify_trailer(heap, p, h, "exit");
        }
    });
}

/// Moves the live block at `p` to a new block of `n > 0` bytes (always: a stale pointer to the
/// old one is then caught when it is used with free). `None` when memory is exhausted.
pub fn realloc(heap: &'static Heap<OsSource>, p: usize, h: u64, n: usize, func: &str) -> Option<usize> {
    reject_if_quarantined(p, func);
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
    verify_fill_of(p, heap.usable_of(p, h), "malloc");
}

/// Verifies the fill of the freed block `p` of `usable` bytes (`func` named if it was written).
fn verify_fill_of(p: usize, usable: usize, func: &str) {
    // SAFETY: the block is ours; after its link word it was filled when freed.
    let body = unsafe { core::slice::from_raw_parts((p + WORD) as *const u8, usable - WORD) };
    if let Some(at) = body.iter().position(|&b| b != FREED) {
        fatal_detail(func, "write after free into the block at", p, "bytes usable, written at offset", usable as u64, (WORD + at) as u64);
    }
}
