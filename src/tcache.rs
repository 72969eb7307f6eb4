//! Thread caches: per-thread LIFO lists of `QUICK` blocks, one per quick class, in front of a
//! heap's quick lists. A hit takes no lock and no atomic read-modify-write: a pop is a load of the
//! head, a decode of its link and one header write; a push is the mirror image.
//!
//! Refills bring half a bin's capacity from the heap (`Heap::refill`); a full bin goes back whole
//! in one splice (`Heap::flush`), so the per-class locks are taken once per batch. A cache works on
//! the heap it is given: the process's caches on their thread's arena (`thread.rs` binds one to
//! each thread), a test's on a heap of its own.
//!
//! A bin holds only blocks of the cache's own heap, so that a thread's blocks stay its own. A
//! block of another heap (freed by a thread that did not allocate it) goes to that heap's outbox
//! instead, which collects its blocks of every class and goes back whole, with one
//! compare-and-swap onto the heap's inbox (`heap/inbox.rs`), once it holds `REMOTE_BATCH`
//! blocks or `REMOTE_BATCH_BYTES`, and at each collection.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::{self, FLIP_IN_USE_QUICK};
use crate::config::{WORD, CACHE_BYTES_PER_CLASS, CACHE_EXTRA_BYTES, CACHE_GC_EVENTS, CACHE_GROWTH, CACHE_MAX_BLOCKS, CACHE_MIN_BLOCKS, MAX_ARENAS, REMOTE_BATCH, REMOTE_BATCH_BYTES};
use crate::heap::{Heap, Mover};
use crate::size_class::{quick_class_of_block, quick_class_of_request, NUM_QUICK, QUICK_SIZE};
use crate::source::Source;

/// One size class of a thread cache: what the hot paths touch, in 32 bytes (two bins per cache
/// line; the counters of the slow paths are in `BinStats`). `pops` is written only by the owning
/// thread and read by statistics from any thread, hence a relaxed atomic (a plain increment).
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
}

const _: () = assert!(core::mem::size_of::<Bin>() == 32);

impl Bin {
    const fn new(max: u32) -> Self {
        Bin { head: 0, tail: 0, count: 0, max, pops: AtomicU64::new(0) }
    }

    /// The block count, read from another thread for statistics (a stale value is fine).
    fn count_racy(&self) -> u32 {
        // SAFETY: an aligned u32 in a live cache; a torn or stale read only skews statistics.
        unsafe { core::ptr::read_volatile(&self.count) }
    }
}

/// The slow paths' counters of one bin, apart from the bins so that they take no room in the
/// lines the hot paths use.
#[repr(C)]
pub struct BinStats {
    /// Refills (each one a cache miss), and the blocks they brought.
    pub refills: AtomicU64,
    /// See `refills`.
    pub refilled: AtomicU64,
    /// Blocks flushed to the heap.
    pub flushed: AtomicU64,
    /// Blocks of the class that belong to other heaps, freed through this cache's outbox.
    pub remote: AtomicU64,
    /// `pops` at the last collection: a bin whose count has not moved since is idle.
    pops_at_gc: u64,
    /// `pops` at the last refill: a bin that ran dry again within twice its capacity is busy.
    pops_at_refill: u64,
}

impl BinStats {
    const fn new() -> Self {
        BinStats { refills: AtomicU64::new(0), refilled: AtomicU64::new(0), flushed: AtomicU64::new(0), remote: AtomicU64::new(0), pops_at_gc: 0, pops_at_refill: 0 }
    }
}

#[inline(always)]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// Capacity of a cache bin for blocks of `size` bytes.
const fn bin_capacity(size: usize) -> u32 {
    let n = CACHE_BYTES_PER_CLASS / size;
    let n = if n < CACHE_MIN_BLOCKS { CACHE_MIN_BLOCKS } else { n };
    (if n > CACHE_MAX_BLOCKS { CACHE_MAX_BLOCKS } else { n }) as u32
}

/// Blocks freed here but owned by another heap, of any quick class, on their way back to it.
struct Outbox {
    head: usize,
    count: u32,
    bytes: usize,
    /// The heap they belong to (its address; meaningful while `count > 0`).
    owner: usize,
}

