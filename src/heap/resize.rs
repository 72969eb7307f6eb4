//! Resizing a live block: in place when the block or its neighbour allows it, by moving
//! otherwise. The one `realloc` of the library: the C surface calls it with a thread cache as the
//! place a moving block goes to and comes from.

use crate::block::{self, FREE, HEADER, IN_USE, MAPPED, PREV_FREE};
use crate::config::MIN_BLOCK;
use crate::size_class::{alloc_block_size, class_of, QUICK_MAX_BLOCK};
use crate::source::Source;

use super::Heap;

/// Where a block that must move goes, and where the old one returns: the heap itself, or a thread
/// cache in front of it (the C surface's `realloc` moves blocks through the caller's cache).
pub trait Mover<S: Source> {
    /// Allocates `n` bytes; `None` when the request is impossible or memory is exhausted.
    fn allocate(&mut self, n: usize) -> Option<usize>;
    /// Frees the live block `p` of `owner`, whose header `h` it validated.
    fn release(&mut self, owner: &Heap<S>, p: usize, h: u64);
}

impl<S: Source> Mover<S> for &Heap<S> {
    fn allocate(&mut self, n: usize) -> Option<usize> {
        self.malloc(n)
    }
    fn release(&mut self, owner: &Heap<S>, p: usize, h: u64) {
        owner.free_validated(p, h)
    }
}

/// What [`Heap::realloc`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reallocated {
    /// The block was resized where it is (a mapped block may have moved with `mremap`): it is
    /// now at this address, with no allocation or free on the way.
    InPlace(usize),
    /// The contents moved to a new block, allocated through the mover, and the old block was
    /// freed through it.
    Moved(usize),
}

/// What [`Heap::resize_in_place`] managed.
pub(super) enum Resized {
    /// Resized; the block is now at this address.
    Done(usize),
    /// The caller must allocate, copy and free; for a shrink, keep the block if that allocation
    /// fails (the block is big enough).
    MustMove,
    /// The request is impossible or memory is exhausted; the block is untouched.
    NoMemory,
}

/// Whether a block of a quick class, `size` bytes, stays where it is when resized to a block of
/// `need` bytes: when it holds them without halving (see `resize_in_place`). Otherwise it moves.
#[inline]
pub fn small_block_stays(size: usize, need: usize) -> bool {
    need <= size && !(need <= size / 2 && size - need >= MIN_BLOCK)
}

impl<S: Source> Heap<S> {
    /// Resizes the live block at `p` (header `h`) to `n > 0` bytes without moving it, if it can.
    /// Mapped blocks may move with `mremap`.
    fn resize_in_place(&self, p: usize, h: u64, n: usize) -> Resized {
        if h & MAPPED != 0 {
            return self.resize_mapped(p, h, n);
        }
        let size = block::size_of(h);
        let Some(need) = alloc_block_size(n) else { return Resized::NoMemory };
        let b = p - HEADER;
        if need <= size {
            if size <= QUICK_MAX_BLOCK {
                // A small block keeps moderate slack. One that would halve moves to a block of its
                // new class instead (thread caches at both ends, no lock), which leaves it whole
                // for the next request of its class: a program that shrinks a buffer it has filled
                // (interpreters' strings and bytes) asks for such a buffer again soon, and split
                // tails would only fragment the bins.
                return if small_block_stays(size, need) { Resized::Done(p) } else { Resized::MustMove };
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

    /// Resizes the live block at `p` (header `h`, from `validate`) to `n > 0` bytes: in place
    /// when it can, else by moving it through `via` (allocate, copy, free). `None`, and the block
    /// untouched, when memory is exhausted or `n` is impossible; a shrink never fails (a block
    /// that finds no smaller home keeps its own).
    pub fn realloc<M: Mover<S>>(&self, p: usize, h: u64, n: usize, via: &mut M) -> Option<Reallocated> {
        let _check = self.check_on_exit();
        match self.resize_in_place(p, h, n) {
            Resized::Done(q) => Some(Reallocated::InPlace(q)),
            Resized::NoMemory => None,
            Resized::MustMove => {
                let old = self.usable_of(p, h);
                let Some(q) = via.allocate(n) else {
                    return if n <= old { Some(Reallocated::InPlace(p)) } else { None };
                };
                // SAFETY: both blocks are live and distinct; `old` bytes are readable at p.
                unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(n)) };
                via.release(self, p, h);
                Some(Reallocated::Moved(q))
            }
        }
    }
}
