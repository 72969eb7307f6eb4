//! Tests of the core over memory the test owns (`TestSource`): split and coalesce, growth
//! (`heap.rs`), memory return (`reclaim.rs`), exhaustion and misuse detection (`misuse.rs`), a
//! model-based randomized test through thread caches and the shipped `realloc` against a shadow of
//! every live block (`model.rs`), and the layering of the sources (`layers.rs`).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::block;
use crate::config::{ALIGNMENT, BLOCK_OVERHEAD, CARVE_PURGE_SHARE, GRAIN, MIN_BLOCK, MMAP_THRESHOLD, PAGE, QUICK_LIMIT, RESIDENT_SLACK_MIN, RESIDENT_SLACK_SHARE, TRIM_KEEP, TRIM_THRESHOLD};
use crate::heap::{Heap, Reallocated};
use crate::size_class::{NUM_QUICK, QUICK_MAX_REQUEST, QUICK_SIZE};
use crate::source::{Region, Source};

const SECRET: u64 = 0x5eed_0f_a110c_u64 | 1;

/// Memory for a test heap: one arena handed out front to back (so growth is contiguous unless a
/// gap is requested), mappings from the system allocator, and an optional limit to simulate
/// exhaustion.
struct TestSource {
    state: Mutex<ArenaState>,
    /// The page map of the heaps over this source.
    pages: crate::pagemap::PageMap,
}

struct ArenaState {
    base: usize,
    cap: usize,
    used: usize,
    /// Bytes of arena plus mappings that may still be handed out (usize::MAX: no limit).
    budget: usize,
    gap_next: bool,
    maps: BTreeMap<usize, usize>,
    /// The clock the heap reads for decay decisions, moved by the test.
    now_ms: u64,
    /// Bytes the heap gave back with purge (which zeroes them, as MADV_DONTNEED does), and the
    /// distinct pages.
    purged: usize,
    purged_pages: std::collections::BTreeSet<usize>,
}

impl TestSource {
    fn new(cap: usize) -> Self {
        let layout = Layout::from_size_align(cap, PAGE).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { alloc_zeroed(layout) } as usize;
        assert_ne!(base, 0);
        TestSource {
            pages: crate::pagemap::PageMap::new(),
            state: Mutex::new(ArenaState { base, cap, used: 0, budget: usize::MAX, gap_next: false, maps: BTreeMap::new(), now_ms: 0, purged: 0, purged_pages: Default::default() }),
        }
    }
    fn set_budget(&self, b: usize) {
        self.state.lock().unwrap().budget = b;
    }
    fn gap_next(&self) {
        self.state.lock().unwrap().gap_next = true;
    }
    fn advance_clock(&self, ms: u64) {
        self.state.lock().unwrap().now_ms += ms;
    }
    fn purged(&self) -> usize {
        self.state.lock().unwrap().purged
    }
    fn forget_purged(&self) {
        self.state.lock().unwrap().purged_pages.clear();
    }
    /// Distinct pages purged (since `forget_purged`) that lie below the arena's current end.
    fn purged_pages_in_arena(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.purged_pages.range(s.base..s.base + s.used).count()
    }
    /// Live mappings other than the page map's own (its root and leaves).
    fn mappings(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.maps.values().filter(|&&len| len != crate::pagemap::ROOT_BYTES && len != crate::pagemap::LEAF_BYTES).count()
    }
}

impl Drop for TestSource {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap();
        // SAFETY: allocated in new with this layout.
        unsafe { dealloc(s.base as *mut u8, Layout::from_size_align(s.cap, PAGE).unwrap()) };
        for (&a, &len) in &s.maps {
            // SAFETY: allocated in map with this layout.
            unsafe { dealloc(a as *mut u8, Layout::from_size_align(len, PAGE).unwrap()) };
        }
    }
}

