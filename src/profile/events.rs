//! The profile's event stream: sampled allocations (`A`), their frees (`F`), the call stacks
//! they name (`K`, each written once), the memory map (`M`) and snapshots (`P`). See the
//! format in `profile`'s documentation.
//!
//! Events go through one buffer under one lock, so they reach the file in the order they
//! happened; in particular a block's `F` is written before the block is released, so it precedes
//! the `A` of whoever gets the block next. The buffer is written out when full, at each snapshot
//! and at exit. The lock is the allocator's own spin lock and is never held while allocating or
//! unwinding: a stack is taken before it, on the thread's own stack.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::block;
use crate::config::PROFILE_FRAMES;
use crate::diag::{Line, Text};
use crate::os;
use crate::sync::Lock;

use crate::unwind;

use super::{millis, sampler};

/// Bytes of events held before they are written out.
const BUFFER_BYTES: usize = 64 * 1024;
/// Distinct call stacks remembered (so that each is written once); beyond that, a stack is
/// written again with every sample (the file grows, nothing is lost). A power of two.
const STACK_SLOTS: usize = 16 * 1024;
/// Probes of the stack table before it counts as full for this stack.
const MAX_PROBES: usize = 64;

/// A `K` line: the id and up to `PROFILE_FRAMES` addresses of 16 hex digits.
type StackLine = Text<{ 32 + PROFILE_FRAMES * 17 }>;

struct Events {
    buf: [u8; BUFFER_BYTES],
    len: usize,
    /// Hashes of the stacks written so far (0: empty slot) and their ids.
    hashes: [u64; STACK_SLOTS],
    ids: [u32; STACK_SLOTS],
    /// The last id given (ids start at 1). Everything starts at zero, so the buffer and the
    /// tables take no room in the library's file, nor memory until profiling touches them.
    next_id: u32,
    /// Sampled allocations live now, and the bytes they stand for (`sampler::estimate` of their
    /// block sizes): the leak summary at exit.
    live: u64,
    live_bytes: u64,
}

static EVENTS: Lock<Events> = Lock::new(Events {
    buf: [0; BUFFER_BYTES],
    len: 0,
    hashes: [0; STACK_SLOTS],
    ids: [0; STACK_SLOTS],
    next_id: 0,
    live: 0,
    live_bytes: 0,
});

/// The profile's descriptor while call stacks are recorded, else -1.
static FD: AtomicI32 = AtomicI32::new(-1);
/// A snapshot was asked for while the buffer was busy: the next event writes it.
static SNAPSHOT_PENDING: AtomicBool = AtomicBool::new(false);

/// Whether call stacks are being recorded.
#[inline(always)]
pub fn recording() -> bool {
    FD.load(Ordering::Relaxed) >= 0
}

/// Starts recording into `fd`, with the memory map as it is now.
pub fn start(fd: i32) {
    let mut ev = EVENTS.lock();
    FD.store(fd, Ordering::Release);
    ev.write_maps(fd);
}

/// Stops recording (at exit): writes the memory map and everything buffered. Returns what the
/// samples still live stand for: (allocations, bytes).
pub fn finish() -> (u64, u64) {
    let mut ev = EVENTS.lock();
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        ev.write_maps(fd);
        ev.flush(fd);
    }
    (ev.live, ev.live_bytes)
}

/// In a fork child: stop, without touching the lock (a thread of the parent may have held it).
pub fn forget_in_child() {
    FD.store(-1, Ordering::Relaxed);
}

/// Records the allocation `p` of `n` requested bytes (header `h`) with its call stack; false
/// when not recording.
pub fn record_alloc(p: usize, n: usize, h: u64) -> bool {
    if !recording() {
        return false;
    }
    let mut frames = [0usize; PROFILE_FRAMES];
    let depth = unwind::capture(&mut frames);
    let frames = &frames[..depth];
    let hash = unwind::hash(frames);
    let t = millis();
    let mut ev = EVENTS.lock();
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return false;
    }
    let id = match ev.stack_id(hash) {
        Some(id) => id,
        None => {
            let id = ev.remember(hash);
            let mut k = StackLine::new();
            k.str("K ").dec(id as u64);
            for &pc in frames {
                k.str(" ").hex_digits(pc as u64);
            }
            ev.line(fd, &mut k);
            id
        }
    };
    let mut a = Line::new();
    a.str("A ").dec(t).str(" ").dec(n as u64).str(" ").dec(id as u64).str(" ").hex_digits(p as u64);
    ev.line(fd, &mut a);
    ev.live += 1;
    ev.live_bytes += sampler::estimate(block::size_of(h), sampler::current_rate());
    ev.snapshot_if_pending(fd);
    true
}

