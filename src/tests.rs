//! Tests of the core over memory the test owns: split and coalesce, growth, trimming, exhaustion,
//! misuse detection, and a model-based randomized test against a shadow of every live block.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::block;
use crate::config::{ALIGNMENT, BLOCK_OVERHEAD, GRAIN, MIN_BLOCK, MMAP_THRESHOLD, PAGE, QUICK_LIMIT, RESIDENT_SLACK_MIN, RESIDENT_SLACK_SHARE, TRIM_KEEP, TRIM_THRESHOLD};
use crate::heap::Heap;
use crate::size_class::{NUM_QUICK, QUICK_MAX_REQUEST, QUICK_SIZE};
use crate::source::{Region, Source};

const SECRET: u64 = 0x5eed_0f_a110c_u64 | 1;

/// Memory for a test heap: one arena handed out front to back (so growth is contiguous unless a
/// gap is requested), mappings from the system allocator, and an optional limit to simulate
/// exhaustion.
struct TestSource {
    state: Mutex<ArenaState>,
}

struct ArenaState {
    base: usize,
    cap: usize,
    used: usize,
    /// Bytes of arena plus mappings that may still be handed out (usize::MAX: no limit).
    budget: usize,
    gap_next: bool,
    maps: BTreeMap<usize, usize>,
    /// The clock the heap reads for decay decisions, moved by the test.
    now_ms: u64,
    /// Bytes the heap gave back with purge (which zeroes them, as MADV_DONTNEED does), and the
    /// distinct pages.
    purged: usize,
    purged_pages: std::collections::BTreeSet<usize>,
}

impl TestSource {
    fn new(cap: usize) -> Self {
        let layout = Layout::from_size_align(cap, PAGE).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { alloc_zeroed(layout) } as usize;
        assert_ne!(base, 0);
        TestSource {
            state: Mutex::new(ArenaState { base, cap, used: 0, budget: usize::MAX, gap_next: false, maps: BTreeMap::new(), now_ms: 0, purged: 0, purged_pages: Default::default() }),
        }
    }
    fn set_budget(&self, b: usize) {
        self.state.lock().unwrap().budget = b;
    }
    fn gap_next(&self) {
        self.state.lock().unwrap().gap_next = true;
    }
    fn advance_clock(&self, ms: u64) {
        self.state.lock().unwrap().now_ms += ms;
    }
    fn purged(&self) -> usize {
        self.state.lock().unwrap().purged
    }
    fn forget_purged(&self) {
        self.state.lock().unwrap().purged_pages.clear();
    }
    /// Distinct pages purged (since `forget_purged`) that lie below the arena's current end.
    fn purged_pages_in_arena(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.purged_pages.range(s.base..s.base + s.used).count()
    }
    /// Live mappings other than the page map's own (its root and leaves).
    fn mappings(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.maps.values().filter(|&&len| len != crate::pagemap::ROOT_BYTES && len != crate::pagemap::LEAF_BYTES).count()
    }
}

impl Drop for TestSource {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap();
        // SAFETY: allocated in new with this layout.
        unsafe { dealloc(s.base as *mut u8, Layout::from_size_align(s.cap, PAGE).unwrap()) };
        for (&a, &len) in &s.maps {
            // SAFETY: allocated in map with this layout.
            unsafe { dealloc(a as *mut u8, Layout::from_size_align(len, PAGE).unwrap()) };
        }
    }
}

// SAFETY: arena bytes are handed out once (until shrunk back) and zeroed; mappings are fresh.
unsafe impl Source for TestSource {
    fn grow(&self, len: usize) -> Option<Region> {
        let mut s = self.state.lock().unwrap();
        if len > s.budget {
            return None;
        }
        if s.gap_next {
            s.gap_next = false;
            s.used += 16 * PAGE;
        }
        if s.used + len > s.cap {
            return None;
        }
        let start = s.base + s.used;
        s.used += len;
        s.budget -= len;
        // SAFETY: arena pages, made accessible again after a shrink took them away; then zeroed
        // like fresh memory from the OS.
        unsafe {
            assert_eq!(libc::mprotect(start as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE), 0);
            std::ptr::write_bytes(start as *mut u8, 0, len);
        }
        Some(Region { start, len, from_brk: true })
    }
    fn shrink(&self, region: Region, len: usize) -> bool {
        let mut s = self.state.lock().unwrap();
        if region.start + region.len != s.base + s.used {
            return false;
        }
        s.used -= len;
        // Like memory given back to the OS, the pages can no longer be touched: a heap that reads
        // what it trimmed faults here instead of passing.
        // SAFETY: whole pages of our own arena, which nobody may use until grown again.
        assert_eq!(unsafe { libc::mprotect((s.base + s.used) as *mut libc::c_void, len, libc::PROT_NONE) }, 0);
        if s.budget != usize::MAX {
            s.budget += len;
        }
        true
    }
    fn map(&self, len: usize) -> Option<usize> {
        let mut s = self.state.lock().unwrap();
        if len > s.budget {
            return None;
        }
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(Layout::from_size_align(len, PAGE).unwrap()) } as usize;
        if p == 0 {
            return None;
        }
        if s.budget != usize::MAX {
            s.budget -= len;
        }
        s.maps.insert(p, len);
        Some(p)
    }
    fn unmap(&self, addr: usize, len: usize) {
        let mut s = self.state.lock().unwrap();
        assert_eq!(s.maps.remove(&addr), Some(len), "unmap of something never mapped");
        if s.budget != usize::MAX {
            s.budget += len;
        }
        // SAFETY: allocated in map with this layout.
        unsafe { dealloc(addr as *mut u8, Layout::from_size_align(len, PAGE).unwrap()) };
    }
    fn now_ms(&self) -> u64 {
        self.state.lock().unwrap().now_ms
    }
    fn purge(&self, addr: usize, len: usize) {
        assert_eq!(addr % PAGE, 0);
        assert_eq!(len % PAGE, 0);
        // SAFETY: the heap gives back pages of a free block it owns; they read back as zero.
        unsafe { std::ptr::write_bytes(addr as *mut u8, 0, len) };
        let mut s = self.state.lock().unwrap();
        s.purged += len;
        s.purged_pages.extend((addr..addr + len).step_by(PAGE));
    }
}

