//! The heap profile (`MY_ALLOC_PROFILE=FILE`): samples of bytes in use, from the OS and resident
//! over time, requests per size class at exit, and the call stacks of sampled allocations, as
//! text lines for `my_alloc report`.
//!
//! Low cost by construction: memory samples are taken only on slow paths (cache misses, big
//! blocks), at most one per `SAMPLE_MS`, each one `pread` of /proc/self/statm and one `write` of
//! a line built on the stack. Call stacks are taken for about one allocation per
//! `MY_ALLOC_PROFILE_RATE` bytes (`sampler`), unwound by `unwind`, and buffered with the
//! frees of their blocks (`events`). Nothing goes through the heap being measured, and nothing
//! uses stdio.
//!
//! Format (version 1; readers ignore kinds they do not know):
//! ```text
//! my_alloc-profile 1
//! program <path of the executable>
//! R <mean_bytes>                        the sampling interval of call stacks (none: not recorded)
//! S <t_ms> <in_use_bytes> <heap_bytes_from_os> <resident_bytes>
//! K <stack_id> <pc_hex>...              a call stack, innermost first, before its first use
//! A <t_ms> <size> <stack_id> <addr_hex> a sampled allocation of <size> requested bytes
//! F <t_ms> <addr_hex>                   the free of the sampled block at <addr>
//! Z <t_ms> <old_hex> <new_hex> <size>   the sampled block at <old> resized in place: now at <new>,
//!                                       <size> requested bytes, the same allocation and stack
//! M <start_hex> <end_hex> <offset_hex> <path>   an executable file mapping
//! P <t_ms>                              a snapshot: what is live here is "live now"
//! C <class_index> <class_block_size_bytes, 0 for mapped blocks> <requests>
//! E <t_ms>
//! ```
//! K, A, F, Z, M and P lines are in the order their events happened; S lines are written directly
//! and may come before buffered events of an earlier time.

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::block::{self, FLIP_SAMPLED, HEADER, SAMPLED};
use crate::config::{NUM_CLASSES, PAGE, THREAD_SAFE};
use crate::diag::Line;
use crate::global::arenas;
use crate::{options, os, unwind};
use crate::size_class::class_size;
use crate::stats::{self, MAPPED_ROW};

mod events;
pub mod sampler;

pub use events::snapshot;
pub use sampler::tick;

/// At most one sample per this many milliseconds.
const SAMPLE_MS: u64 = 10;

/// The profile's file descriptor (-1: not profiling), and /proc/self/statm's.
static FD: AtomicI32 = AtomicI32::new(-1);
static STATM: AtomicI32 = AtomicI32::new(-1);
/// When profiling started, and when the last sample was taken (monotonic ms).
static START_MS: AtomicU64 = AtomicU64::new(0);
static LAST_MS: AtomicU64 = AtomicU64::new(0);

/// The profile's clock: the kernel's tick-grained one (a few ms), which is cheaper to read on
/// every slow path than the precise clock and fine enough for samples `SAMPLE_MS` apart.
fn now_ms() -> u64 {
    os::clock_ms(true)
}

/// Milliseconds since profiling started.
fn millis() -> u64 {
    now_ms().saturating_sub(START_MS.load(Ordering::Relaxed))
}

/// The free (or realloc) of the live block `p`, header `h`, is about to happen: if the profiler
/// sampled it, records the free and clears the mark. Returns the header as it now is.
#[inline(always)]
pub fn unsample(p: usize, h: u64) -> u64 {
    if h & SAMPLED == 0 {
        return h;
    }
    unsample_slow(p, h)
}

/// Records the allocation `p` of `n` bytes that the clock picked, and marks its block so that its
/// free is recorded too.
fn record(p: usize, n: usize) {
    // SAFETY: p is a live block the caller has just allocated; its header precedes it.
    let h = unsafe { block::load(p - HEADER) };
    if events::record_alloc(p, n, h) {
        // SAFETY: as above; the allocating thread owns the header's high half.
        unsafe { block::flip_state(p - HEADER, FLIP_SAMPLED) };
    }
}

