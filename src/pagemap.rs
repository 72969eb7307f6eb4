//! The page map: for every 4 KiB page of the address space, which heap (arena) owns it, if any.
//!
//! `free` and `realloc` receive pointers from the user. Before reading the header in front of a
//! pointer, the allocator must know that the header's page is its own: a stack address, a global
//! or a wild pointer would otherwise be read (and could fault) rather than diagnosed. And with
//! several heaps, a block freed by a thread of another heap must go back to the heap that owns it.
//!
//! Two levels: a root of `ROOT_LEN` leaf pointers (one per GiB of the 47-bit user address space,
//! 1 MiB of address space of which only touched pages cost memory), and leaves of one byte per
//! page (256 KiB of address space each, touched only where the heaps have pages), allocated on
//! first use and never freed. A byte holds the owner's tag (0: not ours). Readers take no lock;
//! a page is marked and cleared only by the heap that obtains or gives back its memory.
//!
//! The map also keeps the span of every page ever marked: decoded free-list links must fall
//! inside it, a cheap plausibility test that does not need the owner.

use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::config::PAGE;

const PAGE_SHIFT: u32 = PAGE.trailing_zeros();
/// User-space addresses on x86-64 and aarch64 (4-level page tables) are below 2^47.
const ADDRESS_BITS: u32 = 47;
/// Each leaf covers 2^30 bytes.
const LEAF_SHIFT: u32 = 30;
const ROOT_LEN: usize = 1 << (ADDRESS_BITS - LEAF_SHIFT);
const PAGES_PER_LEAF: usize = 1 << (LEAF_SHIFT - PAGE_SHIFT);
pub(crate) const ROOT_BYTES: usize = ROOT_LEN * core::mem::size_of::<usize>();
pub(crate) const LEAF_BYTES: usize = PAGES_PER_LEAF;

type Leaf = [AtomicU8; PAGES_PER_LEAF];
type Root = [AtomicPtr<Leaf>; ROOT_LEN];

/// The owner tag of pages no heap owns.
pub const NO_OWNER: u8 = 0;

/// Where the map's own memory comes from (zero-filled pages, given back only if never used).
pub trait MapMemory {
    /// A fresh zero-filled mapping of `len` bytes.
    fn map_pages(&self, len: usize) -> Option<usize>;
    /// Gives back a mapping from `map_pages`.
    fn unmap_pages(&self, addr: usize, len: usize);
}

/// Which pages belong to which heap.
pub struct PageMap {
    root: AtomicPtr<Root>,
    /// Lowest and highest address of any page ever marked.
    lo: AtomicUsize,
    hi: AtomicUsize,
}

impl PageMap {
    /// An empty map; the root is mapped on the first `mark`.
    pub const fn new() -> Self {
        PageMap { root: AtomicPtr::new(core::ptr::null_mut()), lo: AtomicUsize::new(usize::MAX), hi: AtomicUsize::new(0) }
    }

    /// The tag of the heap owning the page that holds `addr` (`NO_OWNER` if none).
    #[inline(always)]
    pub fn owner(&self, addr: usize) -> u8 {
        if addr >> ADDRESS_BITS != 0 {
            return NO_OWNER;
        }
        let root = self.root.load(Ordering::Acquire);
        if root.is_null() {
            return NO_OWNER;
        }
        // SAFETY: the root, once published, is a live, zero-initialised array of ROOT_LEN slots.
        let leaf = unsafe { (*root)[addr >> LEAF_SHIFT].load(Ordering::Acquire) };
        if leaf.is_null() {
            return NO_OWNER;
        }
        // SAFETY: a published leaf is a live array of PAGES_PER_LEAF bytes.
        unsafe { (*leaf)[(addr >> PAGE_SHIFT) & (PAGES_PER_LEAF - 1)].load(Ordering::Acquire) }
    }

    /// Whether any heap owns the page holding `addr`.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        self.owner(addr) != NO_OWNER
    }

    /// Whether `p` is aligned to `align` and lies in the span of the pages ever marked.
    #[inline(always)]
    pub fn plausible(&self, p: usize, align: usize) -> bool {
        // lo only falls and hi only rises, so any pair of loads describes a span that covers every
        // block another thread could have linked before we read the link.
        let lo = self.lo.load(Ordering::Relaxed);
        p & (align - 1) == 0 && p.wrapping_sub(lo) < self.hi.load(Ordering::Relaxed).wrapping_sub(lo)
    }

    /// Marks every page of `[start, start + len)` as owned by `owner` (not `NO_OWNER`). Fails
    /// only if `memory` cannot provide the map's own memory.
    pub fn mark(&self, memory: &impl MapMemory, start: usize, len: usize, owner: u8) -> bool {
        debug_assert!(owner != NO_OWNER);
        if !self.update(Some(memory), start, len, owner) {
            return false;
        }
        self.lo.fetch_min(start, Ordering::Relaxed);
        self.hi.fetch_max(start + len, Ordering::Relaxed);
        true
    }

    /// Unmarks every page of `[start, start + len)`.
    pub fn clear(&self, start: usize, len: usize) {
        self.update(None::<&NoMemory>, start, len, NO_OWNER);
    }

    fn update<M: MapMemory>(&self, memory: Option<&M>, start: usize, len: usize, owner: u8) -> bool {
        if len == 0 {
            return true;
        }
        let (first, last) = (start >> PAGE_SHIFT, (start + len - 1) >> PAGE_SHIFT);
        if (last << PAGE_SHIFT) >> ADDRESS_BITS != 0 {
            return false;
        }
        let Some(root) = self.root_or_create(memory) else { return false };
        let mut page = first;
        while page <= last {
            let leaf_index = page / PAGES_PER_LEAF;
            // SAFETY: leaf_index < ROOT_LEN because the address is below 2^47.
            let slot = unsafe { &(*root)[leaf_index] };
            let Some(leaf) = Self::leaf_or_create(slot, memory) else { return false };
            let stop = last.min((leaf_index + 1) * PAGES_PER_LEAF - 1);
            while page <= stop {
                // SAFETY: the index is below PAGES_PER_LEAF; the leaf is live.
                unsafe { (*leaf)[page % PAGES_PER_LEAF].store(owner, Ordering::Release) };
                page += 1;
            }
        }
        true
    }

    fn root_or_create<M: MapMemory>(&self, memory: Option<&M>) -> Option<*mut Root> {
        let root = self.root.load(Ordering::Acquire);
        if !root.is_null() {
            return Some(root);
        }
        let fresh = memory?.map_pages(ROOT_BYTES)? as *mut Root;
        match self.root.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                memory?.unmap_pages(fresh as usize, ROOT_BYTES);
                Some(winner)
            }
        }
    }

    fn leaf_or_create<M: MapMemory>(slot: &AtomicPtr<Leaf>, memory: Option<&M>) -> Option<*mut Leaf> {
        let leaf = slot.load(Ordering::Acquire);
        if !leaf.is_null() {
            return Some(leaf);
        }
        let fresh = memory?.map_pages(LEAF_BYTES)? as *mut Leaf;
        match slot.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                memory?.unmap_pages(fresh as usize, LEAF_BYTES);
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

/// Stands in for the map's memory when clearing, which never allocates.
struct NoMemory;
impl MapMemory for NoMemory {
    fn map_pages(&self, _: usize) -> Option<usize> {
        None
    }
    fn unmap_pages(&self, _: usize, _: usize) {}
}