fn new_heap(cap: usize) -> Box<Heap<TestSource>> {
    Box::new(Heap::new(TestSource::new(cap), SECRET))
}

fn usable(h: &Heap<TestSource>, p: usize) -> usize {
    h.usable_size(p)
}

fn fill(p: usize, n: usize, v: u8) {
    // SAFETY: the test owns n bytes at p.
    unsafe { std::ptr::write_bytes(p as *mut u8, v, n) }
}

fn holds(p: usize, n: usize, v: u8) -> bool {
    // SAFETY: the test owns n bytes at p.
    unsafe { std::slice::from_raw_parts(p as *const u8, n).iter().all(|&b| b == v) }
}

#[test]
fn malloc_gives_aligned_distinct_usable_blocks() {
    let h = new_heap(64 << 20);
    let mut ps = Vec::new();
    for n in [0usize, 1, 8, 15, 16, 17, 24, 100, 1000, 1008, 1009, 5000, 40_000, 300_000] {
        let p = h.malloc(n).unwrap();
        assert_eq!(p % ALIGNMENT, 0, "malloc({n})");
        assert!(usable(&h, p) >= n.max(1), "malloc({n}) usable {}", usable(&h, p));
        fill(p, n, 0xAB);
        ps.push((p, n));
    }
    for &(p, n) in &ps {
        assert!(holds(p, n, 0xAB));
    }
    h.check().unwrap();
    for (p, _) in ps {
        h.free(p);
    }
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
    assert_eq!(h.source().mappings(), 0, "the mapped block was not unmapped");
}

#[test]
fn free_coalesces_with_both_neighbours() {
    let h = new_heap(64 << 20);
    // Sizes above the quick limit go straight to the coalescing free lists.
    let n = QUICK_LIMIT + 1000;
    let a = h.malloc(n).unwrap();
    let b = h.malloc(n).unwrap();
    let c = h.malloc(n).unwrap();
    let guard = h.malloc(n).unwrap();
    let before = h.check().unwrap();
    h.free(a);
    h.free(c);
    let r = h.check().unwrap();
    assert_eq!(r.free_blocks, before.free_blocks + 2, "a and c are separate free blocks");
    h.free(b);
    let r = h.check().unwrap();
    assert_eq!(r.free_blocks, before.free_blocks + 1, "a, b and c merged into one");
    // The merged block serves a request of all three at the same address.
    let big = h.malloc(3 * n).unwrap();
    assert_eq!(big, a);
    h.free(big);
    h.free(guard);
    let r = h.check().unwrap();
    assert_eq!(r.free_blocks, 1, "everything merged into the top");
    assert_eq!(r.top_bytes, r.free_bytes);
}

#[test]
fn split_leaves_a_usable_remainder() {
    let h = new_heap(64 << 20);
    let n = 100_000;
    let a = h.malloc(n).unwrap();
    let fence = h.malloc(n).unwrap();
    h.free(a);
    // A smaller request splits the freed block; the remainder serves the next one.
    let x = h.malloc(40_000).unwrap();
    assert_eq!(x, a);
    let y = h.malloc(40_000).unwrap();
    assert_eq!(y, a + usable(&h, x) + BLOCK_OVERHEAD);
    h.check().unwrap();
    for p in [x, y, fence] {
        h.free(p);
    }
    h.check().unwrap();
}

#[test]
fn quick_blocks_are_reused_lifo_and_consolidated_when_needed() {
    let h = new_heap(64 << 20);
    // Enough small blocks to leave little room at the top.
    let mut ps = Vec::new();
    while ps.len() < 50_000 || h.free_bytes() > 64 << 10 {
        ps.push(h.malloc(48).unwrap());
    }
    for &p in &ps {
        h.free(p);
    }
    let r = h.check().unwrap();
    assert_eq!(r.listed_quick_blocks, ps.len());
    assert_eq!(h.malloc(48).unwrap(), *ps.last().unwrap(), "LIFO reuse");
    // A request no quick list or free block can serve first consolidates the quick lists.
    let heap_before = h.heap_bytes();
    let big = h.malloc(200_000).unwrap();
    let r = h.check().unwrap();
    assert_eq!(r.listed_quick_blocks, 0);
    assert_eq!(h.quick_bytes(), 0);
    assert_eq!(h.heap_bytes(), heap_before, "consolidation served it without growing");
    h.free(big);
}

#[test]
fn refills_use_small_fragments_and_slivers_survive_consolidation() {
    if GRAIN >= MIN_BLOCK {
        return; // any leftover of a grain or more can be split off: no slivers exist
    }
    let c = crate::size_class::quick_class_of_request(32).unwrap();
    let class = QUICK_SIZE[c] as usize;
    let fragment = class + GRAIN; // one grain too big for the class, too small to split
    let h = new_heap(64 << 20);
    // Free every other fragment-sized block and consolidate: FREE fragments between live ones.
    let ps: Vec<usize> = (0..400).map(|_| h.malloc(fragment - BLOCK_OVERHEAD).unwrap()).collect();
    for p in ps.iter().step_by(2) {
        h.free(*p);
    }
    assert!(!h.trim(usize::MAX)); // consolidates, trims nothing
    let before = h.check().unwrap();
    assert!(before.free_blocks >= 199);
    // A refill of the 48-byte class takes those fragments one by one (best fit) rather than
    // cutting a run out of the top; each carries a 16-byte sliver it cannot split off.
    let (head, _, n) = h.refill(c, 32, 0);
    assert_eq!(n, 32);
    let secret = h.secret();
    let mut p = head;
    let mut chain = Vec::new();
    while p != 0 {
        // SAFETY: p heads a QUICK block of the chain.
        assert_eq!(block::size_of(unsafe { block::load(p - block::HEADER) }), fragment);
        assert!(ps.contains(&p), "not a reused fragment");
        chain.push(p);
        p = h.next_quick(p, secret);
    }
    assert_eq!(h.check().unwrap().free_blocks, before.free_blocks - 32);
    // Back on the quick list and consolidated again: the slivered blocks are accepted.
    h.flush(c, chain[0], *chain.last().unwrap(), chain.len());
    h.check().unwrap();
    assert!(!h.trim(usize::MAX));
    assert_eq!(h.check().unwrap().free_blocks, before.free_blocks);
    for p in ps.iter().skip(1).step_by(2) {
        h.free(*p);
    }
    h.check().unwrap();
}

