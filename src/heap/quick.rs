//! Quick lists in use: small blocks without a thread cache, batches for thread caches (refill,
//! flush), and consolidation of parked blocks into the bins.
//!
//! Each quick class has its own lock; the heap lock may be held while taking one (consolidation),
//! never the other way round.

use core::sync::atomic::Ordering;

use crate::block::{self, FLIP_IN_USE_QUICK, FLIP_QUICK_FREE, HEADER, IN_USE, QUICK};
use crate::config::{MIN_BLOCK, NEARLY_EMPTY, QUICK_RETAIN_MIN, QUICK_SHARE};
use crate::diag::fatal;
use crate::size_class::{class_of, NUM_QUICK, QUICK_SIZE};
use crate::source::Source;

use super::bins::Core;
use super::quick_list::quick_size_fits;
use super::Heap;

impl<S: Source> Heap<S> {
    /// One block of quick class `c`: from its quick list, else carved from the heap.
    pub(super) fn malloc_quick(&self, c: usize) -> Option<usize> {
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

    /// Takes up to `max` `QUICK` blocks of class `c` (or a whole chain of the quick list of at most
    /// `whole` blocks): from the quick list, else freshly carved. Returns the chain's first and last
    /// user pointers (links encoded, last link 0) and its length.
    pub fn refill(&self, c: usize, max: usize, whole: usize) -> (usize, usize, usize) {
        let _check = self.check_on_exit();
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
    pub(super) fn carve_run(&self, c: usize, max: usize) -> (usize, usize, usize) {
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
        let _check = self.check_on_exit();
        let parked = self.park(c, head, tail, n);
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

    /// Puts a chain of `n` `QUICK` blocks of class `c` on the quick list. Returns the bytes
    /// parked on the quick lists now.
    pub(super) fn park(&self, c: usize, head: usize, tail: usize, n: usize) -> usize {
        let secret = self.secret();
        let mut q = self.quick[c].lock();
        // SAFETY: the chain's blocks are QUICK blocks of class c the caller owned.
        unsafe { q.push(head, tail, n, secret) };
        let parked = self.quick_bytes.fetch_add(n * QUICK_SIZE[c] as usize, Ordering::Relaxed) + n * QUICK_SIZE[c] as usize;
        drop(q);
        self.counters.back(c, n);
        parked
    }

    /// Bytes parked on the quick lists.
    pub fn quick_bytes(&self) -> usize {
        self.quick_bytes.load(Ordering::Relaxed)
    }

    /// Moves every quick list's blocks into the coalesced free lists.
    ///
    /// # Safety
    /// `core` is this heap's state, locked by the caller, who holds no quick-list lock.
    pub(super) unsafe fn consolidate(&self, core: &mut Core) {
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
}
