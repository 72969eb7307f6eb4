//! The core: a boundary-tag heap with segregated free lists, over any [`Source`] of memory.
//!
//! Three kinds of free memory, from the hottest to the coldest:
//! - **quick lists** (`quick_list.rs`, `quick.rs`), one per quick class, each behind its own
//!   spinlock: blocks of exactly the class size, freed but not coalesced (state `QUICK`). Thread
//!   caches refill from and flush to them in batches; without a cache, small `malloc`/`free` pop
//!   and push them directly.
//! - **bins** and the **top** (`bins.rs`): coalesced free blocks (state `FREE`), guarded by the
//!   heap lock together with everything that changes a block's size (split, coalesce, grow, trim).
//! - the **source**, asked for more in steps of at least `GROW_STEP` (`segment.rs`), and given
//!   memory back (`reclaim.rs`, `budget.rs`).
//!
//! Requests too big for the heap get a mapping of their own (`mapped.rs`); `resize.rs` is the
//! library's one `realloc`; `validate.rs` judges the pointers programs pass in; `check.rs`
//! verifies the invariants.
//!
//! Locking: the heap lock may be held while taking a quick-list lock (consolidation), never the
//! other way round. A block's header is written by the block's owner, except `prev_free`, which
//! only the heap-lock holder writes (in its own half of the word, see `block.rs`); the heap-lock
//! holder reads neighbours' headers, and only trusts `FREE` — which only it can set.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::block::{self, FLIP_CHECKED, FLIP_IN_USE_QUICK, CHECKED, HEADER, IN_USE, MAPPED};
use crate::config::{round_up, ALIGNMENT, MIN_BLOCK, MMAP_THRESHOLD, MMAP_THRESHOLD_MAX, TRIM_DECAY_MS, TRIM_THRESHOLD};
use crate::counters::HeapCounters;
use crate::os;
use crate::size_class::{alloc_block_size, block_size, class_of, quick_class_of_block, quick_class_of_request, NUM_QUICK};
use crate::source::Source;
use crate::sync::{Guard, Lock};

mod bins;
mod budget;
mod check;
mod inbox;
mod mapped;
mod quick;
mod quick_list;
mod reclaim;
mod resize;
mod segment;
mod validate;

pub use budget::Footprint;
pub use check::HeapReport;
pub use resize::{small_block_stays, Mover, Reallocated};

use bins::Core;
use mapped::{MAPPED_PREFIX, PREFIX_CHECKED, RECENT_UNMAPPED};
use quick_list::QuickList;
use reclaim::PurgePass;

/// The heap's sizes at one moment (see [`Heap::usage`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    /// Bytes in heap segments.
    pub heap_bytes: usize,
    /// Bytes in coalesced free blocks (the top included), and how many blocks.
    pub free_bytes: usize,
    /// See `free_bytes`.
    pub free_blocks: usize,
    /// Bytes in the top block.
    pub top_bytes: usize,
    /// Bytes and blocks parked on the quick lists.
    pub quick_bytes: usize,
    /// See `quick_bytes`.
    pub quick_blocks: usize,
    /// Bytes and blocks with mappings of their own.
    pub mapped_bytes: usize,
    /// See `mapped_bytes`.
    pub mapped_blocks: usize,
}

impl Usage {
    /// The sum of two heaps' usage.
    pub fn add(&self, o: &Usage) -> Usage {
        Usage {
            heap_bytes: self.heap_bytes + o.heap_bytes,
            free_bytes: self.free_bytes + o.free_bytes,
            free_blocks: self.free_blocks + o.free_blocks,
            top_bytes: self.top_bytes + o.top_bytes,
            quick_bytes: self.quick_bytes + o.quick_bytes,
            quick_blocks: self.quick_blocks + o.quick_blocks,
            mapped_bytes: self.mapped_bytes + o.mapped_bytes,
            mapped_blocks: self.mapped_blocks + o.mapped_blocks,
        }
    }
}