/// Frees the live blocks `ps` of quick class `c` as a thread cache would: flushed to the quick
/// list in chains of `chain` blocks.
fn free_as_a_cache(h: &Heap<TestSource>, c: usize, ps: &[usize], chain: usize) {
    let secret = h.secret();
    for chunk in ps.chunks(chain) {
        for (i, &p) in chunk.iter().enumerate() {
            let h0 = h.validate(p, "free");
            // SAFETY: the "cache" owns p; it becomes QUICK and links to the next one.
            unsafe {
                block::store(p - block::HEADER, h0 ^ block::FLIP_IN_USE_QUICK);
                *(p as *mut usize) = block::encode_link(p, chunk.get(i + 1).copied().unwrap_or(0), secret);
            }
        }
        h.flush(c, chunk[0], *chunk.last().unwrap(), chunk.len());
    }
}

#[test]
fn a_batch_freed_and_allocated_again_in_cycles_keeps_its_quick_blocks() {
    // A program that allocates a batch of small blocks of many sizes through its thread cache,
    // frees it all, and starts again (with some data that stays live): after the first cycle,
    // every refill is served by the blocks parked on the quick lists. Coalescing them as hoarded
    // would make the next cycle carve them again, and that carving look like hoarding in turn.
    let h = new_heap(256 << 20);
    let secret = h.secret();
    let kept = h.malloc(MMAP_THRESHOLD - PAGE).unwrap();
    let classes: Vec<usize> = (1..=16).map(|k| crate::size_class::quick_class_of_request((32 * k).min(QUICK_MAX_REQUEST)).unwrap()).collect();
    let per_class = 2000;
    let mut regrown = 0;
    for cycle in 0..4 {
        let heap_before = h.heap_bytes();
        let mut live: Vec<(usize, Vec<usize>)> = Vec::new();
        for &c in &classes {
            let mut got = Vec::new();
            while got.len() < per_class {
                let (mut p, _, n) = h.refill(c, 32, 32);
                assert!(n > 0);
                while p != 0 {
                    let next = h.next_quick(p, secret);
                    // SAFETY: a QUICK block the "cache" got; it becomes the program's.
                    unsafe { block::store(p - block::HEADER, block::load(p - block::HEADER) ^ block::FLIP_IN_USE_QUICK) };
                    got.push(p);
                    p = next;
                }
            }
            live.push((c, got));
        }
        if cycle > 0 {
            regrown += h.heap_bytes() - heap_before;
        }
        for (c, got) in &live {
            free_as_a_cache(&h, *c, got, 32);
        }
        let blocks: usize = live.iter().map(|(_, g)| g.len()).sum();
        let r = h.check().unwrap();
        assert!(r.listed_quick_blocks >= blocks, "cycle {cycle}: quick blocks were coalesced ({} of {blocks} left)", r.listed_quick_blocks);
    }
    assert_eq!(regrown, 0, "cycles served by parked blocks grew the heap");
    h.free(kept);
}

#[test]
fn a_joined_quick_chain_is_taken_back_segment_by_segment() {
    // More chains flushed than a quick list keeps apart: the oldest are joined into one. Refills
    // still get the chains as they were flushed, whole, without walking the joined chain.
    let h = new_heap(64 << 20);
    let c = crate::size_class::quick_class_of_request(200).unwrap();
    let (chain, chains) = (8, 24);
    let ps: Vec<usize> = (0..chain * chains).map(|_| h.malloc(200).unwrap()).collect();
    free_as_a_cache(&h, c, &ps, chain);
    let flushed: Vec<Vec<usize>> = ps.chunks(chain).map(|k| k.to_vec()).collect();
    let secret = h.secret();
    for i in 0..chains {
        h.check().unwrap();
        // Half a bin wanted, a whole one accepted: a flushed chain fits, so it comes whole.
        let (head, tail, n) = h.refill(c, chain / 2, chain);
        assert_eq!(n, chain, "refill {i} cut a chain");
        let mut got = Vec::new();
        let mut p = head;
        while p != 0 {
            got.push(p);
            p = h.next_quick(p, secret);
        }
        assert_eq!(got.len(), n);
        assert_eq!(*got.last().unwrap(), tail);
        assert!(flushed.contains(&got), "refill {i} got blocks of several flushes");
        // Back to the program, then freed again: nothing is lost.
        for &p in &got {
            // SAFETY: a QUICK block the "cache" got; it becomes the program's.
            unsafe { block::store(p - block::HEADER, block::load(p - block::HEADER) ^ block::FLIP_IN_USE_QUICK) };
        }
    }
    assert_eq!(h.quick_bytes(), 0);
    for &p in &ps {
        h.free(p);
    }
    h.check().unwrap();
}

#[test]
fn realloc_grows_and_shrinks_in_place() {
    let h = new_heap(64 << 20);
    // Above the quick classes (small blocks move rather than look for a free neighbour).
    let n = 100_000;
    assert!(n / 2 > QUICK_LIMIT && 2 * n < MMAP_THRESHOLD);
    let a = h.malloc(n).unwrap();
    fill(a, n, 7);
    // The top follows a: growing takes from it in place.
    let a2 = h.realloc(a, 2 * n).unwrap();
    assert_eq!(a2, a);
    assert!(holds(a, n, 7));
    let b = h.malloc(n).unwrap();
    // Shrinking splits in place; growing back absorbs the freed tail.
    let a3 = h.realloc(a, n / 2).unwrap();
    assert_eq!(a3, a);
    h.check().unwrap();
    let a4 = h.realloc(a, 2 * n).unwrap();
    assert_eq!(a4, a);
    assert!(holds(a, n / 2, 7));
    // No room: it moves, keeping the contents.
    let a5 = h.realloc(a, 4 * n).unwrap();
    assert_ne!(a5, a);
    assert!(holds(a5, n / 2, 7));
    h.check().unwrap();
    h.free(a5);
    h.free(b);
    h.check().unwrap();
}

