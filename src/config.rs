//! Every tunable number of the allocator, named and explained in one place.
//!
//! The first three come from the build (see `build.rs` and README's "Configuration"); the rest are
//! compile-time constants chosen by measurement (what was tried and what it gave: DESIGN.md,
//! "Measurements").

include!(concat!(env!("OUT_DIR"), "/build_settings.rs"));

/// Bytes in a machine word; headers, footers and links are one word each.
pub const WORD: usize = 8;

/// Block sizes are multiples of the alignment, so that every block's user pointer stays aligned.
pub const GRAIN: usize = ALIGNMENT;

/// Bytes of metadata in every heap block: one header word before the user pointer (a free block
/// also has a footer, in what is payload while the block is in use: see `block.rs`).
pub const BLOCK_OVERHEAD: usize = WORD;

/// The smallest block: header, two free-list links and footer while free, rounded to the grain.
pub const MIN_BLOCK: usize = round_up(4 * WORD, GRAIN);

/// Size classes step linearly by one grain up to this payload size, then geometrically.
pub const LINEAR_LIMIT: usize = 64 * GRAIN;

/// Geometric classes split each doubling of the payload into this many steps (at most 25%
/// internal waste).
pub const STEPS_PER_DOUBLING: usize = 4;

/// Largest block served by thread caches and the per-class quick lists. Bigger requests go
/// to the coalescing heap directly (or to their own mapping).
pub const QUICK_LIMIT: usize = 32 * 1024;

/// Requests whose block would be at least this big get a mapping of their own, unmapped on free
/// (the starting value: see `MMAP_THRESHOLD_MAX`).
pub const MMAP_THRESHOLD: usize = 256 * 1024;

/// Freeing a mapped block raises the mapping threshold to its size, up to this (unless
/// `MY_ALLOC_MMAP_THRESHOLD` set it, as glibc's stays once set): a program that
/// keeps allocating and freeing blocks of that size then reuses heap memory instead of paying a
/// `mmap`, page faults and a `munmap` every time (glibc's rule, with a higher cap than glibc's
/// 32 MiB, so that blocks of up to 32 MiB are covered too).
pub const MMAP_THRESHOLD_MAX: usize = 64 * 1024 * 1024;

/// The heap grows by at least this much per `sbrk`/`mmap` call (untouched pages cost no RSS).
pub const GROW_STEP: usize = 1024 * 1024;

/// When the free block at the top of the heap exceeds this (or twice the current mapping
/// threshold, whichever is bigger), the excess goes back to the OS.
pub const TRIM_THRESHOLD: usize = 4 * 1024 * 1024;

/// How much of the top block trimming keeps, so that the next growth does not need a syscall.
pub const TRIM_KEEP: usize = GROW_STEP;

/// The top is not trimmed within this many milliseconds of the heap's last growth: a program
/// that frees and reallocates big blocks in a loop would otherwise give memory back and fault it
/// in again on every cycle. (`malloc_trim` trims at once.)
pub const TRIM_DECAY_MS: u64 = 1000;

/// Free blocks of at least this many bytes in the middle of the heap have their pages given back
/// to the OS (`madvise(MADV_DONTNEED)`; the block stays usable and reads back as zeroes) once
/// they have stayed free for a decay period (`TRIM_DECAY_MS`)...
pub const PURGE_MIN: usize = 64 * 1024;

/// ...or sooner: the heap counts the memory it carves for big blocks (at least `PURGE_MIN`, from
/// a hole, the top or a growth), and each 1/CARVE_PURGE_SHARE of its size counts as a purge
/// interval: a hole that stayed free while the program carved half the heap's size elsewhere is
/// not being reused. A smaller share purges holes that a program cycling big blocks of varied
/// sizes would reuse a few cycles later, and pays a page fault per page each time. Carvings of
/// small blocks do not count: a program refilling its caches from the top reuses its holes soon
/// after.
pub const CARVE_PURGE_SHARE: usize = 4;

