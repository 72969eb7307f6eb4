//! A model-based randomized test: random operations through what ships — two arenas over one
//! source, a thread cache in front of each, the heap's one `realloc` moving blocks through a cache,
//! aligned allocation, and blocks freed through the cache of the arena that does not own them —
//! checked against a shadow of every live block (no overlap, contents intact, sizes and alignment
//! honoured) and against both arenas' invariants.

use super::*;
use crate::tcache::{Cached, ThreadCache};

struct Live {
    n: usize,
    tag: u8,
}

/// The shadow model: every live block, its requested size, and the byte it was filled with.
struct Model {
    live: BTreeMap<usize, Live>,
}

impl Model {
    fn add<S: Source>(&mut self, arenas: &[&Heap<S>], p: usize, n: usize, tag: u8, align: usize) {
        assert_eq!(p % align, 0, "alignment {align} broken for {p:#x}");
        let u = usable(owner(arenas, p), p);
        assert!(u >= n, "usable {u} < requested {n}");
        // No overlap with the neighbours in address order.
        if let Some((&q, l)) = self.live.range(..p).next_back() {
            assert!(q + usable(owner(arenas, q), q).max(l.n) <= p - block::HEADER, "{q:#x} overlaps {p:#x}");
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

/// The arena that owns the block at `p`, by its page-map tag.
fn owner<'a, S: Source>(arenas: &[&'a Heap<S>], p: usize) -> &'a Heap<S> {
    let tag = arenas[0].source().pages().owner(p - block::HEADER);
    arenas.iter().find(|a| a.tag() == tag).copied().unwrap_or_else(|| panic!("{p:#x} belongs to no arena (tag {tag})"))
}