/// If recording: writes the event line that `fill` makes (given the time in ms), updates the
/// buffer's counts with `count`, and writes a pending snapshot.
fn event(fill: impl FnOnce(&mut Line, u64), count: impl FnOnce(&mut Events)) {
    // Tested before the lock too: a fork child (which has stopped) must never wait for a lock a
    // thread of its parent held.
    if !recording() {
        return;
    }
    let t = millis();
    let mut ev = EVENTS.lock();
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let mut l = Line::new();
    fill(&mut l, t);
    ev.line(fd, &mut l);
    count(&mut ev);
    ev.snapshot_if_pending(fd);
}

/// Records the free of the sampled block `p` (header `h`, still live).
pub fn record_free(p: usize, h: u64) {
    event(
        |f, t| {
            f.str("F ").dec(t).str(" ").hex_digits(p as u64);
        },
        |ev| {
            ev.live = ev.live.saturating_sub(1);
            ev.live_bytes = ev.live_bytes.saturating_sub(sampler::estimate(block::size_of(h), sampler::current_rate()));
        },
    );
}

/// Records that the sampled block `p` (header `h`) was resized in place to `q` (header `hq`),
/// `n` requested bytes.
pub fn record_resize(p: usize, h: u64, q: usize, n: usize, hq: u64) {
    event(
        |z, t| {
            z.str("Z ").dec(t).str(" ").hex_digits(p as u64).str(" ").hex_digits(q as u64).str(" ").dec(n as u64);
        },
        |ev| {
            let rate = sampler::current_rate();
            ev.live_bytes = ev.live_bytes.saturating_sub(sampler::estimate(block::size_of(h), rate))
                + sampler::estimate(block::size_of(hq), rate);
        },
    );
}

/// Writes a snapshot now if the buffer is free, else at the next event; false when not
/// recording. Safe in a signal handler: it only tries the lock, and writes with write(2).
pub fn snapshot() -> bool {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return false;
    }
    match EVENTS.try_lock() {
        Some(mut ev) => ev.snapshot(fd),
        None => SNAPSHOT_PENDING.store(true, Ordering::Relaxed),
    }
    true
}

/// Writes a snapshot if one is pending and the buffer is free (slow paths call this).
#[inline]
pub fn snapshot_if_pending() {
    if SNAPSHOT_PENDING.load(Ordering::Relaxed) {
        let fd = FD.load(Ordering::Relaxed);
        if fd >= 0 {
            if let Some(mut ev) = EVENTS.try_lock() {
                ev.snapshot_if_pending(fd);
            }
        }
    }
}

impl Events {
    fn line<const N: usize>(&mut self, fd: i32, l: &mut Text<N>) {
        l.str("\n");
        self.append(fd, l.as_bytes());
    }

    fn append(&mut self, fd: i32, bytes: &[u8]) {
        if self.len + bytes.len() > BUFFER_BYTES {
            self.flush(fd);
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn flush(&mut self, fd: i32) {
        os::write_fd(fd, &self.buf[..self.len]);
        self.len = 0;
    }

    fn stack_id(&self, hash: u64) -> Option<u32> {
        let mut i = hash as usize & (STACK_SLOTS - 1);
        for _ in 0..MAX_PROBES {
            match self.hashes[i] {
                0 => return None,
                h if h == hash => return Some(self.ids[i]),
                _ => i = (i + 1) & (STACK_SLOTS - 1),
            }
        }
        None
    }

    /// A new id for the stack `hash`, remembered if the table has room near its slot.
    fn remember(&mut self, hash: u64) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let mut i = hash as usize & (STACK_SLOTS - 1);
        for _ in 0..MAX_PROBES {
            if self.hashes[i] == 0 {
                self.hashes[i] = hash;
                self.ids[i] = id;
                break;
            }
            i = (i + 1) & (STACK_SLOTS - 1);
        }
        id
    }

    fn write_maps(&mut self, fd: i32) {
        unwind::maps::for_each_code_mapping(|m| {
            let mut l = Text::<320>::new();
            l.str("M ").hex_digits(m.start as u64).str(" ").hex_digits(m.end as u64);
            l.str(" ").hex_digits(m.offset as u64).str(" ");
            l.str(core::str::from_utf8(m.path).unwrap_or("?"));
            self.line(fd, &mut l);
        });
    }

    fn snapshot(&mut self, fd: i32) {
        SNAPSHOT_PENDING.store(false, Ordering::Relaxed);
        self.write_maps(fd);
        let mut l = Line::new();
        l.str("P ").dec(millis());
        self.line(fd, &mut l);
        self.flush(fd);
        super::sample_now();
    }

    fn snapshot_if_pending(&mut self, fd: i32) {
        if SNAPSHOT_PENDING.load(Ordering::Relaxed) {
            self.snapshot(fd);
        }
    }
}