/// ...and, whatever the clock and the carving say, before the heap's resident memory (bytes not
/// given back, with the mapped blocks) passes the most the program has ever held by more than
/// 1/RESIDENT_SLACK_SHARE of it (and `RESIDENT_SLACK_MIN`): the program's peak sets a process's
/// peak RSS however the allocator plays, so memory resident beyond it is overhead, while below
/// it, keeping freed pages costs nothing and saves refaults. A quarter leaves room for the holes
/// of a program cycling big blocks of varied sizes (which a tighter budget purges and refaults
/// each cycle) and still keeps less than glibc's heap, which returns only its top. Checked each `RESIDENT_CHECK_MIN`
/// bytes carved, and after a mapping (or `mremap` growth) that big: the allocations that add to
/// the resident memory. A short program cycling big blocks ends before any decay: this bounds what
/// it keeps, for some more page faults.
pub const RESIDENT_SLACK_SHARE: usize = 4;
/// See `RESIDENT_SLACK_SHARE`.
pub const RESIDENT_SLACK_MIN: usize = 1024 * 1024;
/// See `RESIDENT_SLACK_SHARE`.
pub const RESIDENT_CHECK_MIN: usize = 256 * 1024;

/// ...and a heap this empty (bytes in use below 1/NEARLY_EMPTY of the heap) gives its top back at
/// once, without waiting for the decay: the program has let go of (nearly) everything. Low enough
/// that programs cycling a few big blocks or vectors do not dip below it between cycles (each dip
/// would cost a refault of the whole heap).
pub const NEARLY_EMPTY: usize = 64;

/// ...unless the heap regrew soon after the previous such release: then the next one waits for
/// the heap not to have grown for a while, starting at 1/NEARLY_EMPTY_QUIET of the decay (250 ms
/// by default) and doubling up to the decay: a program that frees everything at the end of each
/// round and regrows it would otherwise refault its whole heap every round. The resident budget
/// (`RESIDENT_SLACK_SHARE`) bounds what a cycling program keeps meanwhile.
pub const NEARLY_EMPTY_QUIET: u64 = 4;

/// Each growth of the heap asks for at least 1/GROW_SHARE of what the heap already has, so a big
/// heap grows in few system calls (pages not yet touched cost no memory).
pub const GROW_SHARE: usize = 8;

/// The profiler's default mean interval between recorded call stacks, in bytes allocated (as
/// jemalloc's and tcmalloc's): rare enough to cost little, often enough to see what dominates.
pub const PROFILE_RATE: usize = 512 * 1024;

/// Frames recorded per call stack at most.
pub const PROFILE_FRAMES: usize = 64;

/// Guarded samples' default mean interval, in bytes allocated: at a few microseconds per sample
/// (two protection changes, a page fault, two stack walks), a program allocating 10 GB/s spends
/// under 0.3% on them, and one that allocates at an ordinary pace gets dozens per second.
pub const GUARD_RATE: usize = 32 << 20;
/// Slots of the guarded pool when sampling (live blocks and quarantine): a page and a guard page
/// each. Few, because every slot used costs its bookkeeping's memory for good (a sample is rare,
/// and what is live stays a page each): 64 keep the pool's resident cost near 50 KiB.
pub const GUARD_SAMPLED_SLOTS: usize = 64;
/// Slots of the guarded pool in guard mode: every live block is two mappings of the kernel's,
/// which allows about 65,000 per process (`vm.max_map_count`), the program's own included.
pub const GUARD_MODE_SLOTS: usize = 16384;
/// The most slots an option may ask for.
pub const GUARD_SLOTS_MAX: usize = 1 << 20;
/// The largest request guard mode guards by default; the largest sampled block is a page.
pub const GUARD_MODE_MAX: usize = 64 * 1024;
/// The largest size limit an option may set for guard mode.
pub const GUARD_MAX_LIMIT: usize = 16 << 20;
/// Frames kept of a guarded block's allocation and free stacks, for the report.
pub const GUARD_FRAMES: usize = 16;

