//! The process-wide heap, and what happens around `main`: start-up, `fork`, exit.
//!
//! Nothing here is needed before the first `malloc`: the heap is a constant-initialised static
//! and draws its secret on first use. The constructor only registers the fork handlers (which
//! must exist before any fork) and reads the options; malloc calls made by ld.so and other
//! constructors before it work the same.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::heap::Heap;
use crate::os::OsSource;
use crate::{stats, tcache};

/// The heap behind every exported function.
pub static HEAP: Heap<OsSource> = Heap::new(OsSource::new(), 0);

/// Whether `MY_ALLOC_STATS` asked for statistics at exit.
pub static STATS_AT_EXIT: AtomicBool = AtomicBool::new(false);

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Looks up `name` in the environment by walking `environ` directly: `getenv` is not safe to call
/// while the C runtime is still starting.
pub fn env_var(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: environ is either null or a null-terminated array of NUL-terminated strings that
    // lives for the whole process (we only read it).
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return None;
        }
        while !(*e).is_null() {
            let s = core::ffi::CStr::from_ptr(*e).to_bytes();
            if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
                return Some(&s[name.len() + 1..]);
            }
            e = e.add(1);
        }
    }
    None
}

fn flag(name: &[u8]) -> bool {
    matches!(env_var(name), Some(v) if !v.is_empty() && v != b"0")
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
}

extern "C" fn at_exit() {
    if STATS_AT_EXIT.load(Ordering::Relaxed) {
        stats::print_summary(2);
    }
}

/// Runs when the library is loaded (before `main` when preloaded or linked).
#[ctor::ctor(unsafe)]
fn init() {
    // SAFETY: registering handlers has no preconditions; they only take and release our locks.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    if flag(b"MY_ALLOC_STATS") {
        STATS_AT_EXIT.store(true, Ordering::Relaxed);
        // SAFETY: at_exit is a plain function with the expected signature.
        unsafe { libc::atexit(at_exit) };
    }
}