fn model_run(seed: u64, steps: usize, check_every: usize) {
    let src = TestSource::new(1 << 30);
    let (a, b) = (Heap::with_tag(&src, SECRET, 1), Heap::with_tag(&src, SECRET, 2));
    let arenas = [&a, &b];
    let mut rng = Rng(seed);
    let mut m = Model { live: BTreeMap::new() };
    // A thread's cache on arena a, and another thread's on arena b, which frees some of the
    // blocks the first allocated, and the other way round.
    let mut mine = Box::new(ThreadCache::new());
    let mut other = Box::new(ThreadCache::new());
    for step in 0..steps {
        let tag = (step % 251) as u8 + 1;
        let (tc, h): (&mut ThreadCache, &Heap<&TestSource>) = if rng.below(8) == 0 { (&mut other, &b) } else { (&mut mine, &a) };
        match rng.below(100) {
            0..=39 => {
                let n = rng.size();
                let p = tc.malloc(h, n).unwrap();
                m.add(&arenas, p, n, tag, ALIGNMENT);
            }
            40..=64 => {
                if let Some(p) = m.pick(&mut rng) {
                    m.take(p);
                    let o = owner(&arenas, p);
                    let hdr = o.validate(p, "free");
                    tc.free_to(h, o, p, hdr);
                }
            }
            65..=79 => {
                if let Some(p) = m.pick(&mut rng) {
                    let old = m.take(p);
                    let n = if rng.below(2) == 0 { rng.size() } else { old.n + rng.below(64) };
                    let n = n.max(1);
                    let o = owner(&arenas, p);
                    let hdr = o.validate(p, "realloc");
                    let q = match o.realloc(p, hdr, n, &mut Cached { cache: tc, heap: h }).unwrap() {
                        Reallocated::InPlace(q) | Reallocated::Moved(q) => q,
                    };
                    assert!(holds(q, old.n.min(n), old.tag), "realloc lost contents");
                    m.add(&arenas, q, n, tag, ALIGNMENT);
                }
            }
            80..=87 => {
                let align = 1usize << (4 + rng.below(10));
                let n = rng.size();
                let p = h.memalign(align, n).unwrap();
                m.add(&arenas, p, n, tag, align);
            }
            88..=93 => {
                // Without a cache (checking mode, or a thread being torn down): the heap directly.
                if rng.below(2) == 0 {
                    let n = rng.size();
                    let p = h.malloc(n).unwrap();
                    m.add(&arenas, p, n, tag, ALIGNMENT);
                } else if let Some(p) = m.pick(&mut rng) {
                    m.take(p);
                    owner(&arenas, p).free(p);
                }
            }
            94..=96 => {
                // A thread cache gives back one class, or everything (thread exit, malloc_trim).
                if rng.below(4) == 0 {
                    tc.flush_everything(h);
                } else {
                    tc.flush_all(h, rng.below(NUM_QUICK));
                }
            }
            _ => {
                // A batch freed and allocated again: what refills from whole flushed chains see.
                let n = rng.below(QUICK_MAX_REQUEST.min(2000)) + 1;
                let batch: Vec<usize> = (0..rng.below(64) + 1).map(|_| tc.malloc(h, n).unwrap()).collect();
                for &p in &batch {
                    m.add(&arenas, p, n, tag, ALIGNMENT);
                }
                for &p in &batch {
                    m.take(p);
                    let hdr = h.validate(p, "free");
                    tc.free(h, p, hdr);
                }
            }
        }
        if step % check_every == 0 {
            for h in arenas {
                if let Err(e) = h.check() {
                    panic!("seed {seed} step {step}, arena {}: {e}", h.tag());
                }
            }
        }
    }
    let keys: Vec<usize> = m.live.keys().copied().collect();
    for p in keys {
        m.take(p);
        let o = owner(&arenas, p);
        let hdr = o.validate(p, "free");
        mine.free_to(&a, o, p, hdr);
    }
    mine.flush_everything(&a);
    other.flush_everything(&b);
    for h in arenas {
        let r = h.check().unwrap();
        assert_eq!(r.in_use_blocks, 0);
        assert_eq!(r.quick_blocks, r.listed_quick_blocks + r.inbox_blocks, "a flushed cache still holds blocks");
        // Whether trimming gives anything back depends on where the arenas' segments fell in
        // the source (only the last one can shrink); what it leaves must be whole free blocks.
        let _ = h.trim(0);
        let r = h.check().unwrap();
        assert_eq!(r.inbox_blocks, 0, "trimming parks what came home first");
        assert!(r.free_blocks <= r.segments, "after freeing everything each segment is one free block");
    }
    assert_eq!(src.mappings(), 0);
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
    // Two arenas over one source, two threads on each; every thread hands some of its blocks to
    // the next one, which frees them: frees into a cache of the same arena and of the other one.
    let src: &'static TestSource = Box::leak(Box::new(TestSource::new(1 << 30)));
    let arenas: &'static [Heap<&'static TestSource>; 2] = Box::leak(Box::new([Heap::with_tag(src, SECRET, 1), Heap::with_tag(src, SECRET, 2)]));
    let handoff: &'static Mutex<Vec<Vec<(usize, usize, u8)>>> = Box::leak(Box::new(Mutex::new(vec![Vec::new(); 4])));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let all = [&arenas[0], &arenas[1]];
                let h = all[t as usize % 2];
                let mut tc = Box::new(ThreadCache::new());
                let mut rng = Rng(t + 11);
                let mut mine: Vec<(usize, usize, u8)> = Vec::new();
                let free = |tc: &mut ThreadCache, p: usize| {
                    let o = owner(&all, p);
                    let hdr = o.validate(p, "free");
                    tc.free_to(h, o, p, hdr);
                };
                for i in 0..30_000 {
                    if mine.len() < 200 && rng.below(3) != 0 {
                        let n = rng.size().min(100_000);
                        let p = tc.malloc(h, n).unwrap();
                        let tag = (i % 250) as u8 + 1;
                        fill(p, n, tag);
                        mine.push((p, n, tag));
                    } else if !mine.is_empty() {
                        let (p, n, tag) = mine.swap_remove(rng.below(mine.len()));
                        assert!(holds(p, n, tag));
                        match rng.below(8) {
                            0 | 1 => {
                                let m = rng.size().min(100_000).max(1);
                                let o = owner(&all, p);
                                let hdr = o.validate(p, "realloc");
                                let q = match o.realloc(p, hdr, m, &mut Cached { cache: &mut tc, heap: h }).unwrap() {
                                    Reallocated::InPlace(q) | Reallocated::Moved(q) => q,
                                };
                                assert!(holds(q, n.min(m), tag));
                                free(&mut tc, q);
                            }
                            2 => handoff.lock().unwrap()[(t as usize + 1) % 4].push((p, n, tag)),
                            _ => free(&mut tc, p),
                        }
                    }
                    if i % 64 == 0 {
                        let theirs = std::mem::take(&mut handoff.lock().unwrap()[t as usize]);
                        for (p, n, tag) in theirs {
                            assert!(holds(p, n, tag), "a block handed over changed");
                            free(&mut tc, p);
                        }
                    }
                }
                for (p, n, tag) in mine {
                    assert!(holds(p, n, tag));
                    free(&mut tc, p);
                }
                tc.flush_everything(h);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = [&arenas[0], &arenas[1]];
    for (p, n, tag) in handoff.lock().unwrap().drain(..).flatten() {
        assert!(holds(p, n, tag));
        owner(&all, p).free(p);
    }
    for h in all {
        let r = h.check().unwrap();
        assert_eq!(r.in_use_blocks, 0);
        assert_eq!(r.quick_blocks, r.listed_quick_blocks + r.inbox_blocks);
    }
}

