//! Validation of the pointers programs pass in: is it ours, aligned, a live block with an intact
//! header? Misuse gets a one-line diagnosis and an abort, never a dereference of a foreign address.

use core::sync::atomic::Ordering;

use crate::block::{self, FREE, HEADER, IN_USE, QUICK};
use crate::config::{ALIGNMENT, WORD};
use crate::diag::{fatal, fatal_at, fatal_sized};
use crate::os;
use crate::source::Source;

use super::quick_list::quick_size_fits;
use super::segment::{Segment, FIRST_BLOCK};
use super::Heap;

/// Where a rejected pointer falls (see `Heap::locate`).
pub(super) enum Located {
    /// Inside the block whose user pointer is given.
    Inside(usize),
    /// At a block boundary: the pointer would be a block's, but its header is damaged.
    Start,
    /// Not in a segment, or the walk met damage first.
    Unknown,
}

/// Attempts at the heap lock before a diagnosis gives up on walking the heap.
const LOCATE_LOCK_TRIES: usize = 1000;

impl<S: Source> Heap<S> {
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

    /// Whether `p` is the user pointer of one of the last mapped blocks this heap unmapped (a
    /// second free of one finds no page of ours: this tells a double free from a foreign pointer).
    pub fn unmapped_recently(&self, p: usize) -> bool {
        self.recent_unmapped.iter().any(|r| r.load(Ordering::Relaxed) == p)
    }

    /// The low half of `p`'s header (its size and flags) if `p` is a plain live block of this
    /// heap's growable segment with an intact header: the free hot path's test (`secret` is the
    /// heap's), one comparison of the high half for the check, the state and the flags
    /// (`block::live_high_half`). `None` tells nothing (another heap's block, an older segment, a
    /// mapped or sampled block, a misuse): the caller then takes the slow path, which judges.
    #[inline(always)]
    pub fn validate_local(&self, p: usize, secret: u64) -> Option<u32> {
        debug_assert_eq!(secret, self.secret());
        let b = p.wrapping_sub(HEADER);
        let (lo, len) = self.segment_view();
        if p & (ALIGNMENT - 1) != 0 || b.wrapping_sub(lo) >= len {
            return None;
        }
        // SAFETY: the word lies in the growable segment, which is mapped.
        let (low, high) = unsafe { block::load_halves(b) };
        (high == block::live_high_half(b, low, secret)).then_some(low)
    }

    /// The header of `p` if `p` is an aligned, sealed, live (`IN_USE`) block, given that the page
    /// map names this heap as the owner of its header's page: the remote free's test. `None`
    /// tells nothing; the caller takes the slow path, which judges.
    #[inline]
    pub fn validate_tagged(&self, p: usize) -> Option<u64> {
        if p & (ALIGNMENT - 1) != 0 {
            return None;
        }
        // SAFETY: the page map marks only pages the heap has mapped.
        let h = unsafe { block::load(p - HEADER) };
        self.live(p - HEADER, h)
    }

    /// `h`, read at `b`, if it is the sealed header of a live (`IN_USE`) block.
    #[inline(always)]
    fn live(&self, b: usize, h: u64) -> Option<u64> {
        (block::is_sealed(b, h, self.secret()) && block::state_of(h) == IN_USE).then_some(h)
    }

    /// Whether the word at `addr` lies in memory the heap owns: a range check for the growable
    /// segment (where most blocks live), the page map for everything else.
    #[inline(always)]
    pub(super) fn owns(&self, addr: usize) -> bool {
        let (lo, len) = self.segment_view();
        addr.wrapping_sub(lo) < len || self.source.pages().owner(addr) == self.tag
    }

    #[cold]
    #[inline(never)]
    pub fn reject_pointer(&self, p: usize, func: &str) -> ! {
        if p & (ALIGNMENT - 1) != 0 {
            fatal(func, "invalid pointer (misaligned)", p);
        }
        if self.unmapped_recently(p) {
            fatal(func, "double free of mapped block (already unmapped)", p);
        }
        fatal(func, "invalid pointer (not allocated by my_alloc)", p)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn reject_header(&self, p: usize, h: u64, func: &str) -> ! {
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
    pub(super) fn locate(&self, p: usize) -> Located {
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

    /// Whether the address lies in the span of the memory of the heaps of this heap's source
    /// (for decoded link checks).
    #[inline(always)]
    pub fn plausible(&self, p: usize) -> bool {
        self.source.pages().plausible(p, ALIGNMENT)
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
    pub(super) fn is_quick_of(&self, p: usize, c: usize) -> bool {
        if !self.plausible(p) || !self.owns(p - HEADER) {
            return false;
        }
        // SAFETY: the header's page belongs to the heap.
        let h = unsafe { block::load(p - HEADER) };
        block::is_sealed(p - HEADER, h, self.secret()) && block::state_of(h) == QUICK && quick_size_fits(block::size_of(h), c)
    }
}
