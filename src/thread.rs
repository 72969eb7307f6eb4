//! Each thread's cache and arena: bound through a TLS slot on a thread's first slow path, flushed
//! and parked at thread exit, reused by the next thread.
//!
//! A thread is bound to an arena when its cache is: the first arena no thread uses, else a new
//! one while the process has fewer than `global::arena_limit()`, else the one the fewest threads
//! share. A thread that exits leaves its arena to the next thread.
//!
//! The slot (`os::thread_slot`) holds 0 (no cache yet), `DISABLED` (being set up or torn down:
//! use the heap directly) or the cache's address. Thread exit is seen through a pthread key's
//! destructor (the key is created once; `pthread_setspecific` is called with the slot set to
//! `DISABLED`, so that a `calloc` it makes for a high key goes to the heap directly). Caches are
//! never unmapped, and stay on an append-only registry so that statistics can be summed without a
//! lock, even while threads come and go.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::config::{MAX_ARENAS, PAGE, THREAD_SAFE};
use crate::global::{self, ensure_initialised};
use crate::heap::Heap;
use crate::os::OsSource;
use crate::source::Source;
use crate::sync::Lock;
use crate::tcache::ThreadCache;
use crate::{options, os};

/// Slot value of a thread whose cache is being created or was torn down.
const DISABLED: usize = 1;

/// What a thread has of its own: its cache and its arena, then the cache's links on the registry
/// and the pool.
#[repr(C)]
pub struct ThreadState {
    /// The thread's cache, in front of its arena.
    pub cache: ThreadCache,
    /// The arena the cache works on.
    pub heap: &'static Heap<OsSource>,
    /// The process's secret (every arena's), beside `heap` so that the hot paths need not read
    /// it through the arena.
    pub secret: u64,
    /// When this thread's allocations are next sampled by the profiler (next to `heap`, which the
    /// hot path reads too).
    pub sample: SampleClock,
    /// Its index in `global::ARENAS`.
    arena: usize,
    /// Next cache on the registry of all caches ever made.
    registry_next: *mut ThreadState,
    /// Next parked cache, while no thread owns this one.
    parked_next: *mut ThreadState,
}

type Registered = ThreadState;

/// The per-thread sampling clock of the profiler's stacks and of guarded blocks
/// (`profile::sampler` reads and winds it).
#[repr(C)]
pub struct SampleClock {
    /// Bytes this thread may still allocate before the next sample of either kind, less one;
    /// below zero, the allocation that took it there is due. Starts at -1, so the first
    /// allocation decides.
    pub left: isize,
    /// The thread's random state for drawing intervals.
    pub rng: u64,
    /// The thread is recording a sample: its own allocations meanwhile are not sampled.
    pub busy: bool,
    /// What `left` was wound to: `wound - left` bytes have been counted since.
    pub wound: isize,
    /// Bytes to the next stack sample, and to the next guarded one, as of the winding.
    pub stacks: isize,
    pub guards: isize,
}

impl SampleClock {
    pub const fn new() -> Self {
        SampleClock { left: -1, rng: 0, busy: false, wound: -1, stacks: 0, guards: 0 }
    }
}

/// Parked caches, ready for new threads, and who uses which arena.
struct Pool {
    parked: *mut Registered,
    /// Unused tail of the last mapping caches are carved from.
    spare: usize,
    spare_len: usize,
    /// Threads bound to each arena.
    bound: [u32; MAX_ARENAS],
}
// SAFETY: the pool only holds pointers to caches, which are plain memory handed between threads.
unsafe impl Send for Pool {}

static POOL: Lock<Pool> = Lock::new(Pool { parked: core::ptr::null_mut(), spare: 0, spare_len: 0, bound: [0; MAX_ARENAS] });
static REGISTRY: AtomicPtr<Registered> = AtomicPtr::new(core::ptr::null_mut());
/// The pthread key whose destructor tears a cache down (KEY_UNSET until created).
static KEY: AtomicU32 = AtomicU32::new(KEY_UNSET);
const KEY_UNSET: u32 = u32::MAX;
const KEY_FAILED: u32 = u32::MAX - 1;

/// Whether threads get caches at all in this build.
const CACHES: bool = THREAD_SAFE && os::HAS_THREAD_SLOT;