/// A thread's cache.
#[repr(C)]
pub struct ThreadCache {
    /// One bin per quick class, and one more that holds nothing and takes nothing (capacity 0):
    /// the bin of blocks of no quick class (`quick_bin_of_block`).
    pub bins: [Bin; NUM_QUICK + 1],
    /// Refills and flushes since the last collection of idle bins.
    slow_events: u32,
    /// One outbox per heap, by the heap's tag (two heaps with one tag take turns).
    outbox: [Outbox; MAX_ARENAS],
    /// The bins' slow-path counters.
    pub stats: [BinStats; NUM_QUICK],
    /// Bytes of capacity the bins have grown by beyond their base (see `adapt`), at most
    /// `CACHE_EXTRA_BYTES`.
    extra_bytes: usize,
}

impl ThreadCache {
    /// An empty cache.
    pub const fn new() -> Self {
        let mut bins = [const { Bin::new(0) }; NUM_QUICK + 1];
        let mut c = 0;
        while c < NUM_QUICK {
            bins[c].max = bin_capacity(QUICK_SIZE[c] as usize);
            c += 1;
        }
        ThreadCache {
            bins,
            slow_events: 0,
            outbox: [const { Outbox { head: 0, count: 0, bytes: 0, owner: 0 } }; MAX_ARENAS],
            stats: [const { BinStats::new() }; NUM_QUICK],
            extra_bytes: 0,
        }
    }

    /// Grows bin `c` on a refill when it ran dry again within twice its capacity since the last
    /// one (the class is busy: each miss costs a lock), doubling up to `CACHE_GROWTH` times its
    /// base capacity while the thread's growth stays within `CACHE_EXTRA_BYTES`.
    fn adapt(&mut self, c: usize) {
        let pops = self.bins[c].pops.load(Ordering::Relaxed);
        let st = &mut self.stats[c];
        let since = pops - st.pops_at_refill;
        st.pops_at_refill = pops;
        let first = st.refills.load(Ordering::Relaxed) == 0;
        let bin = &mut self.bins[c];
        if first || since > 2 * bin.max as u64 {
            return;
        }
        let size = QUICK_SIZE[c] as usize;
        let to = (bin.max * 2).min(bin_capacity(size) * CACHE_GROWTH);
        let more = (to - bin.max) as usize * size;
        if more > 0 && self.extra_bytes + more <= CACHE_EXTRA_BYTES {
            bin.max = to;
            self.extra_bytes += more;
        }
    }

    /// How many blocks bin `c` may hold now.
    pub fn capacity(&self, c: usize) -> u32 {
        self.bins[c].max
    }

    /// Bytes of capacity the bins have grown by beyond their base.
    pub fn extra_bytes(&self) -> usize {
        self.extra_bytes
    }

    /// Takes bin `c` (empty) back to its base capacity.
    fn shrink(&mut self, c: usize) {
        let base = bin_capacity(QUICK_SIZE[c] as usize);
        let bin = &mut self.bins[c];
        debug_assert_eq!(bin.count, 0);
        self.extra_bytes -= (bin.max - base) as usize * QUICK_SIZE[c] as usize;
        bin.max = base;
    }

    /// Blocks the program gave back through bin `c`: everything that entered the bin other than
    /// by refill (derived, so that `free` counts nothing on its hot path).
    pub fn pushes(&self, c: usize) -> u64 {
        let (bin, st) = (&self.bins[c], &self.stats[c]);
        let out = bin.pops.load(Ordering::Relaxed) + st.flushed.load(Ordering::Relaxed) + bin.count_racy() as u64;
        out.saturating_sub(st.refilled.load(Ordering::Relaxed))
    }

    /// The bin of quick class `c` (or the empty one, `NUM_QUICK`), without a bounds check on the
    /// hot paths.
    #[inline(always)]
    fn bin(&mut self, c: usize) -> &mut Bin {
        debug_assert!(c <= NUM_QUICK);
        // SAFETY: every caller's class comes from the size-class tables, which only hold quick
        // classes and NUM_QUICK, the last bin.
        unsafe { self.bins.get_unchecked_mut(c) }
    }

    /// Pops a block of quick class `c`, or returns 0 when the bin is empty. (`secret` is the
    /// heap's, passed in so that the hot path reads it from the thread's state.)
    #[inline(always)]
    pub fn pop<S: Source>(&mut self, heap: &Heap<S>, secret: u64, c: usize) -> usize {
        debug_assert_eq!(secret, heap.secret());
        let bin = self.bin(c);
        let p = bin.head;
        if p == 0 {
            return 0;
        }
        let next = heap.next_quick(p, secret);
        block::prefetch(next);
        bin.head = next;
        bin.count -= 1;
        // SAFETY: p is a QUICK block owned by this cache; it becomes the caller's.
        unsafe { block::flip_state(p - block::HEADER, FLIP_IN_USE_QUICK) };
        bump(&bin.pops, 1);
        p
    }

