//! Thread caches: per-thread LIFO lists of `QUICK` blocks, one per quick class, in front of the
//! heap's quick lists. A hit takes no lock and no atomic read-modify-write: a pop is a load of the
//! head, a decode of its link and one header write; a push is the mirror image.
//!
//! Refills bring half a bin's capacity from the heap (`Heap::refill`); a full bin goes back whole
//! in one splice (`Heap::flush`), so the per-class locks are taken once per batch.
//!
//! The cache pointer lives in an initial-exec TLS slot defined in assembly: Rust's own
//! thread-locals in a shared library go through `__tls_get_addr`, which may call malloc (and so
//! recurse) after another library with TLS is dlopened; initial-exec TLS is a fixed offset from the
//! thread pointer and never calls anything. The slot holds 0 (no cache yet), `DISABLED` (being
//! set up or torn down: use the heap directly) or the cache's address.
//!
//! Thread exit: a pthread key's destructor flushes the cache back to the heap and parks the cache
//! for the next thread. Caches are never unmapped, and stay on an append-only registry so that
//! statistics can be summed without a lock, even while threads come and go.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::block::{self, FLIP_IN_USE_QUICK};
use crate::config::{CACHE_BYTES_PER_CLASS, CACHE_GC_EVENTS, CACHE_MAX_BLOCKS, CACHE_MIN_BLOCKS, PAGE, THREAD_SAFE};
use crate::global::HEAP;
use crate::size_class::{NUM_QUICK, QUICK_SIZE};
use crate::source::Source;
use crate::sync::Lock;

/// Slot value of a thread whose cache is being created or was torn down.
const DISABLED: usize = 1;

/// One size class of a thread cache. The counters are written only by the owning thread and
/// read by statistics from any thread, hence relaxed atomics (plain increments in practice).
#[repr(C)]
pub struct Bin {
    /// First block's user pointer (0: empty); blocks are linked by encoded pointers.
    head: usize,
    /// Last block's user pointer (meaningful while `count > 0`), so that a flush hands the whole
    /// chain over without walking it.
    tail: usize,
    count: u32,
    max: u32,
    /// Blocks handed to the program.
    pub pops: AtomicU64,
    /// Refills (each one a cache miss), and the blocks they brought.
    pub refills: AtomicU64,
    /// See `refills`.
    pub refilled: AtomicU64,
    /// Blocks flushed to the heap.
    pub flushed: AtomicU64,
    /// `pops` at the last collection: a bin whose count has not moved since is idle.
    pops_at_gc: u64,
}

impl Bin {
    /// The block count, read from another thread for statistics (a stale value is fine).
    fn count_racy(&self) -> u32 {
        // SAFETY: an aligned u32 in a live cache; a torn or stale read only skews statistics.
        unsafe { core::ptr::read_volatile(&self.count) }
    }

    /// Blocks the program gave back through this bin: everything that entered the bin other
    /// than by refill (derived, so that `free` counts nothing on its hot path).
    pub fn pushes(&self) -> u64 {
        let out = self.pops.load(Ordering::Relaxed) + self.flushed.load(Ordering::Relaxed) + self.count_racy() as u64;
        out.saturating_sub(self.refilled.load(Ordering::Relaxed))
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// A thread's cache.
#[repr(C)]
pub struct ThreadCache {
    /// One bin per quick class.
    pub bins: [Bin; NUM_QUICK],
    /// Refills and flushes since the last collection of idle bins.
    slow_events: u32,
    /// Next cache on the registry of all caches ever made.
    registry_next: *mut ThreadCache,
    /// Next parked cache, while no thread owns this one.
    parked_next: *mut ThreadCache,
}

/// Parked caches, ready for new threads.
struct Pool {
    parked: *mut ThreadCache,
    /// Unused tail of the last mapping caches are carved from.
    spare: usize,
    spare_len: usize,
}
// SAFETY: the pool only holds pointers to caches, which are plain memory handed between threads.
unsafe impl Send for Pool {}

static POOL: Lock<Pool> = Lock::new(Pool { parked: core::ptr::null_mut(), spare: 0, spare_len: 0 });
static REGISTRY: AtomicPtr<ThreadCache> = AtomicPtr::new(core::ptr::null_mut());
/// The pthread key whose destructor tears a cache down (KEY_UNSET until created).
static KEY: AtomicU32 = AtomicU32::new(KEY_UNSET);
const KEY_UNSET: u32 = u32::MAX;
const KEY_FAILED: u32 = u32::MAX - 1;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".section .tbss,\"awT\",@nobits",
    ".p2align 3",
    "my_alloc_tcache_slot:",
    ".zero 8",
    ".previous",
);

/// Address of this thread's slot.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn slot() -> *mut usize {
    let p: usize;
    // SAFETY: reads the thread pointer (fs:0) and adds the slot's initial-exec offset from the
    // GOT; this touches no memory other than the TCB self-pointer and the GOT entry.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + my_alloc_tcache_slot@GOTTPOFF]",
            p = out(reg) p,
            options(nostack, readonly, pure),
        );
    }
    p as *mut usize
}