#[test]
fn a_small_block_that_halves_moves_and_stays_whole_for_its_class() {
    let h = new_heap(64 << 20);
    let n = 1000.min(QUICK_MAX_REQUEST);
    let a = h.malloc(n).unwrap();
    fill(a, n, 3);
    // Shrinking by less than half keeps the block.
    assert_eq!(h.realloc(a, n * 7 / 10).unwrap(), a);
    // Halving moves the contents to a block of the smaller class...
    let b = h.realloc(a, n / 5).unwrap();
    assert_ne!(b, a);
    assert!(holds(b, n / 5, 3));
    // ...and the old block, whole, serves the next request of its class.
    assert_eq!(h.malloc(n).unwrap(), a);
    assert!(usable(&h, a) >= n);
    h.check().unwrap();
}

#[test]
fn a_shrink_never_fails_for_want_of_memory() {
    let h = new_heap(64 << 20);
    h.source().set_budget(4 << 20);
    let n = 1000.min(QUICK_MAX_REQUEST);
    let a = h.malloc(n).unwrap();
    fill(a, n, 5);
    let mut ps = Vec::new();
    for m in [3000, n / 5] {
        while let Some(p) = h.malloc(m) {
            ps.push(p);
            assert!(ps.len() < 200_000, "the budget was not enforced");
        }
    }
    // No block of the smaller class anywhere: the block stays where it is, contents intact.
    assert_eq!(h.realloc(a, n / 5), Some(a));
    assert!(holds(a, n / 5, 5));
    h.check().unwrap();
}

#[test]
fn memalign_honours_every_alignment() {
    let h = new_heap(64 << 20);
    let mut ps = Vec::new();
    for shift in 4..=20 {
        let align = 1usize << shift;
        for n in [1usize, 100, 5000, 70_000] {
            let p = h.memalign(align, n).unwrap();
            assert_eq!(p % align, 0, "memalign({align}, {n})");
            assert!(usable(&h, p) >= n);
            fill(p, n, shift as u8);
            ps.push((p, n, shift as u8));
        }
        h.check().unwrap();
    }
    for (p, n, v) in ps {
        assert!(holds(p, n, v));
        h.free(p);
    }
    h.check().unwrap();
}

#[test]
fn growth_that_is_not_contiguous_starts_a_new_segment() {
    let h = new_heap(256 << 20);
    let mut ps = Vec::new();
    for i in 0..3 {
        h.source().gap_next();
        // Each round needs more than the segment has left.
        for _ in 0..40 {
            ps.push(h.malloc(100_000 + i).unwrap());
        }
    }
    let r = h.check().unwrap();
    assert!(r.segments >= 3, "{r:?}");
    for p in ps {
        h.free(p);
    }
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
}

