//! The heap profile (`MY_ALLOC_PROFILE=FILE`): samples of bytes in use, from the OS and resident
//! over time, and requests per size class at exit, as text lines for `my_alloc report`.
//!
//! Low cost by construction: samples are taken only on slow paths (cache misses, big blocks),
//! at most one per `SAMPLE_MS`, each one `pread` of /proc/self/statm and one `write` of a line
//! built on the stack. Nothing goes through the heap being measured, and nothing uses stdio.
//!
//! Format (version 1):
//! ```text
//! my_alloc-profile 1
//! program <path of the executable>
//! S <t_ms> <in_use_bytes> <heap_bytes_from_os> <resident_bytes>
//! C <class_index> <class_block_size_bytes, 0 for mapped blocks> <requests>
//! E <t_ms>
//! ```

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::config::{NUM_CLASSES, PAGE};
use crate::diag::Line;
use crate::global::arenas;
use crate::{options, os};
use crate::size_class::class_size;
use crate::stats::{self, MAPPED_ROW};

/// At most one sample per this many milliseconds.
const SAMPLE_MS: u64 = 10;

/// The profile's file descriptor (-1: not profiling), and /proc/self/statm's.
static FD: AtomicI32 = AtomicI32::new(-1);
static STATM: AtomicI32 = AtomicI32::new(-1);
/// When profiling started, and when the last sample was taken (monotonic ms).
static START_MS: AtomicU64 = AtomicU64::new(0);
static LAST_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    os::clock_ms(false)
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
    let now = now_ms();
    START_MS.store(now, Ordering::Relaxed);
    FD.store(fd, Ordering::Release);
    sample(fd, now);
    true
}

/// Takes a sample if profiling and none was taken in the last `SAMPLE_MS` (slow paths call this).
#[inline]
pub fn maybe_sample() {
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        sample_if_due(fd);
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
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd < 0 {
        return;
    }
    sample(fd, now_ms());
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
}
