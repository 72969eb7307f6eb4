//! The core's allocation paths: blocks, splitting and coalescing, quick lists, realloc, alignment,
//! growth.

use super::*;

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
pub(super) fn free_as_a_cache(h: &Heap<TestSource>, c: usize, ps: &[usize], chain: usize) {
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
    let a2 = realloc(&h, a, 2 * n).unwrap();
    assert_eq!(a2, a);
    assert!(holds(a, n, 7));
    let b = h.malloc(n).unwrap();
    // Shrinking splits in place; growing back absorbs the freed tail.
    let a3 = realloc(&h, a, n / 2).unwrap();
    assert_eq!(a3, a);
    h.check().unwrap();
    let a4 = realloc(&h, a, 2 * n).unwrap();
    assert_eq!(a4, a);
    assert!(holds(a, n / 2, 7));
    // No room: it moves, keeping the contents.
    let a5 = realloc(&h, a, 4 * n).unwrap();
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
    assert_eq!(realloc(&h, a, n * 7 / 10).unwrap(), a);
    // Halving moves the contents to a block of the smaller class...
    let b = realloc(&h, a, n / 5).unwrap();
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
    assert_eq!(realloc(&h, a, n / 5), Some(a));
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