#[test]
fn the_top_is_trimmed_back_to_the_source() {
    let h = new_heap(256 << 20);
    let ps: Vec<usize> = (0..200).map(|_| h.malloc(100_000).unwrap()).collect();
    let grown = h.heap_bytes();
    assert!(grown >= 200 * 100_000);
    // Right after growing, freeing keeps the memory for reuse...
    for p in ps.iter().rev().take(100) {
        h.free(*p);
    }
    assert_eq!(h.heap_bytes(), grown, "trimmed within the decay");
    // ...once the heap has not grown for a while, a free trims the top.
    h.source().advance_clock(crate::config::TRIM_DECAY_MS);
    for p in ps.into_iter().rev().skip(100) {
        h.free(p);
    }
    let r = h.check().unwrap();
    assert!(r.heap_bytes <= TRIM_THRESHOLD + (1 << 20), "heap still {} bytes after freeing", r.heap_bytes);
    assert!(h.counters.os_returned.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // Small blocks: trim() consolidates the quick lists, then trims.
    let small: Vec<usize> = (0..100_000).map(|_| h.malloc(64).unwrap()).collect();
    for p in small {
        h.free(p);
    }
    let before = h.heap_bytes();
    // Pads beyond the top block trim nothing (and must not wrap around).
    for pad in [usize::MAX, usize::MAX - 4000, usize::MAX / 2, before] {
        assert!(!h.trim(pad), "trim({pad})");
    }
    h.check().unwrap();
    assert_eq!(h.heap_bytes(), before);
    assert!(h.trim(0));
    assert!(h.heap_bytes() < before / 4);
    h.check().unwrap();
}

/// Live blocks of `heap_in_use`, and their size.
const IN_USE_BLOCKS: usize = 40;
const IN_USE_BLOCK: usize = 100_000;

/// A heap with 4 MB of live blocks: not nearly empty (which would trim and purge at once).
fn heap_in_use() -> (Box<Heap<TestSource>>, Vec<usize>) {
    let h = new_heap(64 << 20);
    let live = (0..IN_USE_BLOCKS).map(|_| h.malloc(IN_USE_BLOCK).unwrap()).collect();
    (h, live)
}

/// A heap with enough live memory not to be nearly empty (which would purge at once), and a block
/// of `n` bytes filled with `byte` whose neighbours stay live, so that freed it stays a hole.
/// Returns the heap, the block and the live blocks.
fn heap_with_a_guarded_block(n: usize, byte: u8) -> (Box<Heap<TestSource>>, usize, Vec<usize>) {
    let (h, mut live) = heap_in_use();
    let a = h.malloc(n).unwrap();
    live.push(h.malloc(1000).unwrap());
    fill(a, n, byte);
    (h, a, live)
}

/// The freed block `a` of `n` bytes had its pages given back, and is still usable: the same
/// block again, reading back as zero (as after MADV_DONTNEED) but for what the heap keeps at its
/// ends.
fn assert_purged_and_reusable(h: &Heap<TestSource>, a: usize, n: usize) {
    let purged = h.source().purged();
    assert!(purged >= n - 3 * PAGE, "only {purged} bytes purged");
    h.check().unwrap();
    let b = h.malloc(n).unwrap();
    assert_eq!(b, a);
    assert!(holds(a + 2 * PAGE, n - 4 * PAGE, 0));
    h.free(b);
}

#[test]
fn big_free_blocks_are_purged_after_the_decay_and_stay_usable() {
    let n = 200_000;
    let (h, a, _live) = heap_with_a_guarded_block(n, 0x77);
    // A block beyond the quick classes but below PURGE_MIN, with a live neighbour: freeing it runs
    // the purge pass, and allocating it again reuses its hole, so the heap never extends (which
    // would run purge passes of its own).
    let mut x = h.malloc(40_000).unwrap();
    let _guard = h.malloc(1000).unwrap();
    h.free(a);
    let half_decay = crate::config::TRIM_DECAY_MS / 2;
    // Not before the block has been free for a whole interval.
    let mut churn = |h: &Heap<TestSource>| {
        h.free(x);
        let again = h.malloc(40_000).unwrap();
        assert_eq!(again, x);
        x = again;
    };
    churn(&h);
    assert_eq!(h.source().purged(), 0, "purged at once");
    h.source().advance_clock(half_decay);
    churn(&h);
    assert_eq!(h.source().purged(), 0, "purged after half an interval");
    for _ in 0..2 {
        h.source().advance_clock(half_decay);
        churn(&h);
    }
    assert_purged_and_reusable(&h, a, n);
    // malloc_trim purges without waiting.
    let c = h.malloc(n).unwrap();
    let _guard2 = h.malloc(1000).unwrap();
    h.free(c);
    let before = h.source().purged();
    assert!(h.trim(0));
    assert!(h.source().purged() > before);
    h.check().unwrap();
}

#[test]
fn a_hole_the_heap_keeps_extending_past_is_purged_without_waiting() {
    let n = 200_000;
    let (h, a, _live) = heap_with_a_guarded_block(n, 0x55);
    h.free(a);
    // Each block is too big for the hole: the heap carves it from the top, more than
    // 1/CARVE_PURGE_SHARE of the heap each time. The clock never moves.
    let extend = |h: &Heap<TestSource>| h.malloc(250_000).unwrap(); // below the mapping threshold
    let mut kept = vec![extend(&h), extend(&h)];
    assert_eq!(h.source().purged(), 0, "purged before the heap extended past the hole twice");
    kept.push(extend(&h));
    assert_purged_and_reusable(&h, a, n);
    for p in kept {
        h.free(p);
    }
    h.check().unwrap();
}

#[test]
fn a_hole_is_purged_while_the_program_carves_big_blocks_elsewhere() {
    let n = 200_000;
    let (h, a, _live) = heap_with_a_guarded_block(n, 0x66);
    // A second hole, big enough for the blocks below (the first one is not).
    let b = h.malloc(240_000).unwrap(); // below the mapping threshold
    let _guard = h.malloc(1000).unwrap();
    h.free(b);
    h.free(a);
    let heap = h.heap_bytes();
    // Each round carves a big block out of the second hole and gives it back: more than
    // 1/CARVE_PURGE_SHARE of the heap each time, and the heap never extends. The clock never moves.
    let round = |h: &Heap<TestSource>| {
        let p = h.malloc(230_000).unwrap();
        assert_eq!(p, b, "not carved from the second hole");
        h.free(p);
    };
    round(&h);
    round(&h);
    assert_eq!(h.source().purged(), 0, "purged before two intervals of carving");
    round(&h);
    assert_eq!(h.heap_bytes(), heap);
    assert_purged_and_reusable(&h, a, n);
    h.check().unwrap();
}

/// A heap whose program held 8 MB at its peak and now holds 4: 20 resident holes of 200,000
/// bytes between live guards. Allocates `big` bytes, which brings the heap's resident memory past
/// the peak by more than the slack, and checks that just about the excess was given back, at once
/// (the clock never moves), and that the holes stay usable.
fn assert_the_excess_over_the_peak_is_purged(h: Box<Heap<TestSource>>, big: usize) {
    let hole = 200_000; // at least PURGE_MIN, below the mapping threshold
    let mut guards = Vec::new();
    let holes: Vec<usize> = (0..20)
        .map(|_| {
            let p = h.malloc(hole).unwrap();
            fill(p, hole, 0x5a);
            guards.push(h.malloc(1000).unwrap());
            p
        })
        .collect();
    for &p in &holes {
        h.free(p);
    }
    assert_eq!(h.source().purged(), 0, "purged while below the peak");
    let b = h.malloc(big).unwrap();
    fill(b, big, 0x33);
    let heap = h.heap_bytes();
    let peak = h.counters.held_peak.load(std::sync::atomic::Ordering::Relaxed); // with `big`
    let budget = peak + peak / RESIDENT_SLACK_SHARE + RESIDENT_SLACK_MIN;
    let purged = h.source().purged();
    // Resident before: at least the live blocks and the holes, all written.
    let at_least = IN_USE_BLOCKS * IN_USE_BLOCK + holes.len() * hole + big - budget;
    assert!(purged + 2 * holes.len() * PAGE >= at_least, "purged {purged}, needed {at_least}");
    assert!(purged < at_least + hole, "purged {purged}: more than the excess and one hole");
    h.check().unwrap();
    // The holes stay usable: they all come back, and the heap does not grow.
    let mut again: Vec<usize> = holes.iter().map(|_| h.malloc(hole).unwrap()).collect();
    again.sort();
    let mut holes = holes;
    holes.sort();
    assert_eq!(again, holes);
    assert_eq!(h.heap_bytes(), heap);
    h.check().unwrap();
    h.free(b);
}

#[test]
fn resident_memory_past_the_programs_peak_is_given_back_when_a_block_is_mapped() {
    let (h, _live) = heap_in_use();
    assert_the_excess_over_the_peak_is_purged(h, 4 << 20);
}

#[test]
fn resident_memory_past_the_programs_peak_is_given_back_when_a_block_is_carved() {
    let (h, _live) = heap_in_use();
    // Below a raised mapping threshold: carved from the top (too big for any hole).
    h.tune(8 << 20, true, TRIM_THRESHOLD, crate::config::TRIM_DECAY_MS);
    assert_the_excess_over_the_peak_is_purged(h, 3 << 20);
}

#[test]
fn a_top_below_the_trim_threshold_is_purged_once_no_allocation_reaches_it() {
    let (h, _live) = heap_in_use();
    // A block beyond the quick classes, below PURGE_MIN, in a hole of its own: freeing it and
    // taking it back reaches the heap (which runs the timed purge pass) without touching the top.
    let x = h.malloc(40_000).unwrap();
    let _guard = h.malloc(1000).unwrap();
    let churn = |h: &Heap<TestSource>| {
        h.free(x);
        assert_eq!(h.malloc(40_000).unwrap(), x);
    };
    // A burst carved from the top, then freed back into it: 2.4 MB, below the trim threshold and
    // each block below the mapping threshold.
    let burst = |h: &Heap<TestSource>| -> Vec<usize> {
        let ps: Vec<usize> = (0..12).map(|_| h.malloc(200_000).unwrap()).collect();
        for &p in &ps {
            fill(p, 200_000, 0x3c);
        }
        for &p in ps.iter().rev() {
            h.free(p);
        }
        ps
    };
    let first = burst(&h);
    let heap = h.heap_bytes();
    let half_decay = crate::config::TRIM_DECAY_MS / 2;
    // While the program keeps allocating that deep every interval, the top stays resident.
    for _ in 0..4 {
        h.source().advance_clock(half_decay);
        churn(&h);
        assert_eq!(burst(&h), first);
    }
    assert_eq!(h.source().purged(), 0, "purged a top the program keeps using");
    // Idle for two intervals: what lies beyond TRIM_KEEP goes back, the heap keeps its size.
    for _ in 0..3 {
        h.source().advance_clock(half_decay);
        churn(&h);
    }
    let purged = h.source().purged();
    assert!(purged >= 12 * 200_000 - TRIM_KEEP - 4 * PAGE, "only {purged} bytes purged");
    // Pages beyond what the burst reached were never handed out: advising them is a wasted call.
    assert!(purged <= 12 * 200_000 - TRIM_KEEP + 2 * PAGE, "{purged} bytes purged, more than the burst used");
    assert_eq!(h.heap_bytes(), heap, "trimmed instead");
    h.check().unwrap();
    // Still usable: the same blocks again, the purged part reading back as zero (but for the
    // bookkeeping the heap writes at the top's start as it carves).
    let again: Vec<usize> = (0..12).map(|_| h.malloc(200_000).unwrap()).collect();
    assert_eq!(again, first);
    let last = *again.last().unwrap();
    assert!(holds(last + PAGE, 200_000 - 2 * PAGE, 0), "purged memory does not read back as zero");
    for p in again {
        h.free(p);
    }
    // Later passes give back only what was touched since.
    for _ in 0..3 {
        h.source().advance_clock(half_decay);
        churn(&h);
    }
    assert!(h.source().purged() - purged <= 12 * 200_000, "purged untouched pages again");
    h.check().unwrap();
}

#[test]
fn a_big_request_takes_the_resident_top_instead_of_a_mapping() {
    let (h, _live) = heap_in_use();
    // Below the mapping threshold: carved from the top, touched, freed back into it.
    let p = h.malloc(250_000).unwrap();
    fill(p, 250_000, 0x21);
    h.free(p);
    h.tune(64 * 1024, false, TRIM_THRESHOLD, crate::config::TRIM_DECAY_MS);
    // Beyond the threshold now, but those pages are resident: the top serves it.
    let q = h.malloc(200_000).unwrap();
    assert_eq!(q, p);
    assert_eq!(h.source().mappings(), 0);
    // The top beyond what it handed out is fresh: as good as a mapping, which goes back at free.
    let r = h.malloc(400_000).unwrap();
    assert_eq!(h.source().mappings(), 1);
    fill(r, 400_000, 0x22);
    assert!(holds(q + PAGE, 200_000 - 2 * PAGE, 0x21), "not the same pages");
    h.free(q);
    h.free(r);
    assert_eq!(h.source().mappings(), 0);
    h.check().unwrap();
}

#[test]
fn a_mapping_threshold_the_program_set_is_not_raised_by_frees() {
    for fixed in [false, true] {
        let h = new_heap(16 << 20);
        h.tune(64 * 1024, fixed, TRIM_THRESHOLD, crate::config::TRIM_DECAY_MS);
        let p = h.malloc(400_000).unwrap();
        assert_eq!(h.source().mappings(), 1);
        h.free(p);
        assert_eq!(h.source().mappings(), 0);
        // Beyond the threshold set, below the block just freed: the heap serves it only if that
        // free raised the threshold.
        let q = h.malloc(200_000).unwrap();
        assert_eq!(h.source().mappings(), usize::from(fixed), "fixed: {fixed}");
        h.free(q);
        assert_eq!(h.source().mappings(), 0);
        h.check().unwrap();
    }
}

#[test]
fn trimming_to_nothing_leaves_no_access_to_the_pages_given_back() {
    // The top's bookkeeping lies 32..48 bytes into it: place the top 40 bytes before a page
    // boundary and trim it to its minimum, so that the boundary falls inside the bookkeeping.
    // (The test source takes trimmed pages away; touching them faults.)
    if 32 % GRAIN != 0 {
        return; // blocks start 8 bytes before a grain boundary: never 40 bytes before a page
    }
    let h = new_heap(64 << 20);
    let p = h.malloc(64).unwrap();
    let top = p - block::HEADER + crate::size_class::alloc_block_size(64).unwrap(); // taken off the top
    let want = (PAGE - 40).wrapping_sub(top % PAGE) % PAGE + 9 * PAGE; // beyond the quick classes
    let q = h.malloc(want - BLOCK_OVERHEAD).unwrap();
    assert_eq!((q - 8 + want) % PAGE, PAGE - 40, "the top is not where the test wants it");
    assert!(h.trim(0));
    h.check().unwrap();
    let r = h.malloc(200_000).unwrap(); // and the heap grows back from there
    fill(r, 200_000, 1);
    for x in [p, q, r] {
        h.free(x);
    }
    h.check().unwrap();
}

#[test]
fn a_nearly_empty_heap_gives_its_top_back_at_once() {
    let h = new_heap(256 << 20);
    let quiet = crate::config::TRIM_DECAY_MS / crate::config::NEARLY_EMPTY_QUIET;
    let ps: Vec<usize> = (0..300).map(|_| h.malloc(100_000).unwrap()).collect();
    let grown = h.heap_bytes();
    for p in ps {
        h.free(p); // no time passes: only emptiness can justify trimming
    }
    assert!(h.heap_bytes() < grown / 8, "{} of {grown} bytes kept", h.heap_bytes());
    // Regrowing at once makes that release a dip in a cycle: the next one waits for the heap
    // to stay put a while.
    let ps: Vec<usize> = (0..300).map(|_| h.malloc(100_000).unwrap()).collect();
    let regrown = h.heap_bytes();
    for p in ps {
        h.free(p);
    }
    assert_eq!(h.heap_bytes(), regrown, "a cycling heap was given back again at once");
    h.source().advance_clock(quiet);
    let p = h.malloc(100).unwrap();
    h.free(p);
    let x = h.malloc(100_000).unwrap();
    h.free(x);
    assert!(h.heap_bytes() < regrown / 8, "not given back after the back-off");
    assert!(h.heap_bytes() < grown / 8, "{} of {grown} bytes kept", h.heap_bytes());
    // Small blocks too: they reach the coalescing heap through the quick lists' consolidation.
    let small: Vec<usize> = (0..200_000).map(|_| h.malloc(64).unwrap()).collect();
    let grown = h.heap_bytes();
    h.source().forget_purged(); // the first part's purges are resident again
    h.source().advance_clock(crate::config::TRIM_DECAY_MS); // the back-off has passed
    // Freed as a thread cache would: flushed to the quick lists in chains of 64.
    let c = crate::size_class::quick_class_of_request(64).unwrap();
    free_as_a_cache(&h, c, &small, 64);
    // The last blocks freed sit between the coalesced space and the top, so not everything can
    // be trimmed: what cannot is purged (it would read back as zero).
    let resident = h.heap_bytes() - h.source().purged_pages_in_arena() * PAGE;
    assert!(resident < grown / 4, "{resident} of {grown} bytes still resident");
    h.check().unwrap();
}

#[test]
fn exhaustion_fails_cleanly_and_recovers() {
    let h = new_heap(64 << 20);
    let mut ps = Vec::new();
    h.source().set_budget(8 << 20);
    loop {
        match h.malloc(3000) {
            Some(p) => ps.push(p),
            None => break,
        }
        assert!(ps.len() < 10_000, "the budget was not enforced");
    }
    assert!(h.malloc(MMAP_THRESHOLD * 64).is_none());
    assert!(h.memalign(4096, 100_000).is_none());
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, ps.len());
    // Freed memory is reused, and more memory makes allocation succeed again.
    h.free(ps.pop().unwrap());
    assert!(h.malloc(3000).is_some());
    h.source().set_budget(usize::MAX);
    assert!(h.malloc(1 << 20).is_some());
    h.check().unwrap();
}

