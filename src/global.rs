//! The process-wide heap, and the options applied to it.
//!
//! Nothing here is needed before the first `malloc`: the heap is a constant-initialised static
//! and draws its secret on first use, and the options are read by the first slow path that runs
//! (or by the constructor, whichever comes first).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::heap::Heap;
use crate::options;
use crate::os::OsSource;

/// The heap behind every exported function.
pub static HEAP: Heap<OsSource> = Heap::new(OsSource::new(), 0);

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Reads the options and applies them, once. Called from slow paths (a thread's first
/// allocation, cache misses) and from the constructor, so it costs the hot paths nothing.
#[inline]
pub fn ensure_initialised() {
    if !INITIALISED.load(Ordering::Acquire) {
        initialise();
    }
}

#[cold]
fn initialise() {
    options::ensure_read();
    if !options::is_read() {
        return; // the environment is not there yet: retry on a later call
    }
    HEAP.tune(
        options::MMAP.load(Ordering::Relaxed),
        options::MMAP_FIXED.load(Ordering::Relaxed),
        options::TRIM.load(Ordering::Relaxed),
        options::DECAY_MS.load(Ordering::Relaxed) as u64,
    );
    INITIALISED.store(true, Ordering::Release);
}
