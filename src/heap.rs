//! The core: a boundary-tag heap with segregated free lists, over any [`Source`] of memory.
//!
//! Three kinds of free memory, from the hottest to the coldest:
//! - **quick lists**, one per quick class, each behind its own spinlock: blocks of exactly the
//!   class size, freed but not coalesced (state `QUICK`). Thread caches refill from and flush to
//!   them in batches; without a cache, small `malloc`/`free` pop and push them directly.
//! - **bins**, one per size class, and the **top** block: coalesced free blocks (state `FREE`),
//!   guarded by the heap lock together with everything that changes a block's size (split,
//!   coalesce, grow, trim).
//! - the **source**, asked for more in steps of at least `GROW_STEP`, given back the top's excess.
//!
//! Requests too big for the heap (the mapping threshold, `MMAP_THRESHOLD` at first) get a
//! mapping of their own.
//!
//! Locking: the heap lock may be held while taking a quick-list lock (consolidation), never the
//! other way round. A block's header is written by the block's owner, except `prev_free`, which
//! only the heap-lock holder writes (in its own half of the word, see `block.rs`); the heap-lock
//! holder reads neighbours' headers, and only trusts `FREE` — which only it can set.
//!
//! Invariants (checked by [`Heap::check`]):
//! 1. Each segment is tiled exactly by blocks from its first block to its right fence; every
//!    header is sealed; every `FREE` block has a sealed footer that agrees on the size; and each
//!    header's (and fence's) `prev_free` says exactly whether the block before it is `FREE`.
//! 2. No two neighbouring blocks are both `FREE` (free blocks are always coalesced).
//! 3. Every `FREE` block is either the top (the block right before the growable segment's fence)
//!    or in exactly the bin of its size's class; bins are well-formed doubly linked lists.
//! 4. Every block on a quick list is `QUICK` and of its class's size (or more by a sliver too small
//!    to split off); each chain's recorded tail and length are its own; `quick_bytes` counts the
//!    blocks' class sizes.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::block::{self, CHECKED, FENCE, FLIP_CHECKED, FLIP_IN_USE_QUICK, FLIP_QUICK_FREE, FREE, HEADER, IN_USE, MAPPED, PREV_FREE, QUICK};
use crate::config::{
    round_up, ALIGNMENT, CARVE_PURGE_SHARE, GRAIN, GROW_SHARE, GROW_STEP, MIN_BLOCK, MMAP_THRESHOLD, MMAP_THRESHOLD_MAX, NUM_CLASSES, NEARLY_EMPTY, NEARLY_EMPTY_QUIET, PAGE, PURGE_MIN,
    QUICK_RETAIN_MIN, QUICK_SHARE, RESIDENT_CHECK_MIN, RESIDENT_SLACK_MIN, RESIDENT_SLACK_SHARE, TRIM_DECAY_MS, TRIM_KEEP, TRIM_THRESHOLD, WORD,
};
use crate::diag::{fatal, fatal_at, fatal_sized};
use crate::os;
use crate::pagemap::PageMap;
use crate::size_class::{alloc_block_size, block_size, class_of, quick_class_of_block, quick_class_of_request, NUM_QUICK, QUICK_MAX_BLOCK, QUICK_SIZE};
use crate::source::{Region, Source};
use crate::sync::Lock;

/// A segment's descriptor lives in its first bytes. `len` changes only under the heap lock, but
/// `validate` reads it without the lock (growth raises it after the new pages are marked;
/// trimming lowers it before they are given back).
#[repr(C)]
struct Segment {
    next: usize,
    len: AtomicUsize,
    from_brk: bool,
}

/// Stands for "no growable segment yet" in the ownership test: owns nothing.
static NO_SEGMENT: Segment = Segment { next: 0, len: AtomicUsize::new(0), from_brk: false };
const SEGMENT_DESC: usize = 32;
const _: () = assert!(core::mem::size_of::<Segment>() <= SEGMENT_DESC);
/// Offset of a segment's first block: the descriptor, then the left fence (a footer of size 0),
/// placed so that the first user pointer is aligned.
const FIRST_BLOCK: usize = round_up(SEGMENT_DESC + 2 * WORD, GRAIN) - WORD;
/// Bytes of a segment that are not blocks: descriptor, left fence, right fence.
const SEGMENT_OVERHEAD: usize = FIRST_BLOCK + WORD;
/// The word before a mapped block's header: the user pointer's offset from the mapping's start.
const MAPPED_PREFIX: usize = 2 * WORD;
/// Offset of the user pointer in a mapped block with the default alignment.
const MAPPED_OFFSET: usize = round_up(MAPPED_PREFIX, ALIGNMENT);
/// Mapped blocks remembered after unmapping, to diagnose double frees of them.
const RECENT_UNMAPPED: usize = 64;
/// Prefix bit of a mapped block: allocated in checking mode.
const PREFIX_CHECKED: usize = 1;
/// A big free block's bookkeeping, after its header and links: the purge epoch it was freed in,
/// and the range of its pages already given back (`[start, end)`, absolute; empty if start >=
/// end), so that a purge advises only what is new.
const FREED_EPOCH: usize = HEADER + 2 * WORD;
const PURGED_START: usize = FREED_EPOCH + WORD;
const PURGED_END: usize = PURGED_START + WORD;
/// Bytes at a free block's start that purging keeps (header, links, bookkeeping).
const PURGE_KEEP: usize = PURGED_END + WORD;
/// No pages purged.
const NOT_PURGED: (usize, usize) = (0, 0);
/// Blocks scanned in the request's own bin before moving to a bigger bin.
const BIN_SCAN_LIMIT: usize = 16;
const BITMAP_WORDS: usize = NUM_CLASSES.div_ceil(64);

/// The part of the heap behind the heap lock.
struct Core {
    secret: u64,
    /// First block of each bin (0: empty); links are the payload's first two words.
    bins: [usize; NUM_CLASSES],
    /// Bit `c` set when bin `c` is not empty.
    bitmap: [u64; BITMAP_WORDS],
    /// The free block ending at `fence`, or 0.
    top: usize,
    /// Right fence of the growable segment (the newest one), or 0 before the first growth.
    fence: usize,
    /// Descriptor of the growable segment.
    seg: usize,
    /// All segments, newest first.
    segments: usize,
    /// Bytes in bins and the top.
    free_bytes: usize,
    /// Bytes in all segments.
    heap_bytes: usize,
    /// When the heap last grew (source clock, ms): trimming waits for the decay after it.
    last_grow_ms: u64,
    /// Purge passes so far; a big free block records the epoch it was freed in.
    epoch: u64,
    /// When the last purge pass ran (source clock, ms).
    last_purge_ms: u64,
    /// Number of FREE blocks (bins and top).
    free_blocks: usize,
    /// `free_bytes` after the last purge forced by a nearly empty heap.
    free_at_forced_purge: usize,
    /// When a nearly empty heap last gave everything back (`NEVER` once the heap regrew), and
    /// how long after a growth the next such release must wait.
    last_empty_release_ms: u64,
    empty_backoff_ms: u64,
    /// Bytes carved for big blocks since the last purge pass (see `note_big_carve`).
    carved_big: usize,
    /// The highest address the top has started at since the last timed purge pass: no
    /// allocation reached beyond it (see `purge`).
    top_reach: usize,
    /// `top_reach` of the interval before.
    top_reach_prev: usize,
    /// The highest address the top has started at since the growable segment began, lowered
    /// when the top is trimmed or purged: the top's pages beyond it were never handed out since
    /// (fresh from the source, or given back already), so a purge skips them.
    top_touched: usize,
    /// Bytes carved since the resident memory was last checked against its budget (see
    /// `Heap::note_carved`).
    carved_unchecked: usize,
}

/// What a purge pass gives back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PurgePass {
    /// Counted by carving (`note_big_carve`): big holes free for two passes.
    Carving,
    /// Counted by the clock (half the decay): those holes, and the top's pages beyond what
    /// allocations reached in the last two timed passes (but `TRIM_KEEP`): below the trim
    /// threshold, the top would otherwise stay resident however long the program idles.
    Timed,
    /// Every hole, at once (`malloc_trim`, a nearly empty heap: both trim the top themselves).
    Forced,
}

/// No such moment (yet).
const NEVER: u64 = u64::MAX;

/// Chains a quick list keeps apart before it joins new ones to the newest.
const QUICK_CHAINS: usize = 16;

/// A quick list: `QUICK` blocks of one class, as a stack of chains linked through encoded
/// pointers, each as a thread cache flushed it (or a single freed block). Keeping the chains apart,
/// with their tails, lets a refill take a whole one in one step: cutting a batch off one long
/// chain walks it, a dependent load per block from blocks that have often left the cache
/// (bench/mixed spent 5% of its time on that load).
struct QuickList {
    /// Chain `i < chains` runs from `heads[i]` to `tails[i]` (whose link is 0), `counts[i]`
    /// blocks; the newest is last.
    heads: [usize; QUICK_CHAINS],
    tails: [usize; QUICK_CHAINS],
    counts: [usize; QUICK_CHAINS],
    chains: usize,
    /// Blocks on all chains.
    len: usize,
    /// Segments at the front of chain 0 (the only one joins grow) whose head blocks record
    /// where they end (see `record_segment`).
    recorded: usize,
}

impl QuickList {
    const fn new() -> Self {
        QuickList { heads: [0; QUICK_CHAINS], tails: [0; QUICK_CHAINS], counts: [0; QUICK_CHAINS], chains: 0, len: 0, recorded: 0 }
    }

