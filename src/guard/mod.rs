//! Guarded blocks: a block on pages of its own, between inaccessible guard pages, made
//! inaccessible itself when it is freed and kept so in a quarantine. An access past its end or
//! into it after its free faults at the faulting instruction, and the fault handler (`fault`)
//! reports what happened, with the stacks of the block's allocation and free.
//!
//! Two uses: a rare sample of ordinary allocations, on by default (`MY_ALLOC_GUARD_RATE`; the
//! profiler's clock decides, `profile::sampler`), and guard mode (`MY_ALLOC_CHECK=guard`), where
//! checking mode puts every request up to `MY_ALLOC_GUARD_MAX` here.
//!
//! A block ends its last data page (its start rounded down to the alignment asked for), so an
//! overflow reaches the next guard page at once; with `MY_ALLOC_GUARD_BELOW` it starts its first
//! page instead, so an underflow reaches the previous one. The slack on the other side is filled
//! with `FILL` and checked when the block is freed: what the alignment keeps from faulting (a
//! write of a few bytes past a block of 13) is still found, at the free.

use core::sync::atomic::Ordering;

use crate::config::PAGE;
use crate::options;
use crate::sync::Lock;

pub mod fault;
mod pool;

use pool::{Pool, Stack, State};

/// Fills the unused bytes of a guarded block's pages.
const FILL: u8 = 0xAB;

static POOL: Lock<Pool> = Lock::new(Pool::new());

/// Whether `p` is in the guarded pool: then only this module may free or resize it.
#[inline(always)]
pub fn owns(p: usize) -> bool {
    pool::contains(p)
}

/// Mean bytes between guarded samples (`None`: no sampling).
pub fn rate() -> Option<usize> {
    match options::GUARD_RATE_BYTES.load(Ordering::Relaxed) {
        0 => None,
        r => Some(r),
    }
}

/// Whether guard mode is on.
#[inline]
pub fn all() -> bool {
    options::GUARD_ALL.load(Ordering::Relaxed)
}

/// Whether a request of `n` bytes at `align` may be guarded (guard mode's size limit included).
pub fn fits(n: usize, align: usize) -> bool {
    let limit = if all() { options::GUARD_MAX.load(Ordering::Relaxed) } else { PAGE };
    n <= limit && align <= PAGE
}

/// A guarded block of `n` bytes at `align` (a power of two, at most a page); `None` when the
/// request does not fit, the pool cannot be had, or all its free slots are in quarantine.
pub fn alloc(n: usize, align: usize) -> Option<usize> {
    if !fits(n, align) {
        return None;
    }
    let stack = Stack::here();
    let mut pool = POOL.lock();
    if !pool.ensure() || n > pool.capacity() {
        return None;
    }
    let i = pool.take()?;
    let (data, len) = pool::data_of(i);
    // Only the pages the block touches (at least one) become accessible. A zero-byte block is
    // put against the guard after it even when blocks start their page: any access to it is past
    // its end.
    let (user, lo, hi) = if n > 0 && options::GUARD_BELOW.load(Ordering::Relaxed) {
        (data, data, data + n.max(1).div_ceil(PAGE) * PAGE)
    } else {
        let user = (data + len - n) & !(align - 1);
        (user, (user & !(PAGE - 1)).min(data + len - PAGE), data + len)
    };
    if !crate::os::make_accessible(lo, hi - lo) {
        pool.give_back(i);
        return None;
    }
    // SAFETY: [lo, hi) is part of slot i's data, accessible now, and nobody else's; the block is
    // [user, user + n) inside it.
    unsafe {
        core::ptr::write_bytes(lo as *mut u8, FILL, user - lo);
        core::ptr::write_bytes((user + n) as *mut u8, FILL, hi - (user + n));
    }
    let s = pool.slot_mut(i);
    s.user = user;
    s.size = n;
    s.lo = lo;
    s.hi = hi;
    s.alloc = stack;
    s.free = Stack::EMPTY;
    s.state = State::Live;
    drop(pool);
    fault::ensure_installed();
    Some(user)
}

/// The live guarded block at `p`'s slot, or the misuse reported (`func` named) and the process
/// aborted.
fn live_slot(p: usize, func: &str) -> usize {
    match pool::slot_of(p) {
        Some(i) if pool::slot(i).state == State::Live && pool::slot(i).user == p => i,
        Some(i) if pool::slot(i).state == State::Freed && pool::slot(i).user == p => fault::misuse(func, "double free", p, i),
        Some(i) => fault::misuse(func, "pointer into a guarded page, not to the start of a live block:", p, i),
        None => fault::misuse_outside(func, p),
    }
}

/// The requested size of the live guarded block `p` (what `malloc_usable_size` reports: the
/// bytes after it are checked).
pub fn usable(p: usize, func: &str) -> usize {
    pool::slot(live_slot(p, func)).size
}

/// Frees the live guarded block `p`: checks the fill around it, records the free's stack, and
/// makes its pages inaccessible (their memory goes back to the OS) until the slot is reused.
pub fn free(p: usize, func: &str) {
    let stack = Stack::here();
    let mut pool = POOL.lock();
    let i = live_slot(p, func);
    let (size, lo, hi) = (pool::slot(i).size, pool::slot(i).lo, pool::slot(i).hi);
    // SAFETY: the slot is live, so [lo, hi) is accessible; the ranges lie inside it.
    let (before, after) = unsafe {
        (
            core::slice::from_raw_parts(lo as *const u8, p - lo),
            core::slice::from_raw_parts((p + size) as *const u8, hi - (p + size)),
        )
    };
    if let Some(at) = after.iter().position(|&b| b != FILL) {
        drop(pool);
        fault::damaged(func, "heap buffer overflow (found at free):", p, i, size + at, true);
    }
    if let Some(at) = before.iter().rposition(|&b| b != FILL) {
        drop(pool);
        fault::damaged(func, "heap buffer underflow (found at free):", p, i, before.len() - at, false);
    }
    let s = pool.slot_mut(i);
    s.free = stack;
    s.state = State::Freed;
    // The pages stay reserved whatever this returns; only their memory might stay.
    crate::os::make_inaccessible(lo, hi - lo);
    pool.give_back(i);
}

/// Takes the pool's lock for `fork` (so that the child finds it free).
pub fn lock_for_fork() {
    POOL.lock_for_fork();
}

/// Releases the lock `lock_for_fork` took.
///
/// # Safety
/// Only after `lock_for_fork`, in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: the caller's contract: this thread (or its parent) holds the lock.
    unsafe { POOL.unlock_after_fork() };
}
