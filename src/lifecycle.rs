//! What happens around `main`: the constructor, `fork`, and exit.
//!
//! The constructor registers the fork handlers (which must exist before any fork) and the exit
//! handlers, and opens the profile; malloc calls made by ld.so and other constructors before it
//! work the same (see `global.rs`). Exit handlers are registered here, not inside malloc:
//! `atexit` takes a libc lock.

use core::sync::atomic::{AtomicI32, Ordering};

use crate::global::{arenas, budget_check_in_child, ensure_initialised};
use crate::{checked, guard, options, os, profile, stats, thread, unwind};

// Every lock of the allocator is held across `fork`, taken in the one order they nest: the guarded
// pool's (which is never held while another is taken), checking mode's quarantine (held while a
// block goes on to the main heap), the thread pool's (which activates arenas), then each arena's,
// in index order.

extern "C" fn fork_prepare() {
    guard::lock_for_fork();
    checked::lock_for_fork();
    thread::lock_for_fork();
    for a in arenas() {
        a.lock_for_fork();
    }
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks in this thread; no arena was activated since (that
    // takes the pool's lock).
    unsafe {
        for a in arenas().iter().rev() {
            a.unlock_after_fork();
        }
        thread::unlock_after_fork();
        checked::unlock_after_fork();
        guard::unlock_after_fork();
    }
}

extern "C" fn fork_child() {
    // SAFETY: the child has one thread, this one; it took the locks before forking.
    unsafe {
        for a in arenas().iter().rev() {
            a.unlock_after_fork();
        }
        thread::unlock_in_child();
        checked::unlock_after_fork();
        guard::unlock_after_fork();
    }
    budget_check_in_child();
    profile::forget_in_child();
}

/// Where the exit statistics go: a private copy of stderr taken at start-up, because programs
/// may close their stderr before our exit handler runs (coreutils do).
static STATS_FD: AtomicI32 = AtomicI32::new(2);

extern "C" fn print_stats_at_exit() {
    stats::print_summary(STATS_FD.load(Ordering::Relaxed));
}

extern "C" fn scan_quarantine_at_exit() {
    checked::scan_at_exit();
}

extern "C" fn finish_profile_at_exit() {
    profile::finish();
}

/// Runs when the library is loaded (before `main` when preloaded or linked).
#[ctor::ctor(unsafe)]
fn init() {
    os::at_fork(fork_prepare, fork_parent, fork_child);
    ensure_initialised();
    // Guarded blocks record their stacks: the unwinder is made ready here, not in some malloc.
    // Their fault handler goes in now too, so that a handler the program installs later finds
    // it (and may chain to it) whenever the first guarded block comes.
    if guard::rate().is_some() || guard::all() {
        unwind::prepare();
        guard::fault::ensure_installed();
    }
    if checked::enabled() {
        os::at_exit(scan_quarantine_at_exit);
    }
    if profile::start() {
        os::at_exit(finish_profile_at_exit);
    }
    if options::STATS.load(Ordering::Relaxed) {
        if let Some(fd) = os::dup_cloexec(2) {
            STATS_FD.store(fd, Ordering::Relaxed);
        }
        // Registered last, so it runs first: the table precedes the profile's end (both read
        // the same counters).
        os::at_exit(print_stats_at_exit);
    }
}