    /// Adds the chain `head`..`tail` of `n` blocks, which the caller owned.
    ///
    /// # Safety
    /// The chain's blocks are `QUICK` blocks of this list's class; their links are the caller's.
    unsafe fn push(&mut self, head: usize, tail: usize, n: usize, secret: u64) {
        if self.chains == QUICK_CHAINS {
            // Join the two oldest chains (the second oldest first, then the oldest), so that the
            // newest, which refills take first, stay whole. The second oldest was never joined
            // (joins only grow the oldest): it is one segment, which a refill can take off again
            // without walking it if its head block records where it ends.
            let (h1, t1) = (self.heads[1], self.tails[1]);
            // SAFETY: h1 and t1 are QUICK blocks on this list; the lock holder owns their links
            // and the payload words after them.
            let recorded = unsafe {
                *(t1 as *mut usize) = block::encode_link(t1, self.heads[0], secret);
                record_segment(h1, t1, self.counts[1], secret)
            };
            // An unrecorded segment hides the records behind it: from there on, chain 0 is walked.
            self.recorded = if recorded { self.recorded + 1 } else { 0 };
            self.heads[0] = self.heads[1];
            self.counts[0] += self.counts[1];
            self.heads.copy_within(2.., 1);
            self.tails.copy_within(2.., 1);
            self.counts.copy_within(2.., 1);
            self.chains -= 1;
        }
        // SAFETY: tail is a QUICK block the caller owned; its link is ours to set.
        unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
        let i = self.chains;
        (self.heads[i], self.tails[i], self.counts[i]) = (head, tail, n);
        self.chains += 1;
        self.len += n;
    }

    /// Takes the newest chain whole if it has at most `whole` blocks; else, when the chain was
    /// joined and its first segment has at most `whole` blocks, that segment; else its first `max`
    /// blocks (`max` >= 1). Returns the chain taken (last link 0), or `None` when the list is
    /// empty. `quick_block(p)` says whether `p` is a sealed `QUICK` block of this list's class.
    fn take(
        &mut self,
        max: usize,
        whole: usize,
        heap_next: impl Fn(usize) -> usize,
        quick_block: impl Fn(usize) -> bool,
        secret: u64,
    ) -> Option<(usize, usize, usize)> {
        if self.chains == 0 {
            return None;
        }
        let top = self.chains - 1;
        let (head, n) = (self.heads[top], self.counts[top]);
        if n <= whole.max(max) {
            // The tail's link must still end the chain: a use-after-free write there would
            // otherwise send the taker to an address of the writer's choosing.
            let tail = self.tails[top];
            if heap_next(tail) != 0 {
                fatal("malloc", "corrupted free list (use after free?) in block", tail);
            }
            self.chains -= 1;
            self.len -= n;
            if top == 0 {
                self.recorded = 0;
            }
            return Some((head, tail, n));
        }
        if top == 0 && self.recorded > 0 {
            // Chain 0 was joined: its first segment ends where its head block says.
            // SAFETY: head is a QUICK block on this list, ours under the lock.
            let (tail, k) = unsafe { recorded_segment(head, secret) };
            if k <= whole.max(max) {
                if k == 0 || k >= n || !quick_block(tail) {
                    fatal("malloc", "corrupted free list (use after free?) in block", head);
                }
                let next = heap_next(tail);
                if next == 0 {
                    fatal("malloc", "corrupted free list (chain shorter than its count) in block", tail);
                }
                // SAFETY: tail is a QUICK block now taken off the list; its link is ours to set.
                unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
                self.heads[0] = next;
                self.counts[0] -= k;
                self.len -= k;
                self.recorded -= 1;
                return Some((head, tail, k));
            }
        }
        if top == 0 {
            // The cut below splits the first segment: its record is lost, and so are those
            // behind it.
            self.recorded = 0;
        }
        let mut tail = head;
        for _ in 1..max {
            tail = heap_next(tail);
        }
        let next = heap_next(tail);
        if next == 0 {
            fatal("malloc", "corrupted free list (chain shorter than its count) in block", tail);
        }
        // SAFETY: tail is a QUICK block now taken off the list; its link is ours to set.
        unsafe { *(tail as *mut usize) = block::encode_link(tail, 0, secret) };
        self.heads[top] = next;
        self.counts[top] -= max;
        self.len -= max;
        Some((head, tail, max))
    }

    /// Takes every chain: the list is empty afterwards.
    fn take_all(&mut self) -> ([usize; QUICK_CHAINS], usize) {
        let taken = (self.heads, self.chains);
        self.chains = 0;
        self.len = 0;
        self.recorded = 0;
        taken
    }
}

/// Records, in the head block of a segment about to be joined to an older chain, the segment's
/// tail and length, in the two payload words after the link (every block has them: a minimum
/// block holds three words), encoded as links are; returns whether it did. Blocks that checking
/// mode filled when they were freed are left as they are (their fill is verified when they are
/// handed out again): such a segment is walked when it is cut.
///
/// # Safety
/// `head` and `tail` are the first and last `QUICK` blocks of a segment of `n` blocks that the
/// caller owns.
unsafe fn record_segment(head: usize, tail: usize, n: usize, secret: u64) -> bool {
    // SAFETY: head is a QUICK block (its header is readable, its payload ours).
    unsafe {
        if block::load(head - HEADER) & CHECKED != 0 {
            return false;
        }
        let words = head as *mut usize;
        *words.add(1) = block::encode_link(head + WORD, tail, secret);
        *words.add(2) = block::encode_link(head + 2 * WORD, n | SEGMENT_MARK, secret);
    }
    true
}

/// The tail and length `record_segment` wrote into `head`'s block.
///
/// # Safety
/// `head` is a `QUICK` block the caller owns, the head of a recorded segment.
unsafe fn recorded_segment(head: usize, secret: u64) -> (usize, usize) {
    // SAFETY: head is a QUICK block whose payload the caller owns.
    let (tail, n) = unsafe {
        let words = head as *const usize;
        (block::decode_link(head + WORD, *words.add(1), secret), block::decode_link(head + 2 * WORD, *words.add(2), secret))
    };
    // Without the mark, the words are not a record (a use-after-free write changed them): abort
    // rather than cut the chain anywhere.
    if n & !SEGMENT_LEN_MASK != SEGMENT_MARK {
        fatal("malloc", "corrupted free list (use after free?) in block", head);
    }
    (tail, n & SEGMENT_LEN_MASK)
}

// A segment's record needs the link and two more payload words in every quick block.
const _: () = assert!(MIN_BLOCK - HEADER >= 3 * WORD);

/// High bits of a recorded segment length, so that a decoded record is recognised as one.
const SEGMENT_MARK: usize = 0x5e6 << 48;
/// The length's bits in a recorded segment length.
const SEGMENT_LEN_MASK: usize = (1 << 48) - 1;

/// Counters kept by the core, readable at any time without locks.
pub struct HeapCounters {
    /// Per size class: blocks handed out of the heap's free lists (to the program or a thread
    /// cache) and not yet back, and the highest that count reached.
    pub class_held: [AtomicUsize; NUM_CLASSES],
    /// See `class_held`.
    pub class_peak: [AtomicUsize; NUM_CLASSES],
    /// Blocks carved for a refill of class `c` that a cache may hand out as one block of `c` but
    /// that are one class bigger (`class_widened_from[c]`), and which class (`class_widened_to`):
    /// the last block of a run absorbs a sliver too small to be a block of its own, and is freed
    /// as the bigger block it is. The statistics move such allocations to the bigger class.
    pub class_widened_from: [AtomicUsize; NUM_CLASSES],
    /// See `class_widened_from`.
    pub class_widened_to: [AtomicUsize; NUM_CLASSES],
    /// Highest number of mapped blocks live at once.
    pub mapped_peak: AtomicUsize,
    /// Bytes currently obtained from the source (segments and mappings).
    pub os_bytes: AtomicUsize,
    /// Highest value `os_bytes` reached.
    pub os_peak: AtomicUsize,
    /// Bytes given back to the source over the heap's life.
    pub os_returned: AtomicUsize,
    /// Bytes in mapped (large) blocks now.
    pub mapped_bytes: AtomicUsize,
    /// Mapped blocks now.
    pub mapped_blocks: AtomicUsize,
    /// Highest number of bytes in blocks held by the program or its thread caches, sampled each
    /// time the heap hands out memory.
    pub held_peak: AtomicUsize,
    /// Bytes in the coalesced free lists, as of the last heap-lock release.
    pub free_bytes: AtomicUsize,
    /// Bytes of free blocks whose pages were given back with `purge`, over the heap's life.
    pub purged: AtomicUsize,
}

impl HeapCounters {
    /// Records `n` blocks of class `c` leaving the heap's free lists (slow paths only).
    fn out(&self, c: usize, n: usize) {
        let held = self.class_held[c].fetch_add(n, Ordering::Relaxed) + n;
        if held > self.class_peak[c].load(Ordering::Relaxed) {
            self.class_peak[c].fetch_max(held, Ordering::Relaxed);
        }
    }

    /// Records a block carved for class `from` that goes out as a block of class `to`.
    fn widened(&self, from: usize, to: usize) {
        if from != to {
            self.class_widened_from[from].fetch_add(1, Ordering::Relaxed);
            self.class_widened_to[to].fetch_add(1, Ordering::Relaxed);
        }
        self.out(to, 1);
    }

    /// Takes back `widened(from, to)` for a block no cache handed out.
    fn unwidened(&self, from: usize, to: usize) {
        if from != to {
            let _ = self.class_widened_from[from].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
            let _ = self.class_widened_to[to].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// Records a block resized in place from class `from` to class `to`.
    fn moved(&self, from: usize, to: usize) {
        if from != to {
            self.back(from, 1);
            self.out(to, 1);
        }
    }

    /// Records `n` blocks of class `c` coming back (never below zero, in case a caller's count
    /// and ours disagree).
    fn back(&self, c: usize, n: usize) {
        let _ = self.class_held[c].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(n)));
    }
}

/// What [`Heap::check`] counted while verifying the invariants.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeapReport {
    /// Segments walked.
    pub segments: usize,
    /// Blocks in use (by the user, or held by thread caches as `QUICK`).
    pub in_use_blocks: usize,
    /// `QUICK` blocks found in segments.
    pub quick_blocks: usize,
    /// `QUICK` blocks on the quick lists.
    pub listed_quick_blocks: usize,
    /// `FREE` blocks (bins and top).
    pub free_blocks: usize,
    /// Bytes in `FREE` blocks.
    pub free_bytes: usize,
    /// Bytes in all segments.
    pub heap_bytes: usize,
    /// Size of the top block (0 if none).
    pub top_bytes: usize,
}

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

/// Where a rejected pointer falls (see `Heap::locate`).
enum Located {
    /// Inside the block whose user pointer is given.
    Inside(usize),
    /// At a block boundary: the pointer would be a block's, but its header is damaged.
    Start,
    /// Not in a segment, or the walk met damage first.
    Unknown,
}

/// Attempts at the heap lock before a diagnosis gives up on walking the heap.
const LOCATE_LOCK_TRIES: usize = 1000;