#[test]
fn impossible_sizes_fail_without_touching_the_heap() {
    let h = new_heap(16 << 20);
    for n in [usize::MAX, usize::MAX - 4096, isize::MAX as usize, (isize::MAX as usize) / 2 + 1] {
        assert!(h.malloc(n).is_none(), "malloc({n})");
        assert!(h.memalign(1 << 20, n).is_none());
    }
    let p = h.malloc(10).unwrap();
    assert!(h.realloc(p, usize::MAX).is_none());
    h.free(p);
    h.check().unwrap();
}

#[test]
#[should_panic(expected = "free(): double free of")]
fn double_free_of_a_small_block_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(32).unwrap();
    h.free(p);
    h.free(p);
}

#[test]
#[should_panic(expected = "free(): double free of")]
fn double_free_of_a_coalesced_block_is_caught() {
    let h = new_heap(16 << 20);
    let _live = h.malloc(200_000).unwrap(); // the heap is not nearly empty: nothing is trimmed
    let a = h.malloc(50_000).unwrap();
    let b = h.malloc(50_000).unwrap();
    let _guard = h.malloc(50_000).unwrap();
    h.free(a);
    h.free(b); // b merges into a: its header is stale but still says FREE
    h.free(b);
}

#[test]
#[should_panic(expected = "realloc(): double free of")]
fn realloc_of_a_freed_block_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(100).unwrap();
    h.free(p);
    h.realloc(p, 200);
}

