//! The operating-system layer: the only module that makes system calls.
//!
//! Everything here is safe to call from inside malloc: no allocation, no stdio, no libc lock.
//! Calls made on a `free` path keep `errno` as it was, because `free` must never change it.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::config::PAGE;
use crate::source::{Region, Source};

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Runs `f` and puts `errno` back as it was.
#[inline]
fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let r = f();
    set_errno(saved);
    r
}

/// Writes all of `bytes` to standard error with write(2), ignoring failures.
pub fn write_stderr(bytes: &[u8]) {
    write_fd(2, bytes)
}

/// Writes all of `bytes` to `fd` with write(2), ignoring failures.
pub fn write_fd(fd: i32, mut bytes: &[u8]) {
    keep_errno(|| {
        while !bytes.is_empty() {
            // SAFETY: the pointer and length describe a live slice.
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            if n <= 0 {
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                return;
            }
            bytes = &bytes[n as usize..];
        }
    })
}

/// Ends the process abnormally (SIGABRT), as glibc does on heap corruption.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Gives the processor to another thread (used by locks under contention).
#[inline]
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// 64 unpredictable bits from the kernel, or from the auxiliary vector's AT_RANDOM bytes mixed with
/// the clock when getrandom is unavailable. Used for the heap's secret.
pub fn random_u64() -> u64 {
    keep_errno(|| {
        let mut v = 0u64;
        // SAFETY: the buffer is 8 writable bytes; GRND_NONBLOCK never waits.
        let n = unsafe {
            libc::syscall(libc::SYS_getrandom, (&mut v as *mut u64).cast::<u8>(), 8usize, libc::GRND_NONBLOCK)
        };
        if n == 8 && v != 0 {
            return v;
        }
        // SAFETY: getauxval only reads the auxiliary vector; AT_RANDOM points at 16 bytes.
        let at_random = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
        let mut mix = 0x9E37_79B9_7F4A_7C15u64;
        if !at_random.is_null() {
            // SAFETY: the kernel provides 16 readable bytes at AT_RANDOM.
            mix ^= unsafe { at_random.add(1).read_unaligned() };
        }
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-parameter.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        mix ^= (ts.tv_nsec as u64).rotate_left(32) ^ ts.tv_sec as u64 ^ (&ts as *const _ as u64);
        mix | 1
    })
}

fn mmap_anon(hint: usize, len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping touches no existing memory; the hint is only a hint.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { None } else { Some(p as usize) }
}

/// The process's memory: the program break first, anonymous mappings once the break cannot move.
pub struct OsSource {
    /// Cleared for good the first time `sbrk` fails (the break hit a limit or another mapping).
    brk_usable: AtomicBool,
}

impl OsSource {
    /// A source that starts with the program break.
    pub const fn new() -> Self {
        OsSource { brk_usable: AtomicBool::new(true) }
    }

    fn grow_brk(&self, len: usize) -> Option<Region> {
        // SAFETY: sbrk(0) only reads the current break.
        let cur = unsafe { libc::sbrk(0) } as usize;
        if cur == usize::MAX {
            return None;
        }
        let pad = cur.wrapping_neg() & (PAGE - 1);
        let want = len.checked_add(pad)?;
        if want > isize::MAX as usize {
            return None;
        }
        // SAFETY: moving the break up only adds memory; nobody else owns the new bytes.
        let old = unsafe { libc::sbrk(want as libc::intptr_t) } as usize;
        if old == usize::MAX {
            return None;
        }
        // Another thread may have moved the break between the two calls: align what we got.
        let end = old + want;
        let start = (old + PAGE - 1) & !(PAGE - 1);
        let got = (end - start) & !(PAGE - 1);
        if got < len {
            // Too little after realignment; keep it as the break (harmless) and report failure.
            return None;
        }
        Some(Region { start, len: got, from_brk: true })
    }
}

impl Default for OsSource {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: sbrk and anonymous mappings hand out fresh zeroed pages owned by nobody else.
unsafe impl Source for OsSource {
    fn grow(&self, len: usize) -> Option<Region> {
        keep_errno(|| {
            if self.brk_usable.load(Ordering::Relaxed) {
                if let Some(r) = self.grow_brk(len) {
                    return Some(r);
                }
                self.brk_usable.store(false, Ordering::Relaxed);
            }
            mmap_anon(0, len).map(|start| Region { start, len, from_brk: false })
        })
    }

    fn shrink(&self, region: Region, len: usize) -> bool {
        let end = region.start + region.len;
        keep_errno(|| {
            if region.from_brk {
                // SAFETY: sbrk(0) only reads the break.
                if unsafe { libc::sbrk(0) } as usize != end {
                    return false;
                }
                // SAFETY: the last `len` bytes below the break are ours and unused.
                unsafe { libc::sbrk(-(len as libc::intptr_t)) as usize != usize::MAX }
            } else {
                // SAFETY: the tail of our own mapping, unused.
                unsafe { libc::munmap((end - len) as *mut libc::c_void, len) == 0 }
            }
        })
    }

    fn map(&self, len: usize) -> Option<usize> {
        keep_errno(|| mmap_anon(0, len))
    }

    fn unmap(&self, addr: usize, len: usize) {
        keep_errno(|| {
            // SAFETY: the caller gives back a mapping (or part of one) it owns.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        })
    }

    fn remap(&self, addr: usize, old_len: usize, new_len: usize) -> Option<usize> {
        keep_errno(|| {
            // SAFETY: `addr` is our own mapping of `old_len` bytes; MREMAP_MAYMOVE keeps its contents.
            let p = unsafe { libc::mremap(addr as *mut libc::c_void, old_len, new_len, libc::MREMAP_MAYMOVE) };
            if p == libc::MAP_FAILED { None } else { Some(p as usize) }
        })
    }

    fn now_ms(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-parameter; the coarse clock is read in the vDSO, no syscall.
        keep_errno(|| unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) });
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }

    fn purge(&self, addr: usize, len: usize) {
        keep_errno(|| {
            // SAFETY: the pages are ours and hold nothing anyone needs.
            unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        })
    }
}