/// A heap over a source of memory. The process-wide allocator is one `Heap<OsSource>`; tests
/// make their own over memory they own.
pub struct Heap<S: Source> {
    /// Where the heap's memory comes from.
    source: S,
    /// The key of every header check and link encoding (0 until drawn).
    secret: AtomicU64,
    /// The heap lock and what it guards.
    core: Lock<Core>,
    /// One quick list per quick class, each behind its own lock.
    quick: [Lock<QuickList>; NUM_QUICK],
    /// Bytes (class sizes) parked on the quick lists.
    quick_bytes: AtomicUsize,
    /// Blocks other heaps' threads freed, sent home in chains (`inbox.rs`): the head of a
    /// lock-free stack, and the bytes in it.
    inbox: AtomicUsize,
    /// See `inbox`.
    inbox_bytes: AtomicUsize,
    /// Bytes carved for quick classes from the coalesced heap since the last consolidation, each
    /// carving counted up to the bytes parked on the quick lists at the time: the sign that
    /// parked quick blocks are not what the program asks for.
    carved_since_consolidation: AtomicUsize,
    /// This heap's tag in the source's page map (several heaps may share a source).
    tag: u8,
    /// The growable segment's start and length (0 and 0 before the first), mirrored from its
    /// descriptor for the lock-free ownership test of `validate_local`: one load each, and no
    /// pointer in the heap's initial value (a pointer there would need a relocation, which
    /// dirties a page of every arena at load time). Published after the segment's pages are
    /// marked; see `publish_segment` for the order.
    seg_lo: AtomicUsize,
    /// See `seg_lo`.
    seg_len: AtomicUsize,
    /// Blocks at least this big get their own mapping; raised by frees of mapped blocks unless
    /// `mmap_fixed`.
    mmap_threshold: AtomicUsize,
    /// The threshold was set explicitly: it stays where it was set.
    mmap_fixed: AtomicBool,
    /// The top is trimmed beyond this (or twice the mapping threshold)...
    trim_threshold: AtomicUsize,
    /// ...but not within this many milliseconds of the last growth.
    decay_ms: AtomicU64,
    /// User pointers of the last mapped blocks unmapped: a second free of one finds no page of
    /// ours, and this tells a double free from a foreign pointer.
    recent_unmapped: [AtomicUsize; RECENT_UNMAPPED],
    /// Where the next unmapped block's pointer goes in `recent_unmapped`.
    recent_next: AtomicUsize,
    /// Counters for statistics.
    pub counters: HeapCounters,
}

impl<S: Source> Heap<S> {
    /// A heap over `source`. With `secret == 0` the check key is drawn from the kernel on first
    /// use; tests pass their own.
    pub const fn new(source: S, secret: u64) -> Self {
        Self::with_tag(source, secret, 1)
    }

    /// A heap over `source` whose pages carry `tag` (not 0) in the source's page map: one of
    /// several heaps drawing from one source, which must each have their own tag and share the
    /// secret (see [`Heap::share_secret`]).
    pub const fn with_tag(source: S, secret: u64, tag: u8) -> Self {
        Heap {
            source,
            secret: AtomicU64::new(block::usable_secret(secret)),
            core: Lock::new(Core::new()),
            quick: [const { Lock::new(QuickList::new()) }; NUM_QUICK],
            quick_bytes: AtomicUsize::new(0),
            inbox: AtomicUsize::new(0),
            inbox_bytes: AtomicUsize::new(0),
            carved_since_consolidation: AtomicUsize::new(0),
            tag,
            seg_lo: AtomicUsize::new(0),
            seg_len: AtomicUsize::new(0),
            mmap_threshold: AtomicUsize::new(MMAP_THRESHOLD),
            mmap_fixed: AtomicBool::new(false),
            trim_threshold: AtomicUsize::new(TRIM_THRESHOLD),
            decay_ms: AtomicU64::new(TRIM_DECAY_MS),
            recent_unmapped: [const { AtomicUsize::new(0) }; RECENT_UNMAPPED],
            recent_next: AtomicUsize::new(0),
            counters: HeapCounters::new(),
        }
    }

