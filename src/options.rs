//! Run-time options: `MY_ALLOC_*` variables, read once from the environment.
//!
//! The environment is read by walking `environ` (never `getenv`, which is not safe while the C
//! runtime starts), on the first allocation that needs an option or in the constructor, whichever
//! comes first. An unknown `MY_ALLOC_*` name or a bad value gets one warning line on stderr, and
//! the default is kept.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::config::{
    GUARD_MAX_LIMIT, GUARD_MODE_MAX, GUARD_RATE, GUARD_SLOTS_MAX, MMAP_THRESHOLD, MMAP_THRESHOLD_MAX, PROFILE_RATE, TRIM_DECAY_MS, TRIM_THRESHOLD,
};
use crate::diag::Line;
use crate::size_text::parse_size;

/// `MY_ALLOC_STATS=1`: print statistics at exit.
pub static STATS: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_VERBOSE=1`: print the options in effect at start-up.
pub static VERBOSE: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_CHECK=1`: checking mode (canaries, freed-memory fill; no thread caches).
pub static CHECK: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_CHECK=guard`: guard mode (checking mode, and every allocation up to `GUARD_MAX` on
/// guarded pages).
pub static GUARD_ALL: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_GUARD_RATE`: mean bytes allocated between guarded samples (0: none).
pub static GUARD_RATE_BYTES: AtomicUsize = AtomicUsize::new(GUARD_RATE);
/// `MY_ALLOC_GUARD_SLOTS`: guarded blocks live or in quarantine at once (0: the mode's default).
pub static GUARD_SLOTS: AtomicUsize = AtomicUsize::new(0);
/// `MY_ALLOC_GUARD_QUARANTINE`: freed guarded blocks kept inaccessible before one is reused
/// (`usize::MAX`: the mode's default).
pub static GUARD_QUARANTINE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// `MY_ALLOC_GUARD_MAX`: in guard mode, the largest request that is guarded.
pub static GUARD_MAX: AtomicUsize = AtomicUsize::new(GUARD_MODE_MAX);
/// `MY_ALLOC_GUARD_BELOW`: guarded blocks start their page (underflows fault) instead of ending it.
pub static GUARD_BELOW: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_MMAP_THRESHOLD`: the mapping threshold, in bytes. Unset, it starts at the default and
/// frees of mapped blocks raise it; set, it stays (`MMAP_FIXED`).
pub static MMAP: AtomicUsize = AtomicUsize::new(MMAP_THRESHOLD);
/// Whether `MY_ALLOC_MMAP_THRESHOLD` set the mapping threshold.
pub static MMAP_FIXED: AtomicBool = AtomicBool::new(false);
/// `MY_ALLOC_TRIM_THRESHOLD`: the top block's size beyond which it is trimmed, in bytes.
pub static TRIM: AtomicUsize = AtomicUsize::new(TRIM_THRESHOLD);
/// `MY_ALLOC_DECAY_MS`: how long after the heap's last growth trimming waits, in milliseconds.
pub static DECAY_MS: AtomicUsize = AtomicUsize::new(TRIM_DECAY_MS as usize);

/// Where a profile goes (`MY_ALLOC_PROFILE=FILE`), NUL-terminated; empty when not profiling.
pub static PROFILE_PATH: PathBuf = PathBuf::new();
/// `MY_ALLOC_PROFILE_RATE`: the mean number of bytes allocated between two recorded call stacks
/// while profiling; 0 records none.
pub static PROFILE_RATE_BYTES: AtomicUsize = AtomicUsize::new(PROFILE_RATE);
/// `MY_ALLOC_PROFILE_SEED`: seeds the sampling (0: a random seed), for runs that must repeat.
pub static PROFILE_SEED: AtomicU64 = AtomicU64::new(0);
/// `MY_ALLOC_PROFILE_SIGNAL`: the signal that writes a snapshot of the profile (0: none).
pub static PROFILE_SIGNAL: AtomicI32 = AtomicI32::new(0);

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// A fixed buffer for a path taken from the environment (environment strings may be replaced
/// by the program later; the copy stays).
pub struct PathBuf {
    bytes: [AtomicU8; 256],
    len: AtomicUsize,
}

impl PathBuf {
    const fn new() -> Self {
        PathBuf { bytes: [const { AtomicU8::new(0) }; 256], len: AtomicUsize::new(0) }
    }
    fn set(&self, v: &[u8]) -> bool {
        if v.is_empty() || v.len() >= self.bytes.len() {
            return false;
        }
        for (i, &b) in v.iter().enumerate() {
            self.bytes[i].store(b, Ordering::Relaxed);
        }
        self.bytes[v.len()].store(0, Ordering::Relaxed);
        self.len.store(v.len(), Ordering::Release);
        true
    }
    /// Copies the path, NUL-terminated, into `out`; returns its length (0: no path).
    pub fn copy_to(&self, out: &mut [u8; 256]) -> usize {
        let n = self.len.load(Ordering::Acquire);
        for (i, o) in out.iter_mut().enumerate().take(n + 1) {
            *o = self.bytes[i].load(Ordering::Relaxed);
        }
        n
    }
}

/// Whether the options have been read.
pub fn is_read() -> bool {
    STATE.load(Ordering::Acquire) == READ
}

/// Reads the options if nobody has yet. Cheap after the first call (one load).
#[inline]
pub fn ensure_read() {
    if STATE.load(Ordering::Acquire) != READ {
        read_slow();
    }
}

#[cold]
fn read_slow() {
    if STATE.compare_exchange(UNREAD, READING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // Another thread is reading (or has read): its values apply once it is done. Until
        // then, the defaults do.
        return;
    }
    let Some(env) = crate::os::environment() else {
        // Too early to see the environment: try again on a later call.
        STATE.store(UNREAD, Ordering::Release);
        return;
    };
    for entry in env {
        let Some(rest) = entry.strip_prefix(b"MY_ALLOC_") else { continue };
        let Some(eq) = rest.iter().position(|&b| b == b'=') else { continue };
        let (name, value) = (&rest[..eq], &rest[eq + 1..]);
        apply(name, value);
    }
    STATE.store(READ, Ordering::Release);
    if VERBOSE.load(Ordering::Relaxed) {
        print_options();
    }
}

fn apply(name: &[u8], value: &[u8]) {
    let ok = match name {
        b"STATS" => set_flag(&STATS, value),
        b"VERBOSE" => set_flag(&VERBOSE, value),
        b"CHECK" => {
            let guard = value == b"guard";
            GUARD_ALL.store(guard, Ordering::Relaxed);
            if guard {
                CHECK.store(true, Ordering::Relaxed);
                true
            } else {
                set_flag(&CHECK, value)
            }
        }
        b"GUARD_RATE" => set_size(&GUARD_RATE_BYTES, value, 0, usize::MAX / 2),
        b"GUARD_SLOTS" => set_size(&GUARD_SLOTS, value, 1, GUARD_SLOTS_MAX),
        b"GUARD_QUARANTINE" => set_size(&GUARD_QUARANTINE, value, 0, GUARD_SLOTS_MAX),
        b"GUARD_MAX" => set_size(&GUARD_MAX, value, 0, GUARD_MAX_LIMIT),
        b"GUARD_BELOW" => set_flag(&GUARD_BELOW, value),
        b"PROFILE" => PROFILE_PATH.set(value),
        b"PROFILE_RATE" => set_size(&PROFILE_RATE_BYTES, value, 0, usize::MAX / 2),
        b"PROFILE_SEED" => match parse_size(value) {
            Some(n) => {
                PROFILE_SEED.store(n as u64, Ordering::Relaxed);
                true
            }
            None => false,
        },
        b"PROFILE_SIGNAL" => match signal_number(value) {
            Some(n) => {
                PROFILE_SIGNAL.store(n, Ordering::Relaxed);
                true
            }
            None => false,
        },
        b"MMAP_THRESHOLD" => {
            let ok = set_size(&MMAP, value, 4096, MMAP_THRESHOLD_MAX);
            MMAP_FIXED.store(ok, Ordering::Relaxed);
            ok
        }
        b"TRIM_THRESHOLD" => set_size(&TRIM, value, 0, usize::MAX / 2),
        b"DECAY_MS" => set_size(&DECAY_MS, value, 0, 3_600_000),
        // Build-time settings (read by the build, not at run time) and the build's header
        // directory share the prefix: not ours to judge here.
        b"ALIGNMENT" | b"NUM_CLASSES" | b"THREAD_SAFE" | b"HEADER_DIR" => true,
        _ => {
            warn(b"unknown option MY_ALLOC_", name, b", ignored");
            return;
        }
    };
    if !ok {
        warn(b"bad value for MY_ALLOC_", name, b", using the default");
    }
}

fn warn(before: &[u8], name: &[u8], after: &[u8]) {
    let mut l = Line::new();
    l.str("my_alloc: ");
    for part in [before, name, after] {
        l.str(core::str::from_utf8(part).unwrap_or("?"));
    }
    l.write_to(2);
}

fn set_flag(flag: &AtomicBool, value: &[u8]) -> bool {
    let v = match value {
        b"1" | b"yes" | b"true" | b"on" => true,
        b"0" | b"no" | b"false" | b"off" | b"" => false,
        _ => return false,
    };
    flag.store(v, Ordering::Relaxed);
    true
}

fn set_size(target: &AtomicUsize, value: &[u8], min: usize, max: usize) -> bool {
    match parse_size(value) {
        Some(n) if n >= min && n <= max => {
            target.store(n, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// A signal a program may hand us: `USR1`, `SIGUSR2`, or a real-time or other number that is
/// not one the kernel reserves (SIGKILL, SIGSTOP) or that faults report (SIGSEGV and kin).
fn signal_number(value: &[u8]) -> Option<i32> {
    let name = value.strip_prefix(b"SIG").unwrap_or(value);
    let n = match name {
        b"USR1" => libc::SIGUSR1,
        b"USR2" => libc::SIGUSR2,
        b"0" | b"" => return Some(0),
        _ => i32::try_from(parse_size(name)?).ok()?,
    };
    let unfit = [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT];
    (n > 0 && n < 65 && !unfit.contains(&n)).then_some(n)
}

fn print_options() {
    let mut l = Line::new();
    l.str("my_alloc: options: check=").dec(CHECK.load(Ordering::Relaxed) as u64);
    if GUARD_ALL.load(Ordering::Relaxed) {
        l.str(" (guard, up to ").dec(GUARD_MAX.load(Ordering::Relaxed) as u64).str(" bytes)");
    }
    l.str(" guard_rate=").dec(GUARD_RATE_BYTES.load(Ordering::Relaxed) as u64);
    l.str(" stats=").dec(STATS.load(Ordering::Relaxed) as u64);
    l.str(" mmap_threshold=").dec(MMAP.load(Ordering::Relaxed) as u64);
    l.str(if MMAP_FIXED.load(Ordering::Relaxed) { " (fixed)" } else { " (rising)" });
    l.str(" trim_threshold=").dec(TRIM.load(Ordering::Relaxed) as u64);
    l.str(" decay_ms=").dec(DECAY_MS.load(Ordering::Relaxed) as u64);
    let mut path = [0u8; 256];
    let n = PROFILE_PATH.copy_to(&mut path);
    if n > 0 {
        l.str(" profile=").str(core::str::from_utf8(&path[..n]).unwrap_or("?"));
        l.str(" profile_rate=").dec(PROFILE_RATE_BYTES.load(Ordering::Relaxed) as u64);
        let sig = PROFILE_SIGNAL.load(Ordering::Relaxed);
        if sig != 0 {
            l.str(" profile_signal=").dec(sig as u64);
        }
    }
    l.write_to(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_the_usual_spellings() {
        let f = AtomicBool::new(false);
        assert!(set_flag(&f, b"yes") && f.load(Ordering::Relaxed));
        assert!(set_flag(&f, b"0") && !f.load(Ordering::Relaxed));
        assert!(!set_flag(&f, b"maybe"));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signal_number(b"USR2"), Some(libc::SIGUSR2));
        assert_eq!(signal_number(b"SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number(b"40"), Some(40));
        assert_eq!(signal_number(b"0"), Some(0));
        assert_eq!(signal_number(b"SEGV"), None);
        assert_eq!(signal_number(b"11"), None);
        assert_eq!(signal_number(b"9"), None);
        assert_eq!(signal_number(b"99"), None);
        assert_eq!(signal_number(b"HUP"), None);
    }
}
