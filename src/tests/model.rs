//! A model-based randomized test: random operations through what ships — thread caches in front
//! of the heap, the heap's one `realloc` moving blocks through a cache, aligned allocation, and
//! blocks freed by another thread's cache — checked against a shadow of every live block (no
//! overlap, contents intact, sizes and alignment honoured) and against the heap's invariants.

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
    let h = &*h;
    let mut rng = Rng(seed);
    let mut m = Model { live: BTreeMap::new() };
    // This thread's cache, and another thread's, which frees some of the blocks this one
    // allocated (and allocates some itself).
    let mut mine = Box::new(ThreadCache::new());
    let mut other = Box::new(ThreadCache::new());
    for step in 0..steps {
        let tag = (step % 251) as u8 + 1;
        let tc: &mut ThreadCache = if rng.below(8) == 0 { &mut other } else { &mut mine };
        match rng.below(100) {
            0..=39 => {
                let n = rng.size();
                let p = tc.malloc(h, n).unwrap();
                m.add(h, p, n, tag, ALIGNMENT);
            }
            40..=64 => {
                if let Some(p) = m.pick(&mut rng) {
                    m.take(p);
                    let hdr = h.validate(p, "free");
                    tc.free(h, p, hdr);
                }
            }
            65..=79 => {
                if let Some(p) = m.pick(&mut rng) {
                    let old = m.take(p);
                    let n = if rng.below(2) == 0 { rng.size() } else { old.n + rng.below(64) };
                    let n = n.max(1);
                    let hdr = h.validate(p, "realloc");
                    let q = match h.realloc(p, hdr, n, &mut Cached { cache: tc, heap: h }).unwrap() {
                        Reallocated::InPlace(q) | Reallocated::Moved(q) => q,
                    };
                    assert!(holds(q, old.n.min(n), old.tag), "realloc lost contents");
                    m.add(h, q, n, tag, ALIGNMENT);
                }
            }
            80..=87 => {
                let align = 1usize << (4 + rng.below(10));
                let n = rng.size();
                let p = h.memalign(align, n).unwrap();
                m.add(h, p, n, tag, align);
            }
            88..=93 => {
                // Without a cache (checking mode, or a thread being torn down): the heap directly.
                if rng.below(2) == 0 {
                    let n = rng.size();
                    let p = h.malloc(n).unwrap();
                    m.add(h, p, n, tag, ALIGNMENT);
                } else if let Some(p) = m.pick(&mut rng) {
                    m.take(p);
                    h.free(p);
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
                    m.add(h, p, n, tag, ALIGNMENT);
                }
                for &p in &batch {
                    m.take(p);
                    let hdr = h.validate(p, "free");
                    tc.free(h, p, hdr);
                }
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
        let hdr = h.validate(p, "free");
        mine.free(h, p, hdr);
    }
    mine.flush_everything(h);
    other.flush_everything(h);
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
    assert_eq!(r.quick_blocks, r.listed_quick_blocks, "a flushed cache still holds blocks");
    assert_eq!(h.source().mappings(), 0);
    assert!(h.trim(0) || r.heap_bytes <= TRIM_THRESHOLD + (1 << 20));
    let r = h.check().unwrap();
    assert_eq!(r.free_blocks, 1, "after freeing everything the heap is one free block");
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
    // Blocks each thread hands to the next one, which frees them: frees from another thread's
    // cache, as in a producer and a consumer.
    let handoff: &'static Mutex<Vec<Vec<(usize, usize, u8)>>> = Box::leak(Box::new(Mutex::new(vec![Vec::new(); 4])));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut tc = Box::new(ThreadCache::new());
                let mut rng = Rng(t + 11);
                let mut mine: Vec<(usize, usize, u8)> = Vec::new();
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
                                let hdr = h.validate(p, "realloc");
                                let q = match h.realloc(p, hdr, m, &mut Cached { cache: &mut tc, heap: h }).unwrap() {
                                    Reallocated::InPlace(q) | Reallocated::Moved(q) => q,
                                };
                                assert!(holds(q, n.min(m), tag));
                                let hdr = h.validate(q, "free");
                                tc.free(h, q, hdr);
                            }
                            2 => handoff.lock().unwrap()[(t as usize + 1) % 4].push((p, n, tag)),
                            _ => {
                                let hdr = h.validate(p, "free");
                                tc.free(h, p, hdr);
                            }
                        }
                    }
                    if i % 64 == 0 {
                        let theirs = std::mem::take(&mut handoff.lock().unwrap()[t as usize]);
                        for (p, n, tag) in theirs {
                            assert!(holds(p, n, tag), "a block handed over changed");
                            let hdr = h.validate(p, "free");
                            tc.free(h, p, hdr);
                        }
                    }
                }
                for (p, n, tag) in mine {
                    assert!(holds(p, n, tag));
                    let hdr = h.validate(p, "free");
                    tc.free(h, p, hdr);
                }
                tc.flush_everything(h);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (p, n, tag) in handoff.lock().unwrap().drain(..).flatten() {
        assert!(holds(p, n, tag));
        h.free(p);
    }
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, 0);
}
