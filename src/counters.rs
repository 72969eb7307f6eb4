//! The heap's statistics counters: atomics that any thread may read at any time, without a lock.
//!
//! The heap keeps them up to date on its slow paths (never on a thread cache's hit); `stats`
//! sums them with the thread caches' own counters for the table printed at exit.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::NUM_CLASSES;

/// Counters kept by the core, readable at any time without locks.
pub struct HeapCounters {
    /// Per size class: blocks handed out of the heap's free lists (to the program or a thread
    /// cache) and not yet back, and the highest that count reached.
    pub class_held: [AtomicUsize; NUM_CLASSES],
    /// See `class_held`.
    pub class_peak: [AtomicUsize; NUM_CLASSES],
    /// Blocks carved for a refill of class `c` that a cache may hand out as one block of `c` but
    /// that are one class bigger (`class_widened_from[c]`), and which class (`class_widened_to`):
    /// the last block of a run absorbs a sliver too small to be a block of its own, and is freed
    /// as the bigger block it is. The statistics move such allocations to the bigger class.
    pub class_widened_from: [AtomicUsize; NUM_CLASSES],
    /// See `class_widened_from`.
    pub class_widened_to: [AtomicUsize; NUM_CLASSES],
    /// Highest number of mapped blocks live at once.
    pub mapped_peak: AtomicUsize,
    /// Bytes currently obtained from the source (segments and mappings).
    pub os_bytes: AtomicUsize,
    /// Highest value `os_bytes` reached.
    pub os_peak: AtomicUsize,
    /// Bytes given back to the source over the heap's life.
    pub os_returned: AtomicUsize,
    /// Bytes in mapped (large) blocks now.
    pub mapped_bytes: AtomicUsize,
    /// Mapped blocks now.
    pub mapped_blocks: AtomicUsize,
    /// Highest number of bytes in blocks held by the program or its thread caches, sampled each
    /// time the heap hands out memory.
    pub held_peak: AtomicUsize,
    /// Bytes in the coalesced free lists, as of the last heap-lock release.
    pub free_bytes: AtomicUsize,
    /// Bytes of free blocks whose pages were given back with `purge`, over the heap's life.
    pub purged: AtomicUsize,
}

impl HeapCounters {
    /// All zero.
    pub const fn new() -> Self {
        HeapCounters {
            class_held: [const { AtomicUsize::new(0) }; NUM_CLASSES],
            class_peak: [const { AtomicUsize::new(0) }; NUM_CLASSES],
            class_widened_from: [const { AtomicUsize::new(0) }; NUM_CLASSES],
            class_widened_to: [const { AtomicUsize::new(0) }; NUM_CLASSES],
            mapped_peak: AtomicUsize::new(0),
            os_bytes: AtomicUsize::new(0),
            os_peak: AtomicUsize::new(0),
            os_returned: AtomicUsize::new(0),
            mapped_bytes: AtomicUsize::new(0),
            mapped_blocks: AtomicUsize::new(0),
            held_peak: AtomicUsize::new(0),
            free_bytes: AtomicUsize::new(0),
            purged: AtomicUsize::new(0),
        }
    }

    /// Records `n` blocks of class `c` leaving the heap's free lists (slow paths only).
    pub fn out(&self, c: usize, n: usize) {
        let held = self.class_held[c].fetch_add(n, Ordering::Relaxed) + n;
        if held > self.class_peak[c].load(Ordering::Relaxed) {
            self.class_peak[c].fetch_max(held, Ordering::Relaxed);
        }
    }

    /// Records a block carved for class `from` that goes out as a block of class `to`.
    pub fn widened(&self, from: usize, to: usize) {
        if from != to {
            self.class_widened_from[from].fetch_add(1, Ordering::Relaxed);
            self.class_widened_to[to].fetch_add(1, Ordering::Relaxed);
        }
        self.out(to, 1);
    }

    /// Takes back `widened(from, to)` for a block no cache handed out.
    pub fn unwidened(&self, from: usize, to: usize) {
        if from != to {
            let _ = self.class_widened_from[from].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
            let _ = self.class_widened_to[to].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// Records a block resized in place from class `from` to class `to`.
    pub fn moved(&self, from: usize, to: usize) {
        if from != to {
            self.back(from, 1);
            self.out(to, 1);
        }
    }

    /// Records `n` blocks of class `c` coming back (never below zero, in case a caller's count
    /// and ours disagree).
    pub fn back(&self, c: usize, n: usize) {
        let _ = self.class_held[c].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(n)));
    }
}

impl Default for HeapCounters {
    fn default() -> Self {
        Self::new()
    }
}