#[test]
#[should_panic(expected = "invalid pointer")]
fn a_pointer_into_the_middle_of_a_block_is_rejected() {
    let h = new_heap(16 << 20);
    let p = h.malloc(4096).unwrap();
    fill(p, 4096, 0x5a);
    h.free(p + 256);
}

#[test]
#[should_panic(expected = "invalid pointer (not allocated by my_alloc)")]
fn a_foreign_pointer_is_rejected() {
    let h = new_heap(16 << 20);
    let _ = h.malloc(10).unwrap();
    let local = [0u64; 32];
    // Aligned like a real block, so that only ownership can reject it.
    let p = (local.as_ptr() as usize + ALIGNMENT) & !(ALIGNMENT - 1);
    h.free(p);
}

#[test]
#[should_panic(expected = "corrupted block header")]
fn a_smashed_header_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(200).unwrap();
    // SAFETY: the header word is heap memory (this is the corruption under test).
    unsafe { *((p - block::HEADER) as *mut u64) ^= 0x1000 };
    h.free(p);
}

#[test]
#[should_panic(expected = "corrupted free list")]
fn a_use_after_free_write_into_a_quick_block_is_caught() {
    let h = new_heap(16 << 20);
    let a = h.malloc(64).unwrap();
    let b = h.malloc(64).unwrap();
    h.free(a);
    h.free(b);
    // Overwrite b's link with an address the attacker wants handed out.
    // SAFETY: b's payload is heap memory (this is the misuse under test).
    unsafe { *(b as *mut usize) = 0x4141_4141_4141 };
    let _ = h.malloc(64);
    let _ = h.malloc(64);
}

/// A tiny deterministic generator (xorshift64*), so that failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn size(&mut self) -> usize {
        match self.below(100) {
            0..=59 => self.below(256),
            60..=84 => 256 + self.below(4000),
            85..=96 => 4096 + self.below(60_000),
            _ => 64_000 + self.below(400_000),
        }
    }
}

struct Live {
    n: usize,
    tag: u8,
}

/// The shadow model: every live block, its requested size, and the byte it was filled with.
struct Model {
    live: BTreeMap<usize, Live>,
}

