//! Each thread's cache: bound through a TLS slot, created on a thread's first slow path, flushed
//! and parked at thread exit, reused by the next thread.
//!
//! The slot (`os::thread_slot`) holds 0 (no cache yet), `DISABLED` (being set up or torn down:
//! use the heap directly) or the cache's address. Thread exit is seen through a pthread key's
//! destructor (the key is created once; `pthread_setspecific` is called with the slot set to
//! `DISABLED`, so that a `calloc` it makes for a high key goes to the heap directly). Caches are
//! never unmapped, and stay on an append-only registry so that statistics can be summed without a
//! lock, even while threads come and go.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::config::{PAGE, THREAD_SAFE};
use crate::global::{ensure_initialised, HEAP};
use crate::source::Source;
use crate::sync::Lock;
use crate::tcache::ThreadCache;
use crate::{options, os};

/// Slot value of a thread whose cache is being created or was torn down.
const DISABLED: usize = 1;

/// A cache as the process keeps it: the cache first (the slot's pointer is also the cache's),
/// then its links on the registry and the pool.
#[repr(C)]
struct Registered {
    cache: ThreadCache,
    /// Next cache on the registry of all caches ever made.
    registry_next: *mut Registered,
    /// Next parked cache, while no thread owns this one.
    parked_next: *mut Registered,
}

/// Parked caches, ready for new threads.
struct Pool {
    parked: *mut Registered,
    /// Unused tail of the last mapping caches are carved from.
    spare: usize,
    spare_len: usize,
}
// SAFETY: the pool only holds pointers to caches, which are plain memory handed between threads.
unsafe impl Send for Pool {}

static POOL: Lock<Pool> = Lock::new(Pool { parked: core::ptr::null_mut(), spare: 0, spare_len: 0 });
static REGISTRY: AtomicPtr<Registered> = AtomicPtr::new(core::ptr::null_mut());
/// The pthread key whose destructor tears a cache down (KEY_UNSET until created).
static KEY: AtomicU32 = AtomicU32::new(KEY_UNSET);
const KEY_UNSET: u32 = u32::MAX;
const KEY_FAILED: u32 = u32::MAX - 1;

/// Whether threads get caches at all in this build.
const CACHES: bool = THREAD_SAFE && os::HAS_THREAD_SLOT;

/// This thread's cache, or null when it has none (yet, or any more).
#[inline(always)]
pub fn cache() -> *mut ThreadCache {
    if !CACHES {
        return core::ptr::null_mut();
    }
    // SAFETY: the slot is this thread's own word.
    let v = unsafe { *os::thread_slot() };
    if v > DISABLED { v as *mut ThreadCache } else { core::ptr::null_mut() }
}

/// This thread's cache, creating it if the thread has none yet; null when caching is off for
/// this thread (single-threaded build, checking mode, being torn down, out of memory).
#[cold]
pub fn cache_or_create() -> *mut ThreadCache {
    let tc = cache();
    if !tc.is_null() || !CACHES {
        return tc;
    }
    ensure_initialised();
    if options::CHECK.load(Ordering::Relaxed) {
        return core::ptr::null_mut(); // checking mode sees every call: no caches
    }
    let s = os::thread_slot();
    // SAFETY: the slot is this thread's own word.
    if unsafe { *s } == DISABLED {
        return core::ptr::null_mut();
    }
    // Anything that allocates from here on (pthread_setspecific for a high key) is served by the
    // heap directly.
    // SAFETY: as above.
    unsafe { *s = DISABLED };
    let r = create();
    if !r.is_null() {
        let key = key();
        if key != KEY_FAILED {
            os::thread_key_set(key, r.cast());
        }
        // SAFETY: as above.
        unsafe { *s = r as usize };
    }
    r.cast()
}

fn key() -> u32 {
    let k = KEY.load(Ordering::Acquire);
    if k != KEY_UNSET {
        return k;
    }
    let _pool = POOL.lock();
    let k = KEY.load(Ordering::Acquire);
    if k != KEY_UNSET {
        return k;
    }
    let k = os::thread_key_create(teardown).unwrap_or(KEY_FAILED);
    KEY.store(k, Ordering::Release);
    k
}

/// A cache from the parked ones, or carved from a fresh mapping.
fn create() -> *mut Registered {
    let mut pool = POOL.lock();
    if !pool.parked.is_null() {
        let r = pool.parked;
        // SAFETY: parked caches are live and owned by the pool.
        pool.parked = unsafe { (*r).parked_next };
        return r;
    }
    let size = core::mem::size_of::<Registered>().next_multiple_of(64);
    if pool.spare_len < size {
        let chunk = (16 * size).next_multiple_of(PAGE);
        let Some(m) = HEAP.source().map(chunk) else { return core::ptr::null_mut() };
        pool.spare = m;
        pool.spare_len = chunk;
    }
    let r = pool.spare as *mut Registered;
    pool.spare += size;
    pool.spare_len -= size;
    drop(pool);
    // SAFETY: fresh memory, big enough and aligned for a Registered, ours until published.
    unsafe { r.write(Registered { cache: ThreadCache::new(), registry_next: core::ptr::null_mut(), parked_next: core::ptr::null_mut() }) };
    // Registry: push once, never removed.
    let mut head = REGISTRY.load(Ordering::Acquire);
    loop {
        // SAFETY: r is ours until published.
        unsafe { (*r).registry_next = head };
        match REGISTRY.compare_exchange(head, r, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return r,
            Err(h) => head = h,
        }
    }
}

/// The key's destructor: runs at thread exit with the thread's cache.
unsafe extern "C" fn teardown(value: *mut core::ffi::c_void) {
    let r = value as *mut Registered;
    // Later destructors that allocate or free use the heap directly.
    // SAFETY: the slot is this thread's own word.
    unsafe { *os::thread_slot() = DISABLED };
    // SAFETY: the cache belonged to this thread, which no longer uses it.
    unsafe { (*r).cache.flush_everything(&HEAP) };
    let mut pool = POOL.lock();
    // SAFETY: the cache is parked: owned by the pool from now on.
    unsafe { (*r).parked_next = pool.parked };
    pool.parked = r;
}

/// Calls `f` on every cache ever created (live or parked), without locking.
pub fn for_each_cache(mut f: impl FnMut(&ThreadCache)) {
    let mut r = REGISTRY.load(Ordering::Acquire);
    while !r.is_null() {
        // SAFETY: registry entries are never freed.
        let e = unsafe { &*r };
        f(&e.cache);
        r = e.registry_next;
    }
}

/// Fork support: the pool lock is held across `fork` so the child never sees it mid-update.
pub fn lock_for_fork() {
    POOL.lock_for_fork();
}

/// Fork support: releases what `lock_for_fork` took, in the parent or the child.
///
/// # Safety
/// Only from the fork handlers, after `lock_for_fork`.
pub unsafe fn unlock_after_fork() {
    // SAFETY: forwarded from the caller.
    unsafe { POOL.unlock_after_fork() };
}