/// What [`Heap::resize_in_place`] managed.
pub enum Resized {
    /// Resized; the block is now at this address.
    Done(usize),
    /// The caller must allocate, copy and free; for a shrink, keep the block if that allocation
    /// fails (the block is big enough).
    MustMove,
    /// The request is impossible or memory is exhausted; the block is untouched.
    NoMemory,
}

/// A heap over a source of memory. The process-wide allocator is one `Heap<OsSource>`; tests
/// make their own over memory they own.
pub struct Heap<S: Source> {
    source: S,
    secret: AtomicU64,
    core: Lock<Core>,
    quick: [Lock<QuickList>; NUM_QUICK],
    quick_bytes: AtomicUsize,
    /// Bytes carved for quick classes from the coalesced heap since the last consolidation, each
    /// carving counted up to the bytes parked on the quick lists at the time: the sign that
    /// parked quick blocks are not what the program asks for.
    carved_since_consolidation: AtomicUsize,
    pages: PageMap,
    /// Lowest and highest address of any memory the heap obtained: a cheap plausibility test for
    /// decoded links.
    lo: AtomicUsize,
    hi: AtomicUsize,
    /// The growable segment's descriptor (or `NO_SEGMENT`), for the cheap ownership test of
    /// `validate`. Published after the segment's pages are marked; never unpublished (segments
    /// are never unmapped whole).
    seg_view: AtomicPtr<Segment>,
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
    recent_next: AtomicUsize,
    /// Counters for statistics.
    pub counters: HeapCounters,
}

/// Whether a block of `size` bytes may sit on quick class `c`'s lists: its class size, or more by
/// a sliver too small to have been split off when it was carved.
fn quick_size_fits(size: usize, c: usize) -> bool {
    let class = QUICK_SIZE[c] as usize;
    size >= class && size - class < MIN_BLOCK
}

// Small helpers for the bins' links, which live in FREE blocks' payloads and are only touched
// under the heap lock.
#[inline]
unsafe fn link_next(b: usize) -> usize {
    // SAFETY: b is a FREE block of at least MIN_BLOCK bytes; its payload holds the links.
    unsafe { *((b + HEADER) as *const usize) }
}
#[inline]
unsafe fn link_prev(b: usize) -> usize {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER + WORD) as *const usize) }
}
#[inline]
unsafe fn set_next(b: usize, v: usize) {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER) as *mut usize) = v }
}
#[inline]
unsafe fn set_prev(b: usize, v: usize) {
    // SAFETY: as in link_next.
    unsafe { *((b + HEADER + WORD) as *mut usize) = v }
}

impl Core {
    const fn new() -> Self {
        Core {
            secret: 0,
            bins: [0; NUM_CLASSES],
            bitmap: [0; BITMAP_WORDS],
            top: 0,
            fence: 0,
            seg: 0,
            segments: 0,
            free_bytes: 0,
            heap_bytes: 0,
            last_grow_ms: 0,
            epoch: 0,
            last_purge_ms: 0,
            free_blocks: 0,
            free_at_forced_purge: 0,
            last_empty_release_ms: NEVER,
            empty_backoff_ms: 0,
            carved_big: 0,
            top_reach: 0,
            top_reach_prev: 0,
            top_touched: 0,
            carved_unchecked: 0,
        }
    }

    #[inline]
    unsafe fn header(&self, b: usize, func: &str) -> u64 {
        // SAFETY: the caller passes the address of a block header inside a segment.
        let h = unsafe { block::load(b) };
        if !block::is_sealed(b, h, self.secret) {
            fatal(func, "corrupted block header at", b + HEADER);
        }
        h
    }

    /// Puts a free block where it belongs: the top if it ends at the growable segment's fence,
    /// otherwise its bin. It must not have a `FREE` neighbour.
    /// The range of a FREE block's pages already given back (empty for small blocks). Read it
    /// before the block is changed.
    unsafe fn purged_range(&self, b: usize, size: usize) -> (usize, usize) {
        if size < PURGE_MIN {
            return NOT_PURGED;
        }
        // SAFETY: a FREE block this big holds its bookkeeping after its links.
        unsafe { (*((b + PURGED_START) as *const usize), *((b + PURGED_END) as *const usize)) }
    }

    /// As `insert`, for a block some of whose pages were given back already (`purged`, clipped to
    /// the block).
    unsafe fn insert_range(&mut self, b: usize, size: usize, purged: (usize, usize)) {
        // SAFETY: the caller owns [b, b + size); the header after it (a block's or the fence's)
        // is a heap word, and its prev_free is ours to set under the heap lock.
        unsafe {
            block::write_tags(b, size, FREE, self.secret);
            block::set_prev_free(b + size, true);
        }
        self.free_bytes += size;
        self.free_blocks += 1;
        if size >= PURGE_MIN {
            // SAFETY: a block this big has room for its bookkeeping after its two links.
            unsafe {
                *((b + FREED_EPOCH) as *mut u64) = self.epoch;
                *((b + PURGED_START) as *mut usize) = purged.0.max(b + PURGE_KEEP);
                *((b + PURGED_END) as *mut usize) = purged.1.min(b + size - WORD);
            }
        }
        if b + size == self.fence {
            self.top = b;
            self.top_reach = self.top_reach.max(b);
            self.top_touched = self.top_touched.max(b);
            return;
        }
        let c = class_of(size);
        let head = self.bins[c];
        // SAFETY: b is now FREE and ours; head is FREE or 0.
        unsafe {
            set_next(b, head);
            set_prev(b, 0);
            if head != 0 {
                set_prev(head, b);
            }
        }
        self.bins[c] = b;
        self.bitmap[c / 64] |= 1 << (c % 64);
    }

    /// Takes a free block out of its bin (or out of the top).
    unsafe fn unlink(&mut self, b: usize, size: usize) {
        self.free_bytes -= size;
        self.free_blocks -= 1;
        if b == self.top {
            self.top = 0;
            return;
        }
        let c = class_of(size);
        // SAFETY: b is a FREE block in bin c; its neighbours in the list are FREE blocks too.
        unsafe {
            let (next, prev) = (link_next(b), link_prev(b));
            if (next != 0 && link_prev(next) != b) || (prev != 0 && link_next(prev) != b) || (prev == 0 && self.bins[c] != b) {
                fatal("free", "corrupted free list at", b + HEADER);
            }
            if prev == 0 {
                self.bins[c] = next;
            } else {
                set_next(prev, next);
            }
            if next != 0 {
                set_prev(next, prev);
            }
        }
        if self.bins[c] == 0 {
            self.bitmap[c / 64] &= !(1 << (c % 64));
        }
    }

    /// Frees a block the caller owns, coalescing it with free neighbours.
    unsafe fn release(&mut self, mut b: usize, mut size: usize, func: &str) {
        let secret = self.secret;
        // SAFETY: b is a block inside a segment, so its header, the word before it when the block
        // before is FREE (that block's footer) and the header after it (a block or the right
        // fence) are heap words.
        unsafe {
            // The merged block keeps the larger purged range of its free neighbours.
            let mut purged = NOT_PURGED;
            if block::load(b) & PREV_FREE != 0 {
                let f = block::load(b - WORD);
                if !block::is_sealed(b - WORD, f, secret) {
                    fatal(func, "corrupted boundary tag before", b + HEADER);
                }
                let left_size = block::size_of(f);
                if left_size == 0 {
                    fatal(func, "corrupted boundary tag before", b + HEADER);
                }
                let l = b - left_size;
                let lh = self.header(l, func);
                if block::size_of(lh) != left_size || block::state_of(lh) != FREE {
                    fatal(func, "boundary tag disagrees with header at", l + HEADER);
                }
                purged = self.purged_range(l, left_size);
                self.unlink(l, left_size);
                // The absorbed header stays behind as stale bytes: mark it FREE so that a
                // second free of this pointer is still recognised as a double free.
                block::store(b, block::seal(b, size as u64 | FREE, secret));
                b = l;
                size += left_size;
            }
            let r = b + size;
            let rh = self.header(r, func);
            if block::state_of(rh) == FREE {
                let right_size = block::size_of(rh);
                let right_purged = self.purged_range(r, right_size);
                if right_purged.1.saturating_sub(right_purged.0) > purged.1.saturating_sub(purged.0) {
                    purged = right_purged;
                }
                self.unlink(r, right_size);
                size += right_size;
            }
            self.insert_range(b, size, purged);
        }
    }

    /// Finds and unlinks a free block of at least `need` bytes (not growing the heap).
    ///
    /// For requests beyond the quick classes: the best fit among the first `BIN_SCAN_LIMIT` blocks
    /// of the request's own bin, else of the nearest non-empty bigger bin, lower addresses winning
    /// ties: the tightest fit leaves the biggest holes whole for the requests that need them, and
    /// favouring low addresses keeps the heap's live part dense and its top free, where it can be
    /// trimmed. Smaller requests take the first fit in the same order.
    unsafe fn take(&mut self, need: usize) -> Option<(usize, usize)> {
        let c = class_of(need);
        // SAFETY: bins hold FREE blocks inside segments.
        if let Some(found) = unsafe { self.best_in_bin(c, need) } {
            return Some(found);
        }
        if let Some(bc) = self.next_nonempty(c + 1) {
            // SAFETY: as above; every block of a bigger bin fits.
            if let Some(found) = unsafe { self.best_in_bin(bc, need) } {
                return Some(found);
            }
        }
        if self.top != 0 {
            let t = self.top;
            // SAFETY: the top is a FREE block.
            let size = block::size_of(unsafe { self.header(t, "malloc") });
            if size >= need {
                // SAFETY: as above.
                unsafe { self.unlink(t, size) };
                // The caller hands out [t, t + need) (and the top's sliver with it if the rest
                // is too small to be a block; otherwise the rest is the new top).
                self.top_touched = self.top_touched.max(t + need);
                return Some((t, size));
            }
        }
        None
    }

