//! The process-wide heap, and what happens around `main`: start-up, `fork`, exit.
//!
//! Nothing here is needed before the first `malloc`: the heap is a constant-initialised static
//! and draws its secret on first use, and the options are read by the first slow path that runs.
//! The constructor registers the fork handlers (which must exist before any fork) and the exit
//! statistics; malloc calls made by ld.so and other constructors before it work the same.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::heap::Heap;
use crate::os::OsSource;
use crate::{options, profile, stats, tcache};

/// The heap behind every exported function.
pub static HEAP: Heap<OsSource> = Heap::new(OsSource::new(), 0);

extern "C" {
    static environ: *const *const libc::c_char;
}

/// The environment's entries (`NAME=value`), walked through `environ` directly: `getenv` is not
/// safe to call while the C runtime is still starting. `None` before the environment exists.
pub fn environment() -> Option<impl Iterator<Item = &'static [u8]>> {
    // SAFETY: environ is null or a null-terminated array of NUL-terminated strings, which lives
    // as long as the process; it is only read.
    let first = unsafe { environ };
    if first.is_null() {
        return None;
    }
    let mut e = first;
    Some(core::iter::from_fn(move || {
        // SAFETY: as above; the walk stops at the terminating null entry.
        unsafe {
            if (*e).is_null() {
                return None;
            }
            let s = core::ffi::CStr::from_ptr(*e).to_bytes();
            e = e.add(1);
            Some(s)
        }
    }))
}

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

extern "C" fn fork_prepare() {
    tcache::lock_for_fork();
    HEAP.lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks in this thread.
    unsafe {
        HEAP.unlock_after_fork();
        tcache::unlock_after_fork();
    }
}

extern "C" fn fork_child() {
    // SAFETY: the child has one thread, this one; it took the locks before forking.
    unsafe {
        HEAP.unlock_after_fork();
        tcache::unlock_after_fork();
    }
    profile::forget_in_child();
}

/// Where the exit statistics go: a private copy of stderr taken at start-up, because programs
/// may close their stderr before our exit handler runs (coreutils do).
static STATS_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

extern "C" fn print_stats_at_exit() {
    stats::print_summary(STATS_FD.load(Ordering::Relaxed));
}

extern "C" fn finish_profile_at_exit() {
    profile::finish();
}

/// Runs when the library is loaded (before `main` when preloaded or linked).
#[ctor::ctor(unsafe)]
fn init() {
    // SAFETY: registering handlers has no preconditions; they only take and release our locks.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    ensure_initialised();
    // Exit handlers are registered here, not inside malloc: atexit takes a libc lock.
    if profile::start() {
        // SAFETY: a plain function with the expected signature.
        unsafe { libc::atexit(finish_profile_at_exit) };
    }
    if options::STATS.load(Ordering::Relaxed) {
        // SAFETY: duplicates our own stderr descriptor (close-on-exec, so programs we exec do not
        // inherit it).
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if fd >= 0 {
            STATS_FD.store(fd, Ordering::Relaxed);
        }
        // SAFETY: as above. Registered last, so it runs first: the table precedes the profile's
        // end (both read the same counters).
        unsafe { libc::atexit(print_stats_at_exit) };
    }
}