impl Model {
    fn add(&mut self, h: &Heap<TestSource>, p: usize, n: usize, tag: u8, align: usize) {
        assert_eq!(p % align, 0, "alignment {align} broken for {p:#x}");
        let u = usable(h, p);
        assert!(u >= n, "usable {u} < requested {n}");
        // No overlap with the neighbours in address order.
        if let Some((&q, l)) = self.live.range(..p).next_back() {
            assert!(q + usable(h, q).max(l.n) <= p - block::HEADER, "{q:#x} overlaps {p:#x}");
        }
        if let Some((&q, _)) = self.live.range(p..).next() {
            assert!(p + u <= q - 8, "{p:#x} overlaps {q:#x}");
        }
        fill(p, n, tag);
        self.live.insert(p, Live { n, tag });
    }
    fn take(&mut self, p: usize) -> Live {
        let l = self.live.remove(&p).unwrap();
        assert!(holds(p, l.n, l.tag), "contents of {p:#x} changed");
        l
    }
    fn pick(&self, rng: &mut Rng) -> Option<usize> {
        if self.live.is_empty() {
            return None;
        }
        let i = rng.below(self.live.len());
        self.live.keys().nth(i).copied()
    }
}

fn model_run(seed: u64, steps: usize, check_every: usize) {
    let h = new_heap(512 << 20);
    let mut rng = Rng(seed);
    let mut m = Model { live: BTreeMap::new() };
    for step in 0..steps {
        let tag = (step % 251) as u8 + 1;
        match rng.below(100) {
            0..=39 => {
                let n = rng.size();
                let p = h.malloc(n).unwrap();
                m.add(&h, p, n, tag, ALIGNMENT);
            }
            40..=64 => {
                if let Some(p) = m.pick(&mut rng) {
                    m.take(p);
                    h.free(p);
                }
            }
            65..=79 => {
                if let Some(p) = m.pick(&mut rng) {
                    let old = m.take(p);
                    let n = if rng.below(2) == 0 { rng.size() } else { old.n + rng.below(64) };
                    let n = n.max(1);
                    let q = h.realloc(p, n).unwrap();
                    assert!(holds(q, old.n.min(n), old.tag), "realloc lost contents");
                    m.add(&h, q, n, tag, ALIGNMENT);
                }
            }
            80..=87 => {
                let align = 1usize << (4 + rng.below(10));
                let n = rng.size();
                let p = h.memalign(align, n).unwrap();
                m.add(&h, p, n, tag, align);
            }
            88..=93 => {
                // What a thread cache does: take a batch of a quick class, hand it out.
                let c = rng.below(NUM_QUICK);
                let (mut p, tail, count) = h.refill(c, 1 + rng.below(32), rng.below(48));
                let mut last = 0;
                let secret = h.secret();
                for _ in 0..count {
                    let next = h.next_quick(p, secret);
                    // SAFETY: p is a QUICK block the "cache" owns; it becomes the user's.
                    unsafe { block::flip_state(p - block::HEADER, block::FLIP_IN_USE_QUICK) };
                    let n = QUICK_SIZE[c] as usize - BLOCK_OVERHEAD;
                    m.add(&h, p, n, tag, ALIGNMENT);
                    last = p;
                    p = next;
                }
                assert_eq!(p, 0, "chain longer than its count");
                assert_eq!(last, tail, "the reported tail is not the chain's last block");
            }
            _ => {
                // A thread cache flushing: chain every live block of one quick class.
                let c = rng.below(NUM_QUICK);
                let size = QUICK_SIZE[c] as usize;
                let victims: Vec<usize> = m
                    .live
                    .keys()
                    .copied()
                    .filter(|&p| {
                        // SAFETY: live blocks have valid headers.
                        block::size_of(unsafe { block::load(p - block::HEADER) }) == size
                    })
                    .take(16)
                    .collect();
                if victims.is_empty() {
                    continue;
                }
                let secret = h.secret();
                for (i, &p) in victims.iter().enumerate() {
                    m.take(p);
                    let h0 = h.validate(p, "free");
                    // SAFETY: the "cache" owns p; it becomes QUICK and links to the next victim.
                    unsafe {
                        block::store(p - block::HEADER, h0 ^ block::FLIP_IN_USE_QUICK);
                        let next = victims.get(i + 1).copied().unwrap_or(0);
                        *(p as *mut usize) = block::encode_link(p, next, secret);
                    }
                }
                h.flush(c, victims[0], *victims.last().unwrap(), victims.len());
            }
        }
        if step % check_every == 0 {
            if let Err(e) = h.check() {
                panic!("seed {seed} step {step}: {e}");
            }
        }
    }
    h.check().unwrap();
    let keys: Vec<usize> = m.live.keys().copied().collect();
    for p in keys {
        m.take(p);
        h.free(p);
    }
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
    assert_eq!(h.source().mappings(), 0);
    assert!(h.trim(0) || r.heap_bytes <= TRIM_THRESHOLD + (1 << 20));
    let r = h.check().unwrap();
    assert_eq!(r.free_blocks, 1, "after freeing everything the heap is one free block");
    let _ = MIN_BLOCK;
}

#[test]
fn model_random_operations_seed_1() {
    model_run(1, 20_000, 1);
}

#[test]
fn model_random_operations_many_seeds() {
    for seed in 2..10 {
        model_run(seed * 0x9E37_79B9, 10_000, 7);
    }
}

#[test]
fn concurrent_threads_keep_the_heap_consistent() {
    if !crate::config::THREAD_SAFE {
        return; // a single-threaded build has no locks to test
    }
    let h: &'static Heap<TestSource> = Box::leak(new_heap(1 << 30));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng(t + 11);
                let mut mine: Vec<(usize, usize, u8)> = Vec::new();
                for i in 0..30_000 {
                    if mine.len() < 200 && rng.below(3) != 0 {
                        let n = rng.size().min(100_000);
                        let p = h.malloc(n).unwrap();
                        let tag = (i % 250) as u8 + 1;
                        fill(p, n, tag);
                        mine.push((p, n, tag));
                    } else if !mine.is_empty() {
                        let (p, n, tag) = mine.swap_remove(rng.below(mine.len()));
                        assert!(holds(p, n, tag));
                        if rng.below(4) == 0 {
                            let m = rng.size().min(100_000).max(1);
                            let q = h.realloc(p, m).unwrap();
                            assert!(holds(q, n.min(m), tag));
                            h.free(q);
                        } else {
                            h.free(p);
                        }
                    }
                }
                for (p, n, tag) in mine {
                    assert!(holds(p, n, tag));
                    h.free(p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
}