    /// The best fit for `need` among the first blocks of bin `c`, unlinked.
    unsafe fn best_in_bin(&mut self, c: usize, need: usize) -> Option<(usize, usize)> {
        let mut b = self.bins[c];
        let (mut best, mut best_size) = (0, usize::MAX);
        let mut scanned = 0;
        while b != 0 && (scanned < BIN_SCAN_LIMIT || (c == NUM_CLASSES - 1 && best == 0)) {
            // SAFETY: blocks on a bin are FREE blocks inside segments.
            let size = block::size_of(unsafe { self.header(b, "malloc") });
            if size >= need && (size < best_size || (size == best_size && b < best)) {
                (best, best_size) = (b, size);
                // Small requests (refills of quick classes) take the first fit: searching
                // further cost CPython 1.5% of its instructions, and their remainders go back
                // to the bins anyway.
                if size == need || need <= QUICK_MAX_BLOCK {
                    break;
                }
            }
            // SAFETY: as above.
            b = unsafe { link_next(b) };
            scanned += 1;
        }
        if best == 0 {
            return None;
        }
        // SAFETY: best is in bin c.
        unsafe { self.unlink(best, best_size) };
        Some((best, best_size))
    }

    fn next_nonempty(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        if w >= BITMAP_WORDS {
            return None;
        }
        let mut bits = self.bitmap[w] & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            if w >= BITMAP_WORDS {
                return None;
            }
            bits = self.bitmap[w];
        }
    }

    /// Gives the first `need` bytes of the unlinked free block `(b, size)` the state `state`,
    /// returning the rest to the free lists. `need` is a valid block size <= `size`.
    unsafe fn carve(&mut self, b: usize, size: usize, need: usize, state: u64, purged: (usize, usize)) -> usize {
        let rest = size - need;
        // SAFETY: the caller owns [b, b + size), whose header is valid; the header after it is a
        // heap word.
        unsafe {
            // What lies before b does not change (a block grown in place may follow a FREE one).
            let state = state | (block::load(b) & PREV_FREE);
            if rest >= MIN_BLOCK {
                block::write_tags(b, need, state, self.secret);
                // The rest's right neighbour was the free block's neighbour: never FREE. It keeps
                // what was purged of its pages.
                self.insert_range(b + need, rest, purged);
                need
            } else {
                block::write_tags(b, size, state, self.secret);
                block::set_prev_free(b + size, false);
                size
            }
        }
    }

    /// Writes the fence header at `f`.
    unsafe fn write_fence(&self, f: usize) {
        // SAFETY: f is the last word of a segment we own.
        unsafe { block::store(f, block::seal(f, FENCE, self.secret)) }
    }
}

impl<S: Source> Heap<S> {
    /// A heap over `source`. With `secret == 0` the check key is drawn from the kernel on first
    /// use; tests pass their own.
    pub const fn new(source: S, secret: u64) -> Self {
        Heap {
            source,
            secret: AtomicU64::new(secret),
            core: Lock::new(Core::new()),
            quick: [const { Lock::new(QuickList::new()) }; NUM_QUICK],
            quick_bytes: AtomicUsize::new(0),
            carved_since_consolidation: AtomicUsize::new(0),
            pages: PageMap::new(),
            lo: AtomicUsize::new(usize::MAX),
            hi: AtomicUsize::new(0),
            seg_view: AtomicPtr::new(&NO_SEGMENT as *const Segment as *mut Segment),
            mmap_threshold: AtomicUsize::new(MMAP_THRESHOLD),
            mmap_fixed: AtomicBool::new(false),
            trim_threshold: AtomicUsize::new(TRIM_THRESHOLD),
            decay_ms: AtomicU64::new(TRIM_DECAY_MS),
            recent_unmapped: [const { AtomicUsize::new(0) }; RECENT_UNMAPPED],
            recent_next: AtomicUsize::new(0),
            counters: HeapCounters {
                class_held: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                class_peak: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                class_widened_from: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                class_widened_to: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                mapped_peak: AtomicUsize::new(0),
                os_bytes: AtomicUsize::new(0),
                os_peak: AtomicUsize::new(0),
                os_returned: AtomicUsize::new(0),
                mapped_bytes: AtomicUsize::new(0),
                mapped_blocks: AtomicUsize::new(0),
                held_peak: AtomicUsize::new(0),
                free_bytes: AtomicUsize::new(0),
                purged: AtomicUsize::new(0),
            },
        }
    }

    /// The key of every check value and link encoding. Valid once any block exists.
    #[inline(always)]
    pub fn secret(&self) -> u64 {
        self.secret.load(Ordering::Relaxed)
    }

