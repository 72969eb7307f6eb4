//! The process's heaps (arenas), and the options applied to them.
//!
//! Arena 0, the main heap, grows with the program break; the others with mappings of their own.
//! Each thread's cache is bound to one arena (`thread.rs`), so that threads allocating and freeing
//! their own blocks share no lock and no cache line; all arenas share the OS source's page map,
//! which names the arena that owns each page, and one secret, so that any of them can check a
//! header. Nothing here is needed before the first `malloc`: the heaps are constant-initialised
//! statics, the main one draws the secret on first use, the others are activated when a thread
//! first needs them, and the options are read by the first slow path that runs (or by the
//! constructor, whichever comes first).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::{ARENAS_PER_CPU, BUDGET_CHECK_SHARE, BUDGET_CHECK_STEP, MAX_ARENAS, RESIDENT_SLACK_MIN, RESIDENT_SLACK_SHARE};
use crate::diag::fatal;
use crate::heap::Heap;
use crate::os::OsSource;
use crate::source::Source;
use crate::{options, os};

/// The arenas: arena `i` has the page-map tag `i + 1`.
pub static ARENAS: [Heap<OsSource>; MAX_ARENAS] = {
    let mut a = [const { Heap::with_tag(OsSource::mapped(), 0, 1) }; MAX_ARENAS];
    a[0] = Heap::with_tag(OsSource::new(), 0, 1);
    let mut i = 1;
    while i < MAX_ARENAS {
        a[i] = Heap::with_tag(OsSource::mapped(), 0, i as u8 + 1);
        i += 1;
    }
    a
};

/// Arenas activated so far (`ARENAS[..ACTIVE]`); only grows.
static ACTIVE: AtomicUsize = AtomicUsize::new(1);

/// The main heap: the one threads without a cache use.
#[inline(always)]
pub fn main_heap() -> &'static Heap<OsSource> {
    &ARENAS[0]
}

/// The arenas activated so far.
#[inline]
pub fn arenas() -> &'static [Heap<OsSource>] {
    &ARENAS[..ACTIVE.load(Ordering::Acquire)]
}

/// How many arenas the process may have: `ARENAS_PER_CPU` for each CPU it may run on.
pub fn arena_limit() -> usize {
    static LIMIT: AtomicUsize = AtomicUsize::new(0);
    let l = LIMIT.load(Ordering::Relaxed);
    if l != 0 {
        return l;
    }
    let l = (os::cpu_count() * ARENAS_PER_CPU).clamp(1, MAX_ARENAS);
    LIMIT.store(l, Ordering::Relaxed);
    l
}

/// Activates arena `i` (the next one: `i == arenas().len()`), giving it the main heap's secret
/// and the options. The caller serialises activations (the thread pool's lock).
pub fn activate(i: usize) -> &'static Heap<OsSource> {
    debug_assert_eq!(i, ACTIVE.load(Ordering::Relaxed));
    let a = &ARENAS[i];
    a.share_secret(main_heap().init_secret());
    tune(a);
    ACTIVE.store(i + 1, Ordering::Release);
    a
}

/// The arena that owns the block at user pointer `p`; otherwise the misuse is diagnosed (naming
/// `func`) and the process aborts.
#[inline]
pub fn owner_of(p: usize, func: &str) -> &'static Heap<OsSource> {
    tagged_owner(p).unwrap_or_else(|| reject(p, func))
}

/// The arena the page map names as the owner of the block at user pointer `p`, if any (no
/// diagnosis: the caller falls back to `owner_of`).
#[inline]
pub fn tagged_owner(p: usize) -> Option<&'static Heap<OsSource>> {
    let tag = main_heap().source().pages().owner(p.wrapping_sub(crate::block::HEADER));
    ARENAS.get((tag as usize).wrapping_sub(1))
}

/// Diagnoses a pointer no arena owns.
#[cold]
#[inline(never)]
fn reject(p: usize, func: &str) -> ! {
    if arenas().iter().any(|a| a.unmapped_recently(p)) {
        fatal(func, "double free of mapped block (already unmapped)", p);
    }
    main_heap().reject_pointer(p, func)
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
    for a in arenas() {
        tune(a);
    }
    INITIALISED.store(true, Ordering::Release);
}

fn tune(a: &Heap<OsSource>) {
    a.tune(
        options::MMAP.load(Ordering::Relaxed),
        options::MMAP_FIXED.load(Ordering::Relaxed),
        options::TRIM.load(Ordering::Relaxed),
        options::DECAY_MS.load(Ordering::Relaxed) as u64,
    );
}

// ------------------------------------------------------------------------------------------------
// The process-wide resident budget

/// The most the program has held at once, over all arenas (sampled at each budget check).
static HELD_PEAK: AtomicUsize = AtomicUsize::new(0);
/// `os::grown_bytes()` at which the next budget check is due.
static NEXT_CHECK: AtomicUsize = AtomicUsize::new(0);

/// After a slow-path allocation: once the heaps have grown by another `BUDGET_CHECK_STEP`
/// (or a sixteenth of what they hold), checks the process's resident memory against its budget.
/// Each arena keeps its own within its own peak; this bounds their sum, which a program whose
/// threads take turns (one arena's memory freed, then another's grown) would otherwise pile up.
#[inline]
pub fn after_growth() {
    let grown = os::grown_bytes();
    let due = NEXT_CHECK.load(Ordering::Relaxed);
    if grown >= due && NEXT_CHECK.compare_exchange(due, usize::MAX, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let held = keep_process_within_budget();
        NEXT_CHECK.store(grown + BUDGET_CHECK_STEP.max(held / BUDGET_CHECK_SHARE), Ordering::Relaxed);
    }
}

/// In a fork child: a budget check the parent had under way (by a thread the child does not
/// have) must not keep the child from ever checking again.
pub fn budget_check_in_child() {
    if NEXT_CHECK.load(Ordering::Relaxed) == usize::MAX {
        NEXT_CHECK.store(0, Ordering::Relaxed);
    }
}

/// Gives back, from the arenas' free memory, whatever the arenas together keep resident beyond
/// the most the program has held plus the slack (as each arena's own budget does). Arenas whose
/// lock is busy are skipped: they are in use. Returns the bytes held now.
#[cold]
fn keep_process_within_budget() -> usize {
    let (mut held, mut resident) = (0, 0);
    for a in arenas() {
        if let Some(f) = a.footprint() {
            held += f.held;
            resident += f.resident;
        }
    }
    let peak = HELD_PEAK.fetch_max(held, Ordering::Relaxed).max(held);
    let budget = peak.saturating_add(peak / RESIDENT_SLACK_SHARE).saturating_add(RESIDENT_SLACK_MIN);
    let mut excess = resident.saturating_sub(budget);
    for a in arenas() {
        if excess == 0 {
            break;
        }
        excess = excess.saturating_sub(a.release_resident(excess));
    }
    held
}
