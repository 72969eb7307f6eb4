//! The page map: one bit per 4 KiB page of the address space, set for every page the heap owns.
//!
//! `free` and `realloc` receive pointers from the user. Before reading the header in front of a
//! pointer, the allocator must know that the header's page is its own: a stack address, a global
//! or a wild pointer would otherwise be read (and could fault) rather than diagnosed.
//!
//! Two levels: a root of `ROOT_LEN` leaf pointers (one per GiB of the 47-bit user address space,
//! 1 MiB of address space of which only touched pages cost memory), and leaves of one bit per page
//! (32 KiB each), allocated on first use and never freed. Readers take no lock; bits are set and
//! cleared with atomic OR/AND so that neighbouring mappings sharing a word never lose updates.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::config::PAGE;
use crate::source::Source;

const PAGE_SHIFT: u32 = PAGE.trailing_zeros();
/// User-space addresses on x86-64 and aarch64 (4-level page tables) are below 2^47.
const ADDRESS_BITS: u32 = 47;
/// Each leaf covers 2^30 bytes.
const LEAF_SHIFT: u32 = 30;
const ROOT_LEN: usize = 1 << (ADDRESS_BITS - LEAF_SHIFT);
const PAGES_PER_LEAF: usize = 1 << (LEAF_SHIFT - PAGE_SHIFT);
const LEAF_WORDS: usize = PAGES_PER_LEAF / 64;
pub(crate) const ROOT_BYTES: usize = ROOT_LEN * core::mem::size_of::<usize>();
pub(crate) const LEAF_BYTES: usize = LEAF_WORDS * 8;

type Leaf = [AtomicU64; LEAF_WORDS];
type Root = [AtomicPtr<Leaf>; ROOT_LEN];

/// Which pages belong to a heap.
pub struct PageMap {
    root: AtomicPtr<Root>,
}

impl PageMap {
    /// An empty map; the root is mapped on the first `mark`.
    pub const fn new() -> Self {
        PageMap { root: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Whether the page holding `addr` is marked.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        if addr >> ADDRESS_BITS != 0 {
            return false;
        }
        let root = self.root.load(Ordering::Acquire);
        if root.is_null() {
            return false;
        }
        // SAFETY: the root, once published, is a live, zero-initialised array of ROOT_LEN slots.
        let leaf = unsafe { (*root)[addr >> LEAF_SHIFT].load(Ordering::Acquire) };
        if leaf.is_null() {
            return false;
        }
        let page = (addr >> PAGE_SHIFT) & (PAGES_PER_LEAF - 1);
        // SAFETY: a published leaf is a live array of LEAF_WORDS words; page / 64 < LEAF_WORDS.
        let word = unsafe { (*leaf)[page / 64].load(Ordering::Relaxed) };
        word & (1 << (page % 64)) != 0
    }

    /// Marks every page of `[start, start + len)`. Fails only if the source cannot provide the
    /// map's own memory.
    pub fn mark<S: Source>(&self, source: &S, start: usize, len: usize) -> bool {
        self.update(Some(source), start, len, true)
    }

    /// Unmarks every page of `[start, start + len)`.
    pub fn clear(&self, start: usize, len: usize) {
        self.update(None::<&NoSource>, start, len, false);
    }

    fn update<S: Source>(&self, source: Option<&S>, start: usize, len: usize, set: bool) -> bool {
        if len == 0 {
            return true;
        }
        let (first, last) = (start >> PAGE_SHIFT, (start + len - 1) >> PAGE_SHIFT);
        if (last << PAGE_SHIFT) >> ADDRESS_BITS != 0 {
            return false;
        }
        let Some(root) = self.root_or_create(source) else { return false };
        let mut page = first;
        while page <= last {
            let leaf_index = page / PAGES_PER_LEAF;
            // SAFETY: leaf_index < ROOT_LEN because the address is below 2^47.
            let slot = unsafe { &(*root)[leaf_index] };
            let Some(leaf) = Self::leaf_or_create(slot, source) else { return false };
            let leaf_end = (leaf_index + 1) * PAGES_PER_LEAF - 1;
            let stop = if last < leaf_end { last } else { leaf_end };
            while page <= stop {
                let bit = page % PAGES_PER_LEAF;
                let run = (64 - bit % 64).min(stop - page + 1);
                let mask = if run == 64 { u64::MAX } else { ((1u64 << run) - 1) << (bit % 64) };
                // SAFETY: bit / 64 < LEAF_WORDS; the leaf is live.
                let w = unsafe { &(*leaf)[bit / 64] };
                if set {
                    w.fetch_or(mask, Ordering::Release);
                } else {
                    w.fetch_and(!mask, Ordering::Release);
                }
                page += run;
            }
        }
        true
    }

    fn root_or_create<S: Source>(&self, source: Option<&S>) -> Option<*mut Root> {
        let root = self.root.load(Ordering::Acquire);
        if !root.is_null() {
            return Some(root);
        }
        let fresh = source?.map(ROOT_BYTES)? as *mut Root;
        match self.root.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                source?.unmap(fresh as usize, ROOT_BYTES);
                Some(winner)
            }
        }
    }

    fn leaf_or_create<S: Source>(slot: &AtomicPtr<Leaf>, source: Option<&S>) -> Option<*mut Leaf> {
        let leaf = slot.load(Ordering::Acquire);
        if !leaf.is_null() {
            return Some(leaf);
        }
        let fresh = source?.map(LEAF_BYTES)? as *mut Leaf;
        match slot.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                source?.unmap(fresh as usize, LEAF_BYTES);
                Some(winner)
            }
        }
    }
}

impl Default for PageMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Stands in for a source when clearing, which never allocates.
struct NoSource;
// SAFETY: it never hands out memory.
unsafe impl Source for NoSource {
    fn grow(&self, _: usize) -> Option<crate::source::Region> {
        None
    }
    fn shrink(&self, _: crate::source::Region, _: usize) -> bool {
        false
    }
    fn map(&self, _: usize) -> Option<usize> {
        None
    }
    fn unmap(&self, _: usize, _: usize) {}
}