/// The live block `p` (header `h` before) was resized in place to `q`, `n` bytes, from `old`
/// usable bytes: a sampled block stays sampled at its new size (the core may have rewritten its
/// header without the mark); another counts only the bytes it grew by on the clock, so that a
/// string grown a few bytes at a time is not counted whole at every step.
pub fn note_resized(p: usize, h: u64, q: usize, n: usize, old: usize) {
    if h & SAMPLED == 0 {
        sampler::note_growth(q, n, n.saturating_sub(old));
        return;
    }
    // SAFETY: q is the live block just resized; its header precedes it, and this thread, which
    // resized it, owns the header's high half.
    let hq = unsafe { block::load(q - HEADER) };
    let hq = if hq & SAMPLED == 0 {
        // SAFETY: as above.
        unsafe { block::flip_state(q - HEADER, FLIP_SAMPLED) };
        hq ^ FLIP_SAMPLED
    } else {
        hq
    };
    // A block grown a little at a time is followed in steps of about an eighth of its size, not
    // at every resize: the profile lags its growth by less than that.
    if q != p || eighths(block::size_of(hq)) != eighths(block::size_of(h)) {
        events::record_resize(p, h, q, n, hq);
    }
}

/// `size` on a scale of about 9% steps: its highest bit and the three below.
fn eighths(size: usize) -> (u32, usize) {
    let top = usize::BITS - 1 - (size | 1).leading_zeros();
    (top, (size >> top.saturating_sub(3)) & 0b111)
}

#[cold]
#[inline(never)]
fn unsample_slow(p: usize, h: u64) -> u64 {
    events::record_free(p, h);
    // SAFETY: p is a live block its caller is freeing, so it owns the header's high half.
    unsafe { block::flip_state(p - HEADER, FLIP_SAMPLED) };
    h ^ FLIP_SAMPLED
}

extern "C" fn snapshot_on_signal(_sig: i32) {
    snapshot();
}

/// Opens the profile named by `MY_ALLOC_PROFILE`, if any. From the constructor only: opening a
/// file is fine there, and the exit handler that finishes the profile is registered there too.
/// Returns whether profiling started.
pub fn start() -> bool {
    let mut path = [0u8; 256];
    if options::PROFILE_PATH.copy_to(&mut path) == 0 {
        return false;
    }
    // Programs the profiled one starts inherit MY_ALLOC_PROFILE: the first process to lock the
    // file owns it (and empties it); the others leave it alone.
    let Some(fd) = os::open_append(&path) else {
        let mut l = Line::new();
        l.str("my_alloc: cannot open the profile file, not profiling");
        l.write_to(2);
        return false;
    };
    if !os::lock_and_truncate(fd) {
        os::close(fd);
        return false;
    }
    STATM.store(os::open_read(c"/proc/self/statm").unwrap_or(-1), Ordering::Relaxed);
    let mut l = Line::new();
    l.str("my_alloc-profile 1");
    l.write_to(fd);
    let mut exe = [0u8; 200];
    let n = os::read_link(c"/proc/self/exe", &mut exe);
    if n > 0 {
        let mut l = Line::new();
        l.str("program ").str(core::str::from_utf8(&exe[..n]).unwrap_or("?"));
        l.write_to(fd);
    }
    let rate = options::PROFILE_RATE_BYTES.load(Ordering::Relaxed);
    if rate > 0 {
        let mut l = Line::new();
        l.str("R ").dec(rate as u64);
        l.write_to(fd);
    }
    let now = now_ms();
    START_MS.store(now, Ordering::Relaxed);
    FD.store(fd, Ordering::Release);
    sample(fd, now);
    if rate > 0 {
        unwind::prepare();
        events::start(fd);
        sampler::restart_this_thread();
        let sig = options::PROFILE_SIGNAL.load(Ordering::Relaxed);
        // Without locks (THREAD_SAFE = false), a handler could not tell a busy buffer from a free one.
        if sig != 0 && THREAD_SAFE && !os::on_signal(sig, snapshot_on_signal) {
            let mut l = Line::new();
            l.str("my_alloc: cannot catch signal ").dec(sig as u64).str(" for profile snapshots");
            l.write_to(2);
        }
    }
    true
}