    /// The key of every check value and link encoding. Valid once any block exists.
    #[inline(always)]
    pub fn secret(&self) -> u64 {
        self.secret.load(Ordering::Relaxed)
    }

    /// This heap's tag in its source's page map.
    #[inline(always)]
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// Gives this heap the secret of another heap of the same source, before either hands out a
    /// block: a block's header is then checked alike whichever heap reads it.
    pub fn share_secret(&self, secret: u64) {
        let _ = self.secret.compare_exchange(0, block::usable_secret(secret), Ordering::AcqRel, Ordering::Acquire);
    }

    /// The secret, drawn from the kernel if the heap has none yet.
    pub fn init_secret(&self) -> u64 {
        let s = self.secret.load(Ordering::Relaxed);
        if s != 0 {
            return s;
        }
        let fresh = os::random_u64() | 1;
        match self.secret.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }

    fn lock_core(&self) -> Guard<'_, Core> {
        let mut core = self.core.lock();
        if core.secret == 0 {
            core.secret = self.init_secret();
        }
        core
    }

    /// Runs `f` under the heap lock, then records the statistics it may have changed.
    fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut core = self.lock_core();
        let r = f(&mut core);
        self.counters.free_bytes.store(core.free_bytes, Ordering::Relaxed);
        drop(core);
        self.note_held();
        r
    }

    /// Samples the bytes held by the program and its caches, for the peak.
    fn note_held(&self) {
        let c = &self.counters;
        let held = c
            .os_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(c.free_bytes.load(Ordering::Relaxed))
            .saturating_sub(self.quick_bytes.load(Ordering::Relaxed));
        if held > c.held_peak.load(Ordering::Relaxed) {
            c.held_peak.fetch_max(held, Ordering::Relaxed);
        }
    }

    /// The source this heap draws from.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn note_os(&self, len: usize) {
        let now = self.counters.os_bytes.fetch_add(len, Ordering::Relaxed) + len;
        self.counters.os_peak.fetch_max(now, Ordering::Relaxed);
    }

    fn note_os_returned(&self, len: usize) {
        self.counters.os_bytes.fetch_sub(len, Ordering::Relaxed);
        self.counters.os_returned.fetch_add(len, Ordering::Relaxed);
    }

    /// Usable bytes of the live block at `p`.
    pub fn usable_size(&self, p: usize) -> usize {
        let h = self.validate(p, "malloc_usable_size");
        self.usable_of(p, h)
    }

    /// Usable bytes of the live block at `p` whose header `validate` returned.
    pub fn usable_of(&self, p: usize, h: u64) -> usize {
        if h & MAPPED != 0 {
            let (base, len) = self.mapping_of(p, h, "malloc_usable_size");
            base + len - p
        } else {
            block::size_of(h) - crate::config::BLOCK_OVERHEAD
        }
    }

    /// Marks the live block at `p` (header `h`) as allocated in checking mode, or clears the mark.
    pub fn set_checked(&self, p: usize, h: u64, on: bool) {
        // SAFETY: the caller owns the live block; its header's high half (heap block) or its
        // offset word (mapped block) is its own metadata.
        unsafe {
            if h & MAPPED != 0 {
                let w = (p - MAPPED_PREFIX) as *mut usize;
                *w = if on { *w | PREFIX_CHECKED } else { *w & !PREFIX_CHECKED };
            } else if (block::load(p - HEADER) & CHECKED != 0) != on {
                block::flip_state(p - HEADER, FLIP_CHECKED);
            }
        }
    }

    /// Whether the block at `p` (header `h`) carries the checking-mode mark.
    pub fn is_checked(&self, p: usize, h: u64) -> bool {
        // SAFETY: as in set_checked; the block is live or QUICK, so its metadata is intact.
        unsafe {
            if h & MAPPED != 0 {
                *((p - MAPPED_PREFIX) as *const usize) & PREFIX_CHECKED != 0
            } else {
                block::load(p - HEADER) & CHECKED != 0
            }
        }
    }

    /// Allocates `n` bytes; `None` when the request is impossible or memory is exhausted.
    pub fn malloc(&self, n: usize) -> Option<usize> {
        let _check = self.check_on_exit();
        if let Some(c) = quick_class_of_request(n) {
            return self.malloc_quick(c);
        }
        let need = block_size(n)?;
        if need >= self.mmap_threshold() {
            // The threshold chooses between growing the heap and a mapping of its own: pages the
            // top has handed out before and still holds cost no new memory, where a fresh
            // mapping faults every page in (as in glibc, which serves such requests from its top
            // and maps only when the heap would have to grow).
            if let Some(b) = self.alloc_resident_top(need) {
                self.counters.out(class_of(need), 1);
                return Some(b + HEADER);
            }
            return self.map_large(n, ALIGNMENT);
        }
        let p = self.alloc_block(need, IN_USE)? + HEADER;
        self.counters.out(class_of(need), 1);
        Some(p)
    }

    /// A block of at least `need` bytes in `state`, from the bins, the top, or new memory.
    fn alloc_block(&self, need: usize, state: u64) -> Option<usize> {
        self.with_core(|core| {
            // SAFETY: the heap lock is held; take returns an unlinked free block we now own.
            unsafe {
                let (b, size) = self.take_or_grow(core, need)?;
                let purged = core.purged_range(b, size);
                core.carve(b, size, need, state, purged);
                self.note_carved(core, need);
                Some(b)
            }
        })
    }

    /// Frees the live block at `p` whose header `validate` returned.
    pub fn free_validated(&self, p: usize, h: u64) {
        let _check = self.check_on_exit();
        if h & MAPPED != 0 {
            return self.unmap_large(p, h);
        }
        let size = block::size_of(h);
        let b = p - HEADER;
        if let Some(c) = quick_class_of_block(size) {
            let secret = self.secret();
            // SAFETY: the caller owns the block; it becomes QUICK and goes on the quick list.
            unsafe { block::flip_state(b, FLIP_IN_USE_QUICK) };
            let mut q = self.quick[c].lock();
            // SAFETY: p is a QUICK block of class c, ours; its first payload word becomes its link.
            unsafe { q.push(p, p, 1, secret) };
            self.quick_bytes.fetch_add(size, Ordering::Relaxed);
            drop(q);
            self.counters.back(c, 1);
            return;
        }
        self.counters.back(class_of(size), 1);
        self.with_core(|core| {
            // SAFETY: the caller owns the block; under the heap lock it becomes FREE and coalesces.
            unsafe { core.release(b, size, "free") };
            self.maybe_release(core);
        })
    }

    /// Frees `p` (non-null): validates, then frees.
    pub fn free(&self, p: usize) {
        let h = self.validate(p, "free");
        self.free_validated(p, h);
    }

    /// Allocates `n` bytes aligned to `align` (a power of two).
    pub fn memalign(&self, align: usize, n: usize) -> Option<usize> {
        let _check = self.check_on_exit();
        if align <= ALIGNMENT {
            return self.malloc(n);
        }
        let need = alloc_block_size(n)?;
        if need >= self.mmap_threshold() || align >= MMAP_THRESHOLD {
            return self.map_large(n, align);
        }
        let want = need.checked_add(align)?.checked_add(MIN_BLOCK)?;
        self.with_core(|core| {
            // SAFETY: under the heap lock; the taken block is ours to cut.
            unsafe {
                let (b, size) = self.take_or_grow(core, want)?;
                let purged = core.purged_range(b, size);
                let mut p = round_up(b + HEADER, align);
                while p != b + HEADER && p - (b + HEADER) < MIN_BLOCK {
                    p += align;
                }
                let lead = p - (b + HEADER);
                if lead > 0 {
                    // The leading piece's left neighbour was the free block's: never FREE.
                    core.insert_range(b, lead, purged);
                }
                core.carve(b + lead, size - lead, need, IN_USE, purged);
                self.note_carved(core, need);
                self.counters.out(class_of(need), 1);
                Some(p)
            }
        })
    }

    /// Sets the tunable thresholds (from the run-time options). A `fixed` mapping threshold is
    /// never raised by frees of mapped blocks: the program chose it (as glibc's, once set).
    pub fn tune(&self, mmap_threshold: usize, fixed: bool, trim_threshold: usize, decay_ms: u64) {
        self.mmap_threshold.store(mmap_threshold.clamp(MIN_BLOCK, MMAP_THRESHOLD_MAX), Ordering::Relaxed);
        self.mmap_fixed.store(fixed, Ordering::Relaxed);
        self.trim_threshold.store(trim_threshold, Ordering::Relaxed);
        self.decay_ms.store(decay_ms, Ordering::Relaxed);
    }

    /// The current mapping threshold.
    #[inline]
    pub fn mmap_threshold(&self) -> usize {
        self.mmap_threshold.load(Ordering::Relaxed)
    }

    /// Takes every lock of the heap, in the one order they nest (heap lock, then quick lists), and
    /// keeps them held across `fork`.
    pub fn lock_for_fork(&self) {
        self.core.lock_for_fork();
        for q in &self.quick {
            q.lock_for_fork();
        }
    }

    /// Releases what [`Heap::lock_for_fork`] took.
    ///
    /// # Safety
    /// Only after `lock_for_fork`, in the forking thread (parent) or the child.
    pub unsafe fn unlock_after_fork(&self) {
        for q in self.quick.iter().rev() {
            // SAFETY: forwarded from the caller.
            unsafe { q.unlock_after_fork() };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.core.unlock_after_fork() };
    }

    /// Consolidates the quick lists and gives the top's excess above `pad` back to the source.
    /// Returns whether any memory went back.
    pub fn trim(&self, pad: usize) -> bool {
        let _check = self.check_on_exit();
        self.drain_inbox();
        self.with_core(|core| {
            // SAFETY: under the heap lock.
            unsafe { self.consolidate(core) };
            let trimmed = self.trim_top(core, pad);
            let now = self.source.now_ms();
            let purged = self.purge(core, now, PurgePass::Forced) + self.purge_top(core, pad);
            purged > 0 || trimmed
        })
    }

    /// Bytes in the coalesced free lists and the top.
    pub fn free_bytes(&self) -> usize {
        self.core.lock().free_bytes
    }

    /// Bytes in heap segments.
    pub fn heap_bytes(&self) -> usize {
        self.core.lock().heap_bytes
    }

    /// A consistent view of the heap's sizes, for `mallinfo2` and `malloc_stats`.
    pub fn usage(&self) -> Usage {
        let core = self.core.lock();
        let quick_blocks = self.quick.iter().map(|q| q.lock().len).sum();
        Usage {
            heap_bytes: core.heap_bytes,
            free_bytes: core.free_bytes,
            free_blocks: core.free_blocks,
            // SAFETY: the top is a FREE block while set.
            top_bytes: if core.top != 0 { block::size_of(unsafe { block::load(core.top) }) } else { 0 },
            quick_bytes: self.quick_bytes.load(Ordering::Relaxed),
            quick_blocks,
            mapped_bytes: self.counters.mapped_bytes.load(Ordering::Relaxed),
            mapped_blocks: self.counters.mapped_blocks.load(Ordering::Relaxed),
        }
    }
}