/// Blocks one arena's cache frees for another go home as class chains through the owner's inbox:
/// nothing moves until a batch is full, a full batch lands whole in the inbox (no lock of the
/// owner taken), and the owner's next refill parks it and hands the same blocks out again.
#[test]
fn remote_frees_go_home_in_batches_through_the_inbox() {
    let src = TestSource::new(1 << 26);
    let (a, b) = (Heap::with_tag(&src, SECRET, 1), Heap::with_tag(&src, SECRET, 2));
    let (mut on_a, mut on_b) = (Box::new(ThreadCache::new()), Box::new(ThreadCache::new()));
    // Two classes, so that the batch is sorted into two chains.
    let n = crate::config::REMOTE_BATCH as usize;
    let blocks: Vec<usize> = (0..n).map(|i| on_b.malloc(&b, if i % 2 == 0 { 24 } else { 100 }).unwrap()).collect();
    on_b.flush_everything(&b);
    for &p in &blocks[..n - 1] {
        let h = b.validate(p, "free");
        on_a.free_to(&a, &b, p, h);
    }
    assert_eq!(b.check().unwrap().inbox_blocks, 0, "a batch not yet full stays with the sender");
    let h = b.validate(blocks[n - 1], "free");
    on_a.free_to(&a, &b, blocks[n - 1], h);
    let r = b.check().unwrap();
    assert_eq!(r.inbox_blocks, n, "a full batch goes home whole");
    assert_eq!(r.quick_blocks, r.listed_quick_blocks + r.inbox_blocks);
    assert_eq!(a.check().unwrap().in_use_blocks, 0, "the sender's arena holds none of them");
    // The owner's cache drains the inbox on its next miss and reuses the blocks first.
    let again = on_b.malloc(&b, 24).unwrap();
    assert_eq!(b.check().unwrap().inbox_blocks, 0);
    assert!(blocks.contains(&again), "the blocks that came home are reused first");
    on_b.free_to(&b, &b, again, b.validate(again, "free"));
    on_b.flush_everything(&b);
    let r = b.check().unwrap();
    assert_eq!((r.in_use_blocks, r.quick_blocks), (0, r.listed_quick_blocks));
}

/// A class whose bin keeps running dry grows its bin (up to `CACHE_GROWTH` times), within the
/// thread's `CACHE_EXTRA_BYTES`; a flushed cache goes back to its base capacities.
#[test]
fn busy_classes_grow_their_bins_within_the_budget() {
    use crate::config::{CACHE_EXTRA_BYTES, CACHE_GROWTH};
    use crate::size_class::{quick_class_of_request, NUM_QUICK};
    let src = TestSource::new(1 << 28);
    let h = Heap::new(&src, SECRET);
    let mut tc = Box::new(ThreadCache::new());
    let c = quick_class_of_request(24).unwrap();
    let base = tc.capacity(c);
    // Allocating without freeing drains the bin right after each refill: busy.
    let mut live: Vec<usize> = (0..base as usize * 16).map(|_| tc.malloc(&h, 24).unwrap()).collect();
    assert!(tc.capacity(c) > base, "a busy class did not grow ({} blocks)", tc.capacity(c));
    assert!(tc.capacity(c) <= base * CACHE_GROWTH);
    // Every class busy at once: the growth stays within the budget.
    for n in (16..4096).step_by(48) {
        for _ in 0..256 {
            live.push(tc.malloc(&h, n).unwrap());
        }
    }
    assert!(tc.extra_bytes() > 0 && tc.extra_bytes() <= CACHE_EXTRA_BYTES, "extra {}", tc.extra_bytes());
    for p in live {
        let hdr = h.validate(p, "free");
        tc.free_to(&h, &h, p, hdr);
    }
    tc.flush_everything(&h);
    assert_eq!(tc.extra_bytes(), 0);
    let fresh = ThreadCache::new();
    assert!((0..NUM_QUICK).all(|c| tc.capacity(c) == fresh.capacity(c)), "a flushed cache keeps grown bins");
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
}