/// Takes a sample if profiling and none was taken in the last `SAMPLE_MS` (slow paths call this).
#[inline]
pub fn maybe_sample() {
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        sample_if_due(fd);
        events::snapshot_if_pending();
    }
}

/// Takes a sample now, if profiling; returns whether it is.
pub fn sample_now() -> bool {
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        sample(fd, now_ms());
    }
    fd >= 0
}

#[cold]
fn sample_if_due(fd: i32) {
    let now = now_ms();
    let last = LAST_MS.load(Ordering::Relaxed);
    if now < last + SAMPLE_MS || LAST_MS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return; // not due, or another thread is taking this one
    }
    sample(fd, now);
}

fn resident_bytes() -> u64 {
    let fd = STATM.load(Ordering::Relaxed);
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 128];
    let n = os::read_at(fd, &mut buf, 0);
    if n == 0 {
        return 0;
    }
    // "size resident shared ...": the second number, in pages.
    let mut fields = buf[..n].split(|&b| b == b' ');
    let _size = fields.next();
    let resident = fields.next().unwrap_or(b"0");
    resident.iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |v, &d| v * 10 + (d - b'0') as u64) * PAGE as u64
}

fn sample(fd: i32, now: u64) {
    let (mut os, mut in_use) = (0, 0);
    for heap in arenas() {
        let c = &heap.counters;
        let o = c.os_bytes.load(Ordering::Relaxed);
        os += o;
        in_use += o.saturating_sub(c.free_bytes.load(Ordering::Relaxed)).saturating_sub(heap.quick_bytes());
    }
    let mut l = Line::new();
    l.str("S ").dec(now.saturating_sub(START_MS.load(Ordering::Relaxed)));
    l.str(" ").dec(in_use as u64).str(" ").dec(os as u64).str(" ").dec(resident_bytes());
    l.write_to(fd);
}

/// Writes the final sample, the requests per size class and the end marker (at exit).
pub fn finish() {
    let (live, live_bytes) = events::finish();
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd < 0 {
        return;
    }
    sample(fd, now_ms());
    if live > 0 {
        let mut path = [0u8; 256];
        let n = options::PROFILE_PATH.copy_to(&mut path);
        let mut l = Line::new();
        l.str("my_alloc: ").dec(live).str(" sampled allocation").str(if live == 1 { "" } else { "s" });
        l.str(" (~").bytes(live_bytes).str(") still live at exit; 'my_alloc report --leaks ");
        l.str(core::str::from_utf8(&path[..n]).unwrap_or("FILE")).str("' shows where from");
        l.write_to(2);
    }
    let s = stats::summary();
    for (i, row) in s.rows.iter().enumerate() {
        if row.requests == 0 {
            continue;
        }
        let size = if i == MAPPED_ROW {
            0
        } else if i == NUM_CLASSES - 1 {
            class_size(i - 1) as u64 + 1
        } else {
            class_size(i) as u64
        };
        let mut l = Line::new();
        l.str("C ").dec(i as u64).str(" ").dec(size).str(" ").dec(row.requests);
        l.write_to(fd);
    }
    let mut l = Line::new();
    l.str("E ").dec(now_ms().saturating_sub(START_MS.load(Ordering::Relaxed)));
    l.write_to(fd);
    // The descriptors stay open until the process ends: another thread may still be taking a
    // sample with them, and a closed number could be reused for someone else's file.
}

/// In a fork child: stop profiling (the parent owns the file; the child's samples would
/// interleave with its own).
pub fn forget_in_child() {
    FD.store(-1, Ordering::Relaxed);
    events::forget_in_child();
}
