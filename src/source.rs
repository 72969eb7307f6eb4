//! Where the heap's memory comes from: a small trait, so that the core can run over the operating
//! system (`os::OsSource`) or over memory a test owns. Several heaps may draw from one source
//! (the process's arenas all draw from the OS): they share its page map, which says which heap
//! owns which page.

use crate::pagemap::{MapMemory, PageMap};

/// A region the heap obtained with [`Source::grow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte (page-aligned).
    pub start: usize,
    /// Length in bytes (a multiple of the page size).
    pub len: usize,
    /// Whether the region came from the program break, so that shrinking it means moving the
    /// break back rather than unmapping.
    pub from_brk: bool,
}

/// A provider of memory for the heap.
///
/// # Safety
/// Implementations must hand out zero-filled, readable and writable memory that nobody else uses
/// until it is given back, and must never hand out the same bytes twice.
pub unsafe trait Source: Sync {
    /// At least `len` (a multiple of the page size) more bytes for the heap. Regions may or may
    /// not follow the previous one; the heap checks `start` against its current end.
    fn grow(&self, len: usize) -> Option<Region>;

    /// Gives back the last `len` bytes of `region` (which ends at `region.start + region.len`).
    /// Returns false when it cannot (for example, someone else moved the break since).
    fn shrink(&self, region: Region, len: usize) -> bool;

    /// A fresh zero-filled mapping of `len` bytes (a multiple of the page size).
    fn map(&self, len: usize) -> Option<usize>;

    /// Gives back a mapping obtained from [`Source::map`] (or a page-aligned part of one).
    fn unmap(&self, addr: usize, len: usize);

    /// Resizes a mapping, moving it if needed; `None` if the source cannot.
    fn remap(&self, _addr: usize, _old_len: usize, _new_len: usize) -> Option<usize> {
        None
    }

    /// Tells the OS the pages of `[addr, addr + len)` are not needed: they may read back as zero,
    /// and stay usable.
    fn purge(&self, _addr: usize, _len: usize) {}

    /// A monotonic clock in milliseconds, for decay decisions (cheap: it is read on slow paths).
    fn now_ms(&self) -> u64 {
        0
    }

    /// The page map of every heap drawing from this source.
    fn pages(&self) -> &PageMap;
}

// SAFETY: forwards to a source that upholds the contract; heaps sharing it share its page map.
unsafe impl<T: Source> Source for &T {
    fn grow(&self, len: usize) -> Option<Region> {
        (**self).grow(len)
    }
    fn shrink(&self, region: Region, len: usize) -> bool {
        (**self).shrink(region, len)
    }
    fn map(&self, len: usize) -> Option<usize> {
        (**self).map(len)
    }
    fn unmap(&self, addr: usize, len: usize) {
        (**self).unmap(addr, len)
    }
    fn remap(&self, addr: usize, old_len: usize, new_len: usize) -> Option<usize> {
        (**self).remap(addr, old_len, new_len)
    }
    fn purge(&self, addr: usize, len: usize) {
        (**self).purge(addr, len)
    }
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn pages(&self) -> &PageMap {
        (**self).pages()
    }
}

impl<S: Source> MapMemory for S {
    fn map_pages(&self, len: usize) -> Option<usize> {
        self.map(len)
    }
    fn unmap_pages(&self, addr: usize, len: usize) {
        self.unmap(addr, len)
    }
}