    /// Pushes the live block `p` of bin `c` (its quick class, or `NUM_QUICK`, whose bin takes
    /// nothing). Returns false when the bin is full (the caller flushes and retries).
    #[inline(always)]
    pub fn push<S: Source>(&mut self, heap: &Heap<S>, secret: u64, c: usize, p: usize) -> bool {
        debug_assert_eq!(secret, heap.secret());
        let bin = self.bin(c);
        if bin.count >= bin.max {
            return false;
        }
        // SAFETY: the caller validated p as a live block.
        debug_assert_eq!(block::state_of(unsafe { block::load(p - block::HEADER) }), block::IN_USE);
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

    /// Allocates `n` bytes: a pop, else a refill for quick classes; the heap for the rest.
    pub fn malloc<S: Source>(&mut self, heap: &Heap<S>, n: usize) -> Option<usize> {
        match quick_class_of_request(n) {
            Some(c) => match self.pop(heap, heap.secret(), c) {
                0 => Some(self.refill_and_pop(heap, c)).filter(|&p| p != 0),
                p => Some(p),
            },
            None => heap.malloc(n),
        }
    }

    /// Frees the live block `p` of `owner` (header `h`, which it validated): into this cache
    /// when the block is of `heap`, the cache's own, else towards its owner.
    pub fn free_to<S: Source>(&mut self, heap: &Heap<S>, owner: &Heap<S>, p: usize, h: u64) {
        if core::ptr::eq(heap, owner) {
            self.free(heap, p, h)
        } else {
            self.free_remote(owner, p, h)
        }
    }

    /// Frees the live block `p` of another heap, `owner` (header `h`): into the class's outbox,
    /// which goes back whole; blocks of no quick class go straight back.
    #[cold]
    pub fn free_remote<S: Source>(&mut self, owner: &Heap<S>, p: usize, h: u64) {
        let Some(c) = quick_class_of_block(block::size_of(h)) else {
            return owner.free_validated(p, h);
        };
        bump(&self.stats[c].remote, 1);
        let at = owner as *const Heap<S> as usize;
        let i = (owner.tag() as usize).wrapping_sub(1) % MAX_ARENAS;
        if self.outbox[i].count > 0 && self.outbox[i].owner != at {
            self.send::<S>(i);
        }
        let secret = owner.secret();
        let ob = &mut self.outbox[i];
        // SAFETY: the caller validated p as a live block it gives up; it becomes QUICK here,
        // its class in its second word for `send_home` (every block has three words).
        unsafe {
            *(p as *mut usize) = block::encode_link(p, ob.head, secret);
            *((p + WORD) as *mut usize) = c;
            block::flip_state(p - block::HEADER, FLIP_IN_USE_QUICK);
        }
        if ob.count == 0 {
            ob.owner = at;
        }
        ob.head = p;
        ob.count += 1;
        ob.bytes += QUICK_SIZE[c] as usize;
        if ob.count >= REMOTE_BATCH || ob.bytes >= REMOTE_BATCH_BYTES {
            self.send::<S>(i);
        }
    }

    /// Sends outbox `i` home to the heap its blocks belong to.
    fn send<S: Source>(&mut self, i: usize) {
        let ob = &mut self.outbox[i];
        if ob.count == 0 {
            return;
        }
        // SAFETY: an outbox's owner is a heap of the same source type that outlives the cache
        // (every heap a cache meets is one of the process's arenas, or a test's, which outlives
        // the test's caches); the chain is QUICK blocks of that heap that this cache holds.
        unsafe {
            let owner = &*(ob.owner as *const Heap<S>);
            owner.send_home(ob.head);
        }
        (ob.head, ob.count, ob.bytes) = (0, 0, 0);
    }

    /// Sends every outbox home.
    pub fn send_all<S: Source>(&mut self) {
        for i in 0..MAX_ARENAS {
            self.send::<S>(i);
        }
    }

    /// Frees the live block `p` of `heap`, the cache's own (header `h`, which it validated): a
    /// push, flushing the bin first when it is full; blocks of no quick class go to the heap.
    pub fn free<S: Source>(&mut self, heap: &Heap<S>, p: usize, h: u64) {
        if let Some(c) = quick_class_of_block(block::size_of(h)) {
            if self.push(heap, heap.secret(), c, p) {
                return;
            }
            self.flush_full(heap, c);
            if self.push(heap, heap.secret(), c, p) {
                return;
            }
        }
        heap.free_validated(p, h);
    }

    /// Refills bin `c` with half its capacity and pops one block; 0 if memory is exhausted.
    #[cold]
    pub fn refill_and_pop<S: Source>(&mut self, heap: &Heap<S>, c: usize) -> usize {
        // Collect first: the collection may empty any bin, this one included.
        self.note_slow_event(heap);
        // What other threads sent home joins the quick lists first (one load when none did).
        heap.drain_inbox();
        self.adapt(c);
        let bin = &mut self.bins[c];
        let want = (bin.max as usize / 2).max(1);
        // A chain another bin flushed fits this one whole: one step, no walk.
        let (head, tail, n) = heap.refill(c, want, bin.max as usize);
        if n == 0 {
            return 0;
        }
        bin.head = head;
        bin.tail = tail;
        bin.count = n as u32;
        bump(&self.stats[c].refills, 1);
        bump(&self.stats[c].refilled, n as u64);
        self.pop(heap, heap.secret(), c)
    }

    /// Counts a refill or flush; every `CACHE_GC_EVENTS` of them, gives back the bins this thread
    /// has not allocated from since the last time, so that blocks of classes it no longer uses do
    /// not pin memory. (Costs the hot paths nothing: it reads the pop counters they keep.)
    fn note_slow_event<S: Source>(&mut self, heap: &Heap<S>) {
        self.slow_events += 1;
        if self.slow_events < CACHE_GC_EVENTS {
            return;
        }
        self.slow_events = 0;
        for c in 0..NUM_QUICK {
            let pops = self.bins[c].pops.load(Ordering::Relaxed);
            if pops == self.stats[c].pops_at_gc {
                // Idle since the last collection: its blocks go back, its capacity to its base.
                self.flush_all(heap, c);
                self.shrink(c);
            }
            self.stats[c].pops_at_gc = pops;
        }
        // Blocks of other heaps wait no longer than this either.
        self.send_all::<S>();
    }

    /// Flushes the full bin `c` (a `free` found no room), counting the event for collection.
    #[cold]
    pub fn flush_full<S: Source>(&mut self, heap: &Heap<S>, c: usize) {
        self.note_slow_event(heap);
        self.flush_all(heap, c);
    }

    /// Moves all of bin `c` to the heap's quick list, in one splice (the bin knows its tail).
    /// The next allocation of the class refills from the quick list's head: the same, still
    /// warm blocks.
    #[cold]
    pub fn flush_all<S: Source>(&mut self, heap: &Heap<S>, c: usize) {
        let bin = &mut self.bins[c];
        if bin.count == 0 {
            return;
        }
        heap.flush(c, bin.head, bin.tail, bin.count as usize);
        bump(&self.stats[c].flushed, bin.count as u64);
        bin.head = 0;
        bin.count = 0;
    }

    /// Bytes held in this cache's bins and outboxes (racy when read by another thread:
    /// statistics only).
    pub fn cached_bytes(&self) -> usize {
        let bins: usize = (0..NUM_QUICK).map(|c| self.bins[c].count_racy() as usize * QUICK_SIZE[c] as usize).sum();
        // SAFETY: aligned words in a live cache; a stale read only skews statistics.
        let out: usize = self.outbox.iter().map(|o| unsafe { core::ptr::read_volatile(&o.bytes) }).sum();
        bins + out
    }

    /// Gives every cached block back to its heap.
    pub fn flush_everything<S: Source>(&mut self, heap: &Heap<S>) {
        for c in 0..NUM_QUICK {
            self.flush_all(heap, c);
            self.shrink(c);
        }
        self.send_all::<S>();
    }
}

impl Default for ThreadCache {
    fn default() -> Self {
        Self::new()
    }
}

/// A cache and its heap, as the place `Heap::realloc` moves a block to and from.
pub struct Cached<'a, S: Source> {
    /// The cache allocations and frees go through.
    pub cache: &'a mut ThreadCache,
    /// The heap behind it.
    pub heap: &'a Heap<S>,
}

impl<S: Source> Mover<S> for Cached<'_, S> {
    fn allocate(&mut self, n: usize) -> Option<usize> {
        self.cache.malloc(self.heap, n)
    }
    fn release(&mut self, owner: &Heap<S>, p: usize, h: u64) {
        self.cache.free_to(self.heap, owner, p, h)
    }
}