/// This thread's cache, or null when it has none (yet, or any more).
#[inline(always)]
pub fn current() -> *mut ThreadCache {
    if !THREAD_SAFE || !cfg!(target_arch = "x86_64") {
        return core::ptr::null_mut();
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the slot is this thread's own word.
        let v = unsafe { *slot() };
        if v > DISABLED {
            return v as *mut ThreadCache;
        }
    }
    core::ptr::null_mut()
}

impl ThreadCache {
    /// The bin of quick class `c`, without a bounds check on the hot paths.
    #[inline(always)]
    fn bin(&mut self, c: usize) -> &mut Bin {
        debug_assert!(c < NUM_QUICK);
        // SAFETY: every caller's class comes from the size-class tables, which only hold quick
        // classes (< NUM_QUICK).
        unsafe { self.bins.get_unchecked_mut(c) }
    }

    /// Pops a block of quick class `c`, or returns 0 when the bin is empty.
    #[inline(always)]
    pub fn pop(&mut self, c: usize) -> usize {
        let bin = self.bin(c);
        let p = bin.head;
        if p == 0 {
            return 0;
        }
        let secret = HEAP.secret();
        let next = HEAP.next_quick(p, secret);
        block::prefetch(next);
        bin.head = next;
        bin.count -= 1;
        // SAFETY: p is a QUICK block owned by this cache; it becomes the caller's.
        unsafe { block::flip_state(p - block::HEADER, FLIP_IN_USE_QUICK) };
        bump(&bin.pops, 1);
        p
    }

    /// Pushes the live block `p` (header `h`, quick class `c`). Returns false when the bin is
    /// full (the caller flushes and retries).
    #[inline(always)]
    pub fn push(&mut self, c: usize, p: usize, h: u64) -> bool {
        let bin = self.bin(c);
        if bin.count >= bin.max {
            return false;
        }
        debug_assert_eq!(block::state_of(h), block::IN_USE);
        let secret = HEAP.secret();
        // SAFETY: the caller validated p as a live block it owns; it becomes QUICK in this cache.
        unsafe {
            *(p as *mut usize) = block::encode_link(p, bin.head, secret);
            block::flip_state(p - block::HEADER, FLIP_IN_USE_QUICK);
        }
        if bin.count == 0 {
            bin.tail = p;
        }
        bin.head = p;
        bin.count += 1;
        true
    }

    /// Refills bin `c` with half its capacity and pops one block; 0 if memory is exhausted.
    #[cold]
    pub fn refill_and_pop(&mut self, c: usize) -> usize {
        // Collect first: the collection may empty any bin, this one included.
        self.note_slow_event();
        let bin = &mut self.bins[c];
        let want = (bin.max as usize / 2).max(1);
        // A chain another bin flushed fits this one whole: one step, no walk.
        let (head, tail, n) = HEAP.refill(c, want, bin.max as usize);
        if n == 0 {
            return 0;
        }
        bin.head = head;
        bin.tail = tail;
        bin.count = n as u32;
        bump(&bin.refills, 1);
        bump(&bin.refilled, n as u64);
        self.pop(c)
    }

    /// Counts a refill or flush; every `CACHE_GC_EVENTS` of them, gives back the bins this thread
    /// has not allocated from since the last time, so that blocks of classes it no longer uses do
    /// not pin memory. (Costs the hot paths nothing: it reads the pop counters they keep.)
    fn note_slow_event(&mut self) {
        self.slow_events += 1;
        if self.slow_events < CACHE_GC_EVENTS {
            return;
        }
        self.slow_events = 0;
        for c in 0..NUM_QUICK {
            let pops = self.bins[c].pops.load(Ordering::Relaxed);
            if pops == self.bins[c].pops_at_gc && self.bins[c].count > 0 {
                self.flush_all(c);
            }
            self.bins[c].pops_at_gc = pops;
        }
    }

    /// Flushes the full bin `c` (a `free` found no room), counting the event for collection.
    #[cold]
    pub fn flush_full(&mut self, c: usize) {
        self.note_slow_event();
        self.flush_all(c);
    }

    /// Moves all of bin `c` to the heap's quick list, in one splice (the bin knows its tail).
    /// The next allocation of the class refills from the quick list's head: the same, still
    /// warm blocks.
    #[cold]
    pub fn flush_all(&mut self, c: usize) {
        let bin = &mut self.bins[c];
        if bin.count == 0 {
            return;
        }
        HEAP.flush(c, bin.head, bin.tail, bin.count as usize);
        bump(&bin.flushed, bin.count as u64);
        bin.head = 0;
        bin.count = 0;
    }