// SAFETY: arena bytes are handed out once (until shrunk back) and zeroed; mappings are fresh.
unsafe impl Source for TestSource {
    fn grow(&self, len: usize) -> Option<Region> {
        let mut s = self.state.lock().unwrap();
        if len > s.budget {
            return None;
        }
        if s.gap_next {
            s.gap_next = false;
            s.used += 16 * PAGE;
        }
        if s.used + len > s.cap {
            return None;
        }
        let start = s.base + s.used;
        s.used += len;
        s.budget -= len;
        // SAFETY: arena pages, made accessible again after a shrink took them away; then zeroed
        // like fresh memory from the OS.
        unsafe {
            assert_eq!(libc::mprotect(start as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE), 0);
            std::ptr::write_bytes(start as *mut u8, 0, len);
        }
        Some(Region { start, len, from_brk: true })
    }
    fn shrink(&self, region: Region, len: usize) -> bool {
        let mut s = self.state.lock().unwrap();
        if region.start + region.len != s.base + s.used {
            return false;
        }
        s.used -= len;
        // Like memory given back to the OS, the pages can no longer be touched: a heap that reads
        // what it trimmed faults here instead of passing.
        // SAFETY: whole pages of our own arena, which nobody may use until grown again.
        assert_eq!(unsafe { libc::mprotect((s.base + s.used) as *mut libc::c_void, len, libc::PROT_NONE) }, 0);
        if s.budget != usize::MAX {
            s.budget += len;
        }
        true
    }
    fn map(&self, len: usize) -> Option<usize> {
        let mut s = self.state.lock().unwrap();
        if len > s.budget {
            return None;
        }
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(Layout::from_size_align(len, PAGE).unwrap()) } as usize;
        if p == 0 {
            return None;
        }
        if s.budget != usize::MAX {
            s.budget -= len;
        }
        s.maps.insert(p, len);
        Some(p)
    }
    fn unmap(&self, addr: usize, len: usize) {
        let mut s = self.state.lock().unwrap();
        assert_eq!(s.maps.remove(&addr), Some(len), "unmap of something never mapped");
        if s.budget != usize::MAX {
            s.budget += len;
        }
        // SAFETY: allocated in map with this layout.
        unsafe { dealloc(addr as *mut u8, Layout::from_size_align(len, PAGE).unwrap()) };
    }
    fn now_ms(&self) -> u64 {
        self.state.lock().unwrap().now_ms
    }
    fn pages(&self) -> &crate::pagemap::PageMap {
        &self.pages
    }
    fn purge(&self, addr: usize, len: usize) {
        assert_eq!(addr % PAGE, 0);
        assert_eq!(len % PAGE, 0);
        // SAFETY: the heap gives back pages of a free block it owns; they read back as zero.
        unsafe { std::ptr::write_bytes(addr as *mut u8, 0, len) };
        let mut s = self.state.lock().unwrap();
        s.purged += len;
        s.purged_pages.extend((addr..addr + len).step_by(PAGE));
    }
}

fn new_heap(cap: usize) -> Box<Heap<TestSource>> {
    Box::new(Heap::new(TestSource::new(cap), SECRET))
}

fn usable<S: Source>(h: &Heap<S>, p: usize) -> usize {
    h.usable_size(p)
}

fn fill(p: usize, n: usize, v: u8) {
    // SAFETY: the test owns n bytes at p.
    unsafe { std::ptr::write_bytes(p as *mut u8, v, n) }
}

fn holds(p: usize, n: usize, v: u8) -> bool {
    // SAFETY: the test owns n bytes at p.
    unsafe { std::slice::from_raw_parts(p as *const u8, n).iter().all(|&b| b == v) }
}

/// `realloc` with the heap itself as the place a moving block goes (what the C surface does with a
/// thread cache instead): the new address, or `None`.
fn realloc(h: &Heap<TestSource>, p: usize, n: usize) -> Option<usize> {
    let hdr = h.validate(p, "realloc");
    match h.realloc(p, hdr, n, &mut &*h)? {
        Reallocated::InPlace(q) | Reallocated::Moved(q) => Some(q),
    }
}

/// A tiny deterministic generator (xorshift64*), so that failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn size(&mut self) -> usize {
        match self.below(100) {
            0..=59 => self.below(256),
            60..=84 => 256 + self.below(4000),
            85..=96 => 4096 + self.below(60_000),
            _ => 64_000 + self.below(400_000),
        }
    }
}


mod heap;
mod layers;
mod misuse;
mod model;
mod reclaim;