/// Checking mode's quarantine of freed blocks: how many it holds, and how many bytes at most.
pub const CHECK_QUARANTINE_BLOCKS: usize = 1024;
pub const CHECK_QUARANTINE_BYTES: usize = 32 << 20;

/// Page size of the target (x86-64 and aarch64 Linux with 4 KiB pages).
pub const PAGE: usize = 4096;

/// Largest request size considered at all; beyond it malloc fails with ENOMEM at once. glibc's
/// bound is PTRDIFF_MAX; ours is 16 TiB, what a header's size field holds (`block::SIZE_LIMIT`),
/// more than any machine can map.
pub const MAX_REQUEST: usize = (1 << 44) - 2 * PAGE - 64 * 1024;

/// Rounds `n` up to a multiple of `align` (a power of two). The caller guarantees no overflow.
pub const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

const _: () = assert!(GRAIN.is_power_of_two() && GRAIN >= WORD);
const _: () = assert!(QUICK_LIMIT <= MMAP_THRESHOLD && QUICK_LIMIT > LINEAR_LIMIT && MMAP_THRESHOLD <= MMAP_THRESHOLD_MAX);
const _: () = assert!(TRIM_KEEP < TRIM_THRESHOLD);

/// Freed small blocks wait on the quick lists, uncoalesced, for reuse by their own class. When
/// they hold more than this share of the memory obtained from the OS (1/QUICK_SHARE)...
pub const QUICK_SHARE: usize = 8;
/// ...and more than this many bytes, they are consolidated into the coalesced free lists, where
/// any size can use them (and the top can be trimmed).
pub const QUICK_RETAIN_MIN: usize = 1024 * 1024;

/// A thread cache keeps at most this many bytes per size class (bounded below by
/// `CACHE_MIN_BLOCKS` blocks and above by `CACHE_MAX_BLOCKS`). Not more: with ~80 classes, what
/// the caches of a producer and a consumer thread hold in transit adds up to peak RSS, for a few
/// more refills and flushes...
pub const CACHE_BYTES_PER_CLASS: usize = 4 * 1024;
/// ...but always room for a few blocks, so that big classes still hit (with fewer, threads whose
/// objects go up to several KiB spend their time refilling and flushing)...
pub const CACHE_MIN_BLOCKS: usize = 8;
/// ...and never so many that one class hoards memory.
pub const CACHE_MAX_BLOCKS: usize = 32;

/// A busy class (its bin runs dry again soon after a refill) grows its bin, doubling up to this
/// many times its base capacity...
pub const CACHE_GROWTH: u32 = 4;
/// ...while what a thread's bins have grown by stays within this many bytes; an idle class
/// (nothing allocated between two collections) goes back to its base.
pub const CACHE_EXTRA_BYTES: usize = 128 * 1024;

/// Every this many refills and flushes, a thread cache gives back the bins it has not allocated
/// from since the previous time.
pub const CACHE_GC_EVENTS: u32 = 64;

/// The process's heaps (arenas): at most this many per CPU the process may run on (threads beyond
/// share them)...
pub const ARENAS_PER_CPU: usize = 4;
/// ...and at most this many in all (a byte of the page map names the owner of each page).
pub const MAX_ARENAS: usize = 64;

/// The arenas together are checked against the process's resident budget each time the heaps
/// have grown by this much (or by a sixteenth of what the program holds, if more): growth is
/// when one arena may be taking memory another holds free.
pub const BUDGET_CHECK_STEP: usize = 1024 * 1024;
/// See `BUDGET_CHECK_STEP`.
pub const BUDGET_CHECK_SHARE: usize = 16;

/// A thread sends another heap's blocks home once it holds this many of them, or this many
/// bytes: big enough that one compare-and-swap serves many frees, small enough that a thread
/// freeing for many heaps pins little (at most `MAX_ARENAS` such batches).
pub const REMOTE_BATCH: u32 = 64;
/// See `REMOTE_BATCH`.
pub const REMOTE_BATCH_BYTES: usize = 32 * 1024;
