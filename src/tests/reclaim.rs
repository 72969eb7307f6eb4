//! Memory return: trimming, purging, the resident budget, the nearly empty heap.

use super::*;
use super::heap::free_as_a_cache;

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
    // Each block is too big for the hole: the heap carves it from the top. The clock never moves.
    let block = 250_000; // below the mapping threshold
    let extend = |h: &Heap<TestSource>| h.malloc(block).unwrap();
    let mut kept = Vec::new();
    // Less than one interval of carving (1/CARVE_PURGE_SHARE of the heap): nothing purged.
    while (kept.len() + 1) * block < h.heap_bytes() / CARVE_PURGE_SHARE {
        kept.push(extend(&h));
    }
    assert_eq!(h.source().purged(), 0, "purged before an interval of carving");
    // Two intervals later (the heap grows meanwhile), the hole is purged.
    let before = kept.len();
    while h.source().purged() == 0 {
        kept.push(extend(&h));
        assert!(kept.len() - before <= 3 * before + 3, "not purged after {} more carvings", kept.len() - before);
    }
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
    // Each round carves a big block out of the second hole and gives it back, and the heap never
    // extends. The clock never moves.
    let block = 230_000;
    let round = |h: &Heap<TestSource>| {
        let p = h.malloc(block).unwrap();
        assert_eq!(p, b, "not carved from the second hole");
        h.free(p);
    };
    // Rounds that make one interval of carving (1/CARVE_PURGE_SHARE of the heap).
    let per_interval = heap / CARVE_PURGE_SHARE / block + 1;
    for _ in 0..per_interval - 1 {
        round(&h);
    }
    assert_eq!(h.source().purged(), 0, "purged before an interval of carving");
    let mut rounds = per_interval - 1;
    while h.source().purged() == 0 {
        round(&h);
        rounds += 1;
        assert!(rounds <= 3 * per_interval, "not purged after {rounds} rounds");
    }
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