/// This thread's cache and arena, or null when it has none (yet, or any more).
#[inline(always)]
pub fn state() -> *mut ThreadState {
    if !CACHES {
        return core::ptr::null_mut();
    }
    // SAFETY: the slot is this thread's own word.
    let v = unsafe { *os::thread_slot() };
    if v > DISABLED { v as *mut ThreadState } else { core::ptr::null_mut() }
}

/// This thread's cache and arena, creating them if the thread has none yet; null when caching
/// is off for this thread (single-threaded build, checking mode, being torn down, out of memory).
#[cold]
pub fn state_or_create() -> *mut ThreadState {
    let tc = state();
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
    r
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
    let arena = choose_arena(&mut pool);
    pool.bound[arena] += 1;
    let heap = &global::ARENAS[arena];
    // Every arena has the main heap's secret once activated (the main heap draws it here if no
    // block exists yet), so the thread's copy stays valid.
    global::main_heap().init_secret();
    if !pool.parked.is_null() {
        let r = pool.parked;
        // SAFETY: parked caches are live and owned by the pool; the cache was flushed when it was
        // parked, so it holds no block of the arena it had.
        unsafe {
            pool.parked = (*r).parked_next;
            (*r).heap = heap;
            (*r).secret = heap.secret();
            (*r).arena = arena;
        }
        return r;
    }
    let size = core::mem::size_of::<Registered>().next_multiple_of(64);
    if pool.spare_len < size {
        let chunk = (16 * size).next_multiple_of(PAGE);
        let Some(m) = heap.source().map(chunk) else {
            pool.bound[arena] -= 1;
            return core::ptr::null_mut();
        };
        pool.spare = m;
        pool.spare_len = chunk;
    }
    let r = pool.spare as *mut Registered;
    pool.spare += size;
    pool.spare_len -= size;
    drop(pool);
    // SAFETY: fresh memory, big enough and aligned for a Registered, ours until published.
    unsafe {
        r.write(Registered { cache: ThreadCache::new(), heap, secret: heap.secret(), sample: SampleClock::new(), arena, registry_next: core::ptr::null_mut(), parked_next: core::ptr::null_mut() })
    };
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

/// The arena for a new thread: the first no thread uses (the most recently used ones come first,
/// being warm), else a new one while under the limit, else the one the fewest threads share.
fn choose_arena(pool: &mut Pool) -> usize {
    let active = global::arenas().len();
    if let Some(i) = (0..active).find(|&i| pool.bound[i] == 0) {
        return i;
    }
    if active < global::arena_limit() {
        global::activate(active);
        return active;
    }
    (0..active).min_by_key(|&i| pool.bound[i]).unwrap_or(0)
}

/// The key's destructor: runs at thread exit with the thread's cache.
unsafe extern "C" fn teardown(value: *mut core::ffi::c_void) {
    let r = value as *mut Registered;
    // Later destructors that allocate or free use the heap directly.
    // SAFETY: the slot is this thread's own word.
    unsafe { *os::thread_slot() = DISABLED };
    // SAFETY: the cache belonged to this thread, which no longer uses it.
    unsafe { (*r).cache.flush_everything((*r).heap) };
    let mut pool = POOL.lock();
    // SAFETY: as above.
    let arena = unsafe { (*r).arena };
    pool.bound[arena] = pool.bound[arena].saturating_sub(1);
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

/// Fork support: releases what `lock_for_fork` took, in the parent.
///
/// # Safety
/// Only from the fork handlers, after `lock_for_fork`.
pub unsafe fn unlock_after_fork() {
    // SAFETY: forwarded from the caller.
    unsafe { POOL.unlock_after_fork() };
}

/// Fork support, in the child: only this thread is left, so only its arena is in use (the other
/// threads' caches are abandoned, bounded by their size); then releases what `lock_for_fork`
/// took.
///
/// # Safety
/// Only from the child's fork handler, after `lock_for_fork` in the parent.
pub unsafe fn unlock_in_child() {
    {
        // SAFETY: the lock is held by this thread since the prepare handler: the pool is ours.
        let pool = unsafe { &mut *POOL.as_ptr_for_fork() };
        pool.bound = [0; MAX_ARENAS];
        let me = state();
        if !me.is_null() {
            // SAFETY: this thread's own state.
            pool.bound[unsafe { (*me).arena }] = 1;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { POOL.unlock_after_fork() };
}