    fn init_secret(&self) -> u64 {
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

    fn lock_core(&self) -> crate::sync::Guard<'_, Core> {
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

    fn note_os(&self, start: usize, len: usize) {
        self.lo.fetch_min(start, Ordering::Relaxed);
        self.hi.fetch_max(start + len, Ordering::Relaxed);
        let now = self.counters.os_bytes.fetch_add(len, Ordering::Relaxed) + len;
        self.counters.os_peak.fetch_max(now, Ordering::Relaxed);
    }

    fn note_os_returned(&self, len: usize) {
        self.counters.os_bytes.fetch_sub(len, Ordering::Relaxed);
        self.counters.os_returned.fetch_add(len, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------------------------------
    // Validation of user pointers

    /// Checks that `p` is a live block handed out by this heap and returns its header; otherwise
    /// reports the misuse (naming `func`) and aborts. On the hot path of every `free`.
    #[inline(always)]
    pub fn validate(&self, p: usize, func: &str) -> u64 {
        let b = p.wrapping_sub(HEADER);
        if p & (ALIGNMENT - 1) != 0 || !self.owns(b) {
            self.reject_pointer(p, func);
        }
        // SAFETY: the page holding b belongs to the heap, so the word is readable.
        let h = unsafe { block::load(b) };
        if !block::is_sealed(b, h, self.secret()) || block::state_of(h) != IN_USE {
            self.reject_header(p, h, func);
        }
        h
    }

    /// Whether the word at `addr` lies in memory the heap owns: a range check for the growable
    /// segment (where most blocks live), the page map for everything else.
    #[inline(always)]
    fn owns(&self, addr: usize) -> bool {
        let seg = self.seg_view.load(Ordering::Acquire);
        // SAFETY: seg_view always points at a live descriptor (NO_SEGMENT or a segment's).
        let len = unsafe { (*seg).len.load(Ordering::Acquire) };
        addr.wrapping_sub(seg as usize) < len || self.pages.contains(addr)
    }

    #[cold]
    #[inline(never)]
    fn reject_pointer(&self, p: usize, func: &str) -> ! {
        if p & (ALIGNMENT - 1) != 0 {
            fatal(func, "invalid pointer (misaligned)", p);
        }
        if self.recent_unmapped.iter().any(|r| r.load(Ordering::Relaxed) == p) {
            fatal(func, "double free of mapped block (already unmapped)", p);
        }
        fatal(func, "invalid pointer (not allocated by my_alloc)", p)
    }

    #[cold]
    #[inline(never)]
    fn reject_header(&self, p: usize, h: u64, func: &str) -> ! {
        if !block::is_sealed(p - HEADER, h, self.secret()) {
            match self.locate(p) {
                Located::Inside(start) => fatal_at(func, "invalid pointer", p, "inside the block at", start),
                Located::Start => fatal(func, "corrupted block header (overwritten) at", p),
                Located::Unknown => fatal(func, "invalid pointer or corrupted block header at", p),
            }
        }
        match block::state_of(h) {
            QUICK | FREE => fatal_sized(func, "double free of", p, block::size_of(h)),
            _ => fatal(func, "invalid pointer (not a block)", p),
        }
    }

    /// Where `p` falls among the heap's blocks, for a diagnosis (cold: walks the segment that
    /// holds it). Gives up rather than wait long for the heap lock.
    #[cold]
    fn locate(&self, p: usize) -> Located {
        let mut core = None;
        for _ in 0..LOCATE_LOCK_TRIES {
            if let Some(g) = self.core.try_lock() {
                core = Some(g);
                break;
            }
            os::yield_now();
        }
        let Some(core) = core else { return Located::Unknown };
        let mut seg = core.segments;
        // SAFETY: under the heap lock, segments and their block tiling are stable; the walk stops
        // at the first header that fails its check.
        unsafe {
            while seg != 0 {
                let s = &*(seg as *const Segment);
                let end = seg + s.len.load(Ordering::Relaxed);
                if (seg..end).contains(&p) {
                    let mut b = seg + FIRST_BLOCK;
                    while b < end - WORD {
                        if b + HEADER == p {
                            return Located::Start;
                        }
                        let h = block::load(b);
                        if !block::is_sealed(b, h, core.secret) || block::size_of(h) == 0 {
                            return Located::Unknown;
                        }
                        if p > b && p < b + block::size_of(h) {
                            return Located::Inside(b + HEADER);
                        }
                        b += block::size_of(h);
                    }
                    return Located::Unknown;
                }
                seg = s.next;
            }
        }
        Located::Unknown
    }

    /// Whether the address lies in the heap's overall span (for decoded link checks).
    #[inline(always)]
    pub fn plausible(&self, p: usize) -> bool {
        // lo only falls and hi only rises, so any pair of loads describes a span that covers every
        // block another thread could have linked before we read the link.
        let lo = self.lo.load(Ordering::Relaxed);
        p & (ALIGNMENT - 1) == 0 && p.wrapping_sub(lo) < self.hi.load(Ordering::Relaxed).wrapping_sub(lo)
    }

    /// Decodes the link stored in the `QUICK` block at user pointer `p`, aborting if it is not a
    /// plausible heap address (a use-after-free write, or an attempt to steer the allocator).
    #[inline(always)]
    pub fn next_quick(&self, p: usize, secret: u64) -> usize {
        // SAFETY: p is the user pointer of a QUICK block we own; its first word is the link.
        let next = block::decode_link(p, unsafe { *(p as *const usize) }, secret);
        if next != 0 && !self.plausible(next) {
            fatal("malloc", "corrupted free list (use after free?) in block", p);
        }
        next
    }

    /// Whether `p` is the user pointer of a sealed `QUICK` block of quick class `c` in the heap.
    fn is_quick_of(&self, p: usize, c: usize) -> bool {
        if !self.plausible(p) || !self.owns(p - HEADER) {
            return false;
        }
        // SAFETY: the header's page belongs to the heap.
        let h = unsafe { block::load(p - HEADER) };
        block::is_sealed(p - HEADER, h, self.secret()) && block::state_of(h) == QUICK && quick_size_fits(block::size_of(h), c)
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

    // ---------------------------------------------------------------------------------------
    // Allocation without a thread cache

    /// Allocates `n` bytes; `None` when the request is impossible or memory is exhausted.
    pub fn malloc(&self, n: usize) -> Option<usize> {
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

    /// One block of quick class `c`: from its quick list, else carved from the heap.
    fn malloc_quick(&self, c: usize) -> Option<usize> {
        let secret = self.secret();
        {
            let mut q = self.quick[c].lock();
            if let Some((p, _, _)) = q.take(1, 1, |p| self.next_quick(p, secret), |p| self.is_quick_of(p, c), secret) {
                // The byte count changes under the list's lock, so that a fork (whose handler
                // holds every lock) never sees the two disagree.
                self.quick_bytes.fetch_sub(QUICK_SIZE[c] as usize, Ordering::Relaxed);
                drop(q);
                // SAFETY: p was a QUICK block of ours; now it is the caller's.
                let size = unsafe {
                    block::flip_state(p - HEADER, FLIP_IN_USE_QUICK);
                    block::size_of(block::load(p - HEADER))
                };
                if size != QUICK_SIZE[c] as usize {
                    // A widened block a cache flushed without handing it out: the statistics
                    // count this allocation in the class it is.
                    self.counters.unwidened(c, class_of(size));
                }
                self.counters.out(c, 1);
                return Some(p);
            }
        }
        let p = self.alloc_block(QUICK_SIZE[c] as usize, IN_USE)? + HEADER;
        self.counters.out(c, 1);
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

    /// A block of `need` bytes from the start of the top, if its pages there were handed out
    /// before (below `top_touched`) and not given back since (outside its purged range).
    fn alloc_resident_top(&self, need: usize) -> Option<usize> {
        self.with_core(|core| {
            let t = core.top;
            if t == 0 || t + need > core.top_touched {
                return None;
            }
            // SAFETY: the heap lock is held; the top is a FREE block.
            unsafe {
                let size = block::size_of(block::load(t));
                if size < need {
                    return None;
                }
                let purged = core.purged_range(t, size);
                if purged.0 < t + need && purged.1 > purged.0 {
                    return None;
                }
                core.unlink(t, size);
                core.carve(t, size, need, IN_USE, purged);
                self.note_big_carve(core, need);
                Some(t)
            }
        })
    }

    /// `take`, falling back to consolidating the quick lists and then to growing the heap.
    unsafe fn take_or_grow(&self, core: &mut Core, need: usize) -> Option<(usize, usize)> {
        // SAFETY: the caller holds the heap lock (core).
        unsafe {
            let mut found = core.take(need);
            if found.is_none() && self.quick_bytes.load(Ordering::Relaxed) >= need {
                self.consolidate(core);
                found = core.take(need);
            }
            if found.is_none() {
                self.grow(core, need)?;
                found = core.take(need);
            }
            let found = found?;
            if need >= PURGE_MIN {
                self.note_big_carve(core, need);
            }
            Some(found)
        }
    }

    /// Counts `need` bytes carved for a big block (from a hole, the top or a growth). Each time
    /// the count reaches 1/CARVE_PURGE_SHARE of the heap, a purge pass runs, as if a purge
    /// interval had passed: a hole that stayed free while the program carved that much twice
    /// elsewhere is not being reused, and its pages pin memory while the program touches others.
    fn note_big_carve(&self, core: &mut Core, need: usize) {
        core.carved_big += need;
        if core.carved_big >= (core.heap_bytes / CARVE_PURGE_SHARE).max(PURGE_MIN) {
            core.carved_big = 0;
            let now = self.source.now_ms();
            self.purge(core, now, PurgePass::Carving);
        }
    }

    /// Obtains at least `need` bytes of new block space from the source.
    unsafe fn grow(&self, core: &mut Core, need: usize) -> Option<()> {
        let want = need.checked_add(SEGMENT_OVERHEAD + PAGE)?.max(core.heap_bytes / GROW_SHARE);
        let want = want.checked_add(GROW_STEP - 1)? & !(GROW_STEP - 1);
        let r = self.source.grow(want)?;
        let now = self.source.now_ms();
        core.last_grow_ms = now;
        // Regrowing within the decay of giving everything back means the release was a dip in a
        // cycle: back off (doubling, up to the decay). A release that held for a whole decay
        // resets the back-off.
        let decay = self.decay_ms.load(Ordering::Relaxed);
        if core.last_empty_release_ms != NEVER {
            if now.wrapping_sub(core.last_empty_release_ms) < decay {
                core.empty_backoff_ms = (core.empty_backoff_ms * 2).max(decay / NEARLY_EMPTY_QUIET).min(decay);
            } else {
                core.empty_backoff_ms = 0;
            }
            core.last_empty_release_ms = NEVER;
        }
        if !self.pages.mark(&self.source, r.start, r.len) {
            self.source.shrink(r, r.len);
            return None;
        }
        self.note_os(r.start, r.len);
        core.heap_bytes += r.len;
        let secret = core.secret;
        // SAFETY: the region is fresh memory we own; the fences and descriptor are written before
        // any block of the region is used.
        unsafe {
            let seg = core.seg as *mut Segment;
            if core.seg != 0 && r.start == core.fence + WORD && (*seg).from_brk == r.from_brk {
                // Contiguous: the old fence becomes the header of a block spanning the new space.
                let len = (*seg).len.load(Ordering::Relaxed) + r.len;
                let b = core.fence;
                // The fence's prev_free (the top before it) carries over to the new block.
                let prev_free = block::load(b) & PREV_FREE;
                core.fence = r.start + r.len - WORD;
                core.write_fence(core.fence);
                block::write_tags(b, core.fence - b, IN_USE | prev_free, secret);
                core.release(b, core.fence - b, "malloc");
                (*seg).len.store(len, Ordering::Release);
            } else {
                let s = r.start as *mut Segment;
                s.write(Segment { next: core.segments, len: AtomicUsize::new(r.len), from_brk: r.from_brk });
                core.segments = r.start;
                core.seg = r.start;
                // Addresses of the old segment say nothing about the new one's top.
                (core.top_reach, core.top_reach_prev, core.top_touched) = (0, 0, 0);
                let first = r.start + FIRST_BLOCK;
                block::store(first - WORD, block::seal(first - WORD, 0, secret));
                // The old top stays a free block of its segment, now in a bin.
                let old_top = core.top;
                if old_top != 0 {
                    let size = block::size_of(core.header(old_top, "malloc"));
                    let purged = core.purged_range(old_top, size);
                    core.unlink(old_top, size);
                    core.fence = 0;
                    core.insert_range(old_top, size, purged);
                }
                core.fence = r.start + r.len - WORD;
                core.write_fence(core.fence);
                block::write_tags(first, core.fence - first, IN_USE, secret);
                core.release(first, core.fence - first, "malloc");
                self.seg_view.store(s, Ordering::Release);
            }
        }
        Some(())
    }

    /// Moves every quick list's blocks into the coalesced free lists.
    unsafe fn consolidate(&self, core: &mut Core) {
        let secret = core.secret;
        self.carved_since_consolidation.store(0, Ordering::Relaxed);
        for c in 0..NUM_QUICK {
            let (heads, chains) = {
                let mut q = self.quick[c].lock();
                self.quick_bytes.fetch_sub(q.len * QUICK_SIZE[c] as usize, Ordering::Relaxed);
                q.take_all()
            };
            for &head in &heads[..chains] {
                let mut p = head;
                while p != 0 {
                    let next = self.next_quick(p, secret);
                    // The chain's blocks have mostly left the cache: start loading the next one
                    // while this one is coalesced.
                    block::prefetch(next);
                    let b = p - HEADER;
                    // SAFETY: blocks on a quick list are QUICK blocks in segments; we own them now.
                    unsafe {
                        let h = core.header(b, "malloc");
                        if block::state_of(h) != QUICK || !quick_size_fits(block::size_of(h), c) {
                            fatal("malloc", "corrupted quick list at", p);
                        }
                        if block::size_of(h) != QUICK_SIZE[c] as usize {
                            // A widened block no cache handed out (one that was would have
                            // been freed into its own, bigger class).
                            self.counters.unwidened(c, class_of(block::size_of(h)));
                        }
                        block::flip_state(b, FLIP_QUICK_FREE);
                        core.release(b, block::size_of(h), "malloc");
                    }
                    p = next;
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Batches for thread caches

    /// Takes up to `max` `QUICK` blocks of class `c` (or a whole chain of the quick list of at most
    /// `whole` blocks): from the quick list, else freshly carved. Returns the chain's first and last
    /// user pointers (links encoded, last link 0) and its length.
    pub fn refill(&self, c: usize, max: usize, whole: usize) -> (usize, usize, usize) {
        let secret = self.secret();
        {
            let mut q = self.quick[c].lock();
            if let Some((head, tail, n)) = q.take(max, whole, |p| self.next_quick(p, secret), |p| self.is_quick_of(p, c), secret) {
                self.quick_bytes.fetch_sub(n * QUICK_SIZE[c] as usize, Ordering::Relaxed);
                drop(q);
                self.counters.out(c, n);
                return (head, tail, n);
            }
        }
        self.carve_run(c, max)
    }

    /// Carves up to `max` `QUICK` blocks of class `c` out of the best-fitting free blocks.
    ///
    /// Each piece comes from the smallest free block that holds one block of the class (an exact
    /// fit first), and gives as many blocks as it can. Small fragments are used up before a big
    /// hole is cut into: a run of small blocks carved into a big hole would pin the hole if one of
    /// them lives long, which is how a heap fragments.
    fn carve_run(&self, c: usize, max: usize) -> (usize, usize, usize) {
        let size = QUICK_SIZE[c] as usize;
        self.with_core(|core| {
            let secret = core.secret;
            let (mut head, mut tail) = (0, 0);
            let mut n = 0;
            let mut widened = 0;
            // SAFETY: under the heap lock; blocks from take/take_or_grow are ours to cut.
            unsafe {
                while n < max {
                    let found = if n == 0 { self.take_or_grow(core, size) } else { core.take(size) };
                    let Some((b, got)) = found else { break };
                    let purged = core.purged_range(b, got);
                    let mut k = (got / size).min(max - n);
                    let mut rest = got - k * size;
                    if rest != 0 && rest < MIN_BLOCK && k > 1 {
                        k -= 1;
                        rest += size;
                    }
                    for i in (0..k).rev() {
                        let bi = b + i * size;
                        // The last block absorbs a sliver too small to be a block of its own.
                        let bsize = if i == k - 1 && rest < MIN_BLOCK { size + rest } else { size };
                        if bsize != size {
                            self.counters.widened(c, class_of(bsize));
                            widened += 1;
                        }
                        block::write_tags(bi, bsize, QUICK, secret);
                        let p = bi + HEADER;
                        *(p as *mut usize) = block::encode_link(p, head, secret);
                        if head == 0 {
                            tail = p;
                        }
                        head = p;
                    }
                    if rest >= MIN_BLOCK {
                        core.insert_range(b + k * size, rest, purged);
                    } else {
                        block::set_prev_free(b + got, false);
                    }
                    n += k;
                }
            }
            // Carving is evidence of hoarding only as far as blocks sat parked meanwhile: what
            // refills carve after a consolidation emptied the quick lists is the program's
            // demand, not a sign that the lists hold the wrong sizes.
            let parked = self.quick_bytes.load(Ordering::Relaxed);
            self.carved_since_consolidation.fetch_add((n * size).min(parked), Ordering::Relaxed);
            self.note_carved(core, n * size);
            self.counters.out(c, n - widened);
            (head, tail, n)
        })
    }

    /// Gives a chain of `n` `QUICK` blocks of class `c` (first `head`, last `tail`) to the quick
    /// list.
    pub fn flush(&self, c: usize, head: usize, tail: usize, n: usize) {
        let secret = self.secret();
        let mut q = self.quick[c].lock();
        // SAFETY: the chain's blocks are QUICK blocks of class c the caller owned.
        unsafe { q.push(head, tail, n, secret) };
        let parked = self.quick_bytes.fetch_add(n * QUICK_SIZE[c] as usize, Ordering::Relaxed) + n * QUICK_SIZE[c] as usize;
        drop(q);
        self.counters.back(c, n);
        // Much memory parked by class is fine while it is what the program asks for next (a
        // program freeing and reallocating the same sizes reuses it through refills). It is
        // hoarded when refills keep carving fresh blocks meanwhile: then coalesce it, so that
        // every size can use it.
        //
        // And when the heap is nearly empty, the program is letting go of its memory: coalesce
        // early and often, so that it can go back to the OS.
        let counters = &self.counters;
        let heap = counters.os_bytes.load(Ordering::Relaxed).saturating_sub(counters.mapped_bytes.load(Ordering::Relaxed));
        let in_use = heap.saturating_sub(counters.free_bytes.load(Ordering::Relaxed)).saturating_sub(parked);
        let hoarded = parked > QUICK_RETAIN_MIN
            && parked > heap / QUICK_SHARE
            && self.carved_since_consolidation.load(Ordering::Relaxed) > parked / 2;
        let letting_go = parked > QUICK_RETAIN_MIN / 4 && in_use < heap / NEARLY_EMPTY;
        if hoarded || letting_go {
            self.with_core(|core| {
                // SAFETY: the heap lock is held by with_core; no quick lock is held here.
                unsafe { self.consolidate(core) };
                self.maybe_release(core);
            });
        }
    }

    /// Bytes parked on the quick lists.
    pub fn quick_bytes(&self) -> usize {
        self.quick_bytes.load(Ordering::Relaxed)
    }

    // ---------------------------------------------------------------------------------------
    // Freeing

    /// Frees the live block at `p` whose header `validate` returned.
    pub fn free_validated(&self, p: usize, h: u64) {
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

    /// After memory came back to the heap: trims the top and purges big free blocks when their
    /// decay has passed (at once for the top when the heap is nearly empty).
    fn maybe_release(&self, core: &mut Core) {
        let now = self.source.now_ms();
        let decay = self.decay_ms.load(Ordering::Relaxed);
        let held = core.heap_bytes - core.free_bytes;
        let in_use = held - self.quick_bytes.load(Ordering::Relaxed).min(held);
        // Nearly empty, and not a dip between the cycles of a program that keeps regrowing its
        // heap: each time the heap regrows soon after such a release, the next one waits longer
        // after the last growth (see `grow`).
        let nearly_empty = in_use < core.heap_bytes / NEARLY_EMPTY
            && now.wrapping_sub(core.last_grow_ms) >= core.empty_backoff_ms;
        if core.top != 0 {
            // SAFETY: the top is a FREE block in the growable segment.
            let top_size = block::size_of(unsafe { block::load(core.top) });
            if nearly_empty {
                // Nothing worth keeping for the next growth either.
                if self.trim_top(core, 0) {
                    core.last_empty_release_ms = now;
                }
            } else if top_size > self.trim_threshold.load(Ordering::Relaxed).max(2 * self.mmap_threshold())
                && now.wrapping_sub(core.last_grow_ms) >= decay
            {
                self.trim_top(core, TRIM_KEEP);
            }
        }
        // The mark follows free_bytes down (allocation, trimming), so it measures what was freed
        // since the last forced purge.
        core.free_at_forced_purge = core.free_at_forced_purge.min(core.free_bytes);
        if nearly_empty && core.free_bytes >= core.free_at_forced_purge + PURGE_MIN {
            // Free blocks the top could not absorb (a few live blocks sit above them) go too,
            // each time another PURGE_MIN has been freed (a purge advises only new pages).
            self.purge(core, now, PurgePass::Forced);
            core.free_at_forced_purge = core.free_bytes;
        } else if now.wrapping_sub(core.last_purge_ms) >= decay / 2 {
            self.purge(core, now, PurgePass::Timed);
        }
    }

    /// Gives back the pages of free blocks that have not been reused (see `PurgePass`). Returns
    /// the bytes purged.
    fn purge(&self, core: &mut Core, now: u64, pass: PurgePass) -> usize {
        let force = pass == PurgePass::Forced;
        let mut purged = 0;
        for c in class_of(PURGE_MIN)..NUM_CLASSES {
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock; their links
                // stay in the part kept.
                unsafe {
                    let aged = force || *((b + FREED_EPOCH) as *const u64) + 2 <= core.epoch;
                    purged += self.purge_block(core, b, PURGE_KEEP, usize::MAX, aged);
                    b = link_next(b);
                }
            }
        }
        if core.top != 0 && pass == PurgePass::Timed {
            let t = core.top;
            // Keep TRIM_KEEP beyond the deepest start of the top over the last two intervals:
            // what lies further was not allocated for that long.
            let reach = core.top_reach.max(core.top_reach_prev).max(t);
            let from = reach - t + TRIM_KEEP;
            // SAFETY: the top is a FREE block we own under the heap lock.
            purged += unsafe { self.purge_block(core, t, from, core.top_touched, true) };
            core.top_touched = core.top_touched.min(round_up(t + from, PAGE));
            core.top_reach_prev = core.top_reach;
            core.top_reach = t;
        }
        core.epoch += 1;
        core.last_purge_ms = now;
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Bytes of the heap known not to be resident: the pages of big free blocks given back, and
    /// the top's beyond `top_touched` (never handed out since they came from the source, or
    /// given back) or in its purged range. Free blocks too small to be purged count as resident.
    fn nonresident(&self, core: &Core) -> usize {
        let mut n = 0;
        for c in class_of(PURGE_MIN)..NUM_CLASSES {
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock.
                unsafe {
                    let (start, end) = core.purged_range(b, block::size_of(block::load(b)));
                    n += end.saturating_sub(start);
                    b = link_next(b);
                }
            }
        }
        if core.top != 0 {
            let t = core.top;
            // SAFETY: the top is a FREE block we own under the heap lock.
            let (end, (start, purged_end)) = unsafe {
                let size = block::size_of(block::load(t));
                (t + size, core.purged_range(t, size))
            };
            let touched = core.top_touched.clamp(t, end);
            n += end - touched + purged_end.min(touched).saturating_sub(start);
        }
        n
    }

    /// Counts `bytes` carved out of the free lists (which may bring pages in), checking the
    /// resident memory against its budget each `RESIDENT_CHECK_MIN` of them.
    #[inline]
    fn note_carved(&self, core: &mut Core, bytes: usize) {
        core.carved_unchecked += bytes;
        if core.carved_unchecked >= RESIDENT_CHECK_MIN {
            core.carved_unchecked = 0;
            self.keep_resident_within_budget(core);
        }
    }

    /// Keeps the heap's resident memory, with the mapped blocks, within the most the program has
    /// held plus a slack (see `RESIDENT_SLACK_SHARE`): beyond that, gives back the excess, from
    /// the top's pages beyond `TRIM_KEEP` first, then from the big free blocks, the biggest
    /// first. Called under the heap lock every `RESIDENT_CHECK_MIN` carved, and after a big
    /// mapping or `mremap` growth.
    fn keep_resident_within_budget(&self, core: &mut Core) {
        let c = &self.counters;
        let os = c.os_bytes.load(Ordering::Relaxed);
        let held = os.saturating_sub(core.free_bytes).saturating_sub(self.quick_bytes.load(Ordering::Relaxed));
        let peak = c.held_peak.load(Ordering::Relaxed).max(held);
        let budget = peak.saturating_add(peak / RESIDENT_SLACK_SHARE).saturating_add(RESIDENT_SLACK_MIN);
        if os <= budget {
            return; // within budget even if every page were resident: no walk
        }
        let resident = os.saturating_sub(self.nonresident(core));
        let Some(mut excess) = resident.checked_sub(budget).filter(|&e| e > 0) else { return };
        let mut purged = 0;
        // The top first: allocations take it last, and from its start. Its pages from the end of
        // what it handed out backwards, but `TRIM_KEEP`.
        if core.top != 0 {
            let t = core.top;
            // SAFETY: the top is a FREE block we own under the heap lock.
            let size = block::size_of(unsafe { block::load(t) });
            let to = round_up(core.top_touched, PAGE).min((t + size - WORD) & !(PAGE - 1));
            let from = round_up(t + TRIM_KEEP, PAGE).max(to.saturating_sub(round_up(excess, PAGE)));
            if from < to {
                self.source.purge(from, to - from);
                // Pages from `from` on were given back, as if never handed out.
                core.top_touched = core.top_touched.min(from);
                purged += to - from;
                excess = excess.saturating_sub(to - from);
            }
        }
        'bins: for c in (class_of(PURGE_MIN)..NUM_CLASSES).rev() {
            if excess == 0 {
                break;
            }
            let mut b = core.bins[c];
            while b != 0 {
                // SAFETY: bin entries are FREE blocks we own under the heap lock; their links
                // stay in the part kept.
                let got = unsafe { self.purge_tail(core, b, excess) };
                purged += got;
                excess = excess.saturating_sub(got);
                if excess == 0 {
                    break 'bins;
                }
                // SAFETY: as above.
                b = unsafe { link_next(b) };
            }
        }
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
    }

    /// Gives back about `want` bytes of the free block `b`'s pages, from the end of what is still
    /// resident backwards: a carving takes a block's start first, so that part stays. Falls back
    /// to the whole block when what was given back before lies in its middle. Returns the bytes
    /// purged.
    unsafe fn purge_tail(&self, core: &mut Core, b: usize, want: usize) -> usize {
        // SAFETY: the caller owns the FREE block b under the heap lock; only whole pages between
        // its bookkeeping and its footer are given back.
        unsafe {
            let size = block::size_of(block::load(b));
            if size < PURGE_MIN {
                return 0;
            }
            let start = round_up(b + PURGE_KEEP, PAGE);
            let end = (b + size - WORD) & !(PAGE - 1);
            let (done_start, done_end) = core.purged_range(b, size);
            // The resident part's end: the block's, or where a purged suffix begins.
            let (upto, keep_end) = if done_start >= done_end {
                (end, end)
            } else if done_end >= end {
                (round_up(done_start, PAGE).min(end), done_end)
            } else {
                return self.purge_block(core, b, PURGE_KEEP, usize::MAX, true);
            };
            let from = upto.saturating_sub(round_up(want, PAGE)).max(start);
            if from >= upto {
                return 0;
            }
            self.source.purge(from, upto - from);
            *((b + PURGED_START) as *mut usize) = from;
            *((b + PURGED_END) as *mut usize) = keep_end;
            upto - from
        }
    }

    /// Gives back the pages of the free block `b` from `keep` bytes past its start to its footer
    /// (or to `limit`, beyond which it was never touched), if it is `aged` and big enough.
    /// Returns the bytes purged.
    unsafe fn purge_block(&self, core: &mut Core, b: usize, keep: usize, limit: usize, aged: bool) -> usize {
        // SAFETY: the caller owns the FREE block b; its bookkeeping follows its links, and only
        // whole pages between `keep` and the footer are given back.
        unsafe {
            let size = block::size_of(block::load(b));
            if !aged || size < PURGE_MIN || size <= keep {
                return 0;
            }
            let start = round_up(b + keep, PAGE);
            let end = ((b + size - WORD) & !(PAGE - 1)).min(limit.saturating_add(PAGE - 1) & !(PAGE - 1));
            if end <= start {
                return 0;
            }
            // Only what is not given back already: around the recorded range, whole pages of it
            // (a range clipped to a block's bounds, then merged into a bigger block, may end
            // mid-page: that page is not given back yet).
            let (done_start, done_end) = core.purged_range(b, size);
            let ds = round_up(done_start.clamp(start, end), PAGE);
            let de = done_end.clamp(start, end) & !(PAGE - 1);
            let pieces = if ds < de { [(start, ds), (de, end)] } else { [(start, end), (end, end)] };
            let mut purged = 0;
            for (from, to) in pieces {
                if to > from {
                    self.source.purge(from, to - from);
                    purged += to - from;
                }
            }
            *((b + PURGED_START) as *mut usize) = start;
            *((b + PURGED_END) as *mut usize) = end;
            purged
        }
    }

    /// Gives the top block's bytes beyond `keep` back to the source. Returns whether it did.
    fn trim_top(&self, core: &mut Core, keep: usize) -> bool {
        if core.top == 0 {
            return false;
        }
        let t = core.top;
        // SAFETY: the top is a FREE block; seg is the growable segment's descriptor.
        let excess = unsafe {
            let size = block::size_of(block::load(t));
            // Any pad is valid (malloc_trim(SIZE_MAX) trims nothing): compare before rounding.
            if keep >= size {
                return false;
            }
            let keep = round_up(keep.max(MIN_BLOCK), GRAIN);
            if keep >= size || size - keep < PAGE {
                return false;
            }
            let excess = (size - keep) & !(PAGE - 1);
            // Read before the tail goes: the bookkeeping may lie in the pages given back.
            let purged = core.purged_range(t, size);
            let seg = core.seg as *mut Segment;
            let len = (*seg).len.load(Ordering::Relaxed);
            let region = Region { start: core.seg, len, from_brk: (*seg).from_brk };
            (*seg).len.store(len - excess, Ordering::Release);
            if !self.source.shrink(region, excess) {
                (*seg).len.store(len, Ordering::Release);
                return false;
            }
            core.fence -= excess;
            core.write_fence(core.fence);
            core.unlink(t, size);
            core.insert_range(t, size - excess, purged);
            core.heap_bytes -= excess;
            core.top_touched = core.top_touched.min(core.fence);
            self.pages.clear(core.fence + WORD, excess);
            excess
        };
        self.note_os_returned(excess);
        true
    }

    // ---------------------------------------------------------------------------------------
    // realloc and aligned allocation

    /// Resizes the live block at `p` (header `h`) to `n > 0` bytes without moving it, if it can.
    /// Mapped blocks may move (with `mremap`, or into the heap when they shrink far).
    pub fn resize_in_place(&self, p: usize, h: u64, n: usize) -> Resized {
        if h & MAPPED != 0 {
            return match self.realloc_large(p, h, n) {
                Some(q) => Resized::Done(q),
                None => Resized::NoMemory,
            };
        }
        let size = block::size_of(h);
        let Some(need) = alloc_block_size(n) else { return Resized::NoMemory };
        let b = p - HEADER;
        if need <= size {
            if size <= QUICK_MAX_BLOCK {
                // A small block keeps moderate slack. One that would halve moves to a block of its
                // new class instead (thread caches at both ends, no lock), which leaves it whole
                // for the next request of its class: a program that shrinks a buffer it has filled
                // (CPython's strings and bytes, 276,000 times on bench/pyload.py) asks for such a
                // buffer again soon, and split tails would only fragment the bins.
                return if need <= size / 2 && size - need >= MIN_BLOCK { Resized::MustMove } else { Resized::Done(p) };
            }
            if size - need >= MIN_BLOCK {
                self.with_core(|core| {
                    // SAFETY: the caller owns the block; the tail becomes a free block.
                    unsafe {
                        let prev_free = block::load(b) & PREV_FREE;
                        block::write_tags(b, need, IN_USE | prev_free, core.secret);
                        block::write_tags(b + need, size - need, IN_USE, core.secret);
                        core.release(b + need, size - need, "realloc");
                    }
                });
                self.counters.moved(class_of(size), class_of(need));
            }
            return Resized::Done(p);
        }
        // Small blocks rarely have a free neighbour (theirs are cached, not coalesced): moving
        // them through the thread cache beats taking the heap lock to look.
        if size > QUICK_MAX_BLOCK && need < self.mmap_threshold() {
            let grown = self.with_core(|core| {
                // SAFETY: under the heap lock; the right neighbour is read, and taken only if FREE.
                unsafe {
                    let r = b + size;
                    let rh = core.header(r, "realloc");
                    let right = block::size_of(rh);
                    if block::state_of(rh) == FREE && size + right >= need {
                        let purged = core.purged_range(r, right);
                        core.unlink(r, right);
                        let grown = core.carve(b, size + right, need, IN_USE, purged);
                        self.note_carved(core, grown - size);
                        return grown;
                    }
                    0
                }
            });
            if grown != 0 {
                self.counters.moved(class_of(size), class_of(grown));
                return Resized::Done(p);
            }
        }
        Resized::MustMove
    }

    /// Resizes the live block at `p` to `n > 0` bytes: in place when it can, by moving otherwise.
    /// `None` (and the block untouched) when memory is exhausted or `n` impossible.
    pub fn realloc(&self, p: usize, n: usize) -> Option<usize> {
        let h = self.validate(p, "realloc");
        match self.resize_in_place(p, h, n) {
            Resized::Done(q) => Some(q),
            Resized::NoMemory => None,
            Resized::MustMove => {
                let old = self.usable_size(p);
                let Some(q) = self.malloc(n) else {
                    // A shrink that found no smaller block keeps its own: it never fails.
                    return if n <= old { Some(p) } else { None };
                };
                // SAFETY: both blocks are live and distinct.
                unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n)) };
                self.free_validated(p, h);
                Some(q)
            }
        }
    }

    /// Allocates `n` bytes aligned to `align` (a power of two).
    pub fn memalign(&self, align: usize, n: usize) -> Option<usize> {
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

    // ---------------------------------------------------------------------------------------
    // Mapped (large) blocks

    /// A block with a mapping of its own, for `n` bytes at alignment `align`.
    fn map_large(&self, n: usize, align: usize) -> Option<usize> {
        let align = align.max(ALIGNMENT);
        // Room for the offset word and the header before p, aligned. The mapping starts on a page,
        // so p - base is exactly this for alignments up to a page, and at most this beyond.
        let front = round_up(MAPPED_PREFIX, align);
        let len = n.checked_add(front)?.checked_add(PAGE - 1)? & !(PAGE - 1);
        if len >= block::SIZE_LIMIT {
            return None;
        }
        let secret = self.init_secret();
        let base = self.source.map(len)?;
        if !self.pages.mark(&self.source, base, len) {
            self.source.unmap(base, len);
            return None;
        }
        let p = round_up(base + MAPPED_PREFIX, align);
        // SAFETY: the mapping is fresh and ours; both words lie inside it before p.
        unsafe {
            *((p - MAPPED_PREFIX) as *mut usize) = p - base;
            block::store(p - HEADER, block::seal(p - HEADER, len as u64 | MAPPED | IN_USE, secret));
        }
        self.note_os(base, len);
        self.counters.mapped_bytes.fetch_add(len, Ordering::Relaxed);
        let live = self.counters.mapped_blocks.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.mapped_peak.fetch_max(live, Ordering::Relaxed);
        self.note_held();
        if len >= RESIDENT_CHECK_MIN {
            self.with_core(|core| self.keep_resident_within_budget(core));
        }
        Some(p)
    }

    /// The mapping `(base, len)` of the mapped block at `p` with header `h`.
    fn mapping_of(&self, p: usize, h: u64, func: &str) -> (usize, usize) {
        let len = block::size_of(h);
        // SAFETY: a validated mapped block has its offset word before the header.
        let offset = unsafe { *((p - MAPPED_PREFIX) as *const usize) } & !PREFIX_CHECKED;
        if offset < MAPPED_PREFIX || offset > len || (p - offset) & (PAGE - 1) != 0 {
            fatal(func, "corrupted header of mapped block", p);
        }
        (p - offset, len)
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

    fn unmap_large(&self, p: usize, h: u64) {
        let (base, len) = self.mapping_of(p, h, "free");
        let slot = self.recent_next.fetch_add(1, Ordering::Relaxed) % RECENT_UNMAPPED;
        self.recent_unmapped[slot].store(p, Ordering::Relaxed);
        // A program that frees blocks this big will likely allocate them again: serve them from
        // the heap from now on (see MMAP_THRESHOLD_MAX), unless the threshold was set for it.
        if len > self.mmap_threshold() && len <= MMAP_THRESHOLD_MAX && !self.mmap_fixed.load(Ordering::Relaxed) {
            self.mmap_threshold.fetch_max(len, Ordering::Relaxed);
        }
        self.pages.clear(base, len);
        self.source.unmap(base, len);
        self.counters.mapped_bytes.fetch_sub(len, Ordering::Relaxed);
        self.counters.mapped_blocks.fetch_sub(1, Ordering::Relaxed);
        self.note_os_returned(len);
    }

    fn realloc_large(&self, p: usize, h: u64, n: usize) -> Option<usize> {
        let (base, len) = self.mapping_of(p, h, "realloc");
        let offset = p - base;
        let usable = len - offset;
        let need = block_size(n)?;
        if need < self.mmap_threshold() / 2 {
            // Shrunk well below the threshold: move it into the heap.
            let q = self.malloc(n)?;
            // SAFETY: both blocks are live and distinct.
            unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, n.min(usable)) };
            self.unmap_large(p, h);
            return Some(q);
        }
        let new_len = n.checked_add(offset)?.checked_add(PAGE - 1)? & !(PAGE - 1);
        if new_len >= block::SIZE_LIMIT {
            return None;
        }
        if new_len == len {
            return Some(p);
        }
        let secret = self.secret();
        if offset == MAPPED_OFFSET {
            if let Some(nb) = self.source.remap(base, len, new_len) {
                self.pages.clear(base, len);
                if !self.pages.mark(&self.source, nb, new_len) {
                    fatal("realloc", "out of memory for the page map after moving", p);
                }
                let q = nb + offset;
                // SAFETY: the mapping moved with its contents; its header is rewritten for its new
                // address.
                unsafe { block::store(q - HEADER, block::seal(q - HEADER, new_len as u64 | MAPPED | IN_USE, secret)) };
                self.note_os_returned(len);
                self.note_os(nb, new_len);
                self.counters.mapped_bytes.fetch_add(new_len, Ordering::Relaxed);
                self.counters.mapped_bytes.fetch_sub(len, Ordering::Relaxed);
                self.note_held();
                if new_len >= len + RESIDENT_CHECK_MIN {
                    self.with_core(|core| self.keep_resident_within_budget(core));
                }
                return Some(q);
            }
        }
        if new_len < len {
            return Some(p);
        }
        let q = self.malloc(n)?;
        // SAFETY: both blocks are live and distinct.
        unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, usable.min(n)) };
        self.unmap_large(p, h);
        Some(q)
    }

    // ---------------------------------------------------------------------------------------
    // Fork

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

    // ---------------------------------------------------------------------------------------
    // Maintenance

    /// Consolidates the quick lists and gives the top's excess above `pad` back to the source.
    /// Returns whether any memory went back.
    pub fn trim(&self, pad: usize) -> bool {
        self.with_core(|core| {
            // SAFETY: under the heap lock.
            unsafe { self.consolidate(core) };
            let trimmed = self.trim_top(core, pad);
            let now = self.source.now_ms();
            self.purge(core, now, PurgePass::Forced) > 0 || trimmed
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

    /// Verifies every invariant of the heap (see the module's documentation) and counts what it
    /// saw. Takes every lock; blocks held by thread caches count as `QUICK` blocks in segments.
    pub fn check(&self) -> Result<HeapReport, &'static str> {
        let core = self.lock_core();
        let quick: [_; NUM_QUICK] = ::core::array::from_fn(|c| self.quick[c].lock());
        let secret = core.secret;
        let mut rep = HeapReport::default();
        let mut seg = core.segments;
        let mut quick_bytes_in_segments = 0;
        // SAFETY: every lock is held; the walk only reads memory inside segments.
        unsafe {
            while seg != 0 {
                rep.segments += 1;
                let s = &*(seg as *const Segment);
                let len = s.len.load(Ordering::Relaxed);
                rep.heap_bytes += len;
                let first = seg + FIRST_BLOCK;
                let fence = seg + len - WORD;
                if block::load(first - WORD) != block::seal(first - WORD, 0, secret) {
                    return Err("left fence damaged");
                }
                if block::load(fence) & !PREV_FREE != block::seal(fence, FENCE, secret) {
                    return Err("right fence damaged");
                }
                let mut b = first;
                let mut prev_free = false;
                while b < fence {
                    let h = block::load(b);
                    if !block::is_sealed(b, h, secret) {
                        return Err("header check failed");
                    }
                    if (h & PREV_FREE != 0) != prev_free {
                        return Err("prev_free disagrees with the block before");
                    }
                    let size = block::size_of(h);
                    if size < MIN_BLOCK || size % GRAIN != 0 || b + size > fence {
                        return Err("block size out of range");
                    }
                    if block::state_of(h) == FREE {
                        let f = b + size - WORD;
                        if block::load(f) != block::seal(f, size as u64, secret) {
                            return Err("footer does not match header");
                        }
                        if h & CHECKED != 0 {
                            return Err("checking-mode mark on a free block");
                        }
                    }
                    match block::state_of(h) {
                        FREE => {
                            if prev_free {
                                return Err("two neighbouring free blocks");
                            }
                            rep.free_blocks += 1;
                            rep.free_bytes += size;
                            if b == core.top {
                                if b + size != core.fence {
                                    return Err("top is not at the fence");
                                }
                                rep.top_bytes = size;
                            }
                        }
                        QUICK => {
                            rep.quick_blocks += 1;
                            quick_bytes_in_segments += size;
                        }
                        IN_USE => rep.in_use_blocks += 1,
                        _ => return Err("fence inside a segment"),
                    }
                    if h & MAPPED != 0 {
                        return Err("mapped flag on a heap block");
                    }
                    prev_free = block::state_of(h) == FREE;
                    b += size;
                }
                if b != fence {
                    return Err("blocks do not tile the segment");
                }
                if (block::load(fence) & PREV_FREE != 0) != prev_free {
                    return Err("the fence's prev_free disagrees with the last block");
                }
                seg = s.next;
            }
            // Bins: well-formed lists of FREE blocks of the right class.
            let mut listed = 0;
            for c in 0..NUM_CLASSES {
                let nonempty = core.bitmap[c / 64] & (1 << (c % 64)) != 0;
                if nonempty != (core.bins[c] != 0) {
                    return Err("bitmap disagrees with bins");
                }
                let mut b = core.bins[c];
                let mut prev = 0;
                while b != 0 {
                    if !self.pages.contains(b) {
                        return Err("bin entry outside the heap");
                    }
                    let h = block::load(b);
                    if !block::is_sealed(b, h, secret) || block::state_of(h) != FREE {
                        return Err("bin entry is not a free block");
                    }
                    if class_of(block::size_of(h)) != c {
                        return Err("block in the wrong bin");
                    }
                    if link_prev(b) != prev {
                        return Err("bin back link broken");
                    }
                    if b == core.top {
                        return Err("top on a bin");
                    }
                    listed += 1;
                    if listed > rep.free_blocks {
                        return Err("bin lists longer than the free blocks (cycle?)");
                    }
                    prev = b;
                    b = link_next(b);
                }
            }
            if listed + (core.top != 0) as usize != rep.free_blocks {
                return Err("free blocks missing from the bins");
            }
            if rep.free_bytes != core.free_bytes {
                return Err("free byte count is off");
            }
            if rep.free_blocks != core.free_blocks {
                return Err("free block count is off");
            }
            if rep.heap_bytes != core.heap_bytes {
                return Err("heap byte count is off");
            }
            // Quick lists.
            // quick_bytes counts class sizes (a slivered block counts as its class).
            let (mut listed_bytes, mut listed_class_bytes) = (0, 0);
            for (c, q) in quick.iter().enumerate() {
                let mut n = 0;
                for i in 0..q.chains {
                    let mut p = q.heads[i];
                    let mut in_chain = 0;
                    let mut last = 0;
                    while p != 0 {
                        let b = p - HEADER;
                        if !self.pages.contains(b) {
                            return Err("quick entry outside the heap");
                        }
                        let h = block::load(b);
                        if !block::is_sealed(b, h, secret) || block::state_of(h) != QUICK {
                            return Err("quick entry is not a quick block");
                        }
                        if !quick_size_fits(block::size_of(h), c) {
                            return Err("quick entry of the wrong class");
                        }
                        listed_bytes += block::size_of(h);
                        listed_class_bytes += QUICK_SIZE[c] as usize;
                        n += 1;
                        if n > rep.quick_blocks {
                            return Err("quick list longer than the quick blocks (cycle?)");
                        }
                        in_chain += 1;
                        last = p;
                        p = block::decode_link(p, *(p as *const usize), secret);
                    }
                    if in_chain != q.counts[i] || last != q.tails[i] {
                        return Err("quick list chain count or tail is off");
                    }
                }
                if n != q.len {
                    return Err("quick list length is off");
                }
                rep.listed_quick_blocks += n;
            }
            if listed_class_bytes != self.quick_bytes.load(Ordering::Relaxed) {
                return Err("quick byte count is off");
            }
            if rep.listed_quick_blocks > rep.quick_blocks || listed_bytes > quick_bytes_in_segments {
                return Err("quick lists hold blocks the segments do not");
            }
        }
        Ok(rep)
    }
}