    /// Bytes held in this cache's bins (racy when read by another thread: statistics only).
    pub fn cached_bytes(&self) -> usize {
        (0..NUM_QUICK).map(|c| self.bins[c].count_racy() as usize * QUICK_SIZE[c] as usize).sum()
    }

    /// Gives every cached block back to the heap.
    pub fn flush_everything(&mut self) {
        for c in 0..NUM_QUICK {
            self.flush_all(c);
        }
    }
}

/// Capacity of a cache bin for blocks of `size` bytes.
const fn bin_capacity(size: usize) -> u32 {
    let n = CACHE_BYTES_PER_CLASS / size;
    let n = if n < CACHE_MIN_BLOCKS { CACHE_MIN_BLOCKS } else { n };
    (if n > CACHE_MAX_BLOCKS { CACHE_MAX_BLOCKS } else { n }) as u32
}

/// This thread's cache, creating it if the thread has none yet; null when caching is off for
/// this thread (single-threaded build, being torn down, out of memory).
#[cold]
pub fn current_or_create() -> *mut ThreadCache {
    let tc = current();
    if !tc.is_null() || !THREAD_SAFE || !cfg!(target_arch = "x86_64") {
        return tc;
    }
    crate::global::ensure_initialised();
    if crate::options::CHECK.load(Ordering::Relaxed) {
        return core::ptr::null_mut(); // checking mode sees every call: no caches
    }
    #[cfg(target_arch = "x86_64")]
    {
        let s = slot();
        // SAFETY: the slot is this thread's own word.
        if unsafe { *s } == DISABLED {
            return core::ptr::null_mut();
        }
        // Anything that allocates from here on (pthread_setspecific for a high key) is served by
        // the heap directly.
        // SAFETY: as above.
        unsafe { *s = DISABLED };
        let tc = create();
        if !tc.is_null() {
            let key = key();
            if key != KEY_FAILED {
                // SAFETY: the key exists; the value is this thread's cache.
                unsafe { libc::pthread_setspecific(key, tc.cast()) };
            }
            // SAFETY: as above.
            unsafe { *s = tc as usize };
        }
        return tc;
    }
    #[allow(unreachable_code)]
    core::ptr::null_mut()
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
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key; `teardown` has the destructor signature pthread expects.
    let ok = unsafe { libc::pthread_key_create(&mut key, Some(teardown)) } == 0;
    let k = if ok { key } else { KEY_FAILED };
    KEY.store(k, Ordering::Release);
    k
}

/// A cache from the parked ones, or carved from a fresh mapping.
fn create() -> *mut ThreadCache {
    let mut pool = POOL.lock();
    let tc = if !pool.parked.is_null() {
        let tc = pool.parked;
        // SAFETY: parked caches are live and owned by the pool.
        pool.parked = unsafe { (*tc).parked_next };
        tc
    } else {
        let size = core::mem::size_of::<ThreadCache>().next_multiple_of(64);
        if pool.spare_len < size {
            let chunk = (16 * size).next_multiple_of(PAGE);
            let Some(m) = HEAP.source().map(chunk) else { return core::ptr::null_mut() };
            pool.spare = m;
            pool.spare_len = chunk;
        }
        let tc = pool.spare as *mut ThreadCache;
        pool.spare += size;
        pool.spare_len -= size;
        // SAFETY: fresh zeroed memory, big enough and aligned for a ThreadCache.
        unsafe {
            for c in 0..NUM_QUICK {
                (*tc).bins[c].max = bin_capacity(QUICK_SIZE[c] as usize);
            }
        }
        // Registry: push once, never removed.
        let mut head = REGISTRY.load(Ordering::Acquire);
        loop {
            // SAFETY: tc is ours until published.
            unsafe { (*tc).registry_next = head };
            match REGISTRY.compare_exchange(head, tc, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        tc
    };
    drop(pool);
    tc
}

/// The key's destructor: runs at thread exit with the thread's cache.
unsafe extern "C" fn teardown(value: *mut libc::c_void) {
    let tc = value as *mut ThreadCache;
    #[cfg(target_arch = "x86_64")]
    {
        // Later destructors that allocate or free use the heap directly.
        // SAFETY: the slot is this thread's own word.
        unsafe { *slot() = DISABLED };
    }
    // SAFETY: the cache belonged to this thread, which no longer uses it.
    unsafe { (*tc).flush_everything() };
    let mut pool = POOL.lock();
    // SAFETY: the cache is parked: owned by the pool from now on.
    unsafe { (*tc).parked_next = pool.parked };
    pool.parked = tc;
}

/// Calls `f` on every cache ever created (live or parked), without locking.
pub fn for_each_cache(mut f: impl FnMut(&ThreadCache)) {
    let mut tc = REGISTRY.load(Ordering::Acquire);
    while !tc.is_null() {
        // SAFETY: registry entries are never freed.
        let r = unsafe { &*tc };
        f(r);
        tc = r.registry_next;
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
